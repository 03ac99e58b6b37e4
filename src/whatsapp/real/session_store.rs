//! The real engine's session store: the crate's own SQLite store (one file
//! per instance) behind a layer of ours that takes the per-message work off
//! it.
//!
//! A send through whatsapp-rust asks its store for four things: the
//! contact's privacy token (a read), the Signal session (written back before
//! or just after the bytes go out), and the message's payload for retry
//! receipts and its message secret (two more writes). In the crate's store
//! each is a transaction on the instance's own database, queued behind that
//! database's single permit and run on a blocking thread. Here the token is
//! answered from memory once read (every change to it passes through this
//! layer), and the sessions, sent payloads and message secrets of every
//! instance go to one database, [`SharedStore`] (`<data>/wa/shared.db`),
//! whose thread commits whatever has queued up in one transaction and
//! answers each caller only after that commit: a write is as durable when
//! the crate hears back as it was before, but a thousand sends a second cost
//! a few hundred commits, not three thousand. Identities, prekeys, app state
//! and the rest stay in the instance's file.
//!
//! Rows an older build wrote into an instance's own database are still
//! found: a miss here asks the crate's store, and a delete deletes in both.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::error::{Result, StoreError};
use wacore::store::traits::*;
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::wacore;

/// Privacy tokens kept in memory per instance; past this the map starts over
/// (a token is one read away).
const TOKEN_CACHE: usize = 4096;

/// Operations one commit of the shared store takes at most.
const BATCH: usize = 512;

/// One instance's store: the crate's, with the hot paths answered here.
pub struct SessionStore {
    inner: SqliteStore,
    instance: Arc<str>,
    log: SharedStore,
    /// Privacy tokens by contact JID as last read or written (`None`: the
    /// store has none).
    tokens: Mutex<HashMap<String, Option<TcTokenEntry>>>,
}

impl SessionStore {
    pub fn new(inner: SqliteStore, instance: &str, log: SharedStore) -> Self {
        Self {
            inner,
            instance: Arc::from(instance),
            log,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn cached_token(&self, jid: &str) -> Option<Option<TcTokenEntry>> {
        self.tokens.lock().ok()?.get(jid).cloned()
    }

    fn remember_token(&self, jid: &str, entry: Option<TcTokenEntry>) {
        if let Ok(mut tokens) = self.tokens.lock() {
            if tokens.len() >= TOKEN_CACHE && !tokens.contains_key(jid) {
                tokens.clear();
            }
            tokens.insert(jid.to_string(), entry);
        }
    }

    fn forget_token(&self, jid: Option<&str>) {
        if let Ok(mut tokens) = self.tokens.lock() {
            match jid {
                Some(jid) => {
                    tokens.remove(jid);
                }
                None => tokens.clear(),
            }
        }
    }
}

/// A message secret and its parent message's time.
type Secret = (Vec<u8>, i64);

/// Sends an operation's result once its batch has committed (or failed to).
type Answer = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// What the shared store's thread does.
enum Op {
    StoreSent {
        instance: Arc<str>,
        chat: String,
        id: String,
        payload: Vec<u8>,
        done: oneshot::Sender<Result<()>>,
    },
    TakeSent {
        instance: Arc<str>,
        chat: String,
        id: String,
        done: oneshot::Sender<Result<Option<Vec<u8>>>>,
    },
    ExpireSent {
        instance: Arc<str>,
        cutoff: i64,
        done: oneshot::Sender<Result<u32>>,
    },
    PutSecrets {
        instance: Arc<str>,
        entries: Vec<MsgSecretEntry>,
        done: oneshot::Sender<Result<usize>>,
    },
    GetSecret {
        instance: Arc<str>,
        chat: String,
        sender: String,
        id: String,
        done: oneshot::Sender<Result<Option<Secret>>>,
    },
    ExpireSecrets {
        instance: Arc<str>,
        cutoff: i64,
        done: oneshot::Sender<Result<u32>>,
    },
    GetSession {
        instance: Arc<str>,
        address: String,
        done: oneshot::Sender<Result<Option<Bytes>>>,
    },
    PutSessions {
        instance: Arc<str>,
        sessions: Vec<(Arc<str>, Bytes)>,
        done: oneshot::Sender<Result<()>>,
    },
    DeleteSession {
        instance: Arc<str>,
        address: String,
        done: oneshot::Sender<Result<()>>,
    },
    HasUserSession {
        instance: Arc<str>,
        user: String,
        done: oneshot::Sender<Result<bool>>,
    },
    Forget {
        instance: String,
        done: oneshot::Sender<Result<()>>,
    },
}

/// The sent messages (for retry receipts) and message secrets (for votes,
/// reactions and edits of our messages) of every instance, in one database
/// written by one thread that commits all queued operations together.
#[derive(Clone)]
pub struct SharedStore {
    ops: mpsc::Sender<Op>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sent_messages (
    instance TEXT NOT NULL, chat TEXT NOT NULL, id TEXT NOT NULL,
    payload BLOB NOT NULL, stored_at INTEGER NOT NULL,
    PRIMARY KEY (instance, chat, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signal_sessions (
    instance TEXT NOT NULL, address TEXT NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (instance, address)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS msg_secrets (
    instance TEXT NOT NULL, chat TEXT NOT NULL, sender TEXT NOT NULL, id TEXT NOT NULL,
    secret BLOB NOT NULL, expires_at INTEGER NOT NULL, message_ts INTEGER NOT NULL,
    PRIMARY KEY (instance, chat, sender, id)
) WITHOUT ROWID;
";

fn db_error(e: rusqlite::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn stopped() -> StoreError {
    StoreError::Connection("the shared store's thread has stopped".into())
}

impl SharedStore {
    /// Opens (creating, owner-only) the database at `path` on a thread of
    /// its own.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        crate::secrets::precreate_private_file(path)?;
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -2000;",
        )?;
        conn.execute_batch(SCHEMA)?;
        conn.set_prepared_statement_cache_capacity(16);
        let (ops, rx) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("wa-shared-store".to_owned())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    commit(&mut conn, batch);
                }
            })?;
        Ok(Self { ops })
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> Op) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(op(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Deletes everything kept for `instance` (its logout).
    pub async fn forget(&self, instance: &str) -> Result<()> {
        let instance = instance.to_string();
        self.call(|done| Op::Forget { instance, done }).await
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Runs a batch in one transaction; every answer goes out after the commit
/// (so a write is durable when its caller hears of it), and a failed commit
/// fails the whole batch.
fn commit(conn: &mut rusqlite::Connection, batch: Vec<Op>) {
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let e = db_error(e);
            for op in batch {
                fail(op, &e);
            }
            return;
        }
    };
    for op in batch {
        answers.push(run(&tx, op));
    }
    let failed = tx.commit().err().map(db_error);
    if let Some(e) = &failed {
        tracing::warn!(error = %e, "the shared store could not commit a batch");
    }
    for answer in answers {
        answer(failed.as_ref());
    }
}

fn copy_error(e: &StoreError) -> StoreError {
    StoreError::Database(e.to_string().into())
}

/// Sends `result` unless the commit failed.
fn answer<T: Send + 'static>(done: oneshot::Sender<Result<T>>, result: Result<T>) -> Answer {
    Box::new(move |failed| {
        let _ = done.send(match failed {
            Some(e) => Err(copy_error(e)),
            None => result,
        });
    })
}

fn fail(op: Op, e: &StoreError) {
    // `answer` sends the error, not the placeholder, when given one.
    let failed = Some(e);
    match op {
        Op::StoreSent { done, .. } => answer(done, Ok(()))(failed),
        Op::TakeSent { done, .. } => answer(done, Ok(None))(failed),
        Op::ExpireSent { done, .. } => answer(done, Ok(0))(failed),
        Op::PutSecrets { done, .. } => answer(done, Ok(0))(failed),
        Op::GetSecret { done, .. } => answer(done, Ok(None))(failed),
        Op::ExpireSecrets { done, .. } => answer(done, Ok(0))(failed),
        Op::GetSession { done, .. } => answer(done, Ok(None))(failed),
        Op::PutSessions { done, .. } => answer(done, Ok(()))(failed),
        Op::DeleteSession { done, .. } => answer(done, Ok(()))(failed),
        Op::HasUserSession { done, .. } => answer(done, Ok(false))(failed),
        Op::Forget { done, .. } => answer(done, Ok(()))(failed),
    }
}

fn run(tx: &rusqlite::Transaction<'_>, op: Op) -> Answer {
    use rusqlite::{OptionalExtension, params};
    match op {
        Op::StoreSent {
            instance,
            chat,
            id,
            payload,
            done,
        } => {
            let r = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO sent_messages (instance, chat, id, payload, stored_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| s.execute(params![&*instance, chat, id, payload, now()]))
                .map(drop)
                .map_err(db_error);
            answer(done, r)
        }
        Op::TakeSent {
            instance,
            chat,
            id,
            done,
        } => {
            let r = tx
                .prepare_cached(
                    "DELETE FROM sent_messages WHERE instance = ?1 AND chat = ?2 AND id = ?3 \
                     RETURNING payload",
                )
                .and_then(|mut s| {
                    s.query_row(params![&*instance, chat, id], |row| {
                        row.get::<_, Vec<u8>>(0)
                    })
                    .optional()
                })
                .map_err(db_error);
            answer(done, r)
        }
        Op::ExpireSent {
            instance,
            cutoff,
            done,
        } => {
            let r = tx
                .prepare_cached("DELETE FROM sent_messages WHERE instance = ?1 AND stored_at < ?2")
                .and_then(|mut s| s.execute(params![&*instance, cutoff]))
                .map(|n| n as u32)
                .map_err(db_error);
            answer(done, r)
        }
        Op::PutSecrets {
            instance,
            entries,
            done,
        } => {
            let r = tx
                .prepare_cached(
                    "INSERT INTO msg_secrets (instance, chat, sender, id, secret, expires_at, message_ts) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (instance, chat, sender, id) DO UPDATE SET \
                       secret = excluded.secret, \
                       expires_at = CASE WHEN expires_at = 0 OR excluded.expires_at = 0 THEN 0 \
                                    ELSE max(expires_at, excluded.expires_at) END, \
                       message_ts = max(message_ts, excluded.message_ts)",
                )
                .and_then(|mut s| {
                    for e in &entries {
                        s.execute(params![
                            &*instance,
                            &*e.chat,
                            &*e.sender,
                            &*e.msg_id,
                            &e.secret[..],
                            e.expires_at,
                            e.message_ts
                        ])?;
                    }
                    Ok(entries.len())
                })
                .map_err(db_error);
            answer(done, r)
        }
        Op::GetSecret {
            instance,
            chat,
            sender,
            id,
            done,
        } => {
            let r = tx
                .prepare_cached(
                    "SELECT secret, message_ts FROM msg_secrets \
                     WHERE instance = ?1 AND chat = ?2 AND sender = ?3 AND id = ?4",
                )
                .and_then(|mut s| {
                    s.query_row(params![&*instance, chat, sender, id], |row| {
                        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
                    })
                    .optional()
                })
                .map_err(db_error);
            answer(done, r)
        }
        Op::ExpireSecrets {
            instance,
            cutoff,
            done,
        } => {
            let r = tx
                .prepare_cached(
                    "DELETE FROM msg_secrets WHERE instance = ?1 AND expires_at != 0 AND expires_at <= ?2",
                )
                .and_then(|mut s| s.execute(params![&*instance, cutoff]))
                .map(|n| n as u32)
                .map_err(db_error);
            answer(done, r)
        }
        Op::GetSession {
            instance,
            address,
            done,
        } => {
            let r = tx
                .prepare_cached(
                    "SELECT record FROM signal_sessions WHERE instance = ?1 AND address = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![&*instance, address], |row| row.get::<_, Vec<u8>>(0))
                        .optional()
                })
                .map(|r| r.map(Bytes::from))
                .map_err(db_error);
            answer(done, r)
        }
        Op::PutSessions {
            instance,
            sessions,
            done,
        } => {
            let r = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO signal_sessions (instance, address, record) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| {
                    for (address, record) in &sessions {
                        s.execute(params![&*instance, &**address, &record[..]])?;
                    }
                    Ok(())
                })
                .map_err(db_error);
            answer(done, r)
        }
        Op::DeleteSession {
            instance,
            address,
            done,
        } => {
            let r = tx
                .prepare_cached("DELETE FROM signal_sessions WHERE instance = ?1 AND address = ?2")
                .and_then(|mut s| s.execute(params![&*instance, address]))
                .map(drop)
                .map_err(db_error);
            answer(done, r)
        }
        Op::HasUserSession {
            instance,
            user,
            done,
        } => {
            // Addresses are `user@server` (device 0) or `user:device@server`.
            let r = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM signal_sessions WHERE instance = ?1 \
                     AND (address LIKE ?2 OR address LIKE ?3))",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![&*instance, format!("{user}@%"), format!("{user}:%")],
                        |row| row.get::<_, bool>(0),
                    )
                })
                .map_err(db_error);
            answer(done, r)
        }
        Op::Forget { instance, done } => {
            let r = tx
                .execute(
                    "DELETE FROM signal_sessions WHERE instance = ?1",
                    [&instance],
                )
                .and_then(|_| {
                    tx.execute("DELETE FROM sent_messages WHERE instance = ?1", [&instance])
                })
                .and_then(|_| {
                    tx.execute("DELETE FROM msg_secrets WHERE instance = ?1", [&instance])
                })
                .map(drop)
                .map_err(db_error);
            answer(done, r)
        }
    }
}

// What is not answered above goes to the crate's store unchanged.

#[async_trait]
impl SignalStore for SessionStore {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.inner.put_identity(address, key).await
    }
    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        self.inner.put_identities_batch(identities).await
    }
    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        self.inner.load_identity(address).await
    }
    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.inner.delete_identity(address).await
    }
    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        let (instance, a) = (self.instance.clone(), address.to_string());
        match self
            .log
            .call(|done| Op::GetSession {
                instance,
                address: a,
                done,
            })
            .await?
        {
            Some(record) => Ok(Some(record)),
            None => self.inner.get_session(address).await,
        }
    }
    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put_sessions_batch(&[(Arc::from(address), Bytes::copy_from_slice(session))])
            .await
    }
    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let (instance, sessions) = (self.instance.clone(), sessions.to_vec());
        self.log
            .call(|done| Op::PutSessions {
                instance,
                sessions,
                done,
            })
            .await
    }
    async fn delete_session(&self, address: &str) -> Result<()> {
        let (instance, a) = (self.instance.clone(), address.to_string());
        self.log
            .call(|done| Op::DeleteSession {
                instance,
                address: a,
                done,
            })
            .await?;
        self.inner.delete_session(address).await
    }
    async fn has_session(&self, address: &str) -> Result<bool> {
        Ok(self.get_session(address).await?.is_some())
    }
    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        let (instance, u) = (self.instance.clone(), user.to_string());
        if self
            .log
            .call(|done| Op::HasUserSession {
                instance,
                user: u,
                done,
            })
            .await?
        {
            return Ok(true);
        }
        self.inner.has_signal_state_for_user(user).await
    }
    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.inner.store_prekey(id, record, uploaded).await
    }
    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        self.inner.store_prekeys_batch(keys, uploaded).await
    }
    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        self.inner.load_prekey(id).await
    }
    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        self.inner.load_prekeys_batch(ids).await
    }
    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        self.inner.mark_prekeys_uploaded(ids).await
    }
    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.inner.remove_prekey(id).await
    }
    async fn get_max_prekey_id(&self) -> Result<u32> {
        self.inner.get_max_prekey_id().await
    }
    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.inner.store_signed_prekey(id, record).await
    }
    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.inner.load_signed_prekey(id).await
    }
    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        self.inner.load_all_signed_prekeys().await
    }
    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.inner.remove_signed_prekey(id).await
    }
    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.inner.put_sender_key(address, record).await
    }
    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.inner.put_sender_keys_batch(sender_keys).await
    }
    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_sender_key(address).await
    }
    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.inner.delete_sender_key(address).await
    }
}

#[async_trait]
impl AppSyncStore for SessionStore {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.inner.get_sync_key(key_id).await
    }
    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.inner.set_sync_key(key_id, key).await
    }
    async fn get_version(&self, name: &str) -> Result<HashState> {
        self.inner.get_version(name).await
    }
    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.inner.set_version(name, state).await
    }
    async fn put_mutation_macs(
        &self,
        name: &str,
        version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        self.inner.put_mutation_macs(name, version, mutations).await
    }
    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get_mutation_mac(name, index_mac).await
    }
    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<std::collections::HashMap<[u8; 32], Vec<u8>>> {
        self.inner.get_mutation_macs(name, index_macs).await
    }
    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        self.inner.delete_mutation_macs(name, index_macs).await
    }
    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.inner.clear_mutation_macs(name).await
    }
    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        self.inner.get_latest_sync_key_id().await
    }
}

#[async_trait]
impl ProtocolStore for SessionStore {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        self.inner.get_sender_key_devices(group_jid).await
    }
    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        self.inner.set_sender_key_status(group_jid, entries).await
    }
    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.inner.clear_sender_key_devices(group_jid).await
    }
    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        self.inner.delete_sender_key_device_rows(device_jids).await
    }
    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.inner.clear_all_sender_key_devices().await
    }
    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.inner.get_lid_mapping(lid).await
    }
    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        self.inner.get_pn_mapping(phone).await
    }
    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.inner.put_lid_mapping(entry).await
    }
    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        self.inner.put_lid_mappings(entries).await
    }
    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        self.inner.get_all_lid_mappings().await
    }
    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.inner
            .save_base_key(address, message_id, base_key)
            .await
    }
    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        self.inner
            .has_same_base_key(address, message_id, current_base_key)
            .await
    }
    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.inner.delete_base_key(address, message_id).await
    }
    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.inner.update_device_list(record).await
    }
    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        self.inner.update_device_lists(records).await
    }
    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.inner.get_devices(user).await
    }
    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.inner.delete_devices(user).await
    }
    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_group_metadata(group_jid).await
    }
    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.inner.put_group_metadata(group_jid, blob).await
    }
    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.inner.delete_group_metadata(group_jid).await
    }
    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        if let Some(cached) = self.cached_token(jid) {
            return Ok(cached);
        }
        let entry = self.inner.get_tc_token(jid).await?;
        self.remember_token(jid, entry.clone());
        Ok(entry)
    }
    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.forget_token(Some(jid));
        self.inner.put_tc_token(jid, entry).await?;
        self.remember_token(jid, Some(entry.clone()));
        Ok(())
    }
    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.forget_token(Some(jid));
        self.inner.delete_tc_token(jid).await
    }
    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        self.inner.get_all_tc_token_jids().await
    }
    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        self.forget_token(None);
        let n = self
            .inner
            .delete_expired_tc_tokens(token_cutoff, sender_cutoff)
            .await;
        self.forget_token(None);
        n
    }
    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        self.forget_token(Some(jid));
        let r = self
            .inner
            .touch_tc_token_sender_timestamp(jid, sender_timestamp)
            .await;
        self.forget_token(Some(jid));
        r
    }
    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        self.forget_token(Some(jid));
        let r = self
            .inner
            .store_received_tc_token(jid, token, token_timestamp)
            .await;
        self.forget_token(Some(jid));
        r
    }
    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        let (instance, chat, id) = (
            self.instance.clone(),
            chat_jid.to_string(),
            message_id.to_string(),
        );
        let payload = payload.to_vec();
        self.log
            .call(|done| Op::StoreSent {
                instance,
                chat,
                id,
                payload,
                done,
            })
            .await
    }
    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let (instance, chat, id) = (
            self.instance.clone(),
            chat_jid.to_string(),
            message_id.to_string(),
        );
        match self
            .log
            .call(|done| Op::TakeSent {
                instance,
                chat,
                id,
                done,
            })
            .await?
        {
            Some(payload) => Ok(Some(payload)),
            None => self.inner.take_sent_message(chat_jid, message_id).await,
        }
    }
    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        let instance = self.instance.clone();
        let here = self
            .log
            .call(|done| Op::ExpireSent {
                instance,
                cutoff: cutoff_timestamp,
                done,
            })
            .await?;
        Ok(here
            + self
                .inner
                .delete_expired_sent_messages(cutoff_timestamp)
                .await?)
    }
    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.inner
            .store_pending_inbound(chat, sender, id, message)
            .await
    }
    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.inner.get_pending_inbound(chat, sender, id).await
    }
    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.inner.delete_pending_inbound(chat, sender, id).await
    }
    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.inner
            .delete_expired_pending_inbound(cutoff_timestamp)
            .await
    }
    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        self.inner.store_pending_inbound_batch(rows).await
    }
    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        self.inner.delete_pending_inbound_batch(keys).await
    }
}

#[async_trait]
impl DeviceStore for SessionStore {
    async fn save(&self, device: &wacore::store::Device) -> Result<()> {
        self.inner.save(device).await
    }
    async fn load(&self) -> Result<Option<wacore::store::Device>> {
        self.inner.load().await
    }
    async fn exists(&self) -> Result<bool> {
        self.inner.exists().await
    }
    async fn create(&self) -> Result<i32> {
        self.inner.create().await
    }
    async fn snapshot_db(&self, name: &str, extra_content: Option<&[u8]>) -> Result<()> {
        self.inner.snapshot_db(name, extra_content).await
    }
    async fn resource_report(&self) -> wacore::stats::StorageResourceReport {
        self.inner.resource_report().await
    }
}

#[async_trait]
impl MsgSecretStore for SessionStore {
    async fn put_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
        secret: &[u8; wacore::reporting_token::MESSAGE_SECRET_SIZE],
    ) -> Result<()> {
        self.put_msg_secrets(vec![MsgSecretEntry {
            chat: Arc::from(chat),
            sender: Arc::from(sender),
            msg_id: Arc::from(msg_id),
            secret: *secret,
            expires_at: 0,
            message_ts: 0,
        }])
        .await
        .map(drop)
    }
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let instance = self.instance.clone();
        self.log
            .call(|done| Op::PutSecrets {
                instance,
                entries,
                done,
            })
            .await
    }
    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }
    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        let (instance, c, s, id) = (
            self.instance.clone(),
            chat.to_string(),
            sender.to_string(),
            msg_id.to_string(),
        );
        match self
            .log
            .call(|done| Op::GetSecret {
                instance,
                chat: c,
                sender: s,
                id,
                done,
            })
            .await?
        {
            Some(found) => Ok(Some(found)),
            None => {
                self.inner
                    .get_msg_secret_with_ts(chat, sender, msg_id)
                    .await
            }
        }
    }
    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let instance = self.instance.clone();
        let here = self
            .log
            .call(|done| Op::ExpireSecrets {
                instance,
                cutoff: cutoff_timestamp,
                done,
            })
            .await?;
        Ok(here
            + self
                .inner
                .delete_expired_msg_secrets(cutoff_timestamp)
                .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &Path, instance: &str, log: &SharedStore) -> SessionStore {
        let path = dir.join(format!("{instance}.db"));
        let inner = SqliteStore::new(path.to_str().unwrap()).await.unwrap();
        SessionStore::new(inner, instance, log.clone())
    }

    #[tokio::test]
    async fn sessions_are_kept_per_instance_and_outlive_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedStore::open(&dir.path().join("shared.db")).unwrap();
        let a = store(dir.path(), "a", &log).await;
        let b = store(dir.path(), "b", &log).await;

        a.put_sessions_batch(&[
            (Arc::from("7911@s.whatsapp.net"), Bytes::from_static(b"one")),
            (
                Arc::from("7911:3@s.whatsapp.net"),
                Bytes::from_static(b"two"),
            ),
        ])
        .await
        .unwrap();
        a.put_session("7911@s.whatsapp.net", b"one, ratcheted")
            .await
            .unwrap();

        assert_eq!(
            a.get_session("7911@s.whatsapp.net")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"one, ratcheted"[..]),
            "the last write wins"
        );
        assert!(a.has_session("7911:3@s.whatsapp.net").await.unwrap());
        assert!(a.has_signal_state_for_user("7911").await.unwrap());
        assert!(
            !a.has_signal_state_for_user("791").await.unwrap(),
            "a prefix is not the user"
        );
        assert_eq!(
            b.get_session("7911@s.whatsapp.net").await.unwrap(),
            None,
            "another instance's"
        );
        assert!(!b.has_signal_state_for_user("7911").await.unwrap());

        a.delete_session("7911:3@s.whatsapp.net").await.unwrap();
        assert!(!a.has_session("7911:3@s.whatsapp.net").await.unwrap());

        // A new process over the same files finds what was committed.
        drop((a, log));
        let log = SharedStore::open(&dir.path().join("shared.db")).unwrap();
        let a = store(dir.path(), "a", &log).await;
        assert_eq!(
            a.get_session("7911@s.whatsapp.net")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"one, ratcheted"[..])
        );
    }

    #[tokio::test]
    async fn what_an_older_build_wrote_into_the_instance_store_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedStore::open(&dir.path().join("shared.db")).unwrap();
        let path = dir.path().join("a.db");
        let inner = SqliteStore::new(path.to_str().unwrap()).await.unwrap();
        inner
            .put_session("7911@s.whatsapp.net", b"old")
            .await
            .unwrap();
        inner
            .store_sent_message("7911@s.whatsapp.net", "M1", b"payload")
            .await
            .unwrap();
        inner
            .put_msg_secret("c", "s", "M1", &[7; 32])
            .await
            .unwrap();
        let a = SessionStore::new(inner, "a", log.clone());

        assert_eq!(
            a.get_session("7911@s.whatsapp.net")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"old"[..])
        );
        assert_eq!(
            a.get_msg_secret("c", "s", "M1").await.unwrap(),
            Some(vec![7; 32])
        );
        assert_eq!(
            a.take_sent_message("7911@s.whatsapp.net", "M1")
                .await
                .unwrap(),
            Some(b"payload".to_vec())
        );
        assert_eq!(
            a.take_sent_message("7911@s.whatsapp.net", "M1")
                .await
                .unwrap(),
            None,
            "taken once"
        );

        // A newer record shadows the old one; deleting removes both.
        a.put_session("7911@s.whatsapp.net", b"new").await.unwrap();
        assert_eq!(
            a.get_session("7911@s.whatsapp.net")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"new"[..])
        );
        a.delete_session("7911@s.whatsapp.net").await.unwrap();
        assert_eq!(a.get_session("7911@s.whatsapp.net").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_sent_message_is_taken_once_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedStore::open(&dir.path().join("shared.db")).unwrap();
        let a = store(dir.path(), "a", &log).await;
        a.store_sent_message("chat", "M1", b"first").await.unwrap();
        a.store_sent_message("chat", "M2", b"second").await.unwrap();

        assert_eq!(
            a.take_sent_message("chat", "M1").await.unwrap(),
            Some(b"first".to_vec())
        );
        assert_eq!(a.take_sent_message("chat", "M1").await.unwrap(), None);
        assert_eq!(
            a.delete_expired_sent_messages(now() - 60).await.unwrap(),
            0,
            "M2 is fresh"
        );
        assert_eq!(a.delete_expired_sent_messages(now() + 1).await.unwrap(), 1);
        assert_eq!(a.take_sent_message("chat", "M2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn message_secrets_merge_deadlines_and_never_lose_a_known_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedStore::open(&dir.path().join("shared.db")).unwrap();
        let a = store(dir.path(), "a", &log).await;
        let entry = |secret: u8, expires_at: i64, message_ts: i64| MsgSecretEntry {
            chat: Arc::from("c"),
            sender: Arc::from("s"),
            msg_id: Arc::from("M1"),
            secret: [secret; 32],
            expires_at,
            message_ts,
        };
        a.put_msg_secrets(vec![entry(1, 100, 50)]).await.unwrap();
        a.put_msg_secrets(vec![entry(2, 90, 0)]).await.unwrap();
        assert_eq!(
            a.get_msg_secret_with_ts("c", "s", "M1").await.unwrap(),
            Some((vec![2; 32], 50)),
            "the newer secret, the known time"
        );
        assert_eq!(
            a.delete_expired_msg_secrets(99).await.unwrap(),
            0,
            "the later deadline (100) kept"
        );
        assert_eq!(a.delete_expired_msg_secrets(100).await.unwrap(), 1);

        a.put_msg_secret("c", "s", "M2", &[3; 32]).await.unwrap();
        assert_eq!(
            a.delete_expired_msg_secrets(i64::MAX).await.unwrap(),
            0,
            "0 means never"
        );
        assert_eq!(
            a.get_msg_secret("c", "s", "M2").await.unwrap(),
            Some(vec![3; 32])
        );
    }

    #[tokio::test]
    async fn many_writers_at_once_are_all_committed_and_forget_clears_one_instance() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedStore::open(&dir.path().join("shared.db")).unwrap();
        let a = Arc::new(store(dir.path(), "a", &log).await);
        let b = store(dir.path(), "b", &log).await;
        b.store_sent_message("chat", "B1", b"b's").await.unwrap();
        let writes: Vec<_> = (0..200)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move {
                    a.store_sent_message("chat", &format!("M{i}"), b"x")
                        .await
                        .unwrap();
                    a.put_session(&format!("{i}@s.whatsapp.net"), b"s")
                        .await
                        .unwrap();
                })
            })
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        for i in 0..200 {
            assert!(a.has_session(&format!("{i}@s.whatsapp.net")).await.unwrap());
        }
        log.forget("a").await.unwrap();
        assert_eq!(a.take_sent_message("chat", "M7").await.unwrap(), None);
        assert!(!a.has_session("7@s.whatsapp.net").await.unwrap());
        assert_eq!(
            b.take_sent_message("chat", "B1").await.unwrap(),
            Some(b"b's".to_vec())
        );
    }

    #[tokio::test]
    async fn a_privacy_token_is_read_once_and_follows_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedStore::open(&dir.path().join("shared.db")).unwrap();
        let a = store(dir.path(), "a", &log).await;
        assert!(a.get_tc_token("c@s.whatsapp.net").await.unwrap().is_none());
        a.store_received_tc_token("c@s.whatsapp.net", b"tok", 10)
            .await
            .unwrap();
        let t = a.get_tc_token("c@s.whatsapp.net").await.unwrap().unwrap();
        assert_eq!((t.token.as_slice(), t.token_timestamp), (&b"tok"[..], 10));
        a.touch_tc_token_sender_timestamp("c@s.whatsapp.net", 20)
            .await
            .unwrap();
        let t = a.get_tc_token("c@s.whatsapp.net").await.unwrap().unwrap();
        assert_eq!(t.sender_timestamp, Some(20));
        a.delete_tc_token("c@s.whatsapp.net").await.unwrap();
        assert!(a.get_tc_token("c@s.whatsapp.net").await.unwrap().is_none());
        a.put_tc_token("c@s.whatsapp.net", &t).await.unwrap();
        assert_eq!(
            a.delete_expired_tc_tokens(i64::MAX, i64::MAX)
                .await
                .unwrap(),
            1
        );
        assert!(
            a.get_tc_token("c@s.whatsapp.net").await.unwrap().is_none(),
            "not answered from memory"
        );
    }
}
