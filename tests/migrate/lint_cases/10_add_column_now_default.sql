-- now() is stable: evaluated once, stored in the catalog, no rewrite.
ALTER TABLE orders ADD COLUMN created_at timestamptz DEFAULT now();
