//! Webhook delivery against a real recording receiver on loopback.
//!
//! Every case is an `async fn case_…(app, …)` run by an embedded-backbone
//! `#[tokio::test]` below; a NATS variant is one more test calling the same
//! case with a NATS-backed `TestApp`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wa_gateway::Config;

use crate::helpers::{As, Creds, TestApp, WAIT};
use crate::receiver::{Hit, Receiver, Reply};

/// Test settings for webhook cases: one QR code per 30 s (a quiet log), a 2 s attempt timeout.
pub fn tune(c: &mut Config) {
    c.sim_qr_interval = Duration::from_secs(30);
    c.webhook_timeout = Duration::from_secs(2);
}

/// A gateway on the embedded backbone with [`tune`].
async fn embedded() -> TestApp {
    TestApp::spawn_with(tune).await
}

/// The same gateway on the NATS JetStream backbone (its own nats-server).
async fn on_nats() -> TestApp {
    TestApp::spawn_on_nats_with(tune).await
}

/// A Standard Webhooks secret (base64 after `whsec_`).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Creates an instance whose webhook points at `url` (retry every 200 ms, 3 retries), plus `extra`.
async fn hooked(app: &TestApp, who: &Creds, url: &str, extra: Value) -> String {
    let mut body = json!({
        "name": "hooked",
        "webhookUrl": url,
        "webhookEnabled": true,
        "retryInterval": 200,
        "maxRetries": 3,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.create_instance(who, body).await
}

/// Pairs an instance (sim scan) and waits until it is connected.
async fn pair(app: &TestApp, who: &Creds, id: &str, phone: &str) {
    app.wait_for_event(id, "qr_received", |_| true).await;
    app.post(
        &format!("/api/sim/instances/{id}/scan"),
        As::Key(&who.api_key),
        json!({"phone": phone}),
    )
    .await
    .expect(200);
    app.wait_for_event(id, "connection_opened", |_| true).await;
}

async fn send_text(app: &TestApp, who: &Creds, id: &str, text: &str) -> String {
    let b = app
        .post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&who.api_key),
            json!({"phone": "79002220002", "message": text}),
        )
        .await
        .expect(200);
    b["id"].as_str().unwrap().to_string()
}

async fn inbound(app: &TestApp, who: &Creds, id: &str, text: &str) {
    app.post(
        &format!("/api/sim/instances/{id}/inbound"),
        As::Key(&who.api_key),
        json!({"from": "79003330003", "body": text, "pushName": "Ivan"}),
    )
    .await
    .expect(200);
}

async fn delivery_log(app: &TestApp, who: &Creds, id: &str) -> Value {
    app.get(
        &format!("/api/instances/{id}/webhook-deliveries"),
        As::Key(&who.api_key),
    )
    .await
    .expect(200)
}

/// Waits until the webhook intake has applied the log up to `position`.
async fn wait_for_intake(app: &TestApp, position: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let cp = wa_gateway::backbone::load_checkpoint(app.state.webhooks.db(), "webhooks")
            .await
            .unwrap();
        if cp >= position {
            return;
        }
        assert!(Instant::now() < deadline, "the intake is stuck at {cp}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// Verifies both signatures of a hit with an implementation independent of the gateway's.
fn assert_signed(hit: &Hit, secret: &str) {
    let seed = hex::encode(hmac(secret.as_bytes(), &[&hit.body]));
    assert_eq!(hit.header("x-webhook-signature"), seed, "seed signature");
    let id = hit.header("webhook-id");
    let ts = hit.header("webhook-timestamp");
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac(
            &key,
            &[id.as_bytes(), b".", ts.as_bytes(), b".", &hit.body]
        ))
    );
    assert!(
        hit.header("webhook-signature")
            .split(' ')
            .any(|s| s == expected),
        "standard signature {} != {expected}",
        hit.header("webhook-signature")
    );
    let ts: i64 = ts.parse().expect("numeric webhook-timestamp");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 300);
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn is_api_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z') && s.len() == 24
}

// ---------------------------------------------------------------- cases

pub async fn case_each_event_type_arrives_with_the_seed_shape_and_both_signatures(app: &TestApp) {
    let r = Receiver::start().await;
    let who = app.admin.clone();
    let id = hooked(
        app,
        &who,
        &r.url(),
        json!({"notifyDelivery": true, "notifyRead": true, "webhookSecret": SECRET}),
    )
    .await;
    r.wait_until(|h| h.event() == "qr_received").await;
    pair(app, &who, &id, "79001110001").await;
    let message_id = send_text(app, &who, &id, "hello").await;
    r.wait_until(|h| h.event() == "message_status" && h.json["data"]["status"] == "read")
        .await;
    inbound(app, &who, &id, "hi there").await;
    r.wait_until(|h| h.event() == "message_received").await;
    app.post(
        &format!("/api/sim/instances/{id}/drop"),
        As::Key(&who.api_key),
        json!({}),
    )
    .await
    .expect(200);
    r.wait_until(|h| h.event() == "connection_closed").await;

    let expected_data = [
        ("qr_received", set(&["instanceId", "qrCode"])),
        ("connection_opened", set(&["instanceId"])),
        (
            "message_sent",
            set(&[
                "instanceId",
                "messageId",
                "to",
                "body",
                "type",
                "timestamp",
                "hasMedia",
            ]),
        ),
        (
            "message_status",
            set(&["instanceId", "messageId", "status", "from", "fromMe"]),
        ),
        (
            "message_received",
            set(&[
                "instanceId",
                "messageId",
                "from",
                "body",
                "type",
                "timestamp",
                "hasMedia",
                "pushName",
            ]),
        ),
        (
            "connection_closed",
            set(&["instanceId", "reason", "willReconnect"]),
        ),
    ];
    for (event, fields) in &expected_data {
        let hits = r.hits_of(event);
        assert!(!hits.is_empty(), "no {event} webhook");
        for h in hits {
            assert_eq!(
                keys(&h.json),
                set(&["event", "data", "timestamp"]),
                "{event}"
            );
            assert_eq!(&keys(&h.json["data"]), fields, "{event} data");
            assert_eq!(h.json["data"]["instanceId"], id.as_str());
            assert!(
                is_api_time(h.json["timestamp"].as_str().unwrap()),
                "{}",
                h.json
            );
            assert!(h.header("webhook-id").starts_with("msg_"));
            assert!(h.header("content-type").starts_with("application/json"));
            assert_signed(&h, SECRET);
        }
    }
    let sent = &r.hits_of("message_sent")[0].json["data"];
    assert_eq!(sent["messageId"], message_id.as_str());
    assert_eq!(sent["to"], "79002220002@s.whatsapp.net");
    assert_eq!(sent["body"], "hello");
    assert_eq!(sent["type"], "text");
    assert_eq!(sent["hasMedia"], false);
    assert!(sent["timestamp"].is_i64());
    let statuses: Vec<String> = r
        .hits_of("message_status")
        .iter()
        .map(|h| h.json["data"]["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["sent", "delivered", "read"]);
    let st = &r.hits_of("message_status")[0].json["data"];
    assert_eq!(st["messageId"], message_id.as_str());
    assert_eq!(st["fromMe"], true);
    let rec = &r.hits_of("message_received")[0].json["data"];
    assert_eq!(rec["from"], "79003330003@s.whatsapp.net");
    assert_eq!(rec["body"], "hi there");
    assert_eq!(rec["pushName"], "Ivan");
    assert_eq!(rec["hasMedia"], false);
    assert!(rec["type"].is_string() && rec["timestamp"].is_i64());
    let closed = &r.hits_of("connection_closed")[0].json["data"];
    assert!(closed["reason"].is_string() && closed["willReconnect"].is_boolean());
    assert!(
        r.hits_of("qr_received")[0].json["data"]["qrCode"]
            .as_str()
            .unwrap()
            .len()
            > 10
    );
    // Every webhook-id is unique per event.
    let ids: BTreeSet<String> = r.hits().iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(ids.len(), r.hits().len());
}

pub async fn case_filters_pick_the_events_and_a_settings_change_applies_to_later_events(
    app: &TestApp,
) {
    let r = Receiver::start().await;
    let who = app.admin.clone();
    let id = hooked(
        app,
        &who,
        &r.url(),
        json!({"notifyReceived": false, "notifySent": true, "notifyDelivery": false, "notifyRead": true}),
    )
    .await;
    pair(app, &who, &id, "79001110002").await;
    send_text(app, &who, &id, "filtered").await;
    app.wait_for_event(&id, "message_status", |d| d["status"] == "read")
        .await;
    inbound(app, &who, &id, "not sent").await;
    app.wait_for_event(&id, "message_received", |_| true).await;
    app.post(
        &format!("/api/sim/instances/{id}/drop"),
        As::Key(&who.api_key),
        json!({}),
    )
    .await
    .expect(200);
    // Deliveries of one instance go out in order: once the drop's webhook is
    // in, everything before it that was going to be sent has been.
    r.wait_until(|h| h.event() == "connection_closed").await;
    let seen: Vec<String> = r
        .hits()
        .iter()
        .filter(|h| h.event() != "qr_received")
        .map(|h| match h.event() {
            "message_status" => format!("status:{}", h.json["data"]["status"].as_str().unwrap()),
            e => e.to_string(),
        })
        .collect();
    assert_eq!(
        seen,
        [
            "connection_opened",
            "message_sent",
            "status:read",
            "connection_closed"
        ]
    );

    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&who.api_key),
        json!({"webhookSettings": {"notifyReceived": true}}),
    )
    .await
    .expect(200);
    app.wait_for_nth_event(&id, "connection_opened", 2).await;
    inbound(app, &who, &id, "now sent").await;
    let h = r.wait_until(|h| h.event() == "message_received").await;
    assert_eq!(h.json["data"]["body"], "now sent");
    assert_eq!(r.hits_of("message_received").len(), 1);
}

pub async fn case_a_failing_endpoint_is_retried_with_the_expected_waits(app: &TestApp) {
    let r = Receiver::start().await;
    r.script([Reply::status(500), Reply::status(500)]);
    let who = app.admin.clone();
    let id = hooked(
        app,
        &who,
        &r.url(),
        json!({"retryInterval": 200, "maxRetries": 3}),
    )
    .await;
    let hits = r.wait_for(3).await;
    let wid = hits[0].header("webhook-id");
    assert!(hits[..3].iter().all(|h| h.header("webhook-id") == wid));
    assert!(hits[..3].iter().all(|h| h.body == hits[0].body));
    let first = hits[1].at - hits[0].at;
    let second = hits[2].at - hits[1].at;
    assert!(
        first >= Duration::from_millis(195) && first < Duration::from_millis(900),
        "first retry after {first:?}, expected 200 ms"
    );
    assert!(
        second >= Duration::from_millis(395) && second < Duration::from_millis(1200),
        "second retry after {second:?}, expected 400-500 ms"
    );
    let delivered = app.wait_for_event(&id, "webhook_delivered", |_| true).await;
    assert_eq!(delivered.data["attempt"], 3);
    assert_eq!(delivered.data["statusCode"], 200);
    assert_eq!(delivered.data["webhookId"], wid.as_str());
    let failed = app.instance_events(&id, "webhook_failed").await;
    assert_eq!(failed.len(), 2);
    for (n, f) in failed.iter().enumerate() {
        assert_eq!(f.data["attempt"], n as u64 + 1);
        assert_eq!(f.data["statusCode"], 500);
        assert_eq!(f.data["willRetry"], true);
        assert!(f.data["durationMs"].as_f64().unwrap() >= 0.0);
    }
}

pub async fn case_exhausted_retries_fail_visibly_and_a_manual_retry_delivers(app: &TestApp) {
    let r = Receiver::start().await;
    r.set_fallback(Reply::status(500));
    let who = app.create_user("owner-retry@test.local").await;
    let other = app.create_user("other-retry@test.local").await;
    let id = hooked(
        app,
        &who,
        &r.url(),
        json!({"retryInterval": 100, "maxRetries": 1}),
    )
    .await;
    let last = app
        .wait_for_event(&id, "webhook_failed", |d| d["willRetry"] == false)
        .await;
    assert_eq!(last.data["attempt"], 2);
    let delivery_id = last.data["deliveryId"].as_str().unwrap().to_string();

    let log = delivery_log(app, &who, &id).await;
    assert_eq!(log["pagination"]["total"], 1);
    assert_eq!(log["pagination"]["hasMore"], false);
    let d = &log["deliveries"][0];
    assert_eq!(d["id"], delivery_id.as_str());
    assert_eq!(d["event"], "qr_received");
    assert_eq!(d["status"], "failed");
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["lastResponseCode"], 500);
    assert!(d["nextAttemptAt"].is_null());
    assert_eq!(d["webhookId"], r.hits()[0].header("webhook-id").as_str());

    // Someone else's instance does not exist for them.
    app.get(
        &format!("/api/instances/{id}/webhook-deliveries"),
        As::Key(&other.api_key),
    )
    .await
    .expect_error(404);
    let retry = format!("/api/instances/{id}/webhook-deliveries/{delivery_id}/retry");
    app.post(&retry, As::Key(&other.api_key), json!({}))
        .await
        .expect_error(404);
    app.post(
        &format!("/api/instances/{id}/webhook-deliveries/nope/retry"),
        As::Key(&who.api_key),
        json!({}),
    )
    .await
    .expect_error(404);
    app.get(
        &format!("/api/instances/{id}/webhook-deliveries?limit=0"),
        As::Key(&who.api_key),
    )
    .await
    .expect_error(400);

    r.set_fallback(Reply::ok());
    let queued = app
        .post(&retry, As::Key(&who.api_key), json!({}))
        .await
        .expect(200);
    assert_eq!(queued["id"], delivery_id.as_str());
    let ok = app
        .wait_for_event(&id, "webhook_delivered", |d| {
            d["deliveryId"] == delivery_id.as_str()
        })
        .await;
    assert_eq!(ok.data["attempt"], 3);
    let hits = r.wait_for(3).await;
    assert_eq!(hits[2].header("webhook-id"), hits[0].header("webhook-id"));
    let d = &delivery_log(app, &who, &id).await["deliveries"][0];
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["lastResponseCode"], 200);
    // The admin sees it too.
    app.get(
        &format!("/api/instances/{id}/webhook-deliveries?status=delivered"),
        As::Key(&app.admin.api_key),
    )
    .await
    .expect(200);
}

pub async fn case_a_receiver_that_is_down_then_up_gets_the_delivery(app: &TestApp) {
    let port = Receiver::reserve_port();
    let who = app.admin.clone();
    let url = format!("http://127.0.0.1:{port}/hook");
    let id = hooked(
        app,
        &who,
        &url,
        json!({"retryInterval": 200, "maxRetries": 10}),
    )
    .await;
    let failed = app.wait_for_event(&id, "webhook_failed", |_| true).await;
    assert_eq!(failed.data["error"], "connection error");
    assert!(failed.data["statusCode"].is_null());
    let r = Receiver::start_on(port).await;
    let hit = r.wait_until(|h| h.event() == "qr_received").await;
    let ok = app.wait_for_event(&id, "webhook_delivered", |_| true).await;
    assert_eq!(ok.data["webhookId"], hit.header("webhook-id").as_str());
    assert!(ok.data["attempt"].as_u64().unwrap() >= 2);
}

pub async fn case_a_delivery_pending_across_a_restart_is_delivered_after_it(
    app: TestApp,
) -> TestApp {
    let r = Receiver::start().await;
    r.set_fallback(Reply::status(503));
    let who = app.admin.clone();
    let id = hooked(
        &app,
        &who,
        &r.url(),
        json!({"retryInterval": 300, "maxRetries": 10}),
    )
    .await;
    let failed = app.wait_for_event(&id, "webhook_failed", |_| true).await;
    let delivery_id = failed.data["deliveryId"].as_str().unwrap().to_string();
    let app = app.restart().await;
    r.set_fallback(Reply::ok());
    let ok = app
        .wait_for_event(&id, "webhook_delivered", |d| {
            d["deliveryId"] == delivery_id.as_str()
        })
        .await;
    let first = &r.hits()[0];
    let delivered = r.wait_until(|h| h.answered == 200).await;
    assert_eq!(delivered.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(delivered.body, first.body);
    assert_eq!(ok.data["webhookId"], first.header("webhook-id").as_str());
    app
}

pub async fn case_retry_after_is_honoured(app: &TestApp) {
    let r = Receiver::start().await;
    r.script([Reply::status(429).header("Retry-After", "1")]);
    let who = app.admin.clone();
    let id = hooked(
        app,
        &who,
        &r.url(),
        json!({"retryInterval": 100, "maxRetries": 3}),
    )
    .await;
    let hits = r.wait_for(2).await;
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= Duration::from_millis(990),
        "retried after {waited:?} despite Retry-After: 1"
    );
    let failed = app.wait_for_event(&id, "webhook_failed", |_| true).await;
    assert_eq!(failed.data["statusCode"], 429);
    app.wait_for_event(&id, "webhook_delivered", |_| true).await;
}

pub async fn case_a_410_disables_the_webhook_and_stops_deliveries(app: &TestApp) {
    let r = Receiver::start().await;
    r.set_fallback(Reply::status(410));
    let who = app.admin.clone();
    let id = hooked(app, &who, &r.url(), json!({})).await;
    let disabled = app.wait_for_event(&id, "webhook_disabled", |_| true).await;
    assert!(disabled.data["reason"].as_str().unwrap().contains("410"));
    let failed = app.wait_for_event(&id, "webhook_failed", |_| true).await;
    assert_eq!(failed.data["statusCode"], 410);
    assert_eq!(failed.data["willRetry"], false);
    let inst = app
        .get(&format!("/api/instances/{id}"), As::Key(&who.api_key))
        .await
        .expect(200);
    assert_eq!(inst["webhookEnabled"], false);
    // Later events are not delivered.
    pair(app, &who, &id, "79001110008").await;
    let opened = app.wait_for_event(&id, "connection_opened", |_| true).await;
    wait_for_intake(app, opened.position).await;
    let log = delivery_log(app, &who, &id).await;
    assert_eq!(log["pagination"]["total"], 1, "{log}");
    assert_eq!(log["deliveries"][0]["status"], "failed");
    assert_eq!(log["deliveries"][0]["lastResponseCode"], 410);
    assert_eq!(r.hits().len(), 1);
    // A manual retry needs the webhook switched back on.
    let retry = format!(
        "/api/instances/{id}/webhook-deliveries/{}/retry",
        log["deliveries"][0]["id"].as_str().unwrap()
    );
    app.post(&retry, As::Key(&who.api_key), json!({}))
        .await
        .expect_error(409);
}

pub async fn case_a_dead_or_hanging_endpoint_does_not_delay_a_healthy_one(app: &TestApp) {
    let who = app.admin.clone();
    let hanging = Receiver::start().await;
    hanging.set_fallback(Reply::ok().after(Duration::from_secs(30)));
    let dead = format!("http://127.0.0.1:{}/hook", Receiver::reserve_port());
    let a = hooked(app, &who, &hanging.url(), json!({})).await;
    let b = hooked(app, &who, &dead, json!({})).await;
    hanging.wait_for(1).await;
    app.wait_for_event(&b, "webhook_failed", |_| true).await;

    let healthy = Receiver::start().await;
    let started = Instant::now();
    let c = hooked(app, &who, &healthy.url(), json!({})).await;
    let hit = healthy.wait_until(|h| h.event() == "qr_received").await;
    let took = hit.at - started;
    assert!(
        took < Duration::from_millis(1500),
        "the healthy endpoint waited {took:?}"
    );
    assert_eq!(hit.json["data"]["instanceId"], c.as_str());
    // The hanging one is still hanging (timeout 2 s) or only just timed out.
    let a_events = app.instance_events(&a, "webhook_delivered").await;
    assert!(a_events.is_empty());
}

pub async fn case_one_instance_deliveries_arrive_in_event_order(app: &TestApp) {
    let r = Receiver::start().await;
    // qr_received, connection_opened, 2 messages fine, then one 500 (retried in place).
    r.script([
        Reply::ok(),
        Reply::ok(),
        Reply::ok(),
        Reply::ok(),
        Reply::status(500),
    ]);
    let who = app.admin.clone();
    let id = hooked(
        app,
        &who,
        &r.url(),
        json!({"notifyDelivery": false, "notifyRead": false, "retryInterval": 100}),
    )
    .await;
    pair(app, &who, &id, "79001110010").await;
    let mut sent = Vec::new();
    for n in 0..20 {
        sent.push(send_text(app, &who, &id, &format!("message {n}")).await);
    }
    let mut rx_order = Vec::new();
    let deadline = Instant::now() + WAIT;
    while rx_order.len() < sent.len() {
        assert!(Instant::now() < deadline, "only {} arrived", rx_order.len());
        r.wait_for(r.hits().len() + 1).await;
        rx_order = r
            .hits_of("message_sent")
            .iter()
            .filter(|h| h.answered == 200)
            .map(|h| h.json["data"]["messageId"].as_str().unwrap().to_string())
            .collect();
    }
    let log_order: Vec<String> = app
        .instance_events(&id, "message_sent")
        .await
        .iter()
        .map(|e| e.data["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rx_order, log_order);
    // The failed one was retried before anything after it went out.
    let all: Vec<String> = r
        .hits_of("message_sent")
        .iter()
        .map(|h| h.json["data"]["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 21);
    assert_eq!(all[2], all[3]);
}

// ---------------------------------------------------------------- embedded backbone

#[tokio::test]
async fn each_event_type_arrives_with_the_seed_shape_and_both_signatures() {
    case_each_event_type_arrives_with_the_seed_shape_and_both_signatures(&embedded().await).await;
}

#[tokio::test]
async fn filters_pick_the_events_and_a_settings_change_applies_to_later_events() {
    case_filters_pick_the_events_and_a_settings_change_applies_to_later_events(&embedded().await)
        .await;
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_the_expected_waits() {
    case_a_failing_endpoint_is_retried_with_the_expected_waits(&embedded().await).await;
}

#[tokio::test]
async fn exhausted_retries_fail_visibly_and_a_manual_retry_delivers() {
    case_exhausted_retries_fail_visibly_and_a_manual_retry_delivers(&embedded().await).await;
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_the_delivery() {
    case_a_receiver_that_is_down_then_up_gets_the_delivery(&embedded().await).await;
}

#[tokio::test]
async fn a_delivery_pending_across_a_restart_is_delivered_after_it() {
    case_a_delivery_pending_across_a_restart_is_delivered_after_it(embedded().await).await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    case_retry_after_is_honoured(&embedded().await).await;
}

#[tokio::test]
async fn a_410_disables_the_webhook_and_stops_deliveries() {
    case_a_410_disables_the_webhook_and_stops_deliveries(&embedded().await).await;
}

#[tokio::test]
async fn a_dead_or_hanging_endpoint_does_not_delay_a_healthy_one() {
    case_a_dead_or_hanging_endpoint_does_not_delay_a_healthy_one(&embedded().await).await;
}

#[tokio::test]
async fn one_instance_deliveries_arrive_in_event_order() {
    case_one_instance_deliveries_arrive_in_event_order(&embedded().await).await;
}

pub async fn case_private_targets_are_refused_at_send_time_unless_allowed(
    mut app: TestApp,
) -> TestApp {
    // Saved while private targets were allowed, sent after they no longer are.
    let r = Receiver::start().await;
    r.set_fallback(Reply::status(500));
    let who = app.admin.clone();
    let id = hooked(
        &app,
        &who,
        &r.url(),
        json!({"retryInterval": 300, "maxRetries": 10}),
    )
    .await;
    app.wait_for_event(&id, "webhook_failed", |_| true).await;
    app.stop().await;
    // From now on the receiver would accept: any contact would show as a 200.
    r.set_fallback(Reply::ok());
    app.config.webhook_allow_private = false;
    let app = app.restart().await;
    let refused = app
        .wait_for_event(&id, "webhook_failed", |d| {
            d["error"].as_str().is_some_and(|e| e.contains("private"))
        })
        .await;
    assert_eq!(refused.data["willRetry"], false);
    assert!(refused.data["statusCode"].is_null());
    assert!(
        r.hits().iter().all(|h| h.answered == 500),
        "a refused target was contacted"
    );
    assert!(
        app.instance_events(&id, "webhook_delivered")
            .await
            .is_empty()
    );
    app
}

#[tokio::test]
async fn private_targets_are_refused_at_send_time_unless_allowed() {
    case_private_targets_are_refused_at_send_time_unless_allowed(embedded().await).await;
}

/// The gateway binary on `dir`, listening on a free port; returns it and its base URL and API key.
async fn gateway_process(dir: &std::path::Path) -> (tokio::process::Child, String, String) {
    let port = Receiver::reserve_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .env("WA_ENGINE", "sim")
        .env("WA_DATA_DIR", dir)
        .env("WA_LISTEN", format!("127.0.0.1:{port}"))
        .env("WA_ADMIN_PASSWORD", "admin-password")
        .env("WA_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("WA_SIM_QR_INTERVAL_MS", "30000")
        .env("WA_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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
            return (child, base, key);
        }
        assert!(Instant::now() < deadline, "the gateway did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pending_delivery_survives_a_kill_9_and_is_sent_with_the_same_webhook_id() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start().await;
    r.set_fallback(Reply::status(503));
    let (mut child, base, key) = gateway_process(dir.path()).await;
    let created: Value = reqwest::Client::new()
        .post(format!("{base}/api/instances"))
        .header("x-api-key", &key)
        .json(&json!({"name": "killed", "webhookUrl": r.url(), "retryInterval": 300, "maxRetries": 20}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(created["id"].is_string(), "{created}");
    let first = r.wait_for(1).await[0].clone();
    child.kill().await.unwrap(); // SIGKILL: no shutdown code runs
    r.set_fallback(Reply::ok());
    let (_again, _, _) = gateway_process(dir.path()).await;
    let delivered = r
        .wait_until(|h| h.answered == 200 && h.event() == "qr_received")
        .await;
    assert_eq!(delivered.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(delivered.body, first.body);
}

// ---------------------------------------------------------------- NATS JetStream backbone

#[tokio::test]
async fn on_nats_each_event_type_arrives_with_the_seed_shape_and_both_signatures() {
    case_each_event_type_arrives_with_the_seed_shape_and_both_signatures(&on_nats().await).await;
}

#[tokio::test]
async fn on_nats_filters_pick_the_events_and_a_settings_change_applies_to_later_events() {
    case_filters_pick_the_events_and_a_settings_change_applies_to_later_events(&on_nats().await)
        .await;
}

#[tokio::test]
async fn on_nats_a_failing_endpoint_is_retried_with_the_expected_waits() {
    case_a_failing_endpoint_is_retried_with_the_expected_waits(&on_nats().await).await;
}

#[tokio::test]
async fn on_nats_exhausted_retries_fail_visibly_and_a_manual_retry_delivers() {
    case_exhausted_retries_fail_visibly_and_a_manual_retry_delivers(&on_nats().await).await;
}

#[tokio::test]
async fn on_nats_a_receiver_that_is_down_then_up_gets_the_delivery() {
    case_a_receiver_that_is_down_then_up_gets_the_delivery(&on_nats().await).await;
}

#[tokio::test]
async fn on_nats_a_delivery_pending_across_a_restart_is_delivered_after_it() {
    case_a_delivery_pending_across_a_restart_is_delivered_after_it(on_nats().await).await;
}

#[tokio::test]
async fn on_nats_retry_after_is_honoured() {
    case_retry_after_is_honoured(&on_nats().await).await;
}

#[tokio::test]
async fn on_nats_a_410_disables_the_webhook_and_stops_deliveries() {
    case_a_410_disables_the_webhook_and_stops_deliveries(&on_nats().await).await;
}

#[tokio::test]
async fn on_nats_a_dead_or_hanging_endpoint_does_not_delay_a_healthy_one() {
    case_a_dead_or_hanging_endpoint_does_not_delay_a_healthy_one(&on_nats().await).await;
}

#[tokio::test]
async fn on_nats_one_instance_deliveries_arrive_in_event_order() {
    case_one_instance_deliveries_arrive_in_event_order(&on_nats().await).await;
}
