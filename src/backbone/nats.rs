//! The NATS JetStream backbone: the connection (server version check, wait
//! with backoff, reachability flag for `/readyz`), the stream layout
//! (subjects, headers, envelope, loaded from `nats/*.json`) and the durable
//! pull consumer that feeds a [`Consumer`].
//!
//! Subjects are `<prefix>.<userId>.<instanceId>.<eventType>`; an event without
//! an instance uses [`NO_INSTANCE_TOKEN`], one without a user
//! [`NO_USER_TOKEN`]. The payload (the envelope) is the JSON of the
//! [`RecordedEvent`]; the headers repeat what a subscriber needs to filter and
//! order without parsing it. `nats/README.md` documents all of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, ConsumerErrorKind, Stream};
use async_nats::jetstream::{self, AckKind};
use async_nats::{ConnectOptions, HeaderMap};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Consumer, retry_delay};
use crate::config::Config;
use crate::store::{EventStore, RecordedEvent, SharedEvent};

/// The stream definition the gateway creates (name and subjects are replaced by the configured ones).
pub const STREAM_JSON: &str = include_str!("../../nats/stream.json");
/// The durable consumer template (durable name, filter subject and start are set per consumer).
pub const CONSUMER_JSON: &str = include_str!("../../nats/consumer.json");

/// The oldest nats-server the gateway runs against.
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 9, 10);

/// Subject token in place of the instance id for user-level events.
pub const NO_INSTANCE_TOKEN: &str = "_user";
/// Subject token in place of the user id for events that belong to no user.
pub const NO_USER_TOKEN: &str = "_system";

/// Header: the event id (JetStream de-duplicates on it).
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header: the event type, e.g. `message_sent`.
pub const HEADER_EVENT_TYPE: &str = "Wa-Event-Type";
/// Header: the event's global position in the log (decimal).
pub const HEADER_POSITION: &str = "Wa-Position";
/// Header: the stream the event belongs to, e.g. `instance-<id>`.
pub const HEADER_STREAM_ID: &str = "Wa-Stream-Id";
/// Header: the event's version within its stream (decimal).
pub const HEADER_STREAM_VERSION: &str = "Wa-Stream-Version";
/// Header: the payload's schema version (`schemas/<type>.v<N>.json`).
pub const HEADER_SCHEMA_VERSION: &str = "Wa-Schema-Version";
/// Header: `application/json`.
pub const HEADER_CONTENT_TYPE: &str = "Content-Type";

/// What the NATS backbone needs from the configuration.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// The JetStream stream name.
    pub stream: String,
    /// The first subject token.
    pub subject_prefix: String,
    /// How long start-up waits for the server.
    pub startup_timeout: Duration,
    /// Overrides `ack_wait` of `nats/consumer.json` (tests use a short one).
    pub ack_wait: Option<Duration>,
}

impl NatsSettings {
    /// The settings of a config with `WA_NATS_URL` set.
    pub fn from_config(config: &Config) -> Option<Self> {
        config.nats_url.as_ref().map(|url| Self {
            url: url.clone(),
            stream: config.nats_stream.clone(),
            subject_prefix: config.nats_subject_prefix.clone(),
            startup_timeout: config.nats_startup_timeout,
            ack_wait: None,
        })
    }
}

/// A connection to NATS JetStream with the gateway's stream layout. Cheap to clone.
#[derive(Clone)]
pub struct NatsBackbone {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    prefix: String,
    reachable: Arc<AtomicBool>,
    published: watch::Sender<i64>,
    ack_wait: Option<Duration>,
}

impl NatsBackbone {
    /// Connects (waiting with backoff up to the start-up timeout), refuses a
    /// server older than [`MIN_SERVER_VERSION`] or without JetStream, and
    /// creates the stream when it does not exist.
    pub async fn connect(settings: &NatsSettings) -> anyhow::Result<Self> {
        let shown = redact_url(&settings.url);
        let reachable = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + settings.startup_timeout;
        let mut attempt = 0u32;
        let client = loop {
            attempt += 1;
            let flag = reachable.clone();
            let url = shown.clone();
            let options = ConnectOptions::new()
                .name("wa-gateway")
                .max_reconnects(None)
                .event_callback(move |event| {
                    let flag = flag.clone();
                    let url = url.clone();
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                if !flag.swap(true, Ordering::SeqCst) {
                                    tracing::info!(url = %url, "NATS connected");
                                }
                            }
                            async_nats::Event::Disconnected => {
                                if flag.swap(false, Ordering::SeqCst) {
                                    tracing::warn!(url = %url, "NATS disconnected; reconnecting");
                                }
                            }
                            async_nats::Event::Closed => {
                                flag.store(false, Ordering::SeqCst);
                                tracing::debug!(url = %url, "NATS connection closed");
                            }
                            other => tracing::debug!(event = %other, "NATS event"),
                        }
                    }
                });
            match options.connect(settings.url.as_str()).await {
                Ok(client) => break client,
                Err(e) => {
                    let now = Instant::now();
                    if now >= deadline {
                        bail!(
                            "NATS at {shown} is not reachable after {attempt} attempts over {:?}: {e}",
                            settings.startup_timeout
                        );
                    }
                    let delay = retry_delay(attempt).min(deadline - now);
                    tracing::warn!(url = %shown, attempt, error = %e, "waiting for NATS; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        reachable.store(true, Ordering::SeqCst);
        let info = client.server_info();
        check_server_version(&info.version)
            .with_context(|| format!("nats-server at {shown} refused"))?;
        if !info.jetstream {
            bail!(
                "nats-server at {shown} has JetStream disabled: start it with `-js` (or a `jetstream {{}}` block in its config)"
            );
        }
        let js = jetstream::new(client.clone());
        let backbone = Self {
            inner: Arc::new(Inner {
                client,
                js,
                stream: settings.stream.clone(),
                prefix: settings.subject_prefix.clone(),
                reachable,
                published: watch::Sender::new(0),
                ack_wait: settings.ack_wait,
            }),
        };
        backbone.ensure_stream().await.with_context(|| {
            format!("Failed to create the JetStream stream {}", settings.stream)
        })?;
        tracing::info!(url = %shown, version = %info.version, stream = %settings.stream, "NATS JetStream backbone ready");
        Ok(backbone)
    }

    /// Whether the connection to NATS is up (what `/readyz` reports).
    pub fn is_reachable(&self) -> bool {
        self.inner.reachable.load(Ordering::SeqCst)
    }

    /// The plain NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream context (publishes, streams, consumers).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// The stream name.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream
    }

    /// The first token of every subject.
    pub fn subject_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The log position the relay has seen acknowledged by JetStream.
    pub fn published(&self) -> watch::Receiver<i64> {
        self.inner.published.subscribe()
    }

    /// Called by the relay after each acknowledged window.
    pub(crate) fn set_published(&self, position: i64) {
        self.inner.published.send_replace(position);
    }

    /// The stream definition from `nats/stream.json` with this gateway's name and subjects.
    pub fn stream_config(&self) -> stream::Config {
        stream_config(&self.inner.stream, &self.inner.prefix)
    }

    /// Creates the stream when missing; an existing stream is left as it is.
    pub async fn ensure_stream(&self) -> anyhow::Result<Stream> {
        Ok(self
            .inner
            .js
            .get_or_create_stream(self.stream_config())
            .await?)
    }

    /// The stream handle.
    pub async fn stream(&self) -> anyhow::Result<Stream> {
        self.inner
            .js
            .get_stream(&self.inner.stream)
            .await
            .with_context(|| format!("Failed to get the stream {}", self.inner.stream))
    }

    /// The subject an event is published on.
    pub fn subject_for(&self, event: &RecordedEvent) -> String {
        subject_for(&self.inner.prefix, event)
    }

    /// The JetStream message the relay publishes for an event.
    pub fn message_for(&self, event: &RecordedEvent) -> anyhow::Result<PublishMessage> {
        let payload = serde_json::to_vec(event).context("Failed to encode the envelope")?;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_MSG_ID, event.event_id.as_str());
        headers.insert(HEADER_EVENT_TYPE, event.event_type.as_str());
        headers.insert(HEADER_POSITION, event.position.to_string().as_str());
        headers.insert(HEADER_STREAM_ID, event.stream_id.as_str());
        headers.insert(HEADER_STREAM_VERSION, event.version.to_string().as_str());
        headers.insert(
            HEADER_SCHEMA_VERSION,
            event.schema_version.to_string().as_str(),
        );
        headers.insert(HEADER_CONTENT_TYPE, "application/json");
        Ok(PublishMessage::build()
            .headers(headers)
            .payload(payload.into()))
    }

    /// The durable consumer template from `nats/consumer.json` for one consumer.
    pub fn consumer_config(&self, name: &str, deliver_policy: DeliverPolicy) -> pull::Config {
        let mut config = consumer_template();
        config.durable_name = Some(name.to_string());
        config.filter_subject = format!("{}.>", self.inner.prefix);
        config.deliver_policy = deliver_policy;
        config.ack_policy = AckPolicy::Explicit;
        if let Some(wait) = self.inner.ack_wait {
            config.ack_wait = wait;
        }
        config
    }
}

/// Parses `nats/stream.json` and sets the name and the subjects.
pub fn stream_config(name: &str, prefix: &str) -> stream::Config {
    let mut config: stream::Config =
        serde_json::from_str(STREAM_JSON).expect("nats/stream.json is a valid stream config");
    config.name = name.to_string();
    config.subjects = vec![format!("{prefix}.>")];
    config
}

/// Parses `nats/consumer.json`.
pub fn consumer_template() -> pull::Config {
    serde_json::from_str(CONSUMER_JSON).expect("nats/consumer.json is a valid consumer config")
}

/// One subject token: ids are UUIDs, but anything NATS would read as a
/// separator or wildcard (`.`, `*`, `>`, white space) becomes `_`.
pub fn subject_token(value: Option<&str>, missing: &str) -> String {
    match value {
        Some(v) if !v.is_empty() => v
            .chars()
            .map(|c| {
                if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                    '_'
                } else {
                    c
                }
            })
            .collect(),
        _ => missing.to_string(),
    }
}

/// `<prefix>.<userId|_system>.<instanceId|_user>.<eventType>`.
pub fn subject_for(prefix: &str, event: &RecordedEvent) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        subject_token(event.user_id.as_deref(), NO_USER_TOKEN),
        subject_token(event.instance_id.as_deref(), NO_INSTANCE_TOKEN),
        subject_token(Some(&event.event_type), "_")
    )
}

/// Decodes an envelope (a message payload) back into the event.
pub fn decode_envelope(payload: &[u8]) -> anyhow::Result<RecordedEvent> {
    serde_json::from_slice(payload).context("Failed to decode the event envelope")
}

/// Refuses a server older than [`MIN_SERVER_VERSION`].
pub fn check_server_version(version: &str) -> anyhow::Result<()> {
    let parsed = parse_version(version);
    let (a, b, c) = MIN_SERVER_VERSION;
    match parsed {
        Some(v) if v >= MIN_SERVER_VERSION => Ok(()),
        Some(_) => bail!(
            "nats-server {version} is too old: wa-gateway needs nats-server {a}.{b}.{c} or newer"
        ),
        None => bail!(
            "cannot read the nats-server version {version:?}: wa-gateway needs {a}.{b}.{c} or newer"
        ),
    }
}

fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The URL(s) with any `user:password@` replaced by `***@` (safe to log).
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &u[..s + 3], &u[at..]),
            (None, Some(at)) => format!("***{}", &u[at..]),
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The log position of the stream message at `sequence`, from its header.
pub async fn position_at(stream: &Stream, sequence: u64) -> anyhow::Result<i64> {
    let msg = stream
        .get_raw_message(sequence)
        .await
        .with_context(|| format!("Failed to read stream message {sequence}"))?;
    header_position(&msg.headers)
        .with_context(|| format!("stream message {sequence} has no {HEADER_POSITION} header"))
}

/// The [`HEADER_POSITION`] of a message.
pub fn header_position(headers: &HeaderMap) -> Option<i64> {
    headers.get(HEADER_POSITION)?.as_str().parse().ok()
}

/// The stream sequence of the first message whose log position is greater
/// than `after` (the stream's last sequence + 1 when there is none yet).
/// Positions grow with sequences, so a binary search over direct gets finds
/// it; usually sequence = position and the first probe hits.
pub async fn first_sequence_after(stream: &mut Stream, after: i64) -> anyhow::Result<u64> {
    let state = stream.info().await?.state.clone();
    if state.messages == 0 {
        return Ok(state.last_sequence + 1);
    }
    let (first, last) = (state.first_sequence, state.last_sequence);
    if position_at(stream, last).await? <= after {
        return Ok(last + 1);
    }
    let guess = u64::try_from(after + 1).unwrap_or(0);
    if (first..=last).contains(&guess) && position_at(stream, guess).await? == after + 1 {
        return Ok(guess);
    }
    // Invariant: position(hi) > after; the answer is in [lo, hi].
    let (mut lo, mut hi) = (first, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if position_at(stream, mid).await? > after {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Runs `consumer` as a durable pull consumer until `shutdown`; failures are
/// retried with backoff.
pub async fn run_consumer(
    nats: NatsBackbone,
    store: EventStore,
    consumer: Arc<dyn Consumer>,
    shutdown: CancellationToken,
) {
    let name = consumer.name();
    let mut failures = 0u32;
    loop {
        match consume(&nats, &store, consumer.as_ref(), &shutdown, &mut failures).await {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(consumer = name, error = %format!("{e:#}"), "NATS consumer failed; restarting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry_delay(failures)) => {}
                }
            }
        }
    }
}

/// (Re)creates the durable consumer so that it delivers every event after
/// `checkpoint`, the consumer's own (committed with its read model), at once.
///
/// An existing durable consumer is always deleted first: the messages the
/// previous process (or a previous run in this one) pulled and never acked
/// would otherwise come back only when their `ack_wait` expires (30 s), and
/// every later message would wait behind them. The checkpoint, not the
/// durable's ack floor, says where the consumer is, so nothing is skipped
/// (the start is the first sequence past it) and nothing is applied twice
/// (the consumer skips what is at or below it).
async fn bind_durable(
    nats: &NatsBackbone,
    stream: &mut Stream,
    name: &str,
    checkpoint: i64,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let start = first_sequence_after(stream, checkpoint).await?;
    let policy = if start <= 1 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: start,
        }
    };
    let config = nats.consumer_config(name, policy);
    match stream.delete_consumer(name).await {
        Ok(_) => {
            tracing::debug!(consumer = name, checkpoint, "replaced the durable consumer")
        }
        Err(e)
            if matches!(e.kind(), ConsumerErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) => {}
        Err(e) => {
            return Err(anyhow::Error::new(e))
                .with_context(|| format!("Failed to replace the durable consumer {name}"));
        }
    }
    stream
        .create_consumer(config)
        .await
        .with_context(|| format!("Failed to create the durable consumer {name}"))
}

/// Applies events the stream no longer holds (aged out by the stream's
/// limits) from the local log, up to the stream's first position.
async fn fill_from_log(
    store: &EventStore,
    stream: &mut Stream,
    consumer: &dyn Consumer,
    mut checkpoint: i64,
) -> anyhow::Result<i64> {
    let state = stream.info().await?.state.clone();
    let first_position = if state.messages == 0 {
        // Everything in the log the relay has not published yet comes through the stream.
        return Ok(checkpoint);
    } else {
        position_at(stream, state.first_sequence).await?
    };
    while checkpoint + 1 < first_position {
        let limit = (first_position - 1 - checkpoint).min(1000);
        let events = store.read_recent(checkpoint, limit).await?;
        let Some(last) = events.last() else { break };
        let last = last.position;
        consumer.apply(&events).await?;
        checkpoint = last;
    }
    Ok(checkpoint)
}

/// One run of a durable consumer: bind, then pull, apply in contiguous
/// batches, ack after the consumer's commit. A message past a gap is nak'd
/// (the missing one is being redelivered), so events are applied in log
/// order even after a failed batch.
async fn consume(
    nats: &NatsBackbone,
    store: &EventStore,
    consumer: &dyn Consumer,
    shutdown: &CancellationToken,
    failures: &mut u32,
) -> anyhow::Result<()> {
    let name = consumer.name();
    let mut checkpoint = consumer.checkpoint().await?;
    let mut stream = nats.stream().await?;
    checkpoint = fill_from_log(store, &mut stream, consumer, checkpoint).await?;
    let durable = bind_durable(nats, &mut stream, name, checkpoint).await?;
    let mut messages = durable
        .stream()
        .max_messages_per_batch(1000)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?
        .ready_chunks(1000);
    loop {
        let chunk = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = messages.next() => c,
        };
        let Some(chunk) = chunk else {
            bail!("the message stream of {name} ended");
        };
        // Redeliveries at or below the checkpoint go to the consumer on their
        // own (it skips them: a no-op by contract); then the contiguous new ones.
        let mut redelivered = (Vec::new(), Vec::new());
        let mut batch = (Vec::new(), Vec::new());
        let mut done = Vec::new();
        let mut later = Vec::new();
        let mut expected = checkpoint + 1;
        let mut error = None;
        for item in chunk {
            let msg = match item {
                Ok(m) => m,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            match decode_envelope(&msg.payload) {
                Ok(event) if event.position <= checkpoint => {
                    redelivered.0.push(Arc::new(event));
                    redelivered.1.push(msg);
                }
                Ok(event) if event.position == expected => {
                    expected += 1;
                    // Decoded once here; every consumer's `apply` gets the typed event.
                    batch.0.push(Arc::new(event.decoded()));
                    batch.1.push(msg);
                }
                Ok(_) => later.push(msg),
                Err(e) => {
                    tracing::error!(consumer = name, subject = %msg.subject, error = %format!("{e:#}"), "not an event envelope; terminating it");
                    let _ = msg.ack_with(AckKind::Term).await;
                }
            }
        }
        redelivered.0.sort_by_key(|e: &SharedEvent| e.position);
        for (events, mut msgs, is_new) in [
            (redelivered.0, redelivered.1, false),
            (batch.0, batch.1, true),
        ] {
            if events.is_empty() {
                continue;
            }
            match consumer.apply(&events).await {
                Ok(()) => {
                    if is_new {
                        checkpoint = expected - 1;
                    }
                    *failures = 0;
                    done.append(&mut msgs);
                }
                Err(e) => {
                    *failures += 1;
                    tracing::warn!(consumer = name, error = %format!("{e:#}"), "apply failed; the batch will be redelivered");
                    later.append(&mut msgs);
                }
            }
        }
        for msg in &done {
            msg.ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack failed: {e}"))?;
        }
        let delay = retry_delay(*failures).max(Duration::from_millis(50));
        for msg in &later {
            msg.ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(|e| anyhow::anyhow!("nak failed: {e}"))?;
        }
        if let Some(e) = error {
            bail!("pulling messages failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: Option<&str>, instance: Option<&str>) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            event_id: "e".into(),
            stream_id: "s".into(),
            version: 1,
            event_type: "message_sent".into(),
            schema_version: 1,
            user_id: user.map(str::to_owned),
            instance_id: instance.map(str::to_owned),
            data: serde_json::json!({}).into(),
            metadata: Default::default(),
            recorded_at: chrono::Utc::now(),
            event: None,
        }
    }

    #[test]
    fn subjects_use_fixed_tokens_for_missing_scopes_and_escape_separators() {
        assert_eq!(
            subject_for("wa", &event(Some("u1"), Some("i1"))),
            "wa.u1.i1.message_sent"
        );
        assert_eq!(
            subject_for("wa", &event(Some("u1"), None)),
            "wa.u1._user.message_sent"
        );
        assert_eq!(
            subject_for("wa", &event(None, None)),
            "wa._system._user.message_sent"
        );
        assert_eq!(
            subject_for("wa", &event(Some("a.b*c>d e"), Some(""))),
            "wa.a_b_c_d_e._user.message_sent"
        );
    }

    #[test]
    fn servers_older_than_2_9_10_are_refused() {
        assert!(check_server_version("2.9.10").is_ok());
        assert!(check_server_version("2.10.0-beta.3").is_ok());
        assert!(check_server_version("2.14.6").is_ok());
        assert!(check_server_version("3.0.0").is_ok());
        let err = check_server_version("2.9.9").unwrap_err().to_string();
        assert!(err.contains("too old") && err.contains("2.9.10"), "{err}");
        assert!(check_server_version("2.2.6").is_err());
        assert!(check_server_version("garbage").is_err());
    }

    #[test]
    fn the_stream_and_consumer_files_parse_into_the_documented_layout() {
        let s = stream_config("WA_TEST", "tenant");
        assert_eq!(s.name, "WA_TEST");
        assert_eq!(s.subjects, vec!["tenant.>".to_string()]);
        assert_eq!(s.storage, stream::StorageType::File);
        assert_eq!(s.retention, stream::RetentionPolicy::Limits);
        assert_eq!(s.duplicate_window, Duration::from_secs(120));
        let c = consumer_template();
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert_eq!(c.max_deliver, -1);
        assert_eq!(c.ack_wait, Duration::from_secs(30));
    }

    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(
            redact_url("nats://user:pw@h1:4222,nats://h2:4222"),
            "nats://***@h1:4222,nats://h2:4222"
        );
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn envelopes_decode_back_into_the_event() {
        let e = event(Some("u"), Some("i"));
        let bytes = serde_json::to_vec(&e).unwrap();
        assert_eq!(decode_envelope(&bytes).unwrap(), e);
    }
}
