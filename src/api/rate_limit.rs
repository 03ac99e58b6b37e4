//! Per-user API rate limits: a token bucket per user that holds a minute's
//! worth of requests (`WA_RATE_LIMIT_PER_MIN`) and refills continuously. A
//! request over the limit is answered 429 with `Retry-After`; every
//! authenticated answer carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` (seconds until the bucket is full again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::ids::UserId;

/// Header names (lower case, as HTTP/1 sends them; names are case-insensitive).
pub const LIMIT_HEADER: &str = "ratelimit-limit";
pub const REMAINING_HEADER: &str = "ratelimit-remaining";
pub const RESET_HEADER: &str = "ratelimit-reset";
pub const RETRY_AFTER_HEADER: &str = "retry-after";

/// What a request learned of its caller's bucket, for the answer's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full.
    pub reset_secs: u64,
    /// Set when the request was refused: seconds until one request is allowed.
    pub retry_after_secs: Option<u64>,
}

/// Where the extractor leaves the caller's [`Quota`] for the middleware.
#[derive(Debug, Clone, Default)]
pub struct QuotaSlot(pub Arc<OnceLock<Quota>>);

impl QuotaSlot {
    /// Marks the answer as refused for `secs` under a limit of `limit`
    /// (e.g. failed logins): `Retry-After` and `RateLimit-*` go on it.
    pub fn refuse(req: &poem::Request, limit: u32, secs: u64) {
        if let Some(slot) = req.extensions().get::<QuotaSlot>() {
            let _ = slot.0.set(Quota {
                limit,
                remaining: 0,
                reset_secs: secs,
                retry_after_secs: Some(secs),
            });
        }
    }
}

/// One user's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Every user's bucket.
pub struct RateLimits {
    per_min: u32,
    buckets: Mutex<HashMap<UserId, Bucket>>,
}

impl RateLimits {
    /// Limits of `per_min` requests a minute per user (0: none).
    pub fn new(per_min: u32) -> Self {
        Self {
            per_min,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Gives `user` a full bucket (after an admin changed their limit).
    pub fn reset(&self, user: &UserId) {
        self.buckets.lock().expect("rate limits lock").remove(user);
    }

    /// Takes one request from `user`'s bucket at `now`, under the user's own
    /// limit if an admin set one (else the default); the quota after it
    /// (with `retry_after_secs` when refused). `None` when limits are off.
    pub fn take(&self, user: &UserId, own: Option<u32>, now: Instant) -> Option<Quota> {
        let per_min = own.unwrap_or(self.per_min);
        if per_min == 0 {
            return None;
        }
        let capacity = f64::from(per_min);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().expect("rate limits lock");
        if buckets.len() > 100_000 {
            // Forget the full buckets (users idle for a minute or more).
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < capacity
            });
        }
        let b = buckets.entry(user.clone()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * per_sec;
        b.tokens = (b.tokens + refill).min(capacity);
        b.at = now;
        let refused = b.tokens < 1.0;
        if !refused {
            b.tokens -= 1.0;
        }
        let secs_until = |tokens: f64| (tokens / per_sec).max(0.0).ceil() as u64;
        Some(Quota {
            limit: per_min,
            remaining: b.tokens.floor() as u32,
            reset_secs: secs_until(capacity - b.tokens),
            retry_after_secs: refused.then(|| secs_until(1.0 - b.tokens).max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn user() -> UserId {
        UserId::from_stored("u1")
    }

    #[test]
    fn a_full_bucket_allows_a_minutes_worth_then_refuses_with_a_retry_time() {
        let limits = RateLimits::new(60);
        let t0 = Instant::now();
        for n in 0..60 {
            let q = limits.take(&user(), None, t0).unwrap();
            assert_eq!(q.retry_after_secs, None, "request {n}");
            assert_eq!(q.remaining, 59 - n);
        }
        let refused = limits.take(&user(), None, t0).unwrap();
        assert_eq!(refused.retry_after_secs, Some(1));
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_secs, 60);
        // One token a second comes back.
        let later = limits
            .take(&user(), None, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(later.retry_after_secs, None);
    }

    #[test]
    fn a_users_own_limit_replaces_the_default() {
        let limits = RateLimits::new(1000);
        let t0 = Instant::now();
        let q = limits.take(&user(), Some(2), t0).unwrap();
        assert_eq!((q.limit, q.remaining), (2, 1));
        limits.take(&user(), Some(2), t0);
        assert!(
            limits
                .take(&user(), Some(2), t0)
                .unwrap()
                .retry_after_secs
                .is_some()
        );
    }

    #[test]
    fn users_have_their_own_buckets_and_zero_turns_limits_off() {
        let limits = RateLimits::new(1);
        let t0 = Instant::now();
        assert!(
            limits
                .take(&user(), None, t0)
                .unwrap()
                .retry_after_secs
                .is_none()
        );
        assert!(
            limits
                .take(&user(), None, t0)
                .unwrap()
                .retry_after_secs
                .is_some()
        );
        let other = UserId::from_stored("u2");
        assert!(
            limits
                .take(&other, None, t0)
                .unwrap()
                .retry_after_secs
                .is_none()
        );
        assert_eq!(RateLimits::new(0).take(&user(), None, t0), None);
    }
}
