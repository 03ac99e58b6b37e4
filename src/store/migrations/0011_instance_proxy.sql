-- A proxy per instance: the public part of its URL (scheme, host and port;
-- NULL: no proxy) and its credentials, sealed like every stored secret
-- (`enc:v1:…`, see src/secrets.rs; NULL: none).
ALTER TABLE instances ADD COLUMN proxy_url TEXT;
ALTER TABLE instances ADD COLUMN proxy_auth TEXT;
