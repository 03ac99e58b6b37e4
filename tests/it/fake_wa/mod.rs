//! A fake WhatsApp server, in-process, that drives the **real** whatsapp-rust
//! client through a custom transport: the Noise handshake (XX on a first
//! connect, IK once the client has cached the server's certificate), the
//! pair-device IQ that makes the client show QR codes, a fake phone that
//! scans one (see [`phone`]), the 515 restart, login (`<success>`, the
//! passive IQ, an empty offline queue, a refused app-state sync), forced
//! drops and logout.
//!
//! The certificate chain it presents is not signed by WhatsApp's root key,
//! so the client must be built with `danger-skip-cert-chain-verify`, which
//! only the test profile enables (`[dev-dependencies]`).
//!
//! It is reached either through an in-memory transport given to the engine
//! ([`FakeWa::factory`]) or over TCP, as a plain `ws://` websocket listener
//! ([`FakeWa::listen`]) that the engine's own transport (or a proxy) dials.
//!
//! Messages go through [`network`]: fake contacts whose devices do real
//! Signal work ([`signal`]), the key directory, usync, routing with the
//! server's acks and receipts. Whatever the fake does not understand or
//! does not answer is recorded ([`FakeWa::problems`]): the client logs and
//! skips most mistakes, so a test asserts the record is empty.
#![allow(dead_code)]

pub mod cdn;
pub mod network;
pub mod pair_code;
pub mod phone;
pub mod signal;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use whatsapp_rust::NodeBuilder;
use whatsapp_rust::async_channel;
use whatsapp_rust::buffa::Message as _;
use whatsapp_rust::transport::{DisconnectReason, Transport, TransportEvent, TransportFactory};
use whatsapp_rust::wacore::handshake::{NoiseCipher, NoiseHandshake};
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore_binary::consts::{NOISE_PATTERN_IK, NOISE_PATTERN_XX, WA_CONN_HEADER};
use whatsapp_rust::wacore_binary::{Node, NodeContent, OwnedNodeRef, marshal};
use whatsapp_rust::waproto::whatsapp as wa;

/// The server's JID, as the client expects it in `from`.
const SERVER: &str = "s.whatsapp.net";
/// The one group every account is in (its id, without `@g.us`).
pub const FAKE_GROUP: &str = "120363000000000001";
/// QR refs sent in one pair-device IQ (WhatsApp sends six).
const REFS: usize = 6;

/// A paired companion device, known to the server.
#[derive(Debug, Clone)]
struct Device {
    phone: String,
    device: u32,
    lid: String,
}

/// A live connection.
struct Conn {
    id: u64,
    /// Nodes to encrypt and send to the client.
    out: mpsc::UnboundedSender<Node>,
    /// Ends the connection (a forced drop).
    close: CancellationToken,
    /// The logged-in account (`None` while pairing).
    phone: Mutex<Option<String>>,
    /// QR refs handed to this connection.
    refs: Mutex<Vec<String>>,
    /// Keepalive pings (`xmlns="w:p"`) go unanswered: a half-dead socket.
    deaf: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Counters {
    xx: AtomicU32,
    ik: AtomicU32,
    logins: AtomicU32,
    pair_requests: AtomicU32,
    pings_ignored: AtomicU32,
}

struct Inner {
    static_key: KeyPair,
    cert_chain: Vec<u8>,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Paired devices by phone.
    devices: Mutex<HashMap<String, Device>>,
    /// The last device id given to each phone (ids are per account, as
    /// WhatsApp's: a phone's first companion is device 1).
    last_device: Mutex<HashMap<String, u32>>,
    counters: Counters,
    changed: Notify,
    /// Contacts by phone.
    contacts: Mutex<HashMap<String, Arc<network::Contact>>>,
    /// The prekeys each account's device uploaded, by phone.
    keys: Mutex<HashMap<String, network::AccountKeys>>,
    /// Unknown stanzas, unanswered IQs, nacks, retry receipts, ...
    problems: Mutex<Vec<String>>,
    /// What the client sent towards contacts, in order: `message <to>`,
    /// `chatstate <state> <to>` (typing shown before a paced send).
    outbound: Mutex<Vec<String>>,
    /// The fake CDN's files, by direct path.
    cdn: Mutex<HashMap<String, Vec<u8>>>,
    /// Pairing-code flows, by phone.
    codes: Mutex<HashMap<String, pair_code::Pending>>,
    /// Peers of the TCP connections taken by [`FakeWa::listen`].
    tcp_peers: Mutex<Vec<std::net::SocketAddr>>,
    /// The `Origin` header of each websocket upgrade.
    ws_origins: Mutex<Vec<String>>,
    /// Where connections are served (the caller's runtime when `None`).
    runtime: Option<tokio::runtime::Handle>,
}

/// The fake server; cheap to clone.
#[derive(Clone)]
pub struct FakeWa {
    inner: Arc<Inner>,
}

impl Default for FakeWa {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeWa {
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A fake whose connections are served on `runtime` (the benchmark runs
    /// it on threads of its own to weigh its memory apart from the gateway's).
    pub fn on_runtime(runtime: tokio::runtime::Handle) -> Self {
        Self::build(Some(runtime))
    }

    fn build(runtime: Option<tokio::runtime::Handle>) -> Self {
        let static_key = KeyPair::generate(&mut rand010::rng());
        let cert_chain = cert_chain(static_key.public_key.public_key_bytes());
        Self {
            inner: Arc::new(Inner {
                static_key,
                cert_chain,
                next_conn: AtomicU64::new(1),
                conns: Mutex::new(HashMap::new()),
                devices: Mutex::new(HashMap::new()),
                last_device: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                changed: Notify::new(),
                contacts: Mutex::new(HashMap::new()),
                keys: Mutex::new(HashMap::new()),
                problems: Mutex::new(Vec::new()),
                outbound: Mutex::new(Vec::new()),
                cdn: Mutex::new(HashMap::new()),
                codes: Mutex::new(HashMap::new()),
                tcp_peers: Mutex::new(Vec::new()),
                ws_origins: Mutex::new(Vec::new()),
                runtime,
            }),
        }
    }

    /// The transport factory clients connect through.
    pub fn factory(&self) -> Arc<dyn TransportFactory> {
        Arc::new(Factory(self.inner.clone()))
    }

    /// Full (XX) handshakes so far.
    pub fn xx_handshakes(&self) -> u32 {
        self.inner.counters.xx.load(Ordering::Relaxed)
    }

    /// Resumed (IK) handshakes so far.
    pub fn ik_handshakes(&self) -> u32 {
        self.inner.counters.ik.load(Ordering::Relaxed)
    }

    /// Logins (`<success>` sent) so far.
    pub fn logins(&self) -> u32 {
        self.inner.counters.logins.load(Ordering::Relaxed)
    }

    /// Whether `phone` has a paired companion device.
    pub fn is_paired(&self, phone: &str) -> bool {
        self.inner.devices.lock().unwrap().contains_key(phone)
    }

    /// Live connections (of any state).
    pub fn connections(&self) -> usize {
        self.inner.conns.lock().unwrap().len()
    }

    /// The fake phone of `phone` scans `qr`: the connection that showed it
    /// receives `<pair-success>`, then the 515 stream restart.
    pub async fn scan(&self, qr: &str, phone: &str) -> anyhow::Result<()> {
        let scan = phone::Scan::parse(qr)?;
        let conn = self
            .inner
            .conns
            .lock()
            .unwrap()
            .values()
            .find(|c| c.refs.lock().unwrap().contains(&scan.pairing_ref))
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("no live connection shows QR ref {}", scan.pairing_ref)
            })?;
        pair_success(&self.inner, &conn, &scan, phone)
    }

    /// Drops every live connection of `phone` (a network failure). Returns how many.
    pub fn drop_connections(&self, phone: &str) -> usize {
        let conns: Vec<Arc<Conn>> = self
            .inner
            .conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.phone.lock().unwrap().as_deref() == Some(phone))
            .cloned()
            .collect();
        for c in &conns {
            c.close.cancel();
        }
        conns.len()
    }

    /// Every live connection of `phone` stops answering keepalive pings
    /// (everything else still flows), as a half-dead socket does; later
    /// connections answer again. Returns how many connections went deaf.
    pub fn stop_answering_pings(&self, phone: &str) -> usize {
        let conns: Vec<Arc<Conn>> = self
            .inner
            .conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.phone.lock().unwrap().as_deref() == Some(phone))
            .cloned()
            .collect();
        for c in &conns {
            c.deaf.store(true, Ordering::Relaxed);
        }
        conns.len()
    }

    /// What the client sent towards contacts, in order (`message <to>`,
    /// `chatstate composing <to>`, ...).
    pub fn outbound(&self) -> Vec<String> {
        self.inner.outbound.lock().unwrap().clone()
    }

    /// Keepalive pings left unanswered so far.
    pub fn pings_ignored(&self) -> u32 {
        self.inner.counters.pings_ignored.load(Ordering::Relaxed)
    }

    /// The phone unlinks its companion device while it is offline: the
    /// server forgets it and drops its connections; its next login is refused.
    pub fn unlink(&self, phone: &str) -> usize {
        self.inner.devices.lock().unwrap().remove(phone);
        self.drop_connections(phone)
    }

    /// Waits until `phone` has a logged-in connection.
    pub async fn wait_logged_in(&self, phone: &str) {
        loop {
            let notified = self.inner.changed.notified();
            let online = self
                .inner
                .conns
                .lock()
                .unwrap()
                .values()
                .any(|c| c.phone.lock().unwrap().as_deref() == Some(phone));
            if online {
                return;
            }
            notified.await;
        }
    }
}

/// The phone of `phone` pairs the companion that `scan` describes (from a
/// QR code, or from the pairing-code flow): `<pair-success>` on `conn`,
/// signed for its identity and authenticated with its adv secret.
fn pair_success(
    server: &Inner,
    conn: &Conn,
    scan: &phone::Scan,
    phone: &str,
) -> anyhow::Result<()> {
    let device = {
        let mut last = server.last_device.lock().unwrap();
        let d = last.entry(phone.to_string()).or_insert(0);
        *d += 1;
        *d
    };
    let lid = format!("1{phone}");
    let identity = scan.signed_device_identity(device)?;
    let success = NodeBuilder::new("iq")
        .attrs([
            ("from", SERVER.to_string()),
            ("type", "set".to_string()),
            ("id", format!("pair-{device}")),
            ("xmlns", "md".to_string()),
        ])
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity").bytes(identity).build(),
                NodeBuilder::new("device")
                    .attr("jid", format!("{phone}:{device}@s.whatsapp.net"))
                    .attr("lid", format!("{lid}:{device}@lid"))
                    .build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
                // A business name becomes the push name: the client then
                // needs no app-state sync for it on later connects.
                NodeBuilder::new("biz").attr("name", "Fake Phone").build(),
            ])
            .build()])
        .build();
    server.devices.lock().unwrap().insert(
        phone.to_string(),
        Device {
            phone: phone.to_string(),
            device,
            lid,
        },
    );
    conn.out
        .send(success)
        .map_err(|_| anyhow::anyhow!("the connection closed"))?;
    Ok(())
}

/// A certificate chain for `leaf_key`, shaped like WhatsApp's (intermediate
/// issued by serial 0, leaf issued by the intermediate) but not signed by
/// WhatsApp's root: only a client with `danger-skip-cert-chain-verify` takes it.
fn cert_chain(leaf_key: &[u8]) -> Vec<u8> {
    let now = chrono::Utc::now().timestamp() as u64;
    let details = |serial: u32, issuer: u32, key: Vec<u8>| {
        wa::cert_chain::noise_certificate::Details {
            serial: Some(serial),
            issuer_serial: Some(issuer),
            key: Some(key),
            not_before: Some(now - 3600),
            not_after: Some(now + 30 * 24 * 3600),
        }
        .encode_to_vec()
    };
    let intermediate_key = KeyPair::generate(&mut rand010::rng());
    wa::CertChain {
        intermediate: Some(wa::cert_chain::NoiseCertificate {
            details: Some(details(
                7,
                0,
                intermediate_key.public_key.public_key_bytes().to_vec(),
            )),
            signature: Some(vec![0; 64]),
        })
        .into(),
        leaf: Some(wa::cert_chain::NoiseCertificate {
            details: Some(details(8, 7, leaf_key.to_vec())),
            signature: Some(vec![0; 64]),
        })
        .into(),
    }
    .encode_to_vec()
}

struct Factory(Arc<Inner>);

/// A new connection's client end: bytes to the server, what the server
/// sends back (as transport events), and the switch that ends it.
fn open_conn(
    server: &Arc<Inner>,
) -> (
    mpsc::UnboundedSender<Bytes>,
    async_channel::Receiver<TransportEvent>,
    CancellationToken,
) {
    let (events_tx, events_rx) = async_channel::unbounded();
    let (to_server, from_client) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        id: server.next_conn.fetch_add(1, Ordering::Relaxed),
        out: out_tx,
        close: CancellationToken::new(),
        phone: Mutex::new(None),
        refs: Mutex::new(Vec::new()),
        deaf: std::sync::atomic::AtomicBool::new(false),
    });
    server.conns.lock().unwrap().insert(conn.id, conn.clone());
    let _ = events_tx.try_send(TransportEvent::Connected);
    let close = conn.close.clone();
    let served = serve(server.clone(), conn, from_client, out_rx, events_tx);
    match &server.runtime {
        Some(rt) => drop(rt.spawn(served)),
        None => drop(tokio::spawn(served)),
    }
    (to_server, events_rx, close)
}

#[async_trait]
impl TransportFactory for Factory {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error> {
        let (to_server, events_rx, close) = open_conn(&self.0);
        Ok((Arc::new(FakeTransport { to_server, close }), events_rx))
    }
}

impl FakeWa {
    /// Serves the same fake over TCP as well: a plain `ws://` websocket
    /// listener on 127.0.0.1 (port 0), for the real engine's own transport
    /// (`Config::whatsapp_url`) or a tunnel through a proxy. Returns the URL.
    /// The in-memory [`FakeWa::factory`] keeps working beside it.
    pub async fn listen(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake's websocket listener");
        let addr = listener.local_addr().expect("the listener's address");
        let server = self.inner.clone();
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                server.tcp_peers.lock().unwrap().push(peer);
                tokio::spawn(serve_websocket(server.clone(), tcp));
            }
        });
        format!("ws://{addr}/ws/chat")
    }

    /// The address of every TCP connection the websocket listener took, in order.
    pub fn tcp_peers(&self) -> Vec<std::net::SocketAddr> {
        self.inner.tcp_peers.lock().unwrap().clone()
    }

    /// The `Origin` of every websocket upgrade, in order.
    pub fn ws_origins(&self) -> Vec<String> {
        self.inner.ws_origins.lock().unwrap().clone()
    }
}

/// One TCP connection: the websocket upgrade, then binary messages both
/// ways between the socket and a connection of the fake.
async fn serve_websocket(server: Arc<Inner>, tcp: tokio::net::TcpStream) {
    use futures::{SinkExt, StreamExt};
    use tokio_websockets::Message;
    let (request, ws) = match tokio_websockets::ServerBuilder::new().accept(tcp).await {
        Ok(ok) => ok,
        Err(e) => {
            server.problem(format!("a websocket upgrade failed: {e}"));
            return;
        }
    };
    let origin = request
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    server.ws_origins.lock().unwrap().push(origin);
    let (to_server, events, close) = open_conn(&server);
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(m)) if m.is_binary() => {
                    if to_server.send(Bytes::from(m.into_payload())).is_err() {
                        break;
                    }
                }
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            event = events.recv() => match event {
                Ok(TransportEvent::DataReceived(data)) => {
                    if sink.send(Message::binary(data)).await.is_err() {
                        break;
                    }
                }
                Ok(TransportEvent::Connected) => {}
                Ok(TransportEvent::Disconnected(_)) | Err(_) => {
                    let _ = sink.send(Message::close(None, "")).await;
                    break;
                }
            },
        }
    }
    close.cancel();
}

/// The client's end of a connection.
struct FakeTransport {
    to_server: mpsc::UnboundedSender<Bytes>,
    close: CancellationToken,
}

#[async_trait]
impl Transport for FakeTransport {
    async fn send(&self, data: Bytes) -> Result<(), anyhow::Error> {
        self.to_server
            .send(data)
            .map_err(|_| anyhow::anyhow!("connection closed"))
    }

    async fn disconnect(&self) {
        self.close.cancel();
    }
}

/// Reads 3-byte-length frames from the client's byte stream.
struct Frames {
    buf: BytesMut,
    header_seen: bool,
}

impl Frames {
    fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            header_seen: false,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn next(&mut self) -> anyhow::Result<Option<BytesMut>> {
        if !self.header_seen {
            if self.buf.len() < WA_CONN_HEADER.len() {
                return Ok(None);
            }
            anyhow::ensure!(
                self.buf[..WA_CONN_HEADER.len()] == WA_CONN_HEADER,
                "the connection does not start with WhatsApp's header"
            );
            let _ = self.buf.split_to(WA_CONN_HEADER.len());
            self.header_seen = true;
        }
        if self.buf.len() < 3 {
            return Ok(None);
        }
        let len = (usize::from(self.buf[0]) << 16)
            | (usize::from(self.buf[1]) << 8)
            | usize::from(self.buf[2]);
        if self.buf.len() < 3 + len {
            return Ok(None);
        }
        let _ = self.buf.split_to(3);
        Ok(Some(self.buf.split_to(len)))
    }
}

fn frame(payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = Vec::with_capacity(3 + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

async fn next_frame(
    rx: &mut mpsc::UnboundedReceiver<Bytes>,
    frames: &mut Frames,
) -> anyhow::Result<BytesMut> {
    loop {
        if let Some(f) = frames.next()? {
            return Ok(f);
        }
        let data = rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("client went away"))?;
        frames.feed(&data);
    }
}

/// The server side of an established Noise session.
struct Secure {
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl Secure {
    fn open(&mut self, mut frame: BytesMut) -> anyhow::Result<Node> {
        self.read
            .decrypt_in_place_with_counter(self.read_counter, &mut frame)
            .map_err(|e| anyhow::anyhow!("decrypt: {e}"))?;
        self.read_counter += 1;
        let plain = whatsapp_rust::wacore_binary::util::unpack_bytes(frame)?;
        Ok(OwnedNodeRef::new(plain)?.to_owned_node())
    }

    fn seal(&mut self, node: &Node) -> anyhow::Result<Bytes> {
        let plain = marshal(node)?;
        let sealed = self
            .write
            .encrypt_with_counter(self.write_counter, &plain)
            .map_err(|e| anyhow::anyhow!("encrypt: {e}"))?;
        self.write_counter += 1;
        Ok(frame(&sealed))
    }
}

/// Runs the responder side of the handshake; returns the session and the client's payload.
async fn handshake(
    server: &Inner,
    rx: &mut mpsc::UnboundedReceiver<Bytes>,
    frames: &mut Frames,
    events: &async_channel::Sender<TransportEvent>,
) -> anyhow::Result<(Secure, wa::ClientPayload)> {
    let hello = wa::HandshakeMessage::decode_from_slice(&next_frame(rx, frames).await?)?;
    let hello = hello
        .client_hello
        .into_option()
        .ok_or_else(|| anyhow::anyhow!("no client hello"))?;
    let client_eph: [u8; 32] = hello
        .ephemeral
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no client ephemeral"))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad ephemeral"))?;
    let static_priv = server.static_key.private_key.serialize();
    let static_pub = server.static_key.public_key.public_key_bytes();
    let eph = KeyPair::generate(&mut rand010::rng());
    let eph_pub = eph.public_key.public_key_bytes().to_vec();

    if let (Some(enc_static), Some(enc_payload)) = (hello.r#static, hello.payload) {
        // IK: the client knows our static key and logs in with its first message.
        let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
        noise.authenticate(static_pub);
        noise.authenticate(&client_eph);
        noise.mix_shared_secret(static_priv, &client_eph)?;
        let client_static = noise.decrypt(&enc_static)?;
        noise.mix_shared_secret(static_priv, &client_static)?;
        let payload = noise.decrypt(&enc_payload)?;
        noise.authenticate(&eph_pub);
        noise.mix_shared_secret(eph.private_key.serialize(), &client_eph)?;
        noise.mix_shared_secret(eph.private_key.serialize(), &client_static)?;
        let cert = noise.encrypt(&server.cert_chain)?;
        let reply = wa::HandshakeMessage {
            server_hello: Some(wa::handshake_message::ServerHello {
                ephemeral: Some(eph_pub),
                payload: Some(cert),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        events.try_send(TransportEvent::DataReceived(frame(&reply.encode_to_vec())))?;
        let (read, write) = noise.finish()?;
        server.counters.ik.fetch_add(1, Ordering::Relaxed);
        let payload = wa::ClientPayload::decode_from_slice(&payload)?;
        return Ok((
            Secure {
                read,
                write,
                read_counter: 0,
                write_counter: 0,
            },
            payload,
        ));
    }

    // XX: exchange static keys, prove ours with the certificate chain.
    let mut noise = NoiseHandshake::new(NOISE_PATTERN_XX, &WA_CONN_HEADER)?;
    noise.authenticate(&client_eph);
    noise.authenticate(&eph_pub);
    noise.mix_shared_secret(eph.private_key.serialize(), &client_eph)?;
    let enc_static = noise.encrypt(static_pub)?;
    noise.mix_shared_secret(static_priv, &client_eph)?;
    let cert = noise.encrypt(&server.cert_chain)?;
    let reply = wa::HandshakeMessage {
        server_hello: Some(wa::handshake_message::ServerHello {
            ephemeral: Some(eph_pub),
            r#static: Some(enc_static),
            payload: Some(cert),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    events.try_send(TransportEvent::DataReceived(frame(&reply.encode_to_vec())))?;
    let finish = wa::HandshakeMessage::decode_from_slice(&next_frame(rx, frames).await?)?;
    let finish = finish
        .client_finish
        .into_option()
        .ok_or_else(|| anyhow::anyhow!("no client finish"))?;
    let client_static = noise.decrypt(
        finish
            .r#static
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no client static"))?,
    )?;
    noise.mix_shared_secret(eph.private_key.serialize(), &client_static)?;
    let payload = noise.decrypt(
        finish
            .payload
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no client payload"))?,
    )?;
    let (read, write) = noise.finish()?;
    server.counters.xx.fetch_add(1, Ordering::Relaxed);
    let payload = wa::ClientPayload::decode_from_slice(&payload)?;
    Ok((
        Secure {
            read,
            write,
            read_counter: 0,
            write_counter: 0,
        },
        payload,
    ))
}

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs().optional_string(key).map(|s| s.into_owned())
}

fn children(node: &Node) -> &[Node] {
    match &node.content {
        Some(NodeContent::Nodes(n)) => n,
        _ => &[],
    }
}

/// A stanza in short, for the problem record: its tag, attributes and
/// children's tags (not its bytes).
fn show(node: &Node) -> String {
    let attrs: Vec<String> = node.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let kids: Vec<String> = children(node).iter().map(show).collect();
    format!("<{} {}>[{}]", node.tag, attrs.join(" "), kids.join(", "))
}

fn iq_result(id: &str) -> Node {
    NodeBuilder::new("iq")
        .attrs([
            ("from", SERVER.to_string()),
            ("type", "result".to_string()),
            ("id", id.to_string()),
        ])
        .build()
}

fn iq_error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attrs([
            ("from", SERVER.to_string()),
            ("type", "error".to_string()),
            ("id", id.to_string()),
        ])
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text.to_string())
            .build()])
        .build()
}

async fn serve(
    server: Arc<Inner>,
    conn: Arc<Conn>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    mut out: mpsc::UnboundedReceiver<Node>,
    events: async_channel::Sender<TransportEvent>,
) {
    let reason = match run_conn(&server, &conn, &mut rx, &mut out, &events).await {
        Ok(()) => DisconnectReason::ServerClose {
            code: Some(1000),
            reason: "closed by the fake server".into(),
        },
        Err(e) => DisconnectReason::ReadError(format!("{e:#}")),
    };
    server.conns.lock().unwrap().remove(&conn.id);
    server.changed.notify_waiters();
    let _ = events.try_send(TransportEvent::Disconnected(reason));
    events.close();
}

async fn run_conn(
    server: &Arc<Inner>,
    conn: &Arc<Conn>,
    rx: &mut mpsc::UnboundedReceiver<Bytes>,
    out: &mut mpsc::UnboundedReceiver<Node>,
    events: &async_channel::Sender<TransportEvent>,
) -> anyhow::Result<()> {
    let mut frames = Frames::new();
    let (mut secure, payload) = tokio::select! {
        r = handshake(server, rx, &mut frames, events) => r?,
        _ = conn.close.cancelled() => return Ok(()),
    };
    let send = |secure: &mut Secure, node: &Node| -> anyhow::Result<()> {
        events.try_send(TransportEvent::DataReceived(secure.seal(node)?))?;
        Ok(())
    };

    match payload.username {
        None => {
            // A new device: ask it to show QR codes.
            server
                .counters
                .pair_requests
                .fetch_add(1, Ordering::Relaxed);
            let refs: Vec<String> = (0..REFS)
                .map(|_| format!("2@{}", uuid::Uuid::new_v4().simple()))
                .collect();
            *conn.refs.lock().unwrap() = refs.clone();
            let iq = NodeBuilder::new("iq")
                .attrs([
                    ("from", SERVER.to_string()),
                    ("type", "set".to_string()),
                    ("id", format!("pd-{}", conn.id)),
                    ("xmlns", "md".to_string()),
                ])
                .children([NodeBuilder::new("pair-device")
                    .children(
                        refs.into_iter()
                            .map(|r| NodeBuilder::new("ref").bytes(r.into_bytes()).build()),
                    )
                    .build()])
                .build();
            send(&mut secure, &iq)?;
        }
        Some(username) => {
            let phone = username.to_string();
            let device = server.devices.lock().unwrap().get(&phone).cloned();
            match device {
                Some(d) if payload.device == Some(d.device) => {
                    let success = NodeBuilder::new("success")
                        .attr("t", chrono::Utc::now().timestamp().to_string())
                        .attr("lid", format!("{}@lid", d.lid))
                        .build();
                    send(&mut secure, &success)?;
                    *conn.phone.lock().unwrap() = Some(phone);
                    server.counters.logins.fetch_add(1, Ordering::Relaxed);
                    server.changed.notify_waiters();
                }
                _ => {
                    // Unlinked (or never paired here): refuse as logged out.
                    let failure = NodeBuilder::new("failure").attr("reason", "401").build();
                    send(&mut secure, &failure)?;
                    return Ok(());
                }
            }
        }
    }

    loop {
        tokio::select! {
            _ = conn.close.cancelled() => return Ok(()),
            node = out.recv() => {
                let Some(node) = node else { return Ok(()) };
                send(&mut secure, &node)?;
            }
            data = rx.recv() => {
                let Some(data) = data else { return Ok(()) };
                frames.feed(&data);
                while let Some(f) = frames.next()? {
                    let node = secure.open(f)?;
                    for reply in respond(server, conn, &node).await {
                        send(&mut secure, &reply)?;
                    }
                    if node.tag == "iq" && attr(&node, "type").as_deref() == Some("result")
                        && children(&node).iter().any(|c| c.tag == "pair-device-sign")
                    {
                        // Paired: restart the stream, as WhatsApp does.
                        let restart = NodeBuilder::new("stream:error").attr("code", "515").build();
                        send(&mut secure, &restart)?;
                    }
                }
            }
        }
    }
}

/// The server's answers to one client stanza.
async fn respond(server: &Inner, conn: &Conn, node: &Node) -> Vec<Node> {
    match node.tag.as_ref() {
        "iq" => {}
        "message" => {
            let to = attr(node, "to").unwrap_or_default();
            server
                .outbound
                .lock()
                .unwrap()
                .push(format!("message {to}"));
            return network::client_message(server, conn, node).await;
        }
        "chatstate" => {
            let to = attr(node, "to").unwrap_or_default();
            let first = children(node).first().cloned();
            let state = first.as_ref().map(|c| {
                if c.tag == "composing" && attr(c, "media").as_deref() == Some("audio") {
                    "recording".to_string()
                } else {
                    c.tag.to_string()
                }
            });
            match state {
                Some(state) if ["composing", "recording", "paused"].contains(&state.as_str()) => {
                    server
                        .outbound
                        .lock()
                        .unwrap()
                        .push(format!("chatstate {state} {to}"));
                }
                _ => server.problem(format!(
                    "a chat state the fake does not know: {}",
                    show(node)
                )),
            }
            return Vec::new();
        }
        "receipt" => {
            network::client_receipt(server, node);
            return Vec::new();
        }
        // Online / offline.
        "presence" => {
            let kind = attr(node, "type").unwrap_or_else(|| "available".into());
            server
                .outbound
                .lock()
                .unwrap()
                .push(format!("presence {kind}"));
            return Vec::new();
        }
        // The client's acks of what we pushed.
        "ack" => return Vec::new(),
        // The client's session marker (for the server's analytics).
        "ib" if children(node).iter().all(|c| c.tag == "unified_session") => return Vec::new(),
        _ => {
            server.problem(format!("a stanza the fake does not know: {}", show(node)));
            return Vec::new();
        }
    }
    let id = attr(node, "id").unwrap_or_default();
    let kind = attr(node, "type").unwrap_or_default();
    if kind != "get" && kind != "set" {
        if kind == "error" {
            server.problem(format!(
                "the client answered an IQ with an error: {}",
                show(node)
            ));
        }
        return Vec::new();
    }
    let xmlns = attr(node, "xmlns").unwrap_or_default();
    if xmlns == "w:p" && conn.deaf.load(Ordering::Relaxed) {
        server
            .counters
            .pings_ignored
            .fetch_add(1, Ordering::Relaxed);
        return Vec::new();
    }
    let first = children(node).first();
    match xmlns.as_str() {
        // Exiting passive mode: the offline queue is empty.
        "passive" => vec![
            iq_result(&id),
            NodeBuilder::new("ib")
                .children([NodeBuilder::new("offline").attr("count", "0").build()])
                .build(),
        ],
        // No app-state collections here: each one asked for is refused (404),
        // which the client takes as final and connects without it.
        "w:sync:app:state" => {
            let refused = first
                .map(children)
                .unwrap_or_default()
                .iter()
                .filter(|c| c.tag == "collection")
                .filter_map(|c| attr(c, "name"))
                .map(|name| {
                    NodeBuilder::new("collection")
                        .attr("name", name)
                        .attr("type", "error")
                        .children([NodeBuilder::new("error")
                            .attr("code", "404")
                            .attr("text", "item-not-found")
                            .build()])
                        .build()
                });
            vec![
                NodeBuilder::new("iq")
                    .attrs([
                        ("from", SERVER.to_string()),
                        ("type", "result".to_string()),
                        ("id", id.clone()),
                    ])
                    .children([NodeBuilder::new("sync").children(refused).build()])
                    .build(),
            ]
        }
        "md" if first.is_some_and(|c| c.tag == "link_code_companion_reg") => {
            pair_code::iq(server, conn, node, first.unwrap())
        }
        // Media uploads and downloads go to the fake CDN.
        "w:m" if first.is_some_and(|c| c.tag == "media_conn") => vec![cdn::media_conn(&id)],
        "md" if first.is_some_and(|c| c.tag == "remove-companion-device") => {
            if let Some(phone) = conn.phone.lock().unwrap().clone() {
                server.devices.lock().unwrap().remove(&phone);
            }
            vec![iq_result(&id)]
        }
        // Every account is in one group.
        "w:g2" if first.is_some_and(|c| c.tag == "participating") => vec![
            NodeBuilder::new("iq")
                .attrs([
                    ("from", "g.us".to_string()),
                    ("type", "result".to_string()),
                    ("id", id.clone()),
                ])
                .children([NodeBuilder::new("groups")
                    .children([NodeBuilder::new("group")
                        .attr("id", FAKE_GROUP)
                        .attr("subject", "Fake Group")
                        .attr("addressing_mode", "pn")
                        .build()])
                    .build()])
                .build(),
        ],
        "encrypt" => network::encrypt_iq(server, conn, node).await,
        "usync" => network::usync_iq(server, conn, node),
        _ => {
            if !ANSWERED_EMPTY.contains(&xmlns.as_str()) {
                server.problem(format!("an IQ the fake does not answer: {}", show(node)));
            }
            vec![iq_result(&id)]
        }
    }
}

/// IQs for which an empty result is the fake's real answer: pings, and
/// settings and lists it keeps none of (server props, the block list,
/// privacy settings and the privacy tokens the client issues to contacts).
const ANSWERED_EMPTY: &[&str] = &["w:p", "abt", "blocklist", "privacy"];
