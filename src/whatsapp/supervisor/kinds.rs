//! Sends of the message kinds beyond text and media, and the chat actions
//! (read marks, chat state, presence), through a connected session. A new
//! message (a reply, a location, a poll, ...) is recorded as `message_sent`
//! with its extras and follows the seed's receipts; a reaction, edit or
//! revoke is recorded as its own event (`fromMe`), not as a new message.
//! These go out at once, not through the send policy's outbound queue.

use crate::domain::send::{self, OnRecord, Sent};
use crate::events::{Event, MessageSent, SentKind};
use crate::ids::{InstanceId, Jid, MessageId};
use crate::kinds::{
    ChatMarkedRead, ChatState, ChatStateSent, Happening, MessageExtras, PresenceSet,
};
use crate::store::{Effect, Metadata};

use super::super::engine::{OutgoingContent, TargetMessage};
use super::{Input, SendError, Sessions};

impl Sessions {
    /// Sends a new message of any kind under a fresh id; appends its
    /// `message_sent` (with `on_record`'s state change); returns the id.
    pub async fn send_content(
        &self,
        instance_id: &InstanceId,
        to: &Jid,
        content: OutgoingContent,
        meta: Metadata,
        on_record: Option<OnRecord>,
    ) -> Result<MessageId, SendError> {
        let (session, engine) = self.connected(instance_id).await?;
        let message_id = MessageId::new_ordered();
        let effects: Vec<Effect> = on_record.map(|f| f(&message_id)).into_iter().collect();
        let config = &self.inner.config;
        session.send_input(Input::SendBegun(message_id.clone()), config);
        if let Err(e) = engine.send(&message_id, to, &content).await {
            session.send_input(Input::SendFailed(message_id.clone()), config);
            return Err(SendError::Engine(e));
        }
        let event = sent_event(instance_id, &message_id, to, &content);
        self.finish_send(&session, event, meta, effects).await?;
        Ok(message_id)
    }

    /// Sends a reaction, an edit or a revoke of `target`; appends its event
    /// (`message_reaction`, `message_edited`, `message_revoked`, from this
    /// account); returns the id of the protocol message that carried it.
    pub async fn send_action(
        &self,
        instance_id: &InstanceId,
        content: OutgoingContent,
        meta: Metadata,
    ) -> Result<MessageId, SendError> {
        let (session, engine) = self.connected(instance_id).await?;
        let me = session
            .status
            .borrow()
            .phone
            .as_deref()
            .map(Jid::from_phone)
            .unwrap_or_else(|| Jid::from_raw(""));
        let message_id = MessageId::new_ordered();
        let target: &TargetMessage = match &content {
            OutgoingContent::Reaction { target, .. }
            | OutgoingContent::Edit { target, .. }
            | OutgoingContent::Revoke { target } => target,
            _ => return Err(SendError::Engine(anyhow::anyhow!("not an action"))),
        };
        engine
            .send(&message_id, &target.chat, &content)
            .await
            .map_err(SendError::Engine)?;
        let timestamp = chrono::Utc::now().timestamp();
        let happening = match &content {
            OutgoingContent::Reaction { target, emoji } => Happening::Reaction {
                message_id: message_id.clone(),
                chat: target.chat.clone(),
                from: me,
                from_me: true,
                target_message_id: target.message_id.clone(),
                emoji: emoji.clone(),
                timestamp,
            },
            OutgoingContent::Edit { target, text } => Happening::Edit {
                message_id: target.message_id.clone(),
                chat: target.chat.clone(),
                from: me,
                from_me: true,
                text: text.clone(),
                timestamp,
            },
            _ => Happening::Revoke {
                message_id: target.message_id.clone(),
                chat: target.chat.clone(),
                from: me,
                from_me: true,
                timestamp,
            },
        };
        session
            .append(
                &self.inner.store,
                vec![happening.into_event(instance_id.clone())],
                meta,
            )
            .await?;
        Ok(message_id)
    }

    /// Marks messages of a chat read; appends `chat_marked_read`.
    pub async fn mark_read(
        &self,
        instance_id: &InstanceId,
        chat: &Jid,
        sender: Option<&Jid>,
        message_ids: Vec<MessageId>,
        meta: Metadata,
    ) -> Result<(), SendError> {
        let (session, engine) = self.connected(instance_id).await?;
        engine
            .mark_read(chat, sender, &message_ids)
            .await
            .map_err(SendError::Engine)?;
        let event: Event = ChatMarkedRead {
            instance_id: instance_id.clone(),
            chat: chat.clone(),
            message_ids,
        }
        .into();
        session.append(&self.inner.store, vec![event], meta).await?;
        Ok(())
    }

    /// Shows typing, recording or paused in a chat; appends `chat_state_sent`.
    pub async fn chat_state(
        &self,
        instance_id: &InstanceId,
        chat: &Jid,
        state: ChatState,
        meta: Metadata,
    ) -> Result<(), SendError> {
        let (session, engine) = self.connected(instance_id).await?;
        engine
            .chat_state(chat, state)
            .await
            .map_err(SendError::Engine)?;
        let event: Event = ChatStateSent {
            instance_id: instance_id.clone(),
            chat: chat.clone(),
            state,
        }
        .into();
        session.append(&self.inner.store, vec![event], meta).await?;
        Ok(())
    }

    /// Goes online (`available`) or offline; appends `presence_set`.
    pub async fn set_presence(
        &self,
        instance_id: &InstanceId,
        available: bool,
        meta: Metadata,
    ) -> Result<(), SendError> {
        let (session, engine) = self.connected(instance_id).await?;
        engine
            .set_presence(available)
            .await
            .map_err(SendError::Engine)?;
        let event: Event = PresenceSet {
            instance_id: instance_id.clone(),
            available,
        }
        .into();
        session.append(&self.inner.store, vec![event], meta).await?;
        Ok(())
    }
}

/// The `message_sent` of a new message of any kind.
fn sent_event(
    instance_id: &InstanceId,
    message_id: &MessageId,
    to: &Jid,
    content: &OutgoingContent,
) -> MessageSent {
    let now = chrono::Utc::now().timestamp();
    let text = |body: &str| send::message_sent(instance_id, message_id, to, Sent::Text(body), now);
    let (mut event, extras) = match content {
        OutgoingContent::Text { text: t, context } => (text(t), context.extras()),
        OutgoingContent::Media { media, context } => (
            send::message_sent(
                instance_id,
                message_id,
                to,
                Sent::Media {
                    kind: media.kind,
                    mimetype: &media.mimetype,
                    file_name: media.file_name.as_deref(),
                    caption: media.caption.as_deref(),
                    size: media.data.len() as u64,
                },
                now,
            ),
            context.extras(),
        ),
        OutgoingContent::Voice { data, mimetype } => {
            let mut e = send::message_sent(
                instance_id,
                message_id,
                to,
                Sent::Media {
                    kind: crate::events::MediaKind::Audio,
                    mimetype,
                    file_name: None,
                    caption: None,
                    size: data.len() as u64,
                },
                now,
            );
            e.message_type = SentKind::Voice;
            (e, MessageExtras::default())
        }
        OutgoingContent::Sticker { data, mimetype } => {
            let mut e = send::message_sent(
                instance_id,
                message_id,
                to,
                Sent::Media {
                    kind: crate::events::MediaKind::Image,
                    mimetype,
                    file_name: None,
                    caption: None,
                    size: data.len() as u64,
                },
                now,
            );
            e.message_type = SentKind::Sticker;
            (e, MessageExtras::default())
        }
        OutgoingContent::Location(l) => {
            let mut e = text(l.name.as_deref().unwrap_or_default());
            e.message_type = SentKind::Location;
            (
                e,
                MessageExtras {
                    location: Some(l.clone()),
                    ..MessageExtras::default()
                },
            )
        }
        OutgoingContent::Contact(c) => {
            let mut e = text(&c.display_name);
            e.message_type = SentKind::Contact;
            (
                e,
                MessageExtras {
                    contact: Some(c.clone()),
                    ..MessageExtras::default()
                },
            )
        }
        OutgoingContent::Poll(p) => {
            let mut e = text(&p.question);
            e.message_type = SentKind::Poll;
            (
                e,
                MessageExtras {
                    poll: Some(p.clone()),
                    ..MessageExtras::default()
                },
            )
        }
        // Actions are recorded by `send_action`; never here.
        OutgoingContent::Reaction { .. }
        | OutgoingContent::Edit { .. }
        | OutgoingContent::Revoke { .. } => (text(""), MessageExtras::default()),
    };
    event.extras = extras;
    event
}
