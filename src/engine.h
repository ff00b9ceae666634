/*
 * engine: the daemon's work scheduler. It owns the listener, the batcher, the
 * worker pool and the reconcile walks, hands due batches and reconcile chunks
 * to idle workers, tracks readiness (listening and caught up) and runs the
 * reload and graceful-stop sequences. Signals and process concerns are the
 * caller's (loop.c).
 */
#ifndef ROLLUPD_ENGINE_H
#define ROLLUPD_ENGINE_H

#include <ev.h>

#include "config.h"

struct engine;

/* Takes ownership of `cfg`. `on_ready` (may be NULL) runs once, the first time
 * the engine is listening and caught up. */
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
