//! The `outbound_queue` table: messages held back by pacing, each written in
//! the transaction of its `message_queued` and removed in the transaction of
//! its `message_sent` or its `message_status` failed.

use bytes::Bytes;
use futures::future::BoxFuture;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::events::SentKind;
use crate::ids::{InstanceId, Jid, MessageId, UserId};
use crate::store::{Metadata, StateChange, StreamId};

/// One queued message, with what is needed to send it.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Queue order (0 until stored).
    pub seq: i64,
    pub message_id: MessageId,
    pub instance_id: InstanceId,
    pub user_id: UserId,
    pub to: Jid,
    pub kind: SentKind,
    /// The text, or the media caption.
    pub body: String,
    pub mimetype: Option<String>,
    pub file_name: Option<String>,
    pub media: Option<Bytes>,
    /// The metadata of the request that queued it (its `message_sent` carries it too).
    pub meta: Metadata,
    /// Unix milliseconds.
    pub queued_at: i64,
}

fn parse_kind(raw: &str) -> SentKind {
    match raw {
        "image" => SentKind::Image,
        "video" => SentKind::Video,
        "audio" => SentKind::Audio,
        "document" => SentKind::Document,
        _ => SentKind::Text,
    }
}

fn row_to_message(row: &sqlx::sqlite::SqliteRow) -> Result<QueuedMessage, sqlx::Error> {
    let meta: String = row.try_get("metadata")?;
    Ok(QueuedMessage {
        seq: row.try_get("seq")?,
        message_id: MessageId::from_stored(row.try_get::<String, _>("message_id")?),
        instance_id: row.try_get("instance_id")?,
        user_id: row.try_get("user_id")?,
        to: Jid::from_raw(row.try_get::<String, _>("to_jid")?),
        kind: parse_kind(row.try_get::<&str, _>("kind")?),
        body: row.try_get("body")?,
        mimetype: row.try_get("mimetype")?,
        file_name: row.try_get("file_name")?,
        media: row.try_get::<Option<Vec<u8>>, _>("media")?.map(Bytes::from),
        meta: serde_json::from_str(&meta).unwrap_or_default(),
        queued_at: row.try_get("queued_at")?,
    })
}

/// The first message in an instance's queue, with its media.
pub async fn head(
    pool: &SqlitePool,
    instance: &InstanceId,
) -> Result<Option<QueuedMessage>, sqlx::Error> {
    let row =
        sqlx::query("SELECT * FROM outbound_queue WHERE instance_id = ? ORDER BY seq LIMIT 1")
            .bind(instance)
            .fetch_optional(pool)
            .await?;
    row.as_ref().map(row_to_message).transpose()
}

/// An instance's queue in order, without the media bytes (`media` stays `None`;
/// the size is given apart).
pub async fn list(
    pool: &SqlitePool,
    instance: &InstanceId,
) -> Result<Vec<(QueuedMessage, Option<u64>)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, message_id, instance_id, user_id, to_jid, kind, body, mimetype, file_name, \
         NULL AS media, length(media) AS media_size, metadata, queued_at \
         FROM outbound_queue WHERE instance_id = ? ORDER BY seq",
    )
    .bind(instance)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let size: Option<i64> = r.try_get("media_size")?;
            Ok((row_to_message(r)?, size.map(|s| s as u64)))
        })
        .collect()
}

/// A queued message of an instance by id, without its media.
pub async fn find(
    pool: &SqlitePool,
    instance: &InstanceId,
    message_id: &MessageId,
) -> Result<Option<QueuedMessage>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT seq, message_id, instance_id, user_id, to_jid, kind, body, mimetype, file_name, \
         NULL AS media, metadata, queued_at FROM outbound_queue WHERE instance_id = ? AND message_id = ?",
    )
    .bind(instance)
    .bind(message_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(row_to_message).transpose()
}

/// When the instance's messages of the last `since_ms` were sent (the
/// `message_sent` times of its session stream): the pacer's memory after a restart.
pub async fn sent_since(
    pool: &SqlitePool,
    instance: &InstanceId,
    since_ms: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT recorded_at FROM events WHERE stream_id = ? AND event_type = 'message_sent' \
         AND recorded_at > ? ORDER BY position",
    )
    .bind(StreamId::session(instance.as_str()).as_str())
    .bind(since_ms)
    .fetch_all(pool)
    .await
}

/// When the instance's current pairing first connected (its first
/// `connection_opened` after its last `logged_out`): the warm-up's start.
pub async fn paired_at(
    pool: &SqlitePool,
    instance: &InstanceId,
) -> Result<Option<i64>, sqlx::Error> {
    let stream = StreamId::session(instance.as_str());
    sqlx::query_scalar(
        "SELECT MIN(recorded_at) FROM events WHERE stream_id = ?1 AND event_type = 'connection_opened' \
         AND position > COALESCE((SELECT MAX(position) FROM events \
         WHERE stream_id = ?1 AND event_type = 'logged_out'), 0)",
    )
    .bind(stream.as_str())
    .fetch_one(pool)
    .await
}

/// The changes the queue's events make to this table.
#[derive(Debug)]
pub enum OutboundChange {
    /// A message joins the end of the queue (with its `message_queued`).
    Enqueue(Box<QueuedMessage>),
    /// Messages leave the queue (with their `message_sent` or failure).
    Remove(Vec<MessageId>),
}

impl StateChange for OutboundChange {
    fn apply<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(async move {
            match *self {
                OutboundChange::Enqueue(m) => {
                    sqlx::query(
                        "INSERT INTO outbound_queue (message_id, instance_id, user_id, to_jid, kind, body, \
                         mimetype, file_name, media, metadata, queued_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&m.message_id)
                    .bind(&m.instance_id)
                    .bind(&m.user_id)
                    .bind(m.to.as_str())
                    .bind(m.kind.as_str())
                    .bind(&m.body)
                    .bind(&m.mimetype)
                    .bind(&m.file_name)
                    .bind(m.media.as_deref())
                    .bind(serde_json::to_string(&m.meta).expect("metadata serializes"))
                    .bind(m.queued_at)
                    .execute(conn)
                    .await?;
                }
                OutboundChange::Remove(ids) => {
                    for id in ids {
                        sqlx::query("DELETE FROM outbound_queue WHERE message_id = ?")
                            .bind(&id)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
            }
            Ok(())
        })
    }
}
