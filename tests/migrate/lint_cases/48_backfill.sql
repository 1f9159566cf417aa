-- shardyard: backfill table=orders key=id batch=5000 sleep=20ms
ALTER TABLE orders ADD COLUMN total_cents bigint;
UPDATE orders SET total_cents = total * 100;
