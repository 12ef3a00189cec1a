-- The time model (SPEC section 3). Facts take effect no later than they were
-- recorded, and a business's recorded times follow its commit order: each write
-- records at max(its node's clock, the chain's last recorded time + 1 us), so a
-- node whose clock runs behind can never date a withdrawal before something it
-- was acknowledged after.
ALTER TABLE audit_heads ADD COLUMN last_recorded_at TIMESTAMP;

-- A restoration (an opt-in keyword such as START, or a platform's "resume")
-- undoes keyword revocations instead of recording a fresh opt-in, so restored
-- consent keeps its original age. SQLite cannot alter a CHECK: rebuild the table.
CREATE TABLE facts_new (
    id TEXT PRIMARY KEY NOT NULL,
    business_id TEXT NOT NULL REFERENCES businesses (id),
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    kind TEXT NOT NULL CHECK (kind IN ('opt_in', 'confirmation', 'revocation', 'restoration', 'block', 'unblock', 'inbound')),
    effective_at TIMESTAMP NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    categories TEXT,
    opt_in_id TEXT,
    channel TEXT,
    entry_point TEXT,
    by_keyword BOOLEAN NOT NULL DEFAULT FALSE,
    evidence BLOB
);
INSERT INTO facts_new SELECT id, business_id, subject_id, kind, effective_at, recorded_at,
    categories, opt_in_id, channel, entry_point, by_keyword, evidence FROM facts;
DROP TABLE facts;
ALTER TABLE facts_new RENAME TO facts;
CREATE INDEX facts_by_subject ON facts (subject_id, effective_at);
CREATE INDEX facts_by_opt_in ON facts (opt_in_id);
