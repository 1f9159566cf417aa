-- shardyard: no-transaction
CREATE INDEX CONCURRENTLY ON orders (created_at);
