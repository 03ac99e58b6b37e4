//! Secrets at rest and the data directory's modes.
//!
//! API keys, webhook signing secrets and proxy credentials are stored sealed with
//! XChaCha20-Poly1305 (random 192-bit nonce per value, the column's purpose
//! as associated data) under a key kept apart from the databases: the
//! `WA_SECRETS_KEY` setting, else `<data>/secrets_key` (generated on the
//! first start, mode 0600). A stored value reads `enc:v1:<key id>:<base64>`;
//! the key id names the key it was sealed with, so older keys listed after
//! the current one (in the key file, or in `WA_SECRETS_KEY_PREVIOUS`) still
//! open their values, and every start re-seals whatever is not under the
//! current key (and seals any value still in clear, from before sealing).
//! API keys are found by their SHA-256 digest, which stays in clear.
//!
//! The data directory is made owner-only (0700) and every file in it 0600:
//! SQLite files are created 0600 before SQLite opens them (its `-wal` and
//! `-shm` files take the database file's mode), and on every start the tree
//! is walked and tightened (files created by older versions or by the
//! WhatsApp engine's store).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::config::Secret;

/// The prefix of a sealed value.
const PREFIX: &str = "enc:v1:";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secrets_key";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_ID_LEN: usize = 8;

/// What a sealed value is; bound into it, so a value cannot be moved to
/// another column and still open.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// `users.api_key`.
    ApiKey,
    /// `instances.webhook_secret`.
    WebhookSecret,
    /// `message_media.locator` (a media key and CDN path).
    MediaLocator,
    /// `instances.proxy_auth`: a proxy's username and password.
    ProxyCredentials,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::ApiKey => b"wa-gateway users.api_key",
            Purpose::WebhookSecret => b"wa-gateway instances.webhook_secret",
            Purpose::MediaLocator => b"wa-gateway message_media.locator",
            Purpose::ProxyCredentials => b"wa-gateway instances.proxy_auth",
        }
    }
}

/// The length of the sealed form of a `plain_len`-byte value.
pub const fn sealed_len(plain_len: usize) -> usize {
    let raw = NONCE_LEN + plain_len + TAG_LEN;
    PREFIX.len() + KEY_ID_LEN + 1 + (raw * 4).div_ceil(3)
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"wa-gateway secrets key id\0");
        h.update(bytes);
        let id = hex::encode(&h.finalize()[..KEY_ID_LEN / 2]);
        Self {
            id,
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// Seals and opens stored secrets: the current key, and older ones that
/// may still have sealed some values.
pub struct Sealer {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current.id)
            .field("previous", &self.previous.len())
            .finish()
    }
}

/// A stored value that does not open (a wrong or missing key, or tampering).
#[derive(Debug, thiserror::Error)]
#[error("a stored secret could not be opened (sealed with key {0}, which is not configured)")]
pub struct OpenError(String);

impl Sealer {
    /// A sealer with `current` and the older `previous` keys.
    fn from_keys(current: [u8; 32], previous: &[[u8; 32]]) -> Self {
        Self {
            current: Key::new(&current),
            previous: previous.iter().map(Key::new).collect(),
        }
    }

    /// A sealer with a fresh random key (tests and tools).
    pub fn random() -> Self {
        Self::from_keys(new_key(), &[])
    }

    /// Seals `plain` for `purpose` under the current key.
    pub fn seal(&self, purpose: Purpose, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: purpose.aad(),
                },
            )
            .expect("XChaCha20-Poly1305 sealing does not fail");
        let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        format!(
            "{PREFIX}{}:{}",
            self.current.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }

    /// Opens a stored value. A value without the prefix was stored in clear
    /// (before sealing) and is returned as it is.
    pub fn open(&self, purpose: Purpose, stored: &str) -> Result<Secret, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Secret::new(stored));
        };
        let (id, body) = rest.split_once(':').unwrap_or(("?", ""));
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError(id.to_string()))?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| OpenError(id.to_string()))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError(id.to_string()));
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError(id.to_string()))?;
        let plain = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: purpose.aad(),
                },
            )
            .map_err(|_| OpenError(id.to_string()))?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| OpenError(id.to_string()))
    }

    /// Whether `stored` is sealed under the current key.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }

    /// A new random key, as `WA_SECRETS_KEY` takes it (base64).
    pub fn new_key_text() -> String {
        encode_key(&new_key())
    }

    /// The current key's id (shown by the rotation tool).
    pub fn key_id(&self) -> &str {
        &self.current.id
    }
}

fn new_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

fn encode_key(k: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// Decodes a key: 32 bytes in base64 (standard or URL-safe) or 64 hex digits.
pub fn decode_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let t = text.trim();
    let bytes = hex::decode(t)
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .ok()
                .or_else(|| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(t)
                        .ok()
                })
        })
        .context("a secrets key must be 32 bytes in base64 or 64 hex digits")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a secrets key must be exactly 32 bytes (base64 or hex)"))
}

/// The key file's path: `WA_SECRETS_KEY_FILE`, else `<data>/secrets_key`.
pub fn key_file(data_dir: &Path, configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join(KEY_FILE))
}

/// The sealer from the configuration: `WA_SECRETS_KEY` (with
/// `WA_SECRETS_KEY_PREVIOUS`) when set, else the key file, created with a
/// fresh key (mode 0600) when it does not exist.
pub fn load_or_create(
    configured: Option<&Secret>,
    previous: &[Secret],
    file: &Path,
) -> anyhow::Result<Sealer> {
    if let Some(k) = configured {
        let current = decode_key(k.expose()).context("WA_SECRETS_KEY")?;
        let previous = previous
            .iter()
            .map(|p| decode_key(p.expose()))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("WA_SECRETS_KEY_PREVIOUS")?;
        return Ok(Sealer::from_keys(current, &previous));
    }
    if !file.exists() {
        write_private(file, &format!("{}\n", encode_key(&new_key())))?;
    }
    read_key_file(file)
}

fn read_key_file(file: &Path) -> anyhow::Result<Sealer> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("Failed to read the secrets key file {}", file.display()))?;
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(decode_key)
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("the secrets key file {}", file.display()))?;
    let Some((current, previous)) = keys.split_first() else {
        bail!("the secrets key file {} holds no key", file.display());
    };
    Ok(Sealer::from_keys(*current, previous))
}

/// Seals every stored API key, webhook secret and proxy credential that is not under the
/// current key (values in clear from older versions, values under an older
/// key), in one transaction. Returns how many were re-sealed.
pub async fn reseal_all(pool: &SqlitePool, sealer: &Sealer) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    let mut count = 0;
    let users: Vec<(String, String)> = sqlx::query_as("SELECT id, api_key FROM users")
        .fetch_all(&mut *tx)
        .await?;
    for (id, stored) in users {
        if sealer.is_current(&stored) {
            continue;
        }
        let plain = sealer.open(Purpose::ApiKey, &stored)?;
        sqlx::query("UPDATE users SET api_key = ? WHERE id = ?")
            .bind(sealer.seal(Purpose::ApiKey, plain.expose()))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        count += 1;
    }
    let hooks: Vec<(String, String)> =
        sqlx::query_as("SELECT id, webhook_secret FROM instances WHERE webhook_secret IS NOT NULL")
            .fetch_all(&mut *tx)
            .await?;
    for (id, stored) in hooks {
        if sealer.is_current(&stored) {
            continue;
        }
        let plain = sealer.open(Purpose::WebhookSecret, &stored)?;
        sqlx::query("UPDATE instances SET webhook_secret = ? WHERE id = ?")
            .bind(sealer.seal(Purpose::WebhookSecret, plain.expose()))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        count += 1;
    }
    let media: Vec<(String, String, String)> =
        sqlx::query_as("SELECT instance_id, message_id, locator FROM message_media")
            .fetch_all(&mut *tx)
            .await?;
    for (instance, message, stored) in media {
        if sealer.is_current(&stored) {
            continue;
        }
        let plain = sealer.open(Purpose::MediaLocator, &stored)?;
        sqlx::query(
            "UPDATE message_media SET locator = ? WHERE instance_id = ? AND message_id = ?",
        )
        .bind(sealer.seal(Purpose::MediaLocator, plain.expose()))
        .bind(&instance)
        .bind(&message)
        .execute(&mut *tx)
        .await?;
        count += 1;
    }
    let proxies: Vec<(String, String)> =
        sqlx::query_as("SELECT id, proxy_auth FROM instances WHERE proxy_auth IS NOT NULL")
            .fetch_all(&mut *tx)
            .await?;
    for (id, stored) in proxies {
        if sealer.is_current(&stored) {
            continue;
        }
        let plain = sealer.open(Purpose::ProxyCredentials, &stored)?;
        sqlx::query("UPDATE instances SET proxy_auth = ? WHERE id = ?")
            .bind(sealer.seal(Purpose::ProxyCredentials, plain.expose()))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        count += 1;
    }
    tx.commit().await?;
    Ok(count)
}

/// Rotates the key file's key: a new key goes first (the old one kept after
/// it, so that a crash at any point leaves every value readable), every
/// value is re-sealed under it, then the old key is dropped from the file.
/// Run it while the gateway is stopped. Returns (old id, new id, values).
pub async fn rotate_key_file(
    file: &Path,
    pool: &SqlitePool,
) -> anyhow::Result<(String, String, u64)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("Failed to read the secrets key file {}", file.display()))?;
    let old_id = read_key_file(file)?.current.id.clone();
    let fresh = new_key();
    replace_private(file, &format!("{}\n{}", encode_key(&fresh), text))?;
    let sealer = read_key_file(file)?;
    let count = reseal_all(pool, &sealer).await?;
    replace_private(file, &format!("{}\n", encode_key(&fresh)))?;
    Ok((old_id, sealer.current.id.clone(), count))
}

/// Writes a new file, owner-only (0600).
pub fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Replaces a file's content atomically (a 0600 temporary renamed over it).
fn replace_private(path: &Path, content: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, content)?;
    std::fs::rename(&tmp, path).with_context(|| format!("Failed to replace {}", path.display()))?;
    Ok(())
}

/// Creates `dir` if needed and makes it owner-only (0700).
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("Failed to create the directory {}", dir.display()))?;
    set_mode(dir, 0o700)
}

/// Creates an empty owner-only (0600) file unless it exists (so that SQLite,
/// which gives its `-wal` and `-shm` files the database's mode, opens it
/// rather than creating it with the process umask).
pub fn precreate_private_file(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    set_mode(path, 0o600)
}

/// Makes the data directory owner-only: every directory in it 0700, every
/// file 0600 (symbolic links are left alone).
pub fn tighten_tree(dir: &Path) -> anyhow::Result<()> {
    set_mode(dir, 0o700)?;
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("Failed to read {}", dir.display()))?
    {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            tighten_tree(&entry.path())?;
        } else if kind.is_file() {
            set_mode(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("Failed to set the mode of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let s = Sealer::random();
        let sealed = s.seal(Purpose::ApiKey, "wag_secret");
        assert!(sealed.starts_with("enc:v1:"));
        assert!(!sealed.contains("wag_secret"));
        assert_eq!(
            s.open(Purpose::ApiKey, &sealed).unwrap().expose(),
            "wag_secret"
        );
        assert!(s.open(Purpose::WebhookSecret, &sealed).is_err());
        assert!(Sealer::random().open(Purpose::ApiKey, &sealed).is_err());
        // Two seals of the same value differ (random nonce).
        assert_ne!(sealed, s.seal(Purpose::ApiKey, "wag_secret"));
        // Values from before sealing read as they are.
        assert_eq!(s.open(Purpose::ApiKey, "plain").unwrap().expose(), "plain");
        assert_eq!(sealed.len(), sealed_len("wag_secret".len()));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(s.open(Purpose::ApiKey, &tampered).is_err());
    }

    #[test]
    fn an_older_key_still_opens_what_it_sealed() {
        let old = new_key();
        let new = new_key();
        let before = Sealer::from_keys(old, &[]);
        let sealed = before.seal(Purpose::WebhookSecret, "hook");
        let after = Sealer::from_keys(new, &[old]);
        assert!(!after.is_current(&sealed));
        assert_eq!(
            after
                .open(Purpose::WebhookSecret, &sealed)
                .unwrap()
                .expose(),
            "hook"
        );
    }

    #[test]
    fn keys_decode_from_base64_or_hex() {
        let k = new_key();
        assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        assert_eq!(decode_key(&hex::encode(k)).unwrap(), k);
        assert!(decode_key("too-short").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_created_once_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(KEY_FILE);
        let a = load_or_create(None, &[], &file).unwrap();
        let b = load_or_create(None, &[], &file).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
