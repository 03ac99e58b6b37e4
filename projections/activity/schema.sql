-- Activity log: one row per instance event (except `api_called`), newest first.
CREATE TABLE IF NOT EXISTS activity_log (
    position   INTEGER PRIMARY KEY,   -- global log position of the event
    id         TEXT    NOT NULL,      -- the event id
    instance_id TEXT   NOT NULL,
    action     TEXT    NOT NULL,      -- the event type
    details    TEXT    NOT NULL,      -- JSON object: the payload without instanceId
    created_at INTEGER NOT NULL       -- unix milliseconds (recorded time)
);
-- Older versions kept a second full index, by action: every message and
-- receipt wrote an entry into it as well (see `activity::FREQUENT`).
DROP INDEX IF EXISTS activity_by_instance;
DROP INDEX IF EXISTS activity_by_action;
-- Pages of one instance, newest first, optionally within a date range; the
-- action is in the index so that a filter on frequent actions reads no rows
-- it does not return.
CREATE INDEX IF NOT EXISTS activity_pages ON activity_log (instance_id, created_at, position, action);
-- Pages filtered by actions that are not frequent (lifecycle, pairing,
-- groups, contacts, ...): they stay fast however many messages the instance
-- has. The condition must read exactly as `activity::RARE_CONDITION`. (It is
-- a chain of `<>`: written `NOT IN (...)` it cost each insert a temporary
-- table, almost doubling the cost of a row.)
CREATE INDEX IF NOT EXISTS activity_rare ON activity_log (instance_id, action, created_at, position)
    WHERE action <> 'message_sent' AND action <> 'message_received' AND action <> 'message_status'
      AND action <> 'message_queued' AND action <> 'webhook_delivered' AND action <> 'webhook_failed'
      AND action <> 'chat_presence';
