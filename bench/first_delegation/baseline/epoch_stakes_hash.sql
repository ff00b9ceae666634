-- (b) /epochs/:number/stakes in an arbitrary but stable order (stake address
-- hash): what the API served once seniority became too slow.
--   $1 epoch_no, $2 page, $3 page size
SELECT sa.view AS stake_address, ph.view AS pool_id, es.amount
  FROM epoch_stake es
  JOIN stake_address sa ON sa.id = es.addr_id
  JOIN pool_hash ph ON ph.id = es.pool_id
 WHERE es.epoch_no = $1
 ORDER BY sa.hash_raw, ph.hash_raw
 LIMIT $3::integer OFFSET ($2::integer - 1) * $3::integer
