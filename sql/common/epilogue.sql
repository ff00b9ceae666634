-- Included last by each rollup's install.sql, after its catalog rows, with
-- :rollup_name set: the delivery of the rollup's channels, the light
-- triggers made from its capture declarations, and the commit.
--
-- The delivery is chosen at install time (docs/design.md, "Delivery"):
--     psql -v delivery=notify|queue|wal [-v queue_table=logged|unlogged] -f install.sql
-- (wal: the server needs wal_level = logical; the install creates or
-- extends publication rollupd, which needs the tables' owner.)
-- Without -v delivery, a new install uses notify mode and a re-install keeps
-- the channels' current mode.

\if :{?delivery}
\if :{?queue_table}
\else
\set queue_table logged
\endif
SELECT rollupd.set_delivery(c.channel, :'delivery', :'queue_table')
  FROM rollupd.channel c WHERE c.rollup = :'rollup_name' ORDER BY c.channel;
\endif
-- The light triggers follow the capture rows (and each channel's delivery),
-- on every table that has some or had some.
SELECT rollupd.capture_sync(t.source_table)
  FROM (SELECT k.source_table::regclass::text AS source_table FROM rollupd.capture k
        UNION
        SELECT g.tgrelid::regclass::text FROM pg_trigger g WHERE g.tgname LIKE 'rollupd\_capture\_%') t;
-- The WAL mode's publication follows the WAL-mode capture rows.
SELECT rollupd.wal_publication_sync();
\o

COMMIT;
