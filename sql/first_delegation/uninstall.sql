-- Remove everything first_delegation/install.sql created: the catalog rows,
-- queue partition and light triggers (sql/common/uninstall-prologue.sql),
-- then its functions, view and derived table. An index this rollup created
-- on delegation(addr_id) goes too; db-sync's own stays. The common rollupd
-- schema goes too once no other rollup is registered.

\set rollup_name first_delegation
\ir ../common/uninstall-prologue.sql

DROP TABLE IF EXISTS first_delegation;
DROP INDEX IF EXISTS first_delegation_delegation_addr_id_idx;
DROP FUNCTION IF EXISTS rollupd.first_delegation_build();
DROP FUNCTION IF EXISTS rollupd.first_delegation_refresh(bigint[]);
DROP FUNCTION IF EXISTS rollupd.first_delegation_apply(bigint[]);
DROP FUNCTION IF EXISTS rollupd.first_delegation_lock(bigint[]);
DROP FUNCTION IF EXISTS rollupd.first_delegation_lock();
DROP TABLE IF EXISTS rollupd.first_delegation_key;
DROP FUNCTION IF EXISTS rollupd.first_delegation_compute(bigint[]);
DROP VIEW IF EXISTS rollupd.first_delegation_source;

\ir ../common/uninstall-epilogue.sql
