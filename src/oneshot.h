/*
 * oneshot: the command-line tools that run once and exit: --list, --verify,
 * --reconcile, --drop-slot. Blocking libpq, one short transaction per chunk, output on
 * stdout for people and scripts. Not used by the daemon's event loop.
 */
#ifndef ROLLUPD_ONESHOT_H
#define ROLLUPD_ONESHOT_H

#include "config.h"

/* Exit codes: 0 done (verify: no mismatch), 1 verify found mismatches,
 * 69 database unavailable, 70 a catalog or SQL function error. */
int oneshot_list(const struct config *cfg);
int oneshot_verify(const struct config *cfg, const char *rollup);
int oneshot_reconcile(const struct config *cfg, const char *rollup);
/* Drop wal.slot (so an abandoned installation does not keep WAL for ever)
 * and, when no channel uses the WAL mode, publication rollupd. */
int oneshot_drop_slot(const struct config *cfg);

#endif
