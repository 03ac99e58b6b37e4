//! Integration tests: one binary, a real gateway per test.

mod helpers;
mod nats_server;

mod auth;
mod backbone;
mod nats;
