//! `GET /api/instances/{instanceId}/chats`: the chat list, latest first.

use serde_json::json;

use crate::helpers::{As, TestApp};

#[tokio::test]
async fn the_chat_list_shows_each_chat_once_with_its_latest_message_latest_chat_first() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("alice@example.com").await;
    let id = app.connected_instance(&alice, "79001112233").await;
    for (phone, text) in [
        ("79000000001", "first"),
        ("79000000002", "second"),
        ("79000000001", "third"),
    ] {
        app.post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&alice.api_key),
            json!({"phone": phone, "message": text}),
        )
        .await
        .expect(200);
    }
    app.wait_for_projections().await;
    let page = app
        .get(
            &format!("/api/instances/{id}/chats"),
            As::Key(&alice.api_key),
        )
        .await
        .expect(200);
    let chats = page["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 2, "{page}");
    assert_eq!(chats[0]["remoteJid"], "79000000001@s.whatsapp.net");
    assert_eq!(chats[0]["totalMessages"], 2);
    assert_eq!(chats[0]["lastMessage"], "third");
    assert_eq!(chats[0]["lastFromMe"], true);
    assert_eq!(chats[1]["lastMessage"], "second");
    assert_eq!(page["pagination"]["total"], 2);

    // Paging, bad input, and another user's instance.
    let second = app
        .get(
            &format!("/api/instances/{id}/chats?limit=1&skip=1"),
            As::Key(&alice.api_key),
        )
        .await
        .expect(200);
    assert_eq!(second["chats"][0]["lastMessage"], "second");
    app.get(
        &format!("/api/instances/{id}/chats?limit=0"),
        As::Key(&alice.api_key),
    )
    .await
    .expect_error(400);
    let bob = app.create_user("bob@example.com").await;
    app.get(&format!("/api/instances/{id}/chats"), As::Key(&bob.api_key))
        .await
        .expect_error(404);
}
