/*
 * The daemon's promises about its own life: catch-up at start and after a
 * lost listener, restart after SIGKILL, reloads good and bad, prompt clean
 * stop, bad notifications, failing refreshes, exit codes, systemd protocol.
 * Each ends with the derived table verified against the definition.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static char db[64];
static struct daemon d;
static PGconn *conn;

/* 200 users, each with a balance, a tenth with a second linked wallet. */
static void seed(void)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet)"
	              " SELECT g, 't', true, '0xW' || g FROM generate_series(1, 200) g");
	db_exec(conn, "INSERT INTO eth_wallet_balances (wallet, balance)"
	              " SELECT '0xw' || g, g * 10 FROM generate_series(1, 400) g");
	db_exec(conn, "INSERT INTO associated_wallets (user_id, wallet, chain, is_current, is_delete)"
	              " SELECT g, '0xw' || (200 + g), 'eth', true, false FROM generate_series(10, 200, 10) g");
}

static const char *balance_sql(int user_id)
{
	static char sql[128];
	snprintf(sql, sizeof(sql), "SELECT balance FROM eth_user_balances WHERE user_id = %d", user_id);
	return sql;
}

START_TEST(test_changes_made_before_start_are_caught_up)
{
	seed();
	daemon_start(&d, db, "log = { level = \"debug\"; summary_interval_s = 1; };");
	/* user 10: 0xw10 (100) + linked 0xw210 (2100) */
	ck_assert(db_wait_value(conn, "2200", 5.0, balance_sql(10)));
	ck_assert_int_ge(daemon_log_count(&d, "reconcile done rollup=eth_user_balances fixed=200"), 1);
	/* The empty table was built in one statement, which said so when it began. */
	ck_assert_int_eq(daemon_log_count(&d, "server notice conn=worker-"), 1);
	ck_assert_int_eq(daemon_log_count(&d, "rollupd: eth_user_balances is empty: building it in one pass"), 1);
	/* The periodic summary line. */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = balance + 1 WHERE wallet IN ('0xw1', '0xw2')");
	ck_assert(db_wait_value(conn, "11", 5.0, balance_sql(1)));
	ck_assert(daemon_wait_log(&d, "summary state=ready keys_refreshed=", 2, 3.0));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_listener_terminated_reconnects_and_catches_up)
{
	seed();
	/* A slow reconnect leaves a window in which notifications are lost for sure. */
	char extra[1024];
	snprintf(extra, sizeof(extra),
	         "database = { conninfo = \"%s\"; reconnect_min_ms = 1500; reconnect_max_ms = 3000; };",
	         daemon_conninfo(db));
	daemon_start(&d, db, extra);

	char *pid = db_value(conn, "SELECT pid FROM pg_stat_activity WHERE application_name = 'rollupd listener'"
	                           " AND datname = current_database()");
	ck_assert_ptr_nonnull(pid);
	db_exec(conn, "SELECT pg_terminate_backend(%s)", pid);
	free(pid);
	ck_assert(daemon_wait_log(&d, "listener lost", 1, 5.0));
	/* Changed while nobody listens: only the catch-up reconcile can repair these. */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 777 WHERE wallet = '0xw5'");
	db_exec(conn, "UPDATE associated_wallets SET is_delete = true WHERE user_id = 20");
	ck_assert(daemon_wait_log(&d, "ready:", 2, 15.0));
	ck_assert(db_wait_value(conn, "777", 5.0, balance_sql(5)));
	ck_assert(db_wait_value(conn, "200", 5.0, balance_sql(20)));
	/* And notifications are trusted again. */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 1 WHERE wallet = '0xw6'");
	ck_assert(db_wait_value(conn, "1", 5.0, balance_sql(6)));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_sigkill_then_restart_catches_up)
{
	seed();
	daemon_start(&d, db, NULL);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = balance + 1");
	daemon_kill(&d);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = balance + 1000 WHERE wallet IN ('0xw7', '0xw210')");
	db_exec(conn, "INSERT INTO users (user_id, txhash, is_current, wallet) VALUES (300, 't', true, '0xw300')");
	daemon_start(&d, db, NULL);
	ck_assert(db_wait_value(conn, "1071", 5.0, balance_sql(7)));
	ck_assert(db_wait_value(conn, "3001", 5.0, balance_sql(300)));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_sighup_with_broken_file_keeps_old_config)
{
	seed();
	daemon_start(&d, db, NULL);
	FILE *f = fopen(d.conf, "w");
	fprintf(f, "database = { conninfo = \"%s\";\n  pool_size = \"many\"; };\n", daemon_conninfo(db));
	fclose(f);
	kill(d.pid, SIGHUP);
	char expected[700];
	snprintf(expected, sizeof(expected), "reload failed: %s:2: database.pool_size must be an integer", d.conf);
	ck_assert_msg(daemon_wait_log(&d, expected, 1, 5.0), "no reload error naming file and line in %s", d.log);
	ck_assert(daemon_wait_log(&d, "continuing with the same configuration", 1, 1.0));
	/* Still working on the old config. */
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 5 WHERE wallet = '0xw3'");
	ck_assert(db_wait_value(conn, "5", 5.0, balance_sql(3)));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

static const char WORKERS_SQL[] = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rollupd worker'"
                                  " AND datname = current_database()";
static const char LISTENER_SQL[] = "SELECT pid FROM pg_stat_activity WHERE application_name = 'rollupd listener'"
                                   " AND datname = current_database()";

START_TEST(test_sighup_with_valid_file_applies_it)
{
	seed();
	daemon_start(&d, db, NULL);
	ck_assert(db_wait_value(conn, "2", 5.0, WORKERS_SQL));
	char *listener_before = db_value(conn, "%s", LISTENER_SQL);

	/* Smaller pool, other batching, quieter log, and a different conninfo. */
	char extra[1024];
	snprintf(extra, sizeof(extra),
	         "database = { conninfo = \"%s connect_timeout=7\"; pool_size = 1; };\n"
	         "log = { level = \"info\"; };\nbatch = { max_keys = 7; window_ms = 1; };",
	         daemon_conninfo(db));
	daemon_configure(&d, db, extra);
	kill(d.pid, SIGHUP);
	ck_assert(daemon_wait_log(&d, "configuration reloaded", 1, 5.0));
	ck_assert(daemon_wait_log(&d, "pool_size=1 max_keys=7 window_ms=1 log_level=info conninfo=changed", 1, 1.0));
	ck_assert_msg(db_wait_value(conn, "1", 5.0, WORKERS_SQL), "the pool did not shrink to one worker");
	/* The changed conninfo reconnects the listener, which catches up again. */
	ck_assert(daemon_wait_log(&d, "ready:", 2, 10.0));
	char *listener_after = db_value(conn, "%s", LISTENER_SQL);
	ck_assert_ptr_nonnull(listener_after);
	ck_assert_str_ne(listener_before, listener_after);
	free(listener_before);
	free(listener_after);

	int debug_lines = daemon_log_count(&d, " debug ");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 9 WHERE wallet = '0xw4'");
	ck_assert(db_wait_value(conn, "9", 5.0, balance_sql(4)));
	ck_assert_int_eq(daemon_log_count(&d, " debug "), debug_lines); /* debug is off now */
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_sighup_rollup_list_starts_a_rollup)
{
	seed();
	/* Started with a list that names no registered rollup: nothing runs. */
	daemon_start(&d, db, "rollups = [ \"not_installed\" ];");
	ck_assert(daemon_wait_log(&d, "rollup named in the config is not registered", 1, 1.0));
	ck_assert_int_eq(daemon_log_count(&d, "listening channels=0 rollups=0"), 1);
	char *rows = db_value(conn, "SELECT count(*) FROM eth_user_balances");
	ck_assert_str_eq(rows, "0");
	free(rows);

	daemon_configure(&d, db, "rollups = [ \"eth_user_balances\" ];");
	kill(d.pid, SIGHUP);
	ck_assert(daemon_wait_log(&d, "listening channels=2 rollups=1", 1, 5.0));
	/* New to this daemon, so reconciled before its notifications are trusted. */
	ck_assert(daemon_wait_log(&d, "reconcile done rollup=eth_user_balances fixed=200", 1, 5.0));
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 11 WHERE wallet = '0xw1'");
	ck_assert(db_wait_value(conn, "11", 5.0, balance_sql(1)));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_sigterm_exits_zero_promptly)
{
	seed();
	daemon_start(&d, db, NULL);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = balance * 3");
	double elapsed;
	ck_assert_int_eq(daemon_stop(&d, 10, &elapsed), 0);
	ck_assert_msg(elapsed < 3.0, "stop took %.2fs", elapsed);
	ck_assert_int_eq(daemon_log_count(&d, "stopped cleanly"), 1);
	/* SIGINT stops it the same way. */
	daemon_start(&d, db, NULL);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 1 WHERE wallet = '0xw9'");
	kill(d.pid, SIGINT);
	ck_assert_int_eq(daemon_wait_exit(&d, 5.0), 0);
	ck_assert_int_eq(daemon_log_count(&d, "received SIGINT"), 1);
	ck_assert_int_eq(daemon_log_count(&d, "stopped cleanly"), 2);
	/* A change whose notification was still on its way at the stop is the next start's to reconcile. */
	daemon_start(&d, db, NULL);
	ck_assert(db_wait_value(conn, "1", 5.0, balance_sql(9)));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_malformed_payloads_are_logged_and_skipped)
{
	seed();
	daemon_start(&d, db, NULL);
	/* Corrupt two rows; only notifications can bring them back. */
	db_exec(conn, "UPDATE eth_user_balances SET balance = -1 WHERE user_id IN (11, 12)");
	db_exec(conn, "SELECT pg_notify('eth_user_balances_user', ' 99999999999999999999 ,abc, 12x,, 11')");
	db_exec(conn, "SELECT pg_notify('eth_user_balances_user', '')");
	/* A control character, and a key over the 1024-byte limit. */
	db_exec(conn, "SELECT pg_notify('eth_user_balances_wallet', 'bad\x01key,' || repeat('x', 2000) || ',0xW12')");
	ck_assert(db_wait_value(conn, "110", 5.0, balance_sql(11)));
	ck_assert(db_wait_value(conn, "120", 5.0, balance_sql(12)));
	ck_assert(daemon_wait_log(
	    &d, "malformed key skipped channel=eth_user_balances_user key=\"abc\" reason=\"not an integer\"", 1, 1.0));
	ck_assert_int_eq(daemon_log_count(&d, "reason=\"out of bigint range\""), 1);
	/* Past three bad keys in one payload, a count stands for the rest. */
	ck_assert_int_eq(daemon_log_count(&d, "malformed keys skipped channel=eth_user_balances_user count=4"), 1);
	ck_assert_int_eq(daemon_log_count(&d, "reason=\"empty key\""), 1);
	ck_assert_int_eq(daemon_log_count(&d, "reason=\"control character in key\""), 1);
	ck_assert_int_eq(daemon_log_count(&d, "reason=\"text key too long\""), 1);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	/* Counted, not only logged: 4 in the first payload, the empty one, and two text keys. */
	ck_assert_int_eq(daemon_log_count(&d, "totals channel=eth_user_balances_user keys_received="), 1);
	ck_assert_int_eq(daemon_log_count(&d, "keys_malformed=5 "), 1);
	ck_assert_int_eq(daemon_log_count(&d, "totals channel=eth_user_balances_wallet"), 1);
	ck_assert_int_eq(daemon_log_count(&d, "keys_malformed=2 "), 1);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_failing_refresh_is_retried_until_it_succeeds)
{
	seed();
	daemon_start(&d, db, NULL);
	/* Break the refresh: the table it reads disappears under another name.
	 * One key fails alone: it is isolated and retried with backoff. */
	db_exec(conn, "ALTER TABLE eth_wallet_balances RENAME TO ewb_hidden");
	db_exec(conn, "UPDATE ewb_hidden SET balance = 31337 WHERE wallet = '0xw8'");
	ck_assert(daemon_wait_log(&d, "poison keys isolated channel=eth_user_balances_wallet keys=1 key=0xw8 error=", 1,
	                          10.0));
	ck_assert(daemon_wait_log(&d, "poison retry keys=1 recovered=0 still_failing=1", 2, 5.0));
	db_exec(conn, "ALTER TABLE ewb_hidden RENAME TO eth_wallet_balances");
	ck_assert(db_wait_value(conn, "31337", 10.0, balance_sql(8)));
	ck_assert(db_wait_value(conn, "0", 1.0, "SELECT count(*) FROM rollupd.poison"));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_unavailable_database_at_start_exits_69)
{
	db_create(db, sizeof(db));
	char extra[700];
	snprintf(extra, sizeof(extra),
	         "database = { conninfo = \"host=%s port=1 user=postgres dbname=x\"; connect_retries = 3;"
	         " reconnect_min_ms = 10; reconnect_max_ms = 50; };",
	         getenv("PGHOST"));
	daemon_configure(&d, db, extra);
	daemon_spawn(&d, NULL);
	ck_assert_int_eq(daemon_wait_exit(&d, 10.0), 69);
	ck_assert_int_eq(daemon_log_count(&d, "database unavailable at start attempts=3"), 1);
	assert_balances_verified(db);
}
END_TEST

/* The retry_in_ms of the log line for failed attempt `attempt`, -1 if none. */
static long retry_delay_of_attempt(const char *log, int attempt)
{
	char needle[32];
	snprintf(needle, sizeof(needle), " attempt=%d\n", attempt);
	const char *hit = strstr(log, needle);
	if (hit == NULL)
		return -1;
	const char *line = hit;
	while (line > log && line[-1] != '\n')
		line--;
	const char *r = strstr(line, "retry_in_ms=");
	return r != NULL && r < hit ? strtol(r + strlen("retry_in_ms="), NULL, 10) : -1;
}

/* A database with no rollup installed: reading the catalog fails, which is
 * a failed attempt like a refused connection (the backoff grows), and after
 * database.connect_retries of them rollupd exits 69 saying to install a
 * rollup; a detached start's parent prints that reason. rollupd creates
 * nothing in the database and leaves no session behind. */
START_TEST(test_database_without_catalog_backs_off_then_exits_69)
{
	char empty[64], extra[700], out[4096], args[800];
	snprintf(empty, sizeof(empty), "nocatalog_%d", (int)getpid());
	PGconn *admin = db_open("postgres");
	db_exec(admin, "CREATE DATABASE %s", empty);
	snprintf(extra, sizeof(extra),
	         "database = { conninfo = \"%s\"; connect_retries = 4; reconnect_min_ms = 100;"
	         " reconnect_max_ms = 10000; };",
	         daemon_conninfo(empty));
	daemon_configure(&d, empty, extra);
	double started = now_seconds();
	daemon_spawn(&d, NULL);
	ck_assert_int_eq(daemon_wait_exit(&d, 20.0), 69);
	double took = now_seconds() - started;

	char *log = read_file(d.log);
	for (int a = 1; a <= 4; a++)
		ck_assert_msg(retry_delay_of_attempt(log, a) >= 0, "no failed attempt %d in:\n%s", a, log);
	/* Jittered doubling from 100 ms: attempt 1 waits 50-100 ms, attempt 3 200-400 ms. */
	ck_assert_msg(retry_delay_of_attempt(log, 3) > retry_delay_of_attempt(log, 1), "the backoff did not grow:\n%s",
	              log);
	ck_assert_msg(took >= 0.35, "4 attempts in %.2f s: no backoff between them", took);
	ck_assert_int_eq(daemon_log_count(&d, "attempt=5"), 0);
	ck_assert_int_eq(daemon_log_count(&d, "database unavailable at start attempts=4"), 1);
	ck_assert_msg(strstr(log, "no rollupd catalog in this database: install a rollup first") != NULL, "%s", log);
	free(log);

	/* Detached, the parent says why on stderr, with the daemon's code. */
	snprintf(args, sizeof(args), "-c '%s'", d.conf);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 69);
	ck_assert_msg(strstr(out, "rollupd: not started (exit 69)") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "install a rollup first") != NULL, "%s", out);

	PGconn *c = db_open(empty);
	char *schema = db_value(c, "SELECT count(*) FROM pg_namespace WHERE nspname = 'rollupd'");
	ck_assert_str_eq(schema, "0");
	free(schema);
	PQfinish(c);
	ck_assert(db_wait_value(admin, "0", 5.0,
	                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'rollupd%'"
	                        " AND datname LIKE 'nocatalog%'"));
	PQfinish(admin);
}
END_TEST

/* A config file of the test's own, in the harness's directory. */
static void write_test_config(char *path, size_t len, const char *name, const char *text)
{
	snprintf(path, len, "%s/%s-%d.conf", getenv("ROLLUPD_TEST_DIR"), name, (int)getpid());
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* A conninfo that libpq cannot parse is a bad configuration: -t says so,
 * with the file and line, and so does a start (78), before any connection. */
START_TEST(test_check_config_rejects_a_bad_conninfo)
{
	char out[2048], path[600], args[800];
	write_test_config(path, sizeof(path), "badconninfo",
	                  "log = { level = \"info\"; };\ndatabase = {\n  conninfo = \"dbnme=app\";\n};\n");
	snprintf(args, sizeof(args), "-t -c '%s'", path);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 78);
	ck_assert_msg(strstr(out, ":3: database.conninfo is not a valid libpq connection string:") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "dbnme") != NULL, "%s", out);
	snprintf(args, sizeof(args), "-f -c '%s'", path);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 78);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), "-t -d 'host=/tmp dbnme=x'"), 78);
	ck_assert_msg(strstr(out, "-d: not a valid libpq connection string") != NULL, "%s", out);
	/* The dotted form is not libconfig syntax: the error shows the group form. */
	write_test_config(path, sizeof(path), "badconninfo", "database.conninfo = \"dbname=app\";\n");
	snprintf(args, sizeof(args), "-t -c '%s'", path);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 78);
	ck_assert_msg(strstr(out, ":1: syntax error") != NULL && strstr(out, "database = { conninfo =") != NULL, "%s",
	              out);
}
END_TEST

START_TEST(test_bad_config_exits_78_and_usage_error_exits_64)
{
	char out[2048], path[600], args[800];
	write_test_config(path, sizeof(path), "bad",
	                  "database = { conninfo = \"dbname=x\"; };\nbatch = {\n  max_kees = 5;\n};\n");
	snprintf(args, sizeof(args), "-t -c '%s'", path);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 78);
	ck_assert_msg(strstr(out, ":3: unknown setting 'batch.max_kees'") != NULL, "%s", out);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), "-f -c /nonexistent.conf"), 78);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), "--frobnicate"), 64);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), "--list --verify x"), 64);

	write_test_config(path, sizeof(path), "bad", "database = { conninfo = \"dbname=x\"; };\n");
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	ck_assert(strstr(out, "is valid") != NULL);
	db_create(db, sizeof(db));
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_systemd_hears_ready_and_stopping)
{
	seed();
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)], env_var[160];
	snprintf(sock_path, sizeof(sock_path), "%s/notify-%d.sock", getenv("ROLLUPD_TEST_DIR"), (int)getpid());
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock_path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	snprintf(env_var, sizeof(env_var), "NOTIFY_SOCKET=%s", sock_path);
	/* A 400 ms watchdog: rollupd must ping every 200 ms from its loop. */
	char watchdog[] = "WATCHDOG_USEC=400000";
	char *envs[] = {env_var, watchdog, NULL};
	daemon_configure(&d, db, NULL);
	daemon_spawn(&d, envs);

	char seen[8192] = "";
	double deadline = now_seconds() + 15;
	bool stop_sent = false;
	while (now_seconds() < deadline && !strstr(seen, "STOPPING=1")) {
		char msg[512];
		ssize_t n = recv(fd, msg, sizeof(msg) - 1, 0);
		if (n > 0) {
			msg[n] = '\0';
			size_t used = strlen(seen);
			snprintf(seen + used, sizeof(seen) - used, "%s\n", msg);
		}
		if (!stop_sent && strstr(seen, "READY=1")) {
			/* READY only once listening and caught up. */
			ck_assert(daemon_log_count(&d, "ready: listening and caught up") == 1);
			/* Watchdog pings keep coming while it runs. */
			sleep_ms(1000);
			kill(d.pid, SIGTERM);
			stop_sent = true;
		}
	}
	ck_assert_msg(strstr(seen, "READY=1") && strstr(seen, "STOPPING=1"), "heard: %s", seen);
	ck_assert(strstr(seen, "STATUS=ready: rollups=1 channels=2 workers=2/2 pending_keys=0 keys_refreshed=") !=
	          NULL);
	int pings = 0;
	for (const char *p = seen; (p = strstr(p, "WATCHDOG=1")) != NULL; p++)
		pings++;
	ck_assert_msg(pings >= 4, "%d watchdog pings in: %s", pings, seen);
	ck_assert(daemon_log_count(&d, "systemd watchdog: pinging every 0.2 s") == 1);
	ck_assert_int_eq(daemon_wait_exit(&d, 10), 0);
	close(fd);
	unlink(sock_path);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_list_and_one_shot_reconcile)
{
	seed();
	char out[4096], args[800];
	snprintf(args, sizeof(args), "-d '%s' --list", daemon_conninfo(db));
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	ck_assert_msg(strstr(out, "eth_user_balances") && strstr(out, "eth_user_balances_user(bigint)") &&
	                  strstr(out, "eth_user_balances_wallet(text)"),
	              "%s", out);

	snprintf(args, sizeof(args), "-d '%s' --verify eth_user_balances", daemon_conninfo(db));
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 1);
	/* Nothing has built the table yet: every user with a balance mismatches. */
	ck_assert_msg(strstr(out, "mismatches=200") && strstr(out, "first mismatching keys: 1,2,3,"), "%s", out);

	snprintf(args, sizeof(args), "-d '%s' --reconcile eth_user_balances", daemon_conninfo(db));
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	ck_assert_msg(strstr(out, "fixed=200") != NULL, "%s", out);
	/* The empty table was built in one statement, and the tool said so first. */
	ck_assert_msg(strstr(out, "rollupd: eth_user_balances is empty: building it in one pass with "
	                          "rollupd.eth_user_balances_build() from its sources (about "),
	              "%s", out);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	ck_assert_msg(strstr(out, "fixed=0") != NULL, "%s", out);

	snprintf(args, sizeof(args), "-d '%s' --verify no_such_rollup", daemon_conninfo(db));
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 70);
	assert_balances_verified(db);
}
END_TEST

/* --status reads what rollupd is doing from the database alone: exit 0 when
 * all is well, 1 naming what needs attention. */
START_TEST(test_status_says_what_needs_attention)
{
	seed();
	char out[8192], args[800], json_args[800];
	snprintf(args, sizeof(args), "-d '%s' --status", daemon_conninfo(db));
	snprintf(json_args, sizeof(json_args), "-d '%s' --status --json", daemon_conninfo(db));

	/* Nothing runs yet. */
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 1);
	ck_assert_msg(strstr(out, "attention: no rollupd is running on this database"), "%s", out);

	/* Running and idle: ok; the listener is the active session. A channel
	 * moved to queue mode is picked up from the catalog's notification,
	 * without a SIGHUP. */
	daemon_start(&d, db, NULL);
	db_exec(conn, "SELECT rollupd.set_delivery('eth_user_balances_wallet', 'queue')");
	ck_assert(daemon_wait_log(&d, "the rollup catalog changed in the database: re-reading it", 1, 5.0));
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 7 WHERE wallet = '0xw5'");
	ck_assert(db_wait_value(conn, "7", 5.0, balance_sql(5)));
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	ck_assert_msg(strstr(out, "eth_user_balances_wallet queue") && strstr(out, "session active") &&
	                  strstr(out, "workers 2 connected") && strstr(out, "status: ok"),
	              "%s", out);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), json_args), 0);
	ck_assert_msg(
	    strstr(out, "{\"status\": \"ok\", \"problems\": []") &&
	        strstr(out, "\"channel\": \"eth_user_balances_wallet\", \"delivery\": \"queue\", \"queued\": 0") &&
	        strstr(out, "\"role\": \"active\"") && strstr(out, "\"walk_under_way\": false") &&
	        !strstr(out, "\"walk_under_way\": true"),
	    "%s", out);

	/* A poison key: named, with its error, and the exit says so. */
	db_exec(conn, "ALTER TABLE eth_user_balances ADD CONSTRAINT poison CHECK (user_id <> 7 OR balance < 1000)");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 5000 WHERE wallet = '0xw7'");
	ck_assert(db_wait_value(conn, "1", 5.0, "SELECT count(*) FROM rollupd.poison"));
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 1);
	ck_assert_msg(strstr(out, "attention: 1 poison keys on channel eth_user_balances_wallet") &&
	                  strstr(out, "poison eth_user_balances_wallet: 1 keys, latest 0xw7: ") &&
	                  strstr(out, "\"poison\""),
	              "%s", out);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), json_args), 1);
	ck_assert_msg(strstr(out, "\"status\": \"attention\"") && strstr(out, "\"poison_keys\": 1") &&
	                  strstr(out, "\"last_poison\": \"0xw7: "),
	              "%s", out);
	db_exec(conn, "ALTER TABLE eth_user_balances DROP CONSTRAINT poison");
	ck_assert(db_wait_value(conn, "0", 10.0, "SELECT count(*) FROM rollupd.poison"));

	/* Stopped with a key queued long ago: both are named. */
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 8 WHERE wallet = '0xw6'");
	db_exec(conn, "UPDATE rollupd.queue SET enqueued_at = now() - interval '5 minutes'");
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 1);
	ck_assert_msg(strstr(out, "attention: channel eth_user_balances_wallet: a key has waited 300") &&
	                  strstr(out, "attention: no rollupd is running"),
	              "%s", out);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), json_args), 1);
	ck_assert_msg(strstr(out, "\"queued\": 1, \"oldest_queued_s\": 300"), "%s", out);

	/* Started again, it drains the key: all is well. */
	daemon_start(&d, db, NULL);
	ck_assert(db_wait_value(conn, "8", 5.0, balance_sql(6)));
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
}
END_TEST

START_TEST(test_detached_start_waits_for_ready_and_reports_failure)
{
	seed();
	char pidfile[600], extra[700], out[2048], args[800];
	snprintf(pidfile, sizeof(pidfile), "%s/%s.pid", getenv("ROLLUPD_TEST_DIR"), db);
	snprintf(extra, sizeof(extra), "daemon = { pidfile = \"%s\"; };", pidfile);
	daemon_configure(&d, db, extra);
	snprintf(args, sizeof(args), "-c '%s'", d.conf);

	/* The parent returns only once the detached daemon is listening and caught up. */
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	char *balance = db_value(conn, "%s", balance_sql(10));
	ck_assert_str_eq(balance, "2200");
	free(balance);
	FILE *f = fopen(pidfile, "r");
	ck_assert_ptr_nonnull(f);
	int pid = 0;
	char pidline[32] = "";
	ck_assert_ptr_nonnull(fgets(pidline, sizeof(pidline), f));
	pid = (int)strtol(pidline, NULL, 10);
	ck_assert_int_gt(pid, 0);
	fclose(f);
	ck_assert_int_eq(kill(pid, 0), 0);

	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 3 WHERE wallet = '0xw2'");
	ck_assert(db_wait_value(conn, "3", 5.0, balance_sql(2)));
	kill(pid, SIGTERM);
	double deadline = now_seconds() + 5;
	while (access(pidfile, F_OK) == 0 && now_seconds() < deadline)
		sleep_ms(10);
	ck_assert_msg(access(pidfile, F_OK) != 0, "the pidfile outlived the daemon");

	/* A daemon that cannot start makes its parent fail with its code. */
	snprintf(extra, sizeof(extra),
	         "database = { conninfo = \"host=%s port=1 dbname=x\"; connect_retries = 2; reconnect_min_ms = 10; };",
	         getenv("PGHOST"));
	daemon_configure(&d, db, extra);
	ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 69);
	assert_balances_verified(db);
}
END_TEST

Suite *daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc = tcase_create("daemon");
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, test_changes_made_before_start_are_caught_up);
	tcase_add_test(tc, test_listener_terminated_reconnects_and_catches_up);
	tcase_add_test(tc, test_sigkill_then_restart_catches_up);
	tcase_add_test(tc, test_sighup_with_broken_file_keeps_old_config);
	tcase_add_test(tc, test_sighup_with_valid_file_applies_it);
	tcase_add_test(tc, test_sighup_rollup_list_starts_a_rollup);
	tcase_add_test(tc, test_sigterm_exits_zero_promptly);
	tcase_add_test(tc, test_malformed_payloads_are_logged_and_skipped);
	tcase_add_test(tc, test_failing_refresh_is_retried_until_it_succeeds);
	tcase_add_test(tc, test_unavailable_database_at_start_exits_69);
	tcase_add_test(tc, test_bad_config_exits_78_and_usage_error_exits_64);
	tcase_add_test(tc, test_database_without_catalog_backs_off_then_exits_69);
	tcase_add_test(tc, test_check_config_rejects_a_bad_conninfo);
	tcase_add_test(tc, test_systemd_hears_ready_and_stopping);
	tcase_add_test(tc, test_list_and_one_shot_reconcile);
	tcase_add_test(tc, test_status_says_what_needs_attention);
	tcase_add_test(tc, test_detached_start_waits_for_ready_and_reports_failure);
	suite_add_tcase(s, tc);
	return s;
}
