-- Erasures (GDPR Art. 17): the receipt of each erasure, and, where the policy keeps
-- one, the suppression marker. Holds only the keyed hash of the number (the same
-- per-business HMAC pseudonym subjects are found by), never the number.
CREATE TABLE erasures (
    id TEXT PRIMARY KEY NOT NULL,
    business_id TEXT NOT NULL REFERENCES businesses (id),
    pseudonym BYTEA NOT NULL,
    subject_id TEXT NOT NULL,
    erased_at TIMESTAMP NOT NULL,
    request_reference TEXT,
    suppress BOOLEAN NOT NULL
);
CREATE INDEX erasures_by_pseudonym ON erasures (business_id, pseudonym, erased_at);
