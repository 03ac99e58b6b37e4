//! Prometheus metrics at `/metrics`: the counters move with the traffic a
//! test sends (scraped over HTTP and parsed), and the guard keeps them off
//! the API port unless asked for.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{As, TestApp, WAIT};
use crate::receiver::{Receiver, Reply};

/// One sample of the text format: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (comments skipped).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The parsed scrape, with lookups.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).iter().map(|s| s.value).sum()
    }

    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

/// Scrapes `url` and parses it (asserting a 200 in the text format).
async fn scrape_url(client: &reqwest::Client, url: &str, token: Option<&str>) -> Scrape {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("scrape");
    assert_eq!(resp.status().as_u16(), 200, "scrape {url}");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain"), "content type {ct}");
    let text = resp.text().await.expect("body");
    Scrape {
        samples: parse(&text),
        text,
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    scrape_url(&app.client, &app.url("/metrics"), None).await
}

/// Scrapes until `done` holds (the event tap counts asynchronously).
async fn scrape_until(app: &TestApp, done: impl Fn(&Scrape) -> bool) -> Scrape {
    tokio::time::timeout(WAIT, async {
        loop {
            let s = scrape(app).await;
            if done(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the metrics reached the expected values in time")
}

const SEND: &str = "/api/whatsapp/{instanceId}/send";
const INSTANCE: &str = "/api/instances/{instanceId}";
/// An instance id nobody has.
const UNKNOWN: &str = "00000000-0000-4000-8000-00000000beef";

#[tokio::test]
async fn the_counters_move_with_the_traffic_sent_by_route_template_and_status() {
    let app = TestApp::spawn().await;
    let key = app.admin.api_key.clone();
    let ok = Receiver::start().await;
    let before = scrape(&app).await;

    let id = app.connected_instance(&app.admin, "79001230001").await;
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&key),
        json!({"webhookUrl": ok.url(), "webhookEnabled": true}),
    )
    .await
    .expect(200);
    for n in 0..3 {
        app.post(
            &format!("/api/whatsapp/{id}/send"),
            As::Key(&key),
            json!({"phone": "79001239999", "message": format!("m{n}")}),
        )
        .await
        .expect(200);
    }
    app.post(
        &format!("/api/sim/instances/{id}/inbound"),
        As::Key(&key),
        json!({"from": "79001238888", "body": "hello"}),
    )
    .await
    .expect(200);
    for _ in 0..2 {
        app.get(&format!("/api/instances/{id}"), As::Key(&key))
            .await
            .expect(200);
    }
    app.get(&format!("/api/instances/{UNKNOWN}"), As::Key(&key))
        .await
        .expect_error(404);
    // Three message_sent and one message_received.
    ok.wait_for(4).await;
    app.wait_for_projections().await;

    let sent_before = before.value("wa_messages_sent_total", &[]);
    let after = scrape_until(&app, |s| {
        s.value("wa_messages_sent_total", &[]) >= sent_before + 3.0
            && s.value("wa_messages_received_total", &[]) >= 1.0
            && s.value("wa_webhook_attempts_total", &[("outcome", "delivered")]) >= 4.0
    })
    .await;

    // HTTP: by method, route template and status; never the raw path.
    let sends = [("method", "POST"), ("route", SEND), ("status", "200")];
    assert_eq!(
        after.value("wa_http_requests_total", &sends)
            - before.value("wa_http_requests_total", &sends),
        3.0
    );
    assert_eq!(
        after.value("wa_http_request_duration_seconds_count", &sends),
        3.0,
        "the latency histogram counts the same requests"
    );
    let reads = [("method", "GET"), ("route", INSTANCE), ("status", "200")];
    assert_eq!(after.value("wa_http_requests_total", &reads), 2.0);
    let misses = [("method", "GET"), ("route", INSTANCE), ("status", "404")];
    assert_eq!(after.value("wa_http_requests_total", &misses), 1.0);
    assert!(
        !after.text.contains(&id) && !after.text.contains(UNKNOWN),
        "no raw path or instance id in any label"
    );

    // Messages, instances by state, webhooks.
    assert_eq!(
        after.value("wa_messages_sent_total", &[]) - sent_before,
        3.0
    );
    assert_eq!(after.value("wa_messages_received_total", &[]), 1.0);
    assert_eq!(after.value("wa_instances", &[("state", "connected")]), 1.0);
    assert_eq!(after.value("wa_instances", &[("state", "qr")]), 0.0);
    let delivered = after.value("wa_webhook_attempts_total", &[("outcome", "delivered")]);
    assert_eq!(delivered, 4.0, "one delivered attempt per webhook");
    assert_eq!(ok.hits().len(), 4);
    assert_eq!(
        after.value(
            "wa_webhook_attempt_duration_seconds_count",
            &[("outcome", "delivered")]
        ),
        delivered
    );
    assert!(after.has("wa_webhook_deliveries_pending"));
    assert_eq!(
        after.value("wa_connections_opened_total", &[]),
        1.0,
        "the instance's connection"
    );

    // Consumers, the event store, the process.
    for consumer in ["projections", "webhooks"] {
        let applied = after.value(
            "wa_consumer_apply_duration_seconds_count",
            &[("consumer", consumer)],
        );
        assert!(applied > 0.0, "{consumer} applied batches: {applied}");
        assert!(
            !after
                .matching("wa_consumer_lag_events", &[("consumer", consumer)])
                .is_empty(),
            "{consumer}'s lag is shown"
        );
    }
    assert!(after.value("wa_event_store_batch_events_count", &[]) > 0.0);
    assert!(
        after.value("wa_event_store_batch_events_sum", &[])
            >= after.value("wa_event_store_batch_events_count", &[]),
        "every commit holds at least one event"
    );
    assert!(after.value("wa_event_store_commit_duration_seconds_count", &[]) > 0.0);
    assert!(after.value("wa_event_log_head_position", &[]) > 0.0);
    assert!(after.value("process_resident_memory_bytes", &[]) > 0.0);
}

#[tokio::test]
async fn failed_webhook_attempts_are_counted_by_outcome() {
    let app = TestApp::spawn().await;
    let failing = Receiver::start().await;
    failing.set_fallback(Reply::status(500));
    app.create_instance(
        &app.admin,
        json!({"name": "hooked", "webhookUrl": failing.url(), "webhookEnabled": true,
               "maxRetries": 1, "retryInterval": 100}),
    )
    .await;
    // The first QR code is a webhook: it fails, is retried once, then given up.
    let s = scrape_until(&app, |s| {
        s.value("wa_webhook_attempts_total", &[("outcome", "failed")]) >= 1.0
    })
    .await;
    assert!(s.value("wa_webhook_attempts_total", &[("outcome", "retrying")]) >= 1.0);
    assert_eq!(
        s.value("wa_webhook_attempts_total", &[("outcome", "delivered")]),
        0.0
    );
}

#[tokio::test]
async fn with_a_token_a_scrape_needs_it() {
    let app = TestApp::spawn_with(|c| {
        c.metrics_token = Some(wa_gateway::config::Secret::new("scrape-token-1"))
    })
    .await;
    let url = app.url("/metrics");
    let none = app.client.get(&url).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(
        none.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("scrape-token-2")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    // The admin's API key is not the metrics token.
    let key = app
        .client
        .get(&url)
        .header("x-api-key", &app.admin.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(key.status().as_u16(), 401);
    let s = scrape_url(&app.client, &url, Some("scrape-token-1")).await;
    assert!(s.has("wa_http_requests_total"));
    // The refused scrapes are counted too, under their own route.
    assert!(
        s.value(
            "wa_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ) >= 3.0
    );
}

#[tokio::test]
async fn a_separate_listener_serves_metrics_and_the_api_port_does_not() {
    let app = TestApp::spawn_with(|c| c.metrics_listen = Some("127.0.0.1:0".into())).await;
    app.get("/metrics", As::Nobody).await.expect_error(404);
    let addr = app
        .state
        .metrics
        .listen_addr()
        .expect("the metrics listener is bound");
    assert_ne!(addr.port(), 0);
    let s = scrape_url(&app.client, &format!("http://{addr}/metrics"), None).await;
    assert_eq!(
        s.value(
            "wa_http_requests_total",
            &[("route", "/metrics"), ("status", "404")]
        ),
        1.0,
        "the refused scrape on the API port"
    );
}

#[tokio::test]
async fn on_the_nats_backbone_the_relay_lag_is_shown_and_reaches_zero() {
    let app = TestApp::spawn_on_nats().await;
    app.create_instance(&app.admin, json!({"name": "n"})).await;
    app.wait_relayed(WAIT).await;
    // Once the QR codes stop (the cap), the relay catches up with the head.
    let s = scrape_until(&app, |s| {
        s.has("wa_relay_lag_events") && s.value("wa_relay_lag_events", &[]) == 0.0
    })
    .await;
    assert_eq!(s.value("wa_relay_lag_seconds", &[]), 0.0);
}
