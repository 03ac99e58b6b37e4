//! Pure mappings from the client's types to the engine's: message type and
//! media derived from the message itself (wrappers unwrapped), and which
//! messages are not user content at all.

use whatsapp_rust::waproto::whatsapp as wa;

use super::super::engine::{IncomingMedia, MediaKind};
use crate::ids::{Jid, MessageId};
use crate::kinds::{ContactCard, Location, MessageExtras, PollSpec};

/// What an incoming message is: a new message (with its extras), or a
/// reaction, edit or revoke of an earlier one.
#[derive(Debug, Clone, PartialEq)]
// Made once per incoming message and taken apart at once: not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Incoming {
    Message {
        message_type: String,
        body: String,
        media: Option<IncomingMedia>,
        extras: MessageExtras,
    },
    Reaction {
        target: MessageId,
        emoji: String,
    },
    Edit {
        target: MessageId,
        text: String,
    },
    Revoke {
        target: MessageId,
    },
}

/// The message secret a poll carries (its voters' key material), on the
/// message or on its base inside a wrapper.
pub fn message_secret(message: &wa::Message) -> Option<Vec<u8>> {
    use whatsapp_rust::wacore::proto_helpers::MessageExt;
    [message, message.get_base_message()]
        .into_iter()
        .find_map(|m| m.message_context_info.as_option()?.message_secret.clone())
        .filter(|s| !s.is_empty())
}

/// Classifies a base message (see [`describe`]): reactions, edits and
/// revokes are happenings; other user content is a message with its extras
/// (reply, mentions, location, contact card, poll); a voice note is `ptt`.
pub fn classify(message: &wa::Message) -> Option<Incoming> {
    use wa::message::protocol_message::Type;
    if let Some(p) = message.protocol_message.as_option() {
        let target = p.key.as_option().and_then(|k| k.id.clone())?;
        let target = MessageId::from_stored(target);
        return match p.r#type {
            Some(Type::REVOKE) => Some(Incoming::Revoke { target }),
            Some(Type::MESSAGE_EDIT) => {
                let edited = p.edited_message.as_option()?;
                let text = edited
                    .conversation
                    .clone()
                    .or_else(|| {
                        edited
                            .extended_text_message
                            .as_option()
                            .and_then(|e| e.text.clone())
                    })
                    .unwrap_or_default();
                Some(Incoming::Edit { target, text })
            }
            _ => None,
        };
    }
    if let Some(r) = message.reaction_message.as_option() {
        let target = r.key.as_option().and_then(|k| k.id.clone())?;
        return Some(Incoming::Reaction {
            target: MessageId::from_stored(target),
            emoji: r.text.clone().unwrap_or_default(),
        });
    }
    let (mut message_type, body, media) = describe(message)?;
    if message
        .audio_message
        .as_option()
        .is_some_and(|a| a.ptt == Some(true))
    {
        message_type = "ptt".into();
    }
    Some(Incoming::Message {
        message_type,
        body,
        media,
        extras: extras(message),
    })
}

/// The reply, mentions, location, contact card and poll of a message.
pub fn extras(message: &wa::Message) -> MessageExtras {
    macro_rules! contexts {
        ($($field:ident),*) => {
            [$(message.$field.as_option().and_then(|m| m.context_info.as_option())),*]
        };
    }
    let context = contexts!(
        extended_text_message,
        image_message,
        video_message,
        audio_message,
        document_message,
        sticker_message
    )
    .into_iter()
    .flatten()
    .next();
    let mut x = MessageExtras::default();
    if let Some(c) = context {
        x.quoted_message_id = c.stanza_id.clone().map(MessageId::from_stored);
        x.mentions = c
            .mentioned_jid
            .iter()
            .map(|j| Jid::from_raw(j.clone()))
            .collect();
    }
    if let Some(l) = message.location_message.as_option()
        && let (Some(latitude), Some(longitude)) = (l.degrees_latitude, l.degrees_longitude)
    {
        x.location = Some(Location {
            latitude,
            longitude,
            name: l.name.clone().filter(|n| !n.is_empty()),
            address: l.address.clone().filter(|a| !a.is_empty()),
        });
    }
    if let Some(c) = message.contact_message.as_option() {
        x.contact = Some(ContactCard {
            display_name: c.display_name.clone().unwrap_or_default(),
            vcard: c.vcard.clone().unwrap_or_default(),
        });
    }
    for poll in [
        &message.poll_creation_message,
        &message.poll_creation_message_v2,
        &message.poll_creation_message_v3,
    ] {
        if let Some(p) = poll.as_option() {
            x.poll = Some(PollSpec {
                question: p.name.clone().unwrap_or_default(),
                options: p
                    .options
                    .iter()
                    .filter_map(|o| o.option_name.clone())
                    .collect(),
                selectable_count: p.selectable_options_count.unwrap_or(1).max(1),
            });
        }
    }
    x
}

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
    fn a_revoke_and_an_edit_arrive_as_happenings_on_their_target() {
        use wa::message::protocol_message::Type;
        let key = wa::MessageKey {
            id: Some("3EB0TARGET".into()),
            ..Default::default()
        };
        let revoke = wa::Message {
            protocol_message: Some(wa::message::ProtocolMessage {
                key: Some(key.clone()).into(),
                r#type: Some(Type::REVOKE),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        assert_eq!(
            classify(&revoke),
            Some(Incoming::Revoke {
                target: "3EB0TARGET".into()
            })
        );
        let edit = wa::Message {
            protocol_message: Some(wa::message::ProtocolMessage {
                key: Some(key).into(),
                r#type: Some(Type::MESSAGE_EDIT),
                edited_message: Some(text("fixed")).into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        assert_eq!(
            classify(&edit),
            Some(Incoming::Edit {
                target: "3EB0TARGET".into(),
                text: "fixed".into()
            })
        );
        let other = wa::Message {
            protocol_message: Some(wa::message::ProtocolMessage::default()).into(),
            ..Default::default()
        };
        assert_eq!(classify(&other), None);
    }

    #[test]
    fn a_reaction_names_its_target_and_an_empty_one_is_a_removal() {
        let reaction = |emoji: &str| wa::Message {
            reaction_message: Some(wa::message::ReactionMessage {
                key: Some(wa::MessageKey {
                    id: Some("3EB0T".into()),
                    ..Default::default()
                })
                .into(),
                text: Some(emoji.into()),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        assert_eq!(
            classify(&reaction("👍")),
            Some(Incoming::Reaction {
                target: "3EB0T".into(),
                emoji: "👍".into()
            })
        );
        assert!(matches!(
            classify(&reaction("")),
            Some(Incoming::Reaction { emoji, .. }) if emoji.is_empty()
        ));
    }

    #[test]
    fn replies_mentions_locations_cards_polls_and_voice_notes_keep_their_fields() {
        let reply = wa::Message {
            extended_text_message: Some(wa::message::ExtendedTextMessage {
                text: Some("@79005554433 ok".into()),
                context_info: Some(wa::ContextInfo {
                    stanza_id: Some("3EB0Q".into()),
                    mentioned_jid: vec!["79005554433@s.whatsapp.net".into()],
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let Some(Incoming::Message { extras, .. }) = classify(&reply) else {
            panic!("a message");
        };
        assert_eq!(extras.quoted_message_id, Some("3EB0Q".into()));
        assert_eq!(extras.mentions, vec![Jid::from_phone("79005554433")]);

        let loc = wa::Message {
            location_message: Some(wa::message::LocationMessage {
                degrees_latitude: Some(55.75),
                degrees_longitude: Some(37.61),
                name: Some("Kremlin".into()),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let Some(Incoming::Message {
            message_type,
            extras,
            ..
        }) = classify(&loc)
        else {
            panic!("a message");
        };
        assert_eq!(message_type, "location");
        assert_eq!(extras.location.unwrap().name.as_deref(), Some("Kremlin"));

        let card = wa::Message {
            contact_message: Some(wa::message::ContactMessage {
                display_name: Some("Ivan".into()),
                vcard: Some("BEGIN:VCARD\r\nEND:VCARD".into()),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let Some(Incoming::Message { extras, .. }) = classify(&card) else {
            panic!("a message");
        };
        assert_eq!(extras.contact.unwrap().display_name, "Ivan");

        let poll = wa::Message {
            poll_creation_message_v3: Some(wa::message::PollCreationMessage {
                name: Some("Lunch?".into()),
                options: vec![
                    wa::message::poll_creation_message::Option {
                        option_name: Some("Pizza".into()),
                        ..Default::default()
                    },
                    wa::message::poll_creation_message::Option {
                        option_name: Some("Sushi".into()),
                        ..Default::default()
                    },
                ],
                selectable_options_count: Some(1),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let Some(Incoming::Message {
            message_type,
            extras,
            ..
        }) = classify(&poll)
        else {
            panic!("a message");
        };
        assert_eq!(message_type, "poll");
        let p = extras.poll.unwrap();
        assert_eq!((p.question.as_str(), p.options.len()), ("Lunch?", 2));

        let voice = wa::Message {
            audio_message: Some(wa::message::AudioMessage {
                ptt: Some(true),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        assert!(matches!(
            classify(&voice),
            Some(Incoming::Message { message_type, .. }) if message_type == "ptt"
        ));
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
