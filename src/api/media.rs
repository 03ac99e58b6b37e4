//! `GET /api/whatsapp/{instanceId}/messages/{messageId}/media`: the bytes
//! of a sent or received message's media, downloaded (and decrypted) on
//! demand through the instance's engine into a temporary file and streamed
//! from there, so a large file is never held in memory.

use poem::Body;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::{Binary, Response};
use poem_openapi::{ApiResponse, OpenApi};

use crate::api::AppState;
use crate::error::{ApiError, ApiResult};
use crate::ids::MessageId;
use crate::whatsapp::engine::KeptMedia;
use crate::whatsapp::supervisor::MediaFetchError;

use super::security::{Tag, owned_instance};

/// The media, with its type and file name.
#[derive(ApiResponse)]
pub enum MediaResponse {
    /// The media's bytes. `Content-Type` is the media's own type (e.g.
    /// `image/jpeg`); `Content-Disposition` names the file, e.g.
    /// `attachment; filename="report.pdf"`.
    #[oai(status = 200, content_type = "application/octet-stream")]
    Media(
        Binary<Body>,
        /// `attachment; filename="…"` (and `filename*` for non-ASCII names).
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

impl From<MediaFetchError> for ApiError {
    fn from(e: MediaFetchError) -> Self {
        match e {
            MediaFetchError::NotFound => {
                ApiError::not_found("No such message with media on this instance")
            }
            MediaFetchError::NotConnected => ApiError::conflict(
                "The instance is not connected to WhatsApp: media is downloaded through it; reconnect it first",
            ),
            MediaFetchError::TooLarge(cap) => {
                ApiError::too_large(format!("the media is larger than {cap} bytes"))
            }
            MediaFetchError::Gone => {
                ApiError::not_found("The media is no longer available at WhatsApp")
            }
            MediaFetchError::Engine(e) => {
                tracing::warn!(error = %format!("{e:#}"), "media download failed");
                ApiError::bad_gateway("The media could not be downloaded from WhatsApp; try again")
            }
        }
    }
}

/// A file name for the answer: the media's own, or one made from the
/// message id and the type.
pub fn file_name(media: &KeptMedia, message_id: &MessageId) -> String {
    let own = media.file_name.as_deref().map(|n| {
        // Only the last path segment, without control characters.
        n.rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
    });
    match own.filter(|n| !n.trim().is_empty() && n != "." && n != "..") {
        Some(n) => n,
        None => format!("{message_id}.{}", extension(&media.mimetype)),
    }
}

/// The usual file extension of a MIME type (`bin` when unknown).
fn extension(mimetype: &str) -> &'static str {
    let base = mimetype
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" | "audio/aac" => "m4a",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        _ => "bin",
    }
}

/// `Content-Disposition` for `name`: an ASCII fallback in `filename`, the
/// name itself percent-encoded in `filename*` (RFC 6266) when it is not ASCII.
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '_',
        })
        .collect();
    if ascii == name {
        return format!("attachment; filename=\"{ascii}\"");
    }
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The media of messages.
pub struct MediaApi;

#[OpenApi(tag = "Tag::WhatsApp")]
impl MediaApi {
    /// The media of a sent or received message (image, video, audio,
    /// document, sticker), downloaded and decrypted on demand through the
    /// instance's WhatsApp session (it must be connected: 409 otherwise).
    /// Example: `GET /api/whatsapp/3f2c…/messages/3EB0C431C26A1916E4C7/media`
    /// answers the bytes with `Content-Type: image/jpeg` and
    /// `Content-Disposition: attachment; filename="3EB0C431C26A1916E4C7.jpg"`.
    /// 404 for an unknown message or one without media; 413 above
    /// `WA_MEDIA_MAX_BYTES`.
    #[oai(
        path = "/api/whatsapp/:instanceId/messages/:messageId/media",
        method = "get"
    )]
    async fn media(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// The message id, as in `message_received` / `message_sent` (e.g. `3EB0C431C26A1916E4C7`).
        #[oai(name = "messageId")]
        message_id: Path<String>,
    ) -> ApiResult<Response<MediaResponse>> {
        let message_id = MessageId::from_stored(message_id.0);
        let dir = state.config.data_dir.join("tmp");
        crate::secrets::private_dir(&dir).map_err(ApiError::internal)?;
        let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(ApiError::internal)?;
        let (kept, _size) = state
            .sessions
            .fetch_media(
                owned.id(),
                &message_id,
                tmp.path(),
                state.config.media_max_bytes,
            )
            .await?;
        // Opened, then unlinked: the open handle streams it, nothing stays on disk.
        let file = tokio::fs::File::open(tmp.path())
            .await
            .map_err(ApiError::internal)?;
        drop(tmp);
        let name = file_name(&kept, &message_id);
        let mimetype = if poem::http::HeaderValue::from_str(&kept.mimetype).is_ok()
            && !kept.mimetype.is_empty()
        {
            kept.mimetype.clone()
        } else {
            "application/octet-stream".to_string()
        };
        Ok(Response::new(MediaResponse::Media(
            Binary(Body::from_async_read(file)),
            content_disposition(&name),
        ))
        .header(poem::http::header::CONTENT_TYPE, mimetype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MediaKind;

    fn kept(mimetype: &str, name: Option<&str>) -> KeptMedia {
        KeptMedia {
            kind: MediaKind::Document,
            mimetype: mimetype.into(),
            file_name: name.map(str::to_owned),
            size: 1,
            locator: String::new(),
        }
    }

    #[test]
    fn a_file_name_is_the_medias_own_last_segment_or_made_from_the_id() {
        let id = MessageId::from_stored("3EB0AA");
        assert_eq!(
            file_name(&kept("application/pdf", Some("r.pdf")), &id),
            "r.pdf"
        );
        assert_eq!(
            file_name(&kept("application/pdf", Some("../../etc/passwd")), &id),
            "passwd"
        );
        assert_eq!(file_name(&kept("image/jpeg", None), &id), "3EB0AA.jpg");
        assert_eq!(file_name(&kept("x/unknown", Some("..")), &id), "3EB0AA.bin");
    }

    #[test]
    fn content_disposition_quotes_safely_and_encodes_non_ascii_names() {
        assert_eq!(
            content_disposition("a.pdf"),
            "attachment; filename=\"a.pdf\""
        );
        assert_eq!(
            content_disposition("a\"b.pdf"),
            "attachment; filename=\"a_b.pdf\"; filename*=UTF-8''a%22b.pdf"
        );
        assert_eq!(
            content_disposition("отчёт.pdf"),
            "attachment; filename=\"_____.pdf\"; filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf"
        );
    }
}
