-- Signed checkpoints of each business's chain: Ed25519 over (business, seq, hash,
-- time). A chain rewritten wholesale (every hash recomputed) no longer matches them.
CREATE TABLE audit_checkpoints (
    business_id TEXT NOT NULL REFERENCES businesses (id),
    seq BIGINT NOT NULL,
    hash BLOB NOT NULL,
    at TIMESTAMP NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (business_id, seq)
);

-- SQLite has no way to stop a user with write access to the file from changing it;
-- these triggers stop the service itself (a bug) from updating or deleting audit
-- events. Anyone with the file can drop them: the hash chain and the signed
-- checkpoints are what detect that.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
