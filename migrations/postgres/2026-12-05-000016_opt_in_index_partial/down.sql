DROP INDEX facts_by_opt_in;
CREATE INDEX facts_by_opt_in ON facts (opt_in_id);
