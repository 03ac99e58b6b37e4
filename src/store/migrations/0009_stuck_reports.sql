-- Messages reported stuck (`message_stuck`): a row is written in the
-- transaction of its event, so each message is reported once, across restarts.
CREATE TABLE stuck_reports (
    instance_id TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    reported_at INTEGER NOT NULL,  -- unix milliseconds
    PRIMARY KEY (instance_id, message_id)
) WITHOUT ROWID;
