DELETE FROM facts WHERE kind = 'restoration';
ALTER TABLE facts DROP CONSTRAINT facts_kind_check;
ALTER TABLE facts ADD CONSTRAINT facts_kind_check
    CHECK (kind IN ('opt_in', 'confirmation', 'revocation', 'block', 'unblock', 'inbound'));
ALTER TABLE audit_heads DROP COLUMN last_recorded_at;
