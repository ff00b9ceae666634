-- A least-privilege role for rollupd, from what the installed rollups
-- declare (rollupd.rollup.derived_table and source_tables):
--     psql -v role=rollupd -f sql/roles.sql            (default role: rollupd)
-- Run it as the owner of the tables (or a superuser) after the rollups'
-- install.sql, and again after installing another rollup. Idempotent.
--
-- The role (NOLOGIN when created here: give it LOGIN and a way to
-- authenticate, or GRANT it to the login role rollupd connects as) may: read
-- the catalog and every rollupd view, and note in it when a reconcile walk
-- finished; read each rollup's source tables and nothing else of the
-- application; write each derived table and its key-lock table; drain the
-- queue, ring and re-arm the doorbell, mark the queue sentinel, keep poison
-- keys; execute the rollup functions (EXECUTE is PUBLIC by default, as the
-- writers' triggers need it too). It owns nothing and cannot change any
-- table's definition, the catalog, or the source data.

\if :{?role}
\else
\set role rollupd
\endif
SELECT set_config('rollupd.grant_role', :'role', false) AS grant_role \gset

BEGIN;

DO $$
DECLARE
    r text := current_setting('rollupd.grant_role');
    rollup record;
    t text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA rollupd TO %I', r);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA rollupd TO %I', r);
    -- A walk says in the catalog when it started and finished.
    EXECUTE format('GRANT UPDATE (walk_started_at, last_walk_started_at, last_reconciled_at) ON rollupd.rollup TO %I', r);
    -- WAL mode: the slot rollupd creates is recorded, and the role may
    -- stream (the REPLICATION attribute; only a superuser may give it).
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON rollupd.wal_slot TO %I', r);
    IF EXISTS (SELECT 1 FROM rollupd.channel WHERE delivery = 'wal')
       AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r AND rolreplication) THEN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper) THEN
            EXECUTE format('ALTER ROLE %I REPLICATION', r);
        ELSE
            RAISE WARNING 'rollupd: a rollup uses the WAL mode and role % lacks REPLICATION: a superuser must run ALTER ROLE % REPLICATION', r, r;
        END IF;
    END IF;
    -- Queue mode and poison keys.
    EXECUTE format('GRANT UPDATE, DELETE ON rollupd.queue TO %I', r);
    EXECUTE format('GRANT UPDATE ON rollupd.doorbell TO %I', r);
    EXECUTE format('GRANT INSERT ON rollupd.queue_sentinel TO %I', r);
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON rollupd.poison TO %I', r);
    FOR rollup IN SELECT name, derived_table, source_tables FROM rollupd.rollup ORDER BY name LOOP
        IF rollup.derived_table IS NULL THEN
            RAISE EXCEPTION 'rollupd: rollup % declares no derived table (re-run its install.sql)', rollup.name;
        END IF;
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO %I',
                       rollup.derived_table::regclass, r);
        -- A rollup whose refresh locks key rows of its own (rollupd.<rollup>_key,
        -- docs/design.md) inserts and locks them.
        IF to_regclass(format('rollupd.%I', rollup.name || '_key')) IS NOT NULL THEN
            EXECUTE format('GRANT INSERT, UPDATE ON TABLE rollupd.%I TO %I', rollup.name || '_key', r);
        END IF;
        FOREACH t IN ARRAY rollup.source_tables LOOP
            EXECUTE format('GRANT SELECT ON TABLE %s TO %I', t::regclass, r);
        END LOOP;
        RAISE NOTICE 'rollupd: % may refresh % (reads %)', r, rollup.name, array_to_string(rollup.source_tables, ', ');
    END LOOP;
END
$$;

COMMIT;
