/*
 * Integration harness: a database per test cloned from the template that
 * tests/run-integration prepared, the rollupd binary started as a child with
 * its log in a file, and polling helpers. Every daemon a test starts is
 * killed when the test's process exits, pass or fail.
 */
#ifndef ROLLUPD_TEST_HARNESS_H
#define ROLLUPD_TEST_HARNESS_H

#include <check.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

struct daemon {
	pid_t pid;
	char conf[512];
	char log[512];
	char db[64];
};

/* The WAL delivery mode for this test (a checked fixture calls it): the
 * templates with the rollups installed -v delivery=wal, and rollupd streams
 * a slot named after the test database. */
void harness_use_wal(void);
bool harness_wal(void);

/* A fresh database from the template; returns its name (static storage per call site is not needed: copy it). */
void db_create(char *name, size_t len);
/* The same from another template: rollupd_fd_template (db-sync tables, empty) or
 * rollupd_fd_gen_template (generated data at scale 0.01, cache not built). */
void db_create_from(const char *template_db, char *name, size_t len);
const char *db_conninfo(const char *db);
/* The least-privileged role of sql/roles.sql that rollupd runs as in the tests. */
#define DAEMON_ROLE "rollupd_test"
/* `db` as that role: what the daemon and the rollupd tools connect with. */
const char *daemon_conninfo(const char *db);
/* A crash and restart of the test server (pg_ctl restart -m immediate): unlogged tables come back empty. */
void pg_restart_immediate(void);
/* pg_ctl restart -m MODE (fast, immediate). */
void pg_restart(const char *mode);
PGconn *db_open(const char *db);
void db_exec(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* First column of the first row as a malloc'd string, NULL for SQL NULL or no row. */
char *db_value(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Poll `sql` until it returns `expected` (NULL: SQL NULL or no row); false on timeout. */
bool db_wait_value(PGconn *c, const char *expected, double timeout_s, const char *sql);

/* Write the daemon's config: defaults tuned for tests, plus `extra` sections
 * (a section named in `extra` replaces the default one). */
void daemon_configure(struct daemon *d, const char *db, const char *extra);
void daemon_spawn(struct daemon *d, char *const envp_extra[]);
/* Configure, spawn and wait for "ready:" in the log. */
void daemon_start(struct daemon *d, const char *db, const char *extra);
/* Wait until the log holds `needle` at least `count` times. */
bool daemon_wait_log(struct daemon *d, const char *needle, int count, double timeout_s);
int daemon_log_count(struct daemon *d, const char *needle);
/* SIGTERM and wait: the exit status, or -1 if it had to be killed. Stores elapsed seconds. */
int daemon_stop(struct daemon *d, double timeout_s, double *elapsed_s);
void daemon_kill(struct daemon *d);
/* Wait for the process to exit by itself; exit status or -1 on timeout. */
int daemon_wait_exit(struct daemon *d, double timeout_s);

/* A whole file as a malloc'd string ("" when it cannot be read). */
char *read_file(const char *path);
/* psql -v role=DAEMON_ROLE -f $ROLLUPD_SQL/<file> on `db` (as the superuser); the exit status. */
int psql_file(const char *db, const char *file);
/* The same with the file under `dir` (another release's sql/, say). */
int psql_file_in(const char *db, const char *dir, const char *file);
/* pgbench on `db` with workload scripts from $ROLLUPD_WORKLOAD ("balance.sql@5 link.sql@3"); 0 on success. */
int run_pgbench(const char *db, int clients, int seconds, const char *scripts);

/* Users 1..n, each with wallet 0xW<id> and a balance row for 0xw<id> of
 * id * 10 (the same wallet: wallets match case-insensitively). */
void seed_users_with_balances(PGconn *c, int n);

/* pgbench as run_pgbench(), in a child process: returns its pid. */
pid_t workload_start(const char *db, int clients, int seconds, const char *scripts);
/* Its exit: 0 when every transaction succeeded. */
int workload_wait(pid_t pid);

/* Another rollupd's files on `db`: <db>-<name>.conf holding `config`, and <db>-<name>.log. */
void daemon_write_config(struct daemon *d, const char *db, const char *name, const char *config);
/* That, started and ready. */
void daemon_second(struct daemon *d, const char *db, const char *name, const char *config);

/* The mixed workload (pgbench scripts in tests/integration/workload) on a
 * database with both rollups: its users 1..50 and hot wallets 0xh1..60. */
#define WORKLOAD_MIX "balance.sql@6 link.sql@2 user_wallet.sql@2 delegate.sql@4 rollback.sql@1"
void seed_workload(PGconn *c);

/* rollupd --verify ROLLUP until it reports 0 mismatches, or false after timeout_s. */
bool wait_verify_clean(const char *db, const char *rollup, double timeout_s);

/* Send `sql` on `a` without waiting, then wait (watching from `observer`)
 * until its backend waits for a lock. db_finish() collects its results. */
void db_send_until_blocked(PGconn *a, PGconn *observer, const char *sql);
/* The results of what db_send_until_blocked() sent: each must succeed. */
void db_finish(PGconn *a);

/* Run the rollupd binary with `args` (shell words); stdout+stderr in `out`. Returns the exit code. */
int run_rollupd(char *out, size_t outlen, const char *args);

/* Poll the independent definition until every balance is exact; false on timeout. */
bool wait_converged(const char *db, double timeout_s);

/* rollupd --verify `rollup` reports 0 mismatches. */
void assert_verify_clean(const char *db, const char *rollup);

/* rollupd --verify reports 0 mismatches, and an independently written query agrees. */
void assert_balances_verified(const char *db);

/* A process's peak resident set size (VmHWM), in kB. */
long peak_rss_kb(pid_t pid);

double now_seconds(void);
void sleep_ms(int ms);

#endif
