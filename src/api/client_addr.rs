//! The client's address: the peer's, or, when the peer is one of
//! `WA_TRUSTED_PROXIES`, the one the proxy reports in `X-Forwarded-For` (or
//! `Forwarded: for=`). The IP allow-list, the login throttle and the logs
//! use it. Headers from anyone else are ignored.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::Request;

/// The client address of the request being served (set before routing).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// IPv4-mapped IPv6 addresses as the IPv4 they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        ip => ip,
    }
}

/// The client's address of `req` given the trusted proxies.
pub fn resolve(req: &Request, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(req.remote_addr().as_socket_addr()?.ip());
    Some(from_headers(peer, req.headers(), trusted))
}

fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// Walks the proxies' reports from the nearest hop back: the first address
/// that is not a trusted proxy is the client. `X-Forwarded-For` wins over
/// `Forwarded`; an unreadable entry stops the walk at the last trusted hop.
pub fn from_headers(peer: IpAddr, headers: &poem::http::HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(&peer, trusted) {
        return peer;
    }
    let mut hops: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if hops.is_empty() {
        hops = headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| v.trim().trim_matches('"').to_string())
                })
            })
            .collect();
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip, trusted) {
            break;
        }
    }
    client
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let inner = hop.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.1.1".parse().unwrap();
        let stranger: IpAddr = "203.0.113.5".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            from_headers(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Anyone else's header is ignored.
        assert_eq!(from_headers(stranger, &h, &trusted), stranger);
        // A client cannot smuggle an address in front of the real one.
        let h = headers(&[("x-forwarded-for", "127.0.0.1, 198.51.100.7, 10.2.2.2")]);
        assert_eq!(
            from_headers(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711""#,
        )]);
        assert_eq!(
            from_headers(proxy, &h, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        assert_eq!(from_headers(proxy, &HeaderMap::new(), &trusted), proxy);
        // Garbage stops at the last trusted hop.
        let h = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(from_headers(proxy, &h, &trusted), proxy);
    }
}
