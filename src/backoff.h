/*
 * backoff: capped exponential delays with jitter, for reconnects and retries.
 * Pure arithmetic; the caller owns the timer and the source of randomness.
 */
#ifndef ROLLUPD_BACKOFF_H
#define ROLLUPD_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint32_t min_ms;
	uint32_t max_ms;
	uint32_t attempts; /* failures since the last reset */
};

void backoff_init(struct backoff *b, uint32_t min_ms, uint32_t max_ms);
void backoff_reset(struct backoff *b);

/*
 * The delay before the next attempt, and count one more failure. The ceiling
 * is min_ms * 2^attempts capped at max_ms; the delay is drawn uniformly from
 * [ceiling/2, ceiling] using `random_value`, so many clients that failed
 * together do not come back together.
 */
uint32_t backoff_next_ms(struct backoff *b, uint32_t random_value);

#endif
