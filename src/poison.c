/*
 * poison: one retry timer for the keys kept in rollupd.poison.
 */
#include "poison.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "source.h"
#include "xalloc.h"

static const char POISON_RETRY_SQL[] =
    "SELECT retried, recovered, poisoned, round(next_due_ms), detail FROM rollupd.poison_retry($1, $2, $3)";

struct poison {
	struct ev_loop *loop;
	struct poison_policy policy;
	ev_timer timer;
	bool due;
	bool in_flight;
	char params[3][16];      /* of the pass in flight */
	struct backoff failures; /* of whole passes (lost connection, timeout) */
	uint64_t found;
	uint64_t recovered;
	void (*on_due)(void *arg);
	void *arg;
};

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct poison *p = t->data;
	(void)loop;
	(void)revents;
	p->due = true;
	p->on_due(p->arg);
}

struct poison *poison_new(struct ev_loop *loop, const struct poison_policy *policy, void (*on_due)(void *arg),
                          void *arg)
{
	struct poison *p = xcalloc(1, sizeof(*p));
	p->loop = loop;
	p->on_due = on_due;
	p->arg = arg;
	ev_init(&p->timer, timer_cb);
	p->timer.data = p;
	poison_set_policy(p, policy);
	return p;
}

void poison_free(struct poison *p)
{
	if (p == NULL)
		return;
	ev_timer_stop(p->loop, &p->timer);
	free(p);
}

void poison_set_policy(struct poison *p, const struct poison_policy *policy)
{
	p->policy = *policy;
	backoff_init(&p->failures, policy->retry_min_ms, policy->retry_max_ms);
}

void poison_schedule(struct poison *p, double after_s)
{
	if (after_s < 0)
		after_s = 0;
	if (ev_is_active(&p->timer) && ev_timer_remaining(p->loop, &p->timer) <= after_s)
		return;
	ev_timer_stop(p->loop, &p->timer);
	ev_timer_set(&p->timer, after_s, 0.);
	ev_timer_start(p->loop, &p->timer);
}

void poison_found(struct poison *p, const char *channel, long count, const char *detail)
{
	if (count <= 0)
		return;
	p->found += (uint64_t)count;
	log_warning("poison keys isolated channel=%s keys=%ld %s (kept in rollupd.poison, retried with backoff)",
	            channel, count, detail != NULL && detail[0] != '\0' ? detail : "");
	poison_schedule(p, p->policy.retry_min_ms / 1000.0);
}

static void pass_done(struct job *job, const PGresult *res, const char *error, ev_tstamp now)
{
	struct poison *p = job->owner;
	double ms = (now - job->started) * 1000.0;

	p->in_flight = false;
	if (error == NULL && (PQntuples(res) != 1 || PQnfields(res) != 5))
		error = "unexpected result shape";
	if (error != NULL) {
		uint32_t delay = backoff_next_ms(&p->failures, (uint32_t)random());
		log_warning("poison retry failed ms=%.0f error=\"%s\" retry_in_ms=%u", ms, error, delay);
		poison_schedule(p, delay / 1000.0);
		return;
	}
	backoff_reset(&p->failures);
	long retried = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	long recovered = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	long still = strtol(PQgetvalue(res, 0, 2), NULL, 10);
	p->recovered += (uint64_t)recovered;
	if (retried > 0 && still > 0)
		log_warning("poison retry keys=%ld recovered=%ld still_failing=%ld ms=%.1f %s", retried, recovered,
		            still, ms, PQgetvalue(res, 0, 4));
	else if (retried > 0)
		log_info("poison retry keys=%ld recovered=%ld ms=%.1f", retried, recovered, ms);
	else
		log_debug("poison retry keys=0 next_due_ms=%s ms=%.1f",
		          PQgetisnull(res, 0, 3) ? "none" : PQgetvalue(res, 0, 3), ms);
	/* Not sooner than retry_min_ms: a due key locked by another rollupd's
	 * pass reads as due now. */
	if (!PQgetisnull(res, 0, 3)) {
		double due_ms = strtod(PQgetvalue(res, 0, 3), NULL);
		if (due_ms < p->policy.retry_min_ms)
			due_ms = p->policy.retry_min_ms;
		poison_schedule(p, due_ms / 1000.0);
	}
}

bool poison_take(struct poison *p, struct job *job)
{
	if (!p->due || p->in_flight)
		return false;
	p->due = false;
	p->in_flight = true;
	snprintf(p->params[0], sizeof(p->params[0]), "%u", p->policy.max_keys);
	snprintf(p->params[1], sizeof(p->params[1]), "%u", p->policy.retry_min_ms);
	snprintf(p->params[2], sizeof(p->params[2]), "%u", p->policy.retry_max_ms);
	job->kind = JOB_POISON;
	job->sql = POISON_RETRY_SQL;
	job->nparams = 3;
	for (int i = 0; i < 3; i++)
		job->params[i] = p->params[i];
	job->owner = p;
	job->done = pass_done;
	return true;
}

uint64_t poison_found_total(const struct poison *p)
{
	return p->found;
}

uint64_t poison_recovered_total(const struct poison *p)
{
	return p->recovered;
}
