/*
 * Fault injection (TESTING.md): each scenario runs the mixed workload (balance
 * updates, links and unlinks, users' wallet changes, delegation certificates
 * and chain rollbacks) against both rollups, injects one fault, stops the
 * workload, waits for quiescence, and asserts that --verify reports 0
 * mismatches for every rollup, plus the scenario's own expectation.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

static char db[64];
static struct daemon d;
static PGconn *conn;

/* The workload's users and wallets, and two probe users (1000, 1001) no
 * workload touches, with their own wallets. */
static void create_and_seed(void)
{
	db_create_from("rollupd_all_template", db, sizeof(db));
	conn = db_open(db);
	seed_workload(conn);
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet)"
	              " VALUES (1000, 't', true, '0xprobe'), (1001, 't', true, '0xprobe2')");
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance) VALUES ('0xprobe', 0), ('0xprobe2', 0)");
}

static void start(const char *extra)
{
	create_and_seed();
	daemon_start(&d, db, extra);
}

static void expect_probe(const char *balance, double timeout_s)
{
	ck_assert_msg(
	    db_wait_value(conn, balance, timeout_s, "SELECT balance FROM eth_user_balances WHERE user_id = 1000"),
	    "probe balance not %s within %.0f s (log %s)", balance, timeout_s, d.log);
}

static void reopen(void)
{
	PQfinish(conn);
	conn = db_open(db);
}

/* Workload stopped: both rollups converge while rollupd runs, and stay exact after it stops. */
static void quiesce_and_verify(void)
{
	ck_assert_msg(wait_verify_clean(db, "eth_user_balances", 30.0), "eth_user_balances not exact (log %s)", d.log);
	ck_assert_msg(wait_verify_clean(db, "first_delegation", 30.0), "first_delegation not exact (log %s)", d.log);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
	assert_verify_clean(db, "first_delegation");
	PQfinish(conn);
}

START_TEST(test_sigkill_mid_batch_then_restart)
{
	start(NULL);
	pid_t w = workload_start(db, 4, 5, WORKLOAD_MIX);
	sleep_ms(1500);
	ck_assert_int_gt(daemon_log_count(&d, "refreshed channel="), 0); /* batches were in flight */
	daemon_kill(&d);
	sleep_ms(500); /* changes made while nobody listens */
	daemon_start(&d, db, NULL);
	ck_assert_int_eq(workload_wait(w), 0);
	ck_assert_int_eq(daemon_log_count(&d, "reconcile started rollup=first_delegation reason=catch-up"), 2);
	quiesce_and_verify();
}
END_TEST

static void restart_postgres_under_load(const char *mode)
{
	start(NULL);
	pid_t w = workload_start(db, 4, 3, WORKLOAD_MIX);
	sleep_ms(1000);
	int ready = daemon_log_count(&d, "ready: listening");
	pg_restart(mode);
	workload_wait(w); /* its clients lost their connections too: the exit status is not the point */
	ck_assert(daemon_wait_log(&d, "listener lost", 1, 10.0));
	ck_assert_msg(daemon_wait_log(&d, "ready: listening", ready + 1, 30.0), "not ready again (log %s)", d.log);
	ck_assert(daemon_wait_log(&d, "reconcile started rollup=eth_user_balances reason=catch-up", 2, 1.0));
	/* Changes after the restart flow again. */
	reopen();
	ck_assert_int_eq(workload_wait(workload_start(db, 4, 2, WORKLOAD_MIX)), 0);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 7 WHERE wallet = '0xprobe'");
	expect_probe("7", 10.0);
	quiesce_and_verify();
}

START_TEST(test_postgres_fast_restart_under_load)
{
	restart_postgres_under_load("fast");
}
END_TEST

START_TEST(test_postgres_immediate_restart_under_load)
{
	restart_postgres_under_load("immediate");
}
END_TEST

static void terminate(const char *application_name, const char *which)
{
	db_exec(conn,
	        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	        " WHERE datname = current_database() AND application_name = '%s'%s",
	        application_name, which);
}

START_TEST(test_terminated_listener_one_worker_and_all_workers)
{
	start(NULL);
	pid_t w = workload_start(db, 4, 6, WORKLOAD_MIX);
	sleep_ms(1000);
	terminate("rollupd listener", "");
	ck_assert(daemon_wait_log(&d, "listener lost", 1, 5.0));
	ck_assert(daemon_wait_log(&d, "ready: listening", 2, 20.0));
	terminate("rollupd worker", " ORDER BY pid LIMIT 1");
	ck_assert(daemon_wait_log(&d, "worker lost", 1, 5.0));
	sleep_ms(1000);
	terminate("rollupd worker", "");
	ck_assert(daemon_wait_log(&d, "worker lost", 3, 5.0));
	ck_assert_int_eq(workload_wait(w), 0);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 8 WHERE wallet = '0xprobe'");
	expect_probe("8", 10.0);
	quiesce_and_verify();
}
END_TEST

/* statement_timeout 1 s: the server cancels slow statements; rollupd gives up
 * a connection whose server process does not answer 5 s later, and a
 * listener whose ping (every 500 ms) is not answered within 2 s. */
#define TIMEOUT_CONFIG                                                                                                 \
	"database = { conninfo = \"%s\"; pool_size = 2; statement_timeout_ms = 1000; connect_timeout_ms = 2000;"       \
	" ping_interval_ms = 500; reconnect_min_ms = 50; reconnect_max_ms = 400; connect_retries = 0; };"

static void start_with_timeout(void)
{
	char extra[1024];
	create_and_seed();
	snprintf(extra, sizeof(extra), TIMEOUT_CONFIG, daemon_conninfo(db));
	daemon_start(&d, db, extra);
}

/* SIGSTOP the server process of one of rollupd's sessions ("rollupd worker"
 * or "rollupd listener"); returns its pid for the SIGCONT. */
static int stop_server_process(const char *application_name)
{
	char *pid = db_value(conn,
	                     "SELECT min(pid) FROM pg_stat_activity"
	                     " WHERE datname = current_database() AND application_name = '%s'",
	                     application_name);
	ck_assert_ptr_nonnull(pid);
	int n = (int)strtol(pid, NULL, 10);
	free(pid);
	ck_assert_int_eq(kill(n, SIGSTOP), 0);
	return n;
}

START_TEST(test_hung_server_process_is_abandoned_and_its_work_retried)
{
	start_with_timeout();
	pid_t w = workload_start(db, 4, 10, WORKLOAD_MIX);
	sleep_ms(500);
	int connects = daemon_log_count(&d, "connected conn=worker");
	int pid = stop_server_process("rollupd worker");
	/* The next query sent to it never gets an answer: rollupd abandons the
	 * connection, opens another, and retries the work. (Row locks the
	 * stopped process holds keep the keys they cover waiting: README,
	 * "Known limits".) */
	ck_assert_msg(daemon_wait_log(&d, "connection abandoned", 1, 15.0), "hung worker not abandoned (log %s)",
	              d.log);
	ck_assert(daemon_wait_log(&d, "connected conn=worker", connects + 1, 5.0));
	/* The daemon itself is not stalled: it answers a reload at once. */
	kill(d.pid, SIGHUP);
	ck_assert(daemon_wait_log(&d, "configuration reloaded", 1, 1.0));
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	/* Resumed, the process finds its client gone and ends, its locks with it. */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 9 WHERE wallet = '0xprobe'");
	expect_probe("9", 15.0);
	workload_wait(w);
	quiesce_and_verify();
}
END_TEST

START_TEST(test_hung_listener_is_noticed_by_its_ping)
{
	start_with_timeout();
	pid_t w = workload_start(db, 4, 6, WORKLOAD_MIX);
	sleep_ms(500);
	int pid = stop_server_process("rollupd listener");
	/* Nothing arrives on a stopped listener, and nothing says so but the ping. */
	ck_assert_msg(daemon_wait_log(&d, "no answer to a ping within 2000 ms", 1, 10.0),
	              "hung listener unnoticed (log %s)", d.log);
	ck_assert(daemon_wait_log(&d, "ready: listening", 2, 20.0));
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 11 WHERE wallet = '0xprobe'");
	expect_probe("11", 10.0);
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	ck_assert_int_eq(workload_wait(w), 0);
	quiesce_and_verify();
}
END_TEST

START_TEST(test_statement_timeout_cancels_the_batch_and_it_is_retried)
{
	start_with_timeout();
	/* Another session holds the probe user's derived row for 3 s. */
	PGconn *locker = db_open(db);
	db_exec(locker, "BEGIN");
	db_exec(locker, "SELECT 1 FROM eth_user_balances WHERE user_id = 1000 FOR UPDATE");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 10 WHERE wallet = '0xprobe'");
	ck_assert(daemon_wait_log(&d, "canceling statement due to statement timeout", 1, 10.0));
	/* Meanwhile the daemon does not stall: another channel's key (user
	 * 1001 now owns wallet 0xh5) is refreshed while the wallet channel's
	 * batch waits out its retries (the lock holds that batch, see README). */
	db_exec(conn, "UPDATE users SET wallet = '0xh5' WHERE user_id = 1001");
	ck_assert(db_wait_value(conn, "5000000000000000000", 10.0,
	                        "SELECT balance FROM eth_user_balances WHERE user_id = 1001"));
	sleep_ms(1500);
	db_exec(locker, "COMMIT");
	PQfinish(locker);
	expect_probe("10", 10.0);
	ck_assert_int_eq(daemon_log_count(&d, "poison keys isolated"), 0); /* a timeout is not poison */
	quiesce_and_verify();
}
END_TEST

/* Far more keys than rollupd may hold: 20,000 users' balances change in one
 * statement against a cap of 1,000 pending keys per channel. */
/* The wallet channel's totals line at stop: its keys_overflowed. */
static long wallet_keys_overflowed(void)
{
	char *log = read_file(d.log);
	const char *line = strstr(log, "totals channel=eth_user_balances_wallet ");
	const char *field = line ? strstr(line, "keys_overflowed=") : NULL;
	long n = field ? strtol(field + strlen("keys_overflowed="), NULL, 10) : -1;
	free(log);
	return n;
}

/* Far more keys than rollupd may hold: 20,000 wallets' balances change in
 * one statement against a cap of 1,000 pending keys per channel. */
START_TEST(test_notification_flood_stays_bounded_and_loses_nothing)
{
	create_and_seed();
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet)"
	              " SELECT g, 't', true, '0xf' || g FROM generate_series(10001, 30000) g");
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance)"
	              " SELECT '0xf' || g, g FROM generate_series(10001, 30000) g");
	daemon_start(&d, db,
	             "batch = { max_keys = 100; window_ms = 5; max_pending_keys = 1000; retry_min_ms = 50;"
	             " retry_max_ms = 400; };");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = balance + 1 WHERE wallet LIKE '0xf%%'");
	ck_assert(daemon_wait_log(&d, "pending keys over batch.max_pending_keys=1000 channel=eth_user_balances_wallet",
	                          1, 10.0));
	ck_assert(daemon_wait_log(&d, "reconcile started rollup=eth_user_balances reason=overflow", 1, 1.0));
	ck_assert_msg(db_wait_value(conn, "0", 60.0,
	                            "SELECT count(*) FROM users u LEFT JOIN eth_user_balances b USING (user_id)"
	                            " WHERE u.user_id > 10000 AND b.balance IS DISTINCT FROM u.user_id + 1"),
	              "flooded keys not all refreshed (log %s)", d.log);
	long rss = peak_rss_kb(d.pid);
	fprintf(stderr, "flood: rollupd peak RSS %ld kB\n", rss);
	/* Sanitizers and valgrind have memory of their own. */
	const char *san = getenv("ROLLUPD_SANITIZED"), *vg = getenv("ROLLUPD_VALGRIND");
	if ((san == NULL || san[0] == '\0') && vg == NULL)
		ck_assert_int_lt(rss, 64L * 1024);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	ck_assert_int_gt(wallet_keys_overflowed(), 0);
	assert_balances_verified(db);
	PQfinish(conn);
}
END_TEST

Suite *faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = tcase_create("faults");
	tcase_add_test(tc, test_sigkill_mid_batch_then_restart);
	tcase_add_test(tc, test_postgres_fast_restart_under_load);
	tcase_add_test(tc, test_postgres_immediate_restart_under_load);
	tcase_add_test(tc, test_terminated_listener_one_worker_and_all_workers);
	tcase_add_test(tc, test_hung_server_process_is_abandoned_and_its_work_retried);
	tcase_add_test(tc, test_hung_listener_is_noticed_by_its_ping);
	tcase_add_test(tc, test_statement_timeout_cancels_the_batch_and_it_is_retried);
	tcase_add_test(tc, test_notification_flood_stays_bounded_and_loses_nothing);
	suite_add_tcase(s, tc);
	return s;
}
