-- The consent ledger. No phone number, IP, user agent or message text is stored in
-- plaintext: subjects are found by a keyed hash (HMAC-SHA256 under a per-business
-- key), and personal fields are sealed (XChaCha20-Poly1305) under a per-subject
-- data key that is itself wrapped by the master key. Erasure deletes the data key.
CREATE TABLE subjects (
    id TEXT PRIMARY KEY NOT NULL,
    business_id TEXT NOT NULL REFERENCES businesses (id),
    pseudonym BLOB NOT NULL,
    wrapped_key BLOB,
    phone BLOB,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (business_id, pseudonym)
);

-- Append-only facts: what the decision is computed from, bitemporally (when it
-- happened: effective_at; when the service learned it: recorded_at).
CREATE TABLE facts (
    id TEXT PRIMARY KEY NOT NULL,
    business_id TEXT NOT NULL REFERENCES businesses (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    kind TEXT NOT NULL CHECK (kind IN ('opt_in', 'confirmation', 'revocation', 'block', 'unblock', 'inbound')),
    effective_at TIMESTAMP NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    categories TEXT,
    opt_in_id TEXT,
    channel TEXT,
    entry_point TEXT,
    by_keyword BOOLEAN NOT NULL DEFAULT FALSE,
    evidence BLOB
);
CREATE INDEX facts_by_subject ON facts (subject_id, effective_at);
CREATE INDEX facts_by_opt_in ON facts (opt_in_id);

-- Idempotency-Key records: the first response to a write, returned again for a
-- retry with the same key and body.
CREATE TABLE idempotency_keys (
    business_id TEXT NOT NULL REFERENCES businesses (id),
    key TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (business_id, key)
);
