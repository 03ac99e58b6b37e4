//! `/api/instances`: create, list, read, update and delete instances.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::config::Secret;
use crate::domain::api_time_ms;
use crate::domain::instances::{
    self, Change, Instance, InstanceChanges, InstanceCommand, NewInstance, ProxySetting,
    WebhookSettings,
};
use crate::domain::pacing::{PolicyChanges, SendPolicy};
use crate::domain::proxy::{ProxyPublic, ProxyUrl};
use crate::domain::types::{InstanceName, OutboundUrl, parse_description};
use crate::error::{ApiError, ApiResult};
use crate::events::FailReason;
use crate::ids::InstanceId;

use super::security::{Auth, Tag, owned_instance};
use super::types::Text;

/// A new instance, with the flat webhook fields of the seed.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct CreateInstanceRequest {
    /// 1 to 100 characters, not only white space, no control characters.
    #[oai(validator(pattern = r"\S"))]
    pub name: Text,
    /// At most 500 characters.
    pub description: Option<Text>,
    /// http(s) URL receiving the webhooks.
    pub webhook_url: Option<Text>,
    /// Defaults to true when `webhookUrl` is given.
    pub webhook_enabled: Option<bool>,
    /// Default true.
    pub notify_received: Option<bool>,
    /// Default true.
    pub notify_sent: Option<bool>,
    /// Default false.
    pub notify_delivery: Option<bool>,
    /// Default false.
    pub notify_read: Option<bool>,
    /// 0 to 20, default 3.
    pub max_retries: Option<u32>,
    /// Milliseconds before the first retry, 100 to 86,400,000, default 60,000.
    pub retry_interval: Option<u64>,
    /// Opt-in webhook event types to receive besides the seed's six (default
    /// none): `message_reaction`, `message_edited`, `message_revoked`,
    /// `poll_vote`, `chat_presence`. Any other name is a 400.
    #[oai(validator(max_items = 64))]
    pub webhook_events: Option<Vec<Text>>,
    /// HMAC key for `X-Webhook-Signature` and `webhook-signature`.
    pub webhook_secret: Option<Text>,
    /// Send pacing; off unless given. `{"enabled": true}` switches on the
    /// cautious defaults (see the README's "Safe sending").
    pub send_policy: Option<SendPolicyInput>,
    /// The proxy this instance's WhatsApp connections leave through:
    /// `socks5://[user:password@]host:port` or `http://[user:password@]host[:port]`
    /// (CONNECT). The credentials are stored sealed and never shown again.
    pub proxy_url: Option<Text>,
}

/// A send policy in a create or update: only the fields given change (on
/// create, the rest are the documented defaults).
#[derive(Object, Default)]
#[oai(rename_all = "camelCase")]
pub struct SendPolicyInput {
    /// Pace sends through the outbound queue (default false).
    pub enabled: Option<bool>,
    /// Messages a minute, 1 to 60 (default 6).
    pub per_minute: Option<u32>,
    /// Messages in any 24 hours, 1 to 100,000 (default 500).
    pub per_day: Option<u32>,
    /// Shortest pause between two messages, ms (default 4,000).
    pub delay_min_ms: Option<u64>,
    /// Longest pause between two messages, ms, at most 3,600,000 (default 12,000).
    pub delay_max_ms: Option<u64>,
    /// Show "typing…" before each text (default true).
    pub typing: Option<bool>,
    /// Typing time per character, ms, at most 1,000 (default 40).
    pub typing_ms_per_char: Option<u64>,
    /// Longest typing time, ms, at most 60,000 (default 6,000).
    pub typing_max_ms: Option<u64>,
    /// Days of warm-up after pairing, 0 to 90 (default 7).
    pub warmup_days: Option<u32>,
    /// Daily cap on the first day after pairing, rising linearly to `perDay` (default 40).
    pub warmup_first_day: Option<u32>,
}

impl From<SendPolicyInput> for PolicyChanges {
    fn from(p: SendPolicyInput) -> Self {
        Self {
            enabled: p.enabled,
            per_minute: p.per_minute,
            per_day: p.per_day,
            delay_min_ms: p.delay_min_ms,
            delay_max_ms: p.delay_max_ms,
            typing: p.typing,
            typing_ms_per_char: p.typing_ms_per_char,
            typing_max_ms: p.typing_max_ms,
            warmup_days: p.warmup_days,
            warmup_first_day: p.warmup_first_day,
        }
    }
}

/// An instance's send policy as read back.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SendPolicyView {
    pub enabled: bool,
    pub per_minute: u32,
    pub per_day: u32,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    pub typing: bool,
    pub typing_ms_per_char: u64,
    pub typing_max_ms: u64,
    pub warmup_days: u32,
    pub warmup_first_day: u32,
}

impl From<SendPolicy> for SendPolicyView {
    fn from(p: SendPolicy) -> Self {
        Self {
            enabled: p.enabled,
            per_minute: p.per_minute,
            per_day: p.per_day,
            delay_min_ms: p.delay_min_ms,
            delay_max_ms: p.delay_max_ms,
            typing: p.typing,
            typing_ms_per_char: p.typing_ms_per_char,
            typing_max_ms: p.typing_max_ms,
            warmup_days: p.warmup_days,
            warmup_first_day: p.warmup_first_day,
        }
    }
}

/// Nested webhook settings of an update.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookSettingsUpdate {
    pub notify_received: Option<bool>,
    pub notify_sent: Option<bool>,
    pub notify_delivery: Option<bool>,
    pub notify_read: Option<bool>,
    pub max_retries: Option<u32>,
    pub retry_interval: Option<u64>,
    /// Replaces the opt-in webhook event types (`[]`: none); see the create request.
    #[oai(validator(max_items = 64))]
    pub webhook_events: Option<Vec<Text>>,
    /// A new signing secret; `null` removes it.
    pub secret: MaybeUndefined<Text>,
}

/// An update: only the fields present change; `null` clears `description` and `webhookUrl`.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct UpdateInstanceRequest {
    pub name: Option<Text>,
    pub description: MaybeUndefined<Text>,
    pub webhook_url: MaybeUndefined<Text>,
    pub webhook_enabled: Option<bool>,
    pub webhook_settings: Option<WebhookSettingsUpdate>,
    /// Send pacing: only the fields given change.
    pub send_policy: Option<SendPolicyInput>,
    /// A new proxy (as on create, credentials included: the URL given
    /// replaces the old one whole); `null` or `""` removes it. The
    /// instance reconnects through it when it is running.
    pub proxy_url: MaybeUndefined<Text>,
}

/// The created instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct CreatedInstance {
    pub id: String,
    pub name: String,
    /// Absent when not set.
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    pub user_id: String,
    /// Connection state: `connecting`, `qr`, `connected`, `disconnected`, `logged_out`.
    pub status: String,
    /// Absent when not set.
    #[oai(skip_serializing_if_is_none)]
    pub webhook_url: Option<String>,
    pub webhook_enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    /// The proxy's URL without credentials (absent: no proxy).
    #[oai(skip_serializing_if_is_none)]
    pub proxy_url: Option<String>,
    /// Whether the proxy has credentials (absent: no proxy).
    #[oai(skip_serializing_if_is_none)]
    pub proxy_auth: Option<bool>,
}

/// The live connection state of an instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// Connected and able to send.
    pub ready: bool,
    pub status: String,
    /// A QR code is waiting to be scanned.
    pub has_qr: bool,
    /// `true` while a pairing code (`POST
    /// /api/instances/{instanceId}/pair-code`) waits to be typed into the
    /// phone; absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub waiting_for_code: Option<bool>,
}

/// An instance in the list.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InstanceSummary {
    pub id: String,
    pub name: String,
    /// Absent when not set.
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    pub status: String,
    /// Absent when not set.
    #[oai(skip_serializing_if_is_none)]
    pub webhook_url: Option<String>,
    pub webhook_enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    pub connection_status: ConnectionStatus,
}

/// The instance list.
#[derive(Object)]
pub struct InstanceList {
    pub instances: Vec<InstanceSummary>,
}

/// Webhook settings as read back (never the secret).
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookSettingsView {
    pub notify_received: bool,
    pub notify_sent: bool,
    pub notify_delivery: bool,
    pub notify_read: bool,
    pub max_retries: u32,
    pub retry_interval: u64,
    /// The opt-in webhook event types the instance receives; absent when
    /// none (the seed's shape).
    #[oai(default, skip_serializing_if_is_empty)]
    pub webhook_events: Vec<String>,
}

/// One instance in full.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InstanceDetail {
    pub id: String,
    pub name: String,
    /// Absent when not set.
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    pub status: String,
    /// Absent when not set.
    #[oai(skip_serializing_if_is_none)]
    pub webhook_url: Option<String>,
    pub webhook_enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    pub webhook_settings: WebhookSettingsView,
    pub send_policy: SendPolicyView,
    pub connection_status: ConnectionStatus,
    /// The proxy's URL without credentials (absent: no proxy).
    #[oai(skip_serializing_if_is_none)]
    pub proxy_url: Option<String>,
    /// Whether the proxy has credentials (absent: no proxy).
    #[oai(skip_serializing_if_is_none)]
    pub proxy_auth: Option<bool>,
    /// How the WhatsApp session is really doing (README, "Session health").
    pub health: super::session_health::InstanceHealth,
}

/// The updated instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct UpdatedInstance {
    pub id: String,
    pub name: String,
    /// Absent when not set.
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    /// Absent when not set.
    #[oai(skip_serializing_if_is_none)]
    pub webhook_url: Option<String>,
    pub webhook_enabled: bool,
    pub updated_at: String,
    /// The proxy's URL without credentials (absent: no proxy).
    #[oai(skip_serializing_if_is_none)]
    pub proxy_url: Option<String>,
    /// Whether the proxy has credentials (absent: no proxy).
    #[oai(skip_serializing_if_is_none)]
    pub proxy_auth: Option<bool>,
}

/// `{success, message}`.
#[derive(Object)]
pub struct SuccessMessage {
    pub success: bool,
    pub message: String,
}

/// Instance management.
pub struct InstancesApi;

/// A webhook URL from a request: checked, and its name resolved and checked again.
async fn checked_webhook_url(state: &AppState, raw: &str) -> ApiResult<String> {
    let allow = state.config.webhook_allow_private;
    let url = OutboundUrl::parse(raw, "webhookUrl", allow)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    url.check_resolved("webhookUrl", allow)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(url.as_str().to_string())
}

/// A webhook secret, checked and sealed for storage ([`crate::secrets`]).
fn parse_secret(raw: &str, sealer: &crate::secrets::Sealer) -> ApiResult<Option<Secret>> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > instances::MAX_SECRET_LEN {
        return Err(ApiError::bad_request(format!(
            "webhookSecret must be at most {} characters",
            instances::MAX_SECRET_LEN
        )));
    }
    Ok(Some(Secret::new(
        sealer.seal(crate::secrets::Purpose::WebhookSecret, raw),
    )))
}

/// A `proxyUrl` from a request: checked, split into its public part and
/// its credentials, which are sealed for storage. Empty: no proxy.
fn parse_proxy(state: &AppState, raw: &str) -> ApiResult<Option<ProxySetting>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let proxy =
        ProxyUrl::parse(raw, state.config.proxy_allow_private).map_err(ApiError::bad_request)?;
    Ok(Some(ProxySetting {
        public: proxy.public(),
        sealed_auth: proxy.credentials.as_ref().map(|c| {
            Secret::new(
                state
                    .secrets
                    .seal(crate::secrets::Purpose::ProxyCredentials, &c.to_plain()),
            )
        }),
    }))
}

impl AppState {
    /// The live connection state of an instance, as the API shows it.
    pub fn connection_status(&self, instance_id: &InstanceId) -> ConnectionStatus {
        let s = self.sessions.status(instance_id);
        ConnectionStatus {
            ready: s.ready(),
            status: s.state.as_str().to_string(),
            has_qr: s.qr.is_some(),
            waiting_for_code: s.pair_code.is_some().then_some(true),
        }
    }
}

impl CreateInstanceRequest {
    /// Parses the request into a new instance owned by `auth`'s user.
    async fn parse(self, state: &AppState, auth: &Auth) -> ApiResult<NewInstance> {
        let name = InstanceName::parse(&self.name).map_err(ApiError::bad_request)?;
        let description = self
            .description
            .as_deref()
            .map(parse_description)
            .transpose()
            .map_err(ApiError::bad_request)?;
        let url = match self.webhook_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(u) => Some(checked_webhook_url(state, u).await?),
            None => None,
        };
        let d = WebhookSettings::default();
        Ok(NewInstance {
            id: InstanceId::new_random(),
            owner: auth.id().clone(),
            name: name.into_inner(),
            description,
            webhook: WebhookSettings {
                enabled: self.webhook_enabled.unwrap_or(url.is_some()),
                url,
                notify_received: self.notify_received.unwrap_or(d.notify_received),
                notify_sent: self.notify_sent.unwrap_or(d.notify_sent),
                notify_delivery: self.notify_delivery.unwrap_or(d.notify_delivery),
                notify_read: self.notify_read.unwrap_or(d.notify_read),
                max_retries: self.max_retries.unwrap_or(d.max_retries),
                retry_interval: self.retry_interval.unwrap_or(d.retry_interval),
                has_secret: false,
                events: self
                    .webhook_events
                    .map(|l| l.into_iter().map(|t| t.0).collect())
                    .unwrap_or_default(),
            },
            secret: self
                .webhook_secret
                .as_deref()
                .map(|s| parse_secret(s, &state.secrets))
                .transpose()?
                .flatten(),
            send_policy: self.send_policy.map(Into::into).unwrap_or_default(),
            proxy: match self.proxy_url.as_deref() {
                Some(raw) => parse_proxy(state, raw)?,
                None => None,
            },
        })
    }
}

impl UpdateInstanceRequest {
    /// Parses the request into the changes it asks for (nothing else changes).
    async fn parse(self, state: &AppState) -> ApiResult<InstanceChanges> {
        let name = self
            .name
            .as_deref()
            .map(InstanceName::parse)
            .transpose()
            .map_err(ApiError::bad_request)?
            .map(InstanceName::into_inner);
        let description = match &self.description {
            MaybeUndefined::Value(d) => {
                Change::Set(parse_description(d).map_err(ApiError::bad_request)?)
            }
            MaybeUndefined::Null => Change::Clear,
            MaybeUndefined::Undefined => Change::Keep,
        };
        let webhook_url = match &self.webhook_url {
            MaybeUndefined::Value(u) if !u.trim().is_empty() => {
                Change::Set(checked_webhook_url(state, u).await?)
            }
            MaybeUndefined::Value(_) | MaybeUndefined::Null => Change::Clear,
            MaybeUndefined::Undefined => Change::Keep,
        };
        let mut changes = InstanceChanges {
            name,
            description,
            webhook_url,
            enabled: self.webhook_enabled,
            send_policy: self.send_policy.map(Into::into),
            proxy: match &self.proxy_url {
                MaybeUndefined::Value(raw) => match parse_proxy(state, raw)? {
                    Some(p) => Change::Set(p),
                    None => Change::Clear,
                },
                MaybeUndefined::Null => Change::Clear,
                MaybeUndefined::Undefined => Change::Keep,
            },
            ..InstanceChanges::default()
        };
        if let Some(ws) = self.webhook_settings {
            changes.notify_received = ws.notify_received;
            changes.notify_sent = ws.notify_sent;
            changes.notify_delivery = ws.notify_delivery;
            changes.notify_read = ws.notify_read;
            changes.max_retries = ws.max_retries;
            changes.retry_interval = ws.retry_interval;
            changes.webhook_events = ws
                .webhook_events
                .map(|l| l.into_iter().map(|t| t.0).collect());
            changes.secret = match &ws.secret {
                MaybeUndefined::Value(s) => match parse_secret(s, &state.secrets)? {
                    Some(s) => Change::Set(s),
                    None => Change::Clear,
                },
                MaybeUndefined::Null => Change::Clear,
                MaybeUndefined::Undefined => Change::Keep,
            };
        }
        Ok(changes)
    }
}

#[OpenApi(tag = "Tag::Instances")]
impl InstancesApi {
    /// Create an instance; it starts connecting at once.
    #[oai(path = "/api/instances", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<CreateInstanceRequest>,
    ) -> ApiResult<Json<CreatedInstance>> {
        let new = body.0.parse(&state, &auth).await?;
        let id = new.id.clone();
        let instance =
            instances::execute(&state.store, &id, InstanceCommand::Create(new), auth.meta())
                .await?
                .ok_or_else(|| ApiError::internal("a created instance has no state"))?;
        state.sessions.instance_created(&instance);
        Ok(Json(CreatedInstance::new(&state, instance)))
    }

    /// The caller's instances (`?all=true`: every instance, admins only).
    #[oai(path = "/api/instances", method = "get")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        all: Query<Option<bool>>,
    ) -> ApiResult<Json<InstanceList>> {
        let list = if all.0.unwrap_or(false) {
            auth.require_admin()?;
            instances::list_all(state.store.pool()).await?
        } else {
            instances::list_for_user(state.store.pool(), auth.id()).await?
        };
        Ok(Json(InstanceList {
            instances: list
                .into_iter()
                .map(|i| InstanceSummary::new(&state, i))
                .collect(),
        }))
    }

    /// One instance with its webhook settings (without the secret) and connection state.
    #[oai(path = "/api/instances/:instanceId", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<InstanceDetail>> {
        Ok(Json(InstanceDetail::new(&state, owned.load(&state).await?)))
    }

    /// Update name, description and webhook settings.
    ///
    /// Only the fields given change, on the instance as it is when the update
    /// is decided, so two concurrent updates of different fields both take effect.
    #[oai(path = "/api/instances/:instanceId", method = "put")]
    async fn update(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<UpdateInstanceRequest>,
    ) -> ApiResult<Json<UpdatedInstance>> {
        let changes = body.0.parse(&state).await?;
        let proxy_given = !matches!(changes.proxy, Change::Keep);
        let i = instances::execute(
            &state.store,
            owned.id(),
            InstanceCommand::Update(changes),
            owned.meta(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Instance {} not found", owned.id())))?;
        state.sessions.policy_changed(&i);
        if proxy_given {
            reconnect_for_new_proxy(&state, &i.id).await;
        }
        Ok(Json(UpdatedInstance::from(i)))
    }

    /// Delete an instance: its session is stopped and its session store removed.
    #[oai(path = "/api/instances/:instanceId", method = "delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<SuccessMessage>> {
        instances::execute(
            &state.store,
            owned.id(),
            InstanceCommand::Delete,
            owned.meta(),
        )
        .await?;
        state.sessions.instance_deleted(owned.id()).await;
        state
            .sessions
            .fail_queued(owned.id(), FailReason::InstanceDeleted, owned.meta())
            .await?;
        Ok(Json(SuccessMessage {
            success: true,
            message: format!("Instance {} deleted successfully", owned.id()),
        }))
    }
}

/// A new proxy takes effect on the next connect: a running session
/// (connecting, showing a QR, connected) reconnects now; a stopped one
/// (disconnected after a QR timeout or a crash loop, logged out) uses it
/// when it is next reconnected.
async fn reconnect_for_new_proxy(state: &AppState, id: &InstanceId) {
    use crate::whatsapp::supervisor::ConnState;
    let running = matches!(
        state.sessions.status(id).state,
        ConnState::Connecting | ConnState::Qr | ConnState::Connected
    );
    if running {
        tracing::info!(instance = %id, "the proxy changed; reconnecting through it");
        state.sessions.reconnect(id).await;
    }
}

/// The API's two proxy fields of an instance's proxy.
fn proxy_fields(p: Option<ProxyPublic>) -> (Option<String>, Option<bool>) {
    match p {
        Some(p) => (Some(p.url), Some(p.auth)),
        None => (None, None),
    }
}

impl CreatedInstance {
    fn new(state: &AppState, i: Instance) -> Self {
        let (proxy_url, proxy_auth) = proxy_fields(i.proxy);
        Self {
            proxy_url,
            proxy_auth,
            status: state.connection_status(&i.id).status,
            id: i.id.into_string(),
            name: i.name,
            description: i.description,
            user_id: i.user_id.into_string(),
            webhook_url: i.webhook.url,
            webhook_enabled: i.webhook.enabled,
            created_at: api_time_ms(i.created_at),
            updated_at: api_time_ms(i.updated_at),
        }
    }
}

impl InstanceSummary {
    fn new(state: &AppState, i: Instance) -> Self {
        let cs = state.connection_status(&i.id);
        Self {
            status: cs.status.clone(),
            connection_status: cs,
            id: i.id.into_string(),
            name: i.name,
            description: i.description,
            webhook_url: i.webhook.url,
            webhook_enabled: i.webhook.enabled,
            created_at: api_time_ms(i.created_at),
            updated_at: api_time_ms(i.updated_at),
        }
    }
}

impl From<Instance> for UpdatedInstance {
    fn from(i: Instance) -> Self {
        let (proxy_url, proxy_auth) = proxy_fields(i.proxy);
        Self {
            proxy_url,
            proxy_auth,
            id: i.id.into_string(),
            name: i.name,
            description: i.description,
            webhook_url: i.webhook.url,
            webhook_enabled: i.webhook.enabled,
            updated_at: api_time_ms(i.updated_at),
        }
    }
}

impl InstanceDetail {
    fn new(state: &AppState, i: Instance) -> Self {
        let cs = state.connection_status(&i.id);
        let (proxy_url, proxy_auth) = proxy_fields(i.proxy);
        Self {
            proxy_url,
            proxy_auth,
            health: super::session_health::instance_health(state, &i.id),
            status: cs.status.clone(),
            connection_status: cs,
            webhook_settings: WebhookSettingsView {
                notify_received: i.webhook.notify_received,
                notify_sent: i.webhook.notify_sent,
                notify_delivery: i.webhook.notify_delivery,
                notify_read: i.webhook.notify_read,
                max_retries: i.webhook.max_retries,
                retry_interval: i.webhook.retry_interval,
                webhook_events: i.webhook.events.clone(),
            },
            send_policy: i.send_policy.into(),
            id: i.id.into_string(),
            name: i.name,
            description: i.description,
            webhook_url: i.webhook.url,
            webhook_enabled: i.webhook.enabled,
            created_at: api_time_ms(i.created_at),
            updated_at: api_time_ms(i.updated_at),
        }
    }
}
