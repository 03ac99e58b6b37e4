//! `/api/instances`: create, list, read, update and delete instances.

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::app::AppState;
use crate::config::Secret;
use crate::domain::api_time_ms;
use crate::domain::instances::{self, Instance, WebhookSettings};
use crate::domain::types::{InstanceName, OutboundUrl, parse_description};
use crate::error::{ApiError, ApiResult};
use crate::store::Metadata;

use super::RequestId;
use super::security::{Auth, Tag};
use super::types::Text;

/// A new instance, with the flat webhook fields of the seed.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct CreateInstanceRequest {
    /// 1 to 100 characters.
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
    /// HMAC key for `X-Webhook-Signature` and `webhook-signature`.
    pub webhook_secret: Option<Text>,
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
}

/// The created instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct CreatedInstance {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub user_id: String,
    /// Connection state: `connecting`, `qr`, `connected`, `disconnected`, `logged_out`.
    pub status: String,
    pub webhook_url: Option<String>,
    pub webhook_enabled: bool,
    pub created_at: String,
    pub updated_at: String,
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
}

/// An instance in the list.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InstanceSummary {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
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
}

/// One instance in full.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InstanceDetail {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub webhook_url: Option<String>,
    pub webhook_enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    pub webhook_settings: WebhookSettingsView,
    pub connection_status: ConnectionStatus,
}

/// The updated instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct UpdatedInstance {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_enabled: bool,
    pub updated_at: String,
}

/// `{success, message}`.
#[derive(Object)]
pub struct SuccessMessage {
    pub success: bool,
    pub message: String,
}

/// Instance management.
pub struct InstancesApi;

/// Event metadata for a request by `auth`.
pub fn request_meta(auth: &Auth, request_id: Option<&RequestId>) -> Metadata {
    Metadata {
        actor: Some(auth.0.id.clone()),
        request_id: request_id.map(|r| r.0.clone()),
        correlation_id: request_id.map(|r| r.0.clone()),
        causation_id: None,
    }
}

fn parse_webhook_url(state: &AppState, raw: &str) -> ApiResult<String> {
    let url = OutboundUrl::parse(raw, "webhookUrl", state.config.webhook_allow_private)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(url.as_str().to_string())
}

async fn check_webhook_resolves(state: &AppState, url: &Option<String>) -> ApiResult<()> {
    if let Some(u) = url {
        let parsed = OutboundUrl::parse(u, "webhookUrl", state.config.webhook_allow_private)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        parsed
            .check_resolved("webhookUrl", state.config.webhook_allow_private)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok(())
}

fn parse_secret(raw: &str) -> ApiResult<Option<Secret>> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > 256 {
        return Err(ApiError::bad_request(
            "webhookSecret must be at most 256 characters",
        ));
    }
    Ok(Some(Secret::new(raw)))
}

impl AppState {
    /// The live connection state of an instance, as the API shows it.
    pub fn connection_status(&self, instance_id: &str) -> ConnectionStatus {
        let s = self.sessions.status(instance_id);
        ConnectionStatus {
            ready: s.ready(),
            status: s.state.as_str().to_string(),
            has_qr: s.qr.is_some(),
        }
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
        request_id: Data<&RequestId>,
        body: Json<CreateInstanceRequest>,
    ) -> ApiResult<Json<CreatedInstance>> {
        let b = body.0;
        let name = InstanceName::parse(&b.name).map_err(ApiError::bad_request)?;
        let description = b
            .description
            .as_deref()
            .map(parse_description)
            .transpose()
            .map_err(ApiError::bad_request)?;
        let url = b
            .webhook_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|u| parse_webhook_url(&state, u))
            .transpose()?;
        let defaults = WebhookSettings::default();
        let webhook = WebhookSettings {
            enabled: b.webhook_enabled.unwrap_or(url.is_some()),
            url,
            notify_received: b.notify_received.unwrap_or(defaults.notify_received),
            notify_sent: b.notify_sent.unwrap_or(defaults.notify_sent),
            notify_delivery: b.notify_delivery.unwrap_or(defaults.notify_delivery),
            notify_read: b.notify_read.unwrap_or(defaults.notify_read),
            max_retries: b.max_retries.unwrap_or(defaults.max_retries),
            retry_interval: b.retry_interval.unwrap_or(defaults.retry_interval),
            secret: b
                .webhook_secret
                .as_deref()
                .map(parse_secret)
                .transpose()?
                .flatten(),
        };
        webhook.validate().map_err(ApiError::bad_request)?;
        check_webhook_resolves(&state, &webhook.url).await?;
        let meta = request_meta(&auth, Some(&request_id));
        let instance = instances::create(
            &state.store,
            &auth.0.id,
            name.into_inner(),
            description,
            webhook,
            meta,
        )
        .await?;
        state.sessions.instance_created(&instance);
        let status = state.connection_status(&instance.id).status;
        Ok(Json(CreatedInstance {
            id: instance.id,
            name: instance.name,
            description: instance.description,
            user_id: instance.user_id,
            status,
            webhook_url: instance.webhook.url,
            webhook_enabled: instance.webhook.enabled,
            created_at: api_time_ms(instance.created_at),
            updated_at: api_time_ms(instance.updated_at),
        }))
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
            instances::list_for_user(state.store.pool(), &auth.0.id).await?
        };
        Ok(Json(InstanceList {
            instances: list
                .into_iter()
                .map(|i| {
                    let cs = state.connection_status(&i.id);
                    InstanceSummary {
                        status: cs.status.clone(),
                        connection_status: cs,
                        id: i.id,
                        name: i.name,
                        description: i.description,
                        webhook_url: i.webhook.url,
                        webhook_enabled: i.webhook.enabled,
                        created_at: api_time_ms(i.created_at),
                        updated_at: api_time_ms(i.updated_at),
                    }
                })
                .collect(),
        }))
    }

    /// One instance with its webhook settings (without the secret) and connection state.
    #[oai(path = "/api/instances/:instanceId", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "instanceId")] id: Path<String>,
    ) -> ApiResult<Json<InstanceDetail>> {
        let i = instances::find_for(state.store.pool(), &auth.0.id, auth.0.is_admin, &id).await?;
        Ok(Json(detail(&state, i)))
    }

    /// Update name, description and webhook settings.
    #[oai(path = "/api/instances/:instanceId", method = "put")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        request_id: Data<&RequestId>,
        #[oai(name = "instanceId")] id: Path<String>,
        body: Json<UpdateInstanceRequest>,
    ) -> ApiResult<Json<UpdatedInstance>> {
        let mut i =
            instances::find_for(state.store.pool(), &auth.0.id, auth.0.is_admin, &id).await?;
        let b = body.0;
        if let Some(name) = &b.name {
            i.name = InstanceName::parse(name)
                .map_err(ApiError::bad_request)?
                .into_inner();
        }
        match &b.description {
            MaybeUndefined::Value(d) => {
                i.description = Some(parse_description(d).map_err(ApiError::bad_request)?)
            }
            MaybeUndefined::Null => i.description = None,
            MaybeUndefined::Undefined => {}
        }
        match &b.webhook_url {
            MaybeUndefined::Value(u) if !u.trim().is_empty() => {
                i.webhook.url = Some(parse_webhook_url(&state, u)?)
            }
            MaybeUndefined::Value(_) | MaybeUndefined::Null => {
                i.webhook.url = None;
                if b.webhook_enabled.is_none() {
                    i.webhook.enabled = false;
                }
            }
            MaybeUndefined::Undefined => {}
        }
        if let Some(e) = b.webhook_enabled {
            i.webhook.enabled = e;
        }
        let mut secret_changed = false;
        if let Some(ws) = &b.webhook_settings {
            let w = &mut i.webhook;
            w.notify_received = ws.notify_received.unwrap_or(w.notify_received);
            w.notify_sent = ws.notify_sent.unwrap_or(w.notify_sent);
            w.notify_delivery = ws.notify_delivery.unwrap_or(w.notify_delivery);
            w.notify_read = ws.notify_read.unwrap_or(w.notify_read);
            w.max_retries = ws.max_retries.unwrap_or(w.max_retries);
            w.retry_interval = ws.retry_interval.unwrap_or(w.retry_interval);
            match &ws.secret {
                MaybeUndefined::Value(s) => {
                    w.secret = parse_secret(s)?;
                    secret_changed = true;
                }
                MaybeUndefined::Null => {
                    secret_changed = w.secret.is_some();
                    w.secret = None;
                }
                MaybeUndefined::Undefined => {}
            }
        }
        i.webhook.validate().map_err(ApiError::bad_request)?;
        check_webhook_resolves(&state, &i.webhook.url).await?;
        let meta = super::instances::request_meta(&auth, Some(&request_id));
        let i = instances::update(&state.store, i, secret_changed, meta).await?;
        Ok(Json(UpdatedInstance {
            id: i.id,
            name: i.name,
            description: i.description,
            webhook_url: i.webhook.url,
            webhook_enabled: i.webhook.enabled,
            updated_at: api_time_ms(i.updated_at),
        }))
    }

    /// Delete an instance: its session is stopped and its session store removed.
    #[oai(path = "/api/instances/:instanceId", method = "delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        request_id: Data<&RequestId>,
        #[oai(name = "instanceId")] id: Path<String>,
    ) -> ApiResult<Json<SuccessMessage>> {
        let i = instances::find_for(state.store.pool(), &auth.0.id, auth.0.is_admin, &id).await?;
        let meta = request_meta(&auth, Some(&request_id));
        instances::delete(&state.store, &i, meta).await?;
        state.sessions.instance_deleted(&i.id).await;
        Ok(Json(SuccessMessage {
            success: true,
            message: format!("Instance {} deleted successfully", i.id),
        }))
    }
}

fn detail(state: &AppState, i: Instance) -> InstanceDetail {
    let cs = state.connection_status(&i.id);
    InstanceDetail {
        status: cs.status.clone(),
        connection_status: cs,
        webhook_settings: WebhookSettingsView {
            notify_received: i.webhook.notify_received,
            notify_sent: i.webhook.notify_sent,
            notify_delivery: i.webhook.notify_delivery,
            notify_read: i.webhook.notify_read,
            max_retries: i.webhook.max_retries,
            retry_interval: i.webhook.retry_interval,
        },
        id: i.id,
        name: i.name,
        description: i.description,
        webhook_url: i.webhook.url,
        webhook_enabled: i.webhook.enabled,
        created_at: api_time_ms(i.created_at),
        updated_at: api_time_ms(i.updated_at),
    }
}
