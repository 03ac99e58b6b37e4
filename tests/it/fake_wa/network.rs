//! The fake server's message network: fake contacts with real Signal
//! devices, the key directory (the prekeys the client uploads at login, the
//! bundles it fetches), usync device lists and the LID query, `<message>`
//! routing with the server `<ack>` (or a nack, or silence), receipts both
//! ways, and the record of everything the fake did not understand.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use whatsapp_rust::NodeBuilder;
use whatsapp_rust::wacore::iq::prekeys::PreKeyBundleUserNode;
use whatsapp_rust::wacore::libsignal::protocol::ProtocolAddress;
use whatsapp_rust::wacore::messages::{MessageUtils, decode_plaintext};
use whatsapp_rust::wacore::protocol::ProtocolNode;
use whatsapp_rust::wacore_binary::{Node, NodeContent};
use whatsapp_rust::waproto::whatsapp as wa;

use super::signal::{Device, PublicBundle};
use super::{Conn, Inner, SERVER, attr, children, iq_result, show};

/// How the server answers a contact's incoming messages.
#[derive(Debug, Clone, PartialEq)]
pub enum AckMode {
    /// `<ack class="message">`: accepted.
    Ack,
    /// `<ack error=code>`: refused.
    Nack(u16),
    /// Nothing at all (a server that lost it).
    Silent,
    /// Accepted and not decrypted: the contact keeps nothing, as WhatsApp's
    /// own server, which never reads a message (the benchmark's send rate).
    AckOnly,
}

/// A message a contact received and decrypted.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    /// The sending account's phone.
    pub from: String,
    /// `pkmsg` or `msg`.
    pub enc: String,
    pub message: wa::Message,
}

/// A fake contact: a phone number (optionally a LID) and one device (0)
/// doing real Signal work.
pub struct Contact {
    pub phone: String,
    pub name: String,
    pub lid: Option<String>,
    device: tokio::sync::Mutex<Device>,
    state: Mutex<ContactState>,
    changed: Notify,
}

#[derive(Default)]
struct ContactState {
    inbox: Vec<Received>,
    /// Receipts the client sent for this contact's messages: (id, type).
    receipts: Vec<(String, String)>,
    ack: Option<AckMode>,
    next_id: u64,
}

/// The keys an account's device uploaded.
pub(super) struct AccountKeys {
    registration_id: u32,
    identity: [u8; 32],
    signed: (u32, [u8; 32], Vec<u8>),
    one_time: Vec<(u32, [u8; 32])>,
}

impl Contact {
    pub(super) fn new(phone: &str, name: &str, lid: Option<String>) -> Self {
        Self {
            phone: phone.to_string(),
            name: name.to_string(),
            lid,
            device: tokio::sync::Mutex::new(Device::new()),
            state: Mutex::new(ContactState::default()),
            changed: Notify::new(),
        }
    }

    fn jid(&self) -> String {
        format!("{}@s.whatsapp.net", self.phone)
    }

    /// Sets how the server answers messages to this contact.
    pub fn set_ack(&self, mode: AckMode) {
        self.state.lock().unwrap().ack = Some(mode);
    }

    /// Waits for the `nth` (1-based) message this contact decrypted.
    pub async fn nth_message(&self, nth: usize) -> Received {
        loop {
            let notified = self.changed.notified();
            if let Some(m) = self.state.lock().unwrap().inbox.get(nth - 1) {
                return m.clone();
            }
            notified.await;
        }
    }

    /// Messages decrypted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().unwrap().inbox.clone()
    }

    /// Waits for a receipt of type `kind` (`delivery`, `read`, ...) from
    /// the client for message `id`.
    pub async fn receipt_of_kind(&self, id: &str, kind: &str) {
        loop {
            let notified = self.changed.notified();
            if self
                .state
                .lock()
                .unwrap()
                .receipts
                .iter()
                .any(|(i, k)| i == id && k == kind)
            {
                return;
            }
            notified.await;
        }
    }

    /// Waits for the client's receipt for message `id`; returns its type
    /// (`delivery` for a plain receipt).
    pub async fn receipt_for(&self, id: &str) -> String {
        loop {
            let notified = self.changed.notified();
            if let Some((_, kind)) = self
                .state
                .lock()
                .unwrap()
                .receipts
                .iter()
                .find(|(i, _)| i == id)
            {
                return kind.clone();
            }
            notified.await;
        }
    }
}

impl Inner {
    pub(super) fn problem(&self, what: String) {
        tracing::warn!(problem = %what, "fake WhatsApp");
        self.problems.lock().unwrap().push(what);
        self.changed.notify_waiters();
    }

    /// Whether `jid` names the account `phone` (by phone number or LID).
    fn is_account(&self, phone: &str, jid: &str) -> bool {
        let user = jid.split(['@', ':']).next().unwrap_or_default();
        user == phone
            || self
                .devices
                .lock()
                .unwrap()
                .get(phone)
                .is_some_and(|d| d.lid == user)
    }

    fn contact_by_jid(&self, jid: &str) -> Option<Arc<Contact>> {
        let (user, server) = jid.split_once('@')?;
        let user = user.split(':').next().unwrap_or(user);
        let contacts = self.contacts.lock().unwrap();
        match server {
            "s.whatsapp.net" => contacts.get(user).cloned(),
            "lid" => contacts
                .values()
                .find(|c| c.lid.as_deref() == Some(user))
                .cloned(),
            _ => None,
        }
    }

    /// The account phone and companion device of a logged-in connection.
    fn account_of(&self, conn: &Conn) -> Option<(String, u32)> {
        let phone = conn.phone.lock().unwrap().clone()?;
        let device = self.devices.lock().unwrap().get(&phone)?.device;
        Some((phone, device))
    }

    /// Logged-in connections of `phone`.
    pub(super) fn conns_of(&self, phone: &str) -> Vec<Arc<Conn>> {
        self.conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.phone.lock().unwrap().as_deref() == Some(phone))
            .cloned()
            .collect()
    }

    fn push(&self, phone: &str, node: Node) -> anyhow::Result<()> {
        let conns = self.conns_of(phone);
        anyhow::ensure!(!conns.is_empty(), "{phone} is not connected");
        for c in conns {
            let _ = c.out.send(node.clone());
        }
        Ok(())
    }

    /// The one-time prekeys stored for `phone`.
    pub(super) fn prekey_count(&self, phone: &str) -> usize {
        self.keys
            .lock()
            .unwrap()
            .get(phone)
            .map_or(0, |k| k.one_time.len())
    }
}

fn bytes_of(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    children(node).iter().find(|c| c.tag == tag)
}

fn key32(node: Option<&Node>) -> anyhow::Result<[u8; 32]> {
    node.and_then(bytes_of)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("a key is not 32 bytes"))
}

fn id24(node: Option<&Node>) -> anyhow::Result<u32> {
    let b = node
        .and_then(bytes_of)
        .ok_or_else(|| anyhow::anyhow!("no id"))?;
    anyhow::ensure!(b.len() == 3, "an id is not 3 bytes");
    Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
}

fn skey(node: &Node) -> anyhow::Result<(u32, [u8; 32], Vec<u8>)> {
    Ok((
        id24(child(node, "id"))?,
        key32(child(node, "value"))?,
        child(node, "signature")
            .and_then(bytes_of)
            .ok_or_else(|| anyhow::anyhow!("no signature"))?
            .to_vec(),
    ))
}

fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

fn result_with(id: &str, content: Vec<Node>) -> Node {
    NodeBuilder::new("iq")
        .attrs([
            ("from", SERVER.to_string()),
            ("type", "result".to_string()),
            ("id", id.to_string()),
        ])
        .children(content)
        .build()
}

/// The `encrypt` namespace: prekey upload, count, rotate, digest, fetch.
pub(super) async fn encrypt_iq(server: &Inner, conn: &Conn, node: &Node) -> Vec<Node> {
    let id = attr(node, "id").unwrap_or_default();
    let Some((phone, _)) = server.account_of(conn) else {
        server.problem(format!("an encrypt IQ before login: {}", show(node)));
        return vec![iq_result(&id)];
    };
    let first = children(node).first();
    let tag = first.map(|c| c.tag.to_string()).unwrap_or_default();
    match (attr(node, "type").as_deref(), tag.as_str()) {
        (Some("set"), "registration") => {
            let parsed = (|| -> anyhow::Result<AccountKeys> {
                let reg = child(node, "registration")
                    .and_then(bytes_of)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .ok_or_else(|| anyhow::anyhow!("no registration id"))?;
                let list = child(node, "list").map(children).unwrap_or_default();
                let one_time = list
                    .iter()
                    .map(|k| Ok((id24(child(k, "id"))?, key32(child(k, "value"))?)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(AccountKeys {
                    registration_id: u32::from_be_bytes(reg),
                    identity: key32(child(node, "identity"))?,
                    signed: skey(child(node, "skey").ok_or_else(|| anyhow::anyhow!("no <skey>"))?)?,
                    one_time,
                })
            })();
            match parsed {
                Ok(keys) => {
                    server.keys.lock().unwrap().insert(phone, keys);
                    server.changed.notify_waiters();
                }
                Err(e) => server.problem(format!("a prekey upload the fake cannot read: {e}")),
            }
            vec![iq_result(&id)]
        }
        (Some("get"), "count") => vec![result_with(
            &id,
            vec![
                NodeBuilder::new("count")
                    .attr("value", server.prekey_count(&phone).to_string())
                    .build(),
            ],
        )],
        (Some("set"), "rotate") => {
            match first
                .and_then(|r| child(r, "skey"))
                .ok_or_else(|| anyhow::anyhow!("no <skey>"))
                .and_then(skey)
            {
                Ok(s) => {
                    if let Some(k) = server.keys.lock().unwrap().get_mut(&phone) {
                        k.signed = s;
                    }
                }
                Err(e) => server.problem(format!("a rotate the fake cannot read: {e}")),
            }
            vec![iq_result(&id)]
        }
        // No digest kept: an empty answer (a 404 would make the client upload again).
        (Some("get"), "digest") => vec![iq_result(&id)],
        (Some("get"), "key") => vec![fetch_bundles(server, &phone, &id, first.unwrap()).await],
        _ => {
            server.problem(format!(
                "an encrypt IQ the fake does not know: {}",
                show(node)
            ));
            vec![iq_result(&id)]
        }
    }
}

/// Answers a prekey fetch with the contacts' bundles; the account's own
/// phone (device 0) has no Signal device here, so it is left out, which the
/// client takes as "skip that device".
async fn fetch_bundles(server: &Inner, phone: &str, id: &str, key: &Node) -> Node {
    let mut users = Vec::new();
    for user in children(key).iter().filter(|c| c.tag == "user") {
        let Some(jid) = attr(user, "jid") else {
            continue;
        };
        let Some(contact) = server.contact_by_jid(&jid) else {
            if !server.is_account(phone, &jid) {
                server.problem(format!("a prekey fetch for an unknown device {jid}"));
            }
            continue;
        };
        let bundle = contact.device.lock().await.claim_bundle();
        let node = (|| -> anyhow::Result<Node> {
            let parsed: whatsapp_rust::Jid = jid.parse()?;
            let bundle = bundle.to_bundle(0)?;
            Ok(PreKeyBundleUserNode::from_bundle(parsed, &bundle, None)?.into_node())
        })();
        match node {
            Ok(n) => users.push(n),
            Err(e) => server.problem(format!("the bundle of {jid}: {e}")),
        }
    }
    result_with(id, vec![NodeBuilder::new("list").children(users).build()])
}

/// usync: device lists (device 0 for every contact and for the account's
/// phone) and the LID query (a contact's LID when it has one).
pub(super) fn usync_iq(server: &Inner, conn: &Conn, node: &Node) -> Vec<Node> {
    let id = attr(node, "id").unwrap_or_default();
    let own = server.account_of(conn).map(|(p, _)| p);
    let Some(usync) = child(node, "usync") else {
        server.problem(format!("a usync IQ without <usync>: {}", show(node)));
        return vec![iq_result(&id)];
    };
    let protocols: Vec<String> = child(usync, "query")
        .map(children)
        .unwrap_or_default()
        .iter()
        .map(|c| c.tag.to_string())
        .collect();
    let mut users = Vec::new();
    for user in child(usync, "list").map(children).unwrap_or_default() {
        let Some(jid) = attr(user, "jid") else {
            server.problem(format!("a usync user without a jid: {}", show(user)));
            continue;
        };
        let contact = server.contact_by_jid(&jid);
        let is_own = own.as_deref().is_some_and(|p| server.is_account(p, &jid));
        if contact.is_none() && !is_own {
            server.problem(format!("a usync query for an unknown user {jid}"));
        }
        let mut results = Vec::new();
        for p in &protocols {
            match p.as_str() {
                "devices" => results.push(
                    NodeBuilder::new("devices")
                        .children([NodeBuilder::new("device-list")
                            .children([NodeBuilder::new("device").attr("id", "0").build()])
                            .build()])
                        .build(),
                ),
                "lid" => {
                    let mut lid = NodeBuilder::new("lid");
                    if let Some(l) = contact.as_ref().and_then(|c| c.lid.clone()) {
                        lid = lid.attr("val", format!("{l}@lid"));
                    }
                    results.push(lid.build());
                }
                other => {
                    server.problem(format!("a usync protocol the fake does not know: {other}"))
                }
            }
        }
        users.push(
            NodeBuilder::new("user")
                .attr("jid", jid)
                .children(results)
                .build(),
        );
    }
    vec![result_with(
        &id,
        vec![
            NodeBuilder::new("usync")
                .children([NodeBuilder::new("list").children(users).build()])
                .build(),
        ],
    )]
}

/// A `<message>` from the client: each `<enc>` is handed to its device, and
/// the server acks (or nacks, or stays silent) as the recipient is set to.
pub(super) async fn client_message(server: &Inner, conn: &Conn, node: &Node) -> Vec<Node> {
    let id = attr(node, "id").unwrap_or_default();
    let to = attr(node, "to").unwrap_or_default();
    let Some((phone, device)) = server.account_of(conn) else {
        server.problem(format!("a message before login: {}", show(node)));
        return Vec::new();
    };
    let Some(recipient) = server.contact_by_jid(&to) else {
        server.problem(format!("a message to an unknown chat {to}"));
        return Vec::new();
    };
    let mode = recipient
        .state
        .lock()
        .unwrap()
        .ack
        .clone()
        .unwrap_or(AckMode::Ack);
    let ack = NodeBuilder::new("ack")
        .attr("class", "message")
        .attr("id", id.clone())
        .attr("from", to.clone())
        .attr("t", now());
    match mode {
        AckMode::Silent => return Vec::new(),
        AckMode::AckOnly => return vec![ack.build()],
        AckMode::Nack(code) => return vec![ack.attr("error", code.to_string()).build()],
        AckMode::Ack => {}
    }
    let peer = ProtocolAddress::new(&phone, device.into());
    let targets = child(node, "participants")
        .map(children)
        .unwrap_or_default()
        .iter()
        .filter(|c| c.tag == "to")
        .filter_map(|t| Some((attr(t, "jid")?, child(t, "enc")?)))
        .collect::<Vec<_>>();
    if targets.is_empty() {
        server.problem(format!(
            "a message without <participants><to><enc>: {}",
            show(node)
        ));
    }
    for (jid, enc) in targets {
        let Some(contact) = server.contact_by_jid(&jid) else {
            server.problem(format!("an <enc> for an unknown device {jid}"));
            continue;
        };
        let kind = attr(enc, "type").unwrap_or_default();
        let Some(ciphertext) = bytes_of(enc) else {
            server.problem(format!("an empty <enc> for {jid}"));
            continue;
        };
        let plain = contact
            .device
            .lock()
            .await
            .decrypt(&peer, &kind, ciphertext)
            .await;
        match plain.and_then(|p| decode_plaintext(&p, 2)) {
            Ok(message) => {
                contact.state.lock().unwrap().inbox.push(Received {
                    id: id.clone(),
                    from: phone.clone(),
                    enc: kind,
                    message,
                });
                contact.changed.notify_waiters();
            }
            Err(e) => server.problem(format!("{jid} could not decrypt {id}: {e:#}")),
        }
    }
    vec![ack.build()]
}

/// A `<receipt>` from the client (for a contact's message).
pub(super) fn client_receipt(server: &Inner, node: &Node) {
    let id = attr(node, "id").unwrap_or_default();
    let kind = attr(node, "type").unwrap_or_else(|| "delivery".into());
    if kind == "retry" {
        server.problem(format!(
            "a retry receipt (could not decrypt): {}",
            show(node)
        ));
    }
    let to = attr(node, "to").unwrap_or_default();
    let Some(contact) = server.contact_by_jid(&to) else {
        server.problem(format!("a receipt to an unknown chat: {}", show(node)));
        return;
    };
    let mut ids = vec![id];
    if let Some(list) = child(node, "list") {
        ids.extend(
            children(list)
                .iter()
                .filter(|c| c.tag == "item")
                .filter_map(|i| attr(i, "id")),
        );
    }
    let mut state = contact.state.lock().unwrap();
    for id in ids {
        state.receipts.push((id, kind.clone()));
    }
    drop(state);
    contact.changed.notify_waiters();
}

impl super::FakeWa {
    /// Adds a contact (device 0, real Signal keys); `lid` gives it a LID
    /// the server reveals in usync and uses as the sender of its messages.
    pub fn add_contact(&self, phone: &str, name: &str, lid: Option<&str>) -> Arc<Contact> {
        let c = Arc::new(Contact::new(phone, name, lid.map(str::to_string)));
        self.inner
            .contacts
            .lock()
            .unwrap()
            .insert(phone.to_string(), c.clone());
        c
    }

    /// What the fake did not understand, did not answer or had to refuse;
    /// a test on the fake network expects none.
    pub fn problems(&self) -> Vec<String> {
        self.inner.problems.lock().unwrap().clone()
    }

    /// Fails when the fake recorded any problem.
    pub fn assert_clean(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "the fake WhatsApp recorded: {problems:#?}"
        );
    }

    /// Waits until `phone`'s device has uploaded its prekeys.
    pub async fn wait_prekeys(&self, phone: &str) {
        loop {
            let notified = self.inner.changed.notified();
            if self.inner.keys.lock().unwrap().contains_key(phone) {
                return;
            }
            notified.await;
        }
    }

    /// `contact` sends `message` to the account `to`: a session from the
    /// account's uploaded bundle on first contact (`pkmsg`), `msg` after.
    /// Returns the message id.
    pub async fn send_from(
        &self,
        contact: &Contact,
        to: &str,
        message: &wa::Message,
    ) -> anyhow::Result<String> {
        let inner = &self.inner;
        let device = inner
            .devices
            .lock()
            .unwrap()
            .get(to)
            .map(|d| d.device)
            .ok_or_else(|| anyhow::anyhow!("{to} is not paired"))?;
        let peer = ProtocolAddress::new(to, device.into());
        let mut signal = contact.device.lock().await;
        if !signal.has_session(&peer) {
            let bundle = {
                let mut keys = inner.keys.lock().unwrap();
                let k = keys
                    .get_mut(to)
                    .ok_or_else(|| anyhow::anyhow!("{to} uploaded no prekeys"))?;
                PublicBundle {
                    registration_id: k.registration_id,
                    identity: k.identity,
                    signed_id: k.signed.0,
                    signed_public: k.signed.1,
                    signed_signature: k.signed.2.clone(),
                    one_time: k.one_time.pop(),
                }
            };
            signal
                .start_session(&peer, &bundle.to_bundle(device)?)
                .await?;
        }
        let (kind, ciphertext) = signal
            .encrypt(&peer, &MessageUtils::encode_and_pad(message))
            .await?;
        drop(signal);
        let id = {
            let mut s = contact.state.lock().unwrap();
            s.next_id += 1;
            format!("3EB0{:012X}{:04X}", rand::random::<u64>() >> 16, s.next_id)
        };
        let mut stanza = NodeBuilder::new("message")
            .attr("id", id.clone())
            .attr("t", now())
            .attr("notify", contact.name.clone())
            .attr(
                "type",
                if message.conversation.is_some() {
                    "text"
                } else {
                    "media"
                },
            );
        stanza = match &contact.lid {
            Some(lid) => stanza
                .attr("from", format!("{lid}@lid"))
                .attr("sender_pn", contact.jid()),
            None => stanza.attr("from", contact.jid()),
        };
        let stanza = stanza
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", kind)
                .bytes(ciphertext)
                .build()])
            .build();
        inner.push(to, stanza)?;
        Ok(id)
    }

    /// `contact` sends a text to the account `to`.
    pub async fn send_text_from(
        &self,
        contact: &Contact,
        to: &str,
        text: &str,
    ) -> anyhow::Result<String> {
        let message = wa::Message {
            conversation: Some(text.to_string()),
            ..Default::default()
        };
        self.send_from(contact, to, &message).await
    }

    /// `contact` shows a chat state to the account `to`: `composing`
    /// (typing), `recording` (a voice note) or `paused`.
    pub fn chat_state_from(&self, contact: &Contact, to: &str, state: &str) -> anyhow::Result<()> {
        let child = match state {
            "recording" => NodeBuilder::new("composing").attr("media", "audio"),
            other => NodeBuilder::new_dynamic(other.to_string()),
        };
        let node = NodeBuilder::new("chatstate")
            .attr("from", contact.jid())
            .children([child.build()])
            .build();
        self.inner.push(to, node)
    }

    /// `contact`'s device reports `kind` (`None` = delivered, `read`,
    /// `played`) for messages the account `to` sent it.
    pub fn receipt_from(
        &self,
        contact: &Contact,
        to: &str,
        ids: &[&str],
        kind: Option<&str>,
    ) -> anyhow::Result<()> {
        let (first, rest) = ids.split_first().ok_or_else(|| anyhow::anyhow!("no ids"))?;
        let mut receipt = NodeBuilder::new("receipt")
            .attr("from", contact.jid())
            .attr("id", first.to_string())
            .attr("t", now());
        if let Some(k) = kind {
            receipt = receipt.attr("type", k);
        }
        if !rest.is_empty() {
            receipt = receipt.children([NodeBuilder::new("list")
                .children(
                    rest.iter()
                        .map(|i| NodeBuilder::new("item").attr("id", i.to_string()).build()),
                )
                .build()]);
        }
        self.inner.push(to, receipt.build())
    }
}
