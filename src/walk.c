/*
 * walk: an array of walks rebuilt with the catalog; chunks are found by
 * rollup name at completion, since a reload may have rebuilt the array.
 */
#include "walk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"
#include "xalloc.h"

struct walk {
	char *rollup;
	char *sql;
	char *after; /* last key done; NULL walks from the start */
	bool active;
	bool in_flight;
	bool restart;  /* start over when the chunk in flight returns */
	bool catch_up; /* part of the catch-up that readiness waits for */
	bool again;    /* keys were lost during this walk: walk once more when it ends */
	enum walk_reason again_reason;
	ev_tstamp started;
	ev_tstamp retry_at;
	ev_tstamp last_log;
	double last_done;
	uint64_t fixed;
	uint64_t chunks;
	struct backoff retry;
};

struct walks {
	struct walk_policy policy;
	struct walk *walks;
	size_t n;
	bool stopped;
};

static const char *const reason_names[] = {
    [WALK_CATCH_UP] = "catch-up",
    [WALK_INTERVAL] = "interval",
    [WALK_QUEUE_TRUNCATED] = "queue-truncated",
    [WALK_OVERFLOW] = "overflow",
    [WALK_SLOT_REBUILT] = "slot-rebuilt",
    [WALK_SOURCE_TRUNCATED] = "source-truncated",
    [WALK_DELIVERY_CHANGED] = "delivery-changed",
};

const char *walk_reason_name(enum walk_reason reason)
{
	return reason_names[reason];
}

struct walks *walks_new(const struct walk_policy *policy)
{
	struct walks *ws = xcalloc(1, sizeof(*ws));
	ws->policy = *policy;
	return ws;
}

static void walk_free(struct walk *w)
{
	free(w->rollup);
	free(w->sql);
	free(w->after);
}

void walks_free(struct walks *ws)
{
	if (ws == NULL)
		return;
	for (size_t i = 0; i < ws->n; i++)
		walk_free(&ws->walks[i]);
	free(ws->walks);
	free(ws);
}

void walks_set_policy(struct walks *ws, const struct walk_policy *policy)
{
	ws->policy = *policy;
	for (size_t i = 0; i < ws->n; i++) {
		ws->walks[i].retry.min_ms = policy->retry_min_ms;
		ws->walks[i].retry.max_ms = policy->retry_max_ms;
	}
}

static struct walk *find(const struct walks *ws, const char *rollup)
{
	for (size_t i = 0; i < ws->n; i++)
		if (strcmp(ws->walks[i].rollup, rollup) == 0)
			return &ws->walks[i];
	return NULL;
}

void walks_set_rollups(struct walks *ws, const struct catalog *cat)
{
	struct walk *walks = xcalloc(cat->n_rollups + 1, sizeof(*walks));
	bool *moved = xcalloc(ws->n + 1, sizeof(bool));

	for (size_t i = 0; i < cat->n_rollups; i++) {
		const char *name = cat->rollups[i].name;
		size_t j = 0;
		while (j < ws->n && (moved[j] || strcmp(ws->walks[j].rollup, name) != 0))
			j++;
		if (j < ws->n) {
			/* Kept: move its state over; the old entry is left empty. */
			walks[i] = ws->walks[j];
			free(walks[i].sql);
			ws->walks[j] = (struct walk){0};
			moved[j] = true;
		} else {
			walks[i].rollup = xstrdup(name);
			backoff_init(&walks[i].retry, ws->policy.retry_min_ms, ws->policy.retry_max_ms);
		}
		walks[i].sql = xstrdup(cat->rollups[i].reconcile_sql);
	}
	for (size_t i = 0; i < ws->n; i++)
		walk_free(&ws->walks[i]);
	free(moved);
	free(ws->walks);
	ws->walks = walks;
	ws->n = cat->n_rollups;
}

static void begin(struct walk *w, enum walk_reason reason, ev_tstamp now)
{
	if (w->in_flight) {
		w->restart = true; /* the chunk in flight predates this start */
	} else {
		free(w->after);
		w->after = NULL;
	}
	w->active = true;
	/* Readiness waits for the walks that make up for changes nobody heard. */
	w->catch_up = w->catch_up || reason == WALK_CATCH_UP || reason == WALK_SLOT_REBUILT;
	w->started = now;
	w->last_log = now;
	w->fixed = 0;
	w->chunks = 0;
	w->retry_at = 0;
	backoff_reset(&w->retry);
	log_info("reconcile started rollup=%s reason=%s", w->rollup, walk_reason_name(reason));
}

bool walks_begin(struct walks *ws, const char *rollup, enum walk_reason reason, ev_tstamp now)
{
	struct walk *w = find(ws, rollup);
	if (w == NULL || ws->stopped)
		return false;
	begin(w, reason, now);
	return true;
}

bool walks_begin_or_again(struct walks *ws, const char *rollup, enum walk_reason reason, ev_tstamp now)
{
	struct walk *w = find(ws, rollup);
	if (w == NULL || ws->stopped)
		return false;
	if (!w->active) {
		begin(w, reason, now);
		return true;
	}
	if (w->again)
		return false;
	w->again = true;
	w->again_reason = reason;
	return true;
}

void walks_begin_idle(struct walks *ws, enum walk_reason reason, ev_tstamp now)
{
	for (size_t i = 0; i < ws->n && !ws->stopped; i++)
		if (!ws->walks[i].active)
			begin(&ws->walks[i], reason, now);
}

struct walk_chunk *walks_take(struct walks *ws, ev_tstamp now)
{
	if (ws->stopped)
		return NULL;
	for (size_t i = 0; i < ws->n; i++) {
		struct walk *w = &ws->walks[i];
		if (!w->active || w->in_flight || now < w->retry_at)
			continue;
		struct walk_chunk *c = xcalloc(1, sizeof(*c));
		c->rollup = xstrdup(w->rollup);
		c->after = xstrdup(w->after);
		c->sql = w->sql;
		snprintf(c->max_keys, sizeof(c->max_keys), "%d", ws->policy.chunk_keys);
		c->params[0] = c->after;
		c->params[1] = c->max_keys;
		w->in_flight = true;
		return c;
	}
	return NULL;
}

static void chunk_free(struct walk_chunk *c)
{
	free(c->rollup);
	free(c->after);
	free(c);
}

bool walks_complete(struct walks *ws, struct walk_chunk *chunk, const char *error, const char *last_key, uint64_t fixed,
                    ev_tstamp now)
{
	struct walk *w = find(ws, chunk->rollup);
	bool done = false;

	if (w == NULL) { /* rollup removed by a reload */
		chunk_free(chunk);
		return false;
	}
	w->in_flight = false;
	if (w->restart) {
		w->restart = false;
		free(w->after);
		w->after = NULL;
	} else if (error != NULL) {
		uint32_t delay = backoff_next_ms(&w->retry, (uint32_t)random());
		w->retry_at = now + delay / 1000.0;
		log_warning("reconcile chunk failed rollup=%s after=%s error=\"%s\" retry_in_ms=%u", w->rollup,
		            w->after ? w->after : "(start)", error, delay);
	} else {
		backoff_reset(&w->retry);
		w->chunks++;
		w->fixed += fixed;
		free(w->after);
		w->after = xstrdup(last_key);
		if (w->after == NULL) {
			done = true;
			w->active = false;
			w->catch_up = false;
			w->last_done = ev_time();
			log_info("reconcile done rollup=%s fixed=%llu chunks=%llu ms=%.0f", w->rollup,
			         (unsigned long long)w->fixed, (unsigned long long)w->chunks,
			         (now - w->started) * 1000.0);
			if (w->again && !ws->stopped) {
				w->again = false;
				begin(w, w->again_reason, now);
			}
		} else if (now - w->last_log >= 5.0) {
			/* Keys done, at most a chunk's worth per chunk. */
			double keys = (double)w->chunks * ws->policy.chunk_keys;
			w->last_log = now;
			log_info("reconcile progress rollup=%s after=%s fixed=%llu chunks=%llu keys_per_s=%.0f",
			         w->rollup, w->after, (unsigned long long)w->fixed, (unsigned long long)w->chunks,
			         now > w->started ? keys / (now - w->started) : 0.0);
		}
	}
	chunk_free(chunk);
	return done;
}

ev_tstamp walks_next_retry(const struct walks *ws, ev_tstamp now)
{
	ev_tstamp next = 0;
	for (size_t i = 0; i < ws->n; i++) {
		const struct walk *w = &ws->walks[i];
		if (w->active && !w->in_flight && w->retry_at > now && (next == 0 || w->retry_at < next))
			next = w->retry_at;
	}
	return next;
}

bool walks_active(const struct walks *ws, const char *rollup)
{
	const struct walk *w = find(ws, rollup);
	return w != NULL && (w->active || w->again);
}

bool walks_catching_up(const struct walks *ws)
{
	for (size_t i = 0; i < ws->n; i++)
		if (ws->walks[i].active && ws->walks[i].catch_up)
			return true;
	return false;
}

void walks_stop(struct walks *ws)
{
	ws->stopped = true;
	for (size_t i = 0; i < ws->n; i++)
		ws->walks[i].active = false;
}

size_t walks_count(const struct walks *ws)
{
	return ws->n;
}

struct walk_status walks_status(const struct walks *ws, size_t i)
{
	const struct walk *w = &ws->walks[i];
	return (struct walk_status){.rollup = w->rollup, .active = w->active, .last_done = w->last_done};
}
