//! The media vault: the `message_media` table of `events.db`, where the
//! gateway keeps what it needs to fetch a sent or received message's media
//! again (its type, name, size and the engine's sealed handle). The handle
//! of the real engine holds the media key and the CDN path: it is sealed
//! like the other secrets ([`crate::secrets`]) and never enters the log.

use std::sync::Arc;

use anyhow::Context;
use sqlx::SqlitePool;

use crate::events::MediaKind;
use crate::ids::{InstanceId, MessageId};
use crate::secrets::{Purpose, Sealer};

use super::engine::KeptMedia;

/// Reads and writes kept media; cheap to clone.
#[derive(Clone)]
pub struct MediaVault {
    pool: SqlitePool,
    sealer: Arc<Sealer>,
}

impl MediaVault {
    /// A vault over `events.db`'s pool, sealing with `sealer`.
    pub fn new(pool: SqlitePool, sealer: Arc<Sealer>) -> Self {
        Self { pool, sealer }
    }

    /// Keeps (or replaces) the media of a message.
    pub async fn keep(
        &self,
        instance_id: &InstanceId,
        message_id: &MessageId,
        media: &KeptMedia,
    ) -> anyhow::Result<()> {
        let sealed = self.sealer.seal(Purpose::MediaLocator, &media.locator);
        sqlx::query(
            "INSERT OR REPLACE INTO message_media \
             (instance_id, message_id, kind, mimetype, file_name, size, locator, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(instance_id)
        .bind(message_id)
        .bind(media.kind.as_str())
        .bind(&media.mimetype)
        .bind(&media.file_name)
        .bind(media.size as i64)
        .bind(sealed)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await
        .context("Failed to keep a message's media")?;
        Ok(())
    }

    /// The kept media of a message, its handle unsealed; `None` when the
    /// message is unknown or has no media.
    pub async fn find(
        &self,
        instance_id: &InstanceId,
        message_id: &MessageId,
    ) -> anyhow::Result<Option<KeptMedia>> {
        let row: Option<(String, String, Option<String>, i64, String)> = sqlx::query_as(
            "SELECT kind, mimetype, file_name, size, locator FROM message_media \
             WHERE instance_id = ? AND message_id = ?",
        )
        .bind(instance_id)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await
        .context("Failed to read a message's media")?;
        let Some((kind, mimetype, file_name, size, sealed)) = row else {
            return Ok(None);
        };
        let locator = self
            .sealer
            .open(Purpose::MediaLocator, &sealed)
            .context("Failed to open a message's media handle")?;
        Ok(Some(KeptMedia {
            kind: kind_of(&kind),
            mimetype,
            file_name,
            size: size.max(0) as u64,
            locator: locator.expose().to_string(),
        }))
    }

    /// Forgets every kept media of an instance (it was deleted or logged out).
    pub async fn forget_instance(&self, instance_id: &InstanceId) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM message_media WHERE instance_id = ?")
            .bind(instance_id)
            .execute(&self.pool)
            .await
            .context("Failed to forget an instance's media")?;
        Ok(())
    }
}

/// A stored kind name back as a [`MediaKind`].
fn kind_of(raw: &str) -> MediaKind {
    match raw {
        "image" => MediaKind::Image,
        "video" => MediaKind::Video,
        "audio" => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kept_media_is_sealed_at_rest_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::EventStore::open(&dir.path().join("events.db"))
            .await
            .unwrap();
        let vault = MediaVault::new(store.pool().clone(), Arc::new(Sealer::random()));
        let (i, m) = (InstanceId::from_stored("i1"), MessageId::from_stored("m1"));
        let media = KeptMedia {
            kind: MediaKind::Document,
            mimetype: "application/pdf".into(),
            file_name: Some("a.pdf".into()),
            size: 42,
            locator: r#"{"mediaKey":"c2VjcmV0"}"#.into(),
        };
        vault.keep(&i, &m, &media).await.unwrap();
        assert_eq!(vault.find(&i, &m).await.unwrap(), Some(media));
        let stored: String = sqlx::query_scalar("SELECT locator FROM message_media")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(!stored.contains("mediaKey"), "sealed at rest: {stored}");
        assert_eq!(
            vault.find(&i, &MessageId::from_stored("m2")).await.unwrap(),
            None
        );
        vault.forget_instance(&i).await.unwrap();
        assert_eq!(vault.find(&i, &m).await.unwrap(), None);
    }
}
