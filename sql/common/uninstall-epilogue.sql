-- Included last by each rollup's uninstall.sql: the common rollupd schema
-- goes with the last rollup, and with it the WAL mode's replication slots
-- (an abandoned slot keeps WAL for ever), then the commit.

DO $$
DECLARE
    s text;
BEGIN
    IF to_regclass('rollupd.rollup') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rollupd.rollup) THEN
        FOR s IN SELECT w.slot_name FROM rollupd.wal_slot w
                   JOIN pg_replication_slots r ON r.slot_name = w.slot_name LOOP
            BEGIN
                PERFORM pg_drop_replication_slot(s);
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'rollupd: replication slot % not dropped (%): stop rollupd and run rollupd --drop-slot, or SELECT pg_drop_replication_slot(%L) as a superuser',
                    s, SQLERRM, s;
            END;
        END LOOP;
        DROP SCHEMA rollupd CASCADE;
    END IF;
END
$$;

COMMIT;
