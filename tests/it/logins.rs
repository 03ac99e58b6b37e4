//! Login throttling (`WA_LOGIN_MAX_FAILURES`) and the `login_failed` record.

use serde_json::json;

use crate::helpers::{As, TestApp};

/// Tries a login; the status, `Retry-After` and the body.
async fn try_login(
    app: &TestApp,
    email: &str,
    password: &str,
) -> (u16, Option<u64>, serde_json::Value) {
    let resp = app
        .client
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request sent");
    let retry = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let status = resp.status().as_u16();
    (status, retry, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn repeated_failures_lock_the_email_with_429_until_an_admin_unlocks_it() {
    let app = TestApp::spawn_with(|c| c.login_max_failures = 4).await;
    let user = app.create_user("guessed@test.local").await;
    for _ in 0..4 {
        let (status, retry, _) = try_login(&app, "guessed@test.local", "wrong-password").await;
        assert_eq!((status, retry), (401, None));
    }
    // Locked: even the right password is refused, before it is checked.
    let (status, retry, body) = try_login(&app, "Guessed@test.local", "user-password").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        retry.is_some_and(|s| s > 0 && s <= 15 * 60),
        "Retry-After {retry:?}"
    );
    assert_eq!(body["error"], "too_many_requests");

    // An unknown e-mail is answered like a known one (nothing to enumerate).
    let (status, _, unknown) = try_login(&app, "nobody@test.local", "wrong-password").await;
    assert_eq!(status, 401);
    let (_, _, known) = {
        app.post(
            &format!("/api/users/{}/unlock-login", user.id),
            As::Key(&app.admin.api_key),
            json!({}),
        )
        .await
        .expect(200);
        try_login(&app, "guessed@test.local", "wrong-password").await
    };
    assert_eq!(
        unknown, known,
        "the same answer for a known and an unknown e-mail"
    );

    // Unlocked (and that failure was the first of a new count): the right password works.
    let (status, _, _) = try_login(&app, "guessed@test.local", "user-password").await;
    assert_eq!(status, 200);

    // Every refusal is in the log, with the address and whether the account exists, never the password.
    let failed: Vec<_> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "login_failed")
        .collect();
    assert_eq!(
        failed.len(),
        7,
        "4 wrong, 1 locked, 1 unknown, 1 wrong after the unlock"
    );
    let locked = failed
        .iter()
        .filter(|e| e.data["throttled"] == true)
        .count();
    assert_eq!(locked, 1);
    assert!(failed.iter().all(|e| e.data["address"] == "127.0.0.1"));
    let unknown_event = failed
        .iter()
        .find(|e| e.data["email"] == "nobody@test.local")
        .unwrap();
    assert_eq!(unknown_event.data["accountExists"], false);
    assert!(unknown_event.user_id.is_none());
    let known_event = failed
        .iter()
        .find(|e| e.data["email"] == "guessed@test.local")
        .unwrap();
    assert_eq!(known_event.data["accountExists"], true);
    assert_eq!(known_event.user_id.as_deref(), Some(user.id.as_str()));
    assert!(
        failed.iter().all(|e| !e.data.text().contains("password")),
        "no password in events"
    );

    // Only admins unlock.
    app.post(
        &format!("/api/users/{}/unlock-login", user.id),
        As::Key(&user.api_key),
        json!({}),
    )
    .await
    .expect_error(403);
}
