//! Table access for the dispatcher (`webhooks.db`): settings as of the log, and
//! the deliveries (durable queue and delivery log). SQL schema:
//! `projections/webhooks/schema.sql`.

use std::collections::HashMap;

use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::events::WebhookConfig;

/// The dispatcher's schema (idempotent).
pub const SCHEMA: &str = include_str!("../../projections/webhooks/schema.sql");

/// Delivery states.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// Creates the tables.
pub async fn ensure_schema(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(SCHEMA).execute(pool).await?;
    Ok(())
}

/// The log position from which events are delivered; set to `head` on first use.
pub async fn deliver_from(pool: &SqlitePool, head: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("INSERT OR IGNORE INTO webhook_state (key, value) VALUES ('deliver_from', ?)")
        .bind(head)
        .execute(pool)
        .await?;
    sqlx::query_scalar("SELECT value FROM webhook_state WHERE key = 'deliver_from'")
        .fetch_one(pool)
        .await
}

/// An instance's webhook settings as of the last applied event (no secret).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub user_id: String,
    pub url: Option<String>,
    pub enabled: bool,
    pub notify_received: bool,
    pub notify_sent: bool,
    pub notify_delivery: bool,
    pub notify_read: bool,
    pub max_retries: u32,
    pub retry_interval: u64,
    /// The opt-in event types the instance listed in `webhookEvents`.
    pub events: Vec<String>,
}

/// Stores the settings an `instance_created` / `instance_updated` carries.
pub async fn upsert_settings(
    conn: &mut SqliteConnection,
    instance_id: &str,
    user_id: &str,
    w: &WebhookConfig,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_settings (instance_id, user_id, url, enabled, notify_received, notify_sent, \
         notify_delivery, notify_read, max_retries, retry_interval) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(instance_id) DO UPDATE SET user_id = excluded.user_id, url = excluded.url, \
         enabled = excluded.enabled, notify_received = excluded.notify_received, \
         notify_sent = excluded.notify_sent, notify_delivery = excluded.notify_delivery, \
         notify_read = excluded.notify_read, max_retries = excluded.max_retries, \
         retry_interval = excluded.retry_interval",
    )
    .bind(instance_id)
    .bind(user_id)
    .bind(&w.url)
    .bind(w.enabled)
    .bind(w.notify_received)
    .bind(w.notify_sent)
    .bind(w.notify_delivery)
    .bind(w.notify_read)
    .bind(w.max_retries as i64)
    .bind(w.retry_interval as i64)
    .execute(&mut *conn)
    .await?;
    set_opt_ins(conn, instance_id, &w.events).await
}

/// Stores an instance's `webhookEvents` list (none: its row removed).
async fn set_opt_ins(
    conn: &mut SqliteConnection,
    instance_id: &str,
    events: &[String],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        sqlx::query("DELETE FROM webhook_opt_ins WHERE instance_id = ?")
            .bind(instance_id)
            .execute(conn)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO webhook_opt_ins (instance_id, events) VALUES (?, ?) \
             ON CONFLICT(instance_id) DO UPDATE SET events = excluded.events",
        )
        .bind(instance_id)
        .bind(serde_json::to_string(events).expect("names serialize"))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Switches an instance's webhook off (`webhook_disabled`).
pub async fn disable_settings(
    conn: &mut SqliteConnection,
    instance_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_settings SET enabled = 0 WHERE instance_id = ?")
        .bind(instance_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets a deleted instance's settings.
pub async fn delete_settings(
    conn: &mut SqliteConnection,
    instance_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhook_settings WHERE instance_id = ?")
        .bind(instance_id)
        .execute(&mut *conn)
        .await?;
    set_opt_ins(conn, instance_id, &[]).await
}

/// An instance's settings as of the last applied event.
pub async fn settings(
    conn: &mut SqliteConnection,
    instance_id: &str,
) -> Result<Option<Settings>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.user_id, s.url, s.enabled, s.notify_received, s.notify_sent, s.notify_delivery, \
         s.notify_read, s.max_retries, s.retry_interval, o.events FROM webhook_settings s \
         LEFT JOIN webhook_opt_ins o ON o.instance_id = s.instance_id WHERE s.instance_id = ?",
    )
    .bind(instance_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(settings_row).transpose()
}

/// The webhook settings of several instances at once (one query per chunk);
/// an instance without settings is absent from the answer.
pub async fn settings_of(
    conn: &mut SqliteConnection,
    instance_ids: &[&str],
) -> Result<HashMap<String, Settings>, sqlx::Error> {
    let mut found = HashMap::with_capacity(instance_ids.len());
    for chunk in instance_ids.chunks(500) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT s.instance_id, s.user_id, s.url, s.enabled, s.notify_received, s.notify_sent, \
             s.notify_delivery, s.notify_read, s.max_retries, s.retry_interval, o.events \
             FROM webhook_settings s LEFT JOIN webhook_opt_ins o ON o.instance_id = s.instance_id \
             WHERE s.instance_id IN (",
        );
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        for r in q.build().fetch_all(&mut *conn).await? {
            found.insert(r.try_get("instance_id")?, settings_row(&r)?);
        }
    }
    Ok(found)
}

fn settings_row(r: &sqlx::sqlite::SqliteRow) -> Result<Settings, sqlx::Error> {
    Ok(Settings {
        user_id: r.try_get("user_id")?,
        url: r.try_get("url")?,
        enabled: r.try_get("enabled")?,
        notify_received: r.try_get("notify_received")?,
        notify_sent: r.try_get("notify_sent")?,
        notify_delivery: r.try_get("notify_delivery")?,
        notify_read: r.try_get("notify_read")?,
        max_retries: r.try_get::<i64, _>("max_retries")? as u32,
        retry_interval: r.try_get::<i64, _>("retry_interval")? as u64,
        events: match r.try_get::<Option<String>, _>("events")? {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
            }
            None => Vec::new(),
        },
    })
}

/// A delivery to be queued.
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub instance_id: &'a str,
    pub user_id: &'a str,
    pub event_id: &'a str,
    pub event_position: i64,
    pub event: &'a str,
    pub webhook_id: &'a str,
    pub url: &'a str,
    pub body: &'a str,
    pub max_retries: u32,
    pub retry_interval: u64,
    pub now_ms: i64,
}

/// Queues a delivery, due now. A second insert for the same event is ignored.
pub async fn insert(conn: &mut SqliteConnection, d: &NewDelivery<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR IGNORE INTO webhook_deliveries (id, instance_id, user_id, event_id, event_position, event, \
         webhook_id, url, body, status, attempts, round_base, max_retries, retry_interval, next_attempt_at, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, ?, ?, ?, ?, ?)",
    )
    .bind(d.id)
    .bind(d.instance_id)
    .bind(d.user_id)
    .bind(d.event_id)
    .bind(d.event_position)
    .bind(d.event)
    .bind(d.webhook_id)
    .bind(d.url)
    .bind(d.body)
    .bind(d.max_retries as i64)
    .bind(d.retry_interval as i64)
    .bind(d.now_ms)
    .bind(d.now_ms)
    .bind(d.now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Fails every pending delivery of an instance (webhook switched off, instance deleted).
pub async fn cancel_pending(
    conn: &mut SqliteConnection,
    instance_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = ?, next_attempt_at = NULL, \
         updated_at = ? WHERE instance_id = ? AND status = 'pending'",
    )
    .bind(reason)
    .bind(now_ms)
    .bind(instance_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// One delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub seq: i64,
    pub id: String,
    pub instance_id: String,
    pub user_id: String,
    pub event_id: String,
    pub event: String,
    pub webhook_id: String,
    pub url: String,
    pub body: String,
    pub status: String,
    pub attempts: u32,
    pub round_base: u32,
    pub max_retries: u32,
    pub retry_interval: u64,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "seq, id, instance_id, user_id, event_id, event, webhook_id, url, body, status, \
    attempts, round_base, max_retries, retry_interval, last_status_code, last_error, next_attempt_at, \
    created_at, updated_at";

fn row_to_delivery(r: &sqlx::sqlite::SqliteRow) -> Result<Delivery, sqlx::Error> {
    Ok(Delivery {
        seq: r.try_get("seq")?,
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        user_id: r.try_get("user_id")?,
        event_id: r.try_get("event_id")?,
        event: r.try_get("event")?,
        webhook_id: r.try_get("webhook_id")?,
        url: r.try_get("url")?,
        body: r.try_get("body")?,
        status: r.try_get("status")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        round_base: r.try_get::<i64, _>("round_base")? as u32,
        max_retries: r.try_get::<i64, _>("max_retries")? as u32,
        retry_interval: r.try_get::<i64, _>("retry_interval")? as u64,
        last_status_code: r
            .try_get::<Option<i64>, _>("last_status_code")?
            .map(|c| c as u16),
        last_error: r.try_get("last_error")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The next pending deliveries of an instance after `after_seq`, in event order.
pub async fn pending_batch(
    pool: &SqlitePool,
    instance_id: &str,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE instance_id = ? AND status = 'pending' \
         AND seq > ? ORDER BY seq LIMIT ?"
    )))
    .bind(instance_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(row_to_delivery).collect()
}

/// How many deliveries are pending (the `wa_webhook_deliveries_pending` metric).
pub async fn pending_count(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
        .fetch_one(pool)
        .await
}

/// Instances with pending deliveries (to resume after a start).
pub async fn instances_with_pending(pool: &SqlitePool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT instance_id FROM webhook_deliveries WHERE status = 'pending'",
    )
    .fetch_all(pool)
    .await
}

/// A page of an instance's deliveries, newest first, and the total.
pub async fn list(
    pool: &SqlitePool,
    instance_id: &str,
    status: Option<&str>,
    limit: i64,
    skip: i64,
) -> Result<(Vec<Delivery>, i64), sqlx::Error> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE instance_id = ? AND (? IS NULL OR status = ?)",
    )
    .bind(instance_id)
    .bind(status)
    .bind(status)
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE instance_id = ? AND (? IS NULL OR status = ?) \
         ORDER BY seq DESC LIMIT ? OFFSET ?"
    )))
    .bind(instance_id)
    .bind(status)
    .bind(status)
    .bind(limit)
    .bind(skip)
    .fetch_all(pool)
    .await?;
    Ok((
        rows.iter().map(row_to_delivery).collect::<Result<_, _>>()?,
        total,
    ))
}

/// One delivery of an instance.
pub async fn find(
    pool: &SqlitePool,
    instance_id: &str,
    id: &str,
) -> Result<Option<Delivery>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE instance_id = ? AND id = ?"
    )))
    .bind(instance_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(row_to_delivery).transpose()
}

/// Starts a new round for a delivery (manual retry): due now, to `url`, with
/// the instance's current retry settings. `None` when there is no such delivery.
pub async fn requeue(
    pool: &SqlitePool,
    instance_id: &str,
    id: &str,
    url: &str,
    max_retries: u32,
    retry_interval: u64,
    now_ms: i64,
) -> Result<Option<Delivery>, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', round_base = attempts, url = ?, \
         max_retries = ?, retry_interval = ?, next_attempt_at = ?, updated_at = ? \
         WHERE instance_id = ? AND id = ?",
    )
    .bind(url)
    .bind(max_retries as i64)
    .bind(retry_interval as i64)
    .bind(now_ms)
    .bind(now_ms)
    .bind(instance_id)
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    find(pool, instance_id, id).await
}

/// The result of one attempt, as the row records it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: String,
    pub status: &'static str,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub updated_at: i64,
}

/// Marks attempts as started (before their requests go out).
pub async fn mark_in_flight(
    conn: &mut SqliteConnection,
    ids: &[String],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    for id in ids {
        sqlx::query(
            "INSERT OR REPLACE INTO webhook_in_flight (delivery_id, started_at) VALUES (?, ?)",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The deliveries whose attempt was started and never recorded, with when it started.
pub async fn interrupted(pool: &SqlitePool) -> Result<Vec<(Delivery, i64)>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {}, f.started_at FROM webhook_in_flight f \
         JOIN webhook_deliveries d ON d.id = f.delivery_id ORDER BY d.seq",
        COLUMNS
            .split(", ")
            .map(|c| format!("d.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    )))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((row_to_delivery(r)?, r.try_get("started_at")?)))
        .collect()
}

/// Forgets an in-flight mark without recording an attempt.
pub async fn clear_in_flight(conn: &mut SqliteConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhook_in_flight WHERE delivery_id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records an attempt's result, unless the delivery stopped being pending
/// meanwhile, and clears its in-flight mark.
pub async fn record_attempt(
    conn: &mut SqliteConnection,
    a: &AttemptRecord,
) -> Result<(), sqlx::Error> {
    clear_in_flight(&mut *conn, &a.id).await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status_code = ?, last_error = ?, \
         next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
    )
    .bind(a.status)
    .bind(a.attempts as i64)
    .bind(a.last_status_code.map(i64::from))
    .bind(&a.last_error)
    .bind(a.next_attempt_at)
    .bind(a.updated_at)
    .bind(&a.id)
    .execute(conn)
    .await?;
    Ok(())
}
