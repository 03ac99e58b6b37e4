//! Message kinds on the command side: the sends' input parsed into typed
//! content (locations, contact cards, polls, voice notes, stickers), and the
//! pure decisions on reactions, edits and revokes of an earlier message
//! (found in the log by [`find_message`]).

use sqlx::SqlitePool;

use crate::ids::{InstanceId, Jid, MessageId};
use crate::kinds::{ChatState, ContactCard, EDIT_WINDOW_SECS, Location, POLL_OPTIONS, PollSpec};
use crate::store::StreamId;

use super::DomainError;
use super::types::reject_control_chars;

/// Longest poll question and option, in characters.
pub const MAX_POLL_TEXT: usize = 255;
/// Longest location name or address, and contact name, in characters.
pub const MAX_LABEL: usize = 1_000;
/// Most mentions in one message.
pub const MAX_MENTIONS: usize = 256;
/// Most phone numbers on one contact card.
pub const MAX_CARD_NUMBERS: usize = 10;
/// Most message ids in one mark-read.
pub const MAX_READ_IDS: usize = 500;
/// Size cap of a voice note (WhatsApp's audio limit).
pub const MAX_VOICE_BYTES: u64 = 16 * 1024 * 1024;
/// Size cap of a sticker (WhatsApp's animated-sticker limit).
pub const MAX_STICKER_BYTES: u64 = 500 * 1024;

/// An earlier message of the instance, as the log recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownMessage {
    pub message_id: MessageId,
    /// The chat it is in.
    pub chat: Jid,
    /// Sent by this instance.
    pub from_me: bool,
    /// Who wrote it (`None` for our own).
    pub sender: Option<Jid>,
    /// Its type (`text`, `conversation`, `image`, ...).
    pub message_type: String,
    /// Its text or caption.
    pub body: String,
    /// When it was sent or received, Unix seconds.
    pub timestamp: i64,
}

/// The instance's message `message_id` (sent or received), if the log has it.
pub async fn find_message(
    pool: &SqlitePool,
    instance_id: &InstanceId,
    message_id: &str,
) -> Result<Option<KnownMessage>, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT event_type, data FROM events \
         WHERE stream_id = ? AND json_extract(data, '$.messageId') = ? \
         AND event_type IN ('message_sent', 'message_received') ORDER BY position LIMIT 1",
    )
    .bind(StreamId::session(instance_id.as_str()).as_str())
    .bind(message_id)
    .fetch_optional(pool)
    .await?;
    let Some((event_type, data)) = row else {
        return Ok(None);
    };
    let v: serde_json::Value =
        serde_json::from_str(&data).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let from_me = event_type == "message_sent";
    Ok(Some(KnownMessage {
        message_id: MessageId::from_stored(message_id),
        chat: Jid::from_raw(if from_me { s("to") } else { s("chat") }),
        from_me,
        sender: (!from_me).then(|| Jid::from_raw(s("from"))),
        message_type: s("type"),
        body: s("body"),
        timestamp: v["timestamp"].as_i64().unwrap_or_default(),
    }))
}

/// The message a reaction, edit, revoke or reply names: 404 when unknown.
pub fn require_known(found: Option<KnownMessage>, id: &str) -> Result<KnownMessage, DomainError> {
    found.ok_or_else(|| DomainError::not_found(format!("Message {id} not found in this instance")))
}

/// Whether a text message may be edited at `now` (Unix seconds): only our
/// own texts, within WhatsApp's edit window (409 otherwise).
pub fn decide_edit(target: &KnownMessage, now: i64) -> Result<(), DomainError> {
    if !target.from_me {
        return Err(DomainError::conflict(
            "Only messages sent by this instance can be edited",
        ));
    }
    if !matches!(
        target.message_type.as_str(),
        "text" | "conversation" | "extendedText"
    ) {
        return Err(DomainError::conflict("Only text messages can be edited"));
    }
    if now - target.timestamp > EDIT_WINDOW_SECS {
        return Err(DomainError::conflict(format!(
            "The edit window of {} minutes has passed",
            EDIT_WINDOW_SECS / 60
        )));
    }
    Ok(())
}

/// Whether a message may be deleted for everyone: only our own (409 otherwise).
pub fn decide_revoke(target: &KnownMessage) -> Result<(), DomainError> {
    if !target.from_me {
        return Err(DomainError::conflict(
            "Only messages sent by this instance can be deleted for everyone",
        ));
    }
    Ok(())
}

/// A text field: trimmed-not-empty when `required`, at most `max`
/// characters, no control characters but newlines and tabs.
pub fn parse_text(raw: &str, field: &str, max: usize) -> Result<String, DomainError> {
    if raw.trim().is_empty() {
        return Err(DomainError::invalid(format!("{field} must not be empty")));
    }
    if raw.chars().count() > max {
        return Err(DomainError::invalid(format!(
            "{field} must be at most {max} characters"
        )));
    }
    reject_control_chars(raw, field, true).map_err(DomainError::Invalid)?;
    Ok(raw.to_string())
}

/// An optional label: empty as none.
fn parse_label(raw: Option<&str>, field: &str) -> Result<Option<String>, DomainError> {
    match raw.filter(|s| !s.trim().is_empty()) {
        Some(s) => parse_text(s, field, MAX_LABEL).map(Some),
        None => Ok(None),
    }
}

/// A location: latitude -90..90, longitude -180..180 (finite), optional name and address.
pub fn parse_location(
    latitude: f64,
    longitude: f64,
    name: Option<&str>,
    address: Option<&str>,
) -> Result<Location, DomainError> {
    if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
        return Err(DomainError::invalid("latitude must be between -90 and 90"));
    }
    if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
        return Err(DomainError::invalid(
            "longitude must be between -180 and 180",
        ));
    }
    Ok(Location {
        latitude,
        longitude,
        name: parse_label(name, "name")?,
        address: parse_label(address, "address")?,
    })
}

/// A contact card from a name and 1 to [`MAX_CARD_NUMBERS`] phone numbers.
pub fn parse_contact(name: &str, numbers: &[String]) -> Result<ContactCard, DomainError> {
    let name = parse_text(name, "contactName", MAX_LABEL)?;
    if numbers.is_empty() || numbers.len() > MAX_CARD_NUMBERS {
        return Err(DomainError::invalid(format!(
            "contactNumbers must hold 1 to {MAX_CARD_NUMBERS} phone numbers"
        )));
    }
    let mut digits = Vec::with_capacity(numbers.len());
    for n in numbers {
        let jid = Jid::parse_recipient(n)
            .map_err(|e| DomainError::invalid(format!("contactNumbers: {}", e.0)))?;
        if jid.is_group() {
            return Err(DomainError::invalid(
                "contactNumbers must be phone numbers, not groups",
            ));
        }
        digits.push(jid.user().to_string());
    }
    Ok(ContactCard {
        vcard: crate::kinds::build_vcard(&name, &digits),
        display_name: name,
    })
}

/// A poll: a question, 2 to 12 distinct options, single or multiple choice.
pub fn parse_poll(
    question: &str,
    options: &[String],
    multiple: bool,
) -> Result<PollSpec, DomainError> {
    let question = parse_text(question, "question", MAX_POLL_TEXT)?;
    if !POLL_OPTIONS.contains(&options.len()) {
        return Err(DomainError::invalid(format!(
            "options must hold {} to {} entries",
            POLL_OPTIONS.start(),
            POLL_OPTIONS.end()
        )));
    }
    let mut parsed: Vec<String> = Vec::with_capacity(options.len());
    for o in options {
        let o = parse_text(o, "options", MAX_POLL_TEXT)?;
        if parsed.contains(&o) {
            return Err(DomainError::invalid(format!(
                "options must be distinct; `{o}` is given twice"
            )));
        }
        parsed.push(o);
    }
    Ok(PollSpec {
        question,
        selectable_count: if multiple { parsed.len() as u32 } else { 1 },
        options: parsed,
    })
}

/// Mentions: phone numbers or JIDs, each once, at most [`MAX_MENTIONS`].
pub fn parse_mentions(raw: &[String]) -> Result<Vec<Jid>, DomainError> {
    if raw.len() > MAX_MENTIONS {
        return Err(DomainError::invalid(format!(
            "mentions may hold at most {MAX_MENTIONS} entries"
        )));
    }
    let mut out: Vec<Jid> = Vec::with_capacity(raw.len());
    for m in raw {
        let jid = Jid::parse_recipient(m)
            .map_err(|e| DomainError::invalid(format!("mentions: {}", e.0)))?;
        if jid.is_group() {
            return Err(DomainError::invalid("mentions must be people, not groups"));
        }
        if !out.contains(&jid) {
            out.push(jid);
        }
    }
    Ok(out)
}

/// A reaction: one emoji (a short grapheme run, no letters or digits), or
/// empty to remove the reaction.
pub fn parse_emoji(raw: &str) -> Result<String, DomainError> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let ok = raw.chars().count() <= 16
        && !raw
            .chars()
            .any(|c| c.is_alphanumeric() || c.is_whitespace() || c.is_control());
    if !ok {
        return Err(DomainError::invalid(
            "emoji must be one emoji (or empty to remove the reaction)",
        ));
    }
    Ok(raw.to_string())
}

/// A chat state by name.
pub fn parse_chat_state(raw: &str) -> Result<ChatState, DomainError> {
    match raw {
        "typing" | "composing" => Ok(ChatState::Typing),
        "recording" => Ok(ChatState::Recording),
        "paused" => Ok(ChatState::Paused),
        _ => Err(DomainError::invalid(
            "state must be `typing`, `recording` or `paused`",
        )),
    }
}

/// What a media check refused: the type (415) or the size (413).
#[derive(Debug, PartialEq, Eq)]
pub enum MediaRefused {
    Type(String),
    Size(String),
}

/// A voice note must be OGG with Opus inside, at most [`MAX_VOICE_BYTES`].
pub fn check_voice(data: &[u8]) -> Result<(), MediaRefused> {
    if data.len() as u64 > MAX_VOICE_BYTES {
        return Err(MediaRefused::Size(format!(
            "a voice note must be at most {MAX_VOICE_BYTES} bytes"
        )));
    }
    let is_ogg = data.starts_with(b"OggS");
    let has_opus = data.windows(8).take(256).any(|w| w == b"OpusHead");
    if !(is_ogg && has_opus) {
        return Err(MediaRefused::Type(
            "a voice note must be OGG/Opus audio (audio/ogg; codecs=opus); convert it first".into(),
        ));
    }
    Ok(())
}

/// A sticker must be WebP, at most [`MAX_STICKER_BYTES`].
pub fn check_sticker(data: &[u8]) -> Result<(), MediaRefused> {
    if data.len() as u64 > MAX_STICKER_BYTES {
        return Err(MediaRefused::Size(format!(
            "a sticker must be at most {MAX_STICKER_BYTES} bytes"
        )));
    }
    if !(data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP") {
        return Err(MediaRefused::Type("a sticker must be a WebP image".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mine(ts: i64) -> KnownMessage {
        KnownMessage {
            message_id: "m".into(),
            chat: Jid::from_phone("79001234567"),
            from_me: true,
            sender: None,
            message_type: "text".into(),
            body: "hi".into(),
            timestamp: ts,
        }
    }

    #[test]
    fn an_edit_is_allowed_on_our_own_text_within_fifteen_minutes_only() {
        assert!(decide_edit(&mine(1_000), 1_000 + EDIT_WINDOW_SECS).is_ok());
        assert!(matches!(
            decide_edit(&mine(1_000), 1_001 + EDIT_WINDOW_SECS),
            Err(DomainError::Conflict(_))
        ));
        let theirs = KnownMessage {
            from_me: false,
            ..mine(1_000)
        };
        assert!(matches!(
            decide_edit(&theirs, 1_000),
            Err(DomainError::Conflict(_))
        ));
        let image = KnownMessage {
            message_type: "image".into(),
            ..mine(1_000)
        };
        assert!(matches!(
            decide_edit(&image, 1_000),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            require_known(None, "x"),
            Err(DomainError::NotFound(_))
        ));
    }

    #[test]
    fn polls_need_two_to_twelve_distinct_options() {
        let opts = |n: usize| (0..n).map(|i| format!("o{i}")).collect::<Vec<_>>();
        assert!(parse_poll("q?", &opts(1), false).is_err());
        assert!(parse_poll("q?", &opts(13), false).is_err());
        assert_eq!(
            parse_poll("q?", &opts(2), false).unwrap().selectable_count,
            1
        );
        assert_eq!(
            parse_poll("q?", &opts(12), true).unwrap().selectable_count,
            12
        );
        assert!(parse_poll("q?", &["a".into(), "a".into()], false).is_err());
        assert!(parse_poll(" ", &opts(2), false).is_err());
    }

    #[test]
    fn locations_outside_the_globe_are_refused() {
        assert!(parse_location(55.75, 37.61, Some("Moscow"), None).is_ok());
        for (lat, lon) in [(91.0, 0.0), (0.0, 181.0), (f64::NAN, 0.0)] {
            assert!(parse_location(lat, lon, None, None).is_err());
        }
    }

    #[test]
    fn voice_notes_must_be_ogg_opus_and_stickers_webp() {
        let mut ogg = b"OggS".to_vec();
        ogg.resize(28, 0);
        ogg.extend_from_slice(b"OpusHead");
        ogg.resize(200, 1);
        assert_eq!(check_voice(&ogg), Ok(()));
        assert!(matches!(
            check_voice(b"ID3\x03mp3"),
            Err(MediaRefused::Type(_))
        ));
        let big = vec![0u8; MAX_VOICE_BYTES as usize + 1];
        assert!(matches!(check_voice(&big), Err(MediaRefused::Size(_))));
        let mut webp = b"RIFF\x10\x00\x00\x00WEBPVP8 ".to_vec();
        webp.resize(64, 0);
        assert_eq!(check_sticker(&webp), Ok(()));
        assert!(matches!(
            check_sticker(b"\x89PNG\r\n\x1a\n...."),
            Err(MediaRefused::Type(_))
        ));
    }

    #[test]
    fn emoji_and_mentions_are_checked() {
        assert_eq!(parse_emoji("👍").unwrap(), "👍");
        assert_eq!(parse_emoji("").unwrap(), "");
        assert!(parse_emoji("ok").is_err());
        let m = parse_mentions(&["79001234567".into(), "+7 900 123-45-67".into()]).unwrap();
        assert_eq!(m.len(), 1);
        assert!(parse_mentions(&["123-456@g.us".into()]).is_err());
    }
}
