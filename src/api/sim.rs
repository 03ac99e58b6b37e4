//! `/api/sim/…`: control of the simulated WhatsApp network. Present in the
//! spec always; answers 404 unless the gateway runs with `WA_ENGINE=sim`.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::api::AppState;
use crate::error::{ApiError, ApiResult};
use crate::events::MediaKind;
use crate::ids::MessageId;
use crate::kinds::{Happening, MessageExtras};
use crate::whatsapp::Jid;
use crate::whatsapp::engine::IncomingMedia;
use crate::whatsapp::sim::{SimEngine, SimError, SimInbound};

use super::security::{Tag, owned_instance};
use super::types::Text;

/// A scan of the instance's QR code.
#[derive(Object, Default)]
pub struct ScanRequest {
    /// The phone that scans (default: a number derived from the instance id).
    pub phone: Option<String>,
}

/// The paired phone.
#[derive(Object)]
pub struct ScanResponse {
    pub success: bool,
    pub phone: String,
}

/// A message to the instance: a text, or (with one of `location`,
/// `contact`, `poll`, `mediaType`) another kind; `quotedMessageId` and
/// `mentions` make it a reply and mention people.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InboundRequest {
    /// Sender phone number or JID.
    pub from: Text,
    /// The text (required for a text; else the caption or label).
    #[oai(default)]
    pub body: Text,
    pub push_name: Option<Text>,
    /// The message it replies to.
    pub quoted_message_id: Option<Text>,
    /// Phone numbers or JIDs mentioned.
    pub mentions: Option<Vec<Text>>,
    pub location: Option<SimLocation>,
    pub contact: Option<SimContact>,
    pub poll: Option<SimPoll>,
    /// `voice` (a push-to-talk note) or `sticker`.
    pub media_type: Option<Text>,
}

/// A location pin from the contact.
#[derive(Object)]
pub struct SimLocation {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<Text>,
    pub address: Option<Text>,
}

/// A contact card from the contact.
#[derive(Object)]
pub struct SimContact {
    pub name: Text,
    pub numbers: Vec<Text>,
}

/// A poll from the contact.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SimPoll {
    pub question: Text,
    pub options: Vec<Text>,
    pub multiple_choice: Option<bool>,
}

/// A reaction from a contact to a message of the instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SimReactionRequest {
    pub from: Text,
    /// The message reacted to.
    pub message_id: Text,
    /// Empty: the reaction is removed.
    pub emoji: Text,
}

/// An edit, by its sender, of a message the instance received.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SimEditRequest {
    pub from: Text,
    pub message_id: Text,
    pub text: Text,
}

/// A delete for everyone, by its sender, of a message the instance received.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SimRevokeRequest {
    pub from: Text,
    pub message_id: Text,
}

/// A vote of a contact on a poll.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SimVoteRequest {
    pub from: Text,
    /// The poll's message id.
    pub message_id: Text,
    /// The option names chosen (empty: vote withdrawn).
    pub options: Vec<Text>,
}

/// Typing presence of a contact.
#[derive(Object)]
pub struct SimPresenceRequest {
    pub from: Text,
    /// `typing`, `recording` or `paused`.
    pub state: Text,
}

/// A contact's JID from `from`.
fn sender(raw: &str) -> ApiResult<Jid> {
    Jid::parse_recipient(raw).map_err(|e| ApiError::bad_request(e.0))
}

/// A message id field, not empty.
fn message_id(raw: &str) -> ApiResult<MessageId> {
    if raw.trim().is_empty() {
        return Err(ApiError::bad_request("messageId is required"));
    }
    Ok(MessageId::from_stored(raw))
}

/// The kind, body, media and extras of an injected message.
fn inbound_kind(b: &InboundRequest) -> ApiResult<(String, Option<IncomingMedia>, MessageExtras)> {
    use crate::domain::kinds as parse;
    let mut extras = MessageExtras {
        quoted_message_id: b
            .quoted_message_id
            .as_deref()
            .filter(|q| !q.is_empty())
            .map(MessageId::from_stored),
        mentions: parse::parse_mentions(
            &b.mentions
                .iter()
                .flatten()
                .map(|t| t.0.clone())
                .collect::<Vec<_>>(),
        )?,
        ..MessageExtras::default()
    };
    let media = |kind: MediaKind, mimetype: &str| IncomingMedia {
        kind,
        mimetype: mimetype.into(),
        file_name: None,
        size: 1024,
    };
    let kind = if let Some(l) = &b.location {
        extras.location = Some(parse::parse_location(
            l.latitude,
            l.longitude,
            l.name.as_deref(),
            l.address.as_deref(),
        )?);
        ("location".to_string(), None)
    } else if let Some(c) = &b.contact {
        let numbers: Vec<String> = c.numbers.iter().map(|t| t.0.clone()).collect();
        extras.contact = Some(parse::parse_contact(&c.name, &numbers)?);
        ("contact".to_string(), None)
    } else if let Some(p) = &b.poll {
        let options: Vec<String> = p.options.iter().map(|t| t.0.clone()).collect();
        extras.poll = Some(parse::parse_poll(
            &p.question,
            &options,
            p.multiple_choice.unwrap_or(false),
        )?);
        ("poll".to_string(), None)
    } else {
        match b.media_type.as_deref() {
            Some("voice") => (
                "ptt".to_string(),
                Some(media(MediaKind::Audio, "audio/ogg; codecs=opus")),
            ),
            Some("sticker") => (
                "sticker".to_string(),
                Some(media(MediaKind::Image, "image/webp")),
            ),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "mediaType must be `voice` or `sticker`",
                ));
            }
            None => {
                if b.body.is_empty() {
                    return Err(ApiError::bad_request("body must not be empty"));
                }
                let t = if extras.is_empty() {
                    "conversation"
                } else {
                    "extendedText"
                };
                (t.to_string(), None)
            }
        }
    };
    Ok((kind.0, kind.1, extras))
}

/// The id of the injected message.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InboundResponse {
    pub success: bool,
    pub message_id: String,
}

/// The phone types the instance's pairing code.
#[derive(Object)]
pub struct EnterCodeRequest {
    /// The code as shown (`ABCD-EFGH`; case and dash do not matter).
    pub code: Text,
}

/// `{ "success": true }`.
#[derive(Object)]
pub struct SimOk {
    pub success: bool,
}

impl From<SimError> for ApiError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Io(e) => ApiError::internal(e),
            SimError::WrongCode(_) => ApiError::bad_request(e.to_string()),
            other => ApiError::conflict(other.to_string()),
        }
    }
}

fn sim(state: &AppState) -> ApiResult<&SimEngine> {
    state
        .sim
        .as_ref()
        .ok_or_else(|| ApiError::not_found("The sim engine is not enabled (WA_ENGINE=sim)"))
}

/// Sim control endpoints.
pub struct SimApi;

#[OpenApi(tag = "Tag::Sim")]
impl SimApi {
    /// Pair the instance as if a phone scanned its QR code. The body is
    /// optional: `{ "phone": "79001234567" }` (JSON); without it a number
    /// derived from the instance id pairs.
    #[oai(path = "/api/sim/instances/:instanceId/scan", method = "post")]
    async fn scan(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Vec<u8>,
    ) -> ApiResult<Json<ScanResponse>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let request: ScanRequest = if body.iter().all(u8::is_ascii_whitespace) {
            ScanRequest::default()
        } else {
            let value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?;
            match value.get("phone") {
                None | Some(serde_json::Value::Null) => ScanRequest::default(),
                Some(serde_json::Value::String(p)) => ScanRequest {
                    phone: Some(p.clone()),
                },
                Some(_) => return Err(ApiError::bad_request("phone must be a string")),
            }
        };
        let phone = match request.phone {
            Some(p) => {
                let jid = Jid::parse_recipient(&p).map_err(|e| ApiError::bad_request(e.0))?;
                if jid.is_group() {
                    return Err(ApiError::bad_request("phone must be a phone number"));
                }
                Some(jid.user().to_string())
            }
            None => None,
        };
        let phone = sim.scan(id, phone.as_deref())?;
        Ok(Json(ScanResponse {
            success: true,
            phone,
        }))
    }

    /// The "phone" types the pairing code the instance shows (after `POST
    /// /api/instances/{instanceId}/pair-code`): the instance pairs with the
    /// number the code was asked for. 400 for a wrong code, 409 when no code
    /// is waiting.
    #[oai(path = "/api/sim/instances/:instanceId/enter-code", method = "post")]
    async fn enter_code(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<EnterCodeRequest>,
    ) -> ApiResult<Json<ScanResponse>> {
        let phone = sim(&state)?.enter_code(owned.id().as_str(), &body.code)?;
        Ok(Json(ScanResponse {
            success: true,
            phone,
        }))
    }

    /// Make the instance receive a message.
    #[oai(path = "/api/sim/instances/:instanceId/inbound", method = "post")]
    async fn inbound(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<InboundRequest>,
    ) -> ApiResult<Json<InboundResponse>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let from = sender(&body.from)?;
        let (message_type, media, extras) = inbound_kind(&body)?;
        let body_text = match (&extras.location, &extras.contact, &extras.poll) {
            (Some(l), _, _) => l.name.clone().unwrap_or_default(),
            (_, Some(c), _) => c.display_name.clone(),
            (_, _, Some(p)) => p.question.clone(),
            _ => body.body.0.clone(),
        };
        let message_id = sim.inbound_message(
            id,
            SimInbound {
                from,
                body: body_text,
                message_type,
                push_name: body.push_name.clone().map(String::from),
                media,
                extras,
            },
        )?;
        Ok(Json(InboundResponse {
            success: true,
            message_id,
        }))
    }

    /// A contact reacts to a message of the instance (empty emoji: removed).
    #[oai(path = "/api/sim/instances/:instanceId/reaction", method = "post")]
    async fn reaction(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<SimReactionRequest>,
    ) -> ApiResult<Json<InboundResponse>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let from = sender(&body.from)?;
        let emoji = crate::domain::kinds::parse_emoji(&body.emoji)?;
        let reaction_id = MessageId::from_stored(format!(
            "SIMR{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase()
        ));
        sim.happen(
            id,
            Happening::Reaction {
                message_id: reaction_id.clone(),
                chat: from.clone(),
                from,
                from_me: false,
                target_message_id: message_id(&body.message_id)?,
                emoji,
                timestamp: chrono::Utc::now().timestamp(),
            },
        )?;
        Ok(Json(InboundResponse {
            success: true,
            message_id: reaction_id.into_string(),
        }))
    }

    /// A contact edits a message they sent to the instance.
    #[oai(path = "/api/sim/instances/:instanceId/edit", method = "post")]
    async fn edit(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<SimEditRequest>,
    ) -> ApiResult<Json<SimOk>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let from = sender(&body.from)?;
        let text = crate::domain::kinds::parse_text(
            &body.text,
            "text",
            crate::domain::send::MAX_TEXT_CHARS,
        )?;
        sim.happen(
            id,
            Happening::Edit {
                message_id: message_id(&body.message_id)?,
                chat: from.clone(),
                from,
                from_me: false,
                text,
                timestamp: chrono::Utc::now().timestamp(),
            },
        )?;
        Ok(Json(SimOk { success: true }))
    }

    /// A contact deletes, for everyone, a message they sent to the instance.
    #[oai(path = "/api/sim/instances/:instanceId/revoke", method = "post")]
    async fn revoke(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<SimRevokeRequest>,
    ) -> ApiResult<Json<SimOk>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let from = sender(&body.from)?;
        sim.happen(
            id,
            Happening::Revoke {
                message_id: message_id(&body.message_id)?,
                chat: from.clone(),
                from,
                from_me: false,
                timestamp: chrono::Utc::now().timestamp(),
            },
        )?;
        Ok(Json(SimOk { success: true }))
    }

    /// A contact votes on a poll (the whole current choice; empty withdraws).
    #[oai(path = "/api/sim/instances/:instanceId/poll-vote", method = "post")]
    async fn poll_vote(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<SimVoteRequest>,
    ) -> ApiResult<Json<SimOk>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let from = sender(&body.from)?;
        sim.happen(
            id,
            Happening::PollVote {
                poll_message_id: message_id(&body.message_id)?,
                chat: from.clone(),
                voter: from,
                from_me: false,
                selected_options: body.options.iter().map(|t| t.0.clone()).collect(),
                timestamp: chrono::Utc::now().timestamp(),
            },
        )?;
        Ok(Json(SimOk { success: true }))
    }

    /// A contact is typing, recording or paused in their chat with the instance.
    #[oai(path = "/api/sim/instances/:instanceId/presence", method = "post")]
    async fn presence(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<SimPresenceRequest>,
    ) -> ApiResult<Json<SimOk>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let from = sender(&body.from)?;
        let s = crate::domain::kinds::parse_chat_state(&body.state)?;
        sim.happen(
            id,
            Happening::Presence {
                chat: from.clone(),
                from,
                state: s,
            },
        )?;
        Ok(Json(SimOk { success: true }))
    }

    /// Drop the instance's connection as a network failure would (it reconnects with backoff).
    #[oai(path = "/api/sim/instances/:instanceId/drop", method = "post")]
    async fn drop_connection(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<SimOk>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        sim.drop_connection(id)?;
        Ok(Json(SimOk { success: true }))
    }
}
