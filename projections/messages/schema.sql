-- Message history: every sent and received message with its latest status.
CREATE TABLE IF NOT EXISTS messages (
    position     INTEGER PRIMARY KEY,  -- global log position of message_sent / message_received
    id           TEXT    NOT NULL,     -- the event id
    instance_id  TEXT    NOT NULL,
    remote_jid   TEXT    NOT NULL,     -- the chat: recipient of a sent message, chat of a received one
    from_me      INTEGER NOT NULL,
    message_type TEXT    NOT NULL,
    content      TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,     -- the WhatsApp message id
    has_media    INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    status_rank  INTEGER NOT NULL,     -- received 0, sent 1, delivered 2, read 3, played 4: never lowered
    created_at   INTEGER NOT NULL,     -- unix milliseconds (recorded time)
    sender       TEXT                  -- the member who wrote a received group message (NULL otherwise);
                                       -- added to older tables by `messages::ensure_columns`
);
-- A chat's page, newest first, optionally within a date range.
CREATE INDEX IF NOT EXISTS messages_by_chat ON messages (instance_id, remote_jid, created_at, position);
-- Status events find their message. The WhatsApp id leads: the ids the
-- gateway makes sort in the order it made them, so a sent message's entry
-- lands at the right edge, on the page the previous send changed. (Older
-- versions led with the instance: one page of its own per instance.)
DROP INDEX IF EXISTS messages_by_id;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_message_id ON messages (message_id, instance_id, from_me);

-- Message count per chat (the unfiltered page total without a count over the index).
CREATE TABLE IF NOT EXISTS message_chats (
    instance_id TEXT    NOT NULL,
    remote_jid  TEXT    NOT NULL,
    total       INTEGER NOT NULL,
    PRIMARY KEY (instance_id, remote_jid)
) WITHOUT ROWID;

-- Statuses used to wait here for their message; the supervisor now holds
-- early receipts (the one place they wait), so the table of older versions goes.
DROP TABLE IF EXISTS message_early_status;

-- Sent messages still waiting for their delivered receipt (stuck-message
-- reports and the `wa_messages_stuck` metric read only these).
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (created_at) WHERE status = 'sent' AND from_me = 1;
-- Message kinds. What a message carries beyond its text (reply, mentions,
-- location, contact card, poll): the JSON of its extras.
CREATE TABLE IF NOT EXISTS message_extras (
    instance_id TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    from_me     INTEGER NOT NULL,
    extras      TEXT    NOT NULL,
    PRIMARY KEY (instance_id, message_id, from_me)
) WITHOUT ROWID;

-- Edits and deletes for everyone: `messages.content` holds the current
-- text, the original is kept here (from the first edit or delete).
CREATE TABLE IF NOT EXISTS message_changes (
    instance_id TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    from_me     INTEGER NOT NULL,
    original    TEXT    NOT NULL,
    edited_at   INTEGER,                -- unix ms of the last edit
    deleted_at  INTEGER,                -- unix ms of the revoke
    PRIMARY KEY (instance_id, message_id, from_me)
) WITHOUT ROWID;

-- Reactions attached to a message: each reactor's current emoji.
CREATE TABLE IF NOT EXISTS message_reactions (
    instance_id TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,       -- the message reacted to
    reactor     TEXT    NOT NULL,       -- JID
    emoji       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (instance_id, message_id, reactor)
) WITHOUT ROWID;

-- Poll votes attached to a poll: each voter's current choice (JSON array of option names).
CREATE TABLE IF NOT EXISTS message_poll_votes (
    instance_id TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,       -- the poll
    voter       TEXT    NOT NULL,       -- JID
    options     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (instance_id, message_id, voter)
) WITHOUT ROWID;
