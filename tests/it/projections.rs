//! Activity log, message history and usage statistics, through the HTTP API
//! with the simulated network. Each case is an `async fn case_…(&TestApp)`
//! so the same suite runs on every backbone: the embedded one below; a NATS
//! variant is one more `#[tokio::test]` per case.

use chrono::{Days, Utc};
use poem::listener::{Acceptor, Listener, TcpListener};
use serde_json::{Value, json};
use wa_gateway::events::{MessageSent, MessageStatus, WebhookDelivered};
use wa_gateway::store::{Append, ExpectedVersion, Metadata, StreamId, open_sqlite};

use crate::helpers::{As, Creds, TestApp};

// ---------------------------------------------------------------- embedded

#[tokio::test]
async fn activity_log_lists_instance_events_newest_first_with_filters_and_pages() {
    case_activity_log(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn message_history_shows_a_chat_with_statuses_that_follow_receipts() {
    case_message_history(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn message_status_never_goes_backwards_whatever_the_order_of_events() {
    case_status_order(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn usage_statistics_count_a_scripted_session_exactly() {
    case_usage_statistics(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn statistics_periods_are_whole_utc_days_ending_today() {
    case_period_boundaries(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn bad_queries_are_400_and_other_users_instances_404_and_change_nothing() {
    case_bad_queries(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn authenticated_requests_are_recorded_with_their_route_template() {
    case_api_calls_recorded(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn a_rebuild_from_the_log_gives_tables_identical_to_the_incremental_ones() {
    case_rebuild(&TestApp::spawn().await).await;
}

// ---------------------------------------------------------------- NATS JetStream backbone

#[tokio::test]
async fn on_nats_activity_log() {
    case_activity_log(&TestApp::spawn_on_nats().await).await;
}

#[tokio::test]
async fn on_nats_message_history() {
    case_message_history(&TestApp::spawn_on_nats().await).await;
}

#[tokio::test]
async fn on_nats_status_order() {
    case_status_order(&TestApp::spawn_on_nats().await).await;
}

#[tokio::test]
async fn on_nats_usage_statistics() {
    case_usage_statistics(&TestApp::spawn_on_nats().await).await;
}

#[tokio::test]
async fn on_nats_period_boundaries() {
    case_period_boundaries(&TestApp::spawn_on_nats().await).await;
}

#[tokio::test]
async fn on_nats_bad_queries() {
    case_bad_queries(&TestApp::spawn_on_nats().await).await;
}

#[tokio::test]
async fn on_nats_api_calls_recorded() {
    case_api_calls_recorded(&TestApp::spawn_on_nats().await).await;
}

#[tokio::test]
async fn on_nats_rebuild() {
    case_rebuild(&TestApp::spawn_on_nats().await).await;
}

// ---------------------------------------------------------------- helpers

/// Today (UTC) as the statistics show a day.
fn day_string(days_ago: u64) -> String {
    let d = Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days_ago))
        .unwrap();
    format!("{}T00:00:00.000Z", d.format("%Y-%m-%d"))
}

/// Serves `body` with `content_type` at `http://127.0.0.1:<port>/media`.
async fn media_server(body: Vec<u8>, content_type: &'static str) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0]
        .as_socket_addr()
        .copied()
        .expect("a socket address");
    let ep = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type(content_type)
            .body(body.clone())
    });
    let route = poem::Route::new().at("/media", ep);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(route));
    format!("http://{addr}/media")
}

async fn send_text(app: &TestApp, who: &Creds, instance: &str, phone: &str, text: &str) -> String {
    app.post(
        &format!("/api/whatsapp/{instance}/send"),
        As::Key(&who.api_key),
        json!({"phone": phone, "message": text}),
    )
    .await
    .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn send_file(
    app: &TestApp,
    who: &Creds,
    instance: &str,
    phone: &str,
    bytes: Vec<u8>,
) -> String {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("report.pdf")
        .mime_str("application/pdf")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("phone", phone.to_string())
        .text("caption", "the report")
        .part("file", part);
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{instance}/send-file")))
        .header("x-api-key", &who.api_key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    TestApp::read(resp).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn inbound(app: &TestApp, who: &Creds, instance: &str, from: &str, body: &str) -> String {
    app.post(
        &format!("/api/sim/instances/{instance}/inbound"),
        As::Key(&who.api_key),
        json!({"from": from, "body": body, "pushName": "Ivan"}),
    )
    .await
    .expect(200)["messageId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// GETs `path` once the projections have caught up with the log.
async fn read_view(app: &TestApp, path: &str, who: As<'_>) -> Value {
    app.wait_for_projections().await;
    app.get(path, who).await.expect(200)
}

fn counters(v: &Value, fields: &[&str]) -> Vec<i64> {
    fields
        .iter()
        .map(|f| {
            v[*f]
                .as_i64()
                .unwrap_or_else(|| panic!("{f} missing in {v}"))
        })
        .collect()
}

const USAGE: &[&str] = &[
    "messagesSent",
    "messagesReceived",
    "mediaSent",
    "mediaReceived",
    "totalMediaSize",
    "apiCalls",
    "webhookSent",
];

// ---------------------------------------------------------------- cases

async fn case_activity_log(app: &TestApp) {
    let user = app.create_user("activity@test.local").await;
    let id = app.connected_instance(&user, "79000000101").await;
    for n in 0..3 {
        send_text(app, &user, &id, "79001234567", &format!("hello {n}")).await;
    }
    app.wait_for_nth_event(&id, "message_status", 9).await;
    let base = format!("/api/instances/{id}/activity");

    let all = read_view(app, &format!("{base}?limit=1000"), As::Bearer(&user.token)).await;
    // Every instance event except api_called, newest first.
    let expected: Vec<(String, String)> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.instance_id.as_deref() == Some(&id) && e.event_type != "api_called")
        .rev()
        .map(|e| (e.event_id, e.event_type))
        .collect();
    let logs = all["logs"].as_array().unwrap();
    let got: Vec<(String, String)> = logs
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        all["pagination"],
        json!({"total": expected.len(), "limit": 1000, "skip": 0, "hasMore": false})
    );
    let actions: Vec<&str> = got.iter().map(|(_, a)| a.as_str()).collect();
    for a in [
        "instance_created",
        "qr_received",
        "connection_opened",
        "message_sent",
        "message_status",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert_eq!(actions.last(), Some(&"instance_created"));
    let entry = &logs[0];
    assert_eq!(entry["instanceId"], id);
    assert!(entry["details"].is_object());
    assert!(entry["details"].get("instanceId").is_none());
    let created = logs.last().unwrap();
    assert_eq!(created["details"]["name"], "inst 79000000101");
    let qr = logs.iter().find(|l| l["action"] == "qr_received").unwrap();
    assert_eq!(qr["details"], json!({}), "QR codes stay out of the log");
    let stamp = entry["createdAt"].as_str().unwrap();
    assert!(
        stamp.ends_with('Z') && stamp.len() == 24,
        "createdAt {stamp}"
    );

    // Default limit 100, with the API key.
    let page = app.get(&base, As::Key(&user.api_key)).await.expect(200);
    assert_eq!(page["pagination"]["limit"], 100);

    // Action filter.
    let filtered = app
        .get(
            &format!("{base}?actions=connection_opened,%20message_sent"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    assert_eq!(filtered["pagination"]["total"], 4);
    assert!(
        filtered["logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["action"] == "connection_opened" || l["action"] == "message_sent")
    );
    // Filters on rare actions only and on frequent ones only (they read
    // different indexes) list exactly the entries of those actions, newest first.
    for (filter, wanted) in [
        (
            "qr_received,connection_opened",
            &["qr_received", "connection_opened"][..],
        ),
        ("message_status", &["message_status"][..]),
    ] {
        let page = read_view(
            app,
            &format!("{base}?limit=1000&actions={filter}"),
            As::Bearer(&user.token),
        )
        .await;
        let ids: Vec<&str> = page["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap())
            .collect();
        let expected_ids: Vec<&str> = got
            .iter()
            .filter(|(_, a)| wanted.contains(&a.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        assert!(!expected_ids.is_empty(), "{filter}");
        assert_eq!(ids, expected_ids, "{filter}");
        assert_eq!(page["pagination"]["total"], expected_ids.len(), "{filter}");
    }

    // Pages.
    let p = app
        .get(&format!("{base}?limit=2&skip=1"), As::Key(&user.api_key))
        .await
        .expect(200);
    assert_eq!(p["logs"].as_array().unwrap().as_slice(), &logs[1..3]);
    assert_eq!(
        p["pagination"],
        json!({"total": expected.len(), "limit": 2, "skip": 1, "hasMore": true})
    );
    let last = app
        .get(
            &format!("{base}?limit=2&skip={}", expected.len() - 1),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    assert_eq!(last["logs"].as_array().unwrap().len(), 1);
    assert_eq!(last["pagination"]["hasMore"], false);

    // Date range: inclusive bounds on createdAt.
    let pivot = logs[2]["createdAt"].as_str().unwrap();
    let since = app
        .get(
            &format!("{base}?limit=1000&startDate={pivot}"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    let at_or_after = logs
        .iter()
        .filter(|l| l["createdAt"].as_str().unwrap() >= pivot)
        .count();
    assert_eq!(since["pagination"]["total"], at_or_after);
    let until = app
        .get(
            &format!("{base}?limit=1000&endDate={pivot}"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    let at_or_before = logs
        .iter()
        .filter(|l| l["createdAt"].as_str().unwrap() <= pivot)
        .count();
    assert_eq!(until["pagination"]["total"], at_or_before);
    let yesterday = &day_string(1)[..10];
    let none = app
        .get(
            &format!("{base}?endDate={yesterday}"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    assert_eq!(none["pagination"]["total"], 0);
    assert_eq!(none["logs"], json!([]));
    let today = &day_string(0)[..10];
    let whole_day = app
        .get(
            &format!("{base}?limit=1000&startDate={today}&endDate={today}"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    assert_eq!(whole_day["pagination"]["total"], expected.len());
}

async fn case_message_history(app: &TestApp) {
    let user = app.create_user("history@test.local").await;
    let id = app.connected_instance(&user, "79000000201").await;
    let peer = "79001230001";
    let first = send_text(app, &user, &id, peer, "first").await;
    let second = send_text(app, &user, &id, &format!("+{peer}"), "second").await;
    send_text(app, &user, &id, "79001239999", "elsewhere").await;
    app.wait_for_nth_event(&id, "message_status", 9).await;
    let incoming = inbound(app, &user, &id, peer, "answer").await;
    app.wait_for_event(&id, "message_received", |_| true).await;

    let base = format!("/api/instances/{id}/chats/{peer}/messages");
    let page = read_view(app, &base, As::Key(&user.api_key)).await;
    assert_eq!(
        page["pagination"],
        json!({"total": 3, "limit": 50, "skip": 0, "hasMore": false})
    );
    let msgs = page["messages"].as_array().unwrap();
    let jid = format!("{peer}@s.whatsapp.net");
    assert_eq!(msgs[0]["messageId"], incoming);
    assert_eq!(msgs[0]["fromMe"], false);
    assert_eq!(msgs[0]["messageType"], "conversation");
    assert_eq!(msgs[0]["content"], "answer");
    assert_eq!(msgs[0]["status"], "received");
    assert_eq!(msgs[1]["messageId"], second);
    assert_eq!(msgs[2]["messageId"], first);
    for m in &msgs[1..] {
        assert_eq!(m["fromMe"], true);
        assert_eq!(m["messageType"], "text");
        assert_eq!(m["hasMedia"], false);
        assert_eq!(m["status"], "read", "status follows the receipts: {m}");
    }
    assert_eq!(msgs[2]["content"], "first");
    for m in msgs {
        assert_eq!(m["instanceId"], id);
        assert_eq!(m["remoteJid"], jid);
        assert!(m["id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(m["createdAt"].as_str().unwrap().ends_with('Z'));
        let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 10, "fields: {keys:?}");
    }

    // A full JID names the same chat; the bearer token works too.
    let by_jid = app
        .get(
            &format!("/api/instances/{id}/chats/{jid}/messages"),
            As::Bearer(&user.token),
        )
        .await
        .expect(200);
    assert_eq!(by_jid["messages"], page["messages"]);

    // Pages and dates.
    let p = app
        .get(&format!("{base}?limit=1&skip=1"), As::Key(&user.api_key))
        .await
        .expect(200);
    assert_eq!(p["messages"].as_array().unwrap().as_slice(), &msgs[1..2]);
    assert_eq!(
        p["pagination"],
        json!({"total": 3, "limit": 1, "skip": 1, "hasMore": true})
    );
    let yesterday = &day_string(1)[..10];
    let old = app
        .get(
            &format!("{base}?endDate={yesterday}"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    assert_eq!(old["pagination"]["total"], 0);
    let since = msgs[1]["createdAt"].as_str().unwrap();
    let recent = app
        .get(&format!("{base}?startDate={since}"), As::Key(&user.api_key))
        .await
        .expect(200);
    let expected = msgs
        .iter()
        .filter(|m| m["createdAt"].as_str().unwrap() >= since)
        .count();
    assert_eq!(recent["pagination"]["total"], expected);

    // Another chat, and a chat with nothing.
    let other = app
        .get(
            &format!("/api/instances/{id}/chats/79001239999/messages"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    assert_eq!(other["pagination"]["total"], 1);
    let empty = app
        .get(
            &format!("/api/instances/{id}/chats/79005550000/messages"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    assert_eq!(empty["messages"], json!([]));
    assert_eq!(empty["pagination"]["total"], 0);
}

async fn case_status_order(app: &TestApp) {
    let user = app.create_user("order@test.local").await;
    // An instance that is never paired: only the events below concern its messages.
    let id = app
        .create_instance(&user, json!({"name": "odd order"}))
        .await;
    let chat = "79004440000@s.whatsapp.net";
    let sent = |mid: &str| MessageSent {
        instance_id: id.as_str().into(),
        message_id: mid.into(),
        to: chat.into(),
        body: format!("body {mid}"),
        message_type: wa_gateway::events::SentKind::Text,
        timestamp: 0,
        has_media: false,
        media: None,
        extras: Default::default(),
    };
    let status = |mid: &str, s: &str| MessageStatus {
        instance_id: id.as_str().into(),
        message_id: mid.into(),
        status: wa_gateway::events::DeliveryStatus::parse(s).expect("a status"),
        from: chat.into(),
        from_me: true,
        reason: None,
    };
    let scripts: Vec<Vec<wa_gateway::events::Event>> = vec![
        // a read logged before the message changes nothing (the supervisor
        // never logs one: it holds receipts until their message is in the log).
        vec![
            status("M1", "read").into(),
            sent("M1").into(),
            status("M1", "delivered").into(),
        ],
        // delivered, then a late server ack.
        vec![
            sent("M2").into(),
            status("M2", "delivered").into(),
            status("M2", "sent").into(),
        ],
        // two statuses before the message, then one after it: only that one counts.
        vec![
            status("M3", "played").into(),
            status("M3", "delivered").into(),
            sent("M3").into(),
            status("M3", "read").into(),
        ],
        // no status at all.
        vec![sent("M4").into()],
        // a duplicated message event: one row, the highest status.
        vec![
            sent("M5").into(),
            status("M5", "delivered").into(),
            sent("M5").into(),
            status("M5", "read").into(),
        ],
    ];
    for events in scripts {
        for event in events {
            let mut append = Append::to(StreamId::instance(&id), ExpectedVersion::Any)
                .scope(Some(&user.id), Some(&id))
                .metadata(Metadata::actor("engine"));
            append.events = vec![event];
            app.state.store.append(append).await.unwrap();
        }
    }
    let page = read_view(
        app,
        &format!("/api/instances/{id}/chats/{chat}/messages"),
        As::Key(&user.api_key),
    )
    .await;
    let status_of = |mid: &str| -> String {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["messageId"] == mid)
            .unwrap_or_else(|| panic!("{mid} missing: {page}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status_of("M1"), "delivered");
    assert_eq!(status_of("M2"), "delivered");
    assert_eq!(status_of("M3"), "read");
    assert_eq!(status_of("M4"), "sent");
    assert_eq!(status_of("M5"), "read");
    assert_eq!(page["pagination"]["total"], 5);
    assert_eq!(page["messages"].as_array().unwrap().len(), 5);
}

async fn case_usage_statistics(app: &TestApp) {
    let user = app.create_user("stats@test.local").await;
    let other = app.create_user("other@test.local").await;
    let (phone_a, phone_b) = ("79000000301", "79000000302");
    let a = app.connected_instance(&user, phone_a).await; // api: create (user), scan (a)
    let b = app.connected_instance(&user, phone_b).await; // api: create (user), scan (b)
    let external = "79005550001";
    const IMAGE: usize = 1234;
    const FILE: usize = 777;
    let url = media_server(vec![7u8; IMAGE], "image/png").await;

    // a: 2 texts, an image to b (which receives it), a file; 2 inbound messages.
    send_text(app, &user, &a, external, "one").await;
    send_text(app, &user, &a, external, "two").await;
    app.post(
        &format!("/api/whatsapp/{a}/send-media"),
        As::Key(&user.api_key),
        json!({"phone": phone_b, "url": url, "caption": "a picture", "filename": "p.png"}),
    )
    .await
    .expect(200);
    send_file(app, &user, &a, external, vec![1u8; FILE]).await;
    inbound(app, &user, &a, external, "hi").await;
    inbound(app, &user, &a, external, "hi again").await;
    // Two more API calls on a.
    app.get(&format!("/api/whatsapp/{a}/status"), As::Key(&user.api_key))
        .await
        .expect(200);
    app.get(&format!("/api/instances/{a}"), As::Bearer(&user.token))
        .await
        .expect(200);
    // Webhook deliveries, as the dispatcher records them.
    for n in 0..2 {
        app.state
            .store
            .append(
                Append::to(StreamId::instance(&a), ExpectedVersion::Any)
                    .scope(Some(&user.id), Some(&a))
                    .event(WebhookDelivered {
                        instance_id: a.as_str().into(),
                        delivery_id: format!("d{n}"),
                        webhook_id: format!("w{n}"),
                        event: "message_sent".into(),
                        attempt: 1,
                        status_code: 200,
                        duration_ms: 1.0,
                    }),
            )
            .await
            .unwrap();
    }
    app.wait_for_nth_event(&a, "message_received", 2).await;
    app.wait_for_event(&b, "message_received", |d| d["hasMedia"] == true)
        .await;

    // a: api calls = scan + 4 sends + 2 inbound + status + get = 9.
    let a_usage = [4, 2, 2, 0, (IMAGE + FILE) as i64, 9, 2];
    // b: api calls = scan.
    let b_usage = [0, 1, 0, 1, IMAGE as i64, 1, 0];

    // User statistics (default period month): + 2 calls without an instance (the creates).
    let us = read_view(app, "/api/stats/user", As::Key(&user.api_key)).await;
    let total = [4, 3, 2, 1, (2 * IMAGE + FILE) as i64, 12, 2];
    assert_eq!(counters(&us["total"], USAGE), total);
    assert_eq!(us["total"]["instanceCount"], 2);
    let list = us["instances"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["instanceId"], a);
    assert_eq!(list[0]["name"], format!("inst {phone_a}"));
    assert_eq!(counters(&list[0], USAGE), a_usage);
    assert_eq!(list[1]["instanceId"], b);
    assert_eq!(counters(&list[1], USAGE), b_usage);
    for period in ["week", "year", "all"] {
        let p = read_view(
            app,
            &format!("/api/stats/user?period={period}"),
            As::Bearer(&user.token),
        )
        .await;
        // Each earlier GET of /api/stats/user is one more call without an instance.
        assert_eq!(counters(&p["total"], &USAGE[..5]), total[..5], "{period}");
    }

    // Instance statistics (default period today); the user stats GETs did not touch a.
    let ia = read_view(
        app,
        &format!("/api/stats/instances/{a}"),
        As::Key(&user.api_key),
    )
    .await;
    assert_eq!(counters(&ia["usage"], USAGE), a_usage);
    assert_eq!(
        ia["usage"]["dailyStats"],
        json!([{"date": day_string(0), "messagesSent": 4, "messagesReceived": 2, "mediaSent": 2, "mediaReceived": 0}])
    );
    let ib = read_view(
        app,
        &format!("/api/stats/instances/{b}?period=week"),
        As::Bearer(&user.token),
    )
    .await;
    assert_eq!(counters(&ib["usage"], USAGE), b_usage);
    let days = ib["usage"]["dailyStats"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert_eq!(days[0]["date"], day_string(6));
    assert_eq!(
        days[6],
        json!({"date": day_string(0), "messagesSent": 0, "messagesReceived": 1, "mediaSent": 0, "mediaReceived": 1})
    );
    // The previous GET of a's statistics is now one more call on a.
    let ia2 = read_view(
        app,
        &format!("/api/stats/instances/{a}?period=all"),
        As::Key(&user.api_key),
    )
    .await;
    assert_eq!(ia2["usage"]["apiCalls"], 10);

    // Someone else's instance is not found; their own statistics are empty.
    app.get(
        &format!("/api/stats/instances/{a}"),
        As::Key(&other.api_key),
    )
    .await
    .expect_error(404);
    let os = read_view(app, "/api/stats/user", As::Key(&other.api_key)).await;
    assert_eq!(counters(&os["total"], &USAGE[..5]), [0, 0, 0, 0, 0]);
    assert_eq!(os["total"]["instanceCount"], 0);
    assert_eq!(os["instances"], json!([]));

    // System statistics: admins only.
    app.get("/api/stats/system", As::Key(&user.api_key))
        .await
        .expect_error(403);
    let sys = read_view(app, "/api/stats/system", As::Bearer(&app.admin.token)).await;
    assert_eq!(sys["instances"], json!({"total": 2, "active": 2}));
    // admin (created users), user and other all made calls today.
    assert_eq!(sys["users"], json!({"total": 3, "active": 3}));
    let calls = app
        .events()
        .await
        .iter()
        .filter(|e| e.event_type == "api_called")
        .count() as i64;
    let mut expected = total.to_vec();
    // Every call before the system GET itself (recorded after its answer).
    expected[5] = calls - 1;
    assert_eq!(counters(&sys["usage"], USAGE), expected);
}

async fn case_period_boundaries(app: &TestApp) {
    let user = app.create_user("periods@test.local").await;
    let id = app.create_instance(&user, json!({"name": "periods"})).await;
    app.wait_for_projections().await;
    // Counters on chosen past days, one digit per day so every sum shows
    // which days it took. (The log cannot hold past events; the windows are
    // a property of the queries over the per-day table.)
    let days: [(u64, i64); 7] = [
        (0, 1),
        (6, 10),
        (7, 100),
        (29, 1_000),
        (30, 10_000),
        (364, 100_000),
        (365, 1_000_000),
    ];
    for (ago, n) in days {
        let day = &day_string(ago)[..10];
        sqlx::query(
            "INSERT INTO usage_daily (instance_id, user_id, day, messages_sent) VALUES (?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&user.id)
        .bind(day)
        .bind(n)
        .execute(&app.state.views)
        .await
        .unwrap();
    }
    for (period, sent, entries, first) in [
        ("today", 1, 1, 0),
        ("week", 11, 7, 6),
        ("month", 1_111, 30, 29),
        ("year", 111_111, 365, 364),
        ("all", 1_111_111, 366, 365),
    ] {
        let s = app
            .get(
                &format!("/api/stats/instances/{id}?period={period}"),
                As::Key(&user.api_key),
            )
            .await
            .expect(200);
        assert_eq!(s["usage"]["messagesSent"], sent, "{period}");
        let daily = s["usage"]["dailyStats"].as_array().unwrap();
        assert_eq!(daily.len(), entries, "{period}");
        assert_eq!(daily[0]["date"], day_string(first), "{period}");
        assert_eq!(daily[entries - 1]["date"], day_string(0), "{period}");
        assert_eq!(daily[entries - 1]["messagesSent"], 1, "{period}");
    }
    let default = app
        .get(
            &format!("/api/stats/instances/{id}"),
            As::Key(&user.api_key),
        )
        .await
        .expect(200);
    assert_eq!(default["usage"]["messagesSent"], 1, "default is today");
    for (period, sent) in [
        ("", 1_111),
        ("?period=week", 11),
        ("?period=month", 1_111),
        ("?period=year", 111_111),
        ("?period=all", 1_111_111),
    ] {
        let s = app
            .get(&format!("/api/stats/user{period}"), As::Key(&user.api_key))
            .await
            .expect(200);
        assert_eq!(s["total"]["messagesSent"], sent, "user {period}");
        assert_eq!(s["instances"][0]["messagesSent"], sent, "user {period}");
    }
    let sys = app
        .get("/api/stats/system?period=week", As::Key(&app.admin.api_key))
        .await
        .expect(200);
    assert_eq!(sys["usage"]["messagesSent"], 11);
    let sys = app
        .get("/api/stats/system", As::Key(&app.admin.api_key))
        .await
        .expect(200);
    assert_eq!(
        sys["usage"]["messagesSent"], 1_111_111,
        "system default is all"
    );
}

async fn case_bad_queries(app: &TestApp) {
    let user = app.create_user("bad@test.local").await;
    let other = app.create_user("intruder@test.local").await;
    let id = app.create_instance(&user, json!({"name": "mine"})).await;
    let key = As::Key(&user.api_key);
    app.wait_for_projections().await;
    let before: Vec<String> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type != "api_called" && e.metadata.actor.as_deref() != Some("engine"))
        .map(|e| e.event_id)
        .collect();

    let activity = format!("/api/instances/{id}/activity");
    let history = format!("/api/instances/{id}/chats/79001234567/messages");
    for query in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "skip=-1",
        "actions=connection_opened,launched_rockets",
        "actions=api_called",
        "startDate=yesterday",
        "endDate=2023-02-30",
        "startDate=2023-01-02&endDate=2023-01-01",
    ] {
        let body = app
            .get(&format!("{activity}?{query}"), key)
            .await
            .expect_error(400);
        assert_eq!(body["error"], "bad_request", "activity {query}: {body}");
    }
    for query in [
        "limit=0",
        "limit=5000",
        "skip=-5",
        "startDate=01/02/2023",
        "startDate=2023-01-02T00:00:00Z&endDate=2023-01-01T23:59:59Z",
    ] {
        app.get(&format!("{history}?{query}"), key)
            .await
            .expect_error(400);
    }
    app.get(
        &format!("/api/instances/{id}/chats/not-a-chat/messages"),
        key,
    )
    .await
    .expect_error(400);
    for path in [
        "/api/stats/user?period=decade".to_string(),
        format!("/api/stats/instances/{id}?period=fortnight"),
        "/api/stats/system?period=forever".to_string(),
    ] {
        let who = if path.contains("system") {
            As::Key(&app.admin.api_key)
        } else {
            key
        };
        app.get(&path, who).await.expect_error(400);
    }

    // Another user's instance, and an unknown one, are not found.
    for path in [
        activity.clone(),
        history.clone(),
        format!("/api/stats/instances/{id}"),
        "/api/instances/00000000-0000-0000-0000-000000000000/activity".to_string(),
    ] {
        app.get(&path, As::Key(&other.api_key))
            .await
            .expect_error(404);
    }
    // Without credentials: 401.
    app.get(&activity, As::Nobody).await.expect_error(401);
    app.get("/api/stats/user", As::Nobody)
        .await
        .expect_error(401);

    // Nothing happened but the API calls (and the unpaired instance's QR codes and timeout).
    let after: Vec<String> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type != "api_called" && e.metadata.actor.as_deref() != Some("engine"))
        .map(|e| e.event_id)
        .collect();
    assert_eq!(before, after);
}

async fn case_api_calls_recorded(app: &TestApp) {
    let user = app.create_user("calls@test.local").await;
    let other = app.create_user("calls-other@test.local").await;
    let id = app.connected_instance(&user, "79000000501").await;
    send_text(app, &user, &id, "79001234567", "hi").await;
    app.get(&format!("/api/instances/{id}"), As::Key(&other.api_key))
        .await
        .expect_error(404);
    app.get("/api/auth/me", As::Nobody).await.expect_error(401);

    let calls: Vec<_> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "api_called")
        .collect();
    let send = calls
        .iter()
        .find(|e| e.data["route"] == "/api/whatsapp/{instanceId}/send")
        .unwrap_or_else(|| {
            panic!(
                "the send was not recorded: {:?}",
                calls.iter().map(|e| &e.data).collect::<Vec<_>>()
            )
        });
    assert_eq!(send.stream_id, format!("calls-{}", user.id));
    assert_eq!(send.instance_id.as_deref(), Some(id.as_str()));
    assert_eq!(send.user_id.as_deref(), Some(user.id.as_str()));
    assert_eq!(send.data["method"], "POST");
    assert_eq!(send.data["status"], 200);
    assert_eq!(send.data["userId"], user.id);
    assert_eq!(send.data["instanceId"], id);
    assert!(send.data["durationMs"].as_f64().unwrap() >= 0.0);
    assert_eq!(send.metadata.actor.as_deref(), Some(user.id.as_str()));

    // The intruder's call is theirs alone: never charged to the instance.
    let probe = calls
        .iter()
        .find(|e| e.data["userId"] == other.id)
        .expect("the 404 was recorded");
    assert_eq!(probe.data["route"], "/api/instances/{instanceId}");
    assert_eq!(probe.data["status"], 404);
    assert_eq!(probe.stream_id, format!("calls-{}", other.id));
    assert_eq!(probe.instance_id, None);
    assert!(probe.data["instanceId"].is_null());

    // The create has no instance in its route: the caller's stream.
    let create = calls
        .iter()
        .find(|e| e.data["route"] == "/api/instances" && e.data["userId"] == user.id)
        .expect("the create was recorded");
    assert_eq!(create.stream_id, format!("calls-{}", user.id));
    // Unauthenticated requests are not API calls.
    assert!(calls.iter().all(|e| e.data["route"] != "/api/auth/me"));
}

/// Every row of a projection's tables, and its checkpoint, as text.
async fn snapshot(views: &sqlx::SqlitePool, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for table in wa_gateway::projections::tables(name).unwrap() {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(table)
            .fetch_all(views)
            .await
            .unwrap();
        assert!(!columns.is_empty(), "{table} has no columns");
        let row = columns
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {row} FROM {table} ORDER BY 1"
        )))
        .fetch_all(views)
        .await
        .unwrap();
        out.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    let cp = wa_gateway::backbone::load_checkpoint(views, name)
        .await
        .unwrap();
    out.push(format!("checkpoint: {cp}"));
    out
}

async fn case_rebuild(app: &TestApp) {
    let user = app.create_user("rebuild@test.local").await;
    let a = app.connected_instance(&user, "79000000601").await;
    let b = app.connected_instance(&user, "79000000602").await;
    let url = media_server(vec![3u8; 2048], "image/jpeg").await;
    send_text(app, &user, &a, "79000000602", "to b").await;
    send_text(app, &user, &a, "79005550002", "to someone").await;
    app.post(
        &format!("/api/whatsapp/{a}/send-media"),
        As::Key(&user.api_key),
        json!({"phone": "79000000602", "url": url}),
    )
    .await
    .expect(200);
    send_file(app, &user, &b, "79000000601", vec![9u8; 500]).await;
    inbound(app, &user, &a, "79005550002", "reply").await;
    // Every receipt and delivery is in before comparing.
    app.wait_for_nth_event(&a, "message_status", 9).await;
    app.wait_for_nth_event(&b, "message_status", 3).await;
    app.wait_for_nth_event(&a, "message_received", 2).await;
    app.wait_for_nth_event(&b, "message_received", 2).await;
    // b deleted: its history goes, its usage stays.
    app.delete(&format!("/api/instances/{b}"), As::Key(&user.api_key))
        .await
        .expect(200);
    app.wait_for_projections().await;
    let head = app.state.store.head();
    let views = &app.state.views;

    let mut incremental = Vec::new();
    for name in wa_gateway::projections::NAMES {
        let s = snapshot(views, name).await;
        assert!(s.len() > 3, "{name} is empty: {s:?}");
        incremental.push(s);
    }
    assert!(
        incremental[1]
            .iter()
            .all(|r| !r.contains(&b) || r.starts_with("checkpoint"))
    );

    // Into a fresh database: the log alone gives the same tables.
    let dir = tempfile::tempdir().unwrap();
    let fresh = open_sqlite(&dir.path().join("views.db"), 2).await.unwrap();
    wa_gateway::projections::rebuild(&fresh, &app.state.store, None)
        .await
        .unwrap();
    for (i, name) in wa_gateway::projections::NAMES.iter().enumerate() {
        assert_eq!(snapshot(&fresh, name).await, incremental[i], "{name}");
    }

    // In place, after damage: drop, recreate, replay.
    sqlx::raw_sql(
        "DELETE FROM messages; UPDATE usage_daily SET messages_sent = 999; \
         DELETE FROM activity_log WHERE action = 'message_sent';",
    )
    .execute(views)
    .await
    .unwrap();
    assert_ne!(snapshot(views, "messages").await, incremental[1]);
    wa_gateway::projections::rebuild(views, &app.state.store, None)
        .await
        .unwrap();
    assert_eq!(
        app.state.store.head(),
        head,
        "the log moved during the test"
    );
    for (i, name) in wa_gateway::projections::NAMES.iter().enumerate() {
        assert_eq!(snapshot(views, name).await, incremental[i], "{name}");
    }
    // One projection by name; an unknown name is refused.
    wa_gateway::projections::rebuild(views, &app.state.store, Some("stats"))
        .await
        .unwrap();
    assert_eq!(snapshot(views, "stats").await, incremental[2]);
    assert!(
        wa_gateway::projections::rebuild(views, &app.state.store, Some("nope"))
            .await
            .is_err()
    );
}

/// The message history projector over hand-made batches, so that where a
/// batch ends is certain: statuses of stored messages gathered into one
/// write, a lower status that changes nothing, and statuses for messages not
/// (or not yet) in the history, which change nothing and are not kept.
#[tokio::test]
async fn message_statuses_across_batch_boundaries_end_at_the_highest() {
    use std::sync::Arc;
    use wa_gateway::projections::{self, messages::Messages};
    use wa_gateway::store::{RecordedEvent, SharedEvent};

    let dir = tempfile::tempdir().unwrap();
    let views = open_sqlite(&dir.path().join("views.db"), 2).await.unwrap();
    projections::ensure_schemas(&views).await.unwrap();
    let mut position = 0;
    let mut event = |e: wa_gateway::events::Event| -> SharedEvent {
        position += 1;
        Arc::new(RecordedEvent {
            position,
            event_id: format!("e{position}"),
            stream_id: "instance-i1".into(),
            version: position,
            event_type: e.event_type().into(),
            schema_version: e.schema_version(),
            user_id: Some("u1".into()),
            instance_id: Some("i1".into()),
            data: e.data().into(),
            metadata: Metadata::default(),
            recorded_at: Utc::now(),
            event: Some(e),
        })
    };
    let chat = "79004440000@s.whatsapp.net";
    let sent = |mid: &str| -> wa_gateway::events::Event {
        MessageSent {
            instance_id: "i1".into(),
            message_id: mid.into(),
            to: chat.into(),
            body: mid.into(),
            message_type: wa_gateway::events::SentKind::Text,
            timestamp: 0,
            has_media: false,
            media: None,
            extras: Default::default(),
        }
        .into()
    };
    let status = |mid: &str, s: &str| -> wa_gateway::events::Event {
        MessageStatus {
            instance_id: "i1".into(),
            message_id: mid.into(),
            status: wa_gateway::events::DeliveryStatus::parse(s).expect("a status"),
            from: chat.into(),
            from_me: true,
            reason: None,
        }
        .into()
    };
    let batches = vec![
        // A and B are stored; C's read comes before C.
        vec![
            event(sent("A")),
            event(sent("B")),
            event(status("C", "read")),
        ],
        // A: three receipts in one batch; B: a late, lower ack; C arrives.
        vec![
            event(status("A", "sent")),
            event(status("A", "read")),
            event(status("A", "delivered")),
            event(status("B", "sent")),
            event(sent("C")),
            event(status("C", "delivered")),
        ],
        // D's status waits for a message that never comes.
        vec![
            event(status("D", "delivered")),
            event(status("B", "delivered")),
        ],
    ];
    let conn = projections::open_direct(&views, "test-views").unwrap();
    for batch in &batches {
        projections::apply_batch::<Messages>(&conn, batch)
            .await
            .unwrap();
    }
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT message_id, status FROM messages ORDER BY message_id")
            .fetch_all(&views)
            .await
            .unwrap();
    let rows: Vec<(&str, &str)> = rows.iter().map(|(m, s)| (m.as_str(), s.as_str())).collect();
    assert_eq!(
        rows,
        vec![("A", "read"), ("B", "delivered"), ("C", "delivered")]
    );
    let early_table: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'message_early_status'",
    )
    .fetch_one(&views)
    .await
    .unwrap();
    assert_eq!(early_table, 0, "statuses wait in the supervisor only");
}
