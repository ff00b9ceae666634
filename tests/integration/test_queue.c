/*
 * Queue mode (docs/design.md, "Delivery") with eth_user_balances: keys wait in
 * rollupd.queue, the doorbell wakes rollupd, a failed refresh loses nothing,
 * two daemons share one queue, no key waits for the safety poll, and a crash
 * that empties the unlogged queue leads to a full reconcile.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

static char db[64];
static struct daemon d;
static PGconn *conn;

/* A long safety poll: a test that passes cannot have waited for it. */
#define QUEUE_CONFIG "queue = { poll_ms = 60000; stats_interval_s = 1; };"

static const char QUEUED_SQL[] = "SELECT count(*) FROM rollupd.queue";

/* 200 users with a balance, the channels switched to queue mode (`table`: logged or unlogged). */
static void seed(const char *table)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_users_with_balances(conn, 200);
	db_exec(conn,
	        "SELECT rollupd.set_delivery(c, 'queue', '%s')"
	        " FROM unnest(ARRAY['eth_user_balances_user', 'eth_user_balances_wallet']) AS c",
	        table);
	/* The derived rows exist and are right before the queue tests start. */
	db_exec(conn, "SELECT rollupd.eth_user_balances_refresh(ARRAY(SELECT generate_series(1, 200)::bigint))");
}

static char *balance_sql(int user_id)
{
	static char sql[128];
	snprintf(sql, sizeof(sql), "SELECT balance FROM eth_user_balances WHERE user_id = %d", user_id);
	return sql;
}

static void expect_balance(int user_id, const char *balance, double timeout_s)
{
	if (!db_wait_value(conn, balance, timeout_s, balance_sql(user_id))) {
		char *got = db_value(conn, "%s", balance_sql(user_id));
		ck_abort_msg("user %d: balance %s, expected %s within %.0f s (log %s)", user_id, got ? got : "(none)",
		             balance, timeout_s, d.log);
	}
}

static void stop_and_verify(void)
{
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	char *left = db_value(conn, "%s", QUEUED_SQL);
	ck_assert_str_eq(left, "0");
	free(left);
	assert_balances_verified(db);
	PQfinish(conn);
}

START_TEST(test_doorbell_wakes_rollupd_and_writers_ring_once)
{
	seed("unlogged");
	daemon_start(&d, db, QUEUE_CONFIG);
	ck_assert(daemon_wait_log(&d, "queue rearm channel=eth_user_balances_wallet armed=yes", 1, 10.0));
	ck_assert(daemon_wait_log(&d, "queue last-look channel=eth_user_balances_wallet", 1, 10.0));
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 777 WHERE wallet = '0xw7'");
	expect_balance(7, "777", 5.0);
	/* The doorbell rang once for that change, and the payload carried no keys. */
	ck_assert_int_eq(daemon_log_count(&d, "malformed"), 0);
	/* Depth and age are logged. */
	ck_assert(daemon_wait_log(&d, "queue channel=eth_user_balances_wallet depth=0", 1, 5.0));
	/* No catch-up walk: queued keys outlive a disconnection, notifications do not. */
	ck_assert_int_eq(daemon_log_count(&d, "reconcile started"), 0);
	stop_and_verify();
}
END_TEST

START_TEST(test_keys_written_while_stopped_are_processed_at_start)
{
	seed("logged");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = balance + 1 WHERE wallet IN ('0xw1', '0xw2', '0xw3')");
	db_exec(conn, "UPDATE users SET wallet = '0xw150' WHERE user_id = 4");
	char *queued = db_value(conn, "%s", QUEUED_SQL);
	ck_assert_str_eq(queued, "4"); /* three wallets and one user, nobody draining */
	free(queued);
	daemon_start(&d, db, QUEUE_CONFIG);
	expect_balance(1, "11", 5.0);
	expect_balance(3, "31", 5.0);
	expect_balance(4, "1500", 5.0);
	stop_and_verify();
}
END_TEST

START_TEST(test_failed_refresh_leaves_its_keys_queued)
{
	seed("unlogged");
	daemon_start(&d, db, QUEUE_CONFIG);
	/* Break the refresh for every key: a constraint every new total violates
	 * (a broken refresh, not poison keys: see test_poison.c). */
	db_exec(conn, "ALTER TABLE eth_user_balances ADD CONSTRAINT small CHECK (balance < 3000)");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 5000 WHERE wallet IN "
	              "(SELECT '0xw' || g FROM generate_series(1, 20) g)");
	ck_assert(daemon_wait_log(&d, "queue drain failed channel=eth_user_balances_wallet", 2, 10.0));
	/* Still there after two failed drains, and none taken for poison. */
	char *queued = db_value(conn, "SELECT count(*) FROM rollupd.queue WHERE key ~ '^0xw([1-9]|1[0-9]|20)$'");
	ck_assert_str_eq(queued, "20");
	free(queued);
	char *poison = db_value(conn, "SELECT count(*) FROM rollupd.poison");
	ck_assert_str_eq(poison, "0");
	free(poison);
	expect_balance(9, "90", 0.1);
	db_exec(conn, "ALTER TABLE eth_user_balances DROP CONSTRAINT small");
	expect_balance(9, "5000", 10.0);
	expect_balance(20, "5000", 1.0);
	ck_assert_int_eq(daemon_log_count(&d, "poison keys isolated"), 0);
	stop_and_verify();
}
END_TEST

START_TEST(test_two_daemons_share_one_queue)
{
	seed("unlogged");
	/* The mixed workload's wallets (0xh1..60) next to the seed's. */
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance)"
	              " SELECT '0xh' || g, g * 1000000000000000000::numeric FROM generate_series(1, 60) g");
	daemon_start(&d, db, QUEUE_CONFIG);
	/* A second daemon on the same database, with its own config and log. */
	struct daemon d2 = {0};
	char config[2048];
	snprintf(config, sizeof(config),
	         "database = { conninfo = \"%s\"; pool_size = 2; reconnect_min_ms = 50; reconnect_max_ms = 400; };\n"
	         "batch = { max_keys = 50; window_ms = 5; retry_min_ms = 50; retry_max_ms = 400; };\n"
	         "log = { level = \"debug\"; };\n%s",
	         daemon_conninfo(db), QUEUE_CONFIG);
	daemon_second(&d2, db, "2", config);

	ck_assert_int_eq(run_pgbench(db, 6, 4, "balance.sql@6 link.sql@2 user_wallet.sql@2"), 0);

	ck_assert_msg(wait_converged(db, 10.0), "not exact 10 s after the writers stopped (logs %s, %s)", d.log,
	              d2.log);
	ck_assert(db_wait_value(conn, "0", 5.0, QUEUED_SQL));
	/* Both drained: SKIP LOCKED split the work. */
	ck_assert_int_gt(daemon_log_count(&d, "queue drain channel=eth_user_balances_wallet keys="), 0);
	ck_assert_int_gt(daemon_log_count(&d2, "queue drain channel=eth_user_balances_wallet keys="), 0);
	ck_assert_int_eq(daemon_stop(&d2, 10, NULL), 0);
	stop_and_verify();
}
END_TEST

/*
 * The lost wakeup the doorbell protocol prevents. Writer A disarms the
 * doorbell (its NOTIFY goes out at its commit); writer B queues a key while
 * A is open, sees the doorbell taken and stays silent. A commits: rollupd
 * drains A's key (B's is not committed yet) and tries to re-arm. If it could
 * re-arm and take its last look now, B's key would wait for the safety poll
 * (60 s here). B holds the queue lock, so re-arming waits, and rollupd keeps
 * looking every window until B commits.
 */
START_TEST(test_key_queued_around_the_rearm_does_not_wait_for_the_poll)
{
	seed("unlogged");
	daemon_start(&d, db, QUEUE_CONFIG);
	ck_assert(daemon_wait_log(&d, "queue last-look channel=eth_user_balances_wallet", 1, 10.0));
	PGconn *a = db_open(db), *b = db_open(db);
	db_exec(a, "BEGIN");
	db_exec(a, "UPDATE eth_wallet_balances SET balance = 1111 WHERE wallet = '0xw11'");
	db_exec(b, "BEGIN");
	db_exec(b, "UPDATE eth_wallet_balances SET balance = 2222 WHERE wallet = '0xw22'");
	int before = daemon_log_count(&d, "queue rearm channel=eth_user_balances_wallet");
	db_exec(a, "COMMIT");
	expect_balance(11, "1111", 5.0);
	/* rollupd has drained A's key and tried to re-arm while B is open. */
	ck_assert(daemon_wait_log(&d, "queue rearm channel=eth_user_balances_wallet", before + 1, 5.0));
	db_exec(b, "COMMIT");
	expect_balance(22, "2222", 5.0);
	ck_assert_int_gt(daemon_log_count(&d, "queue rearm channel=eth_user_balances_wallet armed=no"), 0);
	PQfinish(a);
	PQfinish(b);
	stop_and_verify();
}
END_TEST

START_TEST(test_crash_emptying_the_unlogged_queue_leads_to_a_full_reconcile)
{
	seed("unlogged");
	daemon_start(&d, db, QUEUE_CONFIG);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 4242 WHERE wallet = '0xw42'");
	char *queued = db_value(conn, "%s", QUEUED_SQL);
	ck_assert_str_eq(queued, "1");
	free(queued);
	/* The test server runs with synchronous_commit off: make the change itself survive. */
	db_exec(conn, "CHECKPOINT");
	PQfinish(conn);

	/* A crash: PostgreSQL empties unlogged tables during recovery. */
	pg_restart_immediate();
	conn = db_open(db);
	queued = db_value(conn, "%s", QUEUED_SQL);
	ck_assert_str_eq(queued, "0"); /* the key is gone */
	free(queued);

	daemon_start(&d, db, QUEUE_CONFIG);
	ck_assert(daemon_wait_log(&d, "reconcile started rollup=eth_user_balances reason=queue-truncated", 1, 10.0));
	expect_balance(42, "4242", 10.0);
	ck_assert(daemon_wait_log(&d, "reconcile done rollup=eth_user_balances", 1, 10.0));
	stop_and_verify();
}
END_TEST

/* A delivery change takes the channel's source tables and the queue while
 * other sessions take them in orders of their own: a refresh reads users,
 * then associated_wallets; a writer holds a source table, then its trigger
 * queues a key. A session holds users while the change starts, then reads
 * associated_wallets (`write`: inserts a link there, whose trigger queues
 * its user). Neither may deadlock, fail or stall: once the change held
 * associated_wallets (or the queue) and waited for users. */
static void delivery_change_races(bool write)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_users_with_balances(conn, 50);
	if (write)
		db_exec(conn, "SELECT rollupd.set_delivery('eth_user_balances_user', 'queue', 'logged')");
	PGconn *other = db_open(db);
	PGconn *changer = db_open(db);
	db_exec(other, "BEGIN");
	db_exec(other, "SELECT count(*) FROM users");
	double t0 = now_seconds();
	/* The change waits for users. */
	db_send_until_blocked(changer, conn,
	                      write ? "SELECT rollupd.set_delivery('eth_user_balances_user', 'queue', 'unlogged')"
	                            : "SELECT rollupd.set_delivery('eth_user_balances_user', 'queue')");
	if (write)
		db_exec(other, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
		               " VALUES (9, '0xw10', 'eth', true, false)");
	else
		db_exec(other, "SELECT count(*) FROM associated_wallets");
	db_exec(other, "COMMIT");
	db_finish(changer); /* it succeeded */
	ck_assert_msg(now_seconds() - t0 < 10.0, "the delivery change took %.1f s", now_seconds() - t0);
	char *delivery =
	    db_value(conn, "SELECT delivery FROM rollupd.channel WHERE channel = 'eth_user_balances_user'");
	ck_assert_str_eq(delivery, "queue");
	free(delivery);
	/* The capture moved: a link now queues its user. */
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (7, '0xw8', 'eth', true, false)");
	char *queued = db_value(conn, "SELECT string_agg(key, ',' ORDER BY key) FROM rollupd.queue");
	ck_assert_str_eq(queued, write ? "7,9" : "7");
	free(queued);
	PQfinish(other);
	PQfinish(changer);
	daemon_start(&d, db, QUEUE_CONFIG);
	expect_balance(7, "150", 10.0);
	if (write)
		expect_balance(9, "190", 10.0);
	stop_and_verify();
}

START_TEST(test_delivery_change_does_not_deadlock_with_a_reader)
{
	delivery_change_races(false);
}
END_TEST

START_TEST(test_delivery_change_does_not_stall_a_queueing_writer)
{
	delivery_change_races(true);
}
END_TEST

Suite *queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("queue");
	tcase_add_test(tc, test_doorbell_wakes_rollupd_and_writers_ring_once);
	tcase_add_test(tc, test_keys_written_while_stopped_are_processed_at_start);
	tcase_add_test(tc, test_failed_refresh_leaves_its_keys_queued);
	tcase_add_test(tc, test_two_daemons_share_one_queue);
	tcase_add_test(tc, test_key_queued_around_the_rearm_does_not_wait_for_the_poll);
	tcase_add_test(tc, test_crash_emptying_the_unlogged_queue_leads_to_a_full_reconcile);
	tcase_add_test(tc, test_delivery_change_does_not_deadlock_with_a_reader);
	tcase_add_test(tc, test_delivery_change_does_not_stall_a_queueing_writer);
	suite_add_tcase(s, tc);
	return s;
}
