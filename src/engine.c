/*
 * engine: dispatch loop over idle workers. Every event that can create work
 * (keys arrived, a window ended, a worker came up or finished, a walk chunk
 * returned) ends in dispatch(), which fills idle workers until there is
 * nothing due. Refresh batches and reconcile chunks alternate, so neither a
 * notification flood nor a long walk starves the other.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "batcher.h"
#include "catalog.h"
#include "http.h"
#include "keyset.h"
#include "listener.h"
#include "log.h"
#include "poison.h"
#include "pool.h"
#include "queue.h"
#include "sdnotify.h"

enum engine_phase {
	PHASE_STARTING, /* not yet listening and caught up once */
	PHASE_RUNNING,
	PHASE_STOPPING,
	PHASE_STOPPED,
};

/* A reconcile walk over one rollup's key space, one chunk per job. */
struct walk {
	char *rollup;
	char *sql;
	char *after; /* last key done; NULL walks from the start */
	bool active;
	bool in_flight;
	bool restart;  /* start over when the chunk in flight returns */
	bool catch_up; /* part of the catch-up that readiness waits for */
	bool again;    /* keys were dropped during this walk: walk once more when it ends */
	ev_tstamp started;
	ev_tstamp retry_at;
	ev_tstamp last_log;
	double last_done; /* wall clock of the last complete walk, 0 = none */
	uint64_t fixed;
	uint64_t chunks;
	struct backoff retry;
};

struct job {
	struct engine *e;
	struct pool_worker *w;
	struct batch *batch;    /* a refresh */
	struct queue_job *qjob; /* a queue step */
	char *rollup;           /* a reconcile chunk: walks are found by name, they may be rebuilt meanwhile */
	ev_tstamp started;
};

struct engine {
	struct ev_loop *loop;
	struct config *cfg;
	enum engine_phase phase;
	int exit_code;

	struct listener *listener;
	struct batcher *batcher;
	struct queues *queues;
	struct poison *poison;
	struct pool *pool;
	struct catalog catalog;
	struct walk *walks;
	size_t n_walks;

	bool ready; /* listening and caught up */
	bool dispatching;
	bool dispatch_again;
	unsigned turn;

	ev_timer shutdown_timer;
	ev_timer reconcile_timer;  /* reconcile.interval_s */
	ev_timer walk_retry_timer; /* a failed reconcile chunk's retry delay */
	struct http_server *http;  /* metrics.listen */
	char *http_listen;         /* what it listens on */
	uint64_t listener_losses;
	uint64_t worker_losses;
	/* Refresh and drain durations: cumulative Prometheus buckets. */
	uint64_t duration_buckets[12];
	uint64_t duration_count;
	double duration_sum_s;
	/* Queue waits of drained keys: per bucket (not cumulative), the last is +Inf. */
	uint64_t wait_counts[12];
	uint64_t wait_count;
	double wait_sum_s;
	uint64_t wait_counts_at_summary[12];
	ev_timer watchdog_timer; /* WATCHDOG=1 when systemd asks for it */
	ev_timer summary_timer;  /* log.summary_interval_s */
	ev_tstamp summary_at;
	uint64_t summary_keys;
	double keys_per_s; /* over the last summary interval */
	void (*on_ready)(void *arg);
	void *on_ready_arg;
};

static void dispatch(struct engine *e);

static struct poison_policy poison_policy_from(const struct config *cfg)
{
	return (struct poison_policy){
	    .max_keys = (uint32_t)cfg->batch_max_keys,
	    .retry_min_ms = (uint32_t)cfg->retry_min_ms,
	    .retry_max_ms = (uint32_t)cfg->retry_max_ms,
	};
}

static struct pgconn_settings settings_from(const struct config *cfg)
{
	return (struct pgconn_settings){
	    .conninfo = cfg->conninfo,
	    .connect_timeout_ms = cfg->connect_timeout_ms,
	    .statement_timeout_ms = cfg->statement_timeout_ms,
	    .reconnect_min_ms = cfg->reconnect_min_ms,
	    .reconnect_max_ms = cfg->reconnect_max_ms,
	};
}

static struct batch_policy policy_from(const struct config *cfg)
{
	return (struct batch_policy){
	    .max_keys = (size_t)cfg->batch_max_keys,
	    .max_pending = (size_t)cfg->batch_max_pending_keys,
	    .window_s = cfg->batch_window_ms / 1000.0,
	    .retry_min_ms = (uint32_t)cfg->retry_min_ms,
	    .retry_max_ms = (uint32_t)cfg->retry_max_ms,
	};
}

static struct queue_policy queue_policy_from(const struct config *cfg)
{
	return (struct queue_policy){
	    .max_keys = (size_t)cfg->batch_max_keys,
	    .window_s = cfg->batch_window_ms / 1000.0,
	    .poll_s = cfg->queue_poll_ms / 1000.0,
	    .stats_s = cfg->queue_stats_interval_s,
	    .parallel = (unsigned)cfg->queue_parallel,
	    .retry_min_ms = (uint32_t)cfg->retry_min_ms,
	    .retry_max_ms = (uint32_t)cfg->retry_max_ms,
	};
}

/* Keys refreshed so far, over every channel (notify batches and queue drains). */
static uint64_t keys_refreshed_total(const struct engine *e)
{
	uint64_t n = 0;
	const struct batch_channel *ch;
	for (size_t i = 0; (ch = batcher_channel(e->batcher, i)) != NULL; i++)
		n += ch->keys_refreshed;
	const struct queue_channel *qc;
	for (size_t i = 0; (qc = queues_channel(e->queues, i)) != NULL; i++)
		n += qc->keys_drained;
	return n;
}

static const char *state_name(const struct engine *e)
{
	return e->phase == PHASE_STOPPING        ? "stopping"
	       : listener_standby(e->listener)   ? "standby"
	       : e->ready                        ? "ready"
	       : listener_listening(e->listener) ? "catching up"
	                                         : "connecting";
}

static void report_status(struct engine *e)
{
	char status[320];
	snprintf(status, sizeof(status),
	         "STATUS=%s: rollups=%zu channels=%zu workers=%zu/%zu pending_keys=%zu keys_refreshed=%llu"
	         " keys_per_s=%.0f poison_keys=%llu",
	         state_name(e), e->catalog.n_rollups, e->catalog.n_channels, pool_connected(e->pool),
	         pool_size(e->pool), batcher_pending(e->batcher), (unsigned long long)keys_refreshed_total(e),
	         e->keys_per_s,
	         (unsigned long long)(poison_found_total(e->poison) - poison_recovered_total(e->poison)));
	sdnotify_send(status);
}

/* systemd's watchdog: the loop turns, so it pings; and the status line is fresh. */
static void watchdog_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct engine *e = t->data;
	(void)loop;
	(void)revents;
	sdnotify_send("WATCHDOG=1");
	report_status(e);
}

static double wait_quantile(const struct engine *e, const uint64_t *base, double q);

/* One line every log.summary_interval_s: what was done since the last one. */
static void summary_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct engine *e = t->data;
	(void)revents;
	ev_tstamp now = ev_now(loop);
	uint64_t keys = keys_refreshed_total(e);
	double span = now - e->summary_at;
	e->keys_per_s = span > 0 ? (double)(keys - e->summary_keys) / span : 0;
	long long depth = 0;
	const struct queue_channel *qc;
	for (size_t i = 0; (qc = queues_channel(e->queues, i)) != NULL; i++)
		depth += qc->depth > 0 ? qc->depth : 0;
	char wait[48] = "";
	double p99 = wait_quantile(e, e->wait_counts_at_summary, 0.99);
	if (p99 >= 0)
		snprintf(wait, sizeof(wait), " queue_wait_p99_s<=%g", p99);
	log_info("summary state=%s keys_refreshed=%llu keys_per_s=%.1f pending_keys=%zu queue_depth=%lld%s"
	         " workers=%zu/%zu poison_keys=%llu notifications=%llu",
	         state_name(e), (unsigned long long)(keys - e->summary_keys), e->keys_per_s,
	         batcher_pending(e->batcher), depth, wait, pool_connected(e->pool), pool_size(e->pool),
	         (unsigned long long)(poison_found_total(e->poison) - poison_recovered_total(e->poison)),
	         (unsigned long long)listener_notifications(e->listener));
	memcpy(e->wait_counts_at_summary, e->wait_counts, sizeof(e->wait_counts));
	e->summary_at = now;
	e->summary_keys = keys;
	report_status(e);
}

static void arm_summary(struct engine *e)
{
	ev_timer_stop(e->loop, &e->summary_timer);
	if (e->cfg->log_summary_interval_s > 0) {
		ev_timer_set(&e->summary_timer, e->cfg->log_summary_interval_s, e->cfg->log_summary_interval_s);
		ev_timer_start(e->loop, &e->summary_timer);
	}
}

/* ---- walks ---- */

static struct walk *find_walk(struct engine *e, const char *rollup)
{
	for (size_t i = 0; i < e->n_walks; i++)
		if (strcmp(e->walks[i].rollup, rollup) == 0)
			return &e->walks[i];
	return NULL;
}

static void walk_free(struct walk *w)
{
	free(w->rollup);
	free(w->sql);
	free(w->after);
}

/* `reason` is "catch-up" (readiness waits for it), "interval" or "queue-truncated". */
static void walk_begin(struct engine *e, struct walk *w, const char *reason)
{
	bool catch_up = strcmp(reason, "catch-up") == 0;
	if (w->in_flight) {
		w->restart = true; /* the chunk in flight predates this start */
	} else {
		free(w->after);
		w->after = NULL;
	}
	w->active = true;
	w->catch_up = w->catch_up || catch_up;
	w->started = ev_now(e->loop);
	w->last_log = w->started;
	w->fixed = 0;
	w->chunks = 0;
	w->retry_at = 0;
	backoff_reset(&w->retry);
	log_info("reconcile started rollup=%s reason=%s", w->rollup, reason);
}

/* Rebuild the walk list for a new catalog, keeping the state of kept rollups. */
static void rebuild_walks(struct engine *e, const struct catalog *cat)
{
	struct walk *walks = calloc(cat->n_rollups + 1, sizeof(*walks));
	bool *moved = calloc(e->n_walks + 1, sizeof(bool));
	if (walks == NULL || moved == NULL) {
		free(walks);
		free(moved);
		log_error("out of memory rebuilding reconcile walks");
		return;
	}
	for (size_t i = 0; i < cat->n_rollups; i++) {
		const char *name = cat->rollups[i].name;
		size_t j = 0;
		while (j < e->n_walks && (moved[j] || strcmp(e->walks[j].rollup, name) != 0))
			j++;
		if (j < e->n_walks) {
			/* Kept: move its state over; the old entry is left empty. */
			walks[i] = e->walks[j];
			free(walks[i].sql);
			e->walks[j] = (struct walk){0};
			moved[j] = true;
		} else {
			walks[i].rollup = strdup(name);
			backoff_init(&walks[i].retry, (uint32_t)e->cfg->retry_min_ms, (uint32_t)e->cfg->retry_max_ms);
		}
		walks[i].sql = strdup(cat->rollups[i].reconcile_sql);
	}
	for (size_t i = 0; i < e->n_walks; i++)
		walk_free(&e->walks[i]);
	free(moved);
	free(e->walks);
	e->walks = walks;
	e->n_walks = cat->n_rollups;
}

static bool catching_up(const struct engine *e)
{
	for (size_t i = 0; i < e->n_walks; i++)
		if (e->walks[i].active && e->walks[i].catch_up)
			return true;
	return false;
}

static void update_readiness(struct engine *e)
{
	bool standby = listener_standby(e->listener);
	bool ready = standby || (listener_listening(e->listener) && !catching_up(e));

	if (ready == e->ready)
		return;
	e->ready = ready;
	if (ready) {
		if (standby)
			log_info("ready: standby (another rollupd is active)");
		else
			log_info("ready: listening and caught up rollups=%zu channels=%zu", e->catalog.n_rollups,
			         e->catalog.n_channels);
		if (e->phase == PHASE_STARTING) {
			e->phase = PHASE_RUNNING;
			sdnotify_send("READY=1");
			if (e->on_ready)
				e->on_ready(e->on_ready_arg);
		}
	}
	report_status(e);
}

/* ---- jobs ---- */

static struct job *job_new(struct engine *e, struct pool_worker *w)
{
	struct job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	job->e = e;
	job->w = w;
	job->started = ev_now(e->loop);
	w->job = job;
	return job;
}

static void job_end(struct job *job)
{
	struct engine *e = job->e;
	pool_release(e->pool, job->w);
	free(job->rollup);
	free(job);
	dispatch(e);
}

static const double DURATION_BOUNDS_S[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BOUNDS (sizeof(DURATION_BOUNDS_S) / sizeof(DURATION_BOUNDS_S[0]))

static void observe_duration(struct engine *e, double seconds)
{
	for (size_t i = 0; i < N_BOUNDS; i++)
		if (seconds <= DURATION_BOUNDS_S[i])
			e->duration_buckets[i]++;
	e->duration_count++;
	e->duration_sum_s += seconds;
}

/* A drain's per-bucket counts of its keys' queue waits ("n0,n1,...,n11"). */
static void observe_waits(struct engine *e, const char *counts, double sum_s)
{
	const char *p = counts;
	for (size_t i = 0; i <= N_BOUNDS && *p != '\0'; i++) {
		char *end;
		unsigned long long n = strtoull(p, &end, 10);
		e->wait_counts[i] += n;
		e->wait_count += n;
		p = *end == ',' ? end + 1 : end;
	}
	e->wait_sum_s += sum_s;
}

/* The upper bound of the bucket holding the q-quantile of the waits counted
 * since `base` (a copy taken earlier), in seconds; -1 without waits, +inf
 * past the last bound. */
static double wait_quantile(const struct engine *e, const uint64_t *base, double q)
{
	uint64_t total = 0, seen = 0;
	for (size_t i = 0; i <= N_BOUNDS; i++)
		total += e->wait_counts[i] - base[i];
	if (total == 0)
		return -1;
	for (size_t i = 0; i < N_BOUNDS; i++) {
		seen += e->wait_counts[i] - base[i];
		if ((double)seen >= q * (double)total)
			return DURATION_BOUNDS_S[i];
	}
	return INFINITY;
}

static void on_refresh_done(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct job *job = arg;
	struct engine *e = job->e;
	struct batch *batch = job->batch;
	double ms = (ev_now(e->loop) - job->started) * 1000.0;
	(void)c;

	if (error == NULL && (PQntuples(res) != 1 || PQnfields(res) != 3))
		error = "unexpected result shape";
	if (error != NULL) {
		char channel[64];
		size_t n = batch->n;
		snprintf(channel, sizeof(channel), "%s", batch->channel);
		uint32_t delay = batcher_complete(e->batcher, batch, false, 0);
		log_warning("refresh failed channel=%s keys=%zu ms=%.0f error=\"%s\" retry_in_ms=%u", channel, n, ms,
		            error, delay);
	} else {
		long rows = strtol(PQgetvalue(res, 0, 0), NULL, 10);
		long poisoned = strtol(PQgetvalue(res, 0, 1), NULL, 10);
		observe_duration(e, ms / 1000.0);
		log_debug("refreshed channel=%s keys=%zu rows=%ld ms=%.1f", batch->channel, batch->n, rows, ms);
		poison_found(e->poison, batch->channel, poisoned, PQgetvalue(res, 0, 2));
		batcher_complete(e->batcher, batch, true, rows);
	}
	job_end(job);
}

static bool start_refresh(struct engine *e, struct pool_worker *w, ev_tstamp now)
{
	struct batch *batch = batcher_take(e->batcher, now);
	if (batch == NULL)
		return false;
	struct job *job = job_new(e, w);
	if (job == NULL) {
		batcher_complete(e->batcher, batch, false, 0);
		return false;
	}
	job->batch = batch;
	const char *params[1] = {batch->param};
	if (pgconn_query(w->conn, batch->refresh_sql, 1, params, on_refresh_done, job) != 0) {
		/* Not sent: the keys go back and the connection re-establishes itself. */
		batcher_complete(e->batcher, batch, false, 0);
		pool_release(e->pool, w);
		free(job);
		return false;
	}
	return true;
}

static void on_reconcile_done(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct job *job = arg;
	struct engine *e = job->e;
	struct walk *w = find_walk(e, job->rollup);
	ev_tstamp now = ev_now(e->loop);
	(void)c;

	if (w == NULL) {
		job_end(job); /* rollup removed by a reload */
		return;
	}
	w->in_flight = false;
	if (w->restart) {
		w->restart = false;
		free(w->after);
		w->after = NULL;
	} else if (error != NULL || PQntuples(res) != 1 || PQnfields(res) != 2) {
		uint32_t delay = backoff_next_ms(&w->retry, (uint32_t)random());
		w->retry_at = now + delay / 1000.0;
		log_warning("reconcile chunk failed rollup=%s after=%s error=\"%s\" retry_in_ms=%u", w->rollup,
		            w->after ? w->after : "(start)", error ? error : "unexpected result shape", delay);
	} else {
		backoff_reset(&w->retry);
		w->chunks++;
		w->fixed += strtoull(PQgetvalue(res, 0, 1), NULL, 10);
		free(w->after);
		w->after = PQgetisnull(res, 0, 0) ? NULL : strdup(PQgetvalue(res, 0, 0));
		if (w->after == NULL) {
			w->active = false;
			w->catch_up = false;
			w->last_done = ev_time();
			log_info("reconcile done rollup=%s fixed=%llu chunks=%llu ms=%.0f", w->rollup,
			         (unsigned long long)w->fixed, (unsigned long long)w->chunks,
			         (now - w->started) * 1000.0);
			if (w->again && e->phase != PHASE_STOPPING) {
				w->again = false;
				walk_begin(e, w, "overflow");
			}
			update_readiness(e);
		} else if (now - w->last_log >= 5.0) {
			w->last_log = now;
			log_info("reconcile progress rollup=%s after=%s fixed=%llu chunks=%llu", w->rollup, w->after,
			         (unsigned long long)w->fixed, (unsigned long long)w->chunks);
		}
	}
	job_end(job);
}

static bool start_reconcile(struct engine *e, struct pool_worker *pw, ev_tstamp now)
{
	if (e->phase == PHASE_STOPPING)
		return false;
	for (size_t i = 0; i < e->n_walks; i++) {
		struct walk *w = &e->walks[i];
		if (!w->active || w->in_flight || now < w->retry_at)
			continue;
		struct job *job = job_new(e, pw);
		if (job == NULL)
			return false;
		job->rollup = strdup(w->rollup);
		char chunk[16];
		snprintf(chunk, sizeof(chunk), "%d", e->cfg->reconcile_chunk_keys);
		const char *params[2] = {w->after, chunk};
		if (pgconn_query(pw->conn, w->sql, 2, params, on_reconcile_done, job) != 0) {
			pool_release(e->pool, pw);
			free(job->rollup);
			free(job);
			return false;
		}
		w->in_flight = true;
		return true;
	}
	return false;
}

static const char QUEUE_DRAIN_SQL[] = "SELECT taken, written, truncated, poisoned, detail,"
                                      " array_to_string(wait_buckets, ','), wait_sum FROM rollupd.queue_drain($1, $2)";
static const char QUEUE_REARM_SQL[] = "SELECT CASE WHEN rollupd.queue_rearm($1) THEN 1 ELSE 0 END";
static const char QUEUE_STATS_SQL[] = "SELECT depth, round(oldest_ms) FROM rollupd.queue_stats($1)";

static const char *step_name(enum queue_step step)
{
	switch (step) {
	case QUEUE_DRAIN:
		return "drain";
	case QUEUE_REARM:
		return "rearm";
	case QUEUE_LAST_LOOK:
		return "last-look";
	case QUEUE_STATS:
		return "stats";
	}
	return "?";
}

static void on_queue_done(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct job *job = arg;
	struct engine *e = job->e;
	struct queue_job *q = job->qjob;
	double ms = (ev_now(e->loop) - job->started) * 1000.0;
	int want_cols = q->step == QUEUE_REARM ? 1 : q->step == QUEUE_STATS ? 2 : 7;
	(void)c;

	if (error == NULL && (PQntuples(res) != 1 || PQnfields(res) != want_cols))
		error = "unexpected result shape";
	if (error != NULL) {
		char channel[64];
		enum queue_step step = q->step;
		snprintf(channel, sizeof(channel), "%s", q->channel);
		uint32_t delay = queues_complete(e->queues, q, false, 0, 0);
		log_warning("queue %s failed channel=%s ms=%.0f error=\"%s\" retry_in_ms=%u (the keys stay queued)",
		            step_name(step), channel, ms, error, delay);
		job_end(job);
		return;
	}
	struct queue_channel *ch = queues_find(e->queues, q->channel);
	if (q->step == QUEUE_STATS) {
		if (ch != NULL) {
			ch->depth = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			ch->oldest_ms = strtod(PQgetvalue(res, 0, 1), NULL);
		}
		log_info("queue channel=%s depth=%s oldest_ms=%s drained_keys=%llu rings=%llu", q->channel,
		         PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), ch ? (unsigned long long)ch->keys_drained : 0ULL,
		         ch ? (unsigned long long)ch->rings : 0ULL);
		queues_complete(e->queues, q, true, 0, 0);
		job_end(job);
		return;
	}
	long taken = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	long written = q->step == QUEUE_REARM ? 0 : strtol(PQgetvalue(res, 0, 1), NULL, 10);
	if (q->step != QUEUE_REARM && taken > 0) {
		observe_duration(e, ms / 1000.0);
		observe_waits(e, PQgetvalue(res, 0, 5), strtod(PQgetvalue(res, 0, 6), NULL));
	}
	bool truncated = q->step != QUEUE_REARM && strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	if (q->step == QUEUE_REARM)
		log_debug("queue rearm channel=%s armed=%s ms=%.1f", q->channel,
		          taken ? "yes" : "no (writer in flight)", ms);
	else
		log_debug("queue %s channel=%s keys=%ld rows=%ld ms=%.1f", step_name(q->step), q->channel, taken,
		          written, ms);
	if (q->step != QUEUE_REARM)
		poison_found(e->poison, q->channel, strtol(PQgetvalue(res, 0, 3), NULL, 10), PQgetvalue(res, 0, 4));
	if (truncated) {
		struct walk *w = find_walk(e, q->rollup);
		log_warning(
		    "queue of channel=%s was emptied by a crash (its sentinel row is gone); reconciling rollup=%s",
		    q->channel, q->rollup);
		if (w != NULL && e->phase != PHASE_STOPPING)
			walk_begin(e, w, "queue-truncated");
	}
	queues_complete(e->queues, q, true, taken, written);
	job_end(job);
}

static bool start_queue_step(struct engine *e, struct pool_worker *w, ev_tstamp now)
{
	if (e->phase == PHASE_STOPPING)
		return false; /* queued keys wait in the database for the next start */
	struct queue_job *q = queues_take(e->queues, now);
	if (q == NULL)
		return false;
	struct job *job = job_new(e, w);
	if (job == NULL) {
		queues_complete(e->queues, q, false, 0, 0);
		return false;
	}
	job->qjob = q;
	char max_keys[16];
	snprintf(max_keys, sizeof(max_keys), "%d", e->cfg->batch_max_keys);
	const char *params[2] = {q->channel, max_keys};
	const char *sql = q->step == QUEUE_REARM   ? QUEUE_REARM_SQL
	                  : q->step == QUEUE_STATS ? QUEUE_STATS_SQL
	                                           : QUEUE_DRAIN_SQL;
	int nparams = q->step == QUEUE_DRAIN || q->step == QUEUE_LAST_LOOK ? 2 : 1;
	if (pgconn_query(w->conn, sql, nparams, params, on_queue_done, job) != 0) {
		queues_complete(e->queues, q, false, 0, 0);
		pool_release(e->pool, w);
		free(job);
		return false;
	}
	return true;
}

static void on_poison_done(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct job *job = arg;
	struct engine *e = job->e;
	(void)c;
	poison_complete(e->poison, res, error, (ev_now(e->loop) - job->started) * 1000.0);
	job_end(job);
}

static bool start_poison_pass(struct engine *e, struct pool_worker *w)
{
	if (e->phase != PHASE_RUNNING)
		return false;
	char params[3][16];
	const char *sql = poison_take(e->poison, params);
	if (sql == NULL)
		return false;
	struct job *job = job_new(e, w);
	const char *values[3] = {params[0], params[1], params[2]};
	if (job == NULL || pgconn_query(w->conn, sql, 3, values, on_poison_done, job) != 0) {
		poison_complete(e->poison, NULL, "not sent", 0);
		if (job != NULL) {
			pool_release(e->pool, w);
			free(job);
		}
		return false;
	}
	return true;
}

/* The earliest reconcile retry still to come, or 0. */
static ev_tstamp next_walk_retry(const struct engine *e, ev_tstamp now)
{
	ev_tstamp next = 0;
	for (size_t i = 0; i < e->n_walks; i++) {
		const struct walk *w = &e->walks[i];
		if (w->active && !w->in_flight && w->retry_at > now && (next == 0 || w->retry_at < next))
			next = w->retry_at;
	}
	return next;
}

static void finish_stop(struct engine *e, const char *how)
{
	e->phase = PHASE_STOPPED;
	ev_timer_stop(e->loop, &e->shutdown_timer);
	ev_timer_stop(e->loop, &e->reconcile_timer);
	ev_timer_stop(e->loop, &e->walk_retry_timer);
	ev_timer_stop(e->loop, &e->watchdog_timer);
	ev_timer_stop(e->loop, &e->summary_timer);
	listener_stop(e->listener);
	pool_stop(e->pool); /* batches still in flight come back to pending */

	log_info("totals notifications=%llu unknown_channel=%llu",
	         (unsigned long long)listener_notifications(e->listener),
	         (unsigned long long)listener_unknown_channel(e->listener));
	const struct batch_channel *ch;
	for (size_t i = 0; (ch = batcher_channel(e->batcher, i)) != NULL; i++)
		log_info(
		    "totals channel=%s keys_received=%llu keys_malformed=%llu keys_overflowed=%llu keys_refreshed=%llu"
		    " rows_written=%llu batches=%llu batches_failed=%llu",
		    ch->name, (unsigned long long)ch->keys_received, (unsigned long long)ch->keys_malformed,
		    (unsigned long long)ch->keys_overflowed, (unsigned long long)ch->keys_refreshed,
		    (unsigned long long)ch->rows_written, (unsigned long long)ch->batches_ok,
		    (unsigned long long)ch->batches_failed);
	const struct queue_channel *qc;
	for (size_t i = 0; (qc = queues_channel(e->queues, i)) != NULL; i++)
		log_info("totals channel=%s delivery=queue rings=%llu drains=%llu keys_drained=%llu rows_written=%llu"
		         " failures=%llu",
		         qc->name, (unsigned long long)qc->rings, (unsigned long long)qc->drains,
		         (unsigned long long)qc->keys_drained, (unsigned long long)qc->rows_written,
		         (unsigned long long)qc->failures);

	log_info("totals poison_keys_isolated=%llu poison_keys_recovered=%llu",
	         (unsigned long long)poison_found_total(e->poison),
	         (unsigned long long)poison_recovered_total(e->poison));

	size_t pending = batcher_pending(e->batcher);
	if (pending > 0)
		log_warning("stopped %s with keys not refreshed pending_keys=%zu (the next start reconciles them)", how,
		            pending);
	else
		log_info("stopped %s", how);
	ev_break(e->loop, EVBREAK_ALL);
}

static void dispatch(struct engine *e)
{
	if (e->phase == PHASE_STOPPED)
		return;
	if (e->dispatching) {
		e->dispatch_again = true;
		return;
	}
	e->dispatching = true;
	do {
		e->dispatch_again = false;
		struct pool_worker *w;
		while ((w = pool_acquire_idle(e->pool)) != NULL) {
			ev_tstamp now = ev_now(e->loop);
			bool reconcile_first = (e->turn++ & 1) != 0;
			if (start_poison_pass(e, w))
				continue;
			if (reconcile_first && start_reconcile(e, w, now))
				continue;
			if (start_refresh(e, w, now) || start_queue_step(e, w, now))
				continue;
			if (!reconcile_first && start_reconcile(e, w, now))
				continue;
			break;
		}
	} while (e->dispatch_again);
	e->dispatching = false;

	if (e->phase == PHASE_STOPPING && pool_busy(e->pool) == 0 && batcher_pending(e->batcher) == 0) {
		finish_stop(e, "cleanly");
		return;
	}
	/* A reconcile chunk waiting out a retry delay needs a wake-up of its own. */
	ev_tstamp retry = next_walk_retry(e, ev_now(e->loop));
	if (retry > 0) {
		ev_timer_stop(e->loop, &e->walk_retry_timer);
		ev_timer_set(&e->walk_retry_timer, retry - ev_now(e->loop), 0.);
		ev_timer_start(e->loop, &e->walk_retry_timer);
	}
}

/* ---- callbacks from the listener, the pool and timers ---- */

/* Notifications sent while nobody listened are lost, queued keys are not: a
 * rollup whose channels all use queue mode needs no catch-up walk. */
static bool needs_catch_up(const struct catalog *cat, const char *rollup)
{
	bool any = false;
	for (size_t i = 0; i < cat->n_channels; i++) {
		if (strcmp(cat->channels[i].rollup, rollup) != 0)
			continue;
		if (!cat->channels[i].queue)
			return true;
		any = true;
	}
	return !any;
}

static void on_listening(struct catalog *cat, bool new_session, void *arg)
{
	struct engine *e = arg;
	queues_set_channels(e->queues, cat, new_session);
	size_t dropped = batcher_set_channels(e->batcher, cat);
	if (dropped > 0)
		log_warning("pending keys dropped with channels no longer configured keys=%zu", dropped);

	struct catalog old = e->catalog;
	rebuild_walks(e, cat);
	e->catalog = *cat;
	memset(cat, 0, sizeof(*cat));

	for (size_t i = 0; i < e->n_walks; i++) {
		struct walk *w = &e->walks[i];
		bool is_new = catalog_find_rollup(&old, w->rollup) == NULL;
		/* Notifications sent while nobody listened are lost: reconcile what
		 * this session (or this reload) just started listening for. */
		if ((new_session || is_new) && e->cfg->reconcile_on_connect && needs_catch_up(&e->catalog, w->rollup))
			walk_begin(e, w, "catch-up");
	}
	catalog_free(&old);
	/* Keys isolated before this session (or by another rollupd) are retried
	 * on their schedule: one pass finds out when. */
	if (new_session)
		poison_schedule(e->poison, 0);
	update_readiness(e);
	report_status(e);
	dispatch(e);
}

/* Keys were dropped at the pending cap: a reconcile walk covers them; one
 * that is already past their place in the key space walks once more. */
static void on_overflow(const char *rollup, const char *channel, size_t dropped, void *arg)
{
	struct engine *e = arg;
	struct walk *w = find_walk(e, rollup);
	if (w == NULL || e->phase == PHASE_STOPPING)
		return;
	if (!w->active) {
		log_warning("pending keys over batch.max_pending_keys=%d channel=%s dropped=%zu; reconciling rollup=%s",
		            e->cfg->batch_max_pending_keys, channel, dropped, rollup);
		walk_begin(e, w, "overflow");
		dispatch(e);
	} else if (!w->again) {
		log_warning("pending keys over batch.max_pending_keys=%d channel=%s dropped=%zu; rollup=%s will be"
		            " reconciled again after the walk under way",
		            e->cfg->batch_max_pending_keys, channel, dropped, rollup);
		w->again = true;
	}
}

/* Another rollupd is active: drop every channel and walk (its catch-up at
 * takeover covers the keys this process held), keep the workers connected
 * for a quick takeover, and count as started. */
static void on_standby(void *arg)
{
	struct engine *e = arg;
	struct catalog none = {0};
	queues_set_channels(e->queues, &none, true);
	size_t dropped = batcher_set_channels(e->batcher, &none);
	if (dropped > 0)
		log_warning("standby: pending keys left to the active rollupd keys=%zu", dropped);
	rebuild_walks(e, &none);
	catalog_free(&e->catalog);
	update_readiness(e);
	report_status(e);
}

static void on_listener_down(const char *reason, bool was_up, uint32_t failures, void *arg)
{
	struct engine *e = arg;

	if (e->phase == PHASE_STOPPING || e->phase == PHASE_STOPPED)
		return;
	if (was_up) {
		e->listener_losses++;
		log_error(
		    "listener lost; reconnecting, then reconciling before trusting notifications again error=\"%s\"",
		    reason);
	}
	update_readiness(e);
	if (e->phase == PHASE_STARTING && e->cfg->connect_retries > 0 &&
	    failures >= (uint32_t)e->cfg->connect_retries) {
		log_error("database unavailable at start attempts=%u error=\"%s\"", failures, reason);
		e->exit_code = EX_UNAVAILABLE;
		finish_stop(e, "at start");
	}
}

static void on_keys(void *arg)
{
	dispatch(arg);
}

static bool on_ring(const char *channel, void *arg)
{
	struct engine *e = arg;
	struct queue_channel *ch = queues_find(e->queues, channel);
	if (ch == NULL)
		return false;
	queues_ring(e->queues, ch);
	dispatch(e);
	return true;
}

static void on_queue_due(void *arg)
{
	dispatch(arg);
}

static void on_worker_ready(struct pool_worker *w, void *arg)
{
	(void)w;
	dispatch(arg);
}

static void on_worker_down(struct pool_worker *w, const char *reason, bool was_up, void *arg)
{
	struct engine *e = arg;
	/* A stop closes every worker on purpose; anything else is worth a line. */
	if (was_up && e->phase != PHASE_STOPPED) {
		e->worker_losses++;
		log_warning("worker lost worker=%u error=\"%s\"", w->id, reason);
	}
}

static void on_batches_due(void *arg)
{
	dispatch(arg);
}

static void shutdown_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct engine *e = t->data;
	(void)loop;
	(void)revents;

	log_warning("shutdown bound reached timeout_ms=%d in_flight=%zu; cancelling", e->cfg->shutdown_timeout_ms,
	            pool_busy(e->pool));
	for (size_t i = 0; i < pool_size(e->pool); i++) {
		struct pool_worker *w = pool_worker(e->pool, i);
		if (w->job != NULL)
			pgconn_cancel(w->conn);
	}
	finish_stop(e, "after the shutdown bound");
}

static void reconcile_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct engine *e = t->data;
	(void)loop;
	(void)revents;

	/* The periodic safety net: walk every rollup not already walking. */
	if (e->phase != PHASE_STOPPING && listener_listening(e->listener)) {
		for (size_t i = 0; i < e->n_walks; i++)
			if (!e->walks[i].active)
				walk_begin(e, &e->walks[i], "interval");
	}
	dispatch(e);
}

static void walk_retry_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	dispatch(t->data);
}

/* ---- /metrics, /healthz, /livez ---- */

static void counter(struct http_body *b, const char *name, const char *help)
{
	http_body_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
}

static void gauge(struct http_body *b, const char *name, const char *help)
{
	http_body_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

static void render_metrics(struct engine *e, struct http_body *b)
{
	const struct batch_channel *ch;
	const struct queue_channel *qc;
	size_t i;

	gauge(b, "rollupd_ready", "1 while listening on every channel and caught up (what /healthz reports).");
	http_body_printf(b, "rollupd_ready %d\n", e->ready && !listener_standby(e->listener));
	gauge(b, "rollupd_standby", "1 while waiting as the standby of another rollupd.");
	http_body_printf(b, "rollupd_standby %d\n", listener_standby(e->listener));
	gauge(b, "rollupd_listener_connected", "1 while the listener's LISTEN is in force.");
	http_body_printf(b, "rollupd_listener_connected %d\n", listener_listening(e->listener));
	gauge(b, "rollupd_workers", "Worker connections, by state.");
	http_body_printf(b, "rollupd_workers{state=\"connected\"} %zu\nrollupd_workers{state=\"configured\"} %zu\n",
	                 pool_connected(e->pool), pool_size(e->pool));
	counter(b, "rollupd_connections_lost_total",
	        "Sessions lost (listener or worker), each reconnected with backoff.");
	http_body_printf(b, "rollupd_connections_lost_total{conn=\"listener\"} %llu\n",
	                 (unsigned long long)e->listener_losses);
	http_body_printf(b, "rollupd_connections_lost_total{conn=\"worker\"} %llu\n",
	                 (unsigned long long)e->worker_losses);
	counter(b, "rollupd_notifications_total", "Notifications received.");
	http_body_printf(b, "rollupd_notifications_total %llu\n",
	                 (unsigned long long)listener_notifications(e->listener));

	counter(b, "rollupd_keys_received_total", "Keys received per notify-mode channel (before dedup).");
	for (i = 0; (ch = batcher_channel(e->batcher, i)) != NULL; i++)
		http_body_printf(b, "rollupd_keys_received_total{channel=\"%s\"} %llu\n", ch->name,
		                 (unsigned long long)ch->keys_received);
	counter(b, "rollupd_keys_refreshed_total", "Keys refreshed per channel (notify batches and queue drains).");
	for (i = 0; (ch = batcher_channel(e->batcher, i)) != NULL; i++)
		http_body_printf(b, "rollupd_keys_refreshed_total{channel=\"%s\"} %llu\n", ch->name,
		                 (unsigned long long)ch->keys_refreshed);
	for (i = 0; (qc = queues_channel(e->queues, i)) != NULL; i++)
		http_body_printf(b, "rollupd_keys_refreshed_total{channel=\"%s\"} %llu\n", qc->name,
		                 (unsigned long long)qc->keys_drained);
	counter(b, "rollupd_rows_written_total", "Derived rows written or deleted per channel.");
	for (i = 0; (ch = batcher_channel(e->batcher, i)) != NULL; i++)
		http_body_printf(b, "rollupd_rows_written_total{channel=\"%s\"} %llu\n", ch->name,
		                 (unsigned long long)ch->rows_written);
	for (i = 0; (qc = queues_channel(e->queues, i)) != NULL; i++)
		http_body_printf(b, "rollupd_rows_written_total{channel=\"%s\"} %llu\n", qc->name,
		                 (unsigned long long)qc->rows_written);
	counter(b, "rollupd_batches_total", "Refresh batches and queue drains, by result.");
	for (i = 0; (ch = batcher_channel(e->batcher, i)) != NULL; i++)
		http_body_printf(b,
		                 "rollupd_batches_total{channel=\"%s\",result=\"ok\"} %llu\n"
		                 "rollupd_batches_total{channel=\"%s\",result=\"failed\"} %llu\n",
		                 ch->name, (unsigned long long)ch->batches_ok, ch->name,
		                 (unsigned long long)ch->batches_failed);
	for (i = 0; (qc = queues_channel(e->queues, i)) != NULL; i++)
		http_body_printf(b,
		                 "rollupd_batches_total{channel=\"%s\",result=\"ok\"} %llu\n"
		                 "rollupd_batches_total{channel=\"%s\",result=\"failed\"} %llu\n",
		                 qc->name, (unsigned long long)qc->drains, qc->name, (unsigned long long)qc->failures);
	counter(b, "rollupd_keys_rejected_total", "Keys not taken, by reason (malformed, overflowed the pending cap).");
	for (i = 0; (ch = batcher_channel(e->batcher, i)) != NULL; i++)
		http_body_printf(b,
		                 "rollupd_keys_rejected_total{channel=\"%s\",reason=\"malformed\"} %llu\n"
		                 "rollupd_keys_rejected_total{channel=\"%s\",reason=\"overflow\"} %llu\n",
		                 ch->name, (unsigned long long)ch->keys_malformed, ch->name,
		                 (unsigned long long)ch->keys_overflowed);
	gauge(b, "rollupd_pending_keys", "Keys waiting in memory per notify-mode channel.");
	for (i = 0; (ch = batcher_channel(e->batcher, i)) != NULL; i++)
		http_body_printf(b, "rollupd_pending_keys{channel=\"%s\"} %zu\n", ch->name, keyset_count(ch->pending));
	gauge(b, "rollupd_queue_depth", "Queued keys per queue-mode channel, at the last stats step.");
	for (i = 0; (qc = queues_channel(e->queues, i)) != NULL; i++)
		if (qc->depth >= 0)
			http_body_printf(b, "rollupd_queue_depth{channel=\"%s\"} %lld\n", qc->name, qc->depth);
	gauge(b, "rollupd_queue_oldest_key_seconds", "Age of the oldest queued key, at the last stats step.");
	for (i = 0; (qc = queues_channel(e->queues, i)) != NULL; i++)
		if (qc->depth >= 0)
			http_body_printf(b, "rollupd_queue_oldest_key_seconds{channel=\"%s\"} %.3f\n", qc->name,
			                 qc->oldest_ms / 1000.0);
	counter(b, "rollupd_poison_keys_total", "Keys isolated because their refresh failed, and recovered since.");
	http_body_printf(b, "rollupd_poison_keys_total{event=\"isolated\"} %llu\n",
	                 (unsigned long long)poison_found_total(e->poison));
	http_body_printf(b, "rollupd_poison_keys_total{event=\"recovered\"} %llu\n",
	                 (unsigned long long)poison_recovered_total(e->poison));
	gauge(b, "rollupd_reconcile_last_success_timestamp_seconds", "When each rollup's last full walk ended.");
	for (i = 0; i < e->n_walks; i++)
		if (e->walks[i].last_done > 0)
			http_body_printf(b, "rollupd_reconcile_last_success_timestamp_seconds{rollup=\"%s\"} %.3f\n",
			                 e->walks[i].rollup, e->walks[i].last_done);
	gauge(b, "rollupd_reconcile_running", "1 while a reconcile walk of the rollup is under way.");
	for (i = 0; i < e->n_walks; i++)
		http_body_printf(b, "rollupd_reconcile_running{rollup=\"%s\"} %d\n", e->walks[i].rollup,
		                 e->walks[i].active);
	gauge(b, "rollupd_notification_queue_usage",
	      "pg_notification_queue_usage() at the listener's last ping (0-1).");
	if (listener_notify_queue_usage(e->listener) >= 0)
		http_body_printf(b, "rollupd_notification_queue_usage %g\n", listener_notify_queue_usage(e->listener));
	http_body_printf(b, "# HELP rollupd_queue_wait_seconds How long drained keys waited in the queue, from the"
	                    " writer's transaction to their drain.\n# TYPE rollupd_queue_wait_seconds histogram\n");
	uint64_t cumulative = 0;
	for (i = 0; i < N_BOUNDS; i++) {
		cumulative += e->wait_counts[i];
		http_body_printf(b, "rollupd_queue_wait_seconds_bucket{le=\"%g\"} %llu\n", DURATION_BOUNDS_S[i],
		                 (unsigned long long)cumulative);
	}
	http_body_printf(b,
	                 "rollupd_queue_wait_seconds_bucket{le=\"+Inf\"} %llu\n"
	                 "rollupd_queue_wait_seconds_sum %.6f\nrollupd_queue_wait_seconds_count %llu\n",
	                 (unsigned long long)e->wait_count, e->wait_sum_s, (unsigned long long)e->wait_count);
	http_body_printf(b, "# HELP rollupd_refresh_duration_seconds Refresh batches and queue drains that took keys.\n"
	                    "# TYPE rollupd_refresh_duration_seconds histogram\n");
	for (i = 0; i < N_BOUNDS; i++)
		http_body_printf(b, "rollupd_refresh_duration_seconds_bucket{le=\"%g\"} %llu\n", DURATION_BOUNDS_S[i],
		                 (unsigned long long)e->duration_buckets[i]);
	http_body_printf(b,
	                 "rollupd_refresh_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
	                 "rollupd_refresh_duration_seconds_sum %.6f\nrollupd_refresh_duration_seconds_count %llu\n",
	                 (unsigned long long)e->duration_count, e->duration_sum_s,
	                 (unsigned long long)e->duration_count);
}

static int on_http(const char *path, struct http_body *body, const char **content_type, void *arg)
{
	struct engine *e = arg;
	if (strcmp(path, "/metrics") == 0) {
		*content_type = "text/plain; version=0.0.4; charset=utf-8";
		render_metrics(e, body);
		return 200;
	}
	if (strcmp(path, "/healthz") == 0) {
		/* Ready: the listener LISTENs and the catch-up is done. */
		bool ok = e->ready && !listener_standby(e->listener) && e->phase == PHASE_RUNNING;
		http_body_printf(body, "%s\n", ok ? "ready" : state_name(e));
		return ok ? 200 : 503;
	}
	if (strcmp(path, "/livez") == 0) {
		http_body_printf(body, "alive\n"); /* the loop answers: independent of the database */
		return 200;
	}
	http_body_printf(body, "not found: /metrics, /healthz, /livez\n");
	return 404;
}

/* Listen on metrics.listen (again, when it changed). At start a failure is
 * fatal; on reload the old listener is kept. */
static int apply_metrics_listen(struct engine *e, bool at_start)
{
	const char *want = e->cfg->metrics_listen;
	if ((want == NULL && e->http_listen == NULL) ||
	    (want != NULL && e->http_listen != NULL && strcmp(want, e->http_listen) == 0))
		return 0;
	struct http_server *server = NULL;
	char err[256];
	if (want != NULL && (server = http_server_new(e->loop, want, on_http, e, err, sizeof(err))) == NULL) {
		log_error("cannot serve metrics error=\"%s\"%s", err, at_start ? "" : " (the old listener stays)");
		return -1;
	}
	http_server_free(e->http);
	free(e->http_listen);
	e->http = server;
	e->http_listen = want ? strdup(want) : NULL;
	if (want != NULL)
		log_info("serving /metrics /healthz /livez listen=%s", want);
	return 0;
}

/* ---- public ---- */

struct engine *engine_new(struct ev_loop *loop, struct config *cfg, void (*on_ready)(void *arg), void *arg)
{
	struct engine *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->loop = loop;
	e->cfg = cfg;
	e->on_ready = on_ready;
	e->on_ready_arg = arg;
	e->exit_code = EX_OK;

	struct batch_policy policy = policy_from(cfg);
	struct pgconn_settings settings = settings_from(cfg);
	struct listener_handler lh = {.on_listening = on_listening,
	                              .on_down = on_listener_down,
	                              .on_keys = on_keys,
	                              .on_ring = on_ring,
	                              .on_standby = on_standby,
	                              .on_overflow = on_overflow,
	                              .arg = e};
	struct queue_policy qpolicy = queue_policy_from(cfg);
	struct pool_handler ph = {.on_ready = on_worker_ready, .on_down = on_worker_down, .arg = e};

	e->batcher = batcher_new(loop, &policy, on_batches_due, e);
	e->queues = e->batcher ? queues_new(loop, &qpolicy, on_queue_due, e) : NULL;
	struct poison_policy ppolicy = poison_policy_from(cfg);
	e->poison = e->queues ? poison_new(loop, &ppolicy, on_queue_due, e) : NULL;
	e->pool = e->poison ? pool_new(loop, &settings, (size_t)cfg->pool_size, &ph) : NULL;
	e->listener = e->pool ? listener_new(loop, &settings, cfg, e->batcher, &lh) : NULL;
	if (e->listener == NULL) {
		engine_free(e);
		return NULL;
	}
	ev_init(&e->shutdown_timer, shutdown_timer_cb);
	e->shutdown_timer.data = e;
	ev_init(&e->reconcile_timer, reconcile_timer_cb);
	e->reconcile_timer.data = e;
	ev_init(&e->walk_retry_timer, walk_retry_timer_cb);
	e->walk_retry_timer.data = e;
	ev_init(&e->watchdog_timer, watchdog_timer_cb);
	e->watchdog_timer.data = e;
	ev_init(&e->summary_timer, summary_timer_cb);
	e->summary_timer.data = e;
	return e;
}

void engine_free(struct engine *e)
{
	if (e == NULL)
		return;
	ev_timer_stop(e->loop, &e->shutdown_timer);
	ev_timer_stop(e->loop, &e->reconcile_timer);
	ev_timer_stop(e->loop, &e->walk_retry_timer);
	ev_timer_stop(e->loop, &e->watchdog_timer);
	ev_timer_stop(e->loop, &e->summary_timer);
	http_server_free(e->http);
	free(e->http_listen);
	listener_free(e->listener);
	/* In-flight jobs complete with "stopped" while the pool stops. */
	if (e->pool)
		pool_stop(e->pool);
	pool_free(e->pool);
	batcher_free(e->batcher);
	queues_free(e->queues);
	poison_free(e->poison);
	for (size_t i = 0; i < e->n_walks; i++)
		walk_free(&e->walks[i]);
	free(e->walks);
	catalog_free(&e->catalog);
	if (e->cfg) {
		config_free(e->cfg);
		free(e->cfg);
	}
	free(e);
}

static void arm_interval(struct engine *e)
{
	double interval = e->cfg->reconcile_interval_s;
	ev_timer_stop(e->loop, &e->reconcile_timer);
	if (interval > 0) {
		ev_timer_set(&e->reconcile_timer, interval, interval);
		ev_timer_start(e->loop, &e->reconcile_timer);
	}
}

int engine_start(struct engine *e)
{
	log_info("starting pool_size=%d max_keys=%d window_ms=%d", e->cfg->pool_size, e->cfg->batch_max_keys,
	         e->cfg->batch_window_ms);
	if (apply_metrics_listen(e, true) != 0) {
		e->exit_code = EX_UNAVAILABLE;
		return -1;
	}
	pool_start(e->pool);
	listener_start(e->listener);
	arm_interval(e);
	e->summary_at = ev_now(e->loop);
	arm_summary(e);
	double watchdog = sdnotify_watchdog_interval();
	if (watchdog > 0) {
		ev_timer_set(&e->watchdog_timer, watchdog, watchdog);
		ev_timer_start(e->loop, &e->watchdog_timer);
		log_info("systemd watchdog: pinging every %.1f s", watchdog);
	}
	report_status(e);
	return 0;
}

void engine_reload(struct engine *e, struct config *cfg)
{
	struct config *old = e->cfg;
	struct batch_policy policy = policy_from(cfg);
	struct pgconn_settings settings = settings_from(cfg);
	bool conninfo_changed = strcmp(old->conninfo, cfg->conninfo) != 0;

	/* Before the first READY=1, systemd is still waiting for the start: say nothing. */
	bool tell_systemd = e->phase == PHASE_RUNNING;
	if (tell_systemd)
		sdnotify_send("RELOADING=1");
	e->cfg = cfg;
	log_set_level(cfg->log_level);
	batcher_set_policy(e->batcher, &policy);
	struct queue_policy qpolicy = queue_policy_from(cfg);
	queues_set_policy(e->queues, &qpolicy);
	struct poison_policy ppolicy = poison_policy_from(cfg);
	poison_set_policy(e->poison, &ppolicy);
	pool_update(e->pool, &settings);
	pool_resize(e->pool, (size_t)cfg->pool_size);
	listener_reload(e->listener, cfg, &settings);
	if (old->reconcile_interval_s != cfg->reconcile_interval_s)
		arm_interval(e);
	if (old->log_summary_interval_s != cfg->log_summary_interval_s)
		arm_summary(e);
	apply_metrics_listen(e, false);
	config_free(old);
	free(old);
	log_info("configuration reloaded path=%s pool_size=%d max_keys=%d window_ms=%d log_level=%s%s", cfg->path,
	         cfg->pool_size, cfg->batch_max_keys, cfg->batch_window_ms, log_level_name(cfg->log_level),
	         conninfo_changed ? " conninfo=changed" : "");
	if (tell_systemd)
		sdnotify_send("READY=1");
	report_status(e);
	dispatch(e);
}

void engine_stop(struct engine *e)
{
	if (e->phase == PHASE_STOPPING) {
		log_warning("second stop signal: stopping now");
		finish_stop(e, "on a second signal");
		return;
	}
	if (e->phase == PHASE_STOPPED)
		return;
	log_info("stopping: finishing in-flight batches timeout_ms=%d in_flight=%zu pending_keys=%zu",
	         e->cfg->shutdown_timeout_ms, pool_busy(e->pool), batcher_pending(e->batcher));
	e->phase = PHASE_STOPPING;
	sdnotify_send("STOPPING=1");
	listener_stop(e->listener);
	ev_timer_stop(e->loop, &e->reconcile_timer);
	ev_timer_stop(e->loop, &e->walk_retry_timer);
	for (size_t i = 0; i < e->n_walks; i++)
		e->walks[i].active = false;
	batcher_set_draining(e->batcher, true);
	ev_timer_set(&e->shutdown_timer, e->cfg->shutdown_timeout_ms / 1000.0, 0.);
	ev_timer_start(e->loop, &e->shutdown_timer);
	dispatch(e);
}

int engine_exit_code(const struct engine *e)
{
	return e->exit_code;
}
