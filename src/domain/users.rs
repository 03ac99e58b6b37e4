//! User accounts: registration, login, API keys and passwords.

use chrono::Utc;
use sqlx::{Row, SqlitePool};

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::events::{ApiKeyRotated, PasswordChanged, UserLoggedIn, UserRegistered};
use crate::store::{Append, EventStore, ExpectedVersion, Metadata, StreamId, effect};

use super::types::{Email, NewPassword};

/// A user account as the API shows it (the API key included; never the password hash).
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
    pub api_key: String,
    pub created_at: i64,
}

/// What a new account needs.
pub struct NewUser {
    pub email: Email,
    pub password: NewPassword,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
}

const USER_COLUMNS: &str = "id, email, first_name, last_name, is_admin, api_key, created_at";

fn row_to_user(row: &sqlx::sqlite::SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        api_key: row.try_get("api_key")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A user by id.
pub async fn find_by_id(pool: &SqlitePool, id: &str) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(row_to_user).transpose()
}

/// A user by API key: looked up by the key's SHA-256 digest and compared
/// in constant time (no argon2 per request).
pub async fn find_by_api_key(pool: &SqlitePool, key: &str) -> Result<Option<User>, sqlx::Error> {
    let digest = auth::api_key_digest(key);
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS}, api_key_hash FROM users WHERE api_key_hash = ?"
    )))
    .bind(&digest)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => {
            let stored: String = row.try_get("api_key_hash")?;
            if auth::digests_equal(&stored, &digest) {
                Ok(Some(row_to_user(&row)?))
            } else {
                Ok(None)
            }
        }
        None => Ok(None),
    }
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
    pub fn evict_user(&self, user_id: &str) {
        self.rotations
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entries
            .write()
            .expect("key cache lock")
            .retain(|_, (u, _)| u.id != user_id);
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

/// Every user, oldest first.
pub async fn list(pool: &SqlitePool) -> Result<Vec<User>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(row_to_user).collect()
}

/// Creates an account: `user_registered`, with the hash and key written alongside.
pub async fn register(store: &EventStore, new: NewUser, actor: &str) -> ApiResult<User> {
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = ?")
        .bind(new.email.as_str())
        .fetch_optional(store.pool())
        .await?;
    if exists.is_some() {
        return Err(ApiError::conflict("A user with this email already exists"));
    }
    let password = new.password.expose().to_string();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email: new.email.as_str().to_string(),
        first_name: new.first_name.trim().to_string(),
        last_name: new.last_name.trim().to_string(),
        is_admin: new.is_admin,
        api_key: auth::new_api_key(),
        created_at: Utc::now().timestamp_millis(),
    };
    let row = user.clone();
    let digest = auth::api_key_digest(&user.api_key);
    let append = Append::to(StreamId::user(&user.id), ExpectedVersion::NoStream)
        .scope(Some(&user.id), None)
        .metadata(Metadata::actor(actor))
        .event(UserRegistered {
            user_id: user.id.clone(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            is_admin: user.is_admin,
        })
        .effect(effect(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO users (id, email, first_name, last_name, is_admin, password_hash, \
                     api_key, api_key_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&row.id)
                .bind(&row.email)
                .bind(&row.first_name)
                .bind(&row.last_name)
                .bind(row.is_admin as i64)
                .bind(&hash)
                .bind(&row.api_key)
                .bind(&digest)
                .bind(row.created_at)
                .bind(row.created_at)
                .execute(conn)
                .await?;
                Ok(())
            })
        }));
    store.append(append).await?;
    Ok(user)
}

/// Checks e-mail and password; records `user_logged_in`. Every failure is the
/// same 401 so that no one can probe which e-mails exist.
pub async fn login(store: &EventStore, email: &str, password: &str) -> ApiResult<User> {
    let refused = || ApiError::unauthorized("Invalid email or password");
    let email = Email::parse(email).map_err(|_| refused())?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?"
    )))
    .bind(email.as_str())
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        // Spend the same time as a real check.
        let password = password.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            auth::verify_password(
                &password,
                DUMMY_HASH.get_or_init(|| auth::hash_password("x").unwrap_or_default()),
            )
        })
        .await;
        return Err(refused());
    };
    let hash: String = row.try_get("password_hash")?;
    let user = row_to_user(&row)?;
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        return Err(refused());
    }
    store
        .append(
            Append::to(StreamId::user(&user.id), ExpectedVersion::Any)
                .scope(Some(&user.id), None)
                .metadata(Metadata::actor(&user.id))
                .event(UserLoggedIn {
                    user_id: user.id.clone(),
                }),
        )
        .await?;
    Ok(user)
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Replaces the user's API key; the old one stops working with this commit.
pub async fn rotate_api_key(store: &EventStore, user_id: &str) -> ApiResult<String> {
    let key = auth::new_api_key();
    let digest = auth::api_key_digest(&key);
    let (id, new_key) = (user_id.to_string(), key.clone());
    store
        .append(
            Append::to(StreamId::user(user_id), ExpectedVersion::Any)
                .scope(Some(user_id), None)
                .metadata(Metadata::actor(user_id))
                .event(ApiKeyRotated {
                    user_id: user_id.to_string(),
                })
                .effect(effect(move |conn| {
                    Box::pin(async move {
                        sqlx::query("UPDATE users SET api_key = ?, api_key_hash = ?, updated_at = ? WHERE id = ?")
                            .bind(&new_key)
                            .bind(&digest)
                            .bind(Utc::now().timestamp_millis())
                            .bind(&id)
                            .execute(conn)
                            .await?;
                        Ok(())
                    })
                })),
        )
        .await?;
    Ok(key)
}

/// Changes a password after checking the current one.
pub async fn change_password(
    store: &EventStore,
    user_id: &str,
    current: &str,
    new: NewPassword,
) -> ApiResult<()> {
    let hash: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    let Some(hash) = hash else {
        return Err(ApiError::unauthorized("Unknown user"));
    };
    let current = current.to_string();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&current, &hash))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        return Err(ApiError::bad_request("currentPassword is not correct"));
    }
    let password = new.expose().to_string();
    let new_hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    let id = user_id.to_string();
    store
        .append(
            Append::to(StreamId::user(user_id), ExpectedVersion::Any)
                .scope(Some(user_id), None)
                .metadata(Metadata::actor(user_id))
                .event(PasswordChanged {
                    user_id: user_id.to_string(),
                })
                .effect(effect(move |conn| {
                    Box::pin(async move {
                        sqlx::query(
                            "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
                        )
                        .bind(&new_hash)
                        .bind(Utc::now().timestamp_millis())
                        .bind(&id)
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                })),
        )
        .await?;
    Ok(())
}

/// Creates the first admin when there is no user at all. Returns the
/// generated password when one had to be made up (printed once by the caller).
pub async fn ensure_first_admin(
    store: &EventStore,
    email: &str,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(store.pool())
        .await?;
    if count > 0 {
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
    register(store, new, "system")
        .await
        .map_err(|e| anyhow::anyhow!("Failed to create the first admin: {}", e.message()))?;
    Ok(generated.then_some(password))
}
