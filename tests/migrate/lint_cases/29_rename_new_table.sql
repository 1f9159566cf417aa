CREATE TABLE staging (id bigint);
ALTER TABLE staging RENAME TO imports;
ALTER TABLE imports RENAME COLUMN id TO import_id;
