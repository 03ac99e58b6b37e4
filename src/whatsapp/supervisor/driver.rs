//! The thin async side of the supervisor: one task per instance waits for
//! the next thing to happen (shutdown, a command, released receipts, engine
//! events, the retry timer), feeds it to the [`State`] machine, runs the
//! actions it returns against the engine, publishes the status it shows, and
//! appends its events to the log.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;

use crate::domain::instances::Instance;
use crate::domain::pacing::SendPolicy;
use crate::events::{ConnectFailed, Event};
use crate::ids::{InstanceId, UserId};
use crate::store::{Append, Effect, EventStore, Metadata, StoreError, StreamId};
use crate::whatsapp::engine::{EngineEvent, EngineSession};

use super::machine::{Action, Ctx, Input, Note, State, Step};
use super::{Inner, SessionStatus, SupervisorConfig};

/// Engine events taken from the queue after the first one and appended with it.
const BATCH: usize = 256;

/// What the API asks of a supervisor task.
pub(super) enum Command {
    /// A fresh connect.
    Reconnect,
    /// Unlink the device; answered once the events are recorded.
    Logout(oneshot::Sender<()>),
    /// Stop for good and delete the store; answered once done.
    Delete(oneshot::Sender<()>),
}

/// One instance's session, shared by its supervisor task and the request tasks that send through it.
pub(super) struct Session {
    pub(super) instance_id: InstanceId,
    pub(super) user_id: UserId,
    /// What the API shows; the supervisor task publishes it after each step.
    pub(super) status: watch::Sender<SessionStatus>,
    /// The running engine session, for sends (set and cleared by the supervisor task).
    pub(super) engine: RwLock<Option<Arc<dyn EngineSession>>>,
    /// The supervisor task's commands.
    pub(super) cmd: mpsc::Sender<Command>,
    /// The state machine; stepped by the supervisor and by sends, never locked across an await.
    machine: Mutex<State>,
    /// Tells the supervisor task that released receipts are waiting ([`Action::Wake`]).
    released: Notify,
    /// The instance's send policy (kept current by instance updates).
    pub(super) policy: RwLock<SendPolicy>,
    /// Wakes the outbound queue's worker: the queue or the policy changed.
    pub(super) outbox: Notify,
    /// Held while the queue changes or its head is sent, so that a cancel
    /// or a failure never races a send of the same message.
    pub(super) queue_lock: tokio::sync::Mutex<()>,
    /// Stops the outbound queue's worker (deletion, shutdown).
    pub(super) worker_stop: CancellationToken,
    /// When the engine last reported anything (a keepalive answer included).
    pub(super) last_seen: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl Session {
    /// A session that is about to start, with its command channel.
    pub(super) fn new(
        instance: &Instance,
        cmd: mpsc::Sender<Command>,
        worker_stop: CancellationToken,
    ) -> Self {
        let machine = State::new(instance.id.clone(), TokioInstant::now().into_std());
        Self {
            instance_id: instance.id.clone(),
            user_id: instance.user_id.clone(),
            status: watch::Sender::new(machine.status().clone()),
            engine: RwLock::new(None),
            cmd,
            machine: Mutex::new(machine),
            released: Notify::new(),
            policy: RwLock::new(instance.send_policy.clone()),
            outbox: Notify::new(),
            queue_lock: tokio::sync::Mutex::new(()),
            worker_stop,
            last_seen: Mutex::new(None),
        }
    }

    /// Feeds one input to the machine now, with a fresh jitter draw.
    fn step(&self, input: Input, config: &SupervisorConfig) -> Step {
        let ctx = Ctx {
            now: TokioInstant::now().into_std(),
            jitter: rand::random::<f64>(),
            config,
        };
        self.machine.lock().expect("machine lock").step(input, &ctx)
    }

    /// Feeds a send's input from a request task and runs what it asks for
    /// (sends record nothing themselves and only ever wake the supervisor).
    pub(super) fn send_input(&self, input: Input, config: &SupervisorConfig) {
        let step = self.step(input, config);
        debug_assert!(step.events.is_empty(), "sends record no engine events");
        for action in step.actions {
            debug_assert_eq!(action, Action::Wake, "sends only wake the supervisor");
            if action == Action::Wake {
                self.released.notify_one();
            }
        }
    }

    /// Shows the machine's status to the API, waking waiters only when it changed.
    fn publish(&self) {
        let machine = self.machine.lock().expect("machine lock");
        let shown = machine.status();
        self.status.send_if_modified(|current| {
            if current == shown {
                return false;
            }
            current.clone_from(shown);
            true
        });
    }

    /// When the machine wants its next connect attempt.
    pub(super) fn retry_at(&self) -> Option<TokioInstant> {
        let machine = self.machine.lock().expect("machine lock");
        machine.retry_at().map(TokioInstant::from_std)
    }

    /// Appends events to the instance's session stream.
    pub(super) async fn append(
        &self,
        store: &EventStore,
        events: Vec<Event>,
        meta: Metadata,
    ) -> Result<(), StoreError> {
        self.append_with(store, events, meta, Vec::new()).await
    }

    /// Appends to the session stream, with state changes in the same transaction.
    pub(super) async fn append_with(
        &self,
        store: &EventStore,
        events: Vec<Event>,
        meta: Metadata,
        effects: Vec<Effect>,
    ) -> Result<(), StoreError> {
        let mut append = Append::fact(StreamId::session(self.instance_id.as_str()))
            .scope(Some(self.user_id.as_str()), Some(self.instance_id.as_str()))
            .metadata(meta);
        append.events = events;
        append.effects.extend(effects);
        store.append(append).await.map(|_| ())
    }
}

/// The supervisor task's own side: the engine's event queue and the retry timer.
struct Driver {
    /// The session this task supervises.
    session: Arc<Session>,
    /// The engine, the log and the settings.
    inner: Arc<Inner>,
    /// The running engine session's events.
    events: Option<mpsc::Receiver<EngineEvent>>,
    /// When to feed [`Input::RetryDue`].
    retry_at: Option<TokioInstant>,
    /// Set by [`Action::Exit`].
    exit: bool,
    /// Events the driver adds to the machine's (`connect_failed`).
    extra: Vec<Event>,
}

impl Driver {
    /// Feeds an input, runs its actions, feeds their answers in turn, and
    /// publishes the status after each step; adds the events to `out`.
    async fn feed(&mut self, input: Input, out: &mut Vec<Event>) {
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let step = self.session.step(input, &self.inner.config);
            if out.is_empty() {
                *out = step.events;
            } else {
                out.extend(step.events);
            }
            for action in step.actions {
                if let Some(answer) = self.run(action).await {
                    next = Some(answer);
                }
            }
            out.append(&mut self.extra);
            self.session.publish();
        }
    }

    /// Runs one action; an action the machine wants answered returns the answer.
    async fn run(&mut self, action: Action) -> Option<Input> {
        let id = &self.session.instance_id;
        match action {
            Action::StartEngine => {
                let (tx, rx) = mpsc::channel(256);
                match self.inner.engine.start(id, tx).await {
                    Ok(engine) => {
                        *self.session.engine.write().expect("engine lock") = Some(engine);
                        self.events = Some(rx);
                        return Some(Input::EngineStarted);
                    }
                    Err(e) => return Some(Input::EngineStartFailed(format!("{e:#}"))),
                }
            }
            Action::StopEngine => {
                let engine = self.session.engine.write().expect("engine lock").take();
                self.events = None;
                if let Some(e) = engine {
                    e.stop().await;
                }
            }
            Action::EngineLogout => {
                let engine = self.session.engine.read().expect("engine lock").clone();
                if let Some(e) = engine
                    && let Err(err) = e.logout().await
                {
                    tracing::warn!(instance = %id, error = %err, "engine logout failed");
                }
                return Some(Input::LogoutDone);
            }
            Action::RemoveStore => {
                if let Err(err) = self.inner.engine.remove_store(id).await {
                    tracing::warn!(instance = %id, error = %err, "failed to delete the session store");
                }
            }
            Action::ScheduleRetry(at) => self.retry_at = Some(TokioInstant::from_std(at)),
            Action::CancelRetry => self.retry_at = None,
            Action::Wake => self.session.released.notify_one(),
            Action::Note(Note::ConnectFailed {
                error,
                attempt,
                retry_in,
            }) => {
                tracing::warn!(instance = %id, error = %error, attempt,
                    retry_in_ms = retry_in.as_millis() as u64, "connect attempt failed");
                self.extra.push(
                    ConnectFailed {
                        instance_id: id.clone(),
                        error,
                        attempt,
                        retry_in_ms: Some(retry_in.as_millis() as u64),
                    }
                    .into(),
                );
            }
            Action::Note(Note::CrashLoop { drops }) => {
                tracing::warn!(instance = %id, drops, "crash loop: not reconnecting until asked");
            }
            Action::KeepMedia { message_id, media } => match self.inner.vault.get() {
                Some(vault) => {
                    if let Err(e) = vault.keep(id, &message_id, &media).await {
                        tracing::warn!(instance = %id, message = %message_id, error = %format!("{e:#}"), "failed to keep a message's media");
                    }
                }
                None => {
                    tracing::debug!(instance = %id, message = %message_id, "no media vault: media not kept")
                }
            },
            Action::Exit => self.exit = true,
        }
        None
    }

    /// Feeds one input and records its events.
    async fn feed_and_record(&mut self, input: Input) {
        let mut out = Vec::new();
        self.feed(input, &mut out).await;
        self.record(out).await;
    }

    /// Feeds an engine event and whatever else is already queued (up to
    /// [`BATCH`]), and records all their events in one append.
    async fn engine_events(&mut self, first: Option<EngineEvent>) {
        let mut out = Vec::new();
        match first {
            None => self.feed(Input::EngineGone, &mut out).await,
            Some(event) => self.engine_event(event, &mut out).await,
        }
        for _ in 0..BATCH {
            let Some(rx) = self.events.as_mut() else {
                break;
            };
            match rx.try_recv() {
                Ok(event) => self.engine_event(event, &mut out).await,
                Err(_) => break,
            }
        }
        self.record(out).await;
    }

    /// One engine event: the session was heard from; keepalive answers and
    /// failed connect attempts stop here, the rest go to the machine.
    async fn engine_event(&mut self, event: EngineEvent, out: &mut Vec<Event>) {
        *self.session.last_seen.lock().expect("last seen lock") = Some(chrono::Utc::now());
        match event {
            EngineEvent::Alive => {}
            EngineEvent::ConnectFailed { error, attempt } => out.push(
                ConnectFailed {
                    instance_id: self.session.instance_id.clone(),
                    error,
                    attempt,
                    retry_in_ms: None,
                }
                .into(),
            ),
            event => self.feed(Input::Engine(event), out).await,
        }
    }

    /// Appends engine events (none: nothing), logging a failure.
    async fn record(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let session = &self.session;
        if let Err(e) = session
            .append(&self.inner.store, events, Metadata::actor("engine"))
            .await
        {
            tracing::warn!(instance = %session.instance_id, error = %e, "failed to record engine events");
        }
    }
}

/// The next event of the running engine session (never, when none runs).
async fn next_event(rx: &mut Option<mpsc::Receiver<EngineEvent>>) -> Option<EngineEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the retry is due (forever, when none is scheduled).
async fn sleep_until_opt(at: Option<TokioInstant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The supervisor task of one instance, until shutdown or deletion.
pub(super) async fn supervise(
    session: Arc<Session>,
    inner: Arc<Inner>,
    mut cmds: mpsc::Receiver<Command>,
) {
    let mut d = Driver {
        retry_at: session.retry_at(),
        session,
        inner,
        events: None,
        exit: false,
        extra: Vec::new(),
    };
    while !d.exit {
        tokio::select! {
            biased;
            _ = d.inner.shutdown.cancelled() => d.feed_and_record(Input::Shutdown).await,
            cmd = cmds.recv() => match cmd {
                None => break,
                Some(Command::Reconnect) => d.feed_and_record(Input::Reconnect).await,
                Some(Command::Logout(reply)) => {
                    d.feed_and_record(Input::Logout).await;
                    let _ = reply.send(());
                }
                Some(Command::Delete(reply)) => {
                    d.feed_and_record(Input::Delete).await;
                    let _ = reply.send(());
                }
            },
            _ = d.session.released.notified() => d.feed_and_record(Input::FlushReleased).await,
            event = next_event(&mut d.events) => d.engine_events(event).await,
            _ = sleep_until_opt(d.retry_at) => {
                // A fired timer is spent; the machine schedules the next one.
                d.retry_at = None;
                d.feed_and_record(Input::RetryDue).await;
            }
        }
    }
}
