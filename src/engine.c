/*
 * engine: dispatch over idle workers. Every event that can create work
 * (keys arrived, a window ended, a worker came up or finished, a walk chunk
 * returned) ends in dispatch(), which fills idle workers until nothing is
 * due: a poison pass first, then reconcile chunks and the sources' jobs in
 * alternation, so neither a notification flood nor a long walk starves the
 * other.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "http.h"
#include "listener.h"
#include "log.h"
#include "poison.h"
#include "pool.h"
#include "sdnotify.h"
#include "source.h"
#include "stats.h"
#include "walk.h"
#include "xalloc.h"

enum engine_phase {
	PHASE_STARTING, /* not yet listening and caught up once */
	PHASE_RUNNING,
	PHASE_STOPPING,
	PHASE_STOPPED,
};

/* A job on a worker: the job its owner filled in, and where it runs. */
struct engine_job {
	struct job job;
	struct engine *e;
	struct pool_worker *worker;
};

struct engine {
	struct ev_loop *loop;
	struct config *cfg;
	enum engine_phase phase;
	int exit_code;

	struct listener *listener;
	struct source *sources[DELIVERY_MODES];
	size_t n_sources;
	struct walks *walks;
	struct poison *poison;
	struct pool *pool;
	struct stats *stats;
	struct catalog catalog;

	bool ready;            /* listening and caught up */
	bool applying_catalog; /* readiness is decided once the catalog is applied */
	bool dispatching;
	bool dispatch_again;
	unsigned turn;

	ev_timer shutdown_timer;
	ev_timer reconcile_timer;  /* reconcile.interval_s */
	ev_timer walk_retry_timer; /* a failed reconcile chunk's retry delay */
	ev_timer watchdog_timer;   /* WATCHDOG=1 when systemd asks for it */
	ev_timer summary_timer;    /* log.summary_interval_s */
	struct http_server *http;  /* metrics.listen */
	char *http_listen;         /* what it listens on */
	void (*on_ready)(void *arg);
	void *on_ready_arg;
};

static void dispatch(struct engine *e);

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

static struct poison_policy poison_policy_from(const struct config *cfg)
{
	return (struct poison_policy){
	    .max_keys = (uint32_t)cfg->batch_max_keys,
	    .retry_min_ms = (uint32_t)cfg->retry_min_ms,
	    .retry_max_ms = (uint32_t)cfg->retry_max_ms,
	};
}

static struct walk_policy walk_policy_from(const struct config *cfg)
{
	return (struct walk_policy){
	    .chunk_keys = cfg->reconcile_chunk_keys,
	    .retry_min_ms = (uint32_t)cfg->retry_min_ms,
	    .retry_max_ms = (uint32_t)cfg->retry_max_ms,
	};
}

static const char *state_name(const struct engine *e)
{
	return e->phase == PHASE_STOPPING        ? "stopping"
	       : listener_standby(e->listener)   ? "standby"
	       : e->ready                        ? "ready"
	       : listener_listening(e->listener) ? "catching up"
	                                         : "connecting";
}

/* What stats.c renders from, as of now. */
static struct stats_view view_of(const struct engine *e)
{
	return (struct stats_view){
	    .state = state_name(e),
	    .ready = e->ready && !listener_standby(e->listener),
	    .standby = listener_standby(e->listener),
	    .listening = listener_listening(e->listener),
	    .rollups = e->catalog.n_rollups,
	    .channels = e->catalog.n_channels,
	    .workers_connected = pool_connected(e->pool),
	    .workers_configured = pool_size(e->pool),
	    .notifications = listener_notifications(e->listener),
	    .unknown_channel = listener_unknown_channel(e->listener),
	    .notify_queue_usage = listener_notify_queue_usage(e->listener),
	    .poison_found = poison_found_total(e->poison),
	    .poison_recovered = poison_recovered_total(e->poison),
	    .sources = e->sources,
	    .n_sources = e->n_sources,
	    .walks = e->walks,
	};
}

static void report_status(struct engine *e)
{
	char status[320];
	struct stats_view v = view_of(e);
	stats_status(e->stats, &v, status, sizeof(status));
	sdnotify_send(status);
}

static size_t pending_keys(const struct engine *e)
{
	struct stats_view v = view_of(e);
	return stats_pending(&v);
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

/* One line every log.summary_interval_s: what was done since the last one. */
static void summary_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct engine *e = t->data;
	(void)revents;
	struct stats_view v = view_of(e);
	stats_summary(e->stats, &v, ev_now(loop));
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

static bool sources_ready(const struct engine *e)
{
	for (size_t i = 0; i < e->n_sources; i++)
		if (e->sources[i]->ops->ready != NULL && !e->sources[i]->ops->ready(e->sources[i]->impl))
			return false;
	return true;
}

static void update_readiness(struct engine *e)
{
	bool standby = listener_standby(e->listener);
	bool ready = standby || (listener_listening(e->listener) && !walks_catching_up(e->walks) && sources_ready(e));

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

static void on_job_done(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct engine_job *ej = arg;
	struct engine *e = ej->e;
	(void)c;
	ej->job.done(&ej->job, res, error, ev_now(e->loop));
	pool_release(e->pool, ej->worker);
	free(ej);
	dispatch(e);
}

/* Send the job `ej` filled in on its worker; false (and the job completed as
 * not sent, the worker freed) when the connection would not take it. */
static bool run_job(struct engine *e, struct engine_job *ej)
{
	ej->job.started = ev_now(e->loop);
	pool_assign(e->pool, ej->worker, ej);
	if (pgconn_query(ej->worker->conn, ej->job.sql, ej->job.nparams, ej->job.params, on_job_done, ej) == 0)
		return true;
	/* Not sent: the connection re-establishes itself; the work is given back. */
	ej->job.done(&ej->job, NULL, "not sent: the connection is being re-established", ev_now(e->loop));
	pool_release(e->pool, ej->worker);
	free(ej);
	return false;
}

static void walk_chunk_done(struct job *job, const PGresult *res, const char *error, ev_tstamp now)
{
	struct engine *e = job->owner;
	if (error == NULL && (PQntuples(res) != 1 || PQnfields(res) != 2))
		error = "unexpected result shape";
	const char *last_key = error == NULL && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : NULL;
	uint64_t fixed = error == NULL ? strtoull(PQgetvalue(res, 0, 1), NULL, 10) : 0;
	if (walks_complete(e->walks, job->u.chunk, error, last_key, fixed, now))
		update_readiness(e);
}

static bool take_walk_chunk(struct engine *e, struct job *job, ev_tstamp now)
{
	struct walk_chunk *chunk = walks_take(e->walks, now);
	if (chunk == NULL)
		return false;
	job->kind = JOB_RECONCILE;
	job->sql = chunk->sql;
	job->nparams = 2;
	job->params[0] = chunk->params[0];
	job->params[1] = chunk->params[1];
	job->owner = e;
	job->done = walk_chunk_done;
	job->u.chunk = chunk;
	return true;
}

static bool take_from_sources(struct engine *e, struct job *job, ev_tstamp now)
{
	for (size_t i = 0; i < e->n_sources; i++)
		if (e->sources[i]->ops->take(e->sources[i]->impl, now, job))
			return true;
	return false;
}

/* The next due job for an idle worker, or false. */
static bool take_job(struct engine *e, struct job *job, ev_tstamp now)
{
	if (e->phase == PHASE_RUNNING && poison_take(e->poison, job))
		return true;
	bool walk_first = (e->turn++ & 1) != 0;
	if (walk_first && take_walk_chunk(e, job, now))
		return true;
	if (take_from_sources(e, job, now))
		return true;
	return !walk_first && take_walk_chunk(e, job, now);
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

	struct stats_view v = view_of(e);
	stats_log_totals(e->stats, &v);
	size_t pending = stats_pending(&v);
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
		while ((w = pool_idle(e->pool)) != NULL) {
			struct engine_job *ej = xcalloc(1, sizeof(*ej));
			ej->e = e;
			ej->worker = w;
			if (!take_job(e, &ej->job, ev_now(e->loop))) {
				free(ej);
				break;
			}
			run_job(e, ej);
		}
	} while (e->dispatch_again);
	e->dispatching = false;

	if (e->phase == PHASE_STOPPING && pool_busy(e->pool) == 0 && pending_keys(e) == 0) {
		finish_stop(e, "cleanly");
		return;
	}
	/* A reconcile chunk waiting out a retry delay needs a wake-up of its own. */
	ev_tstamp retry = walks_next_retry(e->walks, ev_now(e->loop));
	if (retry > 0) {
		ev_timer_stop(e->loop, &e->walk_retry_timer);
		ev_timer_set(&e->walk_retry_timer, retry - ev_now(e->loop), 0.);
		ev_timer_start(e->loop, &e->walk_retry_timer);
	}
}

/* ---- callbacks from the sources, the listener, the pool and timers ---- */

static struct source *source_of(const struct engine *e, enum delivery mode)
{
	for (size_t i = 0; i < e->n_sources; i++)
		if (e->sources[i]->ops->mode == mode)
			return e->sources[i];
	return NULL;
}

/* Did one of `rollup`'s channels change delivery mode between the catalogs? */
static bool delivery_changed(const struct catalog *old, const struct catalog *cat, const char *rollup)
{
	for (size_t i = 0; i < cat->n_channels; i++) {
		const struct catalog_channel *ch = &cat->channels[i];
		if (strcmp(ch->rollup, rollup) != 0)
			continue;
		const struct catalog_channel *was = catalog_find_channel(old, ch->name);
		if (was != NULL && was->delivery != ch->delivery)
			return true;
	}
	return false;
}

/* A rollup whose keys could have been missed while nobody listened: one with
 * a channel in a mode that loses keys then, or with no channel at all. */
static bool needs_catch_up(const struct engine *e, const char *rollup)
{
	bool any = false;
	for (size_t i = 0; i < e->catalog.n_channels; i++) {
		const struct catalog_channel *ch = &e->catalog.channels[i];
		if (strcmp(ch->rollup, rollup) != 0)
			continue;
		const struct source *s = source_of(e, ch->delivery);
		if (s == NULL || s->ops->loses_keys_while_away)
			return true;
		any = true;
	}
	return !any;
}

static void source_due(void *arg)
{
	dispatch(arg);
}

static bool source_reconcile(void *arg, const char *rollup, enum walk_reason reason)
{
	struct engine *e = arg;
	bool arranged = walks_begin_or_again(e->walks, rollup, reason, ev_now(e->loop));
	update_readiness(e);
	dispatch(e);
	return arranged;
}

static bool source_walking(void *arg, const char *rollup)
{
	struct engine *e = arg;
	return walks_active(e->walks, rollup);
}

static void source_state_changed(void *arg)
{
	struct engine *e = arg;
	if (!e->applying_catalog && (e->phase == PHASE_STARTING || e->phase == PHASE_RUNNING))
		update_readiness(e);
}

static bool source_fatal(void *arg, int code, const char *reason)
{
	struct engine *e = arg;
	if (e->phase != PHASE_STARTING)
		return false;
	log_error("cannot start: %s", reason);
	e->exit_code = code;
	finish_stop(e, "at start");
	return true;
}

static void on_listening(struct catalog *cat, bool new_session, void *arg)
{
	struct engine *e = arg;
	e->applying_catalog = true;
	for (size_t i = 0; i < e->n_sources; i++)
		e->sources[i]->ops->set_catalog(e->sources[i]->impl, cat, new_session);

	struct catalog old = e->catalog;
	walks_set_rollups(e->walks, cat);
	e->catalog = *cat;
	memset(cat, 0, sizeof(*cat));

	for (size_t i = 0; i < e->catalog.n_rollups; i++) {
		const char *rollup = e->catalog.rollups[i].name;
		bool is_new = catalog_find_rollup(&old, rollup) == NULL;
		/* Reconcile what this session (or this reload) just started listening for. */
		if ((new_session || is_new) && e->cfg->reconcile_on_connect && needs_catch_up(e, rollup))
			walks_begin(e->walks, rollup, WALK_CATCH_UP, ev_now(e->loop));
		/* Keys that went to the old mode after rollupd last read the catalog
		 * (a queue it no longer drains, a stream it no longer reads) and
		 * keys it held for that mode are found again by a walk. */
		else if (!is_new && delivery_changed(&old, &e->catalog, rollup))
			walks_begin(e->walks, rollup, WALK_DELIVERY_CHANGED, ev_now(e->loop));
	}
	catalog_free(&old);
	e->applying_catalog = false;
	/* Keys isolated before this session (or by another rollupd) are retried
	 * on their schedule: one pass finds out when. */
	if (new_session)
		poison_schedule(e->poison, 0);
	update_readiness(e);
	report_status(e);
	dispatch(e);
}

static bool on_notify(const char *channel, const char *payload, void *arg)
{
	struct engine *e = arg;
	for (size_t i = 0; i < e->n_sources; i++) {
		const struct source *s = e->sources[i];
		if (s->ops->on_notify != NULL && s->ops->on_notify(s->impl, channel, payload))
			return true;
	}
	return false;
}

/* Another rollupd is active: drop every channel and walk (its catch-up at
 * takeover covers the keys this process held), keep the workers connected
 * for a quick takeover, and count as started. */
static void on_standby(void *arg)
{
	struct engine *e = arg;
	struct catalog none = {0};
	e->applying_catalog = true;
	for (size_t i = 0; i < e->n_sources; i++)
		e->sources[i]->ops->set_catalog(e->sources[i]->impl, &none, true);
	e->applying_catalog = false;
	walks_set_rollups(e->walks, &none);
	catalog_free(&e->catalog);
	update_readiness(e);
	report_status(e);
}

static void on_listener_down(const char *reason, bool was_up, uint32_t failures, void *arg)
{
	struct engine *e = arg;

	if (e->phase == PHASE_STOPPING || e->phase == PHASE_STOPPED)
		return;
	for (size_t i = 0; i < e->n_sources; i++)
		if (e->sources[i]->ops->session_lost != NULL)
			e->sources[i]->ops->session_lost(e->sources[i]->impl);
	if (was_up) {
		stats_count_lost(e->stats, STATS_LISTENER);
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
		stats_count_lost(e->stats, STATS_WORKER);
		log_warning("worker lost worker=%u error=\"%s\"", w->id, reason);
	}
}

static void on_poison_due(void *arg)
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
	(void)revents;

	/* The periodic safety net: walk every rollup not already walking. */
	if (e->phase != PHASE_STOPPING && listener_listening(e->listener))
		walks_begin_idle(e->walks, WALK_INTERVAL, ev_now(loop));
	dispatch(e);
}

static void walk_retry_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	dispatch(t->data);
}

/* ---- /metrics, /healthz, /livez ---- */

static int on_http(const char *path, struct http_body *body, const char **content_type, void *arg)
{
	struct engine *e = arg;
	if (strcmp(path, "/metrics") == 0) {
		struct stats_view v = view_of(e);
		*content_type = "text/plain; version=0.0.4; charset=utf-8";
		stats_render_metrics(e->stats, &v, body);
		return 200;
	}
	if (strcmp(path, "/healthz") == 0) {
		/* Ready: the listener LISTENs and the catch-up is done. */
		bool ok = e->ready && !listener_standby(e->listener) && e->phase == PHASE_RUNNING;
		http_body_printf(body, "%s\n", ok ? "ready" : state_name(e));
		for (size_t i = 0; i < e->n_sources; i++)
			if (e->sources[i]->ops->report != NULL)
				e->sources[i]->ops->report(e->sources[i]->impl, REPORT_HEALTH, body);
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
	e->http_listen = xstrdup(want);
	if (want != NULL)
		log_info("serving /metrics /healthz /livez listen=%s", want);
	return 0;
}

/* ---- public ---- */

struct engine *engine_new(struct ev_loop *loop, struct config *cfg, void (*on_ready)(void *arg), void *arg)
{
	struct engine *e = xcalloc(1, sizeof(*e));
	e->loop = loop;
	e->cfg = cfg;
	e->on_ready = on_ready;
	e->on_ready_arg = arg;
	e->exit_code = EX_OK;
	e->stats = stats_new();

	struct poison_policy ppolicy = poison_policy_from(cfg);
	e->poison = poison_new(loop, &ppolicy, on_poison_due, e);
	struct walk_policy wpolicy = walk_policy_from(cfg);
	e->walks = walks_new(&wpolicy);
	struct source_env env = {.loop = loop,
	                         .stats = e->stats,
	                         .poison = e->poison,
	                         .due = source_due,
	                         .reconcile = source_reconcile,
	                         .walking = source_walking,
	                         .state_changed = source_state_changed,
	                         .fatal = source_fatal,
	                         .arg = e};
	e->sources[e->n_sources++] = notify_source_new(&env, cfg);
	e->sources[e->n_sources++] = queue_source_new(&env, cfg);
	e->sources[e->n_sources++] = wal_source_new(&env, cfg);

	struct pgconn_settings settings = settings_from(cfg);
	struct pool_handler ph = {.on_ready = on_worker_ready, .on_down = on_worker_down, .arg = e};
	e->pool = pool_new(loop, &settings, (size_t)cfg->pool_size, &ph);
	struct listener_handler lh = {.on_listening = on_listening,
	                              .on_down = on_listener_down,
	                              .on_notify = on_notify,
	                              .on_standby = on_standby,
	                              .arg = e};
	e->listener = listener_new(loop, &settings, cfg, &lh);

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
	pool_stop(e->pool);
	pool_free(e->pool);
	for (size_t i = 0; i < e->n_sources; i++)
		source_free(e->sources[i]);
	walks_free(e->walks);
	poison_free(e->poison);
	stats_free(e->stats);
	catalog_free(&e->catalog);
	config_free(e->cfg);
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
	struct stats_view v = view_of(e);
	stats_summary_start(e->stats, &v, ev_now(e->loop));
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
	struct pgconn_settings settings = settings_from(cfg);
	bool conninfo_changed = strcmp(old->conninfo, cfg->conninfo) != 0;

	/* Before the first READY=1, systemd is still waiting for the start: say nothing. */
	bool tell_systemd = e->phase == PHASE_RUNNING;
	if (tell_systemd)
		sdnotify_send("RELOADING=1");
	e->cfg = cfg;
	log_set_level(cfg->log_level);
	for (size_t i = 0; i < e->n_sources; i++)
		e->sources[i]->ops->reload(e->sources[i]->impl, cfg);
	struct walk_policy wpolicy = walk_policy_from(cfg);
	walks_set_policy(e->walks, &wpolicy);
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
	         e->cfg->shutdown_timeout_ms, pool_busy(e->pool), pending_keys(e));
	e->phase = PHASE_STOPPING;
	sdnotify_send("STOPPING=1");
	listener_stop(e->listener);
	ev_timer_stop(e->loop, &e->reconcile_timer);
	ev_timer_stop(e->loop, &e->walk_retry_timer);
	walks_stop(e->walks);
	for (size_t i = 0; i < e->n_sources; i++)
		e->sources[i]->ops->stop(e->sources[i]->impl);
	ev_timer_set(&e->shutdown_timer, e->cfg->shutdown_timeout_ms / 1000.0, 0.);
	ev_timer_start(e->loop, &e->shutdown_timer);
	dispatch(e);
}

int engine_exit_code(const struct engine *e)
{
	return e->exit_code;
}
