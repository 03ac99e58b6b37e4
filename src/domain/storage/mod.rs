//! The command side's tables, one module per table: named reads, and named
//! changes that commit in the same transaction as the events announcing them.
//! Secrets (password hashes, API keys, webhook secrets) live only here.

pub mod idempotency;
pub mod instances;
pub mod outbound;
pub mod users;
