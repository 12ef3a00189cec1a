-- Node leases (src/store/lease.rs): each node answering checks from memory holds
-- a row, renewed every 200 ms; a writer waits for every live node to know a
-- withdrawal before acknowledging it, or fences the node and waits its lease out.
CREATE TABLE consentgate_nodes (
    node_id TEXT PRIMARY KEY NOT NULL,
    -- Microseconds since the Unix epoch by PostgreSQL's clock.
    lease_until BIGINT NOT NULL,
    fenced BOOLEAN NOT NULL DEFAULT FALSE
);
