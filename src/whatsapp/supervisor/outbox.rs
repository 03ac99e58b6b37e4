//! The outbound queue's worker: one task per instance takes the queue's
//! head, asks the [`Pacer`] when it may go, sleeps until then (woken early
//! when the queue or the policy changes), shows "typing…" for a time in
//! proportion to the text, and sends it with the message id fixed when it
//! was queued; the row leaves the queue in the transaction of its
//! `message_sent`. A crash between the network taking the message and that
//! commit leaves it queued: it is sent again, with the same id, after the
//! restart, which the network recognises as the same message.
//!
//! The loop ([`drive`]) runs against a [`QueuePort`], so that its timing is
//! tested with paused time and a recording port; [`LivePort`] is the real
//! one (the queue table, the session's engine, the log).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::pacing::{DAY_MS, Pacer, SendPolicy};
use crate::domain::storage::outbound::{self, QueuedMessage};
use crate::events::{FailReason, MediaKind, SentKind};
use crate::ids::MessageId;
use crate::store::Metadata;
use crate::whatsapp::engine::OutgoingMedia;

use super::driver::Session;
use super::{ConnState, Inner, Outgoing, Sessions};

/// How long a failed send waits before the head is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the worker needs from the world.
#[async_trait]
pub(crate) trait QueuePort: Send + Sync {
    /// The first queued message, if any.
    async fn head(&self) -> anyhow::Result<Option<QueuedMessage>>;
    /// The instance's send policy now.
    fn policy(&self) -> SendPolicy;
    /// Send times of the last day (Unix milliseconds), read once at start.
    async fn history(&self) -> Vec<i64>;
    /// When the current pairing first connected (the warm-up's start).
    async fn paired_at(&self) -> Option<i64>;
    /// Waits until the instance can send; `false` when the queue was
    /// emptied meanwhile (e.g. failed by a logout): look at the head again.
    async fn ready(&self) -> bool;
    /// Shows or stops "typing…" to the message's recipient.
    async fn typing(&self, message: &QueuedMessage, on: bool);
    /// Sends the message and records it; `Ok(false)` when it left the queue
    /// meanwhile (cancelled) and nothing was sent.
    async fn send(&self, message: &QueuedMessage) -> anyhow::Result<bool>;
    /// Resolves when the queue or the policy changed.
    async fn changed(&self);
}

/// Wall time (Unix milliseconds) read off tokio's clock, so that paused
/// time in tests moves it too.
struct Clock {
    wall: i64,
    at: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            wall: chrono::Utc::now().timestamp_millis(),
            at: Instant::now(),
        }
    }
    fn now_ms(&self) -> i64 {
        self.wall + self.at.elapsed().as_millis() as i64
    }
    fn instant_at(&self, ms: i64) -> Instant {
        self.at + Duration::from_millis((ms - self.wall).max(0) as u64)
    }
}

/// The number of characters "typing…" is shown for (texts only).
fn typed_chars(m: &QueuedMessage) -> usize {
    match m.kind {
        SentKind::Text => m.body.chars().count(),
        _ => 0,
    }
}

/// A queued message's media, ready for the engine (`None`: a text).
fn outgoing_media(m: &QueuedMessage) -> Option<OutgoingMedia> {
    let kind = match m.kind {
        // Only texts and the seed's media are ever queued: the other kinds
        // go out at once (they never reach the outbound queue).
        SentKind::Text
        | SentKind::Location
        | SentKind::Contact
        | SentKind::Poll
        | SentKind::Voice
        | SentKind::Sticker => return None,
        SentKind::Image => MediaKind::Image,
        SentKind::Video => MediaKind::Video,
        SentKind::Audio => MediaKind::Audio,
        SentKind::Document => MediaKind::Document,
    };
    Some(OutgoingMedia {
        kind,
        mimetype: m.mimetype.clone().unwrap_or_default(),
        file_name: m.file_name.clone(),
        caption: Some(m.body.clone()).filter(|c| !c.is_empty()),
        data: m.media.clone().unwrap_or_default(),
    })
}

/// Runs the queue until `stop`: each message in order, when pacing allows.
pub(crate) async fn drive<P: QueuePort>(port: &P, stop: &CancellationToken) {
    let clock = Clock::new();
    let mut pacer: Option<Pacer> = None;
    // The pause drawn for the current head (kept when the worker is woken early).
    let mut drawn: Option<(MessageId, f64)> = None;
    loop {
        let head = tokio::select! {
            _ = stop.cancelled() => return,
            head = port.head() => head,
        };
        let head = match head {
            Ok(Some(h)) => h,
            Ok(None) => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = port.changed() => continue,
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reading the outbound queue failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_AFTER) => continue,
                }
            }
        };
        let policy = port.policy();
        if pacer.is_none() {
            pacer = Some(Pacer::with_history(port.history().await));
        }
        let pacer_ref = pacer.as_mut().expect("set above");
        let draw = match &drawn {
            Some((id, d)) if *id == head.message_id => *d,
            _ => {
                let d = rand::random::<f64>();
                drawn = Some((head.message_id.clone(), d));
                d
            }
        };
        let paired_at = if policy.enabled && policy.warmup_days > 0 {
            port.paired_at().await
        } else {
            None
        };
        let at = pacer_ref.next_at(&policy, clock.now_ms(), paired_at, draw);
        if at > clock.now_ms() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = port.changed() => continue,
                _ = tokio::time::sleep_until(clock.instant_at(at)) => {}
            }
        }
        let ready = tokio::select! {
            _ = stop.cancelled() => return,
            ready = port.ready() => ready,
        };
        if !ready {
            continue;
        }
        let typing = policy.typing_ms(typed_chars(&head));
        if typing > 0 {
            port.typing(&head, true).await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(typing)) => {}
            }
        }
        match port.send(&head).await {
            Ok(true) => pacer_ref.record(clock.now_ms()),
            Ok(false) => {}
            Err(e) => {
                if typing > 0 {
                    port.typing(&head, false).await;
                }
                tracing::warn!(message = %head.message_id, error = %format!("{e:#}"),
                    "a queued message could not be sent; trying again");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        }
    }
}

/// The real port: the queue table, the session, its engine and the log.
pub(super) struct LivePort {
    pub(super) session: Arc<Session>,
    pub(super) sessions: Sessions,
}

impl LivePort {
    fn inner(&self) -> &Inner {
        &self.sessions.inner
    }
}

#[async_trait]
impl QueuePort for LivePort {
    async fn head(&self) -> anyhow::Result<Option<QueuedMessage>> {
        Ok(outbound::head(self.inner().store.pool(), &self.session.instance_id).await?)
    }

    fn policy(&self) -> SendPolicy {
        self.session.policy.read().expect("policy lock").clone()
    }

    async fn history(&self) -> Vec<i64> {
        let since = chrono::Utc::now().timestamp_millis() - DAY_MS;
        outbound::sent_since(self.inner().store.pool(), &self.session.instance_id, since)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading recent sends failed; pacing from none");
                Vec::new()
            })
    }

    async fn paired_at(&self) -> Option<i64> {
        outbound::paired_at(self.inner().store.pool(), &self.session.instance_id)
            .await
            .ok()
            .flatten()
    }

    async fn ready(&self) -> bool {
        let mut rx = self.session.status.subscribe();
        let state = match rx
            .wait_for(|s| matches!(s.state, ConnState::Connected | ConnState::LoggedOut))
            .await
        {
            Ok(s) => s.state,
            Err(_) => return false,
        };
        if state == ConnState::LoggedOut {
            let id = &self.session.instance_id;
            if let Err(e) = self
                .sessions
                .fail_queued(id, FailReason::LoggedOut, Metadata::actor("engine"))
                .await
            {
                tracing::warn!(instance = %id, error = %e, "failing the queue after a logout failed");
            }
            // Nothing more is sent until the instance is connected again.
            let _ = rx.wait_for(|s| s.state == ConnState::Connected).await;
            return false;
        }
        true
    }

    async fn typing(&self, message: &QueuedMessage, on: bool) {
        let engine = self.session.engine.read().expect("engine lock").clone();
        if let Some(engine) = engine
            && let Err(e) = engine.typing(&message.to, on).await
        {
            tracing::debug!(error = %format!("{e:#}"), "typing presence failed");
        }
    }

    async fn send(&self, message: &QueuedMessage) -> anyhow::Result<bool> {
        let _held = self.session.queue_lock.lock().await;
        let pool = self.inner().store.pool();
        if outbound::find(pool, &message.instance_id, &message.message_id)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let engine = self
            .session
            .engine
            .read()
            .expect("engine lock")
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the instance is not connected"))?;
        let media = outgoing_media(message);
        let out = match &media {
            Some(m) => Outgoing::Media(m),
            None => Outgoing::Text(&message.body),
        };
        let effect: crate::store::Effect = Box::new(outbound::OutboundChange::Remove(vec![
            message.message_id.clone(),
        ]));
        self.sessions
            .deliver(
                &self.session,
                engine.as_ref(),
                &message.message_id,
                &message.to,
                out,
                message.meta.clone(),
                vec![effect],
            )
            .await?;
        Ok(true)
    }

    async fn changed(&self) {
        self.session.outbox.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::ids::{InstanceId, Jid, UserId};

    /// A queue in memory that records when each message went out and when typing began.
    struct Recording {
        queue: Mutex<VecDeque<QueuedMessage>>,
        policy: SendPolicy,
        sent: Mutex<Vec<(String, Instant)>>,
        typing: Mutex<Vec<(String, Instant)>>,
        done: tokio::sync::Notify,
    }

    fn text(id: &str, body: &str) -> QueuedMessage {
        QueuedMessage {
            seq: 0,
            message_id: MessageId::from_stored(id),
            instance_id: InstanceId::from_stored("i"),
            user_id: UserId::from_stored("u"),
            to: Jid::from_phone("79001234567"),
            kind: SentKind::Text,
            body: body.into(),
            mimetype: None,
            file_name: None,
            media: None,
            meta: Metadata::default(),
            queued_at: 0,
        }
    }

    #[async_trait]
    impl QueuePort for Recording {
        async fn head(&self) -> anyhow::Result<Option<QueuedMessage>> {
            Ok(self.queue.lock().unwrap().front().cloned())
        }
        fn policy(&self) -> SendPolicy {
            self.policy.clone()
        }
        async fn history(&self) -> Vec<i64> {
            Vec::new()
        }
        async fn paired_at(&self) -> Option<i64> {
            None
        }
        async fn ready(&self) -> bool {
            true
        }
        async fn typing(&self, m: &QueuedMessage, on: bool) {
            if on {
                let id = m.message_id.to_string();
                self.typing.lock().unwrap().push((id, Instant::now()));
            }
        }
        async fn send(&self, m: &QueuedMessage) -> anyhow::Result<bool> {
            let mut q = self.queue.lock().unwrap();
            assert_eq!(q.front().map(|h| &h.message_id), Some(&m.message_id));
            q.pop_front();
            let id = m.message_id.to_string();
            self.sent.lock().unwrap().push((id, Instant::now()));
            if q.is_empty() {
                self.done.notify_one();
            }
            Ok(true)
        }
        async fn changed(&self) {
            std::future::pending::<()>().await
        }
    }

    async fn run_burst(policy: SendPolicy, messages: Vec<QueuedMessage>) -> Arc<Recording> {
        let port = Arc::new(Recording {
            queue: Mutex::new(messages.into()),
            policy,
            sent: Mutex::new(Vec::new()),
            typing: Mutex::new(Vec::new()),
            done: tokio::sync::Notify::new(),
        });
        let stop = CancellationToken::new();
        let worker = {
            let (port, stop) = (port.clone(), stop.clone());
            tokio::spawn(async move { drive(port.as_ref(), &stop).await })
        };
        port.done.notified().await;
        stop.cancel();
        worker.await.unwrap();
        port
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_under_a_per_minute_cap_is_spread_in_order_with_the_configured_pauses() {
        let policy = SendPolicy {
            per_minute: 3,
            delay_min_ms: 2_000,
            delay_max_ms: 5_000,
            typing: false,
            warmup_days: 0,
            warmup_first_day: 1,
            ..SendPolicy::cautious()
        };
        let ids: Vec<String> = (0..7).map(|n| format!("m{n}")).collect();
        let start = Instant::now();
        let port = run_burst(policy, ids.iter().map(|id| text(id, "hello")).collect()).await;
        let sent = port.sent.lock().unwrap().clone();
        let order: Vec<&String> = sent.iter().map(|(id, _)| id).collect();
        assert_eq!(order, ids.iter().collect::<Vec<_>>(), "in queue order");
        assert_eq!(sent[0].1, start, "the first goes at once");
        for pair in sent.windows(2) {
            let gap = pair[1].1 - pair[0].1;
            assert!(
                gap >= Duration::from_millis(2_000),
                "a pause of at least delayMinMs: {gap:?}"
            );
        }
        for four in sent.windows(4) {
            assert!(
                four[3].1 - four[0].1 >= Duration::from_secs(60),
                "never more than 3 in a minute"
            );
        }
        // Seven messages at 3 a minute: the 7th waits for the 4th's minute.
        assert!(sent[6].1 - start >= Duration::from_secs(120));
    }

    #[tokio::test(start_paused = true)]
    async fn each_text_is_preceded_by_typing_in_proportion_to_its_length() {
        let policy = SendPolicy {
            per_minute: 60,
            delay_min_ms: 1_000,
            delay_max_ms: 1_000,
            typing: true,
            typing_ms_per_char: 100,
            typing_max_ms: 3_000,
            warmup_days: 0,
            warmup_first_day: 1,
            ..SendPolicy::cautious()
        };
        let port = run_burst(
            policy,
            vec![text("short", "hi"), text("long", &"x".repeat(500))],
        )
        .await;
        let sent = port.sent.lock().unwrap().clone();
        let typing = port.typing.lock().unwrap().clone();
        assert_eq!(typing.len(), 2);
        assert_eq!(sent[0].1 - typing[0].1, Duration::from_millis(200));
        assert_eq!(sent[1].1 - typing[1].1, Duration::from_millis(3_000));
        // The pause runs from the first send to the start of the second's typing.
        assert_eq!(typing[1].1 - sent[0].1, Duration::from_millis(1_000));
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_policy_off_the_queue_drains_at_once_in_order() {
        let start = Instant::now();
        let port = run_burst(
            SendPolicy::default(),
            vec![text("a", "1"), text("b", "2"), text("c", "3")],
        )
        .await;
        let sent = port.sent.lock().unwrap().clone();
        assert_eq!(
            sent.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(sent.iter().all(|(_, at)| *at == start));
        assert!(port.typing.lock().unwrap().is_empty());
    }
}
