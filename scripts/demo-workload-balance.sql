-- pgbench: one wallet's balance changes (the common write).
\set w random(1, 15000)
UPDATE eth_wallet_balances SET balance = floor(random() * 1e22), updated_at = now()
 WHERE wallet = (SELECT wallet FROM demo_wallets WHERE id = :w);
