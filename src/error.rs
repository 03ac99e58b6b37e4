//! The one API error type: every variant documents its status, every body is
//! JSON `{ "error": <code>, "message": <text> }`. Internal errors are logged
//! and answered with an opaque 500.

use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, payload::Json};

use crate::domain::DomainError;
use crate::store::StoreError;

/// The JSON body of every error answer.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `bad_request`, `not_found`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// Every error the API answers with.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// 400: missing or malformed input.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// 401: no, bad or expired credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// 403: not allowed for this caller or address.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// 404: no such resource for this caller.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// 409: conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// 413: the body or the media is too large.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// 415: the content type is not accepted.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// 422: well-formed, but it cannot be done (e.g. an `Idempotency-Key` reused for another request).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// 429: too many requests.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// 500: the gateway failed; details are in its log, not here.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// 502: an upstream (a media URL) failed.
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// 503: not ready (e.g. the store is shutting down).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn body(error: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.to_string(),
        message: message.into(),
    })
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(body("bad_request", message))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(body("unauthorized", message))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(body("forbidden", message))
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(body("not_found", message))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(body("conflict", message))
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::Unprocessable(body("unprocessable", message))
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::PayloadTooLarge(body("payload_too_large", message))
    }
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::UnsupportedMediaType(body("unsupported_media_type", message))
    }
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::TooManyRequests(body("too_many_requests", message))
    }
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::BadGateway(body("bad_gateway", message))
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(body("unavailable", message))
    }
    /// Logs the cause (never sent to the client) and returns an opaque 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::Internal(body("internal_error", "Internal server error"))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        match self {
            Self::BadRequest(b)
            | Self::Unauthorized(b)
            | Self::Forbidden(b)
            | Self::NotFound(b)
            | Self::Conflict(b)
            | Self::PayloadTooLarge(b)
            | Self::UnsupportedMediaType(b)
            | Self::Unprocessable(b)
            | Self::TooManyRequests(b)
            | Self::Internal(b)
            | Self::BadGateway(b)
            | Self::Unavailable(b) => &b.0.message,
        }
    }

    /// Builds the error answer for a status raised outside our handlers
    /// (parse errors, unknown routes).
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        match status.as_u16() {
            400 => Self::bad_request(message),
            401 => Self::unauthorized(message),
            403 => Self::forbidden(message),
            404 => Self::not_found(message),
            405 => Self::NotFound(body("method_not_allowed", message)),
            409 => Self::conflict(message),
            413 => Self::too_large(message),
            415 => Self::unsupported_media_type(message),
            429 => Self::too_many_requests(message),
            s if (400..500).contains(&s) => Self::bad_request(message),
            _ => Self::internal(message.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                Self::conflict("The resource was changed concurrently; retry the request")
            }
            StoreError::Duplicate(_) => Self::conflict("The resource already exists"),
            StoreError::Closed => Self::unavailable("The gateway is shutting down"),
            StoreError::Db(e) => Self::internal(e),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) => Self::bad_request(m),
            DomainError::NotFound(m) => Self::not_found(m),
            DomainError::Conflict(m) => Self::conflict(m),
            DomainError::Mismatch(m) => Self::unprocessable(m),
            DomainError::Unauthorized(m) => Self::unauthorized(m),
            DomainError::Throttled { retry_after_secs } => Self::too_many_requests(format!(
                "Too many failed logins; retry in {retry_after_secs} s"
            )),
            DomainError::Concurrent(_) => {
                Self::conflict("The resource was changed concurrently; retry the request")
            }
            DomainError::Internal(m) => Self::internal(m),
            DomainError::Store(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(format!("{e:#}"))
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
