//! `GET /api/instances/{instanceId}/chats`: the chats of an instance, latest first.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::domain::api_time_ms;
use crate::error::ApiResult;
use crate::projections::chat_list;

use super::paging::{Pagination, page_bounds};
use super::security::{Tag, owned_instance};

/// Chats per page when `limit` is absent.
const DEFAULT_LIMIT: i64 = 50;

/// One chat of an instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ChatSummary {
    /// The chat's JID (use it, or its phone number, as `chatId` for the history).
    pub remote_jid: String,
    /// Messages in the chat.
    pub total_messages: i64,
    /// The latest message's text or caption.
    pub last_message: String,
    /// Whether the latest message was sent by this instance.
    pub last_from_me: bool,
    /// The latest message's status (`sent`, `delivered`, `read`, `played`, `failed`, `received`).
    pub last_status: String,
    pub last_message_at: String,
}

/// A page of chats, latest activity first.
#[derive(Object)]
pub struct ChatList {
    pub chats: Vec<ChatSummary>,
    pub pagination: Pagination,
}

/// The chat list.
pub struct ChatsApi;

#[OpenApi(tag = "Tag::Instances")]
impl ChatsApi {
    /// The instance's chats (every chat with a sent or received message),
    /// the one with the latest message first.
    #[oai(path = "/api/instances/:instanceId/chats", method = "get")]
    async fn chats(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// Chats per page, 1 to 1000 (default 50).
        limit: Query<Option<i64>>,
        /// Chats to skip (default 0).
        skip: Query<Option<i64>>,
    ) -> ApiResult<Json<ChatList>> {
        let (limit, skip) = page_bounds(limit.0, skip.0, DEFAULT_LIMIT)?;
        let (rows, total) = chat_list::page(&state.views, owned.id().as_str(), limit, skip).await?;
        Ok(Json(ChatList {
            chats: rows
                .into_iter()
                .map(|c| ChatSummary {
                    remote_jid: c.remote_jid,
                    total_messages: c.total,
                    last_message: c.last_content,
                    last_from_me: c.last_from_me,
                    last_status: c.last_status,
                    last_message_at: api_time_ms(c.last_at),
                })
                .collect(),
            pagination: Pagination::new(total, limit, skip),
        }))
    }
}
