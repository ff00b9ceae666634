-- Remove everything eth_user_balances/install.sql created: triggers,
-- functions, view, derived table, indexes and catalog rows. The common
-- rollupd schema goes too once no other rollup is registered.

\set ON_ERROR_STOP 1
BEGIN;
-- Quiet: "... does not exist, skipping" from the IF [NOT] EXISTS clauses is not news.
SET LOCAL client_min_messages = warning;

DROP TRIGGER IF EXISTS rollupd_eub_insert ON eth_wallet_balances;
DROP TRIGGER IF EXISTS rollupd_eub_update ON eth_wallet_balances;
DROP TRIGGER IF EXISTS rollupd_eub_delete ON eth_wallet_balances;
DROP TRIGGER IF EXISTS rollupd_eub_insert ON associated_wallets;
DROP TRIGGER IF EXISTS rollupd_eub_update ON associated_wallets;
DROP TRIGGER IF EXISTS rollupd_eub_delete ON associated_wallets;
DROP TRIGGER IF EXISTS rollupd_eub_insert ON users;
DROP TRIGGER IF EXISTS rollupd_eub_update ON users;
DROP TRIGGER IF EXISTS rollupd_eub_delete ON users;

DROP TABLE IF EXISTS rollupd.queue_eth_user_balances_user, rollupd.queue_eth_user_balances_wallet;
DROP VIEW IF EXISTS v_user_balances;
DROP TABLE IF EXISTS eth_user_balances;
DROP INDEX IF EXISTS users_lower_wallet_idx;
DROP INDEX IF EXISTS associated_wallets_lower_wallet_idx;

DO $$
BEGIN
    IF to_regclass('rollupd.rollup') IS NOT NULL THEN
        DELETE FROM rollupd.rollup WHERE name = 'eth_user_balances';
        DELETE FROM rollupd.queue_sentinel
         WHERE channel IN ('eth_user_balances_user', 'eth_user_balances_wallet');
    END IF;
END
$$;

DROP FUNCTION IF EXISTS rollupd.eth_user_balances_on_wallet_balance();
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_on_associated_wallet();
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_on_user();
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_verify(bigint, integer);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_reconcile(bigint, integer);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_next_keys(bigint, integer);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_refresh_wallets(text[]);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_refresh(bigint[]);
DROP FUNCTION IF EXISTS rollupd.eth_user_balances_compute(bigint[]);

-- The common schema goes with the last rollup.
DO $$
BEGIN
    IF to_regclass('rollupd.rollup') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rollupd.rollup) THEN
        DROP SCHEMA rollupd CASCADE;
    END IF;
END
$$;

COMMIT;
