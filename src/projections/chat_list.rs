//! The chats of an instance, read from the message history's tables (the
//! [`super::messages`] projection): one row per chat, newest activity first.

use sqlx::{Row, SqlitePool};

/// One chat: its JID, how many messages it holds and its latest message.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSummary {
    pub remote_jid: String,
    pub total: i64,
    /// Unix milliseconds of the latest message.
    pub last_at: i64,
    pub last_content: String,
    pub last_from_me: bool,
    pub last_status: String,
}

/// A page of an instance's chats, latest activity first, and how many there are.
pub async fn page(
    views: &SqlitePool,
    instance_id: &str,
    limit: i64,
    skip: i64,
) -> Result<(Vec<ChatSummary>, i64), sqlx::Error> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM message_chats WHERE instance_id = ? AND total > 0",
    )
    .bind(instance_id)
    .fetch_one(views)
    .await?;
    // The latest message of each chat through the (instance, chat, time) index.
    let rows = sqlx::query(
        "SELECT c.remote_jid, c.total, m.created_at, m.content, m.from_me, m.status \
         FROM message_chats c \
         JOIN messages m ON m.position = ( \
             SELECT position FROM messages \
             WHERE instance_id = c.instance_id AND remote_jid = c.remote_jid \
             ORDER BY created_at DESC, position DESC LIMIT 1) \
         WHERE c.instance_id = ? AND c.total > 0 \
         ORDER BY m.created_at DESC, m.position DESC LIMIT ? OFFSET ?",
    )
    .bind(instance_id)
    .bind(limit)
    .bind(skip)
    .fetch_all(views)
    .await?;
    let chats = rows
        .iter()
        .map(|r| {
            Ok(ChatSummary {
                remote_jid: r.try_get(0)?,
                total: r.try_get(1)?,
                last_at: r.try_get(2)?,
                last_content: r.try_get(3)?,
                last_from_me: r.try_get(4)?,
                last_status: r.try_get(5)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((chats, total))
}
