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
/// The name of the load generator's threads (not the gateway's CPU).
const CLIENT_THREAD: &str = "bench-client";

/// CPU time the gateway's threads have used so far: every thread of this
/// process except the load generator's (see [`cpu_by_thread`]). Threads
/// that have ended are not counted, so it is read over phases in which the
/// gateway's threads all live.
fn gateway_cpu() -> Duration {
    Duration::from_nanos(cpu_by_thread().values().sum())
}

/// CPU time so far, in nanoseconds on a CPU, per group of the gateway's
/// threads (by thread name, from `/proc/self/task/*/schedstat`), leaving
/// out the load generator's threads.
fn cpu_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let comm = comm.trim_end();
        if comm == CLIENT_THREAD {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(comm.to_string()).or_default() += ns;
    }
    out
}

/// Microseconds of `cpu` per request of a phase.
fn micros_per(cpu: Duration) -> f64 {
    cpu.as_secs_f64() * 1e6 / REQUESTS as f64
}

/// Waits until the projectors have applied everything in the log, so that
/// their work counts in the phase that caused it.
async fn caught_up(state: &wa_gateway::AppState) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stable = 0;
    let mut last_head = -1;
    while stable < 3 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "projectors did not catch up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let head = state.store.head();
        let mut behind = false;
        for name in wa_gateway::projections::NAMES {
            behind |= wa_gateway::backbone::load_checkpoint(&state.views, name).await? < head;
        }
        stable = if behind || head != last_head {
            0
        } else {
            stable + 1
        };
        last_head = head;
    }
    Ok(())
}

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

/// Runs `REQUESTS` requests from `CLIENTS` concurrent clients: `GET url`, or
/// with `sends`, a text send to each of those URLs in turn. Returns requests/s.
async fn hammer(
    client: reqwest::Client,
    url: String,
    key: String,
    sends: Option<Vec<String>>,
) -> anyhow::Result<f64> {
    let body = json!({"phone": "79001234567", "message": "benchmark message"});
    let sends = sends.map(Arc::new);
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, key, body, sends, done) = (
            client.clone(),
            url.clone(),
            key.clone(),
            body.clone(),
            sends.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = done.fetch_add(1, Ordering::Relaxed);
                if n >= REQUESTS {
                    break;
                }
                let req = match &sends {
                    Some(urls) => client.post(&urls[n % urls.len()]).json(&body),
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
    // One user sends every request of the benchmark: no rate limit.
    config.rate_limit_per_min = 0;
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

    // The load runs on its own runtime, whose threads are named, so that the
    // gateway's CPU time is the process's minus theirs.
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()?;
    let run_load = |url: String, body: Option<Vec<String>>| {
        let (client, key) = (client.clone(), key.clone());
        let task = load.spawn(hammer(client, url, key, body));
        async move { task.await? }
    };
    let health_url = format!("{base}/healthz");
    let warm = run_load(health_url.clone(), None).await?;
    let cpu = gateway_cpu();
    let health = run_load(health_url.clone(), None).await?;
    let health_cpu = gateway_cpu().saturating_sub(cpu);
    println!(
        "{CLIENTS} concurrent clients, {REQUESTS} requests a phase (warm-up {warm:.0} req/s); \
         gateway CPU = process CPU minus the load generator's threads"
    );
    println!(
        "  GET /healthz:               {health:>8.0} req/s   {:>7.1} us CPU a request",
        micros_per(health_cpu)
    );
    // `WA_BENCH_SPREADS=100` runs one spread alone (profiling one phase).
    let spreads: Vec<usize> = std::env::var("WA_BENCH_SPREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 100]);
    for spread in spreads {
        let urls: Vec<String> = ids
            .iter()
            .take(spread)
            .map(|id| format!("{base}/api/whatsapp/{id}/send"))
            .collect();
        let before = state.store.stats();
        let threads = cpu_by_thread();
        let cpu = gateway_cpu();
        let send = run_load(String::new(), Some(urls)).await?;
        caught_up(&state).await?;
        let send_cpu = gateway_cpu().saturating_sub(cpu);
        let after = state.store.stats();
        let mut split = String::new();
        for (name, ns) in cpu_by_thread() {
            let spent = ns.saturating_sub(threads.get(&name).copied().unwrap_or(0));
            if spent * 50 >= send_cpu.as_nanos() as u64 {
                split.push_str(&format!(
                    " {name} {:.1}",
                    micros_per(Duration::from_nanos(spent))
                ));
            }
        }
        let per_send = |n: u64, m: u64| (n - m) as f64 / REQUESTS as f64;
        println!(
            "  POST .../send on {spread:>3} inst: {send:>8.0} req/s   {:>7.1} us CPU a send (target <= 150 us)",
            micros_per(send_cpu)
        );
        println!(
            "    ratio send/health:        {:>8.0} %   (target >= 25 %)",
            100.0 * send / health
        );
        println!(
            "    per send: {:.2} events in {:.3} commits; consumer reads {:.3} from memory, {:.3} from disk",
            per_send(after.events_written, before.events_written),
            per_send(after.commits, before.commits),
            per_send(after.reads_from_memory, before.reads_from_memory),
            per_send(after.reads_from_disk, before.reads_from_disk),
        );
        println!("    us CPU a send by thread:{split}");
    }
    load.shutdown_background();
    token.cancel();
    server.await??;
    Ok(())
}
