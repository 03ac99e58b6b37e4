//! `/api/auth`: login, the current user, API key rotation, password change.

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::domain::types::NewPassword;
use crate::domain::users;
use crate::domain::{DomainError, logins};
use crate::error::{ApiError, ApiResult};

use super::rate_limit::QuotaSlot;
use super::security::{Auth, Tag};
use super::types::Text;

/// Login credentials.
#[derive(Object)]
pub struct LoginRequest {
    #[oai(validator(min_length = 1))]
    pub email: Text,
    #[oai(validator(min_length = 1))]
    pub password: Text,
}

/// A user with the API key, as login returns it.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct LoginUser {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub api_key: String,
}

/// A successful login.
#[derive(Object)]
pub struct LoginResponse {
    /// JWT for `Authorization: Bearer <token>`.
    pub token: String,
    pub user: LoginUser,
}

/// The current user.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct Me {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

/// A new API key.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ApiKeyResponse {
    pub api_key: String,
}

/// A password change.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct PasswordRequest {
    pub current_password: Text,
    pub new_password: Text,
}

/// A plain success answer.
#[derive(Object)]
pub struct Success {
    pub success: bool,
    #[oai(skip_serializing_if_is_none)]
    pub message: Option<String>,
}

/// Authentication endpoints.
pub struct AuthApi;

#[OpenApi(tag = "Tag::Auth")]
impl AuthApi {
    /// Log in with e-mail and password; returns a JWT and the user with its API key.
    #[oai(path = "/api/auth/login", method = "post")]
    async fn login(
        &self,
        state: Data<&AppState>,
        req: &poem::Request,
        body: Json<LoginRequest>,
    ) -> ApiResult<Json<LoginResponse>> {
        if body.email.trim().is_empty() || body.password.is_empty() {
            return Err(ApiError::bad_request("email and password are required"));
        }
        let address = req
            .extensions()
            .get::<super::client_addr::ClientAddr>()
            .and_then(|c| c.0);
        let user = logins::log_in(
            &state.store,
            &state.login_guard,
            &body.email,
            &body.password,
            address,
        )
        .await
        .inspect_err(|e| {
            if let DomainError::Throttled { retry_after_secs } = e {
                QuotaSlot::refuse(req, state.config.login_max_failures, *retry_after_secs);
            }
        })?;
        let token = state
            .tokens
            .issue(user.id.as_str(), user.token_generation)?;
        let api_key = state
            .secrets
            .open(crate::secrets::Purpose::ApiKey, &user.api_key)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Json(LoginResponse {
            token,
            user: LoginUser {
                id: user.id.into_string(),
                email: user.email,
                first_name: user.first_name,
                last_name: user.last_name,
                api_key: api_key.expose().to_string(),
            },
        }))
    }

    /// The authenticated user.
    #[oai(path = "/api/auth/me", method = "get")]
    async fn me(&self, auth: Auth) -> ApiResult<Json<Me>> {
        let u = auth.0;
        Ok(Json(Me {
            id: u.id.into_string(),
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
        }))
    }

    /// Replace the caller's API key; the old key stops working at once.
    #[oai(path = "/api/auth/api-key/rotate", method = "post")]
    async fn rotate_api_key(
        &self,
        state: Data<&AppState>,
        auth: Auth,
    ) -> ApiResult<Json<ApiKeyResponse>> {
        // Evict before and after: no request may keep using the old key.
        state.key_cache.evict_user(&auth.0.id);
        let api_key = users::rotate_api_key(&state.store, &state.secrets, &auth.0.id).await?;
        state.key_cache.evict_user(&auth.0.id);
        Ok(Json(ApiKeyResponse { api_key }))
    }

    /// Change the caller's password. Every token issued before (this
    /// request's included) stops working: log in again. API keys are not
    /// affected (rotate the key to end it).
    #[oai(path = "/api/auth/password", method = "post")]
    async fn change_password(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<PasswordRequest>,
    ) -> ApiResult<Json<Success>> {
        let new = NewPassword::parse(&body.new_password).map_err(ApiError::bad_request)?;
        users::change_password(&state.store, &auth.0.id, &body.current_password, new).await?;
        Ok(Json(Success {
            success: true,
            message: Some("Password changed".into()),
        }))
    }
}
