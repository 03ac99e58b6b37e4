//! `GET /api/events/stream`: the event log as Server-Sent Events, scoped to
//! the caller, resumable with `Last-Event-ID`.
//!
//! Each client gets its own reader of the log ([`EventStore::subscribe`]):
//! first what was written after the position it resumes from (read from
//! memory or the database, so a resume works across restarts), then live
//! events as they commit. Between that reader and the socket sits a bounded
//! buffer (`WA_STREAM_BUFFER` events): a client that does not read fast
//! enough fills it and, when it stays full for `WA_STREAM_SLOW_GRACE` (a fast
//! reader catching up on a long backlog fills it for a moment), is cut off
//! with a final `close` event
//! (`reason: slow_consumer`); nobody else waits for it, and its
//! `Last-Event-ID` resumes it without a gap.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use poem::web::Data;
use poem::web::sse::Event as SseEvent;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::EventStream;
use poem_openapi::types::ToJSON;
use poem_openapi::{Object, OpenApi, Union};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::domain::{api_time_ms, instances};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::ids::InstanceId;
use crate::store::{EventStore, RecordedEvent};

use super::security::{Auth, Tag};

/// How often an idle stream sends a comment line (keeps proxies from closing it).
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The `reason` of the final event sent to a client that could not keep up.
pub const SLOW_CONSUMER: &str = "slow_consumer";
/// The `reason` of the final event sent when the gateway stops.
pub const SHUTTING_DOWN: &str = "shutting_down";

/// One event of the log, as the stream sends it (the SSE `id` is `position`).
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct StreamedEvent {
    /// The event's global position in the log (also the SSE `id`).
    pub position: i64,
    /// The event's id.
    pub id: String,
    /// The event type, e.g. `qr_received`, `connection_opened`, `message_status`.
    #[oai(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub instance_id: Option<String>,
    pub user_id: Option<String>,
    /// The event's payload (its JSON Schema is in `schemas/`; no secrets).
    pub data: Value,
    pub recorded_at: String,
}

/// The last event of a stream the gateway ends: why it ends. Reconnect with
/// the `Last-Event-ID` of the last event received to continue without a gap.
#[derive(Object, Debug, Clone)]
pub struct StreamClosed {
    /// `slow_consumer` (the client did not read fast enough) or `shutting_down`.
    pub reason: String,
    /// The position to resume after (the last event sent before this one).
    #[oai(rename = "lastEventId")]
    pub last_event_id: i64,
}

/// What the stream sends: events (SSE `event: message`, with `id`), and a
/// final `event: close` when the gateway ends the stream.
#[derive(Union, Debug, Clone)]
#[oai(discriminator_name = "kind")]
pub enum StreamItem {
    /// An event of the log.
    #[oai(mapping = "event")]
    Event(StreamedEvent),
    /// The gateway ends the stream.
    #[oai(mapping = "close")]
    Close(StreamClosed),
}

/// Which events a client receives.
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    /// Only this user's events (`None`: an admin, every event).
    pub user: Option<String>,
    /// Only these instances (empty: all the caller may see).
    pub instances: HashSet<String>,
    /// Only these event types (empty: all).
    pub types: HashSet<String>,
}

impl StreamFilter {
    /// Whether `e` goes to this client.
    pub fn admits(&self, e: &RecordedEvent) -> bool {
        if let Some(user) = &self.user
            && e.user_id.as_deref() != Some(user.as_str())
        {
            return false;
        }
        if !self.instances.is_empty()
            && !e
                .instance_id
                .as_deref()
                .is_some_and(|i| self.instances.contains(i))
        {
            return false;
        }
        self.types.is_empty() || self.types.contains(&e.event_type)
    }
}

/// The live event stream.
pub struct StreamApi;

#[OpenApi(tag = "Tag::Events")]
impl StreamApi {
    /// The event log as Server-Sent Events, live: the caller's events (an
    /// admin's: everyone's), optionally only some instances and event
    /// types. Each event's SSE `id` is its log position; send it back as
    /// `Last-Event-ID` (or `lastEventId`) to resume right after it, from
    /// the log, without a gap or a duplicate (also after a gateway
    /// restart). Without one the stream starts at the current head. Idle
    /// streams get a comment line every 15 s. A client that does not keep
    /// up is sent `event: close` with `{"reason":"slow_consumer"}` and
    /// disconnected; it may resume with its last id.
    /// `curl -N -H "x-api-key: $KEY" localhost:3000/api/events/stream`
    #[oai(path = "/api/events/stream", method = "get")]
    async fn stream(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Only these instances: one id or a comma-separated list (each must be the caller's).
        #[oai(name = "instanceId")]
        instance_id: Query<Option<String>>,
        /// Only these event types, comma-separated (e.g. `qr_received,connection_opened`).
        types: Query<Option<String>>,
        /// The position of the last event received: resume right after it.
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<String>>,
        /// Same as the `Last-Event-ID` header (which wins when both are sent).
        #[oai(name = "lastEventId")]
        last_event_id_query: Query<Option<String>>,
    ) -> ApiResult<EventStream<BoxStream<'static, StreamItem>>> {
        let after = match last_event_id.0.or(last_event_id_query.0) {
            Some(raw) => parse_position(&raw)?,
            None => state.store.head(),
        };
        let filter = StreamFilter {
            user: (!auth.0.is_admin).then(|| auth.id().to_string()),
            instances: parse_instances(&state, &auth, instance_id.0.as_deref()).await?,
            types: parse_types(types.0.as_deref())?,
        };
        let items = follow(
            state.store.clone(),
            filter,
            after,
            (state.config.stream_buffer, state.config.stream_slow_grace),
            state.shutdown.clone(),
        );
        Ok(EventStream::new(items)
            .keep_alive(HEARTBEAT)
            .to_event(to_sse))
    }
}

/// An item as an SSE frame: events carry their position as `id`.
fn to_sse(item: StreamItem) -> SseEvent {
    match &item {
        StreamItem::Event(e) => SseEvent::message(item.to_json_string())
            .id(e.position.to_string())
            .event_type("message"),
        StreamItem::Close(_) => SseEvent::message(item.to_json_string()).event_type("close"),
    }
}

/// A `Last-Event-ID`: a log position (a non-negative integer).
fn parse_position(raw: &str) -> ApiResult<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Last-Event-ID must be an event position (a non-negative integer), not {raw:?}"
            ))
        })
}

/// The `types` filter: known event types only, blanks ignored.
fn parse_types(raw: Option<&str>) -> ApiResult<HashSet<String>> {
    let mut out = HashSet::new();
    for t in raw.unwrap_or_default().split(',').map(str::trim) {
        if t.is_empty() {
            continue;
        }
        if !Event::TYPES.contains(&t) {
            return Err(ApiError::bad_request(format!(
                "unknown event type {t:?}; known types: {}",
                Event::TYPES.join(", ")
            )));
        }
        out.insert(t.to_string());
    }
    Ok(out)
}

/// The `instanceId` filter: each one must be an instance the caller may
/// see (404 otherwise, as for an instance that does not exist).
async fn parse_instances(
    state: &AppState,
    auth: &Auth,
    raw: Option<&str>,
) -> ApiResult<HashSet<String>> {
    let mut out = HashSet::new();
    for raw in raw.unwrap_or_default().split(',').map(str::trim) {
        if raw.is_empty() {
            continue;
        }
        let not_found = || ApiError::not_found(format!("Instance {raw} not found"));
        let id = InstanceId::parse(raw).map_err(|_| not_found())?;
        let instance = instances::find(state.store.pool(), &id)
            .await?
            .ok_or_else(not_found)?;
        if !auth.may_act_for(&instance.user_id) {
            return Err(not_found());
        }
        out.insert(id.to_string());
    }
    Ok(out)
}

/// The events after `after` that pass `filter`, then the live ones, through
/// a buffer of `buffer` items; ends with a `close` item when the buffer
/// stayed full for `grace` (the client is too slow) or the gateway stops.
pub fn follow(
    store: EventStore,
    filter: StreamFilter,
    after: i64,
    (buffer, grace): (usize, Duration),
    shutdown: CancellationToken,
) -> BoxStream<'static, StreamItem> {
    // One slot more than the events it holds: room for the final `close`.
    let (tx, rx) = mpsc::channel::<StreamItem>(buffer.max(1) + 1);
    tokio::spawn(async move {
        let mut sub = store.subscribe(after);
        let mut last_sent = after;
        let reason = loop {
            let batch = tokio::select! {
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => break SHUTTING_DOWN,
                b = sub.next_batch() => b,
            };
            let batch = match batch {
                Ok(Some(batch)) => batch,
                Ok(None) => break SHUTTING_DOWN,
                Err(e) => {
                    tracing::warn!(error = %e, "the event stream could not read the log");
                    break SHUTTING_DOWN;
                }
            };
            let mut slow = false;
            for e in batch.iter().filter(|e| filter.admits(e)) {
                // Two free slots: one for this event, one kept for the `close`.
                match tokio::time::timeout(grace, tx.reserve_many(2)).await {
                    Ok(Ok(mut permits)) => {
                        if let Some(p) = permits.next() {
                            p.send(StreamItem::Event(streamed(e)));
                        }
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {
                        slow = true;
                        break;
                    }
                }
                last_sent = e.position;
            }
            if slow {
                break SLOW_CONSUMER;
            }
        };
        if reason == SLOW_CONSUMER {
            tracing::info!(
                position = last_sent,
                "an event-stream client fell behind and was cut off"
            );
        }
        let _ = tx.try_send(StreamItem::Close(StreamClosed {
            reason: reason.to_string(),
            last_event_id: last_sent,
        }));
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// A recorded event as the stream sends it.
fn streamed(e: &RecordedEvent) -> StreamedEvent {
    StreamedEvent {
        position: e.position,
        id: e.event_id.clone(),
        event_type: e.event_type.clone(),
        schema_version: e.schema_version,
        instance_id: e.instance_id.clone(),
        user_id: e.user_id.clone(),
        data: e.data.value().clone(),
        recorded_at: api_time_ms(e.recorded_ms()),
    }
}
