/*
 * source: a delivery mode is a key source (docs/design.md, "Delivery"):
 * notify (keys in NOTIFY payloads, notify.c), queue (a dirty-key table and
 * a doorbell, queue.c) and wal (logical decoding, wal.c). The engine does
 * not branch on the mode: it tells every source the catalog, hands them the
 * notifications the listener receives, asks them for the next statement to
 * run on an idle worker, and reads their channels' counters for metrics.
 */
#ifndef ROLLUPD_SOURCE_H
#define ROLLUPD_SOURCE_H

#include <ev.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "config.h"
#include "walk.h"

struct http_body;
struct poison;
struct stats;

/* What a statement on a worker is, for the engine's stop and for logs. */
enum job_kind {
	JOB_REFRESH,    /* a batch of keys through rollupd.refresh_keys() */
	JOB_QUEUE_STEP, /* a queue drain, re-arm, last look or stats read */
	JOB_RECONCILE,  /* a chunk of a reconcile walk */
	JOB_POISON,     /* a retry pass over poison keys */
	JOB_STATS,      /* a source reading its own state (the WAL mode's slot) */
};

/*
 * One statement for a worker. The engine allocates it and runs it; whoever
 * filled it in (a source, the walks, the poison timer) owns what `u` points
 * to and gets `done` exactly once, with the result (valid only during the
 * call) or the error, after which the engine frees the job.
 */
struct job {
	enum job_kind kind;
	const char *sql; /* needed only until sent */
	int nparams;
	const char *params[4];
	ev_tstamp started;
	void (*done)(struct job *job, const PGresult *res, const char *error, ev_tstamp now);
	void *owner;
	union {
		struct batch *batch;
		struct queue_job *queue;
		struct walk_chunk *chunk;
	} u;
	void *extra; /* the owner's own state of this job, if any */
};

/* A channel's counters, the same for every mode (stats.c renders them). */
struct channel_stats {
	const char *name;
	enum delivery delivery;
	uint64_t keys_received; /* valid keys received, before dedup (notify, wal) */
	uint64_t keys_malformed;
	uint64_t keys_overflowed; /* dropped at batch.max_pending_keys */
	uint64_t keys_refreshed;
	uint64_t rows_written;
	uint64_t batches_ok;
	uint64_t batches_failed;
	size_t pending;         /* keys waiting in memory */
	bool has_queue;         /* queue mode: the next two are known */
	long long queue_depth;  /* at the last stats step, -1 before one */
	double queue_oldest_ms; /* age of the oldest queued key then */
	uint64_t rings;         /* doorbell notifications */
};

/* What a source may ask of the engine. */
struct source_env {
	struct ev_loop *loop;
	struct stats *stats;
	struct poison *poison;
	/* Something became due: dispatch. */
	void (*due)(void *arg);
	/* Keys of `rollup` may have been lost: walk it (a walk under way walks
	 * once more when it ends). False when that was already arranged. */
	bool (*reconcile)(void *arg, const char *rollup, enum walk_reason reason);
	/* Is a walk of `rollup` under way (or due)? */
	bool (*walking)(void *arg, const char *rollup);
	/* The source's readiness may have changed. */
	void (*state_changed)(void *arg);
	/* The source cannot work: at start this ends the process with `code`
	 * (sysexits.h) and true; later it is only logged (false) and the source
	 * retries. */
	bool (*fatal)(void *arg, int code, const char *reason);
	void *arg;
};

/* What a source adds to the engine's reports. */
enum source_report {
	REPORT_METRICS, /* Prometheus families */
	REPORT_SUMMARY, /* " key=value" pairs for the summary line */
	REPORT_HEALTH,  /* a detail line for /healthz */
};

struct source_ops {
	enum delivery mode;
	/* Notifications sent while nobody listens are lost, so a new listener
	 * session must be followed by a catch-up walk. */
	bool loses_keys_while_away;
	/* The catalog's channels in this mode; `new_session`: the listener's
	 * session is new (a doorbell rung meanwhile was lost, say). */
	void (*set_catalog)(void *impl, const struct catalog *cat, bool new_session);
	/* A notification on one of this mode's channels: true when handled. NULL
	 * for modes that do not use NOTIFY. */
	bool (*on_notify)(void *impl, const char *channel, const char *payload);
	/* Fill `job` with the next due statement: true, or false when nothing is due. */
	bool (*take)(void *impl, ev_tstamp now, struct job *job);
	/* Keys held in memory, which a stop waits for. */
	size_t (*pending)(const void *impl);
	/* A stop: hand out what is held in memory at once (or nothing, if it is
	 * safe where it is). */
	void (*stop)(void *impl);
	/* A validated new config. */
	void (*reload)(void *impl, const struct config *cfg);
	/* Channel i's counters into `out`; false past the last channel. */
	bool (*channel)(const void *impl, size_t i, struct channel_stats *out);
	/* The listener's session was lost (a server shutting down, a network
	 * cut): NULL, or let go of what depends on the server too. */
	void (*session_lost)(void *impl);
	/* Ready to deliver keys (NULL: always). */
	bool (*ready)(const void *impl);
	/* Append what the mode itself reports (NULL: nothing). */
	void (*report)(const void *impl, enum source_report what, struct http_body *b);
	void (*free)(void *impl);
};

struct source {
	const struct source_ops *ops;
	void *impl;
};

/* The sources, one per mode (each in its own file). */
struct source *notify_source_new(const struct source_env *env, const struct config *cfg);
struct source *queue_source_new(const struct source_env *env, const struct config *cfg);
struct source *wal_source_new(const struct source_env *env, const struct config *cfg);

/* For the modes' constructors: `impl` with its operations. */
struct source *source_new(const struct source_ops *ops, void *impl);
/* The source and its implementation (ops->free). NULL is fine. */
void source_free(struct source *s);

struct batcher;
/* For the modes that batch keys in memory (notify, wal): the stats of the
 * batcher's channel `i`; false past the last. */
bool source_batch_channel_stats(const struct batcher *b, size_t i, enum delivery delivery, struct channel_stats *out);

#endif
