//! The embedded backbone: a consumer tails the SQLite log from its checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Consumer, retry_delay};
use crate::store::EventStore;

/// After a batch smaller than [`GATHER_BELOW`] (busy: [`BUSY_GATHER_BELOW`]), a consumer waits a moment
/// before reading again: under load it then applies fewer, larger batches
/// (each is one transaction), while the first event after a quiet spell is
/// still applied at once. The moment is [`GATHER`], or [`BUSY_GATHER`] while
/// the log grows by at least [`BUSY_RATE`] events a millisecond (measured
/// over [`RATE_WINDOW`]): a batch of a busy log spread over many instances
/// dirties about one index page per instance per transaction whatever its
/// size, so fewer, larger batches write far fewer pages per event. A log
/// growing more slowly keeps the 1 ms wait and its apply latency.
const GATHER: Duration = Duration::from_millis(1);
const BUSY_GATHER: Duration = Duration::from_millis(10);
const GATHER_BELOW: usize = 256;
/// While busy, only a batch as large as a read returns ([`crate::store::READ_BATCH`])
/// says the consumer is behind and reads again at once.
const BUSY_GATHER_BELOW: usize = crate::store::READ_BATCH as usize;
const BUSY_RATE: f64 = 15.0;
const RATE_WINDOW: Duration = Duration::from_millis(50);

/// How long a consumer waits before its next read, from the sizes of the
/// batches it read and when.
#[derive(Debug)]
struct Pace {
    window_start: Instant,
    events: usize,
    busy: bool,
}

impl Pace {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            events: 0,
            busy: false,
        }
    }

    /// The wait after a batch of `events` read at `now` (`None`: read again at once).
    fn after_batch(&mut self, events: usize, now: Instant) -> Option<Duration> {
        self.events += events;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            let per_ms = self.events as f64 / (elapsed.as_secs_f64() * 1000.0);
            self.busy = per_ms >= BUSY_RATE;
            self.window_start = now;
            self.events = 0;
        }
        match (self.busy, events) {
            (true, n) if n < BUSY_GATHER_BELOW => Some(BUSY_GATHER),
            (false, n) if n < GATHER_BELOW => Some(GATHER),
            _ => None,
        }
    }
}

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
        let mut pace = Pace::new(Instant::now());
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
            if let Some(wait) = pace.after_batch(events.len(), Instant::now()) {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_quiet_log_waits_the_short_moment() {
        // Given a consumer reading 5 events every millisecond (5,000 events/s)
        let start = Instant::now();
        let mut pace = Pace::new(start);
        // When it has read for longer than the rate window
        let mut wait = None;
        for n in 1..=120 {
            wait = pace.after_batch(5, start + ms(n));
        }
        // Then it still waits only 1 ms between reads
        assert_eq!(wait, Some(GATHER));
    }

    #[test]
    fn a_busy_log_gathers_longer_until_it_calms_down() {
        // Given a log growing by 30 events a millisecond
        let start = Instant::now();
        let mut pace = Pace::new(start);
        let mut t = 0;
        let mut wait = None;
        while t < 60 {
            t += 2;
            wait = pace.after_batch(60, start + ms(t));
        }
        // Then the consumer waits the longer moment
        assert_eq!(wait, Some(BUSY_GATHER));
        // When the rate falls to 2 events a millisecond for a window
        let calm_from = t;
        while t < calm_from + 60 {
            t += 10;
            wait = pace.after_batch(20, start + ms(t));
        }
        // Then it is back to the short moment
        assert_eq!(wait, Some(GATHER));
    }

    #[test]
    fn a_busy_log_waits_after_a_batch_a_quiet_one_would_read_again_at_once_after() {
        // Given a busy log
        let start = Instant::now();
        let mut pace = Pace::new(start);
        for t in 1..=60 {
            pace.after_batch(30, start + ms(t));
        }
        // When a batch larger than a quiet log's GATHER_BELOW comes
        let wait = pace.after_batch(GATHER_BELOW + 44, start + ms(61));
        // Then the consumer still gathers: only a full read means it is behind
        assert_eq!(wait, Some(BUSY_GATHER));
    }

    #[test]
    fn a_full_batch_reads_again_at_once() {
        let start = Instant::now();
        let mut pace = Pace::new(start);
        assert_eq!(pace.after_batch(GATHER_BELOW, start + ms(1)), None);
        assert_eq!(pace.after_batch(BUSY_GATHER_BELOW, start + ms(100)), None);
    }

    #[test]
    fn a_burst_shorter_than_the_window_does_not_make_the_log_busy() {
        // Given bursts of 50 events every 10 ms (5,000 events/s on average),
        // read in two halves a millisecond apart
        let start = Instant::now();
        let mut pace = Pace::new(start);
        let mut wait = None;
        for burst in 0..20u64 {
            pace.after_batch(25, start + ms(burst * 10));
            wait = pace.after_batch(25, start + ms(burst * 10 + 1));
        }
        // Then the average rate decides: the short moment
        assert_eq!(wait, Some(GATHER));
    }
}
