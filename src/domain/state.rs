//! The aggregates' states, apart from their decisions and their tables, so
//! that both can use them without importing each other.

use crate::events::WebhookConfig;
use crate::ids::{InstanceId, UserId};

use super::DomainError;
use super::pacing::SendPolicy;

/// Bounds of `maxRetries`.
pub const MAX_RETRIES_RANGE: std::ops::RangeInclusive<u32> = 0..=20;
/// Bounds of `retryInterval`, in milliseconds (100 ms to 24 h).
pub const RETRY_INTERVAL_RANGE: std::ops::RangeInclusive<u64> = 100..=86_400_000;
/// Longest webhook secret.
pub const MAX_SECRET_LEN: usize = 256;

/// Webhook settings of an instance (the secret itself lives only in its table).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub url: Option<String>,
    pub enabled: bool,
    pub notify_received: bool,
    pub notify_sent: bool,
    pub notify_delivery: bool,
    pub notify_read: bool,
    pub max_retries: u32,
    pub retry_interval: u64,
    pub has_secret: bool,
    /// Opt-in webhook event types delivered besides the seed's
    /// ([`crate::webhooks::opt_in`]); empty by default.
    pub events: Vec<String>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: None,
            enabled: false,
            notify_received: true,
            notify_sent: true,
            notify_delivery: false,
            notify_read: false,
            max_retries: 3,
            retry_interval: 60_000,
            has_secret: false,
            events: Vec::new(),
        }
    }
}

impl WebhookSettings {
    /// The settings as events carry them.
    pub fn public(&self) -> WebhookConfig {
        WebhookConfig {
            url: self.url.clone(),
            enabled: self.enabled,
            notify_received: self.notify_received,
            notify_sent: self.notify_sent,
            notify_delivery: self.notify_delivery,
            notify_read: self.notify_read,
            max_retries: self.max_retries,
            retry_interval: self.retry_interval,
            has_secret: self.has_secret,
            events: self.events.clone(),
        }
    }

    /// The settings an event carries.
    pub fn from_public(w: &WebhookConfig) -> Self {
        Self {
            url: w.url.clone(),
            enabled: w.enabled,
            notify_received: w.notify_received,
            notify_sent: w.notify_sent,
            notify_delivery: w.notify_delivery,
            notify_read: w.notify_read,
            max_retries: w.max_retries,
            retry_interval: w.retry_interval,
            has_secret: w.has_secret,
            events: w.events.clone(),
        }
    }

    /// Checks the cross-field rules and bounds.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.enabled && self.url.is_none() {
            return Err(DomainError::invalid("webhookEnabled needs a webhookUrl"));
        }
        crate::webhooks::opt_in::parse_list(&self.events).map_err(DomainError::Invalid)?;
        if !MAX_RETRIES_RANGE.contains(&self.max_retries) {
            return Err(DomainError::invalid(format!(
                "maxRetries must be between {} and {}",
                MAX_RETRIES_RANGE.start(),
                MAX_RETRIES_RANGE.end()
            )));
        }
        if !RETRY_INTERVAL_RANGE.contains(&self.retry_interval) {
            return Err(DomainError::invalid(format!(
                "retryInterval must be between {} and {} milliseconds",
                RETRY_INTERVAL_RANGE.start(),
                RETRY_INTERVAL_RANGE.end()
            )));
        }
        Ok(())
    }
}

/// An instance: the aggregate's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: InstanceId,
    pub user_id: UserId,
    pub name: String,
    pub description: Option<String>,
    pub webhook: WebhookSettings,
    /// How its sends are paced (off by default).
    pub send_policy: SendPolicy,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// The proxy its WhatsApp connections leave through (no credentials).
    pub proxy: Option<crate::domain::proxy::ProxyPublic>,
}

/// A user account as the API shows it (the API key included; never the password hash).
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
    /// The API key as stored: sealed (see [`crate::secrets`]); open it to show it.
    pub api_key: String,
    /// The user's own API rate limit (requests a minute); `None`: the default.
    pub rate_limit_per_min: Option<u32>,
    pub created_at: i64,
    /// Tokens issued in an older generation are refused (see [`Account::token_generation`]).
    pub token_generation: i64,
}

/// An account: the aggregate's state (no secrets).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: UserId,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
    /// The user's own API rate limit (requests a minute); `None`: the default.
    pub rate_limit_per_min: Option<u32>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Moved on by every password change or reset; a token carries the
    /// generation it was issued in and is refused once it is older.
    pub token_generation: i64,
}
