//! The instance aggregate: a named WhatsApp connection owned by a user, with
//! its webhook settings. Commands are decided by [`decide`] on the state the
//! instance's events lead to ([`apply`]); the `instances` table is that
//! state's snapshot, kept at its stream version (see [`super::aggregate`]).

use sqlx::SqlitePool;

use crate::config::Secret;
use crate::events::{
    Event, InstanceCreated, InstanceDeleted, InstanceUpdated, LogoutRequested, ReconnectRequested,
    WebhookDisabled,
};
use crate::store::{Effect, Metadata, StreamId};

use super::DomainError;
use super::aggregate::{self, Aggregate, Versioned};
use super::pacing::{PolicyChanges, SendPolicy};
use super::proxy::ProxyPublic;
use super::storage::instances::{self as table, InstanceChange, StoredProxy};
use crate::ids::{InstanceId, UserId};

pub use table::{find, list_all, list_for_user};

pub use super::state::{
    Instance, MAX_RETRIES_RANGE, MAX_SECRET_LEN, RETRY_INTERVAL_RANGE, WebhookSettings,
};

/// A field of a partial update: left alone, set, or cleared.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Set(T),
    Clear,
}

impl<T: Clone> Change<T> {
    fn apply_to(&self, current: Option<T>) -> Option<T> {
        match self {
            Change::Keep => current,
            Change::Set(v) => Some(v.clone()),
            Change::Clear => None,
        }
    }
    fn is_keep(&self) -> bool {
        matches!(self, Change::Keep)
    }
}

/// A new instance, its input already parsed (name, description and URL checked).
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub id: InstanceId,
    pub owner: UserId,
    pub name: String,
    pub description: Option<String>,
    /// The settings without the secret; `has_secret` is derived from `secret`.
    pub webhook: WebhookSettings,
    /// The webhook signing secret, sealed for storage ([`crate::secrets`]).
    pub secret: Option<Secret>,
    /// The send policy's fields given (the rest: [`SendPolicy::default`]).
    pub send_policy: PolicyChanges,
    /// The proxy its connections leave through.
    pub proxy: Option<ProxySetting>,
}

/// A proxy as a command carries it: the public part (for the event and the
/// state) and the credentials sealed for storage ([`crate::secrets`]).
#[derive(Debug, Clone)]
pub struct ProxySetting {
    pub public: ProxyPublic,
    /// `None`: the proxy takes no credentials.
    pub sealed_auth: Option<Secret>,
}

impl ProxySetting {
    /// The row's form of it.
    fn stored(&self) -> StoredProxy {
        StoredProxy {
            url: self.public.url.clone(),
            sealed_auth: self.sealed_auth.clone(),
        }
    }
}

/// A partial update: only what is given changes, on whatever the state is
/// when it is decided (so concurrent updates of different fields both land).
#[derive(Debug, Clone, Default)]
pub struct InstanceChanges {
    pub name: Option<String>,
    pub description: Change<String>,
    /// Clearing the URL also switches webhooks off unless `enabled` is given.
    pub webhook_url: Change<String>,
    pub enabled: Option<bool>,
    pub notify_received: Option<bool>,
    pub notify_sent: Option<bool>,
    pub notify_delivery: Option<bool>,
    pub notify_read: Option<bool>,
    pub max_retries: Option<u32>,
    pub retry_interval: Option<u64>,
    /// A new `webhookEvents` list (replaces the old one).
    pub webhook_events: Option<Vec<String>>,
    /// Sealed for storage, as in [`NewInstance::secret`].
    pub secret: Change<Secret>,
    /// The send policy's fields to change.
    pub send_policy: Option<PolicyChanges>,
    /// A new proxy, or none.
    pub proxy: Change<ProxySetting>,
}

/// What can be asked of an instance.
#[derive(Debug, Clone)]
pub enum InstanceCommand {
    Create(NewInstance),
    Update(InstanceChanges),
    /// The gateway switches the webhook off (e.g. the endpoint answered 410 Gone).
    DisableWebhook {
        reason: String,
    },
    RequestReconnect,
    RequestLogout,
    Delete,
}

/// A command with the time it is decided at (Unix milliseconds).
#[derive(Debug, Clone)]
pub struct Timed<C> {
    pub command: C,
    pub at: i64,
}

/// Decides which events a command causes on `state` (`None`: no such instance).
pub fn decide(
    state: Option<&Instance>,
    cmd: &Timed<InstanceCommand>,
) -> Result<Vec<Event>, DomainError> {
    use InstanceCommand as C;
    let not_found = || DomainError::not_found("Instance not found");
    match (&cmd.command, state) {
        (C::Create(new), None) => decide_create(new),
        (C::Create(_), Some(_)) => Err(DomainError::conflict("The instance already exists")),
        (_, None) => Err(not_found()),
        (C::Update(changes), Some(i)) => decide_update(i, changes),
        (C::DisableWebhook { reason }, Some(i)) => Ok(if i.webhook.enabled {
            vec![
                WebhookDisabled {
                    instance_id: i.id.clone(),
                    reason: reason.clone(),
                }
                .into(),
            ]
        } else {
            Vec::new()
        }),
        (C::RequestReconnect, Some(i)) => Ok(vec![
            ReconnectRequested {
                instance_id: i.id.clone(),
            }
            .into(),
        ]),
        (C::RequestLogout, Some(i)) => Ok(vec![
            LogoutRequested {
                instance_id: i.id.clone(),
            }
            .into(),
        ]),
        (C::Delete, Some(i)) => Ok(vec![
            InstanceDeleted {
                instance_id: i.id.clone(),
                user_id: i.user_id.clone(),
            }
            .into(),
        ]),
    }
}

fn decide_create(new: &NewInstance) -> Result<Vec<Event>, DomainError> {
    let webhook = WebhookSettings {
        has_secret: new.secret.is_some(),
        events: crate::webhooks::opt_in::parse_list(&new.webhook.events)
            .map_err(DomainError::Invalid)?,
        ..new.webhook.clone()
    };
    webhook.validate()?;
    check_secret(new.secret.as_ref())?;
    let send_policy = new.send_policy.apply_to(&SendPolicy::default());
    send_policy.validate()?;
    Ok(vec![
        InstanceCreated {
            instance_id: new.id.clone(),
            user_id: new.owner.clone(),
            name: new.name.clone(),
            description: new.description.clone(),
            webhook: webhook.public(),
            send_policy,
            proxy: new.proxy.as_ref().map(|p| p.public.clone()),
        }
        .into(),
    ])
}

fn check_secret(secret: Option<&Secret>) -> Result<(), DomainError> {
    match secret {
        // Sealed for storage: at most as long as the longest secret sealed.
        Some(s) if s.expose().len() > crate::secrets::sealed_len(MAX_SECRET_LEN) => {
            Err(DomainError::invalid(format!(
                "webhook secret must be at most {MAX_SECRET_LEN} characters"
            )))
        }
        _ => Ok(()),
    }
}

fn decide_update(i: &Instance, c: &InstanceChanges) -> Result<Vec<Event>, DomainError> {
    let mut w = i.webhook.clone();
    w.url = c.webhook_url.apply_to(w.url);
    if matches!(c.webhook_url, Change::Clear) && c.enabled.is_none() {
        w.enabled = false;
    }
    w.enabled = c.enabled.unwrap_or(w.enabled);
    w.notify_received = c.notify_received.unwrap_or(w.notify_received);
    w.notify_sent = c.notify_sent.unwrap_or(w.notify_sent);
    w.notify_delivery = c.notify_delivery.unwrap_or(w.notify_delivery);
    w.notify_read = c.notify_read.unwrap_or(w.notify_read);
    w.max_retries = c.max_retries.unwrap_or(w.max_retries);
    w.retry_interval = c.retry_interval.unwrap_or(w.retry_interval);
    if let Some(events) = &c.webhook_events {
        w.events = crate::webhooks::opt_in::parse_list(events).map_err(DomainError::Invalid)?;
    }
    let secret_changed = match &c.secret {
        Change::Keep => false,
        Change::Set(s) => {
            check_secret(Some(s))?;
            w.has_secret = true;
            true
        }
        Change::Clear => std::mem::replace(&mut w.has_secret, false),
    };
    w.validate()?;
    let send_policy = match &c.send_policy {
        Some(changes) => changes.apply_to(&i.send_policy),
        None => i.send_policy.clone(),
    };
    send_policy.validate()?;
    Ok(vec![
        InstanceUpdated {
            instance_id: i.id.clone(),
            user_id: i.user_id.clone(),
            name: c.name.clone().unwrap_or_else(|| i.name.clone()),
            description: c.description.apply_to(i.description.clone()),
            webhook: w.public(),
            send_policy,
            secret_changed,
            proxy: match &c.proxy {
                Change::Keep => i.proxy.clone(),
                Change::Set(p) => Some(p.public.clone()),
                Change::Clear => None,
            },
            // Removing a proxy that is not there changes nothing.
            proxy_changed: match &c.proxy {
                Change::Keep => false,
                Change::Set(_) => true,
                Change::Clear => i.proxy.is_some(),
            },
        }
        .into(),
    ])
}

/// The state after `event`, recorded at `at` (Unix milliseconds).
pub fn apply(state: Option<Instance>, event: &Event, at: i64) -> Option<Instance> {
    match event {
        Event::InstanceCreated(e) => Some(Instance {
            id: e.instance_id.clone(),
            user_id: e.user_id.clone(),
            name: e.name.clone(),
            description: e.description.clone(),
            webhook: WebhookSettings::from_public(&e.webhook),
            send_policy: e.send_policy.clone(),
            created_at: at,
            updated_at: at,
            proxy: e.proxy.clone(),
        }),
        Event::InstanceUpdated(e) => state.map(|i| Instance {
            name: e.name.clone(),
            description: e.description.clone(),
            webhook: WebhookSettings::from_public(&e.webhook),
            send_policy: e.send_policy.clone(),
            updated_at: at.max(i.updated_at),
            proxy: e.proxy.clone(),
            ..i
        }),
        Event::WebhookDisabled(_) => state.map(|mut i| {
            i.webhook.enabled = false;
            i.updated_at = at.max(i.updated_at);
            i
        }),
        Event::InstanceDeleted(_) => None,
        _ => state,
    }
}

impl Aggregate for Instance {
    type Id = InstanceId;
    type Command = Timed<InstanceCommand>;

    fn stream(id: &InstanceId) -> StreamId {
        StreamId::instance(id.as_str())
    }

    fn decide(state: Option<&Self>, cmd: &Self::Command) -> Result<Vec<Event>, DomainError> {
        decide(state, cmd)
    }

    fn apply(state: Option<Self>, event: &Event, at: i64) -> Option<Self> {
        apply(state, event, at)
    }

    fn time(cmd: &Self::Command) -> i64 {
        cmd.at
    }

    fn scope(id: &InstanceId, state: Option<&Self>) -> (Option<UserId>, Option<InstanceId>) {
        (state.map(|i| i.user_id.clone()), Some(id.clone()))
    }

    async fn load(pool: &SqlitePool, id: &InstanceId) -> Result<Versioned<Self>, sqlx::Error> {
        Ok(Versioned::from_row(table::find_versioned(pool, id).await?))
    }

    fn changes(
        id: &InstanceId,
        cmd: &Self::Command,
        before: Option<&Self>,
        after: Option<&Self>,
        version: i64,
    ) -> Vec<Effect> {
        let mut changes = Vec::new();
        match (before, after) {
            (None, Some(i)) => changes.push(InstanceChange::Insert(i.clone(), version)),
            (Some(_), Some(i)) => changes.push(InstanceChange::Update(i.clone(), version)),
            (Some(_), None) => changes.push(InstanceChange::Delete(id.clone())),
            (None, None) => {}
        }
        let secret = match &cmd.command {
            InstanceCommand::Create(new) => new.secret.clone().map(Change::Set),
            InstanceCommand::Update(c) if !c.secret.is_keep() => Some(c.secret.clone()),
            _ => None,
        };
        if let (Some(secret), Some(_)) = (secret, after) {
            let value = match secret {
                Change::Set(s) => Some(s),
                _ => None,
            };
            changes.push(InstanceChange::SetSecret(id.clone(), value));
        }
        let proxy = match &cmd.command {
            InstanceCommand::Create(new) => new.proxy.as_ref().map(|p| Some(p.stored())),
            InstanceCommand::Update(c) => match &c.proxy {
                Change::Keep => None,
                Change::Set(p) => Some(Some(p.stored())),
                Change::Clear => Some(None),
            },
            _ => None,
        };
        if let (Some(proxy), Some(_)) = (proxy, after) {
            changes.push(InstanceChange::SetProxy(id.clone(), proxy));
        }
        changes.into_iter().map(|c| Box::new(c) as Effect).collect()
    }
}

/// Runs a command on instance `id` (a concurrent change is retried once on
/// fresh state, then answered with [`DomainError::Concurrent`]).
pub async fn execute(
    store: &crate::store::EventStore,
    id: &InstanceId,
    command: InstanceCommand,
    meta: Metadata,
) -> Result<Option<Instance>, DomainError> {
    let cmd = Timed {
        command,
        at: chrono::Utc::now().timestamp_millis(),
    };
    Ok(aggregate::execute::<Instance>(store, id, &cmd, meta)
        .await?
        .state)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn given_created() -> Instance {
        let id = InstanceId::from_stored("11111111-1111-4111-8111-111111111111");
        let events = decide(
            None,
            &Timed {
                command: InstanceCommand::Create(NewInstance {
                    id: id.clone(),
                    owner: UserId::from_stored("u1"),
                    name: "Main".into(),
                    description: Some("first".into()),
                    webhook: WebhookSettings {
                        url: Some("https://example.com/hook".into()),
                        enabled: true,
                        ..WebhookSettings::default()
                    },
                    secret: Some(Secret::new("s3cret")),
                    send_policy: PolicyChanges::default(),
                    proxy: None,
                }),
                at: T0,
            },
        )
        .unwrap();
        events
            .iter()
            .fold(None, |s, e| apply(s, e, T0))
            .expect("created")
    }

    fn when(state: Option<&Instance>, command: InstanceCommand) -> Result<Vec<Event>, DomainError> {
        decide(
            state,
            &Timed {
                command,
                at: T0 + 1,
            },
        )
    }

    fn then_state(state: &Instance, events: &[Event]) -> Option<Instance> {
        let mut after = Some(state.clone());
        for e in events {
            after = apply(after, e, T0 + 1);
        }
        after
    }

    #[test]
    fn creating_an_instance_records_its_settings_and_whether_it_has_a_secret() {
        let i = given_created();
        assert_eq!(i.name, "Main");
        assert!(i.webhook.enabled && i.webhook.has_secret);
        assert_eq!(i.created_at, T0);
    }

    #[test]
    fn a_created_event_never_carries_the_secret() {
        let events = when(
            None,
            InstanceCommand::Create(NewInstance {
                id: InstanceId::new_random(),
                owner: UserId::from_stored("u1"),
                name: "n".into(),
                description: None,
                webhook: WebhookSettings::default(),
                secret: Some(Secret::new("never-in-the-log")),
                send_policy: PolicyChanges::default(),
                proxy: None,
            }),
        )
        .unwrap();
        let json = events[0].data().to_string();
        assert!(!json.contains("never-in-the-log"));
        assert!(json.contains("\"hasSecret\":true"));
    }

    #[test]
    fn creating_with_webhooks_enabled_but_no_url_is_refused() {
        let err = when(
            None,
            InstanceCommand::Create(NewInstance {
                id: InstanceId::new_random(),
                owner: UserId::from_stored("u1"),
                name: "n".into(),
                description: None,
                webhook: WebhookSettings {
                    enabled: true,
                    ..WebhookSettings::default()
                },
                secret: None,
                send_policy: PolicyChanges::default(),
                proxy: None,
            }),
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Invalid(_)));
    }

    #[test]
    fn a_partial_update_changes_only_the_fields_it_names() {
        let i = given_created();
        let events = when(
            Some(&i),
            InstanceCommand::Update(InstanceChanges {
                description: Change::Set("second".into()),
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        let after = then_state(&i, &events).unwrap();
        assert_eq!(after.name, "Main");
        assert_eq!(after.description.as_deref(), Some("second"));
        assert_eq!(after.webhook, i.webhook);
        assert_eq!(after.updated_at, T0 + 1);
    }

    #[test]
    fn two_partial_updates_decided_one_after_the_other_both_survive() {
        let i = given_created();
        let rename = InstanceCommand::Update(InstanceChanges {
            name: Some("Renamed".into()),
            ..InstanceChanges::default()
        });
        let describe = InstanceCommand::Update(InstanceChanges {
            description: Change::Set("described".into()),
            ..InstanceChanges::default()
        });
        let after_rename = then_state(&i, &when(Some(&i), rename).unwrap()).unwrap();
        let after_both =
            then_state(&after_rename, &when(Some(&after_rename), describe).unwrap()).unwrap();
        assert_eq!(after_both.name, "Renamed");
        assert_eq!(after_both.description.as_deref(), Some("described"));
    }

    #[test]
    fn clearing_the_webhook_url_switches_webhooks_off() {
        let i = given_created();
        let events = when(
            Some(&i),
            InstanceCommand::Update(InstanceChanges {
                webhook_url: Change::Clear,
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        let after = then_state(&i, &events).unwrap();
        assert_eq!(after.webhook.url, None);
        assert!(!after.webhook.enabled);
    }

    #[test]
    fn clearing_the_secret_is_recorded_as_a_secret_change() {
        let i = given_created();
        let events = when(
            Some(&i),
            InstanceCommand::Update(InstanceChanges {
                secret: Change::Clear,
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        let Event::InstanceUpdated(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(e.secret_changed && !e.webhook.has_secret);
    }

    #[test]
    fn an_update_out_of_bounds_is_refused_and_records_nothing() {
        let i = given_created();
        for changes in [
            InstanceChanges {
                max_retries: Some(21),
                ..InstanceChanges::default()
            },
            InstanceChanges {
                retry_interval: Some(99),
                ..InstanceChanges::default()
            },
            InstanceChanges {
                secret: Change::Set(Secret::new("x".repeat(
                    crate::secrets::sealed_len(crate::domain::state::MAX_SECRET_LEN) + 1,
                ))),
                ..InstanceChanges::default()
            },
        ] {
            let err = when(Some(&i), InstanceCommand::Update(changes)).unwrap_err();
            assert!(matches!(err, DomainError::Invalid(_)), "{err:?}");
        }
    }

    #[test]
    fn commands_on_a_missing_instance_are_not_found() {
        for command in [
            InstanceCommand::Update(InstanceChanges::default()),
            InstanceCommand::Delete,
            InstanceCommand::RequestReconnect,
            InstanceCommand::RequestLogout,
            InstanceCommand::DisableWebhook { reason: "x".into() },
        ] {
            assert!(matches!(when(None, command), Err(DomainError::NotFound(_))));
        }
    }

    #[test]
    fn disabling_a_webhook_happens_once() {
        let i = given_created();
        let cmd = || InstanceCommand::DisableWebhook {
            reason: "the endpoint answered 410 Gone".into(),
        };
        let events = when(Some(&i), cmd()).unwrap();
        assert_eq!(events.len(), 1);
        let after = then_state(&i, &events).unwrap();
        assert!(!after.webhook.enabled);
        assert!(when(Some(&after), cmd()).unwrap().is_empty());
    }

    #[test]
    fn deleting_ends_the_instance() {
        let i = given_created();
        let events = when(Some(&i), InstanceCommand::Delete).unwrap();
        assert!(matches!(events[..], [Event::InstanceDeleted(_)]));
        assert_eq!(then_state(&i, &events), None);
    }

    #[test]
    fn reconnect_and_logout_requests_are_recorded_without_changing_the_settings() {
        let i = given_created();
        for (cmd, ty) in [
            (InstanceCommand::RequestReconnect, "reconnect_requested"),
            (InstanceCommand::RequestLogout, "logout_requested"),
        ] {
            let events = when(Some(&i), cmd).unwrap();
            assert_eq!(events[0].event_type(), ty);
            assert_eq!(then_state(&i, &events).unwrap().webhook, i.webhook);
        }
    }

    #[test]
    fn a_new_instance_sends_unpaced_unless_asked() {
        let i = given_created();
        assert_eq!(i.send_policy, SendPolicy::default());
        assert!(!i.send_policy.enabled);
    }

    #[test]
    fn one_flag_switches_on_the_cautious_send_policy() {
        let i = given_created();
        let events = when(
            Some(&i),
            InstanceCommand::Update(InstanceChanges {
                send_policy: Some(PolicyChanges {
                    enabled: Some(true),
                    ..PolicyChanges::default()
                }),
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        let Event::InstanceUpdated(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(e.send_policy, SendPolicy::cautious());
        let after = then_state(&i, &events).unwrap();
        assert_eq!(after.send_policy, SendPolicy::cautious());
        assert_eq!(after.webhook, i.webhook);
    }

    #[test]
    fn a_policy_update_keeps_the_fields_it_does_not_name() {
        let i = given_created();
        let on = then_state(
            &i,
            &when(
                Some(&i),
                InstanceCommand::Update(InstanceChanges {
                    send_policy: Some(PolicyChanges {
                        enabled: Some(true),
                        per_minute: Some(2),
                        ..PolicyChanges::default()
                    }),
                    ..InstanceChanges::default()
                }),
            )
            .unwrap(),
        )
        .unwrap();
        let events = when(
            Some(&on),
            InstanceCommand::Update(InstanceChanges {
                send_policy: Some(PolicyChanges {
                    delay_min_ms: Some(10),
                    delay_max_ms: Some(20),
                    ..PolicyChanges::default()
                }),
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        let after = then_state(&on, &events).unwrap();
        assert!(after.send_policy.enabled);
        assert_eq!(after.send_policy.per_minute, 2);
        assert_eq!(
            (
                after.send_policy.delay_min_ms,
                after.send_policy.delay_max_ms
            ),
            (10, 20)
        );
        // A rename leaves the policy as it is.
        let renamed = when(
            Some(&after),
            InstanceCommand::Update(InstanceChanges {
                name: Some("x".into()),
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        assert_eq!(
            then_state(&after, &renamed).unwrap().send_policy,
            after.send_policy
        );
    }

    #[test]
    fn a_policy_out_of_bounds_is_refused_and_records_nothing() {
        let i = given_created();
        let err = when(
            Some(&i),
            InstanceCommand::Update(InstanceChanges {
                send_policy: Some(PolicyChanges {
                    delay_min_ms: Some(9_000),
                    delay_max_ms: Some(1_000),
                    ..PolicyChanges::default()
                }),
                ..InstanceChanges::default()
            }),
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn a_proxy_is_recorded_without_its_credentials_and_its_removal_once() {
        let i = given_created();
        let proxy = ProxySetting {
            public: ProxyPublic {
                url: "socks5://proxy.example.com:1080".into(),
                auth: true,
            },
            sealed_auth: Some(Secret::new("enc:v1:sealed-never-in-the-log")),
        };
        let set = when(
            Some(&i),
            InstanceCommand::Update(InstanceChanges {
                proxy: Change::Set(proxy),
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        let data = set[0].data();
        assert!(
            !data.to_string().contains("sealed-never-in-the-log"),
            "{data}"
        );
        assert_eq!(
            data["proxy"],
            serde_json::json!({"url": "socks5://proxy.example.com:1080", "auth": true})
        );
        assert_eq!(data["proxyChanged"], true);
        let with_proxy = then_state(&i, &set).unwrap();
        assert_eq!(
            with_proxy.proxy.as_ref().unwrap().url,
            "socks5://proxy.example.com:1080"
        );

        // Another change keeps the proxy and does not count as a proxy change.
        let renamed = when(
            Some(&with_proxy),
            InstanceCommand::Update(InstanceChanges {
                name: Some("x".into()),
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        assert!(!renamed[0].data().to_string().contains("proxyChanged"));
        assert_eq!(
            then_state(&with_proxy, &renamed).unwrap().proxy,
            with_proxy.proxy
        );

        let cleared = when(
            Some(&with_proxy),
            InstanceCommand::Update(InstanceChanges {
                proxy: Change::Clear,
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        let after = then_state(&with_proxy, &cleared).unwrap();
        assert_eq!(after.proxy, None);
        assert_eq!(cleared[0].data()["proxyChanged"], true);
        let again = when(
            Some(&after),
            InstanceCommand::Update(InstanceChanges {
                proxy: Change::Clear,
                ..InstanceChanges::default()
            }),
        )
        .unwrap();
        assert!(
            !again[0].data().to_string().contains("proxyChanged"),
            "nothing to remove"
        );
    }
}
