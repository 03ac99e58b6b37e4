//! Prometheus metrics at `/metrics`, and the session health the API shows.
//!
//! One [`Metrics`] per gateway, with its own registry (tests run many
//! gateways in one process; a global recorder would mix them). Where the
//! numbers come from:
//! - HTTP: the request middleware (`api::serve`) observes every answer by
//!   route *template* (`/api/instances/{instanceId}`), never the raw path.
//! - Messages, webhook attempts, connection events, stuck messages: the
//!   [`tap`], an in-process reader of the log that starts at the head when
//!   the gateway starts and counts typed events as they are committed (no
//!   checkpoint: Prometheus counters start at zero with the process).
//! - Event store: the writer's own histograms ([`EventStore::instruments`]).
//! - Consumers: each is wrapped in [`Measured`] (apply latency, position);
//!   their lag behind the log head is computed when scraped, like the
//!   relay's, the instances by state, the pending webhook deliveries and the
//!   stuck messages.
//! - Process memory, CPU, file descriptors: the crate's process collector.
//!
//! No metric has a per-instance label: instances are unbounded (every user
//! may create many), so per-instance detail is in the API
//! (`GET /api/instances/{instanceId}` `health`). Every label has a fixed,
//! small set of values (route templates, status codes, states, reason
//! codes, consumer names).

pub mod guard;
pub mod health;
pub mod stuck;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio_util::sync::CancellationToken;

use crate::backbone::{Backbone, Consumer};
use crate::events::{DeliveryStatus, Event};
use crate::store::{EventStore, SharedEvent};

pub use health::HealthBook;

/// Latency buckets (seconds) of HTTP answers and webhook attempts.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Apply latency buckets (seconds) of consumers.
const APPLY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Every instrument of one gateway, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    instances: IntGaugeVec,
    messages_sent: IntCounter,
    messages_received: IntCounter,
    messages_failed: IntCounterVec,
    messages_stuck: IntGauge,
    messages_stuck_found: IntCounter,
    webhook_attempts: IntCounterVec,
    webhook_duration: HistogramVec,
    webhooks_pending: IntGauge,
    connections_opened: IntCounter,
    connections_closed: IntCounterVec,
    connect_failures: IntCounter,
    log_head: IntGauge,
    consumer_lag_events: IntGaugeVec,
    consumer_lag_seconds: GaugeVec,
    consumer_apply: HistogramVec,
    relay_lag_events: IntGauge,
    relay_lag_seconds: Gauge,
    /// The consumers wrapped by [`Metrics::measured`], for their lag.
    consumers: Mutex<Vec<Arc<Progress>>>,
    /// Per-instance health, fed by the [`tap`].
    pub health: HealthBook,
    /// The bound address of `WA_METRICS_LISTEN`, once bound.
    listen_addr: OnceLock<SocketAddr>,
}

/// Builds and registers one instrument; the names are fixed, so a failure is a bug.
fn reg<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// A registry with every instrument, the event store's histograms and the
    /// process collector.
    pub fn new(store: &EventStore) -> Arc<Self> {
        let r = Registry::new();
        let hist = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("a valid histogram")
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter")
        };
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).expect("a valid counter");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("a valid gauge");
        let m = Self {
            http_requests: reg(
                &r,
                counter_vec(
                    "wa_http_requests_total",
                    "HTTP requests answered, by method, route template and status code.",
                    &["method", "route", "status"],
                ),
            ),
            http_duration: reg(
                &r,
                hist(
                    "wa_http_request_duration_seconds",
                    "Time to answer an HTTP request, by method, route template and status code.",
                    LATENCY_BUCKETS,
                    &["method", "route", "status"],
                ),
            ),
            instances: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("wa_instances", "Instances by connection state."),
                    &["state"],
                )
                .expect("a valid gauge"),
            ),
            messages_sent: reg(
                &r,
                counter("wa_messages_sent_total", "Messages sent (`message_sent`)."),
            ),
            messages_received: reg(
                &r,
                counter(
                    "wa_messages_received_total",
                    "Messages received (`message_received`).",
                ),
            ),
            messages_failed: reg(
                &r,
                counter_vec(
                    "wa_messages_failed_total",
                    "Sent or queued messages that failed (`message_status` failed), by reason \
                     (`nack`, `no_server_ack`, `cancelled`, `logged_out`, `instance_deleted`, `other`).",
                    &["reason"],
                ),
            ),
            messages_stuck: reg(
                &r,
                gauge(
                    "wa_messages_stuck",
                    "Sent messages still without a delivered receipt after WA_STUCK_AFTER_SECS, now.",
                ),
            ),
            messages_stuck_found: reg(
                &r,
                counter(
                    "wa_messages_stuck_total",
                    "Messages found stuck (`message_stuck` events).",
                ),
            ),
            webhook_attempts: reg(
                &r,
                counter_vec(
                    "wa_webhook_attempts_total",
                    "Webhook delivery attempts by outcome: `delivered`, `retrying` (failed, \
                     another attempt planned), `failed` (failed for good).",
                    &["outcome"],
                ),
            ),
            webhook_duration: reg(
                &r,
                hist(
                    "wa_webhook_attempt_duration_seconds",
                    "Duration of one webhook attempt, by outcome.",
                    LATENCY_BUCKETS,
                    &["outcome"],
                ),
            ),
            webhooks_pending: reg(
                &r,
                gauge(
                    "wa_webhook_deliveries_pending",
                    "Webhook deliveries waiting to be (re)sent.",
                ),
            ),
            connections_opened: reg(
                &r,
                counter(
                    "wa_connections_opened_total",
                    "WhatsApp connections opened (`connection_opened`).",
                ),
            ),
            connections_closed: reg(
                &r,
                counter_vec(
                    "wa_connections_closed_total",
                    "WhatsApp connections closed (`connection_closed`), by reason code.",
                    &["reason"],
                ),
            ),
            connect_failures: reg(
                &r,
                counter(
                    "wa_connect_failures_total",
                    "Failed connect attempts (`connect_failed`).",
                ),
            ),
            log_head: reg(
                &r,
                gauge(
                    "wa_event_log_head_position",
                    "Global position of the last event in the log.",
                ),
            ),
            consumer_lag_events: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "wa_consumer_lag_events",
                        "Events in the log that a consumer has not applied yet.",
                    ),
                    &["consumer"],
                )
                .expect("a valid gauge"),
            ),
            consumer_lag_seconds: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "wa_consumer_lag_seconds",
                        "Age of the oldest event a consumer has not applied yet (0 when caught up).",
                    ),
                    &["consumer"],
                )
                .expect("a valid gauge"),
            ),
            consumer_apply: reg(
                &r,
                hist(
                    "wa_consumer_apply_duration_seconds",
                    "Time a consumer took to apply one batch of events.",
                    APPLY_BUCKETS,
                    &["consumer"],
                ),
            ),
            relay_lag_events: reg(
                &r,
                gauge(
                    "wa_relay_lag_events",
                    "Events in the log not yet acknowledged by JetStream (NATS backbone only).",
                ),
            ),
            relay_lag_seconds: reg(
                &r,
                Gauge::new(
                    "wa_relay_lag_seconds",
                    "Age of the oldest event not yet published to JetStream (0 when caught up).",
                )
                .expect("a valid gauge"),
            ),
            registry: r,
            consumers: Mutex::new(Vec::new()),
            health: HealthBook::default(),
            listen_addr: OnceLock::new(),
        };
        for instrument in store.instruments() {
            m.registry
                .register(instrument)
                .expect("the store's metric names are unique");
        }
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process metrics register once");
        Arc::new(m)
    }

    /// Counts one answered HTTP request.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, took: Duration) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.http_requests.with_label_values(&labels).inc();
        self.http_duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
    }

    /// Wraps a consumer so that its apply latency and position are measured.
    pub fn measured(self: &Arc<Self>, inner: Arc<dyn Consumer>) -> Arc<dyn Consumer> {
        let progress = Arc::new(Progress {
            name: inner.name(),
            position: std::sync::atomic::AtomicI64::new(0),
            apply: self.consumer_apply.with_label_values(&[inner.name()]),
        });
        self.consumers
            .lock()
            .expect("consumers lock")
            .push(progress.clone());
        Arc::new(Measured { inner, progress })
    }

    /// The address `WA_METRICS_LISTEN` is bound to (once the gateway is built).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr.get().copied()
    }

    /// Remembers the bound metrics address.
    pub(crate) fn set_listen_addr(&self, addr: SocketAddr) {
        let _ = self.listen_addr.set(addr);
    }

    /// Counts one committed event (the [`tap`]) and feeds the health book.
    pub fn observe_event(&self, e: &crate::store::RecordedEvent) {
        let Some(event) = &e.event else { return };
        match event {
            Event::MessageSent(_) => self.messages_sent.inc(),
            Event::MessageReceived(_) => self.messages_received.inc(),
            Event::MessageStatus(s) if s.status == DeliveryStatus::Failed => {
                let reason = match s.reason.as_deref() {
                    Some(r) if r.starts_with("nack") => "nack",
                    Some(
                        r @ ("no_server_ack" | "cancelled" | "logged_out" | "instance_deleted"),
                    ) => r,
                    _ => "other",
                };
                self.messages_failed.with_label_values(&[reason]).inc();
            }
            Event::WebhookDelivered(d) => {
                self.webhook_attempts
                    .with_label_values(&["delivered"])
                    .inc();
                self.webhook_duration
                    .with_label_values(&["delivered"])
                    .observe(d.duration_ms / 1000.0);
            }
            Event::WebhookFailed(f) => {
                let outcome = if f.will_retry { "retrying" } else { "failed" };
                self.webhook_attempts.with_label_values(&[outcome]).inc();
                self.webhook_duration
                    .with_label_values(&[outcome])
                    .observe(f.duration_ms / 1000.0);
            }
            Event::ConnectionOpened(_) => self.connections_opened.inc(),
            Event::ConnectionClosed(c) => self
                .connections_closed
                .with_label_values(&[c.reason.code.as_str()])
                .inc(),
            Event::ConnectFailed(_) => self.connect_failures.inc(),
            Event::MessageStuck(_) => self.messages_stuck_found.inc(),
            _ => {}
        }
        self.health.observe(e);
    }

    /// Sets the gauges that are read when scraped, then renders the text format.
    pub async fn render(&self, state: &crate::AppState) -> String {
        self.instances.reset();
        for (st, n) in state.sessions.state_counts() {
            self.instances
                .with_label_values(&[st.as_str()])
                .set(n as i64);
        }
        let store = &state.store;
        let head = store.head();
        self.log_head.set(head);
        let now = chrono::Utc::now().timestamp_millis();
        let progress: Vec<Arc<Progress>> = self.consumers.lock().expect("consumers lock").clone();
        for p in progress {
            let at = p.position.load(std::sync::atomic::Ordering::Relaxed);
            let (events, secs) = lag(store, head, at, now).await;
            self.consumer_lag_events
                .with_label_values(&[p.name])
                .set(events);
            self.consumer_lag_seconds
                .with_label_values(&[p.name])
                .set(secs);
        }
        if let Backbone::Nats(nats, _) = &state.backbone {
            let published = *nats.published().borrow();
            let (events, secs) = lag(store, head, published, now).await;
            self.relay_lag_events.set(events);
            self.relay_lag_seconds.set(secs);
        }
        match crate::webhooks::deliveries::pending_count(state.webhooks.db()).await {
            Ok(n) => self.webhooks_pending.set(n),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: failed to count pending webhook deliveries")
            }
        }
        let cutoff = now - state.config.stuck_after.as_millis() as i64;
        match crate::projections::stuck::count(&state.views, cutoff).await {
            Ok(n) => self.messages_stuck.set(n),
            Err(e) => tracing::warn!(error = %e, "metrics: failed to count stuck messages"),
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics: failed to encode");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// How far position `at` is behind `head`: events, and the age in seconds of
/// the first event not yet taken (0 when caught up).
async fn lag(store: &EventStore, head: i64, at: i64, now_ms: i64) -> (i64, f64) {
    let events = (head - at).max(0);
    if events == 0 {
        return (0, 0.0);
    }
    let secs = match store.recorded_ms_at(at + 1).await {
        Ok(Some(ms)) => ((now_ms - ms).max(0) as f64) / 1000.0,
        _ => 0.0,
    };
    (events, secs)
}

/// A consumer's progress as the metrics see it.
struct Progress {
    name: &'static str,
    /// The last position applied (or the checkpoint it started from).
    position: std::sync::atomic::AtomicI64,
    apply: Histogram,
}

/// A consumer that measures its inner consumer's applies.
struct Measured {
    inner: Arc<dyn Consumer>,
    progress: Arc<Progress>,
}

#[async_trait]
impl Consumer for Measured {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn checkpoint(&self) -> anyhow::Result<i64> {
        let at = self.inner.checkpoint().await?;
        self.progress
            .position
            .store(at, std::sync::atomic::Ordering::Relaxed);
        Ok(at)
    }

    async fn apply(&self, events: &[SharedEvent]) -> anyhow::Result<()> {
        let started = Instant::now();
        self.inner.apply(events).await?;
        self.progress.apply.observe(started.elapsed().as_secs_f64());
        if let Some(last) = events.last() {
            self.progress
                .position
                .fetch_max(last.position, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Counts every event committed from `after` on until `shutdown` (see the module docs).
pub async fn tap(
    store: EventStore,
    metrics: Arc<Metrics>,
    after: i64,
    shutdown: CancellationToken,
) {
    let mut sub = store.subscribe(after);
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            b = sub.next_batch() => b,
        };
        match batch {
            Ok(Some(events)) => {
                for e in &events {
                    metrics.observe_event(e);
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: failed to read the log; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The `wa_*` names in `text` (histogram series reduced to their metric).
    fn names(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(at) = text[i..].find("wa_") {
            let start = i + at;
            let boundary = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .map_or(text.len(), |n| start + n);
            if boundary {
                let name = &text[start..end];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                out.insert(base.to_string());
            }
            i = end.max(start + 3);
        }
        out
    }

    #[test]
    fn the_grafana_dashboard_uses_only_metrics_the_gateway_defines() {
        let defined: BTreeSet<String> = names(include_str!("mod.rs"))
            .union(&names(include_str!("../store/mod.rs")))
            .cloned()
            .collect();
        let used = names(include_str!("grafana-dashboard.json"));
        assert!(
            used.len() >= 15,
            "the dashboard shows the metrics: {used:?}"
        );
        let unknown: Vec<&String> = used.difference(&defined).collect();
        assert!(
            unknown.is_empty(),
            "the dashboard uses undefined metrics: {unknown:?}"
        );
        for needed in [
            "wa_http_requests_total",
            "wa_consumer_lag_seconds",
            "wa_relay_lag_events",
            "wa_event_store_commit_duration_seconds",
            "wa_messages_stuck",
        ] {
            assert!(used.contains(needed), "the dashboard shows {needed}");
        }
    }
}
