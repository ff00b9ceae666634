/*
 * queue: per-channel drain state and three timers: the earliest due step,
 * the safety poll and the stats interval; then the key source around it.
 */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "poison.h"
#include "source.h"
#include "stats.h"
#include "xalloc.h"

struct queues {
	struct ev_loop *loop;
	struct queue_policy policy;
	struct queue_channel **channels;
	size_t n_channels;
	size_t next; /* round-robin start */
	ev_timer due_timer;
	ev_timer poll_timer;
	ev_timer stats_timer;
	void (*on_due)(void *arg);
	void *arg;
};

static void arm_due_timer(struct queues *qs);

static void due_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct queues *qs = w->data;
	(void)loop;
	(void)revents;
	qs->on_due(qs->arg);
	arm_due_timer(qs);
}

/* The safety net for a lost NOTIFY (or a writer that could not see the
 * doorbell armed): every idle channel drains once per poll. */
static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct queues *qs = w->data;
	ev_tstamp now = ev_now(loop);
	(void)revents;
	for (size_t i = 0; i < qs->n_channels; i++) {
		struct queue_channel *ch = qs->channels[i];
		if (!ch->wanted && ch->in_flight == 0) {
			ch->wanted = true;
			ch->next = QUEUE_DRAIN;
			ch->due_at = now;
		}
	}
	qs->on_due(qs->arg);
	arm_due_timer(qs);
}

static void stats_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct queues *qs = w->data;
	(void)loop;
	(void)revents;
	for (size_t i = 0; i < qs->n_channels; i++)
		qs->channels[i]->stats_wanted = true;
	qs->on_due(qs->arg);
}

static void start_periodic(struct queues *qs)
{
	ev_timer_stop(qs->loop, &qs->poll_timer);
	ev_timer_stop(qs->loop, &qs->stats_timer);
	if (qs->n_channels == 0)
		return;
	if (qs->policy.poll_s > 0) {
		ev_timer_set(&qs->poll_timer, qs->policy.poll_s, qs->policy.poll_s);
		ev_timer_start(qs->loop, &qs->poll_timer);
	}
	if (qs->policy.stats_s > 0) {
		ev_timer_set(&qs->stats_timer, qs->policy.stats_s, qs->policy.stats_s);
		ev_timer_start(qs->loop, &qs->stats_timer);
	}
}

struct queues *queues_new(struct ev_loop *loop, const struct queue_policy *policy, void (*on_due)(void *arg), void *arg)
{
	struct queues *qs = xcalloc(1, sizeof(*qs));
	qs->loop = loop;
	qs->policy = *policy;
	qs->on_due = on_due;
	qs->arg = arg;
	ev_init(&qs->due_timer, due_cb);
	ev_init(&qs->poll_timer, poll_cb);
	ev_init(&qs->stats_timer, stats_cb);
	qs->due_timer.data = qs;
	qs->poll_timer.data = qs;
	qs->stats_timer.data = qs;
	return qs;
}

static void channel_free(struct queue_channel *ch)
{
	free(ch->name);
	free(ch->rollup);
	free(ch);
}

void queues_free(struct queues *qs)
{
	if (qs == NULL)
		return;
	ev_timer_stop(qs->loop, &qs->due_timer);
	ev_timer_stop(qs->loop, &qs->poll_timer);
	ev_timer_stop(qs->loop, &qs->stats_timer);
	for (size_t i = 0; i < qs->n_channels; i++)
		channel_free(qs->channels[i]);
	free(qs->channels);
	free(qs);
}

void queues_set_policy(struct queues *qs, const struct queue_policy *policy)
{
	qs->policy = *policy;
	for (size_t i = 0; i < qs->n_channels; i++) {
		qs->channels[i]->retry.min_ms = policy->retry_min_ms;
		qs->channels[i]->retry.max_ms = policy->retry_max_ms;
	}
	start_periodic(qs);
	arm_due_timer(qs);
}

static size_t find_index(const struct queues *qs, const char *name)
{
	size_t i = 0;
	while (i < qs->n_channels && strcmp(qs->channels[i]->name, name) != 0)
		i++;
	return i;
}

struct queue_channel *queues_find(struct queues *qs, const char *name)
{
	size_t i = find_index(qs, name);
	return i < qs->n_channels ? qs->channels[i] : NULL;
}

/* A channel rollupd has just started to watch (at start, after the
 * listener's reconnect, or a delivery change) is presumed busy: keys may
 * have queued while nobody drained them. Its first drains may then run
 * `parallel` at once, a window apart, instead of one alone until the first
 * comes back full; the first that finds the channel quiet ends it (an
 * empty queue costs one drain, or two when the first takes over a window). */
static void drain_now(struct queue_channel *ch, ev_tstamp now)
{
	ch->armed = false;
	ch->backlog = true;
	ch->wanted = true;
	ch->next = QUEUE_DRAIN;
	ch->due_at = now;
}

void queues_set_channels(struct queues *qs, const struct catalog *cat, bool new_session)
{
	struct queue_channel **channels = xcalloc(cat->n_channels + 1, sizeof(struct queue_channel *));
	bool *kept = xcalloc(qs->n_channels + 1, sizeof(bool));
	ev_tstamp now = ev_now(qs->loop);
	size_t n = 0;

	for (size_t i = 0; i < cat->n_channels; i++) {
		const struct catalog_channel *cc = &cat->channels[i];
		if (cc->delivery != DELIVERY_QUEUE)
			continue;
		size_t j = find_index(qs, cc->name);
		struct queue_channel *ch;
		if (j < qs->n_channels) {
			ch = qs->channels[j];
			kept[j] = true;
			if (new_session)
				drain_now(ch, now);
		} else {
			ch = xcalloc(1, sizeof(*ch));
			ch->name = xstrdup(cc->name);
			ch->rollup = xstrdup(cc->rollup);
			backoff_init(&ch->retry, qs->policy.retry_min_ms, qs->policy.retry_max_ms);
			ch->depth = -1;
			drain_now(ch, now);
		}
		channels[n++] = ch;
	}
	for (size_t j = 0; j < qs->n_channels; j++)
		if (!kept[j])
			channel_free(qs->channels[j]);
	free(kept);
	free(qs->channels);
	qs->channels = channels;
	qs->n_channels = n;
	qs->next = 0;
	start_periodic(qs);
	arm_due_timer(qs);
}

void queues_ring(struct queues *qs, struct queue_channel *ch)
{
	ch->rings++;
	ch->armed = false; /* the writer that rang disarmed it */
	if (!ch->wanted) {
		ch->wanted = true;
		ch->next = QUEUE_DRAIN;
		ch->due_at = ev_now(qs->loop);
	}
}

static bool step_due(const struct queues *qs, const struct queue_channel *ch, ev_tstamp now)
{
	if (!ch->wanted || now < ch->due_at)
		return false;
	if (ch->next == QUEUE_DRAIN && ch->backlog)
		return ch->in_flight < (qs->policy.parallel > 0 ? qs->policy.parallel : 1);
	/* Re-arming and the last look need every drain of the channel finished. */
	return ch->in_flight == 0;
}

struct queue_job *queues_take(struct queues *qs, ev_tstamp now)
{
	for (size_t k = 0; k < qs->n_channels; k++) {
		size_t i = (qs->next + k) % qs->n_channels;
		struct queue_channel *ch = qs->channels[i];
		enum queue_step step;
		if (ch->stats_wanted)
			step = QUEUE_STATS;
		else if (step_due(qs, ch, now))
			step = ch->next;
		else
			continue;

		struct queue_job *job = xcalloc(1, sizeof(*job));
		job->channel = xstrdup(ch->name);
		job->rollup = xstrdup(ch->rollup);
		job->step = step;
		snprintf(job->max_keys, sizeof(job->max_keys), "%zu", qs->policy.max_keys);
		job->rings_before = ch->rings;
		job->taken_at = now;
		if (step == QUEUE_DRAIN || step == QUEUE_LAST_LOOK)
			ch->drain_taken_at = now;
		if (step == QUEUE_STATS) {
			ch->stats_wanted = false;
		} else if (!(step == QUEUE_DRAIN && ch->backlog)) {
			ch->wanted = false;
		} else {
			/* Busy: another drain may run beside this one, a window later
			 * (started together, the second would find nothing to claim). */
			ch->due_at = now + qs->policy.window_s;
			arm_due_timer(qs);
		}
		ch->in_flight++;
		qs->next = (i + 1) % qs->n_channels;
		return job;
	}
	return NULL;
}

static void job_free(struct queue_job *job)
{
	free(job->channel);
	free(job->rollup);
	free(job);
}

uint32_t queues_complete(struct queues *qs, struct queue_job *job, bool ok, long taken, long written)
{
	struct queue_channel *ch = queues_find(qs, job->channel);
	ev_tstamp now = ev_now(qs->loop);
	uint32_t delay = 0;

	if (ch == NULL) {
		job_free(job);
		return 0;
	}
	ch->in_flight--;
	if (job->step == QUEUE_STATS) {
		job_free(job);
		return 0;
	}
	if (!ok) {
		/* Nothing was lost (the keys stay queued); the doorbell's state is unknown. */
		ch->failures++;
		delay = backoff_next_ms(&ch->retry, (uint32_t)random());
		ch->armed = false;
		ch->backlog = false;
		ch->wanted = true;
		ch->next = QUEUE_DRAIN;
		ch->due_at = now + delay / 1000.0;
	} else if (job->step == QUEUE_REARM) {
		backoff_reset(&ch->retry);
		ch->wanted = true;
		if (taken > 0 && ch->rings == job->rings_before) {
			ch->armed = true;
			ch->next = QUEUE_LAST_LOOK;
			ch->due_at = now;
		} else if (taken > 0) {
			/* A ring arrived meanwhile: a writer may have disarmed it again. */
			ch->next = QUEUE_DRAIN;
			ch->due_at = now;
		} else {
			/* A writer is between queueing and committing: poll until one can re-arm. */
			ch->next = QUEUE_DRAIN;
			ch->due_at = now + qs->policy.window_s;
		}
	} else {
		backoff_reset(&ch->retry);
		ch->drains++;
		ch->keys_drained += taken > 0 ? (uint64_t)taken : 0;
		ch->rows_written += written > 0 ? (uint64_t)written : 0;
		/* Busy: a full batch, or keys that took a window or more to refresh
		 * (keys queued meanwhile have waited that long already). Drains go
		 * on, up to `parallel` at once, without re-arming the doorbell,
		 * until one finds the channel quiet. */
		if (taken >= (long)qs->policy.max_keys || (taken > 0 && now - job->taken_at >= qs->policy.window_s)) {
			ch->backlog = true;
			ch->wanted = true;
			ch->next = QUEUE_DRAIN;
			/* Drains of a busy channel start a window apart: at most one
			 * claim per window, however many workers. */
			ev_tstamp next_claim = ch->drain_taken_at + qs->policy.window_s;
			ch->due_at = next_claim > now ? next_claim : now;
		} else {
			ch->backlog = false;
			if (ch->armed) {
				ch->wanted = false; /* asleep until the doorbell rings */
				ch->next = QUEUE_DRAIN;
			} else {
				ch->wanted = true;
				ch->next = QUEUE_REARM;
				ch->due_at = now;
			}
		}
	}
	job_free(job);
	arm_due_timer(qs);
	return delay;
}

void queues_set_depth(struct queues *qs, const char *channel, long long depth, double oldest_ms)
{
	struct queue_channel *ch = queues_find(qs, channel);
	if (ch != NULL) {
		ch->depth = depth;
		ch->oldest_ms = oldest_ms;
	}
}

size_t queues_in_flight(const struct queues *qs)
{
	size_t n = 0;
	for (size_t i = 0; i < qs->n_channels; i++)
		n += qs->channels[i]->in_flight;
	return n;
}

const struct queue_channel *queues_channel(const struct queues *qs, size_t i)
{
	return i < qs->n_channels ? qs->channels[i] : NULL;
}

/* Only future deadlines arm the timer; a step already due is taken by the
 * engine's next dispatch. */
static void arm_due_timer(struct queues *qs)
{
	ev_tstamp now = ev_now(qs->loop);
	ev_tstamp deadline = 0;
	bool any = false;

	for (size_t i = 0; i < qs->n_channels; i++) {
		const struct queue_channel *ch = qs->channels[i];
		if (!ch->wanted || ch->due_at <= now)
			continue;
		if (!any || ch->due_at < deadline)
			deadline = ch->due_at;
		any = true;
	}
	ev_timer_stop(qs->loop, &qs->due_timer);
	if (!any)
		return;
	ev_timer_set(&qs->due_timer, deadline - now, 0.);
	ev_timer_start(qs->loop, &qs->due_timer);
}

/* ---- the key source ---- */

static const char QUEUE_DRAIN_SQL[] = "SELECT taken, written, truncated, poisoned, detail,"
                                      " array_to_string(wait_buckets, ','), wait_sum"
                                      " FROM rollupd.queue_drain($1, $2::integer, $3::double precision[])";
static const char QUEUE_REARM_SQL[] = "SELECT CASE WHEN rollupd.queue_rearm($1) THEN 1 ELSE 0 END";
static const char QUEUE_STATS_SQL[] = "SELECT depth, round(oldest_ms) FROM rollupd.queue_stats($1)";

struct queue_source {
	struct source_env env;
	struct queues *queues;
	bool stopping;
};

static struct queue_policy policy_from(const struct config *cfg)
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

static void source_set_catalog(void *impl, const struct catalog *cat, bool new_session)
{
	struct queue_source *qsrc = impl;
	queues_set_channels(qsrc->queues, cat, new_session);
}

/* A doorbell: the writer that rang disarmed it; drain now. */
static bool source_on_notify(void *impl, const char *channel, const char *payload)
{
	struct queue_source *qsrc = impl;
	struct queue_channel *ch = queues_find(qsrc->queues, channel);
	(void)payload;
	if (ch == NULL)
		return false;
	queues_ring(qsrc->queues, ch);
	qsrc->env.due(qsrc->env.arg);
	return true;
}

static void step_done(struct job *job, const PGresult *res, const char *error, ev_tstamp now)
{
	struct queue_source *qsrc = job->owner;
	struct queue_job *q = job->u.queue;
	double ms = (now - job->started) * 1000.0;
	int want_cols = q->step == QUEUE_REARM ? 1 : q->step == QUEUE_STATS ? 2 : 7;

	if (error == NULL && (PQntuples(res) != 1 || PQnfields(res) != want_cols))
		error = "unexpected result shape";
	if (error != NULL) {
		char channel[64];
		enum queue_step step = q->step;
		snprintf(channel, sizeof(channel), "%s", q->channel);
		uint32_t delay = queues_complete(qsrc->queues, q, false, 0, 0);
		log_warning("queue %s failed channel=%s ms=%.0f error=\"%s\" retry_in_ms=%u (the keys stay queued)",
		            step_name(step), channel, ms, error, delay);
		return;
	}
	if (q->step == QUEUE_STATS) {
		const struct queue_channel *ch = queues_find(qsrc->queues, q->channel);
		queues_set_depth(qsrc->queues, q->channel, strtoll(PQgetvalue(res, 0, 0), NULL, 10),
		                 strtod(PQgetvalue(res, 0, 1), NULL));
		log_info("queue channel=%s depth=%s oldest_ms=%s drained_keys=%llu rings=%llu", q->channel,
		         PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), ch ? (unsigned long long)ch->keys_drained : 0ULL,
		         ch ? (unsigned long long)ch->rings : 0ULL);
		queues_complete(qsrc->queues, q, true, 0, 0);
		return;
	}
	if (q->step == QUEUE_REARM) {
		long armed = strtol(PQgetvalue(res, 0, 0), NULL, 10);
		log_debug("queue rearm channel=%s armed=%s ms=%.1f", q->channel,
		          armed ? "yes" : "no (writer in flight)", ms);
		queues_complete(qsrc->queues, q, true, armed, 0);
		return;
	}
	long taken = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	long written = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	if (taken > 0) {
		stats_observe_refresh(qsrc->env.stats, ms / 1000.0);
		stats_observe_waits(qsrc->env.stats, PQgetvalue(res, 0, 5), strtod(PQgetvalue(res, 0, 6), NULL));
	}
	log_debug("queue %s channel=%s keys=%ld rows=%ld ms=%.1f", step_name(q->step), q->channel, taken, written, ms);
	poison_found(qsrc->env.poison, q->channel, strtol(PQgetvalue(res, 0, 3), NULL, 10), PQgetvalue(res, 0, 4));
	if (strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		log_warning(
		    "queue of channel=%s was emptied by a crash (its sentinel row is gone); reconciling rollup=%s",
		    q->channel, q->rollup);
		qsrc->env.reconcile(qsrc->env.arg, q->rollup, WALK_QUEUE_TRUNCATED);
	}
	queues_complete(qsrc->queues, q, true, taken, written);
}

static bool source_take(void *impl, ev_tstamp now, struct job *job)
{
	struct queue_source *qsrc = impl;
	if (qsrc->stopping)
		return false; /* queued keys wait in the database for the next start */
	struct queue_job *q = queues_take(qsrc->queues, now);
	if (q == NULL)
		return false;
	job->kind = JOB_QUEUE_STEP;
	job->owner = qsrc;
	job->done = step_done;
	job->u.queue = q;
	job->params[0] = q->channel;
	switch (q->step) {
	case QUEUE_REARM:
		job->sql = QUEUE_REARM_SQL;
		job->nparams = 1;
		break;
	case QUEUE_STATS:
		job->sql = QUEUE_STATS_SQL;
		job->nparams = 1;
		break;
	case QUEUE_DRAIN:
	case QUEUE_LAST_LOOK:
		job->sql = QUEUE_DRAIN_SQL;
		job->nparams = 3;
		job->params[1] = q->max_keys;
		job->params[2] = STATS_BOUNDS_SQL;
		break;
	}
	return true;
}

static size_t source_pending(const void *impl)
{
	(void)impl;
	return 0; /* queued keys are in the database */
}

static void source_stop(void *impl)
{
	struct queue_source *qsrc = impl;
	qsrc->stopping = true;
}

static void source_reload(void *impl, const struct config *cfg)
{
	struct queue_source *qsrc = impl;
	struct queue_policy policy = policy_from(cfg);
	queues_set_policy(qsrc->queues, &policy);
}

static bool source_channel(const void *impl, size_t i, struct channel_stats *out)
{
	const struct queue_source *qsrc = impl;
	const struct queue_channel *ch = queues_channel(qsrc->queues, i);
	if (ch == NULL)
		return false;
	*out = (struct channel_stats){
	    .name = ch->name,
	    .delivery = DELIVERY_QUEUE,
	    .keys_refreshed = ch->keys_drained,
	    .rows_written = ch->rows_written,
	    .batches_ok = ch->drains,
	    .batches_failed = ch->failures,
	    .has_queue = true,
	    .queue_depth = ch->depth,
	    .queue_oldest_ms = ch->oldest_ms,
	    .rings = ch->rings,
	};
	return true;
}

static void source_free_impl(void *impl)
{
	struct queue_source *qsrc = impl;
	queues_free(qsrc->queues);
	free(qsrc);
}

static const struct source_ops queue_ops = {
    .mode = DELIVERY_QUEUE,
    .loses_keys_while_away = false, /* keys wait in the queue */
    .set_catalog = source_set_catalog,
    .on_notify = source_on_notify,
    .take = source_take,
    .pending = source_pending,
    .stop = source_stop,
    .reload = source_reload,
    .channel = source_channel,
    .free = source_free_impl,
};

struct source *queue_source_new(const struct source_env *env, const struct config *cfg)
{
	struct queue_source *qsrc = xcalloc(1, sizeof(*qsrc));
	struct queue_policy policy = policy_from(cfg);
	qsrc->env = *env;
	qsrc->queues = queues_new(env->loop, &policy, env->due, env->arg);
	return source_new(&queue_ops, qsrc);
}
