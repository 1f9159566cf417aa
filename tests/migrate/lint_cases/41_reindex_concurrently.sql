-- shardyard: no-transaction
REINDEX INDEX CONCURRENTLY orders_pkey;
