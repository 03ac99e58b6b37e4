//! Pure mappings from the client's types to the engine's: message type and
//! media derived from the message itself (wrappers unwrapped), and which
//! messages are not user content at all.

use whatsapp_rust::waproto::whatsapp as wa;

use super::super::engine::{IncomingMedia, MediaKind};

/// The type name, body and media of a message, or `None` when it carries no
/// user content (protocol messages, sender-key distribution only, reactions
/// to nothing, ...). `message` must already be the base message
/// (`get_base_message()`: ephemeral / view-once / edited unwrapped).
pub fn describe(message: &wa::Message) -> Option<(String, String, Option<IncomingMedia>)> {
    if message.protocol_message.is_set() {
        return None;
    }
    if let Some(text) = message.conversation.as_deref()
        && !text.is_empty()
    {
        return Some(("conversation".into(), text.to_string(), None));
    }
    if let Some(m) = message.extended_text_message.as_option() {
        return Some((
            "extendedText".into(),
            m.text.clone().unwrap_or_default(),
            None,
        ));
    }
    if let Some(m) = message.image_message.as_option() {
        return Some((
            "image".into(),
            m.caption.clone().unwrap_or_default(),
            Some(media(
                MediaKind::Image,
                m.mimetype.as_deref(),
                "image/jpeg",
                None,
                m.file_length,
            )),
        ));
    }
    if let Some(m) = message.video_message.as_option() {
        return Some((
            "video".into(),
            m.caption.clone().unwrap_or_default(),
            Some(media(
                MediaKind::Video,
                m.mimetype.as_deref(),
                "video/mp4",
                None,
                m.file_length,
            )),
        ));
    }
    if let Some(m) = message.ptv_message.as_option() {
        return Some((
            "video".into(),
            m.caption.clone().unwrap_or_default(),
            Some(media(
                MediaKind::Video,
                m.mimetype.as_deref(),
                "video/mp4",
                None,
                m.file_length,
            )),
        ));
    }
    if let Some(m) = message.audio_message.as_option() {
        return Some((
            "audio".into(),
            String::new(),
            Some(media(
                MediaKind::Audio,
                m.mimetype.as_deref(),
                "audio/ogg; codecs=opus",
                None,
                m.file_length,
            )),
        ));
    }
    if let Some(m) = message.document_message.as_option() {
        return Some((
            "document".into(),
            m.caption.clone().unwrap_or_default(),
            Some(media(
                MediaKind::Document,
                m.mimetype.as_deref(),
                "application/octet-stream",
                m.file_name.clone(),
                m.file_length,
            )),
        ));
    }
    if let Some(m) = message.sticker_message.as_option() {
        return Some((
            "sticker".into(),
            String::new(),
            Some(media(
                MediaKind::Image,
                m.mimetype.as_deref(),
                "image/webp",
                None,
                m.file_length,
            )),
        ));
    }
    if let Some(m) = message.location_message.as_option() {
        let body = match (m.degrees_latitude, m.degrees_longitude) {
            (Some(lat), Some(lon)) => format!("{lat},{lon}"),
            _ => String::new(),
        };
        return Some(("location".into(), body, None));
    }
    if message.live_location_message.is_set() {
        return Some(("liveLocation".into(), String::new(), None));
    }
    if let Some(m) = message.contact_message.as_option() {
        return Some((
            "contact".into(),
            m.display_name.clone().unwrap_or_default(),
            None,
        ));
    }
    if message.contacts_array_message.is_set() {
        return Some(("contactsArray".into(), String::new(), None));
    }
    if let Some(m) = message.reaction_message.as_option() {
        return Some(("reaction".into(), m.text.clone().unwrap_or_default(), None));
    }
    for poll in [
        &message.poll_creation_message,
        &message.poll_creation_message_v2,
        &message.poll_creation_message_v3,
    ] {
        if let Some(p) = poll.as_option() {
            return Some(("poll".into(), p.name.clone().unwrap_or_default(), None));
        }
    }
    if message.poll_update_message.is_set() {
        return Some(("pollUpdate".into(), String::new(), None));
    }
    if let Some(m) = message.buttons_response_message.as_option() {
        let text = match &m.response {
            Some(wa::__buffa::oneof::message::buttons_response_message::Response::SelectedDisplayText(t)) => {
                t.clone()
            }
            None => String::new(),
        };
        return Some(("buttonsResponse".into(), text, None));
    }
    if let Some(m) = message.list_response_message.as_option() {
        return Some((
            "listResponse".into(),
            m.title.clone().unwrap_or_default(),
            None,
        ));
    }
    if message.template_button_reply_message.is_set() {
        return Some(("templateButtonReply".into(), String::new(), None));
    }
    if message.group_invite_message.is_set() {
        return Some(("groupInvite".into(), String::new(), None));
    }
    // Sender-key distribution, message context only, keep-in-chat, pins and
    // other bookkeeping: not something a user sent.
    None
}

fn media(
    kind: MediaKind,
    mimetype: Option<&str>,
    default_mime: &str,
    file_name: Option<String>,
    size: Option<u64>,
) -> IncomingMedia {
    IncomingMedia {
        kind,
        mimetype: mimetype
            .filter(|m| !m.is_empty())
            .unwrap_or(default_mime)
            .to_string(),
        file_name,
        size: size.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::wacore::proto_helpers::MessageExt;

    fn text(s: &str) -> wa::Message {
        wa::Message {
            conversation: Some(s.into()),
            ..Default::default()
        }
    }

    #[test]
    fn plain_and_extended_texts_are_text_types_without_media() {
        assert_eq!(
            describe(&text("hi")),
            Some(("conversation".into(), "hi".into(), None))
        );
        let ext = wa::Message {
            extended_text_message: Some(wa::message::ExtendedTextMessage {
                text: Some("link https://x".into()),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        assert_eq!(
            describe(&ext).map(|d| (d.0, d.1)),
            Some(("extendedText".into(), "link https://x".into()))
        );
    }

    #[test]
    fn a_document_reports_its_kind_mimetype_file_name_and_size() {
        let doc = wa::Message {
            document_message: Some(wa::message::DocumentMessage {
                mimetype: Some("application/pdf".into()),
                file_name: Some("report.pdf".into()),
                caption: Some("the report".into()),
                file_length: Some(1234),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let (kind, body, media) = describe(&doc).unwrap();
        assert_eq!((kind.as_str(), body.as_str()), ("document", "the report"));
        assert_eq!(
            media,
            Some(IncomingMedia {
                kind: MediaKind::Document,
                mimetype: "application/pdf".into(),
                file_name: Some("report.pdf".into()),
                size: 1234,
            })
        );
    }

    #[test]
    fn view_once_and_ephemeral_images_are_images_once_unwrapped() {
        let image = wa::Message {
            image_message: Some(wa::message::ImageMessage {
                caption: Some("look".into()),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let wrapped = wa::Message {
            ephemeral_message: Some(wa::message::FutureProofMessage {
                message: Some(wa::Message {
                    view_once_message_v2: Some(wa::message::FutureProofMessage {
                        message: Some(image).into(),
                    })
                    .into(),
                    ..Default::default()
                })
                .into(),
            })
            .into(),
            ..Default::default()
        };
        let (kind, body, media) = describe(wrapped.get_base_message()).unwrap();
        assert_eq!((kind.as_str(), body.as_str()), ("image", "look"));
        let media = media.unwrap();
        assert_eq!(media.kind, MediaKind::Image);
        assert_eq!(media.mimetype, "image/jpeg");
    }

    #[test]
    fn protocol_and_sender_key_only_messages_are_not_user_content() {
        let protocol = wa::Message {
            protocol_message: Some(wa::message::ProtocolMessage::default()).into(),
            ..Default::default()
        };
        assert_eq!(describe(&protocol), None);
        let skdm = wa::Message {
            sender_key_distribution_message: Some(
                wa::message::SenderKeyDistributionMessage::default(),
            )
            .into(),
            ..Default::default()
        };
        assert_eq!(describe(&skdm), None);
        assert_eq!(describe(&text("")), None);
    }
}
