//! wa-gateway: a multi-instance WhatsApp HTTP API gateway, event-sourced.
//!
//! # Layout
//!
//! ```text
//! HTTP (api/*, poem-openapi) ──► domain/* (validate, decide) ──► store (SQLite append log,
//!                                                                  group-committed writer)
//! WhatsApp engines (whatsapp/*: sim | whatsapp-rust) ──► whatsapp::supervisor ──┘
//!                                                                │
//!          (NATS JetStream backbone: outbox relay → `wa.<user>.<instance>.<type>`)
//!                                                                ▼
//!        projections (activity, messages, stats: one consumer) · webhook dispatcher
//! ```
//!
//! Each event is decoded once (when appended, or read back from the database
//! or a NATS message) and every consumer `match`es on the typed [`events::Event`].
//!
//! - [`config`]: `WA_*` settings with documented defaults.
//! - [`ids`]: typed identifiers (`InstanceId`, `UserId`, `MessageId`, `Jid`), parsed once at the edge.
//! - [`kinds`]: message kinds beyond text and media (replies, reactions, polls, edits, ...):
//!   the values sends, engines, events and history share.
//! - [`events`]: the event catalog (the public contract; JSON Schemas in `schemas/`).
//! - [`store`]: the append-only log: optimistic concurrency, group commit, subscriptions.
//! - [`domain`]: the aggregates (users, instances): pure `decide`/`apply`, appended with the
//!   exact stream version decided on; their tables in `domain::storage`; sends in `domain::send`;
//!   an instance's send policy and the pure pacer in `domain::pacing`; an instance's
//!   proxy URL (public part and sealed credentials) in `domain::proxy`.
//! - [`auth`]: argon2id passwords, API keys, JWTs.
//! - [`secrets`]: API keys, webhook secrets and proxy credentials sealed at rest (key apart from the
//!   databases, rotation), and the data directory's owner-only modes.
//! - [`api`]: the HTTP API, one OpenAPI struct per resource.
//! - [`projections`]: read models (activity log, message history, usage statistics), applied
//!   in one transaction per batch, each behind its own checkpoint, rebuildable.
//! - [`whatsapp`]: the engine interface, per-instance supervisors (each with an outbound
//!   queue worker that sends paced messages in order), the simulated network, the real
//!   engine (each session through its instance's proxy, `whatsapp::real::proxy`).
//! - [`backbone`]: the consumer interface; embedded (tail the log) or NATS
//!   JetStream (durable pull consumers; subjects, headers and envelope in `nats/`).
//! - [`relay`]: the outbox relay, log → JetStream, each event once and in order.
//! - [`replay`]: NDJSON export of the log (or the stream) for analytics.
//! - [`webhooks`]: the webhook dispatcher: intake consumer, durable queue, signed retried sends.
//! - [`metrics`]: Prometheus metrics at `/metrics` (guarded), fed by the request
//!   middleware, an in-process tap of the log and measured consumers; the
//!   per-instance session health; the stuck-message watcher.
//! - [`tls`]: native HTTPS (`WA_TLS_CERT`/`WA_TLS_KEY`), certificate changes picked up live.
//! - [`dashboard`]: the web page at `/` (embedded HTML/CSS/JS, a client of the public API).
//! - [`app`]: builds all of it and runs it under one shutdown token.

pub mod api;
pub mod app;
pub mod auth;
pub mod backbone;
pub mod config;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod events;
pub mod ids;
pub mod kinds;
pub mod metrics;
pub mod net;
pub mod projections;
pub mod relay;
pub mod replay;
pub mod secrets;
pub mod store;
pub mod tls;
pub mod webhooks;
pub mod whatsapp;

pub use api::AppState;
pub use app::App;
pub use config::Config;
