//! From log events to webhook bodies: which events are sent under which
//! notify flag, and the seed's exact `{event, data, timestamp}` shape.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::api_time;
use crate::events::{DeliveryStatus, Event, SentKind, SessionReason};
use crate::ids::{InstanceId, Jid, MessageId};
use crate::kinds::MessageExtras;

/// The notify flags and the switch a delivery decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filters {
    pub notify_received: bool,
    pub notify_sent: bool,
    pub notify_delivery: bool,
    pub notify_read: bool,
}

/// The seed's `message_received` data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReceivedData<'a> {
    instance_id: &'a InstanceId,
    message_id: &'a MessageId,
    from: &'a Jid,
    body: &'a str,
    #[serde(rename = "type")]
    message_type: &'a str,
    timestamp: i64,
    has_media: bool,
    push_name: Option<&'a str>,
    /// The sender's LID, only when the message came from one (beyond the seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    from_lid: Option<&'a Jid>,
    /// The group, only on group messages (beyond the seed; `from` is then the member).
    #[serde(skip_serializing_if = "Option::is_none")]
    chat: Option<&'a Jid>,
    /// The group member who sent it, only on group messages (beyond the seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    participant: Option<&'a Jid>,
    /// Reply, mentions, location, contact card, poll: only those present (beyond the seed).
    #[serde(flatten)]
    extras: &'a MessageExtras,
}

/// The seed's `message_sent` data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SentData<'a> {
    instance_id: &'a InstanceId,
    message_id: &'a MessageId,
    to: &'a Jid,
    body: &'a str,
    #[serde(rename = "type")]
    message_type: SentKind,
    timestamp: i64,
    has_media: bool,
    /// Reply, mentions, location, contact card, poll: only those present (beyond the seed).
    #[serde(flatten)]
    extras: &'a MessageExtras,
}

/// The seed's `message_status` data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusData<'a> {
    instance_id: &'a InstanceId,
    message_id: &'a MessageId,
    status: DeliveryStatus,
    from: &'a Jid,
    from_me: bool,
    /// Only on `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// The seed's `connection_opened` data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OpenedData<'a> {
    instance_id: &'a InstanceId,
}

/// The seed's `connection_closed` data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClosedData<'a> {
    instance_id: &'a InstanceId,
    reason: &'a SessionReason,
    will_reconnect: bool,
}

/// The seed's `qr_received` data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QrData<'a> {
    instance_id: &'a InstanceId,
    qr_code: &'a str,
}

/// `pair_code_received` data (beyond the seed, shaped like `qr_received`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PairCodeData<'a> {
    instance_id: &'a InstanceId,
    pair_code: &'a str,
    phone: &'a str,
}

/// The whole body, fields in the seed's order.
#[derive(Serialize)]
struct Body<'a, D: Serialize> {
    event: &'a str,
    data: D,
    timestamp: String,
}

fn body<D: Serialize>(event: &str, data: D, at: DateTime<Utc>) -> String {
    serde_json::to_string(&Body {
        event,
        data,
        timestamp: api_time(at),
    })
    .expect("webhook bodies serialize")
}

/// Whether `event` is one of the webhook events (the seed's six, and the
/// group events) and passes the filters;
/// if so, its webhook event name and the exact body bytes to send.
///
/// `message_status`: `delivered` (and `sent`, the server's ack, the first
/// step of delivery) need `notifyDelivery`; `read` and `played` need `notifyRead`.
pub fn render(
    event: &Event,
    filters: Filters,
    at: DateTime<Utc>,
) -> Option<(&'static str, String)> {
    let name = event.event_type();
    let json = match event {
        Event::MessageReceived(e) if filters.notify_received => body(
            name,
            ReceivedData {
                instance_id: &e.instance_id,
                message_id: &e.message_id,
                from: &e.from,
                from_lid: e.from_lid.as_ref(),
                chat: e.chat.is_group().then_some(&e.chat),
                participant: e.participant.as_ref(),
                body: &e.body,
                message_type: &e.message_type,
                timestamp: e.timestamp,
                has_media: e.has_media,
                push_name: e.push_name.as_deref(),
                extras: &e.extras,
            },
            at,
        ),
        Event::MessageSent(e) if filters.notify_sent => body(
            name,
            SentData {
                instance_id: &e.instance_id,
                message_id: &e.message_id,
                to: &e.to,
                body: &e.body,
                message_type: e.message_type,
                timestamp: e.timestamp,
                has_media: e.has_media,
                extras: &e.extras,
            },
            at,
        ),
        Event::MessageStatus(e) => {
            let wanted = match e.status {
                DeliveryStatus::Sent | DeliveryStatus::Delivered => filters.notify_delivery,
                DeliveryStatus::Read | DeliveryStatus::Played => filters.notify_read,
                // A send that never arrived (refused, never acknowledged, or a
                // queued message that never went out): news for whoever
                // follows sends or their delivery.
                DeliveryStatus::Failed => filters.notify_sent || filters.notify_delivery,
            };
            if !wanted {
                return None;
            }
            body(
                name,
                StatusData {
                    instance_id: &e.instance_id,
                    message_id: &e.message_id,
                    status: e.status,
                    from: &e.from,
                    from_me: e.from_me,
                    reason: e.reason.as_deref(),
                },
                at,
            )
        }
        Event::ConnectionOpened(e) => body(
            name,
            OpenedData {
                instance_id: &e.instance_id,
            },
            at,
        ),
        Event::ConnectionClosed(e) => body(
            name,
            ClosedData {
                instance_id: &e.instance_id,
                reason: &e.reason,
                will_reconnect: e.will_reconnect,
            },
            at,
        ),
        Event::QrReceived(e) => body(
            name,
            QrData {
                instance_id: &e.instance_id,
                qr_code: &e.qr_code,
            },
            at,
        ),
        Event::PairCodeReceived(e) => body(
            name,
            PairCodeData {
                instance_id: &e.instance_id,
                pair_code: &e.pair_code,
                phone: &e.phone,
            },
            at,
        ),
        // Group changes (opt-in, `webhookEvents`): the event's own payload.
        Event::GroupUpdated(e) => body(name, e, at),
        Event::GroupParticipantsChanged(e) => body(name, e, at),
        // Opt-in (`webhookEvents`): the event's own payload.
        Event::MessageStuck(e) => body(name, e, at),
        // Opt-in event types (the intake sends them only to instances that
        // list them in `webhookEvents`): the event's own payload as `data`.
        Event::MessageReaction(e) => body(name, e, at),
        Event::MessageEdited(e) => body(name, e, at),
        Event::MessageRevoked(e) => body(name, e, at),
        Event::PollVoted(e) => body(name, e, at),
        Event::ChatPresence(e) => body(name, e, at),
        _ => return None,
    };
    Some((name, json))
}

/// Whether an event type can ever become a webhook (cheap pre-filter before
/// decoding): one of the seed's six, or an opt-in type ([`super::opt_in`]).
pub fn is_webhook_event(event_type: &str) -> bool {
    is_seed_event(event_type) || super::opt_in::is_opt_in(event_type)
}

/// Whether an event type is one of the seed's six webhook events.
pub fn is_seed_event(event_type: &str) -> bool {
    matches!(
        event_type,
        "message_received"
            | "message_sent"
            | "message_status"
            | "connection_opened"
            | "connection_closed"
            | "qr_received"
            | "pair_code_received"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{MessageReceived, MessageStatus};

    const ALL: Filters = Filters {
        notify_received: true,
        notify_sent: true,
        notify_delivery: true,
        notify_read: true,
    };

    fn status(s: &str) -> Event {
        MessageStatus {
            instance_id: "i".into(),
            message_id: "m".into(),
            status: DeliveryStatus::parse(s).expect("a status"),
            from: "1@s.whatsapp.net".into(),
            from_me: true,
            reason: None,
        }
        .into()
    }

    #[test]
    fn message_received_has_exactly_the_seed_fields_in_order() {
        let e: Event = MessageReceived {
            instance_id: "i".into(),
            message_id: "m".into(),
            from: "79001234567@s.whatsapp.net".into(),
            from_lid: None,
            participant: None,
            chat: "79001234567@s.whatsapp.net".into(),
            body: "hi".into(),
            message_type: "conversation".into(),
            timestamp: 1672531200,
            has_media: false,
            push_name: Some("Ivan".into()),
            media: None,
            extras: Default::default(),
        }
        .into();
        let at = crate::store::ms_to_time(1672574400000);
        let (name, body) = render(&e, ALL, at).unwrap();
        assert_eq!(name, "message_received");
        assert_eq!(
            body,
            r#"{"event":"message_received","data":{"instanceId":"i","messageId":"m","from":"79001234567@s.whatsapp.net","body":"hi","type":"conversation","timestamp":1672531200,"hasMedia":false,"pushName":"Ivan"},"timestamp":"2023-01-01T12:00:00.000Z"}"#
        );
        let off = Filters {
            notify_received: false,
            ..ALL
        };
        assert!(render(&e, off, at).is_none());
    }

    #[test]
    fn status_filters_follow_delivery_and_read_flags() {
        let at = Utc::now();
        let delivery_only = Filters {
            notify_read: false,
            notify_sent: false,
            ..ALL
        };
        let read_only = Filters {
            notify_delivery: false,
            notify_sent: false,
            ..ALL
        };
        for (s, d, r) in [
            ("sent", true, false),
            ("delivered", true, false),
            ("read", false, true),
            ("played", false, true),
            ("failed", true, false),
        ] {
            assert_eq!(render(&status(s), delivery_only, at).is_some(), d, "{s}");
            assert_eq!(render(&status(s), read_only, at).is_some(), r, "{s}");
        }
        // A send that never arrived is news for whoever follows sends, too.
        let sent_only = Filters {
            notify_delivery: false,
            notify_read: false,
            ..ALL
        };
        assert!(render(&status("failed"), sent_only, at).is_some());
        assert!(render(&status("delivered"), sent_only, at).is_none());
    }

    #[test]
    fn a_failed_status_carries_its_reason_and_others_have_no_reason_field() {
        let at = Utc::now();
        let mut e = status("failed");
        if let Event::MessageStatus(m) = &mut e {
            m.reason = Some("no_server_ack".into());
        }
        let (_, body) = render(&e, ALL, at).expect("rendered");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"]["status"], "failed");
        assert_eq!(v["data"]["reason"], "no_server_ack");
        let (_, body) = render(&status("read"), ALL, at).expect("rendered");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["data"].get("reason").is_none(), "{v}");
    }
}
