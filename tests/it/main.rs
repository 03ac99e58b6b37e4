//! Integration tests: one binary, a real gateway per test.

mod helpers;

mod auth;
mod files;
mod instances;
mod receiver;
mod sessions;
mod store;
mod webhooks;
