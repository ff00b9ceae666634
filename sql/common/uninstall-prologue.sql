-- Included first by each rollup's uninstall.sql, with :rollup_name set: one
-- transaction, quiet, and the rollup's catalog rows, queue partitions and
-- light triggers removed (rollupd.unregister_rollup). The rollup's file then
-- drops its own objects; sql/common/uninstall-epilogue.sql ends it.

\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = warning;
\o /dev/null
SELECT CASE WHEN to_regprocedure('rollupd.unregister_rollup(text)') IS NOT NULL
            THEN rollupd.unregister_rollup(:'rollup_name')::text END;
\o
