//! Media of the real engine beyond sending: the handle the gateway keeps to
//! fetch a message's media again (the CDN path and keys, as JSON; sealed at
//! rest by the gateway), the download through the client into a file with a
//! size cap, and the HTTP-client hook the CDN traffic goes through.

use std::io::{Seek, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use whatsapp_rust::client::Client;
use whatsapp_rust::download::{DownloadParams, DownloadWriter};
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::wacore::download::MediaType;
use whatsapp_rust::waproto::whatsapp as wa;

use super::super::engine::{FetchMediaError, KeptMedia, MediaKind};

/// An HTTP client given from code (tests, benchmarks): the real engine's
/// media uploads and downloads go through it instead of the crate's own
/// client (ureq, with full certificate checks). Never read from the environment.
#[derive(Clone)]
pub struct HttpHook(pub Arc<dyn HttpClient>);

impl std::fmt::Debug for HttpHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpHook")
    }
}

/// The client every session's media goes through: the hook, or the crate's default.
pub(super) fn http_client(hook: Option<&HttpHook>) -> Arc<dyn HttpClient> {
    match hook {
        Some(h) => h.0.clone(),
        None => Arc::new(whatsapp_rust::http::UreqHttpClient::new()),
    }
}

/// Hands a shared client to the bot builder (which takes one by value).
pub(super) struct SharedHttp(pub Arc<dyn HttpClient>);

#[async_trait]
impl HttpClient for SharedHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        self.0.execute(request).await
    }

    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(
        &self,
        request: HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::wacore::net::StreamingHttpResponse> {
        self.0.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: whatsapp_rust::wacore::net::UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.0.execute_upload(request, body, content_length)
    }
}

/// What it takes to download and decrypt a message's media again.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Locator {
    media_type: String,
    direct_path: String,
    media_key: String,
    file_sha256: String,
    file_enc_sha256: String,
    file_length: u64,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> anyhow::Result<Vec<u8>> {
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

fn type_name(t: MediaType) -> &'static str {
    match t {
        MediaType::Image => "image",
        MediaType::Video => "video",
        MediaType::Audio => "audio",
        MediaType::Sticker => "sticker",
        _ => "document",
    }
}

fn type_of(name: &str) -> MediaType {
    match name {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" => MediaType::Audio,
        "sticker" => MediaType::Sticker,
        _ => MediaType::Document,
    }
}

/// The crate's media type for a kind of media we send.
pub(super) fn media_type(kind: MediaKind) -> MediaType {
    match kind {
        MediaKind::Image => MediaType::Image,
        MediaKind::Video => MediaType::Video,
        MediaKind::Audio => MediaType::Audio,
        MediaKind::Document => MediaType::Document,
    }
}

/// The CDN fields common to every media message.
struct Fields<'a> {
    direct_path: Option<&'a str>,
    media_key: Option<&'a [u8]>,
    file_sha256: Option<&'a [u8]>,
    file_enc_sha256: Option<&'a [u8]>,
    file_length: Option<u64>,
}

/// The locator of a media message's CDN fields; `None` when one is missing.
fn locator(t: MediaType, f: Fields<'_>) -> Option<String> {
    let l = Locator {
        media_type: type_name(t).to_string(),
        direct_path: f.direct_path?.to_string(),
        media_key: b64(f.media_key?),
        file_sha256: b64(f.file_sha256?),
        file_enc_sha256: b64(f.file_enc_sha256?),
        file_length: f.file_length.unwrap_or(0),
    };
    serde_json::to_string(&l).ok()
}

/// The handle of a received message's media (the base message, wrappers
/// unwrapped), with what the media endpoint answers; `None` without media.
pub(super) fn kept_from_message(
    message: &wa::Message,
    described: &super::super::engine::IncomingMedia,
) -> Option<KeptMedia> {
    macro_rules! fields {
        ($m:expr) => {
            Fields {
                direct_path: $m.direct_path.as_deref(),
                media_key: $m.media_key.as_deref(),
                file_sha256: $m.file_sha256.as_deref(),
                file_enc_sha256: $m.file_enc_sha256.as_deref(),
                file_length: $m.file_length,
            }
        };
    }
    let locator = if let Some(m) = message.image_message.as_option() {
        locator(MediaType::Image, fields!(m))
    } else if let Some(m) = message.video_message.as_option() {
        locator(MediaType::Video, fields!(m))
    } else if let Some(m) = message.ptv_message.as_option() {
        locator(MediaType::Video, fields!(m))
    } else if let Some(m) = message.audio_message.as_option() {
        locator(MediaType::Audio, fields!(m))
    } else if let Some(m) = message.document_message.as_option() {
        locator(MediaType::Document, fields!(m))
    } else if let Some(m) = message.sticker_message.as_option() {
        locator(MediaType::Sticker, fields!(m))
    } else {
        None
    }?;
    Some(KeptMedia {
        kind: described.kind,
        mimetype: described.mimetype.clone(),
        file_name: described.file_name.clone(),
        size: described.size,
        locator,
    })
}

/// The handle of media we uploaded.
pub(super) fn kept_from_upload(
    upload: &whatsapp_rust::upload::UploadResponse,
    media: &super::super::engine::OutgoingMedia,
) -> Option<KeptMedia> {
    kept_upload(
        upload,
        media_type(media.kind),
        media.kind,
        &media.mimetype,
        media.file_name.clone(),
    )
}

/// The handle of an upload of crate media type `t` (a voice note is audio,
/// a sticker its own type), shown as `kind`.
pub(super) fn kept_upload(
    upload: &whatsapp_rust::upload::UploadResponse,
    t: MediaType,
    kind: MediaKind,
    mimetype: &str,
    file_name: Option<String>,
) -> Option<KeptMedia> {
    let locator = locator(
        t,
        Fields {
            direct_path: Some(&upload.direct_path),
            media_key: Some(&upload.media_key),
            file_sha256: Some(&upload.file_sha256),
            file_enc_sha256: Some(&upload.file_enc_sha256),
            file_length: Some(upload.file_length),
        },
    )?;
    Some(KeptMedia {
        kind,
        mimetype: mimetype.to_string(),
        file_name,
        size: upload.file_length,
        locator,
    })
}

/// A file that refuses to grow past a cap (a download whose sender lied
/// about its size stops there).
struct CappedFile {
    file: std::fs::File,
    cap: u64,
}

impl Write for CappedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let at = self.file.stream_position()?;
        if at + buf.len() as u64 > self.cap {
            return Err(std::io::Error::other(FetchMediaError::TooLarge(self.cap)));
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for CappedFile {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

impl DownloadWriter for CappedFile {
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
}

/// Downloads and decrypts the media `locator` names into `dest` through
/// `client` (which asks WhatsApp for the CDN hosts and auth); at most `max_bytes`.
pub(super) async fn fetch(
    client: &Client,
    locator: &str,
    dest: &Path,
    max_bytes: u64,
) -> anyhow::Result<u64> {
    let l: Locator =
        serde_json::from_str(locator).context("a media handle the engine cannot read")?;
    if l.file_length > max_bytes {
        return Err(FetchMediaError::TooLarge(max_bytes).into());
    }
    let params = DownloadParams::encrypted(
        l.direct_path,
        &unb64(&l.media_key)?,
        &unb64(&l.file_sha256)?,
        &unb64(&l.file_enc_sha256)?,
        l.file_length,
        type_of(&l.media_type),
    );
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dest)
        .with_context(|| format!("Failed to create {}", dest.display()))?;
    let written = client
        .download_from_params_to_writer(
            &params,
            CappedFile {
                file,
                cap: max_bytes,
            },
        )
        .await;
    match written {
        Ok(w) => Ok(w
            .file
            .metadata()
            .context("Failed to measure the media")?
            .len()),
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<FetchMediaError>())
                    || c.is::<FetchMediaError>()
            }) {
                return Err(FetchMediaError::TooLarge(max_bytes).into());
            }
            let text = format!("{e:#}");
            if text.contains("404") || text.contains("410") {
                return Err(FetchMediaError::Gone.into());
            }
            Err(e.context("Failed to download the media"))
        }
    }
}
