//! Login throttling. Failed logins are counted per e-mail and per client
//! address over a sliding window (15 minutes); from half the limit on,
//! each further try is slowed down, and at the limit (`WA_LOGIN_MAX_FAILURES`
//! for an e-mail, three times that for an address, which many users behind
//! one NAT may share) the answer is 429 with `Retry-After`, before any
//! password hash is computed. The answer never tells whether the e-mail has an account. A
//! success clears its e-mail's and address's failures; an admin can unlock
//! an account. Every refusal is recorded as `login_failed` (with the
//! address and whether the account exists, never the password tried).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::DomainError;
use super::users::{self, User};
use crate::events::LoginFailed;
use crate::store::{Append, EventStore, Metadata, StreamId};

/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// An address may fail this many times an e-mail's limit.
const ADDRESS_FACTOR: usize = 3;

/// The extra wait per failure past half the limit.
const SLOW_DOWN_STEP: Duration = Duration::from_millis(250);

/// Who failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Email(String),
    Address(IpAddr),
}

/// What a login may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Try, after waiting this long (zero below half the limit).
    Try(Duration),
    /// Refuse without trying, for this many seconds more.
    Refuse(u64),
}

/// Recent failures by e-mail and by address.
pub struct LoginGuard {
    max_failures: usize,
    failures: Mutex<HashMap<Subject, VecDeque<Instant>>>,
}

impl LoginGuard {
    /// A guard refusing from `max_failures` failures in [`WINDOW`] on (0: never).
    pub fn new(max_failures: u32) -> Self {
        Self {
            max_failures: max_failures as usize,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn subjects(email: &str, address: Option<IpAddr>) -> Vec<Subject> {
        let mut s = vec![Subject::Email(email.to_string())];
        s.extend(address.map(Subject::Address));
        s
    }

    /// Whether a login for `email` from `address` may be tried at `now`.
    pub fn admit(&self, email: &str, address: Option<IpAddr>, now: Instant) -> Admission {
        if self.max_failures == 0 {
            return Admission::Try(Duration::ZERO);
        }
        let mut map = self.failures.lock().expect("login guard lock");
        // The fullest subject, in failures scaled to the e-mail's limit.
        let mut worst = 0usize;
        let mut oldest: Option<Instant> = None;
        for subject in Self::subjects(email, address) {
            let per = self.scale(&subject);
            if let Some(times) = map.get_mut(&subject) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    times.pop_front();
                }
                let scaled = times.len() / per;
                if scaled >= worst {
                    worst = scaled;
                    // The failure whose expiry brings the subject under its limit.
                    let n = times.len();
                    oldest = times
                        .get(n.saturating_sub(self.max_failures * per))
                        .copied();
                }
            }
        }
        if worst >= self.max_failures {
            let until = oldest.map_or(now, |t| t + WINDOW);
            let secs = until.saturating_duration_since(now).as_secs_f64().ceil() as u64;
            return Admission::Refuse(secs.max(1));
        }
        let half = (self.max_failures / 2).max(1);
        let over_half = if worst >= half { worst - half + 1 } else { 0 };
        Admission::Try(SLOW_DOWN_STEP * over_half as u32)
    }

    /// Failures of `subject` that weigh as one of an e-mail's.
    fn scale(&self, subject: &Subject) -> usize {
        match subject {
            Subject::Email(_) => 1,
            Subject::Address(_) => ADDRESS_FACTOR,
        }
    }

    /// Counts a failure at `now`.
    pub fn failed(&self, email: &str, address: Option<IpAddr>, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let mut map = self.failures.lock().expect("login guard lock");
        if map.len() > 100_000 {
            map.retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for subject in Self::subjects(email, address) {
            let keep = self.max_failures * self.scale(&subject);
            let times = map.entry(subject).or_default();
            times.push_back(now);
            while times.len() > keep {
                times.pop_front();
            }
        }
    }

    /// Clears the failures of a successful login's e-mail and address.
    pub fn succeeded(&self, email: &str, address: Option<IpAddr>) {
        let mut map = self.failures.lock().expect("login guard lock");
        for subject in Self::subjects(email, address) {
            map.remove(&subject);
        }
    }

    /// Clears an account's failures (an admin's unlock).
    pub fn unlock(&self, email: &str) {
        self.failures
            .lock()
            .expect("login guard lock")
            .remove(&Subject::Email(email.trim().to_lowercase()));
    }
}

/// Logs in through the guard: refused at the limit (recorded, no password
/// check), slowed down near it, and every refusal recorded.
pub async fn log_in(
    store: &EventStore,
    guard: &LoginGuard,
    email: &str,
    password: &str,
    address: Option<IpAddr>,
) -> Result<User, DomainError> {
    let key = email.trim().to_lowercase();
    match guard.admit(&key, address, Instant::now()) {
        Admission::Refuse(retry_after_secs) => {
            record_failure(store, &key, address, true).await;
            return Err(DomainError::Throttled { retry_after_secs });
        }
        Admission::Try(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
        Admission::Try(_) => {}
    }
    match users::login(store, email, password).await {
        Ok(user) => {
            guard.succeeded(&key, address);
            Ok(user)
        }
        Err(DomainError::Unauthorized(m)) => {
            guard.failed(&key, address, Instant::now());
            record_failure(store, &key, address, false).await;
            Err(DomainError::Unauthorized(m))
        }
        Err(e) => Err(e),
    }
}

/// Appends `login_failed` (scoped to the account when there is one).
async fn record_failure(store: &EventStore, email: &str, address: Option<IpAddr>, throttled: bool) {
    let owner = users::id_by_email(store.pool(), email).await.ok().flatten();
    let event = LoginFailed {
        email: email.to_string(),
        address: address.map(|a| a.to_string()),
        account_exists: owner.is_some(),
        throttled,
    };
    let append = Append::fact(StreamId::login_failures())
        .scope(owner.as_ref().map(|u| u.as_str()), None)
        .metadata(Metadata::actor("anonymous"))
        .event(event);
    if let Err(e) = store.append(append).await {
        tracing::warn!(error = %e, "failed to record a refused login");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));

    #[test]
    fn failures_slow_down_from_half_the_limit_then_refuse_until_the_window_passes() {
        let guard = LoginGuard::new(4);
        let t0 = Instant::now();
        assert_eq!(guard.admit("a@x", IP, t0), Admission::Try(Duration::ZERO));
        guard.failed("a@x", IP, t0);
        assert_eq!(guard.admit("a@x", IP, t0), Admission::Try(Duration::ZERO));
        guard.failed("a@x", IP, t0);
        assert!(matches!(guard.admit("a@x", IP, t0), Admission::Try(d) if d > Duration::ZERO));
        guard.failed("a@x", IP, t0);
        guard.failed("a@x", IP, t0);
        assert_eq!(
            guard.admit("a@x", IP, t0),
            Admission::Refuse(WINDOW.as_secs())
        );
        // The e-mail is refused from anywhere; the address, shared, has room.
        assert!(matches!(guard.admit("a@x", None, t0), Admission::Refuse(_)));
        assert!(matches!(guard.admit("b@x", IP, t0), Admission::Try(_)));
        for _ in 0..8 {
            guard.failed("c@x", IP, t0);
        }
        assert!(
            matches!(guard.admit("b@x", IP, t0), Admission::Refuse(_)),
            "12 from one address"
        );
        assert_eq!(
            guard.admit("b@x", None, t0 + WINDOW),
            Admission::Try(Duration::ZERO)
        );
        assert_eq!(
            guard.admit("a@x", IP, t0 + WINDOW),
            Admission::Try(Duration::ZERO)
        );
    }

    #[test]
    fn a_success_or_an_unlock_clears_the_failures() {
        let guard = LoginGuard::new(2);
        let t0 = Instant::now();
        guard.failed("a@x", IP, t0);
        guard.failed("a@x", IP, t0);
        assert!(matches!(guard.admit("a@x", IP, t0), Admission::Refuse(_)));
        guard.unlock("A@X ");
        assert!(matches!(guard.admit("a@x", None, t0), Admission::Try(_)));
        assert!(
            matches!(guard.admit("a@x", IP, t0), Admission::Try(_)),
            "the address has room"
        );
        guard.failed("a@x", IP, t0);
        guard.failed("a@x", IP, t0);
        assert!(matches!(guard.admit("a@x", IP, t0), Admission::Refuse(_)));
        guard.succeeded("a@x", IP);
        assert_eq!(guard.admit("a@x", IP, t0), Admission::Try(Duration::ZERO));
        assert_eq!(
            LoginGuard::new(0).admit("a@x", IP, t0),
            Admission::Try(Duration::ZERO)
        );
    }
}
