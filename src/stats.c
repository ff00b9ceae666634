/*
 * stats: histograms and renderings. Every metric family is one group of
 * lines (Prometheus wants them together), so each rendering walks the
 * channels of every source once per family.
 */
#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

const double STATS_BOUNDS_S[STATS_N_BOUNDS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const char STATS_BOUNDS_SQL[] = "{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10}";

struct stats {
	uint64_t lost[2]; /* by enum stats_conn */
	/* Refresh and drain durations: cumulative Prometheus buckets. */
	uint64_t duration_buckets[STATS_N_BOUNDS];
	uint64_t duration_count;
	double duration_sum_s;
	/* Queue waits of drained keys: per bucket (not cumulative), the last is +Inf. */
	uint64_t wait_counts[STATS_N_BOUNDS + 1];
	uint64_t wait_count;
	double wait_sum_s;
	/* The summary interval: where it started. */
	uint64_t wait_counts_at_summary[STATS_N_BOUNDS + 1];
	ev_tstamp summary_at;
	uint64_t summary_keys;
	double keys_per_s;
};

struct stats *stats_new(void)
{
	return xcalloc(1, sizeof(struct stats));
}

void stats_free(struct stats *st)
{
	free(st);
}

void stats_observe_refresh(struct stats *st, double seconds)
{
	for (size_t i = 0; i < STATS_N_BOUNDS; i++)
		if (seconds <= STATS_BOUNDS_S[i])
			st->duration_buckets[i]++;
	st->duration_count++;
	st->duration_sum_s += seconds;
}

void stats_observe_waits(struct stats *st, const char *counts, double sum_s)
{
	const char *p = counts;
	for (size_t i = 0; i <= STATS_N_BOUNDS && *p != '\0'; i++) {
		char *end;
		unsigned long long n = strtoull(p, &end, 10);
		st->wait_counts[i] += n;
		st->wait_count += n;
		p = *end == ',' ? end + 1 : end;
	}
	st->wait_sum_s += sum_s;
}

void stats_count_lost(struct stats *st, enum stats_conn conn)
{
	st->lost[conn]++;
}

/* Every channel of every source, in order, into `cs`: for (it = 0; next(v, &it, &cs);). */
struct channel_iter {
	size_t source;
	size_t channel;
};

static bool next_channel(const struct stats_view *v, struct channel_iter *it, struct channel_stats *cs)
{
	while (it->source < v->n_sources) {
		const struct source *s = v->sources[it->source];
		if (s->ops->channel(s->impl, it->channel++, cs))
			return true;
		it->source++;
		it->channel = 0;
	}
	return false;
}

uint64_t stats_keys_refreshed(const struct stats_view *v)
{
	uint64_t n = 0;
	struct channel_stats cs;
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);)
		n += cs.keys_refreshed;
	return n;
}

size_t stats_pending(const struct stats_view *v)
{
	size_t n = 0;
	for (size_t i = 0; i < v->n_sources; i++)
		n += v->sources[i]->ops->pending(v->sources[i]->impl);
	return n;
}

static uint64_t poison_keys(const struct stats_view *v)
{
	return v->poison_found - v->poison_recovered;
}

/* The upper bound of the bucket holding the q-quantile of the waits counted
 * since the summary interval began, in seconds; -1 without waits, +inf past
 * the last bound. */
static double wait_quantile(const struct stats *st, double q)
{
	uint64_t total = 0, seen = 0;
	for (size_t i = 0; i <= STATS_N_BOUNDS; i++)
		total += st->wait_counts[i] - st->wait_counts_at_summary[i];
	if (total == 0)
		return -1;
	for (size_t i = 0; i < STATS_N_BOUNDS; i++) {
		seen += st->wait_counts[i] - st->wait_counts_at_summary[i];
		if ((double)seen >= q * (double)total)
			return STATS_BOUNDS_S[i];
	}
	return INFINITY;
}

void stats_status(const struct stats *st, const struct stats_view *v, char *out, size_t outlen)
{
	snprintf(out, outlen,
	         "STATUS=%s: rollups=%zu channels=%zu workers=%zu/%zu pending_keys=%zu keys_refreshed=%llu"
	         " keys_per_s=%.0f poison_keys=%llu",
	         v->state, v->rollups, v->channels, v->workers_connected, v->workers_configured, stats_pending(v),
	         (unsigned long long)stats_keys_refreshed(v), st->keys_per_s, (unsigned long long)poison_keys(v));
}

void stats_summary_start(struct stats *st, const struct stats_view *v, ev_tstamp now)
{
	st->summary_at = now;
	st->summary_keys = stats_keys_refreshed(v);
	memcpy(st->wait_counts_at_summary, st->wait_counts, sizeof(st->wait_counts));
}

void stats_summary(struct stats *st, const struct stats_view *v, ev_tstamp now)
{
	uint64_t keys = stats_keys_refreshed(v);
	double span = now - st->summary_at;
	st->keys_per_s = span > 0 ? (double)(keys - st->summary_keys) / span : 0;
	long long depth = 0;
	struct channel_stats cs;
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);)
		if (cs.has_queue && cs.queue_depth > 0)
			depth += cs.queue_depth;
	char wait[48] = "";
	double p99 = wait_quantile(st, 0.99);
	if (p99 >= 0)
		snprintf(wait, sizeof(wait), " queue_wait_p99_s<=%g", p99);
	struct http_body more = {0};
	for (size_t i = 0; i < v->n_sources; i++)
		if (v->sources[i]->ops->report != NULL)
			v->sources[i]->ops->report(v->sources[i]->impl, REPORT_SUMMARY, &more);
	log_info("summary state=%s keys_refreshed=%llu keys_per_s=%.1f pending_keys=%zu queue_depth=%lld%s"
	         " workers=%zu/%zu poison_keys=%llu notifications=%llu%s",
	         v->state, (unsigned long long)(keys - st->summary_keys), st->keys_per_s, stats_pending(v), depth, wait,
	         v->workers_connected, v->workers_configured, (unsigned long long)poison_keys(v),
	         (unsigned long long)v->notifications, more.data ? more.data : "");
	free(more.data);
	stats_summary_start(st, v, now);
}

void stats_log_totals(const struct stats *st, const struct stats_view *v)
{
	(void)st;
	log_info("totals notifications=%llu unknown_channel=%llu", (unsigned long long)v->notifications,
	         (unsigned long long)v->unknown_channel);
	struct channel_stats cs;
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);) {
		if (cs.has_queue)
			log_info("totals channel=%s delivery=queue rings=%llu drains=%llu keys_drained=%llu"
			         " rows_written=%llu failures=%llu",
			         cs.name, (unsigned long long)cs.rings, (unsigned long long)cs.batches_ok,
			         (unsigned long long)cs.keys_refreshed, (unsigned long long)cs.rows_written,
			         (unsigned long long)cs.batches_failed);
		else
			log_info("totals channel=%s keys_received=%llu keys_malformed=%llu keys_overflowed=%llu"
			         " keys_refreshed=%llu rows_written=%llu batches=%llu batches_failed=%llu delivery=%s",
			         cs.name, (unsigned long long)cs.keys_received, (unsigned long long)cs.keys_malformed,
			         (unsigned long long)cs.keys_overflowed, (unsigned long long)cs.keys_refreshed,
			         (unsigned long long)cs.rows_written, (unsigned long long)cs.batches_ok,
			         (unsigned long long)cs.batches_failed, delivery_name(cs.delivery));
	}
	log_info("totals poison_keys_isolated=%llu poison_keys_recovered=%llu", (unsigned long long)v->poison_found,
	         (unsigned long long)v->poison_recovered);
}

/* ---- /metrics ---- */

static void family(struct http_body *b, const char *name, const char *type, const char *help)
{
	http_body_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The field of a channel_stats a per-channel counter family reads. */
enum channel_field { F_RECEIVED, F_REFRESHED, F_ROWS };

static uint64_t field(const struct channel_stats *cs, enum channel_field f)
{
	return f == F_RECEIVED ? cs->keys_received : f == F_REFRESHED ? cs->keys_refreshed : cs->rows_written;
}

static void per_channel(struct http_body *b, const struct stats_view *v, const char *name, const char *help,
                        enum channel_field f, bool queue_too)
{
	struct channel_stats cs;
	family(b, name, "counter", help);
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);)
		if (queue_too || !cs.has_queue)
			http_body_printf(b, "%s{channel=\"%s\"} %llu\n", name, cs.name,
			                 (unsigned long long)field(&cs, f));
}

static void histogram(struct http_body *b, const char *name, const char *help, const uint64_t *counts, bool cumulative,
                      uint64_t count, double sum)
{
	uint64_t c = 0;
	family(b, name, "histogram", help);
	for (size_t i = 0; i < STATS_N_BOUNDS; i++) {
		c = cumulative ? counts[i] : c + counts[i];
		http_body_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, STATS_BOUNDS_S[i], (unsigned long long)c);
	}
	http_body_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
	                 (unsigned long long)count, name, sum, name, (unsigned long long)count);
}

void stats_render_metrics(const struct stats *st, const struct stats_view *v, struct http_body *b)
{
	struct channel_stats cs;

	family(b, "rollupd_ready", "gauge",
	       "1 while listening on every channel and caught up (what /healthz reports).");
	http_body_printf(b, "rollupd_ready %d\n", v->ready);
	family(b, "rollupd_standby", "gauge", "1 while waiting as the standby of another rollupd.");
	http_body_printf(b, "rollupd_standby %d\n", v->standby);
	family(b, "rollupd_listener_connected", "gauge", "1 while the listener's LISTEN is in force.");
	http_body_printf(b, "rollupd_listener_connected %d\n", v->listening);
	family(b, "rollupd_workers", "gauge", "Worker connections, by state.");
	http_body_printf(b, "rollupd_workers{state=\"connected\"} %zu\nrollupd_workers{state=\"configured\"} %zu\n",
	                 v->workers_connected, v->workers_configured);
	family(b, "rollupd_connections_lost_total", "counter",
	       "Sessions lost (listener or worker), each reconnected with backoff.");
	http_body_printf(b, "rollupd_connections_lost_total{conn=\"listener\"} %llu\n",
	                 (unsigned long long)st->lost[STATS_LISTENER]);
	http_body_printf(b, "rollupd_connections_lost_total{conn=\"worker\"} %llu\n",
	                 (unsigned long long)st->lost[STATS_WORKER]);
	family(b, "rollupd_notifications_total", "counter", "Notifications received.");
	http_body_printf(b, "rollupd_notifications_total %llu\n", (unsigned long long)v->notifications);

	per_channel(b, v, "rollupd_keys_received_total", "Keys received per channel (before dedup; not queue mode).",
	            F_RECEIVED, false);
	per_channel(b, v, "rollupd_keys_refreshed_total", "Keys refreshed per channel (batches and queue drains).",
	            F_REFRESHED, true);
	per_channel(b, v, "rollupd_rows_written_total", "Derived rows written or deleted per channel.", F_ROWS, true);
	family(b, "rollupd_batches_total", "counter", "Refresh batches and queue drains, by result.");
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);)
		http_body_printf(b,
		                 "rollupd_batches_total{channel=\"%s\",result=\"ok\"} %llu\n"
		                 "rollupd_batches_total{channel=\"%s\",result=\"failed\"} %llu\n",
		                 cs.name, (unsigned long long)cs.batches_ok, cs.name,
		                 (unsigned long long)cs.batches_failed);
	family(b, "rollupd_keys_rejected_total", "counter",
	       "Keys not taken, by reason (malformed, overflowed the pending cap).");
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);)
		if (!cs.has_queue)
			http_body_printf(b,
			                 "rollupd_keys_rejected_total{channel=\"%s\",reason=\"malformed\"} %llu\n"
			                 "rollupd_keys_rejected_total{channel=\"%s\",reason=\"overflow\"} %llu\n",
			                 cs.name, (unsigned long long)cs.keys_malformed, cs.name,
			                 (unsigned long long)cs.keys_overflowed);
	family(b, "rollupd_pending_keys", "gauge", "Keys waiting in memory per channel (not queue mode).");
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);)
		if (!cs.has_queue)
			http_body_printf(b, "rollupd_pending_keys{channel=\"%s\"} %zu\n", cs.name, cs.pending);
	family(b, "rollupd_queue_depth", "gauge", "Queued keys per queue-mode channel, at the last stats step.");
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);)
		if (cs.has_queue && cs.queue_depth >= 0)
			http_body_printf(b, "rollupd_queue_depth{channel=\"%s\"} %lld\n", cs.name, cs.queue_depth);
	family(b, "rollupd_queue_oldest_key_seconds", "gauge", "Age of the oldest queued key, at the last stats step.");
	for (struct channel_iter it = {0}; next_channel(v, &it, &cs);)
		if (cs.has_queue && cs.queue_depth >= 0)
			http_body_printf(b, "rollupd_queue_oldest_key_seconds{channel=\"%s\"} %.3f\n", cs.name,
			                 cs.queue_oldest_ms / 1000.0);
	family(b, "rollupd_poison_keys_total", "counter",
	       "Keys isolated because their refresh failed, and recovered since.");
	http_body_printf(b, "rollupd_poison_keys_total{event=\"isolated\"} %llu\n",
	                 (unsigned long long)v->poison_found);
	http_body_printf(b, "rollupd_poison_keys_total{event=\"recovered\"} %llu\n",
	                 (unsigned long long)v->poison_recovered);
	family(b, "rollupd_reconcile_last_success_timestamp_seconds", "gauge",
	       "When each rollup's last full walk ended.");
	for (size_t i = 0; i < walks_count(v->walks); i++) {
		struct walk_status w = walks_status(v->walks, i);
		if (w.last_done > 0)
			http_body_printf(b, "rollupd_reconcile_last_success_timestamp_seconds{rollup=\"%s\"} %.3f\n",
			                 w.rollup, w.last_done);
	}
	family(b, "rollupd_reconcile_running", "gauge", "1 while a reconcile walk of the rollup is under way.");
	for (size_t i = 0; i < walks_count(v->walks); i++) {
		struct walk_status w = walks_status(v->walks, i);
		http_body_printf(b, "rollupd_reconcile_running{rollup=\"%s\"} %d\n", w.rollup, w.active);
	}
	family(b, "rollupd_notification_queue_usage", "gauge",
	       "pg_notification_queue_usage() at the listener's last ping (0-1).");
	if (v->notify_queue_usage >= 0)
		http_body_printf(b, "rollupd_notification_queue_usage %g\n", v->notify_queue_usage);
	for (size_t i = 0; i < v->n_sources; i++)
		if (v->sources[i]->ops->report != NULL)
			v->sources[i]->ops->report(v->sources[i]->impl, REPORT_METRICS, b);
	histogram(b, "rollupd_queue_wait_seconds",
	          "How long drained keys waited in the queue, from the writer's transaction to their drain.",
	          st->wait_counts, false, st->wait_count, st->wait_sum_s);
	histogram(b, "rollupd_refresh_duration_seconds", "Refresh batches and queue drains that took keys.",
	          st->duration_buckets, true, st->duration_count, st->duration_sum_s);
}
