-- A wallet is linked to a user, or unlinked, racing with its balance changes.
\set u random(1, 50)
\set w random(1, 60)
INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)
VALUES (:u, '0xh' || :w, 'eth', true, false)
ON CONFLICT (user_id, wallet, chain) DO UPDATE SET is_delete = NOT associated_wallets.is_delete;
