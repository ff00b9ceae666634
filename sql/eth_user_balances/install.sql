-- eth_user_balances: each user's total balance across all their eth wallets,
-- kept fresh by rollupd. Run on a database that already has users,
-- associated_wallets (with the wallet_chain enum) and eth_wallet_balances,
-- as their owner:
--     psql -d DB -v ON_ERROR_STOP=1 -f sql/eth_user_balances/install.sql
--     (-v delivery=notify|queue|wal: see sql/common/prologue.sql)
-- Idempotent: re-running replaces the functions and triggers in place.
-- One transaction; the two CREATE INDEX statements lock writes to users and
-- associated_wallets while they build (create them CONCURRENTLY beforehand on
-- a busy database, with the same names, and this file skips them); it then
-- ANALYZEs both tables so the planner has the indexes' statistics.

\set rollup_name eth_user_balances
\ir ../common/prologue.sql

-- The derived table: one row per user who has a current users row.
CREATE TABLE IF NOT EXISTS eth_user_balances (
    user_id    integer PRIMARY KEY,
    balance    numeric NOT NULL DEFAULT 0,
    updated_at timestamp NOT NULL DEFAULT now(),
    created_at timestamp NOT NULL DEFAULT now()
);

-- Refresh by wallet maps wallets to users through these, one equality probe
-- per wallet. Hash indexes: a probe reads one bucket page where a btree
-- descends three levels comparing 42-character keys, and the work is
-- memory-bound index descents (perf: _bt_first 60 % of a drain's CPU). A
-- 1,000-key wallet drain at 1 M users cost 45-50 us of server CPU per key
-- with these, 55-58 with the btree indexes of earlier versions, which are
-- dropped (they are rollupd's own; the planner also prefers the hash index
-- for equality). Not partial: the planner estimates lower(wallet) = $1 from
-- an expression index's statistics only when the index has no predicate;
-- with a partial index it guessed 0.5 % of the table per wallet and chose a
-- sequential scan of users (measured at 200,000 users: 140 ms for 1,000
-- wallets, 22 ms with an index without predicate).
DROP INDEX IF EXISTS users_lower_wallet_idx;
DROP INDEX IF EXISTS associated_wallets_lower_wallet_idx;
CREATE INDEX IF NOT EXISTS users_lower_wallet_hash_idx ON users USING hash (lower(wallet));
CREATE INDEX IF NOT EXISTS associated_wallets_lower_wallet_hash_idx ON associated_wallets USING hash (lower(wallet));

-- The definition, in one place: W(u), the wallets of each of the given
-- users, with is_user for the rows that come from a current users row
-- (derived rows exist for exactly the users that have one; such a row may
-- have no wallet). Each user's rows are found through an index leading with
-- user_id: users by its primary key, associated_wallets by its (user_id,
-- wallet, chain) key. W(u) is a set: its callers count a wallet once even
-- when it is both the users wallet and a linked one, or linked twice in
-- different cases. user_id stays an integer, so that a bigint key reaches
-- the indexes (int4 = int8 is in their operator family; a cast of the column
-- would not be).
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_wallets(ids bigint[])
RETURNS TABLE (user_id integer, wallet text, is_user boolean)
LANGUAGE sql STABLE
AS $$
    SELECT u.user_id, lower(u.wallet), true
      FROM users u
     WHERE u.user_id = ANY (ids) AND u.is_current
    UNION ALL
    SELECT a.user_id, lower(a.wallet), false
      FROM associated_wallets a
     WHERE a.user_id = ANY (ids) AND a.chain = 'eth' AND a.is_current AND NOT a.is_delete
$$;

-- balance(u) for one user, 0 when W(u) has no balance row, and whether u has
-- a current users row: what refresh computes, key by key. Inlined (SQL,
-- STABLE, one SELECT) into the LATERAL of its caller, where the aggregate
-- keeps it from being flattened: every read is an index probe for this one
-- user (the two above, then eth_wallet_balances by its primary key per
-- wallet), so the cost per key is the same for 10 keys or 10,000, whatever
-- the planner estimates. (The set-based form below, as refresh used it, was
-- planned for 10,000 keys at 1 M users, in a session's first call, as a hash
-- join over a sequential scan of all 1.5 M rows of eth_wallet_balances:
-- 950 ms of a 2.8 s refresh.)
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_of(p_user_id bigint)
RETURNS TABLE (balance numeric, is_user boolean)
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(sum(b.balance), 0), coalesce(bool_or(w.is_user), false)
      FROM (SELECT x.wallet, bool_or(x.is_user) AS is_user
              FROM rollupd.eth_user_balances_wallets(ARRAY[p_user_id]) AS x
             GROUP BY x.wallet) AS w
      LEFT JOIN eth_wallet_balances b ON b.wallet = w.wallet
$$;

-- The definition, set-based: the derived rows the given ids must have. A
-- user with a current users row has one, with balance(u), 0 when W(u) has
-- no balance row; other ids have none. For the initial build over every
-- user (hash joins over whole tables: 14-16 s for 1 M users, against 25 s
-- key by key through eth_user_balances_of) and for verify
-- (rollupd.verify_chunk, chunks of reconcile.chunk_keys). Refresh goes key by
-- key instead: given a few thousand ids this form may be planned as hash
-- joins over whole tables.
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_compute(ids bigint[])
RETURNS TABLE (user_id bigint, balance numeric)
LANGUAGE sql STABLE
AS $$
    SELECT k.user_id, coalesce(sum(b.balance), 0)
      FROM (SELECT DISTINCT id AS user_id FROM unnest(ids) AS id
             WHERE EXISTS (SELECT 1 FROM users u WHERE u.user_id = id AND u.is_current)) AS k
      LEFT JOIN (SELECT DISTINCT w.user_id::bigint AS user_id, w.wallet
                   FROM rollupd.eth_user_balances_wallets(ids) AS w) AS w ON w.user_id = k.user_id
      LEFT JOIN eth_wallet_balances b ON b.wallet = w.wallet
     GROUP BY k.user_id
$$;

-- A refresh pass's compute and write, for rows it holds: compute with a
-- fresh snapshot (a statement that begins after the locks were granted);
-- write only the rows whose total differs from the one locked (old, same
-- order; NULL past its end: always compared), one more probe each through the
-- primary key (the rows exist and are the caller's, so ON CONFLICT always
-- updates); delete the rows of users with no current users row. Returns the
-- rows written or deleted, each once: a row the caller created (created)
-- counts once if it stays, its total written or not, not at all if it was
-- deleted.
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_write(locked bigint[], old numeric[], created bigint[])
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    upd bigint[];
    del bigint[];
BEGIN
    WITH c AS MATERIALIZED (
        SELECT k.id AS user_id, s.balance, s.is_user
          FROM unnest(locked, old) AS k (id, old)
         CROSS JOIN LATERAL rollupd.eth_user_balances_of(k.id) AS s
         WHERE s.balance IS DISTINCT FROM k.old OR NOT s.is_user
    ), u AS (
        INSERT INTO eth_user_balances AS d (user_id, balance)
        SELECT c.user_id, c.balance FROM c WHERE c.is_user
        ON CONFLICT (user_id) DO UPDATE SET balance = excluded.balance, updated_at = now()
         WHERE d.balance IS DISTINCT FROM excluded.balance
        RETURNING d.user_id
    ), x AS (
        DELETE FROM eth_user_balances d
         WHERE d.user_id = ANY (ARRAY(SELECT c.user_id FROM c WHERE NOT c.is_user))
        RETURNING d.user_id
    )
    SELECT (SELECT array_agg(u.user_id::bigint) FROM u), (SELECT array_agg(x.user_id::bigint) FROM x) INTO upd, del;

    IF created IS NULL THEN
        RETURN coalesce(cardinality(upd), 0) + coalesce(cardinality(del), 0);
    END IF;
    RETURN (SELECT count(*) FROM (SELECT unnest(upd) EXCEPT SELECT unnest(created)) AS a)
         + (SELECT count(*) FROM (SELECT unnest(del) EXCEPT SELECT unnest(created)) AS b)
         + (SELECT count(*) FROM (SELECT unnest(created) EXCEPT SELECT unnest(del)) AS e);
END
$$;

-- refresh(user ids): lock the derived rows first, compute in a later
-- statement (a snapshot taken after the locks were granted, so a refresh
-- that started earlier can never overwrite a newer total), then write what
-- differs. In two passes, each computed and written after its own locks:
-- first the rows no other transaction holds, skipping the held ones (SKIP
-- LOCKED); then the held and the missing ones, waiting for each in key
-- order. Two workers' batches of 10,000 random wallets at 1 M users share
-- about 30 users: in one pass the second waited at the first shared user for
-- the whole of the other's transaction (Lock/transactionid), and two workers
-- drained 1.1x what one did; now they wait for each other only for those.
--
-- Waiting in the second pass while holding the first pass's rows must not
-- close a cycle. The first passes run one at a time, in the order that
-- counts ("older" below): a session-level advisory lock held only while one
-- runs (it never waits for a row). A refresh's keys left for its second pass
-- are claimed, by 512 buckets of user_id (shared transaction-level
-- advisory locks, at most 512 a refresh, never waited for: nothing takes
-- them exclusively), and each refresh holds a ticket (an exclusive
-- transaction-level advisory lock) that others wait for to see it end. A
-- younger refresh's first pass skips the claimed buckets' keys, and its
-- second pass first waits for the tickets of the refreshes that claimed them.
-- So a younger refresh never holds a row an older one waits for, and every
-- wait between refreshes goes from younger to older. (Without the claims, a
-- batch waiting in its second pass for a row whose holder committed
-- meanwhile deadlocked with the batch that took that row in its first pass:
-- 6 of 70 10,000-key drains, 1 s each before the deadlock was detected.) A
-- transaction that is not a refresh and holds a row (a user's own, the
-- build) is waited for in key order, as before.
--
-- Every statement is a nested loop of index probes driven by the sorted ids
-- (LATERAL subqueries the planner cannot flatten: FOR UPDATE, LIMIT, an
-- aggregate), so the plan is the same at 10 keys or 10,000 and the cost per
-- key stays flat. (The earlier form, = ANY (ids) joins and EXISTS tests, was
-- planned as hash joins over sequential scans of users and
-- eth_wallet_balances once a custom plan saw 10,000 ids.) A key whose row
-- exists and whose total did not change costs one probe to lock it and the
-- probes of the definition; nothing is written for it but the row lock.
-- Since no plan here depends on how many keys come, the generic plan is the
-- plan: force_generic_plan makes each statement's plan once per session,
-- whatever the server's plan_cache_mode, instead of a custom plan at each of
-- a session's first five calls and then, for small batches, at every call
-- (the custom plans have the same shape; planning them took a one-key
-- refresh from 0.12-0.17 ms of CPU to 0.33-0.48 ms, and is lost in the noise
-- at 1,000 keys).
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_refresh(keys bigint[])
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    ids bigint[];
    rest bigint[];      -- keys the first pass left: held by another transaction, or missing
    locked bigint[];    -- rows a pass holds, existing ones first
    old numeric[];      -- their totals when locked (same order; NULL past the existing ones)
    missing bigint[];
    created bigint[];   -- rows the second pass inserted
    n integer := 0;
    claimed bigint[];   -- buckets (user_id & 511) of these keys that refreshes in flight claimed
    older bigint[];     -- their tickets
    tried bigint[];     -- the other buckets of these keys
    unclaimed boolean;  -- no refresh held claims when this one's first pass began
    t bigint;
BEGIN
    -- user_id is an integer: other keys name no user.
    SELECT array_agg(DISTINCT k ORDER BY k) INTO ids
      FROM unnest(keys) AS k
     WHERE k BETWEEN -2147483648 AND 2147483647;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;

    -- 1. One first pass at a time (see above). Note the buckets of these
    -- keys that refreshes in flight claimed (each bucket's exclusive lock,
    -- tried and let go at once: claims are shared, and taken only here) and,
    -- when there are any, the tickets of those refreshes; lock the existing
    -- rows of the other keys that nobody holds, in key order (one probe
    -- each), and note their totals; when keys are left, take a ticket and
    -- claim their buckets; let the others' first passes go; compute and
    -- write. All in this block's subtransaction (it lets go of the session
    -- locks on error), the writes too: a row locked in a subtransaction and
    -- updated in its parent gets a MultiXact for its xmax (two xids of this
    -- transaction), and its new version keeps the subtransaction's lock.
    BEGIN
        -- Whether any refresh holds claims: claimants hold this lock shared;
        -- tried exclusively, it usually spares the buckets'.
        SELECT pg_try_advisory_lock(hashtext('rollupd'), hashtext('eth_user_balances_claims'))
          INTO unclaimed
          FROM pg_advisory_lock(hashtext('rollupd'), hashtext('eth_user_balances_refresh'));
        IF NOT unclaimed THEN
            WITH b AS MATERIALIZED (
                SELECT x.bucket, pg_try_advisory_lock(hashtext('rollupd.eth_user_balances_claim'), x.bucket::integer) AS free
                  FROM (SELECT DISTINCT k & 511 AS bucket FROM unnest(ids) AS k) AS x
            )
            SELECT array_agg(b.bucket) FILTER (WHERE NOT b.free), array_agg(b.bucket) FILTER (WHERE b.free)
              INTO claimed, tried
              FROM b;
        END IF;
        IF claimed IS NOT NULL THEN
            WITH l AS MATERIALIZED (
                SELECT l.classid, l.objid::bigint AS objid, l.pid
                  FROM pg_locks l
                 WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted AND l.pid <> pg_backend_pid()
                   AND l.classid IN (hashtext('rollupd.eth_user_balances_claim')::oid,
                                     hashtext('rollupd.eth_user_balances_ticket')::oid)
            )
            SELECT array_agg(DISTINCT t.objid) INTO older
              FROM l AS t
             WHERE t.classid = hashtext('rollupd.eth_user_balances_ticket')::oid
               AND t.pid IN (SELECT c.pid FROM l AS c
                              WHERE c.classid = hashtext('rollupd.eth_user_balances_claim')::oid
                                AND c.objid = ANY (claimed));
        END IF;
        SELECT array_agg(k.id) FILTER (WHERE l.balance IS NOT NULL),
               array_agg(l.balance) FILTER (WHERE l.balance IS NOT NULL),
               array_agg(k.id) FILTER (WHERE l.balance IS NULL)
          INTO locked, old, rest
          FROM unnest(ids) AS k (id)
          LEFT JOIN LATERAL (SELECT d.balance FROM eth_user_balances d
                              WHERE d.user_id = k.id AND NOT (k.id & 511 = ANY (coalesce(claimed, '{}')))
                             FOR UPDATE SKIP LOCKED) AS l ON true;
        IF rest IS NOT NULL THEN
            LOOP
                EXIT WHEN pg_try_advisory_xact_lock(hashtext('rollupd.eth_user_balances_ticket'),
                          (floor(extract(epoch FROM clock_timestamp()) * 1e6)::bigint % 2147483647)::integer);
            END LOOP;
            PERFORM pg_advisory_xact_lock_shared(hashtext('rollupd.eth_user_balances_claim'), x.bucket::integer)
               FROM (SELECT DISTINCT k & 511 AS bucket FROM unnest(rest) AS k) AS x;
        END IF;
        IF unclaimed THEN
            PERFORM pg_advisory_unlock(hashtext('rollupd'), hashtext('eth_user_balances_claims'));
        END IF;
        IF rest IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock_shared(hashtext('rollupd'), hashtext('eth_user_balances_claims'));
        END IF;
        PERFORM pg_advisory_unlock(hashtext('rollupd'), hashtext('eth_user_balances_refresh')),
                (SELECT count(pg_advisory_unlock(hashtext('rollupd.eth_user_balances_claim'), x.bucket::integer))
                   FROM unnest(tried) AS x (bucket));

        IF locked IS NOT NULL THEN
            n := rollupd.eth_user_balances_write(locked, old, NULL);
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        -- Session-level locks outlive the transaction: let go of this pass's
        -- (if it failed before it let them go), the only exclusive ones of
        -- these two classes.
        PERFORM pg_advisory_unlock(hashtext('rollupd.eth_user_balances_claim'), l.objid::bigint::integer)
           FROM pg_locks l
          WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.pid = pg_backend_pid() AND l.granted
            AND l.mode = 'ExclusiveLock' AND l.classid = hashtext('rollupd.eth_user_balances_claim')::oid;
        PERFORM pg_advisory_unlock(hashtext('rollupd'), hashtext('eth_user_balances_claims'))
           FROM pg_locks l
          WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.pid = pg_backend_pid() AND l.granted
            AND l.mode = 'ExclusiveLock' AND l.classid = hashtext('rollupd')::oid
            AND l.objid = hashtext('eth_user_balances_claims')::oid;
        PERFORM pg_advisory_unlock(hashtext('rollupd'), hashtext('eth_user_balances_refresh'))
           FROM pg_locks l
          WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.pid = pg_backend_pid() AND l.granted
            AND l.mode = 'ExclusiveLock' AND l.classid = hashtext('rollupd')::oid
            AND l.objid = hashtext('eth_user_balances_refresh')::oid;
        RAISE;
    END;
    IF rest IS NULL THEN
        RETURN n;
    END IF;

    -- 2. The rest. First the older refreshes that claimed some of these
    -- keys' buckets must end (their tickets, taken and let go at once: a
    -- shared session-level lock that stays behind holds up nobody, as
    -- tickets are taken with a try).
    FOREACH t IN ARRAY coalesce(older, '{}') LOOP
        PERFORM pg_advisory_unlock_shared(hashtext('rollupd.eth_user_balances_ticket'), t::integer)
           FROM pg_advisory_lock_shared(hashtext('rollupd.eth_user_balances_ticket'), t::integer);
    END LOOP;
    -- Then wait for the held rows, in key order, and note their totals.
    SELECT array_agg(k.id) FILTER (WHERE l.balance IS NOT NULL),
           array_agg(l.balance) FILTER (WHERE l.balance IS NOT NULL),
           array_agg(k.id) FILTER (WHERE l.balance IS NULL)
      INTO locked, old, missing
      FROM unnest(rest) AS k (id)
      LEFT JOIN LATERAL (SELECT d.balance FROM eth_user_balances d WHERE d.user_id = k.id
                         FOR UPDATE) AS l ON true;

    -- Missing rows (new users, or keys that name no user): create one for
    -- every missing key, in key order, whatever users says now. A row another
    -- refresh (or the build) created and has not committed yet is invisible
    -- to the lock above: the insert waits for it, then locks it instead (DO
    -- UPDATE ... WHERE false locks and writes nothing), so that this refresh,
    -- which may be the newer one, still writes it, or deletes it when the
    -- user has stopped being current meanwhile. Skipping the keys of
    -- non-current users here would let that other refresh's row outlive its
    -- user. The write deletes the rows of keys that name no current user (a
    -- row created and deleted in this transaction is never seen by anyone
    -- else).
    IF missing IS NOT NULL THEN
        WITH ins AS (
            INSERT INTO eth_user_balances AS d (user_id)
            SELECT k.id FROM unnest(missing) AS k (id) ORDER BY k.id
            ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id WHERE false
            RETURNING d.user_id
        )
        SELECT array_agg(ins.user_id) INTO created FROM ins;
        locked := locked || missing;    -- unnest(locked, old) pads old with NULL: always compared
    END IF;
    IF locked IS NOT NULL THEN
        n := n + rollupd.eth_user_balances_write(locked, old, created);
    END IF;
    RETURN n;
END
$$;

-- refresh(wallets): the users a wallet backs now, then refresh them. A user a
-- wallet stopped backing is refreshed through the user channel by the same
-- change (the link, unlink or users.wallet update notifies it). Two probes of
-- the lower(wallet) indexes per distinct wallet, in a LATERAL fenced with
-- OFFSET 0: flattened (lower(wallet) = ANY (wallets)), the planner turned
-- 10,000 wallets into sequential scans of users and associated_wallets
-- (1 s of the 2.8 s such a refresh took at 1 M users). Generic plans, as for
-- refresh above.
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_refresh_wallets(keys text[])
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    ids bigint[];
BEGIN
    SELECT array_agg(DISTINCT x.user_id) INTO ids
      FROM (SELECT DISTINCT lower(k) AS wallet FROM unnest(keys) AS k) AS w
     CROSS JOIN LATERAL (SELECT u.user_id::bigint AS user_id
                           FROM users u
                          WHERE lower(u.wallet) = w.wallet AND u.is_current
                         UNION ALL
                         SELECT a.user_id
                           FROM associated_wallets a
                          WHERE lower(a.wallet) = w.wallet AND a.chain = 'eth' AND a.is_current AND NOT a.is_delete
                         OFFSET 0) AS x;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN rollupd.eth_user_balances_refresh(ids);
END
$$;

-- The initial build: an empty table is filled in one set-based pass through
-- eth_user_balances_compute, one write per row (a refresh inserts, then
-- updates). Concurrent refreshes wait
-- for it on the rows it inserts, then recompute.
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_build()
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO eth_user_balances AS d (user_id, balance)
    SELECT c.user_id, c.balance
      FROM rollupd.eth_user_balances_compute(ARRAY(SELECT DISTINCT u.user_id::bigint FROM users u
                                                    WHERE u.is_current)) AS c
     ORDER BY c.user_id  -- key order, as refresh locks: no deadlock with one
    ON CONFLICT (user_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- The read side: balances by primary key, no per-user aggregate.
CREATE OR REPLACE VIEW v_user_balances AS
SELECT u.user_id, u.wallet, u.handle,
       coalesce(b.balance, 0) AS balance,
       b.updated_at AS balance_updated_at
  FROM users u
  LEFT JOIN eth_user_balances b ON b.user_id = u.user_id
 WHERE u.is_current;

-- Statistics for the lower(wallet) expression indexes: without them the
-- planner guesses half of users match 100 wallets and scans the table (1.4 s
-- per refresh of 100 wallets at 1 M users, 40 ms with them). Sampled, so
-- quick on a large table.
ANALYZE users, associated_wallets;

-- Register with rollupd: the rollup, its two channels, and what changes
-- give their keys (docs/design.md: a balance row inserted, deleted or its balance
-- changed; an eth link inserted, deleted or changed in wallet, chain,
-- user_id, is_current or is_delete, old and new user; a users row inserted,
-- deleted, or changed in wallet or is_current).
SELECT rollupd.register_rollup(
    'eth_user_balances', 'bigint', 'eth_user_balances', '{user_id,balance}',
    'rollupd.eth_user_balances_compute', 'rollupd.eth_user_balances_refresh',
    'SELECT DISTINCT u.user_id FROM users u WHERE u.is_current',
    '{users,associated_wallets,eth_wallet_balances}',
    p_build_fn => 'rollupd.eth_user_balances_build',
    p_description => 'sum of eth_wallet_balances over each user''s current wallets');
SELECT rollupd.register_channel('eth_user_balances_user', 'eth_user_balances', 'bigint',
                                'rollupd.eth_user_balances_refresh');
SELECT rollupd.register_channel('eth_user_balances_wallet', 'eth_user_balances', 'text',
                                'rollupd.eth_user_balances_refresh_wallets');
-- In WAL mode the old rows come from the replica identity: users (primary
-- key user_id, txhash) and eth_wallet_balances (primary key wallet) carry
-- the key in it and stay as they are; associated_wallets (primary key id)
-- does not, and gets REPLICA IDENTITY FULL (rollupd.wal_publication_sync):
-- a link moved to another user, and every unlink that deletes, must say the
-- old user_id. It is small and rarely updated, so logging its whole old row
-- costs little; the publication carries only the columns read here.
SELECT rollupd.register_capture('eth_user_balances_wallet', 'eth_wallet_balances', 'wallet', '{balance}');
SELECT rollupd.register_capture('eth_user_balances_user', 'associated_wallets', 'user_id',
                                '{wallet,chain,user_id,is_current,is_delete}', 'chain', 'eth');
SELECT rollupd.register_capture('eth_user_balances_user', 'users', 'user_id', '{wallet,is_current}');

\ir ../common/epilogue.sql
