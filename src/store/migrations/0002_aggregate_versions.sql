-- The state tables are snapshots of their aggregates: each row remembers the
-- version of its stream it reflects, so a command decides on it and appends
-- with exactly that version (optimistic concurrency, never a lost update).
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- Logs written before the session, call and webhook-attempt facts moved to
-- streams of their own hold those facts in the aggregates' streams: the
-- snapshot's version starts at the stream's current last version.
UPDATE users SET version = COALESCE(
    (SELECT MAX(version) FROM events WHERE stream_id = 'user-' || users.id), 0);
UPDATE instances SET version = COALESCE(
    (SELECT MAX(version) FROM events WHERE stream_id = 'instance-' || instances.id), 0);
