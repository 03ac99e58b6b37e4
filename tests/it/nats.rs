//! The NATS JetStream backbone end to end, on real nats-server processes:
//! the relay's subjects, headers, order and exactly-once; external
//! subscribers; relay and server crashes; replay.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wa_gateway::backbone::nats::{NatsBackbone, NatsSettings};
use wa_gateway::events::ApiCalled;
use wa_gateway::relay::{self, Relay};
use wa_gateway::store::{Append, EventStore, ExpectedVersion, RecordedEvent, StreamId};

use crate::helpers::{As, TestApp};
use crate::nats_server::NatsServer;

/// One message as stored in the stream.
struct Stored {
    sequence: u64,
    subject: String,
    headers: HeaderMap,
    event: RecordedEvent,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("header {name} missing"))
        .as_str()
}

/// Every message of the stream, in sequence order (an ordered consumer).
async fn read_stream(nats: &NatsBackbone) -> Vec<Stored> {
    let mut stream = nats.stream().await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    if state.messages == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("the stream delivers")
            .unwrap()
            .unwrap();
        let info = msg.info().unwrap();
        let (sequence, pending) = (info.stream_sequence, info.pending);
        out.push(Stored {
            sequence,
            subject: msg.subject.to_string(),
            headers: msg.headers.clone().unwrap_or_default(),
            event: serde_json::from_slice(&msg.payload).expect("an envelope"),
        });
        if pending == 0 {
            return out;
        }
    }
}

/// Asserts the stream holds positions 1..=n once each, in order, sequence = position.
#[track_caller]
fn assert_exactly_once_in_order(stored: &[Stored], log: &[RecordedEvent]) {
    let positions: Vec<i64> = stored.iter().map(|s| s.event.position).collect();
    let expected: Vec<i64> = log.iter().map(|e| e.position).collect();
    assert_eq!(
        positions.len(),
        expected.len(),
        "the stream holds {} events, the log {}",
        positions.len(),
        expected.len()
    );
    assert_eq!(
        positions, expected,
        "gap, duplicate or disorder in the stream"
    );
    for (s, e) in stored.iter().zip(log) {
        assert_eq!(s.sequence as i64, e.position);
        assert_eq!(&s.event, e);
    }
}

/// The documented subject, computed independently of the gateway's code.
fn documented_subject(e: &RecordedEvent) -> String {
    format!(
        "wa.{}.{}.{}",
        e.user_id.as_deref().unwrap_or("_system"),
        e.instance_id.as_deref().unwrap_or("_user"),
        e.event_type
    )
}

#[tokio::test]
async fn every_appended_event_appears_once_on_its_subject_in_log_order_with_the_documented_headers()
{
    let app = TestApp::spawn_on_nats().await;
    let user = app.create_user("nats-order@test.local").await;
    let instance = app
        .create_instance(&user, json!({"name": "relay me"}))
        .await;
    app.put(
        &format!("/api/instances/{instance}"),
        As::Key(&user.api_key),
        json!({"name": "renamed"}),
    )
    .await
    .expect(200);
    let head = app.wait_relayed(Duration::from_secs(10)).await;

    let stored = read_stream(&app.nats_backbone()).await;
    let log = app.events().await;
    let stored: Vec<Stored> = stored.into_iter().take(head as usize).collect();
    assert_exactly_once_in_order(&stored, &log[..head as usize]);
    for s in &stored {
        let e = &s.event;
        assert_eq!(s.subject, documented_subject(e));
        assert_eq!(header(&s.headers, "Nats-Msg-Id"), e.event_id);
        assert_eq!(header(&s.headers, "Wa-Event-Type"), e.event_type);
        assert_eq!(header(&s.headers, "Wa-Position"), e.position.to_string());
        assert_eq!(header(&s.headers, "Wa-Stream-Id"), e.stream_id);
        assert_eq!(
            header(&s.headers, "Wa-Stream-Version"),
            e.version.to_string()
        );
        assert_eq!(
            header(&s.headers, "Wa-Schema-Version"),
            e.schema_version.to_string()
        );
        assert_eq!(header(&s.headers, "Content-Type"), "application/json");
    }
    let subjects: Vec<&str> = stored.iter().map(|s| s.subject.as_str()).collect();
    assert!(
        subjects.contains(&format!("wa.{}._user.user_registered", user.id).as_str()),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&format!("wa.{}.{instance}.instance_updated", user.id).as_str()),
        "{subjects:?}"
    );
}

#[tokio::test]
async fn an_external_subscriber_filtered_to_one_user_sees_only_that_users_events() {
    let app = TestApp::spawn_on_nats().await;
    let alice = app.create_user("alice@test.local").await;
    let bob = app.create_user("bob@test.local").await;
    let outsider = app.nats.as_ref().unwrap().client().await;
    let mut sub = outsider
        .subscribe(format!("wa.{}.>", alice.id))
        .await
        .unwrap();
    outsider.flush().await.unwrap();

    let a = app.create_instance(&alice, json!({"name": "a"})).await;
    let b = app.create_instance(&bob, json!({"name": "b"})).await;
    for (who, id) in [(&bob, &b), (&alice, &a), (&bob, &b)] {
        app.put(
            &format!("/api/instances/{id}"),
            As::Key(&who.api_key),
            json!({"name": "changed"}),
        )
        .await
        .expect(200);
    }
    app.put(
        &format!("/api/instances/{a}"),
        As::Key(&alice.api_key),
        json!({"name": "marker"}),
    )
    .await
    .expect(200);

    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = sub.next().await {
            let e: RecordedEvent = serde_json::from_slice(&msg.payload).unwrap();
            assert!(msg.subject.starts_with(&format!("wa.{}.", alice.id)));
            let marker = e.event_type == "instance_updated" && e.data["name"] == "marker";
            received.push(e);
            if marker {
                return;
            }
        }
    })
    .await
    .expect("the marker event reaches the subscriber");

    let first = received[0].position;
    let last = received.last().unwrap().position;
    let expected: Vec<i64> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.position >= first && e.position <= last)
        .filter(|e| e.user_id.as_deref() == Some(alice.id.as_str()))
        .map(|e| e.position)
        .collect();
    let got: Vec<i64> = received.iter().map(|e| e.position).collect();
    assert_eq!(
        got, expected,
        "alice's events, once, in order, and nothing else"
    );
    assert!(
        received
            .iter()
            .any(|e| e.instance_id.as_deref() == Some(&a))
    );
    assert!(
        app.events()
            .await
            .iter()
            .any(|e| e.user_id.as_deref() == Some(&bob.id)
                && e.position > first
                && e.position < last),
        "bob's events happened in between and were filtered out"
    );
}

/// Appends `n` api_called events in appends of 100.
async fn append_many(store: &EventStore, n: usize) {
    for chunk in 0..n.div_ceil(100) {
        let mut append = Append::to(
            StreamId::named(format!("bench-{chunk}")),
            ExpectedVersion::NoStream,
        )
        .scope(Some("relay-user"), Some("relay-instance"));
        for i in 0..100.min(n - chunk * 100) {
            append = append.event(ApiCalled {
                user_id: "relay-user".into(),
                instance_id: Some("relay-instance".into()),
                method: "POST".into(),
                route: "/api/whatsapp/{instanceId}/send".into(),
                status: 200,
                duration_ms: i as f64,
            });
        }
        store.append(append).await.unwrap();
    }
}

async fn connect(server: &NatsServer) -> NatsBackbone {
    NatsBackbone::connect(&NatsSettings {
        url: server.url(),
        stream: "WA_EVENTS".into(),
        subject_prefix: "wa".into(),
        startup_timeout: Duration::from_secs(10),
        ack_wait: None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_relay_killed_mid_batch_and_restarted_leaves_no_gap_and_no_duplicate_in_the_stream() {
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(&dir.path().join("events.db"))
        .await
        .unwrap();
    append_many(&store, 20_000).await;
    let nats = connect(&server).await;

    let relay = tokio::spawn(
        Relay::new(store.clone(), nats.clone())
            .window(700)
            .run(CancellationToken::new()),
    );
    let mut published = nats.published();
    tokio::time::timeout(Duration::from_secs(30), published.wait_for(|p| *p >= 2_000))
        .await
        .expect("the relay makes progress")
        .unwrap();
    relay.abort();
    let _ = relay.await;
    let at_kill = relay::load_checkpoint(store.pool()).await.unwrap();
    assert!(at_kill < 20_000, "killed mid-way, at {at_kill}");

    let token = CancellationToken::new();
    let relay = tokio::spawn(Relay::new(store.clone(), nats.clone()).run(token.clone()));
    let mut published = nats.published();
    tokio::time::timeout(
        Duration::from_secs(60),
        published.wait_for(|p| *p >= 20_000),
    )
    .await
    .expect("the restarted relay catches up")
    .unwrap();
    token.cancel();
    relay.await.unwrap();

    let log = store.read_from(0, i64::MAX).await.unwrap();
    assert_exactly_once_in_order(&read_stream(&nats).await, &log);
}

#[tokio::test]
async fn a_relay_whose_checkpoint_is_behind_the_stream_resumes_after_the_streams_last_message() {
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(&dir.path().join("events.db"))
        .await
        .unwrap();
    append_many(&store, 3_000).await;
    let nats = connect(&server).await;
    // A relay that published 1,234 events and died before recording anything.
    let log = store.read_from(0, i64::MAX).await.unwrap();
    let js = nats.jetstream();
    for e in &log[..1_234] {
        js.send_publish(nats.subject_for(e), nats.message_for(e).unwrap())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(relay::load_checkpoint(store.pool()).await.unwrap(), 0);
    let resync = Relay::new(store.clone(), nats.clone())
        .resync()
        .await
        .unwrap();
    assert_eq!(resync.position, 1_234);

    let token = CancellationToken::new();
    let relay = tokio::spawn(Relay::new(store.clone(), nats.clone()).run(token.clone()));
    let mut published = nats.published();
    tokio::time::timeout(Duration::from_secs(30), published.wait_for(|p| *p >= 3_000))
        .await
        .expect("the relay catches up")
        .unwrap();
    token.cancel();
    relay.await.unwrap();
    assert_exactly_once_in_order(&read_stream(&nats).await, &log);
}

/// `/readyz`: (status, backbone_ready).
async fn readyz(app: &TestApp) -> (u16, bool) {
    let a = app.get("/readyz", As::Nobody).await;
    (
        a.status.as_u16(),
        a.body["checks"]["backbone_ready"]
            .as_bool()
            .unwrap_or(false),
    )
}

/// Polls `/readyz` (there is nothing to await) until it answers `status`.
async fn wait_for_readyz(app: &TestApp, status: u16) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if readyz(app).await.0 == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/readyz never answered {status}"));
}

#[tokio::test]
async fn nats_killed_during_a_burst_of_api_appends_the_api_keeps_accepting_and_the_stream_ends_with_every_event_once()
 {
    let mut app = TestApp::spawn_on_nats().await;
    assert_eq!(readyz(&app).await, (200, true));
    let user = app.create_user("burst@test.local").await;
    let instance = app.create_instance(&user, json!({"name": "burst"})).await;

    let done = Arc::new(AtomicUsize::new(0));
    let halfway = Arc::new(Notify::new());
    let resume = Arc::new(Notify::new());
    let burst = {
        let (client, base, key) = (app.client.clone(), app.base.clone(), user.api_key.clone());
        let (done, halfway, resume) = (done.clone(), halfway.clone(), resume.clone());
        let url = format!("{base}/api/instances/{instance}");
        tokio::spawn(async move {
            for n in 0..300 {
                if n == 100 {
                    halfway.notify_one();
                    resume.notified().await;
                }
                let resp = client
                    .put(&url)
                    .header("x-api-key", &key)
                    .json(&json!({"name": format!("burst {n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200, "update {n} refused");
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    halfway.notified().await;
    app.nats.as_mut().unwrap().kill().await;
    resume.notify_one();
    wait_for_readyz(&app, 503).await;
    assert!(!readyz(&app).await.1, "backbone_ready while NATS is down");
    // The rest of the burst goes to the log while NATS is down.
    tokio::time::timeout(Duration::from_secs(60), burst)
        .await
        .expect("the API keeps answering without NATS")
        .unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 300);

    app.nats.as_mut().unwrap().restart().await;
    wait_for_readyz(&app, 200).await;
    let head = app.wait_relayed(Duration::from_secs(60)).await;
    let stored = read_stream(&app.nats_backbone()).await;
    let log = app.events().await;
    let stored: Vec<Stored> = stored.into_iter().take(head as usize).collect();
    assert_exactly_once_in_order(&stored, &log[..head as usize]);
    let updates = stored
        .iter()
        .filter(|s| s.event.event_type == "instance_updated")
        .count();
    assert_eq!(updates, 300);
}

/// Runs `wa-gateway events replay` against an app's data dir (and NATS).
async fn replay_cli(app: &TestApp, args: &[&str]) -> Vec<RecordedEvent> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .args(["events", "replay"])
        .args(args)
        .env_clear()
        .env("WA_DATA_DIR", &app.config.data_dir)
        .env("WA_NATS_URL", app.nats.as_ref().unwrap().url())
        .env("WA_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "replay {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one envelope per line"))
        .collect()
}

#[tokio::test]
async fn events_replay_from_the_log_and_from_nats_equals_the_log_for_the_same_filters() {
    let app = TestApp::spawn_on_nats().await;
    let alice = app.create_user("replay-a@test.local").await;
    let bob = app.create_user("replay-b@test.local").await;
    let a = app.create_instance(&alice, json!({"name": "a"})).await;
    let b = app.create_instance(&bob, json!({"name": "b"})).await;
    for n in 0..5 {
        for (who, id) in [(&alice, &a), (&bob, &b)] {
            app.put(
                &format!("/api/instances/{id}"),
                As::Key(&who.api_key),
                json!({"name": format!("n{n}")}),
            )
            .await
            .expect(200);
        }
    }
    // Freeze the range under test (the sim keeps adding QR events after it).
    let head = app.wait_relayed(Duration::from_secs(10)).await;
    let log: Vec<RecordedEvent> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.position <= head)
        .collect();
    let mid = &log[log.len() / 3];
    let late = &log[2 * log.len() / 3];
    let since = mid.recorded_at.to_rfc3339();
    let until = late.recorded_ms().to_string();
    let to = head.to_string();

    type Pred<'a> = Box<dyn Fn(&RecordedEvent) -> bool + 'a>;
    let cases: Vec<(Vec<String>, Pred)> = vec![
        (vec![], Box::new(|_| true)),
        (
            vec!["--user".into(), alice.id.clone()],
            Box::new(|e| e.user_id.as_deref() == Some(alice.id.as_str())),
        ),
        (
            vec![
                "--instance".into(),
                b.clone(),
                "--type".into(),
                "instance_updated,instance_created".into(),
            ],
            Box::new(|e| {
                e.instance_id.as_deref() == Some(b.as_str())
                    && (e.event_type == "instance_updated" || e.event_type == "instance_created")
            }),
        ),
        (
            vec!["--type".into(), "instance_updated".into()],
            Box::new(|e| e.event_type == "instance_updated"),
        ),
        (
            vec![
                "--from-position".into(),
                "3".into(),
                "--to-position".into(),
                "9".into(),
            ],
            Box::new(|e| (3..=9).contains(&e.position)),
        ),
        (
            vec![
                "--since".into(),
                since.clone(),
                "--until".into(),
                until.clone(),
            ],
            Box::new(|e| {
                e.recorded_ms() >= mid.recorded_ms() && e.recorded_ms() < late.recorded_ms()
            }),
        ),
    ];
    let mut seen_per_case = HashMap::new();
    for (args, pred) in &cases {
        let expected: Vec<RecordedEvent> = log.iter().filter(|e| pred(e)).cloned().collect();
        assert!(!expected.is_empty(), "case {args:?} selects nothing");
        let mut with_bound: Vec<&str> = args.iter().map(String::as_str).collect();
        if !args.iter().any(|a| a == "--to-position") {
            with_bound.extend(["--to-position", &to]);
        }
        let from_log = replay_cli(&app, &with_bound).await;
        assert_eq!(from_log, expected, "log replay {args:?}");
        with_bound.push("--from-nats");
        let from_nats = replay_cli(&app, &with_bound).await;
        assert_eq!(from_nats, expected, "NATS replay {args:?}");
        seen_per_case.insert(args.join(" "), expected.len());
    }
    assert!(seen_per_case[""] > seen_per_case[&format!("--user {}", alice.id)]);
}
