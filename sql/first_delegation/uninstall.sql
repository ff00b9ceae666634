-- Remove everything first_delegation/install.sql created: triggers,
-- functions, the derived table and the catalog rows. An index this rollup
-- created on delegation(addr_id) goes too; db-sync's own stays. The common
-- rollupd schema goes too once no other rollup is registered.

\set ON_ERROR_STOP 1
BEGIN;
-- Quiet: "... does not exist, skipping" from the IF [NOT] EXISTS clauses is not news.
SET LOCAL client_min_messages = warning;

DROP TRIGGER IF EXISTS rollupd_fd_insert ON delegation;
DROP TRIGGER IF EXISTS rollupd_fd_update ON delegation;
DROP TRIGGER IF EXISTS rollupd_fd_delete ON delegation;

DROP TABLE IF EXISTS rollupd.queue_first_delegation_addr;
DROP TABLE IF EXISTS first_delegation;
DROP INDEX IF EXISTS first_delegation_delegation_addr_id_idx;

DO $$
BEGIN
    IF to_regclass('rollupd.rollup') IS NOT NULL THEN
        DELETE FROM rollupd.rollup WHERE name = 'first_delegation';
        DELETE FROM rollupd.queue_sentinel WHERE channel = 'first_delegation_addr';
    END IF;
END
$$;

DROP FUNCTION IF EXISTS rollupd.first_delegation_on_delegation();
DROP FUNCTION IF EXISTS rollupd.first_delegation_verify(bigint, integer);
DROP FUNCTION IF EXISTS rollupd.first_delegation_reconcile(bigint, integer);
DROP FUNCTION IF EXISTS rollupd.first_delegation_next_keys(bigint, integer);
DROP FUNCTION IF EXISTS rollupd.first_delegation_refresh(bigint[]);
DROP FUNCTION IF EXISTS rollupd.first_delegation_apply(bigint[]);
DROP FUNCTION IF EXISTS rollupd.first_delegation_lock();
DROP FUNCTION IF EXISTS rollupd.first_delegation_compute(bigint[]);
DROP VIEW IF EXISTS rollupd.first_delegation_source;

-- The common schema goes with the last rollup.
DO $$
BEGIN
    IF to_regclass('rollupd.rollup') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rollupd.rollup) THEN
        DROP SCHEMA rollupd CASCADE;
    END IF;
END
$$;

COMMIT;
