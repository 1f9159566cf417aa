-- shardyard: allow drop-column
ALTER TABLE orders DROP COLUMN legacy_flag;
