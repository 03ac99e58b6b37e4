//! The engine interface: what the supervisor needs from a WhatsApp
//! implementation (the real client or the simulated network).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::events::{Contact, SessionReason};
use crate::ids::{InstanceId, MessageId};

use super::Jid;

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
    /// WhatsApp's server answered a keepalive ping: the connection is alive
    /// (the instance's `health.lastSeenAt`; nothing is recorded in the log).
    Alive,
    /// A connect attempt failed before a connection was up (the engine
    /// retries by itself); `error` says why in plain words.
    ConnectFailed { error: String, attempt: u32 },
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
}
