//! The API's entry point for groups and number checks: each call goes to
//! the instance's connected engine session, and a change that WhatsApp
//! accepted is recorded for this instance (`group_updated` /
//! `group_participants_changed`, with the caller's metadata). The other
//! members' instances record it from their own engine's notice.

use crate::events::{Event, GroupParticipantsChanged, GroupUpdated};
use crate::ids::InstanceId;
use crate::store::Metadata;
use crate::whatsapp::Jid;
use crate::whatsapp::groups::{
    GroupChange, GroupError, GroupInfo, InviteLink, NumberCheck, ParticipantAction,
    ParticipantOutcome, ParticipantResult,
};

use super::driver::Session;
use super::{SendError, Sessions};

/// Why a group call failed: the session (not connected, the log) or the group itself.
#[derive(Debug, thiserror::Error)]
pub enum GroupFailure {
    /// Not connected, no session, or the log failed.
    #[error(transparent)]
    Session(#[from] SendError),
    /// WhatsApp (or the sim) refused or failed it.
    #[error(transparent)]
    Group(#[from] GroupError),
}

impl From<crate::store::StoreError> for GroupFailure {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Session(SendError::Store(e))
    }
}

/// A group event's fields besides the instance.
struct Update<'a> {
    group: &'a Jid,
    change: GroupChange,
    subject: Option<String>,
    description: Option<String>,
    participants: Option<Vec<Jid>>,
}

impl Sessions {
    /// Whether each number (digits) is on WhatsApp, and its JID.
    pub async fn check_numbers(
        &self,
        instance_id: &InstanceId,
        numbers: &[String],
    ) -> Result<Vec<NumberCheck>, GroupFailure> {
        let (_, engine) = self.connected(instance_id).await?;
        Ok(engine.check_numbers(numbers).await?)
    }

    /// The groups the account is in.
    pub async fn groups(&self, instance_id: &InstanceId) -> Result<Vec<GroupInfo>, GroupFailure> {
        let (_, engine) = self.connected(instance_id).await?;
        Ok(engine.groups().await?)
    }

    /// One group the account is in.
    pub async fn group_info(
        &self,
        instance_id: &InstanceId,
        group: &Jid,
    ) -> Result<GroupInfo, GroupFailure> {
        let (_, engine) = self.connected(instance_id).await?;
        Ok(engine.group_info(group).await?)
    }

    /// Creates a group; records `group_updated` (`created`).
    pub async fn create_group(
        &self,
        instance_id: &InstanceId,
        subject: &str,
        description: Option<&str>,
        participants: &[Jid],
        meta: Metadata,
    ) -> Result<GroupInfo, GroupFailure> {
        let (session, engine) = self.connected(instance_id).await?;
        let info = engine
            .create_group(subject, description, participants)
            .await?;
        let update = Update {
            group: &info.id,
            change: GroupChange::Created,
            subject: Some(info.subject.clone()),
            description: info.description.clone(),
            participants: Some(info.participants.iter().map(|m| m.jid.clone()).collect()),
        };
        self.record_update(&session, update, meta).await?;
        Ok(info)
    }

    /// Adds, removes, promotes or demotes participants; records
    /// `group_participants_changed` for the numbers it was done for (if any).
    pub async fn change_participants(
        &self,
        instance_id: &InstanceId,
        group: &Jid,
        action: ParticipantAction,
        participants: &[Jid],
        meta: Metadata,
    ) -> Result<Vec<ParticipantResult>, GroupFailure> {
        let (session, engine) = self.connected(instance_id).await?;
        let results = engine
            .change_participants(group, action, participants)
            .await?;
        let done: Vec<Jid> = results
            .iter()
            .filter(|r| r.outcome == ParticipantOutcome::Ok)
            .map(|r| r.jid.clone())
            .collect();
        if !done.is_empty() {
            self.record_participants(&session, group, action, done, meta)
                .await?;
        }
        Ok(results)
    }

    /// The invite link; `revoke` first replaces it (recording `group_updated`, `invite_revoked`).
    pub async fn invite_link(
        &self,
        instance_id: &InstanceId,
        group: &Jid,
        revoke: bool,
        meta: Metadata,
    ) -> Result<InviteLink, GroupFailure> {
        let (session, engine) = self.connected(instance_id).await?;
        let link = engine.invite_link(group, revoke).await?;
        if revoke {
            let update = Update {
                group,
                change: GroupChange::InviteRevoked,
                subject: None,
                description: None,
                participants: None,
            };
            self.record_update(&session, update, meta).await?;
        }
        Ok(link)
    }

    /// Joins a group by its invite link; records `group_participants_changed` (`join`).
    pub async fn join_group(
        &self,
        instance_id: &InstanceId,
        invite: &InviteLink,
        meta: Metadata,
    ) -> Result<Jid, GroupFailure> {
        let (session, engine) = self.connected(instance_id).await?;
        let group = engine.join_group(invite).await?;
        let me = own_jid(&session).into_iter().collect();
        self.record_participants(&session, &group, ParticipantAction::Join, me, meta)
            .await?;
        Ok(group)
    }

    /// Leaves a group; records `group_participants_changed` (`leave`).
    pub async fn leave_group(
        &self,
        instance_id: &InstanceId,
        group: &Jid,
        meta: Metadata,
    ) -> Result<(), GroupFailure> {
        let (session, engine) = self.connected(instance_id).await?;
        engine.leave_group(group).await?;
        let me = own_jid(&session).into_iter().collect();
        self.record_participants(&session, group, ParticipantAction::Leave, me, meta)
            .await?;
        Ok(())
    }

    /// Sets the subject; records `group_updated` (`subject`).
    pub async fn set_group_subject(
        &self,
        instance_id: &InstanceId,
        group: &Jid,
        subject: &str,
        meta: Metadata,
    ) -> Result<(), GroupFailure> {
        let (session, engine) = self.connected(instance_id).await?;
        engine.set_group_subject(group, subject).await?;
        let update = Update {
            group,
            change: GroupChange::Subject,
            subject: Some(subject.to_string()),
            description: None,
            participants: None,
        };
        self.record_update(&session, update, meta).await?;
        Ok(())
    }

    /// Sets or removes the description; records `group_updated` (`description`).
    pub async fn set_group_description(
        &self,
        instance_id: &InstanceId,
        group: &Jid,
        description: Option<&str>,
        meta: Metadata,
    ) -> Result<(), GroupFailure> {
        let (session, engine) = self.connected(instance_id).await?;
        engine.set_group_description(group, description).await?;
        let update = Update {
            group,
            change: GroupChange::Description,
            subject: None,
            description: description.map(str::to_string),
            participants: None,
        };
        self.record_update(&session, update, meta).await?;
        Ok(())
    }

    /// Appends a `group_updated` made by this account.
    async fn record_update(
        &self,
        session: &Session,
        u: Update<'_>,
        meta: Metadata,
    ) -> Result<(), GroupFailure> {
        let event: Event = GroupUpdated {
            instance_id: session.instance_id.clone(),
            group_id: u.group.clone(),
            change: u.change,
            subject: u.subject,
            description: u.description,
            participants: u.participants,
            by: own_jid(session),
            timestamp: chrono::Utc::now().timestamp(),
        }
        .into();
        session.append(&self.inner.store, vec![event], meta).await?;
        Ok(())
    }

    /// Appends a `group_participants_changed` made by this account.
    async fn record_participants(
        &self,
        session: &Session,
        group: &Jid,
        action: ParticipantAction,
        participants: Vec<Jid>,
        meta: Metadata,
    ) -> Result<(), GroupFailure> {
        let event: Event = GroupParticipantsChanged {
            instance_id: session.instance_id.clone(),
            group_id: group.clone(),
            action,
            participants,
            by: own_jid(session),
            timestamp: chrono::Utc::now().timestamp(),
        }
        .into();
        session.append(&self.inner.store, vec![event], meta).await?;
        Ok(())
    }
}

/// The account's own JID, from the paired phone the session shows.
fn own_jid(session: &Session) -> Option<Jid> {
    session
        .status
        .borrow()
        .phone
        .as_deref()
        .map(Jid::from_phone)
}
