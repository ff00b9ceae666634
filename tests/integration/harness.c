/*
 * Integration harness: see harness.h.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_DAEMONS 8

static pid_t started[MAX_DAEMONS];
static int n_started;
static bool atexit_set;
static bool wal_mode;

void harness_use_wal(void)
{
	wal_mode = true;
}

bool harness_wal(void)
{
	return wal_mode;
}

double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	ck_assert_msg(v != NULL, "environment variable %s is not set (run through tests/run-integration)", name);
	return v;
}

const char *db_conninfo(const char *db)
{
	static char buf[600];
	snprintf(buf, sizeof(buf), "host=%s port=%s user=%s dbname=%s", env("PGHOST"), env("PGPORT"), env("PGUSER"),
	         db);
	return buf;
}

const char *daemon_conninfo(const char *db)
{
	static char buf[600];
	snprintf(buf, sizeof(buf), "host=%s port=%s user=%s dbname=%s", env("PGHOST"), env("PGPORT"), DAEMON_ROLE, db);
	return buf;
}

PGconn *db_open(const char *db)
{
	PGconn *c = PQconnectdb(db_conninfo(db));
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect to %s: %s", db, PQerrorMessage(c));
	PGresult *r = PQexec(c, "SET client_min_messages = warning");
	PQclear(r);
	return c;
}

static void vexec(PGconn *c, const char *fmt, va_list ap)
{
	char sql[8192];
	vsnprintf(sql, sizeof(sql), fmt, ap);
	PGresult *r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQresultErrorMessage(r));
	PQclear(r);
}

void db_exec(PGconn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vexec(c, fmt, ap);
	va_end(ap);
}

static char *value_of(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
	char *v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strdup(PQgetvalue(r, 0, 0)) : NULL;
	PQclear(r);
	return v;
}

char *db_value(PGconn *c, const char *fmt, ...)
{
	char sql[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return value_of(c, sql);
}

bool db_wait_value(PGconn *c, const char *expected, double timeout_s, const char *sql)
{
	double deadline = now_seconds() + timeout_s;
	for (;;) {
		char *v = value_of(c, sql);
		bool match = (v == NULL && expected == NULL) || (v && expected && strcmp(v, expected) == 0);
		free(v);
		if (match)
			return true;
		if (now_seconds() > deadline)
			return false;
		sleep_ms(20);
	}
}

void db_create_from(const char *template_db, char *name, size_t len)
{
	static int counter;
	snprintf(name, len, "t_%d_%d", (int)getpid(), ++counter);
	PGconn *c = db_open("postgres");
	/* In WAL mode, the same template with the rollups installed -v delivery=wal. */
	db_exec(c, "CREATE DATABASE %s TEMPLATE %s%s", name, template_db,
	        wal_mode && strstr(template_db, "_wal") == NULL ? "_wal" : "");
	PQfinish(c);
}

void pg_restart(const char *mode)
{
	char cmd[2048];
	const char *dir = env("PGHARNESS_DIR");
	snprintf(cmd, sizeof(cmd),
	         "%s'%s/pg_ctl' -D '%s/data' -l '%s/server.log' -m %s -w -t 60 restart >/dev/null 2>&1",
	         geteuid() == 0 ? "cd / && runuser -u postgres -- " : "", env("PGHARNESS_BINDIR"), dir, dir, mode);
	ck_assert_msg(system(cmd) == 0, "pg_ctl restart failed: %s", cmd);
}

void pg_restart_immediate(void)
{
	pg_restart("immediate");
}

void db_create(char *name, size_t len)
{
	db_create_from("rollupd_template", name, len);
}

static void kill_started(void)
{
	for (int i = 0; i < n_started; i++)
		if (started[i] > 0)
			kill(started[i], SIGKILL);
}

static void forget(pid_t pid)
{
	for (int i = 0; i < n_started; i++)
		if (started[i] == pid)
			started[i] = 0;
}

void daemon_configure(struct daemon *d, const char *db, const char *extra)
{
	const char *dir = env("ROLLUPD_TEST_DIR");
	char sections[2048] = "";
	size_t off = 0;
	extra = extra ? extra : "";

	snprintf(d->db, sizeof(d->db), "%s", db);
	snprintf(d->conf, sizeof(d->conf), "%s/%s.conf", dir, db);
	snprintf(d->log, sizeof(d->log), "%s/%s.log", dir, db);
	if (!strstr(extra, "database"))
		off += (size_t)snprintf(sections + off, sizeof(sections) - off,
		                        "database = { conninfo = \"%s\"; pool_size = 2; connect_timeout_ms = 2000;\n"
		                        "  reconnect_min_ms = 50; reconnect_max_ms = 400; connect_retries = 0; };\n",
		                        daemon_conninfo(db));
	if (!strstr(extra, "batch"))
		off += (size_t)snprintf(
		    sections + off, sizeof(sections) - off,
		    "batch = { max_keys = 500; window_ms = 5; retry_min_ms = 50; retry_max_ms = 400; };\n");
	if (!strstr(extra, "reconcile"))
		off += (size_t)snprintf(sections + off, sizeof(sections) - off, "reconcile = { chunk_keys = 100; };\n");
	if (!strstr(extra, "log"))
		off += (size_t)snprintf(sections + off, sizeof(sections) - off, "log = { level = \"debug\"; };\n");
	if (!strstr(extra, "daemon"))
		off += (size_t)snprintf(sections + off, sizeof(sections) - off,
		                        "daemon = { shutdown_timeout_ms = 5000; };\n");
	/* Slots are the cluster's, one per test database. */
	if (!strstr(extra, "wal ="))
		snprintf(sections + off, sizeof(sections) - off,
		         "wal = { slot = \"%s\"; status_interval_ms = 100; stats_interval_s = 1; };\n", db);

	FILE *f = fopen(d->conf, "w");
	ck_assert_msg(f != NULL, "cannot write %s", d->conf);
	fprintf(f, "%s%s\n", sections, extra);
	fclose(f);
}

void daemon_spawn(struct daemon *d, char *const envp_extra[])
{
	if (!atexit_set) {
		atexit(kill_started);
		atexit_set = true;
	}
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0)
			_exit(127);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		for (int i = 0; envp_extra && envp_extra[i]; i++)
			putenv(envp_extra[i]);
		const char *bin = getenv("ROLLUPD_BIN");
		if (bin != NULL)
			execl(bin, "rollupd", "-f", "-c", d->conf, (char *)NULL);
		_exit(127);
	}
	d->pid = pid;
	ck_assert_int_lt(n_started, MAX_DAEMONS);
	started[n_started++] = pid;
}

static void spawn_until_ready(struct daemon *d)
{
	/* A restart appends to the same log: wait for a ready line of this run. */
	int before = daemon_log_count(d, "ready:");
	daemon_spawn(d, NULL);
	ck_assert_msg(daemon_wait_log(d, "ready:", before + 1, 20.0), "rollupd did not become ready (log %s)", d->log);
}

void daemon_start(struct daemon *d, const char *db, const char *extra)
{
	daemon_configure(d, db, extra);
	spawn_until_ready(d);
}

char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return strdup("");
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	buf[got] = '\0';
	fclose(f);
	return buf;
}

int daemon_log_count(struct daemon *d, const char *needle)
{
	char *log = read_file(d->log);
	int count = 0;
	for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		count++;
	free(log);
	return count;
}

bool daemon_wait_log(struct daemon *d, const char *needle, int count, double timeout_s)
{
	double deadline = now_seconds() + timeout_s;
	while (daemon_log_count(d, needle) < count) {
		if (now_seconds() > deadline)
			return false;
		sleep_ms(20);
	}
	return true;
}

int daemon_wait_exit(struct daemon *d, double timeout_s)
{
	double deadline = now_seconds() + timeout_s;
	int status;
	for (;;) {
		pid_t r = waitpid(d->pid, &status, WNOHANG);
		if (r == d->pid) {
			forget(d->pid);
			d->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		if (now_seconds() > deadline)
			return -1;
		sleep_ms(10);
	}
}

int daemon_stop(struct daemon *d, double timeout_s, double *elapsed_s)
{
	double t0 = now_seconds();
	ck_assert_msg(d->pid > 0, "no daemon to stop");
	kill(d->pid, SIGTERM);
	int code = daemon_wait_exit(d, timeout_s);
	if (elapsed_s)
		*elapsed_s = now_seconds() - t0;
	if (code < 0)
		daemon_kill(d);
	return code;
}

void daemon_kill(struct daemon *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	forget(d->pid);
	d->pid = 0;
}

int psql_file_in(const char *db, const char *dir, const char *file)
{
	char cmd[1600];
	snprintf(cmd, sizeof(cmd), "psql -X -q -v ON_ERROR_STOP=1 -v role=%s -d '%s' -f '%s/%s' >/dev/null 2>&1",
	         DAEMON_ROLE, db_conninfo(db), dir, file);
	return system(cmd);
}

int psql_file(const char *db, const char *file)
{
	return psql_file_in(db, env("ROLLUPD_SQL"), file);
}

int run_pgbench(const char *db, int clients, int seconds, const char *scripts)
{
	char cmd[4096], words[512];
	int off = snprintf(cmd, sizeof(cmd), "'%s/pgbench' -n -c %d -j 2 -T %d -d '%s'", env("PGHARNESS_BINDIR"),
	                   clients, seconds, db_conninfo(db));
	snprintf(words, sizeof(words), "%s", scripts);
	for (char *save = NULL, *w = strtok_r(words, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
		off += snprintf(cmd + off, sizeof(cmd) - (size_t)off, " -f '%s/%s'", env("ROLLUPD_WORKLOAD"), w);
	snprintf(cmd + off, sizeof(cmd) - (size_t)off, " >/dev/null 2>&1");
	return system(cmd);
}

void seed_users_with_balances(PGconn *c, int n)
{
	db_exec(c,
	        "INSERT INTO users (user_id, txhash, is_current, wallet)"
	        " SELECT g, 't', true, '0xW' || g FROM generate_series(1, %d) g",
	        n);
	db_exec(
	    c,
	    "INSERT INTO eth_wallet_balances (wallet, balance) SELECT '0xw' || g, g * 10 FROM generate_series(1, %d) g",
	    n);
}

pid_t workload_start(const char *db, int clients, int seconds, const char *scripts)
{
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(run_pgbench(db, clients, seconds, scripts) == 0 ? 0 : 1);
	return pid;
}

int workload_wait(pid_t pid)
{
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void daemon_write_config(struct daemon *d, const char *db, const char *name, const char *config)
{
	const char *dir = env("ROLLUPD_TEST_DIR");
	snprintf(d->db, sizeof(d->db), "%s", db);
	snprintf(d->conf, sizeof(d->conf), "%s/%s-%s.conf", dir, db, name);
	snprintf(d->log, sizeof(d->log), "%s/%s-%s.log", dir, db, name);
	FILE *f = fopen(d->conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", config);
	fclose(f);
}

void daemon_second(struct daemon *d, const char *db, const char *name, const char *config)
{
	daemon_write_config(d, db, name, config);
	spawn_until_ready(d);
}

void seed_workload(PGconn *c)
{
	db_exec(c, "INSERT INTO users (user_id, txhash, is_current, wallet)"
	           " SELECT g, 't', true, '0xW' || g FROM generate_series(1, 50) g");
	db_exec(c, "INSERT INTO eth_wallet_balances (wallet, balance)"
	           " SELECT '0xh' || g, g * 1000000000000000000::numeric FROM generate_series(1, 60) g");
}

bool wait_verify_clean(const char *db, const char *rollup, double timeout_s)
{
	char out[4096], args[800];
	snprintf(args, sizeof(args), "-d '%s' --verify %s", daemon_conninfo(db), rollup);
	double end = now_seconds() + timeout_s;
	do {
		if (run_rollupd(out, sizeof(out), args) == 0 && strstr(out, "mismatches=0") != NULL)
			return true;
		sleep_ms(200);
	} while (now_seconds() < end);
	return false;
}

void db_send_until_blocked(PGconn *a, PGconn *observer, const char *sql)
{
	ck_assert(PQsendQuery(a, sql));
	char wait_sql[128];
	snprintf(wait_sql, sizeof(wait_sql), "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %d",
	         PQbackendPID(a));
	ck_assert_msg(db_wait_value(observer, "Lock", 10.0, wait_sql), "%s never waited for a lock", sql);
}

void db_finish(PGconn *a)
{
	PGresult *r;
	while ((r = PQgetResult(a)) != NULL) {
		ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
		PQclear(r);
	}
}

int run_rollupd(char *out, size_t outlen, const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", getenv("ROLLUPD_BIN"), args);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t got = fread(out, 1, outlen - 1, p);
	out[got] = '\0';
	int status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The definition again, written another way: wallets through IN (a set), per user. */
static const char ORACLE_MISMATCHES[] =
    "SELECT count(*) FROM ("
    "  SELECT ids.uid, (SELECT coalesce(sum(b.balance), 0) FROM eth_wallet_balances b WHERE b.wallet IN ("
    "      SELECT lower(u.wallet) FROM users u WHERE u.user_id = ids.uid AND u.is_current"
    "      UNION SELECT lower(a.wallet) FROM associated_wallets a WHERE a.user_id = ids.uid"
    "        AND a.chain = 'eth' AND a.is_current AND NOT a.is_delete)) AS expected"
    "  FROM (SELECT user_id AS uid FROM users WHERE is_current UNION SELECT user_id FROM eth_user_balances) ids"
    ") x LEFT JOIN eth_user_balances d ON d.user_id = x.uid"
    " WHERE coalesce(d.balance, 0) <> x.expected";

bool wait_converged(const char *db, double timeout_s)
{
	PGconn *c = db_open(db);
	bool ok = db_wait_value(c, "0", timeout_s, ORACLE_MISMATCHES);
	PQfinish(c);
	return ok;
}

void assert_verify_clean(const char *db, const char *rollup)
{
	char out[4096], args[800];
	snprintf(args, sizeof(args), "-d '%s' --verify %s", daemon_conninfo(db), rollup);
	int code = run_rollupd(out, sizeof(out), args);
	ck_assert_msg(code == 0 && strstr(out, "mismatches=0") != NULL, "verify exit=%d output: %s", code, out);
}

void assert_balances_verified(const char *db)
{
	assert_verify_clean(db, "eth_user_balances");

	PGconn *c = db_open(db);
	char *oracle = db_value(c, "%s", ORACLE_MISMATCHES);
	ck_assert_str_eq(oracle, "0");
	free(oracle);
	/* Derived rows exist for exactly the users with a current row. */
	char *missing = db_value(c, "SELECT count(*) FROM (SELECT DISTINCT user_id FROM users WHERE is_current) u"
	                            " FULL JOIN eth_user_balances d USING (user_id)"
	                            " WHERE u.user_id IS NULL OR d.user_id IS NULL");
	ck_assert_str_eq(missing, "0");
	free(missing);
	PQfinish(c);
}

long peak_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}
