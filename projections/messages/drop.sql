DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS message_chats;
DROP TABLE IF EXISTS message_early_status;
