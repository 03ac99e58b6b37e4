DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS message_chats;
DROP TABLE IF EXISTS message_early_status;
DROP TABLE IF EXISTS message_extras;
DROP TABLE IF EXISTS message_changes;
DROP TABLE IF EXISTS message_reactions;
DROP TABLE IF EXISTS message_poll_votes;
