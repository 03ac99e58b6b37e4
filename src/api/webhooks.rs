//! `/api/instances/{instanceId}/webhook-deliveries`: the delivery log and
//! manual redelivery (beyond the seed). Owner or admin only; others get 404.

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::domain::api_time_ms;
use crate::error::{ApiError, ApiResult};
use crate::webhooks::deliveries::{self, DELIVERED, Delivery, FAILED, PENDING};

use super::security::{Tag, owned_instance};

/// Default page size of the delivery log.
const DEFAULT_LIMIT: i64 = 50;
/// Largest page size of the delivery log.
const MAX_LIMIT: i64 = 500;

/// One webhook delivery: an event sent (or being sent) to the instance's webhook.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookDeliveryView {
    /// Delivery id (for the retry endpoint).
    pub id: String,
    pub instance_id: String,
    /// The webhook event: `message_received`, `message_sent`, `message_status`,
    /// `connection_opened`, `connection_closed` or `qr_received`.
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made so far (all rounds).
    pub attempts: u32,
    /// HTTP status of the last answer, if one came.
    pub last_response_code: Option<u16>,
    /// Why the last attempt failed (`HTTP 500`, `timeout`, `connection error`, ...).
    pub last_error: Option<String>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    /// The `webhook-id` header: the same on every attempt.
    pub webhook_id: String,
    /// The log event delivered.
    pub event_id: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Delivery> for WebhookDeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            instance_id: d.instance_id,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            last_response_code: d.last_status_code,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at.map(api_time_ms),
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            created_at: api_time_ms(d.created_at),
            updated_at: api_time_ms(d.updated_at),
        }
    }
}

/// Paging of the delivery log (the seed's pagination shape).
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookDeliveryPagination {
    pub total: i64,
    pub limit: i64,
    pub skip: i64,
    pub has_more: bool,
}

/// A page of the delivery log, newest first.
#[derive(Object)]
pub struct WebhookDeliveryList {
    pub deliveries: Vec<WebhookDeliveryView>,
    pub pagination: WebhookDeliveryPagination,
}

/// The delivery log endpoints.
pub struct WebhooksApi;

#[OpenApi(tag = "Tag::Webhooks")]
impl WebhooksApi {
    /// An instance's webhook deliveries, newest first. `limit` 1 to 500
    /// (default 50), `skip` from 0, `status` one of `pending`, `delivered`, `failed`.
    #[oai(path = "/api/instances/:instanceId/webhook-deliveries", method = "get")]
    async fn list(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        limit: Query<Option<i64>>,
        skip: Query<Option<i64>>,
        status: Query<Option<String>>,
    ) -> ApiResult<Json<WebhookDeliveryList>> {
        let limit = limit.0.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let skip = skip.0.unwrap_or(0);
        if skip < 0 {
            return Err(ApiError::bad_request("skip must not be negative"));
        }
        let status = status.0.filter(|s| !s.is_empty());
        if status
            .as_deref()
            .is_some_and(|s| ![PENDING, DELIVERED, FAILED].contains(&s))
        {
            return Err(ApiError::bad_request(
                "status must be pending, delivered or failed",
            ));
        }
        let (rows, total) = deliveries::list(
            state.webhooks.db(),
            owned.id().as_str(),
            status.as_deref(),
            limit,
            skip,
        )
        .await?;
        let has_more = skip + (rows.len() as i64) < total;
        Ok(Json(WebhookDeliveryList {
            deliveries: rows.into_iter().map(Into::into).collect(),
            pagination: WebhookDeliveryPagination {
                total,
                limit,
                skip,
                has_more,
            },
        }))
    }

    /// Send a delivery again now: a new round of attempts to the instance's
    /// current `webhookUrl` with its current retry settings (same `webhook-id`).
    /// 409 when the instance's webhook is disabled.
    #[oai(
        path = "/api/instances/:instanceId/webhook-deliveries/:deliveryId/retry",
        method = "post"
    )]
    async fn retry(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "deliveryId")] delivery_id: Path<String>,
    ) -> ApiResult<Json<WebhookDeliveryView>> {
        let i = owned.load(&state).await?;
        let not_found = || ApiError::not_found(format!("Delivery {} not found", delivery_id.0));
        deliveries::find(state.webhooks.db(), i.id.as_str(), &delivery_id)
            .await?
            .ok_or_else(not_found)?;
        let url = match (&i.webhook.url, i.webhook.enabled) {
            (Some(url), true) => url.clone(),
            _ => {
                return Err(ApiError::conflict(
                    "The instance's webhook is disabled; enable it before retrying",
                ));
            }
        };
        let d = deliveries::requeue(
            state.webhooks.db(),
            i.id.as_str(),
            &delivery_id,
            &url,
            i.webhook.max_retries,
            i.webhook.retry_interval,
            chrono::Utc::now().timestamp_millis(),
        )
        .await?
        .ok_or_else(not_found)?;
        state.webhooks.queue_changed(i.id.as_str());
        Ok(Json(d.into()))
    }
}
