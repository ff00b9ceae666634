/*
 * pool: an array of separately allocated workers (pointers stay valid while
 * the array changes), each wrapping one pgconn.
 */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* How workers show in pg_stat_activity. */
#define WORKER_APPLICATION_NAME "rollupd worker"

struct pool {
	struct ev_loop *loop;
	struct pgconn_settings settings; /* strings borrowed from the engine's config */
	struct pool_handler handler;
	struct pool_worker **workers;
	size_t n;
	unsigned next_id;
	bool started;
	int iterating; /* > 0 while looping over workers: removals wait for sweep() */
};

static void worker_on_up(struct pgconn *c, void *arg)
{
	struct pool_worker *w = arg;
	(void)c;
	if (!w->retiring && w->job == NULL && w->pool->handler.on_ready)
		w->pool->handler.on_ready(w, w->pool->handler.arg);
}

static void worker_on_down(struct pgconn *c, const char *reason, bool was_up, void *arg)
{
	struct pool_worker *w = arg;
	(void)c;
	if (w->pool->handler.on_down)
		w->pool->handler.on_down(w, reason, was_up, w->pool->handler.arg);
}

static struct pool_worker *worker_new(struct pool *p)
{
	struct pool_worker *w = xcalloc(1, sizeof(*w));
	char name[32];
	struct pgconn_handler h = {.on_up = worker_on_up, .on_down = worker_on_down, .arg = w};

	w->pool = p;
	w->id = ++p->next_id;
	snprintf(name, sizeof(name), "worker-%u", w->id);
	struct pgconn_settings s = p->settings;
	s.application_name = WORKER_APPLICATION_NAME;
	w->conn = pgconn_new(p->loop, name, &s, &h);
	return w;
}

static void worker_free(struct pool_worker *w)
{
	pgconn_free(w->conn);
	free(w);
}

struct pool *pool_new(struct ev_loop *loop, const struct pgconn_settings *settings, size_t size,
                      const struct pool_handler *handler)
{
	struct pool *p = xcalloc(1, sizeof(*p));
	p->loop = loop;
	p->settings = *settings;
	p->handler = *handler;
	pool_resize(p, size);
	return p;
}

void pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++)
		worker_free(p->workers[i]);
	free(p->workers);
	free(p);
}

static void remove_at(struct pool *p, size_t i);

/* Stopping or updating a connection runs its job's callback, which may
 * release (and so remove) a retiring worker: never under a loop's feet. */
static void sweep(struct pool *p)
{
	for (size_t i = p->n; i > 0; i--)
		if (p->workers[i - 1]->retiring && p->workers[i - 1]->job == NULL)
			remove_at(p, i - 1);
}

void pool_start(struct pool *p)
{
	p->started = true;
	for (size_t i = 0; i < p->n; i++)
		pgconn_start(p->workers[i]->conn);
}

void pool_stop(struct pool *p)
{
	p->started = false;
	p->iterating++;
	for (size_t i = 0; i < p->n; i++)
		pgconn_stop(p->workers[i]->conn);
	p->iterating--;
	sweep(p);
}

static void remove_at(struct pool *p, size_t i)
{
	struct pool_worker *w = p->workers[i];
	memmove(&p->workers[i], &p->workers[i + 1], (p->n - i - 1) * sizeof(struct pool_worker *));
	p->n--;
	worker_free(w);
}

void pool_resize(struct pool *p, size_t size)
{
	size_t active = 0;
	for (size_t i = 0; i < p->n; i++)
		if (!p->workers[i]->retiring)
			active++;

	while (active < size) {
		p->workers = xrealloc(p->workers, (p->n + 1) * sizeof(struct pool_worker *));
		struct pool_worker *w = worker_new(p);
		p->workers[p->n++] = w;
		active++;
		if (p->started)
			pgconn_start(w->conn);
	}
	/* Shrink from the end: free workers go now, busy ones after their job. */
	for (size_t i = p->n; i > 0 && active > size; i--) {
		struct pool_worker *w = p->workers[i - 1];
		if (w->retiring)
			continue;
		active--;
		if (w->job == NULL)
			remove_at(p, i - 1);
		else
			w->retiring = true;
	}
}

void pool_update(struct pool *p, const struct pgconn_settings *settings)
{
	p->settings = *settings;
	p->iterating++;
	for (size_t i = 0; i < p->n; i++) {
		struct pgconn_settings s = *settings;
		s.application_name = WORKER_APPLICATION_NAME;
		pgconn_update(p->workers[i]->conn, &s);
	}
	p->iterating--;
	sweep(p);
}

struct pool_worker *pool_idle(struct pool *p)
{
	for (size_t i = 0; i < p->n; i++) {
		struct pool_worker *w = p->workers[i];
		if (!w->retiring && w->job == NULL && pgconn_state(w->conn) == PGCONN_IDLE)
			return w;
	}
	return NULL;
}

void pool_assign(struct pool *p, struct pool_worker *w, void *job)
{
	(void)p;
	w->job = job;
}

void pool_release(struct pool *p, struct pool_worker *w)
{
	w->job = NULL;
	if (!w->retiring || p->iterating > 0)
		return;
	for (size_t i = 0; i < p->n; i++) {
		if (p->workers[i] == w) {
			remove_at(p, i);
			return;
		}
	}
}

size_t pool_size(const struct pool *p)
{
	return p->n;
}

size_t pool_busy(const struct pool *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n; i++)
		if (p->workers[i]->job != NULL)
			n++;
	return n;
}

size_t pool_connected(const struct pool *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n; i++) {
		enum pgconn_state s = pgconn_state(p->workers[i]->conn);
		if (s == PGCONN_IDLE || s == PGCONN_BUSY)
			n++;
	}
	return n;
}

struct pool_worker *pool_worker(struct pool *p, size_t i)
{
	return i < p->n ? p->workers[i] : NULL;
}
