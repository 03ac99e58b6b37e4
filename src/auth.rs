//! Credentials: argon2id password hashes, API keys (looked up by SHA-256
//! digest, compared in constant time), and HS256 JWTs with an expiry.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let hash: PasswordHash = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

/// Checks a password against a stored PHC hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A fresh API key: `wag_` and 32 random bytes, base64url.
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "wag_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The lookup digest of an API key (hex SHA-256).
pub fn api_key_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Constant-time comparison of two digests.
pub fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A random password for the first admin when none is configured.
pub fn random_password() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// JWT claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// The user's token generation when issued; a password change moves it
    /// on, and older tokens are refused. Absent in tokens from before it
    /// existed: generation 0.
    #[serde(default)]
    pub tgen: i64,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
}

/// Issues and verifies the gateway's JWTs.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl Tokens {
    /// Keys from a secret.
    pub fn new(secret: &Secret, ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            ttl,
        }
    }

    /// A token for `user_id` in its current token generation, valid for the configured TTL.
    pub fn issue(&self, user_id: &str, generation: i64) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        self.issue_with(user_id, generation, now, now + self.ttl.as_secs() as i64)
    }

    /// A token with explicit times (tests use it to make expired tokens).
    pub fn issue_with(
        &self,
        user_id: &str,
        generation: i64,
        iat: i64,
        exp: i64,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user_id.to_string(),
            iat,
            exp,
            tgen: generation,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("Failed to sign a token")
    }

    /// The user id and token generation of a valid, unexpired token (the
    /// caller compares the generation with the account's).
    pub fn verify(&self, token: &str) -> Result<(String, i64), TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => Ok((data.claims.sub, data.claims.tgen)),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(TokenError::Expired),
                _ => Err(TokenError::Invalid),
            },
        }
    }
}

/// The JWT secret: the configured one, else the one kept in
/// `<data>/jwt_secret` (created once, mode 0600).
pub fn load_or_create_jwt_secret(
    configured: Option<&Secret>,
    data_dir: &Path,
) -> anyhow::Result<Secret> {
    if let Some(s) = configured {
        return Ok(s.clone());
    }
    let path = data_dir.join("jwt_secret");
    if path.exists() {
        let text = std::fs::read_to_string(&path).context("Failed to read the JWT secret file")?;
        let text = text.trim().to_string();
        anyhow::ensure!(
            text.len() >= 32,
            "the JWT secret file {} is too short",
            path.display()
        );
        return Ok(Secret::new(text));
    }
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private_file(&path, &secret)?;
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn write_private_file(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("Failed to create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not-a-hash"));
    }

    #[test]
    fn tokens_expire_and_resist_tampering() {
        let t = Tokens::new(
            &Secret::new("a-test-secret-of-enough-length"),
            Duration::from_secs(60),
        );
        let ok = t.issue("u1", 3).unwrap();
        assert_eq!(t.verify(&ok).unwrap(), ("u1".to_string(), 3));
        let now = chrono::Utc::now().timestamp();
        let old = t.issue_with("u1", 0, now - 120, now - 60).unwrap();
        assert_eq!(t.verify(&old), Err(TokenError::Expired));
        let mut tampered = ok.clone();
        tampered.pop();
        tampered.push(if ok.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(t.verify(&tampered), Err(TokenError::Invalid));
        let other = Tokens::new(
            &Secret::new("another-secret-of-enough-length"),
            Duration::from_secs(60),
        );
        assert_eq!(other.verify(&ok), Err(TokenError::Invalid));
    }

    #[test]
    fn api_keys_are_unique_and_digests_compare() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a, b);
        assert!(digests_equal(&api_key_digest(&a), &api_key_digest(&a)));
        assert!(!digests_equal(&api_key_digest(&a), &api_key_digest(&b)));
    }

    #[test]
    fn jwt_secret_is_generated_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_jwt_secret(None, dir.path()).unwrap();
        let b = load_or_create_jwt_secret(None, dir.path()).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("jwt_secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
