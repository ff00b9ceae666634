/*
 * source: the one wrapper every delivery mode's implementation lives in.
 */
#include "source.h"

#include <stdlib.h>

#include "xalloc.h"

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
