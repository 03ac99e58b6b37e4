//! `GET /api/instances/{instanceId}/activity`: the instance's activity log.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, payload::Json};
use serde_json::Value;

use crate::api::AppState;
use crate::domain::api_time_ms;
use crate::error::{ApiError, ApiResult};
use crate::projections::activity::{self, ActivityQuery};

use super::paging::{Pagination, date_range, page_bounds};
use super::security::{Tag, owned_instance};

/// Entries per page when `limit` is absent.
const DEFAULT_LIMIT: i64 = 100;

/// One thing that happened to an instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ActivityLogEntry {
    /// The id of the event behind the entry.
    pub id: String,
    pub instance_id: String,
    /// The event type: `instance_created`, `qr_received`, `connection_opened`, `message_sent`, ...
    pub action: String,
    /// The event's payload without `instanceId` (and without QR codes).
    pub details: Value,
    pub created_at: String,
}

/// A page of the activity log, newest first.
#[derive(Object)]
pub struct ActivityLog {
    pub logs: Vec<ActivityLogEntry>,
    pub pagination: Pagination,
}

/// The activity log.
pub struct ActivityApi;

#[OpenApi(tag = "Tag::Instances")]
impl ActivityApi {
    /// The instance's activity log, newest first: every event of the instance
    /// except `api_called`. `actions` is a comma-separated list of event
    /// types; `startDate` / `endDate` are ISO 8601 and inclusive.
    #[oai(path = "/api/instances/:instanceId/activity", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn activity(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// Entries per page, 1 to 1000 (default 100).
        limit: Query<Option<i64>>,
        /// Entries to skip (default 0).
        skip: Query<Option<i64>>,
        /// Comma-separated event types, e.g. `connection_opened,message_sent`.
        actions: Query<Option<String>>,
        /// ISO 8601; entries at or after it.
        #[oai(name = "startDate")]
        start_date: Query<Option<String>>,
        /// ISO 8601; entries at or before it (a bare date includes the whole day).
        #[oai(name = "endDate")]
        end_date: Query<Option<String>>,
    ) -> ApiResult<Json<ActivityLog>> {
        let (limit, skip) = page_bounds(limit.0, skip.0, DEFAULT_LIMIT)?;
        let (start_ms, end_ms) = date_range(start_date.0.as_deref(), end_date.0.as_deref())?;
        let actions = parse_actions(actions.0.as_deref())?;
        let (entries, total) = activity::page(
            &state.views,
            &ActivityQuery {
                instance_id: owned.id().to_string(),
                actions,
                start_ms,
                end_ms,
                limit,
                skip,
            },
        )
        .await?;
        Ok(Json(ActivityLog {
            logs: entries
                .into_iter()
                .map(|e| ActivityLogEntry {
                    id: e.id,
                    instance_id: e.instance_id,
                    action: e.action,
                    details: e.details,
                    created_at: api_time_ms(e.created_at),
                })
                .collect(),
            pagination: Pagination::new(total, limit, skip),
        }))
    }
}

/// The `actions` filter: known actions only, blanks ignored, duplicates merged.
fn parse_actions(raw: Option<&str>) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for a in raw.unwrap_or_default().split(',').map(str::trim) {
        if a.is_empty() || out.iter().any(|o| o == a) {
            continue;
        }
        if !activity::is_action(a) {
            return Err(ApiError::bad_request(format!(
                "unknown action {a:?}; known actions: {}",
                activity::actions().join(", ")
            )));
        }
        out.push(a.to_string());
    }
    Ok(out)
}
