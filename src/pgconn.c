/*
 * pgconn: libpq's non-blocking API on libev. Every state change goes through
 * set_state(), which knows the legal edges; callbacks run only after the
 * state is settled, and a depth count defers pgconn_free() until no callback
 * of this connection is on the stack.
 */
#include "pgconn.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"
#include "xalloc.h"

struct pgconn {
	struct ev_loop *loop;
	char *name;
	char *conninfo;
	char *application_name;
	int connect_timeout_ms;
	int statement_timeout_ms;
	bool owner_confirms;
	bool replication;
	struct pgconn_handler handler;

	enum pgconn_state state;
	PGconn *pg;
	uint64_t session; /* bumped on every teardown, to notice resets made by callbacks */
	ev_io io;
	int io_fd;
	int io_events;
	ev_timer timer; /* connect timeout, backoff delay, or deferred teardown */
	struct backoff backoff;
	char broken_reason[256];

	pgconn_result_fn cb;
	void *cb_arg;
	PGresult *result;
	struct pgconn_stream_handler stream; /* while a stream is asked for or open */
	bool stream_wanted;
	bool stream_paused;

	int depth;
	bool free_pending;
};

/* A query gets statement_timeout plus this long to answer. The server
 * enforces statement_timeout itself; past it, the server process is stopped,
 * hung or cut off, and the connection is given up (its work is retried). */
#define QUERY_DEADLINE_GRACE_MS 5000

static const char *const state_names[] = {
    [PGCONN_DOWN] = "down",     [PGCONN_BACKOFF] = "backoff",     [PGCONN_CONNECTING] = "connecting",
    [PGCONN_SETUP] = "setup",   [PGCONN_IDLE] = "idle",           [PGCONN_BUSY] = "busy",
    [PGCONN_BROKEN] = "broken", [PGCONN_STREAMING] = "streaming",
};

/* The edges of the state machine. Any state may end its session (teardown:
 * to BACKOFF, or DOWN when stopped); the rest is the one way forward. */
static bool edge_allowed(enum pgconn_state from, enum pgconn_state to)
{
	if (to == PGCONN_BACKOFF || to == PGCONN_DOWN)
		return true;
	switch (from) {
	case PGCONN_DOWN:
	case PGCONN_BACKOFF:
		return to == PGCONN_CONNECTING;
	case PGCONN_CONNECTING:
		return to == PGCONN_SETUP;
	case PGCONN_SETUP:
		return to == PGCONN_IDLE;
	case PGCONN_IDLE:
		return to == PGCONN_BUSY || to == PGCONN_BROKEN;
	case PGCONN_BUSY:
		return to == PGCONN_IDLE || to == PGCONN_STREAMING;
	case PGCONN_STREAMING:
		return to == PGCONN_BROKEN;
	case PGCONN_BROKEN:
		return false;
	}
	return false;
}

static void set_state(struct pgconn *c, enum pgconn_state next)
{
	assert(edge_allowed(c->state, next) && "pgconn: illegal state change");
	/* Every query is idle -> busy -> idle: that pair would drown the debug log. */
	if (!((c->state == PGCONN_IDLE && next == PGCONN_BUSY) || (c->state == PGCONN_BUSY && next == PGCONN_IDLE)))
		log_debug("connection conn=%s state=%s->%s", c->name, state_names[c->state], state_names[next]);
	c->state = next;
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* libpq messages end in newlines and may span lines; keep the first line. */
static void first_line(char *dst, size_t dstlen, const char *msg)
{
	size_t n = strcspn(msg ? msg : "", "\n");
	if (n >= dstlen)
		n = dstlen - 1;
	memcpy(dst, msg ? msg : "", n);
	dst[n] = '\0';
	if (n == 0)
		snprintf(dst, dstlen, "unknown error");
}

struct pgconn *pgconn_new(struct ev_loop *loop, const char *name, const struct pgconn_settings *settings,
                          const struct pgconn_handler *handler)
{
	struct pgconn *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->name = xstrdup(name);
	c->conninfo = xstrdup(settings->conninfo);
	c->application_name = xstrdup(settings->application_name ? settings->application_name : "rollupd");
	c->connect_timeout_ms = settings->connect_timeout_ms;
	c->statement_timeout_ms = settings->statement_timeout_ms;
	c->owner_confirms = settings->owner_confirms;
	c->replication = settings->replication;
	c->handler = *handler;
	c->state = PGCONN_DOWN;
	c->io_fd = -1;
	backoff_init(&c->backoff, (uint32_t)settings->reconnect_min_ms, (uint32_t)settings->reconnect_max_ms);
	ev_init(&c->io, io_cb);
	c->io.data = c;
	ev_init(&c->timer, timer_cb);
	c->timer.data = c;
	return c;
}

static void destroy(struct pgconn *c)
{
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->timer);
	if (c->result)
		PQclear(c->result);
	if (c->pg)
		PQfinish(c->pg);
	free(c->name);
	free(c->conninfo);
	free(c->application_name);
	free(c);
}

void pgconn_free(struct pgconn *c)
{
	if (c == NULL)
		return;
	if (c->depth > 0) {
		/* Called from one of this connection's callbacks: finish unwinding first. */
		c->free_pending = true;
		c->handler = (struct pgconn_handler){0};
		c->cb = NULL;
		return;
	}
	destroy(c);
}

/* Callbacks run between enter() and leave(); leave() returns true when the
 * connection was freed meanwhile and must not be touched again. */
static void enter(struct pgconn *c)
{
	c->depth++;
}

static bool leave(struct pgconn *c)
{
	if (--c->depth == 0 && c->free_pending) {
		destroy(c);
		return true;
	}
	return false;
}

static void watch(struct pgconn *c, int fd, int events)
{
	if (fd == c->io_fd && events == c->io_events && ev_is_active(&c->io))
		return;
	/* The socket can change on every PQconnectPoll: always re-arm. */
	ev_io_stop(c->loop, &c->io);
	c->io_fd = fd;
	c->io_events = events;
	if (fd >= 0 && events != 0) {
		ev_io_set(&c->io, fd, events);
		ev_io_start(c->loop, &c->io);
	}
}

static void start_timer(struct pgconn *c, double seconds)
{
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, seconds, 0.);
	ev_timer_start(c->loop, &c->timer);
}

/*
 * End the session: watcher stopped before PQfinish, the query in flight (if
 * any) completed with `reason`, then on_down. `next` is PGCONN_BACKOFF
 * (reconnect after a delay) or PGCONN_DOWN. Every caller holds enter()/leave(),
 * so a callback may free the connection.
 */
static void teardown(struct pgconn *c, const char *reason, enum pgconn_state next)
{
	bool was_up = c->state == PGCONN_IDLE || c->state == PGCONN_BUSY || c->state == PGCONN_BROKEN ||
	              c->state == PGCONN_STREAMING;
	pgconn_result_fn cb = c->cb;
	void *cb_arg = c->cb_arg;

	watch(c, -1, 0);
	ev_timer_stop(c->loop, &c->timer);
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	if (c->result) {
		PQclear(c->result);
		c->result = NULL;
	}
	c->cb = NULL;
	c->stream_wanted = false;
	c->stream_paused = false;
	c->session++;
	set_state(c, next);
	if (next == PGCONN_BACKOFF) {
		uint32_t delay = backoff_next_ms(&c->backoff, (uint32_t)random());
		start_timer(c, delay / 1000.0);
		log_warning("connection down conn=%s error=\"%s\" retry_in_ms=%u attempt=%u", c->name, reason, delay,
		            c->backoff.attempts);
	}

	if (cb)
		cb(c, NULL, reason, cb_arg);
	if (!c->free_pending && c->handler.on_down)
		c->handler.on_down(c, reason, was_up, c->handler.arg);
}

static void fail(struct pgconn *c, const char *what)
{
	char reason[512];
	char detail[256];

	first_line(detail, sizeof(detail), c->pg ? PQerrorMessage(c->pg) : NULL);
	snprintf(reason, sizeof(reason), "%s: %s", what, detail);
	teardown(c, reason, PGCONN_BACKOFF);
}

/* Server notices and warnings go to the log, not to stderr unannounced. */
static void log_notice(void *arg, const char *message)
{
	const struct pgconn *c = arg;
	char line[512];
	first_line(line, sizeof(line), message);
	log_info("server notice conn=%s message=\"%s\"", c->name, line);
}

static void connect_now(struct pgconn *c)
{
	const char *keywords[] = {"fallback_application_name",
	                          "keepalives",
	                          "keepalives_idle",
	                          "keepalives_interval",
	                          "keepalives_count",
	                          "tcp_user_timeout",
	                          "dbname",
	                          c->replication ? "replication" : NULL,
	                          NULL};
	/* Defaults come before dbname, so the expanded conninfo overrides them:
	 * a silent peer is noticed after about a minute, idle or not. The
	 * replication mode comes after it: a conninfo cannot turn it off. */
	const char *values[] = {c->application_name, "1", "30", "10", "3", "60000", c->conninfo, "database", NULL};

	c->pg = PQconnectStartParams(keywords, values, 1);
	if (c->pg == NULL) {
		teardown(c, "connect: out of memory", PGCONN_BACKOFF);
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		fail(c, "connect");
		return;
	}
	PQsetnonblocking(c->pg, 1);
	PQsetNoticeProcessor(c->pg, log_notice, c);
	set_state(c, PGCONN_CONNECTING);
	/* libpq enforces connect_timeout only in its blocking calls: time it here. */
	start_timer(c, c->connect_timeout_ms / 1000.0);
	/* libpq: behave as if PQconnectPoll had returned PGRES_POLLING_WRITING. */
	watch(c, PQsocket(c->pg), EV_WRITE);
}

void pgconn_start(struct pgconn *c)
{
	enter(c);
	if (c->state == PGCONN_DOWN)
		connect_now(c);
	leave(c);
}

void pgconn_stop(struct pgconn *c)
{
	enter(c);
	if (c->state != PGCONN_DOWN)
		teardown(c, "stopped", PGCONN_DOWN);
	leave(c);
}

void pgconn_fail(struct pgconn *c, const char *reason)
{
	enter(c);
	if (c->state != PGCONN_DOWN)
		teardown(c, reason, PGCONN_BACKOFF);
	leave(c);
}

/* Drop the session now and reconnect at once (the settings changed). */
static void reset(struct pgconn *c, const char *reason)
{
	enter(c);
	if (c->state != PGCONN_DOWN) {
		teardown(c, reason, PGCONN_BACKOFF);
		/* A deliberate reset reconnects at once, not after a failure's backoff. */
		if (c->state == PGCONN_BACKOFF && !c->free_pending) {
			backoff_reset(&c->backoff);
			start_timer(c, 0.);
		}
	}
	leave(c);
}

void pgconn_confirm(struct pgconn *c)
{
	backoff_reset(&c->backoff);
}

void pgconn_update(struct pgconn *c, const struct pgconn_settings *s)
{
	bool changed = strcmp(c->conninfo, s->conninfo) != 0 || c->statement_timeout_ms != s->statement_timeout_ms;
	char *conninfo = xstrdup(s->conninfo);

	free(c->conninfo);
	c->conninfo = conninfo;
	c->connect_timeout_ms = s->connect_timeout_ms;
	c->statement_timeout_ms = s->statement_timeout_ms;
	backoff_init(&c->backoff, (uint32_t)s->reconnect_min_ms, (uint32_t)s->reconnect_max_ms);
	if (changed)
		reset(c, "settings changed");
}

/* Arm the watcher for the pending output: read unless a stream's owner
 * paused it, write while libpq has unsent data. */
static int flush_and_watch(struct pgconn *c)
{
	int r = PQflush(c->pg);
	if (r < 0)
		return -1;
	watch(c, PQsocket(c->pg), (c->stream_paused ? 0 : EV_READ) | (r == 1 ? EV_WRITE : 0));
	return 0;
}

static void send_setup(struct pgconn *c)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SET statement_timeout = %d", c->statement_timeout_ms);
	set_state(c, PGCONN_SETUP);
	if (!PQsendQuery(c->pg, sql) || flush_and_watch(c) != 0)
		fail(c, "session setup");
}

static void poll_connect(struct pgconn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		watch(c, PQsocket(c->pg), EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		watch(c, PQsocket(c->pg), EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		send_setup(c);
		break;
	case PGRES_POLLING_FAILED:
	default:
		fail(c, "connect");
		break;
	}
}

/* Deliver pending notifications. Returns false if a callback ended the session. */
static bool deliver_notifies(struct pgconn *c)
{
	uint64_t session = c->session;
	PGnotify *n;

	while (c->pg && (n = PQnotifies(c->pg)) != NULL) {
		if (c->handler.on_notify)
			c->handler.on_notify(c, n->relname, n->extra, c->handler.arg);
		PQfreemem(n);
		if (c->free_pending || c->session != session)
			return false;
	}
	return true;
}

static void finish_setup(struct pgconn *c)
{
	PGresult *res = c->result;

	c->result = NULL;
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		char reason[512];
		first_line(reason, sizeof(reason), res ? PQresultErrorMessage(res) : "no result");
		if (res)
			PQclear(res);
		teardown(c, reason, PGCONN_BACKOFF);
		return;
	}
	PQclear(res);
	ev_timer_stop(c->loop, &c->timer);
	if (!c->owner_confirms)
		backoff_reset(&c->backoff);
	set_state(c, PGCONN_IDLE);
	log_debug("connected conn=%s backend_pid=%d", c->name, PQbackendPID(c->pg));
	if (c->handler.on_up)
		c->handler.on_up(c, c->handler.arg);
}

static void finish_query(struct pgconn *c)
{
	PGresult *res = c->result;
	pgconn_result_fn cb = c->cb;
	void *cb_arg = c->cb_arg;
	char error[1024];
	const char *err = NULL;

	c->result = NULL;
	c->cb = NULL;
	set_state(c, PGCONN_IDLE);
	ev_timer_stop(c->loop, &c->timer); /* the query's deadline */
	if (res == NULL) {
		err = "no result";
	} else if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		first_line(error, sizeof(error), PQresultErrorMessage(res));
		err = error;
	}
	if (c->stream_wanted) {
		/* The statement that should have opened a stream finished without one. */
		c->stream_wanted = false;
		if (c->stream.on_refused)
			c->stream.on_refused(c, res, err ? err : "the server did not start a stream", c->stream.arg);
	} else if (cb) {
		cb(c, res, err, cb_arg);
	}
	if (res)
		PQclear(res);
}

/* The server accepted the stream's statement: COPY BOTH is open. */
static void start_streaming(struct pgconn *c, PGresult *res)
{
	PQclear(res);
	if (c->result) {
		PQclear(c->result);
		c->result = NULL;
	}
	ev_timer_stop(c->loop, &c->timer);
	set_state(c, PGCONN_STREAMING);
	if (c->stream.on_started)
		c->stream.on_started(c, c->stream.arg);
}

/* Hand over the CopyData messages libpq holds, until it has no whole one, the
 * owner pauses, or the stream ends (an error: the session goes). */
static void read_stream(struct pgconn *c)
{
	uint64_t session = c->session;
	while (c->state == PGCONN_STREAMING && !c->stream_paused) {
		char *buf = NULL;
		int n = PQgetCopyData(c->pg, &buf, 1);
		if (n == 0)
			return;
		if (n == -1) {
			/* The server ended the stream; its reason is in the final result. */
			PGresult *r = PQgetResult(c->pg);
			char reason[512];
			first_line(reason, sizeof(reason),
			           r && PQresultStatus(r) == PGRES_FATAL_ERROR ? PQresultErrorMessage(r)
			                                                       : "the server ended the stream");
			PQclear(r);
			teardown(c, reason, PGCONN_BACKOFF);
			return;
		}
		if (n < 0) {
			fail(c, "stream");
			return;
		}
		bool go_on = c->stream.on_data(c, buf, (size_t)n, c->stream.arg);
		PQfreemem(buf);
		if (c->free_pending || c->session != session)
			return;
		if (!go_on) {
			c->stream_paused = true;
			watch(c, PQsocket(c->pg), c->io_events & EV_WRITE);
		}
	}
}

/*
 * Read what arrived; collect results until libpq would block or the query is
 * done; then deliver notifications. Results go first so that a completed
 * LISTEN reaches its owner before the notifications that followed it.
 */
static void read_input(struct pgconn *c)
{
	uint64_t session = c->session;

	if (!PQconsumeInput(c->pg)) {
		fail(c, "read");
		return;
	}
	if (c->state == PGCONN_STREAMING) {
		read_stream(c);
		return;
	}
	while (c->state == PGCONN_SETUP || c->state == PGCONN_BUSY) {
		if (PQisBusy(c->pg))
			break;
		PGresult *r = PQgetResult(c->pg);
		if (r != NULL && PQresultStatus(r) == PGRES_COPY_BOTH && c->stream_wanted) {
			c->stream_wanted = false;
			start_streaming(c, r);
			if (c->free_pending || c->session != session)
				return;
			read_stream(c);
			return;
		}
		if (r == NULL) {
			/* Read results until NULL, even after an error: only then is the query done. */
			if (c->state == PGCONN_SETUP)
				finish_setup(c);
			else
				finish_query(c);
			break;
		}
		/* Keep the first error, else the last result. */
		if (c->result && PQresultStatus(c->result) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			if (c->result)
				PQclear(c->result);
			c->result = r;
		}
	}
	if (c->free_pending || c->session != session)
		return;
	if (!deliver_notifies(c))
		return;
	if (c->state == PGCONN_IDLE && PQstatus(c->pg) == CONNECTION_BAD)
		fail(c, "connection closed");
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pgconn *c = w->data;
	(void)loop;

	enter(c);
	switch (c->state) {
	case PGCONN_CONNECTING:
		poll_connect(c);
		break;
	case PGCONN_SETUP:
	case PGCONN_BUSY:
	case PGCONN_IDLE:
	case PGCONN_STREAMING:
		if ((revents & EV_WRITE) && flush_and_watch(c) != 0) {
			fail(c, "write");
			break;
		}
		if (revents & EV_READ)
			read_input(c);
		break;
	default:
		watch(c, -1, 0);
		break;
	}
	leave(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pgconn *c = w->data;
	char reason[300];
	(void)loop;
	(void)revents;

	enter(c);
	switch (c->state) {
	case PGCONN_BACKOFF:
		connect_now(c);
		break;
	case PGCONN_CONNECTING:
	case PGCONN_SETUP:
		snprintf(reason, sizeof(reason), "connect timeout after %d ms", c->connect_timeout_ms);
		teardown(c, reason, PGCONN_BACKOFF);
		break;
	case PGCONN_BROKEN:
		snprintf(reason, sizeof(reason), "send: %s", c->broken_reason);
		teardown(c, reason, PGCONN_BACKOFF);
		break;
	case PGCONN_BUSY:
		snprintf(reason, sizeof(reason),
		         "no answer %d ms after statement_timeout (%d ms): server process stuck or unreachable,"
		         " connection abandoned",
		         QUERY_DEADLINE_GRACE_MS, c->statement_timeout_ms);
		teardown(c, reason, PGCONN_BACKOFF);
		break;
	default:
		break;
	}
	leave(c);
}

void pgconn_read_now(struct pgconn *c)
{
	enter(c);
	if (c->state == PGCONN_IDLE || c->state == PGCONN_BUSY)
		read_input(c);
	leave(c);
}

int pgconn_query(struct pgconn *c, const char *sql, int nparams, const char *const *params, pgconn_result_fn cb,
                 void *cb_arg)
{
	if (c->state != PGCONN_IDLE)
		return -1;
	int sent = nparams == 0 && params == NULL ? PQsendQuery(c->pg, sql)
	                                          : PQsendQueryParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!sent || flush_and_watch(c) != 0) {
		/* Tear down on the next loop turn, not inside the caller's stack. */
		first_line(c->broken_reason, sizeof(c->broken_reason), PQerrorMessage(c->pg));
		set_state(c, PGCONN_BROKEN);
		watch(c, -1, 0);
		start_timer(c, 0.);
		return -1;
	}
	set_state(c, PGCONN_BUSY);
	c->cb = cb;
	c->cb_arg = cb_arg;
	if (c->statement_timeout_ms > 0)
		start_timer(c, (c->statement_timeout_ms + QUERY_DEADLINE_GRACE_MS) / 1000.0);
	return 0;
}

int pgconn_stream(struct pgconn *c, const char *sql, const struct pgconn_stream_handler *h)
{
	c->stream = *h;
	if (pgconn_query(c, sql, 0, NULL, NULL, NULL) != 0)
		return -1;
	ev_timer_stop(c->loop, &c->timer); /* waiting for the stream has no deadline */
	c->stream_wanted = true;
	return 0;
}

int pgconn_stream_send(struct pgconn *c, const void *buf, size_t len)
{
	if (c->state != PGCONN_STREAMING)
		return -1;
	/* Whatever the socket does not take now goes when it can (EV_WRITE). */
	if (PQputCopyData(c->pg, buf, (int)len) != 1 || flush_and_watch(c) != 0) {
		first_line(c->broken_reason, sizeof(c->broken_reason), PQerrorMessage(c->pg));
		set_state(c, PGCONN_BROKEN);
		watch(c, -1, 0);
		start_timer(c, 0.);
		return -1;
	}
	return 0;
}

void pgconn_stream_resume(struct pgconn *c)
{
	if (c->state != PGCONN_STREAMING || !c->stream_paused)
		return;
	enter(c);
	c->stream_paused = false;
	watch(c, PQsocket(c->pg), EV_READ | (c->io_events & EV_WRITE));
	read_stream(c);
	if (c->state == PGCONN_STREAMING && !c->free_pending && !c->stream_paused)
		read_input(c); /* and what the socket holds meanwhile */
	leave(c);
}

void pgconn_cancel(struct pgconn *c)
{
	char errbuf[256];

	if (c->state != PGCONN_BUSY || c->pg == NULL)
		return;
	PGcancel *cancel = PQgetCancel(c->pg);
	if (cancel == NULL)
		return;
	if (!PQcancel(cancel, errbuf, sizeof(errbuf)))
		log_warning("cancel failed conn=%s error=\"%s\"", c->name, errbuf);
	PQfreeCancel(cancel);
}

enum pgconn_state pgconn_state(const struct pgconn *c)
{
	return c->state;
}

int pgconn_backend_pid(const struct pgconn *c)
{
	return c->pg && (c->state == PGCONN_IDLE || c->state == PGCONN_BUSY || c->state == PGCONN_STREAMING)
	           ? PQbackendPID(c->pg)
	           : 0;
}

uint32_t pgconn_failures(const struct pgconn *c)
{
	return c->backoff.attempts;
}
