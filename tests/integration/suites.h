/* The integration suites; each test file contributes one. */
#ifndef ROLLUPD_TEST_INTEGRATION_SUITES_H
#define ROLLUPD_TEST_INTEGRATION_SUITES_H

#include <check.h>

Suite *balances_suite(void);
Suite *daemon_suite(void);
Suite *first_delegation_suite(void);
Suite *metrics_suite(void);
Suite *poison_suite(void);
Suite *prometheus_suite(void);
Suite *queue_suite(void);
Suite *faults_suite(void);
Suite *standby_suite(void);
Suite *wal_suite(void);
Suite *upgrade_suite(void);

#endif
