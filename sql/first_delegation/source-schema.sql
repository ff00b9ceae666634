-- The cardano-db-sync-shaped source tables first_delegation reads, as
-- docs/design.md gives them, with db-sync's own indexes. Production databases
-- already have these; tests, the demo and the benchmark create them with this
-- file. Idempotent. No foreign keys: db-sync has none.
--
-- epoch_stake's unique key comes in two column orders: older db-sync
-- databases have (epoch_no, addr_id, pool_id), newer ones (addr_id, pool_id,
-- epoch_no). This file creates the older one unless psql is given
--     -v epoch_stake_key=new

CREATE TABLE IF NOT EXISTS stake_address (
    id       bigint PRIMARY KEY,
    hash_raw bytea NOT NULL,
    view     varchar NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS unique_stake_address ON stake_address (hash_raw);

CREATE TABLE IF NOT EXISTS pool_hash (
    id       bigint PRIMARY KEY,
    hash_raw bytea NOT NULL,
    view     varchar NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS unique_pool_hash ON pool_hash (hash_raw);

CREATE TABLE IF NOT EXISTS block (
    id       bigint PRIMARY KEY,
    slot_no  bigint,
    block_no integer,
    epoch_no integer
);
CREATE INDEX IF NOT EXISTS idx_block_slot_no ON block (slot_no);

CREATE TABLE IF NOT EXISTS tx (
    id          bigint PRIMARY KEY,
    block_id    bigint NOT NULL,
    block_index integer NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_tx_block_id ON tx (block_id);

CREATE TABLE IF NOT EXISTS delegation (
    id              bigint PRIMARY KEY,
    addr_id         bigint NOT NULL,
    cert_index      integer NOT NULL,
    pool_hash_id    bigint NOT NULL,
    active_epoch_no bigint NOT NULL,
    tx_id           bigint NOT NULL,
    slot_no         bigint NOT NULL,
    redeemer_id     bigint
);
CREATE INDEX IF NOT EXISTS idx_delegation_addr_id ON delegation (addr_id);
CREATE INDEX IF NOT EXISTS idx_delegation_pool_hash_id ON delegation (pool_hash_id);
CREATE INDEX IF NOT EXISTS idx_delegation_tx_id ON delegation (tx_id);
CREATE INDEX IF NOT EXISTS idx_delegation_active_epoch_no ON delegation (active_epoch_no);

CREATE TABLE IF NOT EXISTS epoch_stake (
    id       bigint PRIMARY KEY,
    addr_id  bigint NOT NULL,
    pool_id  bigint NOT NULL,
    amount   numeric(20, 0) NOT NULL,
    epoch_no integer NOT NULL
);
\if :{?epoch_stake_key}
\else
\set epoch_stake_key old
\endif
SELECT :'epoch_stake_key' = 'new' AS epoch_stake_key_new \gset
\if :epoch_stake_key_new
CREATE UNIQUE INDEX IF NOT EXISTS unique_epoch_stake ON epoch_stake (addr_id, pool_id, epoch_no);
\else
CREATE UNIQUE INDEX IF NOT EXISTS unique_epoch_stake ON epoch_stake (epoch_no, addr_id, pool_id);
\endif
CREATE INDEX IF NOT EXISTS idx_epoch_stake_addr_id ON epoch_stake (addr_id);
CREATE INDEX IF NOT EXISTS idx_epoch_stake_pool_id ON epoch_stake (pool_id);
CREATE INDEX IF NOT EXISTS idx_epoch_stake_epoch_no ON epoch_stake (epoch_no);
