//! Benchmark of the real WhatsApp engine (whatsapp-rust) against the in-repo
//! fake WhatsApp server: resident memory per connected instance (100
//! instances paired and connected), time from instance creation to its
//! first QR code, and from the QR scan to `connection_opened`.
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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use wa_gateway::config::EngineKind;
use wa_gateway::whatsapp::real::TransportHook;
use wa_gateway::{App, Config};

const INSTANCES: usize = 100;
const DEADLINE: Duration = Duration::from_secs(300);

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let fake = fake_wa::FakeWa::new();
    let dir = tempfile::tempdir()?;
    let mut config = Config::for_tests(dir.path());
    config.engine = EngineKind::WhatsApp;
    config.whatsapp_transport = Some(TransportHook(fake.factory()));
    config.whatsapp_version = Some((2, 3000, 1_023_456_789));
    config.log_filter = "error".into();
    let app = App::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let token = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
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
    let rss_before = rss_bytes();

    let mut sub = state.store.subscribe(0);
    let mut created: HashMap<String, (Instant, String)> = HashMap::new();
    let started = Instant::now();
    for i in 0..INSTANCES {
        let t = Instant::now();
        let body: serde_json::Value = client
            .post(format!("{base}/api/instances"))
            .header("x-api-key", &key)
            .json(&json!({"name": format!("bench {i}")}))
            .send()
            .await?
            .json()
            .await?;
        let id = body["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no id in {body}"))?
            .to_string();
        created.insert(id, (t, format!("7900{:07}", i)));
    }

    let mut to_qr = Vec::new();
    let mut scanned: HashMap<String, Instant> = HashMap::new();
    let mut to_connected = Vec::new();
    while to_connected.len() < INSTANCES {
        let left = DEADLINE.saturating_sub(started.elapsed());
        let batch = match tokio::time::timeout(left, sub.next_batch()).await {
            Ok(b) => b?.ok_or_else(|| anyhow::anyhow!("the store closed"))?,
            Err(_) => anyhow::bail!(
                "only {} of {INSTANCES} connected within {DEADLINE:?}",
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
                    to_qr.push(t_created.elapsed());
                    let code = e.data["qrCode"].as_str().unwrap_or_default().to_string();
                    scanned.insert(id.to_string(), Instant::now());
                    fake.scan(&code, phone).await?;
                }
                "connection_opened" => {
                    if let Some(t) = scanned.get(id) {
                        to_connected.push(t.elapsed());
                    }
                }
                _ => {}
            }
        }
    }
    // Let post-login work (key uploads, syncs) settle before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after = rss_bytes();
    println!(
        "{INSTANCES} real-engine instances paired and connected to the fake server in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    summary("create -> QR", to_qr);
    summary(
        "scan -> connected (includes the client's ~10 s first-login grace)",
        to_connected,
    );
    println!(
        "resident memory: {:.1} MiB before, {:.1} MiB after; {:.2} MiB per connected instance \
         (includes the in-process fake server's side of each connection)",
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
        (rss_after.saturating_sub(rss_before)) as f64 / 1048576.0 / INSTANCES as f64
    );
    token.cancel();
    server.await??;
    Ok(())
}
