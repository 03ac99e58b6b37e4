//! Integration tests: one binary, a real gateway per test.

mod fake_wa;
mod helpers;

mod auth;
mod files;
mod instances;
mod real_engine;
mod sessions;
mod store;
