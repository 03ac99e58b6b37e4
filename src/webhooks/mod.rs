//! The webhook dispatcher: signed, retried, durable, observable.
//!
//! ```text
//! log ──► intake (Consumer: settings as of the log, queue deliveries + checkpoint in one tx)
//!              │ wake
//!              ▼
//!         lanes (one per instance with pending work, event order)
//!              │ prepare → send (worker semaphore, WA_WEBHOOK_WORKERS) → decide
//!              ▼
//!         recorder (row update, then webhook_delivered / webhook_failed events)
//! ```
//!
//! - [`signing`]: `X-Webhook-Signature` and the Standard Webhooks headers.
//! - [`payload`]: the seed's `{event, data, timestamp}` bodies and the notify filters.
//! - [`intake`]: the log consumer.
//! - [`opt_in`]: the event types sent only to instances that list them in `webhookEvents`.
//! - [`worker`]: lanes, retries, `Retry-After`, 410, the recorder.
//! - [`deliveries`]: table access, schema in `projections/webhooks/`.
//!
//! The dispatcher keeps its tables and its checkpoint in its own SQLite file,
//! `webhooks.db`, not in `views.db`: the projectors' write transactions would
//! otherwise make deliveries wait in SQLite's polling busy handler.

pub mod deliveries;
pub mod intake;
pub mod opt_in;
pub mod payload;
pub mod signing;
pub mod worker;

use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backbone::Consumer;
use crate::config::Config;
use crate::store::EventStore;

/// The dispatcher's handle: its intake, its run loop, and wake-ups for the API.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<worker::Shared>,
}

impl Webhooks {
    /// Creates the tables and the guarded HTTP client (no redirects,
    /// `WA_WEBHOOK_TIMEOUT`, private addresses refused unless `WA_WEBHOOK_ALLOW_PRIVATE`).
    pub async fn open(
        store: EventStore,
        config: &Config,
        sealer: Arc<crate::secrets::Sealer>,
    ) -> anyhow::Result<Self> {
        let db = crate::store::open_sqlite(&config.data_dir.join("webhooks.db"), 8).await?;
        crate::backbone::ensure_checkpoint_table(&db).await?;
        deliveries::ensure_schema(&db).await?;
        let deliver_from = deliveries::deliver_from(&db, store.head()).await?;
        let client = crate::net::outbound_client(
            config.webhook_allow_private,
            config.webhook_timeout,
            false,
            "webhookUrl",
        );
        Ok(Self {
            shared: Arc::new(worker::Shared::new(
                db,
                store,
                client,
                config.webhook_allow_private,
                config.webhook_workers,
                deliver_from,
                sealer,
            )),
        })
    }

    /// The log consumer that queues deliveries.
    pub fn intake(&self) -> Arc<dyn Consumer> {
        Arc::new(intake::Intake {
            shared: self.shared.clone(),
        })
    }

    /// Starts sending; stops (abandoning in-flight attempts, which stay pending) on `shutdown`.
    pub fn spawn(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.shared.clone().run(shutdown))
    }

    /// An instance's queue changed outside the intake (manual retry): re-read it.
    pub fn queue_changed(&self, instance_id: &str) {
        self.shared.wake(instance_id, true);
    }

    /// The dispatcher's database (`webhooks.db`): deliveries, settings, checkpoint.
    pub fn db(&self) -> &SqlitePool {
        &self.shared.db
    }
}
