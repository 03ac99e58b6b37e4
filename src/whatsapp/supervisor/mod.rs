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
//! - here: the public types and [`Sessions`], the API's entry point (start,
//!   stop, status, reconnect, logout, sends).

mod driver;
mod machine;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::instances::Instance;
use crate::domain::send::{self, OnRecord, Sent};
use crate::events::{Contact, MessageSent};
use crate::ids::{InstanceId, MessageId, UserId};
use crate::store::{Effect, EventStore, Metadata};

use super::Jid;
use super::engine::{Engine, EngineSession, OutgoingMedia};
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
        let session = Arc::new(Session::new(instance, tx));
        {
            let mut map = self.inner.sessions.write().expect("sessions lock");
            if map.contains_key(&instance.id) {
                return;
            }
            map.insert(instance.id.clone(), session.clone());
        }
        let inner = self.inner.clone();
        self.inner
            .tasks
            .spawn(driver::supervise(session, inner, rx));
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
        let (session, engine) = self.connected(instance_id).await?;
        let message_id = MessageId::new_random();
        let config = &self.inner.config;
        session.send_input(Input::SendBegun(message_id.clone()), config);
        if let Err(e) = engine.send_text(&message_id, to, text).await {
            session.send_input(Input::SendFailed(message_id), config);
            return Err(SendError::Engine(e));
        }
        let event = send::message_sent(
            instance_id,
            &message_id,
            to,
            Sent::Text(text),
            chrono::Utc::now().timestamp(),
        );
        let effect = on_record.map(|f| f(&message_id));
        self.finish_send(&session, event, meta, effect).await?;
        Ok(message_id)
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
        let (session, engine) = self.connected(instance_id).await?;
        let message_id = MessageId::new_random();
        let config = &self.inner.config;
        session.send_input(Input::SendBegun(message_id.clone()), config);
        if let Err(e) = engine.send_media(&message_id, to, &media).await {
            session.send_input(Input::SendFailed(message_id), config);
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
        let effect = on_record.map(|f| f(&message_id));
        self.finish_send(&session, event, meta, effect).await?;
        Ok(message_id)
    }

    /// Appends `message_sent`; receipts that came before it are then handed
    /// to the supervisor, which appends them after it (off the request path).
    async fn finish_send(
        &self,
        session: &Session,
        event: MessageSent,
        meta: Metadata,
        effect: Option<Effect>,
    ) -> Result<(), SendError> {
        let message_id = event.message_id.clone();
        let sent = session
            .append_with(&self.inner.store, vec![event.into()], meta, effect)
            .await;
        let input = match &sent {
            Ok(()) => Input::SendRecorded(message_id),
            Err(_) => Input::SendFailed(message_id),
        };
        session.send_input(input, &self.inner.config);
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
