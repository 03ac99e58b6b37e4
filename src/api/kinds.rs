//! `/api/whatsapp/{instanceId}/…` for the message kinds beyond the seed's
//! text and media: reactions, locations, contact cards, voice notes,
//! stickers, polls, edits, deletes for everyone, read marks, chat state and
//! presence. Each parses its input into typed content, looks up the message
//! it names (404 when unknown), decides (409 when not allowed), and sends
//! through the instance's session.

use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::types::multipart::Upload;
use poem_openapi::types::{Example, ToJSON};
use poem_openapi::{Multipart, Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::domain::idempotency::{Begun, fingerprint};
use crate::domain::kinds::{self as decide, KnownMessage, MediaRefused};
use crate::error::{ApiError, ApiResult};
use crate::ids::{InstanceId, MessageId};
use crate::whatsapp::Jid;
use crate::whatsapp::engine::{OutgoingContent, SendContext, TargetMessage};

use super::security::{OwnedInstance, Tag, owned_instance};
use super::types::Text;
use super::whatsapp::{SentMessageId, SuccessOnly, begin_send, parse_key};

/// A reaction to a message of the instance.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct SendReactionRequest {
    /// The WhatsApp id of the message reacted to (sent or received by this instance).
    pub message_id: Text,
    /// One emoji; empty (`""`) removes this instance's reaction.
    pub emoji: Text,
}

impl Example for SendReactionRequest {
    fn example() -> Self {
        Self {
            message_id: Text("3EB0C431C26A1916E07E".into()),
            emoji: Text("👍".into()),
        }
    }
}

/// A location pin.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct SendLocationRequest {
    /// Phone number or JID of the chat.
    pub phone: Text,
    /// Degrees, -90 to 90.
    pub latitude: f64,
    /// Degrees, -180 to 180.
    pub longitude: f64,
    /// The place's name (optional).
    pub name: Option<Text>,
    /// The place's address (optional).
    pub address: Option<Text>,
}

impl Example for SendLocationRequest {
    fn example() -> Self {
        Self {
            phone: Text("79001234567".into()),
            latitude: 55.7539,
            longitude: 37.6208,
            name: Some(Text("Red Square".into())),
            address: Some(Text("Moscow, Russia".into())),
        }
    }
}

/// A contact card (the vCard is built from the name and numbers).
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct SendContactRequest {
    /// Phone number or JID of the chat.
    pub phone: Text,
    /// The contact's name.
    pub contact_name: Text,
    /// The contact's phone numbers, 1 to 10.
    pub contact_numbers: Vec<Text>,
}

impl Example for SendContactRequest {
    fn example() -> Self {
        Self {
            phone: Text("79001234567".into()),
            contact_name: Text("Ivan Ivanov".into()),
            contact_numbers: vec![Text("79007654321".into())],
        }
    }
}

/// A voice note or sticker upload (multipart: `phone`, `file`).
#[derive(Multipart)]
pub struct SendAudioForm {
    /// Phone number or JID of the chat.
    pub phone: String,
    /// Voice note: OGG/Opus (`audio/ogg; codecs=opus`), at most 16 MiB.
    /// Sticker: WebP, at most 500 KiB.
    pub file: Upload,
}

/// A poll.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct SendPollRequest {
    /// Phone number or JID of the chat.
    pub phone: Text,
    /// The question (1 to 255 characters).
    pub question: Text,
    /// 2 to 12 distinct options (1 to 255 characters each).
    pub options: Vec<Text>,
    /// Voters may pick several options (default false: one).
    pub multiple_choice: Option<bool>,
}

impl Example for SendPollRequest {
    fn example() -> Self {
        Self {
            phone: Text("79001234567".into()),
            question: Text("Lunch?".into()),
            options: vec![Text("Pizza".into()), Text("Sushi".into())],
            multiple_choice: Some(false),
        }
    }
}

/// A new text for a message this instance sent.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct EditMessageRequest {
    /// The WhatsApp id of the text to edit (sent by this instance within the last 15 minutes).
    pub message_id: Text,
    /// The new text (1 to 65,536 characters).
    pub text: Text,
}

impl Example for EditMessageRequest {
    fn example() -> Self {
        Self {
            message_id: Text("3EB0C431C26A1916E07E".into()),
            text: Text("See you at 8, not 7".into()),
        }
    }
}

/// A message to delete for everyone.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct DeleteMessageRequest {
    /// The WhatsApp id of a message this instance sent.
    pub message_id: Text,
}

impl Example for DeleteMessageRequest {
    fn example() -> Self {
        Self {
            message_id: Text("3EB0C431C26A1916E07E".into()),
        }
    }
}

/// Messages to mark read.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct MarkReadRequest {
    /// Phone number or JID of the chat.
    pub phone: Text,
    /// The received messages to mark read (1 to 500); absent: the chat's
    /// last received messages (up to 500).
    pub message_ids: Option<Vec<Text>>,
}

impl Example for MarkReadRequest {
    fn example() -> Self {
        Self {
            phone: Text("79001234567".into()),
            message_ids: Some(vec![Text("3A0F1B2C3D4E5F60".into())]),
        }
    }
}

/// Typing presence in a chat.
#[derive(Object)]
#[oai(example)]
pub struct ChatStateRequest {
    /// Phone number or JID of the chat.
    pub phone: Text,
    /// `typing`, `recording` or `paused`.
    pub state: Text,
}

impl Example for ChatStateRequest {
    fn example() -> Self {
        Self {
            phone: Text("79001234567".into()),
            state: Text("typing".into()),
        }
    }
}

/// The account's presence.
#[derive(Object)]
#[oai(example)]
pub struct PresenceRequest {
    /// `available` (online) or `unavailable` (offline).
    pub presence: Text,
}

impl Example for PresenceRequest {
    fn example() -> Self {
        Self {
            presence: Text("available".into()),
        }
    }
}

/// A chat from the `phone` field.
fn parse_chat(raw: &str) -> ApiResult<Jid> {
    Ok(crate::domain::send::recipient(raw)?)
}

/// The instance's message `id`, 404 when the log does not have it.
pub(super) async fn known(
    state: &AppState,
    instance_id: &InstanceId,
    id: &str,
) -> ApiResult<KnownMessage> {
    if id.trim().is_empty() {
        return Err(ApiError::bad_request("messageId is required"));
    }
    let found = decide::find_message(state.store.pool(), instance_id, id).await?;
    Ok(decide::require_known(found, id)?)
}

/// How the engine names an earlier message.
fn target(m: &KnownMessage) -> TargetMessage {
    TargetMessage {
        message_id: m.message_id.clone(),
        chat: m.chat.clone(),
        from_me: m.from_me,
        sender: m.sender.clone(),
        text: m.body.clone(),
    }
}

/// The reply and mentions of a text or media send (`quotedMessageId`: 404 when unknown).
pub(super) async fn send_context(
    state: &AppState,
    instance_id: &InstanceId,
    quoted: Option<&str>,
    mentions: Option<&[Text]>,
) -> ApiResult<SendContext> {
    let quoted = match quoted {
        Some(id) => Some(target(&known(state, instance_id, id).await?)),
        None => None,
    };
    let mentions: Vec<String> = mentions
        .unwrap_or_default()
        .iter()
        .map(|t| t.0.clone())
        .collect();
    Ok(SendContext {
        quoted,
        mentions: decide::parse_mentions(&mentions)?,
    })
}

impl From<MediaRefused> for ApiError {
    fn from(e: MediaRefused) -> Self {
        match e {
            MediaRefused::Type(m) => ApiError::unsupported_media_type(m),
            MediaRefused::Size(m) => ApiError::too_large(m),
        }
    }
}

/// The answer of a send.
fn sent(id: MessageId) -> Json<SentMessageId> {
    Json(SentMessageId {
        id: id.into_string(),
    })
}

/// Reads an uploaded file, refusing it over `cap` bytes (413) or empty (400).
async fn read_upload(file: Upload, cap: u64) -> ApiResult<Vec<u8>> {
    if file.size() as u64 > cap {
        return Err(ApiError::too_large(format!(
            "the file is larger than {cap} bytes"
        )));
    }
    if file.size() == 0 {
        return Err(ApiError::bad_request("file is empty"));
    }
    file.into_vec().await.map_err(ApiError::internal)
}

/// A voice note or sticker: the form's file read under the larger of the
/// two caps (each kind's own is checked by `content`), turned into content
/// and sent (at most once per `Idempotency-Key`: the phone and the bytes
/// are the request).
async fn send_file(
    state: &AppState,
    owned: &OwnedInstance,
    key: &Header<Option<String>>,
    endpoint: &str,
    form: SendAudioForm,
    content: impl FnOnce(Vec<u8>) -> ApiResult<OutgoingContent>,
) -> ApiResult<Json<SentMessageId>> {
    let to = parse_chat(&form.phone)?;
    let cap = decide::MAX_VOICE_BYTES.max(decide::MAX_STICKER_BYTES);
    let data = read_upload(form.file, cap).await?;
    let print = fingerprint(&[
        endpoint.as_bytes(),
        owned.id().as_str().as_bytes(),
        to.as_str().as_bytes(),
        &data,
    ]);
    let content = content(data)?;
    send_new(state, owned, key, print, &to, content).await
}

/// The fingerprint of a JSON send: the endpoint, the instance and the
/// request body as the API read it.
fn json_print<T: ToJSON>(endpoint: &str, owned: &OwnedInstance, body: &T) -> String {
    let json = body.to_json_string();
    fingerprint(&[
        endpoint.as_bytes(),
        owned.id().as_str().as_bytes(),
        json.as_bytes(),
    ])
}

/// Sends a new message of any kind, at most once per `Idempotency-Key` as
/// `send` does: a repeat with the key and the same request (`print`)
/// answers the first id and sends nothing.
async fn send_new(
    state: &AppState,
    owned: &OwnedInstance,
    key: &Header<Option<String>>,
    print: String,
    to: &Jid,
    content: OutgoingContent,
) -> ApiResult<Json<SentMessageId>> {
    let key = parse_key(key)?;
    let mut ticket = match begin_send(state, owned, key, print).await? {
        Begun::Replay(id) => return Ok(sent(id)),
        Begun::Fresh(ticket) => ticket,
    };
    let id = state
        .sessions
        .send_content(owned.id(), to, content, owned.meta(), ticket.on_record())
        .await?;
    Ok(sent(id))
}

/// Message kinds beyond text and media.
pub struct KindsApi;

#[OpenApi(tag = "Tag::WhatsApp")]
impl KindsApi {
    /// React to a message (sent or received by this instance) with an
    /// emoji; an empty emoji removes the reaction. 404 when the message is
    /// unknown. Answers the reaction's own message id.
    #[oai(path = "/api/whatsapp/:instanceId/send-reaction", method = "post")]
    async fn send_reaction(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<SendReactionRequest>,
    ) -> ApiResult<Json<SentMessageId>> {
        let emoji = decide::parse_emoji(&body.emoji)?;
        let m = known(&state, owned.id(), &body.message_id).await?;
        let id = state
            .sessions
            .send_action(
                owned.id(),
                OutgoingContent::Reaction {
                    target: target(&m),
                    emoji,
                },
                owned.meta(),
            )
            .await?;
        Ok(sent(id))
    }

    /// Send a location pin.
    #[oai(path = "/api/whatsapp/:instanceId/send-location", method = "post")]
    async fn send_location(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// As on `send`: a repeat with the same key and request answers the
        /// first `id` and sends nothing; the same key with another request is 422.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<SendLocationRequest>,
    ) -> ApiResult<Json<SentMessageId>> {
        let to = parse_chat(&body.phone)?;
        let location = decide::parse_location(
            body.latitude,
            body.longitude,
            body.name.as_deref(),
            body.address.as_deref(),
        )?;
        let print = json_print("send-location", &owned, &body.0);
        let content = OutgoingContent::Location(location);
        send_new(&state, &owned, &idempotency_key, print, &to, content).await
    }

    /// Send a contact card (a vCard 3.0 built from the name and numbers).
    #[oai(path = "/api/whatsapp/:instanceId/send-contact", method = "post")]
    async fn send_contact(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// As on `send`: a repeat with the same key and request answers the
        /// first `id` and sends nothing; the same key with another request is 422.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<SendContactRequest>,
    ) -> ApiResult<Json<SentMessageId>> {
        let to = parse_chat(&body.phone)?;
        let numbers: Vec<String> = body.contact_numbers.iter().map(|t| t.0.clone()).collect();
        let card = decide::parse_contact(&body.contact_name, &numbers)?;
        let print = json_print("send-contact", &owned, &body.0);
        let content = OutgoingContent::Contact(card);
        send_new(&state, &owned, &idempotency_key, print, &to, content).await
    }

    /// Send a voice note (multipart `phone`, `file`): OGG/Opus only, sent
    /// as push-to-talk; other audio is 415 (convert it first), over 16 MiB 413.
    #[oai(path = "/api/whatsapp/:instanceId/send-voice", method = "post")]
    async fn send_voice(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// As on `send`: a repeat with the same key and request answers the
        /// first `id` and sends nothing; the same key with another request is 422.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        form: SendAudioForm,
    ) -> ApiResult<Json<SentMessageId>> {
        send_file(
            &state,
            &owned,
            &idempotency_key,
            "send-voice",
            form,
            |data| {
                decide::check_voice(&data)?;
                Ok(OutgoingContent::Voice {
                    data: data.into(),
                    mimetype: "audio/ogg; codecs=opus".into(),
                })
            },
        )
        .await
    }

    /// Send a sticker (multipart `phone`, `file`): WebP only (415
    /// otherwise), at most 500 KiB (413).
    #[oai(path = "/api/whatsapp/:instanceId/send-sticker", method = "post")]
    async fn send_sticker(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// As on `send`: a repeat with the same key and request answers the
        /// first `id` and sends nothing; the same key with another request is 422.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        form: SendAudioForm,
    ) -> ApiResult<Json<SentMessageId>> {
        send_file(
            &state,
            &owned,
            &idempotency_key,
            "send-sticker",
            form,
            |data| {
                decide::check_sticker(&data)?;
                Ok(OutgoingContent::Sticker {
                    data: data.into(),
                    mimetype: "image/webp".into(),
                })
            },
        )
        .await
    }

    /// Send a poll: a question and 2 to 12 options, single choice unless
    /// `multipleChoice`. Votes arrive as `poll_vote` events and are counted
    /// per option in the history.
    #[oai(path = "/api/whatsapp/:instanceId/send-poll", method = "post")]
    async fn send_poll(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// As on `send`: a repeat with the same key and request answers the
        /// first `id` and sends nothing; the same key with another request is 422.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<SendPollRequest>,
    ) -> ApiResult<Json<SentMessageId>> {
        let to = parse_chat(&body.phone)?;
        let options: Vec<String> = body.options.iter().map(|t| t.0.clone()).collect();
        let poll = decide::parse_poll(
            &body.question,
            &options,
            body.multiple_choice.unwrap_or(false),
        )?;
        let print = json_print("send-poll", &owned, &body.0);
        let content = OutgoingContent::Poll(poll);
        send_new(&state, &owned, &idempotency_key, print, &to, content).await
    }

    /// Edit a text this instance sent. 404 when unknown; 409 for someone
    /// else's message, a message that is not a text, or after WhatsApp's
    /// 15-minute edit window. Answers the id of the edit's protocol message.
    #[oai(path = "/api/whatsapp/:instanceId/edit-message", method = "post")]
    async fn edit_message(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<EditMessageRequest>,
    ) -> ApiResult<Json<SentMessageId>> {
        let text = decide::parse_text(&body.text, "text", crate::domain::send::MAX_TEXT_CHARS)?;
        let m = known(&state, owned.id(), &body.message_id).await?;
        decide::decide_edit(&m, chrono::Utc::now().timestamp())?;
        let id = state
            .sessions
            .send_action(
                owned.id(),
                OutgoingContent::Edit {
                    target: target(&m),
                    text,
                },
                owned.meta(),
            )
            .await?;
        Ok(sent(id))
    }

    /// Delete a message this instance sent, for everyone (revoke). 404
    /// when unknown, 409 for someone else's message.
    #[oai(path = "/api/whatsapp/:instanceId/delete-message", method = "post")]
    async fn delete_message(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<DeleteMessageRequest>,
    ) -> ApiResult<Json<SentMessageId>> {
        let m = known(&state, owned.id(), &body.message_id).await?;
        decide::decide_revoke(&m)?;
        let id = state
            .sessions
            .send_action(
                owned.id(),
                OutgoingContent::Revoke { target: target(&m) },
                owned.meta(),
            )
            .await?;
        Ok(sent(id))
    }

    /// Mark received messages of a chat read (the blue ticks at the sender).
    #[oai(path = "/api/whatsapp/:instanceId/mark-read", method = "post")]
    async fn mark_read(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<MarkReadRequest>,
    ) -> ApiResult<Json<SuccessOnly>> {
        let chat = parse_chat(&body.phone)?;
        let ids: Vec<MessageId> = match &body.message_ids {
            Some(list) => {
                if list.is_empty() || list.len() > decide::MAX_READ_IDS {
                    return Err(ApiError::bad_request(format!(
                        "messageIds must hold 1 to {} ids",
                        decide::MAX_READ_IDS
                    )));
                }
                let mut ids = Vec::with_capacity(list.len());
                for raw in list {
                    let m = known(&state, owned.id(), raw).await?;
                    if m.from_me || m.chat != chat {
                        return Err(ApiError::bad_request(format!(
                            "messageIds: {} is not a message received in this chat",
                            &**raw
                        )));
                    }
                    ids.push(m.message_id);
                }
                ids
            }
            None => {
                crate::projections::messages::last_received(
                    &state.views,
                    owned.id().as_str(),
                    chat.as_str(),
                    decide::MAX_READ_IDS as i64,
                )
                .await?
            }
        };
        state
            .sessions
            .mark_read(owned.id(), &chat, None, ids, owned.meta())
            .await?;
        Ok(Json(SuccessOnly { success: true }))
    }

    /// Show `typing`, `recording` (a voice note) or `paused` in a chat.
    #[oai(path = "/api/whatsapp/:instanceId/chat-state", method = "post")]
    async fn chat_state(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<ChatStateRequest>,
    ) -> ApiResult<Json<SuccessOnly>> {
        let chat = parse_chat(&body.phone)?;
        let s = decide::parse_chat_state(&body.state)?;
        state
            .sessions
            .chat_state(owned.id(), &chat, s, owned.meta())
            .await?;
        Ok(Json(SuccessOnly { success: true }))
    }

    /// Go online (`available`) or offline (`unavailable`).
    #[oai(path = "/api/whatsapp/:instanceId/presence", method = "post")]
    async fn presence(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<PresenceRequest>,
    ) -> ApiResult<Json<SuccessOnly>> {
        let available = match &*body.presence {
            "available" | "online" => true,
            "unavailable" | "offline" => false,
            _ => {
                return Err(ApiError::bad_request(
                    "presence must be `available` or `unavailable`",
                ));
            }
        };
        state
            .sessions
            .set_presence(owned.id(), available, owned.meta())
            .await?;
        Ok(Json(SuccessOnly { success: true }))
    }
}
