-- A wallet's balance changes (hot: 60 wallets).
\set w random(1, 60)
UPDATE eth_wallet_balances SET balance = balance + 1 WHERE wallet = '0xh' || :w;
