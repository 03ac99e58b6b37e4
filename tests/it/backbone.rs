//! The consumer conformance suite: the same cases against the embedded
//! backbone (tail the SQLite log) and the NATS backbone (durable pull
//! consumer of the stream the relay fills, on a real nats-server).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::bail;
use async_trait::async_trait;
use sqlx::SqlitePool;
use tempfile::TempDir;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wa_gateway::backbone::nats::{NatsBackbone, NatsSettings};
use wa_gateway::backbone::{
    Backbone, Consumer, ensure_checkpoint_table, load_checkpoint, save_checkpoint,
};
use wa_gateway::events::InstanceDeleted;
use wa_gateway::relay::Relay;
use wa_gateway::store::{Append, EventStore, ExpectedVersion, SharedEvent, StreamId, open_sqlite};

use crate::nats_server::NatsServer;

const WAIT: Duration = Duration::from_secs(20);

/// A consumer with its own table: one row per applied event, in apply order.
struct TestConsumer {
    pool: SqlitePool,
    checkpoint: watch::Sender<i64>,
    /// Fail this many applies (before touching the database).
    fail_next: AtomicU32,
    /// After the next commit: signal `committed` and never return (a crash before the ack).
    hang_after_commit: AtomicBool,
    committed: Notify,
    /// Events handed to `apply` at or below the checkpoint (redeliveries).
    skipped: watch::Sender<u64>,
}

impl TestConsumer {
    async fn open(path: &std::path::Path) -> Arc<Self> {
        let pool = open_sqlite(path, 2).await.unwrap();
        ensure_checkpoint_table(&pool).await.unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS applied (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             position INTEGER NOT NULL UNIQUE, event_id TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let cp = load_checkpoint(&pool, "conformance").await.unwrap();
        Arc::new(Self {
            pool,
            checkpoint: watch::Sender::new(cp),
            fail_next: AtomicU32::new(0),
            hang_after_commit: AtomicBool::new(false),
            committed: Notify::new(),
            skipped: watch::Sender::new(0),
        })
    }

    /// Positions in the order they were applied.
    async fn applied(&self) -> Vec<i64> {
        sqlx::query_scalar("SELECT position FROM applied ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    async fn wait_for_checkpoint(&self, position: i64) {
        let mut rx = self.checkpoint.subscribe();
        tokio::time::timeout(WAIT, rx.wait_for(|p| *p >= position))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the consumer did not reach {position} within {WAIT:?} (at {})",
                    *self.checkpoint.borrow()
                )
            })
            .unwrap();
    }
}

#[async_trait]
impl Consumer for TestConsumer {
    fn name(&self) -> &'static str {
        "conformance"
    }

    async fn checkpoint(&self) -> anyhow::Result<i64> {
        Ok(load_checkpoint(&self.pool, self.name()).await?)
    }

    async fn apply(&self, events: &[SharedEvent]) -> anyhow::Result<()> {
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            bail!("injected failure");
        }
        let mut tx = self.pool.begin().await?;
        let cp = load_checkpoint(&mut *tx, self.name()).await?;
        let mut last = cp;
        for e in events {
            if e.position <= cp {
                self.skipped.send_modify(|n| *n += 1);
                continue;
            }
            sqlx::query("INSERT INTO applied (position, event_id) VALUES (?, ?)")
                .bind(e.position)
                .bind(&e.event_id)
                .execute(&mut *tx)
                .await?;
            last = e.position;
        }
        save_checkpoint(&mut tx, self.name(), last).await?;
        tx.commit().await?;
        self.checkpoint.send_replace(last);
        if self.hang_after_commit.swap(false, Ordering::SeqCst) {
            self.committed.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Embedded,
    Nats,
}

/// A store, a backbone of one kind (with its nats-server and relay), a temp dir.
struct Harness {
    dir: TempDir,
    store: EventStore,
    backbone: Backbone,
    shutdown: CancellationToken,
    _nats: Option<NatsServer>,
    _relay: Option<JoinHandle<()>>,
}

impl Harness {
    async fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(&dir.path().join("events.db"))
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        match kind {
            Kind::Embedded => Self {
                backbone: Backbone::Embedded(store.clone()),
                dir,
                store,
                shutdown,
                _nats: None,
                _relay: None,
            },
            Kind::Nats => {
                let server = NatsServer::start().await;
                let nats = NatsBackbone::connect(&NatsSettings {
                    url: server.url(),
                    stream: "WA_CONFORMANCE".into(),
                    subject_prefix: "wa".into(),
                    startup_timeout: Duration::from_secs(10),
                    ack_wait: Some(Duration::from_secs(1)),
                })
                .await
                .unwrap();
                let relay = tokio::spawn(
                    Relay::new(store.clone(), nats.clone()).run(shutdown.child_token()),
                );
                Self {
                    backbone: Backbone::Nats(nats, store.clone()),
                    dir,
                    store,
                    shutdown,
                    _nats: Some(server),
                    _relay: Some(relay),
                }
            }
        }
    }

    async fn consumer(&self) -> Arc<TestConsumer> {
        TestConsumer::open(&self.dir.path().join("views.db")).await
    }

    fn run(&self, consumer: Arc<TestConsumer>) -> (CancellationToken, JoinHandle<()>) {
        let token = self.shutdown.child_token();
        let handle = self.backbone.spawn_consumer(consumer, token.clone());
        (token, handle)
    }

    /// Appends `n` events over three users' streams; returns the head.
    async fn append(&self, n: usize) -> i64 {
        let mut left = n;
        let mut round = 0usize;
        while left > 0 {
            let take = left.min(25);
            let user = format!("user-{}", round % 3);
            let mut append = Append::to(
                StreamId::named(format!("conf-{user}")),
                ExpectedVersion::Any,
            )
            .scope(Some(&user), Some(&format!("inst-{}", round % 3)));
            for i in 0..take {
                append = append.event(InstanceDeleted {
                    instance_id: format!("i-{round}-{i}").into(),
                    user_id: user.as_str().into(),
                });
            }
            self.store.append(append).await.unwrap();
            left -= take;
            round += 1;
        }
        self.store.head()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn one_to(n: i64) -> Vec<i64> {
    (1..=n).collect()
}

async fn applies_every_event_once_in_log_order(kind: Kind) {
    let h = Harness::new(kind).await;
    h.append(120).await;
    let consumer = h.consumer().await;
    let _run = h.run(consumer.clone());
    let head = h.append(380).await;
    consumer.wait_for_checkpoint(head).await;
    assert_eq!(consumer.applied().await, one_to(head), "{kind:?}");
}

async fn resumes_from_its_checkpoint_after_a_restart(kind: Kind) {
    let h = Harness::new(kind).await;
    let first = h.append(100).await;
    let consumer = h.consumer().await;
    let (token, handle) = h.run(consumer.clone());
    consumer.wait_for_checkpoint(first).await;
    token.cancel();
    handle.await.unwrap();

    let head = h.append(100).await;
    let consumer = h.consumer().await;
    let _run = h.run(consumer.clone());
    consumer.wait_for_checkpoint(head).await;
    assert_eq!(consumer.applied().await, one_to(head), "{kind:?}");
}

async fn retries_a_failed_apply_without_skipping_or_reordering(kind: Kind) {
    let h = Harness::new(kind).await;
    h.append(50).await;
    let consumer = h.consumer().await;
    consumer.fail_next.store(3, Ordering::SeqCst);
    let _run = h.run(consumer.clone());
    let head = h.append(250).await;
    consumer.wait_for_checkpoint(head).await;
    assert_eq!(consumer.fail_next.load(Ordering::SeqCst), 0);
    assert_eq!(consumer.applied().await, one_to(head), "{kind:?}");
}

async fn a_crash_between_commit_and_ack_resumes_after_the_checkpoint(kind: Kind) {
    let h = Harness::new(kind).await;
    let head = h.append(60).await;
    let consumer = h.consumer().await;
    consumer.hang_after_commit.store(true, Ordering::SeqCst);
    let (_token, handle) = h.run(consumer.clone());
    tokio::time::timeout(WAIT, consumer.committed.notified())
        .await
        .expect("the first batch commits");
    // The crash: the runner dies after the commit, before any ack.
    handle.abort();
    let _ = handle.await;
    let committed = consumer.applied().await;
    assert!(!committed.is_empty());

    let consumer = h.consumer().await;
    let _run = h.run(consumer.clone());
    // The new runner resumes after the checkpoint (on NATS the durable
    // consumer is recreated from it, not left to redeliver after ack_wait).
    let head = head.max(h.append(10).await);
    consumer.wait_for_checkpoint(head).await;
    assert_eq!(
        *consumer.skipped.borrow(),
        0,
        "{kind:?}: the committed batch is not handed over again"
    );
    let applied = consumer.applied().await;
    assert_eq!(
        applied[..committed.len()],
        committed[..],
        "{kind:?}: the committed batch is kept as it was"
    );
    assert_eq!(applied, one_to(head), "{kind:?}: nothing applied twice");
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test]
            async fn $case() { super::$case(super::Kind::Embedded).await } )*
        }
        mod nats {
            $( #[tokio::test]
            async fn $case() { super::$case(super::Kind::Nats).await } )*
        }
    };
}

conformance!(
    applies_every_event_once_in_log_order,
    resumes_from_its_checkpoint_after_a_restart,
    retries_a_failed_apply_without_skipping_or_reordering,
    a_crash_between_commit_and_ack_resumes_after_the_checkpoint,
);
