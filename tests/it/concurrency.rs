//! Commands on one aggregate at the same moment: decided on fresh state and
//! appended with the exact version they were decided on, so no change is lost.

use serde_json::json;

use crate::helpers::{As, TestApp};

#[tokio::test]
async fn concurrent_partial_updates_of_one_instance_never_lose_a_change() {
    let app = TestApp::spawn().await;
    let user = app.create_user("racer@example.com").await;
    let id = app
        .create_instance(&user, json!({ "name": "start", "description": "start" }))
        .await;
    let path = format!("/api/instances/{id}");
    let rounds = 60;
    for round in 0..rounds {
        let name = format!("name-{round}");
        let description = format!("description-{round}");
        // Two clients, one changing the name, the other the description.
        let (a, b) = tokio::join!(
            app.put(&path, As::Key(&user.api_key), json!({ "name": name })),
            app.put(
                &path,
                As::Key(&user.api_key),
                json!({ "description": description })
            ),
        );
        // A 409 would be honest too, but one retry on fresh state must be
        // enough when only two clients race.
        a.expect(200);
        b.expect(200);
        let now = app.get(&path, As::Key(&user.api_key)).await.expect(200);
        assert_eq!(
            now["name"],
            name.as_str(),
            "round {round}: the name was lost"
        );
        assert_eq!(
            now["description"],
            description.as_str(),
            "round {round}: the description was lost"
        );
    }
    // Every update is in the log, each at its own version of the instance's stream.
    let updates = app.instance_events(&id, "instance_updated").await;
    assert_eq!(updates.len(), 2 * rounds);
    let mut versions: Vec<i64> = updates.iter().map(|e| e.version).collect();
    versions.dedup();
    assert_eq!(versions.len(), 2 * rounds);
}

#[tokio::test]
async fn a_webhook_setting_and_a_rename_made_at_once_both_take_effect() {
    let app = TestApp::spawn().await;
    let user = app.create_user("racer2@example.com").await;
    let id = app.create_instance(&user, json!({ "name": "n" })).await;
    let path = format!("/api/instances/{id}");
    let (a, b) = tokio::join!(
        app.put(
            &path,
            As::Key(&user.api_key),
            json!({ "webhookSettings": { "maxRetries": 7 } })
        ),
        app.put(&path, As::Key(&user.api_key), json!({ "name": "renamed" })),
    );
    a.expect(200);
    b.expect(200);
    let now = app.get(&path, As::Key(&user.api_key)).await.expect(200);
    assert_eq!(now["name"], "renamed");
    assert_eq!(now["webhookSettings"]["maxRetries"], 7);
}
