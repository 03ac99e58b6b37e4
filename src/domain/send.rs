//! A message on its way out: the request parsed into what to send, and the
//! `message_sent` fact built once the engine has taken it. Both pure; the
//! engine call in between is the supervisor's.

use crate::events::{MediaInfo, MediaKind, MessageQueued, MessageSent, SentKind};
use crate::ids::{InstanceId, Jid, MessageId};

use super::DomainError;
use crate::store::Effect;

/// Builds, from the id a send got, a state change to commit with its
/// `message_sent` (e.g. the idempotency key that answers for it from now on).
pub type OnRecord = Box<dyn FnOnce(&MessageId) -> Effect + Send>;

/// Longest text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 65_536;

/// A recipient from the API's `phone` field (a number or a full JID).
pub fn recipient(phone: &str) -> Result<Jid, DomainError> {
    Jid::parse_recipient(phone).map_err(|e| DomainError::Invalid(e.0))
}

/// A text to send: a recipient and 1 to [`MAX_TEXT_CHARS`] characters that
/// are not all white space.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingText {
    pub to: Jid,
    pub text: String,
}

impl OutgoingText {
    /// Parses the seed's `{phone, message}`.
    pub fn parse(phone: &str, message: &str) -> Result<Self, DomainError> {
        let to = recipient(phone)?;
        if message.trim().is_empty() {
            return Err(DomainError::invalid("message must not be empty"));
        }
        crate::domain::types::reject_control_chars(message, "message", true)
            .map_err(DomainError::Invalid)?;
        if message.chars().count() > MAX_TEXT_CHARS {
            return Err(DomainError::invalid(format!(
                "message must be at most {MAX_TEXT_CHARS} characters"
            )));
        }
        Ok(Self {
            to,
            text: message.to_string(),
        })
    }
}

/// What was sent, as `message_sent` records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent<'a> {
    Text(&'a str),
    Media {
        kind: MediaKind,
        mimetype: &'a str,
        file_name: Option<&'a str>,
        caption: Option<&'a str>,
        size: u64,
    },
}

/// The `message_sent` fact of a message the engine took at `timestamp` (Unix seconds).
pub fn message_sent(
    instance_id: &InstanceId,
    message_id: &MessageId,
    to: &Jid,
    sent: Sent<'_>,
    timestamp: i64,
) -> MessageSent {
    let (body, message_type, media) = match sent {
        Sent::Text(text) => (text.to_string(), SentKind::Text, None),
        Sent::Media {
            kind,
            mimetype,
            file_name,
            caption,
            size,
        } => (
            caption.unwrap_or_default().to_string(),
            kind.into(),
            Some(MediaInfo {
                kind,
                mimetype: mimetype.to_string(),
                file_name: file_name.map(str::to_string),
                size,
            }),
        ),
    };
    MessageSent {
        instance_id: instance_id.clone(),
        message_id: message_id.clone(),
        to: to.clone(),
        body,
        message_type,
        timestamp,
        has_media: media.is_some(),
        media,
        extras: Default::default(),
    }
}

/// The `message_queued` fact of a message held back by pacing at `timestamp` (Unix seconds).
pub fn message_queued(
    instance_id: &InstanceId,
    message_id: &MessageId,
    to: &Jid,
    sent: Sent<'_>,
    timestamp: i64,
) -> MessageQueued {
    let s = message_sent(instance_id, message_id, to, sent, timestamp);
    MessageQueued {
        instance_id: s.instance_id,
        message_id: s.message_id,
        to: s.to,
        body: s.body,
        message_type: s.message_type,
        timestamp: s.timestamp,
        has_media: s.has_media,
        media: s.media,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_needs_a_recipient_and_some_words() {
        let ok = OutgoingText::parse("+7 900 123-45-67", "你好！").unwrap();
        assert_eq!(ok.to.as_str(), "79001234567@s.whatsapp.net");
        for (phone, text) in [("123", "hi"), ("79001234567", "  \n "), ("79001234567", "")] {
            assert!(matches!(
                OutgoingText::parse(phone, text),
                Err(DomainError::Invalid(_))
            ));
        }
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(OutgoingText::parse("79001234567", &long).is_err());
        assert!(OutgoingText::parse("79001234567", &long[1..]).is_ok());
    }

    #[test]
    fn a_sent_text_is_recorded_as_text_without_media() {
        let e = message_sent(
            &InstanceId::from_stored("i"),
            &MessageId::from_stored("m"),
            &Jid::from_phone("79001234567"),
            Sent::Text("hello"),
            7,
        );
        assert_eq!(
            (e.body.as_str(), e.message_type, e.has_media),
            ("hello", SentKind::Text, false)
        );
        assert_eq!(e.timestamp, 7);
    }

    #[test]
    fn sent_media_records_its_kind_size_and_caption() {
        let e = message_sent(
            &InstanceId::from_stored("i"),
            &MessageId::from_stored("m"),
            &Jid::from_phone("79001234567"),
            Sent::Media {
                kind: MediaKind::Image,
                mimetype: "image/png",
                file_name: Some("a.png"),
                caption: Some("look"),
                size: 42,
            },
            7,
        );
        assert_eq!(e.message_type, SentKind::Image);
        assert_eq!(e.body, "look");
        assert_eq!(serde_json::to_value(&e).unwrap()["type"], "image");
        let media = e.media.unwrap();
        assert_eq!((media.kind, media.size), (MediaKind::Image, 42));
    }
}
