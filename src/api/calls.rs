//! Records every authenticated API request as an `api_called` event, so API
//! usage is counted from the log like everything else.
//!
//! The events are facts on the caller's own stream of calls
//! (`calls-<userId>`), apart from the aggregates' streams so that a busy API
//! never makes a command's version check fail. A call is charged to the
//! instance the route names (`{instanceId}`, the event's `instanceId`) when
//! that instance exists and the caller may act on it (its owner or an
//! admin); calls on someone else's (or an unknown) instance id are never
//! charged to that instance.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use poem::PathPattern;

use crate::domain::instances;
use crate::events::ApiCalled;
use crate::ids::{InstanceId, UserId};
use crate::store::{Append, EventStore, Metadata, StreamId};
use crate::whatsapp::Sessions;

/// The route parameter naming an instance.
const INSTANCE_PARAM: &str = "instanceId";

/// One served request, as the recorder needs it.
pub struct ServedCall {
    /// The authenticated user.
    pub caller: UserId,
    /// Whether the caller is an admin.
    pub caller_is_admin: bool,
    pub method: String,
    /// The request path as sent.
    pub path: String,
    /// The matched route pattern (poem's form, `/api/x/:instanceId`), if any.
    pub pattern: Option<PathPattern>,
    pub status: u16,
    pub duration: Duration,
    pub request_id: String,
}

/// The route templates of the OpenAPI document (`/api/whatsapp/{instanceId}/send`, ...).
fn templates() -> &'static [String] {
    static TEMPLATES: OnceLock<Vec<String>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(super::spec_json()).unwrap_or_default();
        spec["paths"]
            .as_object()
            .map(|paths| paths.keys().cloned().collect())
            .unwrap_or_default()
    })
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// The OpenAPI route template of a matched poem pattern. poem-openapi
/// registers its routes with positional names (`/api/whatsapp/:param0/send`),
/// so the template is the documented path with the same shape. Remembered
/// per pattern (there are as many as routes).
pub fn route_template(pattern: &str) -> String {
    static KNOWN: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    if let Some(t) = known.lock().expect("templates lock").get(pattern) {
        return t.clone();
    }
    let t = find_template(pattern);
    known
        .lock()
        .expect("templates lock")
        .insert(pattern.to_owned(), t.clone());
    t
}

fn find_template(pattern: &str) -> String {
    let wanted = segments(pattern);
    let same_shape = |t: &&String| {
        let have = segments(t);
        have.len() == wanted.len()
            && have.iter().zip(&wanted).all(|(h, w)| {
                match (h.starts_with('{'), w.starts_with(':')) {
                    (true, true) => true,
                    (false, false) => h == w,
                    _ => false,
                }
            })
    };
    match templates().iter().find(same_shape) {
        Some(t) => t.clone(),
        None => format!(
            "/{}",
            wanted
                .iter()
                .map(|s| match s.strip_prefix(':') {
                    Some(name) => format!("{{{name}}}"),
                    None => s.to_string(),
                })
                .collect::<Vec<_>>()
                .join("/")
        ),
    }
}

/// The value of the `{instanceId}` segment of `path` under `template`.
pub fn instance_in_path(template: &str, path: &str) -> Option<String> {
    let wanted = format!("{{{INSTANCE_PARAM}}}");
    let index = segments(template).iter().position(|s| *s == wanted)?;
    let segment = *segments(path).get(index)?;
    (!segment.is_empty()).then(|| segment.to_string())
}

/// Records API calls on the request path: the answer leaves only once its
/// `api_called` is committed, so a crash (`kill -9`) never loses the record
/// of a request that was answered. Concurrent requests' records go through
/// the store's writer together (group commit): one transaction for many.
#[derive(Clone)]
pub struct Recorder {
    store: EventStore,
    sessions: Sessions,
}

impl Recorder {
    /// A recorder appending to `store`.
    pub fn new(store: EventStore, sessions: Sessions) -> Self {
        Self { store, sessions }
    }

    /// Appends the call's `api_called`; returns once it is committed (or failed, logged).
    pub async fn record(&self, call: ServedCall) {
        record(&self.store, &self.sessions, call).await;
    }
}

/// Appends the `api_called` event of a served request. Failures are logged,
/// not answered: the request itself was served.
pub async fn record(store: &EventStore, sessions: &Sessions, call: ServedCall) {
    let (route, instance_id) = match &call.pattern {
        Some(p) => {
            let route = route_template(&p.0);
            let instance = instance_in_path(&route, &call.path);
            (route, instance)
        }
        None => (call.path.clone(), None),
    };
    let instance = match instance_id {
        Some(id) => {
            chargeable_instance(store, sessions, &call.caller, call.caller_is_admin, &id).await
        }
        None => None,
    };
    let event = ApiCalled {
        user_id: call.caller.clone(),
        instance_id: instance.as_ref().map(|(id, _)| id.clone()),
        method: call.method,
        route,
        status: call.status,
        duration_ms: call.duration.as_secs_f64() * 1000.0,
    };
    let meta = Metadata {
        actor: Some(call.caller.to_string()),
        request_id: Some(call.request_id.clone()),
        correlation_id: Some(call.request_id),
        causation_id: None,
    };
    let stream = StreamId::api_calls(call.caller.as_str());
    let append = match &instance {
        Some((id, owner)) => Append::fact(stream).scope(Some(owner.as_str()), Some(id.as_str())),
        None => Append::fact(stream).scope(Some(call.caller.as_str()), None),
    };
    if let Err(e) = store.append(append.metadata(meta).event(event)).await {
        tracing::warn!(error = %e, "failed to record an API call");
    }
}

/// The instance `id` and its owner, when it exists and `caller` may act on it.
/// The owner comes from the running session when there is one (no query).
async fn chargeable_instance(
    store: &EventStore,
    sessions: &Sessions,
    caller: &UserId,
    caller_is_admin: bool,
    id: &str,
) -> Option<(InstanceId, UserId)> {
    let id = InstanceId::parse(id).ok()?;
    let owner = match sessions.owner(&id) {
        Some(owner) => owner,
        None => {
            instances::find(store.pool(), &id)
                .await
                .ok()
                .flatten()?
                .user_id
        }
    };
    (&owner == caller || caller_is_admin).then_some((id, owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_openapi_templates_and_yield_the_instance() {
        let t = route_template("/api/whatsapp/:param0/send");
        assert_eq!(t, "/api/whatsapp/{instanceId}/send");
        assert_eq!(route_template("/api/stats/user"), "/api/stats/user");
        assert_eq!(
            route_template("/api/instances/:param0/chats/:param1/messages"),
            "/api/instances/{instanceId}/chats/{chatId}/messages"
        );
        assert_eq!(
            instance_in_path(&t, "/api/whatsapp/abc/send").as_deref(),
            Some("abc")
        );
        assert_eq!(instance_in_path("/api/stats/user", "/api/stats/user"), None);
        assert_eq!(route_template("/nowhere/:param0"), "/nowhere/{param0}");
    }
}
