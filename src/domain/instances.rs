//! Instances: a named WhatsApp connection owned by a user, with its webhook settings.

use chrono::Utc;
use sqlx::{Row, SqlitePool};

use crate::config::Secret;
use crate::error::{ApiError, ApiResult};
use crate::events::{
    InstanceCreated, InstanceDeleted, InstanceUpdated, WebhookConfig, WebhookDisabled,
};
use crate::store::{Append, EventStore, ExpectedVersion, Metadata, StreamId, effect};

/// Bounds of `maxRetries`.
pub const MAX_RETRIES_RANGE: std::ops::RangeInclusive<u32> = 0..=20;
/// Bounds of `retryInterval`, in milliseconds (100 ms to 24 h).
pub const RETRY_INTERVAL_RANGE: std::ops::RangeInclusive<u64> = 100..=86_400_000;

/// Webhook settings of an instance, secret included (never printed, never in events).
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
    pub secret: Option<Secret>,
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
            secret: None,
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
            has_secret: self.secret.is_some(),
        }
    }

    /// Checks the cross-field rules and bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && self.url.is_none() {
            return Err("webhookEnabled needs a webhookUrl".into());
        }
        if !MAX_RETRIES_RANGE.contains(&self.max_retries) {
            return Err(format!(
                "maxRetries must be between {} and {}",
                MAX_RETRIES_RANGE.start(),
                MAX_RETRIES_RANGE.end()
            ));
        }
        if !RETRY_INTERVAL_RANGE.contains(&self.retry_interval) {
            return Err(format!(
                "retryInterval must be between {} and {} milliseconds",
                RETRY_INTERVAL_RANGE.start(),
                RETRY_INTERVAL_RANGE.end()
            ));
        }
        if let Some(s) = &self.secret
            && s.expose().len() > 256
        {
            return Err("webhook secret must be at most 256 characters".into());
        }
        Ok(())
    }
}

/// An instance as stored.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub description: Option<String>,
    pub webhook: WebhookSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, user_id, name, description, webhook_url, webhook_enabled, notify_received, \
    notify_sent, notify_delivery, notify_read, max_retries, retry_interval, webhook_secret, created_at, updated_at";

fn row_to_instance(row: &sqlx::sqlite::SqliteRow) -> Result<Instance, sqlx::Error> {
    let flag = |name: &str| row.try_get::<i64, _>(name).map(|v| v != 0);
    Ok(Instance {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        webhook: WebhookSettings {
            url: row.try_get("webhook_url")?,
            enabled: flag("webhook_enabled")?,
            notify_received: flag("notify_received")?,
            notify_sent: flag("notify_sent")?,
            notify_delivery: flag("notify_delivery")?,
            notify_read: flag("notify_read")?,
            max_retries: row.try_get::<i64, _>("max_retries")? as u32,
            retry_interval: row.try_get::<i64, _>("retry_interval")? as u64,
            secret: row
                .try_get::<Option<String>, _>("webhook_secret")?
                .map(Secret::new),
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// An instance by id, whoever owns it.
pub async fn find(pool: &SqlitePool, id: &str) -> Result<Option<Instance>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(row_to_instance).transpose()
}

/// An instance the caller may act on: its owner, or an admin. Anything else is 404.
pub async fn find_for(
    pool: &SqlitePool,
    caller_id: &str,
    is_admin: bool,
    id: &str,
) -> ApiResult<Instance> {
    match find(pool, id).await? {
        Some(i) if is_admin || i.user_id == caller_id => Ok(i),
        _ => Err(ApiError::not_found(format!("Instance {id} not found"))),
    }
}

/// A user's instances, oldest first.
pub async fn list_for_user(pool: &SqlitePool, user_id: &str) -> Result<Vec<Instance>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances WHERE user_id = ? ORDER BY created_at, id"
    )))
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(row_to_instance).collect()
}

/// Every instance, oldest first.
pub async fn list_all(pool: &SqlitePool) -> Result<Vec<Instance>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances ORDER BY created_at, id"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(row_to_instance).collect()
}

fn write_row(instance: Instance, insert: bool) -> crate::store::Effect {
    effect(move |conn| {
        Box::pin(async move {
            let sql = if insert {
                "INSERT INTO instances (name, description, webhook_url, webhook_enabled, notify_received, \
                 notify_sent, notify_delivery, notify_read, max_retries, retry_interval, webhook_secret, \
                 updated_at, created_at, user_id, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            } else {
                "UPDATE instances SET name = ?, description = ?, webhook_url = ?, webhook_enabled = ?, \
                 notify_received = ?, notify_sent = ?, notify_delivery = ?, notify_read = ?, max_retries = ?, \
                 retry_interval = ?, webhook_secret = ?, updated_at = ? WHERE created_at = ? AND user_id = ? AND id = ?"
            };
            let w = &instance.webhook;
            sqlx::query(sql)
                .bind(&instance.name)
                .bind(&instance.description)
                .bind(&w.url)
                .bind(w.enabled as i64)
                .bind(w.notify_received as i64)
                .bind(w.notify_sent as i64)
                .bind(w.notify_delivery as i64)
                .bind(w.notify_read as i64)
                .bind(w.max_retries as i64)
                .bind(w.retry_interval as i64)
                .bind(w.secret.as_ref().map(|s| s.expose().to_string()))
                .bind(instance.updated_at)
                .bind(instance.created_at)
                .bind(&instance.user_id)
                .bind(&instance.id)
                .execute(conn)
                .await?;
            Ok(())
        })
    })
}

/// Creates an instance owned by `user_id`: `instance_created`.
pub async fn create(
    store: &EventStore,
    user_id: &str,
    name: String,
    description: Option<String>,
    webhook: WebhookSettings,
    meta: Metadata,
) -> ApiResult<Instance> {
    webhook.validate().map_err(ApiError::bad_request)?;
    let now = Utc::now().timestamp_millis();
    let instance = Instance {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user_id.to_string(),
        name,
        description,
        webhook,
        created_at: now,
        updated_at: now,
    };
    let append = Append::to(StreamId::instance(&instance.id), ExpectedVersion::NoStream)
        .scope(Some(user_id), Some(&instance.id))
        .metadata(meta)
        .event(InstanceCreated {
            instance_id: instance.id.clone(),
            user_id: user_id.to_string(),
            name: instance.name.clone(),
            description: instance.description.clone(),
            webhook: instance.webhook.public(),
        })
        .effect(write_row(instance.clone(), true));
    store.append(append).await?;
    Ok(instance)
}

/// Stores the new whole state of an instance: `instance_updated`.
pub async fn update(
    store: &EventStore,
    mut instance: Instance,
    secret_changed: bool,
    meta: Metadata,
) -> ApiResult<Instance> {
    instance.webhook.validate().map_err(ApiError::bad_request)?;
    instance.updated_at = Utc::now().timestamp_millis().max(instance.updated_at);
    let append = Append::to(StreamId::instance(&instance.id), ExpectedVersion::Any)
        .scope(Some(&instance.user_id), Some(&instance.id))
        .metadata(meta)
        .event(InstanceUpdated {
            instance_id: instance.id.clone(),
            user_id: instance.user_id.clone(),
            name: instance.name.clone(),
            description: instance.description.clone(),
            webhook: instance.webhook.public(),
            secret_changed,
        })
        .effect(write_row(instance.clone(), false));
    store.append(append).await?;
    Ok(instance)
}

/// Switches an instance's webhook off on the gateway's own decision: `webhook_disabled`.
pub async fn disable_webhook(
    store: &EventStore,
    instance: &Instance,
    reason: &str,
) -> ApiResult<()> {
    let id = instance.id.clone();
    store
        .append(
            Append::to(StreamId::instance(&instance.id), ExpectedVersion::Any)
                .scope(Some(&instance.user_id), Some(&instance.id))
                .metadata(Metadata::actor("webhooks"))
                .event(WebhookDisabled {
                    instance_id: instance.id.clone(),
                    reason: reason.to_string(),
                })
                .effect(effect(move |conn| {
                    Box::pin(async move {
                        sqlx::query(
                            "UPDATE instances SET webhook_enabled = 0, updated_at = ? WHERE id = ?",
                        )
                        .bind(Utc::now().timestamp_millis())
                        .bind(&id)
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                })),
        )
        .await?;
    Ok(())
}

/// Deletes an instance: `instance_deleted`.
pub async fn delete(store: &EventStore, instance: &Instance, meta: Metadata) -> ApiResult<()> {
    let id = instance.id.clone();
    store
        .append(
            Append::to(StreamId::instance(&instance.id), ExpectedVersion::Any)
                .scope(Some(&instance.user_id), Some(&instance.id))
                .metadata(meta)
                .event(InstanceDeleted {
                    instance_id: instance.id.clone(),
                    user_id: instance.user_id.clone(),
                })
                .effect(effect(move |conn| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM instances WHERE id = ?")
                            .bind(&id)
                            .execute(conn)
                            .await?;
                        Ok(())
                    })
                })),
        )
        .await?;
    Ok(())
}
