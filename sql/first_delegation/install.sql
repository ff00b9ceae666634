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

CREATE OR REPLACE FUNCTION rollupd.first_delegation_compute(ids bigint[])
RETURNS SETOF rollupd.first_delegation_source
LANGUAGE sql STABLE
AS $$
    SELECT * FROM rollupd.first_delegation_source s WHERE s.addr_id = ANY (ids)
$$;

-- Every write to first_delegation takes this lock first, for the rest of its
-- transaction, and computes in a later statement: a refresh that started
-- earlier has committed by then, so an older answer never overwrites a newer
-- one. Per-row locks cannot do it here (an address may have no rows yet, or
-- lose them all), and one lock per key takes a slot in the shared lock table
-- each. db-sync writes at chain pace (a block every 20 s or so), so one
-- writer at a time costs nothing; refreshes from other channels and rollups
-- do not wait for it.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_lock()
RETURNS void
LANGUAGE sql
AS $$ SELECT pg_advisory_xact_lock(hashtext('rollupd'), hashtext('first_delegation')) $$;

-- Bring the rows of the given addresses to the definition; returns the rows
-- written or deleted. The caller holds first_delegation_lock(), so no other
-- writer can insert the same pair meanwhile: a plain INSERT of the missing
-- pairs is safe, and cheaper than INSERT ... ON CONFLICT when building.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_apply(ids bigint[])
RETURNS integer
LANGUAGE sql
AS $$
    WITH c AS (
        SELECT * FROM rollupd.first_delegation_compute(ids)
    ), gone AS (
        DELETE FROM first_delegation f
         WHERE f.addr_id = ANY (ids)
           AND NOT EXISTS (SELECT 1 FROM c WHERE c.addr_id = f.addr_id AND c.pool_hash_id = f.pool_hash_id)
        RETURNING 1
    ), changed AS (
        UPDATE first_delegation f
           SET slot_no = c.slot_no, block_index = c.block_index, cert_index = c.cert_index,
               delegation_id = c.delegation_id
          FROM c
         WHERE f.addr_id = c.addr_id AND f.pool_hash_id = c.pool_hash_id
           AND (f.slot_no, f.block_index, f.cert_index, f.delegation_id)
               IS DISTINCT FROM (c.slot_no, c.block_index, c.cert_index, c.delegation_id)
        RETURNING 1
    ), added AS (
        INSERT INTO first_delegation (addr_id, pool_hash_id, slot_no, block_index, cert_index, delegation_id)
        SELECT c.* FROM c
         WHERE NOT EXISTS (SELECT 1 FROM first_delegation f
                            WHERE f.addr_id = c.addr_id AND f.pool_hash_id = c.pool_hash_id)
        RETURNING 1
    )
    SELECT ((SELECT count(*) FROM gone) + (SELECT count(*) FROM changed) + (SELECT count(*) FROM added))::integer
$$;

-- refresh(addr_ids): lock, then compute and write in a later statement.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_refresh(keys bigint[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    ids bigint[];
BEGIN
    SELECT array_agg(DISTINCT k ORDER BY k) INTO ids FROM unnest(keys) AS k WHERE k IS NOT NULL;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM rollupd.first_delegation_lock();
    RETURN rollupd.first_delegation_apply(ids);
END
$$;

-- The initial build: an empty table is filled in one set-based pass (a hash
-- join and a sort), several times faster than chunks of index lookups; the
-- first reconcile calls it. Under the lock, so a second build (another
-- rollupd) finds the table filled and does nothing.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_build()
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint := 0;
BEGIN
    PERFORM rollupd.first_delegation_lock();
    IF NOT EXISTS (SELECT 1 FROM first_delegation) THEN
        INSERT INTO first_delegation (addr_id, pool_hash_id, slot_no, block_index, cert_index, delegation_id)
        SELECT * FROM rollupd.first_delegation_source;
        GET DIAGNOSTICS n = ROW_COUNT;
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
