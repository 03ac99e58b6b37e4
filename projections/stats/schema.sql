-- Usage counters per instance per UTC day. API calls made without an
-- instance in their route are kept per user with instance_id = ''.
CREATE TABLE IF NOT EXISTS usage_daily (
    instance_id       TEXT    NOT NULL,
    user_id           TEXT    NOT NULL,  -- the instance's owner (or the caller, for instance_id = '')
    day               TEXT    NOT NULL,  -- YYYY-MM-DD, UTC
    messages_sent     INTEGER NOT NULL DEFAULT 0,
    messages_received INTEGER NOT NULL DEFAULT 0,
    media_sent        INTEGER NOT NULL DEFAULT 0,
    media_received    INTEGER NOT NULL DEFAULT 0,
    media_bytes       INTEGER NOT NULL DEFAULT 0,
    api_calls         INTEGER NOT NULL DEFAULT 0,
    webhook_sent      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, day, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_by_user ON usage_daily (user_id, day);
CREATE INDEX IF NOT EXISTS usage_by_day ON usage_daily (day);

-- Days on which a user did something: made an API call, or owns an
-- instance that sent or received a message ("active users").
CREATE TABLE IF NOT EXISTS usage_user_days (
    user_id TEXT NOT NULL,
    day     TEXT NOT NULL,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_user_days_by_day ON usage_user_days (day);

-- Messages per kind (text, image, video, audio, voice, document, sticker,
-- location, contact, poll, other) per instance per UTC day and direction
-- (`sent` / `received`). Reactions, edits, revokes and poll votes are not
-- messages and are not counted.
CREATE TABLE IF NOT EXISTS usage_daily_kinds (
    instance_id TEXT    NOT NULL,
    day         TEXT    NOT NULL,
    direction   TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (instance_id, day, direction, kind)
) WITHOUT ROWID;
