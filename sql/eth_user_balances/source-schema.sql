-- The Audius-shaped source tables eth_user_balances reads, as docs/design.md gives
-- them. Production databases already have these; tests and the demo create
-- them with this file. Idempotent.

DO $$
BEGIN
    CREATE TYPE wallet_chain AS ENUM ('eth', 'sol');
EXCEPTION WHEN duplicate_object THEN NULL;
END
$$;

CREATE TABLE IF NOT EXISTS users (
    user_id     integer NOT NULL,
    txhash      varchar NOT NULL DEFAULT '',
    is_current  boolean NOT NULL,
    wallet      varchar,
    handle      varchar,
    created_at  timestamp NOT NULL DEFAULT now(),
    updated_at  timestamp NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, txhash)
);

CREATE TABLE IF NOT EXISTS associated_wallets (
    id          serial PRIMARY KEY,
    user_id     integer NOT NULL,
    wallet      varchar NOT NULL,
    chain       wallet_chain NOT NULL,
    is_current  boolean NOT NULL,
    is_delete   boolean NOT NULL,
    blockhash   varchar,
    blocknumber integer,
    UNIQUE (user_id, wallet, chain)
);

CREATE TABLE IF NOT EXISTS eth_wallet_balances (
    wallet      text PRIMARY KEY,
    balance     numeric NOT NULL,
    blocknumber bigint,
    updated_at  timestamp NOT NULL DEFAULT now(),
    created_at  timestamp NOT NULL DEFAULT now()
);
