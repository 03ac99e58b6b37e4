//! A proxy per instance: `proxyUrl` through the API (checked, credentials
//! sealed and never shown), and the real engine's connections to the fake
//! WhatsApp server (over TCP) through SOCKS5 and HTTP CONNECT proxies run
//! by the test, which record every tunnel and the credentials they got.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use wa_gateway::config::EngineKind;
use wa_gateway::store::RecordedEvent;

use crate::fake_wa::FakeWa;
use crate::helpers::{As, TestApp};
use crate::receiver::Receiver;

/// The first connect after pairing waits ~10 s on purpose (the client's
/// grace for the phone's app-state keys).
const LONG_WAIT: Duration = Duration::from_secs(60);
const PHONE: &str = "79005550177";
const SOCKS_USER: &str = "alice";
const SOCKS_PASSWORD: &str = "S0cks-pw-never-shown";
const HTTP_USER: &str = "bob";
const HTTP_PASSWORD: &str = "Http-pw-never-shown";

/// The protocol a [`TestProxy`] speaks.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Socks5,
    Http,
}

/// One tunnel a [`TestProxy`] opened.
#[derive(Debug, Clone)]
struct Tunnel {
    /// `host:port` the client asked for.
    target: String,
    /// The credentials it presented.
    username: Option<String>,
    password: Option<String>,
    /// The local address of the proxy's own connection to the target.
    outbound: SocketAddr,
}

#[derive(Default)]
struct Record {
    tunnels: Vec<Tunnel>,
    /// Attempts refused for their credentials.
    refused: usize,
}

/// A small SOCKS5 or HTTP CONNECT proxy on 127.0.0.1: checks credentials
/// (when it has some), records each tunnel, relays bytes both ways.
#[derive(Clone)]
struct TestProxy {
    addr: SocketAddr,
    kind: Kind,
    record: Arc<Mutex<Record>>,
    changed: Arc<Notify>,
}

impl TestProxy {
    async fn start(kind: Kind, credentials: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            kind,
            record: Arc::default(),
            changed: Arc::default(),
        };
        let creds = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (p, creds) = (p.clone(), creds.clone());
                tokio::spawn(async move {
                    let _ = p.serve(client, creds).await;
                    p.changed.notify_waiters();
                });
            }
        });
        proxy
    }

    /// The `proxyUrl` of this proxy with `credentials`.
    fn url(&self, credentials: Option<(&str, &str)>) -> String {
        let scheme = match self.kind {
            Kind::Socks5 => "socks5",
            Kind::Http => "http",
        };
        match credentials {
            Some((u, p)) => format!("{scheme}://{u}:{p}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    fn tunnels(&self) -> Vec<Tunnel> {
        self.record.lock().unwrap().tunnels.clone()
    }

    fn refused(&self) -> usize {
        self.record.lock().unwrap().refused
    }

    /// Waits until `done` holds for the record.
    async fn wait_until(&self, what: &str, done: impl Fn(&Record) -> bool) {
        tokio::time::timeout(LONG_WAIT, async {
            loop {
                let notified = self.changed.notified();
                if done(&self.record.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the proxy never saw {what}"));
    }

    async fn serve(
        &self,
        mut client: TcpStream,
        creds: Option<(String, String)>,
    ) -> std::io::Result<()> {
        let asked = match self.kind {
            Kind::Socks5 => socks5_accept(&mut client, creds.as_ref()).await?,
            Kind::Http => http_accept(&mut client, creds.as_ref()).await?,
        };
        let Ok((target, username, password)) = asked else {
            self.record.lock().unwrap().refused += 1;
            return Ok(());
        };
        let mut upstream = TcpStream::connect(&target).await?;
        match self.kind {
            Kind::Socks5 => client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?,
            Kind::Http => {
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await?
            }
        }
        self.record.lock().unwrap().tunnels.push(Tunnel {
            target,
            username,
            password,
            outbound: upstream.local_addr()?,
        });
        self.changed.notify_waiters();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        Ok(())
    }
}

/// What a proxy handshake asked for: the target and the credentials
/// given, or `Err` when they were refused.
type Asked = Result<(String, Option<String>, Option<String>), ()>;

/// The server side of SOCKS5 (RFC 1928, RFC 1929).
async fn socks5_accept(
    c: &mut TcpStream,
    creds: Option<&(String, String)>,
) -> std::io::Result<Asked> {
    let mut head = [0u8; 2];
    c.read_exact(&mut head).await?;
    assert_eq!(head[0], 5, "a SOCKS5 greeting");
    let mut methods = vec![0u8; usize::from(head[1])];
    c.read_exact(&mut methods).await?;
    let (mut username, mut password) = (None, None);
    match creds {
        None => c.write_all(&[5, 0]).await?,
        Some((user, pass)) => {
            if !methods.contains(&2) {
                c.write_all(&[5, 0xff]).await?;
                return Ok(Err(()));
            }
            c.write_all(&[5, 2]).await?;
            let mut ver_len = [0u8; 2];
            c.read_exact(&mut ver_len).await?;
            let mut u = vec![0u8; usize::from(ver_len[1])];
            c.read_exact(&mut u).await?;
            let mut plen = [0u8; 1];
            c.read_exact(&mut plen).await?;
            let mut p = vec![0u8; usize::from(plen[0])];
            c.read_exact(&mut p).await?;
            let (u, p) = (String::from_utf8_lossy(&u), String::from_utf8_lossy(&p));
            if u != *user || p != *pass {
                c.write_all(&[1, 1]).await?;
                return Ok(Err(()));
            }
            c.write_all(&[1, 0]).await?;
            username = Some(u.into_owned());
            password = Some(p.into_owned());
        }
    }
    let mut req = [0u8; 4];
    c.read_exact(&mut req).await?;
    assert_eq!(&req[..3], &[5, 1, 0], "a SOCKS5 CONNECT");
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a).await?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            c.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            c.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        other => panic!("an address type the test proxy does not take: {other}"),
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port).await?;
    Ok(Ok((
        format!("{host}:{}", u16::from_be_bytes(port)),
        username,
        password,
    )))
}

/// The server side of HTTP CONNECT with Basic proxy credentials.
async fn http_accept(
    c: &mut TcpStream,
    creds: Option<&(String, String)>,
) -> std::io::Result<Asked> {
    use base64::Engine as _;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut byte).await? == 0 {
            return Ok(Err(()));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default();
    let target = request
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split_whitespace().next())
        .expect("a CONNECT request")
        .to_string();
    let given = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
        .and_then(|(_, v)| v.trim().strip_prefix("Basic ").map(str::to_string))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|raw| String::from_utf8_lossy(&raw).into_owned())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    match (creds, given) {
        (None, given) => Ok(Ok((
            target,
            given.as_ref().map(|g| g.0.clone()),
            given.map(|g| g.1),
        ))),
        (Some(want), Some(got)) if *want == got => Ok(Ok((target, Some(got.0), Some(got.1)))),
        (Some(_), _) => {
            c.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\ncontent-length: 0\r\n\r\n",
            )
            .await?;
            Ok(Err(()))
        }
    }
}

/// A gateway on the real engine that dials the fake server at `ws_url` over TCP.
async fn gateway_over_tcp(ws_url: &str) -> TestApp {
    let url = ws_url.to_string();
    TestApp::spawn_with(move |c| {
        c.engine = EngineKind::WhatsApp;
        c.whatsapp_url = Some(url);
        c.whatsapp_version = Some((2, 3000, 1_023_456_789));
    })
    .await
}

/// The `host:port` of a `ws://host:port/...` URL.
fn ws_authority(ws_url: &str) -> String {
    ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Waits for the `nth` (1-based) event of a type for an instance, up to
/// `LONG_WAIT` (the harness's own wait is shorter than a first login).
async fn nth_event(app: &TestApp, id: &str, event_type: &str, nth: usize) -> RecordedEvent {
    let mut sub = app.state.store.subscribe(0);
    let mut seen = 0;
    tokio::time::timeout(LONG_WAIT, async {
        loop {
            let batch = sub.next_batch().await.expect("read the log").expect("open");
            for e in batch {
                if e.instance_id.as_deref() == Some(id) && e.event_type == event_type {
                    seen += 1;
                    if seen == nth {
                        return RecordedEvent::clone(&e);
                    }
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {nth}th {event_type} for {id} within {LONG_WAIT:?}"))
}

/// Every event of the log as text (data and metadata).
async fn log_text(app: &TestApp) -> String {
    app.events()
        .await
        .iter()
        .map(|e| format!("{} {} {:?}\n", e.event_type, e.data, e.metadata))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_real_engine_pairs_through_a_socks5_proxy_then_follows_a_change_to_an_http_proxy() {
    let fake = FakeWa::new();
    let ws_url = fake.listen().await;
    let target = ws_authority(&ws_url);
    let socks = TestProxy::start(Kind::Socks5, Some((SOCKS_USER, SOCKS_PASSWORD))).await;
    let http = TestProxy::start(Kind::Http, Some((HTTP_USER, HTTP_PASSWORD))).await;
    let app = gateway_over_tcp(&ws_url).await;
    let key = app.admin.api_key.clone();

    // Created with a SOCKS5 proxy: the answer shows it without its credentials.
    let created = app
        .post(
            "/api/instances",
            As::Key(&key),
            json!({"name": "proxied", "proxyUrl": socks.url(Some((SOCKS_USER, SOCKS_PASSWORD)))}),
        )
        .await
        .expect(200);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["proxyUrl"], format!("socks5://{}", socks.addr));
    assert_eq!(created["proxyAuth"], true);

    // The real client reaches the fake server only through the proxy: QR,
    // the fake phone's scan, the 515 restart, login.
    let qr = nth_event(&app, &id, "qr_received", 1).await;
    let code = qr.data["qrCode"].as_str().unwrap().to_string();
    fake.scan(&code, PHONE).await.expect("scan");
    let opened = nth_event(&app, &id, "connection_opened", 1).await;
    assert_eq!(opened.data["phone"], PHONE);
    let tunnels = socks.tunnels();
    assert!(
        tunnels.len() >= 2,
        "the first connect and the one after the 515 restart: {tunnels:?}"
    );
    for t in &tunnels {
        assert_eq!(t.target, target, "the proxy was asked for the fake server");
        assert_eq!(t.username.as_deref(), Some(SOCKS_USER));
        assert_eq!(t.password.as_deref(), Some(SOCKS_PASSWORD));
    }
    let via_socks: Vec<SocketAddr> = tunnels.iter().map(|t| t.outbound).collect();
    let peers = fake.tcp_peers();
    assert!(
        peers.iter().all(|p| via_socks.contains(p)),
        "every connection the fake server took came out of the proxy: {peers:?} vs {via_socks:?}"
    );
    assert!(
        fake.ws_origins()
            .iter()
            .all(|o| o == "https://web.whatsapp.com"),
        "the upgrade through the tunnel carries WhatsApp Web's origin: {:?}",
        fake.ws_origins()
    );

    // Read back: the proxy without credentials; the password is sealed at rest.
    let detail = app
        .get(&format!("/api/instances/{id}"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(detail["proxyUrl"], format!("socks5://{}", socks.addr));
    assert_eq!(detail["proxyAuth"], true);
    assert!(!detail.to_string().contains(SOCKS_PASSWORD), "{detail}");
    let (url, auth): (String, String) =
        sqlx::query_as("SELECT proxy_url, proxy_auth FROM instances WHERE id = ?")
            .bind(&id)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(url, format!("socks5://{}", socks.addr));
    assert!(
        auth.starts_with("enc:v1:") && !auth.contains(SOCKS_PASSWORD) && !auth.contains(SOCKS_USER),
        "sealed at rest: {auth}"
    );

    // A new proxy: the connected instance reconnects through it.
    let socks_before = socks.tunnels().len();
    let peers_before = fake.tcp_peers().len();
    let updated = app
        .put(
            &format!("/api/instances/{id}"),
            As::Key(&key),
            json!({"proxyUrl": http.url(Some((HTTP_USER, HTTP_PASSWORD)))}),
        )
        .await
        .expect(200);
    assert_eq!(updated["proxyUrl"], format!("http://{}", http.addr));
    assert_eq!(updated["proxyAuth"], true);
    nth_event(&app, &id, "connection_opened", 2).await;
    let via_http = http.tunnels();
    assert!(!via_http.is_empty());
    for t in &via_http {
        assert_eq!(t.target, target);
        assert_eq!(t.username.as_deref(), Some(HTTP_USER));
        assert_eq!(t.password.as_deref(), Some(HTTP_PASSWORD));
    }
    assert_eq!(
        socks.tunnels().len(),
        socks_before,
        "the old proxy is not used"
    );
    let outbound: Vec<SocketAddr> = via_http.iter().map(|t| t.outbound).collect();
    let new_peers = fake.tcp_peers()[peers_before..].to_vec();
    assert!(!new_peers.is_empty());
    assert!(
        new_peers.iter().all(|p| outbound.contains(p)),
        "{new_peers:?} vs {outbound:?}"
    );

    // Removed: the next connect is direct.
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&key),
        json!({"proxyUrl": null}),
    )
    .await
    .expect(200);
    nth_event(&app, &id, "connection_opened", 3).await;
    let last = *fake.tcp_peers().last().unwrap();
    assert!(
        !http.tunnels().iter().any(|t| t.outbound == last)
            && !socks.tunnels().iter().any(|t| t.outbound == last),
        "the last connection came straight from the gateway"
    );
    let detail = app
        .get(&format!("/api/instances/{id}"), As::Key(&key))
        .await
        .expect(200);
    assert!(detail.get("proxyUrl").is_none(), "{detail}");

    // The log has the proxies without their credentials.
    let log = log_text(&app).await;
    for secret in [SOCKS_PASSWORD, HTTP_PASSWORD] {
        assert!(!log.contains(secret), "a proxy password in the log");
    }
    let updates = app.instance_events(&id, "instance_updated").await;
    assert_eq!(
        updates[0].data["proxy"],
        json!({"url": format!("http://{}", http.addr), "auth": true})
    );
    assert_eq!(updates[0].data["proxyChanged"], true);
    assert!(updates[1].data.get("proxy").is_none());
    // Each switch closed the open connection before the next one opened.
    let sequence: Vec<String> = app
        .events()
        .await
        .iter()
        .filter(|e| e.instance_id.as_deref() == Some(id.as_str()))
        .filter_map(|e| match e.event_type.as_str() {
            "connection_opened" => Some("opened".to_string()),
            "connection_closed" => Some(format!("closed:{}", e.data["reason"].as_str().unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(
        sequence,
        [
            "opened",
            "closed:reconnect",
            "opened",
            "closed:reconnect",
            "opened"
        ]
    );
    fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_proxy_credentials_keep_the_instance_away_from_whatsapp_and_out_of_the_log() {
    let fake = FakeWa::new();
    let ws_url = fake.listen().await;
    let socks = TestProxy::start(Kind::Socks5, Some((SOCKS_USER, SOCKS_PASSWORD))).await;
    let app = gateway_over_tcp(&ws_url).await;
    let key = app.admin.api_key.clone();
    let wrong = "Wr0ng-pw-never-shown";
    let id = app
        .create_instance(
            &app.admin,
            json!({"name": "refused", "proxyUrl": socks.url(Some((SOCKS_USER, wrong)))}),
        )
        .await;
    // The client retries on its own; two refusals show it keeps to the proxy.
    socks
        .wait_until("two refused logins", |r| r.refused >= 2)
        .await;
    assert!(socks.tunnels().is_empty());
    assert!(
        fake.tcp_peers().is_empty(),
        "no direct connection instead of the proxy"
    );
    let st = app
        .get(&format!("/api/whatsapp/{id}/status"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(st["status"], "connecting", "{st}");
    assert!(!log_text(&app).await.contains(wrong));
    assert!(socks.refused() >= 2);
}

#[tokio::test]
async fn a_malformed_proxy_url_is_a_400_that_changes_nothing_and_does_not_echo_the_password() {
    let app = TestApp::spawn().await;
    let key = app.admin.api_key.clone();
    let id = app.create_instance(&app.admin, json!({"name": "p"})).await;
    let before = app.command_events().await.len();
    for bad in [
        "ftp://u:Bad-pw-1@proxy.example.com:21",
        "socks5://u:Bad-pw-1@proxy.example.com",
        "socks5://u:Bad-pw-1@:1080",
        "socks5://u:Bad-pw-1@proxy.example.com:0",
        "https://u:Bad-pw-1@proxy.example.com:443",
        "http://u:Bad-pw-1@proxy.example.com:3128/path",
        "proxy.example.com:1080",
    ] {
        let create = app
            .post(
                "/api/instances",
                As::Key(&key),
                json!({"name": "x", "proxyUrl": bad}),
            )
            .await
            .expect_error(400);
        assert_eq!(create["error"], "bad_request", "{bad}: {create}");
        assert!(
            create["message"].as_str().unwrap().contains("proxyUrl"),
            "{bad}: {create}"
        );
        assert!(!create.to_string().contains("Bad-pw-1"), "{bad}: {create}");
        let update = app
            .put(
                &format!("/api/instances/{id}"),
                As::Key(&key),
                json!({"proxyUrl": bad, "name": "renamed"}),
            )
            .await
            .expect_error(400);
        assert!(!update.to_string().contains("Bad-pw-1"), "{bad}: {update}");
    }
    assert_eq!(app.command_events().await.len(), before, "nothing recorded");
    let detail = app
        .get(&format!("/api/instances/{id}"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(detail["name"], "p");
    assert!(detail.get("proxyUrl").is_none());
}

#[tokio::test]
async fn a_proxy_is_shown_without_credentials_kept_through_other_changes_and_removed_with_an_empty_url()
 {
    // The simulated network has no network to proxy: it ignores the proxy,
    // which is still checked, stored and shown.
    let app = TestApp::spawn().await;
    let key = app.admin.api_key.clone();
    let id = app
        .create_instance(
            &app.admin,
            json!({"name": "p", "proxyUrl": "socks5h://us%40er:p%40ss-Word9@Proxy.Example.com:1080"}),
        )
        .await;
    let detail = app
        .get(&format!("/api/instances/{id}"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(detail["proxyUrl"], "socks5://proxy.example.com:1080");
    assert_eq!(detail["proxyAuth"], true);
    // Another change keeps it.
    app.put(
        &format!("/api/instances/{id}"),
        As::Key(&key),
        json!({"name": "renamed"}),
    )
    .await
    .expect(200);
    let detail = app
        .get(&format!("/api/instances/{id}"), As::Key(&key))
        .await
        .expect(200);
    assert_eq!(detail["proxyUrl"], "socks5://proxy.example.com:1080");
    // Without credentials, on the default HTTP port.
    let updated = app
        .put(
            &format!("/api/instances/{id}"),
            As::Key(&key),
            json!({"proxyUrl": "http://10.1.2.3"}),
        )
        .await
        .expect(200);
    assert_eq!(updated["proxyUrl"], "http://10.1.2.3:80");
    assert_eq!(updated["proxyAuth"], false);
    let updated = app
        .put(
            &format!("/api/instances/{id}"),
            As::Key(&key),
            json!({"proxyUrl": ""}),
        )
        .await
        .expect(200);
    assert!(updated.get("proxyUrl").is_none() && updated.get("proxyAuth").is_none());
    let created = app.instance_events(&id, "instance_created").await;
    assert_eq!(
        created[0].data["proxy"],
        json!({"url": "socks5://proxy.example.com:1080", "auth": true})
    );
    let log = log_text(&app).await;
    assert!(!log.contains("p@ss-Word9") && !log.contains("p%40ss-Word9"));
    let changed: Vec<bool> = app
        .instance_events(&id, "instance_updated")
        .await
        .iter()
        .map(|e| e.data["proxyChanged"] == true)
        .collect();
    assert_eq!(changed, vec![false, true, true]);
}

#[tokio::test]
async fn private_proxy_addresses_are_refused_when_the_operator_says_so() {
    let app = TestApp::spawn_with(|c| c.proxy_allow_private = false).await;
    let key = app.admin.api_key.clone();
    for private in [
        "socks5://127.0.0.1:1080",
        "socks5://localhost:1080",
        "http://[::1]:3128",
        "http://192.168.0.10:3128",
        "socks5://169.254.169.254:1080",
    ] {
        let err = app
            .post(
                "/api/instances",
                As::Key(&key),
                json!({"name": "x", "proxyUrl": private}),
            )
            .await
            .expect_error(400);
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("WA_PROXY_ALLOW_PRIVATE"),
            "{private}: {err}"
        );
    }
    app.post(
        "/api/instances",
        As::Key(&key),
        json!({"name": "x", "proxyUrl": "socks5://proxy.example.com:1080"}),
    )
    .await
    .expect(200);
}

/// A gateway binary (the real engine, debug logs into files) and what it wrote.
struct Process {
    child: tokio::process::Child,
    base: String,
    key: String,
}

impl Process {
    async fn start(dir: &Path, ws_url: &str) -> Self {
        let port = Receiver::reserve_port();
        let bin = std::env::var("WA_TEST_GATEWAY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_wa-gateway").to_string());
        let out = std::fs::File::create(dir.join("stdout.log")).unwrap();
        let err = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = tokio::process::Command::new(bin)
            .env("WA_ENGINE", "whatsapp")
            .env("WA_WHATSAPP_URL", ws_url)
            .env("WA_WHATSAPP_VERSION", "2.3000.1023456789")
            .env("WA_DATA_DIR", dir.join("data"))
            .env("WA_LISTEN", format!("127.0.0.1:{port}"))
            .env("WA_ADMIN_PASSWORD", "admin-password")
            .env("WA_LOG", "debug")
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + LONG_WAIT;
        loop {
            // A process that is starting: there is nothing to subscribe to.
            if let Ok(r) = client
                .post(format!("{base}/api/auth/login"))
                .json(&json!({"email": "admin@localhost", "password": "admin-password"}))
                .send()
                .await
            {
                let body: Value = r.json().await.unwrap();
                let key = body["user"]["apiKey"].as_str().unwrap().to_string();
                return Self { child, base, key };
            }
            assert!(Instant::now() < deadline, "the gateway did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// Polls `GET path` until it answers 200 and `done` holds for the answer.
    async fn poll(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + LONG_WAIT;
        loop {
            let resp = reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .header("x-api-key", &self.key)
                .send()
                .await
                .unwrap();
            let ok = resp.status().is_success();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if ok && done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} never got there: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateways_logs_and_event_log_never_hold_the_proxy_credentials() {
    let fake = FakeWa::new();
    let ws_url = fake.listen().await;
    let socks = TestProxy::start(Kind::Socks5, Some((SOCKS_USER, SOCKS_PASSWORD))).await;
    let http = TestProxy::start(Kind::Http, Some((HTTP_USER, HTTP_PASSWORD))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Process::start(dir.path(), &ws_url).await;

    let created = gw
        .call(
            reqwest::Method::POST,
            "/api/instances",
            Some(json!({"name": "logged", "proxyUrl": socks.url(Some((SOCKS_USER, SOCKS_PASSWORD)))})),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let qr = gw
        .poll(&format!("/api/instances/{id}/qr"), |v| {
            v["qrCode"].is_string()
        })
        .await;
    fake.scan(qr["qrCode"].as_str().unwrap(), PHONE)
        .await
        .expect("scan");
    gw.poll(&format!("/api/whatsapp/{id}/status"), |v| {
        v["status"] == "connected"
    })
    .await;
    // A wrong password, then the right proxy: refusals and reconnects are logged too.
    gw.call(
        reqwest::Method::PUT,
        &format!("/api/instances/{id}"),
        Some(json!({"proxyUrl": http.url(Some((HTTP_USER, "Wr0ng-pw-never-shown")))})),
    )
    .await;
    http.wait_until("a refused login", |r| r.refused >= 1).await;
    gw.call(
        reqwest::Method::PUT,
        &format!("/api/instances/{id}"),
        Some(json!({"proxyUrl": http.url(Some((HTTP_USER, HTTP_PASSWORD)))})),
    )
    .await;
    http.wait_until("a tunnel", |r| !r.tunnels.is_empty()).await;
    gw.poll(&format!("/api/whatsapp/{id}/status"), |v| {
        v["status"] == "connected"
    })
    .await;
    assert!(socks.tunnels().len() >= 2 && !http.tunnels().is_empty());
    gw.child.kill().await.unwrap();

    let logs = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap()
        + &std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        logs.contains("connecting through the instance's proxy")
            && logs.contains(&format!("http://{}", http.addr)),
        "the log names the proxy (without credentials)"
    );
    let db = rusqlite::Connection::open(dir.path().join("data/events.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT data || ' ' || metadata FROM events")
        .unwrap();
    let events: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.contains(&format!("socks5://{}", socks.addr)))
    );
    for secret in [SOCKS_PASSWORD, HTTP_PASSWORD, "Wr0ng-pw-never-shown"] {
        assert!(!logs.contains(secret), "a proxy password in the server log");
        assert!(
            !events.iter().any(|e| e.contains(secret)),
            "a proxy password in the event log"
        );
    }
}
