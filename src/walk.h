/*
 * walk: the reconcile walks, one per rollup: a walk covers a rollup's whole
 * key space chunk by chunk (rollupd.reconcile_chunk), repairing drift, and
 * readiness waits for the catch-up walks. This module only decides which
 * chunk is due and keeps the walks' state; the engine runs the chunks on
 * its workers and reports their outcome. Like batcher and queue it takes
 * and completes, so it is tested without a database.
 */
#ifndef ROLLUPD_WALK_H
#define ROLLUPD_WALK_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"

/* Why a walk starts: in the log, and catch-up walks hold back readiness. */
enum walk_reason {
	WALK_CATCH_UP,         /* keys may have been missed while nobody listened */
	WALK_INTERVAL,         /* reconcile.interval_s, the safety net */
	WALK_QUEUE_TRUNCATED,  /* a crash emptied an unlogged queue */
	WALK_OVERFLOW,         /* keys dropped at batch.max_pending_keys */
	WALK_SLOT_REBUILT,     /* the replication slot was (re)created: changes before it are unknown */
	WALK_SOURCE_TRUNCATED, /* a source table was truncated */
	WALK_DELIVERY_CHANGED, /* a channel moved to another delivery mode: keys in between went nowhere */
};
const char *walk_reason_name(enum walk_reason reason);

struct walk_policy {
	int chunk_keys;
	uint32_t retry_min_ms;
	uint32_t retry_max_ms;
};

/* A chunk taken for a worker: the statement and its parameters (valid until
 * walks_complete(), which frees it). The walk may be gone by then. */
struct walk_chunk {
	char *rollup;
	const char *sql;
	const char *params[2]; /* after (NULL: from the start), max keys */
	char *after;
	char max_keys[16];
};

/* What a walk's state is, for metrics. */
struct walk_status {
	const char *rollup;
	bool active;
	double last_done; /* wall clock of the last complete walk, 0 = none */
};

struct walks;

struct walks *walks_new(const struct walk_policy *policy);
void walks_free(struct walks *ws);
void walks_set_policy(struct walks *ws, const struct walk_policy *policy);

/* One walk per rollup of `cat`; walks of kept rollups keep their state. */
void walks_set_rollups(struct walks *ws, const struct catalog *cat);

/* Start a walk of `rollup` from the beginning (a chunk in flight is
 * finished, then the walk starts over). False if there is no such rollup,
 * or the walks are stopped. */
bool walks_begin(struct walks *ws, const char *rollup, enum walk_reason reason, ev_tstamp now);
/* Keys of `rollup` were lost: walk it. A walk already under way may have
 * passed their place: it walks once more when it ends. Returns false when
 * that was already arranged (nothing new to log). */
bool walks_begin_or_again(struct walks *ws, const char *rollup, enum walk_reason reason, ev_tstamp now);
/* Start every idle walk (the periodic safety net). */
void walks_begin_idle(struct walks *ws, enum walk_reason reason, ev_tstamp now);

/* The next due chunk, or NULL. Caller owns it until walks_complete(). */
struct walk_chunk *walks_take(struct walks *ws, ev_tstamp now);

/*
 * A chunk's outcome: `error` NULL and `last_key` the chunk's last key (NULL:
 * the walk is done) with `fixed` rows repaired; or `error` set, and the walk
 * retries the chunk after a backoff delay. Frees the chunk. Returns true when
 * this completed a walk.
 */
bool walks_complete(struct walks *ws, struct walk_chunk *chunk, const char *error, const char *last_key, uint64_t fixed,
                    ev_tstamp now);

/* The earliest retry of a failed chunk still to come, or 0. */
ev_tstamp walks_next_retry(const struct walks *ws, ev_tstamp now);
/* A walk of `rollup` is under way, or due once the one under way ends. */
bool walks_active(const struct walks *ws, const char *rollup);
/* A catch-up walk is under way (readiness waits for it). */
bool walks_catching_up(const struct walks *ws);
/* Deactivate every walk and refuse new ones (a stop). */
void walks_stop(struct walks *ws);

size_t walks_count(const struct walks *ws);
struct walk_status walks_status(const struct walks *ws, size_t i);

#endif
