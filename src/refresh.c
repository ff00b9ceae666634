/*
 * refresh: the result of rollupd.refresh_keys() is one row (written,
 * poisoned, detail).
 */
#include "refresh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "poison.h"
#include "stats.h"

void refresh_job_fill(struct job *job, struct batch *batch, void *owner,
                      void (*done)(struct job *job, const PGresult *res, const char *error, ev_tstamp now))
{
	job->kind = JOB_REFRESH;
	job->sql = batch->refresh_sql;
	job->nparams = 1;
	job->params[0] = batch->param;
	job->owner = owner;
	job->done = done;
	job->u.batch = batch;
}

bool refresh_job_finish(struct batcher *b, const struct source_env *env, struct job *job, const PGresult *res,
                        const char *error, ev_tstamp now)
{
	struct batch *batch = job->u.batch;
	double ms = (now - job->started) * 1000.0;

	if (error == NULL && (PQntuples(res) != 1 || PQnfields(res) != 3))
		error = "unexpected result shape";
	if (error != NULL) {
		char channel[64];
		size_t n = batch->n;
		snprintf(channel, sizeof(channel), "%s", batch->channel);
		uint32_t delay = batcher_complete(b, batch, false, 0);
		log_warning("refresh failed channel=%s keys=%zu ms=%.0f error=\"%s\" retry_in_ms=%u", channel, n, ms,
		            error, delay);
		return false;
	}
	long rows = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	long poisoned = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	stats_observe_refresh(env->stats, ms / 1000.0);
	log_debug("refreshed channel=%s keys=%zu rows=%ld ms=%.1f", batch->channel, batch->n, rows, ms);
	poison_found(env->poison, batch->channel, poisoned, PQgetvalue(res, 0, 2));
	batcher_complete(b, batch, true, rows);
	return true;
}
