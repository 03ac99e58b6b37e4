//! Typed identifiers: parsed once at the edge (HTTP paths, engine events,
//! stored rows), then carried as their own types so that an instance id can
//! never be passed where a user id or a message id belongs. Each serializes
//! as the plain string it wraps, so the JSON contract is unchanged.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadId(pub String);

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        #[schemars(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value read from our own storage or log (no checks).
            pub fn from_stored(raw: impl Into<String>) -> Self {
                Self(raw.into())
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Values read from our own storage or log (as [`Self::from_stored`]).
        impl From<String> for $name {
            fn from(raw: String) -> Self {
                Self(raw)
            }
        }

        impl From<&str> for $name {
            fn from(raw: &str) -> Self {
                Self(raw.to_string())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl sqlx::Type<sqlx::Sqlite> for $name {
            fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
                <String as sqlx::Type<sqlx::Sqlite>>::type_info()
            }
            fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Sqlite as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for $name {
            fn decode(
                value: <sqlx::Sqlite as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, sqlx::Sqlite>>::decode(value).map(Self)
            }
        }
    };
}

string_id!(
    /// An instance: a UUID given at creation.
    InstanceId
);
string_id!(
    /// A user account: a UUID given at registration.
    UserId
);
string_id!(
    /// A WhatsApp message id (ours look like WhatsApp Web's: `3EB0` + 20 hex digits;
    /// other clients use other shapes).
    MessageId
);

fn parse_uuid(raw: &str, what: &str) -> Result<String, BadId> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| BadId(format!("{raw:?} is not a valid {what}")))
}

impl InstanceId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
    /// Parses an id from a request (a UUID).
    pub fn parse(raw: &str) -> Result<Self, BadId> {
        parse_uuid(raw, "instance id").map(Self)
    }
}

impl UserId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
    /// Parses an id from a request (a UUID).
    pub fn parse(raw: &str) -> Result<Self, BadId> {
        parse_uuid(raw, "user id").map(Self)
    }
}

impl MessageId {
    /// A new id shaped like WhatsApp Web's: `3EB0` + 20 upper-case hex
    /// digits. The first 11 are the clock in milliseconds and the last 9 a
    /// counter that starts at a random value, so the ids one gateway makes
    /// sort in the order it made them. The indexes keyed by message id (the
    /// log's, the history's, the send queue's) then grow at their right
    /// edge: a send adds to the page the previous send changed instead of
    /// changing a page picked at random among all of them.
    pub fn new_ordered() -> Self {
        static NEXT: std::sync::LazyLock<std::sync::atomic::AtomicU64> =
            std::sync::LazyLock::new(|| std::sync::atomic::AtomicU64::new(rand::random()));
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let count = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(format!(
            "3EB0{:011X}{:09X}",
            millis & 0xFFF_FFFF_FFFF,
            count & 0xF_FFFF_FFFF
        ))
    }
    /// Parses an id from a request: 1 to 128 printable ASCII characters.
    pub fn parse(raw: &str) -> Result<Self, BadId> {
        let s = raw.trim();
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadId(format!("{raw:?} is not a valid message id")));
        }
        Ok(Self(s.to_string()))
    }
}

/// A WhatsApp address: `<digits>@s.whatsapp.net` for people, `<id>@g.us` for
/// groups, `<digits>@lid` for a contact's hidden (LID) address.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
#[schemars(transparent)]
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
            return Self::parse_full(s, user, server);
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

    fn parse_full(s: &str, user: &str, server: &str) -> Result<Self, BadRecipient> {
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
        Ok(Self(format!("{user}@{server}")))
    }

    /// A person's JID from bare digits (no checks).
    pub fn from_phone(digits: &str) -> Self {
        Self(format!("{digits}@s.whatsapp.net"))
    }

    /// A JID as stored or as the engine reported it (no checks).
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

impl From<&str> for Jid {
    fn from(raw: &str) -> Self {
        Self(raw.to_string())
    }
}

impl From<String> for Jid {
    fn from(raw: String) -> Self {
        Self(raw)
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

    #[test]
    fn instance_ids_are_uuids_and_serialize_as_plain_strings() {
        let id = InstanceId::new_random();
        assert_eq!(InstanceId::parse(id.as_str()).unwrap(), id);
        assert!(InstanceId::parse("not-a-uuid").is_err());
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            serde_json::Value::String(id.to_string())
        );
    }

    #[test]
    fn message_ids_made_one_after_another_sort_in_that_order() {
        // Given ids made one after another (several within one millisecond)
        let ids: Vec<MessageId> = (0..1_000).map(|_| MessageId::new_ordered()).collect();
        // Then each sorts after the one before it, and none repeats
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{:?}", &ids[..3]);
    }

    #[test]
    fn message_ids_look_like_whatsapp_webs() {
        let id = MessageId::new_ordered();
        assert!(id.as_str().starts_with("3EB0") && id.as_str().len() == 24);
        assert!(
            id.as_str()[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
        assert!(MessageId::parse("").is_err());
        assert!(MessageId::parse("a b").is_err());
        assert_eq!(MessageId::parse(" ABC ").unwrap().as_str(), "ABC");
    }
}
