-- The append-only event log: the source of truth.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,          -- global position, strictly increasing
    event_id       TEXT    NOT NULL UNIQUE,      -- UUIDv7
    stream_id      TEXT    NOT NULL,             -- `user-<id>`, `instance-<id>`
    version        INTEGER NOT NULL,             -- 1-based version within the stream
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    user_id        TEXT,                         -- owning user (subject token, filters)
    instance_id    TEXT,                         -- instance, for instance events
    data           TEXT    NOT NULL,             -- JSON payload
    metadata       TEXT    NOT NULL,             -- JSON: actor, requestId, correlationId, causationId
    recorded_at    INTEGER NOT NULL,             -- unix milliseconds
    UNIQUE (stream_id, version)
);

-- Command-side state, written in the same transaction as the event that announces it.
-- Secrets (password hashes, API keys, webhook secrets) live here and never in `events`.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    first_name    TEXT NOT NULL DEFAULT '',
    last_name     TEXT NOT NULL DEFAULT '',
    is_admin      INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT NOT NULL,
    api_key       TEXT NOT NULL,
    api_key_hash  TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE instances (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    name             TEXT NOT NULL,
    description      TEXT,
    webhook_url      TEXT,
    webhook_enabled  INTEGER NOT NULL,
    notify_received  INTEGER NOT NULL,
    notify_sent      INTEGER NOT NULL,
    notify_delivery  INTEGER NOT NULL,
    notify_read      INTEGER NOT NULL,
    max_retries      INTEGER NOT NULL,
    retry_interval   INTEGER NOT NULL,
    webhook_secret   TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX instances_by_user ON instances (user_id, created_at);

-- Small key/value state of the gateway itself (relay checkpoint, ...).
CREATE TABLE gateway_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
