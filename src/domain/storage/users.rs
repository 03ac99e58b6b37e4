//! The `users` table: each account's snapshot at its stream version, with
//! the secrets that never enter the log (password hash, API key and its digest).

use futures::future::BoxFuture;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::auth;
use crate::config::Secret;
use crate::domain::state::{Account, User};
use crate::ids::UserId;
use crate::store::StateChange;

const USER_COLUMNS: &str = "id, email, first_name, last_name, is_admin, api_key, rate_limit_per_min, created_at, token_generation";

fn row_to_user(row: &sqlx::sqlite::SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        api_key: row.try_get("api_key")?,
        rate_limit_per_min: row
            .try_get::<Option<i64>, _>("rate_limit_per_min")?
            .map(|v| v as u32),
        created_at: row.try_get("created_at")?,
        token_generation: row.try_get("token_generation")?,
    })
}

/// A user by id.
pub async fn find_by_id(pool: &SqlitePool, id: &UserId) -> Result<Option<User>, sqlx::Error> {
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

/// The account with this (normalised) e-mail and its password hash.
pub async fn credentials_by_email(
    pool: &SqlitePool,
    email: &str,
) -> Result<Option<(User, Secret)>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?"
    )))
    .bind(email)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok((
            row_to_user(&r)?,
            Secret::new(r.try_get::<String, _>("password_hash")?),
        ))
    })
    .transpose()
}

/// The password hash of an account.
pub async fn password_hash(pool: &SqlitePool, id: &UserId) -> Result<Option<Secret>, sqlx::Error> {
    let hash: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(hash.map(Secret::new))
}

/// Whether an account has this e-mail.
pub async fn email_taken(pool: &SqlitePool, email: &str) -> Result<bool, sqlx::Error> {
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = ?")
        .bind(email)
        .fetch_optional(pool)
        .await?;
    Ok(id.is_some())
}

/// How many accounts exist.
pub async fn count(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await
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

/// An account's snapshot and the version of its stream it reflects.
pub async fn find_versioned(
    pool: &SqlitePool,
    id: &UserId,
) -> Result<Option<(Account, i64)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, email, first_name, last_name, is_admin, rate_limit_per_min, created_at, \
         updated_at, token_generation, version FROM users WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok((
            Account {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                first_name: r.try_get("first_name")?,
                last_name: r.try_get("last_name")?,
                is_admin: r.try_get::<i64, _>("is_admin")? != 0,
                rate_limit_per_min: r
                    .try_get::<Option<i64>, _>("rate_limit_per_min")?
                    .map(|v| v as u32),
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
                token_generation: r.try_get("token_generation")?,
            },
            r.try_get("version")?,
        ))
    })
    .transpose()
}

/// Writes a new account with its password hash and API key (sealed, with
/// the digest of the key in clear).
pub async fn insert_user(
    conn: &mut SqliteConnection,
    a: &Account,
    password_hash: &Secret,
    api_key: &Secret,
    api_key_digest: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, first_name, last_name, is_admin, password_hash, \
         api_key, api_key_hash, created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&a.id)
    .bind(&a.email)
    .bind(&a.first_name)
    .bind(&a.last_name)
    .bind(a.is_admin as i64)
    .bind(password_hash.expose())
    .bind(api_key.expose())
    .bind(api_key_digest)
    .bind(a.created_at)
    .bind(a.updated_at)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces an account's API key (the old one stops working with this commit).
pub async fn set_api_key(
    conn: &mut SqliteConnection,
    a: &Account,
    api_key: &Secret,
    api_key_digest: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET api_key = ?, api_key_hash = ?, updated_at = ?, version = ? WHERE id = ?",
    )
    .bind(api_key.expose())
    .bind(api_key_digest)
    .bind(a.updated_at)
    .bind(version)
    .bind(&a.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces an account's password hash and moves its token generation on.
pub async fn set_password_hash(
    conn: &mut SqliteConnection,
    a: &Account,
    hash: &Secret,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET password_hash = ?, token_generation = ?, updated_at = ?, version = ? \
         WHERE id = ?",
    )
    .bind(hash.expose())
    .bind(a.token_generation)
    .bind(a.updated_at)
    .bind(version)
    .bind(&a.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an account's snapshot to `version` (an event that changes no column).
pub async fn set_version(
    conn: &mut SqliteConnection,
    id: &UserId,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET version = ? WHERE id = ?")
        .bind(version)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The changes an account command makes to this table.
#[derive(Debug)]
pub enum UserChange {
    /// [`insert_user`].
    Insert {
        account: Account,
        password_hash: Secret,
        api_key: Secret,
        api_key_digest: String,
        version: i64,
    },
    /// [`set_api_key`].
    SetApiKey(Account, Secret, String, i64),
    /// [`set_password_hash`].
    SetPasswordHash(Account, Secret, i64),
    /// [`set_version`].
    SetVersion(UserId, i64),
    /// [`set_rate_limit`].
    SetRateLimit(Account, i64),
}

impl StateChange for UserChange {
    fn apply<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(async move {
            match *self {
                UserChange::Insert {
                    account,
                    password_hash,
                    api_key,
                    api_key_digest,
                    version,
                } => {
                    insert_user(
                        conn,
                        &account,
                        &password_hash,
                        &api_key,
                        &api_key_digest,
                        version,
                    )
                    .await
                }
                UserChange::SetRateLimit(a, v) => set_rate_limit(conn, &a, v).await,
                UserChange::SetApiKey(a, key, digest, v) => {
                    set_api_key(conn, &a, &key, &digest, v).await
                }
                UserChange::SetPasswordHash(a, hash, v) => {
                    set_password_hash(conn, &a, &hash, v).await
                }
                UserChange::SetVersion(id, v) => set_version(conn, &id, v).await,
            }
        })
    }
}

/// The id of the account with this e-mail, if any (no credentials read).
pub async fn id_by_email(pool: &SqlitePool, email: &str) -> Result<Option<UserId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE email = ?")
        .bind(email)
        .fetch_optional(pool)
        .await
}

/// Stores a user's own rate limit, with the snapshot's version.
pub async fn set_rate_limit(
    conn: &mut SqliteConnection,
    a: &Account,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET rate_limit_per_min = ?, updated_at = ?, version = ? WHERE id = ?",
    )
    .bind(a.rate_limit_per_min.map(i64::from))
    .bind(a.updated_at)
    .bind(version)
    .bind(&a.id)
    .execute(conn)
    .await?;
    Ok(())
}
