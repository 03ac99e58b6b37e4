//! The test harness: a real gateway on port 0 with a temp data dir, a typed
#![allow(dead_code)]
//! HTTP client, and waits on the event log instead of sleeps.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wa_gateway::backbone::Backbone;
use wa_gateway::store::RecordedEvent;
use wa_gateway::{App, AppState, Config};

use crate::nats_server::NatsServer;

/// The password of the admin every test gateway starts with.
pub const ADMIN_PASSWORD: &str = "admin-password";
/// How long a test waits for something to happen before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running gateway.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub config: Config,
    pub admin: Creds,
    dir: Option<TempDir>,
    token: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// The test's own nats-server, when the gateway runs on the NATS backbone.
    pub nats: Option<NatsServer>,
}

/// A user's credentials.
#[derive(Clone, Debug)]
pub struct Creds {
    pub id: String,
    pub email: String,
    pub token: String,
    pub api_key: String,
}

/// An HTTP answer: status and JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub content_type: String,
}

impl Answer {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    /// Asserts an error answer: status, a JSON `{error, message}` body.
    #[track_caller]
    pub fn expect_error(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "error body is not JSON: {}",
            self.content_type
        );
        assert!(
            self.body["error"].is_string(),
            "no error code: {}",
            self.body
        );
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {}",
            self.body
        );
        self.body
    }
}

/// How a request authenticates.
#[derive(Clone, Copy)]
pub enum As<'a> {
    Key(&'a str),
    Bearer(&'a str),
    Nobody,
}

impl TestApp {
    /// A gateway with the test defaults (sim engine, loopback allowed).
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A gateway with adjusted settings.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path());
        config.sim_qr_interval = Duration::from_millis(200);
        config.reconnect_base = Duration::from_millis(20);
        config.send_wait = Duration::from_millis(300);
        adjust(&mut config);
        Self::start(config, Some(dir)).await
    }

    /// A gateway whose admin is not logged in by the harness (e.g. when the
    /// allow-list refuses loopback).
    pub async fn spawn_anonymous_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path());
        adjust(&mut config);
        Self::start_as(config, Some(dir), false).await
    }

    /// A gateway on the NATS JetStream backbone, with its own nats-server
    /// (kept alive in `self.nats`, killed when the app is dropped).
    pub async fn spawn_on_nats() -> Self {
        Self::spawn_on_nats_with(|_| {}).await
    }

    /// [`TestApp::spawn_on_nats`] with adjusted settings.
    pub async fn spawn_on_nats_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let nats = NatsServer::start().await;
        let url = nats.url();
        let mut app = Self::spawn_with(|c| {
            c.nats_url = Some(url);
            c.nats_startup_timeout = Duration::from_secs(10);
            adjust(c);
        })
        .await;
        app.nats = Some(nats);
        app
    }

    /// The NATS backbone (panics on the embedded one).
    pub fn nats_backbone(&self) -> wa_gateway::backbone::nats::NatsBackbone {
        match &self.state.backbone {
            Backbone::Nats(n, _) => n.clone(),
            Backbone::Embedded(_) => panic!("this TestApp runs on the embedded backbone"),
        }
    }

    /// Waits until the relay has JetStream's ack for every event in the log
    /// now; returns that position.
    pub async fn wait_relayed(&self, within: Duration) -> i64 {
        let head = self.state.store.head();
        let mut published = self.nats_backbone().published();
        tokio::time::timeout(within, published.wait_for(|p| *p >= head))
            .await
            .unwrap_or_else(|_| panic!("the relay did not reach position {head} within {within:?}"))
            .expect("relay progress");
        head
    }

    async fn start(config: Config, dir: Option<TempDir>) -> Self {
        Self::start_as(config, dir, true).await
    }

    async fn start_as(config: Config, dir: Option<TempDir>, log_in: bool) -> Self {
        let app = App::build(config.clone())
            .await
            .expect("the gateway builds");
        let base = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let token = app.shutdown_token();
        let handle = tokio::spawn(app.run());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut t = Self {
            base,
            client,
            state,
            config,
            admin: Creds {
                id: String::new(),
                email: String::new(),
                token: String::new(),
                api_key: String::new(),
            },
            dir,
            token,
            handle: Some(handle),
            nats: None,
        };
        if log_in {
            let email = t.config.admin_email.clone();
            t.admin = t.login(&email, ADMIN_PASSWORD).await;
        }
        t
    }

    /// Stops the gateway and starts it again on the same data dir.
    pub async fn restart(mut self) -> Self {
        let dir = self.dir.take();
        let nats = self.nats.take();
        let config = self.config.clone();
        self.stop().await;
        let mut app = Self::start(config, dir).await;
        app.nats = nats;
        app
    }

    /// Stops the gateway and waits for it.
    pub async fn stop(&mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            h.await
                .expect("the gateway task")
                .expect("the gateway stops cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request and reads the answer.
    pub async fn call(&self, method: &str, path: &str, who: As<'_>, body: Option<Value>) -> Answer {
        let mut req = self.client.request(method.parse().unwrap(), self.url(path));
        req = match who {
            As::Key(k) => req.header("x-api-key", k),
            As::Bearer(t) => req.bearer_auth(t),
            As::Nobody => req,
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::read(req.send().await.expect("request sent")).await
    }

    /// Reads a response into an [`Answer`].
    pub async fn read(resp: reqwest::Response) -> Answer {
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            content_type,
        }
    }

    pub async fn get(&self, path: &str, who: As<'_>) -> Answer {
        self.call("GET", path, who, None).await
    }

    pub async fn post(&self, path: &str, who: As<'_>, body: Value) -> Answer {
        self.call("POST", path, who, Some(body)).await
    }

    pub async fn put(&self, path: &str, who: As<'_>, body: Value) -> Answer {
        self.call("PUT", path, who, Some(body)).await
    }

    pub async fn delete(&self, path: &str, who: As<'_>) -> Answer {
        self.call("DELETE", path, who, None).await
    }

    /// Logs in and returns the credentials.
    pub async fn login(&self, email: &str, password: &str) -> Creds {
        let body = self
            .post(
                "/api/auth/login",
                As::Nobody,
                json!({"email": email, "password": password}),
            )
            .await
            .expect(200);
        Creds {
            id: body["user"]["id"].as_str().unwrap().to_string(),
            email: email.to_string(),
            token: body["token"].as_str().unwrap().to_string(),
            api_key: body["user"]["apiKey"].as_str().unwrap().to_string(),
        }
    }

    /// Creates a user through the admin API and logs it in.
    pub async fn create_user(&self, email: &str) -> Creds {
        self.post(
            "/api/users",
            As::Key(&self.admin.api_key),
            json!({"email": email, "password": "user-password", "firstName": "Test", "lastName": "User"}),
        )
        .await
        .expect(200);
        self.login(email, "user-password").await
    }

    /// Creates an instance for `who` and returns its id.
    pub async fn create_instance(&self, who: &Creds, body: Value) -> String {
        let b = self
            .post("/api/instances", As::Key(&who.api_key), body)
            .await
            .expect(200);
        b["id"].as_str().unwrap().to_string()
    }

    /// Creates an instance, scans its QR code (sim) and waits until it is connected. Returns the id.
    pub async fn connected_instance(&self, who: &Creds, phone: &str) -> String {
        let id = self
            .create_instance(who, json!({"name": format!("inst {phone}")}))
            .await;
        self.wait_for_event(&id, "qr_received", |_| true).await;
        self.post(
            &format!("/api/sim/instances/{id}/scan"),
            As::Key(&who.api_key),
            json!({"phone": phone}),
        )
        .await
        .expect(200);
        self.wait_for_event(&id, "connection_opened", |_| true)
            .await;
        id
    }

    /// Every event in the log, in order.
    pub async fn events(&self) -> Vec<RecordedEvent> {
        self.state
            .store
            .read_from(0, i64::MAX)
            .await
            .expect("read the log")
    }

    /// Events caused by commands (what bad input must not add): everything
    /// but engine happenings, API-call records and webhook attempts.
    pub async fn command_events(&self) -> Vec<RecordedEvent> {
        self.events()
            .await
            .into_iter()
            .filter(|e| {
                e.metadata.actor.as_deref() != Some("engine")
                    && e.event_type != "api_called"
                    && !e.event_type.starts_with("webhook_")
            })
            .collect()
    }

    /// An instance's events of one type, in order.
    pub async fn instance_events(&self, instance_id: &str, event_type: &str) -> Vec<RecordedEvent> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.instance_id.as_deref() == Some(instance_id) && e.event_type == event_type)
            .collect()
    }

    /// Waits (through a log subscription, not sleeps) for an instance event
    /// of `event_type` whose payload satisfies `pred`.
    pub async fn wait_for_event(
        &self,
        instance_id: &str,
        event_type: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> RecordedEvent {
        let mut sub = self.state.store.subscribe(0);
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let batch = sub
                    .next_batch()
                    .await
                    .expect("read the log")
                    .expect("store open");
                if let Some(e) = batch.into_iter().find(|e| {
                    e.instance_id.as_deref() == Some(instance_id)
                        && e.event_type == event_type
                        && pred(&e.data)
                }) {
                    return RecordedEvent::clone(&e);
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {event_type} event for {instance_id} within {WAIT:?}"))
    }

    /// Waits for the `nth` (1-based) event of a type for an instance.
    pub async fn wait_for_nth_event(
        &self,
        instance_id: &str,
        event_type: &str,
        nth: usize,
    ) -> RecordedEvent {
        let mut sub = self.state.store.subscribe(0);
        let mut seen = 0;
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let batch = sub
                    .next_batch()
                    .await
                    .expect("read the log")
                    .expect("store open");
                for e in batch {
                    if e.instance_id.as_deref() == Some(instance_id) && e.event_type == event_type {
                        seen += 1;
                        if seen == nth {
                            return RecordedEvent::clone(&e);
                        }
                    }
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!("no {nth}th {event_type} event for {instance_id} within {WAIT:?}")
        })
    }
}

impl TestApp {
    /// Waits until every projector has applied the log up to its last
    /// committed event (projections are eventually consistent). Reads the
    /// log itself: the writer answers an append before it publishes the new
    /// head, so `store.head()` can trail a request that has just returned.
    pub async fn wait_for_projections(&self) {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(self.state.store.pool())
            .await
            .expect("read the log head");
        let caught_up = tokio::time::timeout(WAIT, async {
            loop {
                let mut behind = false;
                for name in wa_gateway::projections::NAMES {
                    let cp = wa_gateway::backbone::load_checkpoint(&self.state.views, name)
                        .await
                        .expect("read a checkpoint");
                    behind |= cp < head;
                }
                if !behind {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        caught_up.unwrap_or_else(|_| panic!("projections did not reach {head} within {WAIT:?}"));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
