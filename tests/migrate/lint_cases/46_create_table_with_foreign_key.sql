CREATE TABLE order_notes (
  id bigint PRIMARY KEY,
  order_id bigint REFERENCES orders (id),
  body text NOT NULL
);
