/*
 * Prometheus, for real: what rollupd serves on /metrics passes `promtool
 * check metrics` (the exposition format and Prometheus's naming lints), from
 * a daemon with a notify-mode and a queue-mode channel and from one in WAL
 * mode; and Prometheus itself (Debian's, on loopback, in the harness's temp
 * dir, always killed) scrapes both every second and answers PromQL about
 * them under a small load.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static pid_t prometheus_pid;

/* A directory tests/run-integration names in the environment. */
static const char *env_dir(const char *name)
{
	const char *dir = getenv(name);
	ck_assert_msg(dir != NULL, "%s is not set (run through tests/run-integration)", name);
	return dir;
}

/* The harness's temp dir, where every file of a test goes. */
static const char *test_dir(void)
{
	return env_dir("ROLLUPD_TEST_DIR");
}

/* A loopback port nobody listens on now: bound to 0, read back, let go. */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* A shell command's stdout+stderr (malloc'd) and exit status. */
static char *run(const char *cmd, int *status)
{
	char full[4096];
	snprintf(full, sizeof(full), "%s 2>&1", cmd);
	FILE *p = popen(full, "r");
	ck_assert_ptr_nonnull(p);
	size_t cap = 1 << 16, got = 0, n;
	char *out = malloc(cap);
	ck_assert_ptr_nonnull(out);
	while ((n = fread(out + got, 1, cap - got - 1, p)) > 0) {
		got += n;
		if (got + 1 == cap) {
			char *more = realloc(out, cap *= 2);
			ck_assert_ptr_nonnull(more);
			out = more;
		}
	}
	out[got] = '\0';
	int st = pclose(p);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return out;
}

static char *get(int port, const char *path, int *status)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "curl -s -f -m 3 'http://127.0.0.1:%d%s'", port, path);
	return run(cmd, status);
}

/* Poll /metrics on `port` until it holds `needle`. */
static bool wait_metrics(int port, const char *needle, double timeout_s)
{
	double end = now_seconds() + timeout_s;
	for (;;) {
		int st;
		char *body = get(port, "/metrics", &st);
		bool found = st == 0 && strstr(body, needle) != NULL;
		free(body);
		if (found)
			return true;
		if (now_seconds() > end)
			return false;
		sleep_ms(100);
	}
}

/* Where expect_promtool_clean() keeps the body it checked. */
static void metrics_path(char *path, size_t len, const char *name)
{
	snprintf(path, len, "%s/%s-metrics.txt", test_dir(), name);
}

/* /metrics on `port` through `promtool check metrics`: it must exit 0 and
 * print nothing (a lint problem is a line like "x counter metrics should have
 * "_total" suffix"). `families` must all be in the body: what was checked. */
static void expect_promtool_clean(int port, const char *name, const char *const *families)
{
	char path[600], cmd[1400];
	int st;
	char *body = get(port, "/metrics", &st);
	ck_assert_msg(st == 0, "GET /metrics on %d: curl exit %d: %s", port, st, body);
	for (size_t i = 0; families[i] != NULL; i++)
		ck_assert_msg(strstr(body, families[i]) != NULL, "%s: no \"%s\" in /metrics:\n%s", name, families[i],
		              body);
	metrics_path(path, sizeof(path), name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(body, f);
	fclose(f);
	free(body);
	snprintf(cmd, sizeof(cmd), "promtool check metrics <'%s'", path);
	char *out = run(cmd, &st);
	ck_assert_msg(st == 0 && out[0] == '\0', "%s: promtool check metrics exit %d on %s:\n%s", name, st, path, out);
	free(out);
}

static void kill_prometheus(void)
{
	if (prometheus_pid > 0)
		kill(prometheus_pid, SIGKILL);
}

/* Prometheus on 127.0.0.1:`port` scraping `targets` ("'127.0.0.1:1', ...")
 * every second and evaluating contrib/prometheus/rollupd-alerts.yml, with
 * its config, data and log in the harness's directory.
 * It dies with this process however the test ends (a failed assertion
 * _exits, so atexit alone would not do). */
static void prometheus_start(const char *name, int port, const char *targets)
{
	const char *dir = test_dir();
	char conf[600], data[600], log[600], flag_conf[700], flag_data[700], flag_listen[64];
	snprintf(conf, sizeof(conf), "%s/%s-prometheus.yml", dir, name);
	snprintf(data, sizeof(data), "%s/%s-prometheus-data", dir, name);
	snprintf(log, sizeof(log), "%s/%s-prometheus.log", dir, name);
	FILE *f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
	        "rule_files:\n  - '%s/../contrib/prometheus/rollupd-alerts.yml'\n"
	        "scrape_configs:\n  - job_name: rollupd\n    static_configs:\n      - targets: [%s]\n",
	        env_dir("ROLLUPD_SQL"), targets);
	fclose(f);
	ck_assert_int_eq(mkdir(data, 0700), 0);
	snprintf(flag_conf, sizeof(flag_conf), "--config.file=%s", conf);
	snprintf(flag_data, sizeof(flag_data), "--storage.tsdb.path=%s", data);
	snprintf(flag_listen, sizeof(flag_listen), "--web.listen-address=127.0.0.1:%d", port);

	atexit(kill_prometheus);
	fflush(NULL);
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0 || chdir(dir) != 0)
			_exit(127);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execlp("prometheus", "prometheus", flag_conf, flag_data, flag_listen,
		       "--storage.tsdb.retention.time=1h", (char *)NULL);
		_exit(127);
	}
	prometheus_pid = pid;

	double end = now_seconds() + 20;
	for (;;) {
		int st;
		char *out = get(port, "/-/ready", &st);
		free(out);
		if (st == 0)
			break;
		ck_assert_msg(waitpid(pid, NULL, WNOHANG) == 0, "prometheus exited (log %s)", log);
		ck_assert_msg(now_seconds() < end, "prometheus not ready on port %d within 20 s (log %s)", port, log);
		sleep_ms(200);
	}
}

static void prometheus_stop(void)
{
	kill(prometheus_pid, SIGTERM);
	double end = now_seconds() + 10;
	while (waitpid(prometheus_pid, NULL, WNOHANG) == 0) {
		if (now_seconds() > end) {
			kill(prometheus_pid, SIGKILL);
			waitpid(prometheus_pid, NULL, 0);
			break;
		}
		sleep_ms(50);
	}
	prometheus_pid = 0;
}

/* An instant query's JSON answer. */
static char *query(int port, const char *promql)
{
	char cmd[1400];
	int st;
	snprintf(cmd, sizeof(cmd), "curl -s -f -m 5 -G --data-urlencode 'query=%s' 'http://127.0.0.1:%d/api/v1/query'",
	         promql, port);
	char *out = run(cmd, &st);
	ck_assert_msg(st == 0, "query %s: curl exit %d: %s", promql, st, out);
	ck_assert_msg(strstr(out, "\"status\":\"success\"") != NULL && strstr(out, "\"resultType\":\"vector\"") != NULL,
	              "query %s: %s", promql, out);
	return out;
}

static int count(const char *haystack, const char *needle)
{
	int n = 0;
	for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* Does the answer hold a sample of `instance` with a value? */
static bool has_sample(const char *json, const char *instance)
{
	char needle[128];
	snprintf(needle, sizeof(needle), "\"instance\":\"%s\"", instance);
	const char *at = strstr(json, needle);
	return at != NULL && strstr(at, "\"value\":[") != NULL;
}

struct rollupd {
	char db[64];
	struct daemon d;
	PGconn *conn;
	int port;
	char instance[32];
};

/* 50 users with balances; `wal`: from the WAL-mode template, else with the
 * wallet channel in queue mode and the user channel in notify mode. */
static void rollupd_start(struct rollupd *r, bool wal)
{
	if (wal)
		harness_use_wal();
	db_create(r->db, sizeof(r->db));
	r->conn = db_open(r->db);
	seed_users_with_balances(r->conn, 50);
	if (!wal) {
		db_exec(r->conn, "SELECT rollupd.set_delivery('eth_user_balances_wallet', 'queue')");
		db_exec(r->conn,
		        "SELECT rollupd.eth_user_balances_refresh(ARRAY(SELECT generate_series(1, 50)::bigint))");
	}
	r->port = free_port();
	snprintf(r->instance, sizeof(r->instance), "127.0.0.1:%d", r->port);
	char extra[512];
	snprintf(extra, sizeof(extra),
	         "metrics = { listen = \"%s\"; };\nqueue = { stats_interval_s = 1; };\n"
	         "log = { level = \"info\"; summary_interval_s = 1; };",
	         r->instance);
	daemon_start(&r->d, r->db, extra);
}

static const char BALANCES_UP[] = "UPDATE eth_wallet_balances SET balance = balance + 1"
                                  " WHERE wallet IN ('0xw1', '0xw2', '0xw3')";

/* A few balance changes on both databases, and on the notify-mode channel. */
static void touch(struct rollupd *a, struct rollupd *b)
{
	db_exec(a->conn, "%s", BALANCES_UP);
	/* The same wallet in another case: a key for the user channel, the same balance. */
	db_exec(a->conn, "UPDATE users SET wallet = CASE WHEN wallet LIKE '0xW%%' THEN '0xw' ELSE '0xW' END || user_id"
	                 " WHERE user_id IN (4, 5)");
	db_exec(b->conn, "%s", BALANCES_UP);
}

static void stop_and_verify(struct rollupd *r)
{
	ck_assert_msg(wait_converged(r->db, 10.0), "%s did not converge (log %s)", r->db, r->d.log);
	ck_assert_int_eq(daemon_stop(&r->d, 10, NULL), 0);
	assert_balances_verified(r->db);
	PQfinish(r->conn);
}

START_TEST(test_promtool_checks_metrics_and_prometheus_scrapes_rollupd)
{
	struct rollupd q = {0}, w = {0};
	rollupd_start(&q, false);
	rollupd_start(&w, true);

	/* Refreshes through every path, then the queue's and the WAL's figures. */
	touch(&q, &w);
	ck_assert(db_wait_value(q.conn, "11", 10.0, "SELECT balance FROM eth_user_balances WHERE user_id = 1"));
	ck_assert(db_wait_value(w.conn, "11", 10.0, "SELECT balance FROM eth_user_balances WHERE user_id = 1"));
	ck_assert_msg(wait_metrics(q.port, "rollupd_queue_depth{channel=\"eth_user_balances_wallet\"} 0\n", 10.0),
	              "no queue depth (log %s)", q.d.log);
	ck_assert_msg(wait_metrics(w.port, "rollupd_wal_streaming 1\n", 10.0), "not streaming (log %s)", w.d.log);

	static const char *const queue_families[] = {
	    "rollupd_keys_refreshed_total{channel=\"eth_user_balances_user\"} ",
	    "rollupd_keys_refreshed_total{channel=\"eth_user_balances_wallet\"} ",
	    "rollupd_queue_oldest_key_seconds{channel=\"eth_user_balances_wallet\"} ",
	    "rollupd_queue_wait_seconds_bucket{le=\"+Inf\"} ",
	    "rollupd_refresh_duration_seconds_count ",
	    "rollupd_reconcile_last_success_timestamp_seconds{rollup=\"eth_user_balances\"} ",
	    NULL};
	static const char *const wal_families[] = {"rollupd_wal_lag_bytes ", "rollupd_wal_oldest_unconfirmed_seconds ",
	                                           "rollupd_wal_transactions_total ",
	                                           "rollupd_wal_keys_unavailable_total ", NULL};
	expect_promtool_clean(q.port, q.db, queue_families);
	expect_promtool_clean(w.port, w.db, wal_families);
	/* Between them, every family rollupd renders, with its type: the same set
	 * tests/check-prometheus reads from the source to check the dashboard's
	 * and the alert rules' metric names against. */
	char qpath[600], wpath[600], cmd[4096];
	metrics_path(qpath, sizeof(qpath), q.db);
	metrics_path(wpath, sizeof(wpath), w.db);
	snprintf(cmd, sizeof(cmd),
	         "sed -n 's/^# TYPE //p' '%s' '%s' | sort -u >'%s.types' &&"
	         " '%s/../tests/check-prometheus' --families | diff -u '%s.types' -",
	         qpath, wpath, qpath, env_dir("ROLLUPD_SQL"), qpath);
	int st;
	char *diff = run(cmd, &st);
	ck_assert_msg(st == 0, "/metrics families (-) and tests/check-prometheus --families (+) differ:\n%s", diff);
	free(diff);

	/* Prometheus scrapes both; under a small load it sees them ready and refreshing. */
	int port = free_port();
	char targets[128];
	snprintf(targets, sizeof(targets), "'%s', '%s'", q.instance, w.instance);
	prometheus_start(q.db, port, targets);
	double t0 = now_seconds();
	bool ready = false, refreshing = false;
	char *ready_json = NULL, *rate_json = NULL;
	while (!(ready && refreshing) && now_seconds() < t0 + 30) {
		touch(&q, &w);
		free(ready_json);
		free(rate_json);
		ready_json = query(port, "rollupd_ready == 1");
		rate_json = query(port, "sum by (instance) (rate(rollupd_keys_refreshed_total[15s])) > 0");
		ready = has_sample(ready_json, q.instance) && has_sample(ready_json, w.instance);
		refreshing = has_sample(rate_json, q.instance) && has_sample(rate_json, w.instance);
		sleep_ms(250);
	}
	ck_assert_msg(ready, "rollupd_ready == 1 for both after %.0f s: %s", now_seconds() - t0, ready_json);
	ck_assert_msg(refreshing, "refresh rate > 0 for both after %.0f s: %s", now_seconds() - t0, rate_json);
	printf("prometheus: both ready and refreshing %.1f s after its start\n  %s\n  %s\n", now_seconds() - t0,
	       ready_json, rate_json);
	free(ready_json);
	free(rate_json);
	/* The queue channel by name, and the WAL stream's gauge. */
	char *json = query(port, "rate(rollupd_keys_refreshed_total{channel=\"eth_user_balances_wallet\"}[15s]) > 0");
	ck_assert_msg(has_sample(json, q.instance) && strstr(json, "\"channel\":\"eth_user_balances_wallet\""), "%s",
	              json);
	free(json);
	json = query(port, "rollupd_wal_streaming == 1");
	ck_assert_msg(has_sample(json, w.instance), "%s", json);
	free(json);
	/* The alert rules evaluate on these series without an error, and none fires. */
	char rules_path[600];
	snprintf(rules_path, sizeof(rules_path), "%s/../contrib/prometheus/rollupd-alerts.yml", env_dir("ROLLUPD_SQL"));
	char *rules = read_file(rules_path);
	int expected = count(rules, "- alert:"), alerting = 0, ok = 0;
	free(rules);
	double end = now_seconds() + 10;
	json = NULL;
	do {
		free(json);
		json = get(port, "/api/v1/rules?type=alert", &st);
		alerting = count(json, "\"type\":\"alerting\"");
		ok = count(json, "\"health\":\"ok\"");
		if (alerting > 0 && ok == alerting)
			break;
		sleep_ms(250);
	} while (now_seconds() < end);
	ck_assert_msg(expected > 0 && alerting == expected && ok == alerting, "%d alerting rules of %d, %d healthy: %s",
	              alerting, expected, ok, json);
	free(json);
	json = query(port, "ALERTS{alertstate=\"firing\"}");
	ck_assert_msg(strstr(json, "\"result\":[]") != NULL, "alerts firing: %s", json);
	free(json);
	prometheus_stop();

	stop_and_verify(&q);
	stop_and_verify(&w);
}
END_TEST

Suite *prometheus_suite(void)
{
	Suite *s = suite_create("prometheus");
	TCase *tc = tcase_create("prometheus");
	tcase_add_test(tc, test_promtool_checks_metrics_and_prometheus_scrapes_rollupd);
	suite_add_tcase(s, tc);
	return s;
}
