/*
 * pool: the worker connections that run refresh and reconcile statements.
 * It owns the connections and knows which are free; what runs on them is the
 * engine's. Resizing on reload retires busy workers only after their job.
 */
#ifndef ROLLUPD_POOL_H
#define ROLLUPD_POOL_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "pgconn.h"

struct pool;

/* A worker. Read-only outside pool.c. */
struct pool_worker {
	struct pgconn *conn;
	struct pool *pool;
	void *job;     /* the engine's job in flight, NULL when free */
	bool retiring; /* freed once its job completes */
	unsigned id;
};

struct pool_handler {
	/* A worker's session is up and it has no job: give it one. */
	void (*on_ready)(struct pool_worker *w, void *arg);
	/* A worker's session failed or was lost (its job, if any, already failed). */
	void (*on_down)(struct pool_worker *w, const char *reason, bool was_up, void *arg);
	void *arg;
};

struct pool *pool_new(struct ev_loop *loop, const struct pgconn_settings *settings, size_t size,
                      const struct pool_handler *handler);
void pool_free(struct pool *p);

void pool_start(struct pool *p);
void pool_stop(struct pool *p);
void pool_resize(struct pool *p, size_t size);
void pool_update(struct pool *p, const struct pgconn_settings *settings);

/* A connected worker with no job, or NULL. */
struct pool_worker *pool_idle(struct pool *p);
/* The worker runs `job` (the caller's) until pool_release(). */
void pool_assign(struct pool *p, struct pool_worker *w, void *job);
/* The worker's job is over: clear it, and free the worker if it was retiring. */
void pool_release(struct pool *p, struct pool_worker *w);

size_t pool_size(const struct pool *p);
size_t pool_busy(const struct pool *p);
size_t pool_connected(const struct pool *p);
struct pool_worker *pool_worker(struct pool *p, size_t i);

#endif
