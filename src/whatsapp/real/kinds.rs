//! The real engine's message kinds: outgoing content built into the
//! client's `wa::Message` values (pure, tested here) and sent with the
//! crate's calls; read marks, chat state and presence.

use anyhow::Context;
use whatsapp_rust::UploadOptions;
use whatsapp_rust::send::{EditOptions, RevokeType};
use whatsapp_rust::wacore::download::MediaType;
use whatsapp_rust::waproto::whatsapp as wa;

use super::super::engine::{OutgoingContent, SendContext, TargetMessage};
use super::RealSession;
use crate::events::MediaKind;
use crate::ids::{Jid, MessageId};
use crate::kinds::{ChatState, ContactCard, Location, PollSpec};

/// A present message field.
fn field<T: Default>(v: T) -> whatsapp_rust::waproto::buffa::MessageField<T> {
    Some(v).into()
}

/// The context (reply and mentions) of an outgoing message; `me` is our own
/// JID (the author of a quoted message of ours).
pub fn context_info(ctx: &SendContext, me: &str) -> Option<wa::ContextInfo> {
    if *ctx == SendContext::default() {
        return None;
    }
    let mut info = match &ctx.quoted {
        Some(q) => {
            let sender = if q.from_me {
                me.to_string()
            } else {
                q.sender
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| q.chat.to_string())
            };
            let quoted = wa::Message {
                conversation: Some(q.text.clone()),
                ..Default::default()
            };
            whatsapp_rust::wacore::proto_helpers::build_quote_context(
                q.message_id.as_str(),
                sender,
                &quoted,
            )
        }
        None => wa::ContextInfo::default(),
    };
    info.mentioned_jid = ctx.mentions.iter().map(|m| m.to_string()).collect();
    Some(info)
}

/// A text with a reply and/or mentions.
pub fn text_message(text: &str, info: Option<wa::ContextInfo>) -> wa::Message {
    wa::Message {
        extended_text_message: field(wa::message::ExtendedTextMessage {
            text: Some(text.to_string()),
            context_info: info.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Puts a reply / mentions context on a media message.
pub fn with_media_context(mut m: wa::Message, info: Option<wa::ContextInfo>) -> wa::Message {
    let Some(info) = info else { return m };
    if let Some(x) = m.image_message.as_option_mut() {
        x.context_info = field(info);
    } else if let Some(x) = m.video_message.as_option_mut() {
        x.context_info = field(info);
    } else if let Some(x) = m.audio_message.as_option_mut() {
        x.context_info = field(info);
    } else if let Some(x) = m.document_message.as_option_mut() {
        x.context_info = field(info);
    }
    m
}

/// A location pin.
pub fn location_message(l: &Location) -> wa::Message {
    wa::Message {
        location_message: field(wa::message::LocationMessage {
            degrees_latitude: Some(l.latitude),
            degrees_longitude: Some(l.longitude),
            name: l.name.clone(),
            address: l.address.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A contact card.
pub fn contact_message(c: &ContactCard) -> wa::Message {
    wa::Message {
        contact_message: field(wa::message::ContactMessage {
            display_name: Some(c.display_name.clone()),
            vcard: Some(c.vcard.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A poll (v3 for single choice, v1 for multiple, as WhatsApp Web does),
/// with the secret voters encrypt their votes with.
pub fn poll_message(p: &PollSpec, secret: Vec<u8>) -> wa::Message {
    let poll = wa::message::PollCreationMessage {
        name: Some(p.question.clone()),
        options: p
            .options
            .iter()
            .map(|o| wa::message::poll_creation_message::Option {
                option_name: Some(o.clone()),
                ..Default::default()
            })
            .collect(),
        selectable_options_count: Some(p.selectable_count),
        ..Default::default()
    };
    let mut m = if p.selectable_count == 1 {
        wa::Message {
            poll_creation_message_v3: field(poll),
            ..Default::default()
        }
    } else {
        wa::Message {
            poll_creation_message: field(poll),
            ..Default::default()
        }
    };
    m.message_context_info = field(wa::MessageContextInfo {
        message_secret: Some(secret),
        ..Default::default()
    });
    m
}

/// The key of an earlier message (reactions, edits, revokes).
pub fn message_key(t: &TargetMessage) -> wa::MessageKey {
    wa::MessageKey {
        remote_jid: Some(t.chat.to_string()),
        from_me: Some(t.from_me),
        id: Some(t.message_id.to_string()),
        participant: if t.chat.is_group() && !t.from_me {
            t.sender.as_ref().map(|s| s.to_string())
        } else {
            None
        },
    }
}

impl RealSession {
    /// Our own JID (phone-number form), for quotes of our messages.
    fn me(&self) -> String {
        self.client
            .pn()
            .map(|j| j.to_non_ad_string())
            .unwrap_or_default()
    }

    /// Uploads a voice note or sticker (`t`) and keeps its handle for the
    /// media endpoint, as for other media we send.
    async fn upload(
        &self,
        message_id: &MessageId,
        data: &[u8],
        t: MediaType,
        mimetype: &str,
    ) -> anyhow::Result<whatsapp_rust::upload::UploadResponse> {
        let upload = self
            .client
            .upload(data.to_vec(), t, UploadOptions::new())
            .await
            .context("Failed to upload the media")?;
        let kind = if t == MediaType::Sticker {
            MediaKind::Image
        } else {
            MediaKind::Audio
        };
        let kept = super::media::kept_upload(&upload, t, kind, mimetype, None);
        self.keep_media(message_id, kept).await;
        Ok(upload)
    }

    /// Sends any kind of content under `message_id`.
    pub(super) async fn send_content(
        &self,
        message_id: &MessageId,
        to: &Jid,
        content: &OutgoingContent,
    ) -> anyhow::Result<()> {
        let message = match content {
            OutgoingContent::Text { text, context } => {
                text_message(text, context_info(context, &self.me()))
            }
            OutgoingContent::Media { media, context } => with_media_context(
                self.media_message(message_id, media).await?,
                context_info(context, &self.me()),
            ),
            OutgoingContent::Voice { data, mimetype } => {
                let upload = self
                    .upload(message_id, data, MediaType::Audio, mimetype)
                    .await?;
                whatsapp_rust::media::audio_message(
                    upload,
                    whatsapp_rust::media::AudioOptions {
                        mimetype: Some(mimetype.clone()),
                        ptt: Some(true),
                        ..Default::default()
                    },
                )
            }
            OutgoingContent::Sticker { data, mimetype } => {
                let u = self
                    .upload(message_id, data, MediaType::Sticker, mimetype)
                    .await?;
                wa::Message {
                    sticker_message: field(wa::message::StickerMessage {
                        url: Some(u.url),
                        direct_path: Some(u.direct_path),
                        media_key: Some(u.media_key.to_vec()),
                        file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                        file_sha256: Some(u.file_sha256.to_vec()),
                        file_length: Some(u.file_length),
                        media_key_timestamp: Some(u.media_key_timestamp),
                        mimetype: Some(mimetype.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            }
            OutgoingContent::Location(l) => location_message(l),
            OutgoingContent::Contact(c) => contact_message(c),
            OutgoingContent::Poll(p) => {
                let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
                // Kept before the send: a vote may come back at once.
                let kept = super::polls::KeptPoll::new(&secret, p.options.clone(), self.me());
                self.polls.keep(message_id.as_str(), kept).await;
                poll_message(p, secret)
            }
            OutgoingContent::Reaction { target, emoji } => {
                whatsapp_rust::wacore::proto_helpers::build_reaction_message(
                    message_key(target),
                    emoji.clone(),
                    chrono::Utc::now().timestamp_millis(),
                )
            }
            OutgoingContent::Edit { target, text } => {
                let jid = self.to_wa(&target.chat)?;
                let new = wa::Message {
                    conversation: Some(text.clone()),
                    ..Default::default()
                };
                self.client
                    .edit_message_with_options(
                        jid,
                        target.message_id.as_str(),
                        new,
                        EditOptions::default().with_stanza_id(message_id.as_str()),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                return Ok(());
            }
            OutgoingContent::Revoke { target } => {
                let jid = self.to_wa(&target.chat)?;
                self.client
                    .revoke_message(jid, target.message_id.as_str(), RevokeType::Sender)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                return Ok(());
            }
        };
        self.send_wa(message_id, to, message).await
    }

    /// Read receipts for received messages of a chat.
    pub(super) async fn read(
        &self,
        chat: &Jid,
        sender: Option<&Jid>,
        ids: &[MessageId],
    ) -> anyhow::Result<()> {
        let chat = self.to_wa(chat)?;
        let sender = sender.map(|s| self.to_wa(s)).transpose()?;
        let ids: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
        self.client.mark_as_read(&chat, sender.as_ref(), &ids).await
    }

    /// Typing, recording or paused in a chat.
    pub(super) async fn show_state(&self, chat: &Jid, state: ChatState) -> anyhow::Result<()> {
        let chat = self.to_wa(chat)?;
        let cs = self.client.chatstate();
        match state {
            ChatState::Typing => cs.send_composing(&chat).await,
            ChatState::Recording => cs.send_recording(&chat).await,
            ChatState::Paused => cs.send_paused(&chat).await,
        }
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Online or offline.
    pub(super) async fn presence(&self, available: bool) -> anyhow::Result<()> {
        let p = self.client.presence();
        if available {
            p.set_available().await
        } else {
            p.set_unavailable().await
        }
        .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(from_me: bool) -> TargetMessage {
        TargetMessage {
            message_id: "3EB0AA".into(),
            chat: Jid::from_phone("79001234567"),
            from_me,
            sender: (!from_me).then(|| Jid::from_phone("79001234567")),
            text: "the original".into(),
        }
    }

    #[test]
    fn a_reply_with_mentions_quotes_the_message_and_lists_the_people() {
        let ctx = SendContext {
            quoted: Some(target(false)),
            mentions: vec![Jid::from_phone("79005554433")],
        };
        let m = text_message(
            "@79005554433 yes",
            context_info(&ctx, "79000000000@s.whatsapp.net"),
        );
        let ext = m.extended_text_message.as_option().unwrap();
        assert_eq!(ext.text.as_deref(), Some("@79005554433 yes"));
        let info = ext.context_info.as_option().unwrap();
        assert_eq!(info.stanza_id.as_deref(), Some("3EB0AA"));
        assert_eq!(
            info.participant.as_deref(),
            Some("79001234567@s.whatsapp.net")
        );
        assert_eq!(info.mentioned_jid, vec!["79005554433@s.whatsapp.net"]);
        assert_eq!(
            info.quoted_message
                .as_option()
                .and_then(|q| q.conversation.as_deref()),
            Some("the original")
        );
        // A quote of our own message names us as its author.
        let ctx = SendContext {
            quoted: Some(target(true)),
            mentions: vec![],
        };
        let info = context_info(&ctx, "79000000000@s.whatsapp.net").unwrap();
        assert_eq!(
            info.participant.as_deref(),
            Some("79000000000@s.whatsapp.net")
        );
        assert!(context_info(&SendContext::default(), "x").is_none());
    }

    #[test]
    fn polls_locations_and_cards_fill_their_message_fields() {
        let p = PollSpec {
            question: "Lunch?".into(),
            options: vec!["Pizza".into(), "Sushi".into()],
            selectable_count: 1,
        };
        let m = poll_message(&p, vec![7; 32]);
        let poll = m.poll_creation_message_v3.as_option().unwrap();
        assert_eq!(poll.name.as_deref(), Some("Lunch?"));
        assert_eq!(poll.options.len(), 2);
        assert_eq!(poll.selectable_options_count, Some(1));
        assert_eq!(
            m.message_context_info
                .as_option()
                .unwrap()
                .message_secret
                .as_deref(),
            Some(&[7u8; 32][..])
        );
        let multi = poll_message(
            &PollSpec {
                selectable_count: 2,
                ..p
            },
            vec![1; 32],
        );
        assert!(multi.poll_creation_message.is_set());
        let l = location_message(&Location {
            latitude: 1.5,
            longitude: -2.5,
            name: Some("Here".into()),
            address: None,
        });
        let loc = l.location_message.as_option().unwrap();
        assert_eq!(
            (loc.degrees_latitude, loc.degrees_longitude),
            (Some(1.5), Some(-2.5))
        );
        let c = contact_message(&ContactCard {
            display_name: "Ivan".into(),
            vcard: "BEGIN:VCARD".into(),
        });
        assert_eq!(
            c.contact_message.as_option().unwrap().vcard.as_deref(),
            Some("BEGIN:VCARD")
        );
        let key = message_key(&target(true));
        assert_eq!(
            (key.id.as_deref(), key.from_me),
            (Some("3EB0AA"), Some(true))
        );
    }
}
