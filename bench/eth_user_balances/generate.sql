-- Seeded Audius-shaped data for the eth_user_balances benchmarks.
--     psql -v scale=1 -f generate.sql
-- Run on a database where sql/eth_user_balances/source-schema.sql has created
-- empty tables. scale=1: 1,000,000 current users (plus 100,000 history rows),
-- 1,500,000 tracked wallets with 18-decimal wei balances: every user's own
-- wallet (every 7th stored mixed-case) and 500,000 linked wallets, a tenth of
-- them linked to two or three users, 5 % of links deleted, 2 % on sol.
-- bench_wallets numbers the wallets 1..N so pgbench can pick one at random.
-- Randomness is hashint8extended: the same rows whatever the plan.

\set ON_ERROR_STOP 1
\if :{?scale}
\else
\set scale 1
\endif
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.rnd(i bigint, salt bigint) RETURNS float8
LANGUAGE sql IMMUTABLE
AS $$ SELECT (hashint8extended(i, salt) & 4503599627370495)::float8 / 4503599627370496.0 $$;

SELECT round(1000000 * :scale)::bigint AS n_users, round(500000 * :scale)::bigint AS n_linked \gset

BEGIN;
CREATE TABLE bench_wallets (id integer PRIMARY KEY, wallet text NOT NULL);
INSERT INTO bench_wallets
SELECT g, '0x' || substr(md5('wallet' || g) || md5('w' || g), 1, 40)
  FROM generate_series(1, :n_users + :n_linked) g;

INSERT INTO users (user_id, txhash, is_current, wallet, handle)
SELECT g, 'tx' || g, true,
       CASE WHEN g % 7 = 0 THEN '0x' || upper(substr(w.wallet, 3)) ELSE w.wallet END, 'user' || g
  FROM bench_wallets w CROSS JOIN LATERAL (SELECT w.id AS g) AS x
 WHERE w.id <= :n_users;
INSERT INTO users (user_id, txhash, is_current, wallet, handle)
SELECT g, 'old' || g, false, '0xold' || g, 'user' || g
  FROM generate_series(10, :n_users, 10) g;

-- Links: wallet n_users + j goes to one user; a tenth also to a second and
-- third user (shared wallets).
INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete, blocknumber)
SELECT 1 + floor(pg_temp.rnd(w.id * 3 + k, 1) * :n_users)::int, w.wallet,
       (CASE WHEN pg_temp.rnd(w.id, 2) < 0.02 THEN 'sol' ELSE 'eth' END)::wallet_chain,
       true, pg_temp.rnd(w.id * 3 + k, 3) < 0.05, 1
  FROM bench_wallets w CROSS JOIN generate_series(0, 2) k
 WHERE w.id > :n_users AND (k = 0 OR pg_temp.rnd(w.id, 4) < 0.1)
ON CONFLICT DO NOTHING;

INSERT INTO eth_wallet_balances (wallet, balance)
SELECT lower(w.wallet), floor(pg_temp.rnd(w.id, 5) * 1e22)::numeric FROM bench_wallets w;
COMMIT;

VACUUM ANALYZE users, associated_wallets, eth_wallet_balances, bench_wallets;
SELECT (SELECT count(*) FROM users WHERE is_current) AS current_users,
       (SELECT count(*) FROM eth_wallet_balances) AS wallets,
       (SELECT count(*) FROM associated_wallets) AS links;
