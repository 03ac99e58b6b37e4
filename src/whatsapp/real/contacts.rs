//! The contacts of one instance, persisted next to its session store.
//!
//! WhatsApp has no "list my contacts" call: contacts arrive once, as
//! `ContactUpdate`s of the first app-state sync after pairing, and push names
//! via history sync and `PushNameUpdate`s. This book keeps what arrived in
//! `<data>/wa/<instanceId>.contacts.json` so `contacts()` can answer later,
//! across restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::events::Contact;

/// What is known of one person.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Entry {
    /// The name saved in the account's address book.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The name the person chose for themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    push_name: Option<String>,
}

/// A persisted map of phone number → names.
pub struct ContactBook {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
}

/// One learned fact about a contact.
#[derive(Debug, Clone, PartialEq)]
pub enum Learned {
    /// An address-book name (from the app-state sync).
    Name { phone: String, name: String },
    /// A push name (from history sync or a message).
    PushName { phone: String, push_name: String },
}

impl ContactBook {
    /// Loads the book at `path` (empty when missing or unreadable).
    pub async fn open(path: PathBuf) -> Self {
        let entries = match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable contact book, starting empty");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Self {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// Merges facts; writes the book and returns the contacts that changed.
    pub async fn learn(&self, facts: Vec<Learned>) -> Vec<Contact> {
        let mut entries = self.entries.lock().await;
        let mut changed = BTreeMap::new();
        for fact in facts {
            let (phone, value, is_name) = match fact {
                Learned::Name { phone, name } => (phone, name, true),
                Learned::PushName { phone, push_name } => (phone, push_name, false),
            };
            if !is_phone(&phone) || value.is_empty() {
                continue;
            }
            let entry = entries.entry(phone.clone()).or_default();
            let slot = if is_name {
                &mut entry.name
            } else {
                &mut entry.push_name
            };
            if slot.as_deref() != Some(value.as_str()) {
                *slot = Some(value);
                changed.insert(phone.clone(), to_contact(&phone, entry));
            }
        }
        if !changed.is_empty() {
            let bytes = serde_json::to_vec(&*entries).expect("contacts serialize");
            write_private_atomic(&self.path, &bytes).await;
        }
        changed.into_values().collect()
    }

    /// Every known person.
    pub async fn all(&self) -> Vec<Contact> {
        self.entries
            .lock()
            .await
            .iter()
            .map(|(phone, e)| to_contact(phone, e))
            .collect()
    }
}

/// Replaces the file at `path` with `bytes` (readable by this user only;
/// written aside and renamed, so a crash leaves the old or the new file).
/// A failure is logged: the book in memory stays right.
pub(super) async fn write_private_atomic(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("json.tmp");
    let written = async {
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts.open(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut f, bytes).await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "failed to write a book of the session");
    }
}

fn is_phone(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.chars().all(|c| c.is_ascii_digit())
}

fn to_contact(phone: &str, e: &Entry) -> Contact {
    Contact {
        id: crate::ids::Jid::from_phone(phone),
        name: e
            .name
            .clone()
            .or_else(|| e.push_name.clone())
            .unwrap_or_default(),
        number: phone.to_string(),
        is_group: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn learned_names_persist_and_only_changes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.contacts.json");
        let book = ContactBook::open(path.clone()).await;
        let changed = book
            .learn(vec![
                Learned::PushName {
                    phone: "79001112233".into(),
                    push_name: "Vanya".into(),
                },
                Learned::Name {
                    phone: "79001112233".into(),
                    name: "Ivan Ivanov".into(),
                },
                Learned::Name {
                    phone: "not-a-phone".into(),
                    name: "x".into(),
                },
            ])
            .await;
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].name, "Ivan Ivanov");
        assert_eq!(changed[0].id.as_str(), "79001112233@s.whatsapp.net");
        let again = book
            .learn(vec![Learned::PushName {
                phone: "79001112233".into(),
                push_name: "Vanya".into(),
            }])
            .await;
        assert!(again.is_empty(), "nothing changed: {again:?}");

        let reopened = ContactBook::open(path).await;
        assert_eq!(reopened.all().await, book.all().await);
        assert_eq!(reopened.all().await.len(), 1);
    }
}
