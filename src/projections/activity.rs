//! The activity log: every event of an instance becomes an entry
//! `{id, instanceId, action, details, createdAt}`, except `api_called`
//! (one per API request: it would drown the log; the statistics count them).

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::Projection;
use crate::events::Event;
use crate::store::{EventData, SharedEvent};

/// The projection's name.
pub const NAME: &str = "activity";

/// Event types that never become activity entries.
pub const EXCLUDED: &[&str] = &["api_called"];

/// Payload fields left out of `details`: the instance id (already a field of
/// the entry), the QR code and the pairing code (short-lived pairing credentials).
const HIDDEN_FIELDS: &[&str] = &["instanceId", "qrCode", "pairCode"];

/// The activity log projection.
pub struct Activity;

/// Whether `action` can appear in the log (an instance event type, not excluded).
pub fn is_action(action: &str) -> bool {
    Event::TYPES.contains(&action) && !EXCLUDED.contains(&action) && !USER_ONLY.contains(&action)
}

/// Event types that belong to users, never to an instance.
const USER_ONLY: &[&str] = &[
    "user_registered",
    "user_logged_in",
    "login_failed",
    "rate_limit_set",
    "api_key_rotated",
    "password_changed",
];

/// Every action the log can hold, for error messages and documentation.
pub fn actions() -> Vec<&'static str> {
    Event::TYPES
        .iter()
        .copied()
        .filter(|t| is_action(t))
        .collect()
}

/// The entry's `details`: the stored payload without [`HIDDEN_FIELDS`],
/// its values copied as they are written (keys in sorted order).
fn details(data: &EventData) -> String {
    let Ok(map) = serde_json::from_str::<BTreeMap<String, &RawValue>>(data.text()) else {
        return "{}".to_string();
    };
    let mut out = String::with_capacity(data.text().len());
    out.push('{');
    for (k, v) in map
        .iter()
        .filter(|(k, _)| !HIDDEN_FIELDS.contains(&k.as_str()))
    {
        if out.len() > 1 {
            out.push(',');
        }
        // A JSON string always serializes.
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        out.push_str(v.get());
    }
    out.push('}');
    out
}

impl Projection for Activity {
    const NAME: &'static str = NAME;
    const SCHEMA: &'static str = include_str!("../../projections/activity/schema.sql");
    const DROP: &'static str = include_str!("../../projections/activity/drop.sql");
    const TABLES: &'static [&'static str] = &["activity_log"];

    fn apply_events(conn: &rusqlite::Connection, events: &[SharedEvent]) -> anyhow::Result<()> {
        let mut insert = conn.prepare_cached(
            "INSERT OR IGNORE INTO activity_log (position, id, instance_id, action, details, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for e in events {
            if EXCLUDED.contains(&e.event_type.as_str()) {
                continue;
            }
            let Some(instance_id) = e.instance_id.as_deref() else {
                continue;
            };
            insert.execute(rusqlite::params![
                e.position,
                e.event_id,
                instance_id,
                e.event_type,
                details(&e.data),
                e.recorded_ms(),
            ])?;
        }
        Ok(())
    }
}

/// What a page of the log is asked for.
#[derive(Debug, Clone, Default)]
pub struct ActivityQuery {
    pub instance_id: String,
    /// Only these actions (all when empty).
    pub actions: Vec<String>,
    /// Inclusive bounds, unix milliseconds.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub limit: i64,
    pub skip: i64,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEntry {
    pub id: String,
    pub instance_id: String,
    pub action: String,
    pub details: Value,
    pub created_at: i64,
}

fn push_filters(qb: &mut QueryBuilder<Sqlite>, q: &ActivityQuery) {
    qb.push(" WHERE instance_id = ")
        .push_bind(q.instance_id.clone());
    if !q.actions.is_empty() {
        qb.push(" AND action IN (");
        let mut list = qb.separated(", ");
        for a in &q.actions {
            list.push_bind(a.clone());
        }
        qb.push(")");
    }
    if let Some(start) = q.start_ms {
        qb.push(" AND created_at >= ").push_bind(start);
    }
    if let Some(end) = q.end_ms {
        qb.push(" AND created_at <= ").push_bind(end);
    }
}

/// A page of an instance's log, newest first, and the total matching.
pub async fn page(
    views: &SqlitePool,
    q: &ActivityQuery,
) -> Result<(Vec<ActivityEntry>, i64), sqlx::Error> {
    let mut count = QueryBuilder::new("SELECT COUNT(*) FROM activity_log");
    push_filters(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(views).await?;

    let mut select =
        QueryBuilder::new("SELECT id, instance_id, action, details, created_at FROM activity_log");
    push_filters(&mut select, q);
    select
        .push(" ORDER BY created_at DESC, position DESC LIMIT ")
        .push_bind(q.limit)
        .push(" OFFSET ")
        .push_bind(q.skip);
    let rows = select.build().fetch_all(views).await?;
    let entries = rows
        .iter()
        .map(|r| {
            let details: String = r.try_get("details")?;
            Ok(ActivityEntry {
                id: r.try_get("id")?,
                instance_id: r.try_get("instance_id")?,
                action: r.try_get("action")?,
                details: serde_json::from_str(&details).unwrap_or(Value::Null),
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((entries, total))
}
