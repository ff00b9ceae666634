/*
 * pgconn: one PostgreSQL connection driven by libev through libpq's
 * asynchronous API, as an explicit state machine that reconnects by itself
 * with capped exponential backoff and jitter. One query at a time; what the
 * queries mean is the caller's business.
 */
#ifndef ROLLUPD_PGCONN_H
#define ROLLUPD_PGCONN_H

#include <ev.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

enum pgconn_state {
	PGCONN_DOWN,       /* not connected and not trying (new, or stopped) */
	PGCONN_BACKOFF,    /* waiting before the next connection attempt */
	PGCONN_CONNECTING, /* PQconnectPoll in progress */
	PGCONN_SETUP,      /* connected, running the session setup statement */
	PGCONN_IDLE,       /* ready for a query; notifications are read */
	PGCONN_BUSY,       /* a query is in flight */
	PGCONN_BROKEN,     /* a send failed; teardown runs on the next loop turn */
	PGCONN_STREAMING,  /* a COPY BOTH stream (START_REPLICATION) is open */
};

struct pgconn_settings {
	const char *conninfo;         /* any libpq connection string or URI */
	const char *application_name; /* fallback_application_name; conninfo may override */
	int connect_timeout_ms;       /* connect + setup, enforced by a timer */
	int statement_timeout_ms;     /* SET statement_timeout for the session; 0 = none */
	int reconnect_min_ms;
	int reconnect_max_ms;
	/* A replication connection (replication=database): the simple query
	 * protocol only, and replication commands. */
	bool replication;
	/* The owner sets the session up further (the listener: catalog and
	 * LISTEN) and says when it is good with pgconn_confirm(); until then a
	 * failure counts as one more failed attempt and the backoff keeps
	 * growing. False: a session is good once connected and set up. */
	bool owner_confirms;
};

struct pgconn;

struct pgconn_handler {
	/* The session is connected and set up; the connection is IDLE. */
	void (*on_up)(struct pgconn *c, void *arg);
	/* A connection attempt failed or the session was lost. A query in flight
	 * has already had its callback with the error. Unless the connection was
	 * stopped, a reconnect is scheduled. */
	void (*on_down)(struct pgconn *c, const char *reason, bool was_up, void *arg);
	/* A notification (delivered between query results too). */
	void (*on_notify)(struct pgconn *c, const char *channel, const char *payload, void *arg);
	void *arg;
};

/*
 * Completion of pgconn_query(). On success `error` is NULL and `res` holds the
 * final result (valid only during the call). A server error gives `res` (the
 * error result, for its SQLSTATE) and `error`; a lost connection gives `res`
 * NULL and `error`. The connection is already IDLE (or reconnecting) when this
 * runs, so the callback may send the next query, reset or stop it.
 */
typedef void (*pgconn_result_fn)(struct pgconn *c, const PGresult *res, const char *error, void *arg);

/* Copies `settings`; does not connect until pgconn_start(). Caller frees with pgconn_free(). */
struct pgconn *pgconn_new(struct ev_loop *loop, const char *name, const struct pgconn_settings *settings,
                          const struct pgconn_handler *handler);
/* Safe to call from this connection's own callbacks: the free is deferred. */
void pgconn_free(struct pgconn *c);

void pgconn_start(struct pgconn *c);
/* Disconnect and stay down. A query in flight completes with error "stopped". */
void pgconn_stop(struct pgconn *c);
/* Drop the session as failed (e.g. its setup by the owner failed) and
 * reconnect after the backoff delay. */
void pgconn_fail(struct pgconn *c, const char *reason);
/* The owner's setup of this session succeeded: reset the reconnect backoff
 * and the failed-attempt count (only with settings.owner_confirms). */
void pgconn_confirm(struct pgconn *c);
/* Replace the settings; a changed conninfo or timeout resets the session. */
void pgconn_update(struct pgconn *c, const struct pgconn_settings *settings);

/*
 * Send one statement with text parameters (or, with nparams 0 and params
 * NULL, a simple-protocol string that may hold several statements, which the
 * server runs as one implicit transaction). Only in PGCONN_IDLE. Returns 0 when
 * sent (the callback will run exactly once), -1 when nothing was sent (the
 * callback will not run; a broken connection tears itself down shortly).
 */
int pgconn_query(struct pgconn *c, const char *sql, int nparams, const char *const *params, pgconn_result_fn cb,
                 void *cb_arg);

/* A COPY BOTH stream's owner (pgconn_stream). */
struct pgconn_stream_handler {
	/* The server accepted: the connection is STREAMING. */
	void (*on_started)(struct pgconn *c, void *arg);
	/* One CopyData message (valid only during the call). Return true to go
	 * on, false to pause reading (backpressure) until pgconn_stream_resume(). */
	bool (*on_data)(struct pgconn *c, const char *buf, size_t len, void *arg);
	/* The server refused the statement (error is its message); a stream
	 * that was running ends with the session (on_down). */
	void (*on_refused)(struct pgconn *c, const PGresult *res, const char *error, void *arg);
	void *arg;
};

/* Send `sql` (START_REPLICATION ...) in IDLE; the stream's events go to `h`.
 * 0 when sent, -1 as pgconn_query. No query deadline applies while it runs. */
int pgconn_stream(struct pgconn *c, const char *sql, const struct pgconn_stream_handler *h);
/* Queue one CopyData message to the server and flush what the socket takes;
 * -1 when the stream is not open or the send failed (the session is then
 * torn down on the next loop turn). */
int pgconn_stream_send(struct pgconn *c, const void *buf, size_t len);
/* Read again after on_data paused: what libpq holds first. */
void pgconn_stream_resume(struct pgconn *c);

/* Read and deliver what has already arrived on the socket (notifications,
 * results) without waiting for the loop, e.g. before a deliberate stop. */
void pgconn_read_now(struct pgconn *c);

/* Ask the server to cancel the statement in flight (blocks for a round trip). */
void pgconn_cancel(struct pgconn *c);

enum pgconn_state pgconn_state(const struct pgconn *c);
/* Server process id of the current session, 0 when not connected. */
int pgconn_backend_pid(const struct pgconn *c);
/* Failed attempts since the session was last up (for start-up retries). */
uint32_t pgconn_failures(const struct pgconn *c);

#endif
