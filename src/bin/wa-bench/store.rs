//! Event-store appends from 64 concurrent tasks: group commit against one
//! transaction per append, in the same run.

use std::sync::Arc;
use std::time::Instant;

use wa_gateway::events::ApiCalled;
use wa_gateway::store::{Append, EventStore, ExpectedVersion, StreamId, WriterMode};

const TASKS: usize = 64;
const PER_TASK: usize = 1_000;

async fn measure(mode: WriterMode) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = EventStore::open_with(&dir.path().join("events.db"), mode).await?;
    let store = Arc::new(store);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::named(format!("bench-{t}"));
            for n in 0..PER_TASK {
                let event = ApiCalled {
                    user_id: format!("user-{t}").into(),
                    instance_id: Some(format!("instance-{t}").into()),
                    method: "POST".into(),
                    route: "/api/whatsapp/{instanceId}/send".into(),
                    status: 200,
                    duration_ms: n as f64 / 10.0,
                };
                store
                    .append(
                        Append::to(stream.clone(), ExpectedVersion::Exact(n as i64))
                            .scope(Some("bench"), None)
                            .event(event),
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = (TASKS * PER_TASK) as f64;
    anyhow::ensure!(store.head() as f64 == total, "lost events");
    Ok(total / secs)
}

pub async fn run() -> anyhow::Result<()> {
    let group = measure(WriterMode::GroupCommit).await?;
    let single = measure(WriterMode::PerAppend).await?;
    println!("appends from {TASKS} tasks x {PER_TASK} events, expected-version checked");
    println!("  group commit:          {group:>10.0} events/s   (target >= 30,000)");
    println!("  one tx per append:     {single:>10.0} events/s");
    println!("  ratio:                 {:>10.1}x", group / single);
    Ok(())
}
