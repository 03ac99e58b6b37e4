//! The event store on a real SQLite file: appends, conflicts, reads,
//! subscriptions, and concurrent appends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use wa_gateway::events::{Event, ReconnectRequested};
use wa_gateway::store::{Append, EventStore, ExpectedVersion, Metadata, StoreError, StreamId};

fn reconnect(n: usize) -> Event {
    ReconnectRequested {
        instance_id: format!("i{n}").into(),
    }
    .into()
}

async fn open() -> (tempfile::TempDir, EventStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(&dir.path().join("events.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn appends_get_positions_versions_and_metadata_and_read_back_in_order() {
    let (_dir, store) = open().await;
    let stream = StreamId::instance("a");
    let meta = Metadata {
        actor: Some("u1".into()),
        request_id: Some("r1".into()),
        correlation_id: Some("c1".into()),
        causation_id: None,
    };
    let first = store
        .append(
            Append::to(stream.clone(), ExpectedVersion::NoStream)
                .scope(Some("u1"), Some("a"))
                .metadata(meta.clone())
                .event(reconnect(1))
                .event(reconnect(2)),
        )
        .await
        .unwrap();
    assert_eq!(
        (first.first_position, first.last_position, first.version),
        (1, 2, 2)
    );
    let second = store
        .append(Append::to(stream.clone(), ExpectedVersion::Exact(2)).event(reconnect(3)))
        .await
        .unwrap();
    assert_eq!((second.first_position, second.version), (3, 3));

    let events = store.read_stream(&stream).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(events[0].event_type, "reconnect_requested");
    assert_eq!(events[0].schema_version, 1);
    assert_eq!(events[0].metadata, meta);
    assert_eq!(events[0].user_id.as_deref(), Some("u1"));
    assert_eq!(events[0].event.clone().unwrap(), reconnect(1));
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), 3, "event ids are unique");
    assert_eq!(store.read_from(1, 10).await.unwrap().len(), 2);
    assert_eq!(store.head(), 3);
}

#[tokio::test]
async fn an_append_with_a_stale_expected_version_is_a_conflict_and_writes_nothing() {
    let (_dir, store) = open().await;
    let stream = StreamId::instance("a");
    store
        .append(Append::to(stream.clone(), ExpectedVersion::NoStream).event(reconnect(1)))
        .await
        .unwrap();
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(5),
    ] {
        let err = store
            .append(Append::to(stream.clone(), expected).event(reconnect(2)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { actual: 1, .. }),
            "{err:?}"
        );
    }
    assert_eq!(store.read_stream(&stream).await.unwrap().len(), 1);
    assert_eq!(store.head(), 1);
}

#[tokio::test]
async fn a_subscription_catches_up_then_follows_live_appends() {
    let (_dir, store) = open().await;
    for n in 0..5 {
        store
            .append(Append::to(StreamId::instance("a"), ExpectedVersion::Any).event(reconnect(n)))
            .await
            .unwrap();
    }
    let mut sub = store.subscribe(2);
    let backlog = sub.next_batch().await.unwrap().unwrap();
    assert_eq!(
        backlog.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let waiting = tokio::spawn(async move { sub.next_batch().await.unwrap().unwrap() });
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "the subscription waits for new events"
    );
    store
        .append(Append::to(StreamId::instance("b"), ExpectedVersion::Any).event(reconnect(9)))
        .await
        .unwrap();
    let live = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].position, 6);
    assert_eq!(live[0].stream_id, "instance-b");
}

#[tokio::test]
async fn the_log_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let store = EventStore::open(&path).await.unwrap();
        store
            .append(
                Append::to(StreamId::instance("a"), ExpectedVersion::NoStream).event(reconnect(1)),
            )
            .await
            .unwrap();
    }
    let store = EventStore::open(&path).await.unwrap();
    assert_eq!(store.head(), 1);
    let err = store
        .append(Append::to(StreamId::instance("a"), ExpectedVersion::NoStream).event(reconnect(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
}

/// Appends from `tasks` concurrent tasks over `streams` streams, each task
/// appending `per_task` events with expected-version retries.
async fn concurrent_appends(tasks: usize, streams: usize, per_task: usize) {
    let (_dir, store) = open().await;
    let store = Arc::new(store);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for n in 0..per_task {
                let stream = StreamId::named(format!("s{}", (t + n) % streams));
                // Optimistic concurrency: read the version, append, retry on conflict.
                loop {
                    let v = store.stream_version(&stream).await.unwrap();
                    match store
                        .append(
                            Append::to(stream.clone(), ExpectedVersion::Exact(v))
                                .event(reconnect(t * 1000 + n)),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let all = store.read_from(0, i64::MAX).await.unwrap();
    assert_eq!(all.len(), tasks * per_task, "nothing lost");
    assert!(
        all.windows(2).all(|w| w[1].position == w[0].position + 1),
        "positions strictly increasing and dense"
    );
    let mut per_stream: HashMap<&str, Vec<i64>> = HashMap::new();
    for e in &all {
        per_stream.entry(&e.stream_id).or_default().push(e.version);
    }
    for (stream, versions) in per_stream {
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, expected, "versions of {stream} are gapless");
    }
    let mut payloads: Vec<String> = all
        .iter()
        .map(|e| e.data["instanceId"].as_str().unwrap().to_string())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(
        payloads.len(),
        tasks * per_task,
        "every append is there exactly once"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]
    #[test]
    fn concurrent_appends_keep_positions_increasing_and_versions_gapless(
        tasks in 1usize..24, streams in 1usize..6, per_task in 1usize..25,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        rt.block_on(concurrent_appends(tasks, streams, per_task));
    }
}

/// Live subscribers get the newest events from memory; what they get must be
/// exactly what the database holds, and a gap left by another process's
/// appends must be filled from the database, not skipped.
#[tokio::test]
async fn live_events_equal_the_stored_ones_even_around_another_writers_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = EventStore::open(&path).await.unwrap();
    let meta = Metadata {
        actor: Some("u1".into()),
        request_id: Some("r1".into()),
        correlation_id: None,
        causation_id: Some("c0".into()),
    };
    let mut sub = store.subscribe(0);
    store
        .append(
            Append::to(StreamId::instance("a"), ExpectedVersion::Any)
                .scope(Some("u1"), Some("a"))
                .metadata(meta.clone())
                .event(reconnect(1))
                .event(reconnect(2)),
        )
        .await
        .unwrap();
    let live: Vec<_> = sub
        .next_batch()
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|e| (**e).clone())
        .collect();
    assert_eq!(live, store.read_from(0, 10).await.unwrap());
    assert_eq!(live[1].metadata, meta);

    // Another process (here: a second store on the same file) appends 3 and 4.
    let other = EventStore::open(&path).await.unwrap();
    for n in 3..=4 {
        other
            .append(Append::to(StreamId::instance("b"), ExpectedVersion::Any).event(reconnect(n)))
            .await
            .unwrap();
    }
    store
        .append(Append::to(StreamId::instance("a"), ExpectedVersion::Any).event(reconnect(5)))
        .await
        .unwrap();
    let next: Vec<_> = tokio::time::timeout(Duration::from_secs(5), sub.next_batch())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .iter()
        .map(|e| (**e).clone())
        .collect();
    assert_eq!(
        next.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(next, store.read_from(2, 10).await.unwrap());
    assert_eq!(next[0].event.clone().unwrap(), reconnect(3));
}
