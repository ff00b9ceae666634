#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "hostport.h"
#include "http.h"
#include "suites.h"

static int parse(const char *s, char *host, char *port)
{
	return hostport_parse(s, host, 64, port, 16);
}

START_TEST(test_listen_addresses_parse)
{
	char host[64], port[16];
	ck_assert_int_eq(parse("127.0.0.1:9187", host, port), 0);
	ck_assert_str_eq(host, "127.0.0.1");
	ck_assert_str_eq(port, "9187");
	ck_assert_int_eq(parse("[::1]:80", host, port), 0);
	ck_assert_str_eq(host, "::1");
	ck_assert_str_eq(port, "80");
	ck_assert_int_eq(parse("localhost:1", host, port), 0);
	ck_assert_str_eq(host, "localhost");
}
END_TEST

START_TEST(test_bad_listen_addresses_are_refused)
{
	char host[64], port[16];
	ck_assert_int_eq(parse("9187", host, port), -1);
	ck_assert_int_eq(parse(":9187", host, port), -1);
	ck_assert_int_eq(parse("host:", host, port), -1);
	ck_assert_int_eq(parse("host:91x", host, port), -1);
	ck_assert_int_eq(parse("[::1:80", host, port), -1);
	ck_assert_int_eq(parse("[]:80", host, port), -1);
}
END_TEST

START_TEST(test_body_grows_past_its_first_buffer)
{
	struct http_body b = {0};
	for (int i = 0; i < 2000; i++)
		http_body_printf(&b, "line %d\n", i);
	ck_assert(!b.failed);
	ck_assert_uint_gt(b.len, 4096);
	ck_assert_int_eq(b.data[b.len], '\0');
	ck_assert_ptr_nonnull(strstr(b.data, "line 1999\n"));
	free(b.data);
}
END_TEST

Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("http");
	tcase_add_test(tc, test_listen_addresses_parse);
	tcase_add_test(tc, test_bad_listen_addresses_are_refused);
	tcase_add_test(tc, test_body_grows_past_its_first_buffer);
	suite_add_tcase(s, tc);
	return s;
}
