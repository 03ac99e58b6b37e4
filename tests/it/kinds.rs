//! Message kinds beyond text and media, and the opt-in webhook event types
//! (`webhookEvents`), through the HTTP API on the sim engine with a real
//! recording webhook receiver.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{As, Creds, TestApp, WAIT};
use crate::receiver::Receiver;

/// A gateway with one QR code per 30 s (a quiet log) and a 2 s webhook attempt timeout.
async fn gateway() -> TestApp {
    TestApp::spawn_with(|c| {
        c.sim_qr_interval = Duration::from_secs(30);
        c.webhook_timeout = Duration::from_secs(2);
    })
    .await
}

/// An instance's details as `GET /api/instances/{id}` shows them.
async fn detail(app: &TestApp, who: &Creds, id: &str) -> Value {
    app.get(&format!("/api/instances/{id}"), As::Key(&who.api_key))
        .await
        .expect(200)
}

/// Waits until the webhook intake has applied the whole log.
async fn wait_for_intake(app: &TestApp) {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let cp = wa_gateway::backbone::load_checkpoint(app.state.webhooks.db(), "webhooks")
            .await
            .unwrap();
        if cp >= head {
            return;
        }
        assert!(Instant::now() < deadline, "the intake is stuck at {cp}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `webhookEvents` the dispatcher holds for an instance (as of the log).
async fn dispatcher_list(app: &TestApp, id: &str) -> Vec<String> {
    wait_for_intake(app).await;
    let mut conn = app.state.webhooks.db().acquire().await.unwrap();
    wa_gateway::webhooks::deliveries::settings(&mut conn, id)
        .await
        .unwrap()
        .expect("settings of the instance")
        .events
}

#[tokio::test]
async fn webhook_events_are_validated_stored_shown_and_replaced_and_default_to_none() {
    let app = gateway().await;
    let who = app.admin.clone();
    let r = Receiver::start().await;

    // Default: none, and the instance's settings and log event keep the seed's shape.
    let plain = app
        .create_instance(&who, json!({"name": "plain", "webhookUrl": r.url()}))
        .await;
    assert!(
        detail(&app, &who, &plain).await["webhookSettings"]
            .get("webhookEvents")
            .is_none()
    );
    let created = app.instance_events(&plain, "instance_created").await;
    assert!(created[0].data["webhook"].get("events").is_none());
    assert!(dispatcher_list(&app, &plain).await.is_empty());

    // A list: each name once, in the documented order, in the log and at the dispatcher.
    let listed = app
        .create_instance(
            &who,
            json!({"name": "listed", "webhookUrl": r.url(),
                   "webhookEvents": ["poll_vote", "message_reaction", "poll_vote"]}),
        )
        .await;
    let want = json!(["message_reaction", "poll_vote"]);
    assert_eq!(
        detail(&app, &who, &listed).await["webhookSettings"]["webhookEvents"],
        want
    );
    let created = app.instance_events(&listed, "instance_created").await;
    assert_eq!(created[0].data["webhook"]["events"], want);
    assert_eq!(
        dispatcher_list(&app, &listed).await,
        vec!["message_reaction", "poll_vote"]
    );

    // Unknown names, seed event names and wrong JSON types: 400, nothing changes.
    let before = app.command_events().await.len();
    for bad in [
        json!(["nope"]),
        json!(["message_received"]),
        json!("poll_vote"),
        json!([1]),
    ] {
        let e = app
            .post(
                "/api/instances",
                As::Key(&who.api_key),
                json!({"name": "bad", "webhookEvents": bad}),
            )
            .await
            .expect_error(400);
        assert_eq!(e["error"], "bad_request", "{bad}: {e}");
        app.put(
            &format!("/api/instances/{listed}"),
            As::Key(&who.api_key),
            json!({"webhookSettings": {"webhookEvents": bad}}),
        )
        .await
        .expect_error(400);
    }
    let e = app
        .post(
            "/api/instances",
            As::Key(&who.api_key),
            json!({"name": "bad", "webhookEvents": ["nope"]}),
        )
        .await
        .expect_error(400);
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("nope") && message.contains("message_edited"),
        "{message}"
    );
    assert_eq!(app.command_events().await.len(), before);
    assert_eq!(
        detail(&app, &who, &listed).await["webhookSettings"]["webhookEvents"],
        want
    );

    // An update replaces the list; other settings stay; `[]` clears it.
    app.put(
        &format!("/api/instances/{listed}"),
        As::Key(&who.api_key),
        json!({"webhookSettings": {"webhookEvents": ["message_edited"], "notifyRead": true}}),
    )
    .await
    .expect(200);
    let d = detail(&app, &who, &listed).await;
    assert_eq!(
        d["webhookSettings"]["webhookEvents"],
        json!(["message_edited"])
    );
    assert_eq!(d["webhookSettings"]["notifyRead"], true);
    assert_eq!(dispatcher_list(&app, &listed).await, vec!["message_edited"]);
    app.put(
        &format!("/api/instances/{listed}"),
        As::Key(&who.api_key),
        json!({"name": "renamed"}),
    )
    .await
    .expect(200);
    assert_eq!(
        detail(&app, &who, &listed).await["webhookSettings"]["webhookEvents"],
        json!(["message_edited"])
    );
    app.put(
        &format!("/api/instances/{listed}"),
        As::Key(&who.api_key),
        json!({"webhookSettings": {"webhookEvents": []}}),
    )
    .await
    .expect(200);
    assert!(
        detail(&app, &who, &listed).await["webhookSettings"]
            .get("webhookEvents")
            .is_none()
    );
    assert!(dispatcher_list(&app, &listed).await.is_empty());
}

#[tokio::test]
async fn an_instance_listing_opt_in_events_still_gets_the_seed_webhooks_as_before() {
    let app = gateway().await;
    let who = app.admin.clone();
    let r = Receiver::start().await;
    let id = app
        .create_instance(
            &who,
            json!({"name": "listed", "webhookUrl": r.url(),
                   "webhookEvents": ["message_reaction", "message_edited"]}),
        )
        .await;
    r.wait_until(|h| h.event() == "qr_received").await;
    app.post(
        &format!("/api/sim/instances/{id}/scan"),
        As::Key(&who.api_key),
        json!({"phone": "79001110001"}),
    )
    .await
    .expect(200);
    r.wait_until(|h| h.event() == "connection_opened").await;
    app.post(
        &format!("/api/sim/instances/{id}/inbound"),
        As::Key(&who.api_key),
        json!({"from": "79003330003", "body": "hi", "pushName": "Ivan"}),
    )
    .await
    .expect(200);
    let hit = r.wait_until(|h| h.event() == "message_received").await;
    assert_eq!(hit.json["data"]["body"], "hi");
}

// ---------------------------------------------------------------- kinds

/// Every opt-in webhook event type.
const ALL_OPT_IN: [&str; 5] = [
    "message_reaction",
    "message_edited",
    "message_revoked",
    "poll_vote",
    "chat_presence",
];

/// A paired instance with a webhook at `url` listing `events`.
async fn hooked_instance(
    app: &TestApp,
    who: &Creds,
    url: &str,
    phone: &str,
    events: &[&str],
) -> String {
    let id = app
        .create_instance(
            who,
            json!({"name": format!("inst {phone}"), "webhookUrl": url,
                   "notifyDelivery": true, "webhookEvents": events}),
        )
        .await;
    app.wait_for_event(&id, "qr_received", |_| true).await;
    app.post(
        &format!("/api/sim/instances/{id}/scan"),
        As::Key(&who.api_key),
        json!({"phone": phone}),
    )
    .await
    .expect(200);
    app.wait_for_event(&id, "connection_opened", |_| true).await;
    id
}

/// POSTs `body` to `/api/whatsapp/{id}/{path}` and returns the answer's `id`.
async fn send(app: &TestApp, who: &Creds, id: &str, path: &str, body: Value) -> String {
    app.post(
        &format!("/api/whatsapp/{id}/{path}"),
        As::Key(&who.api_key),
        body,
    )
    .await
    .expect(200)["id"]
        .as_str()
        .expect("an id")
        .to_string()
}

/// Uploads `bytes` as `file` to a multipart send endpoint; returns the answer.
pub(crate) async fn upload(
    app: &TestApp,
    who: &Creds,
    id: &str,
    path: &str,
    phone: &str,
    bytes: Vec<u8>,
    mime: &str,
) -> crate::helpers::Answer {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("f.bin")
        .mime_str(mime)
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("phone", phone.to_string())
        .part("file", part);
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{id}/{path}")))
        .header("x-api-key", &who.api_key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    TestApp::read(resp).await
}

/// A small OGG/Opus file (the page header and an OpusHead packet).
pub(crate) fn ogg_opus(len: usize) -> Vec<u8> {
    let mut v = b"OggS\x00\x02".to_vec();
    v.resize(28, 0);
    v.extend_from_slice(b"OpusHead\x01\x01");
    v.resize(len, 3);
    v
}

/// A small WebP file (RIFF header).
pub(crate) fn webp(len: usize) -> Vec<u8> {
    let mut v = b"RIFF\x00\x00\x00\x00WEBPVP8 ".to_vec();
    v.resize(len, 5);
    v
}

/// The history of a chat as the API shows it, newest first.
async fn history(app: &TestApp, who: &Creds, id: &str, chat: &str) -> Vec<Value> {
    app.wait_for_projections().await;
    app.get(
        &format!("/api/instances/{id}/chats/{chat}/messages?limit=100"),
        As::Key(&who.api_key),
    )
    .await
    .expect(200)["messages"]
        .as_array()
        .unwrap()
        .clone()
}

/// The history entry of message `mid`.
fn entry<'a>(messages: &'a [Value], mid: &str) -> &'a Value {
    messages
        .iter()
        .find(|m| m["messageId"] == mid)
        .unwrap_or_else(|| panic!("{mid} not in history: {messages:?}"))
}

#[tokio::test]
async fn every_send_kind_becomes_an_event_a_webhook_history_and_reaches_the_other_instance() {
    let app = gateway().await;
    let who = app.admin.clone();
    let r = Receiver::start().await;
    let b_hooks = Receiver::start().await;
    let a = hooked_instance(&app, &who, &r.url(), "79001110001", &ALL_OPT_IN).await;
    let b = hooked_instance(&app, &who, &b_hooks.url(), "79002220002", &ALL_OPT_IN).await;
    let to = "79002220002";

    // A reply with a mention.
    let first = send(
        &app,
        &who,
        &a,
        "send",
        json!({"phone": to, "message": "first"}),
    )
    .await;
    let reply = send(
        &app,
        &who,
        &a,
        "send",
        json!({"phone": to, "message": "@79003330003 see above",
               "quotedMessageId": first, "mentions": ["79003330003"]}),
    )
    .await;
    let e = app
        .wait_for_event(&a, "message_sent", |d| d["messageId"] == reply)
        .await;
    assert_eq!(e.data["quotedMessageId"], first);
    assert_eq!(e.data["mentions"], json!(["79003330003@s.whatsapp.net"]));
    let hit = r
        .wait_until(|h| h.event() == "message_sent" && h.json["data"]["messageId"] == reply)
        .await;
    assert_eq!(hit.json["data"]["quotedMessageId"], first);
    let got = app
        .wait_for_event(&b, "message_received", |d| d["messageId"] == reply)
        .await;
    assert_eq!(got.data["quotedMessageId"], first);
    assert_eq!(got.data["mentions"], json!(["79003330003@s.whatsapp.net"]));

    // Location, contact card, poll, voice note, sticker.
    let loc = send(
        &app,
        &who,
        &a,
        "send-location",
        json!({"phone": to, "latitude": 55.7539, "longitude": 37.6208, "name": "Red Square"}),
    )
    .await;
    let card = send(
        &app,
        &who,
        &a,
        "send-contact",
        json!({"phone": to, "contactName": "Ivan Ivanov", "contactNumbers": ["79007654321"]}),
    )
    .await;
    let poll = send(
        &app,
        &who,
        &a,
        "send-poll",
        json!({"phone": to, "question": "Lunch?", "options": ["Pizza", "Sushi", "Soup"],
               "multipleChoice": true}),
    )
    .await;
    let voice = upload(
        &app,
        &who,
        &a,
        "send-voice",
        to,
        ogg_opus(3_000),
        "audio/ogg",
    )
    .await
    .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sticker = upload(
        &app,
        &who,
        &a,
        "send-sticker",
        to,
        webp(2_000),
        "image/webp",
    )
    .await
    .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (mid, kind) in [
        (&loc, "location"),
        (&card, "contact"),
        (&poll, "poll"),
        (&voice, "voice"),
        (&sticker, "sticker"),
    ] {
        let e = app
            .wait_for_event(&a, "message_sent", |d| d["messageId"] == *mid)
            .await;
        assert_eq!(e.data["type"], kind, "{kind}");
        r.wait_until(|h| h.event() == "message_sent" && h.json["data"]["messageId"] == *mid)
            .await;
    }
    let e = app
        .wait_for_event(&a, "message_sent", |d| d["messageId"] == card)
        .await;
    let vcard = e.data["contact"]["vcard"].as_str().unwrap();
    assert!(
        vcard.contains("FN:Ivan Ivanov") && vcard.contains("waid=79007654321"),
        "{vcard}"
    );
    let e = app
        .wait_for_event(&a, "message_sent", |d| d["messageId"] == loc)
        .await;
    assert_eq!(e.data["location"]["latitude"], 55.7539);
    let got = app
        .wait_for_event(&b, "message_received", |d| d["messageId"] == poll)
        .await;
    assert_eq!(got.data["type"], "poll");
    assert_eq!(
        got.data["poll"]["options"],
        json!(["Pizza", "Sushi", "Soup"])
    );
    assert_eq!(got.data["poll"]["selectableCount"], 3);
    let got = app
        .wait_for_event(&b, "message_received", |d| d["messageId"] == voice)
        .await;
    assert_eq!(got.data["type"], "ptt");

    // A reaction, an edit, a revoke: events (fromMe), webhooks, and the other side sees them.
    let reaction = send(
        &app,
        &who,
        &a,
        "send-reaction",
        json!({"messageId": first, "emoji": "👍"}),
    )
    .await;
    let e = app
        .wait_for_event(&a, "message_reaction", |d| d["messageId"] == reaction)
        .await;
    assert_eq!(
        (
            e.data["targetMessageId"].as_str(),
            e.data["fromMe"].as_bool()
        ),
        (Some(first.as_str()), Some(true))
    );
    assert_eq!(e.data["emoji"], "👍");
    r.wait_until(|h| h.event() == "message_reaction").await;
    let seen = app
        .wait_for_event(&b, "message_reaction", |d| d["targetMessageId"] == first)
        .await;
    assert_eq!(
        (seen.data["fromMe"].as_bool(), seen.data["from"].as_str()),
        (Some(false), Some("79001110001@s.whatsapp.net"))
    );
    b_hooks
        .wait_until(|h| h.event() == "message_reaction")
        .await;

    send(
        &app,
        &who,
        &a,
        "edit-message",
        json!({"messageId": first, "text": "first (fixed)"}),
    )
    .await;
    let e = app
        .wait_for_event(&a, "message_edited", |d| d["messageId"] == first)
        .await;
    assert_eq!(e.data["text"], "first (fixed)");
    r.wait_until(|h| h.event() == "message_edited").await;
    app.wait_for_event(&b, "message_edited", |d| {
        d["messageId"] == first && d["text"] == "first (fixed)"
    })
    .await;

    send(
        &app,
        &who,
        &a,
        "delete-message",
        json!({"messageId": reply}),
    )
    .await;
    app.wait_for_event(&a, "message_revoked", |d| {
        d["messageId"] == reply && d["fromMe"] == true
    })
    .await;
    r.wait_until(|h| h.event() == "message_revoked").await;
    app.wait_for_event(&b, "message_revoked", |d| d["messageId"] == reply)
        .await;

    // A vote from B's number on A's poll (injected), counted per option.
    app.post(
        &format!("/api/sim/instances/{a}/poll-vote"),
        As::Key(&who.api_key),
        json!({"from": to, "messageId": poll, "options": ["Pizza", "Soup"]}),
    )
    .await
    .expect(200);
    let hit = r.wait_until(|h| h.event() == "poll_vote").await;
    assert_eq!(
        hit.json["data"]["selectedOptions"],
        json!(["Pizza", "Soup"])
    );

    // Read marks, chat state, presence.
    let inbound = app
        .post(
            &format!("/api/sim/instances/{a}/inbound"),
            As::Key(&who.api_key),
            json!({"from": to, "body": "hello A"}),
        )
        .await
        .expect(200)["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for_event(&a, "message_received", |d| d["messageId"] == inbound)
        .await;
    app.post(
        &format!("/api/whatsapp/{a}/mark-read"),
        As::Key(&who.api_key),
        json!({"phone": to, "messageIds": [inbound]}),
    )
    .await
    .expect(200);
    let e = app.wait_for_event(&a, "chat_marked_read", |_| true).await;
    assert_eq!(e.data["messageIds"], json!([inbound]));
    app.post(
        &format!("/api/whatsapp/{a}/chat-state"),
        As::Key(&who.api_key),
        json!({"phone": to, "state": "recording"}),
    )
    .await
    .expect(200);
    app.wait_for_event(&a, "chat_state_sent", |d| d["state"] == "recording")
        .await;
    let p = app
        .wait_for_event(&b, "chat_presence", |d| d["state"] == "recording")
        .await;
    assert_eq!(p.data["from"], "79001110001@s.whatsapp.net");
    b_hooks.wait_until(|h| h.event() == "chat_presence").await;
    app.post(
        &format!("/api/whatsapp/{a}/presence"),
        As::Key(&who.api_key),
        json!({"presence": "unavailable"}),
    )
    .await
    .expect(200);
    app.wait_for_event(&a, "presence_set", |d| d["available"] == false)
        .await;

    // History: the edit replaced the content and kept the original, the
    // revoke marked the reply, the reaction and the votes attach.
    let h = history(&app, &who, &a, to).await;
    let m = entry(&h, &first);
    assert_eq!(m["content"], "first (fixed)");
    assert_eq!(m["originalContent"], "first");
    assert!(m["editedAt"].is_string());
    assert_eq!(
        m["reactions"],
        json!([{"from": "79001110001@s.whatsapp.net", "emoji": "👍"}])
    );
    let m = entry(&h, &reply);
    assert!(m["deletedAt"].is_string());
    assert_eq!(m["quotedMessageId"], first);
    let m = entry(&h, &poll);
    assert_eq!(
        m["poll"]["options"],
        json!([
            {"name": "Pizza", "votes": 1, "voters": ["79002220002@s.whatsapp.net"]},
            {"name": "Sushi", "votes": 0, "voters": []},
            {"name": "Soup", "votes": 1, "voters": ["79002220002@s.whatsapp.net"]},
        ])
    );
    assert_eq!(entry(&h, &loc)["location"]["name"], "Red Square");
    assert_eq!(entry(&h, &card)["contact"]["displayName"], "Ivan Ivanov");
    assert_eq!(entry(&h, &voice)["messageType"], "voice");
    assert_eq!(entry(&h, &sticker)["messageType"], "sticker");

    // Statistics: messages per kind; reactions and edits are no new messages.
    let stats = app
        .get(&format!("/api/stats/instances/{a}"), As::Key(&who.api_key))
        .await
        .expect(200);
    assert_eq!(stats["usage"]["messagesSent"], 7, "{stats}");
    assert_eq!(
        stats["usage"]["messagesByKind"]["sent"],
        json!({"contact": 1, "location": 1, "poll": 1, "sticker": 1, "text": 2, "voice": 1})
    );
    assert_eq!(
        stats["usage"]["messagesByKind"]["received"],
        json!({"text": 1})
    );
}

#[tokio::test]
async fn every_kind_injected_by_the_sim_arrives_typed_and_only_listed_opt_in_types_become_webhooks()
{
    let app = gateway().await;
    let who = app.admin.clone();
    let r = Receiver::start().await;
    let a = hooked_instance(
        &app,
        &who,
        &r.url(),
        "79001110001",
        &["message_reaction", "poll_vote"],
    )
    .await;
    let from = "79003330003";
    let inject = |path: &'static str, body: Value| {
        let (app, who, a) = (&app, &who, &a);
        async move {
            app.post(
                &format!("/api/sim/instances/{a}/{path}"),
                As::Key(&who.api_key),
                body,
            )
            .await
            .expect(200)
        }
    };
    let text = inject("inbound", json!({"from": from, "body": "hi"})).await["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = inject(
        "inbound",
        json!({"from": from, "body": "@79001110001 answer", "quotedMessageId": text, "mentions": ["79001110001"]}),
    )
    .await["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let loc = inject("inbound", json!({"from": from, "location": {"latitude": 1.5, "longitude": 2.5, "address": "Somewhere"}})).await["messageId"].as_str().unwrap().to_string();
    let card = inject(
        "inbound",
        json!({"from": from, "contact": {"name": "Li Wei", "numbers": ["8613800138000"]}}),
    )
    .await["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let poll = inject(
        "inbound",
        json!({"from": from, "poll": {"question": "When?", "options": ["Now", "Later"]}}),
    )
    .await["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let voice = inject("inbound", json!({"from": from, "mediaType": "voice"})).await["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let sticker =
        inject("inbound", json!({"from": from, "mediaType": "sticker"})).await["messageId"]
            .as_str()
            .unwrap()
            .to_string();

    let e = app
        .wait_for_event(&a, "message_received", |d| d["messageId"] == reply)
        .await;
    assert_eq!(
        (e.data["quotedMessageId"].as_str(), e.data["type"].as_str()),
        (Some(text.as_str()), Some("extendedText"))
    );
    assert_eq!(e.data["mentions"], json!(["79001110001@s.whatsapp.net"]));
    let e = app
        .wait_for_event(&a, "message_received", |d| d["messageId"] == loc)
        .await;
    assert_eq!(
        (
            e.data["type"].as_str(),
            e.data["location"]["address"].as_str()
        ),
        (Some("location"), Some("Somewhere"))
    );
    let e = app
        .wait_for_event(&a, "message_received", |d| d["messageId"] == card)
        .await;
    assert!(
        e.data["contact"]["vcard"]
            .as_str()
            .unwrap()
            .contains("waid=8613800138000")
    );
    let e = app
        .wait_for_event(&a, "message_received", |d| d["messageId"] == poll)
        .await;
    assert_eq!(e.data["poll"]["selectableCount"], 1);
    let e = app
        .wait_for_event(&a, "message_received", |d| d["messageId"] == voice)
        .await;
    assert_eq!(
        (e.data["type"].as_str(), e.data["hasMedia"].as_bool()),
        (Some("ptt"), Some(true))
    );
    let e = app
        .wait_for_event(&a, "message_received", |d| d["messageId"] == sticker)
        .await;
    assert_eq!(e.data["type"], "sticker");
    // The webhook of a received reply carries its typed fields.
    let hit = r
        .wait_until(|h| h.event() == "message_received" && h.json["data"]["messageId"] == reply)
        .await;
    assert_eq!(hit.json["data"]["quotedMessageId"], text);

    inject(
        "reaction",
        json!({"from": from, "messageId": text, "emoji": "❤️"}),
    )
    .await;
    inject(
        "edit",
        json!({"from": from, "messageId": text, "text": "hi (edited)"}),
    )
    .await;
    inject("revoke", json!({"from": from, "messageId": card})).await;
    inject(
        "poll-vote",
        json!({"from": from, "messageId": poll, "options": ["Later"]}),
    )
    .await;
    inject("presence", json!({"from": from, "state": "typing"})).await;
    let e = app.wait_for_event(&a, "message_reaction", |_| true).await;
    assert_eq!(
        (e.data["emoji"].as_str(), e.data["targetMessageId"].as_str()),
        (Some("❤️"), Some(text.as_str()))
    );
    let e = app.wait_for_event(&a, "message_edited", |_| true).await;
    assert_eq!(
        (e.data["text"].as_str(), e.data["fromMe"].as_bool()),
        (Some("hi (edited)"), Some(false))
    );
    app.wait_for_event(&a, "message_revoked", |d| d["messageId"] == card)
        .await;
    app.wait_for_event(&a, "poll_vote", |d| {
        d["selectedOptions"] == json!(["Later"])
    })
    .await;
    let e = app.wait_for_event(&a, "chat_presence", |_| true).await;
    assert_eq!(
        (e.data["state"].as_str(), e.data["from"].as_str()),
        (Some("typing"), Some("79003330003@s.whatsapp.net"))
    );

    // Deliveries go out in event order: once a later message's webhook is
    // in, every earlier event was judged.
    let last = inject("inbound", json!({"from": from, "body": "the end"})).await["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    r.wait_until(|h| h.event() == "message_received" && h.json["data"]["messageId"] == last)
        .await;
    let names: Vec<String> = r.hits().iter().map(|h| h.event().to_string()).collect();
    assert!(names.contains(&"message_reaction".to_string()), "{names:?}");
    assert!(names.contains(&"poll_vote".to_string()), "{names:?}");
    for unlisted in ["message_edited", "message_revoked", "chat_presence"] {
        assert!(
            !names.contains(&unlisted.to_string()),
            "{unlisted} was not listed: {names:?}"
        );
    }
    let hit = r.wait_until(|h| h.event() == "message_reaction").await;
    assert_eq!(hit.json["data"]["targetMessageId"], text);

    // History: the edit, the revoke, the reaction and the vote attached.
    let h = history(&app, &who, &a, from).await;
    let m = entry(&h, &text);
    assert_eq!(
        (m["content"].as_str(), m["originalContent"].as_str()),
        (Some("hi (edited)"), Some("hi"))
    );
    assert_eq!(m["reactions"][0]["emoji"], "❤️");
    assert!(entry(&h, &card)["deletedAt"].is_string());
    assert_eq!(
        entry(&h, &poll)["poll"]["options"][1],
        json!({"name": "Later", "votes": 1, "voters": ["79003330003@s.whatsapp.net"]})
    );
    assert_eq!(
        entry(&h, &reply)["mentions"],
        json!(["79001110001@s.whatsapp.net"])
    );

    // Removing the reaction detaches it.
    inject(
        "reaction",
        json!({"from": from, "messageId": text, "emoji": ""}),
    )
    .await;
    app.wait_for_nth_event(&a, "message_reaction", 2).await;
    let h = history(&app, &who, &a, from).await;
    assert!(
        entry(&h, &text).get("reactions").is_none(),
        "{}",
        entry(&h, &text)
    );

    let stats = app
        .get(&format!("/api/stats/instances/{a}"), As::Key(&who.api_key))
        .await
        .expect(200);
    assert_eq!(stats["usage"]["messagesReceived"], 8, "{stats}");
    assert_eq!(
        stats["usage"]["messagesByKind"]["received"],
        json!({"contact": 1, "location": 1, "poll": 1, "sticker": 1, "text": 3, "voice": 1})
    );
}

#[tokio::test]
async fn bad_kind_requests_are_refused_clearly_and_change_nothing() {
    let app = gateway().await;
    let who = app.admin.clone();
    let a = app.connected_instance(&who, "79001110001").await;
    let from = "79003330003";
    let mine = send(
        &app,
        &who,
        &a,
        "send",
        json!({"phone": from, "message": "mine"}),
    )
    .await;
    let theirs = app
        .post(
            &format!("/api/sim/instances/{a}/inbound"),
            As::Key(&who.api_key),
            json!({"from": from, "body": "theirs"}),
        )
        .await
        .expect(200)["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for_event(&a, "message_received", |d| d["messageId"] == theirs)
        .await;
    // A text of ours from 20 minutes ago (past WhatsApp's edit window).
    let old = "3EB0OLDOLDOLDOLD";
    let then = chrono::Utc::now().timestamp() - 20 * 60;
    let sent = wa_gateway::events::MessageSent {
        instance_id: a.as_str().into(),
        message_id: old.into(),
        to: wa_gateway::ids::Jid::from_phone(from),
        body: "old".into(),
        message_type: wa_gateway::events::SentKind::Text,
        timestamp: then,
        has_media: false,
        media: None,
        extras: Default::default(),
    };
    app.state
        .store
        .append(
            wa_gateway::store::Append::fact(wa_gateway::store::StreamId::session(&a))
                .scope(Some(&who.id), Some(&a))
                .event(sent),
        )
        .await
        .unwrap();

    let before = app.command_events().await.len();
    let cases: Vec<(&str, Value, u16)> = vec![
        (
            "send-reaction",
            json!({"messageId": "NOPE", "emoji": "👍"}),
            404,
        ),
        (
            "send-reaction",
            json!({"messageId": mine, "emoji": "thumbs"}),
            400,
        ),
        (
            "edit-message",
            json!({"messageId": "NOPE", "text": "x"}),
            404,
        ),
        (
            "edit-message",
            json!({"messageId": theirs, "text": "x"}),
            409,
        ),
        ("edit-message", json!({"messageId": old, "text": "x"}), 409),
        (
            "edit-message",
            json!({"messageId": mine, "text": "  "}),
            400,
        ),
        ("delete-message", json!({"messageId": "NOPE"}), 404),
        ("delete-message", json!({"messageId": theirs}), 409),
        (
            "send",
            json!({"phone": from, "message": "re", "quotedMessageId": "NOPE"}),
            404,
        ),
        (
            "send",
            json!({"phone": from, "message": "hi", "mentions": ["123-456@g.us"]}),
            400,
        ),
        (
            "send",
            json!({"phone": from, "message": "hi", "mentions": "79001234567"}),
            400,
        ),
        (
            "send-location",
            json!({"phone": from, "latitude": 91.0, "longitude": 0.0}),
            400,
        ),
        (
            "send-location",
            json!({"phone": from, "latitude": "55", "longitude": 0.0}),
            400,
        ),
        (
            "send-contact",
            json!({"phone": from, "contactName": "X", "contactNumbers": []}),
            400,
        ),
        (
            "send-contact",
            json!({"phone": from, "contactName": "X", "contactNumbers": ["12"]}),
            400,
        ),
        (
            "send-poll",
            json!({"phone": from, "question": "Q?", "options": ["only"]}),
            400,
        ),
        (
            "send-poll",
            json!({"phone": from, "question": "Q?", "options": (0..13).map(|i| i.to_string()).collect::<Vec<_>>()}),
            400,
        ),
        (
            "send-poll",
            json!({"phone": from, "question": "Q?", "options": ["a", "a"]}),
            400,
        ),
        (
            "chat-state",
            json!({"phone": from, "state": "dancing"}),
            400,
        ),
        ("presence", json!({"presence": "busy"}), 400),
        (
            "mark-read",
            json!({"phone": from, "messageIds": [mine]}),
            400,
        ),
        (
            "mark-read",
            json!({"phone": from, "messageIds": ["NOPE"]}),
            404,
        ),
    ];
    for (path, body, status) in cases {
        let e = app
            .post(
                &format!("/api/whatsapp/{a}/{path}"),
                As::Key(&who.api_key),
                body.clone(),
            )
            .await
            .expect_error(status);
        assert!(!e["message"].as_str().unwrap().is_empty(), "{path} {body}");
    }
    // Voice notes and stickers: type 415, size 413.
    upload(
        &app,
        &who,
        &a,
        "send-voice",
        from,
        b"ID3\x04mp3 audio".to_vec(),
        "audio/mpeg",
    )
    .await
    .expect_error(415);
    upload(
        &app,
        &who,
        &a,
        "send-voice",
        from,
        ogg_opus(16 * 1024 * 1024 + 1),
        "audio/ogg",
    )
    .await
    .expect_error(413);
    upload(
        &app,
        &who,
        &a,
        "send-sticker",
        from,
        b"\x89PNG\r\n\x1a\n0000".to_vec(),
        "image/png",
    )
    .await
    .expect_error(415);
    upload(
        &app,
        &who,
        &a,
        "send-sticker",
        from,
        webp(500 * 1024 + 1),
        "image/webp",
    )
    .await
    .expect_error(413);
    assert_eq!(
        app.command_events().await.len(),
        before,
        "a refused request recorded something"
    );
}
