//! The live event stream (`GET /api/events/stream`): resume with
//! `Last-Event-ID` across a restart, scoping to the caller, filters, and a
//! slow client cut off without holding anyone up.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{As, Creds, TestApp, WAIT};

/// One SSE frame as a client sees it.
#[derive(Debug, Clone)]
struct Frame {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// A client of the stream reading frames off a real HTTP response.
struct SseClient {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
    /// How much of `buf` holds no frame end (not searched again).
    scanned: usize,
    /// Heartbeat comment lines seen.
    comments: usize,
}

impl SseClient {
    /// Opens the stream as `who` with a query string and an optional `Last-Event-ID`.
    async fn open(app: &TestApp, who: &Creds, query: &str, last_id: Option<i64>) -> Self {
        let mut req = app
            .client
            .get(app.url(&format!("/api/events/stream{query}")))
            .header("x-api-key", &who.api_key);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.expect("stream request");
        assert_eq!(resp.status().as_u16(), 200, "the stream opens");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            body: resp.bytes_stream().boxed(),
            buf: Vec::new(),
            scanned: 0,
            comments: 0,
        }
    }

    /// The next frame; `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let from = self.scanned.saturating_sub(1);
            if let Some(end) = self.buf[from..].windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..from + end + 2).collect();
                self.scanned = 0;
                let text = String::from_utf8(raw).expect("utf-8 frame");
                let (mut id, mut event, mut data) = (None, "message".to_string(), String::new());
                for line in text.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).expect("JSON data");
                return Some(Frame { id, event, data });
            }
            self.scanned = self.buf.len();
            match tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("the stream sends something within the wait")
            {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Frames until one at or past `position` (inclusive); panics on a close.
    async fn read_until(&mut self, position: i64) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let f = self.next().await.expect("the stream stays open");
            assert_eq!(f.event, "message", "unexpected frame {f:?}");
            let at = f.id.expect("every event has an id");
            out.push(f);
            if at >= position {
                return out;
            }
        }
    }
}

/// The log positions of every event of `user`, in order.
async fn positions_of(app: &TestApp, user: &str) -> Vec<i64> {
    app.events()
        .await
        .iter()
        .filter(|e| e.user_id.as_deref() == Some(user))
        .map(|e| e.position)
        .collect()
}

/// Waits until `instance` is connected again (after a restart).
async fn wait_connected(app: &TestApp, who: &Creds, instance: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = app
            .get(
                &format!("/api/whatsapp/{instance}/status"),
                As::Key(&who.api_key),
            )
            .await
            .expect(200);
        if s["status"] == "connected" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not connected again: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `n` texts on `instance` as `who`.
async fn send_texts(app: &TestApp, who: &Creds, instance: &str, n: usize, tag: &str) {
    for k in 0..n {
        app.post(
            &format!("/api/whatsapp/{instance}/send"),
            As::Key(&who.api_key),
            json!({"phone": "79001230000", "message": format!("{tag} {k}")}),
        )
        .await
        .expect(200);
    }
}

#[tokio::test]
async fn a_stream_resumed_with_last_event_id_across_a_restart_gives_every_event_exactly_once() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("alice@example.com").await;
    let instance = app.connected_instance(&alice, "79001110001").await;
    send_texts(&app, &alice, &instance, 3, "before").await;

    // Read the user's whole history so far, from the first position on.
    let mut first = SseClient::open(&app, &alice, "", Some(0)).await;
    let target = *positions_of(&app, &alice.id).await.last().unwrap();
    let mut seen: Vec<i64> = first
        .read_until(target)
        .await
        .iter()
        .map(|f| f.id.unwrap())
        .collect();
    drop(first);
    let last = *seen.last().unwrap();

    // While no client listens: more events, a restart, more events.
    send_texts(&app, &alice, &instance, 3, "offline").await;
    let app = app.restart().await;
    wait_connected(&app, &alice, &instance).await;
    send_texts(&app, &alice, &instance, 3, "after").await;

    let mut resumed = SseClient::open(&app, &alice, "", Some(last)).await;
    let target = *positions_of(&app, &alice.id).await.last().unwrap();
    let frames = resumed.read_until(target).await;
    for f in &frames {
        assert_eq!(f.data["kind"], "event");
        assert_eq!(
            f.data["position"].as_i64(),
            f.id,
            "the SSE id is the log position"
        );
        assert_eq!(f.data["userId"], alice.id.as_str());
    }
    seen.extend(frames.iter().map(|f| f.id.unwrap()));

    let expected: Vec<i64> = positions_of(&app, &alice.id)
        .await
        .into_iter()
        .filter(|p| *p <= target)
        .collect();
    assert_eq!(
        seen, expected,
        "every event of the user once, in log order, across the restart"
    );
    let texts: Vec<String> = frames
        .iter()
        .filter(|f| f.data["type"] == "message_sent")
        .map(|f| f.data["data"]["body"].as_str().unwrap().to_string())
        .collect();
    assert!(texts.contains(&"offline 0".to_string()) && texts.contains(&"after 2".to_string()));
}

#[tokio::test]
async fn another_users_events_never_appear_in_a_users_stream_and_an_admin_sees_both() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("alice@example.com").await;
    let bob = app.create_user("bob@example.com").await;
    let start = app.state.store.head();
    let mut bobs = SseClient::open(&app, &bob, "", Some(start)).await;
    let mut admins = SseClient::open(&app, &app.admin, "", Some(start)).await;

    let alices_instance = app.connected_instance(&alice, "79001110002").await;
    send_texts(&app, &alice, &alices_instance, 2, "secret plans").await;
    // Bob acts last: once his stream shows this, Alice's events have passed it.
    let bobs_instance = app.create_instance(&bob, json!({"name": "bob's"})).await;
    let bob_last = *positions_of(&app, &bob.id).await.last().unwrap();
    let frames = bobs.read_until(bob_last).await;
    assert!(!frames.is_empty());
    for f in &frames {
        assert_eq!(
            f.data["userId"],
            bob.id.as_str(),
            "only Bob's events: {f:?}"
        );
        assert_ne!(f.data["instanceId"], alices_instance.as_str());
        assert!(!f.data.to_string().contains("secret plans"));
    }
    assert!(
        frames.iter().any(|f| f.data["type"] == "instance_created"
            && f.data["instanceId"] == bobs_instance.as_str())
    );

    // The admin's stream has both users' events.
    let admin_frames = admins.read_until(bob_last).await;
    let users: std::collections::HashSet<&str> = admin_frames
        .iter()
        .filter_map(|f| f.data["userId"].as_str())
        .collect();
    assert!(users.contains(alice.id.as_str()) && users.contains(bob.id.as_str()));

    // Bob cannot ask for Alice's instance: 404, as for one that does not exist.
    app.get(
        &format!("/api/events/stream?instanceId={alices_instance}"),
        As::Key(&bob.api_key),
    )
    .await
    .expect_error(404);
    // No secrets in any event the admin saw: not the API keys, not the passwords.
    for f in &admin_frames {
        let text = f.data.to_string();
        for secret in [&alice.api_key, &bob.api_key, &app.admin.api_key] {
            assert!(!text.contains(secret.as_str()), "a key in {text}");
        }
        assert!(!text.contains("user-password"), "a password in {text}");
    }
}

#[tokio::test]
async fn the_stream_filters_by_instance_and_event_type_and_refuses_bad_filters() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("alice@example.com").await;
    let one = app.connected_instance(&alice, "79001110003").await;
    let two = app.connected_instance(&alice, "79001110004").await;
    let mut only_one = SseClient::open(
        &app,
        &alice,
        &format!("?instanceId={one}&types=message_sent"),
        None,
    )
    .await;
    send_texts(&app, &alice, &two, 2, "on two").await;
    send_texts(&app, &alice, &one, 1, "on one").await;
    let f = only_one.next().await.expect("an event");
    assert_eq!(f.data["type"], "message_sent");
    assert_eq!(f.data["instanceId"], one.as_str());
    assert_eq!(f.data["data"]["body"], "on one 0");

    for bad in ["?types=no_such_event", "?instanceId=not-an-instance"] {
        let status = app
            .get(&format!("/api/events/stream{bad}"), As::Key(&alice.api_key))
            .await
            .status
            .as_u16();
        assert!(status == 400 || status == 404, "{bad}: {status}");
    }
    let resp = app
        .client
        .get(app.url("/api/events/stream"))
        .header("x-api-key", &alice.api_key)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    TestApp::read(resp).await.expect_error(400);
    app.get("/api/events/stream", As::Nobody)
        .await
        .expect_error(401);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_with_a_close_event_and_slows_nobody_else() {
    let app = TestApp::spawn_with(|c| {
        c.stream_buffer = 8;
        c.stream_slow_grace = Duration::from_millis(300);
    })
    .await;
    let alice = app.create_user("alice@example.com").await;
    let instance = app.connected_instance(&alice, "79001110005").await;
    let start = app.state.store.head();
    let query = "?types=message_received";
    let mut slow = SseClient::open(&app, &alice, query, Some(start)).await;
    let mut fast = SseClient::open(&app, &alice, query, Some(start)).await;

    // Far more than the socket buffers and the client's buffer hold.
    let big = "x".repeat(60_000);
    let (n, mut read_fast) = (400, 0);
    for k in 0..n {
        app.post(
            &format!("/api/sim/instances/{instance}/inbound"),
            As::Key(&alice.api_key),
            json!({"from": "79001119999", "body": format!("{k} {big}")}),
        )
        .await
        .expect(200);
        // The fast reader keeps up while the slow one reads nothing.
        while read_fast <= k {
            let f = fast.next().await.expect("the fast client is never cut off");
            assert_eq!(f.event, "message");
            read_fast += 1;
        }
    }

    // The slow client finally reads: some events, then a close saying why, then the end.
    let mut last_event = start;
    let close = loop {
        let f = slow.next().await.expect("a close event before the end");
        if f.event == "close" {
            break f;
        }
        last_event = f.id.unwrap();
    };
    assert_eq!(close.data["reason"], "slow_consumer");
    assert_eq!(close.data["lastEventId"].as_i64(), Some(last_event));
    assert!(
        slow.next().await.is_none(),
        "the stream ends after the close"
    );
    let got_before_cut = app
        .events()
        .await
        .iter()
        .filter(|e| {
            e.event_type == "message_received" && e.position > start && e.position <= last_event
        })
        .count();
    assert!(
        got_before_cut < n,
        "the slow client was cut off before the end"
    );

    // It resumes from its last id and gets the rest, without a gap.
    let mut resumed = SseClient::open(&app, &alice, query, Some(last_event)).await;
    let last_received = app
        .events()
        .await
        .iter()
        .filter(|e| e.event_type == "message_received")
        .map(|e| e.position)
        .max()
        .unwrap();
    // (A reader this slow may be cut off again while catching up: it resumes again.)
    let mut rest: Vec<i64> = Vec::new();
    let mut at = last_event;
    while at < last_received {
        match resumed.next().await.expect("a frame") {
            Frame { event, data, .. } if event == "close" => {
                assert_eq!(data["lastEventId"].as_i64(), Some(at));
                resumed = SseClient::open(&app, &alice, query, Some(at)).await;
            }
            Frame { id, .. } => {
                at = id.unwrap();
                rest.push(at);
            }
        }
    }
    let mut unique = rest.clone();
    unique.dedup();
    assert_eq!(unique, rest, "no event twice");
    assert_eq!(got_before_cut + rest.len(), n, "no event missing");
}
