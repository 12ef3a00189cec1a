-- The index behind "this subject's events" led with the business, so the events
-- of new subjects (UUIDv7 ids, in time order) went to the end of each
-- business's own range of it: a batch of writes for 16 businesses wrote 16 of
-- its pages (SQLite, 4 KiB pages: ~26 of the ~150 pages such a batch commit
-- wrote; BENCHMARKS.md, writes, session 12). Led by the subject they share one
-- end. The business stays in the key, second: a lookup still names both and
-- finds its rows with two equalities. Events that name no subject (the
-- business created, API keys, channels, retention purges) have no use for it
-- and are left out: every lookup names a subject. The rows are untouched.
DROP INDEX audit_events_by_subject;
CREATE INDEX audit_events_by_subject ON audit_events (subject_id, business_id, seq)
    WHERE subject_id IS NOT NULL;
