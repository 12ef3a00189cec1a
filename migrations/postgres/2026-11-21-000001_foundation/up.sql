-- Foundation: businesses, API keys and the per-business audit chain.
-- Timestamps are UTC, microsecond precision (written by the service already truncated).
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE businesses (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    policy TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    business_id TEXT NOT NULL REFERENCES businesses (id),
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX api_keys_by_business ON api_keys (business_id, created_at);

-- The head of each business's chain: one row, updated in the same transaction as
-- every append; writers lock it first, so appends for one business are serialised.
CREATE TABLE audit_heads (
    business_id TEXT PRIMARY KEY NOT NULL REFERENCES businesses (id),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);

CREATE TABLE audit_events (
    business_id TEXT NOT NULL REFERENCES businesses (id),
    seq BIGINT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    at TIMESTAMP NOT NULL,
    event_type TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject_id TEXT,
    data TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (business_id, seq),
    CHECK (seq >= 1)
);
CREATE INDEX audit_events_by_subject ON audit_events (business_id, subject_id, seq);
CREATE INDEX audit_events_by_time ON audit_events (business_id, at);
