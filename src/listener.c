/*
 * listener: catalog -> LISTEN -> handoff, then notifications -> batcher.
 * Its own little state machine on top of pgconn's.
 */
#include "listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "payload.h"

/* How the listener shows in pg_stat_activity. */
#define LISTENER_APPLICATION_NAME "rollupd listener"

/* The standby lock: pg_try_advisory_lock(ROLLUPD_LOCK_CLASS, standby.lock_id),
 * held by the active rollupd's listener session for as long as it lives. */
#define ROLLUPD_LOCK_CLASS "1919904876" /* "roll" */
static const char STANDBY_LOCK_SQL[] =
    "SELECT CASE WHEN pg_try_advisory_lock(" ROLLUPD_LOCK_CLASS ", $1::integer) THEN 1 ELSE 0 END";

enum listener_step {
	STEP_DOWN,      /* no session */
	STEP_LOCK,      /* trying the standby lock */
	STEP_STANDBY,   /* another rollupd holds it; trying again every standby.poll_ms */
	STEP_CATALOG,   /* reading the catalog */
	STEP_LISTEN,    /* LISTEN in flight */
	STEP_LISTENING, /* listening; notifications flow */
};

struct listener {
	struct ev_loop *loop;
	struct pgconn *conn;
	ev_timer standby_timer;
	ev_timer ping_timer; /* while listening: next ping, or the ping's answer bound */
	bool ping_in_flight;
	const struct config *cfg;
	struct batcher *batcher;
	struct listener_handler handler;
	enum listener_step step;
	bool listening;        /* a LISTEN succeeded on this session */
	bool new_session;      /* this LISTEN is the session's first */
	bool reload_pending;   /* re-read the catalog when the current step ends */
	struct catalog loaded; /* read, not yet listened on */

	uint64_t notifications;
	uint64_t unknown_channel;
	double notify_queue_usage; /* pg_notification_queue_usage() at the last ping; -1 before */
};

static void send_catalog_query(struct listener *l);
static void send_lock_query(struct listener *l);

/*
 * An idle listener hears nothing from a server process that hangs or a peer
 * that vanished without a FIN: it pings every database.ping_interval_ms and
 * gives the session up when the answer takes longer than
 * database.connect_timeout_ms (then reconnects and catches up as usual).
 */
static void schedule_ping(struct listener *l)
{
	ev_timer_stop(l->loop, &l->ping_timer);
	if (l->cfg->ping_interval_ms > 0 && l->step == STEP_LISTENING) {
		ev_timer_set(&l->ping_timer, l->cfg->ping_interval_ms / 1000.0, 0.);
		ev_timer_start(l->loop, &l->ping_timer);
	}
}

static void on_ping_done(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct listener *l = arg;
	l->ping_in_flight = false;
	if (error != NULL) {
		if (pgconn_state(c) == PGCONN_IDLE)
			schedule_ping(l); /* the server answered, with an error: alive */
		return;
	}
	/* The ping's answer: how full the server's notification queue is. */
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		l->notify_queue_usage = strtod(PQgetvalue(res, 0, 0), NULL);
	if (l->reload_pending)
		send_catalog_query(l);
	else
		schedule_ping(l);
}

static void ping_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct listener *l = t->data;
	char reason[128];
	(void)loop;
	(void)revents;
	if (l->ping_in_flight) {
		snprintf(reason, sizeof(reason), "no answer to a ping within %d ms", l->cfg->connect_timeout_ms);
		l->ping_in_flight = false;
		pgconn_fail(l->conn, reason);
		return;
	}
	if (l->step != STEP_LISTENING || pgconn_state(l->conn) != PGCONN_IDLE) {
		schedule_ping(l); /* busy with a reload: its answer is proof enough */
		return;
	}
	if (pgconn_query(l->conn, "SELECT pg_notification_queue_usage()", 0, NULL, on_ping_done, l) != 0)
		return;
	l->ping_in_flight = true;
	ev_timer_set(&l->ping_timer, l->cfg->connect_timeout_ms / 1000.0, 0.);
	ev_timer_start(l->loop, &l->ping_timer);
}

static void on_listen_done(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct listener *l = arg;
	(void)res;

	if (error != NULL) {
		catalog_free(&l->loaded);
		log_error("LISTEN failed error=\"%s\"", error);
		if (pgconn_state(c) == PGCONN_IDLE)
			pgconn_fail(c, "LISTEN failed");
		return;
	}
	l->step = STEP_LISTENING;
	l->listening = true;
	pgconn_confirm(c); /* a session that got this far is good: the backoff starts over */
	schedule_ping(l);
	log_info("listening channels=%zu rollups=%zu backend_pid=%d", l->loaded.n_channels, l->loaded.n_rollups,
	         pgconn_backend_pid(c));
	struct catalog cat = l->loaded;
	memset(&l->loaded, 0, sizeof(l->loaded));
	bool new_session = l->new_session;
	l->new_session = false;
	l->handler.on_listening(&cat, new_session, l->handler.arg);

	if (l->reload_pending)
		send_catalog_query(l);
}

static void on_catalog(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct listener *l = arg;

	if (error != NULL) {
		if (pgconn_state(c) != PGCONN_IDLE)
			return; /* the session is gone; on_down reports it */
		/* A failed attempt like a refused connection: the backoff grows, and
		 * at start database.connect_retries of them end the process. */
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		char reason[512];
		if (state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
			snprintf(reason, sizeof(reason),
			         "no rollupd catalog in this database: install a rollup first"
			         " (psql -d DBNAME -v ON_ERROR_STOP=1 -f " ROLLUPD_SQLDIR "/ROLLUP/install.sql): %s",
			         error);
		else
			snprintf(reason, sizeof(reason), "cannot read the rollup catalog: %s", error);
		pgconn_fail(c, reason); /* logged there, with the attempt and the delay */
		return;
	}
	catalog_free(&l->loaded);
	if (catalog_from_result(res, l->cfg, &l->loaded) != 0) {
		pgconn_fail(c, "catalog has an unexpected shape");
		return;
	}
	if (l->loaded.n_rollups == 0)
		log_warning("no rollup to run: none registered in schema rollupd matches the config; "
		            "install one and send SIGHUP");

	char *sql = catalog_listen_sql(&l->loaded);
	l->step = STEP_LISTEN;
	if (sql == NULL || pgconn_query(c, sql, 0, NULL, on_listen_done, l) != 0) {
		catalog_free(&l->loaded);
		if (sql == NULL)
			log_error("out of memory building LISTEN");
	}
	free(sql);
}

static void send_catalog_query(struct listener *l)
{
	l->reload_pending = false;
	l->step = STEP_CATALOG;
	if (pgconn_query(l->conn, CATALOG_QUERY, 0, NULL, on_catalog, l) != 0)
		log_warning("catalog query not sent; the session is being re-established");
}

static void on_lock_done(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct listener *l = arg;

	if (error != NULL) {
		if (pgconn_state(c) != PGCONN_IDLE)
			return; /* the session is gone; on_down reports it */
		log_error("cannot take the standby lock error=\"%s\"", error);
		pgconn_fail(c, "standby lock failed");
		return;
	}
	bool was_standby = l->step == STEP_STANDBY;
	if (strcmp(PQgetvalue(res, 0, 0), "1") == 0) {
		if (was_standby)
			log_info("active: the standby lock was released, taking over lock_id=%d",
			         l->cfg->standby_lock_id);
		else
			log_info("active: holding the standby lock lock_id=%d", l->cfg->standby_lock_id);
		send_catalog_query(l);
		return;
	}
	l->step = STEP_STANDBY;
	pgconn_confirm(c); /* standing by is a good session too */
	if (!was_standby) {
		log_info("standby: another rollupd holds the lock lock_id=%d; taking over when it is released,"
		         " checking every %d ms",
		         l->cfg->standby_lock_id, l->cfg->standby_poll_ms);
		l->handler.on_standby(l->handler.arg);
	}
	ev_timer_set(&l->standby_timer, l->cfg->standby_poll_ms / 1000.0, 0.);
	ev_timer_start(l->loop, &l->standby_timer);
}

static void send_lock_query(struct listener *l)
{
	char id[16];
	snprintf(id, sizeof(id), "%d", l->cfg->standby_lock_id);
	const char *params[1] = {id};
	if (l->step != STEP_STANDBY)
		l->step = STEP_LOCK;
	if (pgconn_query(l->conn, STANDBY_LOCK_SQL, 1, params, on_lock_done, l) != 0)
		log_warning("standby lock query not sent; the session is being re-established");
}

static void standby_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct listener *l = t->data;
	(void)loop;
	(void)revents;
	if (l->step != STEP_STANDBY || pgconn_state(l->conn) != PGCONN_IDLE)
		return;
	if (l->cfg->standby_enabled)
		send_lock_query(l);
	else /* turned off by a reload */
		send_catalog_query(l);
}

static void on_up(struct pgconn *c, void *arg)
{
	struct listener *l = arg;
	(void)c;
	l->new_session = true;
	if (l->cfg->standby_enabled)
		send_lock_query(l);
	else
		send_catalog_query(l);
}

static void on_down(struct pgconn *c, const char *reason, bool was_up, void *arg)
{
	struct listener *l = arg;
	/* Lost, for the engine, is a session that was listening (or standing by):
	 * one that failed on its way there is a failed attempt. */
	bool was_serving = was_up && (l->listening || l->step == STEP_STANDBY);

	l->step = STEP_DOWN;
	l->listening = false;
	l->ping_in_flight = false;
	ev_timer_stop(l->loop, &l->standby_timer);
	ev_timer_stop(l->loop, &l->ping_timer);
	catalog_free(&l->loaded);
	l->handler.on_down(reason, was_serving, pgconn_failures(c), l->handler.arg);
}

struct notify_ctx {
	struct listener *l;
	struct batch_channel *ch;
	int bad_logged;
	size_t dropped;
	int oom;
};

static int add_key(const char *key, size_t len, void *arg)
{
	struct notify_ctx *ctx = arg;
	int r = batcher_add_key(ctx->l->batcher, ctx->ch, key, len);
	if (r == 1)
		ctx->dropped++;
	if (r < 0) {
		ctx->oom++;
		return 1;
	}
	return 0;
}

static void bad_key(const char *token, size_t len, const char *reason, void *arg)
{
	struct notify_ctx *ctx = arg;

	ctx->ch->keys_malformed++;
	/* One line per bad key, up to a few per payload; the count covers the rest. */
	if (ctx->bad_logged++ < 3)
		log_warning("malformed key skipped channel=%s key=\"%.*s\" reason=\"%s\"", ctx->ch->name,
		            (int)(len > 64 ? 64 : len), token, reason);
}

static void on_notify(struct pgconn *c, const char *channel, const char *payload, void *arg)
{
	struct listener *l = arg;
	(void)c;

	l->notifications++;
	if (l->handler.on_ring != NULL && l->handler.on_ring(channel, l->handler.arg))
		return;
	struct batch_channel *ch = batcher_find(l->batcher, channel);
	if (ch == NULL) {
		l->unknown_channel++;
		log_warning("notification on a channel with no rollup skipped channel=%s", channel);
		return;
	}
	struct notify_ctx ctx = {.l = l, .ch = ch};
	struct payload_handler h = {.on_key = add_key, .on_malformed = bad_key, .arg = &ctx};
	int bad = payload_parse(payload, ch->key_type, &h);
	if (ctx.oom)
		log_error("out of memory adding keys channel=%s; reconciling rollup=%s", channel, ch->rollup);
	if (ctx.oom || ctx.dropped > 0)
		l->handler.on_overflow(ch->rollup, ch->name, ctx.dropped, l->handler.arg);
	if (bad > 3)
		log_warning("malformed keys skipped channel=%s count=%d payload_bytes=%zu", channel, bad,
		            strlen(payload));
	l->handler.on_keys(l->handler.arg);
}

struct listener *listener_new(struct ev_loop *loop, const struct pgconn_settings *settings, const struct config *cfg,
                              struct batcher *batcher, const struct listener_handler *handler)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	struct pgconn_handler h = {.on_up = on_up, .on_down = on_down, .on_notify = on_notify, .arg = l};
	struct pgconn_settings s = *settings;
	s.application_name = LISTENER_APPLICATION_NAME;
	s.owner_confirms = true;
	l->conn = pgconn_new(loop, "listener", &s, &h);
	if (l->conn == NULL) {
		free(l);
		return NULL;
	}
	l->loop = loop;
	l->notify_queue_usage = -1;
	ev_init(&l->standby_timer, standby_timer_cb);
	l->standby_timer.data = l;
	ev_init(&l->ping_timer, ping_timer_cb);
	l->ping_timer.data = l;
	l->cfg = cfg;
	l->batcher = batcher;
	l->handler = *handler;
	return l;
}

void listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	ev_timer_stop(l->loop, &l->standby_timer);
	ev_timer_stop(l->loop, &l->ping_timer);
	pgconn_free(l->conn);
	catalog_free(&l->loaded);
	free(l);
}

void listener_start(struct listener *l)
{
	pgconn_start(l->conn);
}

void listener_stop(struct listener *l)
{
	ev_timer_stop(l->loop, &l->standby_timer);
	ev_timer_stop(l->loop, &l->ping_timer);
	pgconn_read_now(l->conn);
	pgconn_stop(l->conn);
}

void listener_reload(struct listener *l, const struct config *cfg, const struct pgconn_settings *settings)
{
	struct pgconn_settings s = *settings;
	s.application_name = LISTENER_APPLICATION_NAME;
	s.owner_confirms = true;
	l->cfg = cfg;
	pgconn_update(l->conn, &s); /* a changed conninfo reconnects, which re-reads the catalog anyway */
	if (l->step == STEP_STANDBY)
		return; /* the next poll applies the new standby settings */
	if (l->step == STEP_LISTENING && pgconn_state(l->conn) == PGCONN_IDLE)
		send_catalog_query(l);
	else if (l->step != STEP_DOWN)
		l->reload_pending = true;
}

bool listener_standby(const struct listener *l)
{
	return l->step == STEP_STANDBY;
}

bool listener_listening(const struct listener *l)
{
	return l->listening;
}

uint64_t listener_notifications(const struct listener *l)
{
	return l->notifications;
}

uint64_t listener_unknown_channel(const struct listener *l)
{
	return l->unknown_channel;
}

double listener_notify_queue_usage(const struct listener *l)
{
	return l->notify_queue_usage;
}
