/*
 * /metrics, /healthz and /livez (metrics.listen), read with curl, and the
 * server's bounds: a client that never finishes its request, more clients
 * than the cap, and malformed requests must not disturb the daemon; queue
 * waits and depth, and pg_notification_queue_usage() from the listener's ping.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static char db[64];
static struct daemon d;
static PGconn *conn;
static int port;

/* curl's output (body, then "\nstatus=NNN"). */
static char *curl(const char *path, const char *extra)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "curl -s -m 3 %s -w '\\nstatus=%%{http_code}' 'http://127.0.0.1:%d%s' 2>&1",
	         extra ? extra : "", port, path);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	char *out = calloc(1, 65536);
	size_t got = fread(out, 1, 65535, p);
	out[got] = '\0';
	pclose(p);
	return out;
}

static void expect_curl(const char *path, const char *needle)
{
	char *out = curl(path, NULL);
	ck_assert_msg(strstr(out, needle) != NULL, "GET %s: expected \"%s\" in:\n%s", path, needle, out);
	free(out);
}

static int connect_raw(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void start_with(const char *delivery, const char *more)
{
	db_create(db, sizeof(db));
	conn = db_open(db);
	seed_users_with_balances(conn, 20);
	db_exec(conn,
	        "SELECT rollupd.set_delivery(c, '%s')"
	        " FROM unnest(ARRAY['eth_user_balances_user', 'eth_user_balances_wallet']) AS c",
	        delivery);
	/* A queue-mode rollup is not walked at start: build it here. */
	db_exec(conn, "SELECT rollupd.eth_user_balances_refresh(ARRAY(SELECT generate_series(1, 20)::bigint))");
	port = 20000 + (int)(getpid() % 20000);
	char extra[1024];
	snprintf(extra, sizeof(extra), "metrics = { listen = \"127.0.0.1:%d\"; };\n%s", port, more);
	daemon_start(&d, db, extra);
}

static void start(void)
{
	start_with("notify", "");
}

START_TEST(test_metrics_and_health_over_http)
{
	start();
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 100 WHERE wallet = '0xw3'");
	ck_assert(db_wait_value(conn, "100", 5.0, "SELECT balance FROM eth_user_balances WHERE user_id = 3"));
	expect_curl("/healthz", "ready\n\nstatus=200");
	expect_curl("/livez", "alive\n\nstatus=200");
	expect_curl("/metrics", "# TYPE rollupd_keys_refreshed_total counter");
	expect_curl("/metrics", "rollupd_keys_refreshed_total{channel=\"eth_user_balances_wallet\"} 1\n");
	expect_curl("/metrics", "rollupd_ready 1\n");
	expect_curl("/metrics", "rollupd_listener_connected 1\n");
	expect_curl("/metrics", "rollupd_workers{state=\"connected\"} 2\n");
	expect_curl("/metrics", "rollupd_refresh_duration_seconds_count ");
	expect_curl("/metrics", "rollupd_reconcile_last_success_timestamp_seconds{rollup=\"eth_user_balances\"} ");
	expect_curl("/metrics?x=1", "rollupd_batches_total{channel=\"eth_user_balances_wallet\",result=\"ok\"} 1\n");
	expect_curl("/nope", "status=404");
	char *post = curl("/metrics", "-X POST");
	ck_assert_msg(strstr(post, "status=405") != NULL, "%s", post);
	free(post);

	/* The listener goes: not ready (503) until it is back and caught up. */
	db_exec(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	              " WHERE datname = current_database() AND application_name = 'rollupd listener'");
	ck_assert(daemon_wait_log(&d, "listener lost", 1, 5.0));
	ck_assert(daemon_wait_log(&d, "ready: listening", 2, 10.0));
	expect_curl("/healthz", "status=200");
	expect_curl("/metrics", "rollupd_connections_lost_total{conn=\"listener\"} 1\n");

	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
	PQfinish(conn);
}
END_TEST

START_TEST(test_slow_and_malformed_http_clients_do_not_disturb_the_daemon)
{
	start();
	/* Garbage, answered and closed. */
	int fd = connect_raw();
	const char junk[] = "\x01\x02 hello\r\n\r\n";
	ck_assert_int_eq(write(fd, junk, sizeof(junk) - 1), (ssize_t)(sizeof(junk) - 1));
	char buf[256] = "";
	ck_assert_int_gt(read(fd, buf, sizeof(buf) - 1), 0);
	ck_assert_msg(strstr(buf, "HTTP/1.0 400") != NULL, "%s", buf);
	close(fd);
	/* Sixteen clients that never finish their request hold every slot... */
	int idle[16];
	for (int i = 0; i < 16; i++) {
		idle[i] = connect_raw();
		ck_assert_int_eq(write(idle[i], "GET /metr", 9), 9);
	}
	sleep_ms(200);
	/* ...so a seventeenth is turned away, while the daemon keeps working. */
	char *refused = curl("/livez", NULL);
	ck_assert_msg(strstr(refused, "status=000") != NULL, "%s", refused);
	free(refused);
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 7 WHERE wallet = '0xw4'");
	ck_assert(db_wait_value(conn, "7", 5.0, "SELECT balance FROM eth_user_balances WHERE user_id = 4"));
	/* After the 5 s request timeout the slots are free again. */
	sleep_ms(5500);
	expect_curl("/livez", "status=200");
	for (int i = 0; i < 16; i++)
		close(idle[i]);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
	PQfinish(conn);
}
END_TEST

START_TEST(test_metrics_address_in_use_fails_the_start)
{
	start();
	/* A second rollupd on the same address cannot serve: it does not start. */
	struct daemon d2 = {0};
	char config[1024];
	snprintf(config, sizeof(config),
	         "database = { conninfo = \"%s\"; };\nmetrics = { listen = \"127.0.0.1:%d\"; };\nlog = { level = "
	         "\"info\"; };",
	         daemon_conninfo(db), port);
	daemon_write_config(&d2, db, "2", config);
	daemon_spawn(&d2, NULL);
	ck_assert_int_eq(daemon_wait_exit(&d2, 10), 69);
	ck_assert_msg(daemon_log_count(&d2, "cannot serve metrics error=\"metrics.listen \"127.0.0.1:") == 1, "log %s",
	              d2.log);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	PQfinish(conn);
}
END_TEST

START_TEST(test_queue_waits_depth_and_notification_queue_usage)
{
	start_with("queue",
	           "queue = { stats_interval_s = 1; };\nlog = { level = \"debug\"; summary_interval_s = 1; };");
	db_exec(conn, "UPDATE eth_wallet_balances SET balance = 100 WHERE wallet IN ('0xw3', '0xw4')");
	ck_assert(db_wait_value(conn, "100", 5.0, "SELECT balance FROM eth_user_balances WHERE user_id = 4"));
	ck_assert(daemon_wait_log(&d, "queue channel=eth_user_balances_wallet depth=0", 1, 3.0));
	expect_curl("/metrics", "rollupd_queue_wait_seconds_count 2\n");
	expect_curl("/metrics", "rollupd_queue_wait_seconds_bucket{le=\"+Inf\"} 2\n");
	expect_curl("/metrics", "rollupd_queue_depth{channel=\"eth_user_balances_wallet\"} 0\n");
	expect_curl("/metrics", "rollupd_keys_refreshed_total{channel=\"eth_user_balances_wallet\"} 2\n");
	ck_assert(daemon_wait_log(&d, "queue_wait_p99_s<=", 1, 3.0));
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
	PQfinish(conn);
}
END_TEST

START_TEST(test_notification_queue_usage_comes_with_the_ping)
{
	start_with("notify", "");
	/* Restart with a fast ping: the database section replaces the harness's. */
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	char extra[1024];
	snprintf(
	    extra, sizeof(extra),
	    "metrics = { listen = \"127.0.0.1:%d\"; };\ndatabase = { conninfo = \"%s\"; ping_interval_ms = 100; };",
	    port, daemon_conninfo(db));
	daemon_start(&d, db, extra);
	sleep_ms(400);
	expect_curl("/metrics", "rollupd_notification_queue_usage 0\n");
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	PQfinish(conn);
}
END_TEST

Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	tcase_add_test(tc, test_metrics_and_health_over_http);
	tcase_add_test(tc, test_slow_and_malformed_http_clients_do_not_disturb_the_daemon);
	tcase_add_test(tc, test_metrics_address_in_use_fails_the_start);
	tcase_add_test(tc, test_queue_waits_depth_and_notification_queue_usage);
	tcase_add_test(tc, test_notification_queue_usage_comes_with_the_ping);
	suite_add_tcase(s, tc);
	return s;
}
