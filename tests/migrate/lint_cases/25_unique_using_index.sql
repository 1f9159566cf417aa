-- shardyard: no-transaction
CREATE UNIQUE INDEX CONCURRENTLY orders_ref_idx ON orders (ref);
ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE USING INDEX orders_ref_idx;
