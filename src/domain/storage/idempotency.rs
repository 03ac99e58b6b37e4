//! The `idempotency_keys` table: the keys of recorded sends, written in the
//! transaction of their `message_sent`.

use futures::future::BoxFuture;
use sqlx::{SqliteConnection, SqlitePool};

use crate::ids::{MessageId, UserId};
use crate::store::StateChange;

/// What a key answered: the request's fingerprint and the message it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedKey {
    pub fingerprint: String,
    pub message_id: MessageId,
}

/// The send recorded under `key` by `user` since `since_ms`, if any.
pub async fn find_key(
    pool: &SqlitePool,
    user: &UserId,
    key: &str,
    since_ms: i64,
) -> Result<Option<RecordedKey>, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT fingerprint, message_id FROM idempotency_keys \
         WHERE user_id = ? AND key = ? AND created_at >= ?",
    )
    .bind(user)
    .bind(key)
    .bind(since_ms)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(fingerprint, message_id)| RecordedKey {
        fingerprint,
        message_id: MessageId::from_stored(message_id),
    }))
}

/// Records a key with the message its send recorded, and forgets keys older
/// than `expired_before_ms` (a key lives 24 hours).
pub struct KeyRecorded {
    pub user: UserId,
    pub key: String,
    pub fingerprint: String,
    pub message_id: MessageId,
    pub at_ms: i64,
    pub expired_before_ms: i64,
}

impl StateChange for KeyRecorded {
    fn apply<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
                .bind(self.expired_before_ms)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT OR REPLACE INTO idempotency_keys (user_id, key, fingerprint, message_id, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&self.user)
            .bind(&self.key)
            .bind(&self.fingerprint)
            .bind(&self.message_id)
            .bind(self.at_ms)
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    }
}
