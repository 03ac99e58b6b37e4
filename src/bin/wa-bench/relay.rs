//! The NATS backbone: relay throughput (a backlog of events appended →
//! acknowledged by JetStream) and end-to-end latency from `append` to a
//! durable consumer's `apply` at a steady 5,000 events/s, in NATS mode and
//! embedded mode in the same run. Starts its own `nats-server -js` on a free
//! port with a temp store (`NATS_SERVER` or `nats-server` on PATH or
//! `/usr/sbin/nats-server`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use sqlx::SqlitePool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wa_gateway::backbone::nats::{NatsBackbone, NatsSettings};
use wa_gateway::backbone::{
    Backbone, Consumer, ensure_checkpoint_table, load_checkpoint, save_checkpoint,
};
use wa_gateway::events::ApiCalled;
use wa_gateway::relay::Relay;
use wa_gateway::store::{
    Append, EventStore, ExpectedVersion, Metadata, SharedEvent, StreamId, open_sqlite,
};

const BACKLOG: usize = 100_000;
const RATE: usize = 5_000;
const LATENCY_SECONDS: usize = 6;

fn nats_server_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .context("nats-server not found (apt-get install nats-server, or set NATS_SERVER)")
}

/// A nats-server child on a free port; killed on drop.
struct Server {
    _child: tokio::process::Child,
    url: String,
}

async fn start_server(dir: &Path) -> anyhow::Result<Server> {
    let mut child = tokio::process::Command::new(nats_server_binary()?)
        .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut port = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
            port = rest
                .trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        }
        if line.contains("Server is ready") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let port = port.context("nats-server did not report its port")?;
    Ok(Server {
        _child: child,
        url: format!("nats://127.0.0.1:{port}"),
    })
}

async fn connect(url: &str) -> anyhow::Result<NatsBackbone> {
    NatsBackbone::connect(&NatsSettings {
        url: url.to_string(),
        stream: "WA_BENCH".into(),
        subject_prefix: "wa".into(),
        startup_timeout: Duration::from_secs(10),
        ack_wait: None,
    })
    .await
}

fn event(n: usize) -> ApiCalled {
    ApiCalled {
        user_id: "bench-user".into(),
        instance_id: Some("bench-instance".into()),
        method: "POST".into(),
        route: "/api/whatsapp/{instanceId}/send".into(),
        status: 200,
        duration_ms: n as f64,
    }
}

/// Events appended (as a backlog) → acknowledged by JetStream, events/s.
async fn relay_throughput(url: &str) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = EventStore::open(&dir.path().join("events.db")).await?;
    for chunk in 0..BACKLOG / 500 {
        let mut append = Append::to(
            StreamId::named(format!("bench-{chunk}")),
            ExpectedVersion::NoStream,
        )
        .scope(Some("bench-user"), Some("bench-instance"));
        for i in 0..500 {
            append = append.event(event(chunk * 500 + i));
        }
        store.append(append).await?;
    }
    let nats = connect(url).await?;
    let mut published = nats.published();
    let token = CancellationToken::new();
    let start = Instant::now();
    let relay = tokio::spawn(Relay::new(store.clone(), nats.clone()).run(token.clone()));
    tokio::time::timeout(
        Duration::from_secs(120),
        published.wait_for(|p| *p >= BACKLOG as i64),
    )
    .await
    .context("the relay did not finish the backlog")??;
    let secs = start.elapsed().as_secs_f64();
    token.cancel();
    relay.await?;
    let state = nats.stream().await?.info().await?.state.clone();
    if state.messages != BACKLOG as u64 {
        bail!(
            "the stream holds {} messages, expected {BACKLOG}",
            state.messages
        );
    }
    Ok(BACKLOG as f64 / secs)
}

/// A durable consumer writing one row per event into its own SQLite table,
/// noting when each event was applied.
struct LatencyConsumer {
    pool: SqlitePool,
    applied_at: Mutex<HashMap<String, Instant>>,
    checkpoint: watch::Sender<i64>,
}

#[async_trait]
impl Consumer for LatencyConsumer {
    fn name(&self) -> &'static str {
        "bench_latency"
    }

    async fn checkpoint(&self) -> anyhow::Result<i64> {
        Ok(load_checkpoint(&self.pool, self.name()).await?)
    }

    async fn apply(&self, events: &[SharedEvent]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let cp = load_checkpoint(&mut *tx, self.name()).await?;
        let fresh: Vec<&SharedEvent> = events.iter().filter(|e| e.position > cp).collect();
        let Some(last) = fresh.last().map(|e| e.position) else {
            return Ok(());
        };
        for e in &fresh {
            sqlx::query("INSERT INTO bench_applied (position, event_type) VALUES (?, ?)")
                .bind(e.position)
                .bind(&e.event_type)
                .execute(&mut *tx)
                .await?;
        }
        save_checkpoint(&mut tx, self.name(), last).await?;
        tx.commit().await?;
        let now = Instant::now();
        let mut map = self.applied_at.lock().unwrap();
        for e in fresh {
            if let Some(id) = &e.metadata.request_id {
                map.insert(id.clone(), now);
            }
        }
        drop(map);
        self.checkpoint.send_replace(last);
        Ok(())
    }
}

/// Append → apply latency at [`RATE`] events/s for [`LATENCY_SECONDS`]: (p50, p99, max) in ms.
async fn latency(nats_url: Option<&str>) -> anyhow::Result<(f64, f64, f64)> {
    let dir = tempfile::tempdir()?;
    let store = EventStore::open(&dir.path().join("events.db")).await?;
    let views = open_sqlite(&dir.path().join("views.db"), 4).await?;
    ensure_checkpoint_table(&views).await?;
    sqlx::query(
        "CREATE TABLE bench_applied (position INTEGER PRIMARY KEY, event_type TEXT NOT NULL)",
    )
    .execute(&views)
    .await?;
    let token = CancellationToken::new();
    let backbone = match nats_url {
        None => Backbone::Embedded(store.clone()),
        Some(url) => {
            let nats = connect(url).await?;
            tokio::spawn(Relay::new(store.clone(), nats.clone()).run(token.child_token()));
            Backbone::Nats(nats, store.clone())
        }
    };
    let consumer = Arc::new(LatencyConsumer {
        pool: views,
        applied_at: Mutex::new(HashMap::new()),
        checkpoint: watch::Sender::new(0),
    });
    let task = backbone.spawn_consumer(consumer.clone(), token.child_token());

    // 50 appends of one event every 10 ms = 5,000 events/s, each timed from its append call.
    let total = RATE * LATENCY_SECONDS;
    let per_tick = RATE / 100;
    let appended_at = Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0usize;
    let mut pending = Vec::new();
    while n < total {
        tick.tick().await;
        for _ in 0..per_tick {
            let store = store.clone();
            let appended_at = appended_at.clone();
            let id = format!("bench-{n}");
            let i = n;
            pending.push(tokio::spawn(async move {
                appended_at
                    .lock()
                    .unwrap()
                    .insert(id.clone(), Instant::now());
                store
                    .append(
                        Append::to(StreamId::named(id.clone()), ExpectedVersion::NoStream)
                            .scope(Some("bench-user"), Some("bench-instance"))
                            .metadata(Metadata {
                                request_id: Some(id),
                                ..Metadata::default()
                            })
                            .event(event(i)),
                    )
                    .await
            }));
            n += 1;
        }
    }
    for p in pending {
        p.await??;
    }
    let head = store.head();
    tokio::time::timeout(
        Duration::from_secs(60),
        consumer.checkpoint.subscribe().wait_for(|p| *p >= head),
    )
    .await
    .context("the consumer did not catch up")??;
    token.cancel();
    let _ = task.await;

    let appended = appended_at.lock().unwrap();
    let applied = consumer.applied_at.lock().unwrap();
    let mut ms: Vec<f64> = appended
        .iter()
        .filter_map(|(id, t0)| applied.get(id).map(|t1| (*t1 - *t0).as_secs_f64() * 1000.0))
        .collect();
    if ms.len() != total {
        bail!("{} of {total} events were applied", ms.len());
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    Ok((pct(0.50), pct(0.99), *ms.last().unwrap()))
}

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path()).await?;
    let throughput = relay_throughput(&server.url).await?;
    println!("relay: backlog of {BACKLOG} events → acked by JetStream (file store)");
    println!("  NATS relay:            {throughput:>10.0} events/s   (target >= 50,000)");
    let (e50, e99, emax) = latency(None).await?;
    let nats_dir = tempfile::tempdir()?;
    let nats_server = start_server(nats_dir.path()).await?;
    let (n50, n99, nmax) = latency(Some(&nats_server.url)).await?;
    println!(
        "append → durable consumer apply at {RATE} events/s for {LATENCY_SECONDS} s (p99 target <= 20 ms)"
    );
    println!("  embedded:  p50 {e50:>6.2} ms   p99 {e99:>6.2} ms   max {emax:>7.2} ms");
    println!("  NATS:      p50 {n50:>6.2} ms   p99 {n99:>6.2} ms   max {nmax:>7.2} ms");
    Ok(())
}
