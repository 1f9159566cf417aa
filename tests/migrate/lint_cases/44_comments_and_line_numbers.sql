-- Adds an index.
/* a block
   comment */
CREATE INDEX
  orders_x_idx ON orders (x);
