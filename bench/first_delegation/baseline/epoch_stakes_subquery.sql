-- (a) /epochs/:number/stakes in seniority order without the cache: a
-- correlated subquery finds each stake's first delegation to its pool.
-- The reference the cache's results must equal row for row.
--   $1 epoch_no, $2 page, $3 page size
SELECT sa.view AS stake_address, ph.view AS pool_id, es.amount
  FROM epoch_stake es
  JOIN stake_address sa ON sa.id = es.addr_id
  JOIN pool_hash ph ON ph.id = es.pool_id
  LEFT JOIN LATERAL (
        SELECT d.slot_no, t.block_index, d.cert_index
          FROM delegation d
          JOIN tx t ON t.id = d.tx_id
         WHERE d.addr_id = es.addr_id AND d.pool_hash_id = es.pool_id
         ORDER BY d.slot_no, t.block_index, d.cert_index
         LIMIT 1) AS f ON true
 WHERE es.epoch_no = $1
 ORDER BY f.slot_no, f.block_index, f.cert_index, sa.hash_raw, ph.hash_raw
 LIMIT $3::integer OFFSET ($2::integer - 1) * $3::integer
