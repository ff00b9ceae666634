-- pgbench: a linked wallet is unlinked or linked again.
\set a random(1, 5000)
UPDATE associated_wallets SET is_delete = NOT is_delete WHERE id = :a;
