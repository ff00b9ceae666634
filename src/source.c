/*
 * source: the one wrapper every delivery mode's implementation lives in.
 */
#include "source.h"

#include <stdlib.h>

#include "batcher.h"
#include "keyset.h"
#include "xalloc.h"

bool source_batch_channel_stats(const struct batcher *b, size_t i, enum delivery delivery, struct channel_stats *out)
{
	const struct batch_channel *ch = batcher_channel(b, i);
	if (ch == NULL)
		return false;
	*out = (struct channel_stats){
	    .name = ch->name,
	    .delivery = delivery,
	    .keys_received = ch->keys_received,
	    .keys_malformed = ch->keys_malformed,
	    .keys_overflowed = ch->keys_overflowed,
	    .keys_refreshed = ch->keys_refreshed,
	    .rows_written = ch->rows_written,
	    .batches_ok = ch->batches_ok,
	    .batches_failed = ch->batches_failed,
	    .pending = keyset_count(ch->pending),
	    .queue_depth = -1,
	};
	return true;
}

struct source *source_new(const struct source_ops *ops, void *impl)
{
	struct source *s = xcalloc(1, sizeof(*s));
	s->ops = ops;
	s->impl = impl;
	return s;
}

void source_free(struct source *s)
{
	if (s == NULL)
		return;
	s->ops->free(s->impl);
	free(s);
}
