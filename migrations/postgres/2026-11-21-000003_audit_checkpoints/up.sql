-- Signed checkpoints of each business's chain: Ed25519 over (business, seq, hash,
-- time). A chain rewritten wholesale (every hash recomputed) no longer matches them.
CREATE TABLE audit_checkpoints (
    business_id TEXT NOT NULL REFERENCES businesses (id),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    at TIMESTAMP NOT NULL,
    key_id TEXT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (business_id, seq)
);

-- The audit log is append-only: even a bug in the service cannot rewrite history.
-- (A superuser can disable the trigger; the chain and the checkpoints detect what
-- they then do.) TRUNCATE is refused too.
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
