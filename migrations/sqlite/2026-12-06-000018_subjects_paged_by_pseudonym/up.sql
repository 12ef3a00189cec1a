-- The projection loads a business's subjects a page at a time in pseudonym order
-- now (src/store/projection.rs, history_page), a range of the
-- (business_id, pseudonym) index every subject has anyway. The index in id order
-- it used cost every batch of writes one of its pages per business the batch
-- wrote to (new subjects' UUIDv7 ids go to the end of each business's own range):
-- with 16 businesses, ~25 of the ~125 pages a SQLite batch commit wrote
-- (BENCHMARKS.md, writes, session 14). The rows are untouched.
DROP INDEX subjects_by_business_and_id;
