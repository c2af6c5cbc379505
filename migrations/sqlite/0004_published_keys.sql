-- Signing keys of any algorithm, published before they sign, retired at once when needed.
-- Existing keys are HS256 and signed from their creation.
ALTER TABLE signing_keys ADD COLUMN algorithm TEXT NOT NULL DEFAULT 'HS256';
ALTER TABLE signing_keys ADD COLUMN activates_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN retired_at INTEGER;
UPDATE signing_keys SET activates_at = created_at;
