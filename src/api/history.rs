//! `GET /api/instances/{instanceId}/chats/{chatId}/messages`: a chat's message history.

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::domain::api_time_ms;
use crate::error::{ApiError, ApiResult};
use crate::projections::messages::{self, HistoryQuery};
use crate::whatsapp::Jid;

use super::paging::{Pagination, date_range, page_bounds};
use super::security::{Tag, owned_instance};

/// Messages per page when `limit` is absent.
const DEFAULT_LIMIT: i64 = 50;

/// One sent or received message.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ChatMessage {
    /// The id of the event that recorded the message.
    pub id: String,
    pub instance_id: String,
    /// The chat's JID.
    pub remote_jid: String,
    /// Sent by this instance.
    pub from_me: bool,
    /// `text`, `image`, `video`, `audio`, `document` for sent messages; WhatsApp's
    /// type (`conversation`, `image`, ...) for received ones.
    pub message_type: String,
    /// The text, or the media caption.
    pub content: String,
    /// The WhatsApp message id.
    pub message_id: String,
    pub has_media: bool,
    /// `sent`, `delivered`, `read`, `played` for sent messages (never going
    /// back); `received` for received ones.
    pub status: String,
    pub created_at: String,
    /// The group member who wrote it (received group messages only; the
    /// chat is then the group). Absent on other messages.
    #[oai(skip_serializing_if_is_none)]
    pub sender: Option<String>,
    /// The message this one replies to.
    #[oai(skip_serializing_if_is_none)]
    pub quoted_message_id: Option<String>,
    /// JIDs mentioned.
    #[oai(default, skip_serializing_if_is_empty)]
    pub mentions: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    pub location: Option<LocationView>,
    #[oai(skip_serializing_if_is_none)]
    pub contact: Option<ContactCardView>,
    /// A poll, with its votes counted per option.
    #[oai(skip_serializing_if_is_none)]
    pub poll: Option<PollView>,
    /// Edited: `content` is the latest text, `originalContent` the first.
    #[oai(skip_serializing_if_is_none)]
    pub edited_at: Option<String>,
    /// Deleted for everyone (revoked) at this time.
    #[oai(skip_serializing_if_is_none)]
    pub deleted_at: Option<String>,
    /// The text before it was edited or deleted.
    #[oai(skip_serializing_if_is_none)]
    pub original_content: Option<String>,
    /// Reactions to it: each reactor's current emoji.
    #[oai(default, skip_serializing_if_is_empty)]
    pub reactions: Vec<ReactionView>,
}

/// A location pin.
#[derive(Object)]
pub struct LocationView {
    pub latitude: f64,
    pub longitude: f64,
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub address: Option<String>,
}

/// A contact card.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ContactCardView {
    pub display_name: String,
    pub vcard: String,
}

/// A poll and its votes.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct PollView {
    pub question: String,
    /// 1: single choice; more: that many options may be picked.
    pub selectable_count: u32,
    /// Every option, in order, with its votes.
    pub options: Vec<PollOptionView>,
}

/// One poll option and who chose it.
#[derive(Object)]
pub struct PollOptionView {
    pub name: String,
    pub votes: u32,
    /// JIDs of the voters who chose it.
    pub voters: Vec<String>,
}

/// One reaction.
#[derive(Object)]
pub struct ReactionView {
    /// Who reacted (JID).
    pub from: String,
    pub emoji: String,
}

/// The history's view of a message with its details.
fn chat_message(m: messages::StoredMessage, d: messages::MessageDetails) -> ChatMessage {
    let poll = d.extras.poll.map(|p| PollView {
        question: p.question,
        selectable_count: p.selectable_count,
        options: p
            .options
            .into_iter()
            .map(|name| {
                let voters: Vec<String> = d
                    .votes
                    .iter()
                    .filter(|(_, chosen)| chosen.contains(&name))
                    .map(|(voter, _)| voter.clone())
                    .collect();
                PollOptionView {
                    votes: voters.len() as u32,
                    voters,
                    name,
                }
            })
            .collect(),
    });
    ChatMessage {
        id: m.id,
        instance_id: m.instance_id,
        remote_jid: m.remote_jid,
        from_me: m.from_me,
        message_type: m.message_type,
        content: m.content,
        message_id: m.message_id,
        has_media: m.has_media,
        status: m.status,
        created_at: api_time_ms(m.created_at),
        sender: m.sender,
        quoted_message_id: d.extras.quoted_message_id.map(|q| q.into_string()),
        mentions: d.extras.mentions.iter().map(|j| j.to_string()).collect(),
        location: d.extras.location.map(|l| LocationView {
            latitude: l.latitude,
            longitude: l.longitude,
            name: l.name,
            address: l.address,
        }),
        contact: d.extras.contact.map(|c| ContactCardView {
            display_name: c.display_name,
            vcard: c.vcard,
        }),
        poll,
        edited_at: d.edited_at.map(api_time_ms),
        deleted_at: d.deleted_at.map(api_time_ms),
        original_content: d.original,
        reactions: d
            .reactions
            .into_iter()
            .map(|(from, emoji)| ReactionView { from, emoji })
            .collect(),
    }
}

/// A page of a chat's history, newest first.
#[derive(Object)]
pub struct ChatMessages {
    pub messages: Vec<ChatMessage>,
    pub pagination: Pagination,
}

/// Message history.
pub struct HistoryApi;

#[OpenApi(tag = "Tag::Instances")]
impl HistoryApi {
    /// A chat's messages, newest first. `chatId` is a phone number or a full
    /// JID (`79001234567@s.whatsapp.net`, `123-456@g.us`); `startDate` /
    /// `endDate` are ISO 8601 and inclusive.
    #[oai(
        path = "/api/instances/:instanceId/chats/:chatId/messages",
        method = "get"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn messages(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "chatId")] chat_id: Path<String>,
        /// Messages per page, 1 to 1000 (default 50).
        limit: Query<Option<i64>>,
        /// Messages to skip (default 0).
        skip: Query<Option<i64>>,
        /// ISO 8601; messages at or after it.
        #[oai(name = "startDate")]
        start_date: Query<Option<String>>,
        /// ISO 8601; messages at or before it (a bare date includes the whole day).
        #[oai(name = "endDate")]
        end_date: Query<Option<String>>,
    ) -> ApiResult<Json<ChatMessages>> {
        let chat = Jid::parse_recipient(&chat_id)
            .map_err(|e| ApiError::bad_request(format!("chatId: {}", e.0)))?;
        let (limit, skip) = page_bounds(limit.0, skip.0, DEFAULT_LIMIT)?;
        let (start_ms, end_ms) = date_range(start_date.0.as_deref(), end_date.0.as_deref())?;
        let (rows, total) = messages::page(
            &state.views,
            &HistoryQuery {
                instance_id: owned.id().to_string(),
                remote_jid: chat.to_string(),
                start_ms,
                end_ms,
                limit,
                skip,
            },
        )
        .await?;
        let details = messages::details(&state.views, owned.id().as_str(), &rows).await?;
        Ok(Json(ChatMessages {
            messages: rows
                .into_iter()
                .zip(details)
                .map(|(m, d)| chat_message(m, d))
                .collect(),
            pagination: Pagination::new(total, limit, skip),
        }))
    }
}
