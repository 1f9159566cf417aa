-- shardyard: no-transaction
VACUUM FULL orders;
