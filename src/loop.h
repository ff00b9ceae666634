/*
 * loop: the daemon's libev loop and its signals. SIGHUP re-reads the config
 * (a bad file keeps the old one), SIGTERM/SIGINT stop gracefully; all as loop
 * events, so no work happens in a raw signal handler.
 */
#ifndef ROLLUPD_LOOP_H
#define ROLLUPD_LOOP_H

#include "config.h"

struct loop_options {
	const char *config_path;       /* re-read on SIGHUP; NULL when running on defaults */
	const char *conninfo_override; /* -d, re-applied on every reload */
	void (*on_ready)(void *arg);   /* first time listening and caught up */
	void *arg;
};

/* Run the daemon until it stops; takes ownership of `cfg`. Returns the exit code. */
int loop_run(struct config *cfg, const struct loop_options *opts);

#endif
