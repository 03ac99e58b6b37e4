//! The embedded backbone: a consumer tails the SQLite log from its checkpoint.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Consumer, retry_delay};
use crate::store::EventStore;

/// After a batch smaller than [`GATHER_BELOW`], a consumer waits this long
/// before reading again: under load it then applies fewer, larger batches
/// (each is one transaction), while the first event after a quiet spell is
/// still applied at once.
const GATHER: Duration = Duration::from_millis(1);
const GATHER_BELOW: usize = 256;

/// Catch up from the consumer's checkpoint, then follow live appends.
pub async fn run(store: EventStore, consumer: Arc<dyn Consumer>, shutdown: CancellationToken) {
    let name = consumer.name();
    let mut failures = 0u32;
    'restart: loop {
        let checkpoint = loop {
            match consumer.checkpoint().await {
                Ok(cp) => break cp,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(consumer = name, error = %format!("{e:#}"), "failed to read checkpoint");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry_delay(failures)) => {}
                    }
                }
            }
        };
        let mut sub = store.subscribe(checkpoint);
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => return,
                b = sub.next_batch() => b,
            };
            let events = match batch {
                Ok(Some(events)) => events,
                Ok(None) => return,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(consumer = name, error = %e, "failed to read the log");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry_delay(failures)) => {}
                    }
                    continue 'restart;
                }
            };
            if let Err(e) = consumer.apply(&events).await {
                failures += 1;
                tracing::warn!(consumer = name, error = %format!("{e:#}"), "apply failed; retrying from the checkpoint");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry_delay(failures)) => {}
                }
                continue 'restart;
            }
            failures = 0;
            if events.len() < GATHER_BELOW {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(GATHER) => {}
                }
            }
        }
    }
}
