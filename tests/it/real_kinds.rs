//! The message kinds on the real engine (whatsapp-rust) against the fake
//! WhatsApp network: each kind the gateway sends is decrypted at the fake
//! contact and checked field by field, and each kind the contact sends
//! arrives as its typed event, webhook and history entry.

use serde_json::{Value, json};
use whatsapp_rust::waproto::whatsapp as wa;

use crate::fake_wa::FakeWa;
use crate::fake_wa::network::{Contact, Received};
use crate::helpers::{As, TestApp};
use crate::kinds::{ogg_opus, upload, webp};
use crate::real_engine::{CONTACT, LONG_WAIT, PHONE, gateway_on, history, hook, nth_event};

/// POSTs `body` to `/api/whatsapp/{id}/{path}` and returns the answer's JSON.
async fn post(app: &TestApp, id: &str, path: &str, body: Value) -> Value {
    app.post(
        &format!("/api/whatsapp/{id}/{path}"),
        As::Key(&app.admin.api_key),
        body,
    )
    .await
    .expect(200)
}

/// The `nth` message the contact decrypted, within `LONG_WAIT`.
async fn at_contact(contact: &Contact, nth: usize) -> Received {
    tokio::time::timeout(LONG_WAIT, contact.nth_message(nth))
        .await
        .unwrap_or_else(|_| panic!("the contact got no message #{nth}"))
}

/// The bytes of message `mid`'s media through the API. Its handle is kept
/// by the supervisor beside the message's events, so a fetch right after
/// the send may still be a 404: asked again until `LONG_WAIT`.
async fn media_of(app: &TestApp, id: &str, mid: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + LONG_WAIT;
    loop {
        let resp = app
            .client
            .get(app.url(&format!("/api/whatsapp/{id}/messages/{mid}/media")))
            .header("x-api-key", &app.admin.api_key)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        if status == 200 {
            return resp.bytes().await.unwrap().to_vec();
        }
        assert!(
            status == 404 && tokio::time::Instant::now() < deadline,
            "the media of {mid}: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The entry of `mid` in a chat's history.
fn entry<'a>(rows: &'a [Value], mid: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["messageId"] == mid)
        .unwrap_or_else(|| panic!("{mid} is not in the history: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_goes_both_ways_through_the_real_client() {
    let fake = FakeWa::new();
    let contact = fake.add_contact(CONTACT, "Olga", None);
    let app = gateway_on(&fake).await;
    let key = app.admin.api_key.clone();
    let r = crate::receiver::Receiver::start().await;
    let id = app
        .create_instance(
            &app.admin,
            json!({"name": "kinds", "webhookUrl": r.url(), "webhookEnabled": true,
                   "notifyDelivery": true, "notifyRead": true,
                   "webhookEvents": ["message_reaction", "message_edited",
                                     "message_revoked", "chat_presence", "poll_vote"]}),
        )
        .await;
    let qr = nth_event(&app, &id, "qr_received", 1).await;
    fake.scan(qr.data["qrCode"].as_str().unwrap(), PHONE)
        .await
        .expect("scan");
    nth_event(&app, &id, "connection_opened", 1).await;
    fake.wait_prekeys(PHONE).await;
    let me = format!("{PHONE}@s.whatsapp.net");
    let them = format!("{CONTACT}@s.whatsapp.net");

    // A text from the contact to answer, react to and mark read.
    let hello = fake
        .send_text_from(&contact, PHONE, "Can you send me the address?")
        .await
        .expect("send");
    hook(&r, "message_received", |d| d["messageId"] == hello.as_str()).await;
    app.wait_for_projections().await;

    // ── Out: each kind decrypted and checked at the contact ──

    // A reply with a mention.
    let reply = post(
        &app,
        &id,
        "send",
        json!({"phone": CONTACT, "message": "Here it is, @79005550202",
               "quotedMessageId": hello, "mentions": [CONTACT]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = at_contact(&contact, 1).await;
    assert_eq!(got.id, reply);
    let ext = got
        .message
        .extended_text_message
        .as_option()
        .expect("a reply is an extended text");
    assert_eq!(ext.text.as_deref(), Some("Here it is, @79005550202"));
    let ctx = ext.context_info.as_option().expect("a quote context");
    assert_eq!(ctx.stanza_id.as_deref(), Some(hello.as_str()));
    assert_eq!(ctx.participant.as_deref(), Some(them.as_str()));
    assert_eq!(ctx.mentioned_jid, vec![them.clone()]);
    assert_eq!(
        ctx.quoted_message
            .as_option()
            .and_then(|q| q.conversation.as_deref()),
        Some("Can you send me the address?")
    );

    // A reaction to the contact's message.
    post(
        &app,
        &id,
        "send-reaction",
        json!({"messageId": hello, "emoji": "👍"}),
    )
    .await;
    let got = at_contact(&contact, 2).await;
    let reaction = got
        .message
        .reaction_message
        .as_option()
        .expect("a reaction message");
    assert_eq!(reaction.text.as_deref(), Some("👍"));
    let target = reaction.key.as_option().expect("the reacted message's key");
    assert_eq!(target.id.as_deref(), Some(hello.as_str()));
    assert_eq!(target.from_me, Some(false), "the contact's own message");

    // An edit of our reply.
    post(
        &app,
        &id,
        "edit-message",
        json!({"messageId": reply, "text": "Here it is (corrected)"}),
    )
    .await;
    let got = at_contact(&contact, 3).await;
    let edit = got
        .message
        .protocol_message
        .as_option()
        .expect("an edit is a protocol message");
    assert_eq!(
        edit.r#type,
        Some(wa::message::protocol_message::Type::MESSAGE_EDIT)
    );
    assert_eq!(
        edit.key.as_option().and_then(|k| k.id.as_deref()),
        Some(reply.as_str())
    );
    assert_eq!(
        edit.edited_message
            .as_option()
            .and_then(|m| m.conversation.as_deref()),
        Some("Here it is (corrected)")
    );

    // A location.
    let pin = post(
        &app,
        &id,
        "send-location",
        json!({"phone": CONTACT, "latitude": 55.7539, "longitude": 37.6208,
               "name": "Red Square", "address": "Moscow"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = at_contact(&contact, 4).await;
    assert_eq!(got.id, pin);
    let loc = got
        .message
        .location_message
        .as_option()
        .expect("a location");
    assert_eq!(
        (loc.degrees_latitude, loc.degrees_longitude),
        (Some(55.7539), Some(37.6208))
    );
    assert_eq!(loc.name.as_deref(), Some("Red Square"));
    assert_eq!(loc.address.as_deref(), Some("Moscow"));

    // A voice note: push-to-talk audio whose bytes the contact downloads
    // from the CDN and decrypts.
    let voice_bytes = ogg_opus(3000);
    let voice = upload(
        &app,
        &app.admin,
        &id,
        "send-voice",
        CONTACT,
        voice_bytes.clone(),
        "audio/ogg",
    )
    .await
    .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = at_contact(&contact, 5).await;
    assert_eq!(got.id, voice);
    let audio = got.message.audio_message.as_option().expect("an audio");
    assert_eq!(audio.ptt, Some(true), "sent as a voice note");
    assert_eq!(fake.download(&got.message).unwrap(), voice_bytes);
    // ...and the gateway can give the sent voice note back.
    assert_eq!(media_of(&app, &id, &voice).await, voice_bytes);

    // A delete for everyone of the location.
    post(&app, &id, "delete-message", json!({"messageId": pin})).await;
    let got = at_contact(&contact, 6).await;
    let revoke = got
        .message
        .protocol_message
        .as_option()
        .expect("a revoke is a protocol message");
    assert_eq!(
        revoke.r#type,
        Some(wa::message::protocol_message::Type::REVOKE)
    );
    assert_eq!(
        revoke.key.as_option().and_then(|k| k.id.as_deref()),
        Some(pin.as_str())
    );

    // Read marks: the contact gets a read receipt for its message.
    post(
        &app,
        &id,
        "mark-read",
        json!({"phone": CONTACT, "messageIds": [hello]}),
    )
    .await;
    tokio::time::timeout(LONG_WAIT, contact.receipt_of_kind(&hello, "read"))
        .await
        .expect("a read receipt at the contact");

    // Typing, recording, paused; then online.
    for state in ["typing", "recording", "paused"] {
        post(
            &app,
            &id,
            "chat-state",
            json!({"phone": CONTACT, "state": state}),
        )
        .await;
    }
    post(&app, &id, "presence", json!({"presence": "available"})).await;
    let states: Vec<String> = fake
        .outbound()
        .into_iter()
        .filter(|l| l.starts_with("chatstate ") || l.starts_with("presence "))
        .collect();
    assert_eq!(
        states,
        vec![
            format!("chatstate composing {them}"),
            format!("chatstate recording {them}"),
            format!("chatstate paused {them}"),
            "presence available".to_string(),
        ]
    );

    // A contact card, a sticker (its bytes through the CDN) and a poll.
    post(
        &app,
        &id,
        "send-contact",
        json!({"phone": CONTACT, "contactName": "Ivan Petrov",
               "contactNumbers": ["79001112233"]}),
    )
    .await;
    let got = at_contact(&contact, 7).await;
    let card = got.message.contact_message.as_option().expect("a card");
    assert_eq!(card.display_name.as_deref(), Some("Ivan Petrov"));
    let vcard = card.vcard.as_deref().unwrap();
    assert!(
        vcard.starts_with("BEGIN:VCARD") && vcard.contains("FN:Ivan Petrov"),
        "{vcard}"
    );
    assert!(vcard.contains("waid=79001112233"), "{vcard}");
    let sticker_bytes = webp(2048);
    upload(
        &app,
        &app.admin,
        &id,
        "send-sticker",
        CONTACT,
        sticker_bytes.clone(),
        "image/webp",
    )
    .await
    .expect(200);
    let got = at_contact(&contact, 8).await;
    assert!(got.message.sticker_message.is_set(), "a sticker");
    assert_eq!(fake.download(&got.message).unwrap(), sticker_bytes);
    let poll = post(
        &app,
        &id,
        "send-poll",
        json!({"phone": CONTACT, "question": "Lunch?",
               "options": ["Pizza", "Sushi", "Soup"]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = at_contact(&contact, 9).await;
    assert_eq!(got.id, poll);
    let created = got
        .message
        .poll_creation_message_v3
        .as_option()
        .expect("a single-choice poll");
    assert_eq!(created.name.as_deref(), Some("Lunch?"));
    let names: Vec<_> = created
        .options
        .iter()
        .filter_map(|o| o.option_name.clone())
        .collect();
    assert_eq!(names, ["Pizza", "Sushi", "Soup"]);
    let secret = got
        .message
        .message_context_info
        .as_option()
        .and_then(|c| c.message_secret.clone())
        .expect("the poll's secret for its voters");

    // The history saw it all: the reply edited (original kept), the
    // location deleted, the reaction on the contact's message.
    let rows = history(&app, &key, &id, CONTACT).await;
    let row = entry(&rows, &reply);
    assert_eq!(row["content"], "Here it is (corrected)", "{row}");
    assert_eq!(row["originalContent"], "Here it is, @79005550202", "{row}");
    assert_eq!(row["quotedMessageId"], hello.as_str(), "{row}");
    assert!(entry(&rows, &pin)["deletedAt"].is_string(), "{rows:?}");
    assert_eq!(
        entry(&rows, &hello)["reactions"],
        json!([{"from": me, "emoji": "👍"}])
    );

    // ── In: each kind from the contact, typed ──

    // A reply to our reply, mentioning us.
    let mut quoted = wa::ContextInfo {
        stanza_id: Some(reply.clone()),
        participant: Some(me.clone()),
        mentioned_jid: vec![me.clone()],
        ..Default::default()
    };
    quoted.quoted_message = Some(wa::Message {
        conversation: Some("Here it is (corrected)".into()),
        ..Default::default()
    })
    .into();
    let answer = fake
        .send_from(
            &contact,
            PHONE,
            &wa::Message {
                extended_text_message: Some(wa::message::ExtendedTextMessage {
                    text: Some("Thanks, @79005550101!".into()),
                    context_info: Some(quoted).into(),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let d = hook(&r, "message_received", |d| {
        d["messageId"] == answer.as_str()
    })
    .await;
    assert_eq!(d["body"], "Thanks, @79005550101!", "{d}");
    assert_eq!(d["quotedMessageId"], reply.as_str(), "{d}");
    assert_eq!(d["mentions"], json!([me]), "{d}");

    // A reaction to our reply.
    let key_of = |id: &str, from_me: bool| wa::MessageKey {
        remote_jid: Some(me.clone()),
        from_me: Some(from_me),
        id: Some(id.to_string()),
        ..Default::default()
    };
    let react = |emoji: &str, target: &str| wa::Message {
        reaction_message: Some(wa::message::ReactionMessage {
            key: Some(key_of(target, false)).into(),
            text: Some(emoji.to_string()),
            sender_timestamp_ms: Some(chrono::Utc::now().timestamp_millis()),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    fake.send_from(&contact, PHONE, &react("❤️", &reply))
        .await
        .unwrap();
    let d = hook(&r, "message_reaction", |d| {
        d["targetMessageId"] == reply.as_str() && d["fromMe"] == false
    })
    .await;
    assert_eq!(d["emoji"], "❤️", "{d}");
    assert_eq!(d["from"], them.as_str(), "{d}");

    // An edit and a delete of the contact's own first message.
    let protocol = |kind, target: &str, edited: Option<&str>| wa::Message {
        protocol_message: Some(wa::message::ProtocolMessage {
            key: Some(key_of(target, true)).into(),
            r#type: Some(kind),
            edited_message: edited
                .map(|t| wa::Message {
                    conversation: Some(t.to_string()),
                    ..Default::default()
                })
                .into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    use wa::message::protocol_message::Type;
    fake.send_from(
        &contact,
        PHONE,
        &protocol(
            Type::MESSAGE_EDIT,
            &hello,
            Some("Send me the address, please"),
        ),
    )
    .await
    .unwrap();
    let d = hook(&r, "message_edited", |d| d["messageId"] == hello.as_str()).await;
    assert_eq!(d["text"], "Send me the address, please", "{d}");
    assert_eq!(d["fromMe"], false, "{d}");
    fake.send_from(&contact, PHONE, &protocol(Type::REVOKE, &answer, None))
        .await
        .unwrap();
    let d = hook(&r, "message_revoked", |d| d["messageId"] == answer.as_str()).await;
    assert_eq!(d["from"], them.as_str(), "{d}");

    // A location.
    let loc_in = fake
        .send_from(
            &contact,
            PHONE,
            &wa::Message {
                location_message: Some(wa::message::LocationMessage {
                    degrees_latitude: Some(59.9398),
                    degrees_longitude: Some(30.3146),
                    name: Some("Hermitage".into()),
                    address: Some("Saint Petersburg".into()),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let d = hook(&r, "message_received", |d| {
        d["messageId"] == loc_in.as_str()
    })
    .await;
    assert_eq!(d["type"], "location", "{d}");
    assert_eq!(
        d["location"],
        json!({"latitude": 59.9398, "longitude": 30.3146,
               "name": "Hermitage", "address": "Saint Petersburg"}),
        "{d}"
    );

    // A voice note, fetched back through the gateway byte for byte.
    let their_voice = ogg_opus(4100);
    let voice_in = fake
        .send_voice_from(&contact, PHONE, &their_voice)
        .await
        .unwrap();
    let d = hook(&r, "message_received", |d| {
        d["messageId"] == voice_in.as_str()
    })
    .await;
    assert_eq!(d["type"], "ptt", "{d}");
    assert_eq!(d["hasMedia"], true, "{d}");
    assert_eq!(media_of(&app, &id, &voice_in).await, their_voice);

    // Read: the contact read our reply.
    fake.receipt_from(&contact, PHONE, &[&reply], Some("read"))
        .unwrap();
    hook(&r, "message_status", |d| {
        d["messageId"] == reply.as_str() && d["status"] == "read"
    })
    .await;

    // A vote on our poll, encrypted with its secret as a phone does: opened
    // and counted per option.
    let vote = |poll_id: &str, creator: &str, choice: &[&str], secret: &[u8]| {
        let hashes: Vec<Vec<u8>> = choice
            .iter()
            .map(|c| whatsapp_rust::wacore::poll::compute_option_hash(c).to_vec())
            .collect();
        let (payload, iv) = whatsapp_rust::wacore::poll::encrypt_poll_vote_with_secret(
            &hashes, secret, poll_id, creator, &them,
        )
        .unwrap();
        wa::Message {
            poll_update_message: Some(wa::message::PollUpdateMessage {
                poll_creation_message_key: Some(wa::MessageKey {
                    remote_jid: Some(if creator == me {
                        me.clone()
                    } else {
                        them.clone()
                    }),
                    from_me: Some(creator != me),
                    id: Some(poll_id.to_string()),
                    ..Default::default()
                })
                .into(),
                vote: Some(wa::message::PollEncValue {
                    enc_payload: Some(payload),
                    enc_iv: Some(iv.to_vec()),
                })
                .into(),
                sender_timestamp_ms: Some(chrono::Utc::now().timestamp_millis()),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }
    };
    fake.send_from(&contact, PHONE, &vote(&poll, &me, &["Sushi"], &secret))
        .await
        .unwrap();
    let d = hook(&r, "poll_vote", |d| d["pollMessageId"] == poll.as_str()).await;
    assert_eq!(d["selectedOptions"], json!(["Sushi"]), "{d}");
    assert_eq!(d["voter"], them.as_str(), "{d}");

    // A contact card, and a poll of the contact's own that it votes on.
    let card_in = fake
        .send_from(
            &contact,
            PHONE,
            &wa::Message {
                contact_message: Some(wa::message::ContactMessage {
                    display_name: Some("Anna".into()),
                    vcard: Some("BEGIN:VCARD\nVERSION:3.0\nFN:Anna\nTEL;waid=79007778899:+79007778899\nEND:VCARD".into()),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let d = hook(&r, "message_received", |d| {
        d["messageId"] == card_in.as_str()
    })
    .await;
    assert_eq!(d["type"], "contact", "{d}");
    assert_eq!(d["contact"]["displayName"], "Anna", "{d}");
    let their_secret = [7u8; 32];
    let their_poll = fake
        .send_from(
            &contact,
            PHONE,
            &wa::Message {
                poll_creation_message: Some(wa::message::PollCreationMessage {
                    name: Some("When?".into()),
                    options: ["Today", "Tomorrow", "Never"]
                        .iter()
                        .map(|o| wa::message::poll_creation_message::Option {
                            option_name: Some(o.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                    selectable_options_count: Some(0),
                    ..Default::default()
                })
                .into(),
                message_context_info: Some(wa::MessageContextInfo {
                    message_secret: Some(their_secret.to_vec()),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let d = hook(&r, "message_received", |d| {
        d["messageId"] == their_poll.as_str()
    })
    .await;
    assert_eq!(d["type"], "poll", "{d}");
    assert_eq!(d["poll"]["question"], "When?", "{d}");
    fake.send_from(
        &contact,
        PHONE,
        &vote(&their_poll, &them, &["Today", "Tomorrow"], &their_secret),
    )
    .await
    .unwrap();
    let d = hook(&r, "poll_vote", |d| {
        d["pollMessageId"] == their_poll.as_str()
    })
    .await;
    assert_eq!(d["selectedOptions"], json!(["Today", "Tomorrow"]), "{d}");

    // Typing, then recording.
    fake.chat_state_from(&contact, PHONE, "composing").unwrap();
    let d = hook(&r, "chat_presence", |d| d["state"] == "typing").await;
    assert_eq!(d["from"], them.as_str(), "{d}");
    assert_eq!(d["chat"], them.as_str(), "{d}");
    fake.chat_state_from(&contact, PHONE, "recording").unwrap();
    hook(&r, "chat_presence", |d| d["state"] == "recording").await;

    // The history: the contact's edit replaced its text and kept the
    // original; its deleted answer is marked; its reaction sits on our reply.
    let rows = history(&app, &key, &id, CONTACT).await;
    let row = entry(&rows, &hello);
    assert_eq!(row["content"], "Send me the address, please", "{row}");
    assert_eq!(row["originalContent"], "Can you send me the address?");
    assert!(entry(&rows, &answer)["deletedAt"].is_string(), "{rows:?}");
    assert_eq!(
        entry(&rows, &reply)["reactions"],
        json!([{"from": them, "emoji": "❤️"}])
    );
    let options = &entry(&rows, &poll)["poll"]["options"];
    assert_eq!(
        options,
        &json!([{"name": "Pizza", "votes": 0, "voters": []},
                {"name": "Sushi", "votes": 1, "voters": [them]},
                {"name": "Soup", "votes": 0, "voters": []}]),
    );
    fake.assert_clean();
}
