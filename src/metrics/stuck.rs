//! The stuck-message watcher: sent messages still without a `delivered`
//! receipt after `WA_STUCK_AFTER_SECS` get one `message_stuck` event each
//! (on the instance's session stream), recorded together with a row of
//! `stuck_reports` so that a message is reported once, across restarts.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::SqliteConnection;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::events::MessageStuck;
use crate::ids::{InstanceId, Jid, MessageId};
use crate::projections::stuck::{self, Waiting};
use crate::store::{Append, Metadata, StateChange, StreamId};

/// How far back a sweep after a start looks for messages not reported yet.
const LOOK_BACK: Duration = Duration::from_secs(7 * 24 * 3600);
/// Messages read per page of a sweep.
const PAGE: i64 = 500;

/// How often the watcher sweeps: a quarter of the threshold, between 100 ms and 30 s.
pub fn period(stuck_after: Duration) -> Duration {
    (stuck_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// Sweeps every [`period`] until `shutdown`.
pub async fn watch(state: AppState, shutdown: CancellationToken) {
    let every = period(state.config.stuck_after);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "stuck-message sweep failed; trying again");
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Reports every message of the last [`LOOK_BACK`] that is stuck now. A
/// message whose receipt came is no longer `sent` and so is never read; one
/// already reported is skipped. The whole window is read each time (the
/// index holds only waiting messages): a message the history applies late,
/// or one that waited in a paced queue, is still found.
async fn sweep(state: &AppState) -> anyhow::Result<()> {
    let now = now_ms();
    let cutoff = now - state.config.stuck_after.as_millis() as i64;
    let mut after = (now - LOOK_BACK.as_millis() as i64, 0);
    loop {
        let page = stuck::page(&state.views, after, cutoff, PAGE).await?;
        for w in &page {
            report(state, w).await?;
            after = (w.created_at, w.position);
        }
        if (page.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

/// Appends `message_stuck` for one message, unless it was reported before
/// or its instance no longer runs.
async fn report(state: &AppState, w: &Waiting) -> anyhow::Result<()> {
    let instance_id = InstanceId::from_stored(w.instance_id.clone());
    let Some(owner) = state.sessions.owner(&instance_id) else {
        return Ok(());
    };
    let known: Option<i64> = sqlx::query_scalar(
        "SELECT reported_at FROM stuck_reports WHERE instance_id = ? AND message_id = ?",
    )
    .bind(&w.instance_id)
    .bind(&w.message_id)
    .fetch_optional(state.store.pool())
    .await?;
    if known.is_some() {
        return Ok(());
    }
    let now = now_ms();
    let event = MessageStuck {
        instance_id: instance_id.clone(),
        message_id: MessageId::from_stored(w.message_id.clone()),
        to: Jid::from_raw(w.remote_jid.clone()),
        sent_at: w.created_at,
        waiting_secs: ((now - w.created_at).max(0) / 1000) as u64,
    };
    tracing::info!(instance = %w.instance_id, message = %w.message_id,
        waiting_secs = event.waiting_secs, "a sent message has no delivered receipt: stuck");
    state
        .store
        .append(
            Append::fact(StreamId::session(instance_id.as_str()))
                .scope(Some(owner.as_str()), Some(instance_id.as_str()))
                .metadata(Metadata::actor("stuck-watcher"))
                .event(event)
                .effect(Reported {
                    instance_id: w.instance_id.clone(),
                    message_id: w.message_id.clone(),
                    at: now,
                }),
        )
        .await?;
    Ok(())
}

/// The `stuck_reports` row of a reported message, written with its event.
struct Reported {
    instance_id: String,
    message_id: String,
    at: i64,
}

impl StateChange for Reported {
    fn apply<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO stuck_reports (instance_id, message_id, reported_at) VALUES (?, ?, ?)",
            )
            .bind(&self.instance_id)
            .bind(&self.message_id)
            .bind(self.at)
            .execute(conn)
            .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_come_often_enough_for_the_threshold_without_spinning() {
        assert_eq!(period(Duration::from_secs(600)), Duration::from_secs(30));
        assert_eq!(period(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(period(Duration::from_millis(1)), Duration::from_millis(100));
    }
}
