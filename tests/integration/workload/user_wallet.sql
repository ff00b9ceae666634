-- A user's own wallet changes (the case the trigger-maintained original misses).
\set u random(1, 50)
\set w random(1, 60)
UPDATE users SET wallet = '0xH' || :w WHERE user_id = :u AND is_current;
