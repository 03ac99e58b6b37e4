//! Integration tests: one binary, a real gateway per test.

mod helpers;
mod nats_server;

mod auth;
mod backbone;
mod files;
mod instances;
mod nats;
mod projections;
mod receiver;
mod sessions;
mod store;
mod webhooks;
