//! Sessions on the simulated network: resident memory per connected
//! instance, and send throughput against a bare health route of the same
//! server, in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use wa_gateway::{App, Config};

const INSTANCES: usize = 1_000;
const CLIENTS: usize = 64;
const REQUESTS: usize = 20_000;

/// Resident set size of this process, in bytes, after the allocator gave
/// back what it holds freed (mimalloc keeps freed pages a while and returns
/// them in bursts, which would make two readings incomparable).
pub fn settled_rss_bytes() -> u64 {
    // SAFETY: mi_collect only frees memory the allocator holds unused; it
    // takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
    rss_bytes()
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn hammer(
    client: reqwest::Client,
    url: String,
    key: String,
    body: Option<serde_json::Value>,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, key, body, done) = (
            client.clone(),
            url.clone(),
            key.clone(),
            body.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while done.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                let req = match &body {
                    Some(b) => client.post(&url).json(b),
                    None => client.get(&url),
                };
                let resp = req.header("x-api-key", &key).send().await?;
                anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
                resp.bytes().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(REQUESTS as f64 / start.elapsed().as_secs_f64())
}

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::for_tests(dir.path());
    config.sim_auto_pair = true;
    config.log_filter = "error".into();
    let app = App::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let token = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let login: serde_json::Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "admin@test.local", "password": "admin-password"}))
        .send()
        .await?
        .json()
        .await?;
    let key = login["user"]["apiKey"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Memory first, before any load: what the database and the allocator
    // take on first use counts against the instances (the figure errs high).
    let rss_before = settled_rss_bytes();
    let mut ids = Vec::with_capacity(INSTANCES);
    for n in 0..INSTANCES {
        let created: serde_json::Value = client
            .post(format!("{base}/api/instances"))
            .header("x-api-key", &key)
            .json(&json!({"name": format!("bench {n}")}))
            .send()
            .await?
            .json()
            .await?;
        ids.push(wa_gateway::ids::InstanceId::from(
            created["id"].as_str().unwrap_or_default(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ids.iter().any(|id| !state.sessions.status(id).ready()) {
        if Instant::now() > deadline {
            let mut states = std::collections::BTreeMap::<&str, usize>::new();
            for id in &ids {
                *states
                    .entry(state.sessions.status(id).state.as_str())
                    .or_default() += 1;
            }
            anyhow::bail!("instances did not connect within 120 s: {states:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_after = settled_rss_bytes();
    let per = (rss_after.saturating_sub(rss_before)) as f64 / INSTANCES as f64;
    println!("{INSTANCES} connected sim instances");
    println!(
        "  resident memory:       {:>10.1} MiB total, {:>6.1} MiB for the instances",
        rss_after as f64 / 1048576.0,
        (rss_after - rss_before.min(rss_after)) as f64 / 1048576.0
    );
    println!(
        "  per connected instance:{:>10.1} KB   (target <= 150 KB)",
        per / 1024.0
    );

    // Warm the allocator and the connections before the baseline.
    let warm = hammer(client.clone(), format!("{base}/healthz"), key.clone(), None).await?;
    let health = hammer(client.clone(), format!("{base}/healthz"), key.clone(), None).await?;
    let before = state.store.stats();
    let send = hammer(
        client.clone(),
        format!("{base}/api/whatsapp/{}/send", ids[0]),
        key.clone(),
        Some(json!({"phone": "79001234567", "message": "benchmark message"})),
    )
    .await?;
    println!(
        "{CLIENTS} concurrent clients, {REQUESTS} requests each route (warm-up {warm:.0} req/s)"
    );
    println!("  GET /healthz:          {health:>10.0} req/s");
    println!("  POST .../send:         {send:>10.0} req/s");
    println!(
        "  ratio send/health:     {:>10.0} %   (target >= 40 %)",
        100.0 * send / health
    );
    let after = state.store.stats();
    let per_send = |n: u64, m: u64| (n - m) as f64 / REQUESTS as f64;
    println!(
        "  per send: {:.2} events in {:.3} commits; consumer reads {:.3} from memory, {:.3} from disk",
        per_send(after.events_written, before.events_written),
        per_send(after.commits, before.commits),
        per_send(after.reads_from_memory, before.reads_from_memory),
        per_send(after.reads_from_disk, before.reads_from_disk),
    );
    token.cancel();
    server.await??;
    Ok(())
}
