//! The user aggregate: accounts, logins, API keys and passwords. Decisions
//! are pure ([`decide`], [`apply`]); the `users` table is the snapshot, with
//! the secrets that never enter the log.

use sqlx::SqlitePool;

use crate::auth;
use crate::config::Secret;
use crate::events::{
    ApiKeyRotated, Event, PasswordChanged, RateLimitSet, UserLoggedIn, UserRegistered,
};
use crate::secrets::{Purpose, Sealer};
use crate::store::{Effect, EventStore, Metadata, StreamId};

use super::DomainError;
use super::aggregate::{self, Aggregate, Versioned};
use super::storage::users::{self as table, UserChange};
use super::types::{Email, NewPassword};
use crate::ids::{InstanceId, UserId};

pub use table::{find_by_api_key, find_by_id, id_by_email, list};

pub use super::state::{Account, User};

/// What a new account needs.
pub struct NewUser {
    pub email: Email,
    pub password: NewPassword,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
}

/// What can be asked of an account. Password checks (argon2) happen before
/// the decision; their outcome is part of the command.
#[derive(Debug, Clone)]
pub enum UserCommand {
    Register {
        email: String,
        first_name: String,
        last_name: String,
        is_admin: bool,
        password_hash: Secret,
        /// The API key sealed for storage ([`crate::secrets`]) and its lookup digest.
        api_key: Secret,
        api_key_digest: String,
    },
    LogIn {
        password_matches: bool,
    },
    RotateApiKey {
        /// Sealed for storage, with its lookup digest.
        new_key: Secret,
        digest: String,
    },
    ChangePassword {
        current_matches: bool,
        new_hash: Secret,
    },
    /// An admin's setting of a new password (no current password asked).
    ResetPassword {
        new_hash: Secret,
    },
    /// An admin's setting of the user's own rate limit.
    SetRateLimit {
        per_minute: Option<u32>,
    },
}

/// A command with the time it is decided at (Unix milliseconds).
#[derive(Debug, Clone)]
pub struct UserTimed {
    pub id: UserId,
    pub command: UserCommand,
    pub at: i64,
}

/// The one answer to every failed login, whatever failed.
pub const LOGIN_REFUSED: &str = "Invalid email or password";

/// Decides which events a command causes on `state` (`None`: no such account).
pub fn decide(state: Option<&Account>, cmd: &UserTimed) -> Result<Vec<Event>, DomainError> {
    use UserCommand as C;
    let user_id = cmd.id.clone();
    match (&cmd.command, state) {
        (
            C::Register {
                email,
                first_name,
                last_name,
                is_admin,
                ..
            },
            None,
        ) => Ok(vec![
            UserRegistered {
                user_id,
                email: email.clone(),
                first_name: first_name.trim().to_string(),
                last_name: last_name.trim().to_string(),
                is_admin: *is_admin,
            }
            .into(),
        ]),
        (C::Register { .. }, Some(_)) => Err(DomainError::conflict("The user already exists")),
        (C::LogIn { .. }, None) => Err(DomainError::Unauthorized(LOGIN_REFUSED.into())),
        (C::SetRateLimit { .. }, None) => {
            Err(DomainError::NotFound(format!("User {user_id} not found")))
        }
        (C::ResetPassword { .. }, None) => {
            Err(DomainError::NotFound(format!("User {user_id} not found")))
        }
        (_, None) => Err(DomainError::Unauthorized("Unknown user".into())),
        (C::LogIn { password_matches }, Some(_)) => {
            if *password_matches {
                Ok(vec![UserLoggedIn { user_id }.into()])
            } else {
                Err(DomainError::Unauthorized(LOGIN_REFUSED.into()))
            }
        }
        (C::RotateApiKey { .. }, Some(_)) => Ok(vec![ApiKeyRotated { user_id }.into()]),
        (
            C::SetRateLimit {
                per_minute: Some(0),
            },
            Some(_),
        ) => Err(DomainError::invalid(
            "perMinute must be at least 1 (null: the default)",
        )),
        (C::SetRateLimit { per_minute }, Some(a)) if a.rate_limit_per_min == *per_minute => {
            Ok(Vec::new())
        }
        (C::SetRateLimit { per_minute }, Some(_)) => Ok(vec![
            RateLimitSet {
                user_id,
                per_minute: *per_minute,
            }
            .into(),
        ]),
        (
            C::ChangePassword {
                current_matches, ..
            },
            Some(_),
        ) => {
            if *current_matches {
                Ok(vec![PasswordChanged { user_id }.into()])
            } else {
                Err(DomainError::invalid("currentPassword is not correct"))
            }
        }
        (C::ResetPassword { .. }, Some(_)) => Ok(vec![PasswordChanged { user_id }.into()]),
    }
}

/// The state after `event`, recorded at `at` (Unix milliseconds).
pub fn apply(state: Option<Account>, event: &Event, at: i64) -> Option<Account> {
    match event {
        Event::UserRegistered(e) => Some(Account {
            id: e.user_id.clone(),
            email: e.email.clone(),
            first_name: e.first_name.clone(),
            last_name: e.last_name.clone(),
            is_admin: e.is_admin,
            rate_limit_per_min: None,
            created_at: at,
            updated_at: at,
            token_generation: 0,
        }),
        Event::RateLimitSet(e) => state.map(|a| Account {
            rate_limit_per_min: e.per_minute,
            updated_at: at.max(a.updated_at),
            ..a
        }),
        // A new password ends every token issued before it.
        Event::PasswordChanged(_) => state.map(|a| Account {
            updated_at: at.max(a.updated_at),
            token_generation: a.token_generation + 1,
            ..a
        }),
        Event::ApiKeyRotated(_) => state.map(|a| Account {
            updated_at: at.max(a.updated_at),
            ..a
        }),
        _ => state,
    }
}

impl Aggregate for Account {
    type Id = UserId;
    type Command = UserTimed;

    fn stream(id: &UserId) -> StreamId {
        StreamId::user(id.as_str())
    }

    fn decide(state: Option<&Self>, cmd: &UserTimed) -> Result<Vec<Event>, DomainError> {
        decide(state, cmd)
    }

    fn apply(state: Option<Self>, event: &Event, at: i64) -> Option<Self> {
        apply(state, event, at)
    }

    fn time(cmd: &UserTimed) -> i64 {
        cmd.at
    }

    fn scope(id: &UserId, _: Option<&Self>) -> (Option<UserId>, Option<InstanceId>) {
        (Some(id.clone()), None)
    }

    async fn load(pool: &SqlitePool, id: &UserId) -> Result<Versioned<Self>, sqlx::Error> {
        Ok(Versioned::from_row(table::find_versioned(pool, id).await?))
    }

    fn changes(
        id: &UserId,
        cmd: &UserTimed,
        _before: Option<&Self>,
        after: Option<&Self>,
        version: i64,
    ) -> Vec<Effect> {
        let Some(after) = after.cloned() else {
            return Vec::new();
        };
        let change = match &cmd.command {
            UserCommand::Register {
                password_hash,
                api_key,
                api_key_digest,
                ..
            } => UserChange::Insert {
                account: after,
                password_hash: password_hash.clone(),
                api_key: api_key.clone(),
                api_key_digest: api_key_digest.clone(),
                version,
            },
            UserCommand::RotateApiKey { new_key, digest } => {
                UserChange::SetApiKey(after, new_key.clone(), digest.clone(), version)
            }
            UserCommand::ChangePassword { new_hash, .. }
            | UserCommand::ResetPassword { new_hash } => {
                UserChange::SetPasswordHash(after, new_hash.clone(), version)
            }
            UserCommand::LogIn { .. } => UserChange::SetVersion(id.clone(), version),
            UserCommand::SetRateLimit { .. } => UserChange::SetRateLimit(after, version),
        };
        vec![Box::new(change)]
    }
}

async fn run(
    store: &EventStore,
    id: &UserId,
    command: UserCommand,
    meta: Metadata,
) -> Result<Option<Account>, DomainError> {
    let cmd = UserTimed {
        id: id.clone(),
        command,
        at: chrono::Utc::now().timestamp_millis(),
    };
    Ok(aggregate::execute::<Account>(store, id, &cmd, meta)
        .await?
        .state)
}

async fn hash(password: &str) -> Result<Secret, DomainError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?
        .map(Secret::new)
        .map_err(|e| DomainError::Internal(e.to_string()))
}

async fn verify(password: &str, hash: Secret) -> Result<bool, DomainError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || auth::verify_password(&password, hash.expose()))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))
}

/// Creates an account: `user_registered`, with the hash and key written alongside.
/// The API key is stored sealed by `sealer`; the answer holds it in clear.
pub async fn register(
    store: &EventStore,
    sealer: &Sealer,
    new: NewUser,
    actor: &str,
) -> Result<User, DomainError> {
    if table::email_taken(store.pool(), new.email.as_str()).await? {
        return Err(DomainError::conflict(
            "A user with this email already exists",
        ));
    }
    let id = UserId::new_random();
    let api_key = auth::new_api_key();
    let command = UserCommand::Register {
        email: new.email.as_str().to_string(),
        first_name: new.first_name,
        last_name: new.last_name,
        is_admin: new.is_admin,
        password_hash: hash(new.password.expose()).await?,
        api_key: Secret::new(sealer.seal(Purpose::ApiKey, &api_key)),
        api_key_digest: auth::api_key_digest(&api_key),
    };
    let account = run(store, &id, command, Metadata::actor(actor))
        .await
        .map_err(|e| match e {
            DomainError::Store(crate::store::StoreError::Duplicate(_)) => {
                DomainError::conflict("A user with this email already exists")
            }
            e => e,
        })?
        .ok_or_else(|| DomainError::Internal("registration left no account".into()))?;
    Ok(User {
        id: account.id,
        email: account.email,
        first_name: account.first_name,
        last_name: account.last_name,
        is_admin: account.is_admin,
        api_key,
        rate_limit_per_min: account.rate_limit_per_min,
        created_at: account.created_at,
        token_generation: account.token_generation,
    })
}

/// Checks e-mail and password; records `user_logged_in`. Every failure is the
/// same 401 so that no one can probe which e-mails exist.
pub async fn login(store: &EventStore, email: &str, password: &str) -> Result<User, DomainError> {
    let refused = || DomainError::Unauthorized(LOGIN_REFUSED.into());
    let email = Email::parse(email).map_err(|_| refused())?;
    let Some((user, stored)) = table::credentials_by_email(store.pool(), email.as_str()).await?
    else {
        // Spend the same time as a real check.
        let dummy = DUMMY_HASH.get_or_init(|| auth::hash_password("x").unwrap_or_default());
        let _ = verify(password, Secret::new(dummy.clone())).await;
        return Err(refused());
    };
    let password_matches = verify(password, stored).await?;
    run(
        store,
        &user.id,
        UserCommand::LogIn { password_matches },
        Metadata::actor(user.id.as_str()),
    )
    .await?;
    Ok(user)
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Replaces the user's API key; the old one stops working with this commit.
pub async fn rotate_api_key(
    store: &EventStore,
    sealer: &Sealer,
    id: &UserId,
) -> Result<String, DomainError> {
    let key = auth::new_api_key();
    run(
        store,
        id,
        UserCommand::RotateApiKey {
            new_key: Secret::new(sealer.seal(Purpose::ApiKey, &key)),
            digest: auth::api_key_digest(&key),
        },
        Metadata::actor(id.as_str()),
    )
    .await?;
    Ok(key)
}

/// Sets (or, with `None`, clears) a user's own API rate limit; an admin's act.
pub async fn set_rate_limit(
    store: &EventStore,
    id: &UserId,
    per_minute: Option<u32>,
    admin: &UserId,
) -> Result<Account, DomainError> {
    run(
        store,
        id,
        UserCommand::SetRateLimit { per_minute },
        Metadata::actor(admin.as_str()),
    )
    .await?
    .ok_or_else(|| DomainError::NotFound(format!("User {id} not found")))
}

/// Changes a password after checking the current one.
pub async fn change_password(
    store: &EventStore,
    id: &UserId,
    current: &str,
    new: NewPassword,
) -> Result<(), DomainError> {
    let stored = table::password_hash(store.pool(), id)
        .await?
        .ok_or_else(|| DomainError::Unauthorized("Unknown user".into()))?;
    let current_matches = verify(current, stored).await?;
    let new_hash = hash(new.expose()).await?;
    run(
        store,
        id,
        UserCommand::ChangePassword {
            current_matches,
            new_hash,
        },
        Metadata::actor(id.as_str()),
    )
    .await?;
    Ok(())
}

/// Sets a new password for a user without asking for the current one (an
/// admin's reset); like a change, it ends every token issued before.
pub async fn reset_password(
    store: &EventStore,
    id: &UserId,
    new: NewPassword,
    admin: &UserId,
) -> Result<(), DomainError> {
    let new_hash = hash(new.expose()).await?;
    run(
        store,
        id,
        UserCommand::ResetPassword { new_hash },
        Metadata::actor(admin.as_str()),
    )
    .await?
    .ok_or_else(|| DomainError::NotFound(format!("User {id} not found")))?;
    Ok(())
}

/// Creates the first admin when there is no user at all. Returns the
/// generated password when one had to be made up (printed once by the caller).
pub async fn ensure_first_admin(
    store: &EventStore,
    sealer: &Sealer,
    email: &str,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if table::count(store.pool()).await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(p) => (p.to_string(), false),
        None => (auth::random_password(), true),
    };
    let new = NewUser {
        email: Email::parse(email).map_err(|e| anyhow::anyhow!("WA_ADMIN_EMAIL: {e}"))?,
        password: NewPassword::parse(&password)
            .map_err(|e| anyhow::anyhow!("WA_ADMIN_PASSWORD: {e}"))?,
        first_name: "Admin".into(),
        last_name: String::new(),
        is_admin: true,
    };
    register(store, sealer, new, "system")
        .await
        .map_err(|e| anyhow::anyhow!("Failed to create the first admin: {e}"))?;
    Ok(generated.then_some(password))
}

/// API key digests → users, so a request is checked without a query. An
/// entry lives [`KEY_CACHE_TTL`]; a rotation evicts the user's entries at
/// once, and a lookup that raced with a rotation is not cached.
#[derive(Default)]
pub struct KeyCache {
    entries: std::sync::RwLock<std::collections::HashMap<String, (User, std::time::Instant)>>,
    rotations: std::sync::atomic::AtomicU64,
}

/// How long a cached API key stays valid without a fresh look-up.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl KeyCache {
    fn get(&self, digest: &str) -> Option<User> {
        let entries = self.entries.read().expect("key cache lock");
        entries
            .get(digest)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(u, _)| u.clone())
    }

    /// Forgets every cached key of a user (after a rotation).
    pub fn evict_user(&self, user_id: &UserId) {
        self.rotations
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entries
            .write()
            .expect("key cache lock")
            .retain(|_, (u, _)| &u.id != user_id);
    }
}

/// [`find_by_api_key`] through a [`KeyCache`].
pub async fn find_by_api_key_cached(
    pool: &SqlitePool,
    cache: &KeyCache,
    key: &str,
) -> Result<Option<User>, sqlx::Error> {
    let digest = auth::api_key_digest(key);
    if let Some(user) = cache.get(&digest) {
        return Ok(Some(user));
    }
    let rotations = cache.rotations.load(std::sync::atomic::Ordering::SeqCst);
    let user = find_by_api_key(pool, key).await?;
    if let Some(u) = &user {
        let mut entries = cache.entries.write().expect("key cache lock");
        if cache.rotations.load(std::sync::atomic::Ordering::SeqCst) == rotations {
            if entries.len() > 10_000 {
                entries.clear();
            }
            entries.insert(digest, (u.clone(), std::time::Instant::now()));
        }
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn id() -> UserId {
        UserId::from_stored("22222222-2222-4222-8222-222222222222")
    }

    fn when(state: Option<&Account>, command: UserCommand) -> Result<Vec<Event>, DomainError> {
        decide(
            state,
            &UserTimed {
                id: id(),
                command,
                at: T0,
            },
        )
    }

    #[test]
    fn an_admin_sets_and_clears_a_users_rate_limit_and_zero_is_refused() {
        let given = given_registered();
        let set = when(
            Some(&given),
            UserCommand::SetRateLimit {
                per_minute: Some(120),
            },
        )
        .unwrap();
        assert_eq!(
            set,
            vec![Event::from(RateLimitSet {
                user_id: id(),
                per_minute: Some(120)
            })]
        );
        let after = apply(Some(given.clone()), &set[0], T0 + 5).unwrap();
        assert_eq!(after.rate_limit_per_min, Some(120));
        assert_eq!(after.updated_at, T0 + 5);
        // The same value again changes nothing; null goes back to the default.
        assert!(
            when(
                Some(&after),
                UserCommand::SetRateLimit {
                    per_minute: Some(120)
                }
            )
            .unwrap()
            .is_empty()
        );
        let cleared = when(Some(&after), UserCommand::SetRateLimit { per_minute: None }).unwrap();
        assert_eq!(
            apply(Some(after), &cleared[0], T0 + 6)
                .unwrap()
                .rate_limit_per_min,
            None
        );
        assert!(matches!(
            when(
                Some(&given),
                UserCommand::SetRateLimit {
                    per_minute: Some(0)
                }
            ),
            Err(DomainError::Invalid(_))
        ));
        assert!(
            when(
                None,
                UserCommand::SetRateLimit {
                    per_minute: Some(5)
                }
            )
            .is_err()
        );
    }

    fn given_registered() -> Account {
        let events = when(
            None,
            UserCommand::Register {
                email: "a@b.io".into(),
                first_name: " Ann ".into(),
                last_name: "Lee".into(),
                is_admin: false,
                password_hash: Secret::new("$argon2id$hash"),
                api_key: Secret::new("key-never-in-the-log"),
                api_key_digest: "digest".into(),
            },
        )
        .unwrap();
        assert!(
            !events[0]
                .data()
                .to_string()
                .contains("key-never-in-the-log")
        );
        aggregate::replay::<Account>(events.iter().map(|e| (e, T0))).unwrap()
    }

    #[test]
    fn registering_creates_the_account_with_trimmed_names() {
        let a = given_registered();
        assert_eq!((a.first_name.as_str(), a.email.as_str()), ("Ann", "a@b.io"));
        assert_eq!(a.created_at, T0);
    }

    #[test]
    fn registering_twice_is_a_conflict() {
        let a = given_registered();
        let err = when(
            Some(&a),
            UserCommand::Register {
                email: "a@b.io".into(),
                first_name: String::new(),
                last_name: String::new(),
                is_admin: false,
                password_hash: Secret::new("h"),
                api_key: Secret::new("k"),
                api_key_digest: "digest".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
    }

    #[test]
    fn a_login_with_the_right_password_is_recorded() {
        let a = given_registered();
        let events = when(
            Some(&a),
            UserCommand::LogIn {
                password_matches: true,
            },
        )
        .unwrap();
        assert!(matches!(events[..], [Event::UserLoggedIn(_)]));
    }

    #[test]
    fn a_wrong_password_and_an_unknown_account_get_the_same_refusal() {
        let a = given_registered();
        let wrong = when(
            Some(&a),
            UserCommand::LogIn {
                password_matches: false,
            },
        )
        .unwrap_err();
        let unknown = when(
            None,
            UserCommand::LogIn {
                password_matches: true,
            },
        )
        .unwrap_err();
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert!(matches!(wrong, DomainError::Unauthorized(_)));
    }

    #[test]
    fn rotating_the_key_records_that_it_happened_not_the_key() {
        let a = given_registered();
        let events = when(
            Some(&a),
            UserCommand::RotateApiKey {
                new_key: Secret::new("new-key-secret"),
                digest: "digest".into(),
            },
        )
        .unwrap();
        assert!(matches!(events[..], [Event::ApiKeyRotated(_)]));
        assert!(!events[0].data().to_string().contains("new-key-secret"));
    }

    #[test]
    fn changing_the_password_needs_the_current_one() {
        let a = given_registered();
        let refused = when(
            Some(&a),
            UserCommand::ChangePassword {
                current_matches: false,
                new_hash: Secret::new("h2"),
            },
        )
        .unwrap_err();
        assert!(matches!(refused, DomainError::Invalid(_)));
        let events = when(
            Some(&a),
            UserCommand::ChangePassword {
                current_matches: true,
                new_hash: Secret::new("h2"),
            },
        )
        .unwrap();
        assert!(matches!(events[..], [Event::PasswordChanged(_)]));
        let after = apply(Some(a), &events[0], T0 + 5).unwrap();
        assert_eq!(after.updated_at, T0 + 5);
    }

    #[test]
    fn commands_on_a_missing_account_are_refused() {
        for command in [
            UserCommand::RotateApiKey {
                new_key: Secret::new("k"),
                digest: "digest".into(),
            },
            UserCommand::ChangePassword {
                current_matches: true,
                new_hash: Secret::new("h"),
            },
        ] {
            assert!(matches!(
                when(None, command),
                Err(DomainError::Unauthorized(_))
            ));
        }
    }
}
