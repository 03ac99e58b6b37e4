//! A proxy per instance: the `proxyUrl` an instance's WhatsApp connections
//! leave through (`socks5://` or `http://` CONNECT, with optional
//! credentials).
//!
//! Parsed once at the edge into a [`ProxyUrl`]; from there the proxy splits
//! into its public part ([`ProxyPublic`]: scheme, host and port, and whether
//! it has credentials — what events, the API and logs may show) and its
//! credentials ([`ProxyCredentials`]), which are only ever held sealed at
//! rest ([`crate::secrets::Purpose::ProxyCredentials`]) or in memory in a
//! type that does not print.

use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::domain::types::is_forbidden_ip;

/// The longest `proxyUrl` accepted.
const MAX_URL_LEN: usize = 2048;
/// SOCKS5 username/password authentication (RFC 1929) carries each in at most 255 bytes.
const MAX_CREDENTIAL_LEN: usize = 255;

/// The message of every malformed `proxyUrl`: it never repeats the input,
/// which may hold a password.
const SHAPE: &str =
    "proxyUrl must be socks5://[user:password@]host:port or http://[user:password@]host[:port]";

/// The proxy protocols the real engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    /// SOCKS version 5 (RFC 1928), username/password auth (RFC 1929); the
    /// proxy resolves the target's name.
    Socks5,
    /// An HTTP proxy's `CONNECT` tunnel, `Proxy-Authorization: Basic`.
    Http,
}

impl ProxyScheme {
    /// The scheme as written in the public URL.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Http => "http",
        }
    }
}

/// A proxy as events, the API and logs show it: no credentials, only
/// whether there are some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyPublic {
    /// `socks5://host:port` or `http://host:port`, without credentials.
    pub url: String,
    /// Whether the proxy is given a username and password.
    pub auth: bool,
}

/// A proxy's username and password; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    pub username: String,
    pub password: Secret,
}

impl fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyCredentials(***)")
    }
}

/// The sealed-at-rest form of the credentials (JSON, then sealed).
#[derive(Serialize, Deserialize)]
struct StoredCredentials {
    username: String,
    password: String,
}

impl ProxyCredentials {
    /// The plain text to seal for storage.
    pub fn to_plain(&self) -> String {
        serde_json::to_string(&StoredCredentials {
            username: self.username.clone(),
            password: self.password.expose().to_string(),
        })
        .expect("credentials serialize")
    }

    /// Reads back what [`ProxyCredentials::to_plain`] wrote.
    pub fn from_plain(plain: &str) -> Option<Self> {
        let s: StoredCredentials = serde_json::from_str(plain).ok()?;
        Some(Self {
            username: s.username,
            password: Secret::new(s.password),
        })
    }
}

/// A parsed, checked proxy URL with its credentials (in memory only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: ProxyScheme,
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub credentials: Option<ProxyCredentials>,
}

impl ProxyUrl {
    /// Parses a `proxyUrl`: `socks5://` (or `socks5h://`, the same here:
    /// the proxy always resolves the target) or `http://`, a host, a port
    /// (required for SOCKS5, 80 by default for HTTP), optional
    /// percent-encoded `user:password@`, nothing else. Unless
    /// `allow_private`, a literal loopback/private/link-local address (or
    /// `localhost`) is refused. Errors never repeat the input.
    pub fn parse(raw: &str, allow_private: bool) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() > MAX_URL_LEN {
            return Err(format!("proxyUrl must be at most {MAX_URL_LEN} characters"));
        }
        if raw.chars().any(char::is_control) {
            return Err("proxyUrl must not contain control characters".into());
        }
        let url = url::Url::parse(raw).map_err(|_| SHAPE.to_string())?;
        let scheme = match url.scheme() {
            "socks5" | "socks5h" => ProxyScheme::Socks5,
            "http" => ProxyScheme::Http,
            "https" => {
                return Err(
                    "proxyUrl: https:// proxies (TLS to the proxy) are not supported; use http:// (CONNECT) or socks5://"
                        .into(),
                );
            }
            _ => return Err(format!("{SHAPE} (unsupported scheme)")),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{SHAPE} (no path, query or fragment)"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(format!("{SHAPE} (a host is required)")),
        };
        let port = match (scheme, url.port()) {
            (_, Some(0)) => return Err("proxyUrl: the port must be 1 to 65535".into()),
            (_, Some(p)) => p,
            // The url crate drops a default port (80 for http) it was given.
            (ProxyScheme::Http, None) => 80,
            (ProxyScheme::Socks5, None) => return Err(format!("{SHAPE} (a port is required)")),
        };
        if !allow_private && host_is_private(&host) {
            return Err(
                "proxyUrl points at a loopback, private, link-local or otherwise non-public address (allowed only with WA_PROXY_ALLOW_PRIVATE=true)"
                    .into(),
            );
        }
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| {
                        "proxyUrl: the username and password must be UTF-8 (percent-encoded)"
                            .to_string()
                    })
            };
            let username = decode(url.username())?;
            let password = decode(url.password().unwrap_or(""))?;
            if username.is_empty() {
                return Err("proxyUrl: a password needs a username".into());
            }
            if username.len() > MAX_CREDENTIAL_LEN || password.len() > MAX_CREDENTIAL_LEN {
                return Err(format!(
                    "proxyUrl: the username and the password must each be at most {MAX_CREDENTIAL_LEN} bytes"
                ));
            }
            if username
                .chars()
                .chain(password.chars())
                .any(char::is_control)
            {
                return Err("proxyUrl must not contain control characters".into());
            }
            Some(ProxyCredentials {
                username,
                password: Secret::new(password),
            })
        };
        Ok(Self {
            scheme,
            host,
            port,
            credentials,
        })
    }

    /// The proxy from its stored parts: the public URL and the credentials.
    pub fn from_stored(public_url: &str, credentials: Option<ProxyCredentials>) -> Option<Self> {
        let mut p = Self::parse(public_url, true).ok()?;
        p.credentials = credentials;
        Some(p)
    }

    /// `host:port` as a URL authority (IPv6 in brackets).
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// What events, the API and logs may show.
    pub fn public(&self) -> ProxyPublic {
        ProxyPublic {
            url: format!("{}://{}", self.scheme.as_str(), self.authority()),
            auth: self.credentials.is_some(),
        }
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether a proxy host is a loopback/private/link-local address or a
/// local name (literal check; names are checked again when resolved).
fn host_is_private(host: &str) -> bool {
    let lowered = host.trim_end_matches('.');
    if lowered == "localhost"
        || lowered.ends_with(".localhost")
        || lowered == "metadata.google.internal"
    {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(is_forbidden_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socks5_url_with_credentials_splits_into_public_part_and_secret() {
        let p = ProxyUrl::parse("socks5://al%40ice:p%3Ass@Proxy.Example.com:1080", false).unwrap();
        assert_eq!(p.scheme, ProxyScheme::Socks5);
        assert_eq!(p.host, "proxy.example.com");
        assert_eq!(p.port, 1080);
        let c = p.credentials.clone().unwrap();
        assert_eq!(c.username, "al@ice");
        assert_eq!(c.password.expose(), "p:ss");
        assert_eq!(
            p.public(),
            ProxyPublic {
                url: "socks5://proxy.example.com:1080".into(),
                auth: true
            }
        );
        assert!(
            !format!("{p:?}").contains("p:ss"),
            "Debug hides the password"
        );
        let back = ProxyCredentials::from_plain(&c.to_plain()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn http_defaults_to_port_80_and_socks5_needs_a_port() {
        assert_eq!(ProxyUrl::parse("http://10.0.0.2", true).unwrap().port, 80);
        assert_eq!(
            ProxyUrl::parse("http://10.0.0.2:3128", true).unwrap().port,
            3128
        );
        assert!(
            ProxyUrl::parse("socks5://10.0.0.2", true)
                .unwrap_err()
                .contains("port")
        );
        let v6 = ProxyUrl::parse("socks5h://[2001:db8::1]:1080", true).unwrap();
        assert_eq!(v6.public().url, "socks5://[2001:db8::1]:1080");
    }

    #[test]
    fn malformed_urls_are_refused_without_repeating_the_password() {
        for bad in [
            "ftp://u:hunter2@h:21",
            "socks4://u:hunter2@h:1080",
            "https://u:hunter2@h:443",
            "socks5://u:hunter2@:1080",
            "socks5://u:hunter2@h:0",
            "socks5://u:hunter2@h:99999",
            "socks5://u:hunter2@h:1080/path",
            "http://u:hunter2@h:8080?x=1",
            "socks5://:hunter2@h:1080",
            "not a url hunter2",
        ] {
            let err = ProxyUrl::parse(bad, true).expect_err(bad);
            assert!(!err.contains("hunter2"), "{bad}: {err}");
            assert!(err.starts_with("proxyUrl"), "{bad}: {err}");
        }
    }

    #[test]
    fn private_addresses_are_refused_only_when_asked() {
        for host in [
            "127.0.0.1:1080",
            "localhost:1080",
            "[::1]:1080",
            "192.168.1.5:1080",
        ] {
            let url = format!("socks5://{host}");
            assert!(ProxyUrl::parse(&url, true).is_ok(), "{url}");
            assert!(ProxyUrl::parse(&url, false).is_err(), "{url}");
        }
        assert!(ProxyUrl::parse("socks5://proxy.example.com:1080", false).is_ok());
    }
}
