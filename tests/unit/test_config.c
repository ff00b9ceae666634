#include <check.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "suites.h"

static char path[64];

static const char *write_conf(const char *text)
{
	snprintf(path, sizeof(path), "/tmp/rollupd-conf-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* Load `text`; expect failure with an error that ends in `expected_tail` and names `line`. */
static void expect_error(const char *text, int line, const char *expected)
{
	char err[512], where[96];
	const char *p = write_conf(text);
	ck_assert_ptr_null(config_load(p, NULL, err, sizeof(err)));
	if (line > 0)
		snprintf(where, sizeof(where), "%s:%d: ", p, line);
	else
		snprintf(where, sizeof(where), "%s: ", p);
	ck_assert_msg(strncmp(err, where, strlen(where)) == 0, "error '%s' does not start with '%s'", err, where);
	ck_assert_msg(strstr(err, expected) != NULL, "error '%s' does not mention '%s'", err, expected);
	unlink(p);
}

START_TEST(test_minimal_file_uses_every_default)
{
	struct config *cfg;
	char err[512];
	const char *p = write_conf("database = { conninfo = \"dbname=x\"; };\n");
	ck_assert_ptr_nonnull(cfg = config_load(p, NULL, err, sizeof(err)));
	ck_assert_str_eq(cfg->conninfo, "dbname=x");
	ck_assert_int_eq(cfg->pool_size, 2);
	ck_assert_int_eq(cfg->batch_max_keys, 10000);
	ck_assert_int_eq(cfg->batch_window_ms, 20);
	ck_assert_int_eq(cfg->statement_timeout_ms, 60000);
	ck_assert_int_eq(cfg->connect_timeout_ms, 5000);
	ck_assert_int_eq(cfg->connect_retries, 5);
	ck_assert_int_eq(cfg->reconcile_chunk_keys, 1000);
	ck_assert(cfg->reconcile_on_connect);
	ck_assert_int_eq(cfg->reconcile_interval_s, 0);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
	ck_assert_int_eq(cfg->shutdown_timeout_ms, 10000);
	ck_assert_ptr_null(cfg->rollups);
	ck_assert(config_wants_rollup(cfg, "anything"));
	config_free(cfg);
	unlink(p);
}
END_TEST

START_TEST(test_full_file_sets_every_key)
{
	struct config *cfg;
	char err[512];
	const char *p = write_conf("database = {\n"
	                           "  conninfo = \"host=/tmp dbname=y\";\n"
	                           "  pool_size = 4; connect_timeout_ms = 2000; statement_timeout_ms = 0;\n"
	                           "  connect_retries = 0; reconnect_min_ms = 50; reconnect_max_ms = 500;\n"
	                           "};\n"
	                           "batch = { max_keys = 10; window_ms = 0; retry_min_ms = 5; retry_max_ms = 10;"
	                           " max_pending_keys = 20; };\n"
	                           "reconcile = { chunk_keys = 7; on_connect = false; interval_s = 3600; };\n"
	                           "queue = { poll_ms = 0; stats_interval_s = 0; parallel = 3; };\n"
	                           "standby = { enabled = true; lock_id = 42; poll_ms = 250; };\n"
	                           "rollups = [ \"eth_user_balances\" ];\n"
	                           "log = { level = \"debug\"; };\n"
	                           "daemon = { shutdown_timeout_ms = 1500; pidfile = \"/run/rollupd.pid\"; };\n");
	ck_assert_msg((cfg = config_load(p, NULL, err, sizeof(err))) != NULL, "%s", err);
	ck_assert_int_eq(cfg->pool_size, 4);
	ck_assert_int_eq(cfg->statement_timeout_ms, 0);
	ck_assert_int_eq(cfg->batch_window_ms, 0);
	ck_assert_int_eq(cfg->reconcile_chunk_keys, 7);
	ck_assert_int_eq(cfg->batch_max_pending_keys, 20);
	ck_assert_int_eq(cfg->queue_poll_ms, 0);
	ck_assert_int_eq(cfg->queue_parallel, 3);
	ck_assert(cfg->standby_enabled);
	ck_assert_int_eq(cfg->standby_lock_id, 42);
	ck_assert_int_eq(cfg->standby_poll_ms, 250);
	ck_assert(!cfg->reconcile_on_connect);
	ck_assert_int_eq(cfg->reconcile_interval_s, 3600);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
	ck_assert_str_eq(cfg->pidfile, "/run/rollupd.pid");
	ck_assert(config_wants_rollup(cfg, "eth_user_balances"));
	ck_assert(!config_wants_rollup(cfg, "first_delegation"));
	config_free(cfg);
	unlink(p);
}
END_TEST

START_TEST(test_conninfo_override_replaces_file_value)
{
	struct config *cfg;
	char err[512];
	const char *p = write_conf("log = { level = \"warning\"; };\n");
	ck_assert_ptr_nonnull(cfg = config_load(p, "dbname=override", err, sizeof(err)));
	ck_assert_str_eq(cfg->conninfo, "dbname=override");
	config_free(cfg);
	unlink(p);
}
END_TEST

START_TEST(test_syntax_error_names_its_line)
{
	expect_error("database = {\n  conninfo = \"dbname=x\";\n  pool_size = ;\n};\n", 3, "syntax error");
}
END_TEST

START_TEST(test_unknown_key_in_section_names_its_line)
{
	expect_error("database = {\n  conninfo = \"dbname=x\";\n  pool_sise = 3;\n};\n", 3,
	             "unknown setting 'database.pool_sise'");
}
END_TEST

START_TEST(test_unknown_top_level_key_names_its_line)
{
	expect_error("database = { conninfo = \"dbname=x\"; };\n\nbatches = { max_keys = 3; };\n", 3,
	             "unknown setting 'batches'");
}
END_TEST

START_TEST(test_wrong_type_names_its_line)
{
	expect_error("database = {\n  conninfo = \"dbname=x\";\n  pool_size = \"4\";\n};\n", 3,
	             "database.pool_size must be an integer, not a string");
}
END_TEST

START_TEST(test_boolean_given_as_integer_is_rejected)
{
	expect_error("database = { conninfo = \"dbname=x\"; };\nreconcile = {\n on_connect = 1;\n};\n", 3,
	             "reconcile.on_connect must be a boolean");
}
END_TEST

START_TEST(test_out_of_range_value_names_its_line)
{
	expect_error("database = { conninfo = \"dbname=x\";\n pool_size = 0; };\n", 2,
	             "database.pool_size = 0 is out of range");
}
END_TEST

START_TEST(test_unknown_log_level_is_rejected)
{
	expect_error("database = { conninfo = \"dbname=x\"; };\nlog = { level = \"verbose\"; };\n", 2,
	             "is not one of error, warning, info, debug");
}
END_TEST

START_TEST(test_section_that_is_not_a_group_is_rejected)
{
	expect_error("database = { conninfo = \"dbname=x\"; };\nbatch = 5;\n", 2, "'batch' must be a group");
}
END_TEST

START_TEST(test_rollups_must_be_a_list_of_names)
{
	expect_error("database = { conninfo = \"dbname=x\"; };\nrollups = \"eth_user_balances\";\n", 2,
	             "'rollups' must be an array");
}
END_TEST

START_TEST(test_missing_conninfo_is_reported)
{
	expect_error("batch = { max_keys = 5; };\n", 0, "database.conninfo is required");
}
END_TEST

START_TEST(test_inverted_backoff_bounds_are_rejected)
{
	expect_error("database = { conninfo = \"dbname=x\"; reconnect_min_ms = 500; reconnect_max_ms = 100; };\n", 0,
	             "database.reconnect_max_ms (100) is below database.reconnect_min_ms (500)");
}
END_TEST

START_TEST(test_password_in_a_file_others_can_read_is_refused)
{
	struct config *cfg;
	char err[512];
	const char *p = write_conf("database = { conninfo = \"host=db user=r password=secret\"; };\n");
	ck_assert_int_eq(chmod(p, 0644), 0);
	ck_assert_ptr_null(config_load(p, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, "holds a password and the file is readable by others (mode 0644)") != NULL, "%s",
	              err);
	unlink(p);
	/* The same in a URI. */
	p = write_conf("database = { conninfo = \"postgresql://r:secret@db/app\"; };\n");
	ck_assert_int_eq(chmod(p, 0604), 0);
	ck_assert_ptr_null(config_load(p, NULL, err, sizeof(err)));
	/* Readable by the owner and the group only: fine, as is no password. */
	ck_assert_int_eq(chmod(p, 0640), 0);
	ck_assert_msg((cfg = config_load(p, NULL, err, sizeof(err))) != NULL, "%s", err);
	config_free(cfg);
	unlink(p);
	p = write_conf("database = { conninfo = \"host=db user=r\"; };\n");
	ck_assert_int_eq(chmod(p, 0644), 0);
	ck_assert_msg((cfg = config_load(p, NULL, err, sizeof(err))) != NULL, "%s", err);
	config_free(cfg);
	unlink(p);
}
END_TEST

START_TEST(test_unparsable_conninfo_names_its_line)
{
	expect_error("log = { level = \"info\"; };\ndatabase = {\n  conninfo = \"dbnme=app\";\n};\n", 3,
	             "database.conninfo is not a valid libpq connection string: invalid connection option \"dbnme\"");
	expect_error("database = { conninfo = \"host='unclosed\"; };\n", 1, "not a valid libpq connection string");
	/* -d is checked too, and named as such. */
	struct config *cfg;
	char err[512];
	const char *p = write_conf("database = { conninfo = \"dbname=x\"; };\n");
	ck_assert_ptr_null(config_load(p, "dbnme=y", err, sizeof(err)));
	ck_assert_msg(strstr(err, "-d: not a valid libpq connection string") != NULL, "%s", err);
	unlink(p);
	ck_assert_ptr_null(config_defaults("dbnme=y", err, sizeof(err)));
	ck_assert_msg(strstr(err, "-d: not a valid libpq connection string") != NULL, "%s", err);
	ck_assert_ptr_nonnull(cfg = config_defaults("dbname=y", err, sizeof(err)));
	config_free(cfg);
}
END_TEST

START_TEST(test_dotted_name_syntax_error_shows_the_group_form)
{
	expect_error("log = { level = \"info\"; };\n  database.conninfo = \"dbname=app\";\n", 2,
	             "syntax error: syntax error (a dotted name is not libconfig syntax: write the group form,"
	             " database = { conninfo = \"dbname=app\"; };)");
	/* Any other syntax error gets no such hint. */
	char err[512];
	const char *p = write_conf("database = {\n  conninfo = \"dbname=x\";\n  pool_size = ;\n};\n");
	ck_assert_ptr_null(config_load(p, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, "dotted") == NULL, "%s", err);
	unlink(p);
}
END_TEST

START_TEST(test_unreadable_file_is_reported)
{
	char err[512];
	ck_assert_ptr_null(config_load("/nonexistent/rollupd.conf", NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "/nonexistent/rollupd.conf: cannot read file: No such file or directory");
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, test_minimal_file_uses_every_default);
	tcase_add_test(tc, test_full_file_sets_every_key);
	tcase_add_test(tc, test_conninfo_override_replaces_file_value);
	tcase_add_test(tc, test_syntax_error_names_its_line);
	tcase_add_test(tc, test_unknown_key_in_section_names_its_line);
	tcase_add_test(tc, test_unknown_top_level_key_names_its_line);
	tcase_add_test(tc, test_wrong_type_names_its_line);
	tcase_add_test(tc, test_boolean_given_as_integer_is_rejected);
	tcase_add_test(tc, test_out_of_range_value_names_its_line);
	tcase_add_test(tc, test_unknown_log_level_is_rejected);
	tcase_add_test(tc, test_section_that_is_not_a_group_is_rejected);
	tcase_add_test(tc, test_rollups_must_be_a_list_of_names);
	tcase_add_test(tc, test_missing_conninfo_is_reported);
	tcase_add_test(tc, test_inverted_backoff_bounds_are_rejected);
	tcase_add_test(tc, test_unreadable_file_is_reported);
	tcase_add_test(tc, test_unparsable_conninfo_names_its_line);
	tcase_add_test(tc, test_dotted_name_syntax_error_shows_the_group_form);
	tcase_add_test(tc, test_password_in_a_file_others_can_read_is_refused);
	suite_add_tcase(s, tc);
	return s;
}
