//! Authentication: `Authorization: Bearer <JWT>` or `x-api-key`, on every
//! endpoint the seed lists with either; and the OpenAPI tags.

use std::sync::{Arc, OnceLock};

use poem::Request;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme, Tags};

use crate::app::AppState;
use crate::auth::TokenError;
use crate::domain::users::{self, User};
use crate::error::ApiError;

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
pub struct CallerSlot(pub Arc<OnceLock<(String, bool)>>);

/// The authenticated caller of a request.
pub struct Auth(pub User);

impl Auth {
    /// The caller, if an admin; else 403.
    pub fn require_admin(&self) -> Result<&User, ApiError> {
        if self.0.is_admin {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden("Administrator rights are required"))
        }
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
        Ok(Auth(user))
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
        let user_id = state.tokens.verify(token.trim()).map_err(|e| match e {
            TokenError::Expired => ApiError::unauthorized("The token has expired"),
            TokenError::Invalid => ApiError::unauthorized("Invalid token"),
        })?;
        return users::find_by_id(state.store.pool(), &user_id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Invalid token"));
    }
    Err(ApiError::unauthorized(
        "Missing credentials: send `Authorization: Bearer <token>` or `x-api-key`",
    ))
}
