//! The real WhatsApp engine (whatsapp-rust) through the HTTP API, against the
//! in-repo fake WhatsApp server: the real client's QR, pairing, drops,
//! restarts and logout, all offline.

use std::time::Duration;

use serde_json::{Value, json};
use wa_gateway::config::EngineKind;
use wa_gateway::store::RecordedEvent;
use wa_gateway::whatsapp::real::{HttpHook, TransportHook};

use crate::fake_wa::FakeWa;
use crate::helpers::{As, TestApp};

/// The first connect after pairing waits ~10 s on purpose (the client's
/// grace for the phone's app-state keys), so these waits are longer than
/// the harness's default.
pub(crate) const LONG_WAIT: Duration = Duration::from_secs(60);

pub(crate) const PHONE: &str = "79005550101";

/// Logs to the test output when `RUST_LOG` is set (the client's `log`
/// records included), to see what the real client did.
pub(crate) fn trace_if_asked() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A gateway on the real engine whose sessions connect to `fake`.
pub(crate) async fn gateway_on(fake: &FakeWa) -> TestApp {
    trace_if_asked();
    let factory = fake.factory();
    let cdn = fake.cdn();
    TestApp::spawn_with(move |c| {
        c.engine = EngineKind::WhatsApp;
        c.whatsapp_transport = Some(TransportHook(factory));
        // Media goes to the fake's CDN.
        c.whatsapp_http = Some(HttpHook(cdn));
        // Pinned: no version fetch from the network.
        c.whatsapp_version = Some((2, 3000, 1_023_456_789));
        // Short, so a send the fake never acks fails within the test.
        c.send_ack_timeout = Duration::from_secs(3);
    })
    .await
}

/// Waits for the `nth` (1-based) event of a type for an instance, up to `LONG_WAIT`.
pub(crate) async fn nth_event(
    app: &TestApp,
    id: &str,
    event_type: &str,
    nth: usize,
) -> RecordedEvent {
    let mut sub = app.state.store.subscribe(0);
    let mut seen = 0;
    tokio::time::timeout(LONG_WAIT, async {
        loop {
            let batch = sub.next_batch().await.expect("read the log").expect("open");
            for e in batch {
                if e.instance_id.as_deref() == Some(id) && e.event_type == event_type {
                    seen += 1;
                    if seen == nth {
                        return RecordedEvent::clone(&e);
                    }
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {nth}th {event_type} for {id} within {LONG_WAIT:?}"))
}

pub(crate) async fn status(app: &TestApp, key: &str, id: &str) -> Value {
    app.get(&format!("/api/whatsapp/{id}/status"), As::Key(key))
        .await
        .expect(200)
}

/// Logs the instance out through the API and waits for its `logged_out`.
async fn log_out(app: &TestApp, key: &str, id: &str) {
    app.post(
        &format!("/api/whatsapp/{id}/logout"),
        As::Key(key),
        json!({}),
    )
    .await
    .expect(200);
    nth_event(app, id, "logged_out", 1).await;
}

/// The instance's rows in the engine's shared database (Signal sessions,
/// sent messages, message secrets).
fn kept_rows(app: &TestApp, id: &str) -> i64 {
    let db = rusqlite::Connection::open(app.config.data_dir.join("wa").join("shared.db")).unwrap();
    ["signal_sessions", "sent_messages", "msg_secrets"]
        .iter()
        .map(|table| {
            db.query_row(
                &format!("SELECT count(*) FROM {table} WHERE instance = ?1"),
                [id],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        })
        .sum()
}

fn store_files(app: &TestApp, id: &str) -> Vec<std::path::PathBuf> {
    let dir = app.config.data_dir.join("wa");
    ["db", "db-wal", "db-shm"]
        .iter()
        .map(|ext| dir.join(format!("{id}.{ext}")))
        .filter(|p| p.exists())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_real_client_pairs_by_qr_reconnects_resumes_after_a_restart_and_logs_out() {
    let fake = FakeWa::new();
    let app = gateway_on(&fake).await;
    let key = app.admin.api_key.clone();
    let id = app
        .create_instance(&app.admin, json!({"name": "real"}))
        .await;

    // The real client's QR code, through the API and in the log.
    let qr_event = nth_event(&app, &id, "qr_received", 1).await;
    let code = qr_event.data["qrCode"].as_str().unwrap().to_string();
    assert!(
        code.split(',').count() >= 4,
        "ref,noiseKey,identityKey,advSecret[,type]: {code}"
    );
    let qr = app
        .get(&format!("/api/instances/{id}/qr"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(qr, json!({"qrCode": code}));
    assert_eq!(status(&app, &key, &id).await["status"], "qr");
    assert_eq!(
        fake.xx_handshakes(),
        1,
        "a first connect is a full XX handshake"
    );
    assert_eq!(fake.ik_handshakes(), 0);
    assert_eq!(
        store_files(&app, &id)
            .first()
            .map(|p| p.extension().unwrap().to_owned()),
        Some("db".into()),
        "the session store is a file in <data>/wa"
    );

    // The fake phone scans it: paired, logged in, connected.
    fake.scan(&code, PHONE).await.expect("scan");
    let opened = nth_event(&app, &id, "connection_opened", 1).await;
    assert_eq!(opened.data["phone"], PHONE);
    let st = status(&app, &key, &id).await;
    assert_eq!(st["status"], "connected", "{st}");
    assert!(fake.is_paired(PHONE));

    // Contacts: the persisted book (empty: the fake server syncs none) and
    // the groups, asked live.
    let contacts = app
        .get(&format!("/api/whatsapp/{id}/contacts"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(
        contacts["contacts"],
        json!([{
            "id": format!("{}@g.us", crate::fake_wa::FAKE_GROUP),
            "name": "Fake Group",
            "number": crate::fake_wa::FAKE_GROUP,
            "isGroup": true
        }]),
        "{contacts}"
    );

    // A forced drop: reported, then reconnected without a QR, resuming with IK.
    let ik_before = fake.ik_handshakes();
    assert_eq!(fake.drop_connections(PHONE), 1);
    let closed = nth_event(&app, &id, "connection_closed", 1).await;
    assert_eq!(closed.data["willReconnect"], true, "{}", closed.data);
    nth_event(&app, &id, "connection_opened", 2).await;
    assert_eq!(status(&app, &key, &id).await["status"], "connected");
    assert!(
        fake.ik_handshakes() > ik_before,
        "a later connect resumes with Noise IK"
    );

    // A gateway restart: connected again from the stored session, no new QR.
    let qr_codes = app.instance_events(&id, "qr_received").await.len();
    let app = app.restart().await;
    nth_event(&app, &id, "connection_opened", 3).await;
    assert_eq!(status(&app, &key, &id).await["status"], "connected");
    assert_eq!(
        app.instance_events(&id, "qr_received").await.len(),
        qr_codes,
        "a restart needs no new QR"
    );

    // Logout: unlinked at the server, the store deleted, a new QR on reconnect.
    log_out(&app, &key, &id).await;
    assert_eq!(status(&app, &key, &id).await["status"], "logged_out");
    assert!(
        !fake.is_paired(PHONE),
        "the device was unlinked at the server"
    );
    assert_eq!(store_files(&app, &id), Vec::<std::path::PathBuf>::new());
    app.post(
        &format!("/api/instances/{id}/reconnect"),
        As::Key(&key),
        json!({}),
    )
    .await
    .expect(200);
    let again = nth_event(&app, &id, "qr_received", qr_codes + 1).await;
    assert_ne!(again.data["qrCode"], code, "a fresh identity, a fresh QR");
    assert_eq!(status(&app, &key, &id).await["status"], "qr");
    fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_unlinked_at_the_phone_is_logged_out_and_its_store_deleted() {
    let fake = FakeWa::new();
    let app = gateway_on(&fake).await;
    let key = app.admin.api_key.clone();
    let id = app
        .create_instance(&app.admin, json!({"name": "unlinked"}))
        .await;
    let qr = nth_event(&app, &id, "qr_received", 1).await;
    fake.scan(qr.data["qrCode"].as_str().unwrap(), PHONE)
        .await
        .expect("scan");
    nth_event(&app, &id, "connection_opened", 1).await;

    // Unlinked while the connection is down: the next login is refused.
    assert_eq!(fake.unlink(PHONE), 1);
    let out = nth_event(&app, &id, "logged_out", 1).await;
    assert!(
        out.data["reason"]
            .as_str()
            .unwrap()
            .starts_with("logged_out"),
        "{}",
        out.data
    );
    assert_eq!(status(&app, &key, &id).await["status"], "logged_out");
    assert_eq!(store_files(&app, &id), Vec::<std::path::PathBuf>::new());
    assert!(app.instance_events(&id, "connection_opened").await.len() == 1);
    fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_whatsapp_keeps_the_instance_connecting_and_the_api_responsive() {
    trace_if_asked();
    let app = TestApp::spawn_with(|c| {
        c.engine = EngineKind::WhatsApp;
        // Nothing listens on port 9 of loopback: every dial is refused.
        c.whatsapp_url = Some("ws://127.0.0.1:9/ws/chat".into());
        c.whatsapp_version = Some((2, 3000, 1_023_456_789));
    })
    .await;
    let key = app.admin.api_key.clone();
    let id = app
        .create_instance(&app.admin, json!({"name": "offline"}))
        .await;

    // Several failed attempts later (the client retries after 1 s, 1 s, 2 s, ...),
    // the instance is still connecting and every endpoint answers at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        let started = std::time::Instant::now();
        let st = status(&app, &key, &id).await;
        assert_eq!(st["status"], "connecting", "{st}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the API stays responsive"
        );
        app.get("/api/instances", As::Key(&key)).await.expect(200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(app.instance_events(&id, "qr_received").await.is_empty());
    assert!(
        app.instance_events(&id, "connection_opened")
            .await
            .is_empty()
    );
    // A send is refused cleanly, not hung.
    app.post(
        &format!("/api/whatsapp/{id}/send"),
        As::Key(&key),
        json!({"phone": "79001234567", "message": "x"}),
    )
    .await
    .expect_error(409);
    // Deleting it stops the retrying client and removes its store.
    app.delete(&format!("/api/instances/{id}"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(store_files(&app, &id), Vec::<std::path::PathBuf>::new());
}

pub(crate) const CONTACT: &str = "79005550202";

/// Waits for a webhook of `event` whose data satisfies `pred`, up to `LONG_WAIT`.
pub(crate) async fn hook(
    r: &crate::receiver::Receiver,
    event: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(
        LONG_WAIT,
        r.wait_until(|h| h.event() == event && pred(&h.json["data"])),
    )
    .await
    .unwrap_or_else(|_| panic!("no {event} webhook within {LONG_WAIT:?}"))
    .json["data"]
        .clone()
}

pub(crate) async fn history(app: &TestApp, key: &str, id: &str, chat: &str) -> Vec<Value> {
    app.wait_for_projections().await;
    app.get(
        &format!("/api/instances/{id}/chats/{chat}/messages"),
        As::Key(key),
    )
    .await
    .expect(200)["messages"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn texts_go_both_ways_through_the_real_client_with_real_signal_sessions() {
    let fake = FakeWa::new();
    let contact = fake.add_contact(CONTACT, "Olga", None);
    let app = gateway_on(&fake).await;
    let key = app.admin.api_key.clone();
    let r = crate::receiver::Receiver::start().await;
    let id = app
        .create_instance(
            &app.admin,
            json!({"name": "talk", "webhookUrl": r.url(), "webhookEnabled": true,
                   "notifyDelivery": true, "notifyRead": true}),
        )
        .await;
    let qr = nth_event(&app, &id, "qr_received", 1).await;
    fake.scan(qr.data["qrCode"].as_str().unwrap(), PHONE)
        .await
        .expect("scan");
    nth_event(&app, &id, "connection_opened", 1).await;

    // Out: the contact decrypts exactly the text; sent → delivered → read.
    let sent = app
        .post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&key),
            json!({"phone": CONTACT, "message": "Привет, Olga"}),
        )
        .await
        .expect(200);
    let mid = sent["id"].as_str().unwrap().to_string();
    let got = tokio::time::timeout(LONG_WAIT, contact.nth_message(1))
        .await
        .expect("the contact got the message");
    assert_eq!(got.id, mid);
    assert_eq!(got.from, PHONE);
    assert_eq!(got.enc, "pkmsg", "the first message starts the session");
    assert_eq!(got.message.conversation.as_deref(), Some("Привет, Olga"));
    hook(&r, "message_status", |d| {
        d["messageId"] == mid.as_str() && d["status"] == "sent"
    })
    .await;
    fake.receipt_from(&contact, PHONE, &[&mid], None).unwrap();
    hook(&r, "message_status", |d| {
        d["messageId"] == mid.as_str() && d["status"] == "delivered"
    })
    .await;
    fake.receipt_from(&contact, PHONE, &[&mid], Some("read"))
        .unwrap();
    hook(&r, "message_status", |d| {
        d["messageId"] == mid.as_str() && d["status"] == "read"
    })
    .await;
    let rows = history(&app, &key, &id, CONTACT).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["messageId"], mid.as_str());
    assert_eq!(rows[0]["status"], "read");
    assert_eq!(rows[0]["content"], "Привет, Olga");

    // In: pkmsg first, then msg; each a webhook and a history row, counted.
    fake.wait_prekeys(PHONE).await;
    let in1 = fake
        .send_text_from(&contact, PHONE, "first answer")
        .await
        .expect("send");
    let d = hook(&r, "message_received", |d| d["messageId"] == in1.as_str()).await;
    assert_eq!(d["from"], format!("{CONTACT}@s.whatsapp.net"));
    assert_eq!(d["body"], "first answer");
    assert_eq!(d["pushName"], "Olga");
    let in2 = fake
        .send_text_from(&contact, PHONE, "second answer")
        .await
        .expect("send");
    hook(&r, "message_received", |d| {
        d["messageId"] == in2.as_str() && d["body"] == "second answer"
    })
    .await;
    let kind = tokio::time::timeout(LONG_WAIT, contact.receipt_for(&in2))
        .await
        .expect("the client acknowledged receipt");
    assert!(
        ["delivery", "inactive"].contains(&kind.as_str()),
        "a delivery receipt: {kind}"
    );
    let rows = history(&app, &key, &id, CONTACT).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["messageId"], in2.as_str());
    assert_eq!(rows[0]["fromMe"], false);
    assert_eq!(rows[1]["messageId"], in1.as_str());
    app.wait_for_projections().await;
    let stats = app
        .get(&format!("/api/stats/instances/{id}"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(stats["usage"]["messagesSent"], 1, "{stats}");
    assert_eq!(stats["usage"]["messagesReceived"], 2, "{stats}");

    // A gateway restart: the sessions persist, both ways.
    let app = app.restart().await;
    nth_event(&app, &id, "connection_opened", 2).await;
    let again = app
        .post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&key),
            json!({"phone": CONTACT, "message": "after the restart"}),
        )
        .await
        .expect(200);
    let got = tokio::time::timeout(LONG_WAIT, contact.nth_message(2))
        .await
        .expect("the contact got the message after the restart");
    assert_eq!(got.id, again["id"].as_str().unwrap());
    assert_eq!(
        got.enc, "msg",
        "the existing session, no new prekey message"
    );
    assert_eq!(
        got.message.conversation.as_deref(),
        Some("after the restart")
    );
    let in3 = fake
        .send_text_from(&contact, PHONE, "still here")
        .await
        .expect("send");
    hook(&r, "message_received", |d| {
        d["messageId"] == in3.as_str() && d["body"] == "still here"
    })
    .await;

    // Honest failures: a send the server refuses, and one it never acks.
    let refusing = fake.add_contact("79005550303", "Refused", None);
    refusing.set_ack(crate::fake_wa::network::AckMode::Nack(479));
    let silent = fake.add_contact("79005550404", "Lost", None);
    silent.set_ack(crate::fake_wa::network::AckMode::Silent);
    let mut failed = Vec::new();
    for (to, reason) in [
        ("79005550303", "nack_479"),
        ("79005550404", "no_server_ack"),
    ] {
        let mid = app
            .post(
                &format!("/api/whatsapp/{id}/send"),
                As::Key(&key),
                json!({"phone": to, "message": "will fail"}),
            )
            .await
            .expect(200)["id"]
            .as_str()
            .unwrap()
            .to_string();
        let d = hook(&r, "message_status", |d| {
            d["messageId"] == mid.as_str() && d["status"] == "failed"
        })
        .await;
        assert_eq!(d["reason"], reason, "{d}");
        let rows = history(&app, &key, &id, to).await;
        assert_eq!(rows[0]["status"], "failed", "{rows:?}");
        failed.push(mid);
    }
    assert!(
        !r.hits_of("message_status").iter().any(|h| failed
            .contains(&h.json["data"]["messageId"].as_str().unwrap().to_string())
            && h.json["data"]["status"] == "sent"),
        "a failed send is never reported sent"
    );

    // A contact WhatsApp addresses by its LID: reported by phone number,
    // with the LID beside it, in the same chat as its phone number.
    let lida = fake.add_contact("79005550505", "Lida", Some("100000000000505"));
    let in4 = fake
        .send_text_from(&lida, PHONE, "from a lid")
        .await
        .expect("send");
    let d = hook(&r, "message_received", |d| d["messageId"] == in4.as_str()).await;
    assert_eq!(d["from"], "79005550505@s.whatsapp.net", "{d}");
    assert_eq!(d["fromLid"], "100000000000505@lid", "{d}");
    let rows = history(&app, &key, &id, "79005550505").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["messageId"], in4.as_str());
    assert_eq!(rows[0]["remoteJid"], "79005550505@s.whatsapp.net");
    fake.assert_clean();

    // The Signal sessions and sent messages live in the engine's shared
    // database; a logout deletes this instance's share of it.
    assert!(
        kept_rows(&app, &id) > 0,
        "sessions and sent messages are kept"
    );
    log_out(&app, &key, &id).await;
    assert_eq!(kept_rows(&app, &id), 0, "nothing of the instance is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paced_text_shows_typing_to_the_contact_before_it_arrives() {
    let fake = FakeWa::new();
    let contact = fake.add_contact(CONTACT, "Olga", None);
    let app = gateway_on(&fake).await;
    let key = app.admin.api_key.clone();
    let id = app
        .create_instance(
            &app.admin,
            json!({"name": "paced", "sendPolicy": {"enabled": true, "perMinute": 60,
                   "delayMinMs": 0, "delayMaxMs": 0, "typing": true,
                   "typingMsPerChar": 10, "typingMaxMs": 300,
                   "warmupDays": 0, "warmupFirstDay": 1}}),
        )
        .await;
    let qr = nth_event(&app, &id, "qr_received", 1).await;
    fake.scan(qr.data["qrCode"].as_str().unwrap(), PHONE)
        .await
        .expect("scan");
    nth_event(&app, &id, "connection_opened", 1).await;

    let sent = app
        .post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&key),
            json!({"phone": CONTACT, "message": "typed by a person, it seems"}),
        )
        .await
        .expect(200);
    let mid = sent["id"].as_str().unwrap().to_string();
    let got = tokio::time::timeout(LONG_WAIT, contact.nth_message(1))
        .await
        .expect("the contact got the message");
    assert_eq!(got.id, mid);
    let to = format!("{CONTACT}@s.whatsapp.net");
    let seen: Vec<String> = fake
        .outbound()
        .into_iter()
        .filter(|line| line.ends_with(&to))
        .collect();
    assert_eq!(
        seen,
        vec![format!("chatstate composing {to}"), format!("message {to}")],
        "\"typing…\" is shown to the contact, then the message arrives"
    );
    fake.assert_clean();
}
