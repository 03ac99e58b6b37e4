//! The event catalog: every fact the gateway records, as typed Rust values.
//!
//! Event payloads are the public contract (NATS subscribers and replays read
//! them): past-tense names, camelCase JSON fields, a schema version per type,
//! and a JSON Schema per type generated into `schemas/` (`make schemas`).
//! Secrets never appear here: `api_key_rotated` says that it happened, not
//! what the key is.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::pacing::SendPolicy;
use crate::domain::proxy::ProxyPublic;
use crate::ids::{InstanceId, Jid, MessageId, UserId};
pub use crate::kinds::{
    ChatMarkedRead, ChatPresence, ChatStateSent, MessageEdited, MessageExtras, MessageReaction,
    MessageRevoked, PollVoted, PresenceSet,
};
use crate::whatsapp::groups::{GroupChange, ParticipantAction};

/// How far a message got: `sent` (the server acknowledged it), `delivered`
/// (it reached the recipient's device), `read`, `played` (a voice or video
/// message), or `failed`: the server refused it or never acknowledged it,
/// or a queued message never went out (cancelled, logged out, instance
/// deleted); final. Ordered: a later state never goes back to an earlier one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
}

impl DeliveryStatus {
    /// The status name used in events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
        }
    }
    /// Parses a stored status name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "read" => Some(Self::Read),
            "played" => Some(Self::Played),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Why a queued message failed without going out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// Cancelled through `DELETE /api/instances/{id}/queue/{messageId}`.
    Cancelled,
    /// The instance was logged out.
    LoggedOut,
    /// The instance was deleted.
    InstanceDeleted,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::LoggedOut => "logged_out",
            Self::InstanceDeleted => "instance_deleted",
        }
    }
}

/// The kind of media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
}

impl MediaKind {
    /// From a MIME type: `image/*`, `video/*`, `audio/*`, else a document.
    pub fn from_mimetype(mime: &str) -> Self {
        let top = mime
            .split('/')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match top.as_str() {
            "image" => Self::Image,
            "video" => Self::Video,
            "audio" => Self::Audio,
            _ => Self::Document,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
        }
    }
}

/// What kind of message we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SentKind {
    Text,
    Image,
    Video,
    Audio,
    Document,
    // A voice note (push-to-talk audio).
    Voice,
    Sticker,
    Location,
    Contact,
    Poll,
}

impl SentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Voice => "voice",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contact => "contact",
            Self::Poll => "poll",
        }
    }
}

impl From<MediaKind> for SentKind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Image => Self::Image,
            MediaKind::Video => Self::Video,
            MediaKind::Audio => Self::Audio,
            MediaKind::Document => Self::Document,
        }
    }
}

/// Why a session closed or was logged out: a fixed code, optionally
/// followed by what the network said (`connect_failure: LoggedOut`,
/// `connection_lost: stream error`). In JSON it is one string, `code` or
/// `code: detail`, as it always was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReason {
    pub code: ReasonCode,
    pub detail: Option<String>,
}

/// The fixed part of a [`SessionReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// The gateway is stopping (it reconnects on the next start).
    Shutdown,
    /// The network dropped an established connection.
    ConnectionLost,
    /// A logout was asked for through the API.
    Logout,
    /// The device was unlinked from the phone.
    LoggedOut,
    /// The server refused the login because the device is no longer linked.
    LoggedOutOnConnect,
    /// Nobody scanned the QR codes in time.
    QrTimeout,
    /// Too many drops in a short time: reconnecting stopped.
    CrashLoop,
    /// The client stopped by itself.
    ClientStopped,
    /// Another client took over the session.
    Replaced,
    /// WhatsApp banned the number for a while.
    TemporaryBan,
    /// WhatsApp refuses this client version.
    ClientOutdated,
    /// WhatsApp refused the connection.
    ConnectFailure,
    /// The gateway process ended without closing the session (a crash,
    /// `kill -9`); recorded when it starts again, before it reconnects.
    ProcessRestart,
    /// A reconnect was asked for (through the API, or because the
    /// instance's proxy changed) while connected.
    Reconnect,
    /// WhatsApp's server stopped answering keepalive pings: the connection
    /// was closed (it would otherwise look connected while dead) and is reconnected.
    KeepaliveTimeout,
}

impl ReasonCode {
    /// Every code, for parsing and the JSON Schema.
    pub const ALL: &'static [ReasonCode] = &[
        Self::Shutdown,
        Self::ConnectionLost,
        Self::Logout,
        Self::LoggedOut,
        Self::LoggedOutOnConnect,
        Self::QrTimeout,
        Self::CrashLoop,
        Self::ClientStopped,
        Self::Replaced,
        Self::TemporaryBan,
        Self::ClientOutdated,
        Self::ConnectFailure,
        Self::ProcessRestart,
        Self::Reconnect,
        Self::KeepaliveTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::ConnectionLost => "connection_lost",
            Self::Logout => "logout",
            Self::LoggedOut => "logged_out",
            Self::LoggedOutOnConnect => "logged_out_on_connect",
            Self::QrTimeout => "qr_timeout",
            Self::CrashLoop => "crash_loop",
            Self::ClientStopped => "client_stopped",
            Self::Replaced => "replaced",
            Self::TemporaryBan => "temporary_ban",
            Self::ClientOutdated => "client_outdated",
            Self::ConnectFailure => "connect_failure",
            Self::ProcessRestart => "process_restart",
            Self::Reconnect => "reconnect",
            Self::KeepaliveTimeout => "keepalive_timeout",
        }
    }
}

impl From<ReasonCode> for SessionReason {
    fn from(code: ReasonCode) -> Self {
        Self { code, detail: None }
    }
}

impl SessionReason {
    /// A reason with what the network said.
    pub fn with_detail(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: Some(detail.into()),
        }
    }

    /// Parses `code` or `code: detail`.
    pub fn parse(raw: &str) -> Option<Self> {
        let (code, detail) = match raw.split_once(": ") {
            Some((c, d)) => (c, Some(d.to_string())),
            None => (raw, None),
        };
        let code = *ReasonCode::ALL.iter().find(|c| c.as_str() == code)?;
        Some(Self { code, detail })
    }
}

impl std::fmt::Display for SessionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.code.as_str()),
            None => f.write_str(self.code.as_str()),
        }
    }
}

impl Serialize for SessionReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown session reason {raw:?}")))
    }
}

impl JsonSchema for SessionReason {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SessionReason".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let codes: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        schemars::json_schema!({
            "type": "string",
            "description": "A reason code, optionally followed by `: ` and what the network said.",
            "pattern": format!("^({})(: .*)?$", codes.join("|")),
        })
    }
}

/// Webhook settings as events carry them (never the secret itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    /// Target URL, if any.
    pub url: Option<String>,
    /// Whether deliveries are sent.
    pub enabled: bool,
    /// Send `message_received`.
    pub notify_received: bool,
    /// Send `message_sent`.
    pub notify_sent: bool,
    /// Send `message_status` delivered.
    pub notify_delivery: bool,
    /// Send `message_status` read and played.
    pub notify_read: bool,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry, in milliseconds.
    pub retry_interval: u64,
    /// Whether a signing secret is set (the secret itself is never in an event).
    pub has_secret: bool,
    /// The opt-in webhook event types the instance receives
    /// (`webhookEvents`; absent when none, as in events of older versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

/// A user account was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    pub user_id: UserId,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
}

/// A user logged in with e-mail and password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserLoggedIn {
    pub user_id: UserId,
}

/// A login was refused: a wrong password, an unknown e-mail, or too many
/// recent failures (`throttled`, answered 429 without checking the
/// password). Never carries the password tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginFailed {
    /// The e-mail tried, trimmed and lower-cased.
    pub email: String,
    /// The client's address, when known.
    pub address: Option<String>,
    /// Whether an account has that e-mail (never told to the client).
    pub account_exists: bool,
    pub throttled: bool,
}

/// An admin set a user's own API rate limit (`None`: back to the default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSet {
    pub user_id: UserId,
    /// Requests a minute; absent or null: the gateway's default.
    pub per_minute: Option<u32>,
}

/// A user's API key was replaced; the old key stopped working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRotated {
    pub user_id: UserId,
}

/// A user's password was changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChanged {
    pub user_id: UserId,
}

/// An instance was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceCreated {
    pub instance_id: InstanceId,
    pub user_id: UserId,
    pub name: String,
    pub description: Option<String>,
    pub webhook: WebhookConfig,
    /// How sends are paced (absent in events of older versions: off).
    #[serde(default)]
    pub send_policy: SendPolicy,
    /// The proxy its connections leave through, without credentials (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyPublic>,
}

/// An instance's name, description or webhook settings changed; carries the new whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceUpdated {
    pub instance_id: InstanceId,
    pub user_id: UserId,
    pub name: String,
    pub description: Option<String>,
    pub webhook: WebhookConfig,
    /// How sends are paced (absent in events of older versions: off).
    #[serde(default)]
    pub send_policy: SendPolicy,
    /// Whether the webhook secret was set, changed or cleared by this update.
    pub secret_changed: bool,
    /// The proxy its connections leave through, without credentials (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyPublic>,
    /// Whether the proxy (or its credentials) was set, changed or removed
    /// by this update: the instance reconnects through the new one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_changed: bool,
}

/// An instance was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDeleted {
    pub instance_id: InstanceId,
    pub user_id: UserId,
}

/// A reconnect was asked for through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectRequested {
    pub instance_id: InstanceId,
}

/// A logout was asked for through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogoutRequested {
    pub instance_id: InstanceId,
}

/// A new QR code is waiting to be scanned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrReceived {
    pub instance_id: InstanceId,
    pub qr_code: String,
}

/// A pairing code is waiting to be typed into the phone (WhatsApp > Linked
/// devices > Link with phone number): asked for through `POST
/// /api/instances/{instanceId}/pair-code`, or its replacement after WhatsApp
/// retired the previous one. Like the QR code, a short-lived pairing
/// credential: the activity log leaves it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairCodeReceived {
    pub instance_id: InstanceId,
    /// The code as WhatsApp shows it: `ABCD-EFGH`.
    pub pair_code: String,
    /// The phone number (digits) the code is for.
    pub phone: String,
}

/// The WhatsApp connection is open and usable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionOpened {
    pub instance_id: InstanceId,
    /// The paired account's phone number, when known.
    pub phone: Option<String>,
}

/// The WhatsApp connection closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionClosed {
    pub instance_id: InstanceId,
    /// Why: `shutdown`, `connection_lost`, `logout`, `qr_timeout`, `crash_loop`, `replaced`, `process_restart`, ...
    pub reason: SessionReason,
    pub will_reconnect: bool,
}

/// The device was unlinked; a new QR scan is needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedOut {
    pub instance_id: InstanceId,
    pub reason: SessionReason,
}

/// Media attached to a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaInfo {
    /// `image`, `video`, `audio` or `document`.
    pub kind: MediaKind,
    pub mimetype: String,
    pub file_name: Option<String>,
    pub size: u64,
}

/// A message was sent (accepted by the engine for sending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageSent {
    pub instance_id: InstanceId,
    pub message_id: MessageId,
    /// Recipient JID.
    pub to: Jid,
    /// Text, or the media caption.
    pub body: String,
    /// `text`, `image`, `video`, `audio`, `document`, `voice`, `sticker`,
    /// `location`, `contact` or `poll`.
    #[serde(rename = "type")]
    pub message_type: SentKind,
    /// Unix seconds.
    pub timestamp: i64,
    pub has_media: bool,
    pub media: Option<MediaInfo>,
    /// Reply, mentions, location, contact card, poll (fields absent when none).
    #[serde(flatten)]
    pub extras: MessageExtras,
}

/// A message arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageReceived {
    pub instance_id: InstanceId,
    pub message_id: MessageId,
    /// Sender JID (phone-number JID where known).
    pub from: Jid,
    /// The sender's LID (`…@lid`) when WhatsApp addressed them by it; `from`
    /// is then their phone-number JID where the mapping is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_lid: Option<Jid>,
    /// Chat JID (the group for group messages, else the sender).
    pub chat: Jid,
    /// The group member who sent it: present on group messages only (then
    /// equal to `from`), so that a group message always names its sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<Jid>,
    pub body: String,
    /// WhatsApp message type: `conversation`, `extendedText`, `image`, `video`, `audio`, `document`, ...
    #[serde(rename = "type")]
    pub message_type: String,
    /// Unix seconds.
    pub timestamp: i64,
    pub has_media: bool,
    pub push_name: Option<String>,
    pub media: Option<MediaInfo>,
    /// Reply, mentions, location, contact card, poll (fields absent when none).
    #[serde(flatten)]
    pub extras: MessageExtras,
}

/// A message's delivery state advanced: `sent`, `delivered`, `read` or
/// `played`, or it `failed` (then with a reason).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatus {
    pub instance_id: InstanceId,
    pub message_id: MessageId,
    pub status: DeliveryStatus,
    /// The remote party's JID.
    pub from: Jid,
    pub from_me: bool,
    /// Why it failed (`failed` only): `nack_<code>` (the server refused
    /// it), `no_server_ack` (not acknowledged in time), `cancelled`,
    /// `logged_out` or `instance_deleted` (a queued message that never went out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A send was held back by the instance's send policy: it waits in the
/// outbound queue and goes out, in order, when pacing allows. Its message id
/// is fixed now, so a resend after a crash is the same message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueued {
    pub instance_id: InstanceId,
    pub message_id: MessageId,
    /// Recipient JID.
    pub to: Jid,
    /// Text, or the media caption.
    pub body: String,
    /// `text`, `image`, `video`, `audio` or `document`.
    #[serde(rename = "type")]
    pub message_type: SentKind,
    /// Unix seconds.
    pub timestamp: i64,
    pub has_media: bool,
    pub media: Option<MediaInfo>,
}

/// One address-book entry or group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub id: Jid,
    pub name: String,
    pub number: String,
    pub is_group: bool,
}

/// Contacts were learned or changed (whole or partial list; merge by id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactsUpdated {
    pub instance_id: InstanceId,
    pub contacts: Vec<Contact>,
}

/// An authenticated API request was served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiCalled {
    pub user_id: UserId,
    pub instance_id: Option<InstanceId>,
    pub method: String,
    /// Route template, e.g. `/api/whatsapp/{instanceId}/send`.
    pub route: String,
    pub status: u16,
    pub duration_ms: f64,
}

/// A webhook delivery got a 2xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivered {
    pub instance_id: InstanceId,
    pub delivery_id: String,
    /// The `webhook-id` header (same on every attempt).
    pub webhook_id: String,
    /// The delivered event's type.
    pub event: String,
    pub attempt: u32,
    pub status_code: u16,
    pub duration_ms: f64,
}

/// A webhook attempt failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookFailed {
    pub instance_id: InstanceId,
    pub delivery_id: String,
    pub webhook_id: String,
    pub event: String,
    pub attempt: u32,
    /// HTTP status, when an answer came.
    pub status_code: Option<u16>,
    /// What went wrong (`timeout`, `connection error`, `HTTP 500`, ...).
    pub error: String,
    pub duration_ms: f64,
    pub will_retry: bool,
    /// RFC 3339 time of the next attempt, when one is planned.
    pub next_attempt_at: Option<String>,
}

/// An instance's webhook was switched off by the gateway (e.g. the endpoint answered 410 Gone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDisabled {
    pub instance_id: InstanceId,
    pub reason: String,
}

/// A group this account is in changed: created (with this account in it),
/// a new subject, a new or removed description, the invite link revoked.
/// Recorded for the instance that made the change (through the API) and for
/// every other instance in the group (as WhatsApp tells them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupUpdated {
    pub instance_id: InstanceId,
    /// The group's JID (`…@g.us`).
    pub group_id: Jid,
    /// `created`, `subject`, `description` or `invite_revoked`.
    pub change: GroupChange,
    /// The subject (on `created` and `subject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The new description (on `description`; absent when it was removed,
    /// and on `created` when the group has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The participants at creation (`created` only, when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<Jid>>,
    /// Who made the change, when known (this account's own JID for API actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Jid>,
    /// Unix seconds.
    pub timestamp: i64,
}

/// Participants of a group this account is in were added, removed,
/// promoted, demoted, joined through an invite link, or left. Recorded like
/// [`GroupUpdated`]: for the acting instance and for every other instance in the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupParticipantsChanged {
    pub instance_id: InstanceId,
    /// The group's JID (`…@g.us`).
    pub group_id: Jid,
    /// `add`, `remove`, `promote`, `demote`, `join` or `leave`.
    pub action: ParticipantAction,
    /// The participants the change applied to (only those it changed).
    pub participants: Vec<Jid>,
    /// Who made the change, when known (for `join` and `leave`, the participant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Jid>,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A connect attempt failed before a connection was up (WhatsApp could
/// not be reached, the handshake failed, the engine could not start): the
/// instance stays `connecting` and tries again; this says why, in plain words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectFailed {
    pub instance_id: InstanceId,
    /// What went wrong, in plain words (`DNS lookup failed for web.whatsapp.com`).
    pub error: String,
    /// Failed attempts in a row, this one included.
    pub attempt: u32,
    /// Milliseconds until the next attempt, when the gateway schedules it
    /// (absent when the WhatsApp client retries on its own backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

/// A sent message is still `sent`, with no `delivered` receipt, longer than
/// `WA_STUCK_AFTER_SECS`: recorded once per message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageStuck {
    pub instance_id: InstanceId,
    pub message_id: MessageId,
    /// The recipient's JID.
    pub to: Jid,
    /// Unix milliseconds when the message was sent.
    pub sent_at: i64,
    /// Seconds it had waited for its receipt when found stuck.
    pub waiting_secs: u64,
}

macro_rules! catalog {
    ($( $variant:ident($payload:ty) = $name:literal, version $version:literal; )*) => {
        /// Every event the gateway records.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $( $variant($payload), )*
        }

        impl Event {
            /// The event type: the stored, published and subject name.
            pub fn event_type(&self) -> &'static str {
                match self { $( Event::$variant(_) => $name, )* }
            }

            /// The payload's schema version.
            pub fn schema_version(&self) -> u32 {
                match self { $( Event::$variant(_) => $version, )* }
            }

            /// The payload as JSON.
            pub fn data(&self) -> Value {
                match self {
                    $( Event::$variant(p) => serde_json::to_value(p).expect("event payloads serialize"), )*
                }
            }

            /// The payload as JSON text, written straight from the typed payload.
            pub fn to_raw(&self) -> Box<serde_json::value::RawValue> {
                match self {
                    $( Event::$variant(p) => serde_json::value::to_raw_value(p).expect("event payloads serialize"), )*
                }
            }

            /// Rebuilds an event from its stored type and payload text.
            pub fn from_json(event_type: &str, json: &str) -> Result<Event, UnknownEvent> {
                match event_type {
                    $( $name => serde_json::from_str::<$payload>(json)
                        .map(Event::$variant)
                        .map_err(|e| UnknownEvent(format!("{event_type}: {e}"))), )*
                    other => Err(UnknownEvent(format!("unknown event type {other}"))),
                }
            }

            /// Rebuilds an event from its stored type and payload.
            pub fn from_parts(event_type: &str, data: &Value) -> Result<Event, UnknownEvent> {
                match event_type {
                    $( $name => serde_json::from_value::<$payload>(data.clone())
                        .map(Event::$variant)
                        .map_err(|e| UnknownEvent(format!("{event_type}: {e}"))), )*
                    other => Err(UnknownEvent(format!("unknown event type {other}"))),
                }
            }

            /// Every event type with its version and JSON Schema (for `make schemas`).
            pub fn schemas() -> Vec<(&'static str, u32, Value)> {
                vec![ $( ($name, $version, serde_json::to_value(schemars::schema_for!($payload)).expect("schema serializes")), )* ]
            }

            /// Every event type name.
            pub const TYPES: &'static [&'static str] = &[ $( $name, )* ];
        }

        $( impl From<$payload> for Event {
            fn from(p: $payload) -> Event { Event::$variant(p) }
        } )*
    };
}

catalog! {
    UserRegistered(UserRegistered) = "user_registered", version 1;
    UserLoggedIn(UserLoggedIn) = "user_logged_in", version 1;
    LoginFailed(LoginFailed) = "login_failed", version 1;
    RateLimitSet(RateLimitSet) = "rate_limit_set", version 1;
    ApiKeyRotated(ApiKeyRotated) = "api_key_rotated", version 1;
    PasswordChanged(PasswordChanged) = "password_changed", version 1;
    InstanceCreated(InstanceCreated) = "instance_created", version 1;
    InstanceUpdated(InstanceUpdated) = "instance_updated", version 1;
    InstanceDeleted(InstanceDeleted) = "instance_deleted", version 1;
    ReconnectRequested(ReconnectRequested) = "reconnect_requested", version 1;
    LogoutRequested(LogoutRequested) = "logout_requested", version 1;
    QrReceived(QrReceived) = "qr_received", version 1;
    ConnectionOpened(ConnectionOpened) = "connection_opened", version 1;
    ConnectionClosed(ConnectionClosed) = "connection_closed", version 1;
    LoggedOut(LoggedOut) = "logged_out", version 1;
    MessageSent(MessageSent) = "message_sent", version 1;
    MessageReceived(MessageReceived) = "message_received", version 1;
    MessageStatus(MessageStatus) = "message_status", version 1;
    MessageQueued(MessageQueued) = "message_queued", version 1;
    ContactsUpdated(ContactsUpdated) = "contacts_updated", version 1;
    ApiCalled(ApiCalled) = "api_called", version 1;
    WebhookDelivered(WebhookDelivered) = "webhook_delivered", version 1;
    WebhookFailed(WebhookFailed) = "webhook_failed", version 1;
    WebhookDisabled(WebhookDisabled) = "webhook_disabled", version 1;
    PairCodeReceived(PairCodeReceived) = "pair_code_received", version 1;
    GroupUpdated(GroupUpdated) = "group_updated", version 1;
    GroupParticipantsChanged(GroupParticipantsChanged) = "group_participants_changed", version 1;
    ConnectFailed(ConnectFailed) = "connect_failed", version 1;
    MessageStuck(MessageStuck) = "message_stuck", version 1;
    MessageReaction(MessageReaction) = "message_reaction", version 1;
    MessageEdited(MessageEdited) = "message_edited", version 1;
    MessageRevoked(MessageRevoked) = "message_revoked", version 1;
    PollVoted(PollVoted) = "poll_vote", version 1;
    ChatPresence(ChatPresence) = "chat_presence", version 1;
    ChatMarkedRead(ChatMarkedRead) = "chat_marked_read", version 1;
    ChatStateSent(ChatStateSent) = "chat_state_sent", version 1;
    PresenceSet(PresenceSet) = "presence_set", version 1;
}

/// A stored event whose type or payload this build does not understand.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode event: {0}")]
pub struct UnknownEvent(pub String);

/// Writes one `<type>.v<version>.json` schema file per event type into `dir`.
pub fn write_schemas(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, version, schema) in Event::schemas() {
        let path = dir.join(format!("{name}.v{version}.json"));
        let mut text = serde_json::to_string_pretty(&schema)?;
        text.push('\n');
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_parts() {
        let e = Event::from(MessageSent {
            instance_id: InstanceId::from_stored("i1"),
            message_id: MessageId::from_stored("m1"),
            to: Jid::from_phone("79001234567"),
            body: "hi".into(),
            message_type: SentKind::Text,
            timestamp: 1,
            has_media: false,
            media: None,
            extras: Default::default(),
        });
        assert_eq!(e.event_type(), "message_sent");
        let data = e.data();
        assert_eq!(data["type"], "text");
        assert_eq!(data["instanceId"], "i1");
        assert_eq!(Event::from_parts("message_sent", &data).unwrap(), e);
        assert!(Event::from_parts("nope", &data).is_err());
        let raw = e.to_raw();
        assert_eq!(serde_json::from_str::<Value>(raw.get()).unwrap(), data);
        assert_eq!(Event::from_json("message_sent", raw.get()).unwrap(), e);
        assert!(Event::from_json("message_sent", "{}").is_err());
    }

    #[test]
    fn every_type_has_a_schema() {
        assert_eq!(Event::schemas().len(), Event::TYPES.len());
    }
}
