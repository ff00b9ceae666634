/*
 * The Check summary line of a suite run ("100%: Checks: 59, Failures: 0,
 * Errors: 0"), appended to $ROLLUPD_CHECK_SUMMARY when it is set: make
 * distcheck deletes its build tree and the suites' logs with it, and
 * scripts/check prints these lines from there.
 */
#ifndef ROLLUPD_CHECK_SUMMARY_H
#define ROLLUPD_CHECK_SUMMARY_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

static inline void check_summary_append(SRunner *sr, const char *suite)
{
	const char *path = getenv("ROLLUPD_CHECK_SUMMARY");
	FILE *f = path && path[0] ? fopen(path, "a") : NULL;
	if (f == NULL)
		return;
	int run = srunner_ntests_run(sr), failed = srunner_ntests_failed(sr);
	fprintf(f, "%s: %d%%: Checks: %d, Failures: %d\n", suite, run > 0 ? 100 * (run - failed) / run : 0, run,
	        failed);
	fclose(f);
}

#endif
