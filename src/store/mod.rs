//! The event store: an append-only SQLite log with optimistic concurrency,
//! group-committed appends, reads by global position and live subscriptions.

pub mod direct;
mod writer;

use std::collections::VecDeque;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot, watch};

use crate::events::Event;

pub use writer::WriterMode;

/// Identifies one stream of the log: `user-<id>`, `instance-<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamId(String);

impl StreamId {
    /// The stream of a user account.
    pub fn user(user_id: &str) -> Self {
        Self(format!("user-{user_id}"))
    }
    /// The stream of an instance.
    pub fn instance(instance_id: &str) -> Self {
        Self(format!("instance-{instance_id}"))
    }
    /// The facts of an instance's WhatsApp session: connection, QR codes,
    /// messages and their receipts, contacts. Only its supervisor writes it.
    pub fn session(instance_id: &str) -> Self {
        Self(format!("session-{instance_id}"))
    }
    /// The `api_called` facts of one user's requests.
    pub fn api_calls(user_id: &str) -> Self {
        Self(format!("calls-{user_id}"))
    }
    /// The webhook attempts (`webhook_delivered`, `webhook_failed`) of an instance.
    pub fn webhook_attempts(instance_id: &str) -> Self {
        Self(format!("webhooks-{instance_id}"))
    }
    /// The refused logins (`login_failed`), of every user and of unknown e-mails.
    pub fn login_failures() -> Self {
        Self("logins".into())
    }
    /// Any other stream name.
    pub fn named(name: impl Into<String>) -> Self {
        Self(name.into())
    }
    /// The stream id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the appender believes the stream's current version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check: only for facts (what the network or a request did), which
    /// no decision rests on. Decisions use [`ExpectedVersion::Exact`].
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this.
    Exact(i64),
}

/// Who and what caused an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The acting user id, or `system` / `engine`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The HTTP request id that caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Groups events of one business flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event id this event follows from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

impl Metadata {
    /// Metadata naming only an actor.
    pub fn actor(actor: impl Into<String>) -> Self {
        Self {
            actor: Some(actor.into()),
            ..Self::default()
        }
    }
}

/// A change to a state table (users, instances, ...) that commits in the
/// same transaction as the events announcing it. Implemented by named
/// changes of the domain's storage modules (e.g. `InstanceChange::Insert`),
/// so every write says what it is.
pub trait StateChange: Send + 'static {
    /// Runs the change on the writer's connection, inside the transaction.
    fn apply<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;
}

/// A boxed [`StateChange`].
pub type Effect = Box<dyn StateChange>;

/// One append: events for one stream, with a version check and state effects.
pub struct Append {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub user_id: Option<String>,
    pub instance_id: Option<String>,
    pub metadata: Metadata,
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
}

impl Append {
    /// Starts an append to `stream`.
    pub fn to(stream: StreamId, expected: ExpectedVersion) -> Self {
        Self {
            stream,
            expected,
            user_id: None,
            instance_id: None,
            metadata: Metadata::default(),
            events: Vec::new(),
            effects: Vec::new(),
        }
    }
    /// An append of facts (engine events, served calls, webhook attempts):
    /// observations that no decision rests on, so no version check.
    pub fn fact(stream: StreamId) -> Self {
        Self::to(stream, ExpectedVersion::Any)
    }
    /// Names the owning user and the instance (subject tokens and filters).
    pub fn scope(mut self, user_id: Option<&str>, instance_id: Option<&str>) -> Self {
        self.user_id = user_id.map(str::to_owned);
        self.instance_id = instance_id.map(str::to_owned);
        self
    }
    /// Adds an event.
    pub fn event(mut self, event: impl Into<Event>) -> Self {
        self.events.push(event.into());
        self
    }
    /// Sets the metadata of every event of this append.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
    /// Adds a state-table change committed with the events.
    pub fn effect(mut self, change: impl StateChange) -> Self {
        self.effects.push(Box::new(change));
        self
    }
}

/// What an append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Global position of the first and last event written.
    pub first_position: i64,
    pub last_position: i64,
    /// The stream's version after the append.
    pub version: i64,
    /// The ids given to the events, in order.
    pub event_ids: Vec<String>,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream's version was not the expected one.
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: i64,
    },
    /// A state effect hit a uniqueness rule (e.g. an e-mail already taken).
    #[error("already exists: {0}")]
    Duplicate(String),
    /// The writer has stopped.
    #[error("the event store is closed")]
    Closed,
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// An event's payload as stored: its JSON text, kept as it was written (the
/// log's column, the NATS envelope's `data`), and a parsed [`Value`] made
/// only when something reads it as one (tools, tests, `Deref`). Consumers
/// use the typed [`RecordedEvent::event`] instead, so the hot path neither
/// builds nor drops a `Value`.
pub struct EventData {
    text: Box<RawValue>,
    value: OnceLock<Value>,
}

impl EventData {
    /// A payload from its JSON text; `None` when it is not JSON.
    pub fn from_text(text: String) -> Option<Self> {
        RawValue::from_string(text).ok().map(Self::from_raw)
    }
    /// A payload from already checked JSON.
    pub fn from_raw(text: Box<RawValue>) -> Self {
        Self {
            text,
            value: OnceLock::new(),
        }
    }
    /// The JSON text as stored.
    pub fn text(&self) -> &str {
        self.text.get()
    }
    /// The payload as a JSON value, parsed on first use.
    pub fn value(&self) -> &Value {
        self.value
            .get_or_init(|| serde_json::from_str(self.text.get()).unwrap_or(Value::Null))
    }
}

impl From<Value> for EventData {
    fn from(value: Value) -> Self {
        let text = serde_json::value::to_raw_value(&value).expect("a JSON value serializes");
        Self {
            text,
            value: OnceLock::from(value),
        }
    }
}

impl std::ops::Deref for EventData {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

impl Clone for EventData {
    fn clone(&self) -> Self {
        Self {
            text: self.text.clone(),
            value: self.value.clone(),
        }
    }
}

/// Equal payloads: the same text, or (written by different serializers,
/// e.g. keys in another order) the same value.
impl PartialEq for EventData {
    fn eq(&self, o: &Self) -> bool {
        self.text() == o.text() || self.value() == o.value()
    }
}

/// Compares the parsed payload with a JSON value (tests, tools).
impl PartialEq<Value> for EventData {
    fn eq(&self, o: &Value) -> bool {
        self.value() == o
    }
}

/// The JSON text as stored.
impl std::fmt::Display for EventData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl std::fmt::Debug for EventData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self::from_raw)
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    pub position: i64,
    pub event_id: String,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: u32,
    pub user_id: Option<String>,
    pub instance_id: Option<String>,
    pub data: EventData,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
    /// The payload in the typed catalog, decoded once (or kept from the
    /// append) and shared by every consumer; `None` for a type or payload
    /// this build does not know, which consumers skip. Not serialized: the
    /// envelope carries `data`, and [`RecordedEvent::decoded`] restores it.
    #[serde(skip)]
    pub event: Option<Event>,
}

/// Equal when stored the same; the decoded [`RecordedEvent::event`] follows
/// from the type and payload (and is absent until decoded).
impl PartialEq for RecordedEvent {
    fn eq(&self, o: &Self) -> bool {
        self.position == o.position
            && self.event_id == o.event_id
            && self.stream_id == o.stream_id
            && self.version == o.version
            && self.event_type == o.event_type
            && self.schema_version == o.schema_version
            && self.user_id == o.user_id
            && self.instance_id == o.instance_id
            && self.data == o.data
            && self.metadata == o.metadata
            && self.recorded_at == o.recorded_at
    }
}

impl RecordedEvent {
    /// Fills [`RecordedEvent::event`] from the stored type and payload (after
    /// reading the log or a NATS message). An event this build cannot read is
    /// logged once here.
    pub fn decoded(mut self) -> Self {
        self.event = match Event::from_json(&self.event_type, self.data.text()) {
            Ok(event) => Some(event),
            Err(err) => {
                tracing::warn!(position = self.position, error = %err, "an event this build cannot decode: consumers skip it");
                None
            }
        };
        self
    }
    /// Unix milliseconds of `recorded_at`.
    pub fn recorded_ms(&self) -> i64 {
        self.recorded_at.timestamp_millis()
    }
}

/// A recorded event shared between the log's readers without copying.
pub type SharedEvent = Arc<RecordedEvent>;

pub(crate) struct AppendJob {
    /// The append, its events taken out into `prepared`.
    append: Append,
    prepared: Prepared,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// An append's events and metadata, serialized by the caller so that the
/// single writer only assigns positions and versions and runs the SQL.
pub(crate) struct Prepared {
    events: Vec<PreparedEvent>,
    metadata: Arc<str>,
}

pub(crate) struct PreparedEvent {
    /// The typed event, handed to consumers as it is once committed.
    event: Option<Event>,
    event_type: &'static str,
    schema_version: u32,
    /// The payload's JSON, serialized once from the typed event.
    data: Option<EventData>,
}

impl Prepared {
    fn take(append: &mut Append) -> Self {
        let events = std::mem::take(&mut append.events)
            .into_iter()
            .map(|event| PreparedEvent {
                event_type: event.event_type(),
                schema_version: event.schema_version(),
                data: Some(EventData::from_raw(event.to_raw())),
                event: Some(event),
            })
            .collect();
        let metadata = serde_json::to_string(&append.metadata)
            .unwrap_or_else(|_| "{}".into())
            .into();
        Self { events, metadata }
    }
}

/// The event log. Cheap to clone; one writer task behind it.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    tx: mpsc::Sender<AppendJob>,
    head: watch::Receiver<i64>,
    tail: Arc<Mutex<Tail>>,
    counters: Arc<Counters>,
}

/// Running totals of the store's work (benchmarks and diagnostics), and
/// the histograms `/metrics` shows of it.
pub(crate) struct Counters {
    commits: AtomicU64,
    events_written: AtomicU64,
    reads_from_memory: AtomicU64,
    reads_from_disk: AtomicU64,
    /// Events per committed batch (group commit).
    batch_events: prometheus::Histogram,
    /// Time from taking a batch to its commit.
    commit_seconds: prometheus::Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        let batch_events = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "wa_event_store_batch_events",
                "Events per committed batch of the event store's writer (group commit).",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("a valid histogram");
        let commit_seconds = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "wa_event_store_commit_duration_seconds",
                "Time the event store's writer took to commit one batch.",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.5, 12).expect("valid buckets")),
        )
        .expect("a valid histogram");
        Self {
            commits: AtomicU64::new(0),
            events_written: AtomicU64::new(0),
            reads_from_memory: AtomicU64::new(0),
            reads_from_disk: AtomicU64::new(0),
            batch_events,
            commit_seconds,
        }
    }
}

impl Counters {
    /// A batch of `events` committed in `took` (the histograms of `/metrics`).
    pub(crate) fn observed_commit(&self, events: i64, took: std::time::Duration) {
        self.batch_events.observe(events as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn committed(&self, events: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.events_written
            .fetch_add(events as u64, Ordering::Relaxed);
    }
}

/// What the store has done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions that appended events.
    pub commits: u64,
    /// Events appended.
    pub events_written: u64,
    /// Subscription reads served from the in-memory tail.
    pub reads_from_memory: u64,
    /// Subscription reads that went to the database.
    pub reads_from_disk: u64,
}

/// Events kept in memory after they are committed.
const TAIL_CAPACITY: usize = 16_384;

/// The newest committed events, in memory, so that live subscribers (the
/// projectors, the webhook intake, the relay) get them without a query and
/// without decoding JSON again. Always a gap-free run of positions; whatever
/// it does not hold is read from the database.
#[derive(Default)]
pub(crate) struct Tail {
    events: VecDeque<Arc<RecordedEvent>>,
}

impl Tail {
    /// Adds a committed batch (in position order). A batch that does not
    /// follow the last event held (another process appended in between, or
    /// a batch failed) starts the tail afresh.
    pub(crate) fn push(&mut self, batch: Vec<RecordedEvent>) {
        let Some(first) = batch.first().map(|e| e.position) else {
            return;
        };
        if self
            .events
            .back()
            .is_some_and(|last| last.position + 1 != first)
        {
            self.events.clear();
        }
        self.events.extend(batch.into_iter().map(Arc::new));
        let excess = self.events.len().saturating_sub(TAIL_CAPACITY);
        self.events.drain(..excess);
    }

    /// Forgets everything (the writer lost track of the head).
    pub(crate) fn clear(&mut self) {
        self.events.clear();
    }

    /// Up to `limit` events after position `after`, when the tail holds the
    /// event right after it or `after` is at or past its last event (then
    /// none); `None` when the database must be read.
    fn after(&self, after: i64, limit: usize) -> Option<Vec<Arc<RecordedEvent>>> {
        let first = self.events.front()?.position;
        if after + 1 < first {
            return None;
        }
        let start = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
        Some(
            self.events
                .iter()
                .skip(start)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

/// Opens (or creates) a SQLite database file tuned for the gateway: WAL,
/// `synchronous=NORMAL`, a busy timeout, foreign keys off. Its connections
/// checkpoint the WAL themselves only as a backstop ([`BACKSTOP_CHECKPOINT_PAGES`]):
/// the database's committer runs the regular checkpoints in the background
/// through a [`Checkpointer`].
pub async fn open_sqlite(path: &Path, max_connections: u32) -> anyhow::Result<SqlitePool> {
    // Owner-only from the first byte: SQLite gives `-wal` and `-shm` the
    // database file's mode.
    crate::secrets::precreate_private_file(path)?;
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", "-16000")
        .pragma("wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES.to_string());
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .connect_with(opts)
        .await?;
    Ok(pool)
}

/// WAL pages after which a committing connection checkpoints by itself: a
/// backstop for when no [`Checkpointer`] ran (tools, a stalled committer).
pub const BACKSTOP_CHECKPOINT_PAGES: u64 = 50_000;

/// How often a busy database's WAL is copied back into it.
const CHECKPOINT_PERIOD: Duration = Duration::from_millis(1000);

/// Copies a database's WAL back into it on a background task, at most once
/// every [`CHECKPOINT_PERIOD`] and only after commits, instead of inside the
/// commit that crossed SQLite's 1,000-page mark. A page changed by many
/// commits (the right edge of an index, an instance's leaf) is then copied
/// once a period rather than once every few commits, and no commit waits
/// for a checkpoint. The checkpoint is `PASSIVE`: it never blocks a writer.
#[derive(Clone)]
pub struct Checkpointer {
    inner: Arc<CheckpointerInner>,
}

struct CheckpointerInner {
    pool: SqlitePool,
    /// When the last checkpoint was started.
    last: Mutex<std::time::Instant>,
    /// Whether a checkpoint is running now.
    running: std::sync::atomic::AtomicBool,
}

impl Checkpointer {
    /// The checkpointer of `pool`'s database.
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            inner: Arc::new(CheckpointerInner {
                pool,
                last: Mutex::new(std::time::Instant::now()),
                running: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Tells it a transaction committed: starts a background checkpoint when
    /// the period is up and none is running.
    pub fn committed(&self) {
        {
            let mut last = self.inner.last.lock().expect("checkpointer lock");
            if last.elapsed() < CHECKPOINT_PERIOD {
                return;
            }
            *last = std::time::Instant::now();
        }
        if self.inner.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&inner.pool)
                .await
            {
                tracing::debug!(error = %e, "background checkpoint failed");
            }
            inner.running.store(false, Ordering::Release);
        });
    }
}

/// Events a consumer's subscription reads at most at once.
pub const READ_BATCH: i64 = 1_000;

const SELECT_EVENTS: &str = "SELECT position, event_id, stream_id, version, event_type, schema_version, \
     user_id, instance_id, data, metadata, recorded_at FROM events";

impl EventStore {
    /// Opens the store at `path`, runs migrations and starts the group-commit writer.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, WriterMode::GroupCommit).await
    }

    /// Opens the store with a chosen writer mode (the benchmark compares both).
    pub async fn open_with(path: &Path, mode: WriterMode) -> anyhow::Result<Self> {
        let pool = open_sqlite(path, 8).await?;
        sqlx::migrate!("src/store/migrations").run(&pool).await?;
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&pool)
            .await?;
        let (head_tx, head_rx) = watch::channel(head);
        let (tx, rx) = mpsc::channel(4096);
        let tail = Arc::new(Mutex::new(Tail::default()));
        let counters = Arc::new(Counters::default());
        let direct = direct::DirectConnection::open(path, "event-writer")?;
        tokio::spawn(writer::run(
            pool.clone(),
            direct,
            rx,
            writer::Publish {
                head: head_tx,
                tail: tail.clone(),
                counters: counters.clone(),
            },
            head,
            mode,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                tx,
                head: head_rx,
                tail,
                counters,
            }),
        })
    }

    /// The pool of the database the log and the command-side state live in.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// Appends events (and their state effects) atomically.
    pub async fn append(&self, mut append: Append) -> Result<Appended, StoreError> {
        let (reply, rx) = oneshot::channel();
        let prepared = Prepared::take(&mut append);
        self.inner
            .tx
            .send(AppendJob {
                append,
                prepared,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The global position of the last committed event.
    pub fn head(&self) -> i64 {
        *self.inner.head.borrow()
    }

    /// A receiver that changes whenever events are committed.
    pub fn watch_head(&self) -> watch::Receiver<i64> {
        self.inner.head.clone()
    }

    /// Up to `limit` events after global position `after`, in order, from
    /// memory when the newest events cover them, else from the database.
    pub async fn read_recent(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<SharedEvent>, StoreError> {
        let held = self
            .inner
            .tail
            .lock()
            .expect("tail lock")
            .after(after, usize::try_from(limit).unwrap_or(0));
        let counters = &self.inner.counters;
        match held {
            Some(events) => {
                if !events.is_empty() {
                    counters.reads_from_memory.fetch_add(1, Ordering::Relaxed);
                }
                Ok(events)
            }
            None => Ok(self
                .read_from(after, limit)
                .await
                .inspect(|events| {
                    if !events.is_empty() {
                        counters.reads_from_disk.fetch_add(1, Ordering::Relaxed);
                    }
                })?
                .into_iter()
                .map(Arc::new)
                .collect()),
        }
    }

    /// The store's own instruments (batch sizes, commit latency), for the
    /// metrics registry; clones that share their values with the writer.
    pub fn instruments(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let c = &self.inner.counters;
        vec![
            Box::new(c.batch_events.clone()),
            Box::new(c.commit_seconds.clone()),
        ]
    }

    /// When the event at `position` was recorded (unix ms), if it exists.
    pub async fn recorded_ms_at(&self, position: i64) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT recorded_at FROM events WHERE position = ?")
                .bind(position)
                .fetch_optional(&self.inner.pool)
                .await?,
        )
    }

    /// What the store has done since it was opened.
    pub fn stats(&self) -> StoreStats {
        let c = &self.inner.counters;
        StoreStats {
            commits: c.commits.load(Ordering::Relaxed),
            events_written: c.events_written.load(Ordering::Relaxed),
            reads_from_memory: c.reads_from_memory.load(Ordering::Relaxed),
            reads_from_disk: c.reads_from_disk.load(Ordering::Relaxed),
        }
    }

    /// Up to `limit` events after global position `after`, in order.
    pub async fn read_from(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_EVENTS} WHERE position > ? ORDER BY position LIMIT ?"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(row_to_event).collect()
    }

    /// Every event of one stream, in version order.
    pub async fn read_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_EVENTS} WHERE stream_id = ? ORDER BY version"
        )))
        .bind(stream.as_str())
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(row_to_event).collect()
    }

    /// The current version of a stream (0 when it has no events).
    pub async fn stream_version(&self, stream: &StreamId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?")
                .bind(stream.as_str())
                .fetch_one(&self.inner.pool)
                .await?,
        )
    }

    /// A subscription that yields every event after `after`: first the
    /// backlog, then live events as they are committed.
    pub fn subscribe(&self, after: i64) -> Subscription {
        Subscription {
            store: self.clone(),
            after,
            head: self.watch_head(),
            batch: READ_BATCH,
        }
    }
}

/// Catch-up-then-live reader of the log (see [`EventStore::subscribe`]).
pub struct Subscription {
    store: EventStore,
    after: i64,
    head: watch::Receiver<i64>,
    batch: i64,
}

impl Subscription {
    /// The position of the last event handed out.
    pub fn position(&self) -> i64 {
        self.after
    }

    /// The next batch of events; waits for appends when caught up. `None`
    /// when the store has shut down.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<SharedEvent>>, StoreError> {
        loop {
            self.head.borrow_and_update();
            let events = self.store.read_recent(self.after, self.batch).await?;
            if let Some(last) = events.last() {
                self.after = last.position;
                return Ok(Some(events));
            }
            if self.head.changed().await.is_err() {
                return Ok(None);
            }
        }
    }
}

pub(crate) fn row_to_event(row: &sqlx::sqlite::SqliteRow) -> Result<RecordedEvent, StoreError> {
    let data: String = row.try_get("data")?;
    let data = EventData::from_text(data).ok_or_else(|| {
        StoreError::Db(sqlx::Error::Decode("a stored payload is not JSON".into()))
    })?;
    let metadata: String = row.try_get("metadata")?;
    let recorded_ms: i64 = row.try_get("recorded_at")?;
    let schema_version: i64 = row.try_get("schema_version")?;
    Ok(RecordedEvent {
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        stream_id: row.try_get("stream_id")?,
        version: row.try_get("version")?,
        event_type: row.try_get("event_type")?,
        schema_version: schema_version as u32,
        user_id: row.try_get("user_id")?,
        instance_id: row.try_get("instance_id")?,
        data,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Db(sqlx::Error::Decode(e.into())))?,
        recorded_at: ms_to_time(recorded_ms),
        event: None,
    }
    .decoded())
}

/// Unix milliseconds to a UTC time.
pub fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
