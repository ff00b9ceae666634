#include <check.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "sqlname.h"
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

/* A scripted catalog result, as libpq would return it (the columns of CATALOG_QUERY). */
#define NCOLS 15
static PGresult *catalog_result(const char *rows[][NCOLS], int n)
{
	static const char *names[NCOLS] = {"name",       "key_type",      "channel",      "key_type",
	                                   "refresh_fn", "delivery",      "oid",          "source_table",
	                                   "key_column", "filter_column", "filter_value", "watched_columns",
	                                   "events",     "has_capture"};
	PGresAttDesc attrs[NCOLS];
	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < NCOLS; i++) {
		attrs[i].name = (char *)names[i];
		attrs[i].typid = 25;
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	ck_assert(PQsetResultAttrs(res, NCOLS, attrs));
	for (int r = 0; r < n; r++)
		for (int c = 0; c < NCOLS; c++)
			ck_assert(PQsetvalue(res, r, c, (char *)rows[r][c], rows[r][c] ? (int)strlen(rows[r][c]) : -1));
	return res;
}

#define NO_CAPTURE NULL, NULL, NULL, NULL, NULL, NULL, NULL, "f", "rollupd,other"

START_TEST(test_catalog_builds_calls_and_skips_invalid_rows)
{
	const char *rows[][NCOLS] = {
	    {"Bad", "bigint", "bad_ch", "bigint", "f", "notify", NO_CAPTURE},
	    {"eub", "bigint", "eub_user", "bigint", "rollupd.eub_refresh", "notify", "16384", "public.users", "user_id",
	     NULL, NULL, "wallet,is_current", "insert,update,delete", "t"},
	    {"eub", "bigint", "eub_user", "bigint", "rollupd.eub_refresh", "notify", "16390",
	     "public.associated_wallets", "user_id", "chain", "eth", NULL, "insert,delete", "t", "rollupd,other"},
	    {"eub", "bigint", "eub_user", "bigint", "rollupd.eub_refresh", "notify", NULL, "public.gone", "Bad col",
	     NULL, NULL, NULL, "insert", "t"},
	    {"eub", "bigint", "eub_wallet", "text", "rollupd.eub_wallets", "queue", NO_CAPTURE},
	    {"eub", "bigint", "eub_wal", "text", "rollupd.eub_wallets", "wal", NO_CAPTURE},
	    {"eub", "bigint", "eub_odd", "text", "rollupd.eub_wallets", "carrier-pigeon", NO_CAPTURE},
	    {"lonely", "text", NULL, NULL, NULL, NULL, NO_CAPTURE},
	};
	PGresult *res = catalog_result(rows, 8);
	struct catalog cat;

	ck_assert_int_eq(catalog_from_result(res, NULL, &cat), 0);
	ck_assert_uint_eq(cat.n_rollups, 2);
	ck_assert_ptr_null(catalog_find_rollup(&cat, "Bad"));
	ck_assert_ptr_null(catalog_find_channel(&cat, "bad_ch"));
	const struct catalog_rollup *r = catalog_find_rollup(&cat, "eub");
	ck_assert_str_eq(r->reconcile_sql,
	                 "SELECT r.last_key, r.fixed FROM rollupd.reconcile_chunk('eub', $1, $2::integer) r");
	ck_assert_uint_eq(cat.n_channels, 3); /* the unknown delivery is skipped */
	ck_assert_str_eq(catalog_find_channel(&cat, "eub_wallet")->refresh_sql,
	                 "SELECT written, poisoned, detail FROM rollupd.refresh_keys('eub_wallet', $1::text[])");
	ck_assert_int_eq(catalog_find_channel(&cat, "eub_wallet")->delivery, DELIVERY_QUEUE);
	ck_assert_int_eq(catalog_find_channel(&cat, "eub_user")->delivery, DELIVERY_NOTIFY);
	ck_assert_int_eq(catalog_find_channel(&cat, "eub_wal")->delivery, DELIVERY_WAL);
	ck_assert(catalog_rollup_uses(&cat, "eub", DELIVERY_WAL));
	ck_assert(!catalog_rollup_uses(&cat, "lonely", DELIVERY_NOTIFY));

	/* Two captures of eub_user; the one with an invalid column is skipped. */
	ck_assert_uint_eq(cat.n_captures, 2);
	const struct catalog_capture *k = &cat.captures[0];
	ck_assert_str_eq(k->table, "public.users");
	ck_assert_uint_eq(k->table_oid, 16384);
	ck_assert_uint_eq(k->n_watched, 2);
	ck_assert_str_eq(k->watched[1], "is_current");
	ck_assert_uint_eq(k->events, CAPTURE_INSERT | CAPTURE_UPDATE | CAPTURE_DELETE);
	k = &cat.captures[1];
	ck_assert_str_eq(k->filter_column, "chain");
	ck_assert_str_eq(k->filter_value, "eth");
	ck_assert_ptr_null(k->watched);
	ck_assert_uint_eq(k->events, CAPTURE_INSERT | CAPTURE_DELETE);

	/* The slots rollupd created. */
	ck_assert(catalog_has_wal_slot(&cat, "other"));
	ck_assert(catalog_has_wal_slot(&cat, "rollupd"));
	ck_assert(!catalog_has_wal_slot(&cat, "rollup"));

	/* WAL-mode channels are not LISTENed on. */
	char *listen = catalog_listen_sql(&cat);
	ck_assert_str_eq(listen, "UNLISTEN *; LISTEN \"rollupd.catalog\"; LISTEN \"eub_user\"; LISTEN \"eub_wallet\";");
	free(listen);
	catalog_free(&cat);
	PQclear(res);
}
END_TEST

START_TEST(test_config_rollup_list_filters_the_catalog)
{
	const char *rows[][NCOLS] = {
	    {"a", "bigint", "a_ch", "bigint", "fa", "notify", NO_CAPTURE},
	    {"b", "bigint", "b_ch", "bigint", "fb", "notify", NO_CAPTURE},
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
	tcase_add_test(tc, test_catalog_builds_calls_and_skips_invalid_rows);
	tcase_add_test(tc, test_config_rollup_list_filters_the_catalog);
	suite_add_tcase(s, tc);
	return s;
}
