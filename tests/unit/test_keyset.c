#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyset.h"
#include "suites.h"

START_TEST(test_duplicate_keys_are_stored_once)
{
	struct keyset *s = keyset_new();
	ck_assert_int_eq(keyset_add(s, "42", 2, 0, NULL), 1);
	ck_assert_int_eq(keyset_add(s, "42", 2, 0, NULL), 0);
	ck_assert_int_eq(keyset_add(s, "420", 2, 0, NULL), 0); /* length-delimited: "42" again */
	ck_assert_int_eq(keyset_add(s, "420", 3, 0, NULL), 1);
	ck_assert_uint_eq(keyset_count(s), 2);
	keyset_free(s);
}
END_TEST

START_TEST(test_take_moves_keys_out_and_allows_readding)
{
	struct keyset *s = keyset_new();
	char *out[8];
	keyset_add(s, "a", 1, 0, NULL);
	keyset_add(s, "b", 1, 0, NULL);
	keyset_add(s, "c", 1, 0, NULL);
	size_t n = keyset_take(s, out, NULL, 2);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(keyset_count(s), 1);
	for (size_t i = 0; i < n; i++) {
		ck_assert(!keyset_contains(s, out[i], strlen(out[i])));
		ck_assert_int_eq(keyset_add(s, out[i], strlen(out[i]), 0, NULL), 1);
		free(out[i]);
	}
	ck_assert_uint_eq(keyset_count(s), 3);
	keyset_free(s);
}
END_TEST

/* A key keeps the smallest tag it was added with; a smaller one replaces it. */
START_TEST(test_a_key_keeps_its_smallest_tag)
{
	struct keyset *s = keyset_new();
	uint64_t old = 0, tags[2];
	char *out[2];
	ck_assert_int_eq(keyset_add(s, "k", 1, 5, &old), 1);
	ck_assert_int_eq(keyset_add(s, "k", 1, 9, &old), 0);
	ck_assert_int_eq(keyset_add(s, "k", 1, 3, &old), 2);
	ck_assert_uint_eq(old, 5);
	ck_assert_uint_eq(keyset_take(s, out, tags, 2), 1);
	ck_assert_uint_eq(tags[0], 3);
	free(out[0]);
	keyset_free(s);
}
END_TEST

/* Heavy churn across growth and backward-shift deletion keeps the set exact. */
START_TEST(test_churn_keeps_membership_exact)
{
	struct keyset *s = keyset_new();
	char key[32];
	char *out[997];
	unsigned char *present = calloc(50000, 1);
	size_t expected = 0;

	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < 3000; i++) {
			int k = (round * 7919 + i * 104729) % 50000;
			int len = snprintf(key, sizeof(key), "%d", k);
			int r = keyset_add(s, key, (size_t)len, 0, NULL);
			ck_assert_int_eq(r, present[k] ? 0 : 1);
			if (!present[k]) {
				present[k] = 1;
				expected++;
			}
		}
		size_t n = keyset_take(s, out, NULL, 997);
		for (size_t i = 0; i < n; i++) {
			int k = (int)strtol(out[i], NULL, 10);
			ck_assert(present[k]);
			present[k] = 0;
			expected--;
			free(out[i]);
		}
		ck_assert_uint_eq(keyset_count(s), expected);
	}
	for (int k = 0; k < 50000; k++) {
		int len = snprintf(key, sizeof(key), "%d", k);
		ck_assert_int_eq(keyset_contains(s, key, (size_t)len), present[k]);
	}
	free(present);
	keyset_free(s);
}
END_TEST

Suite *keyset_suite(void)
{
	Suite *s = suite_create("keyset");
	TCase *tc = tcase_create("keyset");
	tcase_add_test(tc, test_duplicate_keys_are_stored_once);
	tcase_add_test(tc, test_take_moves_keys_out_and_allows_readding);
	tcase_add_test(tc, test_churn_keeps_membership_exact);
	tcase_add_test(tc, test_a_key_keeps_its_smallest_tag);
	suite_add_tcase(s, tc);
	return s;
}
