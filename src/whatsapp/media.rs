//! Media for sending: fetched from a URL (guarded, capped, timed out) or
//! taken from an upload.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::domain::types::OutboundUrl;

use super::engine::{MediaKind, OutgoingMedia};

/// Why media could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The URL is not acceptable (scheme, private address).
    #[error("{0}")]
    BadUrl(String),
    /// Over the size cap.
    #[error("the media is larger than {0} bytes")]
    TooLarge(u64),
    /// The download failed or timed out.
    #[error("failed to fetch the media: {0}")]
    Fetch(String),
    /// The source answered with an error status.
    #[error("the media URL answered HTTP {0}")]
    Status(u16),
}

/// The file name of a URL's last path segment, if it has one.
fn file_name_from_url(url: &url::Url) -> Option<String> {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_owned))
        .filter(|s| !s.is_empty())
}

/// Keeps only the base name and drops control characters.
pub fn clean_file_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    let cleaned = cleaned.trim().to_string();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A MIME type from a file name's extension, for uploads without one.
pub fn mimetype_from_name(name: &str) -> &'static str {
    let ext = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Downloads media from `url` with `client` (see [`crate::net::outbound_client`]).
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    allow_private: bool,
    max_bytes: u64,
    caption: Option<String>,
    file_name: Option<String>,
) -> Result<OutgoingMedia, MediaError> {
    let parsed = OutboundUrl::parse(url, "url", allow_private)
        .map_err(|e| MediaError::BadUrl(e.to_string()))?;
    let resp = client.get(parsed.url().clone()).send().await.map_err(|e| {
        if crate::net::refused_for_address(&e) {
            MediaError::BadUrl(crate::domain::types::UrlRefused::Private("url").to_string())
        } else {
            MediaError::Fetch(describe(&e))
        }
    })?;
    if !resp.status().is_success() {
        return Err(MediaError::Status(resp.status().as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(MediaError::TooLarge(max_bytes));
    }
    let mimetype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| v.contains('/'));
    let final_url = resp.url().clone();
    let mut body = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| MediaError::Fetch(describe(&e)))?;
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(MediaError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    let file_name = file_name.as_deref().and_then(clean_file_name).or_else(|| {
        file_name_from_url(&final_url)
            .as_deref()
            .and_then(clean_file_name)
    });
    let mimetype = mimetype.unwrap_or_else(|| {
        file_name
            .as_deref()
            .map(mimetype_from_name)
            .unwrap_or("application/octet-stream")
            .to_string()
    });
    Ok(OutgoingMedia {
        kind: MediaKind::from_mimetype(&mimetype),
        mimetype,
        file_name,
        caption,
        data: body.freeze(),
    })
}

/// Media from uploaded bytes.
pub fn from_upload(
    data: Bytes,
    content_type: Option<&str>,
    file_name: Option<&str>,
    caption: Option<String>,
) -> OutgoingMedia {
    let file_name = file_name.and_then(clean_file_name);
    let mimetype = content_type
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| v.contains('/') && v != "application/octet-stream")
        .unwrap_or_else(|| {
            file_name
                .as_deref()
                .map(mimetype_from_name)
                .unwrap_or("application/octet-stream")
                .to_string()
        });
    OutgoingMedia {
        kind: MediaKind::from_mimetype(&mimetype),
        mimetype,
        file_name,
        caption,
        data,
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let text = s.to_string();
            if text.contains("private") {
                return text;
            }
            source = s.source();
        }
        "could not connect".into()
    } else if e.is_redirect() {
        "refused redirect".into()
    } else {
        "transfer failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_content_type() {
        assert_eq!(MediaKind::from_mimetype("image/jpeg"), MediaKind::Image);
        assert_eq!(MediaKind::from_mimetype("video/mp4"), MediaKind::Video);
        assert_eq!(MediaKind::from_mimetype("audio/ogg"), MediaKind::Audio);
        assert_eq!(
            MediaKind::from_mimetype("application/pdf"),
            MediaKind::Document
        );
    }

    #[test]
    fn file_names_keep_only_the_base_name() {
        assert_eq!(
            clean_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            clean_file_name("C:\\x\\report.pdf").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(clean_file_name("  "), None);
    }
}
