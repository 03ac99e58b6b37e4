//! The supervisor's decisions as a pure state machine: [`State::step`] takes
//! one [`Input`] and a [`Ctx`] (the time, a jitter draw, the settings) and
//! says which log events to record and which [`Action`]s to run. It does no
//! I/O, reads no clock and draws no random number; the driver does all that
//! and feeds the results back in as inputs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::events::{
    ConnectionClosed, ConnectionOpened, ContactsUpdated, Event, LoggedOut, MediaInfo,
    MessageReceived, MessageStatus, PairCodeReceived, QrReceived, ReasonCode, SessionReason,
};
use crate::ids::{InstanceId, Jid, MessageId};
use crate::whatsapp::engine::{EngineEvent, IncomingMessage, KeptMedia, Receipt};

use super::{ConnState, SessionStatus, SupervisorConfig};

/// What a step may depend on besides the state and the input, supplied by the driver.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The current time.
    pub now: Instant,
    /// A random draw in `[0, 1)`, scaled into the reconnect delay's jitter.
    pub jitter: f64,
    /// The supervisor settings.
    pub config: &'a SupervisorConfig,
}

/// Something that happened, fed to the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The reconnect timer fired.
    RetryDue,
    /// The engine session started (after [`Action::StartEngine`]).
    EngineStarted,
    /// The engine session did not start (after [`Action::StartEngine`]); what went wrong.
    EngineStartFailed(String),
    /// The running engine session reported something.
    Engine(EngineEvent),
    /// The running engine session's event stream ended without a word.
    EngineGone,
    /// The API asked for a fresh connect.
    Reconnect,
    /// The API asked for a logout.
    Logout,
    /// The engine's own logout finished (after [`Action::EngineLogout`]).
    LogoutDone,
    /// The instance was deleted.
    Delete,
    /// The gateway is stopping.
    Shutdown,
    /// A send of this message id went to the engine.
    SendBegun(MessageId),
    /// The message's `message_sent` is in the log.
    SendRecorded(MessageId),
    /// The send failed, or its `message_sent` could not be recorded.
    SendFailed(MessageId),
    /// The driver was woken to record the receipts of recorded sends.
    FlushReleased,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start an engine session; answer with [`Input::EngineStarted`] or [`Input::EngineStartFailed`].
    StartEngine,
    /// Stop the running engine session (keeping the pairing) and drop its events.
    StopEngine,
    /// Unlink the device through the running engine session; answer with [`Input::LogoutDone`].
    EngineLogout,
    /// Delete the instance's session store.
    RemoveStore,
    /// Feed [`Input::RetryDue`] at this time (replacing any earlier schedule).
    ScheduleRetry(Instant),
    /// Drop the scheduled [`Input::RetryDue`].
    CancelRetry,
    /// Wake the supervisor task so that it feeds [`Input::FlushReleased`].
    Wake,
    /// Keep a message's media handle (sealed, outside the log) for the media endpoint.
    KeepMedia {
        message_id: MessageId,
        media: KeptMedia,
    },
    /// Log this.
    Note(Note),
    /// End the supervisor task.
    Exit,
}

/// A decision worth a warning in the log (the driver writes it).
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// A connect attempt failed; the next one is in `retry_in`.
    ConnectFailed {
        error: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// Too many drops in the window: no reconnect until asked.
    CrashLoop { drops: usize },
}

/// What one step decided: the events to record (in order) and the actions to run (in order).
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Log events to append, in this order.
    pub events: Vec<Event>,
    /// Actions to run, in this order.
    pub actions: Vec<Action>,
}

/// Receipts held back for one message being sent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Held {
    /// Its `message_sent` is in the log: these go out next, before any later receipt.
    released: bool,
    /// In arrival order.
    receipts: Vec<(Receipt, Jid)>,
}

/// Everything the supervisor of one instance knows.
#[derive(Debug, Clone)]
pub struct State {
    /// Whose session this is (every event names it).
    instance_id: InstanceId,
    /// What the API shows: connection state, QR code, phone.
    shown: SessionStatus,
    /// Consecutive failed connects or drops since the last successful connect.
    failures: u32,
    /// When the recent drops happened, oldest first (the crash-loop guard).
    drops: VecDeque<Instant>,
    /// QR codes shown since the last connect or reconnect.
    qr_count: u32,
    /// When the next connect attempt is due.
    retry_at: Option<Instant>,
    /// Whether an engine session is running.
    engine_running: bool,
    /// Receipts of messages whose `message_sent` is not yet recorded (or released, not yet flushed).
    held: HashMap<MessageId, Held>,
    /// Released messages in release order, for the next flush.
    released: Vec<MessageId>,
    /// Why a message failed, until its `failed` status is emitted.
    failures_of: HashMap<MessageId, String>,
}

impl State {
    /// A session that has not started yet: connecting, first attempt due `now`.
    pub fn new(instance_id: InstanceId, now: Instant) -> Self {
        Self {
            instance_id,
            shown: SessionStatus {
                state: ConnState::Connecting,
                qr: None,
                phone: None,
                pair_code: None,
            },
            failures: 0,
            drops: VecDeque::new(),
            qr_count: 0,
            retry_at: Some(now),
            engine_running: false,
            held: HashMap::new(),
            released: Vec::new(),
            failures_of: HashMap::new(),
        }
    }

    /// What the API shows of the session.
    pub fn status(&self) -> &SessionStatus {
        &self.shown
    }

    /// When the next connect attempt is due, if one is scheduled.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Decides what one input means: updates the state and returns what to record and do.
    pub fn step(&mut self, input: Input, ctx: &Ctx) -> Step {
        let mut step = Step::default();
        match input {
            Input::RetryDue => self.retry_due(&mut step),
            Input::EngineStarted => self.engine_running = true,
            Input::EngineStartFailed(error) => self.start_failed(error, ctx, &mut step),
            Input::Engine(event) => self.engine_event(event, ctx, &mut step),
            Input::EngineGone => {
                self.closed(ReasonCode::ConnectionLost.into(), false, ctx, &mut step)
            }
            Input::Reconnect => self.reconnect(ctx, &mut step),
            Input::Logout if self.engine_running => step.actions.push(Action::EngineLogout),
            Input::Logout | Input::LogoutDone => {
                self.logged_out(ReasonCode::Logout.into(), &mut step)
            }
            Input::Delete => {
                self.stop_engine(&mut step);
                step.actions.push(Action::RemoveStore);
                step.actions.push(Action::Exit);
            }
            Input::Shutdown => self.shutdown(&mut step),
            Input::SendBegun(id) => {
                self.held.insert(id, Held::default());
            }
            Input::SendRecorded(id) => self.send_recorded(id, &mut step),
            Input::SendFailed(id) => {
                self.held.remove(&id);
            }
            Input::FlushReleased => self.flush(&mut step),
        }
        step
    }

    /// The timer fired: start an engine session (a stale timer does nothing).
    fn retry_due(&mut self, step: &mut Step) {
        if self.retry_at.take().is_none() {
            return;
        }
        self.shown.state = ConnState::Connecting;
        step.actions.push(Action::StartEngine);
    }

    /// A connect attempt failed: try again after the backoff.
    fn start_failed(&mut self, error: String, ctx: &Ctx, step: &mut Step) {
        self.failures += 1;
        let wait = backoff(ctx, self.failures);
        step.actions.push(Action::Note(Note::ConnectFailed {
            error,
            attempt: self.failures,
            retry_in: wait,
        }));
        self.schedule_retry(ctx.now + wait, step);
    }

    /// One event of the running engine session.
    fn engine_event(&mut self, event: EngineEvent, ctx: &Ctx, step: &mut Step) {
        match event {
            EngineEvent::Qr { code } => self.qr(code, ctx, step),
            EngineEvent::Connected { phone } => {
                self.qr_count = 0;
                self.failures = 0;
                self.shown.state = ConnState::Connected;
                self.shown.qr = None;
                self.shown.pair_code = None;
                self.shown.phone = phone.clone();
                step.events.push(
                    ConnectionOpened {
                        instance_id: self.instance_id.clone(),
                        phone,
                    }
                    .into(),
                );
            }
            EngineEvent::Closed { reason, terminal } => self.closed(reason, terminal, ctx, step),
            EngineEvent::LoggedOut { reason } => self.logged_out(reason, step),
            EngineEvent::Message(m) => step.events.push(self.message_received(*m).into()),
            EngineEvent::Receipt {
                message_ids,
                receipt,
                chat,
            } => {
                for id in message_ids {
                    self.receipt(id, receipt, &chat, step);
                }
            }
            EngineEvent::SendFailed {
                message_id,
                chat,
                reason,
            } => {
                self.failures_of.insert(message_id.clone(), reason);
                self.receipt(message_id, Receipt::Failed, &chat, step);
            }
            // The driver takes these before the machine (health and the log only).
            EngineEvent::Alive | EngineEvent::ConnectFailed { .. } => {}
            EngineEvent::Contacts(contacts) => step.events.push(
                ContactsUpdated {
                    instance_id: self.instance_id.clone(),
                    contacts,
                }
                .into(),
            ),
            EngineEvent::MediaKept { message_id, media } => {
                step.actions.push(Action::KeepMedia { message_id, media })
            }
            EngineEvent::PairCode { code, phone } => self.pair_code(code, phone, step),
            EngineEvent::Group(notice) => step.events.push(notice.into_event(&self.instance_id)),
            EngineEvent::Happened(h) => step.events.push(h.into_event(self.instance_id.clone())),
        }
    }

    /// A pairing code to show; a session that is no longer pairing ignores it.
    fn pair_code(&mut self, code: String, phone: String, step: &mut Step) {
        if !matches!(self.shown.state, ConnState::Qr | ConnState::Connecting) {
            return;
        }
        self.shown.pair_code = Some(code.clone());
        step.events.push(
            PairCodeReceived {
                instance_id: self.instance_id.clone(),
                pair_code: code,
                phone,
            }
            .into(),
        );
    }

    /// A QR code to show, unless the cap of unscanned codes is reached.
    fn qr(&mut self, code: String, ctx: &Ctx, step: &mut Step) {
        self.qr_count += 1;
        // A pairing code being typed in keeps the session waiting.
        if self.qr_count > ctx.config.qr_max_codes && self.shown.pair_code.is_none() {
            self.stop_engine(step);
            self.shown.state = ConnState::Disconnected;
            self.shown.qr = None;
            self.shown.pair_code = None;
            step.events
                .push(self.closed_event(ReasonCode::QrTimeout.into(), false));
            return;
        }
        self.shown.state = ConnState::Qr;
        self.shown.qr = Some(code.clone());
        step.events.push(
            QrReceived {
                instance_id: self.instance_id.clone(),
                qr_code: code,
            }
            .into(),
        );
    }

    /// The connection ended: reconnect after the backoff, unless it was
    /// terminal or the drops add up to a crash loop.
    fn closed(&mut self, reason: SessionReason, terminal: bool, ctx: &Ctx, step: &mut Step) {
        self.stop_engine(step);
        let now = ctx.now;
        self.drops.push_back(now);
        while self
            .drops
            .front()
            .is_some_and(|t| now.duration_since(*t) > ctx.config.crash_loop_window)
        {
            self.drops.pop_front();
        }
        let crash_loop = self.drops.len() >= ctx.config.crash_loop_max;
        self.shown.qr = None;
        self.shown.pair_code = None;
        if terminal || crash_loop {
            let reason = if crash_loop && !terminal {
                step.actions.push(Action::Note(Note::CrashLoop {
                    drops: self.drops.len(),
                }));
                ReasonCode::CrashLoop.into()
            } else {
                reason
            };
            self.shown.state = ConnState::Disconnected;
            step.events.push(self.closed_event(reason, false));
        } else {
            self.failures += 1;
            self.schedule_retry(now + backoff(ctx, self.failures), step);
            self.shown.state = ConnState::Connecting;
            step.events.push(self.closed_event(reason, true));
        }
    }

    /// The device is unlinked (by the phone, or by our logout): forget the
    /// pairing, stop retrying, say `logged_out` and then `connection_closed`.
    fn logged_out(&mut self, reason: SessionReason, step: &mut Step) {
        self.stop_engine(step);
        step.actions.push(Action::RemoveStore);
        self.cancel_retry(step);
        self.shown = SessionStatus {
            state: ConnState::LoggedOut,
            qr: None,
            phone: None,
            pair_code: None,
        };
        step.events.push(
            LoggedOut {
                instance_id: self.instance_id.clone(),
                reason,
            }
            .into(),
        );
        step.events
            .push(self.closed_event(ReasonCode::Logout.into(), false));
    }

    /// A fresh start: counters reset, first attempt at once.
    fn reconnect(&mut self, ctx: &Ctx, step: &mut Step) {
        // An open connection ends in the log before the next one opens.
        if self.shown.state == ConnState::Connected {
            step.events
                .push(self.closed_event(ReasonCode::Reconnect.into(), true));
        }
        self.stop_engine(step);
        self.qr_count = 0;
        self.failures = 0;
        self.drops.clear();
        self.schedule_retry(ctx.now, step);
        self.shown.state = ConnState::Connecting;
        self.shown.qr = None;
        self.shown.pair_code = None;
    }

    /// The gateway stops: a connected session says it will be back.
    fn shutdown(&mut self, step: &mut Step) {
        let was_connected = self.shown.state == ConnState::Connected;
        self.stop_engine(step);
        self.shown.state = ConnState::Disconnected;
        self.shown.qr = None;
        self.shown.pair_code = None;
        if was_connected {
            step.events
                .push(self.closed_event(ReasonCode::Shutdown.into(), true));
        }
        step.actions.push(Action::Exit);
    }

    /// A receipt for one of our messages: held while its `message_sent` is
    /// not recorded; after the held ones once it is; else at once.
    fn receipt(&mut self, id: MessageId, receipt: Receipt, chat: &Jid, step: &mut Step) {
        match self.held.get_mut(&id) {
            Some(held) if !held.released => held.receipts.push((receipt, chat.clone())),
            Some(_) => {
                if let Some(held) = self.held.remove(&id) {
                    self.released.retain(|r| *r != id);
                    for (r, c) in held.receipts {
                        step.events.push(self.status_event(&id, r, c));
                    }
                }
                step.events
                    .push(self.status_event(&id, receipt, chat.clone()));
            }
            None => step
                .events
                .push(self.status_event(&id, receipt, chat.clone())),
        }
    }

    /// The message is in the log: its held receipts may follow (or, with none held, it is forgotten).
    fn send_recorded(&mut self, id: MessageId, step: &mut Step) {
        match self.held.get_mut(&id) {
            Some(held) if !held.receipts.is_empty() => {
                held.released = true;
                self.released.push(id);
                step.actions.push(Action::Wake);
            }
            _ => {
                self.held.remove(&id);
            }
        }
    }

    /// The held receipts of every released message, message by message in
    /// release order, each message's in arrival order.
    fn flush(&mut self, step: &mut Step) {
        for id in std::mem::take(&mut self.released) {
            if let Some(held) = self.held.remove(&id) {
                for (r, c) in held.receipts {
                    step.events.push(self.status_event(&id, r, c));
                }
            }
        }
    }

    /// Asks for the running engine session to stop (nothing when none runs).
    fn stop_engine(&mut self, step: &mut Step) {
        if self.engine_running {
            self.engine_running = false;
            step.actions.push(Action::StopEngine);
        }
    }

    /// Sets the next attempt and tells the driver.
    fn schedule_retry(&mut self, at: Instant, step: &mut Step) {
        self.retry_at = Some(at);
        step.actions.push(Action::ScheduleRetry(at));
    }

    /// Drops the next attempt, if one was set, and tells the driver.
    fn cancel_retry(&mut self, step: &mut Step) {
        if self.retry_at.take().is_some() {
            step.actions.push(Action::CancelRetry);
        }
    }

    /// A `connection_closed` event of this instance.
    fn closed_event(&self, reason: SessionReason, will_reconnect: bool) -> Event {
        ConnectionClosed {
            instance_id: self.instance_id.clone(),
            reason,
            will_reconnect,
        }
        .into()
    }

    /// A `message_status` event for one of our messages.
    fn status_event(&mut self, message_id: &MessageId, receipt: Receipt, chat: Jid) -> Event {
        let reason = match receipt {
            Receipt::Failed => self.failures_of.remove(message_id),
            _ => None,
        };
        MessageStatus {
            instance_id: self.instance_id.clone(),
            message_id: message_id.clone(),
            status: receipt,
            from: chat,
            from_me: true,
            reason,
        }
        .into()
    }

    /// The `message_received` event of an incoming message.
    fn message_received(&self, m: IncomingMessage) -> MessageReceived {
        MessageReceived {
            instance_id: self.instance_id.clone(),
            message_id: m.message_id,
            participant: m.chat.is_group().then(|| m.from.clone()),
            from: m.from,
            from_lid: m.from_lid,
            chat: m.chat,
            body: m.body,
            message_type: m.message_type,
            timestamp: m.timestamp,
            has_media: m.media.is_some(),
            push_name: m.push_name,
            media: m.media.map(|md| MediaInfo {
                kind: md.kind,
                mimetype: md.mimetype,
                file_name: md.file_name,
                size: md.size,
            }),
            extras: m.extras,
        }
    }
}

/// The wait before attempt `failures + 1`: the base delay doubled per
/// consecutive failure, capped, plus up to 20% jitter so that many instances
/// do not reconnect in step.
pub fn backoff(ctx: &Ctx, failures: u32) -> Duration {
    let exp = ctx
        .config
        .reconnect_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(ctx.config.reconnect_max);
    capped + capped.mul_f64(ctx.jitter * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Contact, MediaKind};
    use crate::whatsapp::engine::IncomingMedia;

    const SEC: Duration = Duration::from_secs(1);

    /// A supervisor under test: its state, small settings, and a clock and jitter the test sets.
    struct Given {
        state: State,
        config: SupervisorConfig,
        now: Instant,
        jitter: f64,
    }

    impl Given {
        /// A session just created: nothing started yet.
        fn a_new_session() -> Self {
            let now = Instant::now();
            Self {
                state: State::new(instance(), now),
                config: SupervisorConfig {
                    qr_max_codes: 3,
                    reconnect_base: SEC,
                    reconnect_max: 8 * SEC,
                    crash_loop_max: 3,
                    crash_loop_window: 60 * SEC,
                    send_wait: 3 * SEC,
                },
                now,
                jitter: 0.0,
            }
        }

        /// An engine session running, not yet paired or connected.
        fn a_started_engine() -> Self {
            let mut g = Self::a_new_session();
            g.when(Input::RetryDue);
            g.when(Input::EngineStarted);
            g
        }

        /// A connected session with a phone number.
        fn a_connected_session() -> Self {
            let mut g = Self::a_started_engine();
            g.engine(connected());
            g
        }

        /// A session whose connection dropped and that waits for its retry.
        fn a_session_waiting_to_reconnect() -> Self {
            let mut g = Self::a_connected_session();
            g.engine(dropped());
            g
        }

        /// Feeds one input at the current time.
        fn when(&mut self, input: Input) -> Step {
            let ctx = Ctx {
                now: self.now,
                jitter: self.jitter,
                config: &self.config,
            };
            self.state.step(input, &ctx)
        }

        /// Feeds one engine event.
        fn engine(&mut self, event: EngineEvent) -> Step {
            self.when(Input::Engine(event))
        }

        /// The retry fires, the engine starts and connects again.
        fn reconnected(&mut self) {
            assert_eq!(
                self.when(Input::RetryDue).actions,
                vec![Action::StartEngine]
            );
            self.when(Input::EngineStarted);
            self.engine(connected());
        }

        /// Moves the clock on.
        fn later(&mut self, d: Duration) {
            self.now += d;
        }

        /// The connection state shown.
        fn shown(&self) -> ConnState {
            self.state.status().state
        }
    }

    /// The instance under test.
    fn instance() -> InstanceId {
        InstanceId::from_stored("inst-1")
    }

    /// A message id.
    fn mid(raw: &str) -> MessageId {
        MessageId::from_stored(raw)
    }

    /// The remote party of every receipt.
    fn chat() -> Jid {
        Jid::from_phone("79001234567")
    }

    /// The engine says it is connected, with a phone number.
    fn connected() -> EngineEvent {
        EngineEvent::Connected {
            phone: Some("79005550000".into()),
        }
    }

    /// The engine shows a QR code.
    fn qr(code: &str) -> EngineEvent {
        EngineEvent::Qr { code: code.into() }
    }

    /// The network drops the connection (not terminal).
    fn dropped() -> EngineEvent {
        EngineEvent::Closed {
            reason: SessionReason::with_detail(ReasonCode::ConnectionLost, "stream error"),
            terminal: false,
        }
    }

    /// A receipt for some of our messages.
    fn receipt(ids: &[&str], r: Receipt) -> EngineEvent {
        EngineEvent::Receipt {
            message_ids: ids.iter().map(|i| mid(i)).collect(),
            receipt: r,
            chat: chat(),
        }
    }

    /// The `connection_closed` event expected.
    fn closed(reason: impl Into<SessionReason>, will_reconnect: bool) -> Event {
        ConnectionClosed {
            instance_id: instance(),
            reason: reason.into(),
            will_reconnect,
        }
        .into()
    }

    /// The `message_status` event expected.
    fn status(id: &str, r: Receipt) -> Event {
        MessageStatus {
            instance_id: instance(),
            message_id: mid(id),
            status: r,
            from: chat(),
            from_me: true,
            reason: None,
        }
        .into()
    }

    /// The actions expected after a failed connect attempt.
    fn failed_start(attempt: u32, retry_in: Duration, at: Instant) -> Vec<Action> {
        vec![
            Action::Note(Note::ConnectFailed {
                error: "refused".into(),
                attempt,
                retry_in,
            }),
            Action::ScheduleRetry(at),
        ]
    }

    // Starting.

    #[test]
    fn a_new_session_is_connecting_and_due_to_start_at_once() {
        let g = Given::a_new_session();
        assert_eq!(
            *g.state.status(),
            SessionStatus {
                state: ConnState::Connecting,
                qr: None,
                phone: None,
                pair_code: None
            }
        );
        assert_eq!(g.state.retry_at(), Some(g.now));
    }

    #[test]
    fn a_due_retry_starts_the_engine_and_says_connecting() {
        let mut g = Given::a_new_session();
        let step = g.when(Input::RetryDue);
        assert_eq!(step.actions, vec![Action::StartEngine]);
        assert!(step.events.is_empty());
        assert_eq!(g.shown(), ConnState::Connecting);
        assert_eq!(g.state.retry_at(), None);
    }

    #[test]
    fn a_retry_that_is_no_longer_scheduled_does_nothing() {
        let mut g = Given::a_connected_session();
        assert_eq!(g.when(Input::RetryDue), Step::default());
        assert_eq!(g.shown(), ConnState::Connected);
    }

    #[test]
    fn a_started_engine_records_nothing_and_is_stopped_later() {
        let mut g = Given::a_new_session();
        g.when(Input::RetryDue);
        assert_eq!(g.when(Input::EngineStarted), Step::default());
        assert_eq!(g.shown(), ConnState::Connecting);
        assert!(
            g.when(Input::Shutdown)
                .actions
                .contains(&Action::StopEngine)
        );
    }

    #[test]
    fn a_failed_start_retries_after_the_base_delay_and_notes_why() {
        let mut g = Given::a_new_session();
        g.when(Input::RetryDue);
        let step = g.when(Input::EngineStartFailed("refused".into()));
        assert_eq!(step.actions, failed_start(1, SEC, g.now + SEC));
        assert!(step.events.is_empty());
        assert_eq!(g.shown(), ConnState::Connecting);
        assert_eq!(g.state.retry_at(), Some(g.now + SEC));
    }

    #[test]
    fn consecutive_failed_starts_double_the_delay_up_to_the_cap() {
        let mut g = Given::a_new_session();
        for (attempt, secs) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (6, 8)] {
            assert_eq!(g.when(Input::RetryDue).actions, vec![Action::StartEngine]);
            let step = g.when(Input::EngineStartFailed("refused".into()));
            let wait = secs * SEC;
            assert_eq!(step.actions, failed_start(attempt, wait, g.now + wait));
            g.later(wait);
        }
    }

    #[test]
    fn a_long_run_of_failures_never_overflows_the_delay() {
        let g = Given::a_new_session();
        let ctx = Ctx {
            now: g.now,
            jitter: 0.0,
            config: &g.config,
        };
        assert_eq!(backoff(&ctx, 1_000), 8 * SEC);
        assert_eq!(backoff(&ctx, u32::MAX), 8 * SEC);
    }

    #[test]
    fn jitter_adds_at_most_a_fifth_of_the_delay() {
        let g = Given::a_new_session();
        // The delay after four failures, with a given jitter draw.
        let at = |jitter| {
            backoff(
                &Ctx {
                    now: g.now,
                    jitter,
                    config: &g.config,
                },
                4,
            )
        };
        assert_eq!(at(0.0), 8 * SEC);
        assert_eq!(at(0.5), Duration::from_millis(8_800));
        assert!(at(0.999_999) < Duration::from_millis(9_600));
    }

    // QR codes.

    #[test]
    fn a_qr_code_is_shown_and_recorded() {
        let mut g = Given::a_started_engine();
        let step = g.engine(qr("code-1"));
        assert_eq!(
            step.events,
            vec![
                QrReceived {
                    instance_id: instance(),
                    qr_code: "code-1".into()
                }
                .into()
            ]
        );
        assert!(step.actions.is_empty());
        assert_eq!(g.shown(), ConnState::Qr);
        assert_eq!(g.state.status().qr.as_deref(), Some("code-1"));
    }

    #[test]
    fn a_new_qr_code_replaces_the_one_shown() {
        let mut g = Given::a_started_engine();
        g.engine(qr("code-1"));
        g.engine(qr("code-2"));
        assert_eq!(g.state.status().qr.as_deref(), Some("code-2"));
    }

    #[test]
    fn the_last_qr_within_the_cap_is_still_shown() {
        let mut g = Given::a_started_engine();
        for n in 1..=3 {
            let step = g.engine(qr(&format!("code-{n}")));
            assert_eq!(step.events.len(), 1);
            assert!(step.actions.is_empty());
        }
        assert_eq!(g.shown(), ConnState::Qr);
    }

    #[test]
    fn a_qr_beyond_the_cap_stops_asking_and_says_qr_timeout() {
        let mut g = Given::a_started_engine();
        for n in 1..=3 {
            g.engine(qr(&format!("code-{n}")));
        }
        let step = g.engine(qr("code-4"));
        assert_eq!(step.actions, vec![Action::StopEngine]);
        assert_eq!(step.events, vec![closed(ReasonCode::QrTimeout, false)]);
        assert_eq!(g.shown(), ConnState::Disconnected);
        assert_eq!(g.state.status().qr, None);
        assert_eq!(g.state.retry_at(), None);
    }

    // Pairing by code.

    /// The engine shows a pairing code for a phone.
    fn pair_code(code: &str) -> EngineEvent {
        EngineEvent::PairCode {
            code: code.into(),
            phone: "79001112233".into(),
        }
    }

    #[test]
    fn a_pairing_code_is_shown_recorded_and_cleared_on_connect() {
        let mut g = Given::a_started_engine();
        g.engine(qr("code-1"));
        let step = g.engine(pair_code("ABCD-EFGH"));
        assert_eq!(
            step.events,
            vec![
                PairCodeReceived {
                    instance_id: instance(),
                    pair_code: "ABCD-EFGH".into(),
                    phone: "79001112233".into(),
                }
                .into()
            ]
        );
        assert_eq!(g.state.status().pair_code.as_deref(), Some("ABCD-EFGH"));
        assert_eq!(g.shown(), ConnState::Qr);
        g.engine(connected());
        assert_eq!(g.state.status().pair_code, None);
        // A code after the session connected is stale: nothing recorded.
        assert_eq!(g.engine(pair_code("WXYZ-2345")).events, vec![]);
    }

    #[test]
    fn qr_codes_beyond_the_cap_do_not_end_a_session_whose_code_is_being_typed() {
        let mut g = Given::a_started_engine();
        g.engine(qr("code-1"));
        g.engine(pair_code("ABCD-EFGH"));
        for n in 2..=6 {
            let step = g.engine(qr(&format!("code-{n}")));
            assert!(!step.actions.contains(&Action::StopEngine), "{n}");
        }
        assert_eq!(g.shown(), ConnState::Qr);
    }

    #[test]
    fn kept_media_becomes_an_action_not_an_event() {
        let mut g = Given::a_connected_session();
        let media = KeptMedia {
            kind: MediaKind::Image,
            mimetype: "image/jpeg".into(),
            file_name: None,
            size: 10,
            locator: "secret handle".into(),
        };
        let step = g.engine(EngineEvent::MediaKept {
            message_id: mid("m1"),
            media: media.clone(),
        });
        assert_eq!(step.events, vec![]);
        assert_eq!(
            step.actions,
            vec![Action::KeepMedia {
                message_id: mid("m1"),
                media
            }]
        );
    }

    // Connected.

    #[test]
    fn connected_shows_the_phone_clears_the_qr_and_says_connection_opened() {
        let mut g = Given::a_started_engine();
        g.engine(qr("code-1"));
        let step = g.engine(connected());
        assert_eq!(
            step.events,
            vec![
                ConnectionOpened {
                    instance_id: instance(),
                    phone: Some("79005550000".into())
                }
                .into()
            ]
        );
        assert!(step.actions.is_empty());
        assert_eq!(
            *g.state.status(),
            SessionStatus {
                state: ConnState::Connected,
                qr: None,
                phone: Some("79005550000".into()),
                pair_code: None
            }
        );
    }

    #[test]
    fn connecting_resets_the_qr_count() {
        let mut g = Given::a_started_engine();
        for n in 1..=3 {
            g.engine(qr(&format!("code-{n}")));
        }
        g.engine(connected());
        for n in 4..=6 {
            let step = g.engine(qr(&format!("code-{n}")));
            assert_eq!(step.events.len(), 1, "QR {n} is shown");
            assert!(step.actions.is_empty());
        }
    }

    #[test]
    fn connecting_resets_the_failures_so_the_next_drop_waits_the_base_delay() {
        let mut g = Given::a_new_session();
        for _ in 0..3 {
            g.when(Input::RetryDue);
            g.when(Input::EngineStartFailed("refused".into()));
        }
        g.reconnected();
        let step = g.engine(dropped());
        assert!(step.actions.contains(&Action::ScheduleRetry(g.now + SEC)));
    }

    // Closed connections.

    #[test]
    fn a_dropped_connection_schedules_a_reconnect_and_says_will_reconnect() {
        let mut g = Given::a_connected_session();
        let step = g.engine(dropped());
        assert_eq!(
            step.actions,
            vec![Action::StopEngine, Action::ScheduleRetry(g.now + SEC)]
        );
        assert_eq!(
            step.events,
            vec![closed(
                SessionReason::with_detail(ReasonCode::ConnectionLost, "stream error"),
                true
            )]
        );
        assert_eq!(g.shown(), ConnState::Connecting);
        assert_eq!(g.state.retry_at(), Some(g.now + SEC));
    }

    #[test]
    fn a_dropped_connection_keeps_the_phone_shown() {
        let mut g = Given::a_connected_session();
        g.engine(dropped());
        assert_eq!(g.state.status().phone.as_deref(), Some("79005550000"));
    }

    #[test]
    fn drops_without_a_connect_in_between_grow_the_delay() {
        let mut g = Given::a_connected_session();
        g.engine(dropped());
        g.later(SEC);
        g.when(Input::RetryDue);
        g.when(Input::EngineStarted);
        let step = g.engine(dropped());
        assert!(
            step.actions
                .contains(&Action::ScheduleRetry(g.now + 2 * SEC))
        );
    }

    #[test]
    fn the_engine_stream_ending_counts_as_a_lost_connection() {
        let mut g = Given::a_connected_session();
        let step = g.when(Input::EngineGone);
        assert_eq!(
            step.actions,
            vec![Action::StopEngine, Action::ScheduleRetry(g.now + SEC)]
        );
        assert_eq!(step.events, vec![closed(ReasonCode::ConnectionLost, true)]);
    }

    #[test]
    fn a_terminal_close_stops_without_a_retry() {
        let mut g = Given::a_connected_session();
        let step = g.engine(EngineEvent::Closed {
            reason: ReasonCode::Replaced.into(),
            terminal: true,
        });
        assert_eq!(step.actions, vec![Action::StopEngine]);
        assert_eq!(step.events, vec![closed(ReasonCode::Replaced, false)]);
        assert_eq!(g.shown(), ConnState::Disconnected);
        assert_eq!(g.state.retry_at(), None);
    }

    #[test]
    fn crash_loop_max_drops_inside_the_window_stop_reconnecting_with_crash_loop() {
        let mut g = Given::a_connected_session();
        for _ in 0..2 {
            let step = g.engine(dropped());
            assert_eq!(step.events.len(), 1);
            assert!(matches!(step.actions[1], Action::ScheduleRetry(_)));
            g.later(10 * SEC);
            g.reconnected();
        }
        let step = g.engine(dropped());
        assert_eq!(
            step.actions,
            vec![
                Action::StopEngine,
                Action::Note(Note::CrashLoop { drops: 3 })
            ]
        );
        assert_eq!(step.events, vec![closed(ReasonCode::CrashLoop, false)]);
        assert_eq!(g.shown(), ConnState::Disconnected);
        assert_eq!(g.state.retry_at(), None);
    }

    #[test]
    fn drops_outside_the_window_do_not_count_toward_a_crash_loop() {
        let mut g = Given::a_connected_session();
        for _ in 0..5 {
            let step = g.engine(dropped());
            assert!(
                matches!(
                    step.actions[..],
                    [Action::StopEngine, Action::ScheduleRetry(_)]
                ),
                "{:?}",
                step.actions
            );
            g.later(31 * SEC);
            g.reconnected();
        }
    }

    #[test]
    fn a_drop_exactly_one_window_old_still_counts() {
        let mut g = Given::a_connected_session();
        g.engine(dropped());
        g.later(30 * SEC);
        g.reconnected();
        g.engine(dropped());
        g.later(30 * SEC);
        g.reconnected();
        let step = g.engine(dropped());
        assert_eq!(step.events, vec![closed(ReasonCode::CrashLoop, false)]);
    }

    #[test]
    fn a_terminal_close_that_completes_a_crash_loop_keeps_its_own_reason() {
        let mut g = Given::a_connected_session();
        for _ in 0..2 {
            g.engine(dropped());
            g.reconnected();
        }
        let step = g.engine(EngineEvent::Closed {
            reason: ReasonCode::TemporaryBan.into(),
            terminal: true,
        });
        assert_eq!(step.actions, vec![Action::StopEngine]);
        assert_eq!(step.events, vec![closed(ReasonCode::TemporaryBan, false)]);
    }

    // Logging out.

    #[test]
    fn an_engine_logout_removes_the_store_and_says_logged_out_then_closed() {
        let mut g = Given::a_connected_session();
        let step = g.engine(EngineEvent::LoggedOut {
            reason: ReasonCode::LoggedOut.into(),
        });
        assert_eq!(step.actions, vec![Action::StopEngine, Action::RemoveStore]);
        assert_eq!(
            step.events,
            vec![
                LoggedOut {
                    instance_id: instance(),
                    reason: ReasonCode::LoggedOut.into()
                }
                .into(),
                closed(ReasonCode::Logout, false),
            ]
        );
        assert_eq!(
            *g.state.status(),
            SessionStatus {
                state: ConnState::LoggedOut,
                qr: None,
                phone: None,
                pair_code: None
            }
        );
        assert_eq!(g.state.retry_at(), None);
    }

    #[test]
    fn a_logout_command_first_logs_the_engine_out_and_changes_nothing_yet() {
        let mut g = Given::a_connected_session();
        let step = g.when(Input::Logout);
        assert_eq!(step.actions, vec![Action::EngineLogout]);
        assert!(step.events.is_empty());
        assert_eq!(g.shown(), ConnState::Connected);
    }

    #[test]
    fn a_finished_engine_logout_stops_removes_the_store_and_says_logout() {
        let mut g = Given::a_connected_session();
        g.when(Input::Logout);
        let step = g.when(Input::LogoutDone);
        assert_eq!(step.actions, vec![Action::StopEngine, Action::RemoveStore]);
        assert_eq!(
            step.events,
            vec![
                LoggedOut {
                    instance_id: instance(),
                    reason: ReasonCode::Logout.into()
                }
                .into(),
                closed(ReasonCode::Logout, false),
            ]
        );
        assert_eq!(g.shown(), ConnState::LoggedOut);
        assert_eq!(g.state.status().phone, None);
    }

    #[test]
    fn a_logout_without_a_running_engine_finishes_at_once_and_cancels_the_retry() {
        let mut g = Given::a_session_waiting_to_reconnect();
        let step = g.when(Input::Logout);
        assert_eq!(step.actions, vec![Action::RemoveStore, Action::CancelRetry]);
        assert_eq!(step.events.len(), 2);
        assert_eq!(g.shown(), ConnState::LoggedOut);
        assert_eq!(g.state.retry_at(), None);
    }

    // Reconnect, delete, shutdown.

    #[test]
    fn a_reconnect_stops_the_engine_and_starts_again_at_once() {
        let mut g = Given::a_started_engine();
        g.engine(qr("code-1"));
        let step = g.when(Input::Reconnect);
        assert_eq!(
            step.actions,
            vec![Action::StopEngine, Action::ScheduleRetry(g.now)]
        );
        assert!(step.events.is_empty());
        assert_eq!(g.shown(), ConnState::Connecting);
        assert_eq!(g.state.status().qr, None);
        assert_eq!(g.state.retry_at(), Some(g.now));
    }

    #[test]
    fn a_reconnect_of_a_connected_session_records_its_close_first() {
        let mut g = Given::a_connected_session();
        let step = g.when(Input::Reconnect);
        assert_eq!(step.events, vec![closed(ReasonCode::Reconnect, true)]);
        assert_eq!(
            step.actions,
            vec![Action::StopEngine, Action::ScheduleRetry(g.now)]
        );
        assert_eq!(g.shown(), ConnState::Connecting);
    }

    #[test]
    fn a_reconnect_after_the_qr_cap_shows_qr_codes_again() {
        let mut g = Given::a_started_engine();
        for n in 1..=4 {
            g.engine(qr(&format!("code-{n}")));
        }
        assert_eq!(g.shown(), ConnState::Disconnected);
        g.when(Input::Reconnect);
        g.when(Input::RetryDue);
        g.when(Input::EngineStarted);
        let step = g.engine(qr("code-5"));
        assert_eq!(step.events.len(), 1);
        assert_eq!(g.shown(), ConnState::Qr);
    }

    #[test]
    fn a_reconnect_forgets_earlier_drops_and_failures() {
        let mut g = Given::a_connected_session();
        for _ in 0..2 {
            g.engine(dropped());
            g.reconnected();
        }
        g.when(Input::Reconnect);
        g.reconnected();
        for wait in [SEC, 2 * SEC] {
            let step = g.engine(dropped());
            assert_eq!(
                step.actions,
                vec![Action::StopEngine, Action::ScheduleRetry(g.now + wait)]
            );
            g.when(Input::RetryDue);
            g.when(Input::EngineStarted);
        }
    }

    #[test]
    fn a_delete_stops_the_engine_removes_the_store_and_exits() {
        let mut g = Given::a_connected_session();
        let step = g.when(Input::Delete);
        assert_eq!(
            step.actions,
            vec![Action::StopEngine, Action::RemoveStore, Action::Exit]
        );
        assert!(step.events.is_empty());
    }

    #[test]
    fn a_delete_before_the_start_only_removes_the_store_and_exits() {
        let mut g = Given::a_new_session();
        let step = g.when(Input::Delete);
        assert_eq!(step.actions, vec![Action::RemoveStore, Action::Exit]);
        assert!(step.events.is_empty());
    }

    #[test]
    fn a_shutdown_while_connected_says_shutdown_and_will_reconnect() {
        let mut g = Given::a_connected_session();
        let step = g.when(Input::Shutdown);
        assert_eq!(step.actions, vec![Action::StopEngine, Action::Exit]);
        assert_eq!(step.events, vec![closed(ReasonCode::Shutdown, true)]);
        assert_eq!(g.shown(), ConnState::Disconnected);
        assert_eq!(g.state.status().phone.as_deref(), Some("79005550000"));
    }

    #[test]
    fn a_shutdown_while_showing_a_qr_records_nothing_and_clears_the_qr() {
        let mut g = Given::a_started_engine();
        g.engine(qr("code-1"));
        let step = g.when(Input::Shutdown);
        assert_eq!(step.actions, vec![Action::StopEngine, Action::Exit]);
        assert!(step.events.is_empty());
        assert_eq!(g.shown(), ConnState::Disconnected);
        assert_eq!(g.state.status().qr, None);
    }

    #[test]
    fn a_shutdown_while_waiting_to_reconnect_only_exits() {
        let mut g = Given::a_session_waiting_to_reconnect();
        let step = g.when(Input::Shutdown);
        assert_eq!(step.actions, vec![Action::Exit]);
        assert!(step.events.is_empty());
    }

    // Receipts and their messages.

    #[test]
    fn a_receipt_before_its_message_is_recorded_is_held() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        assert_eq!(g.engine(receipt(&["m1"], Receipt::Sent)), Step::default());
    }

    #[test]
    fn a_failed_send_is_held_like_a_receipt_and_carries_its_reason() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        let failed = EngineEvent::SendFailed {
            message_id: mid("m1"),
            chat: chat(),
            reason: "nack_479".into(),
        };
        assert_eq!(g.engine(failed), Step::default());
        g.when(Input::SendRecorded(mid("m1")));
        let step = g.when(Input::FlushReleased);
        let mut expected = MessageStatus {
            instance_id: instance(),
            message_id: mid("m1"),
            status: Receipt::Failed,
            from: chat(),
            from_me: true,
            reason: Some("nack_479".into()),
        };
        assert_eq!(step.events, vec![expected.clone().into()]);
        // Another status of the same message carries no reason.
        let step = g.engine(receipt(&["m1"], Receipt::Delivered));
        expected.status = Receipt::Delivered;
        expected.reason = None;
        assert_eq!(step.events, vec![expected.into()]);
    }

    #[test]
    fn a_recorded_send_with_held_receipts_wakes_the_supervisor() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        g.engine(receipt(&["m1"], Receipt::Sent));
        let step = g.when(Input::SendRecorded(mid("m1")));
        assert_eq!(step.actions, vec![Action::Wake]);
        assert!(step.events.is_empty());
    }

    #[test]
    fn a_flush_records_the_released_receipts_in_arrival_order_once() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        g.engine(receipt(&["m1"], Receipt::Sent));
        g.engine(receipt(&["m1"], Receipt::Delivered));
        g.when(Input::SendRecorded(mid("m1")));
        let step = g.when(Input::FlushReleased);
        assert_eq!(
            step.events,
            vec![
                status("m1", Receipt::Sent),
                status("m1", Receipt::Delivered)
            ]
        );
        assert!(step.actions.is_empty());
        assert_eq!(g.when(Input::FlushReleased), Step::default());
    }

    #[test]
    fn a_receipt_after_the_release_but_before_the_flush_comes_after_the_held_ones() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        g.engine(receipt(&["m1"], Receipt::Sent));
        g.when(Input::SendRecorded(mid("m1")));
        let step = g.engine(receipt(&["m1"], Receipt::Read));
        assert_eq!(
            step.events,
            vec![status("m1", Receipt::Sent), status("m1", Receipt::Read)]
        );
        assert_eq!(g.when(Input::FlushReleased), Step::default());
    }

    #[test]
    fn released_messages_are_flushed_in_release_order() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        g.when(Input::SendBegun(mid("m2")));
        g.engine(receipt(&["m1"], Receipt::Sent));
        g.engine(receipt(&["m2"], Receipt::Sent));
        g.engine(receipt(&["m1"], Receipt::Delivered));
        g.when(Input::SendRecorded(mid("m2")));
        g.when(Input::SendRecorded(mid("m1")));
        assert_eq!(
            g.when(Input::FlushReleased).events,
            vec![
                status("m2", Receipt::Sent),
                status("m1", Receipt::Sent),
                status("m1", Receipt::Delivered)
            ]
        );
    }

    #[test]
    fn a_flush_leaves_unreleased_messages_held() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        g.when(Input::SendBegun(mid("m2")));
        g.engine(receipt(&["m1", "m2"], Receipt::Sent));
        g.when(Input::SendRecorded(mid("m1")));
        assert_eq!(
            g.when(Input::FlushReleased).events,
            vec![status("m1", Receipt::Sent)]
        );
        g.when(Input::SendRecorded(mid("m2")));
        assert_eq!(
            g.when(Input::FlushReleased).events,
            vec![status("m2", Receipt::Sent)]
        );
    }

    #[test]
    fn a_recorded_send_with_nothing_held_is_forgotten() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        assert_eq!(g.when(Input::SendRecorded(mid("m1"))), Step::default());
        assert_eq!(
            g.engine(receipt(&["m1"], Receipt::Delivered)).events,
            vec![status("m1", Receipt::Delivered)]
        );
    }

    #[test]
    fn a_receipt_for_an_unknown_message_is_recorded_at_once() {
        let mut g = Given::a_connected_session();
        let step = g.engine(receipt(&["m9"], Receipt::Read));
        assert_eq!(step.events, vec![status("m9", Receipt::Read)]);
        assert!(step.actions.is_empty());
    }

    #[test]
    fn a_receipt_for_several_messages_holds_only_those_being_sent() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        let step = g.engine(receipt(&["m1", "m2", "m3"], Receipt::Delivered));
        assert_eq!(
            step.events,
            vec![
                status("m2", Receipt::Delivered),
                status("m3", Receipt::Delivered)
            ]
        );
    }

    #[test]
    fn a_failed_send_forgets_its_held_receipts() {
        let mut g = Given::a_connected_session();
        g.when(Input::SendBegun(mid("m1")));
        g.engine(receipt(&["m1"], Receipt::Sent));
        assert_eq!(g.when(Input::SendFailed(mid("m1"))), Step::default());
        assert_eq!(g.when(Input::FlushReleased), Step::default());
        assert_eq!(
            g.engine(receipt(&["m1"], Receipt::Delivered)).events,
            vec![status("m1", Receipt::Delivered)]
        );
    }

    #[test]
    fn send_inputs_never_change_the_status_nor_record_anything() {
        let mut g = Given::a_connected_session();
        let before = g.state.status().clone();
        g.engine(receipt(&["m2"], Receipt::Sent));
        for input in [
            Input::SendBegun(mid("m1")),
            Input::SendRecorded(mid("m1")),
            Input::SendBegun(mid("m2")),
            Input::SendFailed(mid("m2")),
        ] {
            let step = g.when(input);
            assert!(step.events.is_empty());
            assert!(step.actions.iter().all(|a| *a == Action::Wake));
            assert_eq!(*g.state.status(), before);
        }
    }

    // Messages and contacts.

    #[test]
    fn an_incoming_message_passes_through_with_its_media() {
        let mut g = Given::a_connected_session();
        let step = g.engine(EngineEvent::Message(Box::new(IncomingMessage {
            message_id: mid("in-1"),
            from: chat(),
            from_lid: None,
            chat: chat(),
            body: "look".into(),
            message_type: "image".into(),
            timestamp: 1_700_000_000,
            push_name: Some("Ann".into()),
            media: Some(IncomingMedia {
                kind: MediaKind::Image,
                mimetype: "image/jpeg".into(),
                file_name: None,
                size: 1234,
            }),
            extras: Default::default(),
        })));
        assert_eq!(
            step.events,
            vec![
                MessageReceived {
                    instance_id: instance(),
                    message_id: mid("in-1"),
                    from: chat(),
                    from_lid: None,
                    participant: None,
                    chat: chat(),
                    body: "look".into(),
                    message_type: "image".into(),
                    timestamp: 1_700_000_000,
                    has_media: true,
                    push_name: Some("Ann".into()),
                    media: Some(MediaInfo {
                        kind: MediaKind::Image,
                        mimetype: "image/jpeg".into(),
                        file_name: None,
                        size: 1234
                    }),
                    extras: Default::default(),
                }
                .into()
            ]
        );
        assert!(step.actions.is_empty());
        assert_eq!(g.shown(), ConnState::Connected);
    }

    #[test]
    fn a_text_message_says_it_has_no_media() {
        let mut g = Given::a_connected_session();
        let step = g.engine(EngineEvent::Message(Box::new(IncomingMessage {
            message_id: mid("in-2"),
            from: chat(),
            from_lid: None,
            chat: chat(),
            body: "hi".into(),
            message_type: "conversation".into(),
            timestamp: 1,
            push_name: None,
            media: None,
            extras: Default::default(),
        })));
        let Event::MessageReceived(m) = &step.events[0] else {
            panic!("{:?}", step.events)
        };
        assert!(!m.has_media);
        assert_eq!(m.media, None);
    }

    #[test]
    fn contacts_pass_through() {
        let mut g = Given::a_connected_session();
        let contacts = vec![Contact {
            id: chat(),
            name: "Ann".into(),
            number: "79001234567".into(),
            is_group: false,
        }];
        let step = g.engine(EngineEvent::Contacts(contacts.clone()));
        assert_eq!(
            step.events,
            vec![
                ContactsUpdated {
                    instance_id: instance(),
                    contacts
                }
                .into()
            ]
        );
        assert!(step.actions.is_empty());
    }
}
