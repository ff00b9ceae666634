/*
 * Poison keys (README.md, "Poison keys"): a key whose refresh raises an error
 * is isolated by bisection, kept in rollupd.poison and retried with backoff,
 * while every other key of its batch is refreshed and its channel keeps
 * flowing. (A refresh that fails for every key is not poison: its keys stay
 * queued, test_queue.c.)
 * The poison is a CHECK constraint that one user's new total violates: an
 * error the refresh raises for that key only, as bad data does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

static char db[64];
static struct daemon d;
static PGconn *conn;

#define QUEUE_CONFIG "queue = { poll_ms = 60000; };"

/* 200 users with a balance, right in the derived table; `delivery` for both channels. */
static void seed(const char *delivery)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_users_with_balances(conn, 200);
	db_exec(conn,
	        "SELECT rollupd.set_delivery(c, '%s')"
	        " FROM unnest(ARRAY['eth_user_balances_user', 'eth_user_balances_wallet']) AS c",
	        delivery);
	db_exec(conn, "SELECT rollupd.eth_user_balances_refresh(ARRAY(SELECT generate_series(1, 200)::bigint))");
}

static void expect_value(const char *expected, double timeout_s, const char *sql)
{
	if (!db_wait_value(conn, expected, timeout_s, sql)) {
		char *got = db_value(conn, "%s", sql);
		ck_abort_msg("%s: %s, expected %s within %.0f s (log %s)", sql, got ? got : "(none)", expected,
		             timeout_s, d.log);
	}
}

/* Every user but 77 gets 5000 + id in one statement: one batch of 200 wallets. */
static void poison_user_77_and_update_all(void)
{
	db_exec(conn, "ALTER TABLE eth_user_balances ADD CONSTRAINT poison CHECK (user_id <> 77 OR balance < 1000)");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 5000 + substr(wallet, 4)::integer");
	expect_value("199", 10.0, "SELECT count(*) FROM eth_user_balances WHERE balance = 5000 + user_id");
	expect_value("770", 0.1, "SELECT balance FROM eth_user_balances WHERE user_id = 77");
	expect_value("eth_user_balances_wallet 0xw77 new row for relation \"eth_user_balances\" violates check "
	             "constraint \"poison\"",
	             5.0, "SELECT string_agg(concat_ws(' ', channel, key, error), ',') FROM rollupd.poison");
	ck_assert(daemon_wait_log(
	    &d, "poison keys isolated channel=eth_user_balances_wallet keys=1 key=0xw77 error=", 1, 5.0));
}

/* The channel still flows while the poison key waits for its retry. */
static void channel_keeps_flowing(void)
{
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 1 WHERE wallet = '0xw5'");
	expect_value("1", 5.0, "SELECT balance FROM eth_user_balances WHERE user_id = 5");
	/* A new change of the poison key does not take a batch down with it. */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 6000 + substr(wallet, 4)::integer WHERE wallet IN "
	              "('0xw77', '0xw6')");
	expect_value("6006", 5.0, "SELECT balance FROM eth_user_balances WHERE user_id = 6");
}

static void cure_and_verify(const char *totals)
{
	ck_assert(daemon_wait_log(&d, "poison retry keys=1 recovered=0 still_failing=1", 1, 10.0));
	db_exec(conn, "ALTER TABLE eth_user_balances DROP CONSTRAINT poison");
	expect_value("6077", 10.0, "SELECT balance FROM eth_user_balances WHERE user_id = 77");
	expect_value("0", 1.0, "SELECT count(*) FROM rollupd.poison");
	/* Nothing left: no next pass is due (a 0 here once made rollupd spin). */
	expect_value("t", 0.1, "SELECT next_due_ms IS NULL FROM rollupd.poison_retry(100, 50, 400)");
	ck_assert(daemon_wait_log(&d, "poison retry keys=1 recovered=1", 1, 5.0));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	ck_assert_int_eq(daemon_log_count(&d, totals), 1);
	assert_balances_verified(db);
	PQfinish(conn);
}

START_TEST(test_poison_key_in_a_notify_batch_is_isolated_and_retried)
{
	seed("notify");
	daemon_start(&d, db, NULL);
	poison_user_77_and_update_all();
	channel_keeps_flowing();
	cure_and_verify("totals poison_keys_isolated=1 poison_keys_recovered=1");
}
END_TEST

START_TEST(test_poison_key_in_a_queue_drain_is_isolated_and_survives_a_restart)
{
	seed("queue");
	daemon_start(&d, db, QUEUE_CONFIG);
	poison_user_77_and_update_all();
	channel_keeps_flowing();
	expect_value("0", 5.0, "SELECT count(*) FROM rollupd.queue");
	/* The poison key is kept in the database, not in the daemon: a new
	 * rollupd retries it. */
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	daemon_start(&d, db, QUEUE_CONFIG);
	cure_and_verify("totals poison_keys_isolated=0 poison_keys_recovered=1");
}
END_TEST

Suite *poison_suite(void)
{
	Suite *s = suite_create("poison");
	TCase *tc = tcase_create("poison");
	tcase_add_test(tc, test_poison_key_in_a_notify_batch_is_isolated_and_retried);
	tcase_add_test(tc, test_poison_key_in_a_queue_drain_is_isolated_and_survives_a_restart);
	suite_add_tcase(s, tc);
	return s;
}
