-- Refresh tokens kept together by session: a rotation consumes a session's newest token and
-- adds its successor next to it, on the same page. Keyed by the digest (0001), each rotation
-- dirtied pages of its own, found at random: the consumed token's, the successor's, and the
-- session index's. Now it dirties the session's last page and one of the digest index's.
CREATE TABLE refresh_tokens_by_session (
    session_id  BLOB    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- 0 for the token of the login, one more for each successor: the live token is the last.
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    -- SHA-256 of the token: the token itself is never stored.
    token_hash  BLOB    NOT NULL CHECK (length(token_hash) = 32),
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;

-- A session's tokens in the order they were consumed, its live one (if any) last.
INSERT INTO refresh_tokens_by_session
    (session_id, seq, token_hash, issued_at, expires_at, consumed_at)
SELECT session_id,
       row_number() OVER (
           PARTITION BY session_id
           ORDER BY consumed_at IS NULL, consumed_at, issued_at, token_hash
       ) - 1,
       token_hash, issued_at, expires_at, consumed_at
FROM refresh_tokens;

-- Takes its indexes (by session, by expiry) with it: the key now orders by session, and
-- nothing looks tokens up by expiry (housekeeping ends sessions, and their tokens with them).
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_by_session RENAME TO refresh_tokens;
CREATE UNIQUE INDEX refresh_tokens_digest ON refresh_tokens (token_hash);
