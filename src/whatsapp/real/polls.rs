//! The polls of one instance, kept to open their votes.
//!
//! A vote on a WhatsApp poll arrives encrypted with a key derived from the
//! poll's 32-byte message secret, its id and the creator's and voter's JIDs.
//! The secret travels only inside the poll's own message, so the engine
//! keeps it, with the poll's options and creator, for every poll it sends
//! or receives: in `<data>/wa/<instanceId>.polls.json` (mode 0600, deleted
//! with the session store; never in an event, a log line or on NATS). The
//! newest [`MAX_POLLS`] are kept.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// How many polls are kept per instance (the oldest are forgotten first).
pub const MAX_POLLS: usize = 2000;

/// What opening a poll's votes needs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptPoll {
    /// The message secret, base64.
    secret: String,
    /// The option names, in order.
    pub options: Vec<String>,
    /// The creator's JID as WhatsApp addressed it (part of the key).
    pub creator: String,
}

impl std::fmt::Debug for KeptPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret opens every vote: never in a log line.
        f.debug_struct("KeptPoll")
            .field("options", &self.options)
            .field("creator", &self.creator)
            .finish_non_exhaustive()
    }
}

impl KeptPoll {
    pub fn new(secret: &[u8], options: Vec<String>, creator: String) -> Self {
        Self {
            secret: B64.encode(secret),
            options,
            creator,
        }
    }

    /// The message secret.
    pub fn secret(&self) -> Option<Vec<u8>> {
        B64.decode(&self.secret).ok()
    }

    /// The options a decrypted vote chose (its SHA-256 option hashes), in
    /// the poll's order; a hash of no option is left out.
    pub fn chosen(&self, hashes: &[Vec<u8>]) -> Vec<String> {
        self.options
            .iter()
            .filter(|name| {
                let h = whatsapp_rust::wacore::poll::compute_option_hash(name);
                hashes.iter().any(|x| x.as_slice() == h)
            })
            .cloned()
            .collect()
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Book {
    /// Poll ids, oldest first.
    order: VecDeque<String>,
    polls: BTreeMap<String, KeptPoll>,
}

/// The persisted polls of one instance.
pub struct PollBook {
    path: PathBuf,
    book: Mutex<Book>,
}

impl PollBook {
    /// Loads the book at `path` (empty when missing or unreadable).
    pub async fn open(path: PathBuf) -> Self {
        let book = match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable poll book, starting empty");
                Book::default()
            }),
            Err(_) => Book::default(),
        };
        Self {
            path,
            book: Mutex::new(book),
        }
    }

    /// Keeps a poll (sent or received) under its message id and writes the book.
    pub async fn keep(&self, poll_id: &str, poll: KeptPoll) {
        let mut book = self.book.lock().await;
        if book.polls.insert(poll_id.to_string(), poll).is_none() {
            book.order.push_back(poll_id.to_string());
        }
        while book.order.len() > MAX_POLLS {
            if let Some(old) = book.order.pop_front() {
                book.polls.remove(&old);
            }
        }
        let bytes = serde_json::to_vec(&*book).expect("polls serialize");
        super::contacts::write_private_atomic(&self.path, &bytes).await;
    }

    /// The poll with this message id, if kept.
    pub async fn get(&self, poll_id: &str) -> Option<KeptPoll> {
        self.book.lock().await.polls.get(poll_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_survive_a_reopen_privately_and_the_oldest_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.polls.json");
        let book = PollBook::open(path.clone()).await;
        let poll = KeptPoll::new(
            &[9; 32],
            vec!["Pizza".into(), "Sushi".into()],
            "79@s".into(),
        );
        book.keep("P1", poll.clone()).await;
        let again = PollBook::open(path.clone()).await;
        assert_eq!(again.get("P1").await, Some(poll.clone()));
        assert_eq!(again.get("P1").await.unwrap().secret(), Some(vec![9; 32]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the gateway's user reads the secrets");
        }
        assert!(!format!("{poll:?}").contains(&B64.encode([9u8; 32])));
        for i in 0..MAX_POLLS {
            book.keep(&format!("Q{i}"), poll.clone()).await;
        }
        assert_eq!(book.get("P1").await, None, "the oldest is forgotten");
        assert!(book.get("Q0").await.is_some());
    }

    #[test]
    fn a_vote_names_the_options_whose_hashes_it_carries() {
        let poll = KeptPoll::new(
            &[1; 32],
            vec!["A".into(), "B".into(), "C".into()],
            "x".into(),
        );
        let hashes = vec![
            whatsapp_rust::wacore::poll::compute_option_hash("C").to_vec(),
            whatsapp_rust::wacore::poll::compute_option_hash("A").to_vec(),
            vec![0; 32],
        ];
        assert_eq!(poll.chosen(&hashes), vec!["A", "C"]);
        assert!(poll.chosen(&[]).is_empty(), "a withdrawn vote");
    }
}
