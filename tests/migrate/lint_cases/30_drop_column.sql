ALTER TABLE orders DROP COLUMN legacy_flag;
