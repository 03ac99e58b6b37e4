//! The fake network's media: the `media_conn` answer (one CDN host and an
//! auth token) and a fake CDN, an `HttpClient` over an in-memory map that
//! the real client's media traffic goes through (the gateway's
//! `HttpHook`). Uploads are checked as WhatsApp's CDN would (the auth
//! token, the token naming the encrypted file's SHA-256) and stored under a
//! direct path; downloads answer what was stored. Contacts encrypt and
//! decrypt media with the crate's own functions, so what the gateway sends
//! is compared, byte for byte, with what a contact decrypts.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use whatsapp_rust::NodeBuilder;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::wacore::download::{DownloadUtils, MediaType};
use whatsapp_rust::wacore::iq::mediaconn::{
    HostType, MediaConnHostExtended, MediaConnResponseExtended,
};
use whatsapp_rust::wacore::protocol::ProtocolNode;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::waproto::whatsapp as wa;

use super::network::Contact;
use super::{Inner, SERVER};

/// The CDN host the fake's `media_conn` names.
pub const CDN_HOST: &str = "mmg.fake-cdn.test";
/// The media auth token the fake hands out and the CDN expects.
const MEDIA_AUTH: &str = "fake-media-auth-token";

/// The answer to `<iq xmlns="w:m" type="set"><media_conn/></iq>`.
pub(super) fn media_conn(id: &str) -> Node {
    let conn = MediaConnResponseExtended::mock(
        MEDIA_AUTH.to_string(),
        3600,
        vec![MediaConnHostExtended::simple(
            CDN_HOST.to_string(),
            HostType::Primary,
        )],
    );
    NodeBuilder::new("iq")
        .attrs([
            ("from", SERVER.to_string()),
            ("type", "result".to_string()),
            ("id", id.to_string()),
        ])
        .children([conn.into_node()])
        .build()
}

/// base64url (no padding) of a SHA-256: the token that names an encrypted file.
fn token_of(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

/// The fake CDN as the client's HTTP client.
pub struct Cdn(pub(super) Arc<Inner>);

fn answer(status_code: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
    HttpResponse {
        status_code,
        body: body.into(),
    }
}

impl Cdn {
    fn serve(&self, request: &HttpRequest) -> HttpResponse {
        let server = &self.0;
        let Ok(url) = url::Url::parse(&request.url) else {
            server.problem(format!("the CDN got a bad URL {}", request.url));
            return answer(400, "bad url");
        };
        if url.scheme() != "https" || url.host_str() != Some(CDN_HOST) {
            server.problem(format!("a media request to another host: {}", request.url));
            return answer(404, "no such host");
        }
        let query = |k: &str| {
            url.query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        if query("auth").as_deref() != Some(MEDIA_AUTH) {
            server.problem(format!(
                "a media request without the auth token: {}",
                url.path()
            ));
            return answer(401, "bad auth");
        }
        let path = url.path().to_string();
        match request.method.as_str() {
            "POST" if path.starts_with("/mms/") => {
                let body = request.body.as_deref().unwrap_or_default();
                let token = token_of(body);
                if !path.ends_with(&format!("/{token}"))
                    || query("token").as_deref() != Some(&token)
                {
                    server.problem(format!("an upload whose token is not its SHA-256: {path}"));
                    return answer(400, "bad token");
                }
                let direct_path = format!("/v/t62.7118-24/fake/{token}.enc");
                server
                    .cdn
                    .lock()
                    .unwrap()
                    .insert(direct_path.clone(), body.to_vec());
                let json = serde_json::json!({
                    "url": format!("https://{CDN_HOST}{direct_path}"),
                    "direct_path": direct_path,
                });
                answer(200, json.to_string())
            }
            "GET" => match server.cdn.lock().unwrap().get(&path) {
                Some(blob) => {
                    if query("token").as_deref() != Some(&token_of(blob)) {
                        server.problem(format!("a download with a wrong token: {path}"));
                    }
                    answer(200, blob.clone())
                }
                None => answer(404, "not found"),
            },
            other => {
                server.problem(format!(
                    "a media request the CDN does not know: {other} {path}"
                ));
                answer(400, "unknown")
            }
        }
    }
}

#[async_trait]
impl HttpClient for Cdn {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        Ok(self.serve(&request))
    }
}

/// Media fields of a received message, whichever kind it is.
pub struct MediaRef<'a> {
    pub direct_path: &'a str,
    pub media_key: &'a [u8],
    pub media_type: MediaType,
}

impl<'a> MediaRef<'a> {
    /// The media of a message, if it has any of the kinds the gateway sends.
    pub fn of(message: &'a wa::Message) -> Option<Self> {
        macro_rules! from {
            ($m:expr, $t:expr) => {
                Some(MediaRef {
                    direct_path: $m.direct_path.as_deref()?,
                    media_key: $m.media_key.as_deref()?,
                    media_type: $t,
                })
            };
        }
        if let Some(m) = message.image_message.as_option() {
            return from!(m, MediaType::Image);
        }
        if let Some(m) = message.video_message.as_option() {
            return from!(m, MediaType::Video);
        }
        if let Some(m) = message.audio_message.as_option() {
            return from!(m, MediaType::Audio);
        }
        if let Some(m) = message.document_message.as_option() {
            return from!(m, MediaType::Document);
        }
        if let Some(m) = message.sticker_message.as_option() {
            return from!(m, MediaType::Sticker);
        }
        None
    }
}

impl super::FakeWa {
    /// The fake CDN, to hand to the gateway as its media HTTP client.
    pub fn cdn(&self) -> Arc<dyn HttpClient> {
        Arc::new(Cdn(self.inner.clone()))
    }

    /// Files stored on the CDN so far.
    pub fn cdn_files(&self) -> usize {
        self.inner.cdn.lock().unwrap().len()
    }

    /// A contact downloads a received message's media from the CDN and
    /// decrypts it (the MAC and the keys checked by the crate).
    pub fn download(&self, message: &wa::Message) -> anyhow::Result<Vec<u8>> {
        let media =
            MediaRef::of(message).ok_or_else(|| anyhow::anyhow!("the message has no media"))?;
        let blob = self
            .inner
            .cdn
            .lock()
            .unwrap()
            .get(media.direct_path)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("nothing on the CDN at {}", media.direct_path))?;
        Ok(DownloadUtils::verify_and_decrypt(
            &blob,
            media.media_key,
            media.media_type,
        )?)
    }

    /// Encrypts `bytes` with a fresh media key and stores them on the CDN,
    /// as a contact's phone uploads media; returns the direct path and the keys.
    fn upload_as_contact(
        &self,
        bytes: &[u8],
        kind: MediaType,
    ) -> anyhow::Result<(String, whatsapp_rust::wacore::upload::EncryptedMedia)> {
        let enc = whatsapp_rust::wacore::upload::encrypt_media(bytes, kind)?;
        let token = token_of(&enc.data_to_upload);
        let direct_path = format!("/v/t62.7118-24/fake/{token}.enc");
        self.inner
            .cdn
            .lock()
            .unwrap()
            .insert(direct_path.clone(), enc.data_to_upload.clone());
        Ok((direct_path, enc))
    }

    /// `contact` sends an image to the account `to`: encrypted with a fresh
    /// media key, uploaded to the CDN, the message carrying its keys.
    pub async fn send_image_from(
        &self,
        contact: &Contact,
        to: &str,
        bytes: &[u8],
        mimetype: &str,
        caption: &str,
    ) -> anyhow::Result<String> {
        let (direct_path, enc) = self.upload_as_contact(bytes, MediaType::Image)?;
        let message = wa::Message {
            image_message: Some(wa::message::ImageMessage {
                url: Some(format!("https://{CDN_HOST}{direct_path}")),
                direct_path: Some(direct_path),
                mimetype: Some(mimetype.to_string()),
                caption: Some(caption.to_string()).filter(|c| !c.is_empty()),
                media_key: Some(enc.media_key.to_vec()),
                file_sha256: Some(enc.file_sha256.to_vec()),
                file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
                file_length: Some(bytes.len() as u64),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.send_from(contact, to, &message).await
    }

    /// `contact` records a voice note (push-to-talk audio, OGG/Opus) for the account `to`.
    pub async fn send_voice_from(
        &self,
        contact: &Contact,
        to: &str,
        bytes: &[u8],
    ) -> anyhow::Result<String> {
        let (direct_path, enc) = self.upload_as_contact(bytes, MediaType::Audio)?;
        let message = wa::Message {
            audio_message: Some(wa::message::AudioMessage {
                url: Some(format!("https://{CDN_HOST}{direct_path}")),
                direct_path: Some(direct_path),
                mimetype: Some("audio/ogg; codecs=opus".to_string()),
                media_key: Some(enc.media_key.to_vec()),
                file_sha256: Some(enc.file_sha256.to_vec()),
                file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
                file_length: Some(bytes.len() as u64),
                seconds: Some(3),
                ptt: Some(true),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.send_from(contact, to, &message).await
    }
}
