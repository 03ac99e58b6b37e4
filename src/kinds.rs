//! Message kinds beyond the seed's text and media: the typed values that
//! sends, engines, events, webhooks and history share (replies and
//! mentions, locations, contact cards, polls, reactions, edits, revokes,
//! poll votes, typing presence), and the log events of the happenings that
//! are not new messages. The catalog in [`crate::events`] lists the events.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, Jid, MessageId};

/// WhatsApp's edit window: a text can be edited this long after it was sent.
pub const EDIT_WINDOW_SECS: i64 = 15 * 60;

/// Fewest and most options of a poll.
pub const POLL_OPTIONS: std::ops::RangeInclusive<usize> = 2..=12;

/// A location pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// Degrees, -90 to 90.
    pub latitude: f64,
    /// Degrees, -180 to 180.
    pub longitude: f64,
    /// The place's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The place's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A contact card: the shown name and the vCard itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactCard {
    pub display_name: String,
    /// vCard 3.0 text.
    pub vcard: String,
}

/// A poll as created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollSpec {
    pub question: String,
    /// 2 to 12 distinct option names.
    pub options: Vec<String>,
    /// How many options a voter may pick: 1 (single choice) or the number of
    /// options (multiple choice).
    pub selectable_count: u32,
}

/// The parts of a message beyond its text and media (all optional; absent
/// from the JSON when not there, so the seed's message events keep their shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageExtras {
    /// The message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_message_id: Option<MessageId>,
    /// The JIDs the message mentions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Jid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactCard>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollSpec>,
}

impl MessageExtras {
    /// Whether nothing beyond text and media is there.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Typing presence in a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatState {
    /// Typing a text.
    Typing,
    /// Recording a voice note.
    Recording,
    /// Stopped typing or recording.
    Paused,
}

impl ChatState {
    /// The state's name in events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Typing => "typing",
            Self::Recording => "recording",
            Self::Paused => "paused",
        }
    }
}

/// Someone (or this account, `fromMe`) reacted to a message, or removed
/// their reaction (`emoji` empty). Not a new message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageReaction {
    pub instance_id: InstanceId,
    /// The reaction's own message id.
    pub message_id: MessageId,
    /// The chat of the message reacted to.
    pub chat: Jid,
    /// Who reacted.
    pub from: Jid,
    pub from_me: bool,
    /// The message reacted to.
    pub target_message_id: MessageId,
    /// The emoji; empty when the reaction was removed.
    pub emoji: String,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A text was edited (by its sender). Not a new message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEdited {
    pub instance_id: InstanceId,
    /// The edited message.
    pub message_id: MessageId,
    pub chat: Jid,
    /// Who edited it (its sender).
    pub from: Jid,
    pub from_me: bool,
    /// The new text.
    pub text: String,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A message was deleted for everyone (revoked) by its sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageRevoked {
    pub instance_id: InstanceId,
    /// The deleted message.
    pub message_id: MessageId,
    pub chat: Jid,
    /// Who deleted it.
    pub from: Jid,
    pub from_me: bool,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A vote on a poll: the voter's whole current choice (empty: vote withdrawn).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollVoted {
    pub instance_id: InstanceId,
    /// The poll.
    pub poll_message_id: MessageId,
    pub chat: Jid,
    pub voter: Jid,
    pub from_me: bool,
    /// The option names chosen.
    pub selected_options: Vec<String>,
    /// Unix seconds.
    pub timestamp: i64,
}

/// Someone is typing, recording or stopped in a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatPresence {
    pub instance_id: InstanceId,
    pub chat: Jid,
    pub from: Jid,
    pub state: ChatState,
}

/// Messages of a chat were marked read through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMarkedRead {
    pub instance_id: InstanceId,
    pub chat: Jid,
    pub message_ids: Vec<MessageId>,
}

/// This account showed typing, recording or paused in a chat through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatStateSent {
    pub instance_id: InstanceId,
    pub chat: Jid,
    pub state: ChatState,
}

/// This account went online (`available`) or offline through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceSet {
    pub instance_id: InstanceId,
    pub available: bool,
}

/// A happening an engine reports that is not a new message; the supervisor
/// turns it into its log event.
#[derive(Debug, Clone, PartialEq)]
pub enum Happening {
    Reaction {
        message_id: MessageId,
        chat: Jid,
        from: Jid,
        from_me: bool,
        target_message_id: MessageId,
        emoji: String,
        timestamp: i64,
    },
    Edit {
        message_id: MessageId,
        chat: Jid,
        from: Jid,
        from_me: bool,
        text: String,
        timestamp: i64,
    },
    Revoke {
        message_id: MessageId,
        chat: Jid,
        from: Jid,
        from_me: bool,
        timestamp: i64,
    },
    PollVote {
        poll_message_id: MessageId,
        chat: Jid,
        voter: Jid,
        from_me: bool,
        selected_options: Vec<String>,
        timestamp: i64,
    },
    Presence {
        chat: Jid,
        from: Jid,
        state: ChatState,
    },
}

impl Happening {
    /// The log event of the happening on `instance_id`.
    pub fn into_event(self, instance_id: InstanceId) -> crate::events::Event {
        match self {
            Happening::Reaction {
                message_id,
                chat,
                from,
                from_me,
                target_message_id,
                emoji,
                timestamp,
            } => MessageReaction {
                instance_id,
                message_id,
                chat,
                from,
                from_me,
                target_message_id,
                emoji,
                timestamp,
            }
            .into(),
            Happening::Edit {
                message_id,
                chat,
                from,
                from_me,
                text,
                timestamp,
            } => MessageEdited {
                instance_id,
                message_id,
                chat,
                from,
                from_me,
                text,
                timestamp,
            }
            .into(),
            Happening::Revoke {
                message_id,
                chat,
                from,
                from_me,
                timestamp,
            } => MessageRevoked {
                instance_id,
                message_id,
                chat,
                from,
                from_me,
                timestamp,
            }
            .into(),
            Happening::PollVote {
                poll_message_id,
                chat,
                voter,
                from_me,
                selected_options,
                timestamp,
            } => PollVoted {
                instance_id,
                poll_message_id,
                chat,
                voter,
                from_me,
                selected_options,
                timestamp,
            }
            .into(),
            Happening::Presence { chat, from, state } => ChatPresence {
                instance_id,
                chat,
                from,
                state,
            }
            .into(),
        }
    }
}

/// The kind a message counts under in statistics, from its type name (sent
/// kinds and WhatsApp's received type names alike).
pub fn stats_kind(message_type: &str) -> &'static str {
    match message_type {
        "text" | "conversation" | "extendedText" => "text",
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        "voice" | "ptt" => "voice",
        "document" => "document",
        "sticker" => "sticker",
        "location" | "liveLocation" => "location",
        "contact" | "contactsArray" => "contact",
        "poll" => "poll",
        _ => "other",
    }
}

/// Escapes a vCard property value (backslash, comma, semicolon, newline).
fn vcard_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A vCard 3.0 for `name` with its phone numbers (digits only, each with
/// WhatsApp's `waid` so that the card opens a chat).
pub fn build_vcard(name: &str, numbers: &[String]) -> String {
    let mut v = String::from("BEGIN:VCARD\r\nVERSION:3.0\r\n");
    let escaped = vcard_escape(name);
    v.push_str(&format!("N:;{escaped};;;\r\nFN:{escaped}\r\n"));
    for n in numbers {
        v.push_str(&format!("TEL;type=CELL;type=VOICE;waid={n}:+{n}\r\n"));
    }
    v.push_str("END:VCARD\r\n");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vcard_carries_the_name_escaped_and_every_number_with_its_waid() {
        let v = build_vcard(
            "Ivan; the, first",
            &["79001234567".into(), "4915112345678".into()],
        );
        assert!(v.starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\n"), "{v}");
        assert!(v.contains("FN:Ivan\\; the\\, first\r\n"), "{v}");
        assert!(v.contains("TEL;type=CELL;type=VOICE;waid=79001234567:+79001234567\r\n"));
        assert!(v.contains("waid=4915112345678:+4915112345678"));
        assert!(v.ends_with("END:VCARD\r\n"));
    }

    #[test]
    fn empty_extras_leave_no_field_in_the_json() {
        let json = serde_json::to_value(MessageExtras::default()).unwrap();
        assert_eq!(json, serde_json::json!({}));
    }

    #[test]
    fn received_and_sent_type_names_count_under_one_kind() {
        assert_eq!(stats_kind("conversation"), "text");
        assert_eq!(stats_kind("text"), "text");
        assert_eq!(stats_kind("ptt"), "voice");
        assert_eq!(stats_kind("voice"), "voice");
        assert_eq!(stats_kind("pollUpdate"), "other");
    }
}
