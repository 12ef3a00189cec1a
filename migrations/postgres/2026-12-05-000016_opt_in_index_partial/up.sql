-- Only confirmations name an opt-in (`opt_in_id`); every other fact has NULL there,
-- and the index held an entry for each of them all the same. Every opt-in batch
-- wrote a page of it for nothing (SQLite, 4 KiB pages: 1.5 of the ~60 pages a
-- batch commit wrote; BENCHMARKS.md, writes, session 8). The lookups
-- (`opt_in_id = ?`) imply NOT NULL, so both backends use the partial index for
-- them. The rows are untouched.
DROP INDEX facts_by_opt_in;
CREATE INDEX facts_by_opt_in ON facts (opt_in_id) WHERE opt_in_id IS NOT NULL;
