//! The dispatcher's intake: a [`Consumer`] of the log that keeps each
//! instance's webhook settings as of the log and turns the seed's six webhook
//! events, and the opt-in ones an instance lists, into queued deliveries, in the same transaction as its checkpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;

use super::deliveries::{self, NewDelivery, Settings};
use super::opt_in;
use super::payload::{self, Filters};
use super::worker::{Shared, now_ms};
use crate::backbone::{Consumer, load_checkpoint, save_checkpoint};
use crate::events::Event;
use crate::store::SharedEvent;

/// The checkpoint name of the intake.
pub const NAME: &str = "webhooks";

/// The `webhook-id` of the delivery of a log event (stable across attempts and restarts).
pub fn webhook_id(event_id: &str) -> String {
    format!("msg_{}", event_id.replace('-', ""))
}

/// The log consumer that queues deliveries.
pub struct Intake {
    pub(crate) shared: Arc<Shared>,
}

#[async_trait]
impl Consumer for Intake {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn checkpoint(&self) -> anyhow::Result<i64> {
        Ok(load_checkpoint(&self.shared.db, NAME).await?)
    }

    async fn apply(&self, events: &[SharedEvent]) -> anyhow::Result<()> {
        // The recorder writes this database too: take the write lock up front
        // (a read-then-write transaction could fail with a stale snapshot).
        let _guard = self.shared.write_lock.lock().await;
        let mut tx = self.shared.db.begin_with("BEGIN IMMEDIATE").await?;
        let checkpoint = load_checkpoint(&mut *tx, NAME).await?;
        // instance id -> whether its lane must re-read its queue from the start.
        let mut touched: BTreeMap<String, bool> = BTreeMap::new();
        // The settings of every instance with a webhook event in the batch,
        // read at once; a settings event in the batch drops its entry, and
        // the next event of that instance reads it again.
        let wanted: BTreeSet<&str> = events
            .iter()
            .filter(|e| {
                e.position > checkpoint.max(self.shared.deliver_from)
                    && payload::is_webhook_event(&e.event_type)
            })
            .filter_map(|e| e.instance_id.as_deref())
            .collect();
        let wanted: Vec<&str> = wanted.into_iter().collect();
        let mut found = deliveries::settings_of(&mut tx, &wanted).await?;
        let mut settings_cache: HashMap<String, Option<Settings>> = wanted
            .iter()
            .map(|id| (id.to_string(), found.remove(*id)))
            .collect();
        let mut last = checkpoint;
        let now = now_ms();
        for e in events.iter().filter(|e| e.position > checkpoint) {
            last = e.position;
            // Decoded once by the log (or the NATS consumer); one this build
            // cannot read is skipped, not retried forever.
            let Some(event) = &e.event else { continue };
            // What the event changes of its instance's webhook settings, and
            // whether its pending deliveries are cancelled (and why).
            let change = match event {
                Event::InstanceCreated(c) => {
                    deliveries::upsert_settings(
                        &mut tx,
                        c.instance_id.as_str(),
                        c.user_id.as_str(),
                        &c.webhook,
                    )
                    .await?;
                    Some((c.instance_id.as_str(), None))
                }
                Event::InstanceUpdated(u) => {
                    deliveries::upsert_settings(
                        &mut tx,
                        u.instance_id.as_str(),
                        u.user_id.as_str(),
                        &u.webhook,
                    )
                    .await?;
                    let off = !u.webhook.enabled || u.webhook.url.is_none();
                    Some((u.instance_id.as_str(), off.then_some("webhook disabled")))
                }
                Event::WebhookDisabled(d) => {
                    deliveries::disable_settings(&mut tx, d.instance_id.as_str()).await?;
                    Some((d.instance_id.as_str(), Some("webhook disabled")))
                }
                Event::InstanceDeleted(d) => {
                    deliveries::delete_settings(&mut tx, d.instance_id.as_str()).await?;
                    Some((d.instance_id.as_str(), Some("instance deleted")))
                }
                _ => None,
            };
            if let Some((instance_id, cancel)) = change {
                settings_cache.remove(instance_id);
                if let Some(reason) = cancel
                    && deliveries::cancel_pending(&mut tx, instance_id, reason, now).await? > 0
                {
                    touched.insert(instance_id.to_string(), true);
                }
                continue;
            }
            if !payload::is_webhook_event(&e.event_type) || e.position <= self.shared.deliver_from {
                continue;
            }
            let Some(instance_id) = e.instance_id.as_deref() else {
                continue;
            };
            let settings = match settings_cache.get(instance_id) {
                Some(s) => s.clone(),
                None => {
                    let s = deliveries::settings(&mut tx, instance_id).await?;
                    settings_cache.insert(instance_id.to_string(), s.clone());
                    s
                }
            };
            let Some(s) = settings else { continue };
            let Some(url) = s.url.as_deref().filter(|_| s.enabled) else {
                continue;
            };
            if !opt_in::wanted(&e.event_type, &s.events) {
                continue;
            }
            let filters = Filters {
                notify_received: s.notify_received,
                notify_sent: s.notify_sent,
                notify_delivery: s.notify_delivery,
                notify_read: s.notify_read,
            };
            let Some((name, body)) = payload::render(event, filters, e.recorded_at) else {
                continue;
            };
            let id = uuid::Uuid::now_v7().to_string();
            let wid = webhook_id(&e.event_id);
            deliveries::insert(
                &mut tx,
                &NewDelivery {
                    id: &id,
                    instance_id,
                    user_id: &s.user_id,
                    event_id: &e.event_id,
                    event_position: e.position,
                    event: name,
                    webhook_id: &wid,
                    url,
                    body: &body,
                    max_retries: s.max_retries,
                    retry_interval: s.retry_interval,
                    now_ms: now,
                },
            )
            .await?;
            touched.entry(instance_id.to_string()).or_insert(false);
        }
        if last > checkpoint {
            save_checkpoint(&mut tx, NAME, last).await?;
        }
        tx.commit().await?;
        self.shared.checkpointer.committed();
        for (instance_id, reset) in touched {
            self.shared.wake(&instance_id, reset);
        }
        Ok(())
    }
}
