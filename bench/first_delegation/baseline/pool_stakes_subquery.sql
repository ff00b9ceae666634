-- (a) /epochs/:number/stakes/:pool_id in seniority order without the cache.
--   $1 epoch_no, $2 pool view, $3 page, $4 page size
SELECT sa.view AS stake_address, es.amount
  FROM epoch_stake es
  JOIN stake_address sa ON sa.id = es.addr_id
  LEFT JOIN LATERAL (
        SELECT d.slot_no, t.block_index, d.cert_index
          FROM delegation d
          JOIN tx t ON t.id = d.tx_id
         WHERE d.addr_id = es.addr_id AND d.pool_hash_id = es.pool_id
         ORDER BY d.slot_no, t.block_index, d.cert_index
         LIMIT 1) AS f ON true
 WHERE es.epoch_no = $1
   AND es.pool_id = (SELECT ph.id FROM pool_hash ph WHERE ph.view = $2)
 ORDER BY f.slot_no, f.block_index, f.cert_index, sa.hash_raw
 LIMIT $4::integer OFFSET ($3::integer - 1) * $4::integer
