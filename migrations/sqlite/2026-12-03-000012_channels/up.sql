-- Channel connections and bulk imports (SPEC sections 8 and 10).
--
-- A channel connection lets a messaging platform's webhooks reach one business:
-- a WhatsApp Business Platform (Cloud API) connection or a Twilio Messaging
-- connection. Its secrets (app secret and verify token, or auth token) are kept
-- only sealed: a data key of the channel's own, wrapped by the master key, seals
-- them (AEAD, bound to business, channel and field). `config` holds what is not
-- secret (the phone-number ids served, the account SID, the public URL);
-- `fingerprint` is a keyed digest of the secrets, so that an operator can tell
-- which secret is configured without seeing it. Deleting a connection revokes it.
CREATE TABLE channels (
    id TEXT PRIMARY KEY NOT NULL,
    business_id TEXT NOT NULL REFERENCES businesses (id),
    kind TEXT NOT NULL CHECK (kind IN ('whatsapp', 'twilio')),
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    secrets BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX channels_by_business ON channels (business_id);

-- How far a bulk import of a file (by its SHA-256) has committed, written in the
-- same transaction as each batch of its opt-ins, so that `import --resume`
-- continues after exactly the last committed row.
CREATE TABLE import_progress (
    business_id TEXT NOT NULL REFERENCES businesses (id),
    file_hash TEXT NOT NULL,
    last_line BIGINT NOT NULL,
    imported BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (business_id, file_hash)
);
