//! Media both ways and the media endpoint, and pairing by phone-number code:
//! through the real client against the fake WhatsApp network and its fake
//! CDN (real media encryption, real pairing-code cryptography on the fake
//! phone), and on the sim engine.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use crate::fake_wa::FakeWa;
use crate::files;
use crate::helpers::{As, TestApp, WAIT};
use crate::real_engine::{CONTACT, LONG_WAIT, PHONE, gateway_on, hook, nth_event, status};

/// A fetched media: status, content type, content disposition, bytes.
struct Fetched {
    status: u16,
    content_type: String,
    disposition: String,
    bytes: Vec<u8>,
}

async fn get_media(app: &TestApp, key: &str, id: &str, message: &str) -> Fetched {
    let resp = app
        .client
        .get(app.url(&format!("/api/whatsapp/{id}/messages/{message}/media")))
        .header("x-api-key", key)
        .send()
        .await
        .expect("the media request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (status, content_type, disposition) = (
        resp.status().as_u16(),
        header("content-type"),
        header("content-disposition"),
    );
    let bytes = resp.bytes().await.expect("the media body").to_vec();
    Fetched {
        status,
        content_type,
        disposition,
        bytes,
    }
}

/// The media of a message once the gateway has kept it (a sent message's
/// handle is kept by the session a moment after the send answered).
async fn media_when_kept(app: &TestApp, key: &str, id: &str, message: &str) -> Fetched {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = get_media(app, key, id, message).await;
        if got.status != 404 || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A JPEG-looking picture a contact sends.
fn photo() -> Vec<u8> {
    let mut v = b"\xff\xd8\xff\xe0JFIF".to_vec();
    v.extend((0..20_000u32).map(|i| (i * 31 % 251) as u8));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn media_goes_both_ways_through_the_real_client_and_the_fake_cdn_and_can_be_fetched() {
    let fake = FakeWa::new();
    let contact = fake.add_contact(CONTACT, "Olga", None);
    let app = gateway_on(&fake).await;
    let key = app.admin.api_key.clone();
    let r = crate::receiver::Receiver::start().await;
    let id = app
        .create_instance(
            &app.admin,
            json!({"name": "media", "webhookUrl": r.url(), "webhookEnabled": true}),
        )
        .await;
    let qr = nth_event(&app, &id, "qr_received", 1).await;
    fake.scan(qr.data["qrCode"].as_str().unwrap(), PHONE)
        .await
        .expect("scan");
    nth_event(&app, &id, "connection_opened", 1).await;

    // An image by URL: the contact downloads it from the CDN, decrypts it,
    // and has exactly the bytes the URL served.
    let server = files::serve().await;
    let sent = app
        .post(
            &format!("/api/whatsapp/{id}/send-media"),
            As::Key(&key),
            json!({"phone": CONTACT, "url": format!("{server}/image.png"), "caption": "a picture"}),
        )
        .await
        .expect(200);
    let image_id = sent["id"].as_str().unwrap().to_string();
    let got = tokio::time::timeout(LONG_WAIT, contact.nth_message(1))
        .await
        .expect("the contact got the image");
    assert_eq!(got.id, image_id);
    let image = got
        .message
        .image_message
        .as_option()
        .expect("an image message");
    assert_eq!(image.caption.as_deref(), Some("a picture"));
    assert_eq!(image.mimetype.as_deref(), Some("image/png"));
    assert_eq!(
        fake.download(&got.message).expect("download and decrypt"),
        files::image_bytes()
    );
    let image_key = base64::engine::general_purpose::STANDARD
        .encode(image.media_key.as_deref().expect("a media key"));

    // A file upload: a document with its name, identical bytes.
    let report: Vec<u8> = (0..3_000u32).map(|i| (i % 97) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("phone", CONTACT)
        .text("caption", "the report")
        .part(
            "file",
            reqwest::multipart::Part::bytes(report.clone())
                .file_name("отчёт.pdf")
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
    let file_id = TestApp::read(resp).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = tokio::time::timeout(LONG_WAIT, contact.nth_message(2))
        .await
        .expect("the contact got the file");
    assert_eq!(got.id, file_id);
    let doc = got
        .message
        .document_message
        .as_option()
        .expect("a document message");
    assert_eq!(doc.file_name.as_deref(), Some("отчёт.pdf"));
    assert_eq!(fake.download(&got.message).expect("decrypt"), report);

    // Sent media can be fetched back through the gateway.
    let back = media_when_kept(&app, &key, &id, &image_id).await;
    assert_eq!(back.status, 200);
    assert_eq!(back.content_type, "image/png");
    assert_eq!(back.bytes, files::image_bytes());
    let back = media_when_kept(&app, &key, &id, &file_id).await;
    assert_eq!(back.status, 200);
    assert_eq!(back.bytes, report);
    assert!(
        back.disposition
            .contains("filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf"),
        "{}",
        back.disposition
    );

    // The contact sends an image: a webhook with its media, and the media
    // endpoint answers exactly the bytes the contact encrypted.
    fake.wait_prekeys(PHONE).await;
    let picture = photo();
    let in_id = fake
        .send_image_from(&contact, PHONE, &picture, "image/jpeg", "from Olga")
        .await
        .expect("send");
    let d = hook(&r, "message_received", |d| d["messageId"] == in_id.as_str()).await;
    assert_eq!(d["hasMedia"], true, "{d}");
    assert_eq!(d["type"], "image", "{d}");
    assert_eq!(d["body"], "from Olga", "{d}");
    let fetched = get_media(&app, &key, &id, &in_id).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.content_type, "image/jpeg");
    assert_eq!(
        fetched.disposition,
        format!("attachment; filename=\"{in_id}.jpg\"")
    );
    assert_eq!(fetched.bytes, picture);

    // 404: an unknown message, a message without media, another user's instance.
    let text_id = fake
        .send_text_from(&contact, PHONE, "just text")
        .await
        .expect("send");
    hook(&r, "message_received", |d| {
        d["messageId"] == text_id.as_str()
    })
    .await;
    for message in ["3EB0000000000000NOPE", text_id.as_str()] {
        let resp = app
            .get(
                &format!("/api/whatsapp/{id}/messages/{message}/media"),
                As::Key(&key),
            )
            .await;
        resp.expect_error(404);
    }
    let stranger = app.create_user("stranger@example.com").await;
    app.get(
        &format!("/api/whatsapp/{id}/messages/{in_id}/media"),
        As::Key(&stranger.api_key),
    )
    .await
    .expect_error(404);

    // The media keys stay out of the log (and so out of NATS and webhooks).
    for e in app.events().await {
        assert!(
            !e.data.to_string().contains(&image_key),
            "a media key in {}",
            e.event_type
        );
    }
    fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_real_client_pairs_by_phone_number_code_with_the_fake_phone() {
    let fake = FakeWa::new();
    let app = gateway_on(&fake).await;
    let key = app.admin.api_key.clone();
    let r = crate::receiver::Receiver::start().await;
    let id = app
        .create_instance(
            &app.admin,
            json!({"name": "by code", "webhookUrl": r.url(), "webhookEnabled": true}),
        )
        .await;
    nth_event(&app, &id, "qr_received", 1).await;

    // Bad input changes nothing.
    for body in [
        json!({}),
        json!({"phone": "not a number"}),
        json!({"phone": "123"}),
    ] {
        app.post(
            &format!("/api/instances/{id}/pair-code"),
            As::Key(&key),
            body,
        )
        .await
        .expect_error(400);
    }
    assert!(
        app.instance_events(&id, "pair_code_received")
            .await
            .is_empty()
    );

    let answer = app
        .post(
            &format!("/api/instances/{id}/pair-code"),
            As::Key(&key),
            json!({"phone": format!("+{PHONE}")}),
        )
        .await
        .expect(200);
    let code = answer["code"].as_str().unwrap().to_string();
    assert_pair_code_shape(&code);
    let event = nth_event(&app, &id, "pair_code_received", 1).await;
    assert_eq!(event.data["pairCode"], code.as_str());
    assert_eq!(event.data["phone"], PHONE);
    let d = hook(&r, "pair_code_received", |_| true).await;
    assert_eq!(d["pairCode"], code.as_str());
    let st = status(&app, &key, &id).await;
    assert_eq!(st["status"], "qr", "{st}");
    assert_eq!(st["waitingForCode"], true, "{st}");
    assert_no_code_in_activity(&app, &key, &id, &code).await;

    // The phone types the code: the real client finishes the flow and connects.
    fake.wait_code_request(PHONE).await;
    fake.enter_code(PHONE, &code).await.expect("enter the code");
    let opened = nth_event(&app, &id, "connection_opened", 1).await;
    assert_eq!(opened.data["phone"], PHONE);
    let st = status(&app, &key, &id).await;
    assert_eq!(st["status"], "connected", "{st}");
    assert_eq!(st.get("waitingForCode"), None, "{st}");
    assert!(fake.is_paired(PHONE));
    app.post(
        &format!("/api/instances/{id}/pair-code"),
        As::Key(&key),
        json!({"phone": PHONE}),
    )
    .await
    .expect_error(409);
    fake.assert_clean();
}

/// `ABCD-EFGH`: eight characters of Crockford's alphabet around a dash.
fn assert_pair_code_shape(code: &str) {
    let (a, b) = code.split_once('-').expect("a dash in the middle");
    assert_eq!((a.len(), b.len()), (4, 4), "{code}");
    assert!(
        format!("{a}{b}")
            .chars()
            .all(|c| "123456789ABCDEFGHJKLMNPQRSTVWXYZ".contains(c)),
        "{code}"
    );
}

/// The activity log shows that a code came, never the code.
async fn assert_no_code_in_activity(app: &TestApp, key: &str, id: &str, code: &str) {
    app.wait_for_projections().await;
    let log = app
        .get(&format!("/api/instances/{id}/activity"), As::Key(key))
        .await
        .expect(200);
    let text = log.to_string();
    assert!(text.contains("pair_code_received"), "{log}");
    assert!(!text.contains(code), "the code in the activity log: {log}");
}

/// A sim gateway whose QR codes do not run out during the test.
async fn sim_gateway() -> TestApp {
    TestApp::spawn_with(|c| c.sim_qr_interval = Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_sim_instance_pairs_by_code_typed_into_the_phone() {
    let app = sim_gateway().await;
    let key = app.admin.api_key.clone();
    let id = app
        .create_instance(&app.admin, json!({"name": "sim code"}))
        .await;
    app.wait_for_event(&id, "qr_received", |_| true).await;
    let code = app
        .post(
            &format!("/api/instances/{id}/pair-code"),
            As::Key(&key),
            json!({"phone": "79001230000"}),
        )
        .await
        .expect(200)["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert_pair_code_shape(&code);
    let event = app
        .wait_for_event(&id, "pair_code_received", |_| true)
        .await;
    assert_eq!(event.data["pairCode"], code.as_str());
    let st = app
        .get(&format!("/api/whatsapp/{id}/status"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(
        st,
        json!({"ready": false, "status": "qr", "hasQr": true, "waitingForCode": true})
    );
    assert_no_code_in_activity(&app, &key, &id, &code).await;

    // A wrong code pairs nothing; the right one (any case, any dash) pairs
    // with the number the code was asked for.
    app.post(
        &format!("/api/sim/instances/{id}/enter-code"),
        As::Key(&key),
        json!({"code": "ZZZZ-ZZZZ"}),
    )
    .await
    .expect_error(400);
    let typed = code.replace('-', "").to_lowercase();
    let paired = app
        .post(
            &format!("/api/sim/instances/{id}/enter-code"),
            As::Key(&key),
            json!({"code": typed}),
        )
        .await
        .expect(200);
    assert_eq!(paired["phone"], "79001230000");
    let opened = app.wait_for_event(&id, "connection_opened", |_| true).await;
    assert_eq!(opened.data["phone"], "79001230000");
    let st = app
        .get(&format!("/api/whatsapp/{id}/status"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(
        st,
        json!({"ready": true, "status": "connected", "hasQr": false})
    );
}

#[tokio::test]
async fn sim_media_sent_and_received_can_be_fetched_by_its_owner_only() {
    let app = sim_gateway().await;
    let key = app.admin.api_key.clone();
    let a = app.connected_instance(&app.admin, "79001110001").await;
    let b = app.connected_instance(&app.admin, "79001110002").await;
    let server = files::serve().await;
    let sent = app
        .post(
            &format!("/api/whatsapp/{a}/send-media"),
            As::Key(&key),
            json!({"phone": "79001110002", "url": format!("{server}/image.png"), "filename": "pic.png"}),
        )
        .await
        .expect(200);
    let mid = sent["id"].as_str().unwrap().to_string();
    let received = app
        .wait_for_event(&b, "message_received", |d| d["messageId"] == mid.as_str())
        .await;
    assert_eq!(received.data["hasMedia"], true);
    for instance in [&a, &b] {
        let got = media_when_kept(&app, &key, instance, &mid).await;
        assert_eq!(got.status, 200, "{instance}");
        assert_eq!(got.content_type, "image/png");
        assert_eq!(got.disposition, "attachment; filename=\"pic.png\"");
        assert_eq!(got.bytes, files::image_bytes());
    }
    // A text has no media; another user sees nothing.
    let text = app
        .post(
            &format!("/api/whatsapp/{a}/send"),
            As::Key(&key),
            json!({"phone": "79001110002", "message": "no media"}),
        )
        .await
        .expect(200);
    app.get(
        &format!(
            "/api/whatsapp/{a}/messages/{}/media",
            text["id"].as_str().unwrap()
        ),
        As::Key(&key),
    )
    .await
    .expect_error(404);
    let stranger = app.create_user("other@example.com").await;
    app.get(
        &format!("/api/whatsapp/{a}/messages/{mid}/media"),
        As::Key(&stranger.api_key),
    )
    .await
    .expect_error(404);
}

#[tokio::test]
async fn sim_media_over_the_size_cap_is_refused_with_413() {
    let app = TestApp::spawn_with(|c| {
        c.sim_qr_interval = Duration::from_secs(60);
        c.media_max_bytes = 5_000;
    })
    .await;
    let key = app.admin.api_key.clone();
    let a = app.connected_instance(&app.admin, "79001110011").await;
    let server = files::serve().await;
    // 4,321 bytes go out under the cap of 5,000 ...
    let sent = app
        .post(
            &format!("/api/whatsapp/{a}/send-media"),
            As::Key(&key),
            json!({"phone": "79001110012", "url": format!("{server}/image.png")}),
        )
        .await
        .expect(200);
    let mid = sent["id"].as_str().unwrap();
    assert_eq!(media_when_kept(&app, &key, &a, mid).await.status, 200);
    // ... and a gateway restarted with a smaller cap refuses to serve them.
    let mut app = app;
    app.config.media_max_bytes = 1_000;
    let app = app.restart().await;
    app.wait_for_nth_event(&a, "connection_opened", 2).await;
    app.get(
        &format!("/api/whatsapp/{a}/messages/{mid}/media"),
        As::Key(&key),
    )
    .await
    .expect_error(413);
}
