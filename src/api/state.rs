//! What every request handler can reach.

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::auth::Tokens;
use crate::backbone::Backbone;
use crate::config::Config;
use crate::domain::users::KeyCache;
use crate::store::EventStore;
use crate::whatsapp::Sessions;
use crate::whatsapp::sim::SimEngine;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: EventStore,
    pub tokens: Tokens,
    pub sessions: Sessions,
    /// The simulated network, when `WA_ENGINE=sim`.
    pub sim: Option<SimEngine>,
    /// Client for media URLs (guarded unless `WA_MEDIA_ALLOW_PRIVATE`).
    pub media_client: reqwest::Client,
    /// The read-model database (`views.db`): projections and their checkpoints (webhook deliveries live in `webhooks.db`).
    pub views: SqlitePool,
    /// Where consumers read the log from.
    pub backbone: Backbone,
    /// Records every authenticated API call as an `api_called` event.
    pub api_calls: super::calls::Recorder,
    /// Recently checked API keys (see [`crate::domain::users::KeyCache`]).
    pub key_cache: Arc<KeyCache>,
    /// Recent failed logins (see [`crate::domain::logins`]).
    pub login_guard: Arc<crate::domain::logins::LoginGuard>,
    /// Each user's request budget (`WA_RATE_LIMIT_PER_MIN`).
    pub rate_limits: Arc<super::rate_limit::RateLimits>,
    /// Requests holding an `Idempotency-Key` right now (see [`crate::domain::idempotency`]).
    pub idempotency: Arc<crate::domain::idempotency::KeyLocks>,
    /// Seals and opens API keys and webhook secrets at rest.
    pub secrets: Arc<crate::secrets::Sealer>,
    /// The webhook dispatcher (delivery log, manual retries).
    pub webhooks: crate::webhooks::Webhooks,
    /// Cancelled when the gateway stops (ends the live event streams).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The Prometheus instruments and the session health book (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// The backbone's name and whether it is reachable.
    pub fn backbone_status(&self) -> (&'static str, bool) {
        (self.backbone.name(), self.backbone.is_reachable())
    }
}
