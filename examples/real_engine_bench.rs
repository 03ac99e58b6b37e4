//! Benchmark of the real WhatsApp engine (whatsapp-rust) against the in-repo
//! fake WhatsApp server:
//! - memory per connected instance, 1,000 instances paired and connected
//!   (`WA_BENCH_REAL_INSTANCES` to change it), the fake server's share
//!   weighed apart: the fake runs on a runtime of its own whose threads
//!   are tagged, and a counting allocator charges each live allocation to
//!   the side that made it (heap bytes; resident memory is printed beside);
//! - time from instance creation to its first QR code, and from the QR scan
//!   to `connection_opened`;
//! - text messages per second through the real client to fake contacts,
//!   each acknowledged by the server (`message_status` `sent`), beside the
//!   sim engine's rate for the same load in the same run.
//!
//! An example rather than a `wa-bench` entry: the fake server presents a
//! certificate chain that WhatsApp's root key did not sign, which the client
//! accepts only with `danger-skip-cert-chain-verify`; that feature is enabled
//! for the test profile only (`[dev-dependencies]`), which examples get and
//! the `wa-bench` binary (a normal build) must not. `make bench` runs it.
//!
//! Prints figures; asserts nothing (shared, noisy machines).

#[path = "../tests/it/fake_wa/mod.rs"]
mod fake_wa;

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use wa_gateway::config::EngineKind;
use wa_gateway::whatsapp::real::TransportHook;
use wa_gateway::{App, AppState, Config};

const DEFAULT_INSTANCES: usize = 1_000;
/// Texts in each engine's measured send phase (`WA_BENCH_REAL_SENDS`): long
/// enough (about 20 s) that the machine's noise evens out.
const DEFAULT_SENDS: usize = 40_000;
/// Requests in flight at once.
const CLIENTS: usize = 64;
const DEADLINE: Duration = Duration::from_secs(600);

// ── The counting allocator: mimalloc underneath, each block tagged with
//    the side (gateway or fake) whose thread made it. ──

const GATEWAY: usize = 0;
const FAKE: usize = 1;

thread_local! {
    /// Set on the fake server's runtime threads.
    static ON_FAKE: Cell<bool> = const { Cell::new(false) };
}

static LIVE: [AtomicIsize; 2] = [AtomicIsize::new(0), AtomicIsize::new(0)];

struct Tagged;

/// The header before each block: room for the tag, keeping the alignment.
fn header(layout: Layout) -> usize {
    layout.align().max(16)
}

unsafe impl GlobalAlloc for Tagged {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let head = header(layout);
        // SAFETY: size + head does not overflow for any layout a program can
        // hold; the alignment is the caller's (a power of two) or 16.
        unsafe {
            let outer = Layout::from_size_align_unchecked(layout.size() + head, head);
            let base = mimalloc::MiMalloc.alloc(outer);
            if base.is_null() {
                return base;
            }
            let side = if ON_FAKE.try_with(Cell::get).unwrap_or(false) {
                FAKE
            } else {
                GATEWAY
            };
            (base as *mut usize).write(side);
            LIVE[side].fetch_add(layout.size() as isize, Ordering::Relaxed);
            base.add(head)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let head = header(layout);
        // SAFETY: `ptr` came from `alloc` above with the same layout.
        unsafe {
            let base = ptr.sub(head);
            let side = (base as *const usize).read();
            LIVE[side].fetch_sub(layout.size() as isize, Ordering::Relaxed);
            let outer = Layout::from_size_align_unchecked(layout.size() + head, head);
            mimalloc::MiMalloc.dealloc(base, outer);
        }
    }
}

#[global_allocator]
static ALLOC: Tagged = Tagged;

fn live(side: usize) -> isize {
    LIVE[side].load(Ordering::Relaxed)
}

/// Resident set size of this process, in bytes, after mimalloc gave back
/// the pages it holds freed (it returns them in bursts otherwise).
fn rss_bytes() -> u64 {
    // SAFETY: mi_collect only frees memory the allocator holds unused; it
    // takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes SQLite holds right now, over every connection of the process (the
/// session stores' and the gateway's: one SQLite library is linked).
fn sqlite_bytes() -> i64 {
    // SAFETY: a read of SQLite's global memory counter; no arguments.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

fn mib(bytes: f64) -> f64 {
    bytes / 1_048_576.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: n={} median={:.0} ms p95={:.0} ms max={:.0} ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.95).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

/// A running gateway and an admin API key.
struct Gateway {
    base: String,
    key: String,
    state: AppState,
    token: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn gateway(engine: EngineKind, hook: Option<TransportHook>) -> anyhow::Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::for_tests(dir.path());
    config.engine = engine;
    config.whatsapp_transport = hook;
    config.whatsapp_version = Some((2, 3000, 1_023_456_789));
    config.sim_auto_pair = true;
    config.log_filter = "error".into();
    // One admin key sends everything: no API rate limit in the way.
    config.rate_limit_per_min = 0;
    let app = App::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let token = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let login: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "admin@test.local", "password": "admin-password"}))
        .send()
        .await?
        .json()
        .await?;
    let key = login["user"]["apiKey"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no api key in {login}"))?
        .to_string();
    Ok(Gateway {
        base,
        key,
        state,
        token,
        server,
        _dir: dir,
    })
}

impl Gateway {
    async fn create(&self, client: &reqwest::Client, name: &str) -> anyhow::Result<String> {
        let body: serde_json::Value = client
            .post(format!("{}/api/instances", self.base))
            .header("x-api-key", &self.key)
            .json(&json!({ "name": name }))
            .send()
            .await?
            .json()
            .await?;
        Ok(body["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no id in {body}"))?
            .to_string())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        self.server.await??;
        Ok(())
    }
}

/// Records when each message got its server ack (`message_status` `sent`).
fn watch_acks(state: &AppState) -> Arc<Mutex<HashMap<String, Instant>>> {
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let mut sub = state.store.subscribe(state.store.head());
    let seen = acked.clone();
    tokio::spawn(async move {
        while let Ok(Some(batch)) = sub.next_batch().await {
            let now = Instant::now();
            let mut seen = seen.lock().unwrap();
            for e in batch {
                if e.event_type == "message_status"
                    && e.data["status"] == "sent"
                    && let Some(id) = e.data["messageId"].as_str()
                {
                    seen.insert(id.to_string(), now);
                }
            }
        }
    });
    acked
}

/// Sends `jobs` (instance, phone) as texts, `CLIENTS` at a time, and waits
/// for every server ack; returns messages per second from the first request
/// to the last ack.
async fn send_all(gw: &Gateway, jobs: Vec<(String, String)>) -> anyhow::Result<f64> {
    let acked = watch_acks(&gw.state);
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(jobs.len())));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (jobs, next, ids) = (jobs.clone(), next.clone(), ids.clone());
        let (base, key) = (gw.base.clone(), gw.key.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((instance, phone)) = jobs.get(i) else {
                    return anyhow::Ok(());
                };
                let resp = client
                    .post(format!("{base}/api/whatsapp/{instance}/send"))
                    .header("x-api-key", &key)
                    .json(&json!({"phone": phone, "message": format!("benchmark text {i}")}))
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 200, "send answered {}", resp.status());
                let body: serde_json::Value = resp.json().await?;
                let id = body["id"].as_str().unwrap_or_default().to_string();
                ids.lock().unwrap().push(id);
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let ids: HashSet<String> = ids.lock().unwrap().drain(..).collect();
    loop {
        let last = {
            let acked = acked.lock().unwrap();
            let mut last = started;
            let mut all = true;
            for id in &ids {
                match acked.get(id) {
                    Some(t) => last = last.max(*t),
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            all.then_some(last)
        };
        if let Some(last) = last {
            return Ok(ids.len() as f64 / (last - started).as_secs_f64());
        }
        anyhow::ensure!(
            started.elapsed() < DEADLINE,
            "not every send was acked within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `sends` texts round-robin over `targets` (instance, phone).
fn spread(targets: &[(String, String)], sends: usize) -> Vec<(String, String)> {
    (0..sends)
        .map(|i| targets[i % targets.len()].clone())
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let instances: usize = std::env::var("WA_BENCH_REAL_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_INSTANCES);
    let sends: usize = std::env::var("WA_BENCH_REAL_SENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SENDS);
    // The fake WhatsApp server on threads of its own, tagged for the allocator.
    let fake_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-whatsapp")
        .on_thread_start(|| ON_FAKE.with(|f| f.set(true)))
        .enable_all()
        .build()?;
    let fake = fake_wa::FakeWa::on_runtime(fake_rt.handle().clone());
    let real = gateway(EngineKind::WhatsApp, Some(TransportHook(fake.factory()))).await?;
    let client = reqwest::Client::new();
    let (gw_before, fake_before, rss_before) = (live(GATEWAY), live(FAKE), rss_bytes());
    let sqlite_before = sqlite_bytes();

    let mut sub = real.state.store.subscribe(0);
    let mut created: HashMap<String, (Instant, String)> = HashMap::new();
    let started = Instant::now();
    for i in 0..instances {
        let t = Instant::now();
        let id = real.create(&client, &format!("bench {i}")).await?;
        created.insert(id, (t, format!("7900{i:07}")));
    }
    let mut to_qr = Vec::new();
    let mut scanned: HashMap<String, Instant> = HashMap::new();
    let mut qr_seen: HashSet<String> = HashSet::new();
    let mut to_connected = Vec::new();
    eprintln!(
        "{instances} instances created in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    while to_connected.len() < instances {
        let left = DEADLINE.saturating_sub(started.elapsed());
        let batch = match tokio::time::timeout(left, sub.next_batch()).await {
            Ok(b) => b?.ok_or_else(|| anyhow::anyhow!("the store closed"))?,
            Err(_) => anyhow::bail!(
                "only {} of {instances} connected within {DEADLINE:?}",
                to_connected.len()
            ),
        };
        for e in batch {
            let Some(id) = e.instance_id.as_deref() else {
                continue;
            };
            let Some((t_created, phone)) = created.get(id) else {
                continue;
            };
            match e.event_type.as_str() {
                "qr_received" if !scanned.contains_key(id) => {
                    if !qr_seen.contains(id) {
                        to_qr.push(t_created.elapsed());
                        qr_seen.insert(id.to_string());
                    }
                    let code = e.data["qrCode"].as_str().unwrap_or_default().to_string();
                    // A QR read late may have rotated away: the next one is scanned.
                    if fake.scan(&code, phone).await.is_ok() {
                        scanned.insert(id.to_string(), Instant::now());
                    }
                }
                "connection_opened" => {
                    if let Some(t) = scanned.get(id) {
                        to_connected.push(t.elapsed());
                        if to_connected.len() % 100 == 0 {
                            eprintln!(
                                "{} connected after {:.0} s",
                                to_connected.len(),
                                started.elapsed().as_secs_f64()
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // Let post-login work (key uploads, syncs) settle before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (gw_after, fake_after, rss_after) = (live(GATEWAY), live(FAKE), rss_bytes());
    let sqlite_after = sqlite_bytes();
    println!(
        "{instances} real-engine instances paired and connected to the fake server in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    summary("create -> QR", to_qr);
    summary(
        "scan -> connected (includes the client's ~10 s first-login grace)",
        to_connected,
    );
    let per = |a: isize, b: isize| mib((a - b) as f64) / instances as f64;
    let gateway_side =
        per(gw_after, gw_before) + per(sqlite_after as isize, sqlite_before as isize);
    println!(
        "memory per connected real instance: {gateway_side:.3} MiB on the gateway's side \
         (target <= 1 MiB): Rust heap {:.3} MiB and SQLite {:.3} MiB (its session store); \
         the fake server's side {:.3} MiB apart (Rust heap); resident memory of the whole \
         process {:.3} MiB ({:.1} -> {:.1} MiB: both sides, thread stacks, allocator slack)",
        per(gw_after, gw_before),
        per(sqlite_after as isize, sqlite_before as isize),
        per(fake_after, fake_before),
        mib(rss_after.saturating_sub(rss_before) as f64) / instances as f64,
        mib(rss_before as f64),
        mib(rss_after as f64),
    );

    // Send rate, real engine: each instance writes to a contact of its own
    // (a Signal session is set up by a first text, not timed); the server
    // acks without decrypting, as WhatsApp's does.
    let mut targets = Vec::new();
    for (id, (_, phone)) in &created {
        let contact_phone = format!("7911{}", &phone[4..]);
        let contact = fake.add_contact(&contact_phone, "Bench", None);
        contact.set_ack(fake_wa::network::AckMode::AckOnly);
        targets.push((id.clone(), contact_phone));
    }
    targets.sort();
    send_all(&real, targets.clone()).await?;
    eprintln!("sessions set up; measuring the real engine's send rate");
    let real_rate = send_all(&real, spread(&targets, sends)).await?;
    fake.assert_clean();
    real.stop().await?;

    // The same load on the sim engine, in the same run.
    let sim = gateway(EngineKind::Sim, None).await?;
    let mut sim_targets = Vec::new();
    let mut opened = sim.state.store.subscribe(0);
    let mut ids = HashSet::new();
    for i in 0..instances {
        ids.insert(sim.create(&client, &format!("sim {i}")).await?);
    }
    let mut connected = HashSet::new();
    while connected.len() < ids.len() {
        let batch = tokio::time::timeout(DEADLINE, opened.next_batch())
            .await??
            .ok_or_else(|| anyhow::anyhow!("the store closed"))?;
        for e in batch {
            if e.event_type == "connection_opened"
                && let Some(id) = e.instance_id.as_deref()
                && ids.contains(id)
            {
                connected.insert(id.to_string());
            }
        }
    }
    for (i, id) in ids.iter().enumerate() {
        sim_targets.push((id.clone(), format!("7911{i:07}")));
    }
    sim_targets.sort();
    send_all(&sim, sim_targets.clone()).await?;
    let sim_rate = send_all(&sim, spread(&sim_targets, sends)).await?;
    sim.stop().await?;
    println!(
        "send rate, {sends} texts over {instances} instances, {CLIENTS} requests in flight, \
         until every server ack: real engine {real_rate:.0} msg/s, sim engine {sim_rate:.0} msg/s; \
         real / sim = {:.0} % (target >= 50 %)",
        real_rate / sim_rate * 100.0
    );
    fake_rt.shutdown_background();
    Ok(())
}
