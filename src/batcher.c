/*
 * batcher: dedup sets per channel plus one timer for the earliest deadline.
 * Keys in flight are not deduplicated against: a key that changes again while
 * its refresh runs must be refreshed again, after the running one.
 */
#include "batcher.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sqlname.h"
#include "xalloc.h"

struct batcher {
	struct ev_loop *loop;
	struct batch_policy policy;
	struct batch_channel **channels;
	size_t n_channels;
	size_t next; /* round-robin start */
	bool draining;
	ev_timer timer;
	void (*on_release)(uint64_t tag, void *arg);
	void *release_arg;
	void (*on_due)(void *arg);
	void *arg;
};

static void rearm(struct batcher *b);
static void release(struct batcher *b, uint64_t tag);

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct batcher *b = w->data;
	(void)loop;
	(void)revents;
	b->on_due(b->arg);
	rearm(b);
}

struct batcher *batcher_new(struct ev_loop *loop, const struct batch_policy *policy, void (*on_due)(void *arg),
                            void *arg)
{
	struct batcher *b = xcalloc(1, sizeof(*b));
	b->loop = loop;
	b->policy = *policy;
	b->on_due = on_due;
	b->arg = arg;
	ev_init(&b->timer, timer_cb);
	b->timer.data = b;
	return b;
}

static void channel_free(struct batch_channel *ch)
{
	free(ch->name);
	free(ch->rollup);
	free(ch->refresh_sql);
	keyset_free(ch->pending);
	free(ch);
}

void batcher_free(struct batcher *b)
{
	if (b == NULL)
		return;
	ev_timer_stop(b->loop, &b->timer);
	for (size_t i = 0; i < b->n_channels; i++)
		channel_free(b->channels[i]);
	free(b->channels);
	free(b);
}

void batcher_set_policy(struct batcher *b, const struct batch_policy *policy)
{
	b->policy = *policy;
	for (size_t i = 0; i < b->n_channels; i++) {
		b->channels[i]->retry.min_ms = policy->retry_min_ms;
		b->channels[i]->retry.max_ms = policy->retry_max_ms;
	}
	rearm(b);
}

/* The index of the channel named `name`, or n_channels. */
static size_t find_index(const struct batcher *b, const char *name)
{
	size_t i = 0;
	while (i < b->n_channels && strcmp(b->channels[i]->name, name) != 0)
		i++;
	return i;
}

struct batch_channel *batcher_find(struct batcher *b, const char *name)
{
	size_t i = find_index(b, name);
	return i < b->n_channels ? b->channels[i] : NULL;
}

static struct batch_channel *channel_new(const struct catalog_channel *cc, const struct batch_policy *policy)
{
	struct batch_channel *ch = xcalloc(1, sizeof(*ch));
	ch->name = xstrdup(cc->name);
	ch->rollup = xstrdup(cc->rollup);
	ch->refresh_sql = xstrdup(cc->refresh_sql);
	ch->key_type = cc->key_type;
	ch->pending = keyset_new();
	backoff_init(&ch->retry, policy->retry_min_ms, policy->retry_max_ms);
	return ch;
}

size_t batcher_set_channels(struct batcher *b, const struct catalog *cat, enum delivery delivery)
{
	struct batch_channel **channels = xcalloc(cat->n_channels + 1, sizeof(struct batch_channel *));
	bool *kept = xcalloc(b->n_channels + 1, sizeof(bool));
	size_t dropped = 0;

	/* The old array stays intact until the new one is complete. */
	for (size_t i = 0; i < cat->n_channels; i++) {
		const struct catalog_channel *cc = &cat->channels[i];
		if (cc->delivery != delivery)
			continue;
		size_t j = find_index(b, cc->name);
		if (j < b->n_channels && b->channels[j]->key_type == cc->key_type) {
			/* Kept: pending keys stay; the refresh function may have changed. */
			struct batch_channel *old = b->channels[j];
			free(old->refresh_sql);
			old->refresh_sql = xstrdup(cc->refresh_sql);
			channels[i] = old;
			kept[j] = true;
		} else {
			channels[i] = channel_new(cc, &b->policy);
		}
	}
	for (size_t j = 0; j < b->n_channels; j++) {
		if (kept[j])
			continue;
		dropped += keyset_count(b->channels[j]->pending);
		char *key;
		uint64_t tag;
		while (keyset_take(b->channels[j]->pending, &key, &tag, 1) == 1) {
			free(key);
			release(b, tag);
		}
		channel_free(b->channels[j]);
	}
	free(kept);
	free(b->channels);
	b->channels = channels;
	b->n_channels = 0;
	for (size_t i = 0; i < cat->n_channels; i++)
		if (channels[i] != NULL)
			channels[b->n_channels++] = channels[i];
	b->next = 0;
	rearm(b);
	return dropped;
}

static void release(struct batcher *b, uint64_t tag)
{
	if (b->on_release != NULL)
		b->on_release(tag, b->release_arg);
}

void batcher_on_release(struct batcher *b, void (*fn)(uint64_t tag, void *arg), void *arg)
{
	b->on_release = fn;
	b->release_arg = arg;
}

enum batch_add batcher_add_key(struct batcher *b, struct batch_channel *ch, const char *key, size_t len, uint64_t tag)
{
	bool was_empty = keyset_count(ch->pending) == 0;
	uint64_t old_tag = 0;
	ch->keys_received++;
	if (keyset_count(ch->pending) >= b->policy.max_pending && !keyset_contains(ch->pending, key, len)) {
		ch->keys_overflowed++;
		return BATCH_KEY_DROPPED;
	}
	switch (keyset_add(ch->pending, key, len, tag, &old_tag)) {
	case 0:
		return BATCH_KEY_PENDING;
	case 2:
		release(b, old_tag);
		return BATCH_KEY_NEW;
	default:
		if (was_empty) {
			ch->first_pending_at = ev_now(b->loop);
			rearm(b);
		}
		return BATCH_KEY_NEW;
	}
}

void batcher_count_malformed(struct batch_channel *ch)
{
	ch->keys_malformed++;
}

/* Is this channel's next batch due at `now`? */
static bool channel_due(const struct batcher *b, const struct batch_channel *ch, ev_tstamp now)
{
	size_t n = keyset_count(ch->pending);

	if (n == 0)
		return false;
	if (b->draining)
		return true;
	if (now < ch->retry_at)
		return false;
	return n >= b->policy.max_keys || now - ch->first_pending_at >= b->policy.window_s;
}

struct batch *batcher_take(struct batcher *b, ev_tstamp now)
{
	for (size_t k = 0; k < b->n_channels; k++) {
		size_t i = (b->next + k) % b->n_channels;
		struct batch_channel *ch = b->channels[i];
		if (!channel_due(b, ch, now))
			continue;

		size_t want = keyset_count(ch->pending);
		if (want > b->policy.max_keys)
			want = b->policy.max_keys;
		struct batch *batch = xcalloc(1, sizeof(*batch));
		batch->keys = xcalloc(want, sizeof(char *));
		batch->tags = xcalloc(want, sizeof(uint64_t));
		batch->n = keyset_take(ch->pending, batch->keys, batch->tags, want);
		batch->channel = xstrdup(ch->name);
		batch->refresh_sql = xstrdup(ch->refresh_sql);
		batch->param = sql_array_literal(batch->keys, batch->n, ch->key_type);
		batch->started = now;
		/* The rest, if any, waits a full window again unless max_keys remain. */
		ch->first_pending_at = now;
		ch->in_flight++;
		b->next = (i + 1) % b->n_channels;
		rearm(b);
		return batch;
	}
	return NULL;
}

static void batch_free(struct batch *batch)
{
	for (size_t i = 0; i < batch->n; i++)
		free(batch->keys[i]);
	free(batch->keys);
	free(batch->tags);
	free(batch->channel);
	free(batch->refresh_sql);
	free(batch->param);
	free(batch);
}

uint32_t batcher_complete(struct batcher *b, struct batch *batch, bool ok, long rows_written)
{
	struct batch_channel *ch = batcher_find(b, batch->channel);
	uint32_t delay = 0;

	if (ch == NULL) {
		if (!ok)
			log_warning("batch failed for a channel no longer configured channel=%s keys=%zu",
			            batch->channel, batch->n);
		for (size_t i = 0; i < batch->n; i++)
			release(b, batch->tags[i]);
		batch_free(batch);
		return 0;
	}
	ch->in_flight--;
	if (ok) {
		ch->batches_ok++;
		ch->keys_refreshed += batch->n;
		ch->rows_written += rows_written > 0 ? (uint64_t)rows_written : 0;
		backoff_reset(&ch->retry);
		ch->retry_at = 0;
		for (size_t i = 0; i < batch->n; i++)
			release(b, batch->tags[i]);
	} else {
		ch->batches_failed++;
		bool was_empty = keyset_count(ch->pending) == 0;
		for (size_t i = 0; i < batch->n; i++) {
			/* Back to pending; of two entries of one key the smaller tag stays. */
			uint64_t old_tag = 0;
			int r =
			    keyset_add(ch->pending, batch->keys[i], strlen(batch->keys[i]), batch->tags[i], &old_tag);
			if (r == 0)
				release(b, batch->tags[i]);
			else if (r == 2)
				release(b, old_tag);
		}
		if (was_empty)
			ch->first_pending_at = ev_now(b->loop);
		delay = backoff_next_ms(&ch->retry, (uint32_t)random());
		ch->retry_at = ev_now(b->loop) + delay / 1000.0;
	}
	batch_free(batch);
	rearm(b);
	return delay;
}

void batcher_set_draining(struct batcher *b, bool draining)
{
	b->draining = draining;
	rearm(b);
}

size_t batcher_pending(const struct batcher *b)
{
	size_t n = 0;
	for (size_t i = 0; i < b->n_channels; i++)
		n += keyset_count(b->channels[i]->pending);
	return n;
}

const struct batch_channel *batcher_channel(const struct batcher *b, size_t i)
{
	return i < b->n_channels ? b->channels[i] : NULL;
}

/*
 * Only future deadlines arm the timer: a channel already due is taken by the
 * engine's next dispatch (keys arrived, or a worker became idle), and a timer
 * for a past deadline would spin while every worker is busy.
 */
static void rearm(struct batcher *b)
{
	ev_tstamp now = ev_now(b->loop);
	ev_tstamp deadline = 0;
	bool any = false;

	for (size_t i = 0; i < b->n_channels; i++) {
		const struct batch_channel *ch = b->channels[i];
		if (keyset_count(ch->pending) == 0)
			continue;
		ev_tstamp d = ch->first_pending_at + b->policy.window_s;
		if (b->draining || keyset_count(ch->pending) >= b->policy.max_keys)
			d = ch->first_pending_at;
		if (ch->retry_at > d)
			d = ch->retry_at;
		if (d <= now)
			continue;
		if (!any || d < deadline)
			deadline = d;
		any = true;
	}
	ev_timer_stop(b->loop, &b->timer);
	if (!any)
		return;
	ev_timer_set(&b->timer, deadline - now, 0.);
	ev_timer_start(b->loop, &b->timer);
}
