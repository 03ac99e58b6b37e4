-- Activity log: one row per instance event (except `api_called`), newest first.
CREATE TABLE IF NOT EXISTS activity_log (
    position   INTEGER PRIMARY KEY,   -- global log position of the event
    id         TEXT    NOT NULL,      -- the event id
    instance_id TEXT   NOT NULL,
    action     TEXT    NOT NULL,      -- the event type
    details    TEXT    NOT NULL,      -- JSON object: the payload without instanceId
    created_at INTEGER NOT NULL       -- unix milliseconds (recorded time)
);
-- Pages of one instance, newest first, optionally within a date range.
CREATE INDEX IF NOT EXISTS activity_by_instance ON activity_log (instance_id, created_at, position);
-- The same, filtered by action.
CREATE INDEX IF NOT EXISTS activity_by_action ON activity_log (instance_id, action, created_at, position);
