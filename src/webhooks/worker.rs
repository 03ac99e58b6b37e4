//! Sending: one *lane* per instance with pending deliveries sends them in
//! event order (its head blocks only its own instance), a semaphore of
//! `WA_WEBHOOK_WORKERS` bounds concurrent requests across lanes, and one
//! recorder task group-commits attempt results and their events.
//!
//! Each attempt goes through named steps: [`prepare`] (URL check, secret,
//! headers) → [`send`] → [`decide`] (delivered | retry at | failed | gone) →
//! the recorder (row update, then `webhook_delivered` / `webhook_failed`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use sqlx::SqlitePool;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::deliveries::{self, AttemptRecord, DELIVERED, Delivery, FAILED, PENDING};
use super::signing;
use crate::domain::DomainError;
use crate::domain::api_time_ms;
use crate::domain::instances::InstanceCommand;
use crate::domain::types::OutboundUrl;
use crate::events::{Event, WebhookDelivered, WebhookFailed};
use crate::ids::InstanceId;
use crate::store::{Append, EventStore, Metadata, StreamId};

/// Pending deliveries a lane reads at once.
const BATCH: i64 = 64;
/// Longest automatic wait between two attempts (unless `retryInterval` is longer).
pub const MAX_BACKOFF_MS: u64 = 3_600_000;
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER_MS: u64 = 86_400_000;
/// Most of a response body read (to keep the connection reusable); the rest is dropped.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The wait before retry number `retry` (1 = the first retry) of a round:
/// `retryInterval × 2^(retry−1)`, plus up to 25 % random jitter from the
/// second retry on, capped at one hour (or at `retryInterval` when that is longer).
pub fn backoff_ms(retry_interval: u64, retry: u32, jitter: f64) -> u64 {
    if retry <= 1 {
        return retry_interval;
    }
    let cap = MAX_BACKOFF_MS.max(retry_interval);
    let base = retry_interval
        .saturating_mul(1u64 << (retry - 1).min(30))
        .min(cap);
    let jittered = base as f64 * (1.0 + 0.25 * jitter.clamp(0.0, 1.0));
    (jittered as u64).min(cap)
}

/// Parses `Retry-After`: delta seconds or an HTTP date. Returns milliseconds from `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = at.timestamp_millis().saturating_sub(now_ms).max(0) as u64;
    Some(ms.min(MAX_RETRY_AFTER_MS))
}

/// What one attempt brought back.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// `Retry-After` of a 429/503, in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// What went wrong, when nothing usable came back (never contains the URL or a secret).
    pub error: Option<String>,
    /// Whether retrying cannot help (the URL is refused, the instance is gone).
    pub permanent: bool,
    pub duration_ms: f64,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    /// Try again at this unix-ms time.
    RetryAt(i64),
    /// Out of retries (or permanent): failed.
    Failed,
    /// 410 Gone: fail and switch the instance's webhook off.
    Gone,
}

/// Decides the follow-up of an attempt; `attempts` counts this one.
pub fn decide(
    d: &Delivery,
    attempts: u32,
    r: &AttemptResult,
    now_ms: i64,
    jitter: f64,
) -> Decision {
    match r.status {
        Some(s) if (200..300).contains(&s) => return Decision::Delivered,
        Some(410) => return Decision::Gone,
        _ => {}
    }
    if r.permanent {
        return Decision::Failed;
    }
    let retries_used = attempts.saturating_sub(d.round_base).saturating_sub(1);
    if retries_used >= d.max_retries {
        return Decision::Failed;
    }
    let wait = match (r.status, r.retry_after_ms) {
        (Some(429 | 503), Some(ms)) => ms,
        _ => backoff_ms(d.retry_interval, retries_used + 1, jitter),
    };
    Decision::RetryAt(now_ms + wait as i64)
}

/// A prepared request: target and headers.
struct Prepared {
    url: reqwest::Url,
    headers: Vec<(&'static str, String)>,
}

/// Step 1: checks the URL against the private-address rule, reads the
/// instance's current secret and builds the headers of this attempt.
async fn prepare(shared: &Shared, d: &Delivery) -> Result<Prepared, AttemptResult> {
    let permanent = |error: String| AttemptResult {
        status: None,
        retry_after_ms: None,
        error: Some(error),
        permanent: true,
        duration_ms: 0.0,
    };
    let url = OutboundUrl::parse(&d.url, "webhookUrl", shared.allow_private)
        .map_err(|e| permanent(e.to_string()))?;
    let secret: Option<Option<String>> =
        sqlx::query_scalar("SELECT webhook_secret FROM instances WHERE id = ?")
            .bind(&d.instance_id)
            .fetch_optional(shared.store.pool())
            .await
            .map_err(|_| AttemptResult {
                error: Some("could not read the instance's secret".into()),
                permanent: false,
                ..permanent(String::new())
            })?;
    let Some(secret) = secret else {
        return Err(permanent("the instance was deleted".into()));
    };
    let secret = secret
        .map(|s| {
            shared
                .sealer
                .open(crate::secrets::Purpose::WebhookSecret, &s)
        })
        .transpose()
        .map_err(|e| AttemptResult {
            error: Some(e.to_string()),
            permanent: false,
            ..permanent(String::new())
        })?;
    let secret = secret.as_ref().map(crate::config::Secret::expose);
    let timestamp = Utc::now().timestamp();
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        (signing::WEBHOOK_ID_HEADER, d.webhook_id.clone()),
        (signing::WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string()),
    ];
    headers.extend(signing::signature_headers(
        secret,
        &d.webhook_id,
        timestamp,
        d.body.as_bytes(),
    ));
    Ok(Prepared {
        url: url.url().clone(),
        headers,
    })
}

/// Why a request failed, without the URL (it may carry tokens) or any secret.
fn describe(e: &reqwest::Error) -> String {
    if crate::net::refused_for_address(e) {
        return "refused: webhookUrl resolves to a loopback, private, link-local or otherwise non-public address".into();
    }
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection error".into()
    } else if e.is_redirect() {
        "redirect not followed".into()
    } else {
        "request error".into()
    }
}

/// Step 2: one POST of the exact body bytes.
async fn send(shared: &Shared, d: &Delivery, p: Prepared) -> AttemptResult {
    let started = Instant::now();
    let mut req = shared.client.post(p.url).body(d.body.clone());
    for (name, value) in p.headers {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after_ms = matches!(status, 429 | 503)
                .then(|| resp.headers().get(reqwest::header::RETRY_AFTER))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now_ms()));
            let mut read = 0usize;
            while let Ok(Some(chunk)) = resp.chunk().await {
                read += chunk.len();
                if read > MAX_RESPONSE_BYTES {
                    break;
                }
            }
            AttemptResult {
                status: Some(status),
                retry_after_ms,
                error: (!(200..300).contains(&status)).then(|| format!("HTTP {status}")),
                permanent: false,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            }
        }
        Err(e) => AttemptResult {
            status: None,
            retry_after_ms: None,
            error: Some(describe(&e)),
            permanent: false,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        },
    }
}

/// An attempt's result on its way to the recorder.
struct Outcome {
    record: AttemptRecord,
    event: Event,
    instance_id: String,
    user_id: String,
    causation_id: String,
    ack: oneshot::Sender<()>,
}

/// Wakes one lane.
struct LaneSignal {
    notify: Notify,
    /// New deliveries may be waiting.
    signalled: AtomicBool,
    /// Re-read from the start of the queue (manual retry, cancellation).
    reset: AtomicBool,
}

/// An attempt about to start, on its way to the in-flight marker task.
type Mark = (String, oneshot::Sender<()>);

/// What exists while the dispatcher runs.
struct Running {
    shutdown: CancellationToken,
    tracker: TaskTracker,
    recorder: mpsc::Sender<Outcome>,
    marks: mpsc::Sender<Mark>,
}

/// The error of an attempt that the previous run started and never recorded.
pub const INTERRUPTED: &str = "interrupted: the gateway stopped during the attempt";

/// State shared by the intake, the API, the lanes and the recorder.
pub(crate) struct Shared {
    /// `webhooks.db`: settings as of the log, deliveries, the intake's checkpoint.
    pub db: SqlitePool,
    pub store: EventStore,
    pub client: reqwest::Client,
    pub allow_private: bool,
    pub deliver_from: i64,
    /// Opens the instances' sealed webhook secrets.
    pub sealer: Arc<crate::secrets::Sealer>,
    workers: Arc<Semaphore>,
    /// Serialises the dispatcher's own write transactions (intake,
    /// recorder, cancellations): no SQLite busy waits between them.
    pub write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Runs `webhooks.db`'s WAL checkpoints in the background.
    pub checkpointer: crate::store::Checkpointer,
    lanes: Mutex<HashMap<String, Arc<LaneSignal>>>,
    running: Mutex<Option<Running>>,
}

impl Shared {
    pub fn new(
        db: SqlitePool,
        store: EventStore,
        client: reqwest::Client,
        allow_private: bool,
        workers: usize,
        deliver_from: i64,
        sealer: Arc<crate::secrets::Sealer>,
    ) -> Self {
        Self {
            checkpointer: crate::store::Checkpointer::new(db.clone()),
            db,
            store,
            client,
            allow_private,
            deliver_from,
            sealer,
            workers: Arc::new(Semaphore::new(workers.max(1))),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            lanes: Mutex::new(HashMap::new()),
            running: Mutex::new(None),
        }
    }

    /// Tells an instance's lane that its queue changed, starting the lane
    /// when it is not running. `reset`: re-read the queue from its start.
    pub fn wake(self: &Arc<Self>, instance_id: &str, reset: bool) {
        let running = self.running.lock().expect("running lock");
        let Some(r) = running.as_ref() else {
            return; // not started yet: the start-up scan finds the work
        };
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let lane = lanes.entry(instance_id.to_string()).or_insert_with(|| {
            let signal = Arc::new(LaneSignal {
                notify: Notify::new(),
                signalled: AtomicBool::new(true),
                reset: AtomicBool::new(false),
            });
            r.tracker.spawn(run_lane(
                self.clone(),
                instance_id.to_string(),
                signal.clone(),
                r.shutdown.clone(),
                r.recorder.clone(),
                r.marks.clone(),
            ));
            signal
        });
        lane.signalled.store(true, Ordering::SeqCst);
        if reset {
            lane.reset.store(true, Ordering::SeqCst);
        }
        lane.notify.notify_one();
    }

    /// Runs the dispatcher until `shutdown`: counts the attempts the
    /// previous run left in flight, resumes every pending delivery, then
    /// serves wake-ups. In-flight attempts are abandoned on shutdown (they
    /// stay pending, are counted as failed attempts at the next start and
    /// sent again).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (tx, rx) = mpsc::channel(4096);
        let recorder = tokio::spawn(run_recorder(
            self.db.clone(),
            self.write_lock.clone(),
            self.store.clone(),
            rx,
        ));
        let (marks, marks_rx) = mpsc::channel(4096);
        let marker = tokio::spawn(run_marker(
            self.db.clone(),
            self.write_lock.clone(),
            marks_rx,
        ));
        self.count_interrupted(&tx).await;
        let tracker = TaskTracker::new();
        *self.running.lock().expect("running lock") = Some(Running {
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            recorder: tx,
            marks,
        });
        let mut failures = 0u32;
        loop {
            match deliveries::instances_with_pending(&self.db).await {
                Ok(ids) => {
                    for id in ids {
                        self.wake(&id, false);
                    }
                    break;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "webhooks: failed to read pending deliveries");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(crate::backbone::retry_delay(failures)) => {}
                    }
                }
            }
        }
        shutdown.cancelled().await;
        let running = self.running.lock().expect("running lock").take();
        tracker.close();
        tracker.wait().await;
        self.lanes.lock().expect("lanes lock").clear();
        drop(running);
        let _ = recorder.await;
        let _ = marker.await;
    }

    /// Records every attempt the previous run started and never recorded
    /// as a failed attempt ([`INTERRUPTED`]): the receiver may have seen it.
    /// The delivery is then retried by its own rules.
    async fn count_interrupted(&self, recorder: &mpsc::Sender<Outcome>) {
        let cut = match deliveries::interrupted(&self.db).await {
            Ok(cut) => cut,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: failed to read interrupted attempts");
                return;
            }
        };
        if !cut.is_empty() {
            tracing::warn!(
                attempts = cut.len(),
                "webhooks: counting the attempts the previous run left in flight"
            );
        }
        for (d, _started_at) in cut {
            if d.status != PENDING {
                let _guard = self.write_lock.lock().await;
                if let Ok(mut conn) = self.db.acquire().await {
                    let _ = deliveries::clear_in_flight(&mut conn, &d.id).await;
                }
                continue;
            }
            let result = AttemptResult {
                status: None,
                retry_after_ms: None,
                error: Some(INTERRUPTED.into()),
                permanent: false,
                duration_ms: 0.0,
            };
            let attempts = d.attempts + 1;
            let decision = decide(&d, attempts, &result, now_ms(), rand::rng().random::<f64>());
            let (ack, done) = oneshot::channel();
            if recorder
                .send(outcome(&d, attempts, &result, &decision, ack))
                .await
                .is_err()
            {
                return;
            }
            let _ = done.await;
        }
    }
}

/// Group-commits in-flight marks: one transaction for the attempts about
/// to start, answered once committed (a failure is logged; the attempt
/// goes out unmarked).
async fn run_marker(
    db: SqlitePool,
    write_lock: Arc<tokio::sync::Mutex<()>>,
    mut rx: mpsc::Receiver<Mark>,
) {
    let mut batch: Vec<Mark> = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let committed = {
            let _guard = write_lock.lock().await;
            async {
                let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
                deliveries::mark_in_flight(&mut tx, &ids, now_ms()).await?;
                tx.commit().await
            }
            .await
        };
        if let Err(e) = committed {
            tracing::warn!(error = %e, "webhooks: failed to mark attempts in flight");
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn flush(acks: &mut Vec<oneshot::Receiver<()>>) {
    for ack in acks.drain(..) {
        let _ = ack.await;
    }
}

/// Sleeps until `due` (unix ms). `false` when the lane must re-read its queue.
async fn wait_until(signal: &LaneSignal, shutdown: &CancellationToken, due: i64) -> Option<bool> {
    loop {
        if signal.reset.load(Ordering::SeqCst) {
            return Some(false);
        }
        let left = due - now_ms();
        if left <= 0 {
            return Some(true);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(left as u64)) => {}
            _ = signal.notify.notified() => {}
        }
    }
}

/// One instance's sender: its pending deliveries, in order, one at a time.
async fn run_lane(
    shared: Arc<Shared>,
    instance_id: String,
    signal: Arc<LaneSignal>,
    shutdown: CancellationToken,
    recorder: mpsc::Sender<Outcome>,
    marks: mpsc::Sender<Mark>,
) {
    let mut cursor = 0i64;
    let mut acks: Vec<oneshot::Receiver<()>> = Vec::new();
    let mut failures = 0u32;
    'outer: loop {
        if shutdown.is_cancelled() {
            return;
        }
        signal.signalled.store(false, Ordering::SeqCst);
        if signal.reset.swap(false, Ordering::SeqCst) {
            flush(&mut acks).await;
            cursor = 0;
        }
        let batch = match deliveries::pending_batch(&shared.db, &instance_id, cursor, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                failures += 1;
                tracing::warn!(instance = %instance_id, error = %e, "webhooks: failed to read the queue");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(crate::backbone::retry_delay(failures)) => {}
                }
                continue;
            }
        };
        failures = 0;
        if batch.is_empty() {
            flush(&mut acks).await;
            let mut lanes = shared.lanes.lock().expect("lanes lock");
            if signal.signalled.load(Ordering::SeqCst) || signal.reset.load(Ordering::SeqCst) {
                continue;
            }
            lanes.remove(&instance_id);
            return;
        }
        for mut d in batch {
            loop {
                match wait_until(&signal, &shutdown, d.next_attempt_at.unwrap_or(0)).await {
                    None => return,
                    Some(false) => continue 'outer,
                    Some(true) => {}
                }
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = shared.workers.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                // Marked (committed) before the request can leave: a crash
                // from here on still counts this attempt at the next start.
                let (marked, wait) = oneshot::channel();
                if marks.send((d.id.clone(), marked)).await.is_err() {
                    return;
                }
                let _ = wait.await;
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = async {
                        match prepare(&shared, &d).await {
                            Ok(p) => send(&shared, &d, p).await,
                            Err(r) => r,
                        }
                    } => r,
                };
                drop(permit);
                let attempts = d.attempts + 1;
                let now = now_ms();
                let decision = decide(&d, attempts, &result, now, rand::rng().random::<f64>());
                let (tx, rx) = oneshot::channel();
                let outcome = outcome(&d, attempts, &result, &decision, tx);
                if recorder.send(outcome).await.is_err() {
                    return;
                }
                acks.push(rx);
                if acks.len() >= 1024 {
                    flush(&mut acks).await;
                }
                d.attempts = attempts;
                match decision {
                    Decision::RetryAt(at) => {
                        d.next_attempt_at = Some(at);
                    }
                    Decision::Delivered | Decision::Failed => {
                        cursor = d.seq;
                        break;
                    }
                    Decision::Gone => {
                        flush(&mut acks).await;
                        gone(&shared, &instance_id).await;
                        signal.reset.store(true, Ordering::SeqCst);
                        continue 'outer;
                    }
                }
            }
        }
    }
}

/// 410 Gone: switches the instance's webhook off (`webhook_disabled`) and
/// fails its pending deliveries.
async fn gone(shared: &Shared, instance_id: &str) {
    let id = InstanceId::from_stored(instance_id);
    let disabled = crate::domain::instances::execute(
        &shared.store,
        &id,
        InstanceCommand::DisableWebhook {
            reason: "the endpoint answered 410 Gone".into(),
        },
        Metadata::actor("webhooks"),
    )
    .await;
    match disabled {
        Ok(_) | Err(DomainError::NotFound(_)) => {}
        Err(e) => {
            tracing::warn!(instance = %instance_id, error = %e, "webhooks: failed to disable the webhook")
        }
    }
    let cancelled = async {
        let _guard = shared.write_lock.lock().await;
        let mut conn = shared.db.acquire().await?;
        deliveries::cancel_pending(
            &mut conn,
            instance_id,
            "webhook disabled: the endpoint answered 410 Gone",
            now_ms(),
        )
        .await
    };
    if let Err(e) = cancelled.await {
        tracing::warn!(instance = %instance_id, error = %e, "webhooks: failed to cancel pending deliveries");
    }
}

fn outcome(
    d: &Delivery,
    attempts: u32,
    r: &AttemptResult,
    decision: &Decision,
    ack: oneshot::Sender<()>,
) -> Outcome {
    let next_attempt_at = match decision {
        Decision::RetryAt(at) => Some(*at),
        _ => None,
    };
    let status = match decision {
        Decision::Delivered => DELIVERED,
        Decision::RetryAt(_) => PENDING,
        Decision::Failed | Decision::Gone => FAILED,
    };
    let error = match decision {
        Decision::Gone => Some("HTTP 410: webhook disabled".to_string()),
        _ => r.error.clone(),
    };
    let event: Event = match decision {
        Decision::Delivered => WebhookDelivered {
            instance_id: d.instance_id.as_str().into(),
            delivery_id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            event: d.event.clone(),
            attempt: attempts,
            status_code: r.status.unwrap_or_default(),
            duration_ms: r.duration_ms,
        }
        .into(),
        _ => WebhookFailed {
            instance_id: d.instance_id.as_str().into(),
            delivery_id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            event: d.event.clone(),
            attempt: attempts,
            status_code: r.status,
            error: error.clone().unwrap_or_else(|| "failed".into()),
            duration_ms: r.duration_ms,
            will_retry: next_attempt_at.is_some(),
            next_attempt_at: next_attempt_at.map(api_time_ms),
        }
        .into(),
    };
    Outcome {
        record: AttemptRecord {
            id: d.id.clone(),
            status,
            attempts,
            last_status_code: r.status,
            last_error: if status == DELIVERED { None } else { error },
            next_attempt_at,
            updated_at: now_ms(),
        },
        event,
        instance_id: d.instance_id.clone(),
        user_id: d.user_id.clone(),
        causation_id: d.event_id.clone(),
        ack,
    }
}

/// Group-commits attempt results: one transaction per batch, then
/// the events (the store's writer groups concurrent appends too).
async fn run_recorder(
    db: SqlitePool,
    write_lock: Arc<tokio::sync::Mutex<()>>,
    store: EventStore,
    mut rx: mpsc::Receiver<Outcome>,
) {
    let mut batch: Vec<Outcome> = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut failures = 0u32;
        loop {
            let committed = {
                let _guard = write_lock.lock().await;
                commit_records(&db, &batch).await
            };
            match committed {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "webhooks: failed to record attempts; retrying");
                    if failures > 20 {
                        break;
                    }
                    tokio::time::sleep(crate::backbone::retry_delay(failures)).await;
                }
            }
        }
        let appends = batch.iter().map(|o| {
            store.append(
                Append::fact(StreamId::webhook_attempts(&o.instance_id))
                    .scope(Some(&o.user_id), Some(&o.instance_id))
                    .metadata(Metadata {
                        actor: Some("webhooks".into()),
                        causation_id: Some(o.causation_id.clone()),
                        ..Metadata::default()
                    })
                    .event(o.event.clone()),
            )
        });
        for r in futures::future::join_all(appends).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "webhooks: failed to record an attempt event");
            }
        }
        for o in batch.drain(..) {
            let _ = o.ack.send(());
        }
    }
}

async fn commit_records(db: &SqlitePool, batch: &[Outcome]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    for o in batch {
        deliveries::record_attempt(&mut tx, &o.record).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(max_retries: u32, retry_interval: u64) -> Delivery {
        Delivery {
            seq: 1,
            id: "d".into(),
            instance_id: "i".into(),
            user_id: "u".into(),
            event_id: "e".into(),
            event: "message_received".into(),
            webhook_id: "msg_e".into(),
            url: "http://x".into(),
            body: "{}".into(),
            status: PENDING.into(),
            attempts: 0,
            round_base: 0,
            max_retries,
            retry_interval,
            last_status_code: None,
            last_error: None,
            next_attempt_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn answer(status: Option<u16>) -> AttemptResult {
        AttemptResult {
            status,
            retry_after_ms: None,
            error: None,
            permanent: false,
            duration_ms: 1.0,
        }
    }

    #[test]
    fn backoff_starts_at_the_interval_and_doubles_with_bounded_jitter() {
        assert_eq!(backoff_ms(1000, 1, 0.9), 1000);
        assert_eq!(backoff_ms(1000, 2, 0.0), 2000);
        assert_eq!(backoff_ms(1000, 3, 0.0), 4000);
        assert_eq!(backoff_ms(1000, 3, 1.0), 5000);
        assert_eq!(backoff_ms(1000, 40, 1.0), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(7_200_000, 3, 1.0), 7_200_000);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("2", 0), Some(2000));
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:03 GMT", now),
            Some(3000)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn decisions_follow_status_and_the_retry_budget() {
        let d = delivery(2, 100);
        assert_eq!(
            decide(&d, 1, &answer(Some(204)), 0, 0.0),
            Decision::Delivered
        );
        assert_eq!(decide(&d, 1, &answer(Some(410)), 0, 0.0), Decision::Gone);
        assert_eq!(
            decide(&d, 1, &answer(Some(500)), 0, 0.0),
            Decision::RetryAt(100)
        );
        assert_eq!(decide(&d, 2, &answer(None), 0, 0.0), Decision::RetryAt(200));
        assert_eq!(decide(&d, 3, &answer(Some(302)), 0, 0.0), Decision::Failed);
        let mut limited = answer(Some(429));
        limited.retry_after_ms = Some(5000);
        assert_eq!(decide(&d, 1, &limited, 0, 0.0), Decision::RetryAt(5000));
        let mut refused = answer(None);
        refused.permanent = true;
        assert_eq!(decide(&d, 1, &refused, 0, 0.0), Decision::Failed);
        let mut second_round = delivery(0, 100);
        second_round.round_base = 3;
        assert_eq!(
            decide(&second_round, 4, &answer(Some(500)), 0, 0.0),
            Decision::Failed
        );
    }
}
