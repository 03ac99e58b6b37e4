//! `/api/whatsapp/{instanceId}/…` (the seed's WhatsApp API) and the session
//! endpoints under `/api/instances/{instanceId}/…` (reconnect, logout, QR).

use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Enum, Multipart, Object, OpenApi};

use crate::api::AppState;
use crate::domain::idempotency::{self, Begun, IdempotencyKey, fingerprint};
use crate::domain::instances::{self, InstanceCommand};
use crate::domain::send::{self, OnRecord, OutgoingText};
use crate::error::{ApiError, ApiResult};
use crate::events::{Contact, FailReason};
use crate::ids::{InstanceId, MessageId};
use crate::whatsapp::engine::{OutgoingContent, SendContext};
use crate::whatsapp::media::{self, MediaError};
use crate::whatsapp::supervisor::{Outgoing, SendError};
use crate::whatsapp::{ConnState, Jid, qr};

use super::instances::{ConnectionStatus, SuccessMessage};
use super::security::{OwnedInstance, Tag, owned_instance};
use super::types::Text;

/// A text message.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SendTextRequest {
    /// Phone number (digits, optional `+`, spaces, dashes; 7–15 digits) or a full JID.
    pub phone: Text,
    /// The text (1 to 65,536 characters).
    pub message: Text,
    /// Reply to this message (its WhatsApp id, sent or received by this instance; 404 when unknown).
    pub quoted_message_id: Option<Text>,
    /// Phone numbers or JIDs mentioned (write `@<number>` in the text where they appear).
    pub mentions: Option<Vec<Text>>,
}

/// Media by URL.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SendMediaRequest {
    pub phone: Text,
    /// http(s) URL of the media; its content type decides image / video / audio / document.
    pub url: Text,
    pub caption: Option<Text>,
    /// File name shown to the recipient (documents).
    pub filename: Option<Text>,
    /// Reply to this message (its WhatsApp id; 404 when unknown).
    pub quoted_message_id: Option<Text>,
    /// Phone numbers or JIDs mentioned in the caption.
    pub mentions: Option<Vec<Text>>,
}

/// A file upload.
#[derive(Multipart)]
pub struct SendFileForm {
    pub phone: String,
    pub caption: Option<String>,
    pub file: Upload,
}

/// The WhatsApp message id of a sent message.
#[derive(Object)]
pub struct SentMessageId {
    pub id: String,
}

/// The QR string.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct QrCodeResponse {
    /// The string to encode as a QR code (not base64 image data).
    pub qr_code: String,
}

/// How to return the QR code.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum QrFormat {
    /// `{ "qrCode": "…" }` (default).
    Json,
    /// An SVG image.
    Svg,
    /// A PNG image.
    Png,
}

/// The QR code in the asked format.
#[derive(ApiResponse)]
pub enum QrResponse {
    /// The QR string.
    #[oai(status = 200)]
    Json(Json<QrCodeResponse>),
    /// The QR code as SVG.
    #[oai(status = 200, content_type = "image/svg+xml")]
    Svg(PlainText<String>),
    /// The QR code as PNG.
    #[oai(status = 200, content_type = "image/png")]
    Png(Binary<Vec<u8>>),
}

/// The account's contacts and groups.
#[derive(Object)]
pub struct ContactList {
    pub contacts: Vec<ContactView>,
}

/// One contact or group.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ContactView {
    pub id: String,
    pub name: String,
    pub number: String,
    pub is_group: bool,
}

impl From<Contact> for ContactView {
    fn from(c: Contact) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name,
            number: c.number,
            is_group: c.is_group,
        }
    }
}

/// The outbound queue of an instance.
#[derive(Object)]
pub struct QueueList {
    pub messages: Vec<QueuedView>,
}

/// A queued message.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct QueuedView {
    /// 1 for the next to go out.
    pub position: u32,
    /// The WhatsApp message id it will be sent under.
    pub id: String,
    /// Recipient JID.
    pub to: String,
    /// `text`, `image`, `video`, `audio` or `document`.
    #[oai(rename = "type")]
    pub message_type: String,
    /// The text, or the media caption.
    pub body: String,
    pub has_media: bool,
    /// Media size in bytes.
    pub media_size: Option<u64>,
    pub file_name: Option<String>,
    pub queued_at: String,
}

/// `{ "success": true }`.
#[derive(Object)]
pub struct SuccessOnly {
    pub success: bool,
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotConnected(id) | SendError::NoSession(id) => ApiError::conflict(format!(
                "Instance {id} is not connected to WhatsApp; pair it (GET its QR code) or reconnect it first"
            )),
            SendError::Engine(e) => {
                tracing::warn!(error = %format!("{e:#}"), "send failed in the engine");
                ApiError::bad_gateway("WhatsApp did not accept the message; try again")
            }
            SendError::Store(e) => e.into(),
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::BadUrl(m) => ApiError::bad_request(m),
            MediaError::TooLarge(_) => ApiError::too_large(e.to_string()),
            MediaError::Fetch(_) | MediaError::Status(_) => ApiError::bad_gateway(e.to_string()),
        }
    }
}

/// A caption, empty as none; control characters other than newlines and tabs refused.
fn checked_caption(caption: Option<String>) -> ApiResult<Option<String>> {
    let caption = caption.filter(|c| !c.is_empty());
    if let Some(c) = &caption {
        crate::domain::types::reject_control_chars(c, "caption", true)
            .map_err(ApiError::bad_request)?;
    }
    Ok(caption)
}

fn parse_phone(raw: &str) -> ApiResult<Jid> {
    Ok(send::recipient(raw)?)
}

fn qr_response(
    state: &AppState,
    instance_id: &InstanceId,
    format: Option<QrFormat>,
) -> ApiResult<QrResponse> {
    let status = state.sessions.status(instance_id);
    let Some(code) = status.qr else {
        let why = match status.state {
            ConnState::Connected => "the instance is already connected",
            ConnState::Connecting => "the instance is still connecting; try again in a moment",
            ConnState::LoggedOut | ConnState::Disconnected => {
                "the instance is not running; reconnect it first"
            }
            ConnState::Qr => "no QR code yet",
        };
        return Err(ApiError::not_found(format!("No QR code available: {why}")));
    };
    Ok(match format.unwrap_or(QrFormat::Json) {
        QrFormat::Json => QrResponse::Json(Json(QrCodeResponse { qr_code: code })),
        QrFormat::Svg => QrResponse::Svg(PlainText(qr::svg(&code)?)),
        QrFormat::Png => QrResponse::Png(Binary(qr::png(&code)?)),
    })
}

/// The seed's WhatsApp endpoints.
pub struct WhatsAppApi;

#[OpenApi(tag = "Tag::WhatsApp")]
impl WhatsAppApi {
    /// Connection state of an instance.
    #[oai(path = "/api/whatsapp/:instanceId/status", method = "get")]
    async fn status(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<ConnectionStatus>> {
        Ok(Json(state.connection_status(owned.id())))
    }

    /// The QR code to pair the instance (`?format=svg` or `png` for an image).
    #[oai(path = "/api/whatsapp/:instanceId/qr", method = "get")]
    async fn qr(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        format: Query<Option<QrFormat>>,
    ) -> ApiResult<QrResponse> {
        qr_response(&state, owned.id(), format.0)
    }

    /// Send a text message.
    #[oai(path = "/api/whatsapp/:instanceId/send", method = "post")]
    async fn send(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// Makes the send safe to retry: a repeat with the same key and body
        /// within 24 hours answers the first `id` and sends nothing; the same
        /// key with another body is 422.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<SendTextRequest>,
    ) -> ApiResult<Json<SentMessageId>> {
        let text = OutgoingText::parse(&body.phone, &body.message)?;
        let key = parse_key(&idempotency_key)?;
        let context = super::kinds::send_context(
            &state,
            owned.id(),
            body.quoted_message_id.as_deref(),
            body.mentions.as_deref(),
        )
        .await?;
        let mut print_parts: Vec<&[u8]> = vec![
            b"send".as_slice(),
            owned.id().as_str().as_bytes(),
            text.to.as_str().as_bytes(),
            text.text.as_bytes(),
        ];
        let extra = context_print(&context);
        if let Some(extra) = &extra {
            print_parts.push(extra.as_bytes());
        }
        let print = fingerprint(&print_parts);
        let mut ticket = match begin_send(&state, &owned, key, print).await? {
            Begun::Replay(id) => {
                return Ok(sent(id));
            }
            Begun::Fresh(ticket) => ticket,
        };
        if context != SendContext::default() {
            let id = state
                .sessions
                .send_content(
                    owned.id(),
                    &text.to,
                    OutgoingContent::Text {
                        text: text.text,
                        context,
                    },
                    owned.meta(),
                    ticket.on_record(),
                )
                .await?;
            return Ok(sent(id));
        }
        let id = dispatch(
            &state,
            &owned,
            &text.to,
            Outgoing::Text(&text.text),
            ticket.on_record(),
        )
        .await?;
        Ok(sent(id))
    }

    /// Send media fetched from a URL.
    #[oai(path = "/api/whatsapp/:instanceId/send-media", method = "post")]
    async fn send_media(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// As on `send`: a repeat with the same key and body answers the first `id`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<SendMediaRequest>,
    ) -> ApiResult<Json<SentMessageId>> {
        let to = parse_phone(&body.phone)?;
        let body = body.0;
        if body.url.trim().is_empty() {
            return Err(ApiError::bad_request("url is required"));
        }
        let key = parse_key(&idempotency_key)?;
        let caption = checked_caption(body.caption.map(String::from))?;
        let file_name = body.filename.map(String::from);
        let context = super::kinds::send_context(
            &state,
            owned.id(),
            body.quoted_message_id.as_deref(),
            body.mentions.as_deref(),
        )
        .await?;
        let extra = context_print(&context);
        let mut print_parts: Vec<&[u8]> = vec![
            b"send-media".as_slice(),
            owned.id().as_str().as_bytes(),
            to.as_str().as_bytes(),
            body.url.as_bytes(),
            caption.as_deref().unwrap_or_default().as_bytes(),
            file_name.as_deref().unwrap_or_default().as_bytes(),
        ];
        if let Some(extra) = &extra {
            print_parts.push(extra.as_bytes());
        }
        let print = fingerprint(&print_parts);
        let mut ticket = match begin_send(&state, &owned, key, print).await? {
            Begun::Replay(id) => {
                return Ok(sent(id));
            }
            Begun::Fresh(ticket) => ticket,
        };
        // Refuse early (before downloading) when the session cannot send.
        ensure_ready(&state, &owned).await?;
        let cfg = &state.config;
        let media = media::fetch(
            &state.media_client,
            &body.url,
            cfg.media_allow_private,
            cfg.media_max_bytes,
            caption,
            file_name,
        )
        .await?;
        if context != SendContext::default() {
            let id = state
                .sessions
                .send_content(
                    owned.id(),
                    &to,
                    OutgoingContent::Media { media, context },
                    owned.meta(),
                    ticket.on_record(),
                )
                .await?;
            return Ok(sent(id));
        }
        let id = dispatch(
            &state,
            &owned,
            &to,
            Outgoing::Media(&media),
            ticket.on_record(),
        )
        .await?;
        Ok(sent(id))
    }

    /// Send an uploaded file (multipart: `phone`, `caption`, `file`).
    #[oai(path = "/api/whatsapp/:instanceId/send-file", method = "post")]
    async fn send_file(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// As on `send`: a repeat with the same key and form answers the first `id`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        form: SendFileForm,
    ) -> ApiResult<Json<SentMessageId>> {
        let to = parse_phone(&form.phone)?;
        if form.file.size() as u64 > state.config.media_max_bytes {
            return Err(ApiError::too_large(format!(
                "the file is larger than {} bytes",
                state.config.media_max_bytes
            )));
        }
        if form.file.size() == 0 {
            return Err(ApiError::bad_request("file is empty"));
        }
        let key = parse_key(&idempotency_key)?;
        let content_type = form.file.content_type().map(str::to_owned);
        let file_name = form.file.file_name().map(str::to_owned);
        let caption = checked_caption(form.caption)?;
        let data = form.file.into_vec().await.map_err(ApiError::internal)?;
        let print = fingerprint(&[
            b"send-file",
            owned.id().as_str().as_bytes(),
            to.as_str().as_bytes(),
            caption.as_deref().unwrap_or_default().as_bytes(),
            file_name.as_deref().unwrap_or_default().as_bytes(),
            content_type.as_deref().unwrap_or_default().as_bytes(),
            &data,
        ]);
        let mut ticket = match begin_send(&state, &owned, key, print).await? {
            Begun::Replay(id) => {
                return Ok(sent(id));
            }
            Begun::Fresh(ticket) => ticket,
        };
        ensure_ready(&state, &owned).await?;
        let media = media::from_upload(
            data.into(),
            content_type.as_deref(),
            file_name.as_deref(),
            caption,
        );
        let id = dispatch(
            &state,
            &owned,
            &to,
            Outgoing::Media(&media),
            ticket.on_record(),
        )
        .await?;
        Ok(sent(id))
    }

    /// The account's contacts and groups (needs a connected instance).
    #[oai(path = "/api/whatsapp/:instanceId/contacts", method = "get")]
    async fn contacts(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<ContactList>> {
        let contacts = state.sessions.contacts(owned.id()).await?;
        Ok(Json(ContactList {
            contacts: contacts.into_iter().map(ContactView::from).collect(),
        }))
    }

    /// Log the instance out of WhatsApp (unlinks the device; reconnect shows a new QR).
    #[oai(path = "/api/whatsapp/:instanceId/logout", method = "post")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<SuccessOnly>> {
        logout(&state, &owned).await?;
        Ok(Json(SuccessOnly { success: true }))
    }
}

/// Records the request, then unlinks the device.
async fn logout(state: &AppState, owned: &OwnedInstance) -> ApiResult<()> {
    instances::execute(
        &state.store,
        owned.id(),
        InstanceCommand::RequestLogout,
        owned.meta(),
    )
    .await?;
    if !state.sessions.logout(owned.id()).await {
        return Err(ApiError::unavailable(
            "The instance's session is not running",
        ));
    }
    state
        .sessions
        .fail_queued(owned.id(), FailReason::LoggedOut, owned.meta())
        .await?;
    Ok(())
}

/// Session endpoints under `/api/instances`.
pub struct InstanceSessionApi;

#[OpenApi(tag = "Tag::Instances")]
impl InstanceSessionApi {
    /// Restart the instance's connection (after a QR timeout, a logout or a crash loop).
    #[oai(path = "/api/instances/:instanceId/reconnect", method = "post")]
    async fn reconnect(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<SuccessMessage>> {
        let instance = instances::execute(
            &state.store,
            owned.id(),
            InstanceCommand::RequestReconnect,
            owned.meta(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Instance {} not found", owned.id())))?;
        if !state.sessions.reconnect(owned.id()).await {
            state.sessions.instance_created(&instance);
        }
        Ok(Json(SuccessMessage {
            success: true,
            message: format!("Instance {} reconnected", owned.id()),
        }))
    }

    /// Log the instance out of WhatsApp.
    #[oai(path = "/api/instances/:instanceId/logout", method = "post")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<SuccessMessage>> {
        logout(&state, &owned).await?;
        Ok(Json(SuccessMessage {
            success: true,
            message: format!("Instance {} logged out", owned.id()),
        }))
    }

    /// The outbound queue: messages held back by the send policy, in the order they will go out.
    #[oai(path = "/api/instances/:instanceId/queue", method = "get")]
    async fn queue(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<QueueList>> {
        let queued = state.sessions.queued(owned.id()).await?;
        Ok(Json(QueueList {
            messages: queued
                .into_iter()
                .enumerate()
                .map(|(n, (m, size))| QueuedView {
                    position: n as u32 + 1,
                    id: m.message_id.into_string(),
                    to: m.to.to_string(),
                    message_type: m.kind.as_str().to_string(),
                    body: m.body,
                    has_media: size.is_some(),
                    media_size: size,
                    file_name: m.file_name,
                    queued_at: crate::domain::api_time_ms(m.queued_at),
                })
                .collect(),
        }))
    }

    /// Cancel a queued message: it is not sent, and its status becomes
    /// `failed` (reason `cancelled`). 404 when it is not (or no longer) queued.
    #[oai(
        path = "/api/instances/:instanceId/queue/:messageId",
        method = "delete"
    )]
    async fn cancel_queued(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "messageId")] message_id: Path<String>,
    ) -> ApiResult<Json<SuccessMessage>> {
        let id = MessageId::from_stored(message_id.0);
        if !state
            .sessions
            .cancel_queued(owned.id(), &id, owned.meta())
            .await?
        {
            return Err(ApiError::not_found(format!(
                "Message {id} is not in the queue (already sent, failed or cancelled)"
            )));
        }
        Ok(Json(SuccessMessage {
            success: true,
            message: format!("Message {id} cancelled"),
        }))
    }

    /// The QR code to pair the instance (`?format=svg` or `png` for an image).
    #[oai(path = "/api/instances/:instanceId/qr", method = "get")]
    async fn qr(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        format: Query<Option<QrFormat>>,
    ) -> ApiResult<QrResponse> {
        qr_response(&state, owned.id(), format.0)
    }
}

/// The `Idempotency-Key` header, when given.
pub(super) fn parse_key(header: &Header<Option<String>>) -> ApiResult<Option<IdempotencyKey>> {
    Ok(header.0.as_deref().map(IdempotencyKey::parse).transpose()?)
}

/// Starts a send under the caller's idempotency key (if any).
pub(super) async fn begin_send(
    state: &AppState,
    owned: &OwnedInstance,
    key: Option<IdempotencyKey>,
    fingerprint: String,
) -> ApiResult<Begun> {
    Ok(idempotency::begin(
        state.store.pool(),
        &state.idempotency,
        owned.caller.id(),
        key,
        fingerprint,
    )
    .await?)
}

/// Sends at once, or, when the instance's send policy is on, queues the
/// message behind it (answered at once with the id it will be sent under).
async fn dispatch(
    state: &AppState,
    owned: &OwnedInstance,
    to: &Jid,
    out: Outgoing<'_>,
    on_record: Option<OnRecord>,
) -> Result<MessageId, SendError> {
    let sessions = &state.sessions;
    if sessions.paced(owned.id()) {
        return sessions
            .enqueue(owned.id(), to, out, owned.meta(), on_record)
            .await;
    }
    match out {
        Outgoing::Text(text) => {
            sessions
                .send_text(owned.id(), to, text, owned.meta(), on_record)
                .await
        }
        Outgoing::Media(media) => {
            sessions
                .send_media(owned.id(), to, media.clone(), owned.meta(), on_record)
                .await
        }
    }
}

/// What a reply and mentions add to a send's idempotency fingerprint
/// (nothing when there are none, so plain sends keep their fingerprint).
fn context_print(c: &SendContext) -> Option<String> {
    if *c == SendContext::default() {
        return None;
    }
    let quoted = c
        .quoted
        .as_ref()
        .map(|q| q.message_id.as_str())
        .unwrap_or_default();
    let mentions: Vec<&str> = c.mentions.iter().map(|m| m.as_str()).collect();
    Some(format!("quoted={quoted};mentions={}", mentions.join(",")))
}

/// The answer of a send: its message id.
fn sent(id: MessageId) -> Json<SentMessageId> {
    Json(SentMessageId {
        id: id.into_string(),
    })
}

/// Refuses (409) a send to an instance that is not connected, after waiting
/// up to `WA_SEND_WAIT_MS` for one that is connecting.
async fn ensure_ready(state: &AppState, owned: &OwnedInstance) -> ApiResult<()> {
    if state.sessions.wait_ready(owned.id()).await {
        Ok(())
    } else {
        Err(SendError::NotConnected(owned.id().clone()).into())
    }
}
