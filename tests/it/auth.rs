//! Users and authentication through the HTTP API.

use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, As, TestApp};

#[tokio::test]
async fn login_returns_a_token_and_the_user_with_its_api_key() {
    let app = TestApp::spawn().await;
    let body = app
        .post(
            "/api/auth/login",
            As::Nobody,
            json!({"email": "admin@test.local", "password": ADMIN_PASSWORD}),
        )
        .await
        .expect(200);
    assert_eq!(body["token"].as_str().unwrap().split('.').count(), 3);
    let user = &body["user"];
    for field in ["id", "email", "firstName", "lastName", "apiKey"] {
        assert!(user[field].is_string(), "user.{field} missing: {body}");
    }
    assert_eq!(user["email"], "admin@test.local");
    assert_eq!(
        user.as_object().unwrap().len(),
        5,
        "exactly the seed's fields: {user}"
    );
}

#[tokio::test]
async fn me_answers_with_the_seed_fields_for_both_auth_methods() {
    let app = TestApp::spawn().await;
    let user = app.create_user("ivan@example.com").await;
    for who in [As::Key(&user.api_key), As::Bearer(&user.token)] {
        let me = app.get("/api/auth/me", who).await.expect(200);
        assert_eq!(
            me,
            json!({"id": user.id, "email": "ivan@example.com", "firstName": "Test", "lastName": "User"})
        );
    }
}

#[tokio::test]
async fn every_kind_of_bad_credential_is_a_json_401() {
    let app = TestApp::spawn().await;
    let user = app.create_user("u@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let expired = app
        .state
        .tokens
        .issue_with(&user.id, 0, now - 7200, now - 3600)
        .unwrap();
    let mut tampered = user.token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let cases: Vec<(&str, As)> = vec![
        ("no credentials", As::Nobody),
        ("a malformed token", As::Bearer("not-a-jwt")),
        ("an expired token", As::Bearer(&expired)),
        ("a tampered token", As::Bearer(&tampered)),
        ("an unknown API key", As::Key("wag_unknown")),
        ("an empty API key", As::Key("")),
    ];
    for (what, who) in cases {
        let body = app.get("/api/auth/me", who).await.expect_error(401);
        assert_eq!(body["error"], "unauthorized", "{what}");
    }
    let body = app
        .get("/api/auth/me", As::Bearer(&expired))
        .await
        .expect_error(401);
    assert!(body["message"].as_str().unwrap().contains("expired"));
    // A plain `Authorization: Basic` header is refused the same way.
    let resp = app
        .client
        .get(app.url("/api/auth/me"))
        .header("authorization", "Basic dTpw")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_wrong_password_or_unknown_email_is_the_same_401() {
    let app = TestApp::spawn().await;
    let a = app
        .post(
            "/api/auth/login",
            As::Nobody,
            json!({"email": "admin@test.local", "password": "wrong-password"}),
        )
        .await
        .expect_error(401);
    let b = app
        .post(
            "/api/auth/login",
            As::Nobody,
            json!({"email": "nobody@test.local", "password": "wrong-password"}),
        )
        .await
        .expect_error(401);
    assert_eq!(a, b);
}

#[tokio::test]
async fn a_rotated_api_key_stops_working_at_once_and_the_new_one_works() {
    let app = TestApp::spawn().await;
    let user = app.create_user("rot@example.com").await;
    let body = app
        .post(
            "/api/auth/api-key/rotate",
            As::Key(&user.api_key),
            json!({}),
        )
        .await
        .expect(200);
    let new_key = body["apiKey"].as_str().unwrap();
    assert_ne!(new_key, user.api_key);
    app.get("/api/auth/me", As::Key(&user.api_key))
        .await
        .expect_error(401);
    app.get("/api/auth/me", As::Key(new_key)).await.expect(200);
    // Login now returns the new key.
    let relog = app.login("rot@example.com", "user-password").await;
    assert_eq!(relog.api_key, new_key);
    let rotated: Vec<_> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "api_key_rotated")
        .collect();
    assert_eq!(rotated.len(), 1);
}

#[tokio::test]
async fn a_password_change_needs_the_current_password() {
    let app = TestApp::spawn().await;
    let user = app.create_user("pw@example.com").await;
    app.post(
        "/api/auth/password",
        As::Bearer(&user.token),
        json!({"currentPassword": "not-it", "newPassword": "a-new-password"}),
    )
    .await
    .expect_error(400);
    app.post(
        "/api/auth/password",
        As::Bearer(&user.token),
        json!({"currentPassword": "user-password", "newPassword": "short"}),
    )
    .await
    .expect_error(400);
    app.post(
        "/api/auth/password",
        As::Bearer(&user.token),
        json!({"currentPassword": "user-password", "newPassword": "a-new-password"}),
    )
    .await
    .expect(200);
    app.post(
        "/api/auth/login",
        As::Nobody,
        json!({"email": "pw@example.com", "password": "user-password"}),
    )
    .await
    .expect_error(401);
    app.login("pw@example.com", "a-new-password").await;
}

#[tokio::test]
async fn only_admins_create_and_list_users() {
    let app = TestApp::spawn().await;
    let user = app.create_user("plain@example.com").await;
    app.post(
        "/api/users",
        As::Key(&user.api_key),
        json!({"email": "x@example.com", "password": "password-1"}),
    )
    .await
    .expect_error(403);
    app.get("/api/users", As::Key(&user.api_key))
        .await
        .expect_error(403);
    let list = app
        .get("/api/users", As::Key(&app.admin.api_key))
        .await
        .expect(200);
    let emails: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, vec!["admin@test.local", "plain@example.com"]);
    assert!(
        list["users"][0].get("apiKey").is_none(),
        "the list shows no keys"
    );
    // Duplicate e-mail (any case) is a conflict; a bad e-mail or short password a 400.
    app.post(
        "/api/users",
        As::Key(&app.admin.api_key),
        json!({"email": "PLAIN@example.com", "password": "password-1"}),
    )
    .await
    .expect_error(409);
    app.post(
        "/api/users",
        As::Key(&app.admin.api_key),
        json!({"email": "nope", "password": "password-1"}),
    )
    .await
    .expect_error(400);
    app.post(
        "/api/users",
        As::Key(&app.admin.api_key),
        json!({"email": "a@b.io", "password": "short"}),
    )
    .await
    .expect_error(400);
}

#[tokio::test]
async fn no_secret_ever_reaches_the_event_log() {
    let app = TestApp::spawn().await;
    let mut user = app.create_user("secret@example.com").await;
    let old_key = user.api_key.clone();
    let rotated = app
        .post(
            "/api/auth/api-key/rotate",
            As::Key(&user.api_key),
            json!({}),
        )
        .await
        .expect(200);
    user.api_key = rotated["apiKey"].as_str().unwrap().to_string();
    app.post(
        "/api/auth/password",
        As::Key(&app.admin.api_key),
        json!({"currentPassword": ADMIN_PASSWORD, "newPassword": "another-password"}),
    )
    .await
    .expect(200);
    app.create_instance(&user, json!({"name": "x", "webhookUrl": "http://127.0.0.1:9/h", "webhookSecret": "whsec-very-secret"}))
        .await;
    let keys: Vec<String> = sqlx::query_scalar("SELECT api_key FROM users")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap();
    let hashes: Vec<String> = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap();
    let log = serde_json::to_string(&app.events().await).unwrap();
    for secret in keys.iter().chain(hashes.iter()).map(String::as_str).chain([
        user.api_key.as_str(),
        old_key.as_str(),
        "user-password",
        ADMIN_PASSWORD,
        "another-password",
        "whsec-very-secret",
        "$argon2",
    ]) {
        assert!(!log.contains(secret), "a secret is in the log");
    }
    for t in [
        "user_registered",
        "user_logged_in",
        "api_key_rotated",
        "password_changed",
        "instance_created",
    ] {
        assert!(log.contains(t), "{t} recorded");
    }
}

#[tokio::test]
async fn clients_outside_the_allowed_ranges_get_403_and_inside_are_served() {
    let inside = TestApp::spawn_with(|c| {
        c.allowed_ips = wa_gateway::config::parse_cidrs("127.0.0.0/8").unwrap()
    })
    .await;
    inside
        .get("/api/auth/me", As::Key(&inside.admin.api_key))
        .await
        .expect(200);

    let outside = TestApp::spawn_anonymous_with(|c| {
        c.allowed_ips = wa_gateway::config::parse_cidrs("10.0.0.0/8, 192.168.1.1").unwrap()
    })
    .await;
    for path in ["/api/auth/me", "/healthz", "/api/instances"] {
        let body = outside.get(path, As::Nobody).await.expect_error(403);
        assert_eq!(body["error"], "forbidden");
    }
    outside
        .post(
            "/api/auth/login",
            As::Nobody,
            json!({"email": "admin@test.local", "password": ADMIN_PASSWORD}),
        )
        .await
        .expect_error(403);
}

#[tokio::test]
async fn the_command_line_creates_a_user_who_can_log_in() {
    let app = TestApp::spawn().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .args([
            "user",
            "create",
            "--email",
            "cli@example.com",
            "--password",
            "cli-password",
            "--admin",
        ])
        .env("WA_DATA_DIR", &app.config.data_dir)
        .env("WA_LOG", "error")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created user cli@example.com"));
    let cli = app.login("cli@example.com", "cli-password").await;
    assert!(
        stdout.contains(&cli.api_key),
        "the key is printed once for the operator"
    );
    // An admin: may list users.
    app.get("/api/users", As::Key(&cli.api_key))
        .await
        .expect(200);
    let registered: Vec<_> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "user_registered" && e.data["email"] == "cli@example.com")
        .collect();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].metadata.actor.as_deref(), Some("cli"));
    // A second create with the same e-mail fails clearly.
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .args([
            "user",
            "create",
            "--email",
            "cli@example.com",
            "--password",
            "cli-password",
        ])
        .env("WA_DATA_DIR", &app.config.data_dir)
        .env("WA_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[tokio::test]
async fn a_token_from_before_a_password_change_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.create_user("gen@example.com").await;
    // A second session of the same user, e.g. on another device.
    let other = app.login("gen@example.com", "user-password").await;
    app.get("/api/auth/me", As::Bearer(&other.token))
        .await
        .expect(200);
    app.post(
        "/api/auth/password",
        As::Bearer(&user.token),
        json!({"currentPassword": "user-password", "newPassword": "a-new-password"}),
    )
    .await
    .expect(200);
    for old in [&user.token, &other.token] {
        let body = app
            .get("/api/auth/me", As::Bearer(old))
            .await
            .expect_error(401);
        assert_eq!(body["error"], "unauthorized");
    }
    // The API key is not a session: it keeps working until rotated.
    app.get("/api/auth/me", As::Key(&user.api_key))
        .await
        .expect(200);
    let fresh = app.login("gen@example.com", "a-new-password").await;
    app.get("/api/auth/me", As::Bearer(&fresh.token))
        .await
        .expect(200);
}

#[tokio::test]
async fn an_admins_password_reset_ends_the_users_tokens() {
    let app = TestApp::spawn().await;
    let user = app.create_user("reset@example.com").await;
    // Only admins reset passwords, and only existing users'.
    app.put(
        &format!("/api/users/{}/password", user.id),
        As::Bearer(&user.token),
        json!({"newPassword": "by-myself-123"}),
    )
    .await
    .expect_error(403);
    app.put(
        "/api/users/00000000-0000-4000-8000-000000000000/password",
        As::Bearer(&app.admin.token),
        json!({"newPassword": "whatever-123"}),
    )
    .await
    .expect_error(404);
    app.put(
        &format!("/api/users/{}/password", user.id),
        As::Bearer(&app.admin.token),
        json!({"newPassword": "short"}),
    )
    .await
    .expect_error(400);
    app.get("/api/auth/me", As::Bearer(&user.token))
        .await
        .expect(200);
    app.put(
        &format!("/api/users/{}/password", user.id),
        As::Bearer(&app.admin.token),
        json!({"newPassword": "set-by-admin-1"}),
    )
    .await
    .expect(200);
    app.get("/api/auth/me", As::Bearer(&user.token))
        .await
        .expect_error(401);
    // The admin's own session is untouched; the user logs in with the new password.
    app.get("/api/auth/me", As::Bearer(&app.admin.token))
        .await
        .expect(200);
    app.post(
        "/api/auth/login",
        As::Nobody,
        json!({"email": "reset@example.com", "password": "user-password"}),
    )
    .await
    .expect_error(401);
    app.login("reset@example.com", "set-by-admin-1").await;
    let changes = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "password_changed")
        .count();
    assert_eq!(changes, 1);
}
