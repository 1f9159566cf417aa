CREATE INDEX orders_x_idx ON orders (x);
ALTER TABLE customers ADD COLUMN note text;
