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

-- Refresh by wallet maps wallets to users through these. Not partial: the
-- planner estimates lower(wallet) = ANY (...) from an expression index's
-- statistics only when the index has no predicate; with a partial index it
-- guessed 0.5 % of the table per wallet and chose a sequential scan of users
-- (measured at 200,000 users: 140 ms for 1,000 wallets, 22 ms with these).
CREATE INDEX IF NOT EXISTS users_lower_wallet_idx ON users (lower(wallet));
CREATE INDEX IF NOT EXISTS associated_wallets_lower_wallet_idx ON associated_wallets (lower(wallet));

-- The definition, in one place: the derived rows the given ids must have.
-- A user with a current users row has one, with balance(u): the sum over
-- W(u), 0 when W(u) has no balance row. W(u) is a set: UNION counts a wallet
-- once even when it is both the users wallet and a linked one, or linked
-- twice in different cases. Other ids have no derived row.
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_compute(ids bigint[])
RETURNS TABLE (user_id bigint, balance numeric)
LANGUAGE sql STABLE
AS $$
    WITH k AS (
        SELECT DISTINCT id AS user_id FROM unnest(ids) AS id
         WHERE EXISTS (SELECT 1 FROM users u WHERE u.user_id = id AND u.is_current)
    ), w AS (
        SELECT u.user_id::bigint AS user_id, lower(u.wallet) AS wallet
          FROM users u
         WHERE u.user_id = ANY (ids) AND u.is_current AND u.wallet IS NOT NULL
        UNION
        SELECT a.user_id::bigint, lower(a.wallet)
          FROM associated_wallets a
         WHERE a.user_id = ANY (ids) AND a.chain = 'eth' AND a.is_current AND NOT a.is_delete
    )
    SELECT k.user_id, coalesce(sum(b.balance), 0)
      FROM k
      LEFT JOIN w ON w.user_id = k.user_id
      LEFT JOIN eth_wallet_balances b ON b.wallet = w.wallet
     GROUP BY k.user_id
$$;

-- refresh(user ids): lock the derived rows in key order first, compute in a
-- later statement (a snapshot taken after the locks were granted, so a refresh
-- that started earlier can never overwrite a newer total), then write.
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_refresh(keys bigint[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    ids bigint[];
    inserted bigint[];
    updated integer;
    deleted integer;
BEGIN
    -- user_id is an integer: other keys name no user.
    SELECT array_agg(DISTINCT k ORDER BY k) INTO ids
      FROM unnest(keys) AS k
     WHERE k BETWEEN -2147483648 AND 2147483647;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;

    -- 1. Lock: create the missing rows of current users, then lock every row, in key order.
    WITH ins AS (
        INSERT INTO eth_user_balances AS d (user_id)
        SELECT k FROM unnest(ids) AS k
         WHERE EXISTS (SELECT 1 FROM users u WHERE u.user_id = k AND u.is_current)
         ORDER BY k
        ON CONFLICT (user_id) DO NOTHING
        RETURNING d.user_id
    )
    SELECT coalesce(array_agg(ins.user_id), '{}') INTO inserted FROM ins;

    PERFORM 1 FROM eth_user_balances d WHERE d.user_id = ANY (ids) ORDER BY d.user_id FOR UPDATE;

    -- 2 and 3. Compute with a fresh snapshot and write what differs.
    WITH c AS (
        SELECT * FROM rollupd.eth_user_balances_compute(ids)
    ), u AS (
        UPDATE eth_user_balances d
           SET balance = c.balance, updated_at = now()
          FROM c
         WHERE d.user_id = c.user_id AND d.balance IS DISTINCT FROM c.balance
        RETURNING d.user_id
    )
    SELECT count(*) FILTER (WHERE NOT (u.user_id = ANY (inserted))) INTO updated FROM u;

    -- A user with no current users row has no derived row.
    DELETE FROM eth_user_balances d
     WHERE d.user_id = ANY (ids)
       AND NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = d.user_id AND u.is_current);
    GET DIAGNOSTICS deleted = ROW_COUNT;

    RETURN cardinality(inserted) + updated + deleted;
END
$$;

-- refresh(wallets): the users a wallet backs now, then refresh them. A user a
-- wallet stopped backing is refreshed through the user channel by the same
-- change (the link, unlink or users.wallet update signals it).
CREATE OR REPLACE FUNCTION rollupd.eth_user_balances_refresh_wallets(keys text[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    wallets text[];
    ids bigint[];
BEGIN
    SELECT array_agg(DISTINCT lower(k)) INTO wallets FROM unnest(keys) AS k;
    SELECT array_agg(DISTINCT x.user_id) INTO ids
      FROM (SELECT u.user_id::bigint AS user_id
              FROM users u
             WHERE lower(u.wallet) = ANY (wallets) AND u.is_current
            UNION ALL
            SELECT a.user_id::bigint
              FROM associated_wallets a
             WHERE lower(a.wallet) = ANY (wallets) AND a.chain = 'eth' AND a.is_current AND NOT a.is_delete) AS x;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN rollupd.eth_user_balances_refresh(ids);
END
$$;

-- The initial build: an empty table is filled in one set-based pass, one
-- write per row (a refresh inserts, then updates). Concurrent refreshes wait
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
