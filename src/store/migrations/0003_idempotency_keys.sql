-- Idempotent sends: a send made with an `Idempotency-Key` header leaves its
-- key here, in the same transaction as its `message_sent`, so that a repeat
-- (same user, same key) within 24 hours answers the first message id and
-- sends nothing, even after a restart.
CREATE TABLE idempotency_keys (
    user_id     TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,  -- SHA-256 of the route and the request's content
    message_id  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,  -- unix milliseconds
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
