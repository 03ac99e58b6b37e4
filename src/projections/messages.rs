//! Message history: every sent (`message_sent`) and received
//! (`message_received`) message per instance and chat, with its status
//! following `message_status` events (sent → delivered → read → played),
//! never backwards. A status whose message is not in the history changes
//! nothing: the supervisor never logs a receipt before its `message_sent`
//! (it holds early receipts, the one place they wait), so such a status is
//! for a message sent outside the gateway. An instance's history is deleted
//! with the instance.
//!
//! Message kinds: a message's extras (reply, mentions, location, contact
//! card, poll) are kept beside it; an edit replaces its content and keeps
//! the original, a revoke marks it deleted, reactions and poll votes attach
//! to their message (each reactor's or voter's latest).

use std::collections::{BTreeMap, HashMap};

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::Projection;
use crate::events::{Event, MessageQueued, MessageReceived, MessageSent, MessageStatus};
use crate::kinds::{MessageExtras, MessageReaction, PollVoted};
use crate::store::{RecordedEvent, SharedEvent};

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
        "queued" => 0,
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "played" => 4,
        // Final: a late receipt does not undo it.
        "failed" => 5,
        _ => -1,
    }
}

/// The status of a message when it is first recorded.
const SENT_STATUS: &str = "sent";
const QUEUED_STATUS: &str = "queued";
const RECEIVED_STATUS: &str = "received";

/// Identifies a message within its instance.
type MessageKey = (String, String, bool);

/// A message about to be written.
struct NewRow {
    position: i64,
    id: String,
    instance_id: String,
    remote_jid: String,
    from_me: bool,
    message_type: String,
    content: String,
    message_id: String,
    has_media: bool,
    status: String,
    rank: i64,
    created_at: i64,
    /// The member who wrote a received group message.
    sender: Option<String>,
}

impl NewRow {
    fn key(&self) -> MessageKey {
        (
            self.instance_id.clone(),
            self.message_id.clone(),
            self.from_me,
        )
    }

    fn raise(&mut self, status: &str, rank: i64) {
        if rank > self.rank {
            self.status = status.to_string();
            self.rank = rank;
        }
    }
}

/// A batch in progress: new messages are buffered and written when the
/// batch is flushed; statuses of buffered messages are applied in memory;
/// statuses of other messages are gathered (the highest per message) and
/// written after the new rows.
#[derive(Default)]
struct BatchState {
    pending: Vec<NewRow>,
    index: HashMap<MessageKey, usize>,
    raises: HashMap<MessageKey, (String, i64)>,
}

impl BatchState {
    /// Buffers a message (once). A status gathered earlier in the batch for
    /// the same message is for the stored row only, as it would have been in
    /// an earlier batch: what is gathered is written first, so a batch's
    /// boundaries never change the outcome (rare: a duplicated event, or a
    /// message sent outside the gateway).
    fn add_message(&mut self, conn: &rusqlite::Connection, row: NewRow) -> anyhow::Result<()> {
        let key = row.key();
        if let Some(&i) = self.index.get(&key) {
            // Queued, then sent in the same batch: the row moves up to `sent`.
            self.pending[i].raise(&row.status, row.rank);
            return Ok(());
        }
        if self.raises.contains_key(&key) {
            self.flush(conn)?;
        }
        self.index.insert(key, self.pending.len());
        self.pending.push(row);
        Ok(())
    }

    /// Applies a status: in memory to a buffered message, else gathered for
    /// the stored one (see [`BatchState::write_raises`]).
    fn apply_status(&mut self, s: &MessageStatus) {
        let status = s.status.as_str();
        let rank = status_rank(status);
        if rank < 0 {
            return;
        }
        let key = (
            s.instance_id.to_string(),
            s.message_id.to_string(),
            s.from_me,
        );
        if let Some(&i) = self.index.get(&key) {
            self.pending[i].raise(status, rank);
            return;
        }
        match self.raises.get_mut(&key) {
            Some(held) if held.1 >= rank => {}
            Some(held) => *held = (status.to_string(), rank),
            None => {
                self.raises.insert(key, (status.to_string(), rank));
            }
        }
    }

    /// Raises the stored messages' statuses gathered in this batch; a
    /// status of a message not in the history changes nothing.
    fn write_raises(&mut self, conn: &rusqlite::Connection) -> anyhow::Result<()> {
        for ((instance, message, from_me), (status, rank)) in self.raises.drain() {
            raise_stored(conn, &instance, &message, from_me, &status, rank)?;
        }
        Ok(())
    }

    /// Writes the buffered messages and adds them to the per-chat totals.
    /// A message already stored (a duplicate event) keeps its row; a higher
    /// status gathered for it is applied to that row.
    fn flush(&mut self, conn: &rusqlite::Connection) -> anyhow::Result<()> {
        let mut chat_counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        let mut insert = conn.prepare_cached(
            "INSERT OR IGNORE INTO messages (position, id, instance_id, remote_jid, from_me, message_type, \
             content, message_id, has_media, status, status_rank, created_at, sender) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for r in &self.pending {
            let inserted = insert.execute(rusqlite::params![
                r.position,
                r.id,
                r.instance_id,
                r.remote_jid,
                r.from_me,
                r.message_type,
                r.content,
                r.message_id,
                r.has_media,
                r.status,
                r.rank,
                r.created_at,
                r.sender,
            ])?;
            if inserted > 0 {
                *chat_counts
                    .entry((r.instance_id.as_str(), r.remote_jid.as_str()))
                    .or_default() += 1;
            } else {
                raise_stored(
                    conn,
                    &r.instance_id,
                    &r.message_id,
                    r.from_me,
                    &r.status,
                    r.rank,
                )?;
            }
        }
        let mut upsert = conn.prepare_cached(
            "INSERT INTO message_chats (instance_id, remote_jid, total) VALUES (?1, ?2, ?3) \
             ON CONFLICT (instance_id, remote_jid) DO UPDATE SET total = total + excluded.total",
        )?;
        for ((instance_id, remote_jid), added) in chat_counts {
            upsert.execute(rusqlite::params![instance_id, remote_jid, added])?;
        }
        self.pending.clear();
        self.index.clear();
        self.write_raises(conn)
    }
}

/// The statement that raises a stored message's status (never lowers it).
const RAISE_STATUS: &str = "UPDATE messages SET status = ?1, status_rank = ?2 \
     WHERE instance_id = ?3 AND message_id = ?4 AND from_me = ?5 AND status_rank < ?2";

/// Raises a stored message's status; whether it changed.
fn raise_stored(
    conn: &rusqlite::Connection,
    instance_id: &str,
    message_id: &str,
    from_me: bool,
    status: &str,
    rank: i64,
) -> anyhow::Result<bool> {
    let changed = conn
        .prepare_cached(RAISE_STATUS)?
        .execute(rusqlite::params![
            status,
            rank,
            instance_id,
            message_id,
            from_me
        ])?;
    Ok(changed > 0)
}

impl NewRow {
    fn sent(e: &RecordedEvent, m: &MessageSent) -> Self {
        Self::new(
            e,
            m.instance_id.to_string(),
            m.to.to_string(),
            true,
            m.message_type.as_str().to_string(),
            m.body.clone(),
            m.message_id.to_string(),
            m.has_media,
        )
    }

    fn queued(e: &RecordedEvent, m: &MessageQueued) -> Self {
        let mut row = Self::new(
            e,
            m.instance_id.to_string(),
            m.to.to_string(),
            true,
            m.message_type.as_str().to_string(),
            m.body.clone(),
            m.message_id.to_string(),
            m.has_media,
        );
        row.status = QUEUED_STATUS.to_string();
        row.rank = status_rank(QUEUED_STATUS);
        row
    }

    fn received(e: &RecordedEvent, m: &MessageReceived) -> Self {
        let mut row = Self::new(
            e,
            m.instance_id.to_string(),
            m.chat.to_string(),
            false,
            m.message_type.clone(),
            m.body.clone(),
            m.message_id.to_string(),
            m.has_media,
        );
        row.sender = m.participant.as_ref().map(|p| p.to_string());
        row
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        e: &RecordedEvent,
        instance_id: String,
        remote_jid: String,
        from_me: bool,
        message_type: String,
        content: String,
        message_id: String,
        has_media: bool,
    ) -> Self {
        let status = if from_me {
            SENT_STATUS
        } else {
            RECEIVED_STATUS
        };
        Self {
            position: e.position,
            id: e.event_id.clone(),
            instance_id,
            remote_jid,
            from_me,
            message_type,
            content,
            message_id,
            has_media,
            status: status.to_string(),
            rank: status_rank(status),
            created_at: e.recorded_ms(),
            sender: None,
        }
    }
}

fn delete_instance(conn: &rusqlite::Connection, instance_id: &str) -> anyhow::Result<()> {
    for sql in [
        "DELETE FROM messages WHERE instance_id = ?1",
        "DELETE FROM message_chats WHERE instance_id = ?1",
        "DELETE FROM message_extras WHERE instance_id = ?1",
        "DELETE FROM message_changes WHERE instance_id = ?1",
        "DELETE FROM message_reactions WHERE instance_id = ?1",
        "DELETE FROM message_poll_votes WHERE instance_id = ?1",
    ] {
        conn.prepare_cached(sql)?.execute([instance_id])?;
    }
    Ok(())
}

/// Keeps a message's extras (nothing when it has none).
fn save_extras(
    conn: &rusqlite::Connection,
    instance_id: &str,
    message_id: &str,
    from_me: bool,
    extras: &MessageExtras,
) -> anyhow::Result<()> {
    if extras.is_empty() {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO message_extras (instance_id, message_id, from_me, extras) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(rusqlite::params![
        instance_id,
        message_id,
        from_me,
        serde_json::to_string(extras)?
    ])?;
    Ok(())
}

/// An edit (`Some(new text)`) or a revoke (`None`) of a stored message: the
/// original is kept once, the content replaced or the message marked deleted.
fn edit(
    conn: &rusqlite::Connection,
    (instance_id, message_id, from_me): (&str, &str, bool),
    text: Option<&str>,
    at: i64,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO message_changes (instance_id, message_id, from_me, original) \
         SELECT instance_id, message_id, from_me, content FROM messages \
         WHERE instance_id = ?1 AND message_id = ?2 AND from_me = ?3",
    )?
    .execute(rusqlite::params![instance_id, message_id, from_me])?;
    let params = rusqlite::params![instance_id, message_id, from_me, at];
    match text {
        Some(text) => {
            conn.prepare_cached(
                "UPDATE message_changes SET edited_at = ?4 \
                 WHERE instance_id = ?1 AND message_id = ?2 AND from_me = ?3",
            )?
            .execute(params)?;
            conn.prepare_cached(
                "UPDATE messages SET content = ?4 \
                 WHERE instance_id = ?1 AND message_id = ?2 AND from_me = ?3",
            )?
            .execute(rusqlite::params![instance_id, message_id, from_me, text])?;
        }
        None => {
            conn.prepare_cached(
                "UPDATE message_changes SET deleted_at = ?4 \
                 WHERE instance_id = ?1 AND message_id = ?2 AND from_me = ?3",
            )?
            .execute(params)?;
        }
    }
    Ok(())
}

/// A reaction attaches to its message (an empty emoji removes the reactor's).
fn react(conn: &rusqlite::Connection, r: &MessageReaction, at: i64) -> anyhow::Result<()> {
    if r.emoji.is_empty() {
        conn.prepare_cached(
            "DELETE FROM message_reactions WHERE instance_id = ?1 AND message_id = ?2 AND reactor = ?3",
        )?
        .execute(rusqlite::params![
            r.instance_id.as_str(),
            r.target_message_id.as_str(),
            r.from.as_str()
        ])?;
    } else {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO message_reactions (instance_id, message_id, reactor, emoji, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(rusqlite::params![
            r.instance_id.as_str(),
            r.target_message_id.as_str(),
            r.from.as_str(),
            r.emoji,
            at
        ])?;
    }
    Ok(())
}

/// A vote replaces the voter's earlier one on its poll (none chosen: withdrawn).
fn vote(conn: &rusqlite::Connection, v: &PollVoted, at: i64) -> anyhow::Result<()> {
    if v.selected_options.is_empty() {
        conn.prepare_cached(
            "DELETE FROM message_poll_votes WHERE instance_id = ?1 AND message_id = ?2 AND voter = ?3",
        )?
        .execute(rusqlite::params![
            v.instance_id.as_str(),
            v.poll_message_id.as_str(),
            v.voter.as_str()
        ])?;
    } else {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO message_poll_votes (instance_id, message_id, voter, options, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(rusqlite::params![
            v.instance_id.as_str(),
            v.poll_message_id.as_str(),
            v.voter.as_str(),
            serde_json::to_string(&v.selected_options)?,
            at
        ])?;
    }
    Ok(())
}

impl Projection for Messages {
    const NAME: &'static str = NAME;
    const SCHEMA: &'static str = include_str!("../../projections/messages/schema.sql");
    const DROP: &'static str = include_str!("../../projections/messages/drop.sql");
    const TABLES: &'static [&'static str] = &[
        "messages",
        "message_chats",
        "message_extras",
        "message_changes",
        "message_reactions",
        "message_poll_votes",
    ];

    fn apply_events(conn: &rusqlite::Connection, events: &[SharedEvent]) -> anyhow::Result<()> {
        let mut batch = BatchState::default();
        for e in events {
            match &e.event {
                Some(Event::MessageSent(m)) => {
                    save_extras(
                        conn,
                        m.instance_id.as_str(),
                        m.message_id.as_str(),
                        true,
                        &m.extras,
                    )?;
                    batch.add_message(conn, NewRow::sent(e, m))?
                }
                Some(Event::MessageReceived(m)) if !m.extras.is_empty() => {
                    save_extras(
                        conn,
                        m.instance_id.as_str(),
                        m.message_id.as_str(),
                        false,
                        &m.extras,
                    )?;
                    batch.add_message(conn, NewRow::received(e, m))?
                }
                Some(Event::MessageEdited(m)) => {
                    batch.flush(conn)?;
                    let key = (m.instance_id.as_str(), m.message_id.as_str(), m.from_me);
                    edit(conn, key, Some(&m.text), e.recorded_ms())?;
                }
                Some(Event::MessageRevoked(m)) => {
                    batch.flush(conn)?;
                    let key = (m.instance_id.as_str(), m.message_id.as_str(), m.from_me);
                    edit(conn, key, None, e.recorded_ms())?;
                }
                Some(Event::MessageReaction(r)) => react(conn, r, e.recorded_ms())?,
                Some(Event::PollVoted(v)) => vote(conn, v, e.recorded_ms())?,
                Some(Event::MessageQueued(m)) => batch.add_message(conn, NewRow::queued(e, m))?,
                Some(Event::MessageReceived(m)) => {
                    batch.add_message(conn, NewRow::received(e, m))?
                }
                Some(Event::MessageStatus(s)) => batch.apply_status(s),
                Some(Event::InstanceDeleted(d)) => {
                    // What the batch gathered so far lands before the rows go.
                    batch.flush(conn)?;
                    delete_instance(conn, d.instance_id.as_str())?;
                }
                _ => {}
            }
        }
        batch.flush(conn)
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
    /// The member who wrote a received group message.
    pub sender: Option<String>,
}

/// Adds the columns newer versions have to a table an older version
/// created (`CREATE TABLE IF NOT EXISTS` leaves an existing table as it is).
pub async fn ensure_columns(views: &SqlitePool) -> Result<(), sqlx::Error> {
    let has_sender: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'sender'",
    )
    .fetch_one(views)
    .await?;
    if has_sender == 0 {
        sqlx::query("ALTER TABLE messages ADD COLUMN sender TEXT")
            .execute(views)
            .await?;
    }
    Ok(())
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
         status, created_at, sender FROM messages",
    );
    push_filters(&mut select, q);
    super::push_newest_first(&mut select, q.limit, q.skip);
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
                sender: r.try_get("sender")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((messages, total))
}

/// What the history shows of a message beyond its row: extras, edit and
/// delete marks, reactions, poll votes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageDetails {
    pub extras: MessageExtras,
    /// The text before the first edit or delete.
    pub original: Option<String>,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
    /// `(reactor, emoji)`, oldest first.
    pub reactions: Vec<(String, String)>,
    /// `(voter, options chosen)`, oldest first.
    pub votes: Vec<(String, Vec<String>)>,
}

/// The details of a page of the history, in the page's order: four
/// queries for the whole page (extras, edits and deletes, reactions, poll
/// votes), each over the page's message ids, not four per message.
pub async fn details(
    views: &SqlitePool,
    instance_id: &str,
    page: &[StoredMessage],
) -> Result<Vec<MessageDetails>, sqlx::Error> {
    use std::collections::HashMap;
    let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
    if page.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = page.iter().map(|m| m.message_id.as_str()).collect();
    let ids = serde_json::to_string(&ids).map_err(decode)?;
    // Each query takes the page's message ids as one JSON array parameter.
    let extras: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT message_id, from_me, extras FROM message_extras \
         WHERE instance_id = ? AND message_id IN (SELECT value FROM json_each(?))",
    )
    .bind(instance_id)
    .bind(&ids)
    .fetch_all(views)
    .await?;
    let mut extras: HashMap<(String, bool), MessageExtras> = extras
        .into_iter()
        .map(|(id, from_me, json)| Ok(((id, from_me), serde_json::from_str(&json)?)))
        .collect::<Result<_, serde_json::Error>>()
        .map_err(decode)?;

    /// The original text, edited at, deleted at.
    type Change = (String, Option<i64>, Option<i64>);
    type ChangeRow = (String, bool, String, Option<i64>, Option<i64>);
    let changes: Vec<ChangeRow> = sqlx::query_as(
        "SELECT message_id, from_me, original, edited_at, deleted_at FROM message_changes \
         WHERE instance_id = ? AND message_id IN (SELECT value FROM json_each(?))",
    )
    .bind(instance_id)
    .bind(&ids)
    .fetch_all(views)
    .await?;
    let mut changes: HashMap<(String, bool), Change> = changes
        .into_iter()
        .map(|(id, from_me, original, edited, deleted)| {
            ((id, from_me), (original, edited, deleted))
        })
        .collect();

    let reactions: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT message_id, reactor, emoji FROM message_reactions \
         WHERE instance_id = ? AND message_id IN (SELECT value FROM json_each(?)) \
         ORDER BY created_at, reactor",
    )
    .bind(instance_id)
    .bind(&ids)
    .fetch_all(views)
    .await?;
    let mut reactions_of: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (id, reactor, emoji) in reactions {
        reactions_of.entry(id).or_default().push((reactor, emoji));
    }

    let votes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT message_id, voter, options FROM message_poll_votes \
         WHERE instance_id = ? AND message_id IN (SELECT value FROM json_each(?)) \
         ORDER BY created_at, voter",
    )
    .bind(instance_id)
    .bind(&ids)
    .fetch_all(views)
    .await?;
    let mut votes_of: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    for (id, voter, options) in votes {
        let chosen = serde_json::from_str(&options).map_err(decode)?;
        votes_of.entry(id).or_default().push((voter, chosen));
    }

    Ok(page
        .iter()
        .map(|m| {
            let key = (m.message_id.clone(), m.from_me);
            let extras = extras.remove(&key).unwrap_or_default();
            let (original, edited_at, deleted_at) = match changes.remove(&key) {
                Some((o, e, d)) => (Some(o), e, d),
                None => (None, None, None),
            };
            let votes = if extras.poll.is_some() {
                votes_of.get(&m.message_id).cloned().unwrap_or_default()
            } else {
                Vec::new()
            };
            MessageDetails {
                extras,
                original,
                edited_at,
                deleted_at,
                reactions: reactions_of.get(&m.message_id).cloned().unwrap_or_default(),
                votes,
            }
        })
        .collect())
}

/// The ids of a chat's last received messages, newest first (for "mark the chat read").
pub async fn last_received(
    views: &SqlitePool,
    instance_id: &str,
    chat: &str,
    limit: i64,
) -> Result<Vec<crate::ids::MessageId>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT message_id FROM messages WHERE instance_id = ? AND remote_jid = ? AND from_me = 0 \
         ORDER BY created_at DESC, position DESC LIMIT ?",
    )
    .bind(instance_id)
    .bind(chat)
    .bind(limit)
    .fetch_all(views)
    .await?;
    Ok(ids
        .into_iter()
        .map(crate::ids::MessageId::from_stored)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections::testing::{indexes_after_upgrade, plan_of};

    #[tokio::test]
    async fn an_older_history_trades_its_index_by_instance_for_one_led_by_the_message_id() {
        // Given a views database of an older version, with its status index
        // led by the instance, when the schema is applied at start-up
        let (views, indexes) = indexes_after_upgrade(
            "CREATE TABLE messages (position INTEGER PRIMARY KEY, id TEXT NOT NULL, \
             instance_id TEXT NOT NULL, remote_jid TEXT NOT NULL, from_me INTEGER NOT NULL, \
             message_type TEXT NOT NULL, content TEXT NOT NULL, message_id TEXT NOT NULL, \
             has_media INTEGER NOT NULL, status TEXT NOT NULL, status_rank INTEGER NOT NULL, \
             created_at INTEGER NOT NULL); \
             CREATE UNIQUE INDEX messages_by_id ON messages (instance_id, message_id, from_me);",
            Messages::SCHEMA,
            "messages",
        )
        .await;
        // Then the old index is gone, and a status finds its message by the new one
        assert_eq!(
            indexes,
            [
                "messages_by_chat",
                "messages_by_message_id",
                "messages_waiting"
            ]
        );
        let explain = format!("EXPLAIN QUERY PLAN {RAISE_STATUS}");
        let plan = plan_of(&views, sqlx::query(sqlx::AssertSqlSafe(explain))).await;
        assert!(plan.contains("messages_by_message_id"), "{plan}");
    }
}
