/*
 * oneshot: the command-line tools that run once and exit: --list,
 * --status, --verify, --reconcile, --drop-slot. Blocking libpq, one short transaction per chunk, output on
 * stdout for people and scripts. Not used by the daemon's event loop.
 */
#ifndef ROLLUPD_ONESHOT_H
#define ROLLUPD_ONESHOT_H

#include <stdbool.h>

#include "config.h"

/* Exit codes: 0 done (verify: no mismatch), 1 verify found mismatches,
 * 69 database unavailable, 70 a catalog or SQL function error. */
int oneshot_list(const struct config *cfg);
int oneshot_verify(const struct config *cfg, const char *rollup);
int oneshot_reconcile(const struct config *cfg, const char *rollup);
/* Drop wal.slot (so an abandoned installation does not keep WAL for ever)
 * and, when no channel uses the WAL mode, publication rollupd. */
int oneshot_drop_slot(const struct config *cfg);
/* What rollupd is doing, read from the database only: per channel the
 * delivery, queue depth and oldest key, poison keys and their last error,
 * the last finished walk; the rollupd sessions (active, standby); the WAL
 * slot. A table, or JSON. 0 when all is well, 1 when something needs
 * attention (poison keys, no active rollupd, a queued key older than
 * STATUS_QUEUE_AGE_S, a WAL slot missing or lost). */
#define STATUS_QUEUE_AGE_S 60
int oneshot_status(const struct config *cfg, bool json);

#endif
