-- first_delegation: for each stake address and pool, the address's earliest
-- delegation to that pool, kept fresh by rollupd (notify mode), so that
-- epoch_stake pages can be read in seniority order through an index. Run on a
-- cardano-db-sync database (stake_address, pool_hash, block, tx, delegation,
-- epoch_stake):
--     psql -v ON_ERROR_STOP=1 -f sql/first_delegation/install.sql
-- then let rollupd build the table (its start-up reconcile does), or run
--     rollupd -c rollupd.conf --reconcile first_delegation
-- Idempotent: re-running replaces the functions and triggers in place.
-- One transaction. If delegation has no index leading with addr_id (db-sync
-- creates idx_delegation_addr_id) one is created, which locks writes to
-- delegation while it builds: create it CONCURRENTLY beforehand on a live
-- database.

\set ON_ERROR_STOP 1
BEGIN;
-- Quiet: "... does not exist, skipping" from the IF [NOT] EXISTS clauses is not news.
SET LOCAL client_min_messages = warning;

\ir ../common/rollupd.sql

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

-- The key space walked by reconcile and verify: addresses with a delegation
-- row, and addresses with derived rows (which may be leftovers), after
-- `after`, in order.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_next_keys(after bigint, max_keys integer)
RETURNS bigint[]
LANGUAGE sql STABLE
AS $$
    SELECT array_agg(k ORDER BY k)
      FROM (SELECT k
              FROM ((SELECT DISTINCT d.addr_id AS k
                       FROM delegation d
                      WHERE d.addr_id > coalesce(after, -9223372036854775808)
                      ORDER BY 1 LIMIT max_keys)
                    UNION
                    (SELECT DISTINCT f.addr_id
                       FROM first_delegation f
                      WHERE f.addr_id > coalesce(after, -9223372036854775808)
                      ORDER BY 1 LIMIT max_keys)) AS s
             ORDER BY k LIMIT max_keys) AS t
$$;

-- reconcile: repair the next chunk of addresses after `after`; one short
-- transaction per call.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_reconcile(after bigint, max_keys integer,
                                                              OUT last_key bigint, OUT fixed integer)
LANGUAGE plpgsql
AS $$
DECLARE
    ids bigint[];
BEGIN
    PERFORM rollupd.first_delegation_lock();
    -- The initial build: an empty table is filled in one set-based pass (a
    -- hash join and a sort), several times faster than chunks of index
    -- lookups. Later walks repair chunk by chunk.
    IF after IS NULL AND NOT EXISTS (SELECT 1 FROM first_delegation) THEN
        INSERT INTO first_delegation (addr_id, pool_hash_id, slot_no, block_index, cert_index, delegation_id)
        SELECT * FROM rollupd.first_delegation_source;
        GET DIAGNOSTICS fixed = ROW_COUNT;
        last_key := NULL;
        RETURN;
    END IF;
    ids := rollupd.first_delegation_next_keys(after, max_keys);
    IF ids IS NULL THEN
        last_key := NULL;
        fixed := 0;
        RETURN;
    END IF;
    last_key := ids[cardinality(ids)];
    fixed := rollupd.first_delegation_apply(ids);
END
$$;

-- verify: the same walk, read-only. Invariant: for every address, its
-- derived rows are exactly what first_delegation_compute gives.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_verify(after bigint, max_keys integer,
                                                           OUT last_key bigint, OUT mismatched bigint[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    ids bigint[] := rollupd.first_delegation_next_keys(after, max_keys);
BEGIN
    IF ids IS NULL THEN
        last_key := NULL;
        mismatched := '{}';
        RETURN;
    END IF;
    last_key := ids[cardinality(ids)];
    SELECT coalesce(array_agg(DISTINCT coalesce(c.addr_id, f.addr_id) ORDER BY coalesce(c.addr_id, f.addr_id)), '{}')
      INTO mismatched
      FROM rollupd.first_delegation_compute(ids) AS c
      FULL JOIN (SELECT * FROM first_delegation f WHERE f.addr_id = ANY (ids)) AS f
        ON f.addr_id = c.addr_id AND f.pool_hash_id = c.pool_hash_id
     WHERE (c.slot_no, c.block_index, c.cert_index, c.delegation_id)
           IS DISTINCT FROM (f.slot_no, f.block_index, f.cert_index, f.delegation_id);
END
$$;

-- Light triggers: one statement-level trigger per event, the addresses from
-- the transition tables, one notification per 7900 bytes of keys. db-sync
-- inserts delegation rows as blocks arrive and deletes a suffix of them on a
-- rollback; an UPDATE (a manual repair) is covered too.
CREATE OR REPLACE FUNCTION rollupd.first_delegation_on_delegation()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM rollupd.signal_keys('first_delegation_addr',
                                    ARRAY(SELECT DISTINCT n.addr_id::text FROM new_rows n));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM rollupd.signal_keys('first_delegation_addr',
                                    ARRAY(SELECT DISTINCT o.addr_id::text FROM old_rows o));
    ELSE
        PERFORM rollupd.signal_keys('first_delegation_addr', ARRAY(
            SELECT x.addr_id::text
              FROM old_rows o
              JOIN new_rows n ON n.id = o.id
             CROSS JOIN LATERAL (VALUES (o.addr_id), (n.addr_id)) AS x (addr_id)
             WHERE (o.addr_id, o.pool_hash_id, o.slot_no, o.tx_id, o.cert_index)
                   IS DISTINCT FROM (n.addr_id, n.pool_hash_id, n.slot_no, n.tx_id, n.cert_index)
            UNION
            SELECT o.addr_id::text FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.id)
            UNION
            SELECT n.addr_id::text FROM new_rows n WHERE NOT EXISTS (SELECT 1 FROM old_rows o WHERE o.id = n.id)));
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS rollupd_fd_insert ON delegation;
DROP TRIGGER IF EXISTS rollupd_fd_update ON delegation;
DROP TRIGGER IF EXISTS rollupd_fd_delete ON delegation;
CREATE TRIGGER rollupd_fd_insert AFTER INSERT ON delegation
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollupd.first_delegation_on_delegation();
CREATE TRIGGER rollupd_fd_update AFTER UPDATE ON delegation
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollupd.first_delegation_on_delegation();
CREATE TRIGGER rollupd_fd_delete AFTER DELETE ON delegation
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rollupd.first_delegation_on_delegation();

-- Register with rollupd: what the daemon listens on and calls.
INSERT INTO rollupd.rollup (name, key_type, reconcile_fn, verify_fn, description)
VALUES ('first_delegation', 'bigint', 'rollupd.first_delegation_reconcile', 'rollupd.first_delegation_verify',
        'earliest delegation of each stake address to each pool')
ON CONFLICT (name) DO UPDATE
    SET key_type = EXCLUDED.key_type, reconcile_fn = EXCLUDED.reconcile_fn,
        verify_fn = EXCLUDED.verify_fn, description = EXCLUDED.description;
UPDATE rollupd.rollup SET derived_table = 'first_delegation', source_tables = '{delegation,tx}' WHERE name = 'first_delegation';

INSERT INTO rollupd.channel (channel, rollup, key_type, refresh_fn)
VALUES ('first_delegation_addr', 'first_delegation', 'bigint', 'rollupd.first_delegation_refresh')
ON CONFLICT (channel) DO UPDATE
    SET rollup = EXCLUDED.rollup, key_type = EXCLUDED.key_type, refresh_fn = EXCLUDED.refresh_fn;

-- Delivery: notify, or queue with -v delivery=queue (see the included file).
\set rollup_name first_delegation
\ir ../common/delivery.sql

COMMIT;
