//! The dashboard: a plain HTML/CSS/JS page served at `/`, its files embedded
//! in the binary (no build step, no Node). The page is a client of the
//! public API only: it logs in with `POST /api/auth/login`, keeps the JWT
//! in memory (never in storage, so a reload logs out), sends it as
//! `Authorization: Bearer` on every call, and reads the live event stream
//! with `fetch` (which, unlike `EventSource`, can send that header).

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{Response, handler};

/// The page's HTML.
const INDEX_HTML: &str = include_str!("assets/index.html");
/// The page's script.
const APP_JS: &str = include_str!("assets/app.js");
/// The page's style sheet.
const APP_CSS: &str = include_str!("assets/app.css");
/// The favicon.
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// The page's Content-Security-Policy: its own files only, no inline
/// script or style, images also from `blob:` (the QR code).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the page.
pub fn page() -> Response {
    file("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/<file>`: the script, style sheet and icon.
#[handler]
pub fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file("text/javascript; charset=utf-8", APP_JS),
        "app.css" => file("text/css; charset=utf-8", APP_CSS),
        "icon.svg" => file("image/svg+xml", ICON_SVG),
        _ => crate::api::error_response(StatusCode::NOT_FOUND, "not_found", "No such file"),
    }
}

/// An embedded file with the page's security headers.
fn file(content_type: &str, body: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}
