//! Webhook signatures: pure functions, tested against published vectors.
//!
//! Two schemes are sent side by side when the instance has a secret:
//!
//! - the seed's `X-Webhook-Signature`: lowercase hex HMAC-SHA256 of the exact
//!   body bytes, keyed with the secret's UTF-8 bytes as given;
//! - Standard Webhooks 1.0: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//!   `{webhook-id}.{webhook-timestamp}.{body}`. The key is the base64-decoded
//!   part after `whsec_` when the secret has that form, else the secret's
//!   UTF-8 bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The seed's signature header: hex HMAC-SHA256 of the body.
pub const SEED_SIGNATURE_HEADER: &str = "x-webhook-signature";
/// Standard Webhooks: the message id, the same on every attempt.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: unix seconds of the attempt.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a Standard Webhooks secret whose rest is base64.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `X-Webhook-Signature`: lowercase hex HMAC-SHA256 of `body`, keyed with the secret as given.
pub fn seed_signature(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
}

/// The Standard Webhooks key of a secret: base64-decoded after `whsec_`, else the raw bytes.
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(STANDARD_SECRET_PREFIX)
        .and_then(|rest| BASE64.decode(rest).ok())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn standard_signature(key: &[u8], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(
        key,
        &[webhook_id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", BASE64.encode(mac))
}

/// Every signature header of one attempt (empty without a secret).
pub fn signature_headers(
    secret: Option<&str>,
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    match secret {
        Some(s) if !s.is_empty() => vec![
            (SEED_SIGNATURE_HEADER, seed_signature(s, body)),
            (
                WEBHOOK_SIGNATURE_HEADER,
                standard_signature(&standard_key(s), webhook_id, timestamp, body),
            ),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_signature_matches_rfc_4231_test_case_2() {
        // RFC 4231, 4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            seed_signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_signature_matches_the_published_vector() {
        let key = standard_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let sig = standard_signature(
            &key,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn plain_secrets_are_used_as_raw_bytes() {
        assert_eq!(standard_key("my-secret"), b"my-secret".to_vec());
        // Not base64 after the prefix: the whole string is the key.
        assert_eq!(standard_key("whsec_!!!"), b"whsec_!!!".to_vec());
    }

    #[test]
    fn no_secret_means_no_signature_headers() {
        assert!(signature_headers(None, "msg_1", 1, b"{}").is_empty());
        assert!(signature_headers(Some(""), "msg_1", 1, b"{}").is_empty());
        let h = signature_headers(Some("s"), "msg_1", 1, b"{}");
        assert_eq!(
            h.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [SEED_SIGNATURE_HEADER, WEBHOOK_SIGNATURE_HEADER]
        );
    }
}
