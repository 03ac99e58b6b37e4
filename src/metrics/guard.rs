//! Who may read `/metrics` (README, "Metrics"): never anyone who reaches
//! the API port.
//!
//! - `WA_METRICS_LISTEN` set: served on that address only; the API port
//!   answers `404` there.
//! - `WA_METRICS_TOKEN` set: every scrape needs `Authorization: Bearer <token>`
//!   (`401` otherwise), on whichever address serves it.
//! - Neither: the API port serves it to loopback clients only (the client
//!   address as resolved through `WA_TRUSTED_PROXIES`, so a local reverse
//!   proxy does not open it to the world); others get `403`.

use std::net::{IpAddr, SocketAddr};

use poem::http::StatusCode;
use poem::web::Data;
use poem::{IntoResponse, Request, Response, handler};
use subtle::ConstantTimeEq;

use crate::api::AppState;
use crate::api::client_addr::ClientAddr;
use crate::config::Config;

/// Where a scrape arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The API's own listener.
    Api,
    /// `WA_METRICS_LISTEN`.
    Metrics,
}

/// What the guard answers a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Serve,
    /// Served on `WA_METRICS_LISTEN`, not here.
    NotHere,
    /// A token is set and the request did not give it.
    NeedsToken,
    /// No token is set and the client is not on this machine.
    LoopbackOnly,
}

/// The guard's decision: pure, from the settings, the port, the client and
/// the `Authorization` header.
pub fn decide(
    token: Option<&str>,
    separate_listener: bool,
    port: Port,
    client: Option<IpAddr>,
    authorization: Option<&str>,
) -> Verdict {
    if port == Port::Api && separate_listener {
        return Verdict::NotHere;
    }
    if let Some(token) = token {
        let given = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        let same: bool = given.as_bytes().ct_eq(token.as_bytes()).into();
        return if same && !given.is_empty() {
            Verdict::Serve
        } else {
            Verdict::NeedsToken
        };
    }
    match port {
        Port::Metrics => Verdict::Serve,
        Port::Api if client.is_some_and(|ip| ip.is_loopback()) => Verdict::Serve,
        Port::Api => Verdict::LoopbackOnly,
    }
}

/// The guard's verdict on a request.
fn verdict(config: &Config, port: Port, req: &Request) -> Verdict {
    let client = match port {
        Port::Api => req.extensions().get::<ClientAddr>().and_then(|c| c.0),
        Port::Metrics => req.remote_addr().as_socket_addr().map(SocketAddr::ip),
    };
    let authorization = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    decide(
        config.metrics_token.as_ref().map(|t| t.expose()),
        config.metrics_listen.is_some(),
        port,
        client,
        authorization,
    )
}

/// A JSON error answer.
fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    crate::api::error_response(status, code, message)
}

/// Answers one scrape after the guard.
async fn scrape(state: &AppState, port: Port, req: &Request) -> Response {
    match verdict(&state.config, port, req) {
        Verdict::Serve => {
            let text = state.metrics.render(state).await;
            text.with_content_type("text/plain; version=0.0.4; charset=utf-8")
                .into_response()
        }
        Verdict::NotHere => refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            "Metrics are served on WA_METRICS_LISTEN, not on the API port",
        ),
        Verdict::NeedsToken => {
            let mut r = refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Metrics need Authorization: Bearer <WA_METRICS_TOKEN>",
            );
            r.headers_mut().insert(
                poem::http::header::WWW_AUTHENTICATE,
                poem::http::HeaderValue::from_static("Bearer"),
            );
            r
        }
        Verdict::LoopbackOnly => refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Metrics are served to this machine only; set WA_METRICS_TOKEN or WA_METRICS_LISTEN",
        ),
    }
}

/// `GET /metrics` on the API port.
#[handler]
pub async fn on_api_port(state: Data<&AppState>, req: &Request) -> Response {
    scrape(&state, Port::Api, req).await
}

/// `GET /metrics` on `WA_METRICS_LISTEN`.
#[handler]
pub async fn on_metrics_port(state: Data<&AppState>, req: &Request) -> Response {
    scrape(&state, Port::Metrics, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7)));

    #[test]
    fn without_settings_only_this_machine_may_scrape_the_api_port() {
        assert_eq!(decide(None, false, Port::Api, LOCAL, None), Verdict::Serve);
        assert_eq!(
            decide(None, false, Port::Api, REMOTE, None),
            Verdict::LoopbackOnly
        );
        assert_eq!(
            decide(None, false, Port::Api, None, None),
            Verdict::LoopbackOnly
        );
    }

    #[test]
    fn a_token_is_asked_of_everyone_and_compared_whole() {
        let t = Some("s3cret-token");
        for client in [LOCAL, REMOTE] {
            assert_eq!(
                decide(t, false, Port::Api, client, None),
                Verdict::NeedsToken
            );
            assert_eq!(
                decide(t, false, Port::Api, client, Some("Bearer s3cret")),
                Verdict::NeedsToken
            );
            assert_eq!(
                decide(t, false, Port::Api, client, Some("s3cret-token")),
                Verdict::NeedsToken
            );
            assert_eq!(
                decide(t, false, Port::Api, client, Some("Bearer s3cret-token")),
                Verdict::Serve
            );
        }
        assert_eq!(
            decide(t, true, Port::Metrics, REMOTE, None),
            Verdict::NeedsToken
        );
    }

    #[test]
    fn a_separate_listener_takes_metrics_off_the_api_port() {
        assert_eq!(decide(None, true, Port::Api, LOCAL, None), Verdict::NotHere);
        assert_eq!(
            decide(Some("t"), true, Port::Api, LOCAL, Some("Bearer t")),
            Verdict::NotHere
        );
        assert_eq!(
            decide(None, true, Port::Metrics, REMOTE, None),
            Verdict::Serve
        );
    }
}
