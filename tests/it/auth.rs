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
    assert!(body["token"].as_str().unwrap().split('.').count() == 3);
    let user = &body["user"];
    for field in ["id", "email", "firstName", "lastName", "apiKey"] {
        assert!(user[field].is_string(), "user.{field} missing: {body}");
    }
    assert_eq!(user["email"], "admin@test.local");
}
