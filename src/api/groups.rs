//! `/api/whatsapp/{instanceId}/groups…` and `…/check-numbers`: the
//! account's groups (list, create, info, participants, invite link, join,
//! leave, subject, description) and whether numbers are on WhatsApp. Each
//! change WhatsApp accepts is recorded (`group_updated`,
//! `group_participants_changed`) and sent to the webhook.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{Enum, Object, OpenApi};

use crate::api::AppState;
use crate::domain::{api_time_ms, groups as rules};
use crate::error::{ApiError, ApiResult};
use crate::whatsapp::Jid;
use crate::whatsapp::groups::{
    GroupError, GroupInfo, InviteLink, NumberCheck, ParticipantAction, ParticipantResult,
};
use crate::whatsapp::supervisor::GroupFailure;

use super::security::{Tag, owned_instance};
use super::types::Text;
use super::whatsapp::SuccessOnly;

/// Numbers to check.
#[derive(Object)]
#[oai(example)]
pub struct CheckNumbersRequest {
    /// 1 to 50 phone numbers (digits, optional `+`, spaces, dashes) or `…@s.whatsapp.net` JIDs.
    pub numbers: Vec<Text>,
}

impl Example for CheckNumbersRequest {
    fn example() -> Self {
        Self {
            numbers: vec![Text("+7 900 123-45-67".into()), Text("79007654321".into())],
        }
    }
}

/// Whether each number is on WhatsApp, in the order asked.
#[derive(Object)]
#[oai(example)]
pub struct CheckNumbersResponse {
    pub results: Vec<NumberCheckView>,
}

impl Example for CheckNumbersResponse {
    fn example() -> Self {
        Self {
            results: vec![
                NumberCheckView {
                    number: "79001234567".into(),
                    exists: true,
                    jid: Some("79001234567@s.whatsapp.net".into()),
                    lid: None,
                },
                NumberCheckView {
                    number: "79007654321".into(),
                    exists: false,
                    jid: None,
                    lid: None,
                },
            ],
        }
    }
}

/// What an admin does to participants (the path's last segment).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum ParticipantChange {
    Add,
    Remove,
    Promote,
    Demote,
}

impl From<ParticipantChange> for ParticipantAction {
    fn from(change: ParticipantChange) -> Self {
        match change {
            ParticipantChange::Add => ParticipantAction::Add,
            ParticipantChange::Remove => ParticipantAction::Remove,
            ParticipantChange::Promote => ParticipantAction::Promote,
            ParticipantChange::Demote => ParticipantAction::Demote,
        }
    }
}

/// One number's answer.
#[derive(Object)]
pub struct NumberCheckView {
    /// The number, as digits.
    pub number: String,
    /// Whether it has a WhatsApp account.
    pub exists: bool,
    /// Its JID, when it exists (send to it with `phone`).
    #[oai(skip_serializing_if_is_none)]
    pub jid: Option<String>,
    /// Its LID, when WhatsApp told it (real engine only).
    #[oai(skip_serializing_if_is_none)]
    pub lid: Option<String>,
}

impl From<NumberCheck> for NumberCheckView {
    fn from(c: NumberCheck) -> Self {
        Self {
            number: c.number,
            exists: c.exists,
            jid: c.jid.map(|j| j.to_string()),
            lid: c.lid.map(|j| j.to_string()),
        }
    }
}

/// One participant of a group.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ParticipantView {
    /// Phone-number JID (a LID when WhatsApp gave no number).
    pub jid: String,
    /// `member`, `admin` or `superadmin` (the creator).
    pub role: String,
    pub is_admin: bool,
}

/// A group and its participants.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct GroupView {
    /// The group's JID: use it as `phone` to send to the group, and in the paths below.
    pub id: String,
    pub subject: String,
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    /// The creator's JID, when known.
    #[oai(skip_serializing_if_is_none)]
    pub owner: Option<String>,
    /// When it was created (ISO 8601), when known.
    #[oai(skip_serializing_if_is_none)]
    pub created_at: Option<String>,
    pub size: u32,
    pub participants: Vec<ParticipantView>,
}

impl Example for GroupView {
    fn example() -> Self {
        GroupView::from(GroupInfo {
            id: Jid::from_raw("120363012345678901@g.us"),
            subject: "Team".into(),
            description: Some("Our team's group".into()),
            owner: Some(Jid::from_phone("79001234567")),
            created_at: Some(1_767_225_600),
            participants: vec![
                crate::whatsapp::groups::GroupMember {
                    jid: Jid::from_phone("79001234567"),
                    role: crate::whatsapp::groups::GroupRole::Superadmin,
                },
                crate::whatsapp::groups::GroupMember {
                    jid: Jid::from_phone("79007654321"),
                    role: crate::whatsapp::groups::GroupRole::Member,
                },
            ],
        })
    }
}

impl From<GroupInfo> for GroupView {
    fn from(g: GroupInfo) -> Self {
        Self {
            id: g.id.to_string(),
            subject: g.subject,
            description: g.description,
            owner: g.owner.map(|o| o.to_string()),
            created_at: g.created_at.map(|s| api_time_ms(s.saturating_mul(1000))),
            size: g.participants.len() as u32,
            participants: g
                .participants
                .into_iter()
                .map(|p| ParticipantView {
                    jid: p.jid.to_string(),
                    role: p.role.as_str().to_string(),
                    is_admin: p.role.is_admin(),
                })
                .collect(),
        }
    }
}

/// The account's groups.
#[derive(Object)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
}

/// A new group.
#[derive(Object)]
#[oai(example)]
pub struct CreateGroupRequest {
    /// The group's name: 1 to 100 characters, one line.
    pub subject: Text,
    /// Up to 256 phone numbers or JIDs to add; numbers not on WhatsApp are left out (see the answer's participants).
    #[oai(default)]
    pub participants: Vec<Text>,
    /// Up to 2048 characters; newlines allowed.
    pub description: Option<Text>,
}

impl Example for CreateGroupRequest {
    fn example() -> Self {
        Self {
            subject: Text("Team".into()),
            participants: vec![Text("79007654321".into())],
            description: Some(Text("Our team's group".into())),
        }
    }
}

/// Participants to change.
#[derive(Object)]
#[oai(example)]
pub struct ParticipantsRequest {
    /// 1 to 256 phone numbers or JIDs.
    pub participants: Vec<Text>,
}

impl Example for ParticipantsRequest {
    fn example() -> Self {
        Self {
            participants: vec![Text("79007654321".into())],
        }
    }
}

/// How each number fared.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct ParticipantsResponse {
    pub group_id: String,
    /// `add`, `remove`, `promote` or `demote`.
    pub action: String,
    pub results: Vec<ParticipantResultView>,
}

impl Example for ParticipantsResponse {
    fn example() -> Self {
        Self {
            group_id: "120363012345678901@g.us".into(),
            action: "add".into(),
            results: vec![
                ParticipantResultView {
                    jid: "79007654321@s.whatsapp.net".into(),
                    status: "ok".into(),
                    error: None,
                },
                ParticipantResultView {
                    jid: "79990000000@s.whatsapp.net".into(),
                    status: "not_on_whatsapp".into(),
                    error: None,
                },
            ],
        }
    }
}

/// One number's result.
#[derive(Object)]
pub struct ParticipantResultView {
    pub jid: String,
    /// `ok`, `not_on_whatsapp`, `already_participant`, `not_participant` or `refused`.
    pub status: String,
    /// WhatsApp's error code on `refused`, when it gave one.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

impl From<ParticipantResult> for ParticipantResultView {
    fn from(r: ParticipantResult) -> Self {
        Self {
            jid: r.jid.to_string(),
            status: r.outcome.as_str().to_string(),
            error: r.error,
        }
    }
}

/// A group's invite link.
#[derive(Object)]
#[oai(rename_all = "camelCase", example)]
pub struct InviteLinkResponse {
    pub group_id: String,
    pub code: String,
    /// `https://chat.whatsapp.com/<code>`.
    pub link: String,
}

impl Example for InviteLinkResponse {
    fn example() -> Self {
        Self {
            group_id: "120363012345678901@g.us".into(),
            code: "F0oBarBazQuxQuux012345".into(),
            link: "https://chat.whatsapp.com/F0oBarBazQuxQuux012345".into(),
        }
    }
}

/// An invite to accept.
#[derive(Object)]
#[oai(example)]
pub struct JoinGroupRequest {
    /// The invite link (`https://chat.whatsapp.com/<code>`) or its code.
    pub invite: Text,
}

impl Example for JoinGroupRequest {
    fn example() -> Self {
        Self {
            invite: Text("https://chat.whatsapp.com/F0oBarBazQuxQuux012345".into()),
        }
    }
}

/// The group joined.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct JoinGroupResponse {
    pub group_id: String,
}

/// A new subject.
#[derive(Object)]
#[oai(example)]
pub struct SubjectRequest {
    /// 1 to 100 characters, one line.
    pub subject: Text,
}

impl Example for SubjectRequest {
    fn example() -> Self {
        Self {
            subject: Text("Team (2027)".into()),
        }
    }
}

/// A new description.
#[derive(Object)]
#[oai(example)]
pub struct DescriptionRequest {
    /// Up to 2048 characters, newlines allowed; `null` or empty removes it.
    pub description: Option<Text>,
}

impl Example for DescriptionRequest {
    fn example() -> Self {
        Self {
            description: Some(Text("Weekly sync on Mondays".into())),
        }
    }
}

impl From<GroupFailure> for ApiError {
    fn from(e: GroupFailure) -> Self {
        match e {
            GroupFailure::Session(e) => e.into(),
            GroupFailure::Group(e) => match e {
                GroupError::NotFound(_) | GroupError::InviteInvalid => {
                    ApiError::not_found(e.to_string())
                }
                GroupError::NotAdmin(_) => ApiError::forbidden(e.to_string()),
                GroupError::AlreadyParticipant(_) => ApiError::conflict(e.to_string()),
                GroupError::Engine(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "a group call failed in the engine");
                    ApiError::bad_gateway("WhatsApp did not answer the group request; try again")
                }
            },
        }
    }
}

/// The strings of a list of JSON strings.
fn strings(raw: &[Text]) -> Vec<String> {
    raw.iter().map(|t| t.0.clone()).collect()
}

/// Groups and number checks.
pub struct GroupsApi;

#[OpenApi(tag = "Tag::Groups")]
impl GroupsApi {
    /// Whether each number is on WhatsApp, and its JID (1 to 50 numbers).
    #[oai(path = "/api/whatsapp/:instanceId/check-numbers", method = "post")]
    async fn check_numbers(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<CheckNumbersRequest>,
    ) -> ApiResult<Json<CheckNumbersResponse>> {
        let numbers = rules::numbers(&strings(&body.numbers))?;
        let results = state.sessions.check_numbers(owned.id(), &numbers).await?;
        Ok(Json(CheckNumbersResponse {
            results: results.into_iter().map(NumberCheckView::from).collect(),
        }))
    }

    /// The groups the account is in, with their participants.
    #[oai(path = "/api/whatsapp/:instanceId/groups", method = "get")]
    async fn list(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<GroupList>> {
        let mut groups = state.sessions.groups(owned.id()).await?;
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Json(GroupList {
            groups: groups.into_iter().map(GroupView::from).collect(),
        }))
    }

    /// Create a group with the account as its creator (superadmin). Records
    /// `group_updated` (`created`); the participants' instances record it too.
    #[oai(path = "/api/whatsapp/:instanceId/groups", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<CreateGroupRequest>,
    ) -> ApiResult<Json<GroupView>> {
        let subject = rules::subject(&body.subject)?;
        let description = rules::description(body.description.as_deref())?;
        let participants = rules::participants(&strings(&body.participants), true)?;
        let info = state
            .sessions
            .create_group(
                owned.id(),
                &subject,
                description.as_deref(),
                &participants,
                owned.meta(),
            )
            .await?;
        Ok(Json(info.into()))
    }

    /// Join a group by its invite link (or code). Records
    /// `group_participants_changed` (`join`). 404 for an unknown or revoked link,
    /// 409 when already in the group.
    #[oai(path = "/api/whatsapp/:instanceId/join-group", method = "post")]
    async fn join(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<JoinGroupRequest>,
    ) -> ApiResult<Json<JoinGroupResponse>> {
        let invite = InviteLink::parse(&body.invite).ok_or_else(|| {
            ApiError::bad_request(
                "invite must be a link like https://chat.whatsapp.com/<code> or its code (8 to 64 letters and digits)",
            )
        })?;
        let group = state
            .sessions
            .join_group(owned.id(), &invite, owned.meta())
            .await?;
        Ok(Json(JoinGroupResponse {
            group_id: group.to_string(),
        }))
    }

    /// One group the account is in (404 when it is not in it).
    #[oai(path = "/api/whatsapp/:instanceId/groups/:groupId", method = "get")]
    async fn info(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// `…@g.us`, or the part before `@`.
        #[oai(name = "groupId")]
        group_id: Path<String>,
    ) -> ApiResult<Json<GroupView>> {
        let group = rules::group_id(&group_id)?;
        let info = state.sessions.group_info(owned.id(), &group).await?;
        Ok(Json(info.into()))
    }

    /// Add, remove, promote or demote participants (admins only: 403
    /// otherwise; the creator can be neither removed nor demoted). Answers
    /// each number's result; records `group_participants_changed` for the
    /// numbers it was done for.
    #[oai(
        path = "/api/whatsapp/:instanceId/groups/:groupId/participants/:action",
        method = "post"
    )]
    async fn participants(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "groupId")] group_id: Path<String>,
        /// `add`, `remove`, `promote` or `demote`.
        action: Path<ParticipantChange>,
        body: Json<ParticipantsRequest>,
    ) -> ApiResult<Json<ParticipantsResponse>> {
        change(&state, &owned, &group_id, action.0.into(), &body).await
    }

    /// The group's invite link (admins only).
    #[oai(
        path = "/api/whatsapp/:instanceId/groups/:groupId/invite-link",
        method = "get"
    )]
    async fn invite_link(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "groupId")] group_id: Path<String>,
    ) -> ApiResult<Json<InviteLinkResponse>> {
        invite(&state, &owned, &group_id, false).await
    }

    /// Revoke the invite link: the old one stops working; answers the new one
    /// (admins only). Records `group_updated` (`invite_revoked`).
    #[oai(
        path = "/api/whatsapp/:instanceId/groups/:groupId/invite-link/revoke",
        method = "post"
    )]
    async fn revoke_invite_link(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "groupId")] group_id: Path<String>,
    ) -> ApiResult<Json<InviteLinkResponse>> {
        invite(&state, &owned, &group_id, true).await
    }

    /// Leave the group. Records `group_participants_changed` (`leave`).
    #[oai(
        path = "/api/whatsapp/:instanceId/groups/:groupId/leave",
        method = "post"
    )]
    async fn leave(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "groupId")] group_id: Path<String>,
    ) -> ApiResult<Json<SuccessOnly>> {
        let group = rules::group_id(&group_id)?;
        state
            .sessions
            .leave_group(owned.id(), &group, owned.meta())
            .await?;
        Ok(Json(SuccessOnly { success: true }))
    }

    /// Set the subject (admins only). Records `group_updated` (`subject`).
    #[oai(
        path = "/api/whatsapp/:instanceId/groups/:groupId/subject",
        method = "put"
    )]
    async fn subject(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "groupId")] group_id: Path<String>,
        body: Json<SubjectRequest>,
    ) -> ApiResult<Json<SuccessOnly>> {
        let group = rules::group_id(&group_id)?;
        let subject = rules::subject(&body.subject)?;
        state
            .sessions
            .set_group_subject(owned.id(), &group, &subject, owned.meta())
            .await?;
        Ok(Json(SuccessOnly { success: true }))
    }

    /// Set or remove (`null` or empty) the description (admins only).
    /// Records `group_updated` (`description`).
    #[oai(
        path = "/api/whatsapp/:instanceId/groups/:groupId/description",
        method = "put"
    )]
    async fn description(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        #[oai(name = "groupId")] group_id: Path<String>,
        body: Json<DescriptionRequest>,
    ) -> ApiResult<Json<SuccessOnly>> {
        let group = rules::group_id(&group_id)?;
        let description = rules::description(body.description.as_deref())?;
        state
            .sessions
            .set_group_description(owned.id(), &group, description.as_deref(), owned.meta())
            .await?;
        Ok(Json(SuccessOnly { success: true }))
    }
}

/// A participant change: parse, ask WhatsApp, answer each number's result.
async fn change(
    state: &AppState,
    owned: &super::security::OwnedInstance,
    group_id: &str,
    action: ParticipantAction,
    body: &ParticipantsRequest,
) -> ApiResult<Json<ParticipantsResponse>> {
    let group = rules::group_id(group_id)?;
    let participants = rules::participants(&strings(&body.participants), false)?;
    let results = state
        .sessions
        .change_participants(owned.id(), &group, action, &participants, owned.meta())
        .await?;
    Ok(Json(ParticipantsResponse {
        group_id: group.to_string(),
        action: action.as_str().to_string(),
        results: results.into_iter().map(Into::into).collect(),
    }))
}

/// The invite link, revoked first when asked.
async fn invite(
    state: &AppState,
    owned: &super::security::OwnedInstance,
    group_id: &str,
    revoke: bool,
) -> ApiResult<Json<InviteLinkResponse>> {
    let group = rules::group_id(group_id)?;
    let link = state
        .sessions
        .invite_link(owned.id(), &group, revoke, owned.meta())
        .await?;
    Ok(Json(InviteLinkResponse {
        group_id: group.to_string(),
        link: link.link(),
        code: link.code,
    }))
}
