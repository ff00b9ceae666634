-- Included by each rollup's install.sql after its catalog rows, with
-- :rollup_name set: the delivery of the rollup's channels, chosen at install
-- time (DESIGN.md, "Delivery"):
--     psql -v delivery=queue [-v queue_table=logged|unlogged] -f install.sql
-- Without -v delivery, a new install uses notify mode and a re-install keeps
-- the channels' current mode.
\if :{?delivery}
\if :{?queue_table}
\else
\set queue_table logged
\endif
\o /dev/null
SELECT rollupd.set_delivery(c.channel, :'delivery', :'queue_table')
  FROM rollupd.channel c WHERE c.rollup = :'rollup_name' ORDER BY c.channel;
\o
\endif
