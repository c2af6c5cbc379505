-- Addresses (as throttling counts them: an IPv6 client by its /64) that logged into an
-- account. Failed logins from them are counted apart from strangers', so that strangers
-- cannot lock the owner out.
CREATE TABLE known_addresses (
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address       TEXT   NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, address)
);
CREATE INDEX known_addresses_last_login ON known_addresses (last_login_at);

-- Housekeeping finds sessions past their absolute lifetime.
CREATE INDEX sessions_created ON sessions (created_at);
