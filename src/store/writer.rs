//! The single writer task: it owns every append, checks stream versions,
//! runs state effects and group-commits concurrent appends in one
//! transaction with multi-row INSERTs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use sqlx::pool::PoolConnection;
use sqlx::query_builder::Separated;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, watch};

use super::direct::DirectConnection;
use super::{AppendJob, Appended, EventData, ExpectedVersion, RecordedEvent, StoreError, Tail};

/// Where the writer announces what it committed: the in-memory tail first,
/// then the head, so a reader woken by the head finds the events in memory.
pub(super) struct Publish {
    pub head: watch::Sender<i64>,
    pub tail: Arc<Mutex<Tail>>,
    pub counters: Arc<super::Counters>,
}

impl Publish {
    /// Announces a committed batch, then replies to every job (so a caller
    /// that got its answer sees `head()` at least at its event).
    fn committed(
        &self,
        events: Vec<RecordedEvent>,
        new_head: i64,
        jobs: &mut Vec<AppendJob>,
        outcomes: Vec<Result<Appended, StoreError>>,
    ) {
        self.counters.committed(events.len());
        self.tail.lock().expect("tail lock").push(events);
        if new_head != *self.head.borrow() {
            self.head.send_replace(new_head);
        }
        for (job, outcome) in jobs.drain(..).zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }
}

/// Replies the database error to every job of a failed batch.
fn fail_all(jobs: &mut Vec<AppendJob>, e: sqlx::Error) -> StoreError {
    let msg = e.to_string();
    for job in jobs.drain(..) {
        let _ = job
            .reply
            .send(Err(StoreError::Db(sqlx::Error::Protocol(msg.clone()))));
    }
    StoreError::Db(e)
}

/// Whether a stream at version `current` admits an append expecting `expected`.
fn admits(expected: ExpectedVersion, current: i64) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current == 0,
        ExpectedVersion::Exact(v) => current == v,
    }
}

/// The head of both multi-row INSERTs into the log.
const INSERT_EVENTS: &str = "INSERT INTO events (position, event_id, stream_id, version, \
     event_type, schema_version, user_id, instance_id, data, metadata, recorded_at) ";

/// One row of [`INSERT_EVENTS`], its values in that statement's column order.
struct Columns<'a> {
    position: i64,
    event_id: &'a str,
    stream_id: &'a str,
    version: i64,
    event_type: &'a str,
    schema_version: u32,
    user_id: Option<&'a str>,
    instance_id: Option<&'a str>,
    data: &'a str,
    metadata: &'a str,
    recorded_at: i64,
}

impl Columns<'_> {
    fn bind(&self, b: &mut Separated<'_, Sqlite, &'static str>) {
        b.push_bind(self.position)
            .push_bind(self.event_id)
            .push_bind(self.stream_id)
            .push_bind(self.version)
            .push_bind(self.event_type)
            .push_bind(self.schema_version as i64)
            .push_bind(self.user_id)
            .push_bind(self.instance_id)
            .push_bind(self.data)
            .push_bind(self.metadata)
            .push_bind(self.recorded_at);
    }
}

/// How the writer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterMode {
    /// Every append waiting in the queue goes into one transaction (default).
    GroupCommit,
    /// One transaction per append (the benchmark's baseline).
    PerAppend,
}

/// Most appends taken into one transaction.
const MAX_BATCH: usize = 512;
/// A batch of at least this many appends says the log is busy: the writer
/// then lets the runtime run [`LINGER_YIELDS`] times, taking what was
/// appended meanwhile, before it commits. Under load a commit then carries
/// more events for about the same pages (one index leaf per stream it
/// touches); a lone append is committed at once.
const LINGER_FROM: usize = 4;
const LINGER_YIELDS: usize = 4;
/// Rows per multi-row INSERT (11 bound values each; SQLite allows 32,766).
const ROWS_PER_INSERT: usize = 500;

struct Row {
    event: RecordedEvent,
    metadata: Arc<str>,
    recorded_at: i64,
}

pub(super) async fn run(
    pool: SqlitePool,
    direct: DirectConnection,
    mut rx: mpsc::Receiver<AppendJob>,
    publish: Publish,
    mut head: i64,
    mode: WriterMode,
) {
    let mut versions: HashMap<String, i64> = HashMap::new();
    let max_batch = match mode {
        WriterMode::GroupCommit => MAX_BATCH,
        WriterMode::PerAppend => 1,
    };
    let mut jobs: Vec<AppendJob> = Vec::with_capacity(max_batch);
    // The writer keeps one connection: its page cache and prepared
    // statements stay warm (a pooled connection would be another one each
    // batch, re-reading every page the previous one changed).
    let mut held: Option<PoolConnection<Sqlite>> = None;
    let checkpointer = super::Checkpointer::new(pool.clone());
    while rx.recv_many(&mut jobs, max_batch).await > 0 {
        if jobs.len() >= LINGER_FROM {
            for _ in 0..LINGER_YIELDS {
                tokio::task::yield_now().await;
                while jobs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
            }
        }
        let started = std::time::Instant::now();
        let conn = match &mut held {
            Some(conn) => conn,
            None => match pool.acquire().await {
                Ok(conn) => held.insert(conn),
                Err(e) => {
                    tracing::error!(error = %e, "event store writer has no connection");
                    fail_all(&mut jobs, e);
                    continue;
                }
            },
        };
        let committed = match mode {
            WriterMode::GroupCommit => {
                match commit_direct(&direct, &mut jobs, &mut versions, head, &publish).await {
                    Ok(Some(new_head)) => Ok(new_head),
                    Ok(None) => commit_batch(conn, &mut jobs, &mut versions, head, &publish).await,
                    Err(e) => Err(e),
                }
            }
            WriterMode::PerAppend => {
                commit_batch(conn, &mut jobs, &mut versions, head, &publish).await
            }
        };
        match committed {
            Ok(new_head) => {
                publish
                    .counters
                    .observed_commit(new_head - head, started.elapsed());
                head = new_head;
                checkpointer.committed();
            }
            Err(e) => {
                tracing::error!(error = %e, "event store batch failed; resynchronising");
                versions.clear();
                publish.tail.lock().expect("tail lock").clear();
                // The connection goes back to the pool; the next batch takes one afresh.
                held = None;
                if let Ok(h) =
                    sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(position), 0) FROM events")
                        .fetch_one(&pool)
                        .await
                {
                    head = h;
                }
            }
        }
        jobs.clear();
    }
    tracing::debug!("event store writer stopped");
}

/// One row of the log, as the direct connection's INSERT binds it.
const INSERT_EVENT: &str = "INSERT INTO events (position, event_id, stream_id, version, \
     event_type, schema_version, user_id, instance_id, data, metadata, recorded_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// Where an event of a batch goes: its position, version and id.
struct Planned {
    position: i64,
    version: i64,
    event_id: String,
    job: usize,
    event: usize,
}

/// The common case in one thread hop: a batch without state effects, on
/// streams whose versions are known, is written on the writer's own
/// connection ([`DirectConnection`]) in one transaction, guarded by the
/// head: when another process appended since (the CLI), it writes nothing
/// and `None` sends the batch the long way ([`commit_batch`]). `None` also
/// when the batch does not qualify; nothing of the jobs is consumed then.
async fn commit_direct(
    direct: &DirectConnection,
    jobs: &mut Vec<AppendJob>,
    versions: &mut HashMap<String, i64>,
    head: i64,
    publish: &Publish,
) -> Result<Option<i64>, StoreError> {
    let qualifies = jobs
        .iter()
        .all(|j| j.append.effects.is_empty() && versions.contains_key(j.append.stream.as_str()));
    if !qualifies {
        return Ok(None);
    }
    let rows: usize = jobs.iter().map(|j| j.prepared.events.len()).sum();
    let now = Utc::now().timestamp_millis();
    // Plan: version checks against the cache; positions and versions per event.
    let mut planned: Vec<Planned> = Vec::with_capacity(rows);
    let mut outcomes: Vec<Result<Appended, StoreError>> = Vec::with_capacity(jobs.len());
    let mut touched: HashMap<String, i64> = HashMap::new();
    let mut next_position = head + 1;
    for (j, job) in jobs.iter().enumerate() {
        let stream = job.append.stream.as_str();
        let current = touched
            .get(stream)
            .or_else(|| versions.get(stream))
            .copied()
            .unwrap_or_default();
        if !admits(job.append.expected, current) {
            outcomes.push(Err(StoreError::Conflict {
                stream: stream.to_owned(),
                expected: job.append.expected,
                actual: current,
            }));
            continue;
        }
        let first_position = next_position;
        let mut version = current;
        let mut event_ids = Vec::with_capacity(job.prepared.events.len());
        for e in 0..job.prepared.events.len() {
            version += 1;
            let event_id = uuid::Uuid::now_v7().to_string();
            event_ids.push(event_id.clone());
            planned.push(Planned {
                position: next_position,
                version,
                event_id,
                job: j,
                event: e,
            });
            next_position += 1;
        }
        touched.insert(stream.to_owned(), version);
        outcomes.push(Ok(Appended {
            first_position,
            last_position: next_position - 1,
            version,
            event_ids,
        }));
    }
    if !planned.is_empty() {
        let batch = std::mem::take(jobs);
        let ran = direct
            .run(move |conn| {
                let written = insert_planned(conn, &batch, &planned, head, now);
                (batch, planned, written)
            })
            .await;
        let written = match ran {
            Ok((batch, back, written)) => {
                *jobs = batch;
                planned = back;
                written
            }
            // The thread is gone with the jobs: their callers see the append fail.
            Err(e) => return Err(StoreError::Db(sqlx::Error::Protocol(e.to_string()))),
        };
        match written {
            Ok(true) => {}
            Ok(false) => {
                // Another process appended: its events may touch our streams.
                versions.clear();
                return Ok(None);
            }
            Err(e) => return Err(fail_all(jobs, sqlx::Error::Protocol(e.to_string()))),
        }
    }
    versions.extend(touched);
    let new_head = next_position - 1;
    let recorded_at = super::ms_to_time(now);
    let mut committed: Vec<RecordedEvent> = Vec::with_capacity(planned.len());
    for p in planned {
        let job = &mut jobs[p.job];
        let e = &mut job.prepared.events[p.event];
        committed.push(RecordedEvent {
            position: p.position,
            event_id: p.event_id,
            stream_id: job.append.stream.as_str().to_owned(),
            version: p.version,
            event_type: e.event_type.to_owned(),
            schema_version: e.schema_version,
            user_id: job.append.user_id.clone(),
            instance_id: job.append.instance_id.clone(),
            data: e
                .data
                .take()
                .expect("each prepared event is committed once"),
            metadata: job.append.metadata.clone(),
            recorded_at,
            event: e.event.take(),
        });
    }
    publish.committed(committed, new_head, jobs, outcomes);
    Ok(Some(new_head))
}

/// On the writer's connection: writes the planned events in one
/// transaction when the log's head is still `head`; `Ok(false)` (nothing
/// written) when another process appended meanwhile.
fn insert_planned(
    conn: &mut rusqlite::Connection,
    jobs: &[AppendJob],
    planned: &[Planned],
    head: i64,
    now: i64,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let db_head: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    if db_head != head {
        return Ok(false);
    }
    {
        let mut insert = tx.prepare_cached(INSERT_EVENT)?;
        for p in planned {
            let job = &jobs[p.job];
            let e = &job.prepared.events[p.event];
            insert.execute(rusqlite::params![
                p.position,
                p.event_id,
                job.append.stream.as_str(),
                p.version,
                e.event_type,
                e.schema_version,
                job.append.user_id.as_deref(),
                job.append.instance_id.as_deref(),
                e.data.as_ref().map_or("{}", EventData::text),
                &*job.prepared.metadata,
                now,
            ])?;
        }
    }
    tx.commit()?;
    Ok(true)
}

/// Commits one batch, publishes the new head, then replies to every job
/// (so a caller that got its answer sees `head()` at least at its event).
/// Returns the new head.
async fn commit_batch(
    conn: &mut SqliteConnection,
    jobs: &mut Vec<AppendJob>,
    versions: &mut HashMap<String, i64>,
    head: i64,
    publish: &Publish,
) -> Result<i64, StoreError> {
    let now = Utc::now().timestamp_millis();
    let recorded_at = super::ms_to_time(now);
    // BEGIN IMMEDIATE takes the write lock first, so the head read below is
    // the real one even when another process (the CLI) appended meanwhile.
    let begun = async {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let db_head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        Ok::<_, sqlx::Error>((tx, db_head))
    }
    .await;
    let (mut tx, db_head) = match begun {
        Ok(v) => v,
        Err(e) => return Err(fail_all(jobs, e)),
    };
    if db_head != head {
        // Someone else wrote to the log: cached stream versions may be stale.
        versions.clear();
    }
    let mut rows: Vec<Row> = Vec::new();
    // Per job: Ok(appended) once written, or the error to reply with.
    let mut outcomes: Vec<Result<Appended, StoreError>> = Vec::with_capacity(jobs.len());
    // Versions touched by this batch, applied to the cache after commit.
    let mut touched: HashMap<String, i64> = HashMap::new();
    let mut next_position = db_head + 1;

    for job in jobs.iter_mut() {
        let append = &mut job.append;
        let stream = append.stream.as_str().to_owned();
        let current = match touched.get(&stream).or_else(|| versions.get(&stream)) {
            Some(v) => *v,
            None => {
                let v: i64 = match sqlx::query_scalar(
                    "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?",
                )
                .bind(&stream)
                .fetch_one(&mut *tx)
                .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        outcomes.push(Err(StoreError::Db(e)));
                        continue;
                    }
                };
                v
            }
        };
        if !admits(append.expected, current) {
            outcomes.push(Err(StoreError::Conflict {
                stream,
                expected: append.expected,
                actual: current,
            }));
            continue;
        }
        if !append.effects.is_empty()
            && let Err(e) = run_effects(&mut tx, std::mem::take(&mut append.effects)).await
        {
            outcomes.push(Err(e));
            continue;
        }
        let metadata = &job.prepared.metadata;
        let first_position = next_position;
        let mut version = current;
        let mut event_ids = Vec::with_capacity(job.prepared.events.len());
        for event in std::mem::take(&mut job.prepared.events) {
            version += 1;
            let event_id = uuid::Uuid::now_v7().to_string();
            event_ids.push(event_id.clone());
            rows.push(Row {
                metadata: metadata.clone(),
                recorded_at: now,
                event: RecordedEvent {
                    position: next_position,
                    event_id,
                    stream_id: stream.clone(),
                    version,
                    event_type: event.event_type.to_owned(),
                    schema_version: event.schema_version,
                    user_id: append.user_id.clone(),
                    instance_id: append.instance_id.clone(),
                    data: event.data.expect("each prepared event is committed once"),
                    metadata: append.metadata.clone(),
                    recorded_at,
                    event: event.event,
                },
            });
            next_position += 1;
        }
        touched.insert(stream, version);
        outcomes.push(Ok(Appended {
            first_position,
            last_position: next_position - 1,
            version,
            event_ids,
        }));
    }

    let result = async {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(INSERT_EVENTS);
            qb.push_values(chunk, |mut b, r| {
                let e = &r.event;
                Columns {
                    position: e.position,
                    event_id: &e.event_id,
                    stream_id: &e.stream_id,
                    version: e.version,
                    event_type: &e.event_type,
                    schema_version: e.schema_version,
                    user_id: e.user_id.as_deref(),
                    instance_id: e.instance_id.as_deref(),
                    data: e.data.text(),
                    metadata: &r.metadata,
                    recorded_at: r.recorded_at,
                }
                .bind(&mut b);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await
    }
    .await;

    match result {
        Ok(()) => {
            versions.extend(touched);
            let new_head = next_position - 1;
            let committed = rows.into_iter().map(|r| r.event).collect();
            publish.committed(committed, new_head, jobs, outcomes);
            Ok(new_head)
        }
        Err(e) => Err(fail_all(jobs, e)),
    }
}

/// Runs one append's effects inside a savepoint, so a failing append leaves
/// the rest of the batch intact.
async fn run_effects(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    effects: Vec<super::Effect>,
) -> Result<(), StoreError> {
    sqlx::query("SAVEPOINT append_effects")
        .execute(&mut **tx)
        .await?;
    for effect in effects {
        if let Err(e) = effect.apply(tx).await {
            sqlx::query("ROLLBACK TO append_effects")
                .execute(&mut **tx)
                .await?;
            sqlx::query("RELEASE append_effects")
                .execute(&mut **tx)
                .await?;
            return Err(match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Duplicate(db.message().to_string())
                }
                _ => StoreError::Db(e),
            });
        }
    }
    sqlx::query("RELEASE append_effects")
        .execute(&mut **tx)
        .await?;
    Ok(())
}
