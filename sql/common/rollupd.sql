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

-- What each rollup writes and reads, for the grants of sql/roles.sql (names
-- as install.sql created them, resolved on the search_path when granting).
ALTER TABLE rollupd.rollup ADD COLUMN IF NOT EXISTS derived_table text;
ALTER TABLE rollupd.rollup ADD COLUMN IF NOT EXISTS source_tables text[] NOT NULL DEFAULT '{}';

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

-- ---- Poison keys ----
-- A key whose refresh raises an error (bad data, a constraint the new row
-- violates) must not hold back the other keys of its batch nor its channel.
-- rollupd refreshes every batch through rollupd.refresh_keys(): one call of
-- the channel's refresh function when it succeeds; when it raises, the batch
-- is split in halves, each refreshed in its own subtransaction, down to the
-- single keys that fail. Those are kept here with their error, skipped by
-- later batches and retried by rollupd.poison_retry() with backoff until they
-- succeed. Nothing is lost: a poison key leaves the queue (or the batch) only
-- in the transaction that records it here.
--
-- Errors that say nothing about the keys are not isolated: the whole call
-- fails and rollupd retries the batch later. That is every SQLSTATE of class
-- 08 (connection), 40 (serialization failure, deadlock), 53 (resources), 55
-- (lock not available, object in use), 57 (cancelled: statement_timeout,
-- shutdown), 58 (system) and XX (internal), and a batch in which more than
-- 8 keys fail while none succeeds: a broken refresh function, not poison.
CREATE TABLE IF NOT EXISTS rollupd.poison (
    channel         text NOT NULL REFERENCES rollupd.channel (channel) ON DELETE CASCADE,
    key             text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1,
    error           text NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, key)
);

-- One refresh of `keys`, splitting on failure (see above). The counters
-- accumulate over the recursion; `retrying` is set by poison_retry (its keys
-- are all in rollupd.poison: refreshed ranges leave it, and a failing one
-- never aborts the call, or the same keys would be due again at once).
CREATE OR REPLACE FUNCTION rollupd.refresh_isolating(p_channel text, refresh_sql text, sort_sql text, keys text[],
                                                     retrying boolean, INOUT written bigint,
                                                     INOUT poisoned integer, INOUT succeeded integer,
                                                     INOUT detail text)
LANGUAGE plpgsql
AS $$
DECLARE
    w bigint;
    state text;
    msg text;
    half integer;
BEGIN
    BEGIN
        EXECUTE refresh_sql INTO w USING keys;
        written := written + coalesce(w, 0);
        succeeded := succeeded + cardinality(keys);
        IF retrying THEN
            DELETE FROM rollupd.poison p WHERE p.channel = p_channel AND p.key = ANY (keys);
        END IF;
        RETURN;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    END;
    IF left(state, 2) IN ('08', '40', '53', '55', '57', '58', 'XX')
       OR (NOT retrying AND succeeded = 0 AND poisoned >= 8) THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = msg;
    END IF;
    IF cardinality(keys) = 1 THEN
        INSERT INTO rollupd.poison AS p (channel, key, error) VALUES (p_channel, keys[1], msg)
        ON CONFLICT (channel, key)
        DO UPDATE SET attempts = p.attempts + 1, error = excluded.error, last_failed_at = now();
        poisoned := poisoned + 1;
        IF poisoned <= 10 THEN
            detail := concat_ws('; ', detail, format('key=%s error=%s', keys[1], msg));
        END IF;
        RETURN;
    END IF;
    -- Halves in key order, so that the refreshes lock rows in the order
    -- every other refresh does. Sorted once, at the first split: halves of
    -- a sorted array are sorted (the recursion gets no sort_sql).
    IF sort_sql IS NOT NULL THEN
        EXECUTE sort_sql INTO keys USING keys;
    END IF;
    half := cardinality(keys) / 2;
    SELECT r.written, r.poisoned, r.succeeded, r.detail INTO written, poisoned, succeeded, detail
      FROM rollupd.refresh_isolating(p_channel, refresh_sql, NULL, keys[1:half], retrying,
                                     written, poisoned, succeeded, detail) r;
    SELECT r.written, r.poisoned, r.succeeded, r.detail INTO written, poisoned, succeeded, detail
      FROM rollupd.refresh_isolating(p_channel, refresh_sql, NULL, keys[half + 1:], retrying,
                                     written, poisoned, succeeded, detail) r;
END
$$;

CREATE OR REPLACE FUNCTION rollupd.refresh_statements(p_channel text, OUT refresh_sql text, OUT sort_sql text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    fn text;
    key_type text;
BEGIN
    SELECT c.refresh_fn, c.key_type INTO fn, key_type FROM rollupd.channel c WHERE c.channel = p_channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rollupd: unknown channel %', p_channel;
    END IF;
    IF fn !~ '^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$' THEN
        RAISE EXCEPTION 'rollupd: invalid refresh function name %', fn;
    END IF;
    refresh_sql := format('SELECT %s($1::%s[])', fn, key_type);
    sort_sql := format('SELECT array_agg(k ORDER BY k::%s) FROM unnest($1::text[]) k', key_type);
END
$$;

-- What rollupd calls for a batch of a channel's keys: the refresh, with
-- poison keys isolated. Keys already in rollupd.poison are left to
-- poison_retry. `detail` lists (up to 10) newly failed keys with their error.
CREATE OR REPLACE FUNCTION rollupd.refresh_keys(p_channel text, p_keys text[],
                                                OUT written bigint, OUT poisoned integer, OUT detail text)
LANGUAGE plpgsql
AS $$
DECLARE
    st record;
    keys text[] := p_keys;
    succeeded integer := 0;
BEGIN
    written := 0;
    poisoned := 0;
    IF EXISTS (SELECT 1 FROM rollupd.poison p WHERE p.channel = p_channel) THEN
        SELECT array_agg(k) INTO keys FROM unnest(p_keys) k
         WHERE NOT EXISTS (SELECT 1 FROM rollupd.poison p WHERE p.channel = p_channel AND p.key = k);
    END IF;
    IF keys IS NULL OR cardinality(keys) = 0 THEN
        RETURN;
    END IF;
    st := rollupd.refresh_statements(p_channel);
    SELECT r.written, r.poisoned, r.detail INTO written, poisoned, detail
      FROM rollupd.refresh_isolating(p_channel, st.refresh_sql, st.sort_sql, keys, false,
                                     written, poisoned, succeeded, detail) r;
END
$$;

-- rollupd's retry of poison keys: every key whose backoff has passed (the
-- n-th attempt waits retry_min_ms * 2^(n-1), at most retry_max_ms), up to
-- max_keys per channel. `recovered` keys were refreshed and left the table;
-- `next_due_ms` is when the next one is due (NULL when none is left).
CREATE OR REPLACE FUNCTION rollupd.poison_retry(max_keys integer, retry_min_ms integer, retry_max_ms integer,
                                                OUT retried integer, OUT recovered integer,
                                                OUT poisoned integer, OUT next_due_ms double precision,
                                                OUT detail text)
LANGUAGE plpgsql
AS $$
DECLARE
    ch text;
    st record;
    keys text[];
    w bigint := 0;
    p integer;
    ok integer;
    d text;
BEGIN
    retried := 0;
    recovered := 0;
    poisoned := 0;
    FOR ch IN SELECT DISTINCT c.channel FROM rollupd.poison c LOOP
        SELECT array_agg(due.key) INTO keys FROM (
            SELECT x.key FROM rollupd.poison x
             WHERE x.channel = ch
               AND x.last_failed_at + least(retry_max_ms, retry_min_ms * 2 ^ least(x.attempts - 1, 30))
                                      * interval '1 millisecond' <= now()
             ORDER BY x.last_failed_at
             LIMIT max_keys
               FOR UPDATE SKIP LOCKED) due;
        CONTINUE WHEN keys IS NULL;
        st := rollupd.refresh_statements(ch);
        p := 0;
        ok := 0;
        d := NULL;
        SELECT r.poisoned, r.succeeded, r.detail INTO p, ok, d
          FROM rollupd.refresh_isolating(ch, st.refresh_sql, st.sort_sql, keys, true, w, p, ok, d) r;
        retried := retried + cardinality(keys);
        recovered := recovered + ok;
        poisoned := poisoned + p;
        IF d IS NOT NULL THEN
            detail := concat_ws('; ', detail, format('channel=%s %s', ch, d));
        END IF;
    END LOOP;
    -- (greatest() skips NULLs: with no row left the answer must stay NULL.)
    SELECT 1000 * extract(epoch FROM
               min(x.last_failed_at + least(retry_max_ms, retry_min_ms * 2 ^ least(x.attempts - 1, 30))
                                      * interval '1 millisecond') - now())
      INTO next_due_ms FROM rollupd.poison x;
    IF next_due_ms < 0 THEN
        next_due_ms := 0;
    END IF;
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
-- them, in this one transaction, isolating poison keys as
-- rollupd.refresh_keys() does. `truncated` is true when the channel's
-- unlogged queue was emptied by a crash (the sentinel row is gone; it is put
-- back here): the rollup needs a full reconcile.
DROP FUNCTION IF EXISTS rollupd.queue_drain(text, integer);
-- `wait_buckets` counts how long the claimed keys waited in the queue (from
-- the writer's transaction to this claim) in the buckets of rollupd's
-- histogram: [0, 5 ms), [5 ms, 10 ms), ... [10 s, inf); `wait_sum` is the
-- total in seconds.
CREATE OR REPLACE FUNCTION rollupd.queue_drain(p_channel text, max_keys integer,
                                               OUT taken integer, OUT written bigint, OUT truncated boolean,
                                               OUT poisoned integer, OUT detail text,
                                               OUT wait_buckets integer[], OUT wait_sum double precision)
LANGUAGE plpgsql
AS $$
DECLARE
    keys text[];
    waits double precision[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM rollupd.channel c WHERE c.channel = p_channel AND c.delivery = 'queue') THEN
        RAISE EXCEPTION 'rollupd: channel % is not in queue mode', p_channel;
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
        RETURNING q.key, q.enqueued_at
    )
    SELECT array_agg(gone.key), array_agg(extract(epoch FROM clock_timestamp() - gone.enqueued_at)::double precision)
      INTO keys, waits FROM gone;
    taken := coalesce(cardinality(keys), 0);
    SELECT array_agg(coalesce(x.n, 0)::integer ORDER BY i), coalesce(sum(x.total), 0)
      INTO wait_buckets, wait_sum
      FROM generate_series(0, 11) i
      LEFT JOIN (SELECT width_bucket(w, ARRAY[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]::double precision[]) b,
                        count(*) n, sum(w) total
                   FROM unnest(waits) w GROUP BY 1) x ON x.b = i;
    SELECT r.written, r.poisoned, r.detail INTO written, poisoned, detail
      FROM rollupd.refresh_keys(p_channel, keys) r;
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
