DELETE FROM facts WHERE kind = 'restoration';
CREATE TABLE facts_old (
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
INSERT INTO facts_old SELECT id, business_id, subject_id, kind, effective_at, recorded_at,
    categories, opt_in_id, channel, entry_point, by_keyword, evidence FROM facts;
DROP TABLE facts;
ALTER TABLE facts_old RENAME TO facts;
CREATE INDEX facts_by_subject ON facts (subject_id, effective_at);
CREATE INDEX facts_by_opt_in ON facts (opt_in_id);
ALTER TABLE audit_heads DROP COLUMN last_recorded_at;
