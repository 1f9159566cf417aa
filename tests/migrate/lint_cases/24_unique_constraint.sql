ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE (ref);
