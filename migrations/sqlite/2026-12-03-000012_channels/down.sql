DROP TABLE import_progress;
DROP TABLE channels;
