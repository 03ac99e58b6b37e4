//! The command side. Each aggregate (a user account, an instance) has pure
//! decisions (`decide(state, command) -> events`) and transitions
//! (`apply(state, event) -> state`); [`aggregate::execute`] loads the
//! snapshot, decides, and appends with the exact stream version it decided
//! on. Nothing here knows of HTTP: errors are [`DomainError`]s, mapped to
//! answers by the API layer.
//!
//! - [`types`]: other values parsed at the edge (e-mail, names, URLs).
//! - [`aggregate`]: the aggregate trait and the decide-then-append loop.
//! - [`users`], [`instances`]: the aggregates and their commands.
//! - [`kinds`]: message kinds' input and the decisions on reactions, edits, revokes.
//! - [`idempotency`]: sends made at most once per `Idempotency-Key`.
//! - [`logins`]: logins throttled after repeated failures, each failure recorded.
//! - [`pacing`]: an instance's send policy and the pure pacer of its outbound queue.
//! - [`proxy`]: an instance's proxy URL, parsed, split into public part and credentials.
//! - [`state`]: the aggregates' states (shared by the decisions and the tables).
//! - [`storage`]: their tables, one module per table, with named changes.

pub mod aggregate;
pub mod groups;
pub mod idempotency;
pub mod instances;
pub mod kinds;
pub mod logins;
pub mod pacing;
pub mod proxy;
pub mod send;
pub mod state;
pub mod storage;
pub mod types;
pub mod users;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::store::StoreError;

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The input breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// No such thing (or not one the caller may see).
    #[error("{0}")]
    NotFound(String),
    /// The command conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but it contradicts what was already done under the same
    /// name (an idempotency key reused for another request).
    #[error("{0}")]
    Mismatch(String),
    /// Credentials were refused.
    #[error("{0}")]
    Unauthorized(String),
    /// Too many recent failures: not tried again for this long.
    #[error("too many failed logins; retry in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// The aggregate changed under the command twice in a row.
    #[error("{0} was changed concurrently; retry the request")]
    Concurrent(String),
    /// Something in the gateway failed (details for the log only).
    #[error("internal: {0}")]
    Internal(String),
    /// The store failed or refused the append.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }
}

impl From<sqlx::Error> for DomainError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

/// The time format of every API timestamp: `2023-01-01T00:00:00.000Z`.
pub fn api_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Unix milliseconds as an API timestamp.
pub fn api_time_ms(ms: i64) -> String {
    api_time(crate::store::ms_to_time(ms))
}
