//! Per-instance session health, folded from the log's events as they are
//! committed (fed by the metrics [`super::tap`]): when a message last went
//! out or came in, the reconnects of the last hour, the last failed connect
//! attempt in plain words. In memory, since the process started; the
//! supervisor adds what only it knows (when WhatsApp was last heard from, the
//! current backoff).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use crate::events::Event;
use crate::store::RecordedEvent;

/// How far back reconnects are counted.
fn reconnect_window() -> Duration {
    Duration::hours(1)
}

/// What the log says of one instance's session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The last `message_sent` or `message_received`.
    pub last_message_at: Option<DateTime<Utc>>,
    /// `connection_closed` with `willReconnect` in the last hour.
    pub reconnects: VecDeque<DateTime<Utc>>,
    /// The last `connect_failed` since the last `connection_opened`: what, when, which attempt.
    pub last_connect_error: Option<ConnectError>,
}

/// A failed connect attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    pub error: String,
    pub at: DateTime<Utc>,
    pub attempt: u32,
}

/// Every instance's [`Facts`], by instance id.
#[derive(Default)]
pub struct HealthBook {
    by_instance: Mutex<HashMap<String, Facts>>,
}

impl HealthBook {
    /// Folds one committed event in.
    pub fn observe(&self, e: &RecordedEvent) {
        let (Some(event), Some(instance)) = (&e.event, e.instance_id.as_deref()) else {
            return;
        };
        let at = e.recorded_at;
        let mut map = self.by_instance.lock().expect("health lock");
        if matches!(event, Event::InstanceDeleted(_)) {
            map.remove(instance);
            return;
        }
        let relevant = matches!(
            event,
            Event::MessageSent(_)
                | Event::MessageReceived(_)
                | Event::ConnectionClosed(_)
                | Event::ConnectionOpened(_)
                | Event::ConnectFailed(_)
        );
        if !relevant {
            return;
        }
        let facts = map.entry(instance.to_string()).or_default();
        match event {
            Event::MessageSent(_) | Event::MessageReceived(_) => {
                facts.last_message_at = facts.last_message_at.max(Some(at));
            }
            Event::ConnectionClosed(c) if c.will_reconnect => {
                facts.reconnects.push_back(at);
                prune(&mut facts.reconnects, Utc::now());
            }
            Event::ConnectionOpened(_) => facts.last_connect_error = None,
            Event::ConnectFailed(f) => {
                facts.last_connect_error = Some(ConnectError {
                    error: f.error.clone(),
                    at,
                    attempt: f.attempt,
                });
            }
            _ => {}
        }
    }

    /// What is known of an instance now (reconnects older than an hour dropped).
    pub fn facts(&self, instance_id: &str) -> Facts {
        let mut map = self.by_instance.lock().expect("health lock");
        match map.get_mut(instance_id) {
            Some(f) => {
                prune(&mut f.reconnects, Utc::now());
                f.clone()
            }
            None => Facts::default(),
        }
    }
}

/// Drops reconnects older than the window.
fn prune(times: &mut VecDeque<DateTime<Utc>>, now: DateTime<Utc>) {
    while times.front().is_some_and(|t| now - *t > reconnect_window()) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ConnectFailed, ConnectionClosed, ConnectionOpened, ReasonCode};
    use crate::ids::InstanceId;

    fn recorded(event: Event, at: DateTime<Utc>) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            event_id: "e".into(),
            stream_id: "session-i1".into(),
            version: 1,
            event_type: event.event_type().into(),
            schema_version: 1,
            user_id: None,
            instance_id: Some("i1".into()),
            data: crate::store::EventData::from_raw(event.to_raw()),
            metadata: Default::default(),
            recorded_at: at,
            event: Some(event),
        }
    }

    #[test]
    fn a_connect_error_shows_until_a_connection_opens_and_old_reconnects_age_out() {
        let book = HealthBook::default();
        let id = InstanceId::from_stored("i1");
        let now = Utc::now();
        let closed = |at| {
            recorded(
                ConnectionClosed {
                    instance_id: id.clone(),
                    reason: ReasonCode::KeepaliveTimeout.into(),
                    will_reconnect: true,
                }
                .into(),
                at,
            )
        };
        book.observe(&closed(now - Duration::minutes(90)));
        book.observe(&closed(now - Duration::minutes(5)));
        book.observe(&recorded(
            ConnectFailed {
                instance_id: id.clone(),
                error: "DNS lookup failed for web.whatsapp.com".into(),
                attempt: 2,
                retry_in_ms: None,
            }
            .into(),
            now,
        ));
        let f = book.facts("i1");
        assert_eq!(f.reconnects.len(), 1);
        assert_eq!(
            f.last_connect_error.map(|e| e.error).as_deref(),
            Some("DNS lookup failed for web.whatsapp.com")
        );
        book.observe(&recorded(
            ConnectionOpened {
                instance_id: id.clone(),
                phone: None,
            }
            .into(),
            now,
        ));
        assert_eq!(book.facts("i1").last_connect_error, None);
    }
}
