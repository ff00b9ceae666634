-- Remove everything eth_user_balances/install.sql created: the catalog rows,
-- queue partitions and light triggers (sql/common/uninstall-prologue.sql),
-- then its functions, view, derived table and indexes. The common rollupd
-- schema goes too once no other rollup is registered.

\set rollup_name eth_user_balances
\ir ../common/uninstall-prologue.sql

DROP VIEW IF EXISTS v_user_balances;
DROP TABLE IF EXISTS eth_user_balances;
DROP INDEX IF EXISTS users_lower_wallet_hash_idx;
DROP INDEX IF EXISTS associated_wallets_lower_wallet_hash_idx;
DROP INDEX IF EXISTS users_lower_wallet_idx;                -- schema 2's btree indexes
DROP INDEX IF EXISTS associated_wallets_lower_wallet_idx;
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_build();
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_refresh_wallets(text[]);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_refresh(bigint[]);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_write(bigint[], numeric[], bigint[]);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_compute(bigint[]);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_of(bigint);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_wallets(bigint[]);

\ir ../common/uninstall-epilogue.sql
