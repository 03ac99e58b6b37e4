//! Message history: every sent (`message_sent`) and received
//! (`message_received`) message per instance and chat, with its status
//! following `message_status` events (sent → delivered → read → played),
//! never backwards. A status that arrives before its message is kept aside
//! and applied when the message comes. An instance's history is deleted
//! with the instance.

use std::collections::BTreeMap;

use serde::Deserialize;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use super::Projection;
use crate::events::{MessageReceived, MessageSent, MessageStatus};
use crate::store::RecordedEvent;

/// The projection's name.
pub const NAME: &str = "messages";

/// The message history projection.
pub struct Messages;

/// The order of statuses: a message's status only moves up this list.
/// Unknown statuses rank lowest and never replace a known one.
pub fn status_rank(status: &str) -> i64 {
    match status {
        "received" => 0,
        "pending" => 0,
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "played" => 4,
        _ => -1,
    }
}

/// The status of a message when it is first recorded.
const SENT_STATUS: &str = "sent";
const RECEIVED_STATUS: &str = "received";

struct NewMessage<'a> {
    event: &'a RecordedEvent,
    instance_id: &'a str,
    remote_jid: &'a str,
    from_me: bool,
    message_type: &'a str,
    content: &'a str,
    message_id: &'a str,
    has_media: bool,
}

/// What a batch accumulates besides row writes.
struct BatchState {
    /// Whether early statuses may be waiting (skips a lookup per message when none are).
    early_waiting: bool,
    /// Messages added per chat.
    chat_counts: BTreeMap<(String, String), i64>,
}

/// Records a message (once), with any status that came before it.
async fn insert_message(
    conn: &mut SqliteConnection,
    batch: &mut BatchState,
    m: NewMessage<'_>,
) -> anyhow::Result<()> {
    let initial = if m.from_me {
        SENT_STATUS
    } else {
        RECEIVED_STATUS
    };
    // A status may have come first.
    let early: Option<(String, i64)> = if !batch.early_waiting {
        None
    } else {
        sqlx::query_as(
        "DELETE FROM message_early_status WHERE instance_id = ? AND message_id = ? AND from_me = ? \
         RETURNING status, status_rank",
    )
    .bind(m.instance_id)
    .bind(m.message_id)
    .bind(m.from_me)
    .fetch_optional(&mut *conn)
    .await?
    };
    let (status, rank) = match early {
        Some((s, r)) if r > status_rank(initial) => (s, r),
        _ => (initial.to_string(), status_rank(initial)),
    };
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO messages (position, id, instance_id, remote_jid, from_me, message_type, \
         content, message_id, has_media, status, status_rank, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(m.event.position)
    .bind(&m.event.event_id)
    .bind(m.instance_id)
    .bind(m.remote_jid)
    .bind(m.from_me)
    .bind(m.message_type)
    .bind(m.content)
    .bind(m.message_id)
    .bind(m.has_media)
    .bind(&status)
    .bind(rank)
    .bind(m.event.recorded_ms())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted > 0 {
        *batch
            .chat_counts
            .entry((m.instance_id.to_string(), m.remote_jid.to_string()))
            .or_default() += 1;
    }
    Ok(())
}

/// Adds the batch's messages to the per-chat totals.
async fn write_chat_counts(conn: &mut SqliteConnection, batch: &BatchState) -> anyhow::Result<()> {
    for ((instance_id, remote_jid), added) in &batch.chat_counts {
        sqlx::query(
            "INSERT INTO message_chats (instance_id, remote_jid, total) VALUES (?, ?, ?) \
             ON CONFLICT (instance_id, remote_jid) DO UPDATE SET total = total + excluded.total",
        )
        .bind(instance_id)
        .bind(remote_jid)
        .bind(added)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn apply_status(
    conn: &mut SqliteConnection,
    batch: &mut BatchState,
    s: &MessageStatus,
) -> anyhow::Result<()> {
    let rank = status_rank(&s.status);
    if rank < 0 {
        return Ok(());
    }
    let raised = sqlx::query(
        "UPDATE messages SET status = ?, status_rank = ? \
         WHERE instance_id = ? AND message_id = ? AND from_me = ? AND status_rank < ?",
    )
    .bind(&s.status)
    .bind(rank)
    .bind(&s.instance_id)
    .bind(&s.message_id)
    .bind(s.from_me)
    .bind(rank)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if raised > 0 {
        return Ok(());
    }
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE instance_id = ? AND message_id = ? AND from_me = ?)",
    )
    .bind(&s.instance_id)
    .bind(&s.message_id)
    .bind(s.from_me)
    .fetch_one(&mut *conn)
    .await?;
    if !known {
        // The message is not here yet: keep the status for it.
        batch.early_waiting = true;
        sqlx::query(
            "INSERT INTO message_early_status (instance_id, message_id, from_me, status, status_rank) \
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (instance_id, message_id, from_me) DO UPDATE \
             SET status = excluded.status, status_rank = excluded.status_rank \
             WHERE excluded.status_rank > message_early_status.status_rank",
        )
        .bind(&s.instance_id)
        .bind(&s.message_id)
        .bind(s.from_me)
        .bind(&s.status)
        .bind(rank)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn delete_instance(conn: &mut SqliteConnection, instance_id: &str) -> anyhow::Result<()> {
    for sql in [
        "DELETE FROM messages WHERE instance_id = ?",
        "DELETE FROM message_chats WHERE instance_id = ?",
        "DELETE FROM message_early_status WHERE instance_id = ?",
    ] {
        sqlx::query(sql)
            .bind(instance_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Projection for Messages {
    const NAME: &'static str = NAME;
    const SCHEMA: &'static str = include_str!("../../projections/messages/schema.sql");
    const DROP: &'static str = include_str!("../../projections/messages/drop.sql");
    const TABLES: &'static [&'static str] = &["messages", "message_chats", "message_early_status"];

    async fn apply_events(
        conn: &mut SqliteConnection,
        events: &[RecordedEvent],
    ) -> anyhow::Result<()> {
        let early_waiting: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM message_early_status)")
                .fetch_one(&mut *conn)
                .await?;
        let mut batch = BatchState {
            early_waiting,
            chat_counts: BTreeMap::new(),
        };
        for e in events {
            match e.event_type.as_str() {
                "message_sent" => {
                    let m = MessageSent::deserialize(&e.data)?;
                    insert_message(
                        conn,
                        &mut batch,
                        NewMessage {
                            event: e,
                            instance_id: &m.instance_id,
                            remote_jid: &m.to,
                            from_me: true,
                            message_type: &m.message_type,
                            content: &m.body,
                            message_id: &m.message_id,
                            has_media: m.has_media,
                        },
                    )
                    .await?;
                }
                "message_received" => {
                    let m = MessageReceived::deserialize(&e.data)?;
                    insert_message(
                        conn,
                        &mut batch,
                        NewMessage {
                            event: e,
                            instance_id: &m.instance_id,
                            remote_jid: &m.chat,
                            from_me: false,
                            message_type: &m.message_type,
                            content: &m.body,
                            message_id: &m.message_id,
                            has_media: m.has_media,
                        },
                    )
                    .await?;
                }
                "message_status" => {
                    let s = MessageStatus::deserialize(&e.data)?;
                    apply_status(conn, &mut batch, &s).await?;
                }
                "instance_deleted" => {
                    if let Some(id) = e.instance_id.as_deref() {
                        // Counts gathered so far must land before the rows go.
                        write_chat_counts(conn, &batch).await?;
                        batch.chat_counts.clear();
                        delete_instance(conn, id).await?;
                    }
                }
                _ => {}
            }
        }
        write_chat_counts(conn, &batch).await?;
        Ok(())
    }
}

/// What a page of a chat's history is asked for.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub instance_id: String,
    /// The chat's JID (normalised).
    pub remote_jid: String,
    /// Inclusive bounds, unix milliseconds.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub limit: i64,
    pub skip: i64,
}

/// One message of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: String,
    pub instance_id: String,
    pub remote_jid: String,
    pub from_me: bool,
    pub message_type: String,
    pub content: String,
    pub message_id: String,
    pub has_media: bool,
    pub status: String,
    pub created_at: i64,
}

fn push_filters(qb: &mut QueryBuilder<Sqlite>, q: &HistoryQuery) {
    qb.push(" WHERE instance_id = ")
        .push_bind(q.instance_id.clone())
        .push(" AND remote_jid = ")
        .push_bind(q.remote_jid.clone());
    if let Some(start) = q.start_ms {
        qb.push(" AND created_at >= ").push_bind(start);
    }
    if let Some(end) = q.end_ms {
        qb.push(" AND created_at <= ").push_bind(end);
    }
}

/// A page of a chat's messages, newest first, and the total matching.
pub async fn page(
    views: &SqlitePool,
    q: &HistoryQuery,
) -> Result<(Vec<StoredMessage>, i64), sqlx::Error> {
    let total: i64 = if q.start_ms.is_none() && q.end_ms.is_none() {
        sqlx::query_scalar(
            "SELECT total FROM message_chats WHERE instance_id = ? AND remote_jid = ?",
        )
        .bind(&q.instance_id)
        .bind(&q.remote_jid)
        .fetch_optional(views)
        .await?
        .unwrap_or(0)
    } else {
        let mut count = QueryBuilder::new("SELECT COUNT(*) FROM messages");
        push_filters(&mut count, q);
        count.build_query_scalar().fetch_one(views).await?
    };
    let mut select = QueryBuilder::new(
        "SELECT id, instance_id, remote_jid, from_me, message_type, content, message_id, has_media, \
         status, created_at FROM messages",
    );
    push_filters(&mut select, q);
    select
        .push(" ORDER BY created_at DESC, position DESC LIMIT ")
        .push_bind(q.limit)
        .push(" OFFSET ")
        .push_bind(q.skip);
    let rows = select.build().fetch_all(views).await?;
    let messages = rows
        .iter()
        .map(|r| {
            Ok(StoredMessage {
                id: r.try_get("id")?,
                instance_id: r.try_get("instance_id")?,
                remote_jid: r.try_get("remote_jid")?,
                from_me: r.try_get("from_me")?,
                message_type: r.try_get("message_type")?,
                content: r.try_get("content")?,
                message_id: r.try_get("message_id")?,
                has_media: r.try_get("has_media")?,
                status: r.try_get("status")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((messages, total))
}
