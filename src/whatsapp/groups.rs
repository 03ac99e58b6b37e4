//! Groups and number checks as the engines see them: what a group is
//! (subject, description, participants and their roles), the outcome of a
//! participant change per number, the typed refusals the API maps to
//! 403/404/409, and the group notices an engine reports (another member's
//! change) that become `group_updated` / `group_participants_changed`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::{Event, GroupParticipantsChanged, GroupUpdated};
use crate::ids::{InstanceId, Jid};

/// The most numbers one `check-numbers` call takes (WhatsApp's web client
/// queries in batches of this size too).
pub const MAX_CHECK_NUMBERS: usize = 50;
/// The most participants one participant change (or a create) takes.
pub const MAX_PARTICIPANTS: usize = 256;
/// WhatsApp's longest group subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 100;
/// WhatsApp's longest group description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2048;
/// The prefix of a group invite link; the code follows it.
pub const INVITE_LINK_PREFIX: &str = "https://chat.whatsapp.com/";

/// A participant's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    /// An ordinary member.
    Member,
    /// An admin: may change participants, the subject, the description and the invite link.
    Admin,
    /// The group's creator (an admin nobody can demote).
    Superadmin,
}

impl GroupRole {
    /// Whether the role may administer the group.
    pub fn is_admin(self) -> bool {
        matches!(self, Self::Admin | Self::Superadmin)
    }
    /// The role's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Superadmin => "superadmin",
        }
    }
}

/// One participant of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The participant's phone-number JID (its LID when no number is known).
    pub jid: Jid,
    pub role: GroupRole,
}

/// What the API shows of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// `…@g.us`.
    pub id: Jid,
    pub subject: String,
    pub description: Option<String>,
    /// Who created it, when known.
    pub owner: Option<Jid>,
    /// Unix seconds, when known.
    pub created_at: Option<i64>,
    pub participants: Vec<GroupMember>,
}

/// A change to a group's participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantAction {
    /// Added by an admin (also: added at the group's creation).
    Add,
    /// Removed by an admin.
    Remove,
    /// Made an admin.
    Promote,
    /// No longer an admin.
    Demote,
    /// Joined through an invite link.
    Join,
    /// Left by themselves.
    Leave,
}

impl ParticipantAction {
    /// The action's name in paths and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Promote => "promote",
            Self::Demote => "demote",
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

/// A change to a group itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupChange {
    /// The group was created (with this account in it).
    Created,
    /// A new subject (name).
    Subject,
    /// A new description, or none (removed).
    Description,
    /// The invite link was revoked; the old link no longer works.
    InviteRevoked,
}

/// How one number fared in a participant change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantOutcome {
    /// Done.
    Ok,
    /// The number is not on WhatsApp (add).
    NotOnWhatsapp,
    /// Already in the group (add).
    AlreadyParticipant,
    /// Not in the group (remove, promote, demote).
    NotParticipant,
    /// WhatsApp refused it for this number (its privacy settings, the
    /// creator who cannot be demoted, …); `error` on the result says which code.
    Refused,
}

impl ParticipantOutcome {
    /// The outcome's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotOnWhatsapp => "not_on_whatsapp",
            Self::AlreadyParticipant => "already_participant",
            Self::NotParticipant => "not_participant",
            Self::Refused => "refused",
        }
    }
}

/// One number's result in a participant change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantResult {
    pub jid: Jid,
    pub outcome: ParticipantOutcome,
    /// WhatsApp's error code for a refusal (`403`, `408`, …), when it gave one.
    pub error: Option<String>,
}

/// One number's answer in a number check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCheck {
    /// The number as asked (digits).
    pub number: String,
    /// Whether the number has a WhatsApp account.
    pub exists: bool,
    /// Its JID (`<digits>@s.whatsapp.net`), when it exists.
    pub jid: Option<Jid>,
    /// Its LID (`…@lid`), when WhatsApp told it.
    pub lid: Option<Jid>,
}

/// The invite link of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteLink {
    /// The code (the last part of the link).
    pub code: String,
}

impl InviteLink {
    /// The full link.
    pub fn link(&self) -> String {
        format!("{INVITE_LINK_PREFIX}{}", self.code)
    }

    /// The code of an invite given as a link or as a bare code, or `None`
    /// when it is neither (the API answers 400).
    pub fn parse(raw: &str) -> Option<InviteLink> {
        let s = raw.trim();
        let code = s
            .strip_prefix(INVITE_LINK_PREFIX)
            .or_else(|| s.strip_prefix("http://chat.whatsapp.com/"))
            .or_else(|| s.strip_prefix("chat.whatsapp.com/"))
            .unwrap_or(s);
        let ok = (8..=64).contains(&code.len()) && code.chars().all(|c| c.is_ascii_alphanumeric());
        ok.then(|| InviteLink {
            code: code.to_string(),
        })
    }
}

/// Why a group action was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No such group, or the account is not (or no longer) in it (404).
    #[error("group {0} not found, or this account is not a participant")]
    NotFound(Jid),
    /// The account is in the group but not an admin (403).
    #[error("this account is not an admin of group {0}")]
    NotAdmin(Jid),
    /// The invite code is unknown or was revoked (404).
    #[error("the invite link is not valid (unknown or revoked)")]
    InviteInvalid,
    /// The account is already in the group it tries to join (409).
    #[error("this account is already a participant of group {0}")]
    AlreadyParticipant(Jid),
    /// The engine failed (the network, an unexpected answer) (502).
    #[error("{0:#}")]
    Engine(anyhow::Error),
}

impl From<anyhow::Error> for GroupError {
    fn from(e: anyhow::Error) -> Self {
        Self::Engine(e)
    }
}

/// A change another member (or WhatsApp) made, reported by an engine; the
/// supervisor records it as an event.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupNotice {
    /// Participants were added, removed, promoted, demoted, joined or left.
    Participants {
        group: Jid,
        action: ParticipantAction,
        participants: Vec<Jid>,
        /// Who did it, when known.
        by: Option<Jid>,
        /// Unix seconds.
        timestamp: i64,
    },
    /// The group was created, renamed, re-described or its link revoked.
    Updated {
        group: Jid,
        change: GroupChange,
        subject: Option<String>,
        description: Option<String>,
        /// The participants at creation (`created` only, when known).
        participants: Option<Vec<Jid>>,
        by: Option<Jid>,
        /// Unix seconds.
        timestamp: i64,
    },
}

impl GroupNotice {
    /// The log event of this notice for `instance_id`.
    pub fn into_event(self, instance_id: &InstanceId) -> Event {
        match self {
            GroupNotice::Participants {
                group,
                action,
                participants,
                by,
                timestamp,
            } => GroupParticipantsChanged {
                instance_id: instance_id.clone(),
                group_id: group,
                action,
                participants,
                by,
                timestamp,
            }
            .into(),
            GroupNotice::Updated {
                group,
                change,
                subject,
                description,
                participants,
                by,
                timestamp,
            } => GroupUpdated {
                instance_id: instance_id.clone(),
                group_id: group,
                change,
                subject,
                description,
                participants,
                by,
                timestamp,
            }
            .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_links_parse_from_links_and_bare_codes_and_refuse_anything_else() {
        let code = "AbCdEfGh12345678901234";
        for raw in [
            code.to_string(),
            format!("https://chat.whatsapp.com/{code}"),
            format!(" chat.whatsapp.com/{code} "),
        ] {
            assert_eq!(InviteLink::parse(&raw).unwrap().code, code, "{raw}");
        }
        for bad in [
            "",
            "short",
            "https://example.com/AbCdEfGh1234",
            "AbCd-EfGh-1234",
        ] {
            assert!(InviteLink::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            InviteLink::parse(code).unwrap().link(),
            format!("https://chat.whatsapp.com/{code}")
        );
    }

    #[test]
    fn a_participant_notice_becomes_a_group_participants_changed_event() {
        let e = GroupNotice::Participants {
            group: Jid::from_raw("120363000000000001@g.us"),
            action: ParticipantAction::Promote,
            participants: vec![Jid::from_phone("79001112233")],
            by: Some(Jid::from_phone("79001110000")),
            timestamp: 5,
        }
        .into_event(&InstanceId::from_stored("i1"));
        assert_eq!(e.event_type(), "group_participants_changed");
        let data = e.data();
        assert_eq!(data["groupId"], "120363000000000001@g.us");
        assert_eq!(data["action"], "promote");
        assert_eq!(data["participants"][0], "79001112233@s.whatsapp.net");
        assert_eq!(data["by"], "79001110000@s.whatsapp.net");
    }
}
