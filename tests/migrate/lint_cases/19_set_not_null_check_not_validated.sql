-- shardyard: no-transaction
ALTER TABLE orders ADD CONSTRAINT orders_total_not_null CHECK (total IS NOT NULL) NOT VALID;
ALTER TABLE orders ALTER COLUMN total SET NOT NULL;
