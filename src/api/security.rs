//! Authentication: `Authorization: Bearer <JWT>` or `x-api-key`, on every
//! endpoint the seed lists with either; and the OpenAPI tags.

use std::sync::{Arc, OnceLock};

use poem::Request;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme, Tags};

use poem_openapi::registry::{MetaParamIn, MetaSchemaRef};
use poem_openapi::types::Type;

use super::rate_limit::QuotaSlot;
use super::{AppState, RequestId};
use crate::auth::TokenError;
use crate::domain::instances::{self, Instance};
use crate::domain::users::{self, User};
use crate::error::ApiError;
use crate::ids::{InstanceId, UserId};
use crate::store::Metadata;

/// Groups of endpoints in the OpenAPI document.
#[derive(Tags)]
pub enum Tag {
    /// Liveness and readiness.
    Health,
    /// Login, the current user, API keys and passwords.
    Auth,
    /// User administration (admins only).
    Users,
    /// Instances: create, list, read, update, delete, reconnect, logout, QR.
    Instances,
    /// Sending and the WhatsApp session of an instance.
    #[oai(rename = "WhatsApp")]
    WhatsApp,
    /// Usage statistics.
    Stats,
    /// Webhook delivery log.
    Webhooks,
    /// Control of the simulated WhatsApp network (only with `WA_ENGINE=sim`).
    Sim,
    /// The live event stream (Server-Sent Events).
    Events,
    /// Groups of an instance's account, and number checks.
    Groups,
}

/// JWT from `POST /api/auth/login`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT")]
#[allow(dead_code)]
pub struct BearerAuth(Bearer);

/// The user's API key.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "x-api-key", key_in = "header")]
#[allow(dead_code)]
pub struct ApiKeyAuth(ApiKey);

/// The authenticated caller, filled in by [`Auth`] and read by the
/// API-call recorder.
#[derive(Debug, Clone, Default)]
pub struct CallerSlot(pub Arc<OnceLock<(UserId, bool)>>);

/// The authenticated caller of a request, with the request's id (the
/// metadata of the events the request causes).
pub struct Auth(pub User, pub Option<RequestId>);

impl Auth {
    /// The caller, if an admin; else 403.
    pub fn require_admin(&self) -> Result<&User, ApiError> {
        if self.0.is_admin {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden("Administrator rights are required"))
        }
    }

    /// The caller's id.
    pub fn id(&self) -> &UserId {
        &self.0.id
    }

    /// The metadata of events this request causes: the caller and the request id.
    pub fn meta(&self) -> Metadata {
        let request_id = self.1.as_ref().map(|r| r.0.clone());
        Metadata {
            actor: Some(self.0.id.to_string()),
            correlation_id: request_id.clone(),
            request_id,
            causation_id: None,
        }
    }

    /// Whether the caller may act on instances owned by `owner`.
    pub fn may_act_for(&self, owner: &UserId) -> bool {
        self.0.is_admin || &self.0.id == owner
    }
}

/// The instance named by the `instanceId` path parameter, when the caller
/// may act on it (its owner, or an admin); anyone else gets 404, as for an
/// instance that does not exist. The owner of a running instance is known
/// to its session, so the hot paths (sends, status) need no query.
pub struct OwnedInstance {
    pub caller: Auth,
    pub id: InstanceId,
    pub owner: UserId,
}

impl OwnedInstance {
    /// The instance's id.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }
    /// The metadata of events this request causes.
    pub fn meta(&self) -> Metadata {
        self.caller.meta()
    }
    /// The instance's current state (404 when it was deleted meanwhile).
    pub async fn load(&self, state: &AppState) -> Result<Instance, ApiError> {
        instances::find(state.store.pool(), &self.id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Instance {} not found", self.id)))
    }
}

/// `OwnedInstance` as a handler argument: `#[oai(name = "instanceId")] owned:
/// owned_instance::Path`. poem-openapi numbers the path parameters it
/// extracts by the arguments whose type path ends in `Path`; written through
/// this alias, the instance is counted as the first path parameter, so the
/// ones after it (`chatId`, `deliveryId`) keep their places.
pub mod owned_instance {
    pub type Path = super::OwnedInstance;
}

impl<'a> ApiExtractor<'a> for OwnedInstance {
    const TYPES: &'static [ApiExtractorType] = &[
        ApiExtractorType::SecurityScheme,
        ApiExtractorType::Parameter,
    ];
    const PARAM_IS_REQUIRED: bool = true;
    type ParamType = String;
    type ParamRawType = String;

    fn register(registry: &mut Registry) {
        <Auth as ApiExtractor>::register(registry);
        <String as Type>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <Auth as ApiExtractor>::security_schemes()
    }

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Path)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(String::schema_ref())
    }

    async fn from_request(
        req: &'a Request,
        body: &mut poem::RequestBody,
        opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let raw = req
            .raw_path_param(opts.name)
            .unwrap_or_default()
            .to_string();
        let caller = Auth::from_request(req, body, ExtractParamOptions::default()).await?;
        let state = req
            .data::<AppState>()
            .ok_or_else(|| ApiError::internal("state missing"))?;
        let not_found = || ApiError::not_found(format!("Instance {raw} not found"));
        let id = InstanceId::parse(&raw).map_err(|_| not_found())?;
        let owner = match state.sessions.owner(&id) {
            Some(owner) => owner,
            None => {
                instances::find(state.store.pool(), &id)
                    .await
                    .map_err(ApiError::from)?
                    .ok_or_else(not_found)?
                    .user_id
            }
        };
        if !caller.may_act_for(&owner) {
            return Err(not_found().into());
        }
        Ok(Self { caller, id, owner })
    }
}

impl<'a> ApiExtractor<'a> for Auth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        BearerAuth::register(registry);
        ApiKeyAuth::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["BearerAuth", "ApiKeyAuth"]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let state = req
            .data::<AppState>()
            .ok_or_else(|| ApiError::internal("state missing"))?;
        let user = authenticate(state, req).await?;
        if let Some(slot) = req.extensions().get::<CallerSlot>() {
            let _ = slot.0.set((user.id.clone(), user.is_admin));
        }
        if let Some(quota) =
            state
                .rate_limits
                .take(&user.id, user.rate_limit_per_min, std::time::Instant::now())
        {
            if let Some(slot) = req.extensions().get::<QuotaSlot>() {
                let _ = slot.0.set(quota);
            }
            if let Some(wait) = quota.retry_after_secs {
                return Err(ApiError::too_many_requests(format!(
                    "Rate limit exceeded: {} requests a minute; retry in {wait} s",
                    quota.limit
                ))
                .into());
            }
        }
        Ok(Auth(user, req.extensions().get::<RequestId>().cloned()))
    }
}

async fn authenticate(state: &AppState, req: &Request) -> Result<User, ApiError> {
    if let Some(key) = req.headers().get("x-api-key") {
        let key = key.to_str().unwrap_or_default().trim();
        if key.is_empty() {
            return Err(ApiError::unauthorized("Invalid API key"));
        }
        return users::find_by_api_key_cached(state.store.pool(), &state.key_cache, key)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Invalid API key"));
    }
    if let Some(value) = req.headers().get(poem::http::header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default().trim();
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(ApiError::unauthorized(
                "The Authorization header must be `Bearer <token>`",
            ));
        };
        let (user_id, generation) = state.tokens.verify(token.trim()).map_err(|e| match e {
            TokenError::Expired => ApiError::unauthorized("The token has expired"),
            TokenError::Invalid => ApiError::unauthorized("Invalid token"),
        })?;
        let user = users::find_by_id(state.store.pool(), &UserId::from_stored(user_id))
            .await?
            .ok_or_else(|| ApiError::unauthorized("Invalid token"))?;
        // A password change or reset ends every token issued before it.
        if generation != user.token_generation {
            return Err(ApiError::unauthorized(
                "The token was issued before the password was changed; log in again",
            ));
        }
        return Ok(user);
    }
    Err(ApiError::unauthorized(
        "Missing credentials: send `Authorization: Bearer <token>` or `x-api-key`",
    ))
}
