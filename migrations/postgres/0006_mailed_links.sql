-- Links mailed to an account's address (password reset, email verification). Only the SHA-256
-- of a link's token is stored. One live link per account and purpose: a new one replaces it.
-- `email_key` is the address the link was sent to: a link opens nothing once the account's
-- address has changed.
CREATE TABLE one_time_tokens (
    token_hash BYTEA  PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT   NOT NULL,
    email_key  TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    CONSTRAINT one_time_tokens_user UNIQUE (user_id, purpose)
);

-- When the account's owner proved the address theirs (NULL: not yet).
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
