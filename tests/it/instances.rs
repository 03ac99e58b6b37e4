//! Instances through the HTTP API: the seed's shapes, validation, tenant isolation.

use serde_json::{Value, json};

use crate::helpers::{As, TestApp};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn is_api_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 24 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[tokio::test]
async fn create_list_get_update_delete_follow_the_seed_field_for_field() {
    let app = TestApp::spawn().await;
    let user = app.create_user("owner@example.com").await;
    let created = app
        .post(
            "/api/instances",
            As::Key(&user.api_key),
            json!({
                "name": "主要 WhatsApp", "description": "公司账户", "webhookUrl": "https://example.com/webhook",
                "webhookEnabled": true, "notifyReceived": true, "notifySent": true, "notifyDelivery": false,
                "notifyRead": false, "maxRetries": 3, "retryInterval": 60000, "webhookSecret": "optional-secret-key"
            }),
        )
        .await
        .expect(200);
    assert_eq!(
        keys(&created),
        sorted(&[
            "id",
            "name",
            "description",
            "userId",
            "status",
            "webhookUrl",
            "webhookEnabled",
            "createdAt",
            "updatedAt"
        ])
    );
    assert_eq!(created["name"], "主要 WhatsApp");
    assert_eq!(created["userId"], user.id.as_str());
    assert_eq!(created["status"], "connecting");
    assert!(is_api_time(&created["createdAt"]) && is_api_time(&created["updatedAt"]));
    let id = created["id"].as_str().unwrap();

    let list = app
        .get("/api/instances", As::Bearer(&user.token))
        .await
        .expect(200);
    let item = &list["instances"][0];
    assert_eq!(list["instances"].as_array().unwrap().len(), 1);
    assert_eq!(
        keys(item),
        sorted(&[
            "id",
            "name",
            "description",
            "status",
            "webhookUrl",
            "webhookEnabled",
            "createdAt",
            "updatedAt",
            "connectionStatus"
        ])
    );
    assert_eq!(
        keys(&item["connectionStatus"]),
        sorted(&["ready", "status", "hasQr"])
    );

    let one = app
        .get(&format!("/api/instances/{id}"), As::Key(&user.api_key))
        .await
        .expect(200);
    assert_eq!(
        keys(&one),
        sorted(&[
            "id",
            "name",
            "description",
            "status",
            "webhookUrl",
            "webhookEnabled",
            "createdAt",
            "updatedAt",
            "webhookSettings",
            // Beyond the seed: the send pacing (issue 16), off by default,
            // and the session's health (issue 15).
            "sendPolicy",
            "health",
            "connectionStatus"
        ])
    );
    assert_eq!(one["sendPolicy"]["enabled"], false);
    assert_eq!(one["health"]["reconnectsLastHour"], 0);
    assert!(one["health"].get("lastConnectError").is_none());
    assert_eq!(
        one["webhookSettings"],
        json!({"notifyReceived": true, "notifySent": true, "notifyDelivery": false, "notifyRead": false,
               "maxRetries": 3, "retryInterval": 60000})
    );
    assert!(
        !one.to_string().contains("optional-secret-key"),
        "the secret is never read back"
    );

    let updated = app
        .put(
            &format!("/api/instances/{id}"),
            As::Key(&user.api_key),
            json!({
                "name": "新的 WhatsApp 名称", "description": "更新的描述", "webhookUrl": "https://new-example.com/webhook",
                "webhookEnabled": true,
                "webhookSettings": {"notifyReceived": true, "notifySent": false, "notifyDelivery": true,
                                    "notifyRead": true, "maxRetries": 5, "retryInterval": 30000, "secret": "new-secret-key"}
            }),
        )
        .await
        .expect(200);
    assert_eq!(
        keys(&updated),
        sorted(&[
            "id",
            "name",
            "description",
            "webhookUrl",
            "webhookEnabled",
            "updatedAt"
        ])
    );
    assert_eq!(updated["name"], "新的 WhatsApp 名称");
    assert_eq!(updated["webhookUrl"], "https://new-example.com/webhook");
    let one = app
        .get(&format!("/api/instances/{id}"), As::Key(&user.api_key))
        .await
        .expect(200);
    assert_eq!(
        one["webhookSettings"],
        json!({"notifyReceived": true, "notifySent": false, "notifyDelivery": true, "notifyRead": true,
               "maxRetries": 5, "retryInterval": 30000})
    );
    let secret: Option<String> =
        sqlx::query_scalar("SELECT webhook_secret FROM instances WHERE id = ?")
            .bind(id)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    let secret = secret.map(|s| {
        app.state
            .secrets
            .open(wa_gateway::secrets::Purpose::WebhookSecret, &s)
            .unwrap()
    });
    assert_eq!(
        secret.as_ref().map(wa_gateway::config::Secret::expose),
        Some("new-secret-key")
    );

    let deleted = app
        .delete(&format!("/api/instances/{id}"), As::Key(&user.api_key))
        .await
        .expect(200);
    assert_eq!(
        deleted,
        json!({"success": true, "message": format!("Instance {id} deleted successfully")})
    );
    app.get(&format!("/api/instances/{id}"), As::Key(&user.api_key))
        .await
        .expect_error(404);
    let types: Vec<String> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.instance_id.as_deref() == Some(id))
        .map(|e| e.event_type)
        .collect();
    for t in ["instance_created", "instance_updated", "instance_deleted"] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
}

#[tokio::test]
async fn a_partial_update_changes_only_the_given_fields() {
    let app = TestApp::spawn().await;
    let id = app
        .create_instance(
            &app.admin,
            json!({"name": "a", "description": "d", "webhookUrl": "https://example.com/h"}),
        )
        .await;
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&app.admin.api_key),
        json!({"name": "b"}),
    )
    .await
    .expect(200);
    let one = app
        .get(&format!("/api/instances/{id}"), As::Key(&app.admin.api_key))
        .await
        .expect(200);
    assert_eq!(
        (one["name"].as_str(), one["description"].as_str()),
        (Some("b"), Some("d"))
    );
    assert_eq!(one["webhookUrl"], "https://example.com/h");
    assert_eq!(
        one["webhookEnabled"], true,
        "a webhook URL on create enables webhooks by default"
    );
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&app.admin.api_key),
        json!({"webhookUrl": null}),
    )
    .await
    .expect(200);
    let one = app
        .get(&format!("/api/instances/{id}"), As::Key(&app.admin.api_key))
        .await
        .expect(200);
    assert_eq!(
        (one["webhookUrl"].clone(), one["webhookEnabled"].clone()),
        (Value::Null, json!(false))
    );
}

#[tokio::test]
async fn bad_instance_input_is_a_json_4xx_and_changes_nothing() {
    let app = TestApp::spawn_with(|c| c.webhook_allow_private = false).await;
    let key = app.admin.api_key.clone();
    let id = app
        .create_instance(&app.admin, json!({"name": "keep"}))
        .await;
    let long = "x".repeat(101);
    let bad_creates = vec![
        json!({}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": long}),
        json!({"name": 5}),
        json!({"name": "a", "webhookUrl": "ftp://example.com/x"}),
        json!({"name": "a", "webhookUrl": "not a url"}),
        json!({"name": "a", "webhookUrl": "http://127.0.0.1:8080/hook"}),
        json!({"name": "a", "webhookUrl": "http://169.254.169.254/latest"}),
        json!({"name": "a", "webhookUrl": "http://localhost/hook"}),
        json!({"name": "a", "webhookEnabled": true}),
        json!({"name": "a", "maxRetries": 21}),
        json!({"name": "a", "maxRetries": -1}),
        json!({"name": "a", "maxRetries": "3"}),
        json!({"name": "a", "retryInterval": 5}),
        json!({"name": "a", "retryInterval": 86_400_001u64}),
        json!({"name": "a", "notifySent": "yes"}),
        json!({"name": "a", "description": "d".repeat(501)}),
        json!(["name"]),
    ];
    let before = app.command_events().await.len();
    for body in bad_creates {
        let err = app
            .post("/api/instances", As::Key(&key), body.clone())
            .await
            .expect_error(400);
        assert_eq!(err["error"], "bad_request", "{body}");
    }
    let bad_updates = vec![
        json!({"name": ""}),
        json!({"name": 7}),
        json!({"webhookUrl": "gopher://x"}),
        json!({"webhookUrl": "http://10.0.0.1/"}),
        json!({"webhookSettings": {"maxRetries": 100}}),
        json!({"webhookSettings": {"retryInterval": 0}}),
        json!({"webhookSettings": "no"}),
        json!({"webhookEnabled": true}),
    ];
    for body in bad_updates {
        app.put(&format!("/api/instances/{id}"), As::Key(&key), body.clone())
            .await
            .expect_error(400);
    }
    // Malformed JSON and wrong content types.
    for (ct, raw, status) in [
        ("application/json", "{\"name\": ", 400),
        ("application/json", "", 400),
        ("text/plain", "{\"name\": \"x\"}", 415),
        ("application/x-www-form-urlencoded", "name=x", 415),
    ] {
        let resp = app
            .client
            .post(app.url("/api/instances"))
            .header("x-api-key", &key)
            .header("content-type", ct)
            .body(raw)
            .send()
            .await
            .unwrap();
        TestApp::read(resp).await.expect_error(status);
    }
    assert_eq!(
        app.command_events().await.len(),
        before,
        "no event was written"
    );
    let list = app.get("/api/instances", As::Key(&key)).await.expect(200);
    assert_eq!(list["instances"].as_array().unwrap().len(), 1);
    assert_eq!(list["instances"][0]["name"], "keep");
}

#[tokio::test]
async fn another_users_instance_is_404_on_every_endpoint_and_admins_may_act_on_all() {
    let app = TestApp::spawn().await;
    let a = app.create_user("a@example.com").await;
    let b = app.create_user("b@example.com").await;
    let id = app.create_instance(&a, json!({"name": "a's"})).await;
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/api/instances/{id}"), None),
        (
            "PUT",
            format!("/api/instances/{id}"),
            Some(json!({"name": "stolen"})),
        ),
        ("DELETE", format!("/api/instances/{id}"), None),
        ("POST", format!("/api/instances/{id}/reconnect"), None),
        ("POST", format!("/api/instances/{id}/logout"), None),
        ("GET", format!("/api/instances/{id}/qr"), None),
        ("GET", format!("/api/whatsapp/{id}/status"), None),
        ("GET", format!("/api/whatsapp/{id}/qr"), None),
        (
            "POST",
            format!("/api/whatsapp/{id}/send"),
            Some(json!({"phone": "79001234567", "message": "hi"})),
        ),
        (
            "POST",
            format!("/api/whatsapp/{id}/send-media"),
            Some(json!({"phone": "79001234567", "url": "https://example.com/a.jpg"})),
        ),
        ("GET", format!("/api/whatsapp/{id}/contacts"), None),
        ("POST", format!("/api/whatsapp/{id}/logout"), None),
        (
            "POST",
            format!("/api/sim/instances/{id}/scan"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/sim/instances/{id}/inbound"),
            Some(json!({"from": "79001234567", "body": "x"})),
        ),
    ];
    let before = app.command_events().await.len();
    for (method, path, body) in &calls {
        for who in [As::Key(&b.api_key), As::Bearer(&b.token)] {
            app.call(method, path, who, body.clone())
                .await
                .expect_error(404);
        }
    }
    assert_eq!(
        app.command_events().await.len(),
        before,
        "B changed nothing"
    );
    let list = app
        .get("/api/instances", As::Key(&b.api_key))
        .await
        .expect(200);
    assert!(list["instances"].as_array().unwrap().is_empty());
    app.get("/api/instances?all=true", As::Key(&b.api_key))
        .await
        .expect_error(403);
    // The admin sees and acts on A's instance.
    app.get(&format!("/api/instances/{id}"), As::Key(&app.admin.api_key))
        .await
        .expect(200);
    let all = app
        .get("/api/instances?all=true", As::Key(&app.admin.api_key))
        .await
        .expect(200);
    assert_eq!(all["instances"].as_array().unwrap().len(), 1);
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&app.admin.api_key),
        json!({"name": "renamed by admin"}),
    )
    .await
    .expect(200);
    let one = app
        .get(&format!("/api/instances/{id}"), As::Key(&a.api_key))
        .await
        .expect(200);
    assert_eq!(one["name"], "renamed by admin");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = TestApp::spawn().await;
    app.get("/api/nope", As::Key(&app.admin.api_key))
        .await
        .expect_error(404);
    app.call("PATCH", "/api/instances", As::Key(&app.admin.api_key), None)
        .await
        .expect_error(405);
    app.get("/api/instances/does-not-exist", As::Key(&app.admin.api_key))
        .await
        .expect_error(404);
}

#[tokio::test]
async fn docs_spec_and_health_are_served() {
    let app = TestApp::spawn().await;
    let spec = app.get("/openapi.json", As::Nobody).await.expect(200);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        spec, committed,
        "the served spec is the committed one (run make openapi)"
    );
    for path in [
        "/api/auth/login",
        "/api/instances/{instanceId}",
        "/api/whatsapp/{instanceId}/send-file",
        "/api/sim/instances/{instanceId}/scan",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    // An optional field may be sent as null (read as absent): the document
    // says so, a required one it does not.
    let group = &spec["components"]["schemas"]["CreateGroupRequest"]["properties"];
    assert_eq!(group["description"]["nullable"], true);
    assert_eq!(group["subject"].get("nullable"), None);
    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let docs = docs.text().await.unwrap();
    assert!(docs.contains("swagger"));
    assert!(
        docs.contains("\"nullable\": true"),
        "Swagger UI shows the served document"
    );
    assert_eq!(
        app.get("/healthz", As::Nobody).await.expect(200)["status"],
        "ok"
    );
    let ready = app.get("/readyz", As::Nobody).await.expect(200);
    assert_eq!(ready["checks"]["store"], true);
    assert_eq!(ready["checks"]["backbone"], "embedded");
}

#[tokio::test]
async fn the_seeds_python_example_creates_an_instance_and_sends() {
    let app = TestApp::spawn_with(|c| c.sim_auto_pair = true).await;
    let script = format!(
        r#"
import requests

api_key = "{key}"
base_url = "{base}/api"
headers = {{"x-api-key": api_key, "Content-Type": "application/json"}}
instance_data = {{"name": "主要 WhatsApp", "description": "公司账户", "webhookUrl": "https://your-webhook.com/whatsapp"}}
response = requests.post(f"{{base_url}}/instances", headers=headers, json=instance_data)
instance = response.json()
instance_id = instance["id"]
message_data = {{"phone": "79001234567", "message": "你好！这是一条测试消息。"}}
response = requests.post(f"{{base_url}}/whatsapp/{{instance_id}}/send", headers=headers, json=message_data)
result = response.json()
print(f"消息已发送，ID: {{result['id']}}")
"#,
        key = app.admin.api_key,
        base = app.base
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout.trim().rsplit(' ').next().unwrap();
    assert!(id.starts_with("3EB0"), "{stdout}");
    let sent: Vec<_> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "message_sent")
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].data["messageId"], id);
}
