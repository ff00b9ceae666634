-- A stake address delegates to a pool: a new block, its transaction and the
-- certificate (200 addresses, 20 pools; ids from the fault_ids sequence).
\set a random(1, 200)
\set p random(1, 20)
SELECT nextval('fault_ids') AS id \gset
BEGIN;
INSERT INTO block (id, slot_no, block_no, epoch_no) VALUES (:id, :id, :id, 300);
INSERT INTO tx (id, block_id, block_index) VALUES (:id, :id, 0);
INSERT INTO delegation (id, addr_id, cert_index, pool_hash_id, active_epoch_no, tx_id, slot_no)
VALUES (:id, :a, 0, :p, 302, :id, :id);
COMMIT;
