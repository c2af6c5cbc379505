-- Times are Unix seconds (UTC). Ids of sessions are UUIDs as 16-byte blobs.

CREATE TABLE users (
    -- AUTOINCREMENT: an id is never handed out again, so old tokens cannot name a new user.
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL,
    -- The case-insensitive identity of the account (lower-cased email).
    email_key     TEXT    NOT NULL,
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email_key);

CREATE TABLE sessions (
    id           BLOB    PRIMARY KEY CHECK (length(id) = 16),
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    ended_at     INTEGER,
    end_reason   TEXT,
    user_agent   TEXT,
    client_ip    TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    -- SHA-256 of the token: the token itself is never stored.
    token_hash  BLOB    PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id  BLOB    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
