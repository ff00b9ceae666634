#include <check.h>

#include "backoff.h"
#include "suites.h"

START_TEST(test_delay_doubles_until_the_cap)
{
	struct backoff b;
	backoff_init(&b, 100, 1000);
	/* With the largest random draw the delay is the ceiling itself. */
	uint32_t expected[] = {100, 200, 400, 800, 1000, 1000};
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		uint32_t half = (expected[i] / 2);
		ck_assert_uint_eq(backoff_next_ms(&b, half), expected[i]);
	}
}
END_TEST

START_TEST(test_jitter_stays_between_half_and_full_ceiling)
{
	struct backoff b;
	backoff_init(&b, 100, 30000);
	for (uint32_t attempt = 0; attempt < 12; attempt++) {
		for (uint32_t r = 0; r < 5000; r += 7) {
			b.attempts = attempt;
			uint64_t ceiling = 100ULL << attempt;
			if (ceiling > 30000)
				ceiling = 30000;
			uint32_t d = backoff_next_ms(&b, r * 2654435761u);
			ck_assert_uint_ge(d, ceiling - ceiling / 2);
			ck_assert_uint_le(d, ceiling);
		}
	}
}
END_TEST

START_TEST(test_reset_returns_to_the_minimum)
{
	struct backoff b;
	backoff_init(&b, 50, 5000);
	for (int i = 0; i < 10; i++)
		backoff_next_ms(&b, 0);
	ck_assert_uint_eq(b.attempts, 10);
	backoff_reset(&b);
	ck_assert_uint_le(backoff_next_ms(&b, 1000), 50);
}
END_TEST

START_TEST(test_many_failures_do_not_overflow)
{
	struct backoff b;
	backoff_init(&b, 1, 60000);
	b.attempts = 4000000000u;
	ck_assert_uint_le(backoff_next_ms(&b, 12345), 60000);
}
END_TEST

Suite *backoff_suite(void)
{
	Suite *s = suite_create("backoff");
	TCase *tc = tcase_create("backoff");
	tcase_add_test(tc, test_delay_doubles_until_the_cap);
	tcase_add_test(tc, test_jitter_stays_between_half_and_full_ceiling);
	tcase_add_test(tc, test_reset_returns_to_the_minimum);
	tcase_add_test(tc, test_many_failures_do_not_overflow);
	suite_add_tcase(s, tc);
	return s;
}
