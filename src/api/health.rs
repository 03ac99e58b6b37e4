//! Liveness and readiness.

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use crate::api::AppState;

/// Health answers.
#[derive(Object)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Per-part readiness, on `/readyz`.
    #[oai(skip_serializing_if_is_none)]
    pub checks: Option<ReadyChecks>,
}

/// What `/readyz` checks.
#[derive(Object)]
pub struct ReadyChecks {
    /// The SQLite store answers.
    pub store: bool,
    /// `embedded` or `nats`.
    pub backbone: String,
    /// The backbone is reachable (always true for the embedded one).
    pub backbone_ready: bool,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Ready.
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// Not ready yet (or any more).
    #[oai(status = 503)]
    NotReady(Json<Health>),
}

/// `/healthz` and `/readyz`.
pub struct HealthApi;

#[OpenApi(tag = "super::security::Tag::Health")]
impl HealthApi {
    /// The process is alive.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
            checks: None,
        })
    }

    /// The store is open and the backbone reachable.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self, state: Data<&AppState>) -> ReadyResponse {
        let store = sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(state.store.pool())
            .await
            .is_ok();
        let (backbone, backbone_ready) = state.backbone_status();
        let ready = store && backbone_ready;
        let body = Json(Health {
            status: if ready { "ok" } else { "unavailable" }.into(),
            checks: Some(ReadyChecks {
                store,
                backbone: backbone.into(),
                backbone_ready,
            }),
        });
        if ready {
            ReadyResponse::Ready(body)
        } else {
            ReadyResponse::NotReady(body)
        }
    }
}
