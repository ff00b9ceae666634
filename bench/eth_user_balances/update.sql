-- pgbench: one wallet's balance changes (the common write).
\set w random(1, :nwallets)
UPDATE eth_wallet_balances SET balance = balance + 1000000000000000000, updated_at = now()
 WHERE wallet = (SELECT lower(wallet) FROM bench_wallets WHERE id = :w);
