-- rollupd common schema: the catalog the daemon reads at start and on SIGHUP,
-- and the helper that light triggers call to signal changed keys.
-- Idempotent; every rollup's install.sql includes it.

CREATE SCHEMA IF NOT EXISTS rollupd;

-- One row per derived table: its key type and the functions that walk its key space.
CREATE TABLE IF NOT EXISTS rollupd.rollup (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z_][a-z0-9_]*$'),
    key_type     text NOT NULL CHECK (key_type IN ('bigint', 'text')),
    reconcile_fn text NOT NULL,  -- (after key, max_keys int, OUT last_key key, OUT fixed int)
    verify_fn    text NOT NULL,  -- (after key, max_keys int, OUT last_key key, OUT mismatched key[])
    description  text
);

-- One row per LISTEN channel: the keys its notifications carry and the function that refreshes them.
CREATE TABLE IF NOT EXISTS rollupd.channel (
    channel    text PRIMARY KEY CHECK (channel ~ '^[a-z_][a-z0-9_]*$'),
    rollup     text NOT NULL REFERENCES rollupd.rollup (name) ON DELETE CASCADE,
    key_type   text NOT NULL CHECK (key_type IN ('bigint', 'text')),
    refresh_fn text NOT NULL     -- (keys key[]) RETURNS integer: derived rows written or deleted
);

-- Send keys on a channel as comma-separated payloads, each under PostgreSQL's
-- 8000-byte payload limit; NULL keys are skipped. Returns the notifications sent.
-- Keys must not contain commas (the payload separator).
CREATE OR REPLACE FUNCTION rollupd.notify_keys(channel text, keys text[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    payload text := '';
    k text;
    sent integer := 0;
BEGIN
    IF keys IS NULL THEN
        RETURN 0;
    END IF;
    FOREACH k IN ARRAY keys LOOP
        CONTINUE WHEN k IS NULL;
        IF payload <> '' AND octet_length(payload) + octet_length(k) + 1 > 7900 THEN
            PERFORM pg_notify(channel, payload);
            sent := sent + 1;
            payload := '';
        END IF;
        payload := CASE WHEN payload = '' THEN k ELSE payload || ',' || k END;
    END LOOP;
    IF payload <> '' THEN
        PERFORM pg_notify(channel, payload);
        sent := sent + 1;
    END IF;
    RETURN sent;
END
$$;
