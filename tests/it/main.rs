//! Integration tests: one binary, a real gateway per test.

mod helpers;

mod auth;
mod projections;
