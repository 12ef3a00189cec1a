-- The preference center and the auditor console (SPEC section 11).
--
-- A preference link lets one person manage their consent to one business. The
-- token in the link is never stored: only its SHA-256 (the token is 32 random
-- bytes, so the hash cannot be reversed). A link is bound to the business, the
-- subject and an expiry, and can be revoked. Erasing the subject deletes its
-- links with it (ON DELETE CASCADE), in the erasure's own transaction.
CREATE TABLE preference_links (
    id TEXT PRIMARY KEY NOT NULL,
    business_id TEXT NOT NULL REFERENCES businesses (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX preference_links_by_subject ON preference_links (subject_id);
CREATE INDEX preference_links_by_expiry ON preference_links (business_id, expires_at);

-- Signed-in auditor console sessions: the SHA-256 of the session id that the
-- HttpOnly cookie carries (never the API key), the key that signed in (checked
-- again on every request, so revoking the key ends the session) and an expiry.
CREATE TABLE console_sessions (
    session_hash BYTEA PRIMARY KEY NOT NULL,
    business_id TEXT NOT NULL REFERENCES businesses (id),
    key_id TEXT NOT NULL REFERENCES api_keys (id),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
