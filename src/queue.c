/*
 * queue: per-channel drain state and three timers: the earliest due step,
 * the safety poll and the stats interval.
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

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
	struct queues *qs = calloc(1, sizeof(*qs));
	if (qs == NULL)
		return NULL;
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

static void drain_now(struct queue_channel *ch, ev_tstamp now)
{
	ch->armed = false;
	ch->backlog = false;
	ch->wanted = true;
	ch->next = QUEUE_DRAIN;
	ch->due_at = now;
}

void queues_set_channels(struct queues *qs, const struct catalog *cat, bool new_session)
{
	struct queue_channel **channels = calloc(cat->n_channels + 1, sizeof(struct queue_channel *));
	bool *kept = calloc(qs->n_channels + 1, sizeof(bool));
	ev_tstamp now = ev_now(qs->loop);
	size_t n = 0;

	if (channels == NULL || kept == NULL) {
		free(channels);
		free(kept);
		log_error("out of memory applying the catalog's queue channels; keeping the old ones");
		return;
	}
	for (size_t i = 0; i < cat->n_channels; i++) {
		const struct catalog_channel *cc = &cat->channels[i];
		if (!cc->queue)
			continue;
		size_t j = find_index(qs, cc->name);
		struct queue_channel *ch;
		if (j < qs->n_channels) {
			ch = qs->channels[j];
			kept[j] = true;
			if (new_session)
				drain_now(ch, now);
		} else {
			ch = calloc(1, sizeof(*ch));
			if (ch == NULL || (ch->name = strdup(cc->name)) == NULL ||
			    (ch->rollup = strdup(cc->rollup)) == NULL) {
				if (ch != NULL)
					channel_free(ch);
				log_error("out of memory adding queue channel=%s", cc->name);
				continue;
			}
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

		struct queue_job *job = calloc(1, sizeof(*job));
		if (job == NULL || (job->channel = strdup(ch->name)) == NULL ||
		    (job->rollup = strdup(ch->rollup)) == NULL) {
			if (job != NULL)
				free(job->channel);
			free(job);
			log_error("out of memory taking a queue step channel=%s", ch->name);
			return NULL;
		}
		job->step = step;
		job->rings_before = ch->rings;
		if (step == QUEUE_STATS)
			ch->stats_wanted = false;
		else if (!(step == QUEUE_DRAIN && ch->backlog))
			ch->wanted = false; /* with a backlog, more drains may run beside this one */
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
		if (taken >= (long)qs->policy.max_keys) {
			ch->backlog = true;
			ch->wanted = true;
			ch->next = QUEUE_DRAIN;
			ch->due_at = now;
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
