/*
 * poison: when to retry the keys that rollupd.refresh_keys() isolated because
 * their refresh raised an error (README.md, "Poison keys"). The keys and
 * their attempt counts live in rollupd.poison; this module only keeps one
 * timer for the next retry pass, and logs what refreshes and passes report.
 * It runs nothing itself: the engine takes a due pass as a worker's job
 * (its statement and completion are here).
 */
#ifndef ROLLUPD_POISON_H
#define ROLLUPD_POISON_H

#include <ev.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "backoff.h"

struct job;

struct poison_policy {
	uint32_t max_keys; /* keys retried per channel and pass */
	uint32_t retry_min_ms;
	uint32_t retry_max_ms;
};

struct poison;

/* `on_due` runs from the loop when a pass becomes due. */
struct poison *poison_new(struct ev_loop *loop, const struct poison_policy *policy, void (*on_due)(void *arg),
                          void *arg);
void poison_free(struct poison *p);
void poison_set_policy(struct poison *p, const struct poison_policy *policy);

/* Run a pass within `after_s` seconds (sooner if one is already due earlier). */
void poison_schedule(struct poison *p, double after_s);

/* A refresh or drain of `channel` isolated `count` keys (`detail` lists some
 * with their errors): log it and schedule a pass. */
void poison_found(struct poison *p, const char *channel, long count, const char *detail);

/* Fill `job` with a pass when one is due now (the pass is then in flight
 * until its completion, which logs and schedules the next pass when poison
 * keys remain, or after a backoff delay on failure). */
bool poison_take(struct poison *p, struct job *job);

uint64_t poison_found_total(const struct poison *p);
uint64_t poison_recovered_total(const struct poison *p);

#endif
