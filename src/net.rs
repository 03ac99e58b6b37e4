//! Outbound HTTP with a guard: a DNS resolver that refuses loopback,
//! private, link-local and metadata addresses (checked at connect time, after
//! resolution, so a name cannot be re-pointed between check and use).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::types::{OutboundUrl, is_forbidden_ip};

/// A name that resolved to a forbidden address (see [`is_forbidden_ip`]);
/// callers find it in a connect error's sources and answer 400.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to a loopback, private, link-local or otherwise non-public address")]
pub struct AddressRefused(pub String);

/// Whether an outbound request failed because its target (or a redirect's)
/// was refused for its address rather than for a network fault.
pub fn refused_for_address(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(s) = source {
        if s.is::<AddressRefused>() || s.is::<crate::domain::types::UrlRefused>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Resolves with the system resolver and refuses names with forbidden addresses.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.iter().any(|a| is_forbidden_ip(a.ip())) {
                return Err(Box::new(AddressRefused(host)) as Box<_>);
            }
            let iter: Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

/// An HTTP client for user-given URLs. Unless `allow_private`, names that
/// resolve to forbidden addresses fail to connect. `follow_redirects` follows
/// up to five, each target checked like the first.
pub fn outbound_client(
    allow_private: bool,
    timeout: Duration,
    follow_redirects: bool,
    what: &'static str,
) -> reqwest::Client {
    let redirect = if follow_redirects {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects");
            }
            match OutboundUrl::parse(attempt.url().as_str(), what, allow_private) {
                Ok(_) => attempt.follow(),
                Err(e) => attempt.error(e.to_string()),
            }
        })
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(redirect)
        .user_agent(concat!("wa-gateway/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(16);
    if !allow_private {
        builder = builder.dns_resolver(GuardedResolver);
    }
    builder.build().expect("the HTTP client builds")
}

/// Installs the process-wide rustls crypto provider (aws-lc-rs) once. Both
/// aws-lc-rs (reqwest) and ring (async-nats) are compiled in, so rustls
/// cannot pick one itself and would panic at the first TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
