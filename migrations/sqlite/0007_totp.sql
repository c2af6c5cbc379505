-- Two-factor login. Needs nothing of 0006 (password reset), which may come before it.
-- An account's authenticator (TOTP, RFC 6238): pending until a code confirms it. `secret` is
-- sealed under the master key and bound to its row (`totp_factors:<user_id>`); `last_step`
-- is the last time step whose code was accepted, so that no code is accepted twice.
CREATE TABLE totp_factors (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    last_step    INTEGER
);

-- Single-use recovery codes, stored only as SHA-256.
CREATE TABLE recovery_codes (
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash BLOB    NOT NULL CHECK (length(code_hash) = 32),
    used_at   INTEGER,
    PRIMARY KEY (user_id, code_hash)
) WITHOUT ROWID;

-- How each session's login was authenticated (the access tokens' `amr`): 'pwd' or 'pwd otp'.
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
