/* Integration tests: a real PostgreSQL started by tests/run-integration. */
#include <stdlib.h>

#include "../check-summary.h"
#include "suites.h"

int main(void)
{
	SRunner *sr = srunner_create(balances_suite());
	srunner_add_suite(sr, daemon_suite());
	srunner_add_suite(sr, first_delegation_suite());
	srunner_add_suite(sr, queue_suite());
	srunner_add_suite(sr, poison_suite());
	srunner_add_suite(sr, metrics_suite());
	srunner_add_suite(sr, prometheus_suite());
	srunner_add_suite(sr, faults_suite());
	srunner_add_suite(sr, standby_suite());
	srunner_add_suite(sr, wal_suite());
	srunner_add_suite(sr, upgrade_suite());
	srunner_run_all(sr, CK_NORMAL);
	check_summary_append(sr, "integration");
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
