//! Newtypes at the edge: parsed once, then trusted.

use std::net::IpAddr;

use url::Url;

/// A syntactically valid, lower-cased e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an e-mail address.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_lowercase();
        let valid = s.len() <= 254
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.contains(char::is_whitespace)
                    && domain.matches('@').count() == 0
            });
        if valid {
            Ok(Self(s))
        } else {
            Err("email must be a valid e-mail address".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password acceptable for a new account (8 to 256 characters).
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let n = raw.chars().count();
        if !(8..=256).contains(&n) {
            return Err("password must be 8 to 256 characters long".into());
        }
        Ok(Self(raw.to_string()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An instance name: 1 to 100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceName(String);

impl InstanceName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("name is required".into());
        }
        if s.chars().count() > 100 {
            return Err("name must be at most 100 characters".into());
        }
        Ok(Self(s.to_string()))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Checks a free-text description (at most 500 characters).
pub fn parse_description(raw: &str) -> Result<String, String> {
    if raw.chars().count() > 500 {
        return Err("description must be at most 500 characters".into());
    }
    Ok(raw.trim().to_string())
}

/// Why an outbound URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("{0} must be an absolute http(s) URL")]
    NotHttp(&'static str),
    #[error("{0} points at a loopback, private, link-local or metadata address")]
    Private(&'static str),
}

/// An outbound http(s) URL (webhook target, media source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundUrl(Url);

impl OutboundUrl {
    /// Parses and checks scheme and, for literal hosts, the address range.
    /// `what` names the field in error messages.
    pub fn parse(raw: &str, what: &'static str, allow_private: bool) -> Result<Self, UrlRefused> {
        let url = Url::parse(raw.trim()).map_err(|_| UrlRefused::NotHttp(what))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(UrlRefused::NotHttp(what));
        }
        if raw.len() > 2048 {
            return Err(UrlRefused::NotHttp(what));
        }
        if !allow_private {
            let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
            let lowered = host.to_ascii_lowercase();
            if lowered == "localhost"
                || lowered.ends_with(".localhost")
                || lowered == "metadata.google.internal"
            {
                return Err(UrlRefused::Private(what));
            }
            if let Ok(ip) = host.parse::<IpAddr>()
                && is_forbidden_ip(ip)
            {
                return Err(UrlRefused::Private(what));
            }
        }
        Ok(Self(url))
    }

    /// Resolves the host and refuses it when any address is forbidden.
    /// A name that does not resolve is accepted here (checked again at use).
    pub async fn check_resolved(
        &self,
        what: &'static str,
        allow_private: bool,
    ) -> Result<Vec<std::net::SocketAddr>, UrlRefused> {
        let host = self.0.host_str().unwrap_or_default().to_string();
        let port = self.0.port_or_known_default().unwrap_or(80);
        let addrs: Vec<std::net::SocketAddr> =
            match tokio::net::lookup_host((host.trim_matches(['[', ']']), port)).await {
                Ok(it) => it.collect(),
                Err(_) => Vec::new(),
            };
        if !allow_private && addrs.iter().any(|a| is_forbidden_ip(a.ip())) {
            return Err(UrlRefused::Private(what));
        }
        Ok(addrs)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    pub fn url(&self) -> &Url {
        &self.0
    }
}

/// Loopback, private, link-local, unspecified, multicast, CGNAT, the cloud
/// metadata address, and their IPv6 counterparts (including IPv4-mapped).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0xfd00 && s[1] == 0x0ec2)
                || (s[0] == 0x0064 && s[1] == 0xff9b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_parse_and_normalise() {
        assert_eq!(Email::parse(" A@B.io ").unwrap().as_str(), "a@b.io");
        for bad in ["", "a", "a@", "@b", "a b@c.d", "a@.b"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outbound_urls_refuse_private_targets() {
        assert!(OutboundUrl::parse("https://example.com/hook", "webhookUrl", false).is_ok());
        for bad in ["ftp://x.com", "not a url", "http://", "javascript:alert(1)"] {
            assert_eq!(
                OutboundUrl::parse(bad, "webhookUrl", false),
                Err(UrlRefused::NotHttp("webhookUrl"))
            );
        }
        for private in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://172.16.5.4/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
        ] {
            assert_eq!(
                OutboundUrl::parse(private, "webhookUrl", false),
                Err(UrlRefused::Private("webhookUrl")),
                "{private}"
            );
            assert!(OutboundUrl::parse(private, "webhookUrl", true).is_ok());
        }
    }
}
