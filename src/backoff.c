/*
 * backoff: capped exponential delays with "equal jitter".
 */
#include "backoff.h"

void backoff_init(struct backoff *b, uint32_t min_ms, uint32_t max_ms)
{
	b->min_ms = min_ms > 0 ? min_ms : 1;
	b->max_ms = max_ms >= b->min_ms ? max_ms : b->min_ms;
	b->attempts = 0;
}

void backoff_reset(struct backoff *b)
{
	b->attempts = 0;
}

uint32_t backoff_next_ms(struct backoff *b, uint32_t random_value)
{
	uint64_t ceiling = b->min_ms;

	for (uint32_t i = 0; i < b->attempts && ceiling < b->max_ms; i++)
		ceiling *= 2;
	if (ceiling > b->max_ms)
		ceiling = b->max_ms;
	if (b->attempts < UINT32_MAX)
		b->attempts++;

	uint64_t half = ceiling / 2;
	return (uint32_t)(ceiling - half + random_value % (half + 1));
}
