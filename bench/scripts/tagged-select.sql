-- A request that tags its connection, then reads: SET application_name (a setting PostgreSQL
-- reports to the client), then pgbench -S's SELECT; two statements, each its own transaction.
\set aid random(1, 100000 * :scale)
SET application_name = 'request-:aid';
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
