//! Per-user API rate limits (`WA_RATE_LIMIT_PER_MIN`).

use serde_json::json;

use crate::helpers::TestApp;

/// `GET /api/auth/me` with an API key; the status and the rate-limit headers.
async fn me(
    app: &TestApp,
    key: &str,
) -> (
    u16,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    serde_json::Value,
) {
    let resp = app
        .client
        .get(app.url("/api/auth/me"))
        .header("x-api-key", key)
        .send()
        .await
        .expect("request sent");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (limit, remaining, retry) = (
        header("RateLimit-Limit"),
        header("RateLimit-Remaining"),
        header("Retry-After"),
    );
    assert!(header("RateLimit-Reset").is_some(), "no RateLimit-Reset");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or_default();
    (status, limit, remaining, retry, body)
}

#[tokio::test]
async fn a_user_over_the_limit_gets_429_with_retry_after_and_others_are_not_slowed() {
    let app = TestApp::spawn_with(|c| c.rate_limit_per_min = 5).await;
    let user = app.create_user("limited@test.local").await;
    for n in 0..5u64 {
        let (status, limit, remaining, retry, _) = me(&app, &user.api_key).await;
        assert_eq!(
            (status, limit, remaining, retry),
            (200, Some(5), Some(4 - n), None)
        );
    }
    let (status, limit, remaining, retry, body) = me(&app, &user.api_key).await;
    assert_eq!((status, limit, remaining), (429, Some(5), Some(0)));
    assert!(
        retry.is_some_and(|s| (1..=12).contains(&s)),
        "Retry-After {retry:?}"
    );
    assert_eq!(body["error"], "too_many_requests", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("5 requests a minute"),
        "{body}"
    );

    // Another user has a budget of their own; unauthenticated routes have none.
    let (status, _, remaining, _, _) = me(&app, &app.admin.api_key).await;
    assert_eq!((status, remaining.is_some()), (200, true));
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(health.headers().get("RateLimit-Limit").is_none());
}

#[tokio::test]
async fn an_admin_gives_a_user_a_limit_of_their_own_and_takes_it_back() {
    let app = TestApp::spawn().await;
    let user = app.create_user("ownlimit@test.local").await;
    let admin = crate::helpers::As::Key(&app.admin.api_key);
    let path = format!("/api/users/{}/rate-limit", user.id);
    let set = app
        .put(&path, admin, json!({"perMinute": 3}))
        .await
        .expect(200);
    assert_eq!(set["perMinute"], 3);
    assert_eq!(set["defaultPerMinute"], 6000);
    for n in 0..3u64 {
        let (status, limit, remaining, _, _) = me(&app, &user.api_key).await;
        assert_eq!((status, limit, remaining), (200, Some(3), Some(2 - n)));
    }
    assert_eq!(me(&app, &user.api_key).await.0, 429);

    // Back to the default: a fresh bucket of the default size.
    let cleared = app
        .put(&path, admin, json!({"perMinute": null}))
        .await
        .expect(200);
    assert!(cleared["perMinute"].is_null());
    let (status, limit, ..) = me(&app, &user.api_key).await;
    assert_eq!((status, limit), (200, Some(6000)));

    // Only admins, only real users, only a positive limit; the change is an event.
    app.put(
        &path,
        crate::helpers::As::Key(&user.api_key),
        json!({"perMinute": 9}),
    )
    .await
    .expect_error(403);
    app.put(&path, admin, json!({"perMinute": 0}))
        .await
        .expect_error(400);
    app.put(
        "/api/users/00000000-0000-4000-8000-000000000000/rate-limit",
        admin,
        json!({"perMinute": 9}),
    )
    .await
    .expect_error(404);
    let set_events = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "rate_limit_set" && e.stream_id == format!("user-{}", user.id))
        .count();
    assert_eq!(set_events, 2);
}
