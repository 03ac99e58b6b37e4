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

/// Actions an instance logs about as often as it sends or receives messages
/// (a send alone logs `message_sent` and three `message_status`). They are
/// left out of the index by action (`activity_rare`): each would cost every
/// message one more index entry, on a page of its own for each instance. A
/// filter on them reads the page index instead, which carries the action.
pub const FREQUENT: &[&str] = &[
    "message_sent",
    "message_received",
    "message_status",
    "message_queued",
    "webhook_delivered",
    "webhook_failed",
    "chat_presence",
];

/// The condition of the `activity_rare` index, word for word as in
/// `schema.sql`: SQLite uses a partial index only for a query that states
/// its condition.
const RARE_CONDITION: &str = "action <> 'message_sent' AND action <> 'message_received' \
     AND action <> 'message_status' AND action <> 'message_queued' AND action <> 'webhook_delivered' \
     AND action <> 'webhook_failed' AND action <> 'chat_presence'";

/// Whether a page is filtered on rare actions only (it then reads the
/// `activity_rare` index).
fn rare_only(q: &ActivityQuery) -> bool {
    !q.actions.is_empty() && q.actions.iter().all(|a| !FREQUENT.contains(&a.as_str()))
}

/// The table a page reads, with the index it must read it through: the
/// planner, without statistics, would rather walk the page index than
/// search the partial one.
fn source(q: &ActivityQuery) -> &'static str {
    if rare_only(q) {
        "activity_log INDEXED BY activity_rare"
    } else {
        "activity_log"
    }
}

/// Everything after `FROM <source>`: the instance, the actions and the period.
fn push_filters(qb: &mut QueryBuilder<Sqlite>, q: &ActivityQuery) {
    qb.push(" WHERE instance_id = ")
        .push_bind(q.instance_id.clone());
    if rare_only(q) {
        qb.push(" AND ").push(RARE_CONDITION);
    }
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

/// The query of a page, after `prefix` (`EXPLAIN QUERY PLAN ` in tests).
fn select_page(q: &ActivityQuery, prefix: &str) -> QueryBuilder<Sqlite> {
    let mut select = QueryBuilder::new(format!(
        "{prefix}SELECT id, instance_id, action, details, created_at FROM {}",
        source(q)
    ));
    push_filters(&mut select, q);
    super::push_newest_first(&mut select, q.limit, q.skip);
    select
}

/// A page of an instance's log, newest first, and the total matching.
pub async fn page(
    views: &SqlitePool,
    q: &ActivityQuery,
) -> Result<(Vec<ActivityEntry>, i64), sqlx::Error> {
    let mut count = QueryBuilder::new(format!("SELECT COUNT(*) FROM {}", source(q)));
    push_filters(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(views).await?;

    let rows = select_page(q, "").build().fetch_all(views).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections::testing::{empty_views, indexes_after_upgrade, plan_of};

    /// A pool on a private in-memory database with the projection's schema.
    async fn views() -> SqlitePool {
        let pool = empty_views().await;
        sqlx::raw_sql(Activity::SCHEMA)
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    /// The plan SQLite picks for a page filtered by `actions`.
    async fn plan(views: &SqlitePool, actions: &[&str]) -> String {
        let q = ActivityQuery {
            instance_id: "i".into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            limit: 50,
            ..ActivityQuery::default()
        };
        plan_of(views, select_page(&q, "EXPLAIN QUERY PLAN ").build()).await
    }

    #[tokio::test]
    async fn an_older_log_loses_its_full_index_by_action_when_the_gateway_starts() {
        // Given a views database of an older version, with both old indexes,
        // when the schema is applied at start-up
        let (_, indexes) = indexes_after_upgrade(
            "CREATE TABLE activity_log (position INTEGER PRIMARY KEY, id TEXT NOT NULL, \
             instance_id TEXT NOT NULL, action TEXT NOT NULL, details TEXT NOT NULL, \
             created_at INTEGER NOT NULL); \
             CREATE INDEX activity_by_instance ON activity_log (instance_id, created_at, position); \
             CREATE INDEX activity_by_action ON activity_log (instance_id, action, created_at, position);",
            Activity::SCHEMA,
            "activity_log",
        )
        .await;
        // Then only the page index and the partial index by action remain
        assert_eq!(indexes, ["activity_pages", "activity_rare"]);
    }

    #[test]
    fn the_rare_condition_is_the_frequent_list_and_the_schemas_index_condition() {
        // Given the frequent actions
        let listed: Vec<String> = FREQUENT
            .iter()
            .map(|a| format!("action <> '{a}'"))
            .collect();
        // Then the condition leaves out each of them, as the schema's index does
        assert_eq!(RARE_CONDITION, listed.join(" AND "));
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words(Activity::SCHEMA).contains(&format!("WHERE {RARE_CONDITION};")));
        assert!(FREQUENT.iter().all(|a| is_action(a)), "{FREQUENT:?}");
    }

    #[tokio::test]
    async fn pages_of_rare_actions_read_the_index_by_action() {
        // Given the activity schema
        let views = views().await;
        // When a page is filtered by actions that are not frequent
        let one = plan(&views, &["connection_opened"]).await;
        let two = plan(&views, &["qr_received", "logged_out"]).await;
        // Then it searches the partial index by action
        assert!(one.contains("activity_rare"), "{one}");
        assert!(two.contains("activity_rare"), "{two}");
    }

    #[tokio::test]
    async fn other_pages_read_the_page_index() {
        // Given the activity schema
        let views = views().await;
        // When a page is unfiltered, or its filter names a frequent action
        for actions in [
            &[][..],
            &["message_status"],
            &["message_sent", "connection_opened"],
        ] {
            let plan = plan(&views, actions).await;
            // Then it reads the page index, newest first, without sorting
            assert!(plan.contains("activity_pages"), "{actions:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{actions:?}: {plan}");
        }
    }
}
