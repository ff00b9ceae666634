/* Reconcile walks, chunk by chunk, without a database. */
#include <check.h>
#include <stdlib.h>

#include "log.h"
#include "suites.h"
#include "walk.h"

static struct walks *ws;
static struct catalog cat;
static struct catalog_rollup rollups[2];

static void setup(void)
{
	struct walk_policy policy = {.chunk_keys = 100, .retry_min_ms = 100, .retry_max_ms = 1000};
	ws = walks_new(&policy);
	rollups[0] = (struct catalog_rollup){.name = "a", .reconcile_sql = "SELECT a"};
	rollups[1] = (struct catalog_rollup){.name = "b", .reconcile_sql = "SELECT b"};
	cat = (struct catalog){.rollups = rollups, .n_rollups = 2};
	walks_set_rollups(ws, &cat);
}

static void teardown(void)
{
	walks_free(ws);
}

/* Take the next chunk: it must be of `rollup`, starting after `after`. */
static struct walk_chunk *take(ev_tstamp now, const char *rollup, const char *after)
{
	struct walk_chunk *c = walks_take(ws, now);
	ck_assert_msg(c != NULL, "no chunk due, expected one of %s", rollup);
	ck_assert_str_eq(c->rollup, rollup);
	if (after == NULL)
		ck_assert_ptr_null(c->params[0]);
	else
		ck_assert_str_eq(c->params[0], after);
	ck_assert_str_eq(c->params[1], "100");
	return c;
}

START_TEST(test_walk_goes_chunk_by_chunk_until_the_last_key_is_null)
{
	ck_assert_ptr_null(walks_take(ws, 0));
	ck_assert(walks_begin(ws, "a", WALK_CATCH_UP, 0));
	ck_assert(walks_catching_up(ws));
	struct walk_chunk *c = take(0, "a", NULL);
	ck_assert_ptr_null(walks_take(ws, 0)); /* one chunk of a walk at a time */
	ck_assert(!walks_complete(ws, c, NULL, "100", 3, 0));
	c = take(0, "a", "100");
	ck_assert(walks_complete(ws, c, NULL, NULL, 0, 0));
	ck_assert(!walks_catching_up(ws));
	ck_assert(!walks_status(ws, 0).active);
	ck_assert(walks_status(ws, 0).last_done > 0);
	ck_assert_ptr_null(walks_take(ws, 0));
}
END_TEST

START_TEST(test_failed_chunk_is_retried_from_the_same_key_after_a_delay)
{
	walks_begin(ws, "b", WALK_INTERVAL, 10);
	struct walk_chunk *c = take(10, "b", NULL);
	walks_complete(ws, c, NULL, "7", 1, 10);
	c = take(10, "b", "7");
	walks_complete(ws, c, "permission denied", NULL, 0, 10);
	ck_assert_ptr_null(walks_take(ws, 10.01));
	ev_tstamp retry = walks_next_retry(ws, 10.01);
	ck_assert(retry > 10.04 && retry <= 10.1); /* jittered from retry_min_ms */
	c = take(retry, "b", "7");
	ck_assert(walks_complete(ws, c, NULL, NULL, 0, retry));
	ck_assert(walks_next_retry(ws, retry) == 0);
}
END_TEST

START_TEST(test_begin_during_a_chunk_starts_over_when_it_returns)
{
	walks_begin(ws, "a", WALK_INTERVAL, 0);
	struct walk_chunk *c = take(0, "a", NULL);
	walks_complete(ws, c, NULL, "50", 1, 0);
	c = take(0, "a", "50");
	walks_begin(ws, "a", WALK_QUEUE_TRUNCATED, 1); /* the chunk in flight predates it */
	ck_assert(!walks_complete(ws, c, NULL, NULL, 0, 1));
	c = take(1, "a", NULL);
	ck_assert(walks_complete(ws, c, NULL, NULL, 0, 1));
}
END_TEST

START_TEST(test_lost_keys_during_a_walk_walk_once_more_after_it)
{
	ck_assert(walks_begin_or_again(ws, "a", WALK_OVERFLOW, 0)); /* idle: starts */
	struct walk_chunk *c = take(0, "a", NULL);
	ck_assert(walks_begin_or_again(ws, "a", WALK_OVERFLOW, 0));  /* under way: once more after */
	ck_assert(!walks_begin_or_again(ws, "a", WALK_OVERFLOW, 0)); /* already arranged */
	walks_complete(ws, c, NULL, "10", 1, 0);
	c = take(0, "a", "10");
	ck_assert(walks_complete(ws, c, NULL, NULL, 0, 0));
	ck_assert(walks_status(ws, 0).active); /* the second walk */
	c = take(0, "a", NULL);
	ck_assert(walks_complete(ws, c, NULL, NULL, 0, 0));
	ck_assert(!walks_status(ws, 0).active);
}
END_TEST

START_TEST(test_a_reload_keeps_kept_walks_and_forgets_removed_ones)
{
	walks_begin(ws, "a", WALK_CATCH_UP, 0);
	walks_begin(ws, "b", WALK_CATCH_UP, 0);
	struct walk_chunk *ca = take(0, "a", NULL);
	struct walk_chunk *cb = take(0, "b", NULL);
	struct catalog only_b = {.rollups = &rollups[1], .n_rollups = 1};
	walks_set_rollups(ws, &only_b);
	ck_assert_uint_eq(walks_count(ws), 1);
	ck_assert(!walks_complete(ws, ca, NULL, "5", 1, 0)); /* its rollup is gone: ignored */
	ck_assert(!walks_complete(ws, cb, NULL, "5", 1, 0));
	ck_assert(walks_catching_up(ws));
	struct walk_chunk *c = take(0, "b", "5");
	ck_assert(walks_complete(ws, c, NULL, NULL, 0, 0));
}
END_TEST

START_TEST(test_stopped_walks_hand_out_nothing)
{
	walks_begin(ws, "a", WALK_CATCH_UP, 0);
	walks_stop(ws);
	ck_assert_ptr_null(walks_take(ws, 0));
	ck_assert(!walks_begin(ws, "b", WALK_INTERVAL, 0));
	ck_assert(!walks_catching_up(ws));
}
END_TEST

Suite *walk_suite(void)
{
	Suite *s = suite_create("walk");
	TCase *tc = tcase_create("walk");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_walk_goes_chunk_by_chunk_until_the_last_key_is_null);
	tcase_add_test(tc, test_failed_chunk_is_retried_from_the_same_key_after_a_delay);
	tcase_add_test(tc, test_begin_during_a_chunk_starts_over_when_it_returns);
	tcase_add_test(tc, test_lost_keys_during_a_walk_walk_once_more_after_it);
	tcase_add_test(tc, test_a_reload_keeps_kept_walks_and_forgets_removed_ones);
	tcase_add_test(tc, test_stopped_walks_hand_out_nothing);
	suite_add_tcase(s, tc);
	return s;
}
