//! The simulated network's groups: one table shared by every instance of
//! the sim network, so that two paired instances can be in one group. Each
//! operation is a pure change of the table that returns what the acting
//! account gets back and which other accounts (by phone) must be told what
//! ([`Fanout`]); the sim engine delivers those notices. Kept in
//! `<data>/sim/groups.json`, so groups outlive a restart like pairings do.
//!
//! The rules, as on WhatsApp with its default settings: the creator is the
//! superadmin; admins (and only they) change participants, the subject, the
//! description and the invite link; anyone with the current link joins;
//! anyone leaves. A number is on WhatsApp when an instance of this network
//! is paired with it or it is one of the sim's address-book numbers (`7911…`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Jid;
use super::groups::{
    GroupChange, GroupError, GroupInfo, GroupMember, GroupNotice, GroupRole, InviteLink,
    ParticipantAction, ParticipantOutcome, ParticipantResult,
};

/// The prefix of the sim's address-book numbers, which are on WhatsApp
/// without an instance behind them.
pub const ADDRESS_BOOK_PREFIX: &str = "7911";

/// One group of the sim network.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimGroup {
    subject: String,
    description: Option<String>,
    /// The creator's phone.
    owner: String,
    /// Unix seconds.
    created_at: i64,
    /// Phone → role.
    members: BTreeMap<String, GroupRole>,
    /// The current invite code.
    invite: String,
}

impl SimGroup {
    fn info(&self, id: &str) -> GroupInfo {
        GroupInfo {
            id: Jid::from_raw(id),
            subject: self.subject.clone(),
            description: self.description.clone(),
            owner: Some(Jid::from_phone(&self.owner)),
            created_at: Some(self.created_at),
            participants: self
                .members
                .iter()
                .map(|(p, r)| GroupMember {
                    jid: Jid::from_phone(p),
                    role: *r,
                })
                .collect(),
        }
    }

    /// Every member's phone but `me`.
    fn others(&self, me: &str) -> Vec<String> {
        self.members.keys().filter(|p| *p != me).cloned().collect()
    }
}

/// A notice for some accounts of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Fanout {
    /// The phones to tell.
    pub to: Vec<String>,
    pub notice: GroupNotice,
}

/// The network's group table.
#[derive(Default)]
pub struct SimGroups {
    /// Group JID → group.
    groups: BTreeMap<String, SimGroup>,
    /// Where the table is kept (none in unit tests).
    path: Option<PathBuf>,
}

impl SimGroups {
    /// The table kept in `dir` (empty when there is none yet).
    pub fn load(dir: &Path) -> Self {
        let path = dir.join("groups.json");
        let groups = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            groups,
            path: Some(path),
        }
    }

    /// Writes the table back (a failure is logged: the sim goes on in memory).
    fn save(&self) {
        let Some(path) = &self.path else { return };
        let text = serde_json::to_vec(&self.groups).expect("sim groups serialize");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(path, text) {
            tracing::warn!(error = %e, "sim: failed to keep the groups");
        }
    }

    /// The groups `me` is in.
    pub fn list(&self, me: &str) -> Vec<GroupInfo> {
        self.groups
            .iter()
            .filter(|(_, g)| g.members.contains_key(me))
            .map(|(id, g)| g.info(id))
            .collect()
    }

    /// A group `me` is in.
    pub fn info(&self, me: &str, group: &Jid) -> Result<GroupInfo, GroupError> {
        Ok(self.member_of(me, group)?.info(group.as_str()))
    }

    /// The phones of a group's members, when the network has that group.
    pub fn members(&self, group: &Jid) -> Option<Vec<String>> {
        self.groups
            .get(group.as_str())
            .map(|g| g.members.keys().cloned().collect())
    }

    fn member_of(&self, me: &str, group: &Jid) -> Result<&SimGroup, GroupError> {
        self.groups
            .get(group.as_str())
            .filter(|g| g.members.contains_key(me))
            .ok_or_else(|| GroupError::NotFound(group.clone()))
    }

    /// The group, for a change only its admins may make.
    fn admin_of(&mut self, me: &str, group: &Jid) -> Result<&mut SimGroup, GroupError> {
        let g = self
            .groups
            .get_mut(group.as_str())
            .filter(|g| g.members.contains_key(me))
            .ok_or_else(|| GroupError::NotFound(group.clone()))?;
        if !g.members[me].is_admin() {
            return Err(GroupError::NotAdmin(group.clone()));
        }
        Ok(g)
    }

    /// Creates a group `id` with `me` as its superadmin and the given
    /// participants that are on WhatsApp (others are left out). Every
    /// participant is told it was created.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        me: &str,
        id: &str,
        subject: &str,
        description: Option<&str>,
        participants: &[Jid],
        on_whatsapp: impl Fn(&str) -> bool,
        invite: String,
        now: i64,
    ) -> (GroupInfo, Vec<Fanout>) {
        let mut members = BTreeMap::from([(me.to_string(), GroupRole::Superadmin)]);
        for p in participants {
            if on_whatsapp(p.user()) {
                members
                    .entry(p.user().to_string())
                    .or_insert(GroupRole::Member);
            }
        }
        let group = SimGroup {
            subject: subject.to_string(),
            description: description.map(str::to_string),
            owner: me.to_string(),
            created_at: now,
            members,
            invite,
        };
        let info = group.info(id);
        let notice = GroupNotice::Updated {
            group: info.id.clone(),
            change: GroupChange::Created,
            subject: Some(group.subject.clone()),
            description: group.description.clone(),
            participants: Some(info.participants.iter().map(|m| m.jid.clone()).collect()),
            by: Some(Jid::from_phone(me)),
            timestamp: now,
        };
        let out = vec![Fanout {
            to: group.others(me),
            notice,
        }];
        self.groups.insert(id.to_string(), group);
        self.save();
        (info, out)
    }

    /// Adds, removes, promotes or demotes participants (an admin's change).
    /// Members and the removed are told of the numbers it changed.
    pub fn change(
        &mut self,
        me: &str,
        group: &Jid,
        action: ParticipantAction,
        targets: &[Jid],
        on_whatsapp: impl Fn(&str) -> bool,
        now: i64,
    ) -> Result<(Vec<ParticipantResult>, Vec<Fanout>), GroupError> {
        let g = self.admin_of(me, group)?;
        let mut results = Vec::with_capacity(targets.len());
        let mut changed = Vec::new();
        for t in targets {
            let phone = t.user();
            let current = g.members.get(phone).copied();
            let outcome = match (action, current) {
                (ParticipantAction::Add, Some(_)) => ParticipantOutcome::AlreadyParticipant,
                (ParticipantAction::Add, None) if !on_whatsapp(phone) => {
                    ParticipantOutcome::NotOnWhatsapp
                }
                (ParticipantAction::Add, None) => {
                    g.members.insert(phone.to_string(), GroupRole::Member);
                    changed.push(phone.to_string());
                    ParticipantOutcome::Ok
                }
                (_, None) => ParticipantOutcome::NotParticipant,
                // The creator can be neither removed nor demoted.
                (
                    ParticipantAction::Remove | ParticipantAction::Demote,
                    Some(GroupRole::Superadmin),
                ) if phone != me => ParticipantOutcome::Refused,
                (ParticipantAction::Remove, Some(_)) => {
                    g.members.remove(phone);
                    changed.push(phone.to_string());
                    ParticipantOutcome::Ok
                }
                (ParticipantAction::Promote, Some(role)) => {
                    if !role.is_admin() {
                        g.members.insert(phone.to_string(), GroupRole::Admin);
                        changed.push(phone.to_string());
                    }
                    ParticipantOutcome::Ok
                }
                (ParticipantAction::Demote, Some(role)) => {
                    if role.is_admin() {
                        g.members.insert(phone.to_string(), GroupRole::Member);
                        changed.push(phone.to_string());
                    }
                    ParticipantOutcome::Ok
                }
                (ParticipantAction::Join | ParticipantAction::Leave, Some(_)) => {
                    ParticipantOutcome::Refused
                }
            };
            results.push(ParticipantResult {
                jid: Jid::from_phone(phone),
                outcome,
                error: (outcome == ParticipantOutcome::Refused).then(|| "403".to_string()),
            });
        }
        let mut out = Vec::new();
        if !changed.is_empty() {
            let mut to = g.others(me);
            if action == ParticipantAction::Remove {
                to.extend(changed.iter().filter(|p| *p != me).cloned());
            }
            out.push(Fanout {
                to,
                notice: GroupNotice::Participants {
                    group: group.clone(),
                    action,
                    participants: changed.iter().map(|p| Jid::from_phone(p)).collect(),
                    by: Some(Jid::from_phone(me)),
                    timestamp: now,
                },
            });
        }
        if self.groups[group.as_str()].members.is_empty() {
            self.groups.remove(group.as_str());
        }
        self.save();
        Ok((results, out))
    }

    /// The invite link (an admin's); `revoke` replaces it with `new_code`
    /// first, and the members are told.
    pub fn invite(
        &mut self,
        me: &str,
        group: &Jid,
        revoke: bool,
        new_code: String,
        now: i64,
    ) -> Result<(InviteLink, Vec<Fanout>), GroupError> {
        let g = self.admin_of(me, group)?;
        let mut out = Vec::new();
        if revoke {
            g.invite = new_code;
            out.push(Fanout {
                to: g.others(me),
                notice: GroupNotice::Updated {
                    group: group.clone(),
                    change: GroupChange::InviteRevoked,
                    subject: None,
                    description: None,
                    participants: None,
                    by: Some(Jid::from_phone(me)),
                    timestamp: now,
                },
            });
        }
        let link = InviteLink {
            code: g.invite.clone(),
        };
        if revoke {
            self.save();
        }
        Ok((link, out))
    }

    /// Joins the group whose current invite code is `invite`.
    pub fn join(
        &mut self,
        me: &str,
        invite: &InviteLink,
        now: i64,
    ) -> Result<(Jid, Vec<Fanout>), GroupError> {
        let (id, g) = self
            .groups
            .iter_mut()
            .find(|(_, g)| g.invite == invite.code)
            .ok_or(GroupError::InviteInvalid)?;
        let group = Jid::from_raw(id.clone());
        if g.members.contains_key(me) {
            return Err(GroupError::AlreadyParticipant(group));
        }
        g.members.insert(me.to_string(), GroupRole::Member);
        let out = vec![Fanout {
            to: g.others(me),
            notice: self_notice(&group, ParticipantAction::Join, me, now),
        }];
        self.save();
        Ok((group, out))
    }

    /// Leaves a group; the remaining members are told (an empty group goes).
    pub fn leave(&mut self, me: &str, group: &Jid, now: i64) -> Result<Vec<Fanout>, GroupError> {
        self.member_of(me, group)?;
        let g = self.groups.get_mut(group.as_str()).expect("checked above");
        g.members.remove(me);
        let out = vec![Fanout {
            to: g.others(me),
            notice: self_notice(group, ParticipantAction::Leave, me, now),
        }];
        if g.members.is_empty() {
            self.groups.remove(group.as_str());
        }
        self.save();
        Ok(out)
    }

    /// Sets the subject (an admin's change); the members are told.
    pub fn set_subject(
        &mut self,
        me: &str,
        group: &Jid,
        subject: &str,
        now: i64,
    ) -> Result<Vec<Fanout>, GroupError> {
        let g = self.admin_of(me, group)?;
        g.subject = subject.to_string();
        let out = vec![Fanout {
            to: g.others(me),
            notice: GroupNotice::Updated {
                group: group.clone(),
                change: GroupChange::Subject,
                subject: Some(subject.to_string()),
                description: None,
                participants: None,
                by: Some(Jid::from_phone(me)),
                timestamp: now,
            },
        }];
        self.save();
        Ok(out)
    }

    /// Sets or removes the description (an admin's change); the members are told.
    pub fn set_description(
        &mut self,
        me: &str,
        group: &Jid,
        description: Option<&str>,
        now: i64,
    ) -> Result<Vec<Fanout>, GroupError> {
        let g = self.admin_of(me, group)?;
        g.description = description.map(str::to_string);
        let out = vec![Fanout {
            to: g.others(me),
            notice: GroupNotice::Updated {
                group: group.clone(),
                change: GroupChange::Description,
                subject: None,
                description: g.description.clone(),
                participants: None,
                by: Some(Jid::from_phone(me)),
                timestamp: now,
            },
        }];
        self.save();
        Ok(out)
    }
}

/// A participant's own join or leave.
fn self_notice(group: &Jid, action: ParticipantAction, me: &str, now: i64) -> GroupNotice {
    GroupNotice::Participants {
        group: group.clone(),
        action,
        participants: vec![Jid::from_phone(me)],
        by: Some(Jid::from_phone(me)),
        timestamp: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "79000000001";
    const B: &str = "79000000002";
    const C: &str = "79000000003";

    fn on_wa(p: &str) -> bool {
        p != "79999999999"
    }

    fn group_of_a_and_b() -> (SimGroups, Jid) {
        let mut t = SimGroups::default();
        let (info, out) = t.create(
            A,
            "120363000000000001@g.us",
            "Team",
            None,
            &[Jid::from_phone(B), Jid::from_phone("79999999999")],
            on_wa,
            "InviteCode0001".into(),
            1,
        );
        assert_eq!(
            info.participants.len(),
            2,
            "the number not on WhatsApp is left out"
        );
        assert_eq!(out[0].to, vec![B.to_string()]);
        (t, info.id)
    }

    #[test]
    fn only_admins_change_participants_and_members_are_told_of_what_changed() {
        let (mut t, g) = group_of_a_and_b();
        let err = t
            .change(
                B,
                &g,
                ParticipantAction::Add,
                &[Jid::from_phone(C)],
                on_wa,
                2,
            )
            .unwrap_err();
        assert!(matches!(err, GroupError::NotAdmin(_)));
        let (results, out) = t
            .change(
                A,
                &g,
                ParticipantAction::Add,
                &[
                    Jid::from_phone(C),
                    Jid::from_phone(B),
                    Jid::from_phone("79999999999"),
                ],
                on_wa,
                2,
            )
            .unwrap();
        let outcomes: Vec<_> = results.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                ParticipantOutcome::Ok,
                ParticipantOutcome::AlreadyParticipant,
                ParticipantOutcome::NotOnWhatsapp
            ]
        );
        assert_eq!(out[0].to, vec![B.to_string(), C.to_string()]);
        match &out[0].notice {
            GroupNotice::Participants { participants, .. } => {
                assert_eq!(participants, &vec![Jid::from_phone(C)])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_removed_are_told_too_and_the_creator_cannot_be_removed() {
        let (mut t, g) = group_of_a_and_b();
        t.change(
            A,
            &g,
            ParticipantAction::Promote,
            &[Jid::from_phone(B)],
            on_wa,
            2,
        )
        .unwrap();
        let (results, _) = t
            .change(
                B,
                &g,
                ParticipantAction::Remove,
                &[Jid::from_phone(A)],
                on_wa,
                3,
            )
            .unwrap();
        assert_eq!(results[0].outcome, ParticipantOutcome::Refused);
        let (_, out) = t
            .change(
                A,
                &g,
                ParticipantAction::Remove,
                &[Jid::from_phone(B)],
                on_wa,
                4,
            )
            .unwrap();
        assert_eq!(out[0].to, vec![B.to_string()]);
        assert!(matches!(t.info(B, &g), Err(GroupError::NotFound(_))));
    }

    #[test]
    fn a_revoked_invite_no_longer_joins_and_the_new_one_does() {
        let (mut t, g) = group_of_a_and_b();
        let (old, _) = t.invite(A, &g, false, "unused".into(), 2).unwrap();
        let (new, out) = t.invite(A, &g, true, "InviteCode0002".into(), 3).unwrap();
        assert_ne!(old, new);
        assert_eq!(out.len(), 1);
        assert!(matches!(t.join(C, &old, 4), Err(GroupError::InviteInvalid)));
        let (joined, out) = t.join(C, &new, 5).unwrap();
        assert_eq!(joined, g);
        assert_eq!(out[0].to, vec![A.to_string(), B.to_string()]);
        assert!(matches!(
            t.join(C, &new, 6),
            Err(GroupError::AlreadyParticipant(_))
        ));
    }

    #[test]
    fn the_last_member_to_leave_ends_the_group() {
        let (mut t, g) = group_of_a_and_b();
        t.leave(A, &g, 2).unwrap();
        assert_eq!(t.list(B).len(), 1);
        t.leave(B, &g, 3).unwrap();
        assert!(t.members(&g).is_none());
    }
}
