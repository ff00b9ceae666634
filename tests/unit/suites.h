/* The unit suites; each test file contributes one. */
#ifndef ROLLUPD_TEST_SUITES_H
#define ROLLUPD_TEST_SUITES_H

#include <check.h>

Suite *backoff_suite(void);
Suite *batcher_suite(void);
Suite *catalog_suite(void);
Suite *cli_suite(void);
Suite *config_suite(void);
Suite *http_suite(void);
Suite *keyset_suite(void);
Suite *payload_suite(void);
Suite *pgoutput_suite(void);
Suite *queue_suite(void);
Suite *walk_suite(void);

#endif
