-- Send pacing: each instance's send policy (JSON, as `instance_created` /
-- `instance_updated` carry it; NULL: off), and the durable outbound queue.
ALTER TABLE instances ADD COLUMN send_policy TEXT;

-- Messages held back by pacing, in the order they were queued. A row is
-- written in the transaction of its `message_queued` and removed in the
-- transaction of its `message_sent` (or of its `message_status` failed), so
-- the queue is exactly the queued messages that have not gone out.
CREATE TABLE outbound_queue (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    message_id   TEXT    NOT NULL UNIQUE,            -- the WhatsApp message id, fixed when queued
    instance_id  TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    to_jid       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,                   -- text, image, video, audio, document
    body         TEXT    NOT NULL,                   -- the text, or the media caption
    mimetype     TEXT,
    file_name    TEXT,
    media        BLOB,                               -- the media's bytes
    metadata     TEXT    NOT NULL,                   -- the request's event metadata (JSON)
    queued_at    INTEGER NOT NULL                    -- unix milliseconds
);
CREATE INDEX outbound_queue_by_instance ON outbound_queue (instance_id, seq);
