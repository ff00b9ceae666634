/*
 * listener: a state machine on top of pgconn's, one step per statement:
 *
 *   DOWN -> LOCK (standby.enabled) -> STANDBY (polling) -> CATALOG -> LISTEN
 *   -> LISTENING <-> PING, and LISTENING -> RELOAD_CATALOG -> RELOAD_LISTEN
 *   -> LISTENING on a reload.
 *
 * advance() takes the result of the step's statement and sends the next;
 * a lost session is DOWN again, whatever the step.
 */
#include "listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

/* How the listener shows in pg_stat_activity. */
#define LISTENER_APPLICATION_NAME "rollupd listener"

/* The standby lock: pg_try_advisory_lock(ROLLUPD_LOCK_CLASS, standby.lock_id),
 * held by the active rollupd's listener session for as long as it lives. */
#define ROLLUPD_LOCK_CLASS "1919904876" /* "roll" */
static const char STANDBY_LOCK_SQL[] =
    "SELECT CASE WHEN pg_try_advisory_lock(" ROLLUPD_LOCK_CLASS ", $1::integer) THEN 1 ELSE 0 END";
static const char PING_SQL[] = "SELECT pg_notification_queue_usage()";

enum listener_step {
	STEP_DOWN,           /* no session */
	STEP_LOCK,           /* trying the standby lock */
	STEP_STANDBY,        /* another rollupd holds it; trying again every standby.poll_ms */
	STEP_CATALOG,        /* reading the catalog */
	STEP_LISTEN,         /* LISTEN in flight */
	STEP_LISTENING,      /* listening and idle; notifications flow */
	STEP_PING,           /* listening, a ping in flight */
	STEP_RELOAD_CATALOG, /* listening, re-reading the catalog */
	STEP_RELOAD_LISTEN,  /* listening, the new LISTEN in flight */
};

struct listener {
	struct ev_loop *loop;
	struct pgconn *conn;
	ev_timer standby_timer;
	ev_timer ping_timer; /* while listening: the next ping, or the ping's answer bound */
	const struct config *cfg;
	struct listener_handler handler;
	enum listener_step step;
	bool reload_pending;   /* re-read the catalog when the current step ends */
	struct catalog loaded; /* read, not yet listened on */

	uint64_t notifications;
	uint64_t unknown_channel;
	double notify_queue_usage; /* pg_notification_queue_usage() at the last ping; -1 before */
};

static bool is_listening(enum listener_step step)
{
	return step >= STEP_LISTENING;
}

static void on_result(struct pgconn *c, const PGresult *res, const char *error, void *arg);

/* Enter `step` and send its statement. */
static void send_step(struct listener *l, enum listener_step step)
{
	char id[16];
	const char *params[1] = {id};
	char *listen_sql = NULL;
	int rc;

	l->step = step;
	switch (step) {
	case STEP_LOCK:
	case STEP_STANDBY:
		snprintf(id, sizeof(id), "%d", l->cfg->standby_lock_id);
		rc = pgconn_query(l->conn, STANDBY_LOCK_SQL, 1, params, on_result, l);
		break;
	case STEP_CATALOG:
	case STEP_RELOAD_CATALOG:
		l->reload_pending = false;
		rc = pgconn_query(l->conn, CATALOG_QUERY, 0, NULL, on_result, l);
		break;
	case STEP_LISTEN:
	case STEP_RELOAD_LISTEN:
		listen_sql = catalog_listen_sql(&l->loaded);
		rc = pgconn_query(l->conn, listen_sql, 0, NULL, on_result, l);
		free(listen_sql);
		break;
	case STEP_PING:
		rc = pgconn_query(l->conn, PING_SQL, 0, NULL, on_result, l);
		if (rc == 0) {
			ev_timer_set(&l->ping_timer, l->cfg->connect_timeout_ms / 1000.0, 0.);
			ev_timer_start(l->loop, &l->ping_timer);
		}
		break;
	default:
		return;
	}
	if (rc != 0)
		log_warning("listener statement not sent; the session is being re-established");
}

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

/* Listening and idle: a reload that waited goes now, else the next ping. */
static void listening_idle(struct listener *l)
{
	l->step = STEP_LISTENING;
	if (l->reload_pending)
		send_step(l, STEP_RELOAD_CATALOG);
	else
		schedule_ping(l);
}

/* The step's statement failed with a server error on a live session. */
static void step_failed(struct listener *l, const PGresult *res, const char *error)
{
	char reason[768];
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	switch (l->step) {
	case STEP_LOCK:
	case STEP_STANDBY:
		snprintf(reason, sizeof(reason), "cannot take the standby lock: %s", error);
		break;
	case STEP_CATALOG:
	case STEP_RELOAD_CATALOG:
		/* A failed attempt like a refused connection: the backoff grows, and
		 * at start database.connect_retries of them end the process. */
		if (state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
			snprintf(reason, sizeof(reason),
			         "no rollupd catalog in this database: install a rollup first"
			         " (psql -d DBNAME -v ON_ERROR_STOP=1 -f " ROLLUPD_SQLDIR "/ROLLUP/install.sql): %s",
			         error);
		else
			snprintf(reason, sizeof(reason), "cannot read the rollup catalog: %s", error);
		break;
	case STEP_LISTEN:
	case STEP_RELOAD_LISTEN:
		snprintf(reason, sizeof(reason), "LISTEN failed: %s", error);
		break;
	case STEP_PING:
		/* The server answered, with an error: alive. */
		ev_timer_stop(l->loop, &l->ping_timer);
		listening_idle(l);
		return;
	default:
		return;
	}
	catalog_free(&l->loaded);
	pgconn_fail(l->conn, reason); /* logged there, with the attempt and the delay */
}

static void advance(struct listener *l, const PGresult *res)
{
	switch (l->step) {
	case STEP_LOCK:
	case STEP_STANDBY: {
		bool was_standby = l->step == STEP_STANDBY;
		if (strcmp(PQgetvalue(res, 0, 0), "1") == 0) {
			if (was_standby)
				log_info("active: the standby lock was released, taking over lock_id=%d",
				         l->cfg->standby_lock_id);
			else
				log_info("active: holding the standby lock lock_id=%d", l->cfg->standby_lock_id);
			send_step(l, STEP_CATALOG);
			return;
		}
		l->step = STEP_STANDBY;
		pgconn_confirm(l->conn); /* standing by is a good session too */
		if (!was_standby) {
			log_info("standby: another rollupd holds the lock lock_id=%d; taking over when it is released,"
			         " checking every %d ms",
			         l->cfg->standby_lock_id, l->cfg->standby_poll_ms);
			l->handler.on_standby(l->handler.arg);
		}
		ev_timer_set(&l->standby_timer, l->cfg->standby_poll_ms / 1000.0, 0.);
		ev_timer_start(l->loop, &l->standby_timer);
		return;
	}
	case STEP_CATALOG:
	case STEP_RELOAD_CATALOG:
		catalog_free(&l->loaded);
		if (catalog_from_result(res, l->cfg, &l->loaded) != 0) {
			pgconn_fail(l->conn, "catalog has an unexpected shape");
			return;
		}
		if (l->loaded.n_rollups == 0)
			log_warning("no rollup to run: none registered in schema rollupd matches the config; "
			            "install one and send SIGHUP");
		send_step(l, l->step == STEP_CATALOG ? STEP_LISTEN : STEP_RELOAD_LISTEN);
		return;
	case STEP_LISTEN:
	case STEP_RELOAD_LISTEN: {
		bool new_session = l->step == STEP_LISTEN;
		l->step = STEP_LISTENING;
		if (new_session)
			pgconn_confirm(l->conn); /* a session that got this far is good: the backoff starts over */
		log_info("listening channels=%zu rollups=%zu backend_pid=%d", l->loaded.n_channels, l->loaded.n_rollups,
		         pgconn_backend_pid(l->conn));
		struct catalog cat = l->loaded;
		memset(&l->loaded, 0, sizeof(l->loaded));
		l->handler.on_listening(&cat, new_session, l->handler.arg);
		if (l->step == STEP_LISTENING)
			listening_idle(l);
		return;
	}
	case STEP_PING:
		ev_timer_stop(l->loop, &l->ping_timer);
		/* The ping's answer: how full the server's notification queue is. */
		if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
			l->notify_queue_usage = strtod(PQgetvalue(res, 0, 0), NULL);
		listening_idle(l);
		return;
	default:
		return;
	}
}

static void on_result(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct listener *l = arg;
	if (pgconn_state(c) != PGCONN_IDLE)
		return; /* the session is gone: on_down has the story */
	if (error != NULL)
		step_failed(l, res, error);
	else
		advance(l, res);
}

static void ping_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct listener *l = t->data;
	char reason[128];
	(void)loop;
	(void)revents;
	if (l->step == STEP_PING) {
		snprintf(reason, sizeof(reason), "no answer to a ping within %d ms", l->cfg->connect_timeout_ms);
		pgconn_fail(l->conn, reason);
		return;
	}
	if (l->step == STEP_LISTENING && pgconn_state(l->conn) == PGCONN_IDLE)
		send_step(l, STEP_PING);
	else if (is_listening(l->step))
		schedule_ping(l); /* busy with a reload: its answer is proof enough */
}

static void standby_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct listener *l = t->data;
	(void)loop;
	(void)revents;
	if (l->step != STEP_STANDBY || pgconn_state(l->conn) != PGCONN_IDLE)
		return;
	if (l->cfg->standby_enabled)
		send_step(l, STEP_STANDBY);
	else /* turned off by a reload */
		send_step(l, STEP_CATALOG);
}

static void on_up(struct pgconn *c, void *arg)
{
	struct listener *l = arg;
	(void)c;
	send_step(l, l->cfg->standby_enabled ? STEP_LOCK : STEP_CATALOG);
}

static void on_down(struct pgconn *c, const char *reason, bool was_up, void *arg)
{
	struct listener *l = arg;
	/* Lost, for the engine, is a session that was listening (or standing by):
	 * one that failed on its way there is a failed attempt. */
	bool was_serving = was_up && (is_listening(l->step) || l->step == STEP_STANDBY);

	l->step = STEP_DOWN;
	l->reload_pending = false;
	ev_timer_stop(l->loop, &l->standby_timer);
	ev_timer_stop(l->loop, &l->ping_timer);
	catalog_free(&l->loaded);
	l->handler.on_down(reason, was_serving, pgconn_failures(c), l->handler.arg);
}

/* Re-read the catalog now if the session is idle, else when its step ends. */
static void request_catalog(struct listener *l)
{
	if (l->step == STEP_LISTENING && pgconn_state(l->conn) == PGCONN_IDLE)
		send_step(l, STEP_RELOAD_CATALOG);
	else if (l->step != STEP_DOWN)
		l->reload_pending = true;
}

static void on_notify(struct pgconn *c, const char *channel, const char *payload, void *arg)
{
	struct listener *l = arg;
	(void)c;

	if (strcmp(channel, CATALOG_CHANNEL) == 0) {
		/* The catalog changed in the database: re-read it, as on SIGHUP. */
		log_info("the rollup catalog changed in the database: re-reading it");
		request_catalog(l);
		return;
	}
	l->notifications++;
	if (!l->handler.on_notify(channel, payload, l->handler.arg)) {
		l->unknown_channel++;
		log_warning("notification on a channel with no rollup skipped channel=%s", channel);
	}
}

static struct pgconn_settings listener_settings(const struct pgconn_settings *settings)
{
	struct pgconn_settings s = *settings;
	s.application_name = LISTENER_APPLICATION_NAME;
	s.owner_confirms = true;
	return s;
}

struct listener *listener_new(struct ev_loop *loop, const struct pgconn_settings *settings, const struct config *cfg,
                              const struct listener_handler *handler)
{
	struct listener *l = xcalloc(1, sizeof(*l));
	struct pgconn_handler h = {.on_up = on_up, .on_down = on_down, .on_notify = on_notify, .arg = l};
	struct pgconn_settings s = listener_settings(settings);
	l->conn = pgconn_new(loop, "listener", &s, &h);
	l->loop = loop;
	l->notify_queue_usage = -1;
	ev_init(&l->standby_timer, standby_timer_cb);
	l->standby_timer.data = l;
	ev_init(&l->ping_timer, ping_timer_cb);
	l->ping_timer.data = l;
	l->cfg = cfg;
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
	struct pgconn_settings s = listener_settings(settings);
	l->cfg = cfg;
	pgconn_update(l->conn, &s); /* a changed conninfo reconnects, which re-reads the catalog anyway */
	if (l->step == STEP_STANDBY)
		return; /* the next poll applies the new standby settings */
	request_catalog(l);
}

bool listener_standby(const struct listener *l)
{
	return l->step == STEP_STANDBY;
}

bool listener_listening(const struct listener *l)
{
	return is_listening(l->step);
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
