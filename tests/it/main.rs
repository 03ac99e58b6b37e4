//! Integration tests: one binary, a real gateway per test.

mod fake_wa;
mod helpers;
mod nats_server;

mod auth;
mod backbone;
mod browser;
mod chats;
mod concurrency;
mod durability;
mod edge;
mod files;
mod groups;
mod idempotency;
mod instances;
mod kinds;
mod logins;
mod media_pairing;
mod metrics;
mod nats;
mod pacing;
mod projections;
mod proxy;
mod rate_limits;
mod real_engine;
mod real_kinds;
mod receiver;
mod session_health;
mod sessions;
mod store;
mod stream;
mod webhooks;
