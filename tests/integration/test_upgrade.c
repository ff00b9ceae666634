/*
 * Upgrades (docs/design.md, "Upgrades"): the previous release's schema is
 * installed from its sql/ as released (tests/integration/releases/, the
 * commit sql/common/upgrade/RELEASES names), upgraded with
 * sql/common/upgrade/ while writers are busy, and ends exact under this
 * rollupd. The archive ships in the tarball, so the test runs everywhere;
 * where the release's commit is in this checkout's history the archive is
 * checked against it too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static struct daemon d;

/* One line of a command's output, or "" (the caller frees). */
static char *first_line_of(const char *cmd)
{
	char line[256] = "";
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	if (fgets(line, sizeof(line), p) == NULL)
		line[0] = '\0';
	pclose(p);
	line[strcspn(line, "\n")] = '\0';
	return strdup(line);
}

START_TEST(test_the_previous_release_upgrades_under_load)
{
	const char *src = getenv("ROLLUPD_SRCDIR");
	char cmd[4096], old[600], db[64];
	/* The previous release: schema 2's line in sql/common/upgrade/RELEASES. */
	snprintf(cmd, sizeof(cmd), "awk '$1 == 2 {print $2, $3}' '%s/sql/common/upgrade/RELEASES'", src);
	char *line = first_line_of(cmd);
	char rev[64] = "", release[32] = "";
	ck_assert_msg(sscanf(line, "%63s %31s", rev, release) == 2,
	              "no release of schema 2 in sql/common/upgrade/RELEASES");
	free(line);
	snprintf(old, sizeof(old), "%s/release-%d", getenv("ROLLUPD_TEST_DIR"), (int)getpid());
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && tar -xzf '%s/tests/integration/releases/%s-sql.tar.gz' -C '%s'",
	         old, src, release, old);
	ck_assert_msg(system(cmd) == 0, "the release %s's sql/ is missing: %s", release, cmd);
	/* The archive is the release: where its commit is at hand, they must not
	 * differ. (Asked of the work tree's top: a tarball unpacked inside a
	 * checkout, as make distcheck does, is an untracked directory there.) */
	snprintf(cmd, sizeof(cmd), "git -C '%s' rev-parse --show-toplevel 2>/dev/null", src);
	char *top = first_line_of(cmd);
	snprintf(cmd, sizeof(cmd), "git -C '%s' cat-file -e '%s^{commit}' 2>/dev/null", top, rev);
	if (top[0] != '\0' && system(cmd) == 0) {
		snprintf(cmd, sizeof(cmd),
		         "mkdir -p '%s/git' && git -C '%s' archive '%s' sql | tar -x -C '%s/git' && diff -r '%s/sql' "
		         "'%s/git/sql'",
		         old, top, rev, old, old, old);
		ck_assert_msg(system(cmd) == 0, "tests/integration/releases/%s-sql.tar.gz is not the sql/ of %s",
		              release, rev);
	}
	free(top);
	strncat(old, "/sql", sizeof(old) - strlen(old) - 1);

	snprintf(db, sizeof(db), "upgrade_%d", (int)getpid());
	PGconn *admin = db_open("postgres");
	db_exec(admin, "CREATE DATABASE %s", db);
	PQfinish(admin);
	ck_assert_int_eq(psql_file_in(db, old, "eth_user_balances/source-schema.sql"), 0);
	ck_assert_int_eq(psql_file_in(db, old, "eth_user_balances/install.sql"), 0);
	ck_assert_int_eq(psql_file_in(db, old, "roles.sql"), 0);
	PGconn *conn = db_open(db);
	char *version = db_value(conn, "SELECT max(version) FROM rollupd.schema_version");
	ck_assert_str_eq(version, "2");
	free(version);
	seed_workload(conn);
	/* The old release's own build of the derived table. */
	db_exec(
	    conn,
	    "DO $$ DECLARE k text; BEGIN"
	    " SELECT last_key INTO k FROM rollupd.reconcile_chunk('eth_user_balances', NULL, 1000);"
	    " WHILE k IS NOT NULL LOOP"
	    "   SELECT last_key INTO k FROM rollupd.reconcile_chunk('eth_user_balances', k, 1000); END LOOP; END $$");

	/* Writers keep writing through the old triggers while the schema moves on. */
	pid_t load = workload_start(db, 4, 6, "balance.sql@5 link.sql@3 user_wallet.sql@2");
	sleep_ms(1500);
	ck_assert_int_eq(psql_file(db, "common/upgrade/2--3.sql"), 0);
	ck_assert_int_eq(psql_file(db, "eth_user_balances/install.sql"), 0);
	ck_assert_int_eq(psql_file(db, "roles.sql"), 0);
	ck_assert_msg(workload_wait(load) == 0, "a writer failed during the upgrade");
	version = db_value(conn, "SELECT max(version) FROM rollupd.schema_version");
	ck_assert_str_eq(version, "3");
	free(version);
	/* The tables moved on: the walks say when they start (none has yet). */
	char *walks = db_value(conn, "SELECT count(*) FROM rollupd.rollup WHERE walk_started_at IS NULL");
	ck_assert_str_eq(walks, "1");
	free(walks);

	/* This rollupd: its catch-up walk repairs what nobody heard during the upgrade. */
	daemon_start(&d, db, NULL);
	ck_assert_msg(wait_converged(db, 20.0), "not exact after the upgrade (log %s)", d.log);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_balances_verified(db);
	PQfinish(conn);
}
END_TEST

/* This release's install.sql over a schema of another version stops, saying how to upgrade. */
START_TEST(test_install_refuses_a_schema_of_another_version)
{
	char db[64];
	db_create(db, sizeof(db));
	PGconn *conn = db_open(db);
	db_exec(conn, "UPDATE rollupd.schema_version SET version = 2");
	char cmd[1600];
	snprintf(cmd, sizeof(cmd), "psql -X -q -v ON_ERROR_STOP=1 -d '%s' -f '%s/eth_user_balances/install.sql' 2>&1",
	         db_conninfo(db), getenv("ROLLUPD_SQL"));
	char *out = first_line_of(cmd);
	ck_assert_msg(strstr(out, "the installed rollupd schema is version 2, this install.sql is version 3") != NULL,
	              "%s", out);
	free(out);
	db_exec(conn, "UPDATE rollupd.schema_version SET version = 3");
	PQfinish(conn);
	assert_balances_verified(db);
}
END_TEST

Suite *upgrade_suite(void)
{
	Suite *s = suite_create("upgrade");
	TCase *tc = tcase_create("upgrade");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_the_previous_release_upgrades_under_load);
	tcase_add_test(tc, test_install_refuses_a_schema_of_another_version);
	suite_add_tcase(s, tc);
	return s;
}
