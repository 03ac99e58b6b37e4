//! Webhook delivery: deliveries per second to a local receiver (10
//! instances, 2xx answers, signed), and event-to-receiver latency at 1,000
//! events/s (from the append call to the receiver reading the request).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Request, Response};
use tokio::sync::Notify;
use wa_gateway::config::Secret;
use wa_gateway::domain::instances::{self, InstanceCommand, NewInstance, WebhookSettings};
use wa_gateway::events::MessageReceived;
use wa_gateway::ids::InstanceId;
use wa_gateway::store::{Append, EventStore, ExpectedVersion, Metadata, StreamId};
use wa_gateway::{App, Config};

const INSTANCES: usize = 10;
const BURST: usize = 20_000;
const RATE_PER_SEC: u64 = 1_000;
const PACED_SECS: u64 = 5;

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    notify: Notify,
    sent_at: Mutex<HashMap<String, Instant>>,
    latencies_ms: Mutex<Vec<f64>>,
}

async fn receive(seen: Arc<Seen>, req: Request) -> poem::Result<Response> {
    let body = req.into_body().into_vec().await.unwrap_or_default();
    let at = Instant::now();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let sent = v["data"]["messageId"]
        .as_str()
        .and_then(|id| seen.sent_at.lock().unwrap().remove(id));
    if let Some(sent) = sent {
        seen.latencies_ms
            .lock()
            .unwrap()
            .push((at - sent).as_secs_f64() * 1000.0);
    }
    seen.count.fetch_add(1, Ordering::SeqCst);
    seen.notify.notify_waiters();
    Ok(Response::builder()
        .status(poem::http::StatusCode::NO_CONTENT)
        .finish())
}

fn message(instance: &str, n: usize) -> MessageReceived {
    MessageReceived {
        instance_id: instance.into(),
        message_id: format!("{instance}-{n}").into(),
        from: "79001234567@s.whatsapp.net".into(),
        from_lid: None,
        participant: None,
        chat: "79001234567@s.whatsapp.net".into(),
        body: "benchmark message".into(),
        message_type: "conversation".into(),
        timestamp: 1_700_000_000,
        has_media: false,
        push_name: Some("Bench".into()),
        media: None,
        extras: Default::default(),
    }
}

/// Appends messages `range` of `instance` in one append.
async fn append_messages(
    store: &EventStore,
    instance: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let mut append = Append::to(StreamId::instance(instance), ExpectedVersion::Any)
        .scope(Some("bench"), Some(instance))
        .metadata(Metadata::actor("engine"));
    for n in range {
        append = append.event(message(instance, n));
    }
    store.append(append).await?;
    Ok(())
}

async fn wait_count(seen: &Seen, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let notified = seen.notify.notified();
        if seen.count.load(Ordering::SeqCst) >= n {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

pub async fn run() -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .ok_or_else(|| anyhow::anyhow!("receiver address"))?;
    let s = seen.clone();
    tokio::spawn(
        poem::Server::new_with_acceptor(acceptor)
            .run(poem::endpoint::make(move |req| receive(s.clone(), req))),
    );

    let dir = tempfile::tempdir()?;
    let mut config = Config::for_tests(dir.path());
    config.log_filter = "error".into();
    let app = App::build(config).await?;
    let store = app.state().store.clone();
    let token = app.shutdown_token();
    let gateway = tokio::spawn(app.run());

    let mut ids = Vec::new();
    for n in 0..INSTANCES {
        let webhook = WebhookSettings {
            url: Some(format!("http://{addr}/hook")),
            enabled: true,
            notify_received: true,
            ..WebhookSettings::default()
        };
        let id = InstanceId::new_random();
        let new = NewInstance {
            id: id.clone(),
            owner: "bench".into(),
            name: format!("bench {n}"),
            description: None,
            webhook,
            secret: Some(Secret::new("bench-secret")),
            send_policy: Default::default(),
            proxy: None,
        };
        instances::execute(
            &store,
            &id,
            InstanceCommand::Create(new),
            Metadata::actor("bench"),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        ids.push(id.into_string());
    }

    // Throughput: BURST events appended as fast as 10 producers can, until all arrived.
    let start = Instant::now();
    let mut producers = Vec::new();
    for id in &ids {
        let (store, id) = (store.clone(), id.clone());
        producers.push(tokio::spawn(async move {
            // Appended 50 at a time: this measures delivery, not appends.
            let per = BURST / INSTANCES;
            for from in (0..per).step_by(50) {
                append_messages(&store, &id, from..(from + 50).min(per)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for p in producers {
        p.await??;
    }
    let appended = start.elapsed();
    let complete = wait_count(&seen, BURST, Duration::from_secs(120)).await;
    let elapsed = start.elapsed();
    let got = seen.count.load(Ordering::SeqCst);
    println!("deliveries to a local receiver: {INSTANCES} instances, signed, 204 answers");
    println!(
        "  {got} deliveries in {:.2} s (events appended in {:.2} s){}",
        elapsed.as_secs_f64(),
        appended.as_secs_f64(),
        if complete { "" } else { "  INCOMPLETE" }
    );
    println!(
        "  throughput:            {:>10.0} deliveries/s   (target >= 5,000)",
        got as f64 / elapsed.as_secs_f64()
    );

    // Latency at a steady 1,000 events/s, once the burst's own attempt
    // events have been recorded and read past.
    tokio::time::sleep(Duration::from_secs(1)).await;
    seen.latencies_ms.lock().unwrap().clear();
    let base = seen.count.load(Ordering::SeqCst);
    let total = (RATE_PER_SEC * PACED_SECS) as usize;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut appends = Vec::with_capacity(total);
    for n in 0..total {
        ticker.tick().await;
        let id = ids[n % INSTANCES].clone();
        let message_id = format!("{id}-{}", BURST + n);
        seen.sent_at
            .lock()
            .unwrap()
            .insert(message_id, Instant::now());
        let store = store.clone();
        appends.push(tokio::spawn(async move {
            append_messages(&store, &id, BURST + n..BURST + n + 1).await
        }));
    }
    for a in appends {
        a.await??;
    }
    let complete = wait_count(&seen, base + total, Duration::from_secs(60)).await;
    let mut lat = seen.latencies_ms.lock().unwrap().clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "event-to-receiver latency at {RATE_PER_SEC} events/s for {PACED_SECS} s ({} samples){}",
        lat.len(),
        if complete { "" } else { "  INCOMPLETE" }
    );
    println!(
        "  p50:                   {:>10.2} ms",
        percentile(&lat, 0.50)
    );
    println!(
        "  p99:                   {:>10.2} ms   (target <= 50 ms)",
        percentile(&lat, 0.99)
    );
    println!(
        "  max:                   {:>10.2} ms",
        percentile(&lat, 1.0)
    );

    token.cancel();
    gateway.await??;
    Ok(())
}
