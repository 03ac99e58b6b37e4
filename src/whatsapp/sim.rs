//! The simulated WhatsApp network (`WA_ENGINE=sim`): in-process and
//! deterministic. It stands in for WhatsApp's servers in tests, demos and
//! load runs: QR codes shaped like WhatsApp's that rotate, a scan action,
//! server acks and delivered/read receipts, messages between instances of the
//! same server, contacts and a group per paired account. Pairings persist in
//! `<data>/sim/<instanceId>.json`, so paired instances come back connected.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::events::{Contact, ReasonCode};
use crate::ids::{InstanceId, MessageId};

use super::Jid;
use super::engine::{
    Engine, EngineEvent, EngineSession, EventSink, FetchMediaError, IncomingMedia, IncomingMessage,
    KeptMedia, OutgoingContent, OutgoingMedia, Receipt,
};
use super::groups::{
    GroupError, GroupInfo, InviteLink, NumberCheck, ParticipantAction, ParticipantResult,
};
use super::sim_groups::{ADDRESS_BOOK_PREFIX, Fanout, SimGroups};
use crate::events::MediaKind;
use crate::kinds::{ChatState, Happening, MessageExtras};

/// A message injected through the sim control API.
#[derive(Debug, Clone)]
pub struct SimInbound {
    pub from: Jid,
    pub body: String,
    /// WhatsApp's type name (`conversation`, `location`, `contact`, `poll`, `ptt`, `sticker`, ...).
    pub message_type: String,
    pub push_name: Option<String>,
    pub media: Option<IncomingMedia>,
    pub extras: MessageExtras,
}

/// A WhatsApp-like id for a message the sim makes up.
fn sim_message_id() -> String {
    format!(
        "SIM{}",
        &hex::encode_upper(uuid::Uuid::new_v4().as_bytes())[..20]
    )
}

/// Settings of the simulated network.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where pairings are kept.
    pub dir: PathBuf,
    /// Pair every new instance right after its first QR.
    pub auto_pair: bool,
    /// Delay before the delivered receipt, and again before the read receipt.
    pub receipt_delay: Duration,
    /// How long a QR code lives before the next one.
    pub qr_interval: Duration,
}

/// Why a sim control action was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("instance {0} has no running session")]
    NoSession(String),
    #[error("instance {0} is not waiting for a QR scan")]
    NotWaitingForQr(String),
    #[error("instance {0} is not connected")]
    NotConnected(String),
    #[error("phone {0} is already paired with another instance")]
    PhoneTaken(String),
    #[error("instance {0} is not waiting for a pairing code")]
    NoPairCode(String),
    #[error("that is not the pairing code instance {0} shows")]
    WrongCode(String),
    #[error("failed to store the pairing: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Serialize, Deserialize)]
struct Pairing {
    phone: String,
}

/// Message ids remembered by the network (the last ones, for dedupe).
const SEEN_IDS: usize = 100_000;

/// The ids of the messages the network has taken, kept in
/// `<dir>/accepted.ids` (one line each) so that they outlive a crash of the
/// gateway, as WhatsApp's servers would: a message sent again under an id
/// the network already took is acknowledged but not delivered twice.
#[derive(Default)]
struct Seen {
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
    file: Option<std::fs::File>,
}

impl Seen {
    /// Loads the journal in `dir` (keeping its last [`SEEN_IDS`] lines).
    fn load(dir: &std::path::Path) -> Self {
        let path = dir.join("accepted.ids");
        let mut seen = Seen::default();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            for id in &lines[lines.len().saturating_sub(SEEN_IDS)..] {
                seen.remember(id.to_string());
            }
            if lines.len() > SEEN_IDS {
                let kept: Vec<&str> = seen.order.iter().map(String::as_str).collect();
                let _ = std::fs::write(&path, kept.join("\n") + "\n");
            }
        }
        seen
    }

    fn remember(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > SEEN_IDS
                && let Some(old) = self.order.pop_front()
            {
                self.ids.remove(&old);
            }
        }
    }

    /// Takes an id: `false` when the network already took it (a resend).
    fn accept(&mut self, dir: &std::path::Path, id: &str) -> bool {
        use std::io::Write;
        if self.ids.contains(id) {
            return false;
        }
        if self.file.is_none() {
            let _ = std::fs::create_dir_all(dir);
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("accepted.ids"))
                .ok();
        }
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.write_all(format!("{id}\n").as_bytes())
        {
            tracing::warn!(error = %e, "sim: failed to journal a message id");
        }
        self.remember(id.to_string());
        true
    }
}

struct Net {
    config: SimConfig,
    /// Message ids already taken.
    seen: Mutex<Seen>,
    sessions: Mutex<HashMap<String, Arc<SimSession>>>,
    /// Paired phone → instance id, for every live paired session.
    phones: Mutex<HashMap<String, String>>,
    /// The network's groups (locked before `phones` and `sessions`, never after).
    groups: Mutex<SimGroups>,
    /// Phones whose device is off: the server acks messages to them, but no
    /// delivered or read receipt ever comes (stuck messages).
    unreachable: Mutex<std::collections::HashSet<String>>,
}

/// The simulated network; cheap to clone.
#[derive(Clone)]
pub struct SimEngine {
    net: Arc<Net>,
}

struct SimSession {
    instance_id: String,
    net: Weak<Net>,
    events: EventSink,
    phone: Mutex<Option<String>>,
    /// The pairing code shown and the phone it is for (pairing by phone number).
    pair_code: Mutex<Option<(String, String)>>,
    /// Ends the QR rotation.
    qr_stop: CancellationToken,
    /// Ends everything of this session.
    stop: CancellationToken,
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().into()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The QR string of `instance_id`'s `seq`-th code: `ref,noiseKey,identityKey,advSecret`
/// like WhatsApp's, derived deterministically.
pub fn qr_code(instance_id: &str, seq: u32) -> String {
    let seq = seq.to_string();
    let reference = digest(&[instance_id, &seq, "ref"]);
    let noise = digest(&[instance_id, "noise"]);
    let identity = digest(&[instance_id, "identity"]);
    let adv = digest(&[instance_id, "adv"]);
    format!(
        "2@{},{},{},{}",
        b64(&reference[..24]),
        b64(&noise),
        b64(&identity),
        b64(&adv)
    )
}

/// The phone a scan without a number pairs: `7900` and 7 digits derived from the instance id.
pub fn default_phone(instance_id: &str) -> String {
    candidate_phone(instance_id, 0)
}

/// The `attempt`-th phone derived from the instance id (0 is [`default_phone`]);
/// the next ones are tried when another instance already has it.
fn candidate_phone(instance_id: &str, attempt: u32) -> String {
    let d = match attempt {
        0 => digest(&[instance_id, "phone"]),
        n => digest(&[instance_id, "phone", &n.to_string()]),
    };
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) % 10_000_000;
    format!("7900{n:07}")
}

/// Attempts at a free derived phone before a scan without a number gives up.
const PHONE_ATTEMPTS: u32 = 16;

const CONTACT_NAMES: [&str; 3] = ["Ivan Ivanov", "Maria Petrova", "Li Wei"];

fn own_contacts(phone: &str) -> Vec<Contact> {
    let d = digest(&[phone, "contacts"]);
    let mut out: Vec<Contact> = CONTACT_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let n =
                u32::from_be_bytes(d[i * 4..i * 4 + 4].try_into().expect("4 bytes")) % 10_000_000;
            let number = format!("7911{n:07}");
            Contact {
                id: Jid::from_phone(&number),
                name: name.to_string(),
                number,
                is_group: false,
            }
        })
        .collect();
    let group = format!("{}-1600000000", &phone[phone.len().saturating_sub(10)..]);
    out.push(Contact {
        id: Jid::from_raw(format!("{group}@g.us")),
        name: "Sim Team".into(),
        number: group,
        is_group: true,
    });
    out
}

impl SimEngine {
    /// A network with no sessions.
    pub fn new(config: SimConfig) -> Self {
        Self {
            net: Arc::new(Net {
                seen: Mutex::new(Seen::load(&config.dir)),
                groups: Mutex::new(SimGroups::load(&config.dir)),
                config,
                sessions: Mutex::new(HashMap::new()),
                phones: Mutex::new(HashMap::new()),
                unreachable: Mutex::new(std::collections::HashSet::new()),
            }),
        }
    }

    /// Turns a recipient's device off (`true`) or on: messages to an
    /// unreachable phone are acknowledged by the server (`sent`) but never
    /// delivered, so no receipt comes.
    pub fn set_unreachable(&self, phone: &str, unreachable: bool) {
        let mut set = self.net.unreachable.lock().expect("sim lock");
        if unreachable {
            set.insert(phone.to_string());
        } else {
            set.remove(phone);
        }
    }

    fn session(&self, instance_id: &str) -> Result<Arc<SimSession>, SimError> {
        self.net
            .sessions
            .lock()
            .expect("sim lock")
            .get(instance_id)
            .cloned()
            .ok_or_else(|| SimError::NoSession(instance_id.into()))
    }

    /// Pairs an instance as if a phone scanned its QR; returns the phone.
    pub fn scan(&self, instance_id: &str, phone: Option<&str>) -> Result<String, SimError> {
        let session = self.session(instance_id)?;
        if session.phone.lock().expect("sim lock").is_some() || session.qr_stop.is_cancelled() {
            return Err(SimError::NotWaitingForQr(instance_id.into()));
        }
        if let Some(phone) = phone {
            session.pair(&self.net, phone.to_owned())?;
            return Ok(phone.to_owned());
        }
        // Derived numbers can collide (7 digits); take the first free one.
        let mut attempt = 0;
        loop {
            let phone = candidate_phone(instance_id, attempt);
            match session.pair(&self.net, phone.clone()) {
                Ok(()) => return Ok(phone),
                Err(SimError::PhoneTaken(_)) if attempt + 1 < PHONE_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The phone types the pairing code the instance shows: pairs it with the
    /// number the code was asked for; returns that number.
    pub fn enter_code(&self, instance_id: &str, code: &str) -> Result<String, SimError> {
        let session = self.session(instance_id)?;
        let (shown, phone) = session
            .pair_code
            .lock()
            .expect("sim lock")
            .clone()
            .ok_or_else(|| SimError::NoPairCode(instance_id.into()))?;
        let typed: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        if typed != shown.replace('-', "") {
            return Err(SimError::WrongCode(instance_id.into()));
        }
        if session.phone.lock().expect("sim lock").is_some() || session.qr_stop.is_cancelled() {
            return Err(SimError::NotWaitingForQr(instance_id.into()));
        }
        session.pair(&self.net, phone.clone())?;
        *session.pair_code.lock().expect("sim lock") = None;
        Ok(phone)
    }

    /// Delivers a message from `from` to the instance.
    pub fn inbound(
        &self,
        instance_id: &str,
        from: &Jid,
        body: &str,
        push_name: Option<String>,
    ) -> Result<String, SimError> {
        self.inbound_message(
            instance_id,
            SimInbound {
                from: from.clone(),
                body: body.to_string(),
                message_type: "conversation".into(),
                push_name,
                media: None,
                extras: MessageExtras::default(),
            },
        )
    }

    /// Delivers a message of any kind to the instance; returns its id.
    pub fn inbound_message(&self, instance_id: &str, m: SimInbound) -> Result<String, SimError> {
        let session = self.connected_session(instance_id)?;
        let message_id = sim_message_id();
        let msg = IncomingMessage {
            message_id: MessageId::from_stored(message_id.clone()),
            from: m.from.clone(),
            from_lid: None,
            chat: m.from,
            body: m.body,
            message_type: m.message_type,
            timestamp: chrono::Utc::now().timestamp(),
            push_name: m.push_name,
            media: m.media,
            extras: m.extras,
        };
        let events = session.events.clone();
        tokio::spawn(async move {
            let _ = events.send(EngineEvent::Message(Box::new(msg))).await;
        });
        Ok(message_id)
    }

    /// Reports a reaction, edit, revoke, poll vote or typing presence to the instance.
    pub fn happen(&self, instance_id: &str, h: Happening) -> Result<(), SimError> {
        let session = self.connected_session(instance_id)?;
        let events = session.events.clone();
        tokio::spawn(async move {
            let _ = events.send(EngineEvent::Happened(Box::new(h))).await;
        });
        Ok(())
    }

    /// The session of a paired instance.
    fn connected_session(&self, instance_id: &str) -> Result<Arc<SimSession>, SimError> {
        let session = self.session(instance_id)?;
        if session.phone.lock().expect("sim lock").is_none() {
            return Err(SimError::NotConnected(instance_id.into()));
        }
        Ok(session)
    }

    /// Drops the instance's connection as a network failure would.
    pub fn drop_connection(&self, instance_id: &str) -> Result<(), SimError> {
        let session = self.session(instance_id)?;
        session.close(&self.net);
        let events = session.events.clone();
        tokio::spawn(async move {
            let _ = events
                .send(EngineEvent::Closed {
                    reason: ReasonCode::ConnectionLost.into(),
                    terminal: false,
                })
                .await;
        });
        Ok(())
    }

    fn store_path(&self, instance_id: &str) -> PathBuf {
        self.net.config.dir.join(format!("{instance_id}.json"))
    }
}

impl Net {
    /// The live session paired with `phone`, if any.
    fn session_of(&self, phone: &str) -> Option<Arc<SimSession>> {
        let owner = self.phones.lock().expect("sim lock").get(phone).cloned()?;
        self.sessions.lock().expect("sim lock").get(&owner).cloned()
    }

    /// Whether `phone` has a WhatsApp account on this network: an instance
    /// is paired with it, or it is one of the sim's address-book numbers.
    fn on_whatsapp(&self, phone: &str) -> bool {
        phone.starts_with(ADDRESS_BOOK_PREFIX)
            || self.phones.lock().expect("sim lock").contains_key(phone)
    }

    /// The phones paired with live sessions (a snapshot, taken before the groups lock).
    fn paired_phones(&self) -> std::collections::HashSet<String> {
        self.phones
            .lock()
            .expect("sim lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Delivers group notices to the live sessions of the phones they name,
    /// in order (a full queue falls back to a task).
    fn tell(&self, fanouts: Vec<Fanout>) {
        for f in fanouts {
            for phone in &f.to {
                let Some(s) = self.session_of(phone) else {
                    continue;
                };
                let event = EngineEvent::Group(f.notice.clone());
                if let Err(tokio::sync::mpsc::error::TrySendError::Full(event)) =
                    s.events.try_send(event)
                {
                    let events = s.events.clone();
                    tokio::spawn(async move {
                        let _ = events.send(event).await;
                    });
                }
            }
        }
    }
}

/// A random code of `len` letters and digits (group ids, invite codes).
fn random_code(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

/// Letters and digits, as in WhatsApp's invite codes.
const INVITE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl SimSession {
    fn pair(&self, net: &Net, phone: String) -> Result<(), SimError> {
        {
            let mut phones = net.phones.lock().expect("sim lock");
            if phones
                .get(&phone)
                .is_some_and(|owner| owner != &self.instance_id)
            {
                return Err(SimError::PhoneTaken(phone));
            }
            crate::secrets::private_dir(&net.config.dir).map_err(std::io::Error::other)?;
            let path = net.config.dir.join(format!("{}.json", self.instance_id));
            crate::secrets::precreate_private_file(&path).map_err(std::io::Error::other)?;
            std::fs::write(
                &path,
                serde_json::to_vec(&Pairing {
                    phone: phone.clone(),
                })
                .expect("json"),
            )?;
            phones.insert(phone.clone(), self.instance_id.clone());
        }
        *self.phone.lock().expect("sim lock") = Some(phone.clone());
        self.qr_stop.cancel();
        let events = self.events.clone();
        tokio::spawn(async move {
            let _ = events
                .send(EngineEvent::Connected {
                    phone: Some(phone.clone()),
                })
                .await;
            let _ = events
                .send(EngineEvent::Contacts(own_contacts(&phone)))
                .await;
        });
        Ok(())
    }

    /// Ends the session's presence on the network.
    fn close(&self, net: &Net) {
        self.stop.cancel();
        self.qr_stop.cancel();
        if let Some(phone) = self.phone.lock().expect("sim lock").as_ref() {
            let mut phones = net.phones.lock().expect("sim lock");
            if phones.get(phone) == Some(&self.instance_id) {
                phones.remove(phone);
            }
        }
        let mut sessions = net.sessions.lock().expect("sim lock");
        if sessions
            .get(&self.instance_id)
            .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), self))
        {
            sessions.remove(&self.instance_id);
        }
    }

    /// The network, while it exists.
    fn network(&self) -> anyhow::Result<Arc<Net>> {
        self.net
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("network gone"))
    }

    /// Runs a change of the group table as this account, with the paired
    /// phones' snapshot as who is on WhatsApp.
    fn with_groups<T>(
        &self,
        change: impl FnOnce(
            &mut SimGroups,
            &str,
            &dyn Fn(&str) -> bool,
        ) -> Result<(T, Vec<Fanout>), GroupError>,
    ) -> Result<T, GroupError> {
        let me = self.my_phone()?;
        let net = self.network()?;
        let paired = net.paired_phones();
        let on_whatsapp = |p: &str| p.starts_with(ADDRESS_BOOK_PREFIX) || paired.contains(p);
        let (answer, fanouts) = {
            let mut groups = net.groups.lock().expect("sim lock");
            change(&mut groups, &me, &on_whatsapp)?
        };
        net.tell(fanouts);
        Ok(answer)
    }

    /// The live session of the instance paired with `to`, when `to` is on this network.
    fn local_peer(&self, to: &Jid) -> Option<Arc<SimSession>> {
        let net = self.net.upgrade()?;
        if to.is_group() {
            return None;
        }
        let owner = net
            .phones
            .lock()
            .expect("sim lock")
            .get(to.user())
            .cloned()?;
        net.sessions.lock().expect("sim lock").get(&owner).cloned()
    }

    /// Hands a happening (seen from the recipient's side) to `to` when it is on this network.
    fn relay(&self, to: &Jid, make: impl FnOnce(Jid) -> Happening) -> anyhow::Result<()> {
        let me = Jid::from_phone(&self.my_phone()?);
        if let Some(peer) = self.local_peer(to) {
            let h = make(me);
            tokio::spawn(async move {
                let _ = peer.events.send(EngineEvent::Happened(Box::new(h))).await;
            });
        }
        Ok(())
    }

    /// Keeps sent media's bytes on the network (so both sides can fetch them
    /// again) and describes them for the recipient.
    async fn keep(
        &self,
        kind: MediaKind,
        mimetype: &str,
        file_name: Option<String>,
        data: &[u8],
    ) -> anyhow::Result<(IncomingMedia, KeptMedia)> {
        let net = self.network()?;
        let locator = keep_bytes(&net.config.dir, data).await?;
        let incoming = IncomingMedia {
            kind,
            mimetype: mimetype.to_string(),
            file_name: file_name.clone(),
            size: data.len() as u64,
        };
        let kept = KeptMedia {
            kind,
            mimetype: mimetype.to_string(),
            file_name,
            size: data.len() as u64,
            locator,
        };
        Ok((incoming, kept))
    }

    fn my_phone(&self) -> anyhow::Result<String> {
        self.phone
            .lock()
            .expect("sim lock")
            .clone()
            .ok_or_else(|| anyhow::anyhow!("not paired"))
    }

    /// Ack, delivery to a local instance when `to` is one, then delivered and
    /// read receipts. `media`: what the recipient is told of it, and its
    /// handle (kept for both sides).
    fn deliver(
        &self,
        message_id: &str,
        to: &Jid,
        body: &str,
        message_type: &str,
        media: Option<(IncomingMedia, KeptMedia)>,
        extras: MessageExtras,
    ) -> anyhow::Result<()> {
        let (media, kept) = media.unzip();
        let my_phone = self.my_phone()?;
        let net = self
            .net
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("network gone"))?;
        let delay = net.config.receipt_delay;
        let first_time = net
            .seen
            .lock()
            .expect("sim lock")
            .accept(&net.config.dir, message_id);
        if !first_time {
            tracing::warn!(instance = %self.instance_id, message = %message_id,
                "sim: the network already took this message id; acknowledged, not delivered again");
        }
        // A group the network has goes to its other members' instances; a
        // person to theirs; anything else (a group the network does not
        // know) is acknowledged and goes nowhere.
        let members = if to.is_group() {
            let members = net.groups.lock().expect("sim lock").members(to);
            if members.as_ref().is_some_and(|m| !m.contains(&my_phone)) {
                anyhow::bail!("not a participant of the group {to}");
            }
            members.unwrap_or_default()
        } else {
            vec![to.user().to_string()]
        };
        let recipients: Vec<Arc<SimSession>> = if first_time {
            members
                .iter()
                .filter(|p| **p != my_phone)
                .filter_map(|p| net.session_of(p))
                .collect()
        } else {
            Vec::new()
        };
        let incoming = IncomingMessage {
            message_id: MessageId::from_stored(message_id),
            from: Jid::from_phone(&my_phone),
            from_lid: None,
            chat: if to.is_group() {
                to.clone()
            } else {
                Jid::from_phone(&my_phone)
            },
            body: body.to_string(),
            message_type: message_type.to_string(),
            timestamp: chrono::Utc::now().timestamp(),
            push_name: Some(format!("+{my_phone}")),
            media,
            extras,
        };
        let events = self.events.clone();
        let stop = self.stop.clone();
        let (id, chat) = (MessageId::from_stored(message_id), to.clone());
        let unreachable = net
            .unreachable
            .lock()
            .expect("sim lock")
            .contains(to.user());
        tokio::spawn(async move {
            let receipt = |r: Receipt| EngineEvent::Receipt {
                message_ids: vec![id.clone()],
                receipt: r,
                chat: chat.clone(),
            };
            let kept_event = |m: &KeptMedia| EngineEvent::MediaKept {
                message_id: id.clone(),
                media: m.clone(),
            };
            if let Some(m) = &kept {
                let _ = events.send(kept_event(m)).await;
            }
            let _ = events.send(receipt(Receipt::Sent)).await;
            if unreachable {
                return;
            }
            for r in &recipients {
                if let Some(m) = &kept {
                    let _ = r.events.send(kept_event(m)).await;
                }
                let _ = r
                    .events
                    .send(EngineEvent::Message(Box::new(incoming.clone())))
                    .await;
            }
            for r in [Receipt::Delivered, Receipt::Read] {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                if events.send(receipt(r)).await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// Where the sim keeps media bytes: `<dir>/media/<sha256 hex>`.
fn media_path(dir: &std::path::Path, locator: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        locator.len() == 64 && locator.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a sim media handle"
    );
    Ok(dir.join("media").join(locator))
}

/// Keeps media bytes (once per content) as the network's CDN would; returns the handle.
async fn keep_bytes(dir: &std::path::Path, data: &[u8]) -> anyhow::Result<String> {
    let locator = hex::encode(Sha256::digest(data));
    let path = media_path(dir, &locator)?;
    if tokio::fs::metadata(&path).await.is_err() {
        let media_dir = dir.join("media");
        crate::secrets::private_dir(&media_dir)?;
        let tmp = media_dir.join(format!("{locator}.{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, data).await?;
        tokio::fs::rename(&tmp, &path).await?;
    }
    Ok(locator)
}

/// A pairing code shaped like WhatsApp's: 8 characters of Crockford's
/// alphabet, shown as `ABCD-EFGH`.
fn random_pair_code() -> String {
    const ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";
    let code: String = (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}-{}", &code[..4], &code[4..])
}

#[async_trait]
impl Engine for SimEngine {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn start(
        &self,
        instance_id: &InstanceId,
        events: EventSink,
    ) -> anyhow::Result<Arc<dyn EngineSession>> {
        let instance_id = instance_id.as_str();
        let paired: Option<Pairing> = match tokio::fs::read(self.store_path(instance_id)).await {
            Ok(bytes) => Some(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let session = Arc::new(SimSession {
            instance_id: instance_id.to_string(),
            net: Arc::downgrade(&self.net),
            events: events.clone(),
            phone: Mutex::new(None),
            pair_code: Mutex::new(None),
            qr_stop: CancellationToken::new(),
            stop: CancellationToken::new(),
        });
        if let Some(old) = self
            .net
            .sessions
            .lock()
            .expect("sim lock")
            .insert(instance_id.to_string(), session.clone())
        {
            old.stop.cancel();
            old.qr_stop.cancel();
        }
        match paired {
            Some(p) => session.pair(&self.net, p.phone)?,
            None => {
                let (s, engine, auto_pair, interval) = (
                    session.clone(),
                    self.clone(),
                    self.net.config.auto_pair,
                    self.net.config.qr_interval,
                );
                tokio::spawn(async move {
                    let mut seq = 0u32;
                    loop {
                        seq += 1;
                        if events
                            .send(EngineEvent::Qr {
                                code: qr_code(&s.instance_id, seq),
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                        if auto_pair
                            && seq == 1
                            && let Err(e) = engine.scan(&s.instance_id, None)
                        {
                            tracing::warn!(instance = %s.instance_id, error = %e, "sim auto-pair failed");
                        }
                        tokio::select! {
                            _ = s.qr_stop.cancelled() => return,
                            _ = tokio::time::sleep(interval) => {}
                        }
                    }
                });
            }
        }
        Ok(session)
    }

    async fn remove_store(&self, instance_id: &InstanceId) -> anyhow::Result<()> {
        let instance_id = instance_id.as_str();
        match tokio::fs::remove_file(self.store_path(instance_id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl EngineSession for SimSession {
    async fn stop(&self) {
        if let Some(net) = self.net.upgrade() {
            self.close(&net);
        }
    }

    async fn logout(&self) -> anyhow::Result<()> {
        if let Some(net) = self.net.upgrade() {
            self.close(&net);
            let _ = std::fs::remove_file(net.config.dir.join(format!("{}.json", self.instance_id)));
        }
        *self.phone.lock().expect("sim lock") = None;
        Ok(())
    }

    async fn send_text(&self, message_id: &MessageId, to: &Jid, text: &str) -> anyhow::Result<()> {
        self.deliver(
            message_id.as_str(),
            to,
            text,
            "conversation",
            None,
            MessageExtras::default(),
        )
    }

    async fn send_media(
        &self,
        message_id: &MessageId,
        to: &Jid,
        media: &OutgoingMedia,
    ) -> anyhow::Result<()> {
        let (incoming, kept) = self
            .keep(
                media.kind,
                &media.mimetype,
                media.file_name.clone(),
                &media.data,
            )
            .await?;
        let caption = media.caption.clone().unwrap_or_default();
        self.deliver(
            message_id.as_str(),
            to,
            &caption,
            media.kind.as_str(),
            Some((incoming, kept)),
            MessageExtras::default(),
        )
    }

    async fn fetch_media(
        &self,
        locator: &str,
        dest: &std::path::Path,
        max_bytes: u64,
    ) -> anyhow::Result<u64> {
        let net = self
            .net
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("network gone"))?;
        let path = media_path(&net.config.dir, locator)?;
        let size = match tokio::fs::metadata(&path).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FetchMediaError::Gone.into());
            }
            Err(e) => return Err(e.into()),
        };
        if size > max_bytes {
            return Err(FetchMediaError::TooLarge(max_bytes).into());
        }
        tokio::fs::copy(&path, dest).await?;
        Ok(size)
    }

    async fn pair_with_code(&self, phone: &str) -> anyhow::Result<String> {
        if self.phone.lock().expect("sim lock").is_some() || self.qr_stop.is_cancelled() {
            anyhow::bail!("instance {} is not waiting to be paired", self.instance_id);
        }
        let code = random_pair_code();
        *self.pair_code.lock().expect("sim lock") = Some((code.clone(), phone.to_string()));
        let _ = self
            .events
            .send(EngineEvent::PairCode {
                code: code.clone(),
                phone: phone.to_string(),
            })
            .await;
        Ok(code)
    }

    async fn contacts(&self) -> anyhow::Result<Vec<Contact>> {
        let phone = self.my_phone()?;
        let mut list = own_contacts(&phone);
        if let Some(net) = self.net.upgrade() {
            let mut peers: Vec<String> = net
                .phones
                .lock()
                .expect("sim lock")
                .keys()
                .filter(|p| **p != phone)
                .cloned()
                .collect();
            peers.sort();
            list.extend(peers.into_iter().map(|p| Contact {
                id: Jid::from_phone(&p),
                name: format!("+{p}"),
                number: p,
                is_group: false,
            }));
            let groups = net.groups.lock().expect("sim lock").list(&phone);
            list.extend(groups.into_iter().map(|g| Contact {
                number: g.id.user().to_string(),
                id: g.id,
                name: g.subject,
                is_group: true,
            }));
        }
        Ok(list)
    }

    async fn check_numbers(&self, numbers: &[String]) -> Result<Vec<NumberCheck>, GroupError> {
        self.my_phone()?;
        let net = self.network()?;
        Ok(numbers
            .iter()
            .map(|n| {
                let exists = net.on_whatsapp(n);
                NumberCheck {
                    number: n.clone(),
                    exists,
                    jid: exists.then(|| Jid::from_phone(n)),
                    lid: None,
                }
            })
            .collect())
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, GroupError> {
        let me = self.my_phone()?;
        let net = self.network()?;
        Ok(net.groups.lock().expect("sim lock").list(&me))
    }

    async fn group_info(&self, group: &Jid) -> Result<GroupInfo, GroupError> {
        let me = self.my_phone()?;
        let net = self.network()?;
        net.groups.lock().expect("sim lock").info(&me, group)
    }

    async fn create_group(
        &self,
        subject: &str,
        description: Option<&str>,
        participants: &[Jid],
    ) -> Result<GroupInfo, GroupError> {
        let id = format!("120363{}@g.us", random_code(12, b"0123456789"));
        let invite = random_code(22, INVITE_ALPHABET);
        let now = chrono::Utc::now().timestamp();
        self.with_groups(|groups, me, on_wa| {
            Ok(groups.create(
                me,
                &id,
                subject,
                description,
                participants,
                on_wa,
                invite,
                now,
            ))
        })
    }

    async fn change_participants(
        &self,
        group: &Jid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantResult>, GroupError> {
        let now = chrono::Utc::now().timestamp();
        self.with_groups(|groups, me, on_wa| {
            groups.change(me, group, action, participants, on_wa, now)
        })
    }

    async fn invite_link(&self, group: &Jid, revoke: bool) -> Result<InviteLink, GroupError> {
        let code = random_code(22, INVITE_ALPHABET);
        let now = chrono::Utc::now().timestamp();
        self.with_groups(|groups, me, _| groups.invite(me, group, revoke, code, now))
    }

    async fn join_group(&self, invite: &InviteLink) -> Result<Jid, GroupError> {
        let now = chrono::Utc::now().timestamp();
        self.with_groups(|groups, me, _| groups.join(me, invite, now))
    }

    async fn leave_group(&self, group: &Jid) -> Result<(), GroupError> {
        let now = chrono::Utc::now().timestamp();
        self.with_groups(|groups, me, _| Ok(((), groups.leave(me, group, now)?)))
    }

    async fn set_group_subject(&self, group: &Jid, subject: &str) -> Result<(), GroupError> {
        let now = chrono::Utc::now().timestamp();
        self.with_groups(|groups, me, _| Ok(((), groups.set_subject(me, group, subject, now)?)))
    }

    async fn set_group_description(
        &self,
        group: &Jid,
        description: Option<&str>,
    ) -> Result<(), GroupError> {
        let now = chrono::Utc::now().timestamp();
        self.with_groups(|groups, me, _| {
            Ok(((), groups.set_description(me, group, description, now)?))
        })
    }

    async fn send(
        &self,
        message_id: &MessageId,
        to: &Jid,
        content: &OutgoingContent,
    ) -> anyhow::Result<()> {
        let id = message_id.as_str();
        let now = chrono::Utc::now().timestamp();
        match content {
            OutgoingContent::Text { text, context } => {
                self.deliver(id, to, text, "extendedText", None, context.extras())
            }
            OutgoingContent::Media { media: m, context } => {
                let (incoming, kept) = self
                    .keep(m.kind, &m.mimetype, m.file_name.clone(), &m.data)
                    .await?;
                let caption = m.caption.clone().unwrap_or_default();
                self.deliver(
                    id,
                    to,
                    &caption,
                    m.kind.as_str(),
                    Some((incoming, kept)),
                    context.extras(),
                )
            }
            OutgoingContent::Voice { data, mimetype } => {
                let (incoming, kept) = self.keep(MediaKind::Audio, mimetype, None, data).await?;
                let extras = MessageExtras::default();
                self.deliver(id, to, "", "ptt", Some((incoming, kept)), extras)
            }
            OutgoingContent::Sticker { data, mimetype } => {
                let (incoming, kept) = self.keep(MediaKind::Image, mimetype, None, data).await?;
                let extras = MessageExtras::default();
                self.deliver(id, to, "", "sticker", Some((incoming, kept)), extras)
            }
            OutgoingContent::Location(l) => {
                let extras = MessageExtras {
                    location: Some(l.clone()),
                    ..MessageExtras::default()
                };
                let body = l.name.clone().unwrap_or_default();
                self.deliver(id, to, &body, "location", None, extras)
            }
            OutgoingContent::Contact(c) => {
                let extras = MessageExtras {
                    contact: Some(c.clone()),
                    ..MessageExtras::default()
                };
                self.deliver(id, to, &c.display_name, "contact", None, extras)
            }
            OutgoingContent::Poll(p) => {
                let extras = MessageExtras {
                    poll: Some(p.clone()),
                    ..MessageExtras::default()
                };
                self.deliver(id, to, &p.question, "poll", None, extras)
            }
            OutgoingContent::Reaction { target, emoji } => {
                self.relay(to, |me| Happening::Reaction {
                    message_id: message_id.clone(),
                    chat: me.clone(),
                    from: me,
                    from_me: false,
                    target_message_id: target.message_id.clone(),
                    emoji: emoji.clone(),
                    timestamp: now,
                })
            }
            OutgoingContent::Edit { target, text } => self.relay(to, |me| Happening::Edit {
                message_id: target.message_id.clone(),
                chat: me.clone(),
                from: me,
                from_me: false,
                text: text.clone(),
                timestamp: now,
            }),
            OutgoingContent::Revoke { target } => self.relay(to, |me| Happening::Revoke {
                message_id: target.message_id.clone(),
                chat: me.clone(),
                from: me,
                from_me: false,
                timestamp: now,
            }),
        }
    }

    async fn mark_read(
        &self,
        _chat: &Jid,
        _sender: Option<&Jid>,
        _message_ids: &[MessageId],
    ) -> anyhow::Result<()> {
        // The sim's senders get their read receipts as soon as they send.
        self.my_phone().map(|_| ())
    }

    async fn chat_state(&self, chat: &Jid, state: ChatState) -> anyhow::Result<()> {
        self.relay(chat, |me| Happening::Presence {
            chat: me.clone(),
            from: me,
            state,
        })
    }

    async fn set_presence(&self, _available: bool) -> anyhow::Result<()> {
        self.my_phone().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_look_like_whatsapps_and_rotate() {
        let a = qr_code("i1", 1);
        let b = qr_code("i1", 2);
        assert_ne!(a, b);
        assert_eq!(a, qr_code("i1", 1));
        let parts: Vec<&str> = a.split(',').collect();
        assert_eq!(parts.len(), 4);
        assert!(parts[0].starts_with("2@"));
        for p in &parts[1..] {
            assert_eq!(
                base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .unwrap()
                    .len(),
                32
            );
        }
    }

    #[tokio::test]
    async fn a_scan_without_a_number_skips_a_derived_phone_another_instance_has() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SimEngine::new(SimConfig {
            dir: dir.path().to_path_buf(),
            auto_pair: false,
            receipt_delay: Duration::ZERO,
            qr_interval: Duration::from_secs(60),
        });
        let (tx_a, _rx_a) = tokio::sync::mpsc::channel(16);
        let (tx_b, _rx_b) = tokio::sync::mpsc::channel(16);
        engine.start(&"a".into(), tx_a).await.unwrap();
        engine.start(&"b".into(), tx_b).await.unwrap();
        // "a" takes the number "b" would be given by default.
        let taken = engine.scan("a", Some(&default_phone("b"))).unwrap();
        let got = engine.scan("b", None).unwrap();
        assert_ne!(got, taken);
        assert_eq!(got, candidate_phone("b", 1));
        assert!(Jid::parse_recipient(&got).is_ok());
    }

    #[tokio::test]
    async fn a_message_sent_again_under_its_id_is_acknowledged_but_delivered_once_also_after_a_restart()
     {
        let dir = tempfile::tempdir().unwrap();
        let config = || SimConfig {
            dir: dir.path().to_path_buf(),
            auto_pair: false,
            receipt_delay: Duration::ZERO,
            qr_interval: Duration::from_secs(60),
        };
        let id = MessageId::from_stored("3EB0AAAAAAAAAAAAAAAAAAAA");
        let to = Jid::from_phone("79000000002");
        let mut received = Vec::new();
        for network in 0..2 {
            // A fresh network on the same directory: the gateway restarted.
            let engine = SimEngine::new(config());
            let (tx_a, mut rx_a) = tokio::sync::mpsc::channel(64);
            let (tx_b, mut rx_b) = tokio::sync::mpsc::channel(64);
            let a = engine.start(&"a".into(), tx_a).await.unwrap();
            engine.start(&"b".into(), tx_b).await.unwrap();
            if network == 0 {
                engine.scan("a", Some("79000000001")).unwrap();
                engine.scan("b", Some("79000000002")).unwrap();
            }
            let probe = MessageId::from_stored(format!("3EB0PROBE{network}"));
            for m in [&id, &id, &probe] {
                a.send_text(m, &to, "once").await.unwrap();
                // Every send is acknowledged, a resend too.
                loop {
                    if let Some(EngineEvent::Receipt {
                        receipt,
                        message_ids,
                        ..
                    }) = rx_a.recv().await
                        && receipt == Receipt::Sent
                        && message_ids[0] == *m
                    {
                        break;
                    }
                }
            }
            // The probe went out last: wait for it at the recipient.
            while let Some(e) = rx_b.recv().await {
                if let EngineEvent::Message(m) = e {
                    received.push(m.message_id.to_string());
                    if m.message_id == probe {
                        break;
                    }
                }
            }
            a.stop().await;
        }
        assert_eq!(
            received,
            ["3EB0AAAAAAAAAAAAAAAAAAAA", "3EB0PROBE0", "3EB0PROBE1"]
        );
    }

    #[test]
    fn default_phones_are_valid_numbers() {
        let p = default_phone("abc");
        assert_eq!(p.len(), 11);
        assert!(Jid::parse_recipient(&p).is_ok());
    }
}
