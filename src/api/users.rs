//! `/api/users`: user administration (admins only).

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::domain::api_time_ms;
use crate::domain::types::{Email, NewPassword};
use crate::domain::users::{self, NewUser, User};
use crate::error::{ApiError, ApiResult};
use crate::ids::UserId;

use super::instances::SuccessMessage;
use super::security::{Auth, Tag};
use super::types::Text;

/// A new account.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct CreateUserRequest {
    pub email: Text,
    pub password: Text,
    #[oai(default)]
    pub first_name: Text,
    #[oai(default)]
    pub last_name: Text,
    /// Grant administrator rights.
    #[oai(default)]
    pub is_admin: bool,
}

/// An admin's new password for a user.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ResetPasswordRequest {
    /// 8 to 256 characters.
    pub new_password: Text,
}

/// A user as admins see it (no API key, no password).
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
    pub created_at: String,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.into_string(),
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            is_admin: u.is_admin,
            created_at: api_time_ms(u.created_at),
        }
    }
}

/// A created user, with its API key (shown to the admin once here).
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct CreatedUser {
    #[oai(flatten)]
    pub user: UserView,
    pub api_key: String,
}

/// A user's own rate limit to set.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct RateLimitRequest {
    /// Requests a minute (at least 1); null: the gateway's default.
    pub per_minute: Option<u32>,
}

/// A user's rate limit.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct RateLimitView {
    pub user_id: String,
    /// The user's own limit; absent: the default applies.
    #[oai(skip_serializing_if_is_none)]
    pub per_minute: Option<u32>,
    /// The gateway's default (`WA_RATE_LIMIT_PER_MIN`; 0: no limit).
    pub default_per_minute: u32,
}

/// The user list.
#[derive(Object)]
pub struct UserList {
    pub users: Vec<UserView>,
}

/// User administration.
pub struct UsersApi;

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// Create a user (admins only).
    #[oai(path = "/api/users", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<CreateUserRequest>,
    ) -> ApiResult<Json<CreatedUser>> {
        let admin = auth.require_admin()?;
        let body = body.0;
        let new = NewUser {
            email: Email::parse(&body.email).map_err(ApiError::bad_request)?,
            password: NewPassword::parse(&body.password).map_err(ApiError::bad_request)?,
            first_name: bounded(&body.first_name, "firstName")?,
            last_name: bounded(&body.last_name, "lastName")?,
            is_admin: body.is_admin,
        };
        let user = users::register(&state.store, &state.secrets, new, admin.id.as_str()).await?;
        let api_key = user.api_key.clone();
        Ok(Json(CreatedUser {
            user: user.into(),
            api_key,
        }))
    }

    /// Set a user's own API rate limit in requests a minute (admins only);
    /// `perMinute: null` goes back to the gateway's default.
    #[oai(path = "/api/users/:userId/rate-limit", method = "put")]
    async fn set_rate_limit(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "userId")] user_id: Path<String>,
        body: Json<RateLimitRequest>,
    ) -> ApiResult<Json<RateLimitView>> {
        let admin = auth.require_admin()?;
        let id = UserId::parse(&user_id.0)
            .map_err(|_| ApiError::not_found(format!("User {} not found", user_id.0)))?;
        let account = users::set_rate_limit(&state.store, &id, body.per_minute, &admin.id).await?;
        // The cached callers carry the old limit; the new one starts full.
        state.key_cache.evict_user(&id);
        state.rate_limits.reset(&id);
        Ok(Json(RateLimitView {
            user_id: account.id.into_string(),
            per_minute: account.rate_limit_per_min,
            default_per_minute: state.config.rate_limit_per_min,
        }))
    }

    /// Set a user's password (admins only; no current password asked).
    /// Every token the user holds stops working; their API key does not.
    #[oai(path = "/api/users/:userId/password", method = "put")]
    async fn reset_password(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "userId")] user_id: Path<String>,
        body: Json<ResetPasswordRequest>,
    ) -> ApiResult<Json<SuccessMessage>> {
        let admin = auth.require_admin()?;
        let id = UserId::parse(&user_id.0)
            .map_err(|_| ApiError::not_found(format!("User {} not found", user_id.0)))?;
        let new = NewPassword::parse(&body.new_password).map_err(ApiError::bad_request)?;
        users::reset_password(&state.store, &id, new, &admin.id).await?;
        Ok(Json(SuccessMessage {
            success: true,
            message: "Password set; the user's tokens no longer work".into(),
        }))
    }

    /// Unlock an account's logins after repeated failures (admins only).
    #[oai(path = "/api/users/:userId/unlock-login", method = "post")]
    async fn unlock_login(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "userId")] user_id: Path<String>,
    ) -> ApiResult<Json<SuccessMessage>> {
        auth.require_admin()?;
        let not_found = || ApiError::not_found(format!("User {} not found", user_id.0));
        let id = UserId::parse(&user_id.0).map_err(|_| not_found())?;
        let user = users::find_by_id(state.store.pool(), &id)
            .await?
            .ok_or_else(not_found)?;
        state.login_guard.unlock(&user.email);
        Ok(Json(SuccessMessage {
            success: true,
            message: "Logins unlocked".into(),
        }))
    }

    /// List users (admins only).
    #[oai(path = "/api/users", method = "get")]
    async fn list(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<UserList>> {
        auth.require_admin()?;
        let users = users::list(state.store.pool()).await?;
        Ok(Json(UserList {
            users: users.into_iter().map(UserView::from).collect(),
        }))
    }
}

fn bounded(v: &str, field: &str) -> ApiResult<String> {
    crate::domain::types::reject_control_chars(v, field, false).map_err(ApiError::bad_request)?;
    if v.chars().count() > 100 {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most 100 characters"
        )));
    }
    Ok(v.trim().to_string())
}
