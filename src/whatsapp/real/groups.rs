//! Groups and number checks on the real engine: the crate's `groups()` and
//! `contacts().is_on_whatsapp` calls, mapped to the engine's types, and its
//! `w:gp2` group notifications mapped to [`GroupNotice`]s (our own changes
//! are left out: the API records those itself).

use whatsapp_rust::IqError;
use whatsapp_rust::client::Client;
use whatsapp_rust::features::{
    GroupCreateOptions, GroupDescription, GroupError as WaGroupError, GroupMetadata,
    GroupParticipantOptions, GroupSubject, JoinGroupResult, ParticipantChangeResponse,
    ParticipantType, PreviousDescription,
};
use whatsapp_rust::types::events::GroupUpdate;
use whatsapp_rust::wacore::stanza::groups::{GroupNotificationAction, GroupParticipantInfo};

use crate::whatsapp::Jid;
use crate::whatsapp::groups::{
    GroupChange, GroupError, GroupInfo, GroupMember, GroupNotice, GroupRole, InviteLink,
    NumberCheck, ParticipantAction, ParticipantOutcome, ParticipantResult,
};

/// Our JID type from the crate's (device part dropped).
fn ours(jid: &whatsapp_rust::Jid) -> Jid {
    Jid::from_raw(jid.to_non_ad_string())
}

/// The crate's JID type from ours.
fn theirs(jid: &Jid) -> Result<whatsapp_rust::Jid, GroupError> {
    jid.as_str()
        .parse::<whatsapp_rust::Jid>()
        .map_err(|e| GroupError::Engine(anyhow::anyhow!("bad JID {jid}: {e}")))
}

/// A group refusal in our terms: 401/403 not an admin, 404 not found (or
/// not in it), 406/410 a bad or revoked invite, 409 already in it.
fn refusal(group: Option<&Jid>, e: WaGroupError) -> GroupError {
    let unknown = || Jid::from_raw("unknown@g.us");
    if let WaGroupError::Iq(IqError::ServerError { code, .. }) = &e {
        let g = group.cloned();
        match (*code, g) {
            (401 | 403, Some(g)) => return GroupError::NotAdmin(g),
            (404, Some(g)) => return GroupError::NotFound(g),
            (404 | 406 | 410, None) => return GroupError::InviteInvalid,
            (409, g) => return GroupError::AlreadyParticipant(g.unwrap_or_else(unknown)),
            _ => {}
        }
    }
    GroupError::Engine(anyhow::anyhow!("{e}"))
}

/// A group as the API shows it; participants by phone number where known.
fn info(meta: GroupMetadata) -> GroupInfo {
    GroupInfo {
        id: ours(&meta.id),
        subject: meta.subject,
        description: meta.description,
        owner: meta.creator_pn.as_ref().or(meta.creator.as_ref()).map(ours),
        created_at: meta.creation_time.map(|t| t as i64),
        participants: meta
            .participants
            .iter()
            .map(|p| GroupMember {
                jid: ours(p.phone_number.as_ref().unwrap_or(&p.jid)),
                role: match p.participant_type {
                    ParticipantType::Member => GroupRole::Member,
                    ParticipantType::Admin => GroupRole::Admin,
                    ParticipantType::SuperAdmin => GroupRole::Superadmin,
                },
            })
            .collect(),
    }
}

/// How one number fared, from WhatsApp's per-participant answer.
fn result(action: ParticipantAction, r: ParticipantChangeResponse) -> ParticipantResult {
    let outcome = match r.error.as_deref() {
        None => ParticipantOutcome::Ok,
        Some("409") if action == ParticipantAction::Add => ParticipantOutcome::AlreadyParticipant,
        Some("404") if action == ParticipantAction::Add => ParticipantOutcome::NotOnWhatsapp,
        Some("404") => ParticipantOutcome::NotParticipant,
        Some(_) => ParticipantOutcome::Refused,
    };
    ParticipantResult {
        jid: ours(r.phone_number.as_ref().unwrap_or(&r.jid)),
        outcome,
        error: r.error.filter(|_| outcome == ParticipantOutcome::Refused),
    }
}

/// Whether each number is on WhatsApp (the crate's usync query).
pub async fn check_numbers(
    client: &Client,
    numbers: &[String],
) -> Result<Vec<NumberCheck>, GroupError> {
    let jids: Vec<whatsapp_rust::Jid> = numbers
        .iter()
        .map(|n| whatsapp_rust::Jid::pn(n.as_str()))
        .collect();
    let found = client
        .contacts()
        .is_on_whatsapp(&jids)
        .await
        .map_err(|e| GroupError::Engine(anyhow::anyhow!("{e}")))?;
    Ok(numbers
        .iter()
        .map(|n| {
            let hit = found.iter().find(|r| {
                r.jid.user.as_str() == n || r.pn_jid.as_ref().is_some_and(|p| p.user.as_str() == n)
            });
            let exists = hit.is_some_and(|r| r.is_registered);
            NumberCheck {
                number: n.clone(),
                exists,
                jid: exists.then(|| Jid::from_phone(n)),
                lid: hit
                    .filter(|_| exists)
                    .and_then(|r| r.lid.as_ref().or(r.jid.is_lid().then_some(&r.jid)))
                    .map(ours),
            }
        })
        .collect())
}

/// The groups the account is in.
pub async fn list(client: &Client) -> Result<Vec<GroupInfo>, GroupError> {
    let groups = client
        .groups()
        .get_participating()
        .await
        .map_err(|e| refusal(None, e))?;
    Ok(groups.into_values().map(info).collect())
}

/// One group.
pub async fn get(client: &Client, group: &Jid) -> Result<GroupInfo, GroupError> {
    let meta = client
        .groups()
        .get_metadata(&theirs(group)?)
        .await
        .map_err(|e| refusal(Some(group), e))?;
    Ok(info(meta))
}

/// Creates a group, then sets its description when one is given.
pub async fn create(
    client: &Client,
    subject: &str,
    description: Option<&str>,
    participants: &[Jid],
) -> Result<GroupInfo, GroupError> {
    let mut options = GroupCreateOptions::new(subject);
    for p in participants {
        options = options.with_participant(GroupParticipantOptions::new(theirs(p)?));
    }
    let created = client
        .groups()
        .create_group(options)
        .await
        .map_err(|e| refusal(None, e))?;
    let mut info = info(created.metadata);
    if let Some(d) = description {
        set_description(client, &info.id, Some(d), PreviousDescription::Absent).await?;
        info.description = Some(d.to_string());
    }
    Ok(info)
}

/// Adds, removes, promotes or demotes participants.
pub async fn change(
    client: &Client,
    group: &Jid,
    action: ParticipantAction,
    participants: &[Jid],
) -> Result<Vec<ParticipantResult>, GroupError> {
    let g = theirs(group)?;
    let people = participants
        .iter()
        .map(theirs)
        .collect::<Result<Vec<_>, _>>()?;
    let groups = client.groups();
    let answers = match action {
        ParticipantAction::Add => groups.add_participants(g, &people).await,
        ParticipantAction::Remove => groups.remove_participants(g, &people).await,
        ParticipantAction::Promote => groups.promote_participants(g, &people).await,
        ParticipantAction::Demote => groups.demote_participants(g, &people).await,
        ParticipantAction::Join | ParticipantAction::Leave => {
            return Err(GroupError::Engine(anyhow::anyhow!(
                "{} is not a participant change an admin makes",
                action.as_str()
            )));
        }
    }
    .map_err(|e| refusal(Some(group), e))?;
    Ok(answers.into_iter().map(|r| result(action, r)).collect())
}

/// The invite link (a new one first when `revoke`).
pub async fn invite(client: &Client, group: &Jid, revoke: bool) -> Result<InviteLink, GroupError> {
    let raw = client
        .groups()
        .get_invite_link(theirs(group)?, revoke)
        .await
        .map_err(|e| refusal(Some(group), e))?;
    InviteLink::parse(&raw)
        .ok_or_else(|| GroupError::Engine(anyhow::anyhow!("unexpected invite link {raw:?}")))
}

/// Joins by invite code.
pub async fn join(client: &Client, invite: &InviteLink) -> Result<Jid, GroupError> {
    match client
        .groups()
        .join_with_invite_code(&invite.code)
        .await
        .map_err(|e| refusal(None, e))?
    {
        JoinGroupResult::Joined(g) | JoinGroupResult::PendingApproval(g) => Ok(ours(&g)),
    }
}

/// Leaves a group.
pub async fn leave(client: &Client, group: &Jid) -> Result<(), GroupError> {
    client
        .groups()
        .leave(theirs(group)?)
        .await
        .map_err(|e| refusal(Some(group), e))
}

/// Sets the subject.
pub async fn set_subject(client: &Client, group: &Jid, subject: &str) -> Result<(), GroupError> {
    let subject =
        GroupSubject::new(subject).map_err(|e| GroupError::Engine(anyhow::anyhow!("{e}")))?;
    client
        .groups()
        .set_subject(theirs(group)?, subject)
        .await
        .map_err(|e| refusal(Some(group), e))
}

/// Sets or removes the description.
pub async fn set_description(
    client: &Client,
    group: &Jid,
    description: Option<&str>,
    prev: PreviousDescription<'_>,
) -> Result<(), GroupError> {
    let description = description
        .map(GroupDescription::new)
        .transpose()
        .map_err(|e| GroupError::Engine(anyhow::anyhow!("{e}")))?;
    client
        .groups()
        .set_description(theirs(group)?, description, prev)
        .await
        .map_err(|e| refusal(Some(group), e))
}

/// The participants of a notification, by phone number where known.
fn people(list: &[GroupParticipantInfo]) -> Vec<Jid> {
    list.iter()
        .map(|p| ours(p.phone_number.as_ref().unwrap_or(&p.jid)))
        .collect()
}

/// The notice of a group notification, or `None` for kinds the gateway
/// does not report (settings, communities, …) and for our own changes
/// (`own`: the account's phone number; the API records those).
pub fn notice(update: &GroupUpdate, own: Option<&str>) -> Option<GroupNotice> {
    let by = update
        .participant_pn
        .as_ref()
        .or(update.participant.as_ref())
        .map(ours);
    if let (Some(by), Some(own)) = (&by, own)
        && by.user() == own
    {
        return None;
    }
    let group = ours(&update.group_jid);
    let timestamp = update.timestamp.timestamp();
    let participants = |action, list: &[GroupParticipantInfo]| {
        // Someone who added or removed themselves joined or left.
        let list = people(list);
        let own_move = by.is_some() && list.len() == 1 && Some(&list[0]) == by.as_ref();
        let action = match (action, own_move) {
            (ParticipantAction::Add, true) => ParticipantAction::Join,
            (ParticipantAction::Remove, true) => ParticipantAction::Leave,
            (a, _) => a,
        };
        Some(GroupNotice::Participants {
            group: group.clone(),
            action,
            participants: list,
            by: by.clone(),
            timestamp,
        })
    };
    let updated = |change, subject, description| {
        Some(GroupNotice::Updated {
            group: group.clone(),
            change,
            subject,
            description,
            participants: None,
            by: by.clone(),
            timestamp,
        })
    };
    match &update.action {
        GroupNotificationAction::Add {
            participants: p, ..
        } => participants(ParticipantAction::Add, p),
        GroupNotificationAction::Remove {
            participants: p, ..
        } => participants(ParticipantAction::Remove, p),
        GroupNotificationAction::Promote { participants: p } => {
            participants(ParticipantAction::Promote, p)
        }
        GroupNotificationAction::Demote { participants: p } => {
            participants(ParticipantAction::Demote, p)
        }
        GroupNotificationAction::Subject { subject, .. } => {
            updated(GroupChange::Subject, Some(subject.clone()), None)
        }
        GroupNotificationAction::Description { description, .. } => {
            updated(GroupChange::Description, None, description.clone())
        }
        GroupNotificationAction::RevokeInvite => updated(GroupChange::InviteRevoked, None, None),
        GroupNotificationAction::Create { .. } => updated(GroupChange::Created, None, None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::wacore::chrono::{DateTime, Utc};

    fn person(phone: &str) -> GroupParticipantInfo {
        GroupParticipantInfo {
            jid: format!("{phone}@s.whatsapp.net").parse().unwrap(),
            phone_number: None,
            display_name: None,
            r#type: None,
            lid: None,
            username: None,
            join_time: None,
            group_history_sent_state: None,
        }
    }

    fn update(by: &str, action: GroupNotificationAction) -> GroupUpdate {
        GroupUpdate::builder()
            .group_jid("120363000000000001@g.us".parse().unwrap())
            .participant(format!("{by}@s.whatsapp.net").parse().unwrap())
            .timestamp(DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap())
            .is_lid_addressing_mode(false)
            .action(action)
            .build()
    }

    #[test]
    fn another_members_changes_become_notices_and_our_own_are_left_out() {
        let add = update(
            "79000000001",
            GroupNotificationAction::Add {
                participants: vec![person("79000000002")],
                reason: None,
            },
        );
        assert_eq!(
            notice(&add, Some("79000000002")),
            Some(GroupNotice::Participants {
                group: Jid::from_raw("120363000000000001@g.us"),
                action: ParticipantAction::Add,
                participants: vec![Jid::from_phone("79000000002")],
                by: Some(Jid::from_phone("79000000001")),
                timestamp: 1_700_000_000,
            })
        );
        assert_eq!(notice(&add, Some("79000000001")), None);
        let subject = update(
            "79000000001",
            GroupNotificationAction::Subject {
                subject: "Team".into(),
                subject_owner: None,
                subject_time: None,
            },
        );
        match notice(&subject, None) {
            Some(GroupNotice::Updated {
                change, subject, ..
            }) => {
                assert_eq!(change, GroupChange::Subject);
                assert_eq!(subject.as_deref(), Some("Team"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            notice(&update("7", GroupNotificationAction::Unlocked), None),
            None
        );
    }

    #[test]
    fn someone_adding_or_removing_themselves_joined_or_left() {
        let joined = update(
            "79000000003",
            GroupNotificationAction::Add {
                participants: vec![person("79000000003")],
                reason: Some("invite".into()),
            },
        );
        let left = update(
            "79000000003",
            GroupNotificationAction::Remove {
                participants: vec![person("79000000003")],
                reason: None,
            },
        );
        for (u, expected) in [
            (joined, ParticipantAction::Join),
            (left, ParticipantAction::Leave),
        ] {
            match notice(&u, Some("79000000001")) {
                Some(GroupNotice::Participants { action, .. }) => assert_eq!(action, expected),
                other => panic!("{other:?}"),
            }
        }
    }
}
