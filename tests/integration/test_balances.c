/*
 * eth_user_balances through the running daemon: every change docs/design.md lists
 * reaches the derived row, and the row is exactly the definition.
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

static void seed_and_start(void)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet, handle) VALUES"
	              " (1, 'a', true, '0xAAA1', 'alice'), (2, 'b', true, '0xbbb2', 'bob'),"
	              " (3, 'c', true, '0xccc3', 'carol'), (4, 'd', true, NULL, 'dave')");
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance) VALUES"
	              " ('0xaaa1', 100), ('0xbbb2', 200), ('0xccc3', 300), ('0xddd4', 4000), ('0xeee5', 50000)");
	daemon_start(&d, db, NULL);
}

static void stop_and_verify(void)
{
	double elapsed;
	ck_assert_int_eq(daemon_stop(&d, 10, &elapsed), 0);
	assert_balances_verified(db);
	PQfinish(conn);
}

static void expect_balance(int user_id, const char *balance)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT balance FROM eth_user_balances WHERE user_id = %d", user_id);
	if (!db_wait_value(conn, balance, 10.0, sql)) {
		char *got = db_value(conn, "%s", sql);
		ck_abort_msg("user %d: balance %s, expected %s (log %s)", user_id, got ? got : "(no row)",
		             balance ? balance : "(no row)", d.log);
	}
}

START_TEST(test_balance_change_reaches_derived_table)
{
	seed_and_start();
	expect_balance(1, "100"); /* the catch-up reconcile at start */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 150 WHERE wallet = '0xaaa1'");
	expect_balance(1, "150");
	/* The read side: one row per current user, the balance by primary key. */
	char *row = db_value(conn, "SELECT string_agg(user_id || ':' || balance, ',' ORDER BY user_id)"
	                           " FROM v_user_balances WHERE user_id IN (1, 2, 4)");
	ck_assert_str_eq(row, "1:150,2:200,4:0");
	free(row);
	stop_and_verify();
}
END_TEST

START_TEST(test_link_unlink_relink_changes_total)
{
	seed_and_start();
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (1, '0xddd4', 'eth', true, false)");
	expect_balance(1, "4100");
	db_exec(conn, "UPDATE associated_wallets SET is_delete = true WHERE user_id = 1 AND wallet = '0xddd4'");
	expect_balance(1, "100");
	db_exec(conn, "UPDATE associated_wallets SET is_delete = false WHERE user_id = 1 AND wallet = '0xddd4'");
	expect_balance(1, "4100");
	stop_and_verify();
}
END_TEST

START_TEST(test_unlink_last_wallet_drives_balance_to_zero)
{
	seed_and_start();
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (4, '0xeee5', 'eth', true, false)");
	expect_balance(4, "50000");
	db_exec(conn, "UPDATE associated_wallets SET is_delete = true WHERE user_id = 4");
	expect_balance(4, "0");
	stop_and_verify();
}
END_TEST

START_TEST(test_users_wallet_change_is_picked_up)
{
	seed_and_start();
	expect_balance(2, "200");
	/* Audius writes a new current row and retires the old one. */
	db_exec(conn,
	        "BEGIN; UPDATE users SET is_current = false WHERE user_id = 2;"
	        " INSERT INTO users (user_id, txhash, is_current, wallet) VALUES (2, 'b2', true, '0xCCC3'); COMMIT");
	expect_balance(2, "300");
	db_exec(conn, "UPDATE users SET wallet = '0xddd4' WHERE user_id = 2 AND is_current");
	expect_balance(2, "4000");
	stop_and_verify();
}
END_TEST

START_TEST(test_one_wallet_backing_two_users_counts_for_both)
{
	seed_and_start();
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (2, '0xddd4', 'eth', true, false), (3, '0xddd4', 'eth', true, false)");
	expect_balance(2, "4200");
	expect_balance(3, "4300");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 5000 WHERE wallet = '0xddd4'");
	expect_balance(2, "5200");
	expect_balance(3, "5300");
	stop_and_verify();
}
END_TEST

START_TEST(test_deleted_balance_row_leaves_the_total)
{
	seed_and_start();
	expect_balance(2, "200");
	db_exec(conn, "DELETE FROM eth_wallet_balances WHERE wallet = '0xbbb2'");
	expect_balance(2, "0");
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance) VALUES ('0xbbb2', 7)");
	expect_balance(2, "7");
	stop_and_verify();
}
END_TEST

START_TEST(test_mixed_case_wallet_is_counted_once)
{
	seed_and_start();
	expect_balance(1, "100"); /* users.wallet '0xAAA1' matches balance row '0xaaa1' */
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (1, '0xaaa1', 'eth', true, false), (1, '0xddd4', 'eth', true, false)");
	expect_balance(1, "4100"); /* 0xaaa1 once, plus 0xddd4 */
	stop_and_verify();
}
END_TEST

START_TEST(test_sol_and_retired_links_do_not_count)
{
	seed_and_start();
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (3, '0xeee5', 'sol', true, false), (3, '0xddd4', 'eth', false, false)");
	/* A later change on the same channel proves the earlier ones were processed. */
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " VALUES (3, '0xbbb2', 'eth', true, false)");
	expect_balance(3, "500");
	db_exec(conn, "UPDATE associated_wallets SET chain = 'eth' WHERE user_id = 3 AND wallet = '0xeee5'");
	expect_balance(3, "50500");
	stop_and_verify();
}
END_TEST

START_TEST(test_user_rows_come_and_go_with_current_users)
{
	seed_and_start();
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet) VALUES (5, 'e', true, '0xEEE5')");
	expect_balance(5, "50000");
	db_exec(conn, "UPDATE users SET is_current = false WHERE user_id = 5");
	expect_balance(5, NULL);
	stop_and_verify();
}
END_TEST

START_TEST(test_bulk_statement_of_thousands_of_keys_is_fully_applied)
{
	seed_and_start();
	/* 3000 users and balances in one statement each: payloads split under 8000 bytes. */
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance)"
	              " SELECT '0xbulk' || g, g FROM generate_series(1, 3000) g");
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet)"
	              " SELECT 1000 + g, 'x', true, '0xBULK' || g FROM generate_series(1, 3000) g");
	ck_assert(
	    db_wait_value(conn, "3000", 20.0,
	                  "SELECT count(*) FROM eth_user_balances WHERE user_id > 1000 AND balance = user_id - 1000"));
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = balance * 2 WHERE wallet LIKE '0xbulk%%'");
	ck_assert(db_wait_value(conn, "3000", 20.0,
	                        "SELECT count(*) FROM eth_user_balances WHERE user_id > 1000"
	                        " AND balance = 2 * (user_id - 1000)"));
	stop_and_verify();
}
END_TEST

/*
 * The race the contract guards against, played step by step without the
 * daemon: refresh A starts while a newer refresh B holds the user's row;
 * the balance changes and B writes the new total; then A finishes. A must
 * not write its older total. Returns the final balance.
 */
static char *race(const char *refresh_fn)
{
	PGconn *a = db_open(db), *b = db_open(db), *c = db_open(db);
	db_exec(c, "INSERT INTO eth_user_balances (user_id, balance) VALUES (1, 100)");

	db_exec(b, "BEGIN");
	db_exec(b, "SELECT 1 FROM eth_user_balances WHERE user_id = 1 FOR UPDATE");
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT %s('{1}')", refresh_fn);
	db_send_until_blocked(a, c, sql);

	db_exec(c, "UPDATE eth_wallet_balances SET balance = 200 WHERE wallet = '0xaaa1'");
	db_exec(b, "UPDATE eth_user_balances SET balance = 200 WHERE user_id = 1");
	db_exec(b, "COMMIT");
	db_finish(a);
	char *balance = db_value(c, "SELECT balance FROM eth_user_balances WHERE user_id = 1");
	PQfinish(a);
	PQfinish(b);
	PQfinish(c);
	return balance;
}

START_TEST(test_concurrent_refreshes_never_leave_an_older_total)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet) VALUES (1, 'a', true, '0xaaa1')");
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance) VALUES ('0xaaa1', 100)");
	/* The naive form: compute, then upsert. It must lose this race, or the test proves nothing. */
	db_exec(conn, "CREATE FUNCTION naive_refresh(keys bigint[]) RETURNS integer LANGUAGE sql AS $$"
	              " INSERT INTO eth_user_balances (user_id, balance)"
	              " SELECT user_id, balance FROM rollupd.eth_user_balances_compute(keys)"
	              " ON CONFLICT (user_id) DO UPDATE SET balance = EXCLUDED.balance RETURNING 1 $$");

	char *naive = race("naive_refresh");
	ck_assert_str_eq(naive, "100"); /* stale: the older total overwrote the newer one */
	free(naive);

	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 100 WHERE wallet = '0xaaa1'");
	db_exec(conn, "DELETE FROM eth_user_balances");
	char *locked = race("rollupd.eth_user_balances_refresh");
	ck_assert_str_eq(locked, "200");
	free(locked);
	PQfinish(conn);
	assert_balances_verified(db);
}
END_TEST

/*
 * Two workers' batches share a few users: a refresh that finds one of its
 * rows held refreshes the others first and then waits only for that one, so
 * the batches run side by side. The held row is still recomputed after the
 * holder's commit, and a refresh that fails in its first pass (which one
 * refresh at a time runs, under a session-level advisory lock) leaves that
 * lock behind in no session.
 */
START_TEST(test_a_held_row_holds_up_only_its_own_key)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_users_with_balances(conn, 3); /* users 1..3, totals 10, 20, 30 */
	db_exec(conn, "INSERT INTO eth_user_balances (user_id, balance) VALUES (1, 0), (2, 0), (3, 0)");
	PGconn *a = db_open(db), *b = db_open(db);

	db_exec(b, "BEGIN");
	db_exec(b, "SELECT 1 FROM eth_user_balances WHERE user_id = 2 FOR UPDATE");
	db_send_until_blocked(a, conn, "SELECT rollupd.eth_user_balances_refresh('{1,2,3}')");
	/* a waits for user 2 and already holds 1 and 3 (with one pass in key
	 * order it would wait at 2 holding 1 only, and 3 would be free). */
	PGresult *r = PQexec(conn, "SELECT 1 FROM eth_user_balances WHERE user_id = 3 FOR UPDATE NOWAIT");
	ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR,
	              "user 3's row was free: the refresh waited before taking it");
	ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "55P03");
	PQclear(r);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 25 WHERE wallet = '0xw2'");
	db_exec(b, "UPDATE eth_user_balances SET balance = 7 WHERE user_id = 2"); /* wrong: a must undo it */
	db_exec(b, "COMMIT");
	db_finish(a);
	char *rows =
	    db_value(conn, "SELECT string_agg(user_id || ':' || balance, ' ' ORDER BY user_id) FROM eth_user_balances");
	ck_assert_str_eq(rows, "1:10 2:25 3:30");
	free(rows);

	/* The first pass is cancelled (its table is locked, and a 200 ms
	 * statement_timeout runs out) after it took the advisory lock: it must
	 * let it go. */
	db_exec(b, "BEGIN");
	db_exec(b, "LOCK TABLE eth_user_balances IN ACCESS EXCLUSIVE MODE");
	db_exec(a, "SET statement_timeout = '200ms'");
	r = PQexec(a, "SELECT rollupd.eth_user_balances_refresh('{1}')");
	ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "57014");
	PQclear(r);
	db_exec(b, "ROLLBACK");
	char *left = db_value(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted");
	ck_assert_str_eq(left, "0");
	free(left);
	db_exec(a, "RESET statement_timeout");
	db_exec(b, "SET lock_timeout = '5s'"); /* another session's refresh gets through */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 11 WHERE wallet = '0xw1'");
	char *n = db_value(b, "SELECT rollupd.eth_user_balances_refresh('{1}')");
	ck_assert_str_eq(n, "1");
	free(n);
	PQfinish(a);
	PQfinish(b);
	PQfinish(conn);
	assert_balances_verified(db);
}
END_TEST

/*
 * The wait that closed a cycle: refresh a skipped user 2 (held by h) and
 * refreshes user 1 slowly (a trigger sleeps in its write); h commits; then
 * b refreshes {1,2}. Had b's first pass taken user 2, now free, a would wait
 * for b's row 2 and b for a's row 1: a deadlock, one of them failing. a
 * claimed user 2's bucket for its second pass, so b leaves it alone and
 * waits for a's ticket; both succeed, exact.
 */
START_TEST(test_a_key_left_for_the_second_pass_is_not_taken_by_a_younger_refresh)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_users_with_balances(conn, 2); /* users 1 and 2, totals 10 and 20 */
	db_exec(conn, "INSERT INTO eth_user_balances (user_id, balance) VALUES (1, 0), (2, 0)");
	db_exec(conn, "CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS"
	              " $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$");
	db_exec(conn, "CREATE TRIGGER slow_write BEFORE UPDATE ON eth_user_balances"
	              " FOR EACH ROW WHEN (NEW.user_id = 1 AND NEW.balance = 10) EXECUTE FUNCTION slow_write()");
	PGconn *a = db_open(db), *b = db_open(db), *h = db_open(db);
	db_exec(h, "BEGIN");
	db_exec(h, "SELECT 1 FROM eth_user_balances WHERE user_id = 2 FOR UPDATE");
	ck_assert_int_eq(PQsendQuery(a, "SELECT rollupd.eth_user_balances_refresh('{1,2}')"), 1);
	ck_assert(db_wait_value(conn, "1", 10.0, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"));
	db_exec(h, "COMMIT");
	db_send_until_blocked(b, conn, "SELECT rollupd.eth_user_balances_refresh('{1,2}')");
	db_finish(a);
	db_finish(b);
	char *rows =
	    db_value(conn, "SELECT string_agg(user_id || ':' || balance, ' ' ORDER BY user_id) FROM eth_user_balances");
	ck_assert_str_eq(rows, "1:10 2:20");
	free(rows);
	PQfinish(a);
	PQfinish(b);
	PQfinish(h);
	db_exec(conn, "DROP TRIGGER slow_write ON eth_user_balances");
	PQfinish(conn);
	assert_balances_verified(db);
}
END_TEST

/*
 * Writers racing on a small key space: balance updates, links and unlinks of
 * the same wallets, users changing their own wallet, from 6 clients at once.
 * A recompute trigger loses updates here; rollupd must end exact.
 */
START_TEST(test_concurrent_mixed_workload_leaves_no_mismatch)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet)"
	              " SELECT g, 't', true, '0xH' || g FROM generate_series(1, 50) g");
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance)"
	              " SELECT '0xh' || g, g * 1000000000000000000::numeric FROM generate_series(1, 60) g");
	daemon_start(&d, db, NULL);

	ck_assert_int_eq(run_pgbench(db, 6, 4, "balance.sql@5 link.sql@3 user_wallet.sql@2"), 0);
	char *links = db_value(conn, "SELECT count(*) FROM associated_wallets");
	ck_assert_msg((int)strtol(links, NULL, 10) > 100, "the workload barely ran: %s links", links);
	free(links);

	/* Writers stopped: the table must converge to exact, and quickly. */
	double t0 = now_seconds();
	ck_assert_msg(wait_converged(db, 10.0), "still wrong 10 s after the writers stopped (log %s)", d.log);
	ck_assert_msg(now_seconds() - t0 < 2.0, "converged only after %.1f s", now_seconds() - t0);
	stop_and_verify();
}
END_TEST

START_TEST(test_install_is_idempotent_and_uninstall_removes_everything)
{
	db_create(db, sizeof(db)); /* the template already has one install */
	conn = db_open(db);
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet) VALUES (1, 'a', true, '0xaaa1')");
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance) VALUES ('0xaaa1', 100)");
	ck_assert_int_eq(psql_file(db, "eth_user_balances/install.sql"), 0);
	ck_assert_int_eq(psql_file(db, "eth_user_balances/install.sql"), 0);
	char *n = db_value(conn, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'rollupd_capture_%%'");
	/* Three events on three tables, not more; none at all in WAL mode, where
	 * the publication covers the three tables instead. */
	ck_assert_str_eq(n, harness_wal() ? "0" : "9");
	free(n);
	n = db_value(conn, "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'rollupd'");
	ck_assert_str_eq(n, harness_wal() ? "3" : "0");
	free(n);
	n = db_value(conn, "SELECT count(*) FROM rollupd.channel");
	ck_assert_str_eq(n, "2");
	free(n);

	ck_assert_int_eq(psql_file(db, "eth_user_balances/uninstall.sql"), 0);
	n = db_value(conn, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'rollupd_capture_%%'");
	ck_assert_str_eq(n, "0");
	free(n);
	n = db_value(conn, "SELECT count(*) FROM pg_publication WHERE pubname = 'rollupd'");
	ck_assert_str_eq(n, "0");
	free(n);
	n = db_value(conn, "SELECT to_regclass('eth_user_balances')::text || to_regnamespace('rollupd')::text");
	ck_assert_ptr_null(n);
	n = db_value(conn, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'eth_user_balances%%'");
	ck_assert_str_eq(n, "0");
	free(n);
	/* The source tables and their rows are untouched, and writes still work. */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 5");
	n = db_value(conn, "SELECT count(*) FROM users");
	ck_assert_str_eq(n, "1");
	free(n);

	ck_assert_int_eq(psql_file(db, "eth_user_balances/install.sql"), 0);
	/* The daemon's role lost its grants with the objects: grant again. */
	ck_assert_int_eq(psql_file(db, "roles.sql"), 0);
	daemon_start(&d, db, NULL);
	expect_balance(1, "5");
	stop_and_verify();
}
END_TEST

/* Receive every notification on `chan` already delivered to `c`. */
static int drain_notifications(PGconn *c, const char *chan, size_t *max_len, int *keys)
{
	int n = 0;
	PGnotify *note;
	PQconsumeInput(c);
	while ((note = PQnotifies(c)) != NULL) {
		if (strcmp(note->relname, chan) == 0) {
			size_t len = strlen(note->extra);
			if (len > *max_len)
				*max_len = len;
			(*keys)++;
			for (const char *p = note->extra; *p; p++)
				*keys += *p == ',';
			n++;
		}
		PQfreemem(note);
	}
	return n;
}

START_TEST(test_notify_keys_splits_payloads_under_8000_bytes)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	db_exec(conn, "LISTEN probe");
	/* 2,000 keys of 42 bytes: 86,000 bytes of keys. */
	db_exec(conn, "SELECT rollupd.notify_keys('probe', ARRAY(SELECT '0x' || md5(g::text) || 'abcdefgh'"
	              " FROM generate_series(1, 2000) g))");
	size_t max_len = 0;
	int keys = 0;
	int notes = drain_notifications(conn, "probe", &max_len, &keys);
	ck_assert_int_eq(keys, 2000);
	ck_assert_int_ge(notes, 11);
	ck_assert_uint_lt(max_len, 8000);
	PQfinish(conn);
	assert_balances_verified(db);
}
END_TEST

/* The plans a refresh runs, as auto_explain reports them (to the client, as
 * NOTICEs): the text of every nested statement's plan, appended. */
static char plans[1 << 20];
static size_t plans_len;

static void collect_plan(void *arg, const PGresult *res)
{
	(void)arg;
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (msg != NULL && strstr(msg, "Query Text:") != NULL && plans_len + strlen(msg) + 2 < sizeof(plans))
		plans_len += (size_t)snprintf(plans + plans_len, sizeof(plans) - plans_len, "%s\n", msg);
}

/* What a refresh of this many keys must not do: read a whole source or
 * derived table (or the queue), or join them by hashing or merging (the shapes a misestimate
 * chose at 10,000 keys: bench/eth_user_balances/batch-cost, BENCHMARKS.md).
 * Each key is a few index probes, in the plan chosen for every batch size. */
/* The last may be read in order: the claim stops after max_keys rows (a LIMIT). */
static const char *plan_tables[] = {"users", "associated_wallets", "eth_wallet_balances", "eth_user_balances",
                                    "queue_eth_user_balances_wallet"};
enum { N_WHOLE_SCAN_FORBIDDEN = 4 };

/* What is wrong with one statement's plan, or NULL. */
static const char *plan_fault(const char *plan, size_t len, char *bad, size_t bad_len)
{
	char needle[64];
	bool reads_table = false;
	for (size_t i = 0; i < sizeof(plan_tables) / sizeof(plan_tables[0]); i++) {
		snprintf(needle, sizeof(needle), "Seq Scan on %s ", plan_tables[i]);
		if (i < N_WHOLE_SCAN_FORBIDDEN && memmem(plan, len, needle, strlen(needle)) != NULL) {
			snprintf(bad, bad_len, "reads all of %s", plan_tables[i]);
			return bad;
		}
		snprintf(needle, sizeof(needle), " on %s ", plan_tables[i]);
		reads_table |= memmem(plan, len, needle, strlen(needle)) != NULL;
	}
	if (!reads_table)
		return NULL; /* in-memory arrays only (the wait histogram) */
	for (const char *line = plan; line < plan + len;) {
		const char *end = memchr(line, '\n', (size_t)(plan + len - line));
		int n = (int)(end ? end - line : plan + len - line);
		char buf[400];
		snprintf(buf, sizeof(buf), "%.*s", n, line);
		if (strstr(buf, " Join") != NULL && (strstr(buf, "Hash") != NULL || strstr(buf, "Merge") != NULL)) {
			snprintf(bad, bad_len, "joins by hashing or merging: %s", buf);
			return bad;
		}
		line += n + 1;
	}
	return NULL;
}

static void assert_probes_only(const char *what, int keys)
{
	char bad[512];
	const char *fault = NULL;
	for (const char *stmt = strstr(plans, "Query Text:"); stmt != NULL && fault == NULL;) {
		const char *next = strstr(stmt + 1, "Query Text:");
		fault = plan_fault(stmt, next ? (size_t)(next - stmt) : strlen(stmt), bad, sizeof(bad));
		stmt = next;
	}
	if (fault != NULL) {
		fprintf(stderr, "--- the plans of %s of %d keys:\n%s", what, keys, plans);
		ck_abort_msg("%s of %d keys %s (plans on stderr)", what, keys, fault);
	}
}

static void explain_call(const char *what, int keys, const char *sql)
{
	plans_len = 0;
	plans[0] = '\0';
	db_exec(conn, "%s", sql);
	ck_assert_msg(plans_len > 0, "no plan reported for %s", what);
	assert_probes_only(what, keys);
}

START_TEST(test_refresh_plans_are_index_probes_at_every_batch_size)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	/* Enough rows that a sequential scan is never the cheap way to read one. */
	seed_users_with_balances(conn, 20000);
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " SELECT g, '0xW' || (g + 1), 'eth', true, false FROM generate_series(1, 20000, 2) g");
	db_exec(conn, "UPDATE users SET wallet = '0xw' || user_id");
	db_exec(conn, "SELECT rollupd.eth_user_balances_build()");
	db_exec(conn, "ANALYZE users, associated_wallets, eth_wallet_balances, eth_user_balances");
	db_exec(conn, "LOAD 'auto_explain'");
	db_exec(conn, "SET auto_explain.log_min_duration = 0");
	db_exec(conn, "SET auto_explain.log_nested_statements = on");
	db_exec(conn, "SET auto_explain.log_level = notice");
	db_exec(conn, "SET client_min_messages = notice");
	PQsetNoticeReceiver(conn, collect_plan, NULL);
	/* Each size twice in this session: its first plan, then the cached one. */
	static const int sizes[] = {10, 1000, 5000};
	char sql[512];
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (int call = 0; call < 2; call++) {
			int n = sizes[i];
			snprintf(sql, sizeof(sql),
			         "SELECT rollupd.eth_user_balances_refresh_wallets(ARRAY(SELECT '0xW' || (g * 3 %% "
			         "20000 + 1)"
			         " FROM generate_series(1, %d) g))",
			         n);
			explain_call("a refresh by wallet", n, sql);
			snprintf(sql, sizeof(sql),
			         "SELECT rollupd.eth_user_balances_refresh(ARRAY(SELECT (g * 7 %% 20005)::bigint"
			         " FROM generate_series(1, %d) g))",
			         n);
			explain_call("a refresh by user", n, sql);
		}
	/* A drain of a queue of 6,000 keys, 1,000 at a time: claimed and deleted by ctid. */
	PQsetNoticeReceiver(conn, collect_plan, NULL);
	db_exec(conn, "SET client_min_messages = warning");
	db_exec(conn, "SELECT rollupd.set_delivery('eth_user_balances_wallet', 'queue')");
	db_exec(conn, "SELECT rollupd.signal_keys('eth_user_balances_wallet',"
	              " ARRAY(SELECT '0xw' || g FROM generate_series(1, 6000) g))");
	db_exec(conn, "ANALYZE rollupd.queue");
	db_exec(conn, "SET client_min_messages = notice");
	for (int call = 0; call < 2; call++) {
		explain_call("a queue drain", 1000,
		             "SELECT * FROM rollupd.queue_drain('eth_user_balances_wallet', 1000, '{0.1}')");
		ck_assert_msg(strstr(plans, "Tid Scan on queue_eth_user_balances_wallet") != NULL,
		              "the drain does not delete its claimed rows by ctid:\n%s", plans);
	}
	db_exec(conn, "SET client_min_messages = warning");
	char *left = db_value(conn, "SELECT count(*) FROM rollupd.queue");
	ck_assert_str_eq(left, "4000");
	free(left);
	PQfinish(conn);
	assert_balances_verified(db);
}
END_TEST

/* A refresh locks and writes each row with one xid: a row locked in a
 * subtransaction (the first pass's, which must let go of its session locks
 * on error) and updated in its parent gets a MultiXact for its xmax, which
 * cost a 1,000-key refresh a quarter of its time. Both passes (user 1001..1100
 * have no row yet: the second pass inserts them), directly and through
 * refresh_keys (rollupd's call, in a subtransaction of its own). */
START_TEST(test_a_refresh_creates_no_multixact)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_users_with_balances(conn, 1000);
	db_exec(conn, "SELECT rollupd.eth_user_balances_build()");
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet)"
	              " SELECT g, 't', true, '0xW' || g FROM generate_series(1001, 1100) g");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = balance + 1");
	db_exec(conn, "CHECKPOINT");
	char *before = db_value(conn, "SELECT next_multixact_id FROM pg_control_checkpoint()");
	char *written = db_value(conn, "SELECT written FROM rollupd.refresh_keys('eth_user_balances_user',"
	                               " ARRAY(SELECT g::text FROM generate_series(1, 1100, 2) g))");
	ck_assert_str_eq(written, "550");
	free(written);
	written = db_value(conn, "SELECT rollupd.eth_user_balances_refresh(ARRAY(SELECT g::bigint"
	                         " FROM generate_series(2, 1100, 2) g))");
	ck_assert_str_eq(written, "550");
	free(written);
	db_exec(conn, "CHECKPOINT");
	char *after = db_value(conn, "SELECT next_multixact_id FROM pg_control_checkpoint()");
	ck_assert_msg(strcmp(before, after) == 0, "refreshes created MultiXacts: next id %s, then %s", before, after);
	free(before);
	free(after);
	PQfinish(conn);
	assert_balances_verified(db);
}
END_TEST

/* The rollup's promises hold whatever the delivery: every test here runs
 * in notify mode and again in WAL mode (no trigger; keys from the slot). */
static void add_rollup_tests(TCase *tc)
{
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, test_balance_change_reaches_derived_table);
	tcase_add_test(tc, test_link_unlink_relink_changes_total);
	tcase_add_test(tc, test_unlink_last_wallet_drives_balance_to_zero);
	tcase_add_test(tc, test_users_wallet_change_is_picked_up);
	tcase_add_test(tc, test_one_wallet_backing_two_users_counts_for_both);
	tcase_add_test(tc, test_deleted_balance_row_leaves_the_total);
	tcase_add_test(tc, test_mixed_case_wallet_is_counted_once);
	tcase_add_test(tc, test_sol_and_retired_links_do_not_count);
	tcase_add_test(tc, test_user_rows_come_and_go_with_current_users);
	tcase_add_test(tc, test_bulk_statement_of_thousands_of_keys_is_fully_applied);
	tcase_add_test(tc, test_concurrent_refreshes_never_leave_an_older_total);
	tcase_add_test(tc, test_a_held_row_holds_up_only_its_own_key);
	tcase_add_test(tc, test_a_key_left_for_the_second_pass_is_not_taken_by_a_younger_refresh);
	tcase_add_test(tc, test_concurrent_mixed_workload_leaves_no_mismatch);
	tcase_add_test(tc, test_install_is_idempotent_and_uninstall_removes_everything);
}

Suite *balances_suite(void)
{
	Suite *s = suite_create("eth_user_balances");
	TCase *tc = tcase_create("balances");
	add_rollup_tests(tc);
	tcase_add_test(tc, test_notify_keys_splits_payloads_under_8000_bytes);
	tcase_add_test(tc, test_refresh_plans_are_index_probes_at_every_batch_size);
	tcase_add_test(tc, test_a_refresh_creates_no_multixact);
	suite_add_tcase(s, tc);
	TCase *wal = tcase_create("balances-wal");
	tcase_add_checked_fixture(wal, harness_use_wal, NULL);
	add_rollup_tests(wal);
	suite_add_tcase(s, wal);
	return s;
}
