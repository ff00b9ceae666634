/* The drain cycle of a queue-mode channel, step by step, without a database. */
#include <check.h>
#include <ev.h>
#include <stdlib.h>

#include "queue.h"
#include "suites.h"

static struct ev_loop *loop;
static struct queues *qs;
static struct catalog cat;
static struct catalog_channel channels[2];

static int dues; /* on_due calls */

static void on_due(void *arg)
{
	(void)arg;
	dues++;
}

static void setup(void)
{
	loop = ev_loop_new(EVFLAG_AUTO);
	struct queue_policy policy = {.max_keys = 100,
	                              .window_s = 0.020,
	                              .poll_s = 0,
	                              .stats_s = 0,
	                              .parallel = 2,
	                              .retry_min_ms = 100,
	                              .retry_max_ms = 1000};
	qs = queues_new(loop, &policy, on_due, NULL);
	channels[0] =
	    (struct catalog_channel){.name = "q", .rollup = "r", .key_type = KEY_BIGINT, .delivery = DELIVERY_QUEUE};
	channels[1] =
	    (struct catalog_channel){.name = "n", .rollup = "r", .key_type = KEY_BIGINT, .delivery = DELIVERY_NOTIFY};
	cat = (struct catalog){.channels = channels, .n_channels = 2};
	queues_set_channels(qs, &cat, true);
}

static void teardown(void)
{
	queues_free(qs);
	ev_loop_destroy(loop);
}

/* Take the next step, check it, complete it. */
static void step(ev_tstamp at, enum queue_step want, bool ok, long taken)
{
	struct queue_job *job = queues_take(qs, at);
	ck_assert_msg(job != NULL, "no step due, expected %d", want);
	ck_assert_int_eq(job->step, want);
	queues_complete(qs, job, ok, taken, taken);
}

START_TEST(test_only_queue_channels_are_tracked)
{
	ck_assert_ptr_nonnull(queues_find(qs, "q"));
	ck_assert_ptr_null(queues_find(qs, "n"));
}
END_TEST

START_TEST(test_short_drain_rearms_then_looks_once_more_then_sleeps)
{
	ev_tstamp t = ev_now(loop);
	step(t, QUEUE_DRAIN, true, 3); /* the drain at connect */
	step(t, QUEUE_REARM, true, 1);
	step(t, QUEUE_LAST_LOOK, true, 0);
	ck_assert(queues_find(qs, "q")->armed);
	ck_assert_ptr_null(queues_take(qs, t + 60)); /* asleep: no poll configured */
	queues_ring(qs, queues_find(qs, "q"));
	ck_assert(!queues_find(qs, "q")->armed);
	step(t, QUEUE_DRAIN, true, 1);
	step(t, QUEUE_REARM, true, 1);
}
END_TEST

START_TEST(test_ring_during_rearm_means_not_armed)
{
	ev_tstamp t = ev_now(loop);
	step(t, QUEUE_DRAIN, true, 0);
	struct queue_job *job = queues_take(qs, t);
	ck_assert_int_eq(job->step, QUEUE_REARM);
	queues_ring(qs, queues_find(qs, "q")); /* a writer disarmed it again */
	queues_complete(qs, job, true, 1, 0);
	ck_assert(!queues_find(qs, "q")->armed);
	step(t, QUEUE_DRAIN, true, 1);
	step(t, QUEUE_REARM, true, 1);
	step(t, QUEUE_LAST_LOOK, true, 0);
	ck_assert(queues_find(qs, "q")->armed);
}
END_TEST

START_TEST(test_rearm_refused_polls_after_the_window)
{
	ev_tstamp t = ev_now(loop);
	step(t, QUEUE_DRAIN, true, 0);
	step(t, QUEUE_REARM, true, 0); /* a writer was mid-transaction */
	ck_assert(!queues_find(qs, "q")->armed);
	ck_assert_ptr_null(queues_take(qs, t + 0.010));
	step(t + 0.021, QUEUE_DRAIN, true, 1);
	step(t + 0.021, QUEUE_REARM, true, 1);
	step(t + 0.021, QUEUE_LAST_LOOK, true, 0);
}
END_TEST

START_TEST(test_full_drains_run_in_parallel_and_rearm_waits_for_them)
{
	ev_tstamp t = ev_now(loop);
	step(t, QUEUE_DRAIN, true, 100); /* a backlog: drains start a window apart */
	ck_assert_ptr_null(queues_take(qs, t));
	struct queue_job *a = queues_take(qs, t + 0.020);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_null(queues_take(qs, t + 0.020)); /* the next one a window later */
	struct queue_job *b = queues_take(qs, t + 0.040);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_null(queues_take(qs, t + 1)); /* parallel = 2 */
	queues_complete(qs, a, true, 40, 40);       /* short and quick: the backlog is done */
	ck_assert_ptr_null(queues_take(qs, t + 1)); /* no re-arm while b runs */
	queues_complete(qs, b, true, 100, 100);
	ck_assert_ptr_null(queues_take(qs, t + 0.050));
	step(t + 0.060, QUEUE_DRAIN, true, 10);
	step(t + 0.060, QUEUE_REARM, true, 1);
}
END_TEST

/* The drain a busy channel may start beside the running one is due a
 * window later, and a timer wakes the engine then: nothing else might. */
START_TEST(test_the_drain_beside_is_woken_by_a_timer)
{
	ev_tstamp t = ev_now(loop);
	step(t, QUEUE_DRAIN, true, 100);
	ev_run(loop, EVRUN_ONCE); /* the next drain's timer */
	struct queue_job *a = queues_take(qs, ev_now(loop));
	ck_assert_ptr_nonnull(a);
	dues = 0;
	ev_run(loop, EVRUN_ONCE); /* returns at once, without a call, when no timer is armed */
	ck_assert_int_eq(dues, 1);
	struct queue_job *b = queues_take(qs, ev_now(loop));
	ck_assert_ptr_nonnull(b);
	queues_complete(qs, a, true, 0, 0);
	queues_complete(qs, b, true, 0, 0);
}
END_TEST

/* Keys arriving faster than one drain refreshes them: a drain that found
 * keys and took a window or more lets the next ones run two at once, without
 * re-arming, until one comes back with nothing. */
START_TEST(test_slow_drains_run_in_parallel_until_the_channel_is_quiet)
{
	ev_tstamp t = ev_now(loop);
	step(t, QUEUE_DRAIN, true, 0); /* the drain at connect found nothing */
	step(t, QUEUE_REARM, true, 1);
	step(t, QUEUE_LAST_LOOK, true, 0);
	queues_ring(qs, queues_find(qs, "q"));
	struct queue_job *a = queues_take(qs, t);
	ck_assert_int_eq(a->step, QUEUE_DRAIN);
	ck_assert_ptr_null(queues_take(qs, t + 0.5)); /* not busy yet: one drain */
	a->taken_at -= 0.5;                           /* it took 0.5 s for 30 keys */
	queues_complete(qs, a, true, 30, 30);
	ck_assert_ptr_null(queues_take(qs, t)); /* a window after the last drain began */
	struct queue_job *b = queues_take(qs, t + 0.020);
	ck_assert_int_eq(b->step, QUEUE_DRAIN);
	ck_assert_ptr_null(queues_take(qs, t + 0.020));
	struct queue_job *c = queues_take(qs, t + 0.040);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->step, QUEUE_DRAIN);
	ck_assert_ptr_null(queues_take(qs, t + 1)); /* parallel = 2 */
	queues_complete(qs, b, true, 0, 0);         /* quiet: re-arm once c is done */
	ck_assert_ptr_null(queues_take(qs, t + 1));
	queues_complete(qs, c, true, 2, 2);
	step(t + 1, QUEUE_REARM, true, 1);
	step(t + 1, QUEUE_LAST_LOOK, true, 0);
	ck_assert(queues_find(qs, "q")->armed);
}
END_TEST

/* Keys may have queued while nobody drained them: a new session's first
 * drains run two at once, a window apart, until one finds nothing. */
START_TEST(test_a_new_session_presumes_a_backlog)
{
	ev_tstamp t = ev_now(loop);
	struct queue_job *a = queues_take(qs, t);
	ck_assert_int_eq(a->step, QUEUE_DRAIN);
	ck_assert_ptr_null(queues_take(qs, t + 0.010));
	struct queue_job *b = queues_take(qs, t + 0.020);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(b->step, QUEUE_DRAIN);
	ck_assert_ptr_null(queues_take(qs, t + 1)); /* parallel = 2 */
	queues_complete(qs, a, true, 0, 0);         /* quiet: re-arm once b is done */
	ck_assert_ptr_null(queues_take(qs, t + 1));
	queues_complete(qs, b, true, 0, 0);
	step(t + 1, QUEUE_REARM, true, 1);
	step(t + 1, QUEUE_LAST_LOOK, true, 0);
	ck_assert(queues_find(qs, "q")->armed);
	queues_set_channels(qs, &cat, true); /* the listener reconnected: presumed busy again */
	struct queue_job *c = queues_take(qs, t + 2);
	ck_assert_ptr_nonnull(c);
	struct queue_job *d = queues_take(qs, t + 2.020);
	ck_assert_ptr_nonnull(d);
	queues_complete(qs, c, true, 0, 0);
	queues_complete(qs, d, true, 0, 0);
}
END_TEST

START_TEST(test_failure_backs_off_and_keeps_the_keys_queued)
{
	ev_tstamp t = ev_now(loop);
	struct queue_job *job = queues_take(qs, t);
	ck_assert_ptr_nonnull(job);
	uint32_t delay = queues_complete(qs, job, false, 0, 0);
	ck_assert_uint_ge(delay, 50);
	ck_assert_ptr_null(queues_take(qs, t + 0.040));
	step(t + delay / 1000.0 + 0.001, QUEUE_DRAIN, true, 0);
	ck_assert_uint_eq(queues_find(qs, "q")->failures, 1);
}
END_TEST

START_TEST(test_new_session_drains_even_when_armed)
{
	ev_tstamp t = ev_now(loop);
	step(t, QUEUE_DRAIN, true, 0);
	step(t, QUEUE_REARM, true, 1);
	step(t, QUEUE_LAST_LOOK, true, 0);
	ck_assert_ptr_null(queues_take(qs, t));
	queues_set_channels(qs, &cat, true); /* the listener reconnected */
	step(t, QUEUE_DRAIN, true, 0);
	step(t, QUEUE_REARM, true, 1);
	queues_set_channels(qs, &cat, false); /* a reload on the same session keeps the state */
	step(t, QUEUE_LAST_LOOK, true, 0);
}
END_TEST

Suite *queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("cycle");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_only_queue_channels_are_tracked);
	tcase_add_test(tc, test_short_drain_rearms_then_looks_once_more_then_sleeps);
	tcase_add_test(tc, test_rearm_refused_polls_after_the_window);
	tcase_add_test(tc, test_ring_during_rearm_means_not_armed);
	tcase_add_test(tc, test_full_drains_run_in_parallel_and_rearm_waits_for_them);
	tcase_add_test(tc, test_slow_drains_run_in_parallel_until_the_channel_is_quiet);
	tcase_add_test(tc, test_the_drain_beside_is_woken_by_a_timer);
	tcase_add_test(tc, test_a_new_session_presumes_a_backlog);
	tcase_add_test(tc, test_failure_backs_off_and_keeps_the_keys_queued);
	tcase_add_test(tc, test_new_session_drains_even_when_armed);
	suite_add_tcase(s, tc);
	return s;
}
