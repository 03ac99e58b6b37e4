-- Media of sent and received messages, to fetch again through
-- `GET /api/whatsapp/{instanceId}/messages/{messageId}/media`: what the
-- answer says (type, name, size) and the engine's handle to download it,
-- sealed like the other secrets (for the real engine it holds the media key
-- and the CDN path). Never in the event log or on NATS.
CREATE TABLE message_media (
    instance_id TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    kind        TEXT    NOT NULL,  -- image, video, audio, document
    mimetype    TEXT    NOT NULL,
    file_name   TEXT,
    size        INTEGER NOT NULL,  -- declared size in bytes
    locator     TEXT    NOT NULL,  -- sealed (secrets.rs, purpose media locator)
    created_at  INTEGER NOT NULL,  -- unix milliseconds
    PRIMARY KEY (instance_id, message_id)
) WITHOUT ROWID;
