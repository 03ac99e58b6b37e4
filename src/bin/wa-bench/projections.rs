//! Projections over a log of 1,000,000 messages (plus statuses, API calls
//! and webhook deliveries): apply throughput of each projector fed from the
//! log in batches of 1,000 (as the embedded backbone does), then the p50
//! latency of a chat's history page and of an instance's statistics.

use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use wa_gateway::events::{
    ApiCalled, DeliveryStatus, Event, MediaInfo, MediaKind, MessageReceived, MessageSent,
    MessageStatus, SentKind, WebhookDelivered,
};
use wa_gateway::projections::{self, Projection, activity, messages, stats};
use wa_gateway::store::{Append, EventStore, ExpectedVersion, StreamId, open_sqlite};

const MESSAGES: usize = 1_000_000;
const INSTANCES: usize = 10;
const CHATS: usize = 100;
const APPEND: usize = 1_000;
const READ_BATCH: i64 = 1_000;
const QUERIES: usize = 300;

fn instance(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn chat(c: usize) -> String {
    format!("7900{c:07}@s.whatsapp.net")
}

/// The events of message `n` of instance `inst` (and its followers: a
/// status, an API call, a webhook delivery).
fn events_for(n: usize, inst: usize) -> Vec<Event> {
    let inst = instance(inst);
    let to = chat(n % CHATS);
    let message_id = format!("BENCH{n:015}");
    let media = n.is_multiple_of(10).then(|| MediaInfo {
        kind: MediaKind::Image,
        mimetype: "image/jpeg".into(),
        file_name: None,
        size: 50_000,
    });
    let mut out = Vec::with_capacity(4);
    if n % 5 < 3 {
        out.push(
            MessageSent {
                instance_id: inst.as_str().into(),
                message_id: message_id.as_str().into(),
                to: to.as_str().into(),
                body: format!("message {n}"),
                message_type: if media.is_some() {
                    SentKind::Image
                } else {
                    SentKind::Text
                },
                timestamp: 1_700_000_000,
                has_media: media.is_some(),
                media,
                extras: Default::default(),
            }
            .into(),
        );
        if n.is_multiple_of(4) {
            out.push(
                MessageStatus {
                    instance_id: inst.as_str().into(),
                    message_id: message_id.into(),
                    status: DeliveryStatus::Delivered,
                    from: to.into(),
                    from_me: true,
                    reason: None,
                }
                .into(),
            );
        }
        if n.is_multiple_of(20) {
            out.push(
                ApiCalled {
                    user_id: "bench-user".into(),
                    instance_id: Some(inst.as_str().into()),
                    method: "POST".into(),
                    route: "/api/whatsapp/{instanceId}/send".into(),
                    status: 200,
                    duration_ms: 1.5,
                }
                .into(),
            );
        }
    } else {
        out.push(
            MessageReceived {
                instance_id: inst.as_str().into(),
                message_id: message_id.into(),
                from: to.as_str().into(),
                from_lid: None,
                participant: None,
                chat: to.into(),
                body: format!("message {n}"),
                message_type: "conversation".into(),
                timestamp: 1_700_000_000,
                has_media: media.is_some(),
                push_name: None,
                media,
                extras: Default::default(),
            }
            .into(),
        );
        if n % 20 == 1 {
            out.push(
                WebhookDelivered {
                    instance_id: inst.into(),
                    delivery_id: format!("d{n}"),
                    webhook_id: format!("w{n}"),
                    event: "message_received".into(),
                    attempt: 1,
                    status_code: 200,
                    duration_ms: 3.0,
                }
                .into(),
            );
        }
    }
    out
}

/// Fills the log: per append, 1,000 messages of one instance with their followers.
async fn fill(store: &EventStore) -> anyhow::Result<()> {
    for block in 0..MESSAGES / APPEND {
        let inst = block % INSTANCES;
        let mut append = Append::to(StreamId::instance(&instance(inst)), ExpectedVersion::Any)
            .scope(Some("bench-user"), Some(&instance(inst)));
        for n in block * APPEND..(block + 1) * APPEND {
            append.events.extend(events_for(n, inst));
        }
        store.append(append).await?;
    }
    Ok(())
}

async fn apply_all<P: Projection>(store: &EventStore, views: &SqlitePool) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut position = 0;
    let mut applied = 0;
    let conn = projections::open_direct(views, "bench-views")?;
    loop {
        let events: Vec<_> = store
            .read_from(position, READ_BATCH)
            .await?
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
        let Some(last) = events.last() else { break };
        position = last.position;
        applied += events.len();
        projections::apply_batch::<P>(&conn, &events).await?;
    }
    Ok(applied as f64 / start.elapsed().as_secs_f64())
}

fn p50(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = EventStore::open(&dir.path().join("events.db")).await?;
    let started = Instant::now();
    fill(&store).await?;
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(store.pool())
        .await?;
    println!(
        "log: {MESSAGES} messages, {events} events in all, {INSTANCES} instances x {CHATS} chats (filled in {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let views = open_sqlite(&dir.path().join("views.db"), 4).await?;
    projections::ensure_schemas(&views).await?;
    let rates = [
        (
            activity::NAME,
            apply_all::<activity::Activity>(&store, &views).await?,
        ),
        (
            messages::NAME,
            apply_all::<messages::Messages>(&store, &views).await?,
        ),
        (
            stats::NAME,
            apply_all::<stats::Stats>(&store, &views).await?,
        ),
    ];
    println!("apply throughput, log read included (target >= 20,000 events/s):");
    for (name, rate) in rates {
        println!("  {name:<10} {rate:>10.0} events/s");
    }

    let mut history = Vec::with_capacity(QUERIES);
    for q in 0..QUERIES {
        let query = messages::HistoryQuery {
            instance_id: instance(q % INSTANCES),
            remote_jid: chat(q * 7 % CHATS),
            start_ms: None,
            end_ms: None,
            limit: 50,
            skip: 0,
        };
        let t = Instant::now();
        let (page, total) = messages::page(&views, &query).await?;
        history.push(t.elapsed());
        anyhow::ensure!(page.len() == 50 && total > 50, "unexpected page");
    }
    let mut deep = Vec::with_capacity(QUERIES);
    for q in 0..QUERIES {
        let query = messages::HistoryQuery {
            instance_id: instance(q % INSTANCES),
            remote_jid: chat(q * 7 % CHATS),
            start_ms: Some(0),
            end_ms: Some(i64::MAX),
            limit: 50,
            skip: 500,
        };
        let t = Instant::now();
        messages::page(&views, &query).await?;
        deep.push(t.elapsed());
    }
    let month = (chrono::Utc::now().date_naive() - chrono::Days::new(29))
        .format("%Y-%m-%d")
        .to_string();
    let mut usage = Vec::with_capacity(QUERIES);
    for q in 0..QUERIES {
        let t = Instant::now();
        let days = stats::instance_daily(&views, &instance(q % INSTANCES), Some(&month)).await?;
        usage.push(t.elapsed());
        anyhow::ensure!(!days.is_empty(), "no statistics");
    }
    let mut user = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let t = Instant::now();
        stats::user_by_instance(&views, "bench-user", Some(&month)).await?;
        user.push(t.elapsed());
    }
    println!("query latency p50 over {QUERIES} queries (target < 5 ms):");
    println!(
        "  chat history, first page of 50:          {:>7.3} ms",
        p50(history)
    );
    println!(
        "  chat history, date range, skip 500:      {:>7.3} ms",
        p50(deep)
    );
    println!(
        "  instance stats, period month:            {:>7.3} ms",
        p50(usage)
    );
    println!(
        "  user stats, period month:                {:>7.3} ms",
        p50(user)
    );
    Ok(())
}
