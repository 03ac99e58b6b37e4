//! Sends waiting for the server's ack: a send the server refuses (a nack)
//! or never acknowledges within the timeout is reported as failed, so a
//! message's status never claims more than the network said.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::super::Jid;

/// Failed ids remembered so a late ack does not report them sent after all.
const FAILED_MEMORY: usize = 10_000;

/// What an ack or receipt settled.
#[derive(Debug, PartialEq)]
pub enum Settled {
    /// A send that was waiting.
    Waiting,
    /// A send already reported failed (a late ack).
    AlreadyFailed,
    /// Nothing known (sent before a restart, or not by us).
    Unknown,
}

#[derive(Default)]
struct Book {
    waiting: HashMap<String, (Instant, Jid)>,
    failed: HashSet<String>,
}

/// The sends of one session waiting for their ack.
pub struct Acks {
    timeout: Duration,
    book: Mutex<Book>,
    /// Woken when a send starts waiting (the driver re-arms its timer).
    pub changed: Notify,
}

impl Acks {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            book: Mutex::new(Book::default()),
            changed: Notify::new(),
        }
    }

    /// A send is about to be written: its ack is due within the timeout.
    pub fn expect(&self, id: &str, chat: &Jid, now: Instant) {
        self.book
            .lock()
            .unwrap()
            .waiting
            .insert(id.to_string(), (now + self.timeout, chat.clone()));
        self.changed.notify_one();
    }

    /// The send failed before it reached the network (reported to the caller).
    pub fn forget(&self, id: &str) {
        self.book.lock().unwrap().waiting.remove(id);
    }

    /// The server acked (or refused) it, or a receipt proved it arrived.
    pub fn settle(&self, id: &str) -> Settled {
        let mut book = self.book.lock().unwrap();
        if book.waiting.remove(id).is_some() {
            Settled::Waiting
        } else if book.failed.contains(id) {
            Settled::AlreadyFailed
        } else {
            Settled::Unknown
        }
    }

    /// Records a refusal as failed (for a late duplicate ack).
    pub fn mark_failed(&self, id: &str) {
        let mut book = self.book.lock().unwrap();
        if book.failed.len() >= FAILED_MEMORY {
            book.failed.clear();
        }
        book.failed.insert(id.to_string());
    }

    /// Sends whose ack is overdue at `now`, taken out of waiting.
    pub fn overdue(&self, now: Instant) -> Vec<(String, Jid)> {
        let mut book = self.book.lock().unwrap();
        let due: Vec<String> = book
            .waiting
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            if let Some((_, chat)) = book.waiting.remove(&id) {
                out.push((id, chat));
            }
        }
        drop(book);
        for (id, _) in &out {
            self.mark_failed(id);
        }
        out
    }

    /// When the next ack falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.book
            .lock()
            .unwrap()
            .waiting
            .values()
            .map(|(at, _)| *at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> Jid {
        Jid::from_raw("79001234567@s.whatsapp.net")
    }

    #[test]
    fn an_acked_send_is_settled_once_and_never_overdue() {
        let acks = Acks::new(Duration::from_secs(10));
        let t0 = Instant::now();
        acks.expect("m1", &chat(), t0);
        assert_eq!(acks.next_due(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(acks.settle("m1"), Settled::Waiting);
        assert_eq!(acks.settle("m1"), Settled::Unknown);
        assert!(acks.overdue(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(acks.next_due(), None);
    }

    #[test]
    fn an_unacked_send_is_overdue_after_the_timeout_and_a_late_ack_knows_it() {
        let acks = Acks::new(Duration::from_secs(10));
        let t0 = Instant::now();
        acks.expect("m1", &chat(), t0);
        acks.expect("m2", &chat(), t0 + Duration::from_secs(5));
        assert!(acks.overdue(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            acks.overdue(t0 + Duration::from_secs(10)),
            vec![("m1".to_string(), chat())]
        );
        assert_eq!(acks.next_due(), Some(t0 + Duration::from_secs(15)));
        assert_eq!(acks.settle("m1"), Settled::AlreadyFailed);
        assert_eq!(acks.settle("m2"), Settled::Waiting);
    }

    #[test]
    fn a_send_that_never_left_is_forgotten() {
        let acks = Acks::new(Duration::from_secs(10));
        let t0 = Instant::now();
        acks.expect("m1", &chat(), t0);
        acks.forget("m1");
        assert!(acks.overdue(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(acks.settle("m1"), Settled::Unknown);
    }
}
