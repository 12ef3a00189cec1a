-- Node leases are for several nodes on PostgreSQL (src/store/lease.rs). SQLite has
-- one server per file and never uses this table; it exists so that both backends
-- have the same migrations.
CREATE TABLE consentgate_nodes (
    node_id TEXT PRIMARY KEY NOT NULL,
    lease_until BIGINT NOT NULL,
    fenced BOOLEAN NOT NULL DEFAULT FALSE
);
