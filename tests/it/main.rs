//! Integration tests: one binary, a real gateway per test.

mod helpers;
mod nats_server;

mod auth;
mod files;
mod instances;
mod receiver;
mod sessions;
mod store;
mod backbone;
mod nats;
mod projections;
mod webhooks;
