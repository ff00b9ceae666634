-- /epochs/:number/stakes/:pool_id in seniority order: who delegated to this
-- pool first comes first.
--   $1 epoch_no (integer), $2 pool view ('pool1...'), $3 page (1, 2, ...),
--   $4 page size
-- Order: the stake's first delegation to this pool, (slot_no, block_index,
-- cert_index): chain-derived, the same on every replica, and total. A stake
-- with no first_delegation row comes after all the others, by stake address
-- hash.
--
-- `senior` walks first_delegation_pool_seniority_idx for the pool and probes
-- epoch_stake by its unique key (either column order), stopping after the
-- rows up to this page. `unexplained` runs only when those run out (the
-- one-time filter on count(*), outside its LIMIT so that it stays above any
-- Gather), that is on the last pages. Each part is
-- limited and ordered on its own, so the result does not depend on how
-- PostgreSQL runs the UNION ALL.
WITH pool AS (
    SELECT ph.id FROM pool_hash ph WHERE ph.view = $2
), senior AS (
    SELECT fd.addr_id, es.amount, fd.slot_no, fd.block_index, fd.cert_index
      FROM first_delegation fd
     CROSS JOIN LATERAL (
            -- epoch_stake's unique key gives at most one row; the LIMIT keeps
            -- this a probe per cache row whatever the planner estimates.
            SELECT e.amount FROM epoch_stake e
             WHERE e.epoch_no = $1 AND e.addr_id = fd.addr_id AND e.pool_id = fd.pool_hash_id
             LIMIT 1) AS es
     WHERE fd.pool_hash_id = (SELECT id FROM pool)
     ORDER BY fd.slot_no, fd.block_index, fd.cert_index
     LIMIT $3::integer * $4::integer
), orphan AS MATERIALIZED (
    -- The pool's stakes no cache row explains: few, found set-based.
    SELECT es.addr_id, es.amount
      FROM epoch_stake es
     WHERE es.epoch_no = $1
       AND es.pool_id = (SELECT id FROM pool)
       AND NOT EXISTS (SELECT 1 FROM first_delegation fd
                        WHERE fd.addr_id = es.addr_id AND fd.pool_hash_id = es.pool_id)
), unexplained AS (
    SELECT o.addr_id, o.amount, sa.hash_raw AS addr_hash
      FROM orphan o
      JOIN stake_address sa ON sa.id = o.addr_id
     ORDER BY sa.hash_raw
     LIMIT $3::integer * $4::integer
)
SELECT sa.view AS stake_address, p.amount
  FROM (SELECT 0 AS grp, s.addr_id, s.amount, s.slot_no, s.block_index, s.cert_index, NULL::bytea AS addr_hash
          FROM senior s
        UNION ALL
        SELECT 1, u.addr_id, u.amount, NULL, NULL, NULL, u.addr_hash
          FROM unexplained u
         WHERE (SELECT count(*) FROM senior) < $3::integer * $4::integer
         ORDER BY 1, 4, 5, 6, 7
        OFFSET ($3::integer - 1) * $4::integer LIMIT $4::integer) AS p
  JOIN stake_address sa ON sa.id = p.addr_id
 ORDER BY p.grp, p.slot_no, p.block_index, p.cert_index, p.addr_hash
