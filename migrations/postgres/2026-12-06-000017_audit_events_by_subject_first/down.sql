DROP INDEX audit_events_by_subject;
CREATE INDEX audit_events_by_subject ON audit_events (business_id, subject_id, seq);
