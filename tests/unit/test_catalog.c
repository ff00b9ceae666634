#include <check.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "suites.h"

START_TEST(test_names_follow_the_identifier_rule)
{
	ck_assert(sql_name_valid("refresh"));
	ck_assert(sql_name_valid("rollupd.eth_user_balances_refresh"));
	ck_assert(sql_name_valid("_x9"));
	ck_assert(!sql_name_valid(""));
	ck_assert(!sql_name_valid("Refresh"));
	ck_assert(!sql_name_valid("9lives"));
	ck_assert(!sql_name_valid("a.b.c"));
	ck_assert(!sql_name_valid("a."));
	ck_assert(!sql_name_valid("f(); DROP TABLE users"));
	ck_assert(!sql_name_valid("x\"y"));
	char long_name[80];
	memset(long_name, 'a', 64);
	long_name[64] = '\0';
	ck_assert(!sql_name_valid(long_name));
}
END_TEST

START_TEST(test_names_are_quoted_part_by_part)
{
	char out[140];
	ck_assert_int_eq(sql_name_quote("rollupd.f", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "\"rollupd\".\"f\"");
	ck_assert_int_eq(sql_name_quote("f", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "\"f\"");
	ck_assert_int_eq(sql_name_quote("F", out, sizeof(out)), -1);
}
END_TEST

/* A scripted catalog result, as libpq would return it. */
static PGresult *catalog_result(const char *rows[][8], int n)
{
	static const char *names[] = {"name",    "key_type", "reconcile_fn", "verify_fn",
	                              "channel", "key_type", "refresh_fn",   "delivery"};
	PGresAttDesc attrs[8];
	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < 8; i++) {
		attrs[i].name = (char *)names[i];
		attrs[i].typid = 25;
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	ck_assert(PQsetResultAttrs(res, 8, attrs));
	for (int r = 0; r < n; r++)
		for (int c = 0; c < 8; c++)
			ck_assert(PQsetvalue(res, r, c, (char *)rows[r][c], rows[r][c] ? (int)strlen(rows[r][c]) : -1));
	return res;
}

START_TEST(test_catalog_builds_quoted_calls_and_skips_invalid_rollups)
{
	const char *rows[][8] = {
	    {"bad", "bigint", "x; drop", "v", "bad_ch", "bigint", "f", "notify"},
	    {"eub", "bigint", "rollupd.eub_reconcile", "rollupd.eub_verify", "eub_user", "bigint",
	     "rollupd.eub_refresh", "notify"},
	    {"eub", "bigint", "rollupd.eub_reconcile", "rollupd.eub_verify", "eub_wallet", "text",
	     "rollupd.eub_wallets", "queue"},
	    {"lonely", "text", "r", "v", NULL, NULL, NULL, "notify"},
	};
	PGresult *res = catalog_result(rows, 4);
	struct config cfg = {0};
	struct catalog cat;

	ck_assert_int_eq(catalog_from_result(res, &cfg, &cat), 0);
	ck_assert_uint_eq(cat.n_rollups, 2);
	ck_assert_ptr_null(catalog_find_rollup(&cat, "bad"));
	ck_assert_ptr_null(catalog_find_channel(&cat, "bad_ch"));
	const struct catalog_rollup *r = catalog_find_rollup(&cat, "eub");
	ck_assert_str_eq(r->reconcile_sql,
	                 "SELECT r.last_key::text, r.fixed FROM \"rollupd\".\"eub_reconcile\"($1::bigint, "
	                 "$2::integer) AS r(last_key, fixed)");
	ck_assert_uint_eq(cat.n_channels, 2);
	ck_assert_str_eq(catalog_find_channel(&cat, "eub_wallet")->refresh_sql,
	                 "SELECT written, poisoned, detail FROM rollupd.refresh_keys('eub_wallet', $1::text[])");
	/* The delivery column: queue mode for one channel, notify for the other. */
	ck_assert(catalog_find_channel(&cat, "eub_wallet")->queue);
	ck_assert(!catalog_find_channel(&cat, "eub_user")->queue);

	char *listen = catalog_listen_sql(&cat);
	ck_assert_str_eq(listen, "UNLISTEN *; LISTEN \"eub_user\"; LISTEN \"eub_wallet\";");
	free(listen);
	catalog_free(&cat);
	PQclear(res);
}
END_TEST

START_TEST(test_config_rollup_list_filters_the_catalog)
{
	const char *rows[][8] = {
	    {"a", "bigint", "ra", "va", "a_ch", "bigint", "fa", "notify"},
	    {"b", "bigint", "rb", "vb", "b_ch", "bigint", "fb", "notify"},
	};
	PGresult *res = catalog_result(rows, 2);
	char *wanted[] = {"b", "missing"};
	struct config cfg = {.rollups = wanted, .n_rollups = 2};
	struct catalog cat;

	ck_assert_int_eq(catalog_from_result(res, &cfg, &cat), 0);
	ck_assert_uint_eq(cat.n_rollups, 1);
	ck_assert_str_eq(cat.rollups[0].name, "b");
	ck_assert_uint_eq(cat.n_channels, 1);
	catalog_free(&cat);
	PQclear(res);
}
END_TEST

Suite *catalog_suite(void)
{
	Suite *s = suite_create("catalog");
	TCase *tc = tcase_create("catalog");
	tcase_add_test(tc, test_names_follow_the_identifier_rule);
	tcase_add_test(tc, test_names_are_quoted_part_by_part);
	tcase_add_test(tc, test_catalog_builds_quoted_calls_and_skips_invalid_rollups);
	tcase_add_test(tc, test_config_rollup_list_filters_the_catalog);
	suite_add_tcase(s, tc);
	return s;
}
