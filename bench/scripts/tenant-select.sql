-- A schema-per-tenant request: SET search_path (a setting PostgreSQL 15 does not report), then
-- pgbench -S's SELECT; two statements, each its own transaction.
\set aid random(1, 100000 * :scale)
\set tenant random(1, 10)
SET search_path = tenant_:tenant, public;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
