-- Seeded, reproducible cardano-db-sync-shaped data for first_delegation.
--     psql -v scale=1 -v seed=42 -v epochs=4 -f generate.sql
-- Run on a database where sql/first_delegation/source-schema.sql has created
-- empty tables. scale=1 is mainnet-like: 1.86 M stake addresses, about 3.5 M
-- delegation rows (every address delegates once, a skewed tail re-delegates
-- many times, a quarter of re-delegations return to the address's first
-- pool), 3,000 pools with skewed sizes (the largest holds about 4 % of
-- addresses), blocks of 1 to 100 certificates, two certificates per
-- transaction, and `epochs` epochs of epoch_stake at about 1.3 M rows each,
-- plus a few rows whose pair has no delegation (a pool nobody delegated to).
-- Tests use scale=0.01.
--
-- Randomness is hashint8extended(i, seed + salt), not random(): the same
-- seed gives the same rows whatever plan PostgreSQL picks.

\set ON_ERROR_STOP 1
\if :{?scale}
\else
\set scale 1
\endif
\if :{?seed}
\else
\set seed 42
\endif
\if :{?epochs}
\else
\set epochs 4
\endif

SET client_min_messages = warning;
SET work_mem = '256MB';

-- A uniform float in [0, 1) from (i, salt).
CREATE FUNCTION pg_temp.rnd(i bigint, salt bigint) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(i, salt) & 4503599627370495)::float8 / 4503599627370496.0 $$;

SELECT greatest(round(1860000 * :scale), 100)::bigint AS n_addr,
       greatest(round(3000 * :scale), 10)::bigint AS n_pool,
       round(1640000 * :scale)::bigint AS n_redeleg,
       :seed::bigint * 1000 AS s \gset

BEGIN;

-- Pools: id 1 is the largest; a pool's share falls off as id^-0.6.
INSERT INTO pool_hash (id, hash_raw, view)
SELECT p, substring(decode(md5('pool' || p || ':' || :s) || md5('pool' || p), 'hex') FROM 1 FOR 28),
       'pool1' || md5('pool' || p || ':' || :s)
  FROM generate_series(1, :n_pool + 1) AS p;

INSERT INTO stake_address (id, hash_raw, view)
SELECT a, '\xe1'::bytea || substring(decode(md5('addr' || a || ':' || :s) || md5('addr' || a), 'hex') FROM 1 FOR 28),
       'stake1u' || md5('addr' || a || ':' || :s)
  FROM generate_series(1, :n_addr) AS a;

-- Delegation events at a position in [0, 1) of the chain. Every address
-- delegates once, roughly in id order, to its home pool. Re-delegations come
-- from one address in eight, low ids far more often (the tail that
-- re-delegates hundreds of times), each after the address's first one.
CREATE TEMP TABLE ev (pos float8, addr_id bigint, pool_hash_id bigint);
INSERT INTO ev
SELECT (a - 1 + pg_temp.rnd(a, :s + 1)) / :n_addr * 0.97,
       a,
       1 + floor(:n_pool * pg_temp.rnd(a, :s + 2) ^ 2.5)::bigint
  FROM generate_series(1, :n_addr) AS a;
INSERT INTO ev
SELECT f + (1 - f) * pg_temp.rnd(j, :s + 4),
       a,
       CASE WHEN pg_temp.rnd(j, :s + 5) < 0.25
            THEN 1 + floor(:n_pool * pg_temp.rnd(a, :s + 2) ^ 2.5)::bigint
            ELSE 1 + floor(:n_pool * pg_temp.rnd(j, :s + 6) ^ 2.5)::bigint END
  FROM generate_series(1, :n_redeleg) AS j
 CROSS JOIN LATERAL (SELECT 8 * (1 + floor((:n_addr / 8 - 1) * pg_temp.rnd(j, :s + 3) ^ 1.5))::bigint AS a) AS x
 CROSS JOIN LATERAL (SELECT (x.a - 1 + pg_temp.rnd(x.a, :s + 1)) / :n_addr * 0.97 AS f) AS y;

-- Blocks of 1 to 100 certificates (most hold a few), spread over 93 M slots
-- from the start of Shelley (slot 4,492,800, epoch 208, 432,000 slots per
-- epoch) whatever the scale, one block per slot window.
SELECT count(*) AS n_ev FROM ev \gset
CREATE TEMP TABLE blk AS
SELECT k, least(100, 1 + floor(100 * pg_temp.rnd(k, :s + 7) ^ 6))::int AS size
  FROM generate_series(1, :n_ev) AS k;
CREATE TEMP TABLE cert AS
SELECT row_number() OVER (ORDER BY b.k, j) AS seq, b.k, j
  FROM (SELECT k, size, sum(size) OVER (ORDER BY k) - size AS before FROM blk) AS b
 CROSS JOIN LATERAL generate_series(0, b.size - 1) AS j
 WHERE b.before < :n_ev;
DELETE FROM cert WHERE seq > :n_ev;
SELECT 93000000 / max(k) AS spacing FROM cert \gset

INSERT INTO block (id, slot_no, block_no, epoch_no)
SELECT k, s.slot, 4490000 + k, 208 + (s.slot - 4492800) / 432000
  FROM (SELECT DISTINCT k FROM cert) AS c
 CROSS JOIN LATERAL (SELECT 4492800 + (k - 1) * :spacing + floor((:spacing - 1) * pg_temp.rnd(k, :s + 8))::bigint AS slot) AS s;

-- Two certificates per transaction: certificate j of a block is in the
-- transaction at block_index j / 2, at cert_index j % 2.
CREATE TEMP TABLE txs AS
SELECT row_number() OVER (ORDER BY k, bi) AS id, k, bi
  FROM (SELECT DISTINCT k, j / 2 AS bi FROM cert) AS t;
INSERT INTO tx (id, block_id, block_index) SELECT id, k, bi FROM txs;

INSERT INTO delegation (id, addr_id, cert_index, pool_hash_id, active_epoch_no, tx_id, slot_no, redeemer_id)
SELECT c.seq, e.addr_id, c.j % 2, e.pool_hash_id, b.epoch_no + 2, t.id, b.slot_no, NULL
  FROM (SELECT row_number() OVER (ORDER BY pos, addr_id, pool_hash_id) AS seq, addr_id, pool_hash_id FROM ev) AS e
  JOIN cert c ON c.seq = e.seq
  JOIN block b ON b.id = c.k
  JOIN txs t ON t.k = c.k AND t.bi = c.j / 2;

-- epoch_stake for the last `epochs` epochs: each address's pool as of the
-- epoch (its latest delegation active by then), for about 70 % of addresses
-- (the others hold nothing or deregistered), with a little churn per epoch.
SELECT max(epoch_no) AS last_epoch FROM block \gset
CREATE TEMP TABLE es AS
SELECT e AS epoch_no, d.addr_id, d.pool_hash_id AS pool_id
  FROM generate_series(:last_epoch - :epochs + 1, :last_epoch) AS e
 CROSS JOIN LATERAL (
        SELECT DISTINCT ON (d.addr_id) d.addr_id, d.pool_hash_id
          FROM delegation d
          JOIN tx t ON t.id = d.tx_id
         WHERE d.active_epoch_no <= e
         ORDER BY d.addr_id, d.slot_no DESC, t.block_index DESC, d.cert_index DESC) AS d
 WHERE pg_temp.rnd(d.addr_id, :s + 9) < 0.7
   AND pg_temp.rnd(d.addr_id * 1000 + e, :s + 10) < 0.98;
-- Rows no delegation explains: stake with a pool nobody delegated to.
INSERT INTO es
SELECT e, a, :n_pool + 1
  FROM generate_series(:last_epoch - :epochs + 1, :last_epoch) AS e
 CROSS JOIN generate_series(1, :n_addr) AS a
 WHERE pg_temp.rnd(a, :s + 11) < 0.001;

INSERT INTO epoch_stake (id, addr_id, pool_id, amount, epoch_no)
SELECT row_number() OVER (ORDER BY epoch_no, addr_id, pool_id), addr_id, pool_id,
       floor(1e12 * pg_temp.rnd(addr_id * 1000 + epoch_no, :s + 12))::numeric(20, 0), epoch_no
  FROM es;

COMMIT;

VACUUM ANALYZE stake_address, pool_hash, block, tx, delegation, epoch_stake;

SELECT (SELECT count(*) FROM stake_address) AS stake_addresses,
       (SELECT count(*) FROM pool_hash) AS pools,
       (SELECT count(*) FROM block) AS blocks,
       (SELECT count(*) FROM delegation) AS delegations,
       (SELECT count(*) FROM epoch_stake) AS epoch_stake_rows,
       (SELECT min(epoch_no) || '..' || max(epoch_no) FROM epoch_stake) AS epochs;
