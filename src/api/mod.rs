//! The HTTP API: one `#[OpenApi]` struct per resource, the generated spec at
//! `/openapi.json`, Swagger UI at `/docs`, and the middleware every request
//! passes (IP allow-list, request id, JSON errors).

pub mod activity;
pub mod auth;
pub mod calls;
pub mod chats;
pub mod client_addr;
pub mod groups;
pub mod health;
pub mod history;
pub mod instances;
pub mod kinds;
pub mod media;
pub mod paging;
pub mod pairing;
pub mod rate_limit;
pub mod security;
pub mod session_health;
pub mod sim;
pub mod spec;
pub mod state;
pub mod stats;
pub mod stream;
pub mod types;
pub mod users;
pub mod webhooks;
pub mod whatsapp;

use poem::PathPattern;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;

use crate::error::ErrorBody;
pub use state::AppState;

/// The header carrying the request id (echoed, or made up when absent).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Declares [`Apis`], the tuple of every API, and [`all_apis`], its value,
/// from one list. poem-openapi takes tuples of at most 16, so the APIs come
/// in two groups: the seed's, then the later ones.
macro_rules! apis {
    (($($m1:ident::$t1:ident),* $(,)?), ($($m2:ident::$t2:ident),* $(,)?)) => {
        type Apis = (($($m1::$t1,)*), ($($m2::$t2,)*));

        fn all_apis() -> Apis {
            (($($m1::$t1,)*), ($($m2::$t2,)*))
        }
    };
}

apis!(
    (
        health::HealthApi,
        auth::AuthApi,
        users::UsersApi,
        instances::InstancesApi,
        whatsapp::InstanceSessionApi,
        whatsapp::WhatsAppApi,
        sim::SimApi,
        activity::ActivityApi,
        history::HistoryApi,
        stats::StatsApi,
        webhooks::WebhooksApi,
    ),
    (
        media::MediaApi,
        pairing::PairingApi,
        stream::StreamApi,
        chats::ChatsApi,
        groups::GroupsApi,
        kinds::KindsApi,
        session_health::SessionHealthApi,
    )
);

fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(all_apis(), "wa-gateway", env!("CARGO_PKG_VERSION")).description(
        "Multi-instance WhatsApp HTTP API gateway. Authenticate with `Authorization: Bearer <JWT>` \
         (from `POST /api/auth/login`) or `x-api-key: <key>`. Errors are JSON `{error, message}`.",
    )
}

/// The OpenAPI document as JSON (what `make openapi` writes to `openapi/openapi.json`).
pub fn spec_json() -> &'static str {
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| spec::document(&service().spec()))
}

/// Swagger UI at `/docs`, showing the served document (not poem-openapi's own).
fn swagger_ui(svc: &OpenApiService<Apis, ()>) -> impl Endpoint + 'static {
    let html = svc
        .swagger_ui_html()
        .replacen(&svc.spec(), spec_json().trim_end(), 1);
    poem::endpoint::make_sync(move |_| poem::web::Html(html.clone()))
}

/// The served OpenAPI document.
fn openapi_json() -> impl Endpoint + 'static {
    poem::endpoint::make_sync(|_| {
        Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(spec_json())
    })
}

/// Every route of the gateway, with its middleware.
pub fn routes(state: AppState) -> impl Endpoint<Output = Response> {
    let svc = service();
    Route::new()
        .nest("/docs", Route::new().at("/", swagger_ui(&svc)))
        .at("/openapi.json", openapi_json())
        .at("/ui/:file", poem::get(crate::dashboard::asset))
        .at("/metrics", poem::get(crate::metrics::guard::on_api_port))
        .nest("/", svc)
        // The dashboard's page at `/` (the API's nest at `/` claims that path).
        .around(|ep, req| async move {
            if req.uri().path() == "/" && req.method() == poem::http::Method::GET {
                return Ok(crate::dashboard::page());
            }
            ep.call(req).await.map(IntoResponse::into_response)
        })
        .around(|ep, req| async move { serve(ep, req).await })
        .data(state)
}

/// The route label of requests that matched no route (bounded: never the raw path).
const UNMATCHED_ROUTE: &str = "unmatched";

/// Runs one request: allow-list, request id, errors turned into JSON, and
/// the `api_called` event of an authenticated request.
async fn serve<E: Endpoint>(ep: std::sync::Arc<E>, mut req: Request) -> poem::Result<Response> {
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let (client, allowed, max_body, recorder, metrics) = {
        let state = req.data::<AppState>().expect("state is attached");
        let client = client_addr::resolve(&req, &state.config.trusted_proxies);
        (
            client,
            client_allowed(state, client),
            body_cap(&state.config, &req),
            state.api_calls.clone(),
            state.metrics.clone(),
        )
    };
    let declared_len = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("The request body is larger than {max_body} bytes"),
        )
    };
    req.extensions_mut().insert(client_addr::ClientAddr(client));
    let mut resp = if !allowed {
        tracing::info!(client = ?client, "refused by the IP allow-list");
        error_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Your address is not allowed to use this API",
        )
    } else if declared_len.is_some_and(|n| n > max_body) {
        too_large()
    } else {
        // A body without a declared length (chunked) is counted as it is
        // read: past the cap the read fails and the answer is 413. (With a
        // declared length, the server reads no more than it declares.)
        let overflowed = if declared_len.is_none() {
            let (body, overflowed) = capped_body(req.take_body(), max_body);
            req.set_body(body);
            Some(overflowed)
        } else {
            None
        };
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let caller = security::CallerSlot::default();
        req.extensions_mut().insert(caller.clone());
        let quota = rate_limit::QuotaSlot::default();
        req.extensions_mut().insert(quota.clone());
        let (method, path) = (req.method().to_string(), req.uri().path().to_string());
        let started = std::time::Instant::now();
        let (mut resp, pattern) = match ep.call(req).await {
            Ok(r) => {
                let r = r.into_response();
                let pattern = r.data::<PathPattern>().cloned();
                (r, pattern)
            }
            Err(err) => {
                let pattern = err.data::<PathPattern>().cloned();
                (error_to_response(err), pattern)
            }
        };
        if overflowed.is_some_and(|o| o.load(std::sync::atomic::Ordering::Acquire)) {
            resp = too_large();
        }
        let route = match &pattern {
            Some(p) => calls::route_template(&p.0),
            None if path == "/metrics" => "/metrics".to_string(),
            None => UNMATCHED_ROUTE.to_string(),
        };
        metrics.observe_http(&method, &route, resp.status().as_u16(), started.elapsed());
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = allowed_methods(&path)
            && let Ok(v) = poem::http::HeaderValue::from_str(&allow)
        {
            // RFC 9110: a 405 names the methods the resource has.
            resp.headers_mut().insert(poem::http::header::ALLOW, v);
        }
        if let Some((user, is_admin)) = caller.0.get() {
            let call = calls::ServedCall {
                caller: user.clone(),
                caller_is_admin: *is_admin,
                method,
                path,
                pattern,
                status: resp.status().as_u16(),
                duration: started.elapsed(),
                request_id: request_id.clone(),
            };
            // Before the answer leaves: an answered request is always in the log.
            recorder.record(call).await;
        }
        if let Some(q) = quota.0.get() {
            rate_limit_headers(&mut resp, q);
        }
        resp
    };
    if let Ok(v) = request_id.parse() {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    Ok(resp)
}

/// The methods each route of the OpenAPI document answers, as path
/// patterns (`None` for a `{parameter}` segment).
type RouteMethods = Vec<(Vec<Option<String>>, Vec<String>)>;

fn route_methods() -> &'static RouteMethods {
    static ROUTES: std::sync::OnceLock<RouteMethods> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(spec_json()).unwrap_or_default();
        let mut routes = RouteMethods::new();
        if let Some(paths) = spec["paths"].as_object() {
            for (pattern, ops) in paths {
                let segments = pattern
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                    .collect();
                let mut methods: Vec<String> = ops
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                routes.push((segments, methods));
            }
        }
        routes
    })
}

/// The `Allow` header of a 405 on `path`: the methods its route answers.
fn allowed_methods(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut methods: Vec<String> = route_methods()
        .iter()
        .filter(|(pattern, _)| {
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p.as_deref().is_none_or(|p| p == *s))
        })
        .flat_map(|(_, m)| m.iter().cloned())
        .collect();
    methods.sort();
    methods.dedup();
    (!methods.is_empty()).then(|| methods.join(", "))
}

/// The most body bytes a request may carry: the media cap (and room for
/// the form around the file) where a file is uploaded, `WA_JSON_MAX_BYTES`
/// everywhere else.
fn body_cap(config: &crate::config::Config, req: &Request) -> u64 {
    let path = req.uri().path();
    let upload = ["/send-file", "/send-voice", "/send-sticker"]
        .iter()
        .any(|p| path.ends_with(p));
    if req.method() == poem::http::Method::POST && upload {
        config.media_max_bytes + 64 * 1024
    } else {
        config.json_max_bytes
    }
}

/// `body`, failing once more than `cap` bytes have been read; the flag
/// says that it did (the answer is then 413, whatever the handler made of it).
fn capped_body(
    body: poem::Body,
    cap: u64,
) -> (poem::Body, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let overflowed = std::sync::Arc::new(AtomicBool::new(false));
    let flag = overflowed.clone();
    let mut read: u64 = 0;
    let stream = body.into_bytes_stream().map(move |chunk| {
        let chunk = chunk?;
        read += chunk.len() as u64;
        if read > cap {
            flag.store(true, Ordering::Release);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the request body is too large",
            ));
        }
        Ok(chunk)
    });
    (poem::Body::from_bytes_stream(stream), overflowed)
}

/// The caller's quota on the answer: `RateLimit-*`, and `Retry-After` on a 429.
fn rate_limit_headers(resp: &mut Response, q: &rate_limit::Quota) {
    let headers = resp.headers_mut();
    let mut put = |name: &'static str, value: u64| {
        headers.insert(name, poem::http::HeaderValue::from(value));
    };
    put(rate_limit::LIMIT_HEADER, u64::from(q.limit));
    put(rate_limit::REMAINING_HEADER, u64::from(q.remaining));
    put(rate_limit::RESET_HEADER, q.reset_secs);
    if let Some(wait) = q.retry_after_secs {
        put(rate_limit::RETRY_AFTER_HEADER, wait);
    }
}

/// Whether the client's address (see [`client_addr`]) is on the allow-list.
fn client_allowed(state: &AppState, client: Option<std::net::IpAddr>) -> bool {
    if state.config.allowed_ips.is_empty() {
        return true;
    }
    client.is_some_and(|ip| state.config.allowed_ips.iter().any(|net| net.contains(&ip)))
}

/// A JSON error answer.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: code.to_string(),
        message: message.to_string(),
    };
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_string(&body).unwrap_or_default())
}

/// Turns any error into a JSON answer: ours already are; framework errors
/// (parse errors, unknown routes, wrong content type) get a code and their
/// message; a 500 never shows its cause.
fn error_to_response(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let (code, message) = match status.as_u16() {
        400 => ("bad_request", err.to_string()),
        401 => ("unauthorized", "Missing or invalid credentials".to_string()),
        404 => ("not_found", "No such route".to_string()),
        405 => (
            "method_not_allowed",
            "Method not allowed on this route".to_string(),
        ),
        413 => (
            "payload_too_large",
            "The request body is too large".to_string(),
        ),
        415 => ("unsupported_media_type", err.to_string()),
        s if (400..500).contains(&s) => ("bad_request", err.to_string()),
        _ => {
            tracing::error!(error = %err, "unhandled error");
            ("internal_error", "Internal server error".to_string())
        }
    };
    error_response(status, code, &message)
}
