//! Idempotent sends. A send made with an `Idempotency-Key` header is sent at
//! most once per user and key within 24 hours: a repeat with the same
//! request answers the first message id and sends nothing; the same key with
//! another request is refused. The key is recorded in the transaction of the
//! send's `message_sent` (so it survives restarts exactly when the send is in
//! the log), and concurrent requests with one key are run one after another,
//! so a repeat that arrives while the first is still sending waits for its
//! answer instead of sending again. A send that fails records nothing: the
//! key may be used again, as the client then expects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use super::DomainError;
use super::send::OnRecord;
use super::storage::idempotency::{KeyRecorded, find_key};
use crate::ids::{MessageId, UserId};

/// How long a key answers for its send.
pub const KEY_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A client's name for one request: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses the header's value.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.is_empty() || raw.len() > MAX_KEY_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::Invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            )));
        }
        Ok(Self(raw.to_string()))
    }
    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies a request's content: SHA-256 (hex) over its parts, each
/// prefixed by its length so that no two splits of the same bytes collide.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The lock of one (user, key), alive while a request holds or awaits it.
type KeyLock = Weak<tokio::sync::Mutex<()>>;

/// The in-process side: one lock per (user, key) while a request holds it.
#[derive(Default)]
pub struct KeyLocks {
    held: Mutex<HashMap<(UserId, IdempotencyKey), KeyLock>>,
}

impl KeyLocks {
    /// Waits until no other request of this user holds this key, then holds it.
    async fn lock(&self, user: &UserId, key: &IdempotencyKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut held = self.held.lock().expect("key locks lock");
            if held.len() > 1024 {
                held.retain(|_, w| w.strong_count() > 0);
            }
            let slot = held.entry((user.clone(), key.clone())).or_default();
            match slot.upgrade() {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    *slot = Arc::downgrade(&lock);
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// What a request with an idempotency key may do.
pub enum Begun {
    /// An identical request already sent this message: answer its id, send nothing.
    Replay(MessageId),
    /// Send; the ticket's record goes with the `message_sent`.
    Fresh(Ticket),
}

/// The right to send under a key: holds the key's lock until dropped (after
/// the send), and gives the record to commit with the send's `message_sent`.
pub struct Ticket {
    record: Option<KeyRecord>,
    _held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// What is recorded for a key once its send is in the log.
struct KeyRecord {
    user: UserId,
    key: IdempotencyKey,
    fingerprint: String,
    at_ms: i64,
}

impl Ticket {
    /// The state change to commit with the send's `message_sent` (none
    /// without a key). Taken once.
    pub fn on_record(&mut self) -> Option<OnRecord> {
        let r = self.record.take()?;
        Some(Box::new(move |message_id: &MessageId| {
            Box::new(KeyRecorded {
                user: r.user,
                key: r.key.0,
                fingerprint: r.fingerprint,
                message_id: message_id.clone(),
                at_ms: r.at_ms,
                expired_before_ms: r.at_ms - KEY_TTL_MS,
            }) as crate::store::Effect
        }))
    }
}

/// Starts a send under `key` for `user`: without a key it is always fresh;
/// with one it waits for any other request holding the key, then answers
/// the recorded message of an earlier identical request, refuses a
/// different request under the same key, or lets this one send.
pub async fn begin(
    pool: &SqlitePool,
    locks: &KeyLocks,
    user: &UserId,
    key: Option<IdempotencyKey>,
    fingerprint: String,
) -> Result<Begun, DomainError> {
    let Some(key) = key else {
        return Ok(Begun::Fresh(Ticket {
            record: None,
            _held: None,
        }));
    };
    let held = locks.lock(user, &key).await;
    let now = chrono::Utc::now().timestamp_millis();
    let recorded = find_key(pool, user, key.as_str(), now - KEY_TTL_MS)
        .await
        .map_err(|e| DomainError::Internal(format!("reading an idempotency key: {e}")))?;
    match recorded {
        Some(r) if r.fingerprint == fingerprint => Ok(Begun::Replay(r.message_id)),
        Some(_) => Err(DomainError::Mismatch(
            "this Idempotency-Key was used for a different request in the last 24 hours".into(),
        )),
        None => Ok(Begun::Fresh(Ticket {
            record: Some(KeyRecord {
                user: user.clone(),
                key,
                fingerprint,
                at_ms: now,
            }),
            _held: Some(held),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse("order-42:retry").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
        for bad in ["", "has space", "ключ", "tab\t"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn fingerprints_tell_apart_every_split_of_the_same_bytes() {
        let a = fingerprint(&[b"ab", b"c"]);
        assert_eq!(a, fingerprint(&[b"ab", b"c"]));
        assert_ne!(a, fingerprint(&[b"a", b"bc"]));
        assert_ne!(a, fingerprint(&[b"abc"]));
        assert_eq!(a.len(), 64);
    }
}
