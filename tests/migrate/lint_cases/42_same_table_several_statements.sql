ALTER TABLE orders ADD COLUMN a text;
ALTER TABLE orders ADD COLUMN b text;
ALTER TABLE orders ADD CONSTRAINT orders_a_len CHECK (length(a) < 100) NOT VALID;
