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

/// Refuses control characters (C0, DEL, C1) in a one-line value such as a
/// name; `multiline` texts may also hold newlines, carriage returns and tabs.
pub fn reject_control_chars(raw: &str, field: &str, multiline: bool) -> Result<(), String> {
    let bad = raw
        .chars()
        .find(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    match bad {
        Some(c) if multiline => Err(format!(
            "{field} must not contain control characters other than newlines and tabs (found U+{:04X})",
            c as u32
        )),
        Some(c) => Err(format!(
            "{field} must not contain control characters (found U+{:04X})",
            c as u32
        )),
        None => Ok(()),
    }
}

/// An instance name: 1 to 100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceName(String);

impl InstanceName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("name is required".into());
        }
        reject_control_chars(s, "name", false)?;
        if s.chars().count() > 100 {
            return Err("name must be at most 100 characters".into());
        }
        Ok(Self(s.to_string()))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Checks a free-text description (at most 500 characters; newlines and
/// tabs allowed, other control characters not).
pub fn parse_description(raw: &str) -> Result<String, String> {
    reject_control_chars(raw, "description", true)?;
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
    #[error("{0} points at a loopback, private, link-local or otherwise non-public address")]
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
            let lowered = host.trim_end_matches('.').to_ascii_lowercase();
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

/// Whether an address is anything but a public unicast one: loopback,
/// private, shared (CGNAT), link-local, unspecified, broadcast, multicast,
/// documentation, benchmarking, reserved, discard, unique-local, the cloud
/// metadata addresses, and every IPv6 form that carries an IPv4 address.
///
/// The one check for every outbound URL (webhooks, media), applied to
/// literal hosts when a URL is saved and to every resolved address at
/// connect time ([`crate::net`]). IPv6 is allowed only inside global
/// unicast (`2000::/3`) minus its special blocks; IPv4-mapped
/// (`::ffff:0:0/96`) and NAT64 (`64:ff9b::/96`, what DNS64 hands out on
/// IPv6-only networks) are judged by the IPv4 address they carry; the
/// other IPv4-carrying forms (compatible `::/96`, translated
/// `::ffff:0:0:0/96`, 6to4 `2002::/16`, Teredo `2001::/32`, local-use NAT64
/// `64:ff9b:1::/48`) are refused whole.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn in_v4(ip: u32, net: [u8; 4], prefix: u32) -> bool {
    let net = u32::from_be_bytes(net);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    ip & mask == net & mask
}

fn in_v6(ip: u128, net: [u16; 8], prefix: u32) -> bool {
    let net = net
        .iter()
        .fold(0u128, |acc, s| (acc << 16) | u128::from(*s));
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    ip & mask == net & mask
}

/// IPv4 ranges that are not public unicast (IANA special-purpose registry).
const FORBIDDEN_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network", unspecified
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, cloud metadata
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 31, 196, 0], 24), // AS112
    ([192, 52, 193, 0], 24), // AMT
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // direct delegation AS112
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, broadcast
];

fn is_forbidden_v4(v4: std::net::Ipv4Addr) -> bool {
    let ip = u32::from(v4);
    FORBIDDEN_V4.iter().any(|(net, p)| in_v4(ip, *net, *p))
}

/// Blocks inside global unicast (`2000::/3`) that are not public unicast.
const FORBIDDEN_V6_GLOBAL: &[([u16; 8], u32)] = &[
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments, incl. Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID
    ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), // 6to4
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation (RFC 9637)
];

fn is_forbidden_v6(v6: std::net::Ipv6Addr) -> bool {
    let ip = u128::from(v6);
    // IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96: judged by the IPv4 they carry.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return is_forbidden_v4(std::net::Ipv4Addr::from(ip as u32));
    }
    // Everything outside global unicast: loopback, unspecified, IPv4-compatible
    // and -translated, discard 100::/64, local-use NAT64, unique-local,
    // link-local, site-local, multicast, and the unallocated rest.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return true;
    }
    FORBIDDEN_V6_GLOBAL
        .iter()
        .any(|(net, p)| in_v6(ip, *net, *p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts_refuse_control_characters() {
        for bad in [
            "a\0b",
            "tab\there",
            "line\nbreak",
            "bell\u{7}",
            "del\u{7f}",
            "c1\u{85}x",
        ] {
            assert!(InstanceName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(InstanceName::parse("Ünïcødé 名前 🙂").is_ok());
        assert!(parse_description("two\nlines\tand a tab\r\n").is_ok());
        for bad in ["nul\0", "esc\u{1b}[31m", "bs\u{8}"] {
            assert!(parse_description(bad).is_err(), "{bad:?}");
        }
    }

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

    /// Addresses from the drills and the ranges the check must cover.
    #[test]
    fn every_non_public_form_is_refused() {
        for bad in [
            "::ffff:0:7f00:1",    // IPv4-translated 127.0.0.1
            "::7f00:1",           // IPv4-compatible 127.0.0.1
            "::a9fe:a9fe",        // IPv4-compatible 169.254.169.254
            "::808:808",          // IPv4-compatible, even of a public address
            "2002:7f00:1::1",     // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",  // 6to4 of 169.254.169.254
            "2002:808:808::1",    // 6to4, even of a public address
            "64:ff9b::7f00:1",    // NAT64 of 127.0.0.1
            "64:ff9b::a9fe:a9fe", // NAT64 of the metadata address
            "64:ff9b:1::808:808", // local-use NAT64
            "2001::1",            // Teredo
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",   // benchmarking
            "2001:db8::1", // documentation
            "3fff::1",     // documentation
            "100::1",      // discard
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "4000::1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "100.64.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "0.1.2.3",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(is_forbidden_ip(ip), "{bad} must be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert!(!is_forbidden_ip(ip), "{good} must be allowed");
        }
    }

    #[test]
    fn webhook_urls_with_ipv6_forms_of_private_addresses_are_refused() {
        for bad in [
            "http://[::ffff:0:7f00:1]/",
            "http://[::7f00:1]/",
            "http://[::a9fe:a9fe]/",
            "http://[2002:7f00:1::1]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[2001:db8::1]/",
            "http://[100::1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://localhost./",
            "http://127.1/",
            "http://0x7f000001/",
        ] {
            assert_eq!(
                OutboundUrl::parse(bad, "webhookUrl", false),
                Err(UrlRefused::Private("webhookUrl")),
                "{bad}"
            );
        }
    }

    mod forms {
        use super::*;
        use proptest::prelude::*;
        use std::net::{Ipv4Addr, Ipv6Addr};

        /// IPv4 addresses the check refuses (drawn from its ranges).
        fn forbidden_v4() -> impl Strategy<Value = Ipv4Addr> {
            (0..FORBIDDEN_V4.len(), any::<u32>()).prop_map(|(i, r)| {
                let (net, p) = FORBIDDEN_V4[i];
                let host = if p == 0 { r } else { r & (u32::MAX >> p) };
                Ipv4Addr::from(u32::from_be_bytes(net) | host)
            })
        }

        fn public_v4() -> impl Strategy<Value = Ipv4Addr> {
            any::<u32>()
                .prop_map(Ipv4Addr::from)
                .prop_filter("public", |ip| !is_forbidden_v4(*ip))
        }

        fn with_prefix(prefix: u128, bits: u32, rest: u128) -> Ipv6Addr {
            let mask = u128::MAX >> bits;
            Ipv6Addr::from((prefix & !mask) | (rest & mask))
        }

        fn six(segments: [u16; 8]) -> u128 {
            u128::from(Ipv6Addr::from(segments))
        }

        proptest! {
            #[test]
            fn forbidden_ipv4_is_refused_in_every_ipv6_form(v4 in forbidden_v4(), r in any::<u128>()) {
                let n = u128::from(u32::from(v4));
                let forms = [
                    ("mapped", Ipv6Addr::from(six([0, 0, 0, 0, 0, 0xffff, 0, 0]) | n)),
                    ("translated", Ipv6Addr::from(six([0, 0, 0, 0, 0xffff, 0, 0, 0]) | n)),
                    ("compatible", Ipv6Addr::from(n)),
                    ("nat64", Ipv6Addr::from(six([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]) | n)),
                    ("nat64 local", with_prefix(six([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]), 48, r)),
                    ("6to4", Ipv6Addr::from(six([0x2002, 0, 0, 0, 0, 0, 0, 0]) | (n << 80) | (r & ((1u128 << 80) - 1)))),
                    ("teredo", Ipv6Addr::from(six([0x2001, 0, 0, 0, 0, 0, 0, 0]) | (r & ((1u128 << 96) - 1) & !0xffff_ffff) | (n ^ 0xffff_ffff))),
                ];
                prop_assert!(is_forbidden_ip(IpAddr::V4(v4)));
                for (name, v6) in forms {
                    prop_assert!(is_forbidden_ip(IpAddr::V6(v6)), "{} form {} of {} allowed", name, v6, v4);
                }
            }

            #[test]
            fn public_ipv4_stays_allowed_where_ipv6_maps_it(v4 in public_v4()) {
                let n = u128::from(u32::from(v4));
                prop_assert!(!is_forbidden_ip(IpAddr::V6(Ipv6Addr::from(six([0, 0, 0, 0, 0, 0xffff, 0, 0]) | n))));
                prop_assert!(!is_forbidden_ip(IpAddr::V6(Ipv6Addr::from(six([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]) | n))));
                // The deprecated forms are refused whatever they carry.
                prop_assert!(is_forbidden_ip(IpAddr::V6(Ipv6Addr::from(n))));
                prop_assert!(is_forbidden_ip(IpAddr::V6(Ipv6Addr::from(six([0x2002, 0, 0, 0, 0, 0, 0, 0]) | (n << 80)))));
            }

            #[test]
            fn special_ipv6_ranges_are_refused(r in any::<u128>(), which in 0usize..12) {
                let (prefix, bits) = [
                    (six([0, 0, 0, 0, 0, 0, 0, 0]), 96),         // compatible, loopback, unspecified
                    (six([0x100, 0, 0, 0, 0, 0, 0, 0]), 64),     // discard
                    (six([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32),// documentation
                    (six([0x3fff, 0, 0, 0, 0, 0, 0, 0]), 20),    // documentation
                    (six([0x2001, 2, 0, 0, 0, 0, 0, 0]), 48),    // benchmarking
                    (six([0x2001, 0, 0, 0, 0, 0, 0, 0]), 32),    // Teredo
                    (six([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16),    // 6to4
                    (six([0xfc00, 0, 0, 0, 0, 0, 0, 0]), 7),     // unique-local
                    (six([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10),    // link-local
                    (six([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8),     // multicast
                    (six([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]), 48), // local-use NAT64
                    (six([0, 0, 0, 0, 0xffff, 0, 0, 0]), 96),    // translated
                ][which];
                let v6 = with_prefix(prefix, bits, r);
                prop_assert!(is_forbidden_ip(IpAddr::V6(v6)), "{} allowed", v6);
            }
        }
    }
}
