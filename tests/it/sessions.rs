//! WhatsApp sessions through the HTTP API, on the simulated network.

use std::time::Duration;

use serde_json::{Value, json};

use crate::files;
use crate::helpers::{As, Creds, TestApp};

async fn status(app: &TestApp, who: &Creds, id: &str) -> Value {
    app.get(&format!("/api/whatsapp/{id}/status"), As::Key(&who.api_key))
        .await
        .expect(200)
}

#[tokio::test]
async fn an_instance_shows_a_qr_pairs_sends_receives_and_logs_out() {
    let app = TestApp::spawn().await;
    let user = app.create_user("flow@example.com").await;
    let key = user.api_key.clone();
    let id = app.create_instance(&user, json!({"name": "flow"})).await;

    // QR: the string on both endpoints, and as images.
    let qr_event = app.wait_for_event(&id, "qr_received", |_| true).await;
    let code = qr_event.data["qrCode"].as_str().unwrap().to_string();
    assert_eq!(
        code.split(',').count(),
        4,
        "shaped like WhatsApp's ref,key,key,key"
    );
    let a = app
        .get(&format!("/api/instances/{id}/qr"), As::Key(&key))
        .await
        .expect(200);
    let b = app
        .get(&format!("/api/whatsapp/{id}/qr"), As::Bearer(&user.token))
        .await
        .expect(200);
    assert_eq!(a, json!({"qrCode": code}));
    assert_eq!(b, a);
    let svg = app
        .client
        .get(app.url(&format!("/api/whatsapp/{id}/qr?format=svg")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert!(
        svg.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("image/svg+xml")
    );
    assert!(svg.text().await.unwrap().contains("<svg"));
    let png = app
        .client
        .get(app.url(&format!("/api/instances/{id}/qr?format=png")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(&png.bytes().await.unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        status(&app, &user, &id).await,
        json!({"ready": false, "status": "qr", "hasQr": true})
    );

    // Scan → connected.
    let scan = app
        .post(
            &format!("/api/sim/instances/{id}/scan"),
            As::Key(&key),
            json!({"phone": "79001110000"}),
        )
        .await
        .expect(200);
    assert_eq!(scan["phone"], "79001110000");
    let opened = app.wait_for_event(&id, "connection_opened", |_| true).await;
    assert_eq!(opened.data["phone"], "79001110000");
    assert_eq!(
        status(&app, &user, &id).await,
        json!({"ready": true, "status": "connected", "hasQr": false})
    );
    app.get(&format!("/api/whatsapp/{id}/qr"), As::Key(&key))
        .await
        .expect_error(404);
    let list = app.get("/api/instances", As::Key(&key)).await.expect(200);
    assert_eq!(
        list["instances"][0]["connectionStatus"],
        json!({"ready": true, "status": "connected", "hasQr": false})
    );
    assert_eq!(list["instances"][0]["status"], "connected");

    // Text: an id, message_sent, then sent → delivered → read, in that order in the log.
    let sent = app
        .post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&key),
            json!({"phone": "+7 900 123-45-67", "message": "你好！"}),
        )
        .await
        .expect(200);
    let mid = sent["id"].as_str().unwrap().to_string();
    app.wait_for_event(&id, "message_status", |d| {
        d["messageId"] == mid.as_str() && d["status"] == "read"
    })
    .await;
    let log: Vec<(String, String)> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.data["messageId"] == mid.as_str())
        .map(|e| {
            (
                e.event_type.clone(),
                e.data["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        log,
        vec![
            ("message_sent".to_string(), String::new()),
            ("message_status".to_string(), "sent".to_string()),
            ("message_status".to_string(), "delivered".to_string()),
            ("message_status".to_string(), "read".to_string()),
        ]
    );
    let sent_event = app.instance_events(&id, "message_sent").await.remove(0);
    assert_eq!(sent_event.data["to"], "79001234567@s.whatsapp.net");
    assert_eq!(sent_event.data["body"], "你好！");
    assert_eq!(sent_event.data["type"], "text");
    assert_eq!(sent_event.data["hasMedia"], false);
    assert_eq!(sent_event.metadata.actor.as_deref(), Some(user.id.as_str()));

    // Media by URL from a local server: the kind from the content type, the size recorded.
    let files = files::serve().await;
    let media = app
        .post(
            &format!("/api/whatsapp/{id}/send-media"),
            As::Key(&key),
            json!({"phone": "79001234567", "url": format!("{files}/image.png"), "caption": "图片描述", "filename": "image.png"}),
        )
        .await
        .expect(200);
    let media_event = app
        .wait_for_event(&id, "message_sent", |d| d["messageId"] == media["id"])
        .await;
    assert_eq!(media_event.data["type"], "image");
    assert_eq!(media_event.data["hasMedia"], true);
    assert_eq!(media_event.data["body"], "图片描述");
    assert_eq!(
        media_event.data["media"],
        json!({"kind": "image", "mimetype": "image/png", "fileName": "image.png", "size": files::image_bytes().len()})
    );

    // A file upload (multipart): a document with its file name.
    let form = reqwest::multipart::Form::new()
        .text("phone", "79001234567")
        .text("caption", "the report")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![b'%'; 2_048])
                .file_name("report.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{id}/send-file")))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let file = TestApp::read(resp).await.expect(200);
    let file_event = app
        .wait_for_event(&id, "message_sent", |d| d["messageId"] == file["id"])
        .await;
    assert_eq!(file_event.data["type"], "document");
    assert_eq!(file_event.data["media"]["fileName"], "report.pdf");
    assert_eq!(file_event.data["media"]["size"], 2_048);

    // Between two instances of this server: B receives, A gets receipts.
    let other = app.connected_instance(&user, "79002220000").await;
    let to_b = app
        .post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&key),
            json!({"phone": "79002220000", "message": "hello B"}),
        )
        .await
        .expect(200);
    let received = app
        .wait_for_event(&other, "message_received", |d| d["messageId"] == to_b["id"])
        .await;
    assert_eq!(received.data["from"], "79001110000@s.whatsapp.net");
    assert_eq!(received.data["body"], "hello B");
    app.wait_for_event(&id, "message_status", |d| {
        d["messageId"] == to_b["id"] && d["status"] == "read"
    })
    .await;

    // Inbound injection.
    app.post(
        &format!("/api/sim/instances/{id}/inbound"),
        As::Key(&key),
        json!({"from": "79003334444", "body": "你好！最近怎么样？", "pushName": "伊万"}),
    )
    .await
    .expect(200);
    let inbound = app
        .wait_for_event(&id, "message_received", |d| {
            d["from"] == "79003334444@s.whatsapp.net"
        })
        .await;
    assert_eq!(inbound.data["pushName"], "伊万");
    assert_eq!(inbound.data["type"], "conversation");
    assert_eq!(inbound.data["hasMedia"], false);

    // Contacts: the seed's shape, a group, and the other instance's number.
    let contacts = app
        .get(&format!("/api/whatsapp/{id}/contacts"), As::Key(&key))
        .await
        .expect(200);
    let list = contacts["contacts"].as_array().unwrap();
    assert!(list.iter().all(|c| c.as_object().unwrap().len() == 4
        && c["id"].is_string()
        && c["isGroup"].is_boolean()));
    assert!(
        list.iter()
            .any(|c| c["isGroup"] == true && c["id"].as_str().unwrap().ends_with("@g.us"))
    );
    assert!(list.iter().any(|c| c["number"] == "79002220000"));
    assert_eq!(app.instance_events(&id, "contacts_updated").await.len(), 1);

    // Logout: unlinked, the seed's answer, events; sending is refused.
    let out = app
        .post(
            &format!("/api/whatsapp/{id}/logout"),
            As::Key(&key),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(out, json!({"success": true}));
    assert_eq!(status(&app, &user, &id).await["status"], "logged_out");
    let closed = app
        .wait_for_event(&id, "connection_closed", |d| d["reason"] == "logout")
        .await;
    assert_eq!(closed.data["willReconnect"], false);
    assert_eq!(app.instance_events(&id, "logged_out").await.len(), 1);
    assert_eq!(app.instance_events(&id, "logout_requested").await.len(), 1);
    app.post(
        &format!("/api/whatsapp/{id}/send"),
        As::Key(&key),
        json!({"phone": "79001234567", "message": "x"}),
    )
    .await
    .expect_error(409);
    assert!(
        !app.config
            .data_dir
            .join("sim")
            .join(format!("{id}.json"))
            .exists(),
        "the session store is deleted"
    );

    // Reconnect: a new QR, as a never-paired instance.
    let re = app
        .post(
            &format!("/api/instances/{id}/reconnect"),
            As::Key(&key),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(
        re,
        json!({"success": true, "message": format!("Instance {id} reconnected")})
    );
    app.wait_for_nth_event(&id, "qr_received", 2).await;
    assert_eq!(status(&app, &user, &id).await["status"], "qr");
}

#[tokio::test]
async fn unscanned_qr_codes_stop_at_the_cap_until_a_reconnect() {
    let app = TestApp::spawn_with(|c| {
        c.qr_max_codes = 3;
        c.sim_qr_interval = Duration::from_millis(30);
    })
    .await;
    let id = app
        .create_instance(&app.admin, json!({"name": "cap"}))
        .await;
    let closed = app
        .wait_for_event(&id, "connection_closed", |d| d["reason"] == "qr_timeout")
        .await;
    assert_eq!(closed.data["willReconnect"], false);
    assert_eq!(app.instance_events(&id, "qr_received").await.len(), 3);
    let st = app
        .get(
            &format!("/api/whatsapp/{id}/status"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    assert_eq!(
        st,
        json!({"ready": false, "status": "disconnected", "hasQr": false})
    );
    app.post(
        &format!("/api/instances/{id}/reconnect"),
        As::Key(&app.admin.api_key),
        json!({}),
    )
    .await
    .expect(200);
    app.wait_for_nth_event(&id, "qr_received", 4).await;
    app.post(
        &format!("/api/sim/instances/{id}/scan"),
        As::Key(&app.admin.api_key),
        json!({}),
    )
    .await
    .expect(200);
    app.wait_for_event(&id, "connection_opened", |_| true).await;
}

#[tokio::test]
async fn a_dropped_connection_reconnects_and_a_crash_loop_stops() {
    let app = TestApp::spawn().await;
    let id = app.connected_instance(&app.admin, "79005550000").await;
    let key = app.admin.api_key.clone();
    app.post(
        &format!("/api/sim/instances/{id}/drop"),
        As::Key(&key),
        json!({}),
    )
    .await
    .expect(200);
    let closed = app
        .wait_for_event(&id, "connection_closed", |d| {
            d["reason"] == "connection_lost"
        })
        .await;
    assert_eq!(closed.data["willReconnect"], true);
    app.wait_for_nth_event(&id, "connection_opened", 2).await;
    assert_eq!(
        app.instance_events(&id, "qr_received").await.len(),
        1,
        "a reconnect needs no new QR"
    );
    // Keep dropping: the guard stops reconnecting after 5 drops within a minute.
    for n in 2..=5 {
        app.wait_for_nth_event(&id, "connection_opened", n).await;
        app.post(
            &format!("/api/sim/instances/{id}/drop"),
            As::Key(&key),
            json!({}),
        )
        .await
        .expect(200);
    }
    let stopped = app
        .wait_for_event(&id, "connection_closed", |d| d["reason"] == "crash_loop")
        .await;
    assert_eq!(stopped.data["willReconnect"], false);
    let st = app
        .get(&format!("/api/whatsapp/{id}/status"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(st["status"], "disconnected");
    app.post(
        &format!("/api/instances/{id}/reconnect"),
        As::Key(&key),
        json!({}),
    )
    .await
    .expect(200);
    app.wait_for_nth_event(&id, "connection_opened", 6).await;
}

#[tokio::test]
async fn paired_instances_come_back_connected_after_a_restart() {
    let app = TestApp::spawn().await;
    let admin = app.admin.clone();
    let id = app.connected_instance(&admin, "79006660000").await;
    let unpaired = app
        .create_instance(&admin, json!({"name": "waiting"}))
        .await;
    app.wait_for_event(&unpaired, "qr_received", |_| true).await;
    let app = app.restart().await;
    let closed = app.instance_events(&id, "connection_closed").await;
    assert_eq!(closed.len(), 1);
    assert_eq!(
        closed[0].data,
        json!({"instanceId": id, "reason": "shutdown", "willReconnect": true})
    );
    app.wait_for_nth_event(&id, "connection_opened", 2).await;
    assert_eq!(
        app.instance_events(&id, "qr_received").await.len(),
        1,
        "no new QR"
    );
    let st = app
        .get(
            &format!("/api/whatsapp/{id}/status"),
            As::Key(&admin.api_key),
        )
        .await
        .expect(200);
    assert_eq!(st["status"], "connected");
    app.wait_for_nth_event(&unpaired, "qr_received", 2).await;
    app.post(
        &format!("/api/whatsapp/{id}/send"),
        As::Key(&admin.api_key),
        json!({"phone": "79001234567", "message": "back"}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn bad_sends_are_4xx_and_record_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.media_max_bytes = 10_000;
        c.media_allow_private = false;
    })
    .await;
    let key = app.admin.api_key.clone();
    let id = app.connected_instance(&app.admin, "79007770000").await;
    let waiting = app
        .create_instance(&app.admin, json!({"name": "unpaired"}))
        .await;
    app.wait_for_event(&waiting, "qr_received", |_| true).await;
    let before = app.command_events().await.len();
    let send = format!("/api/whatsapp/{id}/send");
    for (body, code) in [
        (json!({"phone": "123", "message": "x"}), 400),
        (json!({"phone": "1234567890123456", "message": "x"}), 400),
        (json!({"phone": "7900abc4567", "message": "x"}), 400),
        (json!({"phone": "someone@example.com", "message": "x"}), 400),
        (json!({"phone": "", "message": "x"}), 400),
        (json!({"phone": "79001234567", "message": ""}), 400),
        (json!({"phone": "79001234567", "message": "   "}), 400),
        (json!({"phone": "79001234567"}), 400),
        (json!({"phone": 79001234567u64, "message": "x"}), 400),
        (
            json!({"phone": "79001234567", "message": "x".repeat(65_537)}),
            400,
        ),
    ] {
        app.post(&send, As::Key(&key), body.clone())
            .await
            .expect_error(code);
    }
    // Not connected: a clear 409.
    let err = app
        .post(
            &format!("/api/whatsapp/{waiting}/send"),
            As::Key(&key),
            json!({"phone": "79001234567", "message": "x"}),
        )
        .await
        .expect_error(409);
    assert!(err["message"].as_str().unwrap().contains("not connected"));
    // Media: private address refused, too large, upstream 404, bad scheme.
    let files = files::serve().await;
    let media = format!("/api/whatsapp/{id}/send-media");
    for (url, code) in [
        (format!("{files}/image.png"), 400),
        ("http://localhost:1/x.png".to_string(), 400),
        ("ftp://example.com/x.png".to_string(), 400),
        ("".to_string(), 400),
    ] {
        app.post(
            &media,
            As::Key(&key),
            json!({"phone": "79001234567", "url": url}),
        )
        .await
        .expect_error(code);
    }
    // Upload over the cap, and an empty one.
    let form = reqwest::multipart::Form::new()
        .text("phone", "79001234567")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![0u8; 20_000]).file_name("big.bin"),
        );
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{id}/send-file")))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    TestApp::read(resp).await.expect_error(413);
    let form = reqwest::multipart::Form::new()
        .text("phone", "79001234567")
        .part(
            "file",
            reqwest::multipart::Part::bytes(Vec::new()).file_name("e.txt"),
        );
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{id}/send-file")))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    TestApp::read(resp).await.expect_error(400);
    let form = reqwest::multipart::Form::new().text("phone", "79001234567");
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{id}/send-file")))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    TestApp::read(resp).await.expect_error(400);
    // Sim controls: scanning a connected instance, empty inbound body, bad sender.
    app.post(
        &format!("/api/sim/instances/{id}/scan"),
        As::Key(&key),
        json!({}),
    )
    .await
    .expect_error(409);
    app.post(
        &format!("/api/sim/instances/{id}/inbound"),
        As::Key(&key),
        json!({"from": "79001234567", "body": ""}),
    )
    .await
    .expect_error(400);
    app.post(
        &format!("/api/sim/instances/{id}/inbound"),
        As::Key(&key),
        json!({"from": "nobody", "body": "x"}),
    )
    .await
    .expect_error(400);
    app.post(
        "/api/whatsapp/no-such-instance/send",
        As::Key(&key),
        json!({"phone": "79001234567", "message": "x"}),
    )
    .await
    .expect_error(404);
    assert_eq!(
        app.command_events().await.len(),
        before,
        "nothing was recorded"
    );
    assert!(app.instance_events(&id, "message_sent").await.is_empty());
}

#[tokio::test]
async fn media_over_the_size_cap_or_from_a_failing_url_is_refused() {
    let app = TestApp::spawn_with(|c| c.media_max_bytes = 10_000).await;
    let key = app.admin.api_key.clone();
    let id = app.connected_instance(&app.admin, "79008880000").await;
    let files = files::serve().await;
    let media = format!("/api/whatsapp/{id}/send-media");
    app.post(
        &media,
        As::Key(&key),
        json!({"phone": "79001234567", "url": format!("{files}/big.bin")}),
    )
    .await
    .expect_error(413);
    app.post(
        &media,
        As::Key(&key),
        json!({"phone": "79001234567", "url": format!("{files}/missing.png")}),
    )
    .await
    .expect_error(502);
    let ok = app
        .post(
            &media,
            As::Key(&key),
            json!({"phone": "79001234567", "url": format!("{files}/clip.mp4")}),
        )
        .await
        .expect(200);
    let e = app
        .wait_for_event(&id, "message_sent", |d| d["messageId"] == ok["id"])
        .await;
    assert_eq!(e.data["type"], "video");
    assert_eq!(e.data["media"]["fileName"], "clip.mp4");
    assert_eq!(app.instance_events(&id, "message_sent").await.len(), 1);
}

#[tokio::test]
async fn the_sim_controls_answer_404_when_the_engine_is_not_sim() {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let app = TestApp::spawn().await;
    let id = app.create_instance(&app.admin, json!({"name": "x"})).await;
    app.wait_for_event(&id, "qr_received", |_| true).await;
    // The same routes over the same state, without the simulated network.
    let mut state = app.state.clone();
    state.sim = None;
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(wa_gateway::api::routes(state)));
    for path in ["scan", "inbound", "drop"] {
        let resp = app
            .client
            .post(format!("http://{addr}/api/sim/instances/{id}/{path}"))
            .header("x-api-key", &app.admin.api_key)
            .json(&json!({"from": "79001234567", "body": "x"}))
            .send()
            .await
            .unwrap();
        let body = TestApp::read(resp).await.expect_error(404);
        assert!(
            body["message"].as_str().unwrap().contains("sim engine"),
            "{body}"
        );
    }
    // With the sim engine on, the same control pairs the instance.
    app.post(
        &format!("/api/sim/instances/{id}/scan"),
        As::Key(&app.admin.api_key),
        json!({}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn sigterm_stops_every_session_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .env("WA_ENGINE", "sim")
        .env("WA_SIM_AUTO_PAIR", "true")
        .env("WA_DATA_DIR", dir.path())
        .env("WA_LISTEN", format!("127.0.0.1:{port}"))
        .env("WA_ADMIN_PASSWORD", "admin-password")
        .env("WA_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut login = None;
    for _ in 0..100 {
        if let Ok(r) = client
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"email": "admin@localhost", "password": "admin-password"}))
            .send()
            .await
        {
            login = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = login.expect("the gateway came up")["user"]["apiKey"]
        .as_str()
        .unwrap()
        .to_string();
    let created: Value = client
        .post(format!("{base}/api/instances"))
        .header("x-api-key", &key)
        .json(&json!({"name": "term"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let sent = client
        .post(format!("{base}/api/whatsapp/{id}/send"))
        .header("x-api-key", &key)
        .json(&json!({"phone": "79001234567", "message": "before stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let pid = child.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc_kill(pid, 15) };
    let code = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("it stops")
        .unwrap();
    assert!(code.success(), "exit status {code:?}");
    let store = wa_gateway::store::EventStore::open(&dir.path().join("events.db"))
        .await
        .unwrap();
    let events = store.read_from(0, i64::MAX).await.unwrap();
    let closed: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "connection_closed")
        .collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].data["reason"], "shutdown");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
