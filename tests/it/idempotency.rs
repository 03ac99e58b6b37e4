//! Idempotent sends: `Idempotency-Key` makes a retried send safe.

use serde_json::{Value, json};

use crate::helpers::{Answer, As, Creds, TestApp};

/// POSTs a text send with an idempotency key.
async fn send_with_key(
    app: &TestApp,
    who: &Creds,
    instance: &str,
    key: &str,
    body: Value,
) -> Answer {
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{instance}/send")))
        .header("x-api-key", &who.api_key)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    TestApp::read(resp).await
}

/// The ids of the messages the log says were sent by `instance`.
async fn sent_ids(app: &TestApp, instance: &str) -> Vec<String> {
    app.instance_events(instance, "message_sent")
        .await
        .iter()
        .map(|e| e.data["messageId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_repeated_send_with_the_same_key_answers_the_first_id_and_sends_once() {
    let app = TestApp::spawn().await;
    let user = app.create_user("idem@test.local").await;
    let id = app.connected_instance(&user, "79000000801").await;
    let body = json!({"phone": "79001230001", "message": "pay invoice 42"});

    let first = send_with_key(&app, &user, &id, "invoice-42", body.clone())
        .await
        .expect(200);
    let again = send_with_key(&app, &user, &id, "invoice-42", body.clone())
        .await
        .expect(200);
    assert_eq!(first["id"], again["id"]);
    assert_eq!(
        sent_ids(&app, &id).await,
        vec![first["id"].as_str().unwrap()]
    );

    // Another key, or no key, is another message.
    let other = send_with_key(&app, &user, &id, "invoice-43", body.clone())
        .await
        .expect(200);
    assert_ne!(other["id"], first["id"]);
    app.post(
        &format!("/api/whatsapp/{id}/send"),
        As::Key(&user.api_key),
        body,
    )
    .await
    .expect(200);
    assert_eq!(sent_ids(&app, &id).await.len(), 3);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_sends_nothing() {
    let app = TestApp::spawn().await;
    let user = app.create_user("idem422@test.local").await;
    let id = app.connected_instance(&user, "79000000802").await;
    send_with_key(
        &app,
        &user,
        &id,
        "k1",
        json!({"phone": "79001230002", "message": "a"}),
    )
    .await
    .expect(200);
    let err = send_with_key(
        &app,
        &user,
        &id,
        "k1",
        json!({"phone": "79001230002", "message": "b"}),
    )
    .await
    .expect_error(422);
    assert!(
        err["message"].as_str().unwrap().contains("Idempotency-Key"),
        "{err}"
    );
    assert_eq!(sent_ids(&app, &id).await.len(), 1);

    // A malformed key is refused before anything happens.
    for bad in ["has space", &"k".repeat(256)] {
        send_with_key(
            &app,
            &user,
            &id,
            bad,
            json!({"phone": "79001230002", "message": "c"}),
        )
        .await
        .expect_error(400);
    }
    assert_eq!(sent_ids(&app, &id).await.len(), 1);
}

#[tokio::test]
async fn concurrent_repeats_with_one_key_send_once() {
    let app = TestApp::spawn().await;
    let user = app.create_user("idemrace@test.local").await;
    let id = app.connected_instance(&user, "79000000803").await;
    let body = json!({"phone": "79001230003", "message": "only once"});
    let answers = futures::future::join_all(
        (0..12).map(|_| send_with_key(&app, &user, &id, "race-1", body.clone())),
    )
    .await;
    let ids: Vec<Value> = answers
        .into_iter()
        .map(|a| a.expect(200)["id"].clone())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(sent_ids(&app, &id).await, vec![ids[0].as_str().unwrap()]);
}

#[tokio::test]
async fn keys_survive_a_restart_and_belong_to_their_user() {
    let app = TestApp::spawn().await;
    let user = app.create_user("idemboot@test.local").await;
    let other = app.create_user("idemother@test.local").await;
    let id = app.connected_instance(&user, "79000000804").await;
    let theirs = app.connected_instance(&other, "79000000805").await;
    let body = json!({"phone": "79001230004", "message": "after a crash"});
    let first = send_with_key(&app, &user, &id, "boot-1", body.clone())
        .await
        .expect(200);

    // The same key is another user's own.
    let foreign = send_with_key(&app, &other, &theirs, "boot-1", body.clone())
        .await
        .expect(200);
    assert_ne!(foreign["id"], first["id"]);

    let app = app.restart().await;
    app.wait_for_nth_event(&id, "connection_opened", 2).await;
    let again = send_with_key(&app, &user, &id, "boot-1", body)
        .await
        .expect(200);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        sent_ids(&app, &id).await,
        vec![first["id"].as_str().unwrap()]
    );
}

/// POSTs a file upload with an idempotency key.
async fn upload_with_key(
    app: &TestApp,
    who: &Creds,
    instance: &str,
    key: &str,
    bytes: Vec<u8>,
) -> Answer {
    let form = reqwest::multipart::Form::new()
        .text("phone", "79001230006")
        .text("caption", "the report")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name("report.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{instance}/send-file")))
        .header("x-api-key", &who.api_key)
        .header("Idempotency-Key", key)
        .multipart(form)
        .send()
        .await
        .expect("request sent");
    TestApp::read(resp).await
}

#[tokio::test]
async fn a_repeated_upload_is_sent_once_and_other_bytes_under_the_key_are_422() {
    let app = TestApp::spawn().await;
    let user = app.create_user("idemfile@test.local").await;
    let id = app.connected_instance(&user, "79000000806").await;
    let first = upload_with_key(&app, &user, &id, "report-7", vec![b'%'; 4_096])
        .await
        .expect(200);
    let again = upload_with_key(&app, &user, &id, "report-7", vec![b'%'; 4_096])
        .await
        .expect(200);
    assert_eq!(first["id"], again["id"]);
    upload_with_key(&app, &user, &id, "report-7", vec![b'#'; 4_096])
        .await
        .expect_error(422);
    assert_eq!(
        sent_ids(&app, &id).await,
        vec![first["id"].as_str().unwrap()]
    );
}

/// POSTs `body` to a kinds endpoint with an idempotency key.
async fn kind_with_key(
    app: &TestApp,
    who: &Creds,
    instance: &str,
    path: &str,
    key: &str,
    body: Value,
) -> Answer {
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{instance}/{path}")))
        .header("x-api-key", &who.api_key)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    TestApp::read(resp).await
}

/// Uploads a voice note with an idempotency key.
async fn voice_with_key(
    app: &TestApp,
    who: &Creds,
    instance: &str,
    key: &str,
    bytes: Vec<u8>,
) -> Answer {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("v.ogg")
        .mime_str("audio/ogg")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("phone", "79000000899")
        .part("file", part);
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{instance}/send-voice")))
        .header("x-api-key", &who.api_key)
        .header("Idempotency-Key", key)
        .multipart(form)
        .send()
        .await
        .expect("request sent");
    TestApp::read(resp).await
}

#[tokio::test]
async fn the_message_kinds_sends_are_idempotent_too() {
    let app = TestApp::spawn().await;
    let user = app.create_user("idem-kinds@test.local").await;
    let id = app.connected_instance(&user, "79000000809").await;
    let pin = json!({"phone": "79000000899", "latitude": 55.75, "longitude": 37.62});
    let first = kind_with_key(&app, &user, &id, "send-location", "loc-1", pin.clone())
        .await
        .expect(200);
    let again = kind_with_key(&app, &user, &id, "send-location", "loc-1", pin)
        .await
        .expect(200);
    assert_eq!(
        first["id"], again["id"],
        "a retried location is the first one"
    );
    let other = json!({"phone": "79000000899", "latitude": 1.0, "longitude": 2.0});
    let err = kind_with_key(&app, &user, &id, "send-location", "loc-1", other)
        .await
        .expect(422);
    assert_eq!(err["error"], "unprocessable", "{err}");
    // The same key on another endpoint is another request: 422 too.
    let poll = json!({"phone": "79000000899", "question": "Lunch?", "options": ["A", "B"]});
    kind_with_key(&app, &user, &id, "send-poll", "loc-1", poll.clone())
        .await
        .expect(422);
    let p1 = kind_with_key(&app, &user, &id, "send-poll", "poll-1", poll.clone())
        .await
        .expect(200);
    let p2 = kind_with_key(&app, &user, &id, "send-poll", "poll-1", poll)
        .await
        .expect(200);
    assert_eq!(p1["id"], p2["id"]);

    let mut ogg = b"OggS\x00\x02".to_vec();
    ogg.resize(28, 0);
    ogg.extend_from_slice(b"OpusHead\x01\x01");
    ogg.resize(600, 3);
    let v1 = voice_with_key(&app, &user, &id, "voice-1", ogg.clone())
        .await
        .expect(200);
    let v2 = voice_with_key(&app, &user, &id, "voice-1", ogg.clone())
        .await
        .expect(200);
    assert_eq!(v1["id"], v2["id"], "a retried voice note is the first one");
    ogg.push(9);
    voice_with_key(&app, &user, &id, "voice-1", ogg)
        .await
        .expect(422);

    app.wait_for_projections().await;
    let sent = sent_ids(&app, &id).await;
    assert_eq!(
        sent.len(),
        3,
        "one location, one poll, one voice note: {sent:?}"
    );
    for answer in [&first, &p1, &v1] {
        assert!(sent.contains(&answer["id"].as_str().unwrap().to_string()));
    }
}
