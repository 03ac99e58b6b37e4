//! Usage statistics: counters per instance per UTC day of the recorded time.
//!
//! - `message_sent`: messagesSent + 1; with media also mediaSent + 1 and the
//!   media size added to the media bytes.
//! - `message_received`: messagesReceived + 1; with media mediaReceived + 1
//!   and its size.
//! - `api_called`: apiCalls + 1, on the instance when the route named one the
//!   caller may use, else on the caller with no instance.
//! - `webhook_delivered`: webhookSent + 1.
//! - `message_sent` / `message_received` also count per kind
//!   ([`crate::kinds::stats_kind`]) and direction in `usage_daily_kinds`;
//!   reactions, edits, revokes and poll votes are not messages.
//!
//! A batch is aggregated in memory and written as one upsert per
//! (instance, day). Counters outlive their instance (usage happened).

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Row, SqlitePool};

use super::{Projection, day_of};
use crate::events::Event;
use crate::store::{RecordedEvent, SharedEvent};

/// The projection's name.
pub const NAME: &str = "stats";

/// The usage statistics projection.
pub struct Stats;

/// The counters of a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub messages_sent: i64,
    pub messages_received: i64,
    pub media_sent: i64,
    pub media_received: i64,
    pub media_bytes: i64,
    pub api_calls: i64,
    pub webhook_sent: i64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.messages_sent += o.messages_sent;
        self.messages_received += o.messages_received;
        self.media_sent += o.media_sent;
        self.media_received += o.media_received;
        self.media_bytes += o.media_bytes;
        self.api_calls += o.api_calls;
        self.webhook_sent += o.webhook_sent;
    }
}

/// Key of a counter row: instance ('' for calls without one), owner, day.
type Key = (String, String, String);

/// Key of a per-kind counter: instance, day, direction, kind.
type KindKey = (String, String, &'static str, &'static str);

#[derive(Default)]
struct Batch {
    counters: BTreeMap<Key, Usage>,
    user_days: BTreeSet<(String, String)>,
    kinds: BTreeMap<KindKey, i64>,
}

impl Batch {
    fn bump(&mut self, instance: &str, user: &str, day: &str) -> &mut Usage {
        self.counters
            .entry((instance.to_string(), user.to_string(), day.to_string()))
            .or_default()
    }

    fn count_kind(&mut self, instance: &str, day: &str, direction: &'static str, kind: &str) {
        *self
            .kinds
            .entry((
                instance.to_string(),
                day.to_string(),
                direction,
                crate::kinds::stats_kind(kind),
            ))
            .or_default() += 1;
    }

    fn active(&mut self, user: &str, day: &str) {
        if !user.is_empty() {
            self.user_days.insert((user.to_string(), day.to_string()));
        }
    }

    fn add(&mut self, e: &RecordedEvent) {
        let owner = e.user_id.as_deref().unwrap_or_default();
        match &e.event {
            Some(Event::MessageSent(m)) => {
                let day = day_of(e);
                self.count_kind(
                    m.instance_id.as_str(),
                    &day,
                    "sent",
                    m.message_type.as_str(),
                );
                let u = self.bump(m.instance_id.as_str(), owner, &day);
                u.messages_sent += 1;
                if let Some(media) = &m.media {
                    u.media_sent += 1;
                    u.media_bytes += media.size as i64;
                }
                self.active(owner, &day);
            }
            Some(Event::MessageReceived(m)) => {
                let day = day_of(e);
                self.count_kind(m.instance_id.as_str(), &day, "received", &m.message_type);
                let u = self.bump(m.instance_id.as_str(), owner, &day);
                u.messages_received += 1;
                if let Some(media) = &m.media {
                    u.media_received += 1;
                    u.media_bytes += media.size as i64;
                }
                self.active(owner, &day);
            }
            Some(Event::ApiCalled(c)) => {
                let day = day_of(e);
                match e.instance_id.as_deref() {
                    Some(instance) => {
                        let owner = if owner.is_empty() {
                            c.user_id.as_str()
                        } else {
                            owner
                        };
                        self.bump(instance, owner, &day).api_calls += 1;
                    }
                    None => self.bump("", c.user_id.as_str(), &day).api_calls += 1,
                }
                self.active(c.user_id.as_str(), &day);
            }
            Some(Event::WebhookDelivered(_)) => {
                if let Some(instance) = e.instance_id.as_deref() {
                    self.bump(instance, owner, &day_of(e)).webhook_sent += 1;
                }
            }
            _ => {}
        }
    }
}

impl Projection for Stats {
    const NAME: &'static str = NAME;
    const SCHEMA: &'static str = include_str!("../../projections/stats/schema.sql");
    const DROP: &'static str = include_str!("../../projections/stats/drop.sql");
    const TABLES: &'static [&'static str] =
        &["usage_daily", "usage_user_days", "usage_daily_kinds"];

    fn apply_events(conn: &rusqlite::Connection, events: &[SharedEvent]) -> anyhow::Result<()> {
        let mut batch = Batch::default();
        for e in events {
            batch.add(e);
        }
        let mut upsert = conn.prepare_cached(
            "INSERT INTO usage_daily (instance_id, user_id, day, messages_sent, messages_received, \
             media_sent, media_received, media_bytes, api_calls, webhook_sent) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (instance_id, day, user_id) DO UPDATE SET \
             messages_sent = messages_sent + excluded.messages_sent, \
             messages_received = messages_received + excluded.messages_received, \
             media_sent = media_sent + excluded.media_sent, \
             media_received = media_received + excluded.media_received, \
             media_bytes = media_bytes + excluded.media_bytes, \
             api_calls = api_calls + excluded.api_calls, \
             webhook_sent = webhook_sent + excluded.webhook_sent",
        )?;
        for ((instance, user, day), u) in &batch.counters {
            upsert.execute(rusqlite::params![
                instance,
                user,
                day,
                u.messages_sent,
                u.messages_received,
                u.media_sent,
                u.media_received,
                u.media_bytes,
                u.api_calls,
                u.webhook_sent,
            ])?;
        }
        let mut insert = conn.prepare_cached(
            "INSERT OR IGNORE INTO usage_user_days (user_id, day) VALUES (?1, ?2)",
        )?;
        for (user, day) in &batch.user_days {
            insert.execute(rusqlite::params![user, day])?;
        }
        let mut kinds = conn.prepare_cached(
            "INSERT INTO usage_daily_kinds (instance_id, day, direction, kind, count) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (instance_id, day, direction, kind) \
             DO UPDATE SET count = count + excluded.count",
        )?;
        for ((instance, day, direction, kind), n) in &batch.kinds {
            kinds.execute(rusqlite::params![instance, day, direction, kind, n])?;
        }
        Ok(())
    }
}

const SUMS: &str = "COALESCE(SUM(messages_sent), 0), COALESCE(SUM(messages_received), 0), \
    COALESCE(SUM(media_sent), 0), COALESCE(SUM(media_received), 0), COALESCE(SUM(media_bytes), 0), \
    COALESCE(SUM(api_calls), 0), COALESCE(SUM(webhook_sent), 0)";

fn usage_at(row: &sqlx::sqlite::SqliteRow, first: usize) -> Result<Usage, sqlx::Error> {
    Ok(Usage {
        messages_sent: row.try_get(first)?,
        messages_received: row.try_get(first + 1)?,
        media_sent: row.try_get(first + 2)?,
        media_received: row.try_get(first + 3)?,
        media_bytes: row.try_get(first + 4)?,
        api_calls: row.try_get(first + 5)?,
        webhook_sent: row.try_get(first + 6)?,
    })
}

/// Counters of one instance per day from `since` (`YYYY-MM-DD`, inclusive;
/// `None` = all), in day order.
pub async fn instance_daily(
    views: &SqlitePool,
    instance_id: &str,
    since: Option<&str>,
) -> Result<Vec<(String, Usage)>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT day, {SUMS} FROM usage_daily WHERE instance_id = ? AND day >= ? GROUP BY day ORDER BY day"
    )))
    .bind(instance_id)
    .bind(since.unwrap_or(""))
    .fetch_all(views)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("day")?, usage_at(r, 1)?)))
        .collect()
}

/// A user's counters from `since` per instance (`""` = API calls without an
/// instance), including instances since deleted.
pub async fn user_by_instance(
    views: &SqlitePool,
    user_id: &str,
    since: Option<&str>,
) -> Result<BTreeMap<String, Usage>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT instance_id, {SUMS} FROM usage_daily WHERE user_id = ? AND day >= ? GROUP BY instance_id"
    )))
    .bind(user_id)
    .bind(since.unwrap_or(""))
    .fetch_all(views)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("instance_id")?, usage_at(r, 1)?)))
        .collect()
}

/// Every counter of the system from `since`.
pub async fn system(views: &SqlitePool, since: Option<&str>) -> Result<Usage, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SUMS} FROM usage_daily WHERE day >= ?"
    )))
    .bind(since.unwrap_or(""))
    .fetch_one(views)
    .await?;
    usage_at(&row, 0)
}

/// One instance's messages per direction (`sent`, `received`) and kind from
/// `since` (`YYYY-MM-DD`, inclusive; `None` = all).
pub async fn instance_kinds(
    views: &SqlitePool,
    instance_id: &str,
    since: Option<&str>,
) -> Result<BTreeMap<(String, String), i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT direction, kind, SUM(count) AS n FROM usage_daily_kinds \
         WHERE instance_id = ? AND day >= ? GROUP BY direction, kind",
    )
    .bind(instance_id)
    .bind(since.unwrap_or(""))
    .fetch_all(views)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                (r.try_get("direction")?, r.try_get("kind")?),
                r.try_get("n")?,
            ))
        })
        .collect()
}

/// How many users were active on or after `since`.
pub async fn active_users(views: &SqlitePool, since: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(DISTINCT user_id) FROM usage_user_days WHERE day >= ?")
        .bind(since)
        .fetch_one(views)
        .await
}

/// Sums counters.
pub fn total<'a>(items: impl IntoIterator<Item = &'a Usage>) -> Usage {
    let mut t = Usage::default();
    for u in items {
        t.add(u);
    }
    t
}
