//! Reads of the message history for stuck messages: sent by us, still
//! `sent` (no `delivered` receipt) since before a cutoff. The partial index
//! `messages_waiting` holds exactly the messages still waiting.

use sqlx::{Row, SqlitePool};

/// A sent message still waiting for its delivered receipt.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub instance_id: String,
    pub message_id: String,
    /// The recipient's JID.
    pub remote_jid: String,
    pub message_type: String,
    /// Unix ms when it was recorded (sent, or queued for a paced send).
    pub created_at: i64,
    /// Its log position (a stable tie-breaker for paging).
    pub position: i64,
}

/// How many messages of every instance are stuck (recorded at or before `cutoff_ms`).
pub async fn count(views: &SqlitePool, cutoff_ms: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE status = 'sent' AND from_me = 1 AND created_at <= ?",
    )
    .bind(cutoff_ms)
    .fetch_one(views)
    .await
}

fn waiting(r: &sqlx::sqlite::SqliteRow) -> Result<Waiting, sqlx::Error> {
    Ok(Waiting {
        instance_id: r.try_get("instance_id")?,
        message_id: r.try_get("message_id")?,
        remote_jid: r.try_get("remote_jid")?,
        message_type: r.try_get("message_type")?,
        created_at: r.try_get("created_at")?,
        position: r.try_get("position")?,
    })
}

/// One instance's stuck messages, oldest first, up to `limit`.
pub async fn of_instance(
    views: &SqlitePool,
    instance_id: &str,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<Waiting>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT instance_id, message_id, remote_jid, message_type, created_at, position FROM messages \
         WHERE status = 'sent' AND from_me = 1 AND created_at <= ? AND instance_id = ? \
         ORDER BY created_at, position LIMIT ?",
    )
    .bind(cutoff_ms)
    .bind(instance_id)
    .bind(limit)
    .fetch_all(views)
    .await?;
    rows.iter().map(waiting).collect()
}

/// Every instance's stuck messages recorded in `(after, cutoff_ms]`, after
/// the `(created_at, position)` key `after`, oldest first: a page of the sweep.
pub async fn page(
    views: &SqlitePool,
    after: (i64, i64),
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<Waiting>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT instance_id, message_id, remote_jid, message_type, created_at, position FROM messages \
         WHERE status = 'sent' AND from_me = 1 AND created_at <= ? \
         AND (created_at > ? OR (created_at = ? AND position > ?)) \
         ORDER BY created_at, position LIMIT ?",
    )
    .bind(cutoff_ms)
    .bind(after.0)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(views)
    .await?;
    rows.iter().map(waiting).collect()
}
