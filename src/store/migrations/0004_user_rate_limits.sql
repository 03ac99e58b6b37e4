-- A user's own API rate limit, set by an admin (`rate_limit_set`); NULL
-- means the gateway's default (`WA_RATE_LIMIT_PER_MIN`).
ALTER TABLE users ADD COLUMN rate_limit_per_min INTEGER;
