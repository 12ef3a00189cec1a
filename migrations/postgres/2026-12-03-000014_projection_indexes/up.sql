-- The projection loads a business's subjects a page at a time in id order
-- (src/store/projection.rs, history_page). Without this index SQLite answers each
-- page from the (business_id, pseudonym) index and sorts the whole business: a
-- node with 1,000,000 subjects took many minutes to start. With it, each page is
-- a range scan.
CREATE INDEX subjects_by_business_and_id ON subjects (business_id, id);
