//! Honest session health: a connection that stops answering keepalives is
//! closed and reconnected (the real client against the fake WhatsApp
//! server), an instance that cannot reach WhatsApp says why, the `health`
//! block of an instance, and sent messages without a receipt reported stuck.

use std::time::Duration;

use serde_json::{Value, json};
use wa_gateway::config::EngineKind;
use wa_gateway::store::RecordedEvent;
use wa_gateway::whatsapp::real::TransportHook;

use crate::fake_wa::FakeWa;
use crate::helpers::{As, TestApp, WAIT};
use crate::receiver::Receiver;

/// The real client's first connect after pairing waits ~10 s on purpose.
const LONG_WAIT: Duration = Duration::from_secs(60);

/// Waits for the `nth` (1-based) event of a type for an instance whose payload satisfies `pred`.
async fn nth_event_where(
    app: &TestApp,
    id: &str,
    event_type: &str,
    nth: usize,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> RecordedEvent {
    let mut sub = app.state.store.subscribe(0);
    let mut seen = 0;
    tokio::time::timeout(within, async {
        loop {
            let batch = sub.next_batch().await.expect("read the log").expect("open");
            for e in batch {
                if e.instance_id.as_deref() == Some(id)
                    && e.event_type == event_type
                    && pred(&e.data)
                {
                    seen += 1;
                    if seen == nth {
                        return RecordedEvent::clone(&e);
                    }
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {nth}th matching {event_type} for {id} within {within:?}"))
}

/// Reads the instance until its `health` satisfies `done` (the health book
/// follows the log asynchronously).
async fn instance_when(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let v = instance(app, id).await;
            if done(&v["health"]) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the health block caught up")
}

async fn instance(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/instances/{id}"), As::Key(&app.admin.api_key))
        .await
        .expect(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_that_stops_answering_keepalives_is_closed_and_reconnected() {
    const PHONE: &str = "79005550201";
    let fake = FakeWa::new();
    let factory = fake.factory();
    let app = TestApp::spawn_with(move |c| {
        c.engine = EngineKind::WhatsApp;
        c.whatsapp_transport = Some(TransportHook(factory));
        c.whatsapp_version = Some((2, 3000, 1_023_456_789));
        // The gateway's own keepalive, shortened for the test.
        c.keepalive_interval = Duration::from_millis(200);
        c.keepalive_timeout = Duration::from_millis(1000);
    })
    .await;
    let id = app
        .create_instance(&app.admin, json!({"name": "keepalive"}))
        .await;
    let qr = nth_event_where(&app, &id, "qr_received", 1, LONG_WAIT, |_| true).await;
    fake.scan(qr.data["qrCode"].as_str().unwrap(), PHONE)
        .await
        .expect("scan");
    nth_event_where(&app, &id, "connection_opened", 1, LONG_WAIT, |_| true).await;
    let healthy = instance(&app, &id).await;
    assert_eq!(healthy["status"], "connected");
    assert_eq!(healthy["health"]["reconnectsLastHour"], 0);
    let logins = fake.logins();

    // The socket stays up, but the server no longer answers pings.
    assert_eq!(fake.stop_answering_pings(PHONE), 1);
    let closed = nth_event_where(&app, &id, "connection_closed", 1, LONG_WAIT, |_| true).await;
    assert_eq!(
        closed.data["reason"], "keepalive_timeout",
        "{}",
        closed.data
    );
    assert_eq!(closed.data["willReconnect"], true);
    assert!(fake.pings_ignored() >= 1);

    // A new connection logs in, and answers pings again.
    nth_event_where(&app, &id, "connection_opened", 2, LONG_WAIT, |_| true).await;
    assert!(
        fake.logins() > logins,
        "a fresh login after the dead socket"
    );
    let after = instance_when(&app, &id, |h| h["reconnectsLastHour"] == 1).await;
    assert_eq!(after["status"], "connected", "{after}");
    assert!(after["health"]["lastSeenAt"].is_string(), "{after}");
    assert!(after["health"].get("lastConnectError").is_none(), "{after}");
    let problems = fake.problems();
    assert!(problems.is_empty(), "the fake saw: {problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_cannot_reach_whatsapp_says_why_in_plain_words() {
    let app = TestApp::spawn_with(|c| {
        c.engine = EngineKind::WhatsApp;
        // A name that never resolves (RFC 6761), over the real websocket transport.
        c.whatsapp_url = Some("ws://wa-gateway-test.invalid/ws/chat".into());
        c.whatsapp_version = Some((2, 3000, 1_023_456_789));
    })
    .await;
    let id = app
        .create_instance(&app.admin, json!({"name": "offline"}))
        .await;
    let failed = nth_event_where(&app, &id, "connect_failed", 1, LONG_WAIT, |_| true).await;
    assert_eq!(
        failed.data["error"], "DNS lookup failed for wa-gateway-test.invalid",
        "{}",
        failed.data
    );
    assert_eq!(failed.data["attempt"], 1);
    let shown = instance_when(&app, &id, |h| h["lastConnectError"].is_object()).await;
    assert_eq!(shown["status"], "connecting");
    let error = &shown["health"]["lastConnectError"];
    assert_eq!(
        error["message"],
        "DNS lookup failed for wa-gateway-test.invalid"
    );
    assert!(error["at"].is_string() && error["attempt"].as_u64() >= Some(1));
}

#[tokio::test]
async fn health_shows_reconnects_the_last_message_and_when_whatsapp_was_last_heard_from() {
    let app = TestApp::spawn().await;
    let key = app.admin.api_key.clone();
    let id = app.connected_instance(&app.admin, "79001240001").await;
    let fresh = instance(&app, &id).await;
    assert_eq!(fresh["health"]["reconnectsLastHour"], 0, "{fresh}");
    assert!(fresh["health"]["lastSeenAt"].is_string(), "{fresh}");
    assert!(fresh["health"].get("backoffMs").is_none(), "{fresh}");

    app.post(
        &format!("/api/whatsapp/{id}/send"),
        As::Key(&key),
        json!({"phone": "79001249999", "message": "hi"}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/api/sim/instances/{id}/drop"),
        As::Key(&key),
        json!({}),
    )
    .await
    .expect(200);
    app.wait_for_nth_event(&id, "connection_opened", 2).await;
    let sent = app.wait_for_event(&id, "message_sent", |_| true).await;
    let shown = instance_when(&app, &id, |h| {
        h["reconnectsLastHour"] == 1 && h["lastMessageAt"].is_string()
    })
    .await;
    let last_message =
        chrono::DateTime::parse_from_rfc3339(shown["health"]["lastMessageAt"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        last_message.timestamp_millis(),
        sent.recorded_at.timestamp_millis()
    );
    assert!(shown["health"].get("lastConnectError").is_none(), "{shown}");

    // Another user's instance has no health to show them.
    let other = app.create_user("other@test.local").await;
    app.get(&format!("/api/instances/{id}"), As::Key(&other.api_key))
        .await
        .expect_error(404);
}

#[tokio::test]
async fn a_message_without_a_receipt_shows_as_stuck_and_is_reported_once() {
    let app = TestApp::spawn_with(|c| c.stuck_after = Duration::from_millis(300)).await;
    let key = app.admin.api_key.clone();
    let id = app.connected_instance(&app.admin, "79001250001").await;
    // The instance opts in to `message_stuck` webhooks.
    let hook = Receiver::start().await;
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&key),
        json!({"webhookUrl": hook.url(), "webhookEnabled": true,
               "webhookSettings": {"webhookEvents": ["message_stuck"]}}),
    )
    .await
    .expect(200);
    let sim = app.state.sim.clone().expect("the sim engine");
    sim.set_unreachable("79001250009", true);
    let send = |to: &'static str| {
        let app = &app;
        let key = key.clone();
        let id = id.clone();
        async move {
            app.post(
                &format!("/api/whatsapp/{id}/send"),
                As::Key(&key),
                json!({"phone": to, "message": "are you there?"}),
            )
            .await
            .expect(200)["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let lost = send("79001250009").await;
    let fine = send("79001250002").await;
    app.wait_for_event(&id, "message_status", |d| {
        d["messageId"] == fine.as_str() && d["status"] == "delivered"
    })
    .await;

    let stuck = app
        .wait_for_event(&id, "message_stuck", |d| d["messageId"] == lost.as_str())
        .await;
    assert_eq!(stuck.data["to"], "79001250009@s.whatsapp.net");
    assert!(stuck.data["waitingSecs"].is_u64());
    let hit = hook.wait_until(|h| h.event() == "message_stuck").await;
    assert_eq!(hit.json["data"]["messageId"], lost.as_str());

    let list = app
        .get(
            &format!("/api/instances/{id}/stuck-messages"),
            As::Key(&key),
        )
        .await
        .expect(200);
    assert_eq!(list["stuckAfterSecs"], 0);
    let ids: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![lost.as_str()],
        "only the message without a receipt"
    );
    assert_eq!(list["messages"][0]["to"], "79001250009@s.whatsapp.net");
    assert_eq!(list["messages"][0]["type"], "text");

    // A later stuck message is reported by a later sweep; the first is not reported again.
    let later = send("79001250009").await;
    app.wait_for_event(&id, "message_stuck", |d| d["messageId"] == later.as_str())
        .await;
    let reports: Vec<String> = app
        .instance_events(&id, "message_stuck")
        .await
        .iter()
        .map(|e| e.data["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reports, vec![lost.clone(), later.clone()]);

    // The metric counts what is stuck now.
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines().any(|l| l == "wa_messages_stuck 2"),
        "the gauge shows both: {}",
        text.lines()
            .filter(|l| l.starts_with("wa_messages_stuck"))
            .collect::<Vec<_>>()
            .join("; ")
    );

    // Bad input is a clear 400; another user's instance is not found.
    app.get(
        &format!("/api/instances/{id}/stuck-messages?limit=0"),
        As::Key(&key),
    )
    .await
    .expect_error(400);
    let other = app.create_user("other2@test.local").await;
    app.get(
        &format!("/api/instances/{id}/stuck-messages"),
        As::Key(&other.api_key),
    )
    .await
    .expect_error(404);
}
