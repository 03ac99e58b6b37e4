//! Helpers of the projections' unit tests: a private database, a schema
//! applied over an older version's tables, and what SQLite plans.

use sqlx::{Row, SqlitePool};

/// A pool on a private, empty in-memory database.
pub async fn empty_views() -> SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap()
}

/// The indexes `table` has after an older version's `older` DDL and then
/// today's `schema` ran on one database (as at a start-up after upgrading).
pub async fn indexes_after_upgrade(
    older: &'static str,
    schema: &'static str,
    table: &str,
) -> (SqlitePool, Vec<String>) {
    let views = empty_views().await;
    sqlx::raw_sql(older).execute(&views).await.unwrap();
    sqlx::raw_sql(schema).execute(&views).await.unwrap();
    let indexes = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? \
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .bind(table)
    .fetch_all(&views)
    .await
    .unwrap();
    (views, indexes)
}

/// The plan SQLite picks for `query` (an `EXPLAIN QUERY PLAN …`), its
/// steps joined with `; `.
pub async fn plan_of(
    views: &SqlitePool,
    query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
) -> String {
    let rows = query.fetch_all(views).await.unwrap();
    rows.iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("; ")
}
