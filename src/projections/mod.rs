//! Read models built from the event log, one independent projector each:
//!
//! - [`activity`]: every instance event as an activity log entry.
//! - [`messages`]: message history per instance and chat, with delivery status.
//! - [`stats`]: usage counters per instance per UTC day.
//! - [`chat_list`]: not a projector: the chats of an instance, read from [`messages`]' tables.
//!
//! Each projection owns its tables in the read-model database (`views.db`),
//! with its SQL under `projections/<name>/`. They run as one consumer,
//! [`Projectors`]: a batch is applied to all of them in one transaction,
//! each with its own checkpoint, and events at or below a projection's
//! checkpoint are skipped, so redelivery is harmless. [`rebuild`]
//! drops a projection's tables and replays the whole log into them.

pub mod activity;
pub mod chat_list;
pub mod messages;
pub mod stats;
pub mod stuck;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::SqlitePool;

use crate::backbone::{Consumer, load_checkpoint};
use crate::store::direct::DirectConnection;
use crate::store::{EventStore, RecordedEvent, SharedEvent};

/// The names of every projection (checkpoint keys, `projections rebuild <name>`).
pub const NAMES: &[&str] = &[activity::NAME, messages::NAME, stats::NAME];

/// Events read from the log per transaction during a rebuild.
const REBUILD_BATCH: i64 = 5_000;

/// One read model: its tables and how events change them.
pub trait Projection: Send + Sync + 'static {
    /// The checkpoint key and the name on the command line.
    const NAME: &'static str;
    /// `CREATE TABLE IF NOT EXISTS` and indexes.
    const SCHEMA: &'static str;
    /// Drops every table of the projection.
    const DROP: &'static str;
    /// The tables, for comparisons and tooling.
    const TABLES: &'static [&'static str];

    /// Applies events (already past the checkpoint, in log order) inside the
    /// caller's transaction, on the projections' own connection.
    fn apply_events(conn: &rusqlite::Connection, events: &[SharedEvent]) -> anyhow::Result<()>;
}

/// The name of the one consumer that runs every projection (its durable
/// consumer on NATS); each projection keeps its own checkpoint.
pub const CONSUMER: &str = "projections";

/// Every projection as one [`Consumer`] of the backbone: a batch goes into
/// all of them in one `BEGIN IMMEDIATE` transaction of `views.db`, each
/// behind its own checkpoint (so a rebuild of one, which moves only its
/// checkpoint, stays exact). The batch runs on the projections' own
/// connection thread ([`DirectConnection`]): cached statements, one thread
/// hop a batch.
pub struct Projectors {
    views: SqlitePool,
    /// The connection batches are written through (its page cache and
    /// prepared statements stay warm between batches).
    conn: DirectConnection,
    /// Runs `views.db`'s WAL checkpoints in the background.
    checkpointer: crate::store::Checkpointer,
}

impl Projectors {
    /// The projections of `views`, written through a connection of their own.
    pub fn new(views: SqlitePool) -> anyhow::Result<Self> {
        let conn = open_direct(&views, "projections")?;
        Ok(Self {
            checkpointer: crate::store::Checkpointer::new(views.clone()),
            views,
            conn,
        })
    }
}

/// A connection of its own (on its own thread) to the database of `pool`.
pub fn open_direct(pool: &SqlitePool, thread: &str) -> anyhow::Result<DirectConnection> {
    let options = pool.connect_options();
    DirectConnection::open(options.get_filename(), thread)
        .with_context(|| format!("Failed to open {}", options.get_filename().display()))
}

#[async_trait]
impl Consumer for Projectors {
    fn name(&self) -> &'static str {
        CONSUMER
    }

    /// The lowest of the projections' checkpoints: where the batches must start.
    async fn checkpoint(&self) -> anyhow::Result<i64> {
        let mut lowest = i64::MAX;
        for name in NAMES {
            lowest = lowest.min(load_checkpoint(&self.views, name).await?);
        }
        Ok(lowest)
    }

    async fn apply(&self, events: &[SharedEvent]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.conn
            .run(move |conn| apply_all(conn, &events))
            .await??;
        self.checkpointer.committed();
        Ok(())
    }
}

/// Applies one batch to every projection in one transaction.
fn apply_all(conn: &mut rusqlite::Connection, events: &[SharedEvent]) -> anyhow::Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .context("Failed to begin a projection transaction")?;
    apply_in::<activity::Activity>(&tx, events)?;
    apply_in::<messages::Messages>(&tx, events)?;
    apply_in::<stats::Stats>(&tx, events)?;
    tx.commit().context("Failed to commit a projection batch")?;
    Ok(())
}

/// Applies one batch to one projection in its own `BEGIN IMMEDIATE`
/// transaction (tools and tests; the gateway runs [`Projectors`]).
pub async fn apply_batch<P: Projection>(
    conn: &DirectConnection,
    events: &[SharedEvent],
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let events = events.to_vec();
    conn.run(move |conn| {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("Failed to begin a projection transaction")?;
        apply_in::<P>(&tx, &events)?;
        tx.commit().context("Failed to commit a projection batch")
    })
    .await?
}

/// Inside the caller's transaction: skips what `P`'s checkpoint covers, then
/// writes `P`'s changes and its new checkpoint.
fn apply_in<P: Projection>(
    conn: &rusqlite::Connection,
    events: &[SharedEvent],
) -> anyhow::Result<()> {
    let checkpoint = load_checkpoint_on(conn, P::NAME)?;
    let fresh = unapplied(events, checkpoint)?;
    let Some(last) = fresh.last() else {
        return Ok(());
    };
    P::apply_events(conn, fresh)
        .with_context(|| format!("Failed to apply events to the {} projection", P::NAME))?;
    save_checkpoint_on(conn, P::NAME, last.position)?;
    Ok(())
}

/// A projection's checkpoint, read on the projections' connection (0 when none).
fn load_checkpoint_on(conn: &rusqlite::Connection, name: &str) -> anyhow::Result<i64> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached("SELECT position FROM consumer_checkpoints WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Stores a projection's checkpoint inside the caller's transaction.
fn save_checkpoint_on(
    conn: &rusqlite::Connection,
    name: &str,
    position: i64,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO consumer_checkpoints (name, position) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET position = excluded.position",
    )?
    .execute(rusqlite::params![name, position])?;
    Ok(())
}

/// The events of a batch after `checkpoint`; the batch must be in log order.
fn unapplied(events: &[SharedEvent], checkpoint: i64) -> anyhow::Result<&[SharedEvent]> {
    anyhow::ensure!(
        events.windows(2).all(|w| w[0].position < w[1].position),
        "a batch of events is not in log order"
    );
    let start = events.partition_point(|e| e.position <= checkpoint);
    Ok(&events[start..])
}

/// Ends the query of a page: newest first (ties in log order, newest
/// first), `limit` rows after the first `skip`.
fn push_newest_first(qb: &mut sqlx::QueryBuilder<sqlx::Sqlite>, limit: i64, skip: i64) {
    qb.push(" ORDER BY created_at DESC, position DESC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(skip);
}

/// Creates every projection's tables (idempotent).
pub async fn ensure_schemas(views: &SqlitePool) -> anyhow::Result<()> {
    crate::backbone::ensure_checkpoint_table(views).await?;
    for schema in [
        activity::Activity::SCHEMA,
        messages::Messages::SCHEMA,
        stats::Stats::SCHEMA,
    ] {
        sqlx::raw_sql(schema)
            .execute(views)
            .await
            .context("Failed to create the projection tables")?;
    }
    messages::ensure_columns(views)
        .await
        .context("Failed to add the message history's new columns")?;
    Ok(())
}

/// The projections, as one consumer of the backbone.
pub fn consumers(views: &SqlitePool) -> anyhow::Result<Vec<Arc<dyn Consumer>>> {
    Ok(vec![Arc::new(Projectors::new(views.clone())?)])
}

/// The tables of the projection `name`, if there is one.
pub fn tables(name: &str) -> Option<&'static [&'static str]> {
    match name {
        activity::NAME => Some(activity::Activity::TABLES),
        messages::NAME => Some(messages::Messages::TABLES),
        stats::NAME => Some(stats::Stats::TABLES),
        _ => None,
    }
}

/// Drops and recreates the tables of one projection (`name`) or of all
/// (`None`), and replays the whole log into them. Each projection is rebuilt
/// in a single transaction: readers see the old tables until it commits, and
/// a running projector waits for it, then continues after the new checkpoint.
pub async fn rebuild(
    views: &SqlitePool,
    store: &EventStore,
    name: Option<&str>,
) -> anyhow::Result<()> {
    crate::backbone::ensure_checkpoint_table(views).await?;
    let names: Vec<&str> = match name {
        None => NAMES.to_vec(),
        Some(n) if NAMES.contains(&n) => vec![n],
        Some(n) => anyhow::bail!(
            "unknown projection {n:?}; expected one of: {}",
            NAMES.join(", ")
        ),
    };
    for n in names {
        match n {
            activity::NAME => rebuild_one::<activity::Activity>(views, store).await?,
            messages::NAME => rebuild_one::<messages::Messages>(views, store).await?,
            stats::NAME => rebuild_one::<stats::Stats>(views, store).await?,
            _ => unreachable!("names are checked above"),
        }
    }
    Ok(())
}

/// Rebuilds one projection in one transaction on a connection of its own.
async fn rebuild_one<P: Projection>(views: &SqlitePool, store: &EventStore) -> anyhow::Result<()> {
    let conn = open_direct(views, "projection-rebuild")?;
    conn.run(|conn| {
        conn.execute_batch("BEGIN IMMEDIATE")
            .context("Failed to begin the rebuild transaction")?;
        conn.execute_batch(P::DROP)
            .with_context(|| format!("Failed to drop the {} tables", P::NAME))?;
        conn.execute_batch(P::SCHEMA)
            .with_context(|| format!("Failed to create the {} tables", P::NAME))
    })
    .await??;
    let replayed = replay_into::<P>(&conn, store).await;
    let finished = match replayed {
        Ok(position) => {
            conn.run(move |conn| {
                save_checkpoint_on(conn, P::NAME, position)?;
                conn.execute_batch("COMMIT")
                    .with_context(|| format!("Failed to commit the rebuild of {}", P::NAME))?;
                Ok::<_, anyhow::Error>(position)
            })
            .await?
        }
        Err(e) => Err(e),
    };
    match finished {
        Ok(position) => {
            tracing::info!(projection = P::NAME, position, "projection rebuilt");
            Ok(())
        }
        Err(e) => {
            let _ = conn.run(|conn| conn.execute_batch("ROLLBACK")).await;
            Err(e)
        }
    }
}

/// Replays the whole log into `P` inside the rebuild's open transaction;
/// returns the last position replayed.
async fn replay_into<P: Projection>(
    conn: &DirectConnection,
    store: &EventStore,
) -> anyhow::Result<i64> {
    let mut position = 0;
    loop {
        let events: Vec<SharedEvent> = store
            .read_from(position, REBUILD_BATCH)
            .await
            .context("Failed to read the event log")?
            .into_iter()
            .map(Arc::new)
            .collect();
        let Some(last) = events.last() else { break };
        position = last.position;
        conn.run(move |conn| {
            P::apply_events(conn, &events)
                .with_context(|| format!("Failed to replay events into {}", P::NAME))
        })
        .await??;
    }
    Ok(position)
}

/// The UTC day (`YYYY-MM-DD`) an event was recorded on.
pub(crate) fn day_of(event: &RecordedEvent) -> String {
    event.recorded_at.format("%Y-%m-%d").to_string()
}
