/*
 * stats: what rollupd reports about itself, in one place: the histograms of
 * refresh durations and queue waits, the lost-connection counters, and
 * every rendering of the state: /metrics (Prometheus text), the periodic
 * summary log line, the systemd STATUS= text and the totals at stop. The
 * counters of channels, walks and poison keys stay with the modules that own
 * them; the engine lends a view of them for each rendering.
 */
#ifndef ROLLUPD_STATS_H
#define ROLLUPD_STATS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "source.h"
#include "walk.h"

/* The histograms' upper bounds, in seconds (queue_drain counts its keys'
 * waits in the same buckets: rollupd passes it these). */
#define STATS_N_BOUNDS 11
extern const double STATS_BOUNDS_S[STATS_N_BOUNDS];
/* The bounds as an SQL array literal ("{0.005,...}"). */
extern const char STATS_BOUNDS_SQL[];

enum stats_conn { STATS_LISTENER, STATS_WORKER };

struct stats;

struct stats *stats_new(void);
void stats_free(struct stats *st);

/* A refresh batch or a drain that took keys. */
void stats_observe_refresh(struct stats *st, double seconds);
/* A drain's keys' queue waits: per bucket (STATS_N_BOUNDS + 1 counts, the
 * last past the last bound), as "n0,n1,...", and their sum. */
void stats_observe_waits(struct stats *st, const char *counts, double sum_s);
void stats_count_lost(struct stats *st, enum stats_conn conn);

/* What the engine knows at the moment of a rendering. */
struct stats_view {
	const char *state; /* "ready", "standby", "catching up", "connecting", "stopping" */
	bool ready;        /* listening and caught up, not standby */
	bool standby;
	bool listening;
	size_t rollups;
	size_t channels;
	size_t workers_connected;
	size_t workers_configured;
	uint64_t notifications;
	uint64_t unknown_channel;
	double notify_queue_usage; /* -1 before the listener's first ping */
	uint64_t poison_found;
	uint64_t poison_recovered;
	struct source *const *sources;
	size_t n_sources;
	const struct walks *walks;
};

/* Keys refreshed so far, over every channel of every source. */
uint64_t stats_keys_refreshed(const struct stats_view *v);
/* Keys held in memory, over every source. */
size_t stats_pending(const struct stats_view *v);

void stats_render_metrics(const struct stats *st, const struct stats_view *v, struct http_body *b);
/* "STATUS=ready: rollups=... channels=..." for sd_notify. */
void stats_status(const struct stats *st, const struct stats_view *v, char *out, size_t outlen);
/* Log the summary line for the interval since the last one (also sets the
 * keys/s rate STATUS= reports). */
void stats_summary(struct stats *st, const struct stats_view *v, ev_tstamp now);
/* Start the first summary interval. */
void stats_summary_start(struct stats *st, const struct stats_view *v, ev_tstamp now);
/* The totals lines at stop. */
void stats_log_totals(const struct stats *st, const struct stats_view *v);

#endif
