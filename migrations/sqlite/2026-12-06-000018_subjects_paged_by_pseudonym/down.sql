CREATE INDEX subjects_by_business_and_id ON subjects (business_id, id);
