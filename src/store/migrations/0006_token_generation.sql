-- Tokens carry the generation they were issued in; a password change or an
-- admin's reset moves it on, ending every token issued before.
ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
