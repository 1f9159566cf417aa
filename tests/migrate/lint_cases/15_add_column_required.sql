ALTER TABLE orders ADD COLUMN owner_id bigint NOT NULL;
