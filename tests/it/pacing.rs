//! Send pacing and the durable outbound queue, through the HTTP API: the
//! policy on instances, queued sends answered at once and sent in order,
//! the queue listed and cancelled, logout and delete failing what waits,
//! and queued messages surviving `kill -9` (each sent exactly once after it).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{As, TestApp, WAIT};

/// A policy that paces quickly enough for a test: a fixed pause of `pause_ms`.
fn quick_policy(pause_ms: u64) -> Value {
    json!({
        "enabled": true,
        "perMinute": 60,
        "delayMinMs": pause_ms,
        "delayMaxMs": pause_ms,
        "typing": false,
        "warmupDays": 0,
        "warmupFirstDay": 1
    })
}

/// A connected sim instance with `policy`, paired as `phone`.
async fn paced_instance(app: &TestApp, phone: &str, policy: Value) -> String {
    let id = app.connected_instance(&app.admin, phone).await;
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&app.admin.api_key),
        json!({"sendPolicy": policy}),
    )
    .await
    .expect(200);
    id
}

async fn send(app: &TestApp, id: &str, to: &str, text: &str) -> String {
    let b = app
        .post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&app.admin.api_key),
            json!({"phone": to, "message": text}),
        )
        .await
        .expect(200);
    b["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_send_policy_is_off_by_default_and_one_flag_switches_on_the_documented_defaults() {
    let app = TestApp::spawn().await;
    let id = app
        .create_instance(&app.admin, json!({"name": "policy"}))
        .await;
    let got = app
        .get(&format!("/api/instances/{id}"), As::Key(&app.admin.api_key))
        .await
        .expect(200);
    assert_eq!(got["sendPolicy"]["enabled"], false);
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&app.admin.api_key),
        json!({"sendPolicy": {"enabled": true}}),
    )
    .await
    .expect(200);
    let got = app
        .get(&format!("/api/instances/{id}"), As::Key(&app.admin.api_key))
        .await
        .expect(200);
    assert_eq!(
        got["sendPolicy"],
        json!({"enabled": true, "perMinute": 6, "perDay": 500, "delayMinMs": 4000,
               "delayMaxMs": 12000, "typing": true, "typingMsPerChar": 40, "typingMaxMs": 6000,
               "warmupDays": 7, "warmupFirstDay": 40})
    );
    // Created with a policy, and bad bounds refused without a change.
    let created = app
        .create_instance(
            &app.admin,
            json!({"name": "paced", "sendPolicy": {"enabled": true, "perMinute": 2}}),
        )
        .await;
    let got = app
        .get(
            &format!("/api/instances/{created}"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    assert_eq!(got["sendPolicy"]["perMinute"], 2);
    let before = app.command_events().await.len();
    let err = app
        .put(
            &format!("/api/instances/{id}"),
            As::Key(&app.admin.api_key),
            json!({"sendPolicy": {"delayMinMs": 5000, "delayMaxMs": 10}}),
        )
        .await
        .expect_error(400);
    assert!(
        err["message"].as_str().unwrap().contains("delayMinMs"),
        "{err}"
    );
    assert_eq!(app.command_events().await.len(), before);
}

#[tokio::test]
async fn paced_sends_are_answered_at_once_queued_and_sent_in_order_with_the_pause_between() {
    let app = TestApp::spawn().await;
    let a = paced_instance(&app, "79000000101", quick_policy(300)).await;
    let b = app.connected_instance(&app.admin, "79000000102").await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(send(&app, &a, "79000000102", &format!("paced {n}")).await);
    }
    // Every send was queued first, under the id it answered.
    let queued: Vec<String> = app
        .instance_events(&a, "message_queued")
        .await
        .iter()
        .map(|e| e.data["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(queued, ids);
    let last = app.wait_for_nth_event(&a, "message_sent", 4).await;
    assert_eq!(last.data["messageId"], ids[3].as_str());
    let sent = app.instance_events(&a, "message_sent").await;
    let order: Vec<&str> = sent
        .iter()
        .map(|e| e.data["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(order, ids, "sent in the order queued");
    for pair in sent.windows(2) {
        let gap = pair[1].recorded_ms() - pair[0].recorded_ms();
        assert!(
            gap >= 300,
            "a pause of at least delayMinMs between sends: {gap} ms"
        );
    }
    // The receiver got each message once, in order.
    app.wait_for_nth_event(&b, "message_received", 4).await;
    let got: Vec<String> = app
        .instance_events(&b, "message_received")
        .await
        .iter()
        .map(|e| e.data["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids);
    // The queue is empty and the history shows them sent (or further).
    let q = app
        .get(
            &format!("/api/instances/{a}/queue"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    assert_eq!(q["messages"], json!([]));
    app.wait_for_projections().await;
    let page = app
        .get(
            &format!("/api/instances/{a}/chats/79000000102/messages"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    for m in page["messages"].as_array().unwrap() {
        assert_ne!(m["status"], "queued", "{m}");
    }
}

#[tokio::test]
async fn a_queued_message_is_listed_can_be_cancelled_and_shows_as_failed() {
    let app = TestApp::spawn().await;
    // The second message waits a minute behind the first.
    let a = paced_instance(&app, "79000000201", quick_policy(60_000)).await;
    let first = send(&app, &a, "79000000299", "goes at once").await;
    let second = send(&app, &a, "79000000299", "waits").await;
    app.wait_for_event(&a, "message_sent", |d| d["messageId"] == first.as_str())
        .await;
    let q = app
        .get(
            &format!("/api/instances/{a}/queue"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    let list = q["messages"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{q}");
    assert_eq!(list[0]["id"], second.as_str());
    assert_eq!(list[0]["position"], 1);
    assert_eq!(list[0]["body"], "waits");
    assert_eq!(list[0]["to"], "79000000299@s.whatsapp.net");
    app.wait_for_projections().await;
    let page = app
        .get(
            &format!("/api/instances/{a}/chats/79000000299/messages"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    let statuses: Vec<(&str, &str)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["messageId"].as_str().unwrap_or_default(),
                m["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(statuses.iter().any(|(_, s)| *s == "queued"), "{page}");
    // Another user cannot see or cancel it.
    let other = app.create_user("other@example.com").await;
    app.delete(
        &format!("/api/instances/{a}/queue/{second}"),
        As::Key(&other.api_key),
    )
    .await
    .expect_error(404);
    app.delete(
        &format!("/api/instances/{a}/queue/{second}"),
        As::Key(&app.admin.api_key),
    )
    .await
    .expect(200);
    let failed = app
        .wait_for_event(&a, "message_status", |d| d["messageId"] == second.as_str())
        .await;
    assert_eq!(failed.data["status"], "failed");
    assert_eq!(failed.data["reason"], "cancelled");
    app.delete(
        &format!("/api/instances/{a}/queue/{second}"),
        As::Key(&app.admin.api_key),
    )
    .await
    .expect_error(404);
    let q = app
        .get(
            &format!("/api/instances/{a}/queue"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    assert_eq!(q["messages"], json!([]));
    app.wait_for_projections().await;
    let page = app
        .get(
            &format!("/api/instances/{a}/chats/79000000299/messages"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    assert!(
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["status"] == "failed"),
        "{page}"
    );
    assert_eq!(app.instance_events(&a, "message_sent").await.len(), 1);
}

#[tokio::test]
async fn a_logout_and_a_delete_fail_the_queued_messages_with_a_reason() {
    let app = TestApp::spawn().await;
    for (phone, end, reason) in [
        ("79000000301", "logout", "logged_out"),
        ("79000000302", "delete", "instance_deleted"),
    ] {
        let a = paced_instance(&app, phone, quick_policy(60_000)).await;
        send(&app, &a, "79000000399", "goes at once").await;
        let waiting = send(&app, &a, "79000000399", "never goes").await;
        app.wait_for_event(&a, "message_sent", |_| true).await;
        if end == "logout" {
            app.post(
                &format!("/api/instances/{a}/logout"),
                As::Key(&app.admin.api_key),
                json!({}),
            )
            .await
            .expect(200);
        } else {
            app.delete(&format!("/api/instances/{a}"), As::Key(&app.admin.api_key))
                .await
                .expect(200);
        }
        let failed = app
            .wait_for_event(&a, "message_status", |d| d["messageId"] == waiting.as_str())
            .await;
        assert_eq!(failed.data["status"], "failed");
        assert_eq!(failed.data["reason"], reason);
        assert_eq!(app.instance_events(&a, "message_sent").await.len(), 1);
    }
}

#[tokio::test]
async fn a_repeated_paced_send_with_an_idempotency_key_is_queued_once() {
    let app = TestApp::spawn().await;
    let a = paced_instance(&app, "79000000401", quick_policy(60_000)).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let resp = app
            .client
            .post(app.url(&format!("/api/whatsapp/{a}/send")))
            .header("x-api-key", &app.admin.api_key)
            .header("Idempotency-Key", "order-7")
            .json(&json!({"phone": "79000000499", "message": "once"}))
            .send()
            .await
            .unwrap();
        let b = TestApp::read(resp).await.expect(200);
        answers.push(b["id"].as_str().unwrap().to_string());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(app.instance_events(&a, "message_queued").await.len(), 1);
}

// ---------------------------------------------------------------- kill -9

/// A gateway process on a data directory (the real binary, so it can be killed).
struct Process {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Process {
    async fn start(dir: &std::path::Path) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
            .env("WA_ENGINE", "sim")
            .env("WA_DATA_DIR", dir)
            .env("WA_LISTEN", format!("127.0.0.1:{port}"))
            .env("WA_ADMIN_PASSWORD", "admin-password")
            .env("WA_SIM_QR_INTERVAL_MS", "200")
            .env("WA_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let p = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let started = tokio::time::Instant::now();
        while p
            .client
            .get(format!("{}/healthz", p.base))
            .send()
            .await
            .is_err()
        {
            assert!(started.elapsed() < WAIT, "the gateway came up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    async fn key(&self) -> String {
        let login: Value = self
            .client
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"email": "admin@localhost", "password": "admin-password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["user"]["apiKey"].as_str().unwrap().to_string()
    }

    async fn call(&self, method: reqwest::Method, path: &str, key: &str, body: Value) -> Value {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", key);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    fn kill9(&mut self) {
        let pid = self.child.id().unwrap() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc_kill(pid, 9) };
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// The log of a data directory (read while or after the gateway runs).
async fn log_of(dir: &std::path::Path, instance: &str, event_type: &str) -> Vec<Value> {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.join("events.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT data FROM events WHERE instance_id = ? AND event_type = ? ORDER BY position",
    )
    .bind(instance)
    .bind(event_type)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

/// Polls the log until `count` events of the type are in it.
async fn wait_log(dir: &std::path::Path, instance: &str, event_type: &str, count: usize) {
    let started = tokio::time::Instant::now();
    loop {
        if log_of(dir, instance, event_type).await.len() >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{count} {event_type} for {instance}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn message_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn queued_messages_survive_kill_9_and_are_each_sent_exactly_once_in_order_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Process::start(dir.path()).await;
    let key = gw.key().await;
    let mut made = Vec::new();
    for name in ["sender", "receiver"] {
        let created = gw
            .call(
                reqwest::Method::POST,
                "/api/instances",
                &key,
                json!({"name": name}),
            )
            .await;
        made.push(created["id"].as_str().unwrap().to_string());
    }
    let (a, b) = (made[0].clone(), made[1].clone());
    for (id, phone) in [(&a, "79000000501"), (&b, "79000000502")] {
        wait_log(dir.path(), id, "qr_received", 1).await;
        gw.call(
            reqwest::Method::POST,
            &format!("/api/sim/instances/{id}/scan"),
            &key,
            json!({"phone": phone}),
        )
        .await;
        wait_log(dir.path(), id, "connection_opened", 1).await;
    }
    gw.call(
        reqwest::Method::PUT,
        &format!("/api/instances/{a}"),
        &key,
        json!({"sendPolicy": quick_policy(700)}),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let b = gw
            .call(
                reqwest::Method::POST,
                &format!("/api/whatsapp/{a}/send"),
                &key,
                json!({"phone": "79000000502", "message": format!("m{n}")}),
            )
            .await;
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    // Two went out; the rest wait in the queue. Kill it in the pause that follows.
    wait_log(dir.path(), &a, "message_sent", 2).await;
    wait_log(dir.path(), &b, "message_received", 2).await;
    gw.kill9();
    gw.child.wait().await.unwrap();
    let before = message_ids(&log_of(dir.path(), &a, "message_sent").await);
    assert!(
        before.len() < 6,
        "killed with messages still queued: {before:?}"
    );

    let mut gw = Process::start(dir.path()).await;
    wait_log(dir.path(), &a, "message_sent", 6).await;
    wait_log(dir.path(), &b, "message_received", 6).await;
    let key = gw.key().await;
    let q = gw
        .call(
            reqwest::Method::GET,
            &format!("/api/instances/{a}/queue"),
            &key,
            Value::Null,
        )
        .await;
    assert_eq!(q["messages"], json!([]));
    gw.kill9();
    gw.child.wait().await.unwrap();
    let sent = message_ids(&log_of(dir.path(), &a, "message_sent").await);
    assert_eq!(sent, ids, "each sent exactly once, in the order queued");
    let received = message_ids(&log_of(dir.path(), &b, "message_received").await);
    assert_eq!(received, ids, "each arrived exactly once, in order");
}
