-- The opt-in webhook event types of an instance (`webhookEvents`): a JSON
-- array of names, NULL when none (the seed's behaviour).
ALTER TABLE instances ADD COLUMN webhook_events TEXT;

-- Message kinds: a reaction, edit, revoke or reply names an earlier message
-- of the instance by its WhatsApp id; this finds it in the session stream
-- without reading the stream (an index on the expression, for message
-- events only).
CREATE INDEX events_by_message_id
    ON events (stream_id, json_extract(data, '$.messageId'))
    WHERE event_type IN ('message_sent', 'message_received');
