-- (b) /epochs/:number/stakes/:pool_id in stake address hash order.
--   $1 epoch_no, $2 pool view, $3 page, $4 page size
SELECT sa.view AS stake_address, es.amount
  FROM epoch_stake es
  JOIN stake_address sa ON sa.id = es.addr_id
 WHERE es.epoch_no = $1
   AND es.pool_id = (SELECT ph.id FROM pool_hash ph WHERE ph.view = $2)
 ORDER BY sa.hash_raw
 LIMIT $4::integer OFFSET ($3::integer - 1) * $4::integer
