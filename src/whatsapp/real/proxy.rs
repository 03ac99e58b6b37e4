//! The real engine through an instance's proxy: the websocket to WhatsApp
//! and the client's HTTPS requests (media up- and downloads) leave through
//! it.
//!
//! - [`ProxyTransportFactory`] dials the proxy, asks it for a tunnel to
//!   WhatsApp's host (SOCKS5, RFC 1928 with RFC 1929 username/password, or
//!   HTTP `CONNECT` with `Proxy-Authorization: Basic`; written here, a few
//!   dozen lines each), then runs TLS (for `wss://`) and the websocket
//!   upgrade over the tunnel, as the crate's own transport does over TCP.
//!   The proxy resolves WhatsApp's host name; the gateway's resolver only
//!   sees the proxy's.
//! - [`http_client`] is the crate's ureq client on an agent whose proxy is
//!   the same one.
//! - [`StoredProxies`] reads an instance's proxy (its credentials unsealed)
//!   when a session starts, so a change takes effect on the next connect.
//!
//! No error or log line carries the credentials: they are held in a
//! [`crate::config::Secret`] and written only into the handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine as _;
use sqlx::SqlitePool;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use whatsapp_rust::transport::{
    Connector, Transport, TransportEvent, TransportFactory, default_tls_connector, from_websocket,
};

use crate::domain::proxy::{ProxyCredentials, ProxyScheme, ProxyUrl, authority};
use crate::domain::storage::instances::find_proxy;
use crate::domain::types::is_forbidden_ip;
use crate::ids::InstanceId;
use crate::secrets::{Purpose, Sealer};

/// How long dialing the proxy and its handshake may take (the crate's own
/// dial timeout is 20 s).
const DIAL_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest answer head an HTTP proxy may send to a `CONNECT`.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// Where the engine finds an instance's proxy when a session starts.
#[async_trait]
pub trait ProxySource: Send + Sync + 'static {
    /// The instance's proxy with its credentials; `None`: it connects directly.
    async fn proxy_for(&self, instance_id: &InstanceId) -> anyhow::Result<Option<ProxyUrl>>;
}

/// The proxies stored with the instances (credentials sealed).
pub struct StoredProxies {
    pub pool: SqlitePool,
    pub sealer: Arc<Sealer>,
}

#[async_trait]
impl ProxySource for StoredProxies {
    async fn proxy_for(&self, instance_id: &InstanceId) -> anyhow::Result<Option<ProxyUrl>> {
        let Some(stored) = find_proxy(&self.pool, instance_id)
            .await
            .context("Failed to read the instance's proxy")?
        else {
            return Ok(None);
        };
        let credentials = match &stored.sealed_auth {
            Some(sealed) => {
                let plain = self
                    .sealer
                    .open(Purpose::ProxyCredentials, sealed.expose())
                    .context("Failed to open the proxy's stored credentials")?;
                Some(
                    ProxyCredentials::from_plain(plain.expose())
                        .context("the proxy's stored credentials are malformed")?,
                )
            }
            None => None,
        };
        ProxyUrl::from_stored(&stored.url, credentials)
            .map(Some)
            .context("the instance's stored proxy URL is malformed")
    }
}

/// Why a tunnel through the proxy failed (never with the credentials).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the proxy {0} could not be reached: {1}")]
    Unreachable(String, std::io::Error),
    #[error("the proxy {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error(
        "the proxy {0} resolves to a loopback, private or link-local address (WA_PROXY_ALLOW_PRIVATE=false)"
    )]
    Private(String),
    #[error("the proxy {0} needs credentials, and none or others are configured")]
    AuthRequired(String),
    #[error("the proxy {0} refused the credentials")]
    AuthRefused(String),
    #[error("the proxy {0} refused the tunnel to {1}: {2}")]
    Refused(String, String, String),
    #[error("the proxy {0} broke the protocol: {1}")]
    Protocol(String, String),
    #[error("the connection to the proxy {0} failed: {1}")]
    Io(String, std::io::Error),
}

/// Opens a TCP tunnel to `host:port` through `proxy`. Unless
/// `allow_private`, a proxy whose name resolves to a forbidden address is
/// refused before it is dialed.
pub async fn dial(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<TcpStream, ProxyError> {
    let at = proxy.authority();
    let work = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((proxy.host.as_str(), proxy.port))
            .await
            .map_err(|e| ProxyError::Unreachable(at.clone(), e))?
            .collect();
        if !allow_private && addrs.iter().any(|a| is_forbidden_ip(a.ip())) {
            return Err(ProxyError::Private(at.clone()));
        }
        let mut stream = TcpStream::connect(&addrs[..])
            .await
            .map_err(|e| ProxyError::Unreachable(at.clone(), e))?;
        let _ = stream.set_nodelay(true);
        handshake(&mut stream, proxy, host, port).await?;
        Ok(stream)
    };
    tokio::time::timeout(DIAL_TIMEOUT, work)
        .await
        .map_err(|_| ProxyError::Timeout(at.clone(), DIAL_TIMEOUT))?
}

/// Asks the proxy on `stream` for a tunnel to `host:port`.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<(), ProxyError> {
    match proxy.scheme {
        ProxyScheme::Socks5 => socks5(stream, proxy, host, port).await,
        ProxyScheme::Http => http_connect(stream, proxy, host, port).await,
    }
}

/// SOCKS5: method negotiation, username/password when offered, CONNECT
/// with the host name (the proxy resolves it) or the literal address.
async fn socks5<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<(), ProxyError> {
    let at = proxy.authority();
    let io = |e| ProxyError::Io(at.clone(), e);
    let protocol = |m: &str| ProxyError::Protocol(at.clone(), m.to_string());
    // Greeting: no authentication, and username/password when we have them.
    let greeting: &[u8] = if proxy.credentials.is_some() {
        &[5, 2, 0x00, 0x02]
    } else {
        &[5, 1, 0x00]
    };
    s.write_all(greeting).await.map_err(io)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.map_err(io)?;
    if choice[0] != 5 {
        return Err(protocol("not a SOCKS5 answer"));
    }
    match (choice[1], &proxy.credentials) {
        (0x00, _) => {}
        (0x02, Some(c)) => {
            let (user, pass) = (c.username.as_bytes(), c.password.expose().as_bytes());
            let mut auth = Vec::with_capacity(3 + user.len() + pass.len());
            auth.push(1);
            auth.push(user.len() as u8);
            auth.extend_from_slice(user);
            auth.push(pass.len() as u8);
            auth.extend_from_slice(pass);
            s.write_all(&auth).await.map_err(io)?;
            let mut status = [0u8; 2];
            s.read_exact(&mut status).await.map_err(io)?;
            if status[1] != 0 {
                return Err(ProxyError::AuthRefused(at));
            }
        }
        (0x02 | 0xff, _) => return Err(ProxyError::AuthRequired(at)),
        _ => {
            return Err(protocol(
                "chose an authentication method it was not offered",
            ));
        }
    }
    // CONNECT.
    let mut req = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = host.as_bytes();
            if name.len() > 255 {
                return Err(protocol("the target host name is longer than 255 bytes"));
            }
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name);
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(io)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(io)?;
    if head[0] != 5 {
        return Err(protocol("not a SOCKS5 reply"));
    }
    if head[1] != 0 {
        return Err(ProxyError::Refused(
            at,
            authority(host, port),
            socks5_reply(head[1]).to_string(),
        ));
    }
    // The bound address: skipped.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await.map_err(io)?;
            usize::from(len[0]) + 2
        }
        _ => return Err(protocol("an unknown address type in the reply")),
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).await.map_err(io)?;
    Ok(())
}

/// The meaning of a SOCKS5 reply code (RFC 1928 §6).
fn socks5_reply(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by the proxy's rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

/// HTTP `CONNECT host:port`, with Basic credentials when given; a 2xx
/// answer opens the tunnel. The answer head is read byte by byte so that
/// nothing after it is consumed.
async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<(), ProxyError> {
    let at = proxy.authority();
    let io = |e| ProxyError::Io(at.clone(), e);
    let target = authority(host, port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            c.username,
            c.password.expose()
        ));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_HEAD {
            return Err(ProxyError::Protocol(at, "an endless answer head".into()));
        }
        let n = s.read(&mut byte).await.map_err(io)?;
        if n == 0 {
            return Err(ProxyError::Protocol(
                at,
                "closed the connection before answering".into(),
            ));
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| ProxyError::Protocol(at.clone(), "not an HTTP answer".into()))?;
    match code {
        200..=299 => Ok(()),
        407 if proxy.credentials.is_some() => Err(ProxyError::AuthRefused(at)),
        407 => Err(ProxyError::AuthRequired(at)),
        other => Err(ProxyError::Refused(at, target, format!("HTTP {other}"))),
    }
}

/// The websocket to WhatsApp through a proxy: a tunnel, TLS for `wss://`,
/// the upgrade with WhatsApp Web's `Origin`, then the crate's own framing
/// ([`from_websocket`]).
pub struct ProxyTransportFactory {
    proxy: ProxyUrl,
    url: String,
    allow_private: bool,
}

impl ProxyTransportFactory {
    /// A factory for `url` (`ws://` or `wss://`) through `proxy`.
    pub fn new(proxy: ProxyUrl, url: Option<String>, allow_private: bool) -> Self {
        Self {
            proxy,
            url: url.unwrap_or_else(|| whatsapp_rust::wacore::net::WHATSAPP_WEB_WS_URL.to_string()),
            allow_private,
        }
    }
}

#[async_trait]
impl TransportFactory for ProxyTransportFactory {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn Transport>,
            whatsapp_rust::async_channel::Receiver<TransportEvent>,
        ),
        anyhow::Error,
    > {
        let uri: http::Uri = self
            .url
            .parse()
            .with_context(|| format!("the WhatsApp URL {} is not a URL", self.url))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => anyhow::bail!("the WhatsApp URL {} is not ws:// or wss://", self.url),
        };
        let host = uri
            .host()
            .context("the WhatsApp URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let tunnel = dial(&self.proxy, &host, port, self.allow_private).await?;
        let stream = if tls {
            default_tls_connector()
                .wrap(&host, tunnel)
                .await
                .with_context(|| format!("TLS with {host} through the proxy failed"))?
        } else {
            Connector::Plain.wrap(&host, tunnel).await?
        };
        let origin =
            http::HeaderValue::from_static(whatsapp_rust::wacore::net::WHATSAPP_WEB_ORIGIN);
        let (ws, _) = tokio_websockets::ClientBuilder::from_uri(uri)
            .add_header(http::header::ORIGIN, origin)
            .context("Failed to set the Origin header")?
            .connect_on(stream)
            .await
            .with_context(|| {
                format!("the websocket upgrade with {host} through the proxy failed")
            })?;
        Ok(from_websocket(ws))
    }
}

/// The crate's HTTP client (media up- and downloads) on an agent that
/// leaves through `proxy` (SOCKS5 with the name resolved by the proxy, or
/// HTTP CONNECT).
pub fn http_client(proxy: &ProxyUrl) -> anyhow::Result<whatsapp_rust::http::UreqHttpClient> {
    let protocol = match proxy.scheme {
        ProxyScheme::Socks5 => ureq::ProxyProtocol::Socks5h,
        ProxyScheme::Http => ureq::ProxyProtocol::Http,
    };
    let mut builder = ureq::Proxy::builder(protocol)
        .host(&proxy.host)
        .port(proxy.port);
    if let Some(c) = &proxy.credentials {
        builder = builder.username(&c.username).password(c.password.expose());
    }
    // ureq's error could quote what it was given: say only what failed.
    let built = builder
        .build()
        .map_err(|_| anyhow::anyhow!("the proxy {} is not usable for HTTPS", proxy.authority()))?;
    let agent: ureq::Agent = ureq::config::Config::builder()
        .proxy(Some(built))
        .timeout_connect(Some(DIAL_TIMEOUT))
        .build()
        .into();
    Ok(whatsapp_rust::http::UreqHttpClient::with_agent(agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(url: &str) -> ProxyUrl {
        ProxyUrl::parse(url, true).unwrap()
    }

    /// Runs `handshake` against a scripted proxy: what it answers, and what it read.
    async fn against(p: &ProxyUrl, answers: &[u8]) -> (Result<(), ProxyError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let answers = answers.to_vec();
        let server = tokio::spawn(async move {
            server.write_all(&answers).await.unwrap();
            let mut seen = vec![0u8; 4096];
            let mut got = Vec::new();
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), server.read(&mut seen)).await
            {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&seen[..n]);
            }
            got
        });
        let result = handshake(&mut client, p, "web.whatsapp.com", 443).await;
        drop(client);
        (result, server.await.unwrap())
    }

    #[tokio::test]
    async fn socks5_with_credentials_authenticates_and_connects_by_name() {
        let p = proxy("socks5://alice:s3cret@proxy:1080");
        let (r, sent) = against(&p, &[5, 2, 1, 0, 5, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90]).await;
        r.unwrap();
        let mut want = vec![5, 2, 0, 2, 1, 5];
        want.extend_from_slice(b"alice");
        want.push(6);
        want.extend_from_slice(b"s3cret");
        want.extend_from_slice(&[5, 1, 0, 3, 16]);
        want.extend_from_slice(b"web.whatsapp.com");
        want.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(sent, want);
    }

    #[tokio::test]
    async fn socks5_refusals_are_named_without_the_password() {
        let p = proxy("socks5://alice:s3cret@proxy:1080");
        let (r, _) = against(&p, &[5, 2, 1, 1]).await;
        let e = r.unwrap_err().to_string();
        assert_eq!(e, "the proxy proxy:1080 refused the credentials");
        let (r, _) = against(&p, &[5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("connection refused") && !e.contains("s3cret"),
            "{e}"
        );
        let bare = proxy("socks5://proxy:1080");
        let (r, _) = against(&bare, &[5, 0xff]).await;
        assert!(matches!(r, Err(ProxyError::AuthRequired(_))));
    }

    #[tokio::test]
    async fn http_connect_sends_basic_credentials_and_stops_at_the_head() {
        let p = proxy("http://alice:s3cret@proxy:3128");
        let (r, sent) = against(&p, b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        r.unwrap();
        let sent = String::from_utf8(sent).unwrap();
        assert!(
            sent.starts_with("CONNECT web.whatsapp.com:443 HTTP/1.1\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains("Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"),
            "{sent}"
        );
        let (r, _) = against(&p, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        assert!(matches!(r, Err(ProxyError::AuthRefused(_))));
        let (r, _) = against(&p, b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
        assert_eq!(
            r.unwrap_err().to_string(),
            "the proxy proxy:3128 refused the tunnel to web.whatsapp.com:443: HTTP 403"
        );
    }
}
