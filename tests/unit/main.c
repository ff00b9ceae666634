/* Unit tests: pure modules, no database. */
#include <stdlib.h>

#include "log.h"
#include "../check-summary.h"
#include "suites.h"

int main(void)
{
	SRunner *sr = srunner_create(backoff_suite());
	srunner_add_suite(sr, batcher_suite());
	srunner_add_suite(sr, catalog_suite());
	srunner_add_suite(sr, cli_suite());
	srunner_add_suite(sr, config_suite());
	srunner_add_suite(sr, http_suite());
	srunner_add_suite(sr, keyset_suite());
	srunner_add_suite(sr, payload_suite());
	srunner_add_suite(sr, pgoutput_suite());
	srunner_add_suite(sr, queue_suite());
	srunner_add_suite(sr, walk_suite());
	log_set_level(LOG_LEVEL_ERROR);
	srunner_run_all(sr, CK_NORMAL);
	check_summary_append(sr, "unit");
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
