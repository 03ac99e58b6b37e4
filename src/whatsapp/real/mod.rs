//! The real WhatsApp engine (`WA_ENGINE=whatsapp`), on the `whatsapp-rust`
//! client: one `Bot` per running session, one SQLite session store per
//! instance at `<data>/wa/<instanceId>.db` (separate from the gateway's own
//! databases), contacts persisted next to it.
//!
//! # How it meets the supervisor
//! - A session is one `Bot`. The crate's own reconnect is used only where it
//!   is part of the protocol: the 515 stream restart right after pairing, and
//!   retrying a connect that has not got through yet (unreachable network, a
//!   failed handshake; the crate reports neither, so the session logs each
//!   failed attempt itself and the instance stays `connecting`).
//! - Once a connection was up, a drop is reported as `Closed{terminal:false}`:
//!   the supervisor stops this Bot and starts a new one with its backoff, so
//!   every drop shows in the log (`connection_closed`, `will_reconnect`) and
//!   counts against the crash-loop guard.
//! - Terminal states map to `Closed{terminal:true}` with a reason
//!   (`qr_timeout`, `replaced`, `temporary_ban`, `client_outdated`,
//!   `connect_failure_<code>`) or to `LoggedOut` (unlinked by the phone or
//!   refused as logged out), after which the supervisor deletes the store.
//! - The web-client version is resolved by the engine, never by the crate
//!   during a connect (a failed fetch there fails the connect): a pinned
//!   `WA_WHATSAPP_VERSION`, else one fetch per day shared by all instances,
//!   falling back to the last known version and then to the crate's own.

mod acks;
mod contacts;
mod groups;
mod kinds;
pub mod map;
mod media;
mod polls;
pub mod proxy;
pub mod session_store;

pub use media::HttpHook;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::client::Client;
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::transport::{
    TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory,
};
use whatsapp_rust::types::events::{Event, EventHandler, EventInterest, EventKind};
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{SendOptions, UploadOptions};

use crate::events::{Contact, ReasonCode, SessionReason};
use crate::ids::{InstanceId, MessageId};

use self::acks::{Acks, Settled};
use self::contacts::{ContactBook, Learned};
use self::polls::{KeptPoll, PollBook};
use super::Jid;
use super::engine::{
    Engine, EngineEvent, EngineSession, EventSink, IncomingMessage, KeptMedia, MediaKind,
    OutgoingContent, OutgoingMedia, Receipt,
};
use super::groups::{
    GroupError, GroupInfo, InviteLink, NumberCheck, ParticipantAction, ParticipantResult,
};
use crate::kinds::{ChatState, Happening};

/// A transport factory given from code (tests, benchmarks): every session
/// connects through it instead of a websocket. Never read from the environment.
#[derive(Clone)]
pub struct TransportHook(pub Arc<dyn TransportFactory>);

impl std::fmt::Debug for TransportHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransportHook")
    }
}

/// Settings of the real engine.
#[derive(Debug, Clone)]
pub struct RealConfig {
    /// Where the session stores live (`<data>/wa`).
    pub dir: PathBuf,
    /// Websocket URL of WhatsApp's servers (`None` = the crate's default).
    pub url: Option<String>,
    /// A pinned web-client version; `None` = resolve it (see the module docs).
    pub version: Option<(u32, u32, u32)>,
    /// A transport given from code (tests); `None` = websocket to `url`.
    pub transport: Option<TransportHook>,
    /// An HTTP client for media given from code (tests); `None` = the
    /// crate's own (ureq, full certificate checks).
    pub http: Option<HttpHook>,
    /// How long a sent message may wait for the server's ack before it is
    /// reported `failed` (`no_server_ack`).
    pub ack_timeout: Duration,
    /// How often a connected session pings WhatsApp's server.
    pub keepalive_interval: Duration,
    /// A ping unanswered this long closes the connection (`keepalive_timeout`).
    pub keepalive_timeout: Duration,
}

/// How long a resolved web-client version is trusted.
const VERSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long one version fetch may take.
const VERSION_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping session may take to flush and close.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A WhatsApp Web version: primary, secondary, tertiary.
type Version = (u32, u32, u32);

struct Shared {
    config: RealConfig,
    transport: Arc<dyn TransportFactory>,
    /// Media uploads and downloads of every session without a proxy
    /// (the hook's client when one is given from code).
    http: Arc<dyn whatsapp_rust::http::HttpClient>,
    /// Where each instance's proxy is read when its session starts.
    proxies: Option<Arc<dyn proxy::ProxySource>>,
    /// Whether a proxy may resolve to a private address (`WA_PROXY_ALLOW_PRIVATE`).
    proxy_allow_private: bool,
    /// The last resolved version and when it was resolved.
    version: Mutex<Option<(Version, Instant)>>,
    /// Every session's Signal sessions, sent messages and message secrets
    /// (`shared.db`).
    messages: session_store::SharedStore,
}

/// The real engine; cheap to clone.
#[derive(Clone)]
pub struct RealEngine {
    shared: Arc<Shared>,
}

impl RealEngine {
    /// An engine over `config`; creates the store directory.
    pub fn new(config: RealConfig) -> anyhow::Result<Self> {
        crate::secrets::private_dir(&config.dir)?;
        let transport: Arc<dyn TransportFactory> = match &config.transport {
            Some(hook) => hook.0.clone(),
            None => {
                let mut factory = TokioWebSocketTransportFactory::new();
                if let Some(url) = &config.url {
                    factory = factory.with_url(url.clone());
                }
                Arc::new(factory)
            }
        };
        let http = media::http_client(config.http.as_ref());
        let messages = session_store::SharedStore::open(&config.dir.join("shared.db"))
            .context("Failed to open the sessions' message log")?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                transport,
                http,
                proxies: None,
                proxy_allow_private: true,
                version: Mutex::new(None),
                messages,
            }),
        })
    }

    /// Sessions connect through their instance's proxy, read from `source`
    /// at each start. Call right after [`RealEngine::new`].
    pub fn with_proxies(
        mut self,
        source: Arc<dyn proxy::ProxySource>,
        allow_private: bool,
    ) -> Self {
        let shared = Arc::get_mut(&mut self.shared).expect("with_proxies right after new");
        shared.proxies = Some(source);
        shared.proxy_allow_private = allow_private;
        self
    }

    /// The transport and HTTP client of one session: through the
    /// instance's proxy when it has one (unless a transport is given from
    /// code: the tests' in-memory one has no network to proxy).
    async fn connection_for(
        &self,
        instance_id: &InstanceId,
    ) -> anyhow::Result<(
        Arc<dyn TransportFactory>,
        Arc<dyn whatsapp_rust::http::HttpClient>,
    )> {
        let proxy = match &self.shared.proxies {
            Some(source) => source.proxy_for(instance_id).await?,
            None => None,
        };
        let Some(proxy) = proxy else {
            return Ok((self.shared.transport.clone(), self.shared.http.clone()));
        };
        let public = proxy.public();
        // A client given from code (the tests' fake CDN) wins, as the transport hook does.
        let http: Arc<dyn whatsapp_rust::http::HttpClient> = match &self.shared.config.http {
            Some(_) => self.shared.http.clone(),
            None => Arc::new(proxy::http_client(&proxy)?),
        };
        if self.shared.config.transport.is_some() {
            tracing::debug!(instance = %instance_id, proxy = %public.url,
                "a transport given from code: the proxy is not used for the websocket");
            return Ok((self.shared.transport.clone(), http));
        }
        tracing::info!(instance = %instance_id, proxy = %public.url, auth = public.auth,
            "connecting through the instance's proxy");
        let factory = proxy::ProxyTransportFactory::new(
            proxy,
            self.shared.config.url.clone(),
            self.shared.proxy_allow_private,
        );
        Ok((Arc::new(factory), http))
    }

    /// The session store file of an instance.
    pub fn store_path(&self, instance_id: &str) -> PathBuf {
        self.shared.config.dir.join(format!("{instance_id}.db"))
    }

    fn polls_path(&self, instance_id: &str) -> PathBuf {
        self.shared
            .config
            .dir
            .join(format!("{instance_id}.polls.json"))
    }

    fn contacts_path(&self, instance_id: &str) -> PathBuf {
        self.shared
            .config
            .dir
            .join(format!("{instance_id}.contacts.json"))
    }

    /// The web-client version to announce (never fails; see the module docs).
    async fn version(&self) -> (u32, u32, u32) {
        if let Some(v) = self.shared.config.version {
            return v;
        }
        let mut cached = self.shared.version.lock().await;
        if let Some((v, at)) = *cached
            && at.elapsed() < VERSION_TTL
        {
            return v;
        }
        let fetched = tokio::time::timeout(VERSION_FETCH_TIMEOUT, fetch_web_version()).await;
        let v = match fetched {
            Ok(Ok(v)) => {
                tracing::info!(version = %format!("{}.{}.{}", v.0, v.1, v.2), "resolved the WhatsApp web version");
                *cached = Some((v, Instant::now()));
                return v;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "failed to fetch the WhatsApp web version; using the last known one");
                cached.map(|c| c.0).unwrap_or_else(builtin_version)
            }
            Err(_) => {
                tracing::warn!(
                    "fetching the WhatsApp web version timed out; using the last known one"
                );
                cached.map(|c| c.0).unwrap_or_else(builtin_version)
            }
        };
        // Try again in an hour rather than on every connect.
        let retry_at = Instant::now()
            .checked_sub(VERSION_TTL - Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        *cached = Some((v, retry_at));
        v
    }
}

/// The version the crate itself would announce without a fetch.
fn builtin_version() -> (u32, u32, u32) {
    let d = whatsapp_rust::wacore::store::Device::new();
    (
        d.app_version_primary,
        d.app_version_secondary,
        d.app_version_tertiary,
    )
}

/// Reads the current web-client revision from WhatsApp Web's service worker.
async fn fetch_web_version() -> anyhow::Result<(u32, u32, u32)> {
    let client = reqwest::Client::builder()
        .timeout(VERSION_FETCH_TIMEOUT)
        .user_agent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
        .build()
        .context("Failed to build the HTTP client")?;
    let body = client
        .get("https://web.whatsapp.com/sw.js")
        .header("sec-fetch-site", "none")
        .send()
        .await
        .context("Failed to fetch sw.js")?
        .error_for_status()
        .context("sw.js answered an error")?
        .text()
        .await
        .context("Failed to read sw.js")?;
    whatsapp_rust::version::parse_sw_js(&body).context("no client_revision in sw.js")
}

/// Deletes a session store: the database and its WAL/SHM files, and the
/// books beside it (`others`: contacts, polls).
fn remove_files(db: &Path, others: &[PathBuf]) -> anyhow::Result<()> {
    let mut paths = vec![db.to_path_buf()];
    paths.extend_from_slice(others);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        paths.push(PathBuf::from(p));
    }
    for p in paths {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("Failed to delete {}", p.display())),
        }
    }
    Ok(())
}

#[async_trait]
impl Engine for RealEngine {
    fn name(&self) -> &'static str {
        "whatsapp"
    }

    async fn start(
        &self,
        instance_id: &InstanceId,
        events: EventSink,
    ) -> anyhow::Result<Arc<dyn EngineSession>> {
        // Read at every start: a changed proxy takes effect on the next connect.
        let (transport, http) = self.connection_for(instance_id).await?;
        let instance_id = instance_id.as_str();
        let path = self.store_path(instance_id);
        let path_str = path
            .to_str()
            .context("the data dir path is not valid UTF-8")?
            .to_string();
        // Owner-only before the engine's SQLite opens it (its -wal/-shm follow).
        crate::secrets::precreate_private_file(&path)?;
        let backend = SqliteStore::new(&path_str)
            .await
            .with_context(|| format!("Failed to open the session store {path_str}"))?;
        let backend =
            session_store::SessionStore::new(backend, instance_id, self.shared.messages.clone());
        let version = self.version().await;
        let dialer = Arc::new(Dialer {
            inner: transport,
            instance_id: instance_id.to_string(),
            host: server_host(self.shared.config.url.as_deref()),
            sink: events.clone(),
            attempts: AtomicU32::new(0),
            settled: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let bot = Bot::builder()
            .with_backend(backend)
            .with_transport_factory(DialerRef(dialer.clone()))
            .with_http_client(media::SharedHttp(http))
            .with_version(version)
            .with_event_handler(Forward {
                queue: tx,
                dialer: dialer.clone(),
            })
            .build()
            .await
            .context("Failed to build the WhatsApp client")?;
        let client = bot.client();
        let book = Arc::new(ContactBook::open(self.contacts_path(instance_id)).await);
        let polls = Arc::new(PollBook::open(self.polls_path(instance_id)).await);
        let handle = bot.spawn();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let acks = Arc::new(Acks::new(self.shared.config.ack_timeout));
        let pairing_phone = Arc::new(std::sync::Mutex::new(None));
        let online = Arc::new(AtomicBool::new(false));
        let driver = Driver {
            online: online.clone(),
            acks: acks.clone(),
            instance_id: instance_id.to_string(),
            client: client.clone(),
            sink: events.clone(),
            pairing_phone: pairing_phone.clone(),
            book: book.clone(),
            polls: polls.clone(),
            stopping: stopping.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(
            Keepalive {
                client: client.clone(),
                sink: driver.sink.clone(),
                online: online.clone(),
                stopping: stopping.clone(),
                stop: stop.clone(),
                interval: self.shared.config.keepalive_interval,
                timeout: self.shared.config.keepalive_timeout,
                instance_id: instance_id.to_string(),
            }
            .run(),
        );
        let task = tokio::spawn(driver.run(rx, handle));
        Ok(Arc::new(RealSession {
            acks,
            instance_id: instance_id.to_string(),
            client,
            sink: events,
            pairing_phone,
            book,
            polls,
            stopping,
            stop,
            task: Mutex::new(Some(task)),
        }))
    }

    async fn remove_store(&self, instance_id: &InstanceId) -> anyhow::Result<()> {
        let instance_id = instance_id.as_str();
        let db = self.store_path(instance_id);
        let others = [
            self.contacts_path(instance_id),
            self.polls_path(instance_id),
        ];
        self.shared
            .messages
            .forget(instance_id)
            .await
            .context("Failed to delete the session's sent messages")?;
        tokio::task::spawn_blocking(move || remove_files(&db, &others))
            .await
            .context("the delete task failed")?
    }
}

/// Wraps the transport factory: counts connect attempts and logs the failed
/// ones, which the crate retries silently.
struct Dialer {
    inner: Arc<dyn TransportFactory>,
    instance_id: String,
    /// The server's host name, for the plain-words error.
    host: String,
    /// Where failed attempts are reported (`connect_failed`).
    sink: EventSink,
    attempts: AtomicU32,
    /// Whether the last attempt needs no report at its retry: it got through
    /// (a QR, paired, logged in) or its failure was reported already.
    settled: AtomicBool,
}

impl Dialer {
    /// Tells the supervisor (never waits: the client's connect loop must not stall).
    fn report(&self, error: String, attempt: u32) {
        let _ = self
            .sink
            .try_send(EngineEvent::ConnectFailed { error, attempt });
    }
}

/// The host of the WhatsApp server URL (`web.whatsapp.com` by default).
fn server_host(url: Option<&str>) -> String {
    url.and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "web.whatsapp.com".to_string())
}

/// A transport error in plain words: what an operator can act on, with the
/// host it was about (`DNS lookup failed for web.whatsapp.com`).
pub fn plain_connect_error(host: &str, raw: &str) -> String {
    let lower = raw.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&[
        "lookup address",
        "name or service not known",
        "nodename nor servname",
        "no address associated",
        "name resolution",
        "dns",
    ]) {
        format!("DNS lookup failed for {host}")
    } else if has(&["connection refused"]) {
        format!("{host} refused the connection")
    } else if has(&[
        "network is unreachable",
        "no route to host",
        "host is unreachable",
    ]) {
        format!("no network route to {host}")
    } else if has(&["timed out", "timeout"]) {
        format!("timed out connecting to {host}")
    } else if has(&["certificate", "tls", "ssl"]) {
        format!("TLS handshake with {host} failed: {raw}")
    } else if has(&["connection reset", "broken pipe", "unexpected eof"]) {
        format!("{host} closed the connection while connecting")
    } else {
        format!("could not connect to {host}: {raw}")
    }
}

/// Pings WhatsApp's server while the session is logged in: a ping
/// unanswered within the timeout means the socket is dead although nothing
/// said so, and the session reports `Closed` (`keepalive_timeout`, not
/// terminal) so that the supervisor reconnects. The crate's own keepalive
/// (15–30 s, then a 20 s dead-socket check, after which it reconnects by
/// itself without any event) stays in place; this one is the gateway's, so
/// that the drop is seen, recorded and timed by `WA_KEEPALIVE_*`.
struct Keepalive {
    client: Arc<Client>,
    sink: EventSink,
    /// Logged in (set by the driver on `Connected`, cleared on a drop).
    online: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    stop: CancellationToken,
    interval: Duration,
    timeout: Duration,
    instance_id: String,
}

impl Keepalive {
    async fn run(self) {
        use whatsapp_rust::IqError;
        use whatsapp_rust::wacore::iq::keepalive::KeepaliveSpec;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            if !self.online.load(Ordering::Relaxed) {
                continue;
            }
            let ping = self
                .client
                .execute(KeepaliveSpec::with_timeout(self.timeout));
            // A backstop in case the client's own IQ timeout does not fire.
            let answer = tokio::select! {
                _ = self.stop.cancelled() => return,
                a = tokio::time::timeout(self.timeout + Duration::from_secs(1), ping) => a,
            };
            let event = match answer {
                // Any answer, an error included, means the server is there.
                Ok(Ok(())) | Ok(Err(IqError::ServerError { .. })) => EngineEvent::Alive,
                Ok(Err(IqError::Timeout)) | Err(_) => {
                    if !self.online.load(Ordering::Relaxed) {
                        // The connection went away meanwhile: the drop is reported already.
                        continue;
                    }
                    tracing::warn!(instance = %self.instance_id, timeout_ms = self.timeout.as_millis() as u64,
                        "WhatsApp did not answer a keepalive ping: closing the connection to reconnect");
                    self.online.store(false, Ordering::Relaxed);
                    EngineEvent::Closed {
                        reason: ReasonCode::KeepaliveTimeout.into(),
                        terminal: false,
                    }
                }
                // Not connected, or the connection is closing: the client reports that itself.
                Ok(Err(_)) => continue,
            };
            let closing = matches!(event, EngineEvent::Closed { .. });
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            tokio::select! {
                _ = self.sink.send(event) => {}
                _ = self.stop.cancelled() => return,
            }
            if closing {
                return;
            }
        }
    }
}

struct DialerRef(Arc<Dialer>);

#[async_trait]
impl TransportFactory for DialerRef {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn Transport>,
            whatsapp_rust::async_channel::Receiver<TransportEvent>,
        ),
        anyhow::Error,
    > {
        let d = &self.0;
        let attempt = d.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        if attempt > 1 && !d.settled.swap(false, Ordering::Relaxed) {
            tracing::warn!(instance = %d.instance_id, attempt = attempt - 1,
                "connect attempt failed (no login); the client retries with backoff");
            d.report(
                format!(
                    "no login from {}: the connection failed or timed out before logging in",
                    d.host
                ),
                attempt - 1,
            );
        }
        let result = d.inner.create_transport().await;
        if let Err(e) = &result {
            let raw = format!("{e:#}");
            tracing::warn!(instance = %d.instance_id, attempt, error = %raw,
                "could not reach WhatsApp; the client retries with backoff");
            d.settled.store(true, Ordering::Relaxed);
            d.report(plain_connect_error(&d.host, &raw), attempt);
        }
        result
    }
}

/// Puts the client's events, in order, on the session's queue.
struct Forward {
    queue: mpsc::UnboundedSender<Arc<Event>>,
    dialer: Arc<Dialer>,
}

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        // Marked here, on the client's own dispatch, not when the queue gets
        // to it: the 515 restart after pairing must not count as a failure.
        if matches!(
            &*event,
            Event::PairingQrCode(_) | Event::PairSuccess(_) | Event::Connected(_)
        ) {
            self.dialer.settled.store(true, Ordering::Relaxed);
        }
        let _ = self.queue.send(event);
    }

    /// Only what [`Driver::on_event`] maps: the bus then skips building the rest.
    fn interest(&self) -> EventInterest {
        EventInterest::of(&[
            EventKind::PairingQrCode,
            EventKind::PairSuccess,
            EventKind::PairError,
            EventKind::Connected,
            EventKind::Disconnected,
            EventKind::LoggedOut,
            EventKind::StreamReplaced,
            EventKind::TemporaryBan,
            EventKind::ClientOutdated,
            EventKind::ConnectFailure,
            EventKind::PairingQrCodesExhausted,
            EventKind::Messages,
            EventKind::ServerAck,
            EventKind::Receipt,
            EventKind::ContactUpdate,
            EventKind::PushNameUpdate,
            EventKind::HistorySync,
            EventKind::PairingCode,
            EventKind::PairingCodeRefresh,
            EventKind::PairingCodeError,
            EventKind::GroupUpdate,
            EventKind::ChatPresence,
        ])
    }
}

/// One session's event loop: maps client events to engine events until the
/// session stops or the client ends.
struct Driver {
    /// Logged in; read by the [`Keepalive`].
    online: Arc<AtomicBool>,
    instance_id: String,
    client: Arc<Client>,
    sink: EventSink,
    book: Arc<ContactBook>,
    polls: Arc<PollBook>,
    stopping: Arc<AtomicBool>,
    stop: CancellationToken,
    acks: Arc<Acks>,
    /// The phone number a pairing code was asked for (to ask again on a refresh).
    pairing_phone: Arc<std::sync::Mutex<Option<String>>>,
}

impl Driver {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Arc<Event>>, handle: BotHandle) {
        let mut handle = std::pin::pin!(handle);
        loop {
            let due = self.acks.next_due();
            let timer = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    self.client.disconnect().await;
                    if tokio::time::timeout(STOP_TIMEOUT, handle.as_mut()).await.is_err() {
                        tracing::warn!(instance = %self.instance_id, "the client did not stop in time; aborting it");
                    }
                    return;
                }
                ev = rx.recv() => match ev {
                    Some(ev) => self.on_event(&ev).await,
                    None => return,
                },
                _ = handle.as_mut() => {
                    // The client ended by itself: report what it said last.
                    while let Ok(ev) = rx.try_recv() {
                        self.on_event(&ev).await;
                    }
                    self.emit(EngineEvent::Closed { reason: ReasonCode::ClientStopped.into(), terminal: false }).await;
                    return;
                }
                _ = timer => {
                    for (id, chat) in self.acks.overdue(Instant::now()) {
                        tracing::warn!(instance = %self.instance_id, message = %id, "no server ack in time; the send failed");
                        self.emit(EngineEvent::SendFailed {
                            message_id: MessageId::from_stored(id),
                            chat,
                            reason: "no_server_ack".into(),
                        })
                        .await;
                    }
                }
                // A send started waiting: re-arm the timer.
                _ = self.acks.changed.notified() => {}
            }
        }
    }

    /// Reports to the supervisor, unless the session is stopping (a full
    /// queue must not hold up a stop the supervisor is waiting for).
    async fn emit(&self, event: EngineEvent) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        tokio::select! {
            _ = self.sink.send(event) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    async fn on_event(&self, event: &Event) {
        let id = &self.instance_id;
        match event {
            Event::PairingQrCode(q) => {
                self.emit(EngineEvent::Qr {
                    code: q.code.clone(),
                })
                .await;
            }
            Event::PairSuccess(p) => {
                tracing::info!(instance = %id, phone = %p.id.user, "paired");
            }
            Event::PairError(p) => {
                tracing::warn!(instance = %id, error = %p.error, "pairing failed");
            }
            Event::PairingCode(c) => {
                let phone = self.pairing_phone.lock().expect("phone lock").clone();
                self.emit(EngineEvent::PairCode {
                    code: format_pair_code(&c.code),
                    phone: phone.unwrap_or_default(),
                })
                .await;
            }
            Event::PairingCodeRefresh(_) => {
                // WhatsApp retired the code: ask for the next one for the
                // same number (it comes back as a PairingCode event).
                let phone = self.pairing_phone.lock().expect("phone lock").clone();
                if let Some(phone) = phone {
                    let client = self.client.clone();
                    let id = id.clone();
                    tokio::spawn(async move {
                        if let Err(e) = request_pair_code(&client, &phone).await {
                            tracing::warn!(instance = %id, error = %e, "could not refresh the pairing code");
                        }
                    });
                }
            }
            Event::PairingCodeError(e) => {
                tracing::warn!(instance = %id, error = %e.error, "pairing by code failed");
            }
            Event::Connected(_) => {
                self.online.store(true, Ordering::Relaxed);
                let phone = self.client.pn().map(|j| j.user.to_string());
                self.emit(EngineEvent::Connected { phone }).await;
            }
            Event::Disconnected(d) => {
                self.online.store(false, Ordering::Relaxed);
                tracing::info!(instance = %id, reason = %d.reason, "connection dropped");
                self.emit(EngineEvent::Closed {
                    reason: SessionReason::with_detail(
                        ReasonCode::ConnectionLost,
                        d.reason.to_string(),
                    ),
                    terminal: false,
                })
                .await;
            }
            Event::LoggedOut(l) => {
                let reason = if l.on_connect {
                    SessionReason::with_detail(
                        ReasonCode::LoggedOutOnConnect,
                        format!("{:?}", l.reason),
                    )
                } else {
                    ReasonCode::LoggedOut.into()
                };
                self.emit(EngineEvent::LoggedOut { reason }).await;
            }
            Event::StreamReplaced(_) => {
                self.emit(EngineEvent::Closed {
                    reason: ReasonCode::Replaced.into(),
                    terminal: true,
                })
                .await;
            }
            Event::TemporaryBan(b) => {
                tracing::warn!(instance = %id, code = ?b.code, expire_s = b.expire.num_seconds(), "temporarily banned");
                self.emit(EngineEvent::Closed {
                    reason: ReasonCode::TemporaryBan.into(),
                    terminal: true,
                })
                .await;
            }
            Event::ClientOutdated(_) => {
                self.emit(EngineEvent::Closed {
                    reason: ReasonCode::ClientOutdated.into(),
                    terminal: true,
                })
                .await;
            }
            Event::ConnectFailure(f) => {
                tracing::warn!(instance = %id, reason = ?f.reason, message = ?f.message, "WhatsApp refused the connection");
                if f.reason.is_logged_out() {
                    self.emit(EngineEvent::LoggedOut {
                        reason: SessionReason::with_detail(
                            ReasonCode::ConnectFailure,
                            format!("{:?}", f.reason),
                        ),
                    })
                    .await;
                } else {
                    self.emit(EngineEvent::Closed {
                        reason: SessionReason::with_detail(
                            ReasonCode::ConnectFailure,
                            format!("{:?}", f.reason),
                        ),
                        terminal: !f.reason.should_reconnect(),
                    })
                    .await;
                }
            }
            Event::PairingQrCodesExhausted(_) => {
                self.emit(EngineEvent::Closed {
                    reason: ReasonCode::QrTimeout.into(),
                    terminal: true,
                })
                .await;
            }
            Event::GroupUpdate(u) => {
                let own = self.client.pn().map(|j| j.user.to_string());
                if let Some(n) = groups::notice(u, own.as_deref()) {
                    self.emit(EngineEvent::Group(n)).await;
                }
            }
            Event::Messages(batch) => {
                for m in batch.messages.iter() {
                    if let Some(event) = self.incoming(&m.message, &m.info).await {
                        // The media handle first: kept before anyone hears of the message.
                        if let EngineEvent::Message(msg) = &event
                            && let Some(kept) = msg.media.as_ref().and_then(|d| {
                                media::kept_from_message(m.message.get_base_message(), d)
                            })
                        {
                            self.emit(EngineEvent::MediaKept {
                                message_id: msg.message_id.clone(),
                                media: kept,
                            })
                            .await;
                        }
                        self.emit(event).await;
                    }
                }
            }
            Event::ChatPresence(p) => {
                use whatsapp_rust::types::presence::{ChatPresence, ChatPresenceMedia};
                let state = match (&p.state, &p.media) {
                    (ChatPresence::Composing, ChatPresenceMedia::Audio) => ChatState::Recording,
                    (ChatPresence::Composing, _) => ChatState::Typing,
                    (ChatPresence::Paused, _) => ChatState::Paused,
                };
                let from = self.phone_jid(&p.source.sender).await;
                let chat = if p.source.is_group {
                    Jid::from_raw(p.source.chat.to_non_ad_string())
                } else {
                    from.clone()
                };
                self.emit(EngineEvent::Happened(Box::new(Happening::Presence {
                    chat,
                    from,
                    state,
                })))
                .await;
            }
            Event::ServerAck(ack) if ack.class.as_deref() == Some("message") => {
                let chat = match &ack.from {
                    Some(j) => self.phone_jid(j).await,
                    None => Jid::from_raw(""),
                };
                let settled = self.acks.settle(&ack.id);
                if settled == Settled::AlreadyFailed {
                    tracing::info!(instance = %id, message = %ack.id, "a late server ack for a send reported failed");
                    return;
                }
                let message_id = MessageId::from_stored(ack.id.clone());
                match &ack.error {
                    Some(code) => {
                        self.acks.mark_failed(&ack.id);
                        self.emit(EngineEvent::SendFailed {
                            message_id,
                            chat,
                            reason: format!("nack_{code}"),
                        })
                        .await;
                    }
                    None => {
                        self.emit(EngineEvent::Receipt {
                            message_ids: vec![message_id],
                            receipt: Receipt::Sent,
                            chat,
                        })
                        .await;
                    }
                }
            }
            Event::Receipt(r) => {
                use whatsapp_rust::wacore::types::presence::ReceiptType;
                let receipt = match r.r#type {
                    ReceiptType::Delivered => Receipt::Delivered,
                    ReceiptType::Read => Receipt::Read,
                    ReceiptType::Played => Receipt::Played,
                    _ => return,
                };
                let chat = self.phone_jid(&r.source.chat).await;
                for m in &r.message_ids {
                    // It arrived: no longer waiting for the server's word.
                    self.acks.settle(m);
                }
                self.emit(EngineEvent::Receipt {
                    message_ids: r
                        .message_ids
                        .iter()
                        .cloned()
                        .map(MessageId::from_stored)
                        .collect(),
                    receipt,
                    chat,
                })
                .await;
            }
            Event::ContactUpdate(c) => {
                let phone = match c.action.pn_jid.as_deref() {
                    Some(pn) => pn.split('@').next().unwrap_or_default().to_string(),
                    None => self.phone_jid(&c.jid).await.user().to_string(),
                };
                let name = c
                    .action
                    .full_name
                    .clone()
                    .or_else(|| c.action.first_name.clone())
                    .unwrap_or_default();
                self.learn(vec![Learned::Name { phone, name }]).await;
            }
            Event::PushNameUpdate(p) => {
                let phone = self.phone_jid(&p.jid).await.user().to_string();
                self.learn(vec![Learned::PushName {
                    phone,
                    push_name: p.new_push_name.clone(),
                }])
                .await;
            }
            Event::HistorySync(h) => {
                let h = h.clone();
                let names = tokio::task::spawn_blocking(move || {
                    h.get()
                        .map(|hs| {
                            hs.pushnames
                                .iter()
                                .filter_map(|p| Some((p.id.clone()?, p.pushname.clone()?)))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                })
                .await
                .unwrap_or_default();
                let mut facts = Vec::with_capacity(names.len());
                for (jid, push_name) in names {
                    let phone = match jid.parse::<whatsapp_rust::Jid>() {
                        Ok(j) => self.phone_jid(&j).await.user().to_string(),
                        Err(_) => continue,
                    };
                    facts.push(Learned::PushName { phone, push_name });
                }
                self.learn(facts).await;
            }
            _ => {}
        }
    }

    async fn learn(&self, facts: Vec<Learned>) {
        if facts.is_empty() {
            return;
        }
        let changed = self.book.learn(facts).await;
        if !changed.is_empty() {
            self.emit(EngineEvent::Contacts(changed)).await;
        }
    }

    /// A person's JID by phone number where known: `@lid` JIDs are mapped
    /// through the client's LID↔phone table; device suffixes are dropped.
    async fn phone_jid(&self, jid: &whatsapp_rust::Jid) -> Jid {
        if jid.is_lid()
            && let Ok(Some(entry)) = self.client.get_lid_pn_entry(jid).await
        {
            return Jid::from_phone(&entry.phone_number);
        }
        Jid::from_raw(jid.to_non_ad_string())
    }

    /// The engine's view of a received message (a new message, or a
    /// reaction, edit or revoke); `None` for our own messages and anything
    /// that is not user content.
    async fn incoming(
        &self,
        message: &wa::Message,
        info: &whatsapp_rust::wacore::types::message::MessageInfo,
    ) -> Option<EngineEvent> {
        if info.source.is_from_me {
            return None;
        }
        let kind = map::classify(message.get_base_message())?;
        let from = match &info.source.sender_alt {
            Some(alt) if info.source.sender.is_lid() && !alt.is_lid() => {
                Jid::from_raw(alt.to_non_ad_string())
            }
            _ => self.phone_jid(&info.source.sender).await,
        };
        let chat = if info.source.is_group {
            Jid::from_raw(info.source.chat.to_non_ad_string())
        } else if info.source.chat.is_lid() {
            from.clone()
        } else {
            self.phone_jid(&info.source.chat).await
        };
        let push_name = Some(info.push_name.clone()).filter(|p| !p.is_empty());
        if let Some(p) = &push_name
            && !from.is_group()
        {
            self.learn(vec![Learned::PushName {
                phone: from.user().to_string(),
                push_name: p.clone(),
            }])
            .await;
        }
        let from_lid = info
            .source
            .sender
            .is_lid()
            .then(|| Jid::from_raw(info.source.sender.to_non_ad_string()));
        let timestamp = info.timestamp.timestamp();
        if let Some(update) = message.get_base_message().poll_update_message.as_option() {
            return self
                .poll_vote(update, &info.source.sender, from, chat, timestamp)
                .await;
        }
        if let map::Incoming::Message { extras, .. } = &kind
            && let Some(poll) = &extras.poll
            && let Some(secret) = map::message_secret(message)
        {
            let creator = info.source.sender.to_non_ad_string();
            let kept = KeptPoll::new(&secret, poll.options.clone(), creator);
            self.polls.keep(&info.id, kept).await;
        }
        let happening = match kind {
            map::Incoming::Message {
                message_type,
                body,
                media,
                extras,
            } => {
                return Some(EngineEvent::Message(Box::new(IncomingMessage {
                    message_id: MessageId::from_stored(info.id.clone()),
                    from,
                    from_lid,
                    chat,
                    body,
                    message_type,
                    timestamp,
                    push_name,
                    media,
                    extras,
                })));
            }
            map::Incoming::Reaction { target, emoji } => Happening::Reaction {
                message_id: MessageId::from_stored(info.id.clone()),
                chat,
                from,
                from_me: false,
                target_message_id: target,
                emoji,
                timestamp,
            },
            map::Incoming::Edit { target, text } => Happening::Edit {
                message_id: target,
                chat,
                from,
                from_me: false,
                text,
                timestamp,
            },
            map::Incoming::Revoke { target } => Happening::Revoke {
                message_id: target,
                chat,
                from,
                from_me: false,
                timestamp,
            },
        };
        Some(EngineEvent::Happened(Box::new(happening)))
    }
}

impl Driver {
    /// A vote on a poll this instance keeps (sent or received), opened with
    /// the poll's secret; `None` for a poll it does not know or a vote that
    /// does not open (logged, never guessed).
    async fn poll_vote(
        &self,
        update: &wa::message::PollUpdateMessage,
        voter: &whatsapp_rust::Jid,
        from: Jid,
        chat: Jid,
        timestamp: i64,
    ) -> Option<EngineEvent> {
        let poll_id = update.poll_creation_message_key.as_option()?.id.clone()?;
        let Some(poll) = self.polls.get(&poll_id).await else {
            tracing::info!(instance = %self.instance_id, poll = %poll_id,
                "a vote on a poll this instance does not keep; dropped");
            return None;
        };
        let vote = update.vote.as_option()?;
        let ciphertext = whatsapp_rust::wacore::poll::PollVoteCiphertext {
            enc_payload: vote.enc_payload.as_deref()?,
            enc_iv: vote.enc_iv.as_deref()?,
        };
        let creator = poll.creator.parse::<whatsapp_rust::Jid>().ok()?;
        let secret = poll.secret()?;
        match self
            .client
            .polls()
            .decrypt_vote(ciphertext, &secret, &poll_id, &creator, voter)
            .await
        {
            Ok(hashes) => Some(EngineEvent::Happened(Box::new(Happening::PollVote {
                poll_message_id: MessageId::from_stored(poll_id),
                chat,
                voter: from,
                from_me: false,
                selected_options: poll.chosen(&hashes),
                timestamp,
            }))),
            Err(e) => {
                tracing::warn!(instance = %self.instance_id, poll = %poll_id, error = %e,
                    "a poll vote that does not open; dropped");
                None
            }
        }
    }
}

/// Asks the client for a pairing code for `phone` (digits), dropping any
/// code still outstanding; returns the code as the client gives it (8 characters).
async fn request_pair_code(client: &Arc<Client>, phone: &str) -> anyhow::Result<String> {
    use whatsapp_rust::pair_code::PairCodeOptions;
    client.cancel_pair_code().await;
    let code = client
        .pair_with_code(PairCodeOptions {
            phone_number: phone.to_string(),
            ..Default::default()
        })
        .await?;
    Ok(code)
}

/// A pairing code as WhatsApp shows it: `ABCD-EFGH`.
pub fn format_pair_code(code: &str) -> String {
    let code = code.to_ascii_uppercase();
    if code.len() == 8 && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code
    }
}

/// One running session of one instance.
struct RealSession {
    acks: Arc<Acks>,
    instance_id: String,
    client: Arc<Client>,
    /// The session's events (media kept after an upload).
    sink: EventSink,
    /// The phone number a pairing code was asked for.
    pairing_phone: Arc<std::sync::Mutex<Option<String>>>,
    book: Arc<ContactBook>,
    /// Poll secrets, to open votes.
    polls: Arc<PollBook>,
    /// Set before a deliberate stop or logout: events it causes are not reported.
    stopping: Arc<AtomicBool>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl RealSession {
    fn to_wa(&self, to: &Jid) -> anyhow::Result<whatsapp_rust::Jid> {
        to.as_str()
            .parse::<whatsapp_rust::Jid>()
            .map_err(|e| anyhow::anyhow!("bad recipient {to}: {e}"))
    }

    /// Tells the supervisor to keep the handle of media we uploaded (for
    /// the media endpoint), before the message's own events.
    async fn keep_media(&self, message_id: &MessageId, kept: Option<KeptMedia>) {
        if let Some(media) = kept {
            let message_id = message_id.clone();
            let _ = self
                .sink
                .send(EngineEvent::MediaKept { message_id, media })
                .await;
        }
    }

    /// Uploads media and builds its message (no context yet).
    async fn media_message(
        &self,
        message_id: &MessageId,
        media: &OutgoingMedia,
    ) -> anyhow::Result<wa::Message> {
        use whatsapp_rust::media::{
            AudioOptions, DocumentOptions, ImageOptions, VideoOptions, audio_message,
            document_message, image_message, video_message,
        };
        let media_type = media::media_type(media.kind);
        let upload = self
            .client
            .upload(media.data.to_vec(), media_type, UploadOptions::new())
            .await
            .context("Failed to upload the media")?;
        self.keep_media(message_id, media::kept_from_upload(&upload, media))
            .await;
        let mimetype = Some(media.mimetype.clone());
        let caption = media.caption.clone().filter(|c| !c.is_empty());
        let message = match media.kind {
            MediaKind::Image => image_message(
                upload,
                ImageOptions {
                    caption,
                    mimetype,
                    ..Default::default()
                },
            ),
            MediaKind::Video => video_message(
                upload,
                VideoOptions {
                    caption,
                    mimetype,
                    ..Default::default()
                },
            ),
            // WhatsApp's audio messages have no caption.
            MediaKind::Audio => audio_message(
                upload,
                AudioOptions {
                    mimetype,
                    ..Default::default()
                },
            ),
            MediaKind::Document => document_message(
                upload,
                DocumentOptions {
                    mimetype,
                    file_name: media.file_name.clone(),
                    title: media.file_name.clone(),
                    caption,
                    ..Default::default()
                },
            ),
        };
        Ok(message)
    }

    async fn send_wa(
        &self,
        message_id: &MessageId,
        to: &Jid,
        message: wa::Message,
    ) -> anyhow::Result<()> {
        let jid = self.to_wa(to)?;
        // Waiting before the write: the ack may come back before the call returns.
        self.acks.expect(message_id.as_str(), to, Instant::now());
        let sent = self
            .client
            .send_message_with_options(
                jid,
                message,
                SendOptions::default().with_message_id(message_id.as_str()),
            )
            .await;
        if let Err(e) = sent {
            self.acks.forget(message_id.as_str());
            anyhow::bail!("{e}");
        }
        Ok(())
    }
}

#[async_trait]
impl EngineSession for RealSession {
    async fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.cancel();
        let task = self.task.lock().await.take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(instance = %self.instance_id, error = %e, "the session task failed");
        }
    }

    async fn logout(&self) -> anyhow::Result<()> {
        self.stopping.store(true, Ordering::Relaxed);
        self.client.logout().await;
        self.stop().await;
        Ok(())
    }

    async fn send_text(&self, message_id: &MessageId, to: &Jid, text: &str) -> anyhow::Result<()> {
        let message = wa::Message {
            conversation: Some(text.to_string()),
            ..Default::default()
        };
        self.send_wa(message_id, to, message).await
    }

    async fn send_media(
        &self,
        message_id: &MessageId,
        to: &Jid,
        media: &OutgoingMedia,
    ) -> anyhow::Result<()> {
        let message = self.media_message(message_id, media).await?;
        self.send_wa(message_id, to, message).await
    }

    async fn send(
        &self,
        message_id: &MessageId,
        to: &Jid,
        content: &OutgoingContent,
    ) -> anyhow::Result<()> {
        self.send_content(message_id, to, content).await
    }

    async fn mark_read(
        &self,
        chat: &Jid,
        sender: Option<&Jid>,
        message_ids: &[MessageId],
    ) -> anyhow::Result<()> {
        self.read(chat, sender, message_ids).await
    }

    async fn chat_state(&self, chat: &Jid, state: ChatState) -> anyhow::Result<()> {
        self.show_state(chat, state).await
    }

    async fn set_presence(&self, available: bool) -> anyhow::Result<()> {
        self.presence(available).await
    }

    async fn fetch_media(&self, locator: &str, dest: &Path, max_bytes: u64) -> anyhow::Result<u64> {
        media::fetch(&self.client, locator, dest, max_bytes).await
    }

    async fn pair_with_code(&self, phone: &str) -> anyhow::Result<String> {
        *self.pairing_phone.lock().expect("phone lock") = Some(phone.to_string());
        let code = request_pair_code(&self.client, phone).await?;
        Ok(format_pair_code(&code))
    }

    async fn typing(&self, to: &Jid, typing: bool) -> anyhow::Result<()> {
        let chat = self.to_wa(to)?;
        let states = self.client.chatstate();
        let sent = if typing {
            states.send_composing(&chat).await
        } else {
            states.send_paused(&chat).await
        };
        sent.map_err(|e| anyhow::anyhow!("Failed to send the chat state: {e}"))
    }

    async fn contacts(&self) -> anyhow::Result<Vec<Contact>> {
        let mut list = self.book.all().await;
        match self.client.groups().get_participating().await {
            Ok(groups) => {
                let mut groups: Vec<Contact> = groups
                    .into_values()
                    .map(|g| Contact {
                        id: Jid::from_raw(g.id.to_string()),
                        name: g.subject,
                        number: g.id.user.to_string(),
                        is_group: true,
                    })
                    .collect();
                groups.sort_by(|a, b| a.id.cmp(&b.id));
                list.extend(groups);
            }
            Err(e) => {
                tracing::warn!(instance = %self.instance_id, error = %e, "failed to list the groups");
            }
        }
        Ok(list)
    }

    async fn check_numbers(&self, numbers: &[String]) -> Result<Vec<NumberCheck>, GroupError> {
        groups::check_numbers(&self.client, numbers).await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, GroupError> {
        groups::list(&self.client).await
    }

    async fn group_info(&self, group: &Jid) -> Result<GroupInfo, GroupError> {
        groups::get(&self.client, group).await
    }

    async fn create_group(
        &self,
        subject: &str,
        description: Option<&str>,
        participants: &[Jid],
    ) -> Result<GroupInfo, GroupError> {
        groups::create(&self.client, subject, description, participants).await
    }

    async fn change_participants(
        &self,
        group: &Jid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantResult>, GroupError> {
        groups::change(&self.client, group, action, participants).await
    }

    async fn invite_link(&self, group: &Jid, revoke: bool) -> Result<InviteLink, GroupError> {
        groups::invite(&self.client, group, revoke).await
    }

    async fn join_group(&self, invite: &InviteLink) -> Result<Jid, GroupError> {
        groups::join(&self.client, invite).await
    }

    async fn leave_group(&self, group: &Jid) -> Result<(), GroupError> {
        groups::leave(&self.client, group).await
    }

    async fn set_group_subject(&self, group: &Jid, subject: &str) -> Result<(), GroupError> {
        groups::set_subject(&self.client, group, subject).await
    }

    async fn set_group_description(
        &self,
        group: &Jid,
        description: Option<&str>,
    ) -> Result<(), GroupError> {
        groups::set_description(
            &self.client,
            group,
            description,
            whatsapp_rust::features::PreviousDescription::Resolve,
        )
        .await
    }
}
