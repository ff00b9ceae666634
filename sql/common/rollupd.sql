-- rollupd's common schema: the catalog the daemon reads at start and on
-- SIGHUP, the capture declarations the light triggers are made from, and the
-- machinery every rollup shares (delivery, queue drains, poison keys, the
-- reconcile and verify walks). Every rollup's install.sql includes it;
-- docs/design.md explains it. It reads by layer: tables, internal
-- functions, public functions, then what creates the triggers.
--
-- Idempotent: functions are replaced, tables created when missing. A change
-- to a table of an installed schema comes with an upgrade script in
-- sql/common/upgrade/ and a new schema_version (docs/design.md, "Upgrades").
-- Versions: 2, the capture declarations (release 0.2.0); 3, the WAL mode.

CREATE SCHEMA IF NOT EXISTS rollupd;

-- ==== Tables ====

-- The version of this schema, one row. install.sql refuses to run over an
-- older or newer one (run the upgrade scripts instead).
CREATE TABLE IF NOT EXISTS rollupd.schema_version (
    version integer PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);
DO $$
DECLARE
    have integer;
    want constant integer := 3;
BEGIN
    SELECT max(version) INTO have FROM rollupd.schema_version;
    IF have IS NULL THEN
        INSERT INTO rollupd.schema_version (version) VALUES (want);
    ELSIF have <> want THEN
        RAISE EXCEPTION 'rollupd: the installed rollupd schema is version %, this install.sql is version %', have, want
            USING HINT = 'Upgrade it first with the scripts in sql/common/upgrade/ (docs/design.md, "Upgrades").';
    END IF;
END
$$;

-- One row per derived table. The walks (reconcile, verify) and the grants of
-- sql/roles.sql are made from it:
--   derived_columns  the derived table's columns that compute_fn returns, in
--                    its order; the first is the key (one row per key for
--                    eth_user_balances, several for first_delegation);
--   compute_fn       (keys key_type[]) RETURNS the rows the derived table must
--                    hold for those keys, by the definition; read-only;
--   refresh_fn       (keys key_type[]) RETURNS integer: bring the derived rows
--                    of those keys to the definition (the SQL contract,
--                    docs/design.md);
--   key_space        a SELECT of one column: every key the source tables
--                    define a derived row for (the walk adds the keys of
--                    the derived rows, which may be leftovers);
--   build_fn         optional, () RETURNS bigint: fill an empty derived table
--                    in one set-based pass (the first reconcile calls it).
CREATE TABLE IF NOT EXISTS rollupd.rollup (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z_][a-z0-9_]*$'),
    key_type        text NOT NULL CHECK (key_type IN ('bigint', 'text')),
    derived_table   text NOT NULL,
    derived_columns text[] NOT NULL CHECK (cardinality(derived_columns) >= 1),
    compute_fn      text NOT NULL,
    refresh_fn      text NOT NULL,
    key_space       text NOT NULL,
    build_fn        text,
    source_tables   text[] NOT NULL DEFAULT '{}',
    description     text,
    -- The walks: when the one under way started (its first chunk), and when
    -- the last complete one started and finished. WAL mode needs a walk that
    -- started after its slot was created (rollupd.wal_slot).
    walk_started_at      timestamptz,
    last_walk_started_at timestamptz,
    last_reconciled_at   timestamptz
);

-- One row per channel: a stream of keys of one type, the function that
-- refreshes a batch of them, and how writers deliver them: 'notify' (keys in
-- NOTIFY payloads), 'queue' (a dirty-key table and a doorbell NOTIFY), or
-- 'wal' (no trigger: rollupd reads them from its logical replication slot).
CREATE TABLE IF NOT EXISTS rollupd.channel (
    channel    text PRIMARY KEY CHECK (channel ~ '^[a-z_][a-z0-9_]*$'),
    rollup     text NOT NULL REFERENCES rollupd.rollup (name) ON DELETE CASCADE,
    key_type   text NOT NULL CHECK (key_type IN ('bigint', 'text')),
    refresh_fn text NOT NULL,    -- (keys key_type[]) RETURNS integer: derived rows written or deleted
    delivery   text NOT NULL DEFAULT 'notify' CHECK (delivery IN ('notify', 'queue', 'wal'))
);

-- Capture declarations: which changes of which source table give which keys
-- of a channel. The light triggers of notify and queue mode are made from
-- these rows (rollupd.capture_sync), and the WAL mode's publication too.
--   key_column       the column whose value (as text) is the key, in the new
--                    row and, for an UPDATE that changes it or a DELETE, the
--                    old row;
--   filter_column /  only rows whose filter_column (as text) equals
--   filter_value     filter_value give keys (both NULL: every row);
--   watched_columns  an UPDATE gives keys only when one of these, the key or
--                    the filter column changed (NULL: any column);
--   events           of 'insert', 'update', 'delete'.
CREATE TABLE IF NOT EXISTS rollupd.capture (
    channel         text NOT NULL REFERENCES rollupd.channel (channel) ON DELETE CASCADE,
    source_table    text NOT NULL,
    key_column      text NOT NULL CHECK (key_column ~ '^[a-z_][a-z0-9_]*$'),
    filter_column   text CHECK (filter_column ~ '^[a-z_][a-z0-9_]*$'),
    filter_value    text,
    watched_columns text[],
    events          text[] NOT NULL DEFAULT '{insert,update,delete}'
                    CHECK (events <@ '{insert,update,delete}' AND cardinality(events) > 0),
    PRIMARY KEY (channel, source_table, key_column),
    CHECK ((filter_column IS NULL) = (filter_value IS NULL))
);

-- Poison keys. A key whose refresh raises an error (bad data, a constraint
-- the new row violates) must not hold back the other keys of its batch nor
-- its channel. rollupd refreshes every batch through rollupd.refresh_keys():
-- one call of the channel's refresh function when it succeeds; when it
-- raises, the batch is split in halves, each refreshed in its own
-- subtransaction, down to the single keys that fail. Those are kept here
-- with their error, skipped by later batches and retried by
-- rollupd.poison_retry() with backoff until they succeed. Nothing is lost: a
-- poison key leaves the queue (or the batch) only in the transaction that
-- records it here.
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

-- Queue mode. The dirty keys of every queue-mode channel, one partition per
-- channel (named by rollupd.queue_partition(), logged or unlogged). Writers
-- insert with ON CONFLICT DO NOTHING, so a key waits once however often it
-- changes; rollupd claims keys with DELETE ... RETURNING under FOR UPDATE
-- SKIP LOCKED in the transaction that refreshes them, so a failed refresh
-- loses nothing.
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

-- WAL mode: the replication slots rollupd created, and when. Changes made
-- before a slot existed never reach its stream, so every WAL-mode rollup
-- needs one complete reconcile walk that started after this time.
CREATE TABLE IF NOT EXISTS rollupd.wal_slot (
    slot_name  text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- ==== Internal functions ====

-- The one naming rule of a channel's queue partition (in schema rollupd).
CREATE OR REPLACE FUNCTION rollupd.queue_partition(p_channel text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT 'queue_' || p_channel $$;

-- A function or table name from the catalog, checked before it is put into
-- SQL text: [a-z_][a-z0-9_]*, optionally schema-qualified.
CREATE OR REPLACE FUNCTION rollupd.checked_name(name text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF name !~ '^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$' THEN
        RAISE EXCEPTION 'rollupd: invalid name in the catalog: %', name;
    END IF;
    RETURN name;
END
$$;

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

-- One refresh of `keys`, splitting on failure (see rollupd.poison). The
-- counters accumulate over the recursion; `retrying` is set by poison_retry
-- (its keys are all in rollupd.poison: refreshed ranges leave it, and a
-- failing one never aborts the call, or the same keys would be due again at
-- once).
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

-- The statements that refresh a channel's keys and sort them in key order.
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
    refresh_sql := format('SELECT %s($1::%s[])', rollupd.checked_name(fn), key_type);
    sort_sql := format('SELECT array_agg(k ORDER BY k::%s) FROM unnest($1::text[]) k', key_type);
END
$$;

-- The keys a walk of `p_rollup` covers next, after `after` (NULL: from the
-- start), in key order: keys of the key space and of the derived rows.
CREATE OR REPLACE FUNCTION rollupd.next_keys(p_rollup text, after text, max_keys integer)
RETURNS text[]
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r rollupd.rollup;
    cond text;
    keys text[];
BEGIN
    SELECT * INTO r FROM rollupd.rollup WHERE name = p_rollup;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rollupd: no rollup named %', p_rollup;
    END IF;
    cond := CASE WHEN after IS NULL THEN 'true' ELSE format('%%s > $1::%s', r.key_type) END;
    EXECUTE format(
        'SELECT array_agg(k::text ORDER BY k) FROM ('
        '  SELECT k FROM ((SELECT s.k FROM (%s) AS s (k) WHERE %s ORDER BY 1 LIMIT $2)'
        '                 UNION'
        '                 (SELECT d.%I FROM %s d WHERE %s ORDER BY 1 LIMIT $2)) AS u'
        '   ORDER BY k LIMIT $2) AS t',
        r.key_space, format(cond, 's.k'), r.derived_columns[1], rollupd.checked_name(r.derived_table),
        format(cond, 'd.' || quote_ident(r.derived_columns[1])))
      INTO keys USING after, max_keys;
    RETURN keys;
END
$$;

-- ==== Public functions: what rollupd calls ====

-- WAL mode: are these transactions (32-bit xids from the stream, all
-- committed and recent) visible to a snapshot taken now? The walsender can
-- send a commit before other sessions see it (and later still under
-- synchronous replication): a refresh must not compute from a snapshot that
-- misses it.
CREATE OR REPLACE FUNCTION rollupd.xids_visible(xids bigint[])
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    WITH s AS (SELECT pg_current_snapshot() AS snap),
         h AS (SELECT snap, pg_snapshot_xmax(snap)::text::bigint AS xmax FROM s)
    SELECT coalesce(bool_and(pg_visible_in_snapshot(
               -- The full xid: the epoch of xmax, one less when the xid wrapped after it.
               (CASE WHEN x <= (h.xmax & 4294967295) THEN (h.xmax & ~4294967295::bigint) | x
                     ELSE ((h.xmax & ~4294967295::bigint) - 4294967296) | x END)::text::xid8,
               h.snap)), true)
      FROM h, unnest(xids) AS x
$$;

-- Wait up to wait_ms until every one of `xids` is visible; raise (SQLSTATE
-- 55000, so the batch fails whole and rollupd retries it) if one is not.
CREATE OR REPLACE FUNCTION rollupd.wait_visible(xids bigint[], wait_ms integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + wait_ms * interval '1 millisecond';
BEGIN
    LOOP
        EXIT WHEN rollupd.xids_visible(xids);
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'rollupd: a streamed transaction is not visible yet after % ms (synchronous replication?)',
                wait_ms USING ERRCODE = '55000';
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
END
$$;

-- A batch of a channel's keys: the refresh, with poison keys isolated. Keys
-- already in rollupd.poison are left to poison_retry. `detail` lists (up to
-- 10) newly failed keys with their error. WAL mode passes the transactions
-- the keys come from: the refresh waits until they are visible (each later
-- statement of the refresh then has a snapshot that sees them).
CREATE OR REPLACE FUNCTION rollupd.refresh_keys(p_channel text, p_keys text[], p_xids bigint[] DEFAULT NULL,
                                                p_wait_ms integer DEFAULT 0,
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
    IF p_xids IS NOT NULL AND cardinality(p_xids) > 0 THEN
        PERFORM rollupd.wait_visible(p_xids, p_wait_ms);
    END IF;
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

-- About how many keys a walk of the rollup visits: the planner's estimate of
-- its key space (for progress and time left; NULL when there is none, or
-- when the estimate fails: it never fails a walk). Volatile: EXPLAIN.
CREATE OR REPLACE FUNCTION rollupd.walk_estimate(p_rollup text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    space text;
    plan json;
BEGIN
    SELECT r.key_space INTO space FROM rollupd.rollup r WHERE r.name = p_rollup;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || space INTO plan;
    RETURN round((plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- One chunk of a reconcile walk: repair the keys after `after`; one short
-- transaction per call. `last_key` is NULL when the walk is done, and then
-- the rollup's last_reconciled_at is set. The first call on an empty derived
-- table builds it with the rollup's build_fn, when it has one.
CREATE OR REPLACE FUNCTION rollupd.reconcile_chunk(p_rollup text, after text, max_keys integer,
                                                   OUT last_key text, OUT fixed bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    r rollupd.rollup;
    keys text[];
    empty boolean;
BEGIN
    SELECT * INTO r FROM rollupd.rollup WHERE name = p_rollup;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rollupd: no rollup named %', p_rollup;
    END IF;
    IF after IS NULL THEN
        -- A walk starts (transaction time: before anything this chunk reads).
        UPDATE rollupd.rollup SET walk_started_at = now() WHERE name = p_rollup;
        r.walk_started_at := now();
    END IF;
    IF after IS NULL AND r.build_fn IS NOT NULL THEN
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %s)', rollupd.checked_name(r.derived_table)) INTO empty;
        IF empty THEN
            -- One statement that may run for a while at scale: say so first
            -- (a NOTICE reaches the client at once; rollupd logs it).
            RAISE NOTICE 'rollupd: % is empty: building it in one pass with %() from its sources (about % keys)',
                r.derived_table, r.build_fn, coalesce(rollupd.walk_estimate(p_rollup)::text, 'unknown');
            EXECUTE format('SELECT %s()', rollupd.checked_name(r.build_fn)) INTO fixed;
            last_key := NULL;
            UPDATE rollupd.rollup SET last_walk_started_at = walk_started_at, last_reconciled_at = now()
             WHERE name = p_rollup;
            RETURN;
        END IF;
    END IF;
    keys := rollupd.next_keys(p_rollup, after, max_keys);
    IF keys IS NULL THEN
        last_key := NULL;
        fixed := 0;
        UPDATE rollupd.rollup SET last_walk_started_at = walk_started_at, last_reconciled_at = now()
         WHERE name = p_rollup;
        RETURN;
    END IF;
    last_key := keys[cardinality(keys)];
    EXECUTE format('SELECT %s($1::%s[])', rollupd.checked_name(r.refresh_fn), r.key_type) INTO fixed USING keys;
END
$$;

-- One chunk of a verify walk: the same keys, read-only. A key mismatches
-- when its derived rows differ in any way from what compute_fn says they
-- must be (missing, extra or different rows).
CREATE OR REPLACE FUNCTION rollupd.verify_chunk(p_rollup text, after text, max_keys integer,
                                                OUT last_key text, OUT mismatched text[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r rollupd.rollup;
    keys text[];
    cols text;
BEGIN
    SELECT * INTO r FROM rollupd.rollup WHERE name = p_rollup;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rollupd: no rollup named %', p_rollup;
    END IF;
    keys := rollupd.next_keys(p_rollup, after, max_keys);
    IF keys IS NULL THEN
        last_key := NULL;
        mismatched := '{}';
        RETURN;
    END IF;
    last_key := keys[cardinality(keys)];
    SELECT string_agg(format('d.%I', c), ', ' ORDER BY i) INTO cols
      FROM unnest(r.derived_columns) WITH ORDINALITY AS x (c, i);
    EXECUTE format(
        'WITH c AS MATERIALIZED (SELECT * FROM %s($1::%s[])),'
        '     d AS MATERIALIZED (SELECT %s FROM %s d WHERE d.%I = ANY ($1::%s[]))'
        ' SELECT coalesce(array_agg(t.k::text ORDER BY t.k), ''{}'') FROM (SELECT DISTINCT x.k'
        '   FROM ((SELECT * FROM c EXCEPT SELECT * FROM d) UNION ALL (SELECT * FROM d EXCEPT SELECT * FROM c)) AS x (k)) t',
        rollupd.checked_name(r.compute_fn), r.key_type, cols, rollupd.checked_name(r.derived_table),
        r.derived_columns[1], r.key_type)
      INTO mismatched USING keys;
END
$$;

-- Take every one of these tables for a trigger, identity or queue change,
-- all or none, before anything else. DDL on one table waits for its
-- sessions, and the sessions take several in orders of their own: a refresh
-- reads users, then associated_wallets; a drain holds the queue, then reads
-- the sources; a writer holds a source, then its trigger queues a key. A
-- function that held one table while it waited for the next would deadlock
-- with one of them (seen under load when a channel changed delivery), and
-- one that kept a table while it slept between tries would stall them. So
-- each try waits at most 200 ms for each lock, and a try that times out
-- gives back everything it took (its subtransaction) before the next: the
-- other sessions finish meanwhile. Up to 5 minutes, then an error that says
-- so.
CREATE OR REPLACE FUNCTION rollupd.lock_sources(tables text[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    list text;
    saved constant text := current_setting('lock_timeout');
    give_up constant timestamptz := clock_timestamp() + interval '5 minutes';
BEGIN
    SELECT string_agg(t::regclass::text, ', ' ORDER BY t::regclass::text) INTO list
      FROM unnest(tables) AS t WHERE to_regclass(t) IS NOT NULL;
    IF list IS NULL THEN
        RETURN;
    END IF;
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '200ms', true);
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', list);
            PERFORM set_config('lock_timeout', saved, true);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            IF clock_timestamp() > give_up THEN
                RAISE EXCEPTION 'rollupd: could not lock % for 5 minutes: long transactions hold them', list;
            END IF;
            PERFORM pg_sleep(0.05 + random() * 0.1);
        END;
    END LOOP;
END
$$;

-- Every change to the catalog (registration, delivery) tells a running
-- rollupd at commit: it LISTENs on rollupd.catalog (a name no channel can
-- have) and re-reads the catalog, as on SIGHUP.
CREATE OR REPLACE FUNCTION rollupd.catalog_changed()
RETURNS void
LANGUAGE sql
AS $$ SELECT pg_notify('rollupd.catalog', '') $$;

-- After a channel's delivery or a rollup's captures changed: the light
-- triggers of `tables` (rollupd.capture_sync), the WAL mode's publication,
-- and a running rollupd follow.
CREATE OR REPLACE FUNCTION rollupd.captures_changed(tables text[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    t text;
BEGIN
    PERFORM rollupd.lock_sources(tables);
    FOREACH t IN ARRAY coalesce(tables, '{}') LOOP
        PERFORM rollupd.capture_sync(t);
    END LOOP;
    PERFORM rollupd.wal_publication_sync();
    PERFORM rollupd.catalog_changed();
END
$$;

-- Queue mode: what the writers' light triggers call (through signal_keys).
-- Switch a channel's delivery: 'notify', 'wal', or 'queue' with a 'logged'
-- (the default) or 'unlogged' dirty-key table. Idempotent. Unlogged measured
-- a few points faster for writers (BENCHMARKS.md), but a crash empties it,
-- which costs a full reconcile. Leaving queue mode refuses while keys are
-- still queued (let rollupd drain them first). The light triggers follow
-- (a channel in wal mode has none), and so does the WAL mode's publication.
-- Run it as the tables' owner.
CREATE OR REPLACE FUNCTION rollupd.set_delivery(p_channel text, p_delivery text, p_table text DEFAULT 'logged')
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    part text := rollupd.queue_partition(p_channel);
    persistence "char";
    queued bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM rollupd.channel c WHERE c.channel = p_channel) THEN
        RAISE EXCEPTION 'rollupd: no channel named %', p_channel;
    END IF;
    -- The channel's source tables (triggers, identity) and the queue (its
    -- partitions), all at once: see lock_sources.
    PERFORM rollupd.lock_sources(ARRAY(SELECT DISTINCT k.source_table FROM rollupd.capture k
                                        WHERE k.channel = p_channel) || 'rollupd.queue'::text);
    IF p_delivery NOT IN ('notify', 'queue', 'wal') OR p_table NOT IN ('logged', 'unlogged') THEN
        RAISE EXCEPTION 'rollupd: delivery is notify, wal, or queue with a logged or unlogged table (got %, %)',
            p_delivery, p_table;
    END IF;
    SELECT c.relpersistence INTO persistence
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'rollupd' AND c.relname = part;
    IF p_delivery <> 'queue' THEN
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
    ELSE
        IF persistence IS NULL THEN
            EXECUTE format('CREATE %s TABLE rollupd.%I PARTITION OF rollupd.queue FOR VALUES IN (%L)',
                           CASE WHEN p_table = 'unlogged' THEN 'UNLOGGED' ELSE '' END, part, p_channel);
        ELSIF persistence = 'u' AND p_table = 'logged' THEN
            EXECUTE format('ALTER TABLE rollupd.%I SET LOGGED', part);
        ELSIF persistence = 'p' AND p_table = 'unlogged' THEN
            EXECUTE format('ALTER TABLE rollupd.%I SET UNLOGGED', part);
        END IF;
        -- Low-latency churn: vacuum the queue often.
        EXECUTE format('ALTER TABLE rollupd.%I SET (autovacuum_vacuum_scale_factor = 0,'
                       ' autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0)', part);
        INSERT INTO rollupd.doorbell (channel, armed) VALUES (p_channel, false) ON CONFLICT (channel) DO NOTHING;
        IF p_table = 'unlogged' THEN
            INSERT INTO rollupd.queue_sentinel VALUES (p_channel) ON CONFLICT DO NOTHING;
        ELSE
            DELETE FROM rollupd.queue_sentinel WHERE channel = p_channel;
        END IF;
    END IF;
    UPDATE rollupd.channel SET delivery = p_delivery WHERE channel = p_channel;
    PERFORM rollupd.captures_changed(ARRAY(SELECT DISTINCT k.source_table FROM rollupd.capture k
                                            WHERE k.channel = p_channel));
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

-- A drain's claim: the ctids of up to max_keys queued rows of the channel,
-- locked, skipping rows another drain holds. A queue partition empties and
-- fills all day, so its statistics rarely describe it: called nearly empty
-- while 110,000 keys were queued, the planner chose a bitmap scan, which
-- reads every index entry of the partition before the first row (25 ms a
-- drain, whatever max_keys). Bitmap scans are off here: a sequential or an
-- index scan stops once max_keys rows are locked.
CREATE OR REPLACE FUNCTION rollupd.queue_claim(p_channel text, max_keys integer)
RETURNS tid[]
LANGUAGE plpgsql
SET enable_bitmapscan = off
AS $$
BEGIN
    RETURN ARRAY(SELECT c.ctid FROM rollupd.queue c WHERE c.channel = p_channel LIMIT max_keys FOR UPDATE SKIP LOCKED);
END
$$;

-- Delete the claimed rows, by ctid (they are locked: no one else moves
-- them), returning their keys and how long each waited. A TID scan reads just
-- those rows. Joined back by key, the DELETE was planned as a hash join over
-- the whole partition: each 1,000-key drain of a 100,000-key backlog read all
-- of it (36 ms), so a backlog drained in time proportional to its square;
-- and with ctid = ANY alone, the same wrong statistics as above made it a
-- scan of the whole partition testing each row against the 1,000 ctids
-- (700 ms a drain). Sequential, bitmap and index scans are off, which leaves
-- the TID scan, whatever the statistics say. The channel condition stays: it
-- prunes the other partitions, whose ctids mean other rows.
CREATE OR REPLACE FUNCTION rollupd.queue_take(p_channel text, ctids tid[],
                                              OUT keys text[], OUT waits double precision[])
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_indexscan = off
AS $$
BEGIN
    WITH gone AS (
        DELETE FROM rollupd.queue q
         WHERE q.channel = p_channel AND q.ctid = ANY (ctids)
        RETURNING q.key, q.enqueued_at
    )
    SELECT array_agg(gone.key), array_agg(extract(epoch FROM clock_timestamp() - gone.enqueued_at)::double precision)
      INTO keys, waits FROM gone;
END
$$;

-- rollupd's drain: claim up to max_keys queued keys of a channel and refresh
-- them, in this one transaction, isolating poison keys as
-- rollupd.refresh_keys() does. `truncated` is true when the channel's
-- unlogged queue was emptied by a crash (the sentinel row is gone; it is put
-- back here): the rollup needs a full reconcile. `wait_buckets` counts how
-- long the claimed keys waited in the queue (from the writer's transaction
-- to this claim) in the buckets rollupd passes as `bounds` (its histogram's
-- upper bounds, in seconds; the last bucket is past the last bound);
-- `wait_sum` is the total in seconds.
CREATE OR REPLACE FUNCTION rollupd.queue_drain(p_channel text, max_keys integer, bounds double precision[],
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
                WHERE n.nspname = 'rollupd' AND c.relname = rollupd.queue_partition(p_channel)
                  AND c.relpersistence = 'u')
       AND NOT EXISTS (SELECT 1 FROM rollupd.queue_sentinel s WHERE s.channel = p_channel) THEN
        INSERT INTO rollupd.queue_sentinel VALUES (p_channel) ON CONFLICT DO NOTHING;
        truncated := true;
    END IF;
    SELECT t.keys, t.waits INTO keys, waits
      FROM rollupd.queue_take(p_channel, rollupd.queue_claim(p_channel, max_keys)) AS t;
    taken := coalesce(cardinality(keys), 0);
    SELECT array_agg(coalesce(x.n, 0)::integer ORDER BY i), coalesce(sum(x.total), 0)
      INTO wait_buckets, wait_sum
      FROM generate_series(0, cardinality(bounds)) i
      LEFT JOIN (SELECT width_bucket(w, bounds) b, count(*) n, sum(w) total
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

-- ==== Registration: what a rollup's install.sql calls ====

-- Register (or update) a rollup. See rollupd.rollup for the arguments. Its
-- capture rows are declared again after it (a re-install may have changed
-- them): the old ones go.
CREATE OR REPLACE FUNCTION rollupd.register_rollup(p_name text, p_key_type text, p_derived_table text,
                                                   p_derived_columns text[], p_compute_fn text, p_refresh_fn text,
                                                   p_key_space text, p_source_tables text[],
                                                   p_build_fn text DEFAULT NULL, p_description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM rollupd.checked_name(p_derived_table), rollupd.checked_name(p_compute_fn),
            rollupd.checked_name(p_refresh_fn), rollupd.checked_name(coalesce(p_build_fn, 'none'));
    INSERT INTO rollupd.rollup AS r (name, key_type, derived_table, derived_columns, compute_fn, refresh_fn,
                                     key_space, build_fn, source_tables, description)
    VALUES (p_name, p_key_type, p_derived_table, p_derived_columns, p_compute_fn, p_refresh_fn, p_key_space,
            p_build_fn, p_source_tables, p_description)
    ON CONFLICT (name) DO UPDATE
        SET key_type = excluded.key_type, derived_table = excluded.derived_table,
            derived_columns = excluded.derived_columns, compute_fn = excluded.compute_fn,
            refresh_fn = excluded.refresh_fn, key_space = excluded.key_space, build_fn = excluded.build_fn,
            source_tables = excluded.source_tables, description = excluded.description;
    DELETE FROM rollupd.capture k USING rollupd.channel c WHERE c.channel = k.channel AND c.rollup = p_name;
    PERFORM rollupd.catalog_changed();
END
$$;

-- Register (or update) a channel of a rollup; a new one starts in notify mode.
CREATE OR REPLACE FUNCTION rollupd.register_channel(p_channel text, p_rollup text, p_key_type text,
                                                    p_refresh_fn text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM rollupd.checked_name(p_refresh_fn);
    INSERT INTO rollupd.channel AS c (channel, rollup, key_type, refresh_fn)
    VALUES (p_channel, p_rollup, p_key_type, p_refresh_fn)
    ON CONFLICT (channel) DO UPDATE
        SET rollup = excluded.rollup, key_type = excluded.key_type, refresh_fn = excluded.refresh_fn;
    PERFORM rollupd.catalog_changed();
END
$$;

-- Declare which changes of `p_table` give keys of `p_channel` (see
-- rollupd.capture). The light triggers follow at rollupd.capture_sync().
CREATE OR REPLACE FUNCTION rollupd.register_capture(p_channel text, p_table text, p_key_column text,
                                                    p_watched_columns text[] DEFAULT NULL,
                                                    p_filter_column text DEFAULT NULL,
                                                    p_filter_value text DEFAULT NULL,
                                                    p_events text[] DEFAULT '{insert,update,delete}')
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    c text;
BEGIN
    PERFORM rollupd.checked_name(p_table);
    FOREACH c IN ARRAY array_remove(p_watched_columns || p_key_column || p_filter_column, NULL) LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = p_table::regclass AND a.attname = c AND a.attnum > 0
                          AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'rollupd: table % has no column % (capture of channel %)', p_table, c, p_channel;
        END IF;
    END LOOP;
    INSERT INTO rollupd.capture AS k (channel, source_table, key_column, filter_column, filter_value,
                                      watched_columns, events)
    VALUES (p_channel, p_table, p_key_column, p_filter_column, p_filter_value, p_watched_columns, p_events)
    ON CONFLICT (channel, source_table, key_column) DO UPDATE
        SET filter_column = excluded.filter_column, filter_value = excluded.filter_value,
            watched_columns = excluded.watched_columns, events = excluded.events;
    PERFORM rollupd.catalog_changed();
END
$$;

-- Remove a rollup's catalog rows, queue partitions and light triggers (its
-- uninstall.sql then drops its own objects).
CREATE OR REPLACE FUNCTION rollupd.unregister_rollup(p_rollup text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    ch text;
    tables text[];
BEGIN
    SELECT array_agg(DISTINCT k.source_table) INTO tables
      FROM rollupd.capture k JOIN rollupd.channel c ON c.channel = k.channel WHERE c.rollup = p_rollup;
    FOR ch IN SELECT c.channel FROM rollupd.channel c WHERE c.rollup = p_rollup LOOP
        EXECUTE format('DROP TABLE IF EXISTS rollupd.%I', rollupd.queue_partition(ch));
        DELETE FROM rollupd.queue_sentinel WHERE channel = ch;
    END LOOP;
    DELETE FROM rollupd.rollup WHERE name = p_rollup;
    PERFORM rollupd.captures_changed(tables);
END
$$;

-- ==== Light triggers, made from the capture declarations ====

-- The keys of one capture row from a transition table `rel` (new_rows or
-- old_rows) aliased `alias`: "alias.key::text", with the filter applied.
CREATE OR REPLACE FUNCTION rollupd.capture_key_sql(k rollupd.capture, alias text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN k.filter_column IS NULL THEN format('%s.%I::text', alias, k.key_column)
                ELSE format('CASE WHEN %s.%I::text = %L THEN %s.%I::text END',
                            alias, k.filter_column, k.filter_value, alias, k.key_column) END
$$;

-- The statements of a trigger function for one event of one table: per
-- capture row, the changed keys from the transition tables, signalled on the
-- row's channel. An UPDATE pairs old and new rows by the primary key (a
-- table without one: every old and new row counts as changed) and gives the
-- old and the new row's key when a watched column changed.
CREATE OR REPLACE FUNCTION rollupd.capture_event_sql(p_table regclass, p_event text)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    k rollupd.capture;
    pk text[];
    watched text[];
    body text := '';
    keys text;
    same_row text;
BEGIN
    SELECT array_agg(a.attname::text ORDER BY x.i) INTO pk
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS x (attnum, i)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = x.attnum
     WHERE i.indrelid = p_table AND i.indisprimary;
    FOR k IN SELECT c.* FROM rollupd.capture c JOIN rollupd.channel ch ON ch.channel = c.channel
              WHERE c.source_table::regclass = p_table AND p_event = ANY (c.events) AND ch.delivery <> 'wal'
              ORDER BY c.channel, c.key_column LOOP
        IF p_event = 'insert' THEN
            keys := format('SELECT DISTINCT %s FROM new_rows n', rollupd.capture_key_sql(k, 'n'));
        ELSIF p_event = 'delete' THEN
            keys := format('SELECT DISTINCT %s FROM old_rows o', rollupd.capture_key_sql(k, 'o'));
        ELSIF pk IS NULL THEN
            keys := format('SELECT %s FROM old_rows o UNION SELECT %s FROM new_rows n',
                           rollupd.capture_key_sql(k, 'o'), rollupd.capture_key_sql(k, 'n'));
        ELSE
            SELECT string_agg(format('n.%1$I = o.%1$I', c), ' AND ') INTO same_row FROM unnest(pk) c;
            watched := array_remove(k.watched_columns || k.key_column || k.filter_column, NULL);
            keys := format(
                'SELECT x.k FROM old_rows o JOIN new_rows n ON %1$s'
                ' CROSS JOIN LATERAL (VALUES (%2$s), (%3$s)) AS x (k) WHERE %4$s'
                ' UNION SELECT %2$s FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE %1$s)'
                ' UNION SELECT %3$s FROM new_rows n WHERE NOT EXISTS (SELECT 1 FROM old_rows o WHERE %1$s)',
                same_row, rollupd.capture_key_sql(k, 'o'), rollupd.capture_key_sql(k, 'n'),
                CASE WHEN k.watched_columns IS NULL THEN 'o IS DISTINCT FROM n'
                     ELSE (SELECT format('(%s) IS DISTINCT FROM (%s)',
                                         string_agg(format('o.%I', c), ', ' ORDER BY i),
                                         string_agg(format('n.%I', c), ', ' ORDER BY i))
                             FROM (SELECT c, min(i) AS i FROM unnest(watched) WITH ORDINALITY AS u (c, i)
                                    GROUP BY c) w) END);
        END IF;
        -- (A filter gives NULL for the rows it leaves out.)
        body := body || format(E'        PERFORM rollupd.signal_keys(%L, %s);\n', k.channel,
                               CASE WHEN k.filter_column IS NULL THEN format('ARRAY(%s)', keys)
                                    ELSE format('array_remove(ARRAY(%s), NULL)', keys) END);
    END LOOP;
    RETURN body;
END
$$;

-- Make the light triggers of one source table match its capture rows: one
-- statement-level trigger per event with transition tables, one generated
-- function holding the statements. A table with no capture row left in
-- notify or queue mode gets none (WAL mode needs no trigger).
CREATE OR REPLACE FUNCTION rollupd.capture_sync(p_table text)
RETURNS void
LANGUAGE plpgsql
SET client_min_messages = warning -- (no "trigger ... does not exist, skipping")
AS $$
DECLARE
    rel regclass := p_table::regclass;
    fn text;
    ev text;
    body text;
    branches text := '';
BEGIN
    SELECT left(format('capture_%s_%s', n.nspname, c.relname), 63) INTO fn
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    FOREACH ev IN ARRAY '{insert,update,delete}'::text[] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'rollupd_capture_' || ev, rel);
        body := rollupd.capture_event_sql(rel, ev);
        CONTINUE WHEN body = '';
        branches := branches || format(E'    %s TG_OP = %L THEN\n%s',
                                       CASE WHEN branches = '' THEN 'IF' ELSE 'ELSIF' END, upper(ev), body);
    END LOOP;
    IF branches = '' THEN
        EXECUTE format('DROP FUNCTION IF EXISTS rollupd.%I()', fn);
        RETURN;
    END IF;
    EXECUTE format(E'CREATE OR REPLACE FUNCTION rollupd.%I() RETURNS trigger LANGUAGE plpgsql AS $body$\n' ||
                   E'-- Made by rollupd.capture_sync(%L) from rollupd.capture: do not edit.\n' ||
                   E'BEGIN\n%s    END IF;\n    RETURN NULL;\nEND\n$body$', fn, p_table, branches);
    FOREACH ev IN ARRAY '{insert,update,delete}'::text[] LOOP
        CONTINUE WHEN rollupd.capture_event_sql(rel, ev) = '';
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s FOR EACH STATEMENT EXECUTE FUNCTION rollupd.%I()',
                       'rollupd_capture_' || ev, upper(ev), rel,
                       CASE ev WHEN 'insert' THEN 'NEW TABLE AS new_rows'
                               WHEN 'delete' THEN 'OLD TABLE AS old_rows'
                               ELSE 'OLD TABLE AS old_rows NEW TABLE AS new_rows' END, fn);
    END LOOP;
END
$$;

-- ==== WAL mode: the publication, and what rollupd checks before it streams ====

-- The columns of a table's replica identity: what the old row of an UPDATE
-- or DELETE carries (NULL: every column, REPLICA IDENTITY FULL).
CREATE OR REPLACE FUNCTION rollupd.identity_columns(p_table regclass)
RETURNS text[]
LANGUAGE sql STABLE
AS $$
    SELECT CASE c.relreplident
               WHEN 'f' THEN NULL
               WHEN 'n' THEN '{}'::text[]
               ELSE coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                                FROM pg_index i
                                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                               WHERE i.indrelid = c.oid
                                 AND CASE c.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END),
                             '{}') END
      FROM pg_class c WHERE c.oid = p_table
$$;

-- The columns of the old row a capture row needs: its key and filter
-- columns, when it covers updates (a row moving to another key) or deletes.
CREATE OR REPLACE FUNCTION rollupd.capture_old_columns(events text[], key_column text, filter_column text)
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN events && '{update,delete}' THEN array_remove(ARRAY[key_column, filter_column], NULL)
                ELSE '{}'::text[] END
$$;

-- Make publication `rollupd` cover exactly the source tables of the
-- WAL-mode capture rows (created when the first channel goes to WAL mode,
-- dropped with the last). A table whose replica identity does not carry the
-- old-row columns its captures need gets REPLICA IDENTITY FULL (each rollup's
-- install.sql says which of its tables that is, and why it is cheap there).
-- Other tables are published with a column list: their identity and the
-- columns the captures read, so the stream carries nothing else. Needs the
-- tables' owner, like install.sql.
CREATE OR REPLACE FUNCTION rollupd.wal_publication_sync()
RETURNS void
LANGUAGE plpgsql
SET client_min_messages = warning -- (no "publication ... does not exist, skipping")
AS $$
DECLARE
    t record;
    ident text[];
    members text[] := '{}';
BEGIN
    FOR t IN SELECT k.source_table::regclass AS rel,
                    array_agg(DISTINCT c) FILTER (WHERE c IS NOT NULL) AS cols,
                    array_agg(DISTINCT o) FILTER (WHERE o IS NOT NULL) AS old_cols
               FROM rollupd.capture k
               JOIN rollupd.channel ch ON ch.channel = k.channel AND ch.delivery = 'wal'
               LEFT JOIN LATERAL unnest(k.watched_columns || k.key_column || k.filter_column) AS c ON true
               LEFT JOIN LATERAL unnest(rollupd.capture_old_columns(k.events, k.key_column, k.filter_column)) AS o ON true
              GROUP BY 1 ORDER BY 1::text LOOP
        ident := rollupd.identity_columns(t.rel);
        IF ident IS NOT NULL AND NOT coalesce(t.old_cols, '{}') <@ ident THEN
            EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', t.rel);
            ident := NULL;
        END IF;
        members := members || CASE WHEN ident IS NULL THEN t.rel::text
                                   ELSE format('%s (%s)', t.rel, (SELECT string_agg(quote_ident(x), ', ' ORDER BY x)
                                                                   FROM (SELECT DISTINCT x FROM unnest(ident || t.cols) x) u))
                              END;
    END LOOP;
    IF cardinality(members) = 0 THEN
        DROP PUBLICATION IF EXISTS rollupd;
    ELSIF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'rollupd') THEN
        EXECUTE format('ALTER PUBLICATION rollupd SET TABLE %s', array_to_string(members, ', '));
    ELSE
        EXECUTE format('CREATE PUBLICATION rollupd FOR TABLE %s', array_to_string(members, ', '));
    END IF;
END
$$;

-- What rollupd checks on its replication connection before it streams
-- (wal.c), at start and after every reload: `problems` says in words what
-- stops the WAL mode (empty: nothing); `slot` is the slot's state (missing,
-- or pg_replication_slots.wal_status); `walk` names the WAL-mode rollups that
-- have had no complete walk since the slot was created.
CREATE OR REPLACE FUNCTION rollupd.wal_check(p_slot text, p_publication text,
                                             OUT problems text[], OUT slot text, OUT walk text[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    k record;
    ident text[];
    published text[];
    created timestamptz;
BEGIN
    problems := '{}';
    IF current_setting('wal_level') <> 'logical' THEN
        problems := problems || format('wal_level is %s: the WAL mode needs wal_level = logical (set it and restart PostgreSQL)',
                                       current_setting('wal_level'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolreplication OR rolsuper)) THEN
        problems := problems || format('role %s lacks the REPLICATION attribute (sql/roles.sql grants it when a rollup uses the WAL mode)',
                                       current_user);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = p_publication) THEN
        problems := problems || format('publication %s is missing (install the rollups with -v delivery=wal, as the tables'' owner)',
                                       p_publication);
    END IF;
    FOR k IN SELECT c.*, to_regclass(c.source_table) AS rel FROM rollupd.capture c
               JOIN rollupd.channel ch ON ch.channel = c.channel AND ch.delivery = 'wal'
              ORDER BY c.channel, c.source_table LOOP
        IF k.rel IS NULL THEN
            problems := problems || format('table %s of channel %s does not exist', k.source_table, k.channel);
            CONTINUE;
        END IF;
        SELECT pt.attnames INTO published
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_publication_tables pt ON pt.schemaname = n.nspname AND pt.tablename = c.relname
         WHERE c.oid = k.rel AND pt.pubname = p_publication;
        IF NOT FOUND THEN
            problems := problems || format('publication %s does not cover table %s (channel %s)', p_publication, k.rel,
                                           k.channel);
        ELSIF NOT array_remove(k.watched_columns || k.key_column || k.filter_column, NULL) <@ published::text[] THEN
            problems := problems || format('publication %s does not publish every column channel %s reads of table %s',
                                           p_publication, k.channel, k.rel);
        END IF;
        ident := rollupd.identity_columns(k.rel);
        IF ident IS NOT NULL AND NOT rollupd.capture_old_columns(k.events, k.key_column, k.filter_column) <@ ident THEN
            problems := problems || format('table %s cannot deliver %s of its old rows (REPLICA IDENTITY %s): an update or delete would lose keys of channel %s (install.sql sets REPLICA IDENTITY FULL)',
                                           k.rel, array_to_string(rollupd.capture_old_columns(k.events, k.key_column, k.filter_column), ', '),
                                           CASE WHEN ident = '{}' THEN 'NOTHING' ELSE 'on ' || array_to_string(ident, ', ') END,
                                           k.channel);
        END IF;
    END LOOP;
    SELECT coalesce(s.wal_status, 'missing') INTO slot FROM pg_replication_slots s WHERE s.slot_name = p_slot;
    slot := coalesce(slot, 'missing');
    SELECT w.created_at INTO created FROM rollupd.wal_slot w WHERE w.slot_name = p_slot;
    SELECT coalesce(array_agg(DISTINCT r.name ORDER BY r.name), '{}') INTO walk
      FROM rollupd.rollup r JOIN rollupd.channel ch ON ch.rollup = r.name AND ch.delivery = 'wal'
     WHERE created IS NULL OR r.last_walk_started_at IS NULL OR r.last_walk_started_at < created;
END
$$;

-- rollupd created (or re-created) its slot: record when.
CREATE OR REPLACE FUNCTION rollupd.wal_slot_created(p_slot text)
RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO rollupd.wal_slot AS w (slot_name, created_at) VALUES (p_slot, now())
    ON CONFLICT (slot_name) DO UPDATE SET created_at = now()
$$;

-- rollupd dropped its slot (no WAL-mode channel was left, or rollupd --drop-slot).
CREATE OR REPLACE FUNCTION rollupd.wal_slot_dropped(p_slot text)
RETURNS void
LANGUAGE sql
AS $$ DELETE FROM rollupd.wal_slot WHERE slot_name = p_slot $$;
