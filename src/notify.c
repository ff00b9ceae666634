/*
 * notify: the notify-mode key source. Writers' light triggers send the keys
 * in NOTIFY payloads ("17,42"); the listener hands each notification here;
 * the keys are parsed, deduplicated per channel in a batcher and refreshed
 * in batches. Notifications sent while nobody listens are lost, so every new
 * listener session is followed by a catch-up walk (the engine's).
 */
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "log.h"
#include "payload.h"
#include "refresh.h"
#include "source.h"
#include "xalloc.h"

struct notify_source {
	struct source_env env;
	struct batcher *batcher;
	size_t max_pending; /* batch.max_pending_keys, for the log */
};

static struct batch_policy policy_from(const struct config *cfg)
{
	return (struct batch_policy){
	    .max_keys = (size_t)cfg->batch_max_keys,
	    .max_pending = (size_t)cfg->batch_max_pending_keys,
	    .window_s = cfg->batch_window_ms / 1000.0,
	    .retry_min_ms = (uint32_t)cfg->retry_min_ms,
	    .retry_max_ms = (uint32_t)cfg->retry_max_ms,
	};
}

static void set_catalog(void *impl, const struct catalog *cat, bool new_session)
{
	struct notify_source *ns = impl;
	(void)new_session;
	size_t dropped = batcher_set_channels(ns->batcher, cat, DELIVERY_NOTIFY);
	if (dropped > 0)
		log_warning("pending keys dropped with channels no longer configured keys=%zu", dropped);
}

struct parse_ctx {
	struct notify_source *ns;
	struct batch_channel *ch;
	int bad_logged;
	size_t dropped;
};

static int add_key(const char *key, size_t len, void *arg)
{
	struct parse_ctx *ctx = arg;
	if (batcher_add_key(ctx->ns->batcher, ctx->ch, key, len, 0) == BATCH_KEY_DROPPED)
		ctx->dropped++;
	return 0;
}

static void bad_key(const char *token, size_t len, const char *reason, void *arg)
{
	struct parse_ctx *ctx = arg;

	batcher_count_malformed(ctx->ch);
	/* One line per bad key, up to a few per payload; the count covers the rest. */
	if (ctx->bad_logged++ < 3)
		log_warning("malformed key skipped channel=%s key=\"%.*s\" reason=\"%s\"", ctx->ch->name,
		            (int)(len > 64 ? 64 : len), token, reason);
}

static bool on_notify(void *impl, const char *channel, const char *payload)
{
	struct notify_source *ns = impl;
	struct batch_channel *ch = batcher_find(ns->batcher, channel);
	if (ch == NULL)
		return false;
	struct parse_ctx ctx = {.ns = ns, .ch = ch};
	struct payload_handler h = {.on_key = add_key, .on_malformed = bad_key, .arg = &ctx};
	int bad = payload_parse(payload, ch->key_type, &h);
	if (bad > 3)
		log_warning("malformed keys skipped channel=%s count=%d payload_bytes=%zu", channel, bad,
		            strlen(payload));
	/* Dropped keys are found again by a walk of the rollup (said once per walk). */
	if (ctx.dropped > 0 && ns->env.reconcile(ns->env.arg, ch->rollup, WALK_OVERFLOW))
		log_warning(
		    "pending keys over batch.max_pending_keys=%zu channel=%s dropped=%zu; reconciling rollup=%s",
		    ns->max_pending, channel, ctx.dropped, ch->rollup);
	ns->env.due(ns->env.arg);
	return true;
}

static void refresh_done(struct job *job, const PGresult *res, const char *error, ev_tstamp now)
{
	struct notify_source *ns = job->owner;
	refresh_job_finish(ns->batcher, &ns->env, job, res, error, now);
}

static bool take(void *impl, ev_tstamp now, struct job *job)
{
	struct notify_source *ns = impl;
	struct batch *batch = batcher_take(ns->batcher, now);
	if (batch == NULL)
		return false;
	refresh_job_fill(job, batch, ns, refresh_done);
	return true;
}

static size_t pending(const void *impl)
{
	const struct notify_source *ns = impl;
	return batcher_pending(ns->batcher);
}

static void stop(void *impl)
{
	struct notify_source *ns = impl;
	batcher_set_draining(ns->batcher, true);
}

static void reload(void *impl, const struct config *cfg)
{
	struct notify_source *ns = impl;
	struct batch_policy policy = policy_from(cfg);
	batcher_set_policy(ns->batcher, &policy);
	ns->max_pending = (size_t)cfg->batch_max_pending_keys;
}

static bool channel(const void *impl, size_t i, struct channel_stats *out)
{
	const struct notify_source *ns = impl;
	return source_batch_channel_stats(ns->batcher, i, DELIVERY_NOTIFY, out);
}

static void notify_free(void *impl)
{
	struct notify_source *ns = impl;
	batcher_free(ns->batcher);
	free(ns);
}

static const struct source_ops notify_ops = {
    .mode = DELIVERY_NOTIFY,
    .loses_keys_while_away = true,
    .set_catalog = set_catalog,
    .on_notify = on_notify,
    .take = take,
    .pending = pending,
    .stop = stop,
    .reload = reload,
    .channel = channel,
    .free = notify_free,
};

struct source *notify_source_new(const struct source_env *env, const struct config *cfg)
{
	struct notify_source *ns = xcalloc(1, sizeof(*ns));
	struct batch_policy policy = policy_from(cfg);
	ns->env = *env;
	ns->max_pending = (size_t)cfg->batch_max_pending_keys;
	ns->batcher = batcher_new(env->loop, &policy, env->due, env->arg);
	return source_new(&notify_ops, ns);
}
