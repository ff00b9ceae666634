/*
 * queue: the drain cycle of each queue-mode channel (docs/design.md, "Delivery").
 * Keys wait in the database; this module only decides when a worker should
 * claim the next batch, re-arm the doorbell, or take its last look:
 *
 *   drain until a batch comes back short -> re-arm (only when no writer is
 *   mid-transaction; else poll again after window_ms) -> one last look ->
 *   armed: wait for the doorbell's NOTIFY or the safety poll.
 *
 * As a key source (source.h) it hands the engine each due step as a
 * statement (the SQL is here, as poison.c holds its own) and reads the
 * result; queues_take()/queues_complete() are the cycle itself, testable
 * without a database.
 */
#ifndef ROLLUPD_QUEUE_H
#define ROLLUPD_QUEUE_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff.h"
#include "catalog.h"

struct queue_policy {
	size_t max_keys;   /* keys claimed per drain */
	double window_s;   /* polling interval while the doorbell is not armed; a drain this long means busy */
	double poll_s;     /* safety poll while armed; 0 disables it */
	double stats_s;    /* depth and oldest-key age logged this often; 0 disables it */
	unsigned parallel; /* drains of one channel at once while it is busy */
	uint32_t retry_min_ms;
	uint32_t retry_max_ms;
};

enum queue_step {
	QUEUE_DRAIN,     /* claim and refresh up to max_keys */
	QUEUE_REARM,     /* arm the doorbell */
	QUEUE_LAST_LOOK, /* a drain after re-arming: catches keys queued meanwhile */
	QUEUE_STATS,     /* read depth and oldest-key age */
};

struct queue_channel {
	char *name;
	char *rollup;
	bool armed;   /* the doorbell is armed: nothing to do until it rings or the poll */
	bool wanted;  /* the next step is due at `due_at` */
	bool backlog; /* busy: the last drain came back full, or took a window or more; presumed when watching starts */
	bool stats_wanted;
	enum queue_step next;
	ev_tstamp due_at;
	ev_tstamp drain_taken_at; /* when its last drain was taken */
	unsigned in_flight;
	struct backoff retry;

	uint64_t rings;
	uint64_t drains;
	uint64_t keys_drained;
	uint64_t rows_written;
	uint64_t failures;
	long long depth;  /* at the last stats step, -1 before one */
	double oldest_ms; /* age of the oldest queued key then */
};

/* A step taken for a worker; the channel may be gone by completion. */
struct queue_job {
	char *channel;
	char *rollup;
	enum queue_step step;
	uint64_t rings_before; /* the channel's rings when the step was taken */
	ev_tstamp taken_at;    /* when it was taken */
	char max_keys[16];     /* the statement's parameters */
};

struct queues;

/* `on_due` runs from the loop when a step becomes due. */
struct queues *queues_new(struct ev_loop *loop, const struct queue_policy *policy, void (*on_due)(void *arg),
                          void *arg);
void queues_free(struct queues *qs);
void queues_set_policy(struct queues *qs, const struct queue_policy *policy);

/* Make the channel list match the catalog's queue-mode channels. Kept channels
 * keep their state unless `new_session`: then every channel drains now (a
 * doorbell rung while nobody listened was lost; the keys were not). */
void queues_set_channels(struct queues *qs, const struct catalog *cat, bool new_session);

struct queue_channel *queues_find(struct queues *qs, const char *name);

/* The doorbell rang: the writer disarmed it; drain now. */
void queues_ring(struct queues *qs, struct queue_channel *ch);

/* The next due step (round-robin across channels), or NULL. Caller owns it until queues_complete(). */
struct queue_job *queues_take(struct queues *qs, ev_tstamp now);

/*
 * Report a step's outcome and free the job. For a drain, `taken` is the keys
 * claimed; for a re-arm, `taken` is 1 when armed and 0 when a writer was in
 * the way. Returns the retry delay in ms after a failure, else 0.
 */
uint32_t queues_complete(struct queues *qs, struct queue_job *job, bool ok, long taken, long written);

/* A stats step's answer. */
void queues_set_depth(struct queues *qs, const char *channel, long long depth, double oldest_ms);

/* Drains in flight (a stop waits for them; queued keys need no draining). */
size_t queues_in_flight(const struct queues *qs);
const struct queue_channel *queues_channel(const struct queues *qs, size_t i);

#endif
