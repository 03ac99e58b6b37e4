//! The outbox relay: copies the SQLite log into the JetStream stream, in
//! order, each event exactly once.
//!
//! - Reads the log after the last published position and publishes each
//!   event on its subject with `Nats-Msg-Id` = event id (JetStream drops a
//!   re-publish within the duplicate window) and the expected-last chain: the
//!   first publish after a (re)start carries `Nats-Expected-Last-Sequence`,
//!   every next one `Nats-Expected-Last-Msg-Id` = the previous event id, so a
//!   lost publish makes the following ones fail instead of leaving a gap.
//! - Awaits the acks per window (at most [`MAX_WINDOW`] un-awaited: the
//!   JetStream context blocks at 5,000), then stores its checkpoint in
//!   `gateway_state` and announces the position ([`NatsBackbone::published`]).
//! - On start and after any failure it resynchronises from the stream's last
//!   message (its `Wa-Position` header), not from its own checkpoint: what
//!   the stream holds is what was published, whatever was acked or lost.
//!   NATS being down never blocks appends; the relay retries with backoff
//!   and catches up when NATS returns.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::backbone::nats::{HEADER_MSG_ID, NatsBackbone, header_position};
use crate::backbone::retry_delay;
use crate::store::EventStore;

/// The `gateway_state` key of the relay's checkpoint (last acked position).
pub const CHECKPOINT_KEY: &str = "nats_relay_position";
/// Publishes whose acks are awaited together, by default.
pub const DEFAULT_WINDOW: usize = 1000;
/// Most time between two checkpoint writes while the relay publishes, and
/// the idle time after which it writes the last one.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// The largest window allowed (below the context's 5,000 pending acks).
pub const MAX_WINDOW: usize = 4000;

/// Where the relay resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    /// The last log position in the stream (0 = none).
    pub position: i64,
    /// The stream's last sequence (0 = the stream never had a message).
    pub last_sequence: u64,
}

/// The outbox relay from the SQLite log to JetStream.
pub struct Relay {
    store: EventStore,
    nats: NatsBackbone,
    window: usize,
}

impl Relay {
    /// A relay with the default window.
    pub fn new(store: EventStore, nats: NatsBackbone) -> Self {
        Self {
            store,
            nats,
            window: DEFAULT_WINDOW,
        }
    }

    /// Sets how many publishes are in flight before their acks are awaited (1..=[`MAX_WINDOW`]).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.clamp(1, MAX_WINDOW);
        self
    }

    /// Relays until `shutdown`; every failure leads to a resync after a backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            match self.relay(&shutdown, &mut failures).await {
                Ok(()) => return,
                Err(e) => {
                    failures += 1;
                    let delay = retry_delay(failures).min(Duration::from_secs(2));
                    tracing::warn!(error = %format!("{e:#}"), "NATS relay interrupted; resynchronising in {delay:?}");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Finds the last position in the stream (see the module doc).
    pub async fn resync(&self) -> anyhow::Result<Resync> {
        let mut stream = self.nats.ensure_stream().await?;
        let state = stream.info().await?.state.clone();
        if state.last_sequence == 0 {
            // A new stream: it gets the whole log.
            return Ok(Resync {
                position: 0,
                last_sequence: 0,
            });
        }
        if state.messages == 0 {
            // Every message aged out of the stream: only our checkpoint knows.
            return Ok(Resync {
                position: load_checkpoint(self.store.pool()).await?,
                last_sequence: state.last_sequence,
            });
        }
        let last = stream
            .get_raw_message(state.last_sequence)
            .await
            .context("Failed to read the stream's last message")?;
        let Some(position) = header_position(&last.headers) else {
            bail!(
                "the last message of stream {} (sequence {}, subject {}) was not published by the relay: \
                 only the gateway may publish on {}.>",
                self.nats.stream_name(),
                state.last_sequence,
                last.subject,
                self.nats.subject_prefix()
            );
        };
        if position > self.store.head() {
            tracing::error!(
                stream_position = position,
                log_head = self.store.head(),
                "the stream is ahead of the event log (another data dir published to this stream?); \
                 events up to the stream's position are not relayed"
            );
        }
        Ok(Resync {
            position,
            last_sequence: state.last_sequence,
        })
    }

    async fn relay(&self, shutdown: &CancellationToken, failures: &mut u32) -> anyhow::Result<()> {
        let resync = self.resync().await?;
        let mut position = resync.position;
        save_checkpoint(self.store.pool(), position).await?;
        self.nats.set_published(position);
        tracing::info!(position, "NATS relay resynchronised from the stream");
        let js = self.nats.jetstream();
        // The chain: the first publish names the stream's last sequence, the next ones the previous event id.
        let mut last_sequence = Some(resync.last_sequence).filter(|s| *s > 0);
        let mut last_id: Option<String> = None;
        let mut sub = self.store.subscribe(position);
        let mut saved_at = Instant::now();
        let mut saved = position;
        loop {
            // A checkpoint behind what was acked is written once the relay
            // has been idle for CHECKPOINT_EVERY (or at a stop), never in
            // the path of the next publish.
            let unsaved = saved < position;
            let idle = async {
                if unsaved {
                    tokio::time::sleep(CHECKPOINT_EVERY).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let batch = tokio::select! {
                _ = shutdown.cancelled() => {
                    if unsaved {
                        save_checkpoint(self.store.pool(), position).await?;
                    }
                    return Ok(());
                }
                b = sub.next_batch() => b?,
                _ = idle => {
                    save_checkpoint(self.store.pool(), position).await?;
                    saved = position;
                    saved_at = Instant::now();
                    continue;
                }
            };
            let Some(events) = batch else { return Ok(()) };
            for window in events.chunks(self.window) {
                let mut acks = Vec::with_capacity(window.len());
                for event in window {
                    let mut msg = self.nats.message_for(event)?;
                    if let Some(id) = &last_id {
                        msg = msg.expected_last_message_id(id);
                    } else if let Some(seq) = last_sequence.take() {
                        msg = msg.expected_last_sequence(seq);
                    }
                    let subject = self.nats.subject_for(event);
                    let ack = js.send_publish(subject, msg).await.with_context(|| {
                        format!("Failed to publish event at position {}", event.position)
                    })?;
                    acks.push(ack);
                    last_id = Some(event.event_id.clone());
                }
                for (event, ack) in window.iter().zip(acks) {
                    let ack = ack.await.with_context(|| {
                        format!(
                            "JetStream did not take event at position {} ({HEADER_MSG_ID} {})",
                            event.position, event.event_id
                        )
                    })?;
                    if ack.duplicate {
                        tracing::debug!(
                            position = event.position,
                            "already in the stream (duplicate)"
                        );
                    }
                }
                position = window.last().map_or(position, |e| e.position);
                // The checkpoint is a hint (the stream is the truth): while
                // publishing, save it at most every CHECKPOINT_EVERY. Saving
                // it after every caught-up window took the log's write lock
                // between two of the writer's commits, at each small batch.
                if saved_at.elapsed() >= CHECKPOINT_EVERY {
                    save_checkpoint(self.store.pool(), position).await?;
                    saved = position;
                    saved_at = Instant::now();
                }
                self.nats.set_published(position);
                *failures = 0;
            }
        }
    }
}

/// How long a stopping gateway waits for the relay to publish the events
/// appended before (and during) the stop, e.g. the shutdown's
/// `connection_closed`. Past it (NATS down or slow) the gateway stops anyway;
/// the rest is published at the next start.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits (up to `within`) until JetStream has acknowledged every event in
/// the log now; returns whether it did. Called at shutdown, once nothing
/// appends any more, while the relay still runs.
pub async fn drain(nats: &NatsBackbone, store: &EventStore, within: Duration) -> bool {
    let head = store.head();
    let mut published = nats.published();
    let drained = tokio::time::timeout(within, published.wait_for(|p| *p >= head))
        .await
        .is_ok_and(|r| r.is_ok());
    match drained {
        true => {
            tracing::info!(
                position = head,
                "NATS relay drained: every event is on the stream"
            );
            true
        }
        false => {
            tracing::warn!(
                head,
                published = *published.borrow(),
                "NATS relay not drained within {within:?}; the rest is published at the next start"
            );
            false
        }
    }
}

/// The relay's checkpoint in `gateway_state` (0 when none).
pub async fn load_checkpoint(pool: &SqlitePool) -> anyhow::Result<i64> {
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM gateway_state WHERE key = ?")
        .bind(CHECKPOINT_KEY)
        .fetch_optional(pool)
        .await?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

async fn save_checkpoint(pool: &SqlitePool, position: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO gateway_state (key, value) VALUES (?, ?) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(CHECKPOINT_KEY)
    .bind(position.to_string())
    .execute(pool)
    .await
    .context("Failed to save the relay checkpoint")?;
    Ok(())
}
