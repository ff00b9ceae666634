/*
 * listener: the control session. On every (re)connect it takes the standby
 * lock when standby.enabled (or waits for it as the standby), reads the
 * catalog, LISTENs on every channel that uses NOTIFY in one transaction, and
 * only then tells the engine, which reconciles before trusting
 * notifications. It pings while idle, to notice a hung server. It hands
 * notifications on as they come and knows nothing of keys or refreshes.
 */
#ifndef ROLLUPD_LISTENER_H
#define ROLLUPD_LISTENER_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "config.h"
#include "pgconn.h"

struct listener;

struct listener_handler {
	/* Listening on every channel of `cat`, which the handler takes over (it
	 * must catalog_free() it). `new_session` is false after a reload on the
	 * same session: only channels new to the engine need catching up. */
	void (*on_listening)(struct catalog *cat, bool new_session, void *arg);
	/* The session failed or was lost; `was_up`: it was listening or standing by
	 * (else a failed attempt); `failures` counts attempts since one last was. */
	void (*on_down)(const char *reason, bool was_up, uint32_t failures, void *arg);
	/* A notification; true when a key source took it (else it is counted as
	 * on an unknown channel, and logged). */
	bool (*on_notify)(const char *channel, const char *payload, void *arg);
	/* standby.enabled and another rollupd holds the lock: this one listens
	 * on nothing until it gets the lock (then on_listening, new session). */
	void (*on_standby)(void *arg);
	void *arg;
};

/* `cfg` is borrowed and must outlive the listener or be replaced by listener_reload(). */
struct listener *listener_new(struct ev_loop *loop, const struct pgconn_settings *settings, const struct config *cfg,
                              const struct listener_handler *handler);
void listener_free(struct listener *l);

void listener_start(struct listener *l);
/* Take the notifications that have already arrived, then disconnect. */
void listener_stop(struct listener *l);

/* Re-read the catalog under `cfg` and re-LISTEN (now if idle, else when the current step ends). */
void listener_reload(struct listener *l, const struct config *cfg, const struct pgconn_settings *settings);

bool listener_listening(const struct listener *l);
/* Waiting for the standby lock. */
bool listener_standby(const struct listener *l);
uint64_t listener_notifications(const struct listener *l);
/* Notifications on a channel no rollup owns (skipped). */
uint64_t listener_unknown_channel(const struct listener *l);
/* pg_notification_queue_usage() (0..1) as of the last ping, -1 before one. */
double listener_notify_queue_usage(const struct listener *l);

#endif
