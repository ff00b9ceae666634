/*
 * engine: the daemon's dispatch, jobs and lifecycle. It owns the listener,
 * the key sources (notify, queue, wal), the reconcile walks, the poison
 * timer and the worker pool; every event that can create work ends in one
 * dispatch that fills idle workers with due statements. It tracks readiness
 * (listening and caught up) and runs the start, reload and graceful-stop
 * sequences. Signals and process concerns are the caller's (loop.c);
 * what rollupd reports about itself is stats.c's.
 */
#ifndef ROLLUPD_ENGINE_H
#define ROLLUPD_ENGINE_H

#include <ev.h>

#include "config.h"

struct engine;

/* Takes ownership of `cfg`. `on_ready` (may be NULL) runs once, the first
 * time the engine is listening and caught up. */
struct engine *engine_new(struct ev_loop *loop, struct config *cfg, void (*on_ready)(void *arg), void *arg);
void engine_free(struct engine *e);

/* Connect and listen; -1 when it cannot start at all (engine_exit_code() says why). */
int engine_start(struct engine *e);

/* Apply a validated config (taking ownership): log level, batching, pool size,
 * timeouts, reconcile interval, rollup list; a changed conninfo reconnects. */
void engine_reload(struct engine *e, struct config *cfg);

/* Stop taking work, drain pending keys and in-flight batches within
 * daemon.shutdown_timeout_ms, then break the loop. A second call stops now. */
void engine_stop(struct engine *e);

/* What the process should exit with once the loop returns (sysexits.h). */
int engine_exit_code(const struct engine *e);

#endif
