//! The fault drills of issue 17, as an operator runs them: the gateway
//! binary on a temp data dir, stopped with `kill -9` (SIGKILL: no shutdown
//! code runs) or SIGTERM mid-traffic, then started again on the same dir.
//!
//! - after `kill -9`: every answered request has its `api_called`; the
//!   session the crash cut is closed (`process_restart`) before it reopens;
//!   the webhook attempt that was in flight is counted;
//! - on NATS: after a restart (SIGTERM or `kill -9`) the consumers apply new
//!   events at once, never more than two seconds' worth of traffic behind,
//!   nothing skipped or applied twice; after SIGTERM the stream holds every
//!   event of the log.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::nats_server::NatsServer;
use crate::receiver::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(20);

/// The gateway binary on `dir` with the sim engine (pairing by itself).
struct Gateway {
    child: Child,
    base: String,
    key: String,
}

impl Gateway {
    async fn start(dir: &Path, env: &[(&str, String)]) -> Self {
        let port = Receiver::reserve_port();
        // `WA_TEST_GATEWAY_BIN` names a copy of the binary when several
        // checkouts share one target dir (another checkout's build would
        // replace the binary under a running test).
        let bin = std::env::var("WA_TEST_GATEWAY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_wa-gateway").to_string());
        let mut cmd = tokio::process::Command::new(bin);
        cmd.env("WA_ENGINE", "sim")
            .env("WA_SIM_AUTO_PAIR", "true")
            .env("WA_DATA_DIR", dir)
            .env("WA_LISTEN", format!("127.0.0.1:{port}"))
            .env("WA_ADMIN_PASSWORD", "admin-password")
            .env("WA_WEBHOOK_ALLOW_PRIVATE", "true")
            .env("WA_RATE_LIMIT_PER_MIN", "1000000")
            .env("WA_LOG", "error")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        loop {
            // Polling a process that is starting: there is nothing to subscribe to.
            if let Ok(r) = client
                .post(format!("{base}/api/auth/login"))
                .json(&json!({"email": "admin@localhost", "password": "admin-password"}))
                .send()
                .await
            {
                let body: Value = r.json().await.unwrap();
                let key = body["user"]["apiKey"].as_str().unwrap().to_string();
                return Self { child, base, key };
            }
            assert!(Instant::now() < deadline, "the gateway did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill_9(&mut self) {
        self.child.kill().await.unwrap();
    }

    async fn sigterm(&mut self) {
        let pid = self.child.id().unwrap() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc_kill(pid, 15) };
        let code = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("it stops after SIGTERM")
            .unwrap();
        assert!(code.success(), "exit status {code:?}");
    }

    async fn create_instance(&self, webhook_url: &str) -> String {
        let created: Value = reqwest::Client::new()
            .post(format!("{}/api/instances", self.base))
            .header("x-api-key", &self.key)
            .json(&json!({"name": "drill", "webhookUrl": webhook_url, "retryInterval": 100}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"].as_str().unwrap().to_string()
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A read-only connection to one of the gateway's SQLite files.
async fn open_db(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    sqlx::pool::PoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

/// Log rows as (position, type, instance, data, metadata).
async fn log_rows(dir: &Path) -> Vec<(i64, String, Option<String>, Value, Value)> {
    let db = open_db(&dir.join("events.db")).await;
    let rows: Vec<(i64, String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT position, event_type, instance_id, data, metadata FROM events ORDER BY position",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    rows.into_iter()
        .map(|(p, t, i, d, m)| {
            (
                p,
                t,
                i,
                serde_json::from_str(&d).unwrap(),
                serde_json::from_str(&m).unwrap(),
            )
        })
        .collect()
}

/// Polls the log (another process writes it) until `pred` holds.
async fn wait_for_log(
    dir: &Path,
    what: &str,
    pred: impl Fn(&[(i64, String, Option<String>, Value, Value)]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        if dir.join("events.db").exists() && pred(&log_rows(dir).await) {
            return;
        }
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends on `instance` from `clients` tasks until `stop`; each answer's
/// request id and status go into `answered`, and `asked` counts requests sent.
fn send_burst(
    base: &str,
    key: &str,
    instance: &str,
    clients: usize,
    answered: Arc<Mutex<Vec<(String, u16)>>>,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (base, key, instance) = (base.to_string(), key.to_string(), instance.to_string());
            let (answered, stop) = (answered.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0;
                while !stop.is_cancelled() {
                    n += 1;
                    let rid = format!("drill-{c}-{n}");
                    let sent = client
                        .post(format!("{base}/api/whatsapp/{instance}/send"))
                        .header("x-api-key", &key)
                        .header("x-request-id", &rid)
                        .json(&json!({"phone": "79001234567", "message": format!("m {c} {n}")}))
                        .send()
                        .await;
                    // Answered = the whole answer arrived.
                    if let Ok(r) = sent {
                        let status = r.status().as_u16();
                        if r.bytes().await.is_ok() {
                            answered.lock().unwrap().push((rid, status));
                        }
                    }
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn after_kill_9_the_log_has_every_answered_call_closes_the_cut_session_and_counts_the_cut_attempt()
 {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start().await;
    // The first webhook request hangs: it is in flight when the process dies.
    r.script([Reply::ok().after(Duration::from_secs(300))]);
    let mut gw = Gateway::start(dir.path(), &[]).await;
    let id = gw.create_instance(&r.url()).await;
    let cut = r.wait_for(1).await[0].clone();
    wait_for_log(dir.path(), "the instance connects", |rows| {
        rows.iter()
            .any(|e| e.1 == "connection_opened" && e.2.as_deref() == Some(&id))
    })
    .await;

    let answered = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let burst = send_burst(&gw.base, &gw.key, &id, 8, answered.clone(), stop.clone());
    let deadline = Instant::now() + WAIT;
    while answered.lock().unwrap().len() < 200 {
        assert!(Instant::now() < deadline, "the sends did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.kill_9().await; // SIGKILL mid-burst: no shutdown code runs
    stop.cancel();
    for task in burst {
        let _ = task.await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.iter().all(|(_, s)| *s == 200), "{answered:?}");

    // (a) Every answered request is in the log, once.
    let rows = log_rows(dir.path()).await;
    let mut recorded: HashMap<String, usize> = HashMap::new();
    for e in rows.iter().filter(|e| e.1 == "api_called") {
        if let Some(rid) = e.4["requestId"].as_str()
            && rid.starts_with("drill-")
        {
            *recorded.entry(rid.to_string()).or_default() += 1;
        }
    }
    let missing: Vec<_> = answered
        .iter()
        .filter(|(rid, _)| !recorded.contains_key(rid))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no api_called: {missing:?}",
        missing.len(),
        answered.len()
    );
    assert!(recorded.values().all(|n| *n == 1), "an api_called twice");
    // Recorded but not answered: at most the requests in flight at the kill.
    assert!(
        recorded.len() <= answered.len() + 8,
        "{} recorded, {} answered",
        recorded.len(),
        answered.len()
    );

    // Start again: the receiver answers at once from now on.
    r.set_fallback(Reply::ok());
    let gw = Gateway::start(dir.path(), &[]).await;
    let webhook_id = cut.header("webhook-id");
    r.wait_until(|h| h.header("webhook-id") == webhook_id && h.at > cut.at)
        .await;
    wait_for_log(dir.path(), "the session reopens", |rows| {
        rows.iter()
            .filter(|e| e.1 == "connection_opened" && e.2.as_deref() == Some(&id))
            .count()
            == 2
    })
    .await;

    // (b) The cut session is closed (process_restart) before it reopens.
    let rows = log_rows(dir.path()).await;
    let connection: Vec<String> = rows
        .iter()
        .filter(|e| e.2.as_deref() == Some(&id))
        .filter(|e| e.1 == "connection_opened" || e.1 == "connection_closed")
        .map(|e| match e.1.as_str() {
            "connection_closed" => format!("closed:{}", e.3["reason"].as_str().unwrap()),
            _ => "opened".to_string(),
        })
        .collect();
    assert_eq!(
        connection,
        ["opened", "closed:process_restart", "opened"],
        "connection events of the instance"
    );

    // (c) The attempt the crash cut counts: the receiver saw two requests, the API says two attempts.
    let seen = r
        .hits()
        .iter()
        .filter(|h| h.header("webhook-id") == webhook_id)
        .count();
    assert_eq!(seen, 2);
    // The cut delivery is the instance's first (its oldest, the last of the newest-first pages).
    let page = |skip: i64| {
        let url = format!(
            "{}/api/instances/{id}/webhook-deliveries?limit=1&skip={skip}",
            gw.base
        );
        let key = gw.key.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + WAIT;
    let delivery = loop {
        let total = page(0).await["pagination"]["total"].as_i64().unwrap();
        let d = page(total - 1).await["deliveries"][0].clone();
        assert_eq!(d["webhookId"], webhook_id.as_str(), "{d}");
        // Polling the other process's API until the second attempt is recorded.
        if d["status"] == "delivered" {
            break d;
        }
        assert!(Instant::now() < deadline, "not delivered: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["attempts"], 2, "{delivery}");
    let rows = log_rows(dir.path()).await;
    let attempts: Vec<(String, Value)> = rows
        .iter()
        .filter(|e| e.1.starts_with("webhook_") && e.3["webhookId"] == webhook_id.as_str())
        .map(|e| (e.1.clone(), e.3["attempt"].clone()))
        .collect();
    assert_eq!(
        attempts,
        [
            ("webhook_failed".to_string(), json!(1)),
            ("webhook_delivered".to_string(), json!(2))
        ]
    );
    let failed = rows
        .iter()
        .find(|e| e.1 == "webhook_failed" && e.3["webhookId"] == webhook_id.as_str())
        .unwrap();
    assert!(
        failed.3["error"].as_str().unwrap().contains("interrupted"),
        "{}",
        failed.3
    );
}

// ---------------------------------------------------------------- NATS: restart lag

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Sigterm,
    Kill9,
}

/// Every consumer's checkpoint: the three projections (views.db) and the webhook dispatcher (webhooks.db).
async fn checkpoints(dir: &Path) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (file, names) in [
        ("views.db", wa_gateway::projections::NAMES),
        ("webhooks.db", &[wa_gateway::webhooks::intake::NAME][..]),
    ] {
        let db = open_db(&dir.join(file)).await;
        for name in names {
            let cp = sqlx::query_scalar("SELECT position FROM consumer_checkpoints WHERE name = ?")
                .bind(name)
                .fetch_optional(&db)
                .await
                .unwrap()
                .unwrap_or(0i64);
            out.push((name.to_string(), cp));
        }
        db.close().await;
    }
    out
}

async fn log_head(dir: &Path) -> i64 {
    let db = open_db(&dir.join("events.db")).await;
    let head = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    head
}

/// Sends at a steady `per_second` until `stop`, whatever the answers (the
/// gateway is down for a while).
fn steady_traffic(
    base: Arc<Mutex<(String, String)>>,
    instance: String,
    per_second: u64,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_second));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n = 0u64;
        while !stop.is_cancelled() {
            tick.tick().await;
            n += 1;
            let (url, key) = base.lock().unwrap().clone();
            let req = client
                .post(format!("{url}/api/whatsapp/{instance}/send"))
                .header("x-api-key", key)
                .json(&json!({"phone": "79001234567", "message": format!("steady {n}")}));
            tokio::spawn(async move {
                let _ = req.send().await;
            });
        }
    })
}

async fn restart_lag_drill(stop: Stop) {
    let nats = NatsServer::start().await;
    let env = [
        ("WA_NATS_URL", nats.url()),
        ("WA_NATS_STARTUP_TIMEOUT", "10s".to_string()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start().await;
    let mut gw = Gateway::start(dir.path(), &env).await;
    let id = gw.create_instance(&r.url()).await;
    wait_for_log(dir.path(), "the instance connects", |rows| {
        rows.iter()
            .any(|e| e.1 == "connection_opened" && e.2.as_deref() == Some(&id))
    })
    .await;

    // 50 sends a second, as in the drill, through the stop and the start.
    let target = Arc::new(Mutex::new((gw.base.clone(), gw.key.clone())));
    let traffic_stop = CancellationToken::new();
    let traffic = steady_traffic(target.clone(), id.clone(), 50, traffic_stop.clone());
    // Let the consumers pull (and hold unacknowledged) a good part of the traffic.
    let head_before = log_head(dir.path()).await;
    wait_for_log(dir.path(), "traffic flows", |rows| {
        rows.len() as i64 >= head_before + 300
    })
    .await;
    match stop {
        Stop::Kill9 => gw.kill_9().await,
        Stop::Sigterm => {
            gw.sigterm().await;
            // SIGTERM drained the relay: the stream holds the whole log.
            stream_equals_log(&nats, dir.path()).await;
        }
    }
    drop(gw);

    let gw = Gateway::start(dir.path(), &env).await;
    *target.lock().unwrap() = (gw.base.clone(), gw.key.clone());
    // From the moment it answers: sample the lag of every consumer for 3 s.
    let started = Instant::now();
    let first_head = log_head(dir.path()).await;
    let mut worst = (0i64, String::new(), Duration::ZERO);
    while started.elapsed() < Duration::from_secs(3) {
        let head = log_head(dir.path()).await;
        for (name, cp) in checkpoints(dir.path()).await {
            if head - cp > worst.0 {
                worst = (head - cp, name, started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_head = log_head(dir.path()).await;
    let per_second = (last_head - first_head) as f64 / started.elapsed().as_secs_f64();
    assert!(
        per_second >= 25.0,
        "traffic kept flowing after the restart: {per_second} events/s"
    );
    assert!(
        worst.0 as f64 <= 2.0 * per_second,
        "{stop:?}: consumer {} was {} events behind {:?} after the restart, more than 2 s of traffic ({per_second:.0} events/s)",
        worst.1,
        worst.0,
        worst.2
    );
    eprintln!(
        "{stop:?}: worst lag after the restart {} events ({}, at {:?}); traffic {per_second:.0} events/s",
        worst.0, worst.1, worst.2
    );

    // Quiet: every consumer reaches the head; nothing skipped, nothing twice.
    traffic_stop.cancel();
    let _ = traffic.await;
    let deadline = Instant::now() + WAIT;
    let head = loop {
        let head = log_head(dir.path()).await;
        let cps = checkpoints(dir.path()).await;
        if cps.iter().all(|(_, cp)| *cp == head) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if log_head(dir.path()).await == head {
                break head;
            }
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "consumers at {cps:?}, head {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rows = log_rows(dir.path()).await;
    assert_eq!(rows.last().unwrap().0, head);
    let views = open_db(&dir.path().join("views.db")).await;
    // Activity: exactly the instance's events (every one, once).
    let activity: Vec<i64> = sqlx::query_scalar(
        "SELECT position FROM activity_log WHERE instance_id = ? ORDER BY position",
    )
    .bind(&id)
    .fetch_all(&views)
    .await
    .unwrap();
    let expected: Vec<i64> = rows
        .iter()
        .filter(|e| e.2.as_deref() == Some(&id) && e.1 != "api_called")
        .map(|e| e.0)
        .collect();
    assert_eq!(
        activity, expected,
        "{stop:?}: activity log = the instance's events"
    );
    // Statistics: counters equal the log's counts (an event applied twice would count twice).
    let (sent, calls): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(messages_sent), 0), COALESCE(SUM(api_calls), 0) FROM usage_daily WHERE instance_id = ?",
    )
    .bind(&id)
    .fetch_one(&views)
    .await
    .unwrap();
    let count = |t: &str| {
        rows.iter()
            .filter(|e| e.2.as_deref() == Some(&id) && e.1 == t)
            .count() as i64
    };
    assert_eq!(sent, count("message_sent"), "{stop:?}: messagesSent");
    assert_eq!(calls, count("api_called"), "{stop:?}: apiCalls");
    // Webhooks: one delivery per message_sent (notifySent is on by default).
    let hooks = open_db(&dir.path().join("webhooks.db")).await;
    let delivered: HashSet<String> = sqlx::query_scalar(
        "SELECT event_id FROM webhook_deliveries WHERE instance_id = ? AND event = 'message_sent'",
    )
    .bind(&id)
    .fetch_all(&hooks)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let all_ids = open_db(&dir.path().join("events.db")).await;
    let sent_ids: HashSet<String> = sqlx::query_scalar(
        "SELECT event_id FROM events WHERE instance_id = ? AND event_type = 'message_sent'",
    )
    .bind(&id)
    .fetch_all(&all_ids)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(delivered, sent_ids, "{stop:?}: a delivery per message_sent");
    drop(gw);
}

/// The JetStream stream holds exactly the log: same count, same last position.
async fn stream_equals_log(nats: &NatsServer, dir: &Path) {
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("WA_EVENTS").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let rows = log_rows(dir).await;
    let last = stream.get_raw_message(state.last_sequence).await.unwrap();
    let position = wa_gateway::backbone::nats::header_position(&last.headers).unwrap();
    assert_eq!(
        (state.messages, position),
        (rows.len() as u64, rows.last().unwrap().0),
        "stream (messages, last position) = log (events, head)"
    );
    assert!(
        rows.iter()
            .any(|e| e.1 == "connection_closed" && e.3["reason"] == "shutdown"),
        "the shutdown's connection_closed is in the log (so in the stream)"
    );
}

#[tokio::test]
async fn on_nats_after_a_sigterm_the_stream_equals_the_log_and_consumers_resume_at_once() {
    restart_lag_drill(Stop::Sigterm).await;
}

#[tokio::test]
async fn on_nats_after_a_kill_9_consumers_resume_at_once_without_skipping_or_doubling() {
    restart_lag_drill(Stop::Kill9).await;
}
