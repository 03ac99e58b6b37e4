//! Send pacing: an instance's `sendPolicy` (caps per minute and per day, a
//! random pause between messages, a "typing" presence before each text, a
//! warm-up ramp for a newly paired number) and the pure [`Pacer`] that says
//! when the next queued message may go out. The instance aggregate decides
//! the policy; the outbound queue's worker asks the pacer and sleeps.

use std::collections::VecDeque;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DomainError;

/// A day, in milliseconds: the window of the daily cap.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// A minute, in milliseconds: the window of the per-minute cap.
pub const MINUTE_MS: i64 = 60 * 1000;

/// How an instance paces its sends. Off by default (the seed's behaviour:
/// every send goes out at once); `{"enabled": true}` switches on the
/// cautious defaults below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendPolicy {
    /// Whether sends are paced (and go through the outbound queue).
    pub enabled: bool,
    /// Messages a minute at most (sliding window), 1 to 60.
    pub per_minute: u32,
    /// Messages a day at most (sliding 24 hours), 1 to 100,000.
    pub per_day: u32,
    /// Shortest pause between two messages, in milliseconds.
    pub delay_min_ms: u64,
    /// Longest pause between two messages (the pause is drawn uniformly in between).
    pub delay_max_ms: u64,
    /// Show "typing…" to the recipient before each text.
    pub typing: bool,
    /// Typing time per character of the text, in milliseconds.
    pub typing_ms_per_char: u64,
    /// Longest typing time, in milliseconds.
    pub typing_max_ms: u64,
    /// Days of warm-up after pairing (0: none). The daily cap rises
    /// linearly from `warmupFirstDay` on the first day to `perDay`.
    pub warmup_days: u32,
    /// The daily cap on the first day after pairing.
    pub warmup_first_day: u32,
}

impl SendPolicy {
    /// The documented cautious defaults, switched on.
    pub fn cautious() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    /// Checks the bounds and the cross-field rules.
    pub fn validate(&self) -> Result<(), DomainError> {
        let bad = |m: &str| Err(DomainError::invalid(format!("sendPolicy: {m}")));
        if !(1..=60).contains(&self.per_minute) {
            return bad("perMinute must be between 1 and 60");
        }
        if !(1..=100_000).contains(&self.per_day) {
            return bad("perDay must be between 1 and 100000");
        }
        if self.delay_max_ms > 3_600_000 || self.delay_min_ms > self.delay_max_ms {
            return bad("delayMinMs must be at most delayMaxMs, which must be at most 3600000");
        }
        if self.typing_ms_per_char > 1_000 || self.typing_max_ms > 60_000 {
            return bad("typingMsPerChar must be at most 1000 and typingMaxMs at most 60000");
        }
        if self.warmup_days > 90 {
            return bad("warmupDays must be at most 90");
        }
        if self.warmup_first_day == 0 || self.warmup_first_day > self.per_day {
            return bad("warmupFirstDay must be between 1 and perDay");
        }
        Ok(())
    }

    /// The daily cap `paired_at` → `at` into the warm-up (no pairing time known: `perDay`).
    pub fn daily_cap(&self, paired_at: Option<i64>, at: i64) -> u32 {
        let Some(paired_at) = paired_at else {
            return self.per_day;
        };
        let day = ((at - paired_at).max(0) / DAY_MS) as u64;
        let days = self.warmup_days as u64;
        if day >= days {
            return self.per_day;
        }
        let first = self.warmup_first_day as u64;
        let rise = (self.per_day as u64).saturating_sub(first) * day / days;
        (first + rise) as u32
    }

    /// How long to show "typing…" before a text of `chars` characters.
    pub fn typing_ms(&self, chars: usize) -> u64 {
        if !self.enabled || !self.typing {
            return 0;
        }
        (chars as u64 * self.typing_ms_per_char).min(self.typing_max_ms)
    }
}

impl Default for SendPolicy {
    /// Off, with the cautious values ready for when it is switched on.
    fn default() -> Self {
        Self {
            enabled: false,
            per_minute: 6,
            per_day: 500,
            delay_min_ms: 4_000,
            delay_max_ms: 12_000,
            typing: true,
            typing_ms_per_char: 40,
            typing_max_ms: 6_000,
            warmup_days: 7,
            warmup_first_day: 40,
        }
    }
}

/// The partial policy of a create or update: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyChanges {
    pub enabled: Option<bool>,
    pub per_minute: Option<u32>,
    pub per_day: Option<u32>,
    pub delay_min_ms: Option<u64>,
    pub delay_max_ms: Option<u64>,
    pub typing: Option<bool>,
    pub typing_ms_per_char: Option<u64>,
    pub typing_max_ms: Option<u64>,
    pub warmup_days: Option<u32>,
    pub warmup_first_day: Option<u32>,
}

impl PolicyChanges {
    /// `base` with these changes (not yet validated).
    pub fn apply_to(&self, base: &SendPolicy) -> SendPolicy {
        SendPolicy {
            enabled: self.enabled.unwrap_or(base.enabled),
            per_minute: self.per_minute.unwrap_or(base.per_minute),
            per_day: self.per_day.unwrap_or(base.per_day),
            delay_min_ms: self.delay_min_ms.unwrap_or(base.delay_min_ms),
            delay_max_ms: self.delay_max_ms.unwrap_or(base.delay_max_ms),
            typing: self.typing.unwrap_or(base.typing),
            typing_ms_per_char: self.typing_ms_per_char.unwrap_or(base.typing_ms_per_char),
            typing_max_ms: self.typing_max_ms.unwrap_or(base.typing_max_ms),
            warmup_days: self.warmup_days.unwrap_or(base.warmup_days),
            warmup_first_day: self.warmup_first_day.unwrap_or(base.warmup_first_day),
        }
    }
}

/// What an instance has sent lately (the last 24 hours), and so when it may
/// send next. Pure: the caller gives the time and the random draw.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    /// Send times (Unix milliseconds), oldest first, within the last day.
    sent: VecDeque<i64>,
}

impl Pacer {
    /// A pacer that knows of these earlier sends (any order).
    pub fn with_history(mut times: Vec<i64>) -> Self {
        times.sort_unstable();
        Self { sent: times.into() }
    }

    /// Notes a send at `at`.
    pub fn record(&mut self, at: i64) {
        self.sent.push_back(at);
        while self.sent.front().is_some_and(|&t| t <= at - DAY_MS) {
            self.sent.pop_front();
        }
    }

    /// The earliest time (Unix milliseconds, never before `now`) the next
    /// message may go out under `policy`: after a pause drawn by `draw`
    /// (0 to 1) since the last send, and within the per-minute and the
    /// (warm-up) daily caps.
    pub fn next_at(&self, policy: &SendPolicy, now: i64, paired_at: Option<i64>, draw: f64) -> i64 {
        if !policy.enabled {
            return now;
        }
        let mut at = now;
        if let Some(&last) = self.sent.back() {
            let span = policy.delay_max_ms - policy.delay_min_ms;
            let pause = policy.delay_min_ms + (span as f64 * draw.clamp(0.0, 1.0)).round() as u64;
            at = at.max(last + pause as i64);
        }
        let n = self.sent.len();
        let per_minute = policy.per_minute as usize;
        if per_minute > 0 && n >= per_minute {
            at = at.max(self.sent[n - per_minute] + MINUTE_MS);
        }
        let cap = policy.daily_cap(paired_at, at).max(1) as usize;
        if n >= cap {
            at = at.max(self.sent[n - cap] + DAY_MS);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn policy() -> SendPolicy {
        SendPolicy {
            per_minute: 3,
            per_day: 10,
            delay_min_ms: 1_000,
            delay_max_ms: 3_000,
            warmup_days: 0,
            warmup_first_day: 1,
            ..SendPolicy::cautious()
        }
    }

    /// Sends `count` messages as soon as allowed, from `T0`, with a fixed draw.
    fn burst(policy: &SendPolicy, count: usize, draw: f64) -> Vec<i64> {
        let mut pacer = Pacer::default();
        let mut now = T0;
        (0..count)
            .map(|_| {
                let at = pacer.next_at(policy, now, None, draw);
                pacer.record(at);
                now = at;
                at
            })
            .collect()
    }

    #[test]
    fn the_defaults_are_off_and_valid_and_one_flag_switches_them_on() {
        let d = SendPolicy::default();
        assert!(!d.enabled);
        d.validate().unwrap();
        let on = SendPolicy::cautious();
        assert!(on.enabled);
        assert_eq!(
            SendPolicy {
                enabled: false,
                ..on
            },
            d
        );
    }

    #[test]
    fn switched_off_nothing_waits() {
        let off = SendPolicy::default();
        let mut pacer = Pacer::default();
        for _ in 0..100 {
            pacer.record(T0);
        }
        assert_eq!(pacer.next_at(&off, T0, None, 0.5), T0);
        assert_eq!(off.typing_ms(100), 0);
    }

    #[test]
    fn the_first_message_goes_at_once_and_the_next_after_the_drawn_pause() {
        let times = burst(&policy(), 2, 0.5);
        assert_eq!(times, vec![T0, T0 + 2_000]);
        assert_eq!(burst(&policy(), 2, 0.0)[1], T0 + 1_000);
        assert_eq!(burst(&policy(), 2, 1.0)[1], T0 + 3_000);
    }

    #[test]
    fn a_burst_keeps_to_the_per_minute_cap_in_every_window() {
        let times = burst(&policy(), 9, 0.0);
        for w in times.windows(4) {
            assert!(w[3] - w[0] >= MINUTE_MS, "{times:?}");
        }
        // 3 a minute: the fourth waits for the first to leave the window.
        assert_eq!(times[3], T0 + MINUTE_MS);
    }

    #[test]
    fn the_daily_cap_holds_the_eleventh_message_until_the_first_is_a_day_old() {
        let p = SendPolicy {
            per_minute: 60,
            delay_min_ms: 0,
            delay_max_ms: 0,
            ..policy()
        };
        let times = burst(&p, 11, 0.0);
        assert_eq!(times[9], T0);
        assert_eq!(times[10], T0 + DAY_MS);
    }

    #[test]
    fn the_warm_up_cap_rises_from_the_first_day_to_the_full_cap() {
        let p = SendPolicy {
            per_day: 100,
            warmup_days: 4,
            warmup_first_day: 20,
            ..SendPolicy::cautious()
        };
        let caps: Vec<u32> = (0..6)
            .map(|d| p.daily_cap(Some(T0), T0 + d * DAY_MS + 1))
            .collect();
        assert_eq!(caps, vec![20, 40, 60, 80, 100, 100]);
        assert_eq!(p.daily_cap(None, T0), 100);
    }

    #[test]
    fn a_newly_paired_number_is_held_at_its_first_day_cap() {
        let p = SendPolicy {
            per_minute: 60,
            per_day: 100,
            delay_min_ms: 0,
            delay_max_ms: 0,
            warmup_days: 4,
            warmup_first_day: 2,
            ..SendPolicy::cautious()
        };
        let mut pacer = Pacer::default();
        pacer.record(T0);
        pacer.record(T0);
        assert_eq!(pacer.next_at(&p, T0, Some(T0), 0.0), T0 + DAY_MS);
    }

    #[test]
    fn typing_lasts_in_proportion_to_the_text_up_to_its_cap() {
        let p = SendPolicy::cautious();
        assert_eq!(p.typing_ms(10), 400);
        assert_eq!(p.typing_ms(10_000), p.typing_max_ms);
        let no_typing = SendPolicy { typing: false, ..p };
        assert_eq!(no_typing.typing_ms(10), 0);
    }

    #[test]
    fn bounds_are_checked() {
        for bad in [
            SendPolicy {
                per_minute: 0,
                ..SendPolicy::cautious()
            },
            SendPolicy {
                delay_min_ms: 5,
                delay_max_ms: 4,
                ..SendPolicy::cautious()
            },
            SendPolicy {
                warmup_first_day: 600,
                ..SendPolicy::cautious()
            },
            SendPolicy {
                typing_max_ms: 60_001,
                ..SendPolicy::cautious()
            },
        ] {
            assert!(matches!(bad.validate(), Err(DomainError::Invalid(_))));
        }
    }

    #[test]
    fn old_sends_leave_the_window() {
        let mut pacer = Pacer::with_history(vec![T0 - DAY_MS, T0 - 10]);
        pacer.record(T0);
        assert_eq!(pacer.sent.len(), 2);
    }
}
