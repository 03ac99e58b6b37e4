//! The consumer interface shared by both backbones. A [`Consumer`] (a
//! projector, the webhook dispatcher) receives batches of log events in order
//! and commits its own state together with its checkpoint (the last applied
//! global position), so a redelivered event is a no-op.
//!
//! - Embedded backbone (default): consumers tail the SQLite log directly.
//! - NATS JetStream backbone (`WA_NATS_URL`): consumers are durable pull
//!   consumers of the stream the outbox relay fills.

pub mod embedded;
pub mod nats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{EventStore, SharedEvent};

/// Something that builds state from the event log.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// A stable name: the checkpoint key and the durable consumer name.
    fn name(&self) -> &'static str;

    /// The global position of the last event applied (0 = none).
    async fn checkpoint(&self) -> anyhow::Result<i64>;

    /// Applies a batch, in order. Events at or below the checkpoint must be
    /// skipped; the state change and the new checkpoint commit in one
    /// transaction.
    async fn apply(&self, events: &[SharedEvent]) -> anyhow::Result<()>;
}

/// Where consumers get their events from.
#[derive(Clone)]
pub enum Backbone {
    /// Tail the SQLite log.
    Embedded(EventStore),
    /// Durable pull consumers of the JetStream stream the relay fills (the
    /// store fills what the stream no longer holds).
    Nats(nats::NatsBackbone, EventStore),
}

impl Backbone {
    /// `embedded` or `nats`.
    pub fn name(&self) -> &'static str {
        match self {
            Backbone::Embedded(_) => "embedded",
            Backbone::Nats(..) => "nats",
        }
    }

    /// Whether consumers can reach their events (NATS connected; always for the embedded one).
    pub fn is_reachable(&self) -> bool {
        match self {
            Backbone::Embedded(_) => true,
            Backbone::Nats(nats, _) => nats.is_reachable(),
        }
    }

    /// Runs `consumer` until `shutdown`; failures are retried with backoff.
    pub fn spawn_consumer(
        &self,
        consumer: Arc<dyn Consumer>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        match self {
            Backbone::Embedded(store) => {
                tokio::spawn(embedded::run(store.clone(), consumer, shutdown))
            }
            Backbone::Nats(nats, store) => tokio::spawn(nats::run_consumer(
                nats.clone(),
                store.clone(),
                consumer,
                shutdown,
            )),
        }
    }
}

/// Delay before retrying a failed apply: 100 ms doubling to 10 s.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(10))
}

/// The checkpoint table every consumer in the read-model database shares.
pub async fn ensure_checkpoint_table(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS consumer_checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A consumer's checkpoint (0 when it has none).
pub async fn load_checkpoint<'e, E>(executor: E, name: &str) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT position FROM consumer_checkpoints WHERE name = ?")
            .bind(name)
            .fetch_optional(executor)
            .await?
            .unwrap_or(0),
    )
}

/// Stores a consumer's checkpoint (inside the consumer's own transaction).
pub async fn save_checkpoint(
    conn: &mut sqlx::SqliteConnection,
    name: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO consumer_checkpoints (name, position) VALUES (?, ?) \
         ON CONFLICT(name) DO UPDATE SET position = excluded.position",
    )
    .bind(name)
    .bind(position)
    .execute(conn)
    .await?;
    Ok(())
}
