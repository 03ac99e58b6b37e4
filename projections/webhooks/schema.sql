-- The webhook dispatcher's tables, in its own file `webhooks.db` (with its
-- consumer checkpoint). Created at start-up (idempotent).

-- Webhook settings per instance as of the last event the intake applied
-- (instance_created / instance_updated / webhook_disabled / instance_deleted),
-- so each event is judged by the settings in force when it happened.
-- The secret is not here: it is read from events.db `instances` at send time.
CREATE TABLE IF NOT EXISTS webhook_settings (
    instance_id     TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    url             TEXT,
    enabled         INTEGER NOT NULL,
    notify_received INTEGER NOT NULL,
    notify_sent     INTEGER NOT NULL,
    notify_delivery INTEGER NOT NULL,
    notify_read     INTEGER NOT NULL,
    max_retries     INTEGER NOT NULL,
    retry_interval  INTEGER NOT NULL
);

-- The opt-in webhook event types of an instance (`webhookEvents`, a JSON
-- array), as of the same event as its row in `webhook_settings`; no row:
-- none (the seed's behaviour). Its own table so that a webhooks.db made
-- before the list existed gains it without altering a table.
CREATE TABLE IF NOT EXISTS webhook_opt_ins (
    instance_id TEXT PRIMARY KEY,
    events      TEXT NOT NULL
);

-- Every delivery: the durable work queue (status = 'pending') and the delivery log.
-- `seq` orders one instance's deliveries in event order.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,      -- delivery id (UUIDv7)
    instance_id     TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,      -- the log event delivered
    event_position  INTEGER NOT NULL,
    event           TEXT    NOT NULL,             -- webhook event name
    webhook_id      TEXT    NOT NULL,             -- `webhook-id` header, same on every attempt
    url             TEXT    NOT NULL,
    body            TEXT    NOT NULL,             -- the exact bytes sent and signed
    status          TEXT    NOT NULL,             -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,   -- attempts made, all rounds
    round_base      INTEGER NOT NULL DEFAULT 0,   -- attempts made before this round (manual retry starts a round)
    max_retries     INTEGER NOT NULL,             -- retries allowed after a round's first attempt
    retry_interval  INTEGER NOT NULL,             -- ms before a round's first retry
    last_status_code INTEGER,
    last_error      TEXT,
    next_attempt_at INTEGER,                      -- unix ms, while pending
    created_at      INTEGER NOT NULL,             -- unix ms
    updated_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending
    ON webhook_deliveries (instance_id, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_instance
    ON webhook_deliveries (instance_id, seq);

-- Small state of the dispatcher: `deliver_from` = the log position at its
-- first start; older events only update settings (a new or rebuilt webhooks.db
-- never re-sends history).
CREATE TABLE IF NOT EXISTS webhook_state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- Attempts that may have left: a row is written (group-committed) before the
-- request goes out and removed with the attempt's result. A row found at
-- start-up is an attempt the previous run started and never recorded (a
-- crash, or a stop mid-request): it is counted as a failed attempt.
CREATE TABLE IF NOT EXISTS webhook_in_flight (
    delivery_id TEXT PRIMARY KEY,
    started_at  INTEGER NOT NULL                  -- unix ms
);
