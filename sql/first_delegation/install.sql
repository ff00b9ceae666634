-- first_delegation: for each stake address and pool, the address's earliest
-- delegation to that pool, kept fresh by rollupd, so that epoch_stake pages
-- can be read in seniority order through an index. Run on a cardano-db-sync
-- database (stake_address, pool_hash, block, tx, delegation, epoch_stake), as
-- the owner of its tables:
--     psql -d DB -v ON_ERROR_STOP=1 -f sql/first_delegation/install.sql
--     (-v delivery=notify|queue|wal: see sql/common/epilogue.sql)
-- then let rollupd build the table (its start-up reconcile does in notify
-- mode), or run
--     rollupd -c rollupd.conf --reconcile first_delegation
-- Idempotent: re-running replaces the functions and triggers in place.
-- One transaction. If delegation has no index leading with addr_id (db-sync
-- creates idx_delegation_addr_id) one is created, which locks writes to
-- delegation while it builds: create it CONCURRENTLY beforehand on a live
-- database.

\set rollup_name first_delegation
\ir ../common/prologue.sql

-- The derived table. Seniority order is (slot_no, block_index, cert_index):
-- chain-derived, the same on every replica (delegation and tx ids are not).
CREATE TABLE IF NOT EXISTS first_delegation (
    addr_id       bigint NOT NULL,
    pool_hash_id  bigint NOT NULL,
    slot_no       bigint NOT NULL,
    block_index   integer NOT NULL,
    cert_index    integer NOT NULL,
    delegation_id bigint NOT NULL,
    PRIMARY KEY (addr_id, pool_hash_id)
);
-- Seniority overall and per pool. The included columns let a page walk the
-- index alone and probe epoch_stake by its unique key.
CREATE INDEX IF NOT EXISTS first_delegation_seniority_idx
    ON first_delegation (slot_no, block_index, cert_index) INCLUDE (addr_id, pool_hash_id);
CREATE INDEX IF NOT EXISTS first_delegation_pool_seniority_idx
    ON first_delegation (pool_hash_id, slot_no, block_index, cert_index) INCLUDE (addr_id);

-- Refresh and reconcile read delegation by addr_id.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1
                     FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = 'delegation'::regclass AND a.attname = 'addr_id') THEN
        CREATE INDEX first_delegation_delegation_addr_id_idx ON delegation (addr_id);
    END IF;
END
$$;

-- The definition, in one place: for each (addr_id, pool_hash_id) that has a
-- delegation row, the row that comes first in chain order. A delegation whose
-- tx row is gone is not on the chain (a rollback in progress) and does not
-- count. A filter on addr_id reaches the scan of delegation (it is a
-- DISTINCT ON column), so compute() below reads only its addresses.
CREATE OR REPLACE VIEW rollupd.first_delegation_source AS
SELECT DISTINCT ON (d.addr_id, d.pool_hash_id)
       d.addr_id, d.pool_hash_id, d.slot_no, t.block_index, d.cert_index, d.id AS delegation_id
  FROM delegation d
  JOIN tx t ON t.id = d.tx_id
 ORDER BY d.addr_id, d.pool_hash_id, d.slot_no, t.block_index, d.cert_index, d.id;

-- The definition for the given addresses, address by address, in address
-- order: the view above with its addr_id filter pushed down to the scan of
-- delegation (an index probe by address, then tx by its primary key per
-- certificate). The LATERAL with OFFSET 0 keeps the planner from flattening
-- it into one join with `addr_id = ANY (ids)`, whose plan followed the
-- estimate of how many rows the ids select: a custom plan for 1,000 ids
-- already joined tx by a hash join over a sequential scan of the whole table
-- (1.8 M rows here, about 100 M on mainnet). So the cost per address does not
-- depend on how many addresses a call brings; sorted, consecutive addresses
-- read neighbouring index pages.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_compute(ids bigint[])
RETURNS SETOF rollupd.first_delegation_source
LANGUAGE sql STABLE
AS $$
    SELECT s.*
      FROM (SELECT DISTINCT id FROM unnest(ids) AS id ORDER BY id) AS k
     CROSS JOIN LATERAL (SELECT * FROM rollupd.first_delegation_source s WHERE s.addr_id = k.id OFFSET 0) AS s
$$;

-- The refresh's locks: one row per address (built or refreshed). Every
-- refresh locks its addresses' rows here first, in address order, for the
-- rest of its transaction, and computes in a later statement: a refresh of
-- the same address that started earlier has committed by then, so an older
-- answer never overwrites a newer one. The derived rows cannot serve (an
-- address may have none yet, or lose them all); an advisory lock per key
-- takes a slot of the shared lock table each (20,000 keys ran out of shared
-- memory), and one advisory lock for the rollup ran one refresh at a time,
-- one core's worth. Row locks cost no shared memory, and refreshes of other
-- addresses go on at once. The initial build adds every address's row;
-- 104 MB with its index for 1.86 M addresses.
CREATE TABLE IF NOT EXISTS rollupd.first_delegation_key (
    addr_id bigint PRIMARY KEY
);
DROP FUNCTION IF EXISTS rollupd.first_delegation_lock();
-- Whoever may update first_delegation may lock its keys: a role set up by
-- sql/roles.sql before this table existed goes on refreshing between an
-- upgrade's install.sql and the roles.sql run after it.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee::regrole::text AS role
               FROM pg_class c, aclexplode(c.relacl) AS a
              WHERE c.oid = 'first_delegation'::regclass AND a.privilege_type = 'UPDATE'
                AND a.grantee <> 0 AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON TABLE rollupd.first_delegation_key TO %s', g.role);
    END LOOP;
END
$$;

-- Lock the given addresses (see above): a shared hold on the rollup's
-- advisory lock, which only the initial build takes exclusively, then each
-- address's key row, inserted if it is new, in address order (two refreshes
-- wait for each other in that order and never deadlock). ON CONFLICT DO
-- UPDATE ... WHERE false locks an existing row and writes no new version of
-- it; a row another refresh is inserting is waited for, then locked. One
-- index probe and one tuple lock an address.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_lock(ids bigint[])
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('rollupd'), hashtext('first_delegation'));
    INSERT INTO rollupd.first_delegation_key AS k (addr_id)
    SELECT DISTINCT id FROM unnest(ids) AS id WHERE id IS NOT NULL ORDER BY id
        ON CONFLICT (addr_id) DO UPDATE SET addr_id = excluded.addr_id WHERE false;
END
$$;

-- Bring the rows of the given addresses to the definition; returns the rows
-- written or deleted. The caller holds first_delegation_lock(ids), so no
-- other writer touches these rows meanwhile: a plain INSERT of the missing
-- pairs is safe. Address by address, in address order (a LATERAL fenced with OFFSET
-- 0, as in compute above), the computed rows are matched with the derived
-- ones, read once by the primary key's addr_id prefix, and only the pairs
-- that differ are written: a row whose pair is gone is deleted by its ctid
-- (stable: no other writer, and this statement moves no other row), a new
-- pair is inserted, a changed one updated through ON CONFLICT on the primary
-- key (a probe per row, whatever their number). An address whose rows are
-- right costs its reads and no write; the earlier form probed the primary
-- key twice more per pair (one UPDATE ... FROM, one NOT EXISTS). PL/pgSQL
-- with generic plans, so that the session plans it once: as a LANGUAGE sql
-- function with data-modifying CTEs it was parsed and planned at every call
-- (0.6 ms of CPU for a one-address refresh, 0.14 ms now). No plan here
-- depends on the number of addresses. The initial build does not come here.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_apply(ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n integer;
BEGIN
    WITH d AS MATERIALIZED (
        SELECT k.id AS addr_id, x.*
          FROM (SELECT DISTINCT id FROM unnest(ids) AS id ORDER BY id) AS k
         CROSS JOIN LATERAL (
               SELECT coalesce(c.pool_hash_id, f.pool_hash_id) AS pool_hash_id,
                      c.slot_no, c.block_index, c.cert_index, c.delegation_id, f.ctid AS row_ctid
                 FROM (SELECT * FROM rollupd.first_delegation_source s WHERE s.addr_id = k.id OFFSET 0) AS c
                 FULL JOIN (SELECT f.ctid, f.* FROM first_delegation f WHERE f.addr_id = k.id OFFSET 0) AS f
                   ON f.pool_hash_id = c.pool_hash_id
                WHERE (c.slot_no, c.block_index, c.cert_index, c.delegation_id)
                      IS DISTINCT FROM (f.slot_no, f.block_index, f.cert_index, f.delegation_id)
               OFFSET 0) AS x
    ), gone AS (
        DELETE FROM first_delegation f
         WHERE f.ctid = ANY (ARRAY(SELECT d.row_ctid FROM d WHERE d.slot_no IS NULL))
        RETURNING 1
    ), added AS (
        INSERT INTO first_delegation (addr_id, pool_hash_id, slot_no, block_index, cert_index, delegation_id)
        SELECT d.addr_id, d.pool_hash_id, d.slot_no, d.block_index, d.cert_index, d.delegation_id
          FROM d WHERE d.slot_no IS NOT NULL AND d.row_ctid IS NULL
        RETURNING 1
    ), changed AS (
        INSERT INTO first_delegation AS f (addr_id, pool_hash_id, slot_no, block_index, cert_index, delegation_id)
        SELECT d.addr_id, d.pool_hash_id, d.slot_no, d.block_index, d.cert_index, d.delegation_id
          FROM d WHERE d.slot_no IS NOT NULL AND d.row_ctid IS NOT NULL
        ON CONFLICT (addr_id, pool_hash_id) DO UPDATE
           SET slot_no = excluded.slot_no, block_index = excluded.block_index, cert_index = excluded.cert_index,
               delegation_id = excluded.delegation_id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM added) + (SELECT count(*) FROM changed) INTO n;
    RETURN n;
END
$$;

-- refresh(addr_ids): lock, then compute and write in a later statement.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_refresh(keys bigint[])
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    ids bigint[];
BEGIN
    SELECT array_agg(DISTINCT k ORDER BY k) INTO ids FROM unnest(keys) AS k WHERE k IS NOT NULL;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM rollupd.first_delegation_lock(ids);
    RETURN rollupd.first_delegation_apply(ids);
END
$$;

-- The initial build: an empty table is filled in one set-based pass (a hash
-- join and a sort), several times faster than chunks of index lookups; the
-- first reconcile calls it. It adds every address's key row (see
-- first_delegation_key) too. It holds the rollup's advisory lock
-- exclusively: no refresh runs meanwhile, and a second build (another
-- rollupd) finds the table filled and does nothing.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_build()
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('rollupd'), hashtext('first_delegation'));
    IF NOT EXISTS (SELECT 1 FROM first_delegation) THEN
        INSERT INTO first_delegation (addr_id, pool_hash_id, slot_no, block_index, cert_index, delegation_id)
        SELECT * FROM rollupd.first_delegation_source;
        GET DIAGNOSTICS n = ROW_COUNT;
        -- Every address's key row, in one sorted pass: a later refresh locks
        -- it rather than inserting it.
        INSERT INTO rollupd.first_delegation_key (addr_id)
        SELECT DISTINCT f.addr_id FROM first_delegation f ORDER BY 1
            ON CONFLICT (addr_id) DO NOTHING;
    END IF;
    RETURN n;
END
$$;

-- Register with rollupd: the rollup, its channel, and what changes give its
-- keys: db-sync inserts delegation rows as blocks arrive and deletes a
-- suffix of them on a rollback; an UPDATE (a manual repair) is covered too.
SELECT rollupd.register_rollup(
    'first_delegation', 'bigint', 'first_delegation',
    '{addr_id,pool_hash_id,slot_no,block_index,cert_index,delegation_id}',
    'rollupd.first_delegation_compute', 'rollupd.first_delegation_refresh',
    'SELECT DISTINCT d.addr_id FROM delegation d',
    '{delegation,tx}',
    p_build_fn => 'rollupd.first_delegation_build',
    p_description => 'earliest delegation of each stake address to each pool');
SELECT rollupd.register_channel('first_delegation_addr', 'first_delegation', 'bigint',
                                'rollupd.first_delegation_refresh');
-- In WAL mode delegation gets REPLICA IDENTITY FULL
-- (rollupd.wal_publication_sync): a rollback deletes delegation rows, and the
-- delete must say their addr_id, which the primary key (id) does not hold.
-- db-sync only inserts and, on a rollback, deletes: FULL costs nothing on
-- inserts and one old row per rolled-back certificate.
SELECT rollupd.register_capture('first_delegation_addr', 'delegation', 'addr_id',
                                '{addr_id,pool_hash_id,slot_no,tx_id,cert_index}');

\ir ../common/epilogue.sql
