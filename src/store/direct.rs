//! A SQLite connection owned by one thread, for the committers that run a
//! batch of statements at a time (the log's writer, the projections).
//!
//! Through sqlx each statement is a round trip to the connection's worker
//! thread, its values copied twice on the way, and a multi-row INSERT is a
//! new statement for every row count. Here a whole batch is one closure run
//! on the connection's thread: statements are prepared once and cached,
//! values are bound straight from the caller's strings, and the batch costs
//! one thread hop. Readers keep using the sqlx pools.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

/// What runs on the connection's thread.
type Job = Box<dyn FnOnce(&mut rusqlite::Connection) + Send>;

/// The handle of a thread that owns one connection; dropping every handle
/// ends the thread and closes the connection.
#[derive(Clone)]
pub struct DirectConnection {
    jobs: mpsc::Sender<Job>,
}

/// Statements a connection keeps prepared.
const STATEMENT_CACHE: usize = 64;

impl DirectConnection {
    /// Opens `path` (which [`super::open_sqlite`] has created, in WAL mode) on
    /// a new thread named `name`, with the pools' settings.
    pub fn open(path: &Path, name: &str) -> anyhow::Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA cache_size = -16000; PRAGMA wal_autocheckpoint = {};",
            super::BACKSTOP_CHECKPOINT_PAGES
        ))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = rx.recv() {
                    // A batch that panics fails alone (its caller sees the
                    // reply dropped; an open transaction rolls back as it
                    // unwinds); the connection serves the next one.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                    if ran.is_err() {
                        tracing::error!(thread = %std::thread::current().name().unwrap_or("?"), "a database batch panicked");
                    }
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the connection's thread and returns what it returns.
    pub async fn run<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the database thread has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the database thread dropped a batch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_that_panics_fails_alone_and_the_connection_serves_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let pool = crate::store::open_sqlite(&path, 1).await.unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let conn = DirectConnection::open(&path, "test-direct").unwrap();

        let panicked = conn
            .run(|conn| {
                let tx = conn.transaction().unwrap();
                tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
                panic!("a bug in a batch")
            })
            .await;
        assert!(panicked.is_err(), "the caller learns that its batch failed");

        conn.run(|conn| conn.execute("INSERT INTO t VALUES (2)", []))
            .await
            .unwrap()
            .unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows, vec![2], "the panicked batch left nothing behind");
    }
}
