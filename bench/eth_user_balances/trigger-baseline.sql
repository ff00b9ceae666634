-- The thing rollupd replaces, for the benchmark only: a row trigger that
-- recomputes the totals of every user a changed wallet backs, inside the
-- writer's transaction (compute, then upsert, as the original triggers do).
CREATE OR REPLACE FUNCTION bench_recompute_on_wallet_balance()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO eth_user_balances AS d (user_id, balance)
    SELECT c.user_id, c.balance
      FROM rollupd.eth_user_balances_compute(ARRAY(
            SELECT u.user_id::bigint FROM users u WHERE lower(u.wallet) = lower(NEW.wallet) AND u.is_current
            UNION
            SELECT a.user_id FROM associated_wallets a
             WHERE lower(a.wallet) = lower(NEW.wallet) AND a.chain = 'eth' AND a.is_current AND NOT a.is_delete)) AS c
    ON CONFLICT (user_id) DO UPDATE SET balance = EXCLUDED.balance, updated_at = now();
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS bench_recompute ON eth_wallet_balances;
CREATE TRIGGER bench_recompute AFTER UPDATE ON eth_wallet_balances
    FOR EACH ROW EXECUTE FUNCTION bench_recompute_on_wallet_balance();
ALTER TABLE eth_wallet_balances DISABLE TRIGGER bench_recompute;
