//! One supervisor task per instance: the only owner of its connection state
//! (connecting → qr → connected → disconnected / logged out). It starts the
//! engine session, turns engine events into log events, reconnects with
//! backoff, caps unscanned QR codes, and guards against crash loops.

// The driver starts using it in the next commit.
#[allow(dead_code)]
mod machine;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::instances::Instance;
use crate::domain::send::{self, Sent};
use crate::events::{
    ConnectionClosed, ConnectionOpened, Contact, ContactsUpdated, Event, LoggedOut, MediaInfo,
    MessageReceived, MessageSent, MessageStatus, QrReceived,
};
use crate::events::{ReasonCode, SessionReason};
use crate::ids::{InstanceId, MessageId, UserId};
use crate::store::{Append, EventStore, Metadata, StreamId};

use super::Jid;
use super::engine::{Engine, EngineEvent, EngineSession, OutgoingMedia, Receipt};

/// The connection state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Starting or reconnecting.
    Connecting,
    /// Waiting for a QR scan.
    Qr,
    /// Logged in and usable.
    Connected,
    /// Stopped (QR cap reached, crash loop, terminal error, shutdown).
    Disconnected,
    /// Unlinked; a reconnect shows a new QR.
    LoggedOut,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Qr => "qr",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::LoggedOut => "logged_out",
        }
    }
}

/// What the API shows of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub state: ConnState,
    /// The QR code waiting to be scanned.
    pub qr: Option<String>,
    /// The paired phone number.
    pub phone: Option<String>,
}

impl SessionStatus {
    /// Connected and able to send.
    pub fn ready(&self) -> bool {
        self.state == ConnState::Connected
    }
}

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Unscanned QR codes before the instance stops asking.
    pub qr_max_codes: u32,
    /// First reconnect delay; doubles per consecutive failure.
    pub reconnect_base: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Drops within `crash_loop_window` that stop reconnecting.
    pub crash_loop_max: usize,
    pub crash_loop_window: Duration,
    /// How long a send waits for a connecting instance before answering 409.
    pub send_wait: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            qr_max_codes: 6,
            reconnect_base: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            crash_loop_max: 5,
            crash_loop_window: Duration::from_secs(60),
            send_wait: Duration::from_secs(3),
        }
    }
}

/// Why a send was refused.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("instance {0} is not connected")]
    NotConnected(InstanceId),
    #[error("instance {0} has no session")]
    NoSession(InstanceId),
    #[error("sending failed: {0}")]
    Engine(anyhow::Error),
    #[error("the event store failed: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Receipts held for one message being sent.
#[derive(Default)]
struct Early {
    /// `message_sent` is in the log: the supervisor appends these next,
    /// before any later receipt of the message.
    released: bool,
    receipts: Vec<(Receipt, Jid)>,
}

enum Command {
    Reconnect,
    Logout(oneshot::Sender<()>),
    Delete(oneshot::Sender<()>),
}

struct Session {
    instance_id: InstanceId,
    user_id: UserId,
    status: watch::Sender<SessionStatus>,
    engine: RwLock<Option<Arc<dyn EngineSession>>>,
    cmd: mpsc::Sender<Command>,
    /// Receipts that arrived for messages whose `message_sent` is not yet in
    /// the log, held so that the log keeps cause before effect.
    pending: Mutex<HashMap<MessageId, Early>>,
    /// Tells the supervisor that held receipts may now be appended.
    released: Notify,
}

struct Inner {
    engine: Arc<dyn Engine>,
    store: EventStore,
    config: SupervisorConfig,
    sessions: RwLock<HashMap<InstanceId, Arc<Session>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Every instance's session, by instance id.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

impl Sessions {
    /// A registry over an engine; nothing runs until instances are started.
    pub fn new(
        engine: Arc<dyn Engine>,
        store: EventStore,
        config: SupervisorConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                store,
                config,
                sessions: RwLock::new(HashMap::new()),
                shutdown,
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// The engine's name.
    pub fn engine_name(&self) -> &'static str {
        self.inner.engine.name()
    }

    /// Starts a supervisor for each instance (at start-up).
    pub fn start_all(&self, instances: &[Instance]) {
        for i in instances {
            self.instance_created(i);
        }
    }

    /// Starts the supervisor of a new instance.
    pub fn instance_created(&self, instance: &Instance) {
        let (tx, rx) = mpsc::channel(16);
        let session = Arc::new(Session {
            instance_id: instance.id.clone(),
            user_id: instance.user_id.clone(),
            status: watch::Sender::new(SessionStatus {
                state: ConnState::Connecting,
                qr: None,
                phone: None,
            }),
            engine: RwLock::new(None),
            cmd: tx,
            pending: Mutex::new(HashMap::new()),
            released: Notify::new(),
        });
        {
            let mut map = self.inner.sessions.write().expect("sessions lock");
            if map.contains_key(&instance.id) {
                return;
            }
            map.insert(instance.id.clone(), session.clone());
        }
        let inner = self.inner.clone();
        self.inner.tasks.spawn(supervise(session, inner, rx));
    }

    /// Stops an instance's session for good and deletes its session store.
    pub async fn instance_deleted(&self, instance_id: &InstanceId) {
        let session = self
            .inner
            .sessions
            .write()
            .expect("sessions lock")
            .remove(instance_id);
        if let Some(s) = session {
            let (tx, rx) = oneshot::channel();
            if s.cmd.send(Command::Delete(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    fn get(&self, instance_id: &InstanceId) -> Option<Arc<Session>> {
        self.inner
            .sessions
            .read()
            .expect("sessions lock")
            .get(instance_id)
            .cloned()
    }

    /// The owner of an instance that has a session (the running instances).
    pub fn owner(&self, instance_id: &InstanceId) -> Option<UserId> {
        self.get(instance_id).map(|s| s.user_id.clone())
    }

    /// The session state of an instance (`disconnected` when it has none).
    pub fn status(&self, instance_id: &InstanceId) -> SessionStatus {
        match self.get(instance_id) {
            Some(s) => s.status.borrow().clone(),
            None => SessionStatus {
                state: ConnState::Disconnected,
                qr: None,
                phone: None,
            },
        }
    }

    /// Restarts the session: a fresh connect (a new QR when not paired).
    pub async fn reconnect(&self, instance_id: &InstanceId) -> bool {
        match self.get(instance_id) {
            Some(s) => s.cmd.send(Command::Reconnect).await.is_ok(),
            None => false,
        }
    }

    /// Unlinks the device, deletes the session store; waits until done.
    pub async fn logout(&self, instance_id: &InstanceId) -> bool {
        let Some(s) = self.get(instance_id) else {
            return false;
        };
        let (tx, rx) = oneshot::channel();
        if s.cmd.send(Command::Logout(tx)).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }

    /// The session and its engine, once connected. An instance that is
    /// still connecting (or showing a QR) is waited for up to `send_wait`.
    async fn connected(
        &self,
        instance_id: &InstanceId,
    ) -> Result<(Arc<Session>, Arc<dyn EngineSession>), SendError> {
        let s = self
            .get(instance_id)
            .ok_or_else(|| SendError::NoSession(instance_id.clone()))?;
        let mut rx = s.status.subscribe();
        let connected = match tokio::time::timeout(
            self.inner.config.send_wait,
            rx.wait_for(|st| !matches!(st.state, ConnState::Connecting | ConnState::Qr)),
        )
        .await
        {
            Ok(Ok(st)) => st.state == ConnState::Connected,
            _ => false,
        };
        if !connected {
            return Err(SendError::NotConnected(instance_id.clone()));
        }
        let engine = s
            .engine
            .read()
            .expect("engine lock")
            .clone()
            .ok_or_else(|| SendError::NotConnected(instance_id.clone()))?;
        Ok((s, engine))
    }

    /// Whether the instance is connected (waiting up to `send_wait` while it connects).
    pub async fn wait_ready(&self, instance_id: &InstanceId) -> bool {
        self.connected(instance_id).await.is_ok()
    }

    /// Sends a text; appends `message_sent`; returns the message id.
    pub async fn send_text(
        &self,
        instance_id: &InstanceId,
        to: &Jid,
        text: &str,
        meta: Metadata,
    ) -> Result<MessageId, SendError> {
        let (session, engine) = self.connected(instance_id).await?;
        let message_id = MessageId::new_random();
        session.begin_send(&message_id);
        if let Err(e) = engine.send_text(&message_id, to, text).await {
            session
                .pending
                .lock()
                .expect("pending lock")
                .remove(&message_id);
            return Err(SendError::Engine(e));
        }
        let event = send::message_sent(
            instance_id,
            &message_id,
            to,
            Sent::Text(text),
            chrono::Utc::now().timestamp(),
        );
        self.finish_send(&session, event, meta).await?;
        Ok(message_id)
    }

    /// Sends media; appends `message_sent` with its kind and size; returns the message id.
    pub async fn send_media(
        &self,
        instance_id: &InstanceId,
        to: &Jid,
        media: OutgoingMedia,
        meta: Metadata,
    ) -> Result<MessageId, SendError> {
        let (session, engine) = self.connected(instance_id).await?;
        let message_id = MessageId::new_random();
        session.begin_send(&message_id);
        if let Err(e) = engine.send_media(&message_id, to, &media).await {
            session
                .pending
                .lock()
                .expect("pending lock")
                .remove(&message_id);
            return Err(SendError::Engine(e));
        }
        let event = send::message_sent(
            instance_id,
            &message_id,
            to,
            Sent::Media {
                kind: media.kind,
                mimetype: &media.mimetype,
                file_name: media.file_name.as_deref(),
                caption: media.caption.as_deref(),
                size: media.data.len() as u64,
            },
            chrono::Utc::now().timestamp(),
        );
        self.finish_send(&session, event, meta).await?;
        Ok(message_id)
    }

    /// Appends `message_sent`; receipts that came before it are then handed
    /// to the supervisor, which appends them after it (off the request path).
    async fn finish_send(
        &self,
        session: &Session,
        event: MessageSent,
        meta: Metadata,
    ) -> Result<(), SendError> {
        let message_id = event.message_id.clone();
        let sent = session
            .append(&self.inner.store, vec![event.into()], meta)
            .await;
        let mut pending = session.pending.lock().expect("pending lock");
        let held = match &sent {
            Ok(()) => pending
                .get_mut(&message_id)
                .filter(|e| !e.receipts.is_empty()),
            Err(_) => None,
        };
        match held {
            Some(early) => {
                early.released = true;
                session.released.notify_one();
            }
            None => {
                pending.remove(&message_id);
            }
        }
        drop(pending);
        sent?;
        Ok(())
    }

    /// The account's contacts and groups.
    pub async fn contacts(&self, instance_id: &InstanceId) -> Result<Vec<Contact>, SendError> {
        let (_, engine) = self.connected(instance_id).await?;
        engine.contacts().await.map_err(SendError::Engine)
    }

    /// Stops every session (on SIGTERM / Ctrl-C) and waits for them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Session {
    fn begin_send(&self, message_id: &MessageId) {
        self.pending
            .lock()
            .expect("pending lock")
            .insert(message_id.clone(), Early::default());
    }

    /// The events of every released message's held receipts, in arrival order per message.
    fn take_released(&self) -> Vec<Event> {
        let mut pending = self.pending.lock().expect("pending lock");
        let ids: Vec<MessageId> = pending
            .iter()
            .filter(|(_, e)| e.released)
            .map(|(id, _)| id.clone())
            .collect();
        let mut events = Vec::new();
        for id in ids {
            if let Some(early) = pending.remove(&id) {
                events.extend(
                    early
                        .receipts
                        .into_iter()
                        .map(|(receipt, chat)| self.status_event(&id, receipt, &chat)),
                );
            }
        }
        events
    }

    fn set_status(&self, f: impl FnOnce(&mut SessionStatus)) {
        self.status.send_modify(f);
    }

    fn status_event(&self, message_id: &MessageId, receipt: Receipt, chat: &Jid) -> Event {
        MessageStatus {
            instance_id: self.instance_id.clone(),
            message_id: message_id.clone(),
            status: receipt,
            from: chat.clone(),
            from_me: true,
        }
        .into()
    }

    async fn append(
        &self,
        store: &EventStore,
        events: Vec<Event>,
        meta: Metadata,
    ) -> Result<(), crate::store::StoreError> {
        let mut append = Append::fact(StreamId::session(self.instance_id.as_str()))
            .scope(Some(self.user_id.as_str()), Some(self.instance_id.as_str()))
            .metadata(meta);
        append.events = events;
        store.append(append).await.map(|_| ())
    }

    async fn record(&self, store: &EventStore, events: Vec<Event>) {
        if let Err(e) = self.append(store, events, Metadata::actor("engine")).await {
            tracing::warn!(instance = %self.instance_id, error = %e, "failed to record engine events");
        }
    }

    async fn stop_engine(&self, events: &mut Option<mpsc::Receiver<EngineEvent>>) {
        let engine = self.engine.write().expect("engine lock").take();
        *events = None;
        if let Some(e) = engine {
            e.stop().await;
        }
    }
}

/// Per-supervisor loop state.
struct Loop {
    events: Option<mpsc::Receiver<EngineEvent>>,
    retry_at: Option<Instant>,
    failures: u32,
    drops: VecDeque<Instant>,
    qr_count: u32,
    /// Events of the engine events handled in this turn, appended together.
    out: Vec<Event>,
}

async fn next_event(rx: &mut Option<mpsc::Receiver<EngineEvent>>) -> Option<EngineEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn backoff(config: &SupervisorConfig, failures: u32) -> Duration {
    let exp = config
        .reconnect_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(config.reconnect_max);
    // Up to 20% jitter so that many instances do not reconnect in step.
    let jitter = capped.mul_f64(rand::random::<f64>() * 0.2);
    capped + jitter
}

async fn supervise(session: Arc<Session>, inner: Arc<Inner>, mut cmds: mpsc::Receiver<Command>) {
    let mut st = Loop {
        events: None,
        retry_at: Some(Instant::now()),
        failures: 0,
        drops: VecDeque::new(),
        qr_count: 0,
        out: Vec::new(),
    };
    let store = &inner.store;
    loop {
        tokio::select! {
            biased;
            _ = inner.shutdown.cancelled() => {
                let was_connected = session.status.borrow().state == ConnState::Connected;
                session.stop_engine(&mut st.events).await;
                session.set_status(|s| { s.state = ConnState::Disconnected; s.qr = None; });
                if was_connected {
                    session.record(store, vec![ConnectionClosed {
                        instance_id: session.instance_id.clone(),
                        reason: ReasonCode::Shutdown.into(),
                        will_reconnect: true,
                    }.into()]).await;
                }
                break;
            }
            cmd = cmds.recv() => match cmd {
                None => break,
                Some(Command::Reconnect) => {
                    session.stop_engine(&mut st.events).await;
                    st.qr_count = 0;
                    st.failures = 0;
                    st.drops.clear();
                    st.retry_at = Some(Instant::now());
                    session.set_status(|s| { s.state = ConnState::Connecting; s.qr = None; });
                }
                Some(Command::Logout(reply)) => {
                    let engine = session.engine.read().expect("engine lock").clone();
                    if let Some(e) = engine
                        && let Err(err) = e.logout().await {
                            tracing::warn!(instance = %session.instance_id, error = %err, "engine logout failed");
                        }
                    session.stop_engine(&mut st.events).await;
                    if let Err(err) = inner.engine.remove_store(&session.instance_id).await {
                        tracing::warn!(instance = %session.instance_id, error = %err, "failed to delete the session store");
                    }
                    st.retry_at = None;
                    session.set_status(|s| { s.state = ConnState::LoggedOut; s.qr = None; s.phone = None; });
                    session.record(store, logged_out_events(&session.instance_id, ReasonCode::Logout.into())).await;
                    let _ = reply.send(());
                }
                Some(Command::Delete(reply)) => {
                    session.stop_engine(&mut st.events).await;
                    if let Err(err) = inner.engine.remove_store(&session.instance_id).await {
                        tracing::warn!(instance = %session.instance_id, error = %err, "failed to delete the session store");
                    }
                    let _ = reply.send(());
                    break;
                }
            },
            _ = session.released.notified() => {
                let events = session.take_released();
                if !events.is_empty() {
                    session.record(store, events).await;
                }
            }
            ev = next_event(&mut st.events) => {
                let ev = ev.unwrap_or(EngineEvent::Closed { reason: ReasonCode::ConnectionLost.into(), terminal: false });
                handle_event(&session, &inner, &mut st, ev).await;
                // Take what else is already waiting, and append it all at once.
                for _ in 0..256 {
                    let Some(rx) = st.events.as_mut() else { break };
                    match rx.try_recv() {
                        Ok(ev) => handle_event(&session, &inner, &mut st, ev).await,
                        Err(_) => break,
                    }
                }
                if !st.out.is_empty() {
                    session.record(store, std::mem::take(&mut st.out)).await;
                }
            }
            _ = sleep_until_opt(st.retry_at) => {
                st.retry_at = None;
                session.set_status(|s| s.state = ConnState::Connecting);
                let (tx, rx) = mpsc::channel(256);
                match inner.engine.start(&session.instance_id, tx).await {
                    Ok(engine) => {
                        *session.engine.write().expect("engine lock") = Some(engine);
                        st.events = Some(rx);
                    }
                    Err(e) => {
                        st.failures += 1;
                        let wait = backoff(&inner.config, st.failures);
                        tracing::warn!(instance = %session.instance_id, error = %format!("{e:#}"), attempt = st.failures,
                            retry_in_ms = wait.as_millis() as u64, "connect attempt failed");
                        st.retry_at = Some(Instant::now() + wait);
                    }
                }
            }
        }
    }
}

fn logged_out_events(instance_id: &InstanceId, reason: SessionReason) -> Vec<Event> {
    vec![
        LoggedOut {
            instance_id: instance_id.clone(),
            reason,
        }
        .into(),
        ConnectionClosed {
            instance_id: instance_id.clone(),
            reason: ReasonCode::Logout.into(),
            will_reconnect: false,
        }
        .into(),
    ]
}

async fn handle_event(session: &Arc<Session>, inner: &Arc<Inner>, st: &mut Loop, ev: EngineEvent) {
    let id = session.instance_id.clone();
    match ev {
        EngineEvent::Qr { code } => {
            st.qr_count += 1;
            if st.qr_count > inner.config.qr_max_codes {
                session.stop_engine(&mut st.events).await;
                session.set_status(|s| {
                    s.state = ConnState::Disconnected;
                    s.qr = None;
                });
                st.out.extend(vec![
                    ConnectionClosed {
                        instance_id: id,
                        reason: ReasonCode::QrTimeout.into(),
                        will_reconnect: false,
                    }
                    .into(),
                ]);
                return;
            }
            session.set_status(|s| {
                s.state = ConnState::Qr;
                s.qr = Some(code.clone());
            });
            st.out.extend(vec![
                QrReceived {
                    instance_id: id,
                    qr_code: code,
                }
                .into(),
            ]);
        }
        EngineEvent::Connected { phone } => {
            st.qr_count = 0;
            st.failures = 0;
            session.set_status(|s| {
                s.state = ConnState::Connected;
                s.qr = None;
                s.phone = phone.clone();
            });
            st.out.extend(vec![
                ConnectionOpened {
                    instance_id: id,
                    phone,
                }
                .into(),
            ]);
        }
        EngineEvent::Closed { reason, terminal } => {
            session.stop_engine(&mut st.events).await;
            let now = Instant::now();
            st.drops.push_back(now);
            while st
                .drops
                .front()
                .is_some_and(|t| now.duration_since(*t) > inner.config.crash_loop_window)
            {
                st.drops.pop_front();
            }
            let crash_loop = st.drops.len() >= inner.config.crash_loop_max;
            if terminal || crash_loop {
                let reason = if crash_loop && !terminal {
                    tracing::warn!(instance = %id, drops = st.drops.len(), "crash loop: not reconnecting until asked");
                    ReasonCode::CrashLoop.into()
                } else {
                    reason
                };
                session.set_status(|s| {
                    s.state = ConnState::Disconnected;
                    s.qr = None;
                });
                st.out.extend(vec![
                    ConnectionClosed {
                        instance_id: id,
                        reason,
                        will_reconnect: false,
                    }
                    .into(),
                ]);
            } else {
                st.failures += 1;
                st.retry_at = Some(now + backoff(&inner.config, st.failures));
                session.set_status(|s| {
                    s.state = ConnState::Connecting;
                    s.qr = None;
                });
                st.out.extend(vec![
                    ConnectionClosed {
                        instance_id: id,
                        reason,
                        will_reconnect: true,
                    }
                    .into(),
                ]);
            }
        }
        EngineEvent::LoggedOut { reason } => {
            session.stop_engine(&mut st.events).await;
            if let Err(err) = inner.engine.remove_store(&id).await {
                tracing::warn!(instance = %id, error = %err, "failed to delete the session store");
            }
            st.retry_at = None;
            session.set_status(|s| {
                s.state = ConnState::LoggedOut;
                s.qr = None;
                s.phone = None;
            });
            st.out.extend(logged_out_events(&id, reason));
        }
        EngineEvent::Message(m) => {
            let event = MessageReceived {
                instance_id: id,
                message_id: m.message_id,
                from: m.from,
                chat: m.chat,
                body: m.body,
                message_type: m.message_type,
                timestamp: m.timestamp,
                has_media: m.media.is_some(),
                push_name: m.push_name,
                media: m.media.map(|md| MediaInfo {
                    kind: md.kind,
                    mimetype: md.mimetype,
                    file_name: md.file_name,
                    size: md.size,
                }),
            };
            st.out.extend(vec![event.into()]);
        }
        EngineEvent::Receipt {
            message_ids,
            receipt,
            chat,
        } => {
            let mut events = Vec::with_capacity(message_ids.len());
            {
                let mut pending = session.pending.lock().expect("pending lock");
                for mid in &message_ids {
                    match pending.get_mut(mid) {
                        Some(early) if !early.released => {
                            early.receipts.push((receipt, chat.clone()))
                        }
                        Some(_) => {
                            // Its `message_sent` is in the log: the held receipts go first.
                            if let Some(early) = pending.remove(mid) {
                                events.extend(
                                    early
                                        .receipts
                                        .into_iter()
                                        .map(|(r, c)| session.status_event(mid, r, &c)),
                                );
                            }
                            events.push(session.status_event(mid, receipt, &chat));
                        }
                        None => events.push(session.status_event(mid, receipt, &chat)),
                    }
                }
            }
            if !events.is_empty() {
                st.out.extend(events);
            }
        }
        EngineEvent::Contacts(contacts) => {
            st.out.extend(vec![
                ContactsUpdated {
                    instance_id: id,
                    contacts,
                }
                .into(),
            ]);
        }
    }
}
