DROP TABLE idempotency_keys;
DROP TABLE facts;
DROP TABLE subjects;
