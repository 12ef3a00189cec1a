-- The time model (SPEC section 3). Facts take effect no later than they were
-- recorded, and a business's recorded times follow its commit order: each write
-- records at max(its node's clock, the chain's last recorded time + 1 us), so a
-- node whose clock runs behind can never date a withdrawal before something it
-- was acknowledged after.
ALTER TABLE audit_heads ADD COLUMN last_recorded_at TIMESTAMP;

-- A restoration (an opt-in keyword such as START, or a platform's "resume")
-- undoes keyword revocations instead of recording a fresh opt-in, so restored
-- consent keeps its original age.
ALTER TABLE facts DROP CONSTRAINT facts_kind_check;
ALTER TABLE facts ADD CONSTRAINT facts_kind_check
    CHECK (kind IN ('opt_in', 'confirmation', 'revocation', 'restoration', 'block', 'unblock', 'inbound'));
