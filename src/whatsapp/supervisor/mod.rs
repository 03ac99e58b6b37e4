//! One supervisor per instance: the only owner of its connection state
//! (connecting → qr → connected → disconnected / logged out). It starts the
//! engine session, turns engine events into log events, reconnects with
//! backoff, caps unscanned QR codes, guards against crash loops, and holds
//! back receipts that arrive before their own `message_sent` is in the log.
//!
//! What lives where:
//! - `machine.rs`: every decision, as a pure state machine (`State::step`:
//!   state + input + time/jitter/settings → log events + actions); no I/O.
//! - `driver.rs`: the per-instance task that waits for inputs, steps the
//!   machine, runs its actions against the engine, publishes the status and
//!   appends the events; the engine handle lives there.
//! - `outbox.rs`: the outbound queue's worker, one task per instance: paced
//!   sends of queued messages, in order (its loop is tested with paused time).
//! - `groups.rs`: groups and number checks through the connected engine,
//!   recording the changes this instance made.
//! - `kinds.rs`: sends of the message kinds beyond text and media, read
//!   marks, chat state and presence.
//! - here: the public types and [`Sessions`], the API's entry point (start,
//!   stop, status, reconnect, logout, sends, the queue).

mod driver;
mod groups;
mod kinds;
mod machine;
mod outbox;

pub use groups::GroupFailure;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::instances::Instance;
use crate::domain::send::{self, OnRecord, Sent};
use crate::domain::storage::outbound::{self, OutboundChange, QueuedMessage};
use crate::events::{Contact, DeliveryStatus, FailReason, MessageSent, MessageStatus};
use crate::ids::{InstanceId, MessageId, UserId};
use crate::store::{Append, Effect, EventStore, Metadata, StreamId};

use super::Jid;
use super::engine::{Engine, EngineSession, FetchMediaError, KeptMedia, OutgoingMedia};
use super::vault::MediaVault;
use driver::{Command, Session};
use machine::Input;

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
    /// The state's name in the API and the logs.
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
    /// The connection state.
    pub state: ConnState,
    /// The QR code waiting to be scanned.
    pub qr: Option<String>,
    /// The paired phone number.
    pub phone: Option<String>,
    /// A pairing code waiting to be typed into the phone (pairing by phone number).
    pub pair_code: Option<String>,
}

impl SessionStatus {
    /// Connected and able to send.
    pub fn ready(&self) -> bool {
        self.state == ConnState::Connected
    }
}

/// What only the supervisor knows of a session's health.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorHealth {
    /// When the engine last reported anything (a keepalive answer included).
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The wait until the next connect attempt the supervisor scheduled.
    pub backoff: Option<Duration>,
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
    /// How far back drops count toward a crash loop.
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

/// What to send: a text or media.
#[derive(Clone, Copy)]
pub enum Outgoing<'a> {
    Text(&'a str),
    Media(&'a OutgoingMedia),
}

impl<'a> Outgoing<'a> {
    /// What `message_sent` records of it.
    fn sent(self) -> Sent<'a> {
        match self {
            Outgoing::Text(text) => Sent::Text(text),
            Outgoing::Media(m) => Sent::Media {
                kind: m.kind,
                mimetype: &m.mimetype,
                file_name: m.file_name.as_deref(),
                caption: m.caption.as_deref(),
                size: m.data.len() as u64,
            },
        }
    }
}

/// Why a send was refused.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The instance is not connected (or stopped connecting while the send waited).
    #[error("instance {0} is not connected")]
    NotConnected(InstanceId),
    /// The instance has no supervisor (unknown or deleted).
    #[error("instance {0} has no session")]
    NoSession(InstanceId),
    /// The engine refused or failed the send.
    #[error("sending failed: {0}")]
    Engine(anyhow::Error),
    /// `message_sent` could not be appended.
    #[error("the event store failed: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Why a message's media could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum MediaFetchError {
    /// No such message, or it has no media.
    #[error("no media for this message")]
    NotFound,
    /// The instance is not connected (the download goes through WhatsApp).
    #[error("the instance is not connected")]
    NotConnected,
    /// Larger than the media cap.
    #[error("the media is larger than {0} bytes")]
    TooLarge(u64),
    /// WhatsApp no longer has it.
    #[error("the media is no longer available at WhatsApp")]
    Gone,
    /// The download failed.
    #[error("the media download failed: {0}")]
    Engine(anyhow::Error),
}

/// Why a pairing code could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PairCodeError {
    /// The session is not running or not waiting to be paired.
    #[error("the instance is not waiting to be paired")]
    NotRunning,
    /// The instance is paired already.
    #[error("the instance is already paired")]
    AlreadyPaired,
    /// The engine (or WhatsApp) refused.
    #[error("no pairing code: {0}")]
    Engine(anyhow::Error),
}

/// What every supervisor task shares: the engine, the log, the settings, the sessions.
struct Inner {
    /// Starts engine sessions and owns their stores.
    engine: Arc<dyn Engine>,
    /// Where session events are appended.
    store: EventStore,
    /// The supervisor settings.
    config: SupervisorConfig,
    /// The running sessions.
    sessions: RwLock<HashMap<InstanceId, Arc<Session>>>,
    /// Cancelled on SIGTERM / Ctrl-C: every supervisor stops.
    shutdown: CancellationToken,
    /// The supervisor tasks, to wait for at shutdown.
    tasks: TaskTracker,
    /// Where messages' media handles are kept (set once at start-up).
    vault: OnceLock<MediaVault>,
}

/// Every instance's session, by instance id.
#[derive(Clone)]
pub struct Sessions {
    /// Shared with every supervisor task.
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
                vault: OnceLock::new(),
            }),
        }
    }

    /// Keeps messages' media handles in `vault` from now on (for
    /// [`Sessions::fetch_media`]); without one, media is not kept.
    pub fn keep_media_in(&self, vault: MediaVault) {
        let _ = self.inner.vault.set(vault);
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

    /// Closes, in the log, the sessions a crash cut: an instance whose last
    /// connection event is `connection_opened` (the process ended without
    /// its `connection_closed`) gets `connection_closed` with reason
    /// `process_restart` (will reconnect), so the log never shows two opens
    /// in a row. Call before [`Sessions::start_all`]; returns how many.
    pub async fn close_cut_sessions(&self, instances: &[Instance]) -> anyhow::Result<usize> {
        let mut closed = 0;
        for i in instances {
            if !last_connection_event_is_open(&self.inner.store, &i.id).await? {
                continue;
            }
            let event = crate::events::ConnectionClosed {
                instance_id: i.id.clone(),
                reason: crate::events::ReasonCode::ProcessRestart.into(),
                will_reconnect: true,
            };
            self.inner
                .store
                .append(
                    crate::store::Append::fact(crate::store::StreamId::session(i.id.as_str()))
                        .scope(Some(i.user_id.as_str()), Some(i.id.as_str()))
                        .metadata(Metadata::actor("engine"))
                        .event(event),
                )
                .await?;
            closed += 1;
        }
        if closed > 0 {
            tracing::warn!(
                sessions = closed,
                "the previous run ended without closing its sessions; recorded connection_closed (process_restart)"
            );
        }
        Ok(closed)
    }

    /// Starts the supervisor of a new instance.
    pub fn instance_created(&self, instance: &Instance) {
        let (tx, rx) = mpsc::channel(16);
        let stop = self.inner.shutdown.child_token();
        let session = Arc::new(Session::new(instance, tx, stop.clone()));
        {
            let mut map = self.inner.sessions.write().expect("sessions lock");
            if map.contains_key(&instance.id) {
                return;
            }
            map.insert(instance.id.clone(), session.clone());
        }
        let inner = self.inner.clone();
        let port = outbox::LivePort {
            session: session.clone(),
            sessions: self.clone(),
        };
        self.inner
            .tasks
            .spawn(driver::supervise(session, inner, rx));
        self.inner
            .tasks
            .spawn(async move { outbox::drive(&port, &stop).await });
    }

    /// Takes an instance's new send policy (after an update).
    pub fn policy_changed(&self, instance: &Instance) {
        if let Some(s) = self.get(&instance.id) {
            *s.policy.write().expect("policy lock") = instance.send_policy.clone();
            s.outbox.notify_one();
        }
    }

    /// Whether the instance's sends go through the outbound queue (its send policy is on).
    pub fn paced(&self, instance_id: &InstanceId) -> bool {
        self.get(instance_id)
            .is_some_and(|s| s.policy.read().expect("policy lock").enabled)
    }

    /// Stops an instance's session for good, deletes its session store and
    /// forgets its kept media.
    pub async fn instance_deleted(&self, instance_id: &InstanceId) {
        if let Some(vault) = self.inner.vault.get()
            && let Err(e) = vault.forget_instance(instance_id).await
        {
            tracing::warn!(instance = %instance_id, error = %format!("{e:#}"), "failed to forget the instance's media");
        }
        let session = self
            .inner
            .sessions
            .write()
            .expect("sessions lock")
            .remove(instance_id);
        if let Some(s) = session {
            s.worker_stop.cancel();
            let (tx, rx) = oneshot::channel();
            if s.cmd.send(Command::Delete(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// The session of an instance, if it runs.
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
                pair_code: None,
            },
        }
    }

    /// How many running instances are in each connection state (`/metrics`).
    pub fn state_counts(&self) -> Vec<(ConnState, usize)> {
        let sessions = self.inner.sessions.read().expect("sessions lock");
        let mut counts: Vec<(ConnState, usize)> = [
            ConnState::Connecting,
            ConnState::Qr,
            ConnState::Connected,
            ConnState::Disconnected,
            ConnState::LoggedOut,
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        for s in sessions.values() {
            let state = s.status.borrow().state;
            if let Some(c) = counts.iter_mut().find(|(st, _)| *st == state) {
                c.1 += 1;
            }
        }
        counts
    }

    /// What the supervisor knows of a session's health (`None`: no session).
    pub fn health(&self, instance_id: &InstanceId) -> Option<SupervisorHealth> {
        let s = self.get(instance_id)?;
        let last_seen_at = *s.last_seen.lock().expect("last seen lock");
        let backoff = s
            .retry_at()
            .map(|at| at.saturating_duration_since(tokio::time::Instant::now()));
        Some(SupervisorHealth {
            last_seen_at,
            backoff,
        })
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

    /// Sends a text; appends `message_sent` (with `on_record`'s state change
    /// in the same transaction); returns the message id.
    pub async fn send_text(
        &self,
        instance_id: &InstanceId,
        to: &Jid,
        text: &str,
        meta: Metadata,
        on_record: Option<OnRecord>,
    ) -> Result<MessageId, SendError> {
        self.send_now(instance_id, to, Outgoing::Text(text), meta, on_record)
            .await
    }

    /// Sends media; appends `message_sent` with its kind and size (and
    /// `on_record`'s state change); returns the message id.
    pub async fn send_media(
        &self,
        instance_id: &InstanceId,
        to: &Jid,
        media: OutgoingMedia,
        meta: Metadata,
        on_record: Option<OnRecord>,
    ) -> Result<MessageId, SendError> {
        self.send_now(instance_id, to, Outgoing::Media(&media), meta, on_record)
            .await
    }

    /// Sends at once under a new message id.
    async fn send_now(
        &self,
        instance_id: &InstanceId,
        to: &Jid,
        out: Outgoing<'_>,
        meta: Metadata,
        on_record: Option<OnRecord>,
    ) -> Result<MessageId, SendError> {
        let (session, engine) = self.connected(instance_id).await?;
        let message_id = MessageId::new_ordered();
        let effects = on_record.map(|f| f(&message_id)).into_iter().collect();
        self.deliver(
            &session,
            engine.as_ref(),
            &message_id,
            to,
            out,
            meta,
            effects,
        )
        .await?;
        Ok(message_id)
    }

    /// Hands a message to the engine under `message_id`, then appends its
    /// `message_sent` with `effects` in the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        session: &Session,
        engine: &dyn EngineSession,
        message_id: &MessageId,
        to: &Jid,
        out: Outgoing<'_>,
        meta: Metadata,
        effects: Vec<Effect>,
    ) -> Result<(), SendError> {
        let config = &self.inner.config;
        session.send_input(Input::SendBegun(message_id.clone()), config);
        let taken = match out {
            Outgoing::Text(text) => engine.send_text(message_id, to, text).await,
            Outgoing::Media(media) => engine.send_media(message_id, to, media).await,
        };
        if let Err(e) = taken {
            session.send_input(Input::SendFailed(message_id.clone()), config);
            return Err(SendError::Engine(e));
        }
        let event = send::message_sent(
            &session.instance_id,
            message_id,
            to,
            out.sent(),
            chrono::Utc::now().timestamp(),
        );
        self.finish_send(session, event, meta, effects).await
    }

    /// Appends `message_sent`; receipts that came before it are then handed
    /// to the supervisor, which appends them after it (off the request path).
    async fn finish_send(
        &self,
        session: &Session,
        event: MessageSent,
        meta: Metadata,
        effects: Vec<Effect>,
    ) -> Result<(), SendError> {
        let message_id = event.message_id.clone();
        let sent = session
            .append_with(&self.inner.store, vec![event.into()], meta, effects)
            .await;
        let input = match &sent {
            Ok(()) => Input::SendRecorded(message_id),
            Err(_) => Input::SendFailed(message_id),
        };
        session.send_input(input, &self.inner.config);
        sent?;
        Ok(())
    }

    /// Queues a message behind the instance's send policy: its id is fixed
    /// now, `message_queued` and the queue row (and `on_record`'s state
    /// change) commit together, and the worker sends it when its turn comes.
    pub async fn enqueue(
        &self,
        instance_id: &InstanceId,
        to: &Jid,
        out: Outgoing<'_>,
        meta: Metadata,
        on_record: Option<OnRecord>,
    ) -> Result<MessageId, SendError> {
        let (session, _) = self.connected(instance_id).await?;
        let message_id = MessageId::new_ordered();
        let now = chrono::Utc::now();
        let event = send::message_queued(instance_id, &message_id, to, out.sent(), now.timestamp());
        let (mimetype, file_name, media) = match out {
            Outgoing::Text(_) => (None, None, None),
            Outgoing::Media(m) => (
                Some(m.mimetype.clone()),
                m.file_name.clone(),
                Some(m.data.clone()),
            ),
        };
        let row = QueuedMessage {
            seq: 0,
            message_id: message_id.clone(),
            instance_id: instance_id.clone(),
            user_id: session.user_id.clone(),
            to: to.clone(),
            kind: event.message_type,
            body: event.body.clone(),
            mimetype,
            file_name,
            media,
            meta: meta.clone(),
            queued_at: now.timestamp_millis(),
        };
        let mut effects: Vec<Effect> = vec![Box::new(OutboundChange::Enqueue(Box::new(row)))];
        effects.extend(on_record.map(|f| f(&message_id)));
        {
            let _held = session.queue_lock.lock().await;
            session
                .append_with(&self.inner.store, vec![event.into()], meta, effects)
                .await?;
        }
        session.outbox.notify_one();
        Ok(message_id)
    }

    /// The instance's queued messages, in order (without media bytes; with their size).
    pub async fn queued(
        &self,
        instance_id: &InstanceId,
    ) -> Result<Vec<(QueuedMessage, Option<u64>)>, SendError> {
        outbound::list(self.inner.store.pool(), instance_id)
            .await
            .map_err(|e| SendError::Store(e.into()))
    }

    /// Cancels a queued message (`message_status` failed, reason
    /// `cancelled`); `false` when it is not (or no longer) queued.
    pub async fn cancel_queued(
        &self,
        instance_id: &InstanceId,
        message_id: &MessageId,
        meta: Metadata,
    ) -> Result<bool, SendError> {
        let session = self.get(instance_id);
        let _held = match &session {
            Some(s) => Some(s.queue_lock.lock().await),
            None => None,
        };
        let pool = self.inner.store.pool();
        let Some(m) = outbound::find(pool, instance_id, message_id)
            .await
            .map_err(|e| SendError::Store(e.into()))?
        else {
            return Ok(false);
        };
        self.record_failures(instance_id, vec![m], FailReason::Cancelled, meta)
            .await?;
        if let Some(s) = &session {
            s.outbox.notify_one();
        }
        Ok(true)
    }

    /// Fails every queued message of the instance with `reason` (logout,
    /// deletion); returns how many.
    pub async fn fail_queued(
        &self,
        instance_id: &InstanceId,
        reason: FailReason,
        meta: Metadata,
    ) -> Result<usize, SendError> {
        let session = self.get(instance_id);
        let _held = match &session {
            Some(s) => Some(s.queue_lock.lock().await),
            None => None,
        };
        let queued: Vec<QueuedMessage> = self
            .queued(instance_id)
            .await?
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        let n = queued.len();
        if n > 0 {
            self.record_failures(instance_id, queued, reason, meta)
                .await?;
        }
        Ok(n)
    }

    /// Appends `message_status` failed for each message, removing them from the queue.
    async fn record_failures(
        &self,
        instance_id: &InstanceId,
        messages: Vec<QueuedMessage>,
        reason: FailReason,
        meta: Metadata,
    ) -> Result<(), SendError> {
        let ids: Vec<MessageId> = messages.iter().map(|m| m.message_id.clone()).collect();
        // The owner as the queue recorded it (the instance may be gone already).
        let user = messages.first().map(|m| m.user_id.clone());
        let events = messages
            .into_iter()
            .map(|m| {
                MessageStatus {
                    instance_id: instance_id.clone(),
                    message_id: m.message_id,
                    status: DeliveryStatus::Failed,
                    from: m.to,
                    from_me: true,
                    reason: Some(reason.as_str().to_owned()),
                }
                .into()
            })
            .collect();
        let mut append = Append::fact(StreamId::session(instance_id.as_str()))
            .scope(
                user.as_ref().map(UserId::as_str),
                Some(instance_id.as_str()),
            )
            .metadata(meta);
        append.events = events;
        append
            .effects
            .push(Box::new(OutboundChange::Remove(ids)) as Effect);
        self.inner.store.append(append).await?;
        Ok(())
    }

    /// Downloads a sent or received message's media into `dest` through the
    /// instance's engine (at most `max_bytes`); returns what the answer says
    /// of it (type, name) and its size.
    pub async fn fetch_media(
        &self,
        instance_id: &InstanceId,
        message_id: &MessageId,
        dest: &std::path::Path,
        max_bytes: u64,
    ) -> Result<(KeptMedia, u64), MediaFetchError> {
        let vault = self.inner.vault.get().ok_or(MediaFetchError::NotFound)?;
        let kept = vault
            .find(instance_id, message_id)
            .await
            .map_err(MediaFetchError::Engine)?
            .ok_or(MediaFetchError::NotFound)?;
        if kept.size > max_bytes {
            return Err(MediaFetchError::TooLarge(max_bytes));
        }
        let (_, engine) = self
            .connected(instance_id)
            .await
            .map_err(|_| MediaFetchError::NotConnected)?;
        match engine.fetch_media(&kept.locator, dest, max_bytes).await {
            Ok(size) => Ok((kept, size)),
            Err(e) => Err(match e.downcast_ref::<FetchMediaError>() {
                Some(FetchMediaError::TooLarge(n)) => MediaFetchError::TooLarge(*n),
                Some(FetchMediaError::Gone) => MediaFetchError::Gone,
                _ => MediaFetchError::Engine(e),
            }),
        }
    }

    /// Asks the instance's engine for a code to pair it by phone number
    /// (typed into the phone instead of scanning the QR code); the code is
    /// also recorded (`pair_code_received`). Waits up to `send_wait` for a
    /// session that is still connecting.
    pub async fn pair_with_code(
        &self,
        instance_id: &InstanceId,
        phone: &str,
    ) -> Result<String, PairCodeError> {
        let s = self.get(instance_id).ok_or(PairCodeError::NotRunning)?;
        let mut rx = s.status.subscribe();
        let state = match tokio::time::timeout(
            self.inner.config.send_wait,
            rx.wait_for(|st| st.state != ConnState::Connecting),
        )
        .await
        {
            Ok(Ok(st)) => st.state,
            _ => ConnState::Connecting,
        };
        match state {
            ConnState::Qr => {}
            ConnState::Connected => return Err(PairCodeError::AlreadyPaired),
            _ => return Err(PairCodeError::NotRunning),
        }
        let engine = s
            .engine
            .read()
            .expect("engine lock")
            .clone()
            .ok_or(PairCodeError::NotRunning)?;
        engine
            .pair_with_code(phone)
            .await
            .map_err(PairCodeError::Engine)
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

/// Whether the last of an instance's `connection_opened`,
/// `connection_closed` and `logged_out` is `connection_opened`. Looks in the
/// session stream and in the instance stream (where logs from before the
/// session streams hold them), newest first along each stream's index.
async fn last_connection_event_is_open(
    store: &EventStore,
    instance_id: &InstanceId,
) -> Result<bool, sqlx::Error> {
    let mut last: Option<(i64, String)> = None;
    for stream in [
        crate::store::StreamId::session(instance_id.as_str()),
        crate::store::StreamId::instance(instance_id.as_str()),
    ] {
        let found: Option<(i64, String)> = sqlx::query_as(
            "SELECT position, event_type FROM events WHERE stream_id = ? \
             AND event_type IN ('connection_opened', 'connection_closed', 'logged_out') \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(stream.as_str())
        .fetch_optional(store.pool())
        .await?;
        if let Some(f) = found
            && last.as_ref().is_none_or(|l| f.0 > l.0)
        {
            last = Some(f);
        }
    }
    Ok(last.is_some_and(|(_, t)| t == "connection_opened"))
}
