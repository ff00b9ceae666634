-- rollupd schema 2 -> 3: the WAL delivery mode. Run on the database as the
-- rollups' owner (a superuser for sql/roles.sql), with rollupd stopped or
-- running; writers need not stop:
--     psql -d DB -v ON_ERROR_STOP=1 -f sql/common/upgrade/2--3.sql
--     psql -d DB -v ON_ERROR_STOP=1 -f sql/<rollup>/install.sql     (each installed rollup, same delivery)
--     psql -d DB -v ON_ERROR_STOP=1 -v role=rollupd -f sql/roles.sql
-- then SIGHUP or restart rollupd (a 0.2.0 rollupd does not read schema 3).
-- One transaction: the tables change, the common functions are replaced.

\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = warning;

DO $$
BEGIN
    IF (SELECT max(version) FROM rollupd.schema_version) IS DISTINCT FROM 2 THEN
        RAISE EXCEPTION 'rollupd: this script upgrades schema version 2, the database has %',
            (SELECT max(version) FROM rollupd.schema_version);
    END IF;
END
$$;

-- A WAL-mode rollup needs a complete walk that started after its slot was
-- created: the walks say when they start.
ALTER TABLE rollupd.rollup ADD COLUMN walk_started_at timestamptz;
ALTER TABLE rollupd.rollup ADD COLUMN last_walk_started_at timestamptz;
CREATE TABLE rollupd.wal_slot (
    slot_name  text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- refresh_keys() takes the transactions to wait for: the old two-argument
-- form goes, or a call would be ambiguous.
DROP FUNCTION rollupd.refresh_keys(text, text[]);

UPDATE rollupd.schema_version SET version = 3, installed_at = now();
-- Every common function, as version 3 has it.
\ir ../rollupd.sql

COMMIT;
