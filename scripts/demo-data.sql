-- Sample Audius-shaped data for scripts/demo: 10,000 users with 18-decimal
-- wei balances, history rows, mixed-case wallets, linked wallets (some shared
-- by several users, some deleted, some on sol). Deterministic (setseed).

SELECT setseed(0.42);

-- Every wallet the demo touches, numbered so pgbench can pick one at random.
CREATE TABLE demo_wallets (id integer PRIMARY KEY, wallet text NOT NULL);
INSERT INTO demo_wallets
SELECT g, '0x' || substr(md5('wallet' || g) || md5('w' || g), 1, 40) FROM generate_series(1, 15000) g;

-- Current users; every 7th stores its wallet mixed-case, as Audius sometimes does.
INSERT INTO users (user_id, txhash, is_current, wallet, handle)
SELECT g, 'tx' || g, true,
       CASE WHEN g % 7 = 0 THEN '0x' || upper(substr(w.wallet, 3)) ELSE w.wallet END,
       'user' || g
  FROM generate_series(1, 10000) g JOIN demo_wallets w ON w.id = g;

-- History: every 5th user has an older, non-current row with another wallet.
INSERT INTO users (user_id, txhash, is_current, wallet, handle)
SELECT g, 'old' || g, false, w.wallet, 'user' || g
  FROM generate_series(5, 10000, 5) g JOIN demo_wallets w ON w.id = 10000 + (g / 5);

-- Linked eth wallets: 5,000 links to wallets 10001..15000, each to a random user,
-- and every 50th user also linked to its neighbour's primary wallet (shared wallets).
INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete, blocknumber)
SELECT 1 + floor(random() * 10000)::int, w.wallet, 'eth', true, random() < 0.1, 1
  FROM demo_wallets w WHERE w.id > 10000
ON CONFLICT DO NOTHING;
INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete, blocknumber)
SELECT g + 1, w.wallet, 'eth', true, false, 1
  FROM generate_series(50, 9950, 50) g JOIN demo_wallets w ON w.id = g
ON CONFLICT DO NOTHING;
INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete, blocknumber)
SELECT g, 'So1' || md5('sol' || g), 'sol', true, false, 1 FROM generate_series(3, 10000, 9) g;

-- Balances in wei, up to 10,000 tokens with 18 decimals.
INSERT INTO eth_wallet_balances (wallet, balance, blocknumber)
SELECT wallet, floor(random() * 1e22), 1 FROM demo_wallets;

-- The lag probe: a user of its own whose single wallet the probe rewrites.
INSERT INTO users (user_id, txhash, is_current, wallet, handle) VALUES (999999, 'probe', true, '0xprobe', 'probe');
INSERT INTO eth_wallet_balances (wallet, balance) VALUES ('0xprobe', 0);
CREATE TABLE demo_lag (sample integer, lag_ms double precision);

-- Commit a new balance, then poll the derived row until it shows it: the
-- commit-to-visible lag as a client of the API would see it.
CREATE PROCEDURE demo_probe(samples integer)
LANGUAGE plpgsql
AS $$
DECLARE
    v numeric;
    t0 timestamptz;
    seen numeric;
BEGIN
    FOR i IN 1 .. samples LOOP
        v := floor(random() * 1e22);
        UPDATE eth_wallet_balances SET balance = v WHERE wallet = '0xprobe';
        COMMIT;
        t0 := clock_timestamp();
        LOOP
            SELECT balance INTO seen FROM eth_user_balances WHERE user_id = 999999;
            EXIT WHEN seen = v OR clock_timestamp() - t0 > interval '10 seconds';
            PERFORM pg_sleep(0.001);
        END LOOP;
        INSERT INTO demo_lag VALUES (i, 1000 * extract(epoch FROM clock_timestamp() - t0));
        COMMIT;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
