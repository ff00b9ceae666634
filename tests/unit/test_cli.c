#include <check.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "suites.h"

static int parse(struct cli_options *o, char *err, size_t errlen, int argc, char **argv)
{
	return cli_parse(argc, argv, o, err, errlen);
}

START_TEST(test_default_is_the_daemon_with_the_default_config)
{
	struct cli_options o;
	char err[128];
	char *argv[] = {"rollupd", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 1, argv), 0);
	ck_assert_int_eq(o.mode, CLI_DAEMON);
	ck_assert_str_eq(o.config_path, CONFIG_DEFAULT_PATH);
	ck_assert(!o.foreground);
}
END_TEST

START_TEST(test_options_are_read)
{
	struct cli_options o;
	char err[128];
	char *argv[] = {"rollupd", "-f", "-c", "/x.conf", "-d", "dbname=y", "--verify", "eub", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 8, argv), 0);
	ck_assert_int_eq(o.mode, CLI_VERIFY);
	ck_assert_str_eq(o.rollup, "eub");
	ck_assert_str_eq(o.config_path, "/x.conf");
	ck_assert(o.config_given);
	ck_assert_str_eq(o.conninfo, "dbname=y");
	ck_assert(o.foreground);
}
END_TEST

START_TEST(test_two_modes_are_a_usage_error)
{
	struct cli_options o;
	char err[128];
	char *argv[] = {"rollupd", "--list", "--reconcile", "x", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 4, argv), -1);
	ck_assert(strstr(err, "mutually exclusive") != NULL);
}
END_TEST

START_TEST(test_unknown_option_and_missing_argument_are_usage_errors)
{
	struct cli_options o;
	char err[128];
	char *argv1[] = {"rollupd", "--bogus", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 2, argv1), -1);
	ck_assert_str_eq(err, "unknown option '--bogus'");
	char *argv2[] = {"rollupd", "-c", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 2, argv2), -1);
	ck_assert_str_eq(err, "option '-c' needs an argument");
	char *argv3[] = {"rollupd", "stray", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 2, argv3), -1);
	ck_assert_str_eq(err, "unexpected argument 'stray'");
}
END_TEST

START_TEST(test_status_takes_json_and_json_needs_status)
{
	struct cli_options o;
	char err[128];
	char *argv1[] = {"rollupd", "--status", "--json", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 3, argv1), 0);
	ck_assert_int_eq(o.mode, CLI_STATUS);
	ck_assert(o.json);
	char *argv2[] = {"rollupd", "--status", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 2, argv2), 0);
	ck_assert(!o.json);
	char *argv3[] = {"rollupd", "--list", "--json", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 3, argv3), -1);
	ck_assert_str_eq(err, "--json goes with --status");
	char *argv4[] = {"rollupd", "--status", "--verify", "x", NULL};
	ck_assert_int_eq(parse(&o, err, sizeof(err), 4, argv4), -1);
	ck_assert(strstr(err, "mutually exclusive") != NULL);
}
END_TEST

Suite *cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("cli");
	tcase_add_test(tc, test_default_is_the_daemon_with_the_default_config);
	tcase_add_test(tc, test_options_are_read);
	tcase_add_test(tc, test_two_modes_are_a_usage_error);
	tcase_add_test(tc, test_unknown_option_and_missing_argument_are_usage_errors);
	tcase_add_test(tc, test_status_takes_json_and_json_needs_status);
	suite_add_tcase(s, tc);
	return s;
}
