-- /epochs/:number/stakes in seniority order: who delegated to their pool
-- first comes first.
--   $1 epoch_no (integer), $2 page (1, 2, ...), $3 page size
-- Order: the stake's first delegation to its pool, (slot_no, block_index,
-- cert_index): chain-derived, the same on every replica, and total (each
-- first_delegation row is a different certificate). A stake with no
-- first_delegation row (no delegation explains it) comes after all the
-- others, by stake address hash, then pool hash.
--
-- `senior` walks first_delegation_seniority_idx and probes epoch_stake by its
-- unique key (either column order), stopping after the rows up to this page.
-- `unexplained` runs only when those run out (the one-time filter on
-- count(*), outside its LIMIT so that it stays above any Gather), that is on
-- the last pages. Each part is limited and ordered on
-- its own, so the result does not depend on how PostgreSQL runs the UNION ALL.
WITH senior AS (
    SELECT fd.addr_id, fd.pool_hash_id AS pool_id, es.amount, fd.slot_no, fd.block_index, fd.cert_index
      FROM first_delegation fd
     CROSS JOIN LATERAL (
            -- epoch_stake's unique key gives at most one row; the LIMIT keeps
            -- this a probe per cache row whatever the planner estimates.
            SELECT e.amount FROM epoch_stake e
             WHERE e.epoch_no = $1 AND e.addr_id = fd.addr_id AND e.pool_id = fd.pool_hash_id
             LIMIT 1) AS es
     ORDER BY fd.slot_no, fd.block_index, fd.cert_index
     LIMIT $2::integer * $3::integer
), orphan AS MATERIALIZED (
    -- The epoch's stakes no cache row explains: few, found set-based (a
    -- walk in hash order would probe the whole epoch to find them).
    SELECT es.addr_id, es.pool_id, es.amount
      FROM epoch_stake es
     WHERE es.epoch_no = $1
       AND NOT EXISTS (SELECT 1 FROM first_delegation fd
                        WHERE fd.addr_id = es.addr_id AND fd.pool_hash_id = es.pool_id)
), unexplained AS (
    SELECT o.addr_id, o.pool_id, o.amount, sa.hash_raw AS addr_hash, ph.hash_raw AS pool_hash
      FROM orphan o
      JOIN stake_address sa ON sa.id = o.addr_id
      JOIN pool_hash ph ON ph.id = o.pool_id
     ORDER BY sa.hash_raw, ph.hash_raw
     LIMIT $2::integer * $3::integer
)
SELECT sa.view AS stake_address, ph.view AS pool_id, p.amount
  FROM (SELECT 0 AS grp, s.addr_id, s.pool_id, s.amount, s.slot_no, s.block_index, s.cert_index,
               NULL::bytea AS addr_hash, NULL::bytea AS pool_hash
          FROM senior s
        UNION ALL
        SELECT 1, u.addr_id, u.pool_id, u.amount, NULL, NULL, NULL, u.addr_hash, u.pool_hash
          FROM unexplained u
         WHERE (SELECT count(*) FROM senior) < $2::integer * $3::integer
         ORDER BY 1, 5, 6, 7, 8, 9
        OFFSET ($2::integer - 1) * $3::integer LIMIT $3::integer) AS p
  JOIN stake_address sa ON sa.id = p.addr_id
  JOIN pool_hash ph ON ph.id = p.pool_id
 ORDER BY p.grp, p.slot_no, p.block_index, p.cert_index, p.addr_hash, p.pool_hash
