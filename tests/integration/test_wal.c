/*
 * The WAL delivery mode's own promises (docs/design.md, "WAL mode"), with
 * eth_user_balances installed -v delivery=wal: nothing is confirmed to the
 * server before its refresh commits, nothing is lost across a SIGKILL, a
 * lost replication connection or a PostgreSQL restart, memory stays bounded
 * under a huge transaction, old rows carry the keys they move from, a
 * TRUNCATE or a new column mid-stream is followed, an invalidated slot is
 * rebuilt and reconciled, a commit streamed before it is visible is not
 * refreshed too early, a standby takes the slot over, the server's
 * shortcomings are refused at start, and a rollup can move between notify,
 * queue and wal with nothing lost. Each ends with --verify at 0 mismatches
 * and the independent oracle.
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

/* 200 users, each with a balance (0xw<id>, id * 10), streamed by a
 * WAL-mode rollupd; `extra` may name the slot with %s (the database's name). */
static void start_wal(const char *extra)
{
	char config[1024] = "";
	harness_use_wal();
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_users_with_balances(conn, 200);
	if (extra != NULL) {
		/* The one %s, if any, is the slot's name. */
		const char *at = strstr(extra, "%s");
		snprintf(config, sizeof(config), "%.*s%s%s", at ? (int)(at - extra) : (int)strlen(extra), extra,
		         at ? db : "", at ? at + 2 : "");
	}
	daemon_start(&d, db, config);
}

static void expect_balance(int user_id, const char *balance, double timeout_s)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT balance FROM eth_user_balances WHERE user_id = %d", user_id);
	if (!db_wait_value(conn, balance, timeout_s, sql)) {
		char *got = db_value(conn, "%s", sql);
		ck_abort_msg("user %d: balance %s, expected %s (log %s)", user_id, got ? got : "(no row)", balance,
		             d.log);
	}
}

static void stop_and_verify(void)
{
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
	PQfinish(conn);
}

/* Is the slot's confirmed position at least `lsn`? "t" or "f". */
static char *confirmed_at_least(const char *lsn)
{
	return db_value(
	    conn,
	    "SELECT CASE WHEN confirmed_flush_lsn >= '%s'::pg_lsn THEN 't' ELSE 'f' END FROM pg_replication_slots"
	    " WHERE slot_name = '%s'",
	    lsn, db);
}

static void expect_confirmed(const char *lsn, bool yes, double timeout_s)
{
	double end = now_seconds() + timeout_s;
	char *v;
	while ((v = confirmed_at_least(lsn)) != NULL && strcmp(v, yes ? "t" : "f") != 0 && now_seconds() < end) {
		free(v);
		sleep_ms(50);
	}
	ck_assert_msg(v != NULL && strcmp(v, yes ? "t" : "f") == 0, "confirmed >= %s is %s, expected %s (log %s)", lsn,
	              v ? v : "(no slot)", yes ? "t" : "f", d.log);
	free(v);
}

/* A session that holds user `id`'s derived row locked: the refresh of that user waits. */
static PGconn *hold_row(int id)
{
	PGconn *c = db_open(db);
	db_exec(c, "BEGIN");
	db_exec(c, "SELECT 1 FROM eth_user_balances WHERE user_id = %d FOR UPDATE", id);
	return c;
}

START_TEST(test_nothing_is_confirmed_before_its_refresh_commits)
{
	start_wal(NULL);
	PGconn *blocker = hold_row(10);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 7 WHERE wallet = '0xw10'");
	char *lsn = db_value(conn, "SELECT pg_current_wal_insert_lsn()::text"); /* past the update's commit */
	/* Ten status updates later: the refresh is blocked, so its transaction is not confirmed. */
	sleep_ms(1000);
	expect_confirmed(lsn, false, 0);
	expect_balance(10, "100", 0);
	db_exec(blocker, "COMMIT");
	PQfinish(blocker);
	expect_balance(10, "7", 10);
	expect_confirmed(lsn, true, 5);
	free(lsn);
	stop_and_verify();
}
END_TEST

START_TEST(test_sigkill_with_unconfirmed_changes_loses_nothing)
{
	start_wal(NULL);
	PGconn *blocker = hold_row(20);
	db_exec(conn,
	        "UPDATE eth_wallet_balances SET balance = balance + 1 WHERE wallet IN ('0xw20', '0xw21', '0xw22')");
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (23, '0xw24', 'eth', true, false)");
	sleep_ms(300);
	daemon_kill(&d);
	db_exec(blocker, "COMMIT");
	PQfinish(blocker);
	/* The server sends every unconfirmed transaction again; no walk is needed. */
	daemon_start(&d, db, NULL);
	expect_balance(20, "201", 10);
	expect_balance(21, "211", 10);
	expect_balance(22, "221", 10);
	expect_balance(23, "470", 10);
	ck_assert_int_eq(daemon_log_count(&d, "reconcile started"),
	                 1); /* the first start's, after it created the slot */
	stop_and_verify();
}
END_TEST

START_TEST(test_terminated_replication_connection_resumes_without_a_walk)
{
	start_wal(NULL);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 1 WHERE wallet = '0xw30'");
	expect_balance(30, "1", 10);
	db_exec(conn,
	        "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'rollupd wal'"
	        " AND pid IN (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '%s')",
	        db);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 2 WHERE wallet = '0xw31'");
	ck_assert_msg(daemon_wait_log(&d, "wal stream lost", 1, 10.0), "the loss went unnoticed (log %s)", d.log);
	ck_assert(daemon_wait_log(&d, "wal streaming", 2, 10.0));
	expect_balance(31, "2", 10);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 3 WHERE wallet = '0xw32'");
	expect_balance(32, "3", 10);
	ck_assert_int_eq(daemon_log_count(&d, "reconcile started"), 1);
	stop_and_verify();
}
END_TEST

START_TEST(test_postgres_restarts_fast_and_immediate_under_load)
{
	harness_use_wal();
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_workload(conn);
	daemon_start(&d, db, NULL);
	pid_t load = workload_start(db, 4, 8, "balance.sql@5 link.sql@3 user_wallet.sql@2");
	sleep_ms(2000);
	PQfinish(conn);
	pg_restart("fast");
	sleep_ms(2000);
	pg_restart("immediate");
	workload_wait(load); /* its sessions went with the server: only its changes matter */
	conn = db_open(db);
	load = workload_start(db, 4, 3, "balance.sql@5 link.sql@3 user_wallet.sql@2");
	ck_assert_int_eq(workload_wait(load), 0);
	ck_assert_msg(wait_converged(db, 30.0), "not exact 30 s after the restarts (log %s)", d.log);
	ck_assert_int_eq(daemon_log_count(&d, "reconcile started"), 1);
	stop_and_verify();
}
END_TEST

START_TEST(test_a_transaction_of_200000_rows_stays_in_bounded_memory)
{
	start_wal("batch = { max_keys = 1000; window_ms = 5; max_pending_keys = 20000; };");
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet)"
	              " SELECT g, 'big', true, '0xW' || (g %% 400) FROM generate_series(1000, 200999) g");
	ck_assert_msg(db_wait_value(conn, "200200", 120.0, "SELECT count(*) FROM eth_user_balances"),
	              "not every new user has a row (log %s)", d.log);
	long rss = peak_rss_kb(d.pid);
	fprintf(stderr, "wal 200,000-row transaction: rollupd peak RSS %ld kB\n", rss);
	const char *san = getenv("ROLLUPD_SANITIZED"), *vg = getenv("ROLLUPD_VALGRIND");
	if ((san == NULL || san[0] == '\0') && vg == NULL)
		ck_assert_int_lt(rss, 64L * 1024);
	stop_and_verify();
}
END_TEST

START_TEST(test_old_rows_carry_the_keys_they_move_from)
{
	start_wal(NULL);
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (5, '0xw150', 'eth', true, false)");
	expect_balance(5, "1550", 10);
	/* An UPDATE moves the link to user 6: the old row says user 5 (REPLICA IDENTITY FULL). */
	db_exec(conn, "UPDATE associated_wallets SET user_id = 6 WHERE wallet = '0xw150'");
	expect_balance(5, "50", 10);
	expect_balance(6, "1560", 10);
	/* A DELETE of the link: the old row names its user. */
	db_exec(conn, "DELETE FROM associated_wallets WHERE wallet = '0xw150'");
	expect_balance(6, "60", 10);
	/* Under the primary key (eth_wallet_balances.wallet) a DELETE carries the key... */
	db_exec(conn, "DELETE FROM eth_wallet_balances WHERE wallet = '0xw7'");
	expect_balance(7, "0", 10);
	/* ...and an UPDATE of the key itself the old one. */
	db_exec(conn, "UPDATE eth_wallet_balances SET wallet = '0xw8moved' WHERE wallet = '0xw8'");
	expect_balance(8, "0", 10);
	stop_and_verify();
}
END_TEST

START_TEST(test_truncate_reconciles_the_rollup)
{
	start_wal(NULL);
	db_exec(conn, "TRUNCATE eth_wallet_balances");
	ck_assert(daemon_wait_log(&d, "reconcile started rollup=eth_user_balances reason=source-truncated", 1, 10.0));
	ck_assert(db_wait_value(conn, "0", 10.0, "SELECT sum(balance) FROM eth_user_balances"));
	char *lsn = db_value(conn, "SELECT pg_current_wal_insert_lsn()::text");
	ck_assert(daemon_wait_log(&d, "reconcile done", 2, 10.0)); /* the first start's, then this one */
	expect_confirmed(lsn, true, 5);
	free(lsn);
	stop_and_verify();
}
END_TEST

START_TEST(test_a_new_column_mid_stream_is_followed)
{
	start_wal(NULL);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 9 WHERE wallet = '0xw40'");
	expect_balance(40, "9", 10);
	db_exec(conn, "ALTER TABLE associated_wallets ADD COLUMN note text DEFAULT 'n'");
	db_exec(conn, "ALTER TABLE users ADD COLUMN nickname text");
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete, note)"
	              " VALUES (41, '0xw141', 'eth', true, false, 'x')");
	db_exec(conn, "UPDATE users SET wallet = '0xw143', nickname = 'z' WHERE user_id = 42");
	expect_balance(41, "1820", 10);
	expect_balance(42, "1430", 10);
	ck_assert_int_eq(daemon_log_count(&d, "dropping the stream"), 0);
	stop_and_verify();
}
END_TEST

/* max_slot_wal_keep_size of 1 MB and 60 MB of WAL while rollupd is stopped. */
static void invalidate_slot(void)
{
	PGconn *admin = db_open("postgres");
	db_exec(admin, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
	db_exec(admin, "SELECT pg_reload_conf()");
	db_exec(conn, "CREATE TABLE junk AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 300000) g");
	char *status = NULL;
	for (int i = 0; i < 20; i++) {
		db_exec(admin, "SELECT pg_switch_wal()");
		db_exec(admin, "CHECKPOINT");
		free(status);
		status = db_value(admin, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '%s'", db);
		if (status != NULL && strcmp(status, "lost") == 0)
			break;
		db_exec(conn, "INSERT INTO junk SELECT g, repeat('y', 200) FROM generate_series(1, 50000) g");
	}
	db_exec(admin, "ALTER SYSTEM RESET max_slot_wal_keep_size");
	db_exec(admin, "SELECT pg_reload_conf()");
	ck_assert_msg(status != NULL && strcmp(status, "lost") == 0, "the slot was not invalidated (%s)",
	              status ? status : "no slot");
	free(status);
	PQfinish(admin);
}

START_TEST(test_an_invalidated_slot_is_rebuilt_and_reconciled)
{
	start_wal(NULL);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 11 WHERE wallet = '0xw50'");
	invalidate_slot();
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 12 WHERE wallet = '0xw51'");
	daemon_start(&d, db, NULL);
	ck_assert(daemon_log_count(&d, "was invalidated") == 1);
	ck_assert_int_eq(daemon_log_count(&d, "reconcile started rollup=eth_user_balances reason=slot-rebuilt"), 2);
	expect_balance(50, "11", 10);
	expect_balance(51, "12", 10);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 13 WHERE wallet = '0xw52'");
	expect_balance(52, "13", 10);
	char *status = db_value(conn, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '%s'", db);
	ck_assert_str_eq(status, "reserved");
	free(status);
	stop_and_verify();
}
END_TEST

/* The visibility trap: under synchronous replication the commit record is
 * in the WAL (and streamed) before the writer's wait ends and the change
 * becomes visible. A refresh then must wait and retry, not compute from a
 * snapshot that misses it and confirm. */
START_TEST(test_a_commit_streamed_before_it_is_visible_is_not_lost)
{
	start_wal("wal = { slot = \"%s\"; status_interval_ms = 100; visibility_wait_ms = 200; };");
	PGconn *admin = db_open("postgres");
	db_exec(admin, "ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
	db_exec(admin, "SELECT pg_reload_conf()");
	PGconn *writer = db_open(db);
	db_exec(writer, "SET synchronous_commit = on");
	ck_assert(PQsendQuery(writer, "UPDATE eth_wallet_balances SET balance = 4242 WHERE wallet = '0xw60'"));
	bool waiting =
	    db_wait_value(conn, "1", 10.0, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
	char *lsn = db_value(conn, "SELECT pg_current_wal_insert_lsn()::text");
	/* Streamed, refreshed too early, refused: the balance and the slot stay. */
	bool refused = daemon_wait_log(&d, "is not visible yet", 2, 10.0);
	char *early = db_value(conn, "SELECT balance FROM eth_user_balances WHERE user_id = 60");
	char *confirmed_early = confirmed_at_least(lsn);
	/* The writer stops waiting (whatever the checks above found: a writer
	 * left waiting would block every later slot's creation). */
	db_exec(admin, "ALTER SYSTEM RESET synchronous_standby_names");
	db_exec(admin, "SELECT pg_reload_conf()");
	db_exec(admin, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
	PGresult *r;
	while ((r = PQgetResult(writer)) != NULL)
		PQclear(r);
	PQfinish(writer);
	PQfinish(admin);
	ck_assert_msg(waiting, "the writer did not wait for synchronous replication");
	ck_assert_msg(refused, "no refresh waited (log %s)", d.log);
	ck_assert_str_eq(early, "600");
	ck_assert_str_eq(confirmed_early, "f");
	expect_balance(60, "4242", 10);
	expect_confirmed(lsn, true, 5);
	free(lsn);
	free(early);
	free(confirmed_early);
	stop_and_verify();
}
END_TEST

START_TEST(test_a_standby_takes_the_slot_over)
{
	start_wal("standby = { enabled = true; poll_ms = 200; };");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 1 WHERE wallet = '0xw70'");
	expect_balance(70, "1", 10);
	struct daemon b = {0};
	char config[2048];
	snprintf(config, sizeof(config),
	         "database = { conninfo = \"%s\"; pool_size = 2; reconnect_min_ms = 50; reconnect_max_ms = 400;"
	         " connect_retries = 0; };\n"
	         "batch = { max_keys = 500; window_ms = 5; };\nlog = { level = \"debug\"; };\n"
	         "standby = { enabled = true; poll_ms = 200; };\n"
	         "wal = { slot = \"%s\"; status_interval_ms = 100; };\n",
	         daemon_conninfo(db), db);
	daemon_second(&b, db, "standby", config);
	ck_assert(daemon_wait_log(&b, "ready: standby", 1, 5.0));
	ck_assert_int_eq(daemon_log_count(&b, "wal streaming"), 0); /* only the active streams */
	daemon_kill(&d);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 2 WHERE wallet = '0xw71'");
	ck_assert_msg(daemon_wait_log(&b, "wal streaming", 1, 15.0), "the standby did not stream (log %s)", b.log);
	if (!db_wait_value(conn, "2", 15.0, "SELECT balance FROM eth_user_balances WHERE user_id = 71"))
		ck_abort_msg("the change made after the takeover was lost (log %s)", b.log);
	/* From the confirmed position: the slot existed, so no rebuild walk. */
	ck_assert_int_eq(daemon_log_count(&b, "reason=slot-rebuilt"), 0);
	ck_assert_int_eq(daemon_stop(&b, 10, NULL), 0);
	assert_balances_verified(db);
	PQfinish(conn);
}
END_TEST

/* What the mode needs from the server, refused at start with exit 78 and a message. */
START_TEST(test_what_the_mode_needs_is_checked_at_start)
{
	harness_use_wal();
	db_create(db, sizeof(db));
	conn = db_open(db);
	char extra[800];
	snprintf(
	    extra, sizeof(extra),
	    "database = { conninfo = \"%s\"; connect_retries = 3; reconnect_min_ms = 20; reconnect_max_ms = 50; };",
	    daemon_conninfo(db));
	/* associated_wallets' old rows would not say their user_id. */
	db_exec(conn, "ALTER TABLE associated_wallets REPLICA IDENTITY DEFAULT");
	daemon_configure(&d, db, extra);
	daemon_spawn(&d, NULL);
	ck_assert_int_eq(daemon_wait_exit(&d, 20.0), 78);
	ck_assert_msg(daemon_log_count(&d, "table associated_wallets cannot deliver user_id, chain of its old rows") >=
	                  1,
	              "(log %s)", d.log);
	db_exec(conn, "ALTER TABLE associated_wallets REPLICA IDENTITY FULL");
	/* No publication. */
	db_exec(conn, "ALTER PUBLICATION rollupd RENAME TO elsewhere");
	daemon_spawn(&d, NULL);
	ck_assert_int_eq(daemon_wait_exit(&d, 20.0), 78);
	ck_assert(daemon_log_count(&d, "publication rollupd is missing") >= 1);
	db_exec(conn, "ALTER PUBLICATION elsewhere RENAME TO rollupd");
	/* A role without REPLICATION cannot stream at all. */
	db_exec(conn, "CREATE ROLE wal_nobody LOGIN IN ROLE rollupd_test");
	snprintf(extra, sizeof(extra),
	         "database = { conninfo = \"host=%s port=%s user=wal_nobody dbname=%s\"; connect_retries = 2;"
	         " reconnect_min_ms = 20; reconnect_max_ms = 50; };",
	         getenv("PGHOST"), getenv("PGPORT"), db);
	daemon_configure(&d, db, extra);
	daemon_spawn(&d, NULL);
	ck_assert_int_eq(daemon_wait_exit(&d, 20.0), 69);
	ck_assert_msg(daemon_log_count(&d, "must be superuser or replication role") >= 1, "(log %s)", d.log);
	db_exec(conn, "DROP ROLE wal_nobody");
	/* Nothing was created: no slot. */
	char *n = db_value(conn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'", db);
	ck_assert_str_eq(n, "0");
	free(n);
	PQfinish(conn);
}
END_TEST

/* No SIGHUP: rollupd hears the catalog change (rollupd.catalog_changed()). */
static void set_delivery(const char *mode)
{
	int heard = daemon_log_count(&d, "the rollup catalog changed in the database");
	/* Leaving queue mode waits for the queue to drain (set_delivery refuses
	 * while keys are queued). */
	ck_assert(db_wait_value(conn, "0", 10.0, "SELECT count(*) FROM rollupd.queue"));
	db_exec(conn, "SELECT rollupd.set_delivery(c.channel, '%s') FROM rollupd.channel c", mode);
	ck_assert(daemon_wait_log(&d, "the rollup catalog changed in the database", heard + 1, 5.0));
}

START_TEST(test_switching_between_notify_queue_and_wal_loses_nothing)
{
	db_create(db, sizeof(db)); /* notify mode */
	conn = db_open(db);
	seed_users_with_balances(conn, 200);
	daemon_start(&d, db, NULL);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 1 WHERE wallet = '0xw80'");
	expect_balance(80, "1", 10);

	set_delivery("queue");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 2 WHERE wallet = '0xw81'");
	expect_balance(81, "2", 10);

	/* To WAL mode: the triggers go, the publication comes; what is written
	 * before rollupd has its slot is found by the walk that follows it. */
	set_delivery("wal");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 3 WHERE wallet = '0xw82'");
	ck_assert_msg(daemon_wait_log(&d, "wal streaming", 1, 10.0), "no stream (log %s)", d.log);
	expect_balance(82, "3", 10);
	/* --status names the slot and who streams it. */
	char out[8192], args[700], expected[128];
	snprintf(args, sizeof(args), "-c '%s' --status", d.conf);
	snprintf(expected, sizeof(expected), "wal slot %s: streaming to pid ", db);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	ck_assert_msg(strstr(out, expected) && strstr(out, "status: ok"), "%s", out);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 4 WHERE wallet = '0xw83'");
	expect_balance(83, "4", 10);

	/* Back to notify: the slot would keep WAL for ever, so rollupd drops it. */
	set_delivery("notify");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 5 WHERE wallet = '0xw84'");
	expect_balance(84, "5", 10);
	ck_assert(db_wait_value(conn, "0", 10.0,
	                        "SELECT count(*) FROM pg_replication_slots"
	                        " WHERE slot_name = current_database()"));
	ck_assert(daemon_log_count(&d, "reason=delivery-changed") >= 3);
	stop_and_verify();
}
END_TEST

Suite *wal_suite(void)
{
	Suite *s = suite_create("wal");
	TCase *tc = tcase_create("wal");
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_nothing_is_confirmed_before_its_refresh_commits);
	tcase_add_test(tc, test_sigkill_with_unconfirmed_changes_loses_nothing);
	tcase_add_test(tc, test_terminated_replication_connection_resumes_without_a_walk);
	tcase_add_test(tc, test_postgres_restarts_fast_and_immediate_under_load);
	tcase_add_test(tc, test_a_transaction_of_200000_rows_stays_in_bounded_memory);
	tcase_add_test(tc, test_old_rows_carry_the_keys_they_move_from);
	tcase_add_test(tc, test_truncate_reconciles_the_rollup);
	tcase_add_test(tc, test_a_new_column_mid_stream_is_followed);
	tcase_add_test(tc, test_an_invalidated_slot_is_rebuilt_and_reconciled);
	tcase_add_test(tc, test_a_commit_streamed_before_it_is_visible_is_not_lost);
	tcase_add_test(tc, test_a_standby_takes_the_slot_over);
	tcase_add_test(tc, test_what_the_mode_needs_is_checked_at_start);
	tcase_add_test(tc, test_switching_between_notify_queue_and_wal_loses_nothing);
	suite_add_tcase(s, tc);
	return s;
}
