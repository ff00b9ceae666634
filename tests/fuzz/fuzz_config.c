/*
 * libFuzzer target: the configuration loader. Each input is written to a
 * file and loaded as rollupd loads its config at start and on SIGHUP. A
 * load either succeeds with values inside the documented ranges or fails
 * with a message; it never crashes, leaks (ASan's leak check) or half-fills.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static char path[] = "/tmp/rollupd-fuzz-config-XXXXXX";
static int fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fd = mkstemp(path);
	if (fd < 0)
		abort();
	unlink(path); /* reached through /proc/self/fd, gone when the fuzzer exits */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	log_set_level(LOG_LEVEL_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	char err[512] = "";
	struct config *cfg = config_load(path, NULL, err, sizeof(err));
	if (cfg != NULL) {
		if (cfg->conninfo == NULL || cfg->pool_size < 1 || cfg->batch_max_keys < 1 ||
		    cfg->retry_max_ms < cfg->retry_min_ms)
			abort();
		config_free(cfg);
	} else if (err[0] == '\0') {
		abort();
	}
	return 0;
}
