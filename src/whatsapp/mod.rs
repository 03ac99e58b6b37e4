//! WhatsApp sessions: the engine interface, the per-instance supervisor, the
//! real engine (whatsapp-rust), the simulated network, media fetching and QR rendering.

pub mod engine;
pub mod media;
pub mod qr;
pub mod real;
pub mod sim;
pub mod supervisor;

use std::fmt;

pub use engine::{Engine, EngineEvent, EngineSession, MediaKind, OutgoingMedia, Receipt};
pub use supervisor::{ConnState, SessionStatus, Sessions};

/// A WhatsApp address: `<digits>@s.whatsapp.net` for people, `<id>@g.us` for groups.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jid(String);

/// Why a recipient was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRecipient(pub String);

impl Jid {
    /// Parses the API's `phone` field: a phone number (digits, an optional
    /// leading `+`, spaces and dashes; 7 to 15 digits) or a full JID.
    pub fn parse_recipient(raw: &str) -> Result<Self, BadRecipient> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(BadRecipient("phone is required".into()));
        }
        if let Some((user, server)) = s.split_once('@') {
            let user = user.split(':').next().unwrap_or_default();
            let ok = match server {
                "s.whatsapp.net" | "c.us" => is_phone_digits(user),
                "g.us" => {
                    !user.is_empty()
                        && user.len() <= 40
                        && user.chars().all(|c| c.is_ascii_digit() || c == '-')
                }
                "lid" => {
                    !user.is_empty() && user.len() <= 20 && user.chars().all(|c| c.is_ascii_digit())
                }
                _ => false,
            };
            if !ok {
                return Err(BadRecipient(format!(
                    "phone must be a phone number or a JID like 79001234567@s.whatsapp.net or 123-456@g.us, got {s:?}"
                )));
            }
            let server = if server == "c.us" {
                "s.whatsapp.net"
            } else {
                server
            };
            return Ok(Self(format!("{user}@{server}")));
        }
        let body = s.strip_prefix('+').unwrap_or(s);
        if !body
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        {
            return Err(BadRecipient(format!(
                "phone may hold only digits, an optional leading +, spaces and dashes, got {s:?}"
            )));
        }
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        if !is_phone_digits(&digits) {
            return Err(BadRecipient(format!(
                "phone must have 7 to 15 digits, got {}",
                digits.len()
            )));
        }
        Ok(Self(format!("{digits}@s.whatsapp.net")))
    }

    /// A person's JID from bare digits (no checks).
    pub fn from_phone(digits: &str) -> Self {
        Self(format!("{digits}@s.whatsapp.net"))
    }

    /// A JID as stored (no checks).
    pub fn from_raw(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The part before `@`.
    pub fn user(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }

    /// Whether this is a group.
    pub fn is_group(&self) -> bool {
        self.0.ends_with("@g.us")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_phone_digits(s: &str) -> bool {
    (7..=15).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_parse_from_numbers_and_jids() {
        for (raw, jid) in [
            ("79001234567", "79001234567@s.whatsapp.net"),
            ("+7 900 123-45-67", "79001234567@s.whatsapp.net"),
            ("79001234567@s.whatsapp.net", "79001234567@s.whatsapp.net"),
            ("79001234567@c.us", "79001234567@s.whatsapp.net"),
            ("1234567890-1600000000@g.us", "1234567890-1600000000@g.us"),
        ] {
            assert_eq!(Jid::parse_recipient(raw).unwrap().as_str(), jid, "{raw}");
        }
        for bad in [
            "",
            "123",
            "1234567890123456",
            "7900abc4567",
            "++79001234567",
            "x@example.com",
            "@g.us",
            "7900123456@s.whatsapp.net@x",
        ] {
            assert!(Jid::parse_recipient(bad).is_err(), "{bad}");
        }
    }
}
