//! The engine interface: what the supervisor needs from a WhatsApp
//! implementation (the real client or the simulated network).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::events::{Contact, SessionReason};
use crate::ids::{InstanceId, MessageId};
use crate::kinds::{ChatState, ContactCard, Happening, Location, MessageExtras, PollSpec};

use super::Jid;
use super::groups::{
    GroupError, GroupInfo, GroupNotice, InviteLink, NumberCheck, ParticipantAction,
    ParticipantResult,
};

/// A delivery state reported by the network.
pub use crate::events::DeliveryStatus as Receipt;
pub use crate::events::MediaKind;

/// Media attached to an incoming message.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMedia {
    pub kind: MediaKind,
    pub mimetype: String,
    pub file_name: Option<String>,
    pub size: u64,
}

/// A message that arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    pub message_id: MessageId,
    /// Sender (phone-number JID where known).
    pub from: Jid,
    /// The sender's LID, when the message came from one.
    pub from_lid: Option<Jid>,
    /// The chat (group or sender).
    pub chat: Jid,
    pub body: String,
    /// WhatsApp's type name (`conversation`, `extendedText`, `image`, ...).
    pub message_type: String,
    /// Unix seconds.
    pub timestamp: i64,
    pub push_name: Option<String>,
    pub media: Option<IncomingMedia>,
    /// Reply, mentions, location, contact card, poll (empty for plain messages).
    pub extras: MessageExtras,
}

/// What an engine session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// A QR code to scan.
    Qr { code: String },
    /// Logged in and usable.
    Connected { phone: Option<String> },
    /// The connection ended. `terminal` = the engine cannot continue without
    /// the user (e.g. banned, replaced, outdated); else the supervisor reconnects.
    Closed {
        reason: SessionReason,
        terminal: bool,
    },
    /// The device was unlinked (by the phone or by us).
    LoggedOut { reason: SessionReason },
    /// A message arrived.
    Message(Box<IncomingMessage>),
    /// A delivery state of messages we sent (or, for `from_me = false`, of
    /// messages we received, reported by our other devices).
    Receipt {
        message_ids: Vec<MessageId>,
        receipt: Receipt,
        /// The remote party.
        chat: Jid,
    },
    /// A message we sent will not be delivered: the server refused it, or
    /// never acknowledged it. `reason`: `nack_<code>`, `no_server_ack`.
    SendFailed {
        message_id: MessageId,
        chat: Jid,
        reason: String,
    },
    /// Contacts learned or changed.
    Contacts(Vec<Contact>),
    /// A reaction, edit, revoke, poll vote or typing presence (not a new message).
    Happened(Box<Happening>),
    /// A message's media can be fetched again later through
    /// [`EngineSession::fetch_media`]: sent before the message's own
    /// [`EngineEvent::Message`] (received media) or from a media send. The
    /// gateway keeps it sealed in a table of its own, never in the log.
    MediaKept {
        message_id: MessageId,
        media: KeptMedia,
    },
    /// A pairing code to type into the phone (WhatsApp > Linked devices >
    /// Link with phone number), asked for with
    /// [`EngineSession::pair_with_code`], or its replacement after WhatsApp
    /// retired the previous one.
    PairCode { code: String, phone: String },
    /// A group this account is in changed (another member's action, or WhatsApp's).
    Group(GroupNotice),
    /// WhatsApp's server answered a keepalive ping: the connection is alive
    /// (the instance's `health.lastSeenAt`; nothing is recorded in the log).
    Alive,
    /// A connect attempt failed before a connection was up (the engine
    /// retries by itself); `error` says why in plain words.
    ConnectFailed { error: String, attempt: u32 },
}

/// What the gateway keeps of a message's media to fetch it again: the
/// engine's own handle (`locator`, opaque to the gateway; for the real engine
/// it holds the media key and the CDN path, so it is sealed at rest) and what
/// the media endpoint answers with.
#[derive(Clone, PartialEq)]
pub struct KeptMedia {
    pub kind: MediaKind,
    pub mimetype: String,
    pub file_name: Option<String>,
    /// Declared size in bytes.
    pub size: u64,
    /// The engine's handle to fetch it again.
    pub locator: String,
}

impl std::fmt::Debug for KeptMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The locator may hold a media key: never in a log line.
        f.debug_struct("KeptMedia")
            .field("kind", &self.kind)
            .field("mimetype", &self.mimetype)
            .field("file_name", &self.file_name)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Media to send.
#[derive(Debug, Clone)]
pub struct OutgoingMedia {
    pub kind: MediaKind,
    pub mimetype: String,
    pub file_name: Option<String>,
    pub caption: Option<String>,
    pub data: Bytes,
}

/// An earlier message that an outgoing one names (reply, reaction, edit, revoke).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetMessage {
    pub message_id: MessageId,
    /// The chat it is in.
    pub chat: Jid,
    /// Sent by this account.
    pub from_me: bool,
    /// Its sender, when not this account.
    pub sender: Option<Jid>,
    /// Its text or caption (shown in a reply's quote).
    pub text: String,
}

/// The reply and mentions of a text or media message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendContext {
    /// The message replied to.
    pub quoted: Option<TargetMessage>,
    /// The people mentioned.
    pub mentions: Vec<Jid>,
}

impl SendContext {
    /// What `message_sent` records of it.
    pub fn extras(&self) -> MessageExtras {
        MessageExtras {
            quoted_message_id: self.quoted.as_ref().map(|q| q.message_id.clone()),
            mentions: self.mentions.clone(),
            ..MessageExtras::default()
        }
    }
}

/// What to send, of every kind beyond the seed's plain text and media.
#[derive(Debug, Clone)]
pub enum OutgoingContent {
    /// A text with a reply and/or mentions.
    Text {
        text: String,
        context: SendContext,
    },
    /// Media with a reply and/or mentions.
    Media {
        media: OutgoingMedia,
        context: SendContext,
    },
    /// A voice note (OGG/Opus), sent as push-to-talk.
    Voice {
        data: Bytes,
        mimetype: String,
    },
    /// A sticker (WebP).
    Sticker {
        data: Bytes,
        mimetype: String,
    },
    Location(Location),
    Contact(ContactCard),
    Poll(PollSpec),
    /// A reaction (`emoji` empty: removed).
    Reaction {
        target: TargetMessage,
        emoji: String,
    },
    /// A new text for our own message.
    Edit {
        target: TargetMessage,
        text: String,
    },
    /// Delete our own message for everyone.
    Revoke {
        target: TargetMessage,
    },
}

/// A sink for one session's engine events.
pub type EventSink = mpsc::Sender<EngineEvent>;

/// A WhatsApp implementation: starts sessions and owns their stores.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// The engine's name (`whatsapp`, `sim`).
    fn name(&self) -> &'static str;

    /// Starts a session for an instance. Events (QR, connected, messages,
    /// receipts, ...) go to `events` until the session is stopped.
    async fn start(
        &self,
        instance_id: &InstanceId,
        events: EventSink,
    ) -> anyhow::Result<Arc<dyn EngineSession>>;

    /// Deletes an instance's session store (after logout or deletion).
    async fn remove_store(&self, instance_id: &InstanceId) -> anyhow::Result<()>;
}

/// One running session of one instance.
#[async_trait]
pub trait EngineSession: Send + Sync + 'static {
    /// Disconnects, keeping the pairing.
    async fn stop(&self);
    /// Unlinks the device and deletes the session store.
    async fn logout(&self) -> anyhow::Result<()>;
    /// Sends a text with the given message id.
    async fn send_text(&self, message_id: &MessageId, to: &Jid, text: &str) -> anyhow::Result<()>;
    /// Sends media with the given message id.
    async fn send_media(
        &self,
        message_id: &MessageId,
        to: &Jid,
        media: &OutgoingMedia,
    ) -> anyhow::Result<()>;
    /// The account's contacts and groups.
    async fn contacts(&self) -> anyhow::Result<Vec<Contact>>;
    /// Shows (`true`) or stops showing "typing…" in the chat with `to`
    /// (paced sends; an engine without presence does nothing).
    async fn typing(&self, to: &Jid, typing: bool) -> anyhow::Result<()> {
        let _ = (to, typing);
        Ok(())
    }

    // Message kinds (issue 14): one send for every kind, read marks, chat
    // state and presence.

    /// Sends `content` under `message_id` (`to`: the chat; for a reaction,
    /// edit or revoke, the target's chat).
    async fn send(
        &self,
        message_id: &MessageId,
        to: &Jid,
        content: &OutgoingContent,
    ) -> anyhow::Result<()>;
    /// Marks received messages of `chat` read (`sender`: their author in a group).
    async fn mark_read(
        &self,
        chat: &Jid,
        sender: Option<&Jid>,
        message_ids: &[MessageId],
    ) -> anyhow::Result<()>;
    /// Shows typing, recording or paused in `chat`.
    async fn chat_state(&self, chat: &Jid, state: ChatState) -> anyhow::Result<()>;
    /// Goes online (`true`) or offline.
    async fn set_presence(&self, available: bool) -> anyhow::Result<()>;
    /// Downloads (and decrypts) the media `locator` names (from
    /// [`EngineEvent::MediaKept`]) into `dest`, refusing more than
    /// `max_bytes`; returns the size written.
    async fn fetch_media(
        &self,
        locator: &str,
        dest: &std::path::Path,
        max_bytes: u64,
    ) -> anyhow::Result<u64> {
        let _ = (locator, dest, max_bytes);
        Err(FetchMediaError::Unsupported.into())
    }
    /// Asks for a pairing code for the phone number `phone` (digits) while
    /// the session waits to be paired; the code also comes as
    /// [`EngineEvent::PairCode`].
    async fn pair_with_code(&self, phone: &str) -> anyhow::Result<String> {
        let _ = phone;
        anyhow::bail!("this engine cannot pair by code")
    }

    // Groups and number checks (types in `whatsapp::groups`). The defaults
    // refuse, for engines without them.

    /// Whether each number (digits) has a WhatsApp account, and its JID.
    async fn check_numbers(&self, numbers: &[String]) -> Result<Vec<NumberCheck>, GroupError> {
        let _ = numbers;
        Err(unsupported())
    }
    /// The groups the account is in, with their participants.
    async fn groups(&self) -> Result<Vec<GroupInfo>, GroupError> {
        Err(unsupported())
    }
    /// One group the account is in.
    async fn group_info(&self, group: &Jid) -> Result<GroupInfo, GroupError> {
        let _ = group;
        Err(unsupported())
    }
    /// Creates a group with the account as its creator (superadmin).
    async fn create_group(
        &self,
        subject: &str,
        description: Option<&str>,
        participants: &[Jid],
    ) -> Result<GroupInfo, GroupError> {
        let _ = (subject, description, participants);
        Err(unsupported())
    }
    /// Adds, removes, promotes or demotes participants (an admin's action);
    /// the result says how each number fared.
    async fn change_participants(
        &self,
        group: &Jid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantResult>, GroupError> {
        let _ = (group, action, participants);
        Err(unsupported())
    }
    /// The group's invite link; `revoke` replaces it with a new one first.
    async fn invite_link(&self, group: &Jid, revoke: bool) -> Result<InviteLink, GroupError> {
        let _ = (group, revoke);
        Err(unsupported())
    }
    /// Joins a group through its invite link; returns the group.
    async fn join_group(&self, invite: &InviteLink) -> Result<Jid, GroupError> {
        let _ = invite;
        Err(unsupported())
    }
    /// Leaves a group.
    async fn leave_group(&self, group: &Jid) -> Result<(), GroupError> {
        let _ = group;
        Err(unsupported())
    }
    /// Sets the group's subject (name).
    async fn set_group_subject(&self, group: &Jid, subject: &str) -> Result<(), GroupError> {
        let _ = (group, subject);
        Err(unsupported())
    }
    /// Sets the group's description (`None` removes it).
    async fn set_group_description(
        &self,
        group: &Jid,
        description: Option<&str>,
    ) -> Result<(), GroupError> {
        let _ = (group, description);
        Err(unsupported())
    }
}

/// Why [`EngineSession::fetch_media`] failed, where the caller must tell the user something specific.
#[derive(Debug, thiserror::Error)]
pub enum FetchMediaError {
    /// The engine keeps no media.
    #[error("this engine cannot fetch media")]
    Unsupported,
    /// The media is larger than allowed.
    #[error("the media is larger than {0} bytes")]
    TooLarge(u64),
    /// The media is gone (expired at WhatsApp's CDN, or deleted).
    #[error("the media is no longer available")]
    Gone,
}

/// The refusal of an engine without groups.
fn unsupported() -> GroupError {
    GroupError::Engine(anyhow::anyhow!("this engine does not support groups"))
}
