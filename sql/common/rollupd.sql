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

-- ---- Delivery ----
-- A channel is in notify mode (the trigger's keys travel in NOTIFY payloads)
-- or in queue mode (they go to a dirty-key table; see below).
-- rollupd.set_delivery() switches it.
ALTER TABLE rollupd.channel ADD COLUMN IF NOT EXISTS delivery text NOT NULL DEFAULT 'notify';
DO $$
BEGIN
    ALTER TABLE rollupd.channel ADD CONSTRAINT channel_delivery_check CHECK (delivery IN ('notify', 'queue'));
EXCEPTION WHEN duplicate_object THEN NULL;
END
$$;

-- Queue mode. The dirty keys of every queue-mode channel, one partition per
-- channel (rollupd.queue_<channel>, logged or unlogged). Writers insert with
-- ON CONFLICT DO NOTHING, so a key waits once however often it changes;
-- rollupd claims keys with DELETE ... RETURNING under FOR UPDATE SKIP LOCKED
-- in the transaction that refreshes them, so a failed refresh loses nothing.
CREATE TABLE IF NOT EXISTS rollupd.queue (
    channel     text NOT NULL,
    key         text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, key)
) PARTITION BY LIST (channel);

-- The doorbell: while armed, the first writer disarms it and sends the one
-- NOTIFY of this drain cycle (a constant payload); later writers send none.
-- rollupd re-arms it when it has drained the queue.
CREATE TABLE IF NOT EXISTS rollupd.doorbell (
    channel text PRIMARY KEY REFERENCES rollupd.channel (channel) ON DELETE CASCADE,
    armed   boolean NOT NULL DEFAULT false
);

-- PostgreSQL empties unlogged tables after a crash. A channel whose queue
-- partition is unlogged has a row here; when the row is gone, keys queued
-- before the crash may be gone too, and rollupd reconciles the rollup.
CREATE UNLOGGED TABLE IF NOT EXISTS rollupd.queue_sentinel (
    channel text PRIMARY KEY
);

-- Writers hold this lock (shared) from the moment they queue a key until
-- they commit; rollupd re-arms the doorbell only when it can take it
-- exclusively at once, that is when no writer is between its check of the
-- doorbell and its commit. Then a writer that saw the doorbell disarmed has
-- committed, and rollupd's next look at the queue sees its keys; a writer
-- that comes later sees the doorbell armed and rings. Nobody waits for it.
CREATE OR REPLACE FUNCTION rollupd.queue_lock_id(channel text)
RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT (hashtext('rollupd.queue')::bigint << 32) | (hashtext(channel)::bigint & 4294967295) $$;

-- Switch a channel's delivery: 'notify', or 'queue' with a 'logged' (the
-- default) or 'unlogged' dirty-key table. Idempotent. Unlogged measured a
-- few points faster for writers (BENCHMARKS.md), but a crash empties it,
-- which costs a full reconcile. Leaving queue mode refuses while
-- keys are still queued (let rollupd drain them first).
CREATE OR REPLACE FUNCTION rollupd.set_delivery(p_channel text, p_delivery text, p_table text DEFAULT 'logged')
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    part text := 'queue_' || p_channel;
    persistence "char";
    queued bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM rollupd.channel c WHERE c.channel = p_channel) THEN
        RAISE EXCEPTION 'rollupd: no channel named %', p_channel;
    END IF;
    SELECT c.relpersistence INTO persistence
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'rollupd' AND c.relname = part;
    IF p_delivery = 'notify' THEN
        IF persistence IS NOT NULL THEN
            EXECUTE format('SELECT count(*) FROM rollupd.%I', part) INTO queued;
            IF queued > 0 THEN
                RAISE EXCEPTION 'rollupd: channel % still has % queued keys; let rollupd drain them first',
                    p_channel, queued;
            END IF;
            EXECUTE format('DROP TABLE rollupd.%I', part);
        END IF;
        DELETE FROM rollupd.doorbell WHERE channel = p_channel;
        DELETE FROM rollupd.queue_sentinel WHERE channel = p_channel;
        UPDATE rollupd.channel SET delivery = 'notify' WHERE channel = p_channel;
        RETURN;
    END IF;
    IF p_delivery <> 'queue' OR p_table NOT IN ('logged', 'unlogged') THEN
        RAISE EXCEPTION 'rollupd: delivery is notify, or queue with a logged or unlogged table (got %, %)',
            p_delivery, p_table;
    END IF;
    IF persistence IS NULL THEN
        EXECUTE format('CREATE %s TABLE rollupd.%I PARTITION OF rollupd.queue FOR VALUES IN (%L)',
                       CASE WHEN p_table = 'unlogged' THEN 'UNLOGGED' ELSE '' END, part, p_channel);
    ELSIF persistence = 'u' AND p_table = 'logged' THEN
        EXECUTE format('ALTER TABLE rollupd.%I SET LOGGED', part);
    ELSIF persistence = 'p' AND p_table = 'unlogged' THEN
        EXECUTE format('ALTER TABLE rollupd.%I SET UNLOGGED', part);
    END IF;
    -- Low-latency churn: vacuum the queue often.
    EXECUTE format('ALTER TABLE rollupd.%I SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,'
                   ' autovacuum_vacuum_cost_delay = 0)', part);
    INSERT INTO rollupd.doorbell (channel, armed) VALUES (p_channel, false) ON CONFLICT (channel) DO NOTHING;
    IF p_table = 'unlogged' THEN
        INSERT INTO rollupd.queue_sentinel VALUES (p_channel) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM rollupd.queue_sentinel WHERE channel = p_channel;
    END IF;
    UPDATE rollupd.channel SET delivery = 'queue' WHERE channel = p_channel;
END
$$;

-- What light triggers call: signal that these keys changed, in the channel's
-- delivery mode. Queue mode: queue the keys, and ring the doorbell if armed.
-- Writers at READ COMMITTED wake rollupd at once; a writer at REPEATABLE READ
-- or SERIALIZABLE may miss an armed doorbell and wait for the safety poll.
CREATE OR REPLACE FUNCTION rollupd.signal_keys(p_channel text, keys text[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    delivery text;
    armed boolean;
BEGIN
    IF keys IS NULL OR cardinality(keys) = 0 THEN
        RETURN;
    END IF;
    -- Two statements on the write path, each a cost to every writer: the
    -- mode, with the queue lock taken when queueing...
    SELECT c.delivery INTO delivery
      FROM rollupd.channel c
     WHERE c.channel = p_channel
       AND (c.delivery <> 'queue' OR pg_advisory_xact_lock_shared(rollupd.queue_lock_id(p_channel)) IS NOT NULL);
    IF delivery IS DISTINCT FROM 'queue' THEN
        PERFORM rollupd.notify_keys(p_channel, keys);
        RETURN;
    END IF;
    -- ...then, in a later statement (a snapshot taken after the lock), the
    -- keys and the look at the doorbell.
    WITH queued AS (
        INSERT INTO rollupd.queue (channel, key)
        SELECT p_channel, k FROM unnest(keys) AS k WHERE k IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT d.armed INTO armed FROM rollupd.doorbell d WHERE d.channel = p_channel;
    IF armed THEN
        -- Another writer ringing right now holds the row: it rings for both.
        UPDATE rollupd.doorbell d SET armed = false
         WHERE d.channel = p_channel AND d.armed
           AND d.channel IN (SELECT b.channel FROM rollupd.doorbell b
                              WHERE b.channel = p_channel FOR UPDATE SKIP LOCKED);
        IF FOUND THEN
            PERFORM pg_notify(p_channel, 'queue');
        END IF;
    END IF;
END
$$;

-- rollupd's drain: claim up to max_keys queued keys of a channel and refresh
-- them, in this one transaction. `truncated` is true when the channel's
-- unlogged queue was emptied by a crash (the sentinel row is gone; it is put
-- back here): the rollup needs a full reconcile.
CREATE OR REPLACE FUNCTION rollupd.queue_drain(p_channel text, max_keys integer,
                                               OUT taken integer, OUT written integer, OUT truncated boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    fn text;
    key_type text;
    keys text[];
BEGIN
    SELECT c.refresh_fn, c.key_type INTO fn, key_type
      FROM rollupd.channel c WHERE c.channel = p_channel AND c.delivery = 'queue';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rollupd: channel % is not in queue mode', p_channel;
    END IF;
    IF fn !~ '^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$' THEN
        RAISE EXCEPTION 'rollupd: invalid refresh function name %', fn;
    END IF;
    truncated := false;
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'rollupd' AND c.relname = 'queue_' || p_channel AND c.relpersistence = 'u')
       AND NOT EXISTS (SELECT 1 FROM rollupd.queue_sentinel s WHERE s.channel = p_channel) THEN
        INSERT INTO rollupd.queue_sentinel VALUES (p_channel) ON CONFLICT DO NOTHING;
        truncated := true;
    END IF;
    WITH claimed AS (
        SELECT q.key FROM rollupd.queue q WHERE q.channel = p_channel LIMIT max_keys FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM rollupd.queue q USING claimed
         WHERE q.channel = p_channel AND q.key = claimed.key
        RETURNING q.key
    )
    SELECT array_agg(gone.key) INTO keys FROM gone;
    taken := coalesce(cardinality(keys), 0);
    written := 0;
    IF taken > 0 THEN
        EXECUTE format('SELECT %s($1::%s[])', fn, key_type) INTO written USING keys;
    END IF;
END
$$;

-- rollupd re-arms the doorbell when the queue looked empty; false when a
-- writer is between queueing a key and committing (rollupd looks again soon).
CREATE OR REPLACE FUNCTION rollupd.queue_rearm(p_channel text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(rollupd.queue_lock_id(p_channel)) THEN
        RETURN false;
    END IF;
    UPDATE rollupd.doorbell SET armed = true WHERE channel = p_channel;
    RETURN true;
END
$$;

-- Queue depth and the age of the oldest queued key, for rollupd's log.
CREATE OR REPLACE FUNCTION rollupd.queue_stats(p_channel text, OUT depth bigint, OUT oldest_ms double precision)
LANGUAGE sql STABLE
AS $$
    SELECT count(*), coalesce(extract(epoch FROM now() - min(q.enqueued_at)) * 1000, 0)
      FROM rollupd.queue q WHERE q.channel = p_channel
$$;
