//! Read models built from the event log, one independent projector each:
//!
//! - [`activity`]: every instance event as an activity log entry.
//! - [`messages`]: message history per instance and chat, with delivery status.
//! - [`stats`]: usage counters per instance per UTC day.
//!
//! Each projection owns its tables in the read-model database (`views.db`),
//! with its SQL under `projections/<name>/`. A batch is applied in one
//! transaction together with the projector's checkpoint, and events at or
//! below the checkpoint are skipped, so redelivery is harmless. [`rebuild`]
//! drops a projection's tables and replays the whole log into them.

pub mod activity;
pub mod messages;
pub mod stats;

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool};

use crate::backbone::{Consumer, load_checkpoint, save_checkpoint};
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
    /// caller's transaction.
    fn apply_events(
        conn: &mut SqliteConnection,
        events: &[SharedEvent],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The one connection the projectors of a `views` database write through,
/// taken in turns. Taking turns spares them SQLite's busy handler, which
/// backs off by sleeping (up to 100 ms a try) and can starve one of them
/// under load. Keeping one connection keeps its page cache and prepared
/// statements warm: a pooled connection would be a different one each
/// batch, re-reading the pages another connection changed.
#[derive(Clone)]
pub struct Writing {
    views: SqlitePool,
    conn: Arc<tokio::sync::Mutex<Option<PoolConnection<Sqlite>>>>,
}

impl Writing {
    /// Turns on a connection of `views`, taken on first use.
    pub fn new(views: SqlitePool) -> Self {
        Self {
            views,
            conn: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// Runs `f` on the shared connection, once the other projectors are done.
    /// After a failed batch the connection goes back to the pool and the
    /// next turn takes one afresh.
    async fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut SqliteConnection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut slot = self.conn.lock().await;
        let conn = match &mut *slot {
            Some(conn) => conn,
            None => slot.insert(
                self.views
                    .acquire()
                    .await
                    .context("Failed to get a projection connection")?,
            ),
        };
        let result = f(conn).await;
        if result.is_err() {
            *slot = None;
        }
        result
    }
}

/// Runs a projection as a [`Consumer`] of the backbone.
pub struct Projector<P> {
    views: SqlitePool,
    writing: Writing,
    projection: PhantomData<fn() -> P>,
}

impl<P: Projection> Projector<P> {
    /// A projector writing into `views` through `writing`, shared with the
    /// other projectors of that database.
    pub fn new(views: SqlitePool, writing: Writing) -> Self {
        Self {
            views,
            writing,
            projection: PhantomData,
        }
    }
}

#[async_trait]
impl<P: Projection> Consumer for Projector<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    async fn checkpoint(&self) -> anyhow::Result<i64> {
        Ok(load_checkpoint(&self.views, P::NAME).await?)
    }

    async fn apply(&self, events: &[SharedEvent]) -> anyhow::Result<()> {
        self.writing
            .with(async |conn| apply_batch::<P>(conn, events).await)
            .await
    }
}

/// Applies one batch: skips what the checkpoint covers, then writes the
/// changes and the new checkpoint in one `BEGIN IMMEDIATE` transaction.
pub async fn apply_batch<P: Projection>(
    conn: &mut SqliteConnection,
    events: &[SharedEvent],
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .context("Failed to begin a projection transaction")?;
    let checkpoint = load_checkpoint(&mut *tx, P::NAME).await?;
    let fresh = unapplied(events, checkpoint)?;
    let Some(last) = fresh.last() else {
        return Ok(());
    };
    P::apply_events(&mut tx, fresh)
        .await
        .with_context(|| format!("Failed to apply events to the {} projection", P::NAME))?;
    save_checkpoint(&mut tx, P::NAME, last.position).await?;
    tx.commit()
        .await
        .context("Failed to commit a projection batch")?;
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
    Ok(())
}

/// Every projector, as consumers of the backbone.
pub fn consumers(views: &SqlitePool) -> Vec<Arc<dyn Consumer>> {
    let writing = Writing::new(views.clone());
    vec![
        Arc::new(Projector::<activity::Activity>::new(
            views.clone(),
            writing.clone(),
        )),
        Arc::new(Projector::<messages::Messages>::new(
            views.clone(),
            writing.clone(),
        )),
        Arc::new(Projector::<stats::Stats>::new(views.clone(), writing)),
    ]
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

async fn rebuild_one<P: Projection>(views: &SqlitePool, store: &EventStore) -> anyhow::Result<()> {
    let mut tx = views
        .begin_with("BEGIN IMMEDIATE")
        .await
        .context("Failed to begin the rebuild transaction")?;
    sqlx::raw_sql(P::DROP)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("Failed to drop the {} tables", P::NAME))?;
    sqlx::raw_sql(P::SCHEMA)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("Failed to create the {} tables", P::NAME))?;
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
        P::apply_events(&mut tx, &events)
            .await
            .with_context(|| format!("Failed to replay events into {}", P::NAME))?;
    }
    save_checkpoint(&mut tx, P::NAME, position).await?;
    tx.commit()
        .await
        .with_context(|| format!("Failed to commit the rebuild of {}", P::NAME))?;
    tracing::info!(projection = P::NAME, position, "projection rebuilt");
    Ok(())
}

/// The UTC day (`YYYY-MM-DD`) an event was recorded on.
pub(crate) fn day_of(event: &RecordedEvent) -> String {
    event.recorded_at.format("%Y-%m-%d").to_string()
}
