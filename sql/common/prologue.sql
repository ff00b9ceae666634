-- Included first by each rollup's install.sql, with :rollup_name set: one
-- transaction, quiet, and the common schema (sql/common/rollupd.sql).
-- sql/common/epilogue.sql ends it.

\set ON_ERROR_STOP 1
BEGIN;
-- Quiet: "... does not exist, skipping" from the IF [NOT] EXISTS clauses is not news.
SET LOCAL client_min_messages = warning;

\ir rollupd.sql

-- Nothing to show but errors and warnings: the registration calls return void.
\o /dev/null
