//! Groups and number checks through the HTTP API on the sim engine: several
//! instances of one gateway share the simulated network, so they can be in
//! one group; every change is an event on each instance and a webhook at a
//! real receiver.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{As, Creds, TestApp};
use crate::receiver::Receiver;

/// One QR per 30 s (a quiet log), a short webhook timeout.
fn tune(c: &mut wa_gateway::Config) {
    c.sim_qr_interval = Duration::from_secs(30);
    c.webhook_timeout = Duration::from_secs(2);
}

/// An instance whose webhook points at `url`, paired with `phone`.
async fn hooked_and_paired(app: &TestApp, who: &Creds, url: &str, phone: &str) -> String {
    let id = app
        .create_instance(
            who,
            json!({"name": format!("hooked {phone}"), "webhookUrl": url, "webhookEnabled": true,
                "webhookEvents": ["group_updated", "group_participants_changed"]}),
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

/// `/api/whatsapp/{id}{rest}`.
fn wa(id: &str, rest: &str) -> String {
    format!("/api/whatsapp/{id}{rest}")
}

/// Whether a group event's payload is about `group`.
fn about(group: &str) -> impl Fn(&Value) -> bool + '_ {
    move |d: &Value| d["groupId"] == group
}

/// The participant event of `action` on `group` for the instance.
async fn participants_event(app: &TestApp, id: &str, group: &str, action: &str) -> Value {
    app.wait_for_event(id, "group_participants_changed", |d| {
        d["groupId"] == group && d["action"] == action
    })
    .await
    .data
    .value()
    .clone()
}

/// The roles in a group as an instance sees it: jid → role.
async fn roles(app: &TestApp, key: &str, id: &str, group: &str) -> Vec<(String, String)> {
    let g = app
        .get(&wa(id, &format!("/groups/{group}")), As::Key(key))
        .await
        .expect(200);
    g["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["jid"].as_str().unwrap().to_string(),
                p["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_instances_share_a_group_from_creation_to_leaving_and_both_see_every_change() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn_with(tune).await;
    let key = app.admin.api_key.clone();
    let who = app.admin.clone();
    let (pa, pb, pc) = ("79001000001", "79001000002", "79001000003");
    let (ja, jb, jc) = (
        format!("{pa}@s.whatsapp.net"),
        format!("{pb}@s.whatsapp.net"),
        format!("{pc}@s.whatsapp.net"),
    );
    let a = hooked_and_paired(&app, &who, &receiver.url(), pa).await;
    let b = hooked_and_paired(&app, &who, &receiver.url(), pb).await;
    let c = app.connected_instance(&who, pc).await;

    // A creates the group with B (and a number that is not on WhatsApp).
    let created = app
        .post(
            &wa(&a, "/groups"),
            As::Key(&key),
            json!({"subject": "Team", "participants": [pb, "79999999999"], "description": "first"}),
        )
        .await
        .expect(200);
    let group = created["id"].as_str().unwrap().to_string();
    assert!(group.ends_with("@g.us"), "{created}");
    assert_eq!(created["subject"], "Team");
    assert_eq!(created["size"], 2);
    assert_eq!(
        roles(&app, &key, &a, &group).await,
        [
            (ja.clone(), "superadmin".into()),
            (jb.clone(), "member".into())
        ]
    );
    let own = app.wait_for_event(&a, "group_updated", about(&group)).await;
    assert_eq!(own.data["change"], "created");
    assert_eq!(own.data["by"], ja.as_str());
    assert_eq!(own.metadata.actor.as_deref(), Some(who.id.as_str()));
    let seen = app.wait_for_event(&b, "group_updated", about(&group)).await;
    assert_eq!(seen.data["change"], "created");
    assert_eq!(seen.data["subject"], "Team");
    assert_eq!(seen.data["participants"], json!([ja, jb]));

    // B sees the group in its list, with both participants.
    let list = app.get(&wa(&b, "/groups"), As::Key(&key)).await.expect(200);
    let listed = &list["groups"][0];
    assert_eq!(listed["id"], group.as_str());
    assert_eq!(listed["description"], "first");
    assert_eq!(listed["participants"].as_array().unwrap().len(), 2);

    // A message to the group reaches B, naming A as the participant; and back.
    let sent = app
        .post(
            &wa(&a, "/send"),
            As::Key(&key),
            json!({"phone": group, "message": "hello team"}),
        )
        .await
        .expect(200);
    let got = app
        .wait_for_event(&b, "message_received", |d| d["body"] == "hello team")
        .await;
    assert_eq!(got.data["messageId"], sent["id"]);
    assert_eq!(got.data["chat"], group.as_str());
    assert_eq!(got.data["from"], ja.as_str());
    assert_eq!(got.data["participant"], ja.as_str());
    app.post(
        &wa(&b, "/send"),
        As::Key(&key),
        json!({"phone": group, "message": "hi A"}),
    )
    .await
    .expect(200);
    let back = app
        .wait_for_event(&a, "message_received", |d| d["body"] == "hi A")
        .await;
    assert_eq!(back.data["participant"], jb.as_str());
    assert_eq!(back.data["chat"], group.as_str());
    // C, not in the group, got neither.
    assert!(app.instance_events(&c, "message_received").await.is_empty());

    // A member is not an admin: B cannot add C.
    let refused = app
        .post(
            &wa(&b, &format!("/groups/{group}/participants/add")),
            As::Key(&key),
            json!({"participants": [pc]}),
        )
        .await
        .expect_error(403);
    assert_eq!(refused["error"], "forbidden");

    // A adds C: C and B are told.
    let added = app
        .post(
            &wa(&a, &format!("/groups/{group}/participants/add")),
            As::Key(&key),
            json!({"participants": [pc, pb]}),
        )
        .await
        .expect(200);
    assert_eq!(added["results"][0]["status"], "ok");
    assert_eq!(added["results"][1]["status"], "already_participant");
    for id in [&a, &b, &c] {
        let e = participants_event(&app, id, &group, "add").await;
        assert_eq!(e["participants"], json!([jc]), "{id}");
        assert_eq!(e["by"], ja.as_str());
    }

    // Promote B: B may now rename the group, and A sees it.
    app.post(
        &wa(&a, &format!("/groups/{group}/participants/promote")),
        As::Key(&key),
        json!({"participants": [pb]}),
    )
    .await
    .expect(200);
    let promoted = participants_event(&app, &b, &group, "promote").await;
    assert_eq!(promoted["participants"], json!([jb]));
    app.put(
        &wa(&b, &format!("/groups/{group}/subject")),
        As::Key(&key),
        json!({"subject": "Team 2027"}),
    )
    .await
    .expect(200);
    let renamed = app
        .wait_for_event(&a, "group_updated", |d| {
            d["groupId"] == group.as_str() && d["change"] == "subject"
        })
        .await;
    assert_eq!(renamed.data["subject"], "Team 2027");
    assert_eq!(renamed.data["by"], jb.as_str());

    // Demote B again: its next change is refused.
    app.post(
        &wa(&a, &format!("/groups/{group}/participants/demote")),
        As::Key(&key),
        json!({"participants": [pb]}),
    )
    .await
    .expect(200);
    participants_event(&app, &b, &group, "demote").await;
    app.put(
        &wa(&b, &format!("/groups/{group}/subject")),
        As::Key(&key),
        json!({"subject": "Not allowed"}),
    )
    .await
    .expect_error(403);

    // The description: set by A, seen by B and C; removed with null.
    app.put(
        &wa(&a, &format!("/groups/{group}/description")),
        As::Key(&key),
        json!({"description": "Weekly sync\non Mondays"}),
    )
    .await
    .expect(200);
    for id in [&b, &c] {
        let d = app
            .wait_for_event(id, "group_updated", |d| {
                d["groupId"] == group.as_str() && d["change"] == "description"
            })
            .await;
        assert_eq!(d.data["description"], "Weekly sync\non Mondays");
    }
    let info = app
        .get(&wa(&c, &format!("/groups/{group}")), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(info["description"], "Weekly sync\non Mondays");
    assert_eq!(info["subject"], "Team 2027");

    // Remove C: C is told and no longer sees the group.
    app.post(
        &wa(&a, &format!("/groups/{group}/participants/remove")),
        As::Key(&key),
        json!({"participants": [pc]}),
    )
    .await
    .expect(200);
    let removed = participants_event(&app, &c, &group, "remove").await;
    assert_eq!(removed["participants"], json!([jc]));
    app.get(&wa(&c, &format!("/groups/{group}")), As::Key(&key))
        .await
        .expect_error(404);

    // The invite link: a member may not read it; a revoked one no longer joins.
    app.get(
        &wa(&b, &format!("/groups/{group}/invite-link")),
        As::Key(&key),
    )
    .await
    .expect_error(403);
    let old = app
        .get(
            &wa(&a, &format!("/groups/{group}/invite-link")),
            As::Key(&key),
        )
        .await
        .expect(200);
    let old_link = old["link"].as_str().unwrap().to_string();
    assert!(old_link.starts_with("https://chat.whatsapp.com/"), "{old}");
    let new = app
        .post(
            &wa(&a, &format!("/groups/{group}/invite-link/revoke")),
            As::Key(&key),
            json!({}),
        )
        .await
        .expect(200);
    assert_ne!(new["code"], old["code"]);
    let revoked = app
        .wait_for_event(&b, "group_updated", |d| {
            d["groupId"] == group.as_str() && d["change"] == "invite_revoked"
        })
        .await;
    assert_eq!(revoked.data["by"], ja.as_str());
    app.post(
        &wa(&c, "/join-group"),
        As::Key(&key),
        json!({"invite": old_link}),
    )
    .await
    .expect_error(404);
    let joined = app
        .post(
            &wa(&c, "/join-group"),
            As::Key(&key),
            json!({"invite": new["code"]}),
        )
        .await
        .expect(200);
    assert_eq!(joined["groupId"], group.as_str());
    for id in [&a, &b, &c] {
        let e = participants_event(&app, id, &group, "join").await;
        assert_eq!(e["participants"], json!([jc]), "{id}");
    }
    app.post(
        &wa(&c, "/join-group"),
        As::Key(&key),
        json!({"invite": new["link"]}),
    )
    .await
    .expect_error(409);

    // B leaves: A is told, B's list is empty.
    app.post(
        &wa(&b, &format!("/groups/{group}/leave")),
        As::Key(&key),
        json!({}),
    )
    .await
    .expect(200);
    for id in [&a, &b] {
        let e = participants_event(&app, id, &group, "leave").await;
        assert_eq!(e["participants"], json!([jb]), "{id}");
    }
    let list = app.get(&wa(&b, "/groups"), As::Key(&key)).await.expect(200);
    assert_eq!(list["groups"], json!([]));

    // History: B's group chat holds A's message with A as its sender.
    app.wait_for_projections().await;
    let history = app
        .get(
            &format!("/api/instances/{b}/chats/{group}/messages"),
            As::Key(&key),
        )
        .await
        .expect(200);
    let in_group: Vec<(&str, &Value)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["content"].as_str().unwrap(), &m["sender"]))
        .collect();
    assert_eq!(
        in_group,
        vec![("hi A", &Value::Null), ("hello team", &json!(ja))]
    );

    // Webhooks: the changes reached the receiver for each hooked instance,
    // and B's group message carries the group and the participant.
    let hook = receiver
        .wait_until(|h| h.event() == "message_received" && h.json["data"]["body"] == "hello team")
        .await;
    assert_eq!(hook.json["data"]["instanceId"], b.as_str());
    assert_eq!(hook.json["data"]["chat"], group.as_str());
    assert_eq!(hook.json["data"]["participant"], ja.as_str());
    for (id, event, what) in [
        (&b, "group_updated", "created"),
        (&a, "group_updated", "subject"),
        (&b, "group_updated", "invite_revoked"),
        (&a, "group_participants_changed", "join"),
        (&b, "group_participants_changed", "promote"),
        (&a, "group_participants_changed", "leave"),
    ] {
        let hit = receiver
            .wait_until(|h| {
                h.event() == event
                    && h.json["data"]["instanceId"] == id.as_str()
                    && (h.json["data"]["change"] == what || h.json["data"]["action"] == what)
            })
            .await;
        assert_eq!(
            hit.json["data"]["groupId"],
            group.as_str(),
            "{event} {what}"
        );
        assert!(hit.json["timestamp"].is_string());
    }
}

#[tokio::test]
async fn bad_group_input_is_a_clear_400_and_records_nothing() {
    let app = TestApp::spawn_with(tune).await;
    let key = app.admin.api_key.clone();
    let a = app.connected_instance(&app.admin, "79002000001").await;
    // Optional fields sent as null are absent (as the document says).
    let created = app
        .post(
            &wa(&a, "/groups"),
            As::Key(&key),
            json!({"subject": "G", "description": null, "participants": null}),
        )
        .await
        .expect(200);
    assert_eq!(created.get("description"), None);
    assert_eq!(created["size"], 1);
    let group = created["id"].as_str().unwrap().to_string();
    app.wait_for_projections().await;
    let before = app.command_events().await.len();
    let long = "x".repeat(101);
    let many: Vec<String> = (0..257).map(|i| format!("7900{i:07}")).collect();
    let cases: Vec<(&str, String, Value)> = vec![
        ("POST", wa(&a, "/groups"), json!({"subject": "  "})),
        ("POST", wa(&a, "/groups"), json!({"subject": long})),
        ("POST", wa(&a, "/groups"), json!({"subject": "a\u{1}b"})),
        ("POST", wa(&a, "/groups"), json!({"subject": 5})),
        ("POST", wa(&a, "/groups"), json!({"subject": null})),
        (
            "POST",
            wa(&a, "/groups"),
            json!({"subject": "G", "participants": ["12"]}),
        ),
        (
            "POST",
            wa(&a, "/groups"),
            json!({"subject": "G", "participants": ["123-456@g.us"]}),
        ),
        (
            "POST",
            wa(&a, "/groups"),
            json!({"subject": "G", "description": "x".repeat(2049)}),
        ),
        (
            "POST",
            wa(&a, &format!("/groups/{group}/participants/add")),
            json!({"participants": []}),
        ),
        (
            "POST",
            wa(&a, &format!("/groups/{group}/participants/add")),
            json!({"participants": many}),
        ),
        (
            "POST",
            wa(&a, &format!("/groups/{group}/participants/ban")),
            json!({"participants": ["79002000002"]}),
        ),
        (
            "POST",
            wa(&a, "/groups/not-a-group/participants/add"),
            json!({"participants": ["79002000002"]}),
        ),
        (
            "POST",
            wa(&a, "/join-group"),
            json!({"invite": "https://example.com/x"}),
        ),
        (
            "PUT",
            wa(&a, &format!("/groups/{group}/subject")),
            json!({"subject": ""}),
        ),
        ("POST", wa(&a, "/check-numbers"), json!({"numbers": []})),
        (
            "POST",
            wa(&a, "/check-numbers"),
            json!({"numbers": ["abc"]}),
        ),
    ];
    for (method, path, body) in cases {
        let e = app
            .call(method, &path, As::Key(&key), Some(body.clone()))
            .await
            .expect_error(400);
        assert_eq!(e["error"], "bad_request", "{path} {body}");
    }
    app.get(&wa(&a, "/groups/abc"), As::Key(&key))
        .await
        .expect_error(400);
    assert_eq!(app.command_events().await.len(), before);
}

#[tokio::test]
async fn groups_the_account_is_not_in_are_404_and_an_unpaired_instance_is_409() {
    let app = TestApp::spawn_with(tune).await;
    let key = app.admin.api_key.clone();
    let a = app.connected_instance(&app.admin, "79003000001").await;
    let b = app.connected_instance(&app.admin, "79003000002").await;
    let created = app
        .post(
            &wa(&a, "/groups"),
            As::Key(&key),
            json!({"subject": "Private"}),
        )
        .await
        .expect(200);
    let group = created["id"].as_str().unwrap();
    let unknown = "120363999999999999@g.us";
    for g in [group, unknown] {
        app.get(&wa(&b, &format!("/groups/{g}")), As::Key(&key))
            .await
            .expect_error(404);
        app.post(
            &wa(&b, &format!("/groups/{g}/participants/add")),
            As::Key(&key),
            json!({"participants": ["79003000003"]}),
        )
        .await
        .expect_error(404);
        app.post(
            &wa(&b, &format!("/groups/{g}/leave")),
            As::Key(&key),
            json!({}),
        )
        .await
        .expect_error(404);
        app.put(
            &wa(&b, &format!("/groups/{g}/description")),
            As::Key(&key),
            json!({"description": null}),
        )
        .await
        .expect_error(404);
    }
    // Nothing was recorded for B.
    assert!(app.instance_events(&b, "group_updated").await.is_empty());
    assert!(
        app.instance_events(&b, "group_participants_changed")
            .await
            .is_empty()
    );
    // An instance that is not paired cannot do group calls.
    let idle = app
        .create_instance(&app.admin, json!({"name": "idle"}))
        .await;
    app.get(&wa(&idle, "/groups"), As::Key(&key))
        .await
        .expect_error(409);
    // Another user's instance is not found.
    let other = app.create_user("other@example.com").await;
    app.get(&wa(&a, "/groups"), As::Key(&other.api_key))
        .await
        .expect_error(404);
}

#[tokio::test]
async fn check_numbers_says_which_numbers_are_on_whatsapp_with_their_jids() {
    let app = TestApp::spawn_with(tune).await;
    let key = app.admin.api_key.clone();
    let a = app.connected_instance(&app.admin, "79004000001").await;
    app.connected_instance(&app.admin, "79004000002").await;
    let answer = app
        .post(
            &wa(&a, "/check-numbers"),
            As::Key(&key),
            json!({"numbers": ["+7 900 400-00-02", "79110000001", "79004000009", "79004000001@c.us"]}),
        )
        .await
        .expect(200);
    let results = answer["results"].as_array().unwrap();
    let got: Vec<(&str, bool, &Value)> = results
        .iter()
        .map(|r| {
            (
                r["number"].as_str().unwrap(),
                r["exists"].as_bool().unwrap(),
                &r["jid"],
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("79004000002", true, &json!("79004000002@s.whatsapp.net")),
            ("79110000001", true, &json!("79110000001@s.whatsapp.net")),
            ("79004000009", false, &Value::Null),
            ("79004000001", true, &json!("79004000001@s.whatsapp.net")),
        ]
    );
    let many: Vec<String> = (0..51).map(|i| format!("7900{i:07}")).collect();
    let e = app
        .post(
            &wa(&a, "/check-numbers"),
            As::Key(&key),
            json!({"numbers": many}),
        )
        .await
        .expect_error(400);
    assert!(e["message"].as_str().unwrap().contains("at most 50"), "{e}");
    app.post(
        &wa(&a, "/check-numbers"),
        As::Key(&key),
        json!({"numbers": ["123-456@g.us"]}),
    )
    .await
    .expect_error(400);
}
