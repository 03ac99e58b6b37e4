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
