DROP TABLE audit_events;
DROP TABLE audit_heads;
DROP TABLE api_keys;
DROP TABLE businesses;
DROP TABLE meta;
