DROP TABLE console_sessions;
DROP TABLE preference_links;
