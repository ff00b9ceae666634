#include <check.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "sqlname.h"
#include "suites.h"

static struct ev_loop *loop;
static struct batcher *b;
static struct catalog cat;
static struct catalog_channel channels[2];

static void on_due(void *arg)
{
	(void)arg;
}

static void setup(void)
{
	loop = ev_loop_new(EVFLAG_AUTO);
	struct batch_policy policy = {
	    .max_keys = 3, .max_pending = 10, .window_s = 0.050, .retry_min_ms = 100, .retry_max_ms = 1000};
	b = batcher_new(loop, &policy, on_due, NULL);
	channels[0] = (struct catalog_channel){
	    .name = "users", .rollup = "r", .key_type = KEY_BIGINT, .refresh_sql = "SELECT f($1::bigint[])"};
	channels[1] = (struct catalog_channel){
	    .name = "wallets", .rollup = "r", .key_type = KEY_TEXT, .refresh_sql = "SELECT g($1::text[])"};
	cat = (struct catalog){.channels = channels, .n_channels = 2};
	batcher_set_channels(b, &cat, DELIVERY_NOTIFY);
}

static void teardown(void)
{
	batcher_free(b);
	ev_loop_destroy(loop);
}

static void add(const char *channel, const char *key)
{
	enum batch_add r = batcher_add_key(b, batcher_find(b, channel), key, strlen(key), 0);
	ck_assert(r == BATCH_KEY_NEW || r == BATCH_KEY_PENDING);
}

START_TEST(test_keys_wait_for_the_window)
{
	ev_tstamp t0 = ev_now(loop);
	add("users", "1");
	ck_assert_ptr_null(batcher_take(b, t0 + 0.010));
	struct batch *batch = batcher_take(b, t0 + 0.051);
	ck_assert_ptr_nonnull(batch);
	ck_assert_uint_eq(batch->n, 1);
	ck_assert_str_eq(batch->param, "{1}");
	batcher_complete(b, batch, true, 1);
}
END_TEST

START_TEST(test_pending_keys_stop_at_the_cap_and_count_the_dropped)
{
	struct batch_channel *ch = batcher_find(b, "users");
	for (int i = 1; i <= 10; i++) {
		char key[8];
		snprintf(key, sizeof(key), "%d", i);
		add("users", key);
	}
	/* Full: a new key is dropped (and counted), a pending one is not. */
	ck_assert_int_eq(batcher_add_key(b, ch, "11", 2, 0), BATCH_KEY_DROPPED);
	ck_assert_int_eq(batcher_add_key(b, ch, "3", 1, 0), BATCH_KEY_PENDING);
	ck_assert_uint_eq(ch->keys_overflowed, 1);
	ck_assert_uint_eq(batcher_pending(b), 10);
	/* The other channel has its own cap. */
	add("wallets", "0xa");
	/* Taking a batch makes room again. */
	struct batch *batch = batcher_take(b, ev_now(loop));
	ck_assert_uint_eq(batch->n, 3);
	ck_assert_int_eq(batcher_add_key(b, ch, "11", 2, 0), BATCH_KEY_NEW);
	batcher_complete(b, batch, true, 3);
}
END_TEST

START_TEST(test_duplicate_keys_make_one_batch_entry)
{
	ev_tstamp t0 = ev_now(loop);
	add("users", "5");
	add("users", "5");
	add("users", "6");
	add("users", "5");
	struct batch *batch = batcher_take(b, t0 + 1);
	ck_assert_uint_eq(batch->n, 2);
	ck_assert_uint_eq(batcher_find(b, "users")->keys_received, 4);
	batcher_complete(b, batch, true, 2);
	ck_assert_uint_eq(batcher_pending(b), 0);
}
END_TEST

START_TEST(test_max_keys_flushes_without_waiting)
{
	ev_tstamp t0 = ev_now(loop);
	add("users", "1");
	add("users", "2");
	ck_assert_ptr_null(batcher_take(b, t0));
	add("users", "3");
	add("users", "4");
	struct batch *batch = batcher_take(b, t0);
	ck_assert_ptr_nonnull(batch);
	ck_assert_uint_eq(batch->n, 3);
	ck_assert_uint_eq(batcher_pending(b), 1);
	/* The one left over waits for a window of its own. */
	ck_assert_ptr_null(batcher_take(b, t0 + 0.010));
	batcher_complete(b, batch, true, 3);
}
END_TEST

START_TEST(test_failed_batch_is_requeued_after_a_delay)
{
	ev_tstamp t0 = ev_now(loop);
	add("users", "1");
	add("users", "2");
	struct batch *batch = batcher_take(b, t0 + 1);
	ck_assert_uint_eq(batch->n, 2);
	add("users", "2"); /* changed again while in flight: not deduplicated against it */
	add("users", "3");
	ck_assert_uint_eq(batcher_pending(b), 2);

	uint32_t delay = batcher_complete(b, batch, false, 0);
	ck_assert_uint_ge(delay, 50);
	ck_assert_uint_le(delay, 100);
	ck_assert_uint_eq(batcher_pending(b), 3); /* 1, 2, 3: merged, nothing lost */
	ck_assert_uint_eq(batcher_find(b, "users")->batches_failed, 1);

	ev_tstamp now = ev_now(loop);
	ck_assert_ptr_null(batcher_take(b, now + 0.040));
	batch = batcher_take(b, now + 0.101);
	ck_assert_ptr_nonnull(batch);
	ck_assert_uint_eq(batch->n, 3);
	batcher_complete(b, batch, true, 3);
	ck_assert(batcher_find(b, "users")->retry_at == 0);
}
END_TEST

START_TEST(test_draining_makes_every_key_due)
{
	add("wallets", "0xabc");
	batcher_set_draining(b, true);
	struct batch *batch = batcher_take(b, ev_now(loop));
	ck_assert_ptr_nonnull(batch);
	ck_assert_str_eq(batch->param, "{\"0xabc\"}");
	batcher_complete(b, batch, true, 1);
}
END_TEST

START_TEST(test_channels_take_turns)
{
	ev_tstamp t0 = ev_now(loop);
	for (int i = 0; i < 9; i++) {
		char k[8];
		snprintf(k, sizeof(k), "%d", i);
		add("users", k);
		add("wallets", k);
	}
	struct batch *first = batcher_take(b, t0 + 1);
	struct batch *second = batcher_take(b, t0 + 1);
	ck_assert_str_ne(first->channel, second->channel);
	batcher_complete(b, first, true, 0);
	batcher_complete(b, second, true, 0);
}
END_TEST

START_TEST(test_reload_keeps_pending_keys_of_kept_channels)
{
	add("users", "1");
	add("wallets", "w");
	struct catalog only_users = {.channels = channels, .n_channels = 1};
	ck_assert_uint_eq(batcher_set_channels(b, &only_users, DELIVERY_NOTIFY), 1);
	ck_assert_ptr_null(batcher_find(b, "wallets"));
	ck_assert_uint_eq(keyset_count(batcher_find(b, "users")->pending), 1);
}
END_TEST

/* Tags travel with the keys, and a failed batch gives its keys back with the
 * smaller of their tag and a newer one's (the WAL mode's oldest transaction
 * that changed the key must stay unconfirmed until the key is refreshed). */
static uint64_t released[8];
static size_t n_released;

static void on_release(uint64_t tag, void *arg)
{
	(void)arg;
	if (n_released < 8)
		released[n_released++] = tag;
}

START_TEST(test_failed_batch_keeps_the_oldest_tag)
{
	struct batch_channel *ch = batcher_find(b, "users");
	batcher_on_release(b, on_release, NULL);
	ck_assert_int_eq(batcher_add_key(b, ch, "1", 1, 7), BATCH_KEY_NEW);
	ck_assert_int_eq(batcher_add_key(b, ch, "1", 1, 9), BATCH_KEY_PENDING); /* keeps 7 */
	struct batch *batch = batcher_take(b, ev_now(loop) + 1);
	ck_assert_uint_eq(batch->n, 1);
	ck_assert_uint_eq(batch->tags[0], 7);
	/* A newer change arrives while the batch is in flight, then the batch
	 * fails: one entry is left, with 7, and 12's entry is released. */
	ck_assert_int_eq(batcher_add_key(b, ch, "1", 1, 12), BATCH_KEY_NEW);
	batcher_complete(b, batch, false, 0);
	ck_assert_uint_eq(n_released, 1);
	ck_assert_uint_eq(released[0], 12);
	batch = batcher_take(b, ev_now(loop) + 100);
	ck_assert_uint_eq(batch->n, 1);
	ck_assert_uint_eq(batch->tags[0], 7);
	batcher_complete(b, batch, true, 1);
	ck_assert_uint_eq(n_released, 2);
	ck_assert_uint_eq(released[1], 7);
}
END_TEST

START_TEST(test_text_keys_are_quoted_in_the_array_literal)
{
	char *keys[] = {"a\"b", "c\\d", "e,f"};
	char *lit = sql_array_literal(keys, 3, KEY_TEXT);
	ck_assert_str_eq(lit, "{\"a\\\"b\",\"c\\\\d\",\"e,f\"}");
	free(lit);
}
END_TEST

Suite *batcher_suite(void)
{
	Suite *s = suite_create("batcher");
	TCase *tc = tcase_create("batcher");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_keys_wait_for_the_window);
	tcase_add_test(tc, test_pending_keys_stop_at_the_cap_and_count_the_dropped);
	tcase_add_test(tc, test_duplicate_keys_make_one_batch_entry);
	tcase_add_test(tc, test_max_keys_flushes_without_waiting);
	tcase_add_test(tc, test_failed_batch_is_requeued_after_a_delay);
	tcase_add_test(tc, test_draining_makes_every_key_due);
	tcase_add_test(tc, test_channels_take_turns);
	tcase_add_test(tc, test_reload_keeps_pending_keys_of_kept_channels);
	tcase_add_test(tc, test_failed_batch_keeps_the_oldest_tag);
	tcase_add_test(tc, test_text_keys_are_quoted_in_the_array_literal);
	suite_add_tcase(s, tc);
	return s;
}
