-- The audit log. Rows outlive the accounts and sessions they name (an erased account's rows
-- keep its id), so there are no foreign keys. `fold_key` groups a flood of failed logins into
-- one row a minute; it is never shown.
CREATE TABLE audit_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time BIGINT NOT NULL,
    event TEXT NOT NULL,
    user_id BIGINT,
    session_id UUID,
    actor TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    request_id TEXT,
    detail JSONB NOT NULL DEFAULT 'null',
    fold_key TEXT
);
CREATE INDEX audit_events_user ON audit_events (user_id, id);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_fold ON audit_events (fold_key, id) WHERE fold_key IS NOT NULL;
