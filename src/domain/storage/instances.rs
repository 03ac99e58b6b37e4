//! The `instances` table: each instance's snapshot (the state its stream's
//! events lead to, with that stream version) and its webhook secret.

use futures::future::BoxFuture;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::config::Secret;
use crate::domain::pacing::SendPolicy;
use crate::domain::proxy::ProxyPublic;
use crate::domain::state::{Instance, WebhookSettings};
use crate::ids::{InstanceId, UserId};
use crate::store::StateChange;

const COLUMNS: &str = "id, user_id, name, description, webhook_url, webhook_enabled, notify_received, \
    notify_sent, notify_delivery, notify_read, max_retries, retry_interval, \
    webhook_secret IS NOT NULL AS has_secret, send_policy, webhook_events, created_at, updated_at, \
    version, proxy_url, proxy_auth IS NOT NULL AS has_proxy_auth";

fn row_to_instance(row: &sqlx::sqlite::SqliteRow) -> Result<(Instance, i64), sqlx::Error> {
    let flag = |name: &str| row.try_get::<i64, _>(name).map(|v| v != 0);
    let instance = Instance {
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
            has_secret: flag("has_secret")?,
            events: match row.try_get::<Option<String>, _>("webhook_events")? {
                Some(json) => {
                    serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
                }
                None => Vec::new(),
            },
        },
        send_policy: match row.try_get::<Option<String>, _>("send_policy")? {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
            }
            None => SendPolicy::default(),
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        proxy: match row.try_get::<Option<String>, _>("proxy_url")? {
            Some(url) => Some(ProxyPublic {
                url,
                auth: flag("has_proxy_auth")?,
            }),
            None => None,
        },
    };
    Ok((instance, row.try_get("version")?))
}

/// An instance and the version of its stream the row reflects.
pub async fn find_versioned(
    pool: &SqlitePool,
    id: &InstanceId,
) -> Result<Option<(Instance, i64)>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(row_to_instance).transpose()
}

/// An instance by id, whoever owns it.
pub async fn find(pool: &SqlitePool, id: &InstanceId) -> Result<Option<Instance>, sqlx::Error> {
    Ok(find_versioned(pool, id).await?.map(|(i, _)| i))
}

/// A user's instances, oldest first.
pub async fn list_for_user(pool: &SqlitePool, user: &UserId) -> Result<Vec<Instance>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances WHERE user_id = ? ORDER BY created_at, id"
    )))
    .bind(user)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| row_to_instance(r).map(|(i, _)| i))
        .collect()
}

/// Every instance, oldest first.
pub async fn list_all(pool: &SqlitePool) -> Result<Vec<Instance>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances ORDER BY created_at, id"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| row_to_instance(r).map(|(i, _)| i))
        .collect()
}

/// The policy as its column holds it.
fn policy_json(p: &SendPolicy) -> String {
    serde_json::to_string(p).expect("a policy serializes")
}

/// The `webhookEvents` list as its column holds it (`NULL` when empty).
fn events_json(events: &[String]) -> Option<String> {
    (!events.is_empty()).then(|| serde_json::to_string(events).expect("names serialize"))
}

/// Writes a new instance's row at `version`.
pub async fn insert_instance(
    conn: &mut SqliteConnection,
    i: &Instance,
    version: i64,
) -> Result<(), sqlx::Error> {
    let w = &i.webhook;
    sqlx::query(
        "INSERT INTO instances (id, user_id, name, description, webhook_url, webhook_enabled, \
         notify_received, notify_sent, notify_delivery, notify_read, max_retries, retry_interval, \
         send_policy, webhook_events, created_at, updated_at, version) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&i.id)
    .bind(&i.user_id)
    .bind(&i.name)
    .bind(&i.description)
    .bind(&w.url)
    .bind(w.enabled as i64)
    .bind(w.notify_received as i64)
    .bind(w.notify_sent as i64)
    .bind(w.notify_delivery as i64)
    .bind(w.notify_read as i64)
    .bind(w.max_retries as i64)
    .bind(w.retry_interval as i64)
    .bind(policy_json(&i.send_policy))
    .bind(events_json(&w.events))
    .bind(i.created_at)
    .bind(i.updated_at)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rewrites an instance's row with its new state at `version`.
pub async fn update_instance(
    conn: &mut SqliteConnection,
    i: &Instance,
    version: i64,
) -> Result<(), sqlx::Error> {
    let w = &i.webhook;
    sqlx::query(
        "UPDATE instances SET name = ?, description = ?, webhook_url = ?, webhook_enabled = ?, \
         notify_received = ?, notify_sent = ?, notify_delivery = ?, notify_read = ?, max_retries = ?, \
         retry_interval = ?, send_policy = ?, webhook_events = ?, updated_at = ?, version = ? WHERE id = ?",
    )
    .bind(&i.name)
    .bind(&i.description)
    .bind(&w.url)
    .bind(w.enabled as i64)
    .bind(w.notify_received as i64)
    .bind(w.notify_sent as i64)
    .bind(w.notify_delivery as i64)
    .bind(w.notify_read as i64)
    .bind(w.max_retries as i64)
    .bind(w.retry_interval as i64)
    .bind(policy_json(&i.send_policy))
    .bind(events_json(&w.events))
    .bind(i.updated_at)
    .bind(version)
    .bind(&i.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets (or, with `None`, removes) an instance's webhook signing secret.
pub async fn set_webhook_secret(
    conn: &mut SqliteConnection,
    id: &InstanceId,
    secret: Option<&Secret>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET webhook_secret = ? WHERE id = ?")
        .bind(secret.map(Secret::expose))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets (or, with `None`, removes) an instance's proxy: its public URL and
/// its credentials, sealed ([`crate::secrets::Purpose::ProxyCredentials`]).
pub async fn set_proxy(
    conn: &mut SqliteConnection,
    id: &InstanceId,
    proxy: Option<&StoredProxy>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET proxy_url = ?, proxy_auth = ? WHERE id = ?")
        .bind(proxy.map(|p| p.url.as_str()))
        .bind(
            proxy
                .and_then(|p| p.sealed_auth.as_ref())
                .map(Secret::expose),
        )
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// An instance's proxy as its row holds it: the public URL and the sealed
/// credentials. `None`: the instance has no proxy.
pub async fn find_proxy(
    pool: &SqlitePool,
    id: &InstanceId,
) -> Result<Option<StoredProxy>, sqlx::Error> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT proxy_url, proxy_auth FROM instances WHERE id = ?")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some((Some(url), auth)) => Some(StoredProxy {
            url,
            sealed_auth: auth.map(Secret::new),
        }),
        _ => None,
    })
}

/// A proxy as stored: the public URL (no credentials) and the credentials sealed.
#[derive(Debug, Clone)]
pub struct StoredProxy {
    pub url: String,
    pub sealed_auth: Option<Secret>,
}

/// Removes an instance's row (and with it its secret).
pub async fn delete_instance(
    conn: &mut SqliteConnection,
    id: &InstanceId,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM instances WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The changes an instance command makes to this table.
#[derive(Debug)]
pub enum InstanceChange {
    /// [`insert_instance`].
    Insert(Instance, i64),
    /// [`update_instance`].
    Update(Instance, i64),
    /// [`set_webhook_secret`].
    SetSecret(InstanceId, Option<Secret>),
    /// [`delete_instance`].
    Delete(InstanceId),
    /// [`set_proxy`].
    SetProxy(InstanceId, Option<StoredProxy>),
}

impl StateChange for InstanceChange {
    fn apply<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(async move {
            match *self {
                InstanceChange::Insert(i, v) => insert_instance(conn, &i, v).await,
                InstanceChange::Update(i, v) => update_instance(conn, &i, v).await,
                InstanceChange::SetSecret(id, s) => set_webhook_secret(conn, &id, s.as_ref()).await,
                InstanceChange::Delete(id) => delete_instance(conn, &id).await,
                InstanceChange::SetProxy(id, p) => set_proxy(conn, &id, p.as_ref()).await,
            }
        })
    }
}
