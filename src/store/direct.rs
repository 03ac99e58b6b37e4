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
                    job(&mut conn);
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
