/*
 * Active/standby (README, "Active/standby"): two rollupd processes on one
 * database with standby.enabled. One holds the lock and works, the other
 * listens on nothing and takes over when the first dies or loses its
 * connection; under the mixed workload nothing is lost either way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

static char db[64];
static struct daemon a, b;
static PGconn *conn;

#define STANDBY "standby = { enabled = true; poll_ms = 200; };"

/* Who holds the standby lock: the application_name of its session(s). */
static const char LOCK_HOLDERS[] =
    "SELECT string_agg(a.application_name, ',') FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
    " WHERE l.locktype = 'advisory' AND l.classid = 1919904876 AND l.objid = 1 AND l.granted";

static void start_pair(void)
{
	db_create_from("rollupd_all_template", db, sizeof(db));
	conn = db_open(db);
	seed_workload(conn);
	daemon_start(&a, db, STANDBY);
	ck_assert(daemon_wait_log(&a, "active: holding the standby lock lock_id=1", 1, 1.0));
	char config[2048];
	snprintf(config, sizeof(config),
	         "database = { conninfo = \"%s\"; pool_size = 2; reconnect_min_ms = 50; reconnect_max_ms = 400;"
	         " connect_retries = 0; };\n"
	         "batch = { max_keys = 500; window_ms = 5; retry_min_ms = 50; retry_max_ms = 400; };\n"
	         "log = { level = \"debug\"; };\n%s",
	         daemon_conninfo(db), STANDBY);
	daemon_second(&b, db, "standby", config);
	ck_assert(daemon_wait_log(&b, "standby: another rollupd holds the lock lock_id=1", 1, 1.0));
	ck_assert(daemon_wait_log(&b, "ready: standby", 1, 1.0));
	ck_assert_int_eq(daemon_log_count(&b, "listening channels="), 0);
	char *holders = db_value(conn, "%s", LOCK_HOLDERS);
	ck_assert_str_eq(holders, "rollupd listener");
	free(holders);
}

static void verify_and_stop(struct daemon *survivor)
{
	ck_assert_msg(wait_verify_clean(db, "eth_user_balances", 30.0), "not exact (log %s)", survivor->log);
	ck_assert_msg(wait_verify_clean(db, "first_delegation", 30.0), "not exact (log %s)", survivor->log);
	ck_assert_int_eq(daemon_stop(&b, 10, NULL), 0);
	if (a.pid > 0)
		ck_assert_int_eq(daemon_stop(&a, 10, NULL), 0);
	assert_balances_verified(db);
	assert_verify_clean(db, "first_delegation");
	PQfinish(conn);
}

START_TEST(test_standby_takes_over_when_the_active_dies)
{
	start_pair();
	pid_t w = workload_start(db, 4, 5, WORKLOAD_MIX);
	sleep_ms(1500);
	double t0 = now_seconds();
	daemon_kill(&a);
	ck_assert(daemon_wait_log(&b, "active: the standby lock was released, taking over", 1, 10.0));
	double locked = now_seconds() - t0;
	ck_assert(daemon_wait_log(&b, "ready: listening and caught up", 1, 20.0));
	double ready = now_seconds() - t0;
	fprintf(stderr, "standby takeover after SIGKILL: lock %.2f s, listening and caught up %.2f s\n", locked, ready);
	/* The stated bound: standby.poll_ms plus the catch-up walk. */
	ck_assert(locked < 2.0);
	ck_assert_int_eq(workload_wait(w), 0);
	verify_and_stop(&b);
}
END_TEST

START_TEST(test_active_losing_its_connection_hands_over_and_becomes_standby)
{
	start_pair();
	pid_t w = workload_start(db, 4, 5, WORKLOAD_MIX);
	sleep_ms(1000);
	/* The active's listener session ends (its lock with it); whichever of
	 * the two gets the lock next is active, the other stays standby. */
	db_exec(conn, "SELECT pg_terminate_backend(l.pid) FROM pg_locks l"
	              " WHERE l.locktype = 'advisory' AND l.classid = 1919904876 AND l.objid = 1 AND l.granted");
	ck_assert(daemon_wait_log(&a, "listener lost", 1, 5.0));
	ck_assert(db_wait_value(conn, "rollupd listener", 10.0, LOCK_HOLDERS));
	ck_assert_int_eq(workload_wait(w), 0);
	/* Exactly one of them took over (or kept) the work. */
	bool a_active = daemon_log_count(&a, "standby: another rollupd holds the lock") == 0;
	bool b_active = daemon_log_count(&b, "active: the standby lock was released") == 1;
	ck_assert_msg(a_active != b_active, "a_active=%d b_active=%d (logs %s, %s)", a_active, b_active, a.log, b.log);
	verify_and_stop(a_active ? &a : &b);
}
END_TEST

Suite *standby_suite(void)
{
	Suite *s = suite_create("standby");
	TCase *tc = tcase_create("standby");
	tcase_add_test(tc, test_standby_takes_over_when_the_active_dies);
	tcase_add_test(tc, test_active_losing_its_connection_hands_over_and_becomes_standby);
	suite_add_tcase(s, tc);
	return s;
}
