//! Session health: the `health` block of `GET /api/instances/{instanceId}`
//! and `GET /api/instances/{instanceId}/stuck-messages`.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::domain::{api_time, api_time_ms};
use crate::error::{ApiError, ApiResult};
use crate::ids::InstanceId;

use super::security::{Tag, owned_instance};

/// Stuck messages listed when `limit` is absent.
const DEFAULT_LIMIT: i64 = 100;
/// The most stuck messages one answer lists.
const MAX_LIMIT: i64 = 1000;

/// A failed connect attempt, in plain words.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ConnectErrorView {
    /// What went wrong (`DNS lookup failed for web.whatsapp.com`).
    pub message: String,
    /// When the attempt failed.
    pub at: String,
    /// Failed attempts in a row.
    pub attempt: u32,
}

/// How an instance's WhatsApp session is really doing.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct InstanceHealth {
    /// When WhatsApp was last heard from on this session (any event, or an
    /// answered keepalive ping); absent when never since the gateway started.
    #[oai(skip_serializing_if_is_none)]
    pub last_seen_at: Option<String>,
    /// When a message was last sent or received; absent when none since the gateway started.
    #[oai(skip_serializing_if_is_none)]
    pub last_message_at: Option<String>,
    /// Connections that dropped and were reconnected (`connection_closed`
    /// with `willReconnect`) in the last hour.
    pub reconnects_last_hour: u32,
    /// Milliseconds until the next connect attempt the gateway scheduled;
    /// absent when none is waiting.
    #[oai(skip_serializing_if_is_none)]
    pub backoff_ms: Option<u64>,
    /// The last failed connect attempt since the last successful connection;
    /// absent when the last attempt worked.
    #[oai(skip_serializing_if_is_none)]
    pub last_connect_error: Option<ConnectErrorView>,
}

/// The health of an instance: the supervisor's view and the log's.
pub fn instance_health(state: &AppState, id: &InstanceId) -> InstanceHealth {
    let facts = state.metrics.health.facts(id.as_str());
    let supervisor = state.sessions.health(id);
    InstanceHealth {
        last_seen_at: supervisor
            .as_ref()
            .and_then(|s| s.last_seen_at)
            .map(api_time),
        last_message_at: facts.last_message_at.map(api_time),
        reconnects_last_hour: facts.reconnects.len() as u32,
        backoff_ms: supervisor
            .and_then(|s| s.backoff)
            .map(|d| d.as_millis() as u64),
        last_connect_error: facts.last_connect_error.map(|e| ConnectErrorView {
            message: e.error,
            at: api_time(e.at),
            attempt: e.attempt,
        }),
    }
}

/// A sent message still waiting for its delivered receipt.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct StuckMessage {
    /// The WhatsApp message id.
    pub message_id: String,
    /// The recipient's JID.
    pub to: String,
    /// `text`, `image`, `video`, `audio` or `document`.
    #[oai(rename = "type")]
    pub message_type: String,
    /// When it was sent (or queued, for a paced send).
    pub sent_at: String,
    /// Seconds it has waited so far.
    pub waiting_secs: u64,
}

/// An instance's stuck messages, oldest first.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct StuckMessages {
    /// The threshold (`WA_STUCK_AFTER_SECS`).
    pub stuck_after_secs: u64,
    pub messages: Vec<StuckMessage>,
}

/// Session health.
pub struct SessionHealthApi;

#[OpenApi(tag = "Tag::Instances")]
impl SessionHealthApi {
    /// Sent messages still `sent`, with no `delivered` receipt, for longer
    /// than `WA_STUCK_AFTER_SECS` (default 600), oldest first. Each is also
    /// recorded once as a `message_stuck` event.
    #[oai(path = "/api/instances/:instanceId/stuck-messages", method = "get")]
    async fn stuck_messages(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// Messages to list, 1 to 1000 (default 100).
        limit: Query<Option<i64>>,
    ) -> ApiResult<Json<StuckMessages>> {
        let limit = limit.0.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let now = chrono::Utc::now().timestamp_millis();
        let cutoff = now - state.config.stuck_after.as_millis() as i64;
        let rows = crate::projections::stuck::of_instance(
            &state.views,
            owned.id().as_str(),
            cutoff,
            limit,
        )
        .await?;
        Ok(Json(StuckMessages {
            stuck_after_secs: state.config.stuck_after.as_secs(),
            messages: rows
                .into_iter()
                .map(|w| StuckMessage {
                    message_id: w.message_id,
                    to: w.remote_jid,
                    message_type: w.message_type,
                    sent_at: api_time_ms(w.created_at),
                    waiting_secs: ((now - w.created_at).max(0) / 1000) as u64,
                })
                .collect(),
        }))
    }
}
