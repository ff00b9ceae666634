-- Included last by each rollup's uninstall.sql: the common rollupd schema
-- goes with the last rollup, then the commit.

DO $$
BEGIN
    IF to_regclass('rollupd.rollup') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rollupd.rollup) THEN
        DROP SCHEMA rollupd CASCADE;
    END IF;
END
$$;

COMMIT;
