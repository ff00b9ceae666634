#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payload.h"
#include "suites.h"

struct collected {
	char keys[2000][32];
	int n;
	char bad[16][80];
	int nbad;
};

static int collect_key(const char *key, size_t len, void *arg)
{
	struct collected *c = arg;
	if (c->n < 2000)
		snprintf(c->keys[c->n], sizeof(c->keys[0]), "%.*s", (int)len, key);
	c->n++;
	return 0;
}

static void collect_bad(const char *token, size_t len, const char *reason, void *arg)
{
	struct collected *c = arg;
	if (c->nbad < 16)
		snprintf(c->bad[c->nbad], sizeof(c->bad[0]), "%.*s|%s", (int)len, token, reason);
	c->nbad++;
}

static struct collected *parse(const char *payload, enum key_type type, int *malformed)
{
	struct collected *c = calloc(1, sizeof(*c));
	struct payload_handler h = {.on_key = collect_key, .on_malformed = collect_bad, .arg = c};
	*malformed = payload_parse(payload, type, &h);
	return c;
}

START_TEST(test_keys_are_split_and_trimmed)
{
	int bad;
	struct collected *c = parse(" 1, 2 ,\t3,4 ", KEY_BIGINT, &bad);
	ck_assert_int_eq(bad, 0);
	ck_assert_int_eq(c->n, 4);
	ck_assert_str_eq(c->keys[0], "1");
	ck_assert_str_eq(c->keys[1], "2");
	ck_assert_str_eq(c->keys[2], "3");
	ck_assert_str_eq(c->keys[3], "4");
	free(c);
}
END_TEST

START_TEST(test_empty_payload_is_one_malformed_key)
{
	int bad;
	struct collected *c = parse("", KEY_BIGINT, &bad);
	ck_assert_int_eq(bad, 1);
	ck_assert_int_eq(c->n, 0);
	ck_assert_str_eq(c->bad[0], "|empty key");
	free(c);
}
END_TEST

START_TEST(test_malformed_keys_never_stop_the_others)
{
	int bad;
	struct collected *c = parse("7,abc,,12x, ,-,8", KEY_BIGINT, &bad);
	ck_assert_int_eq(bad, 5);
	ck_assert_int_eq(c->n, 2);
	ck_assert_str_eq(c->keys[0], "7");
	ck_assert_str_eq(c->keys[1], "8");
	ck_assert_str_eq(c->bad[0], "abc|not an integer");
	ck_assert_str_eq(c->bad[1], "|empty key");
	ck_assert_str_eq(c->bad[2], "12x|not an integer");
	free(c);
}
END_TEST

START_TEST(test_bigint_range_is_enforced)
{
	int bad;
	struct collected *c = parse("9223372036854775807,-9223372036854775808,9223372036854775808,"
	                            "-9223372036854775809,99999999999999999999999",
	                            KEY_BIGINT, &bad);
	ck_assert_int_eq(c->n, 2);
	ck_assert_str_eq(c->keys[0], "9223372036854775807");
	ck_assert_str_eq(c->keys[1], "-9223372036854775808");
	ck_assert_int_eq(bad, 3);
	ck_assert_str_eq(c->bad[0], "9223372036854775808|out of bigint range");
	free(c);
}
END_TEST

START_TEST(test_bigint_keys_are_canonical)
{
	int bad;
	struct collected *c = parse("007,+5,-0,0", KEY_BIGINT, &bad);
	ck_assert_int_eq(bad, 0);
	ck_assert_str_eq(c->keys[0], "7");
	ck_assert_str_eq(c->keys[1], "5");
	ck_assert_str_eq(c->keys[2], "0");
	ck_assert_str_eq(c->keys[3], "0");
	free(c);
}
END_TEST

START_TEST(test_text_keys_keep_their_bytes)
{
	int bad;
	struct collected *c = parse("0xAbC, a b ,\"q\"", KEY_TEXT, &bad);
	ck_assert_int_eq(bad, 0);
	ck_assert_str_eq(c->keys[0], "0xAbC");
	ck_assert_str_eq(c->keys[1], "a b");
	ck_assert_str_eq(c->keys[2], "\"q\"");
	free(c);
}
END_TEST

START_TEST(test_text_key_with_control_character_is_malformed)
{
	int bad;
	struct collected *c = parse("ok,bad\x01key", KEY_TEXT, &bad);
	ck_assert_int_eq(bad, 1);
	ck_assert_int_eq(c->n, 1);
	free(c);
}
END_TEST

START_TEST(test_payload_of_8000_bytes_yields_every_key)
{
	char *payload = malloc(8000);
	size_t off = 0;
	int expected = 0;
	while (off + 8 < 7999) {
		off += (size_t)snprintf(payload + off, 8000 - off, "%s%d", expected ? "," : "", 1000000 + expected);
		expected++;
	}
	int bad;
	struct collected *c = parse(payload, KEY_BIGINT, &bad);
	ck_assert_int_eq(bad, 0);
	ck_assert_int_eq(c->n, expected);
	ck_assert_str_eq(c->keys[expected - 1], payload + off - 7);
	free(c);
	free(payload);
}
END_TEST

START_TEST(test_overlong_text_key_is_malformed)
{
	char payload[PAYLOAD_MAX_TEXT_KEY + 10];
	memset(payload, 'a', PAYLOAD_MAX_TEXT_KEY + 1);
	payload[PAYLOAD_MAX_TEXT_KEY + 1] = '\0';
	int bad;
	struct collected *c = parse(payload, KEY_TEXT, &bad);
	ck_assert_int_eq(bad, 1);
	ck_assert_int_eq(c->n, 0);
	free(c);
}
END_TEST

Suite *payload_suite(void)
{
	Suite *s = suite_create("payload");
	TCase *tc = tcase_create("payload");
	tcase_add_test(tc, test_keys_are_split_and_trimmed);
	tcase_add_test(tc, test_empty_payload_is_one_malformed_key);
	tcase_add_test(tc, test_malformed_keys_never_stop_the_others);
	tcase_add_test(tc, test_bigint_range_is_enforced);
	tcase_add_test(tc, test_bigint_keys_are_canonical);
	tcase_add_test(tc, test_text_keys_keep_their_bytes);
	tcase_add_test(tc, test_text_key_with_control_character_is_malformed);
	tcase_add_test(tc, test_payload_of_8000_bytes_yields_every_key);
	tcase_add_test(tc, test_overlong_text_key_is_malformed);
	suite_add_tcase(s, tc);
	return s;
}
