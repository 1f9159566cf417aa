ALTER TABLE orders
  ADD COLUMN touched_at timestamptz DEFAULT clock_timestamp();
