-- The index that finds a message event by its WhatsApp id now leads with the
-- id: the ids the gateway makes sort in the order it made them, so a send's
-- entry lands at the index's right edge, on the page the previous send
-- changed, instead of on a page of its own instance's range.
DROP INDEX IF EXISTS events_by_message_id;
CREATE INDEX events_by_message_id
    ON events (json_extract(data, '$.messageId'), stream_id)
    WHERE event_type IN ('message_sent', 'message_received');
