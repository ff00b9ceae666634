/*
 * config: load and validate rollupd.conf (libconfig syntax) into a struct.
 * Every key has a default except database.conninfo; unknown keys, wrong
 * types and out-of-range values are errors naming the file and line. It does
 * not apply anything: the caller decides what a new config changes.
 */
#ifndef ROLLUPD_CONFIG_H
#define ROLLUPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

/* ROLLUPD_SYSCONFDIR is configure's sysconfdir (Makefile.am). */
#define CONFIG_DEFAULT_PATH ROLLUPD_SYSCONFDIR "/rollupd/rollupd.conf"

struct config {
	char *path;

	/* database */
	char *conninfo;
	int pool_size;
	int connect_timeout_ms;
	int statement_timeout_ms;
	int ping_interval_ms;
	int connect_retries;
	int reconnect_min_ms;
	int reconnect_max_ms;

	/* batch */
	int batch_max_keys;
	int batch_window_ms;
	int batch_max_pending_keys;
	int retry_min_ms;
	int retry_max_ms;

	/* reconcile */
	int reconcile_chunk_keys;
	bool reconcile_on_connect;
	int reconcile_interval_s;

	/* queue */
	int queue_poll_ms;
	int queue_stats_interval_s;
	int queue_parallel;

	/* wal: the WAL delivery mode */
	char *wal_slot;
	int wal_status_interval_ms;
	int wal_stats_interval_s;
	int wal_visibility_wait_ms;

	/* metrics: HTTP /metrics, /healthz, /livez; NULL = off */
	char *metrics_listen;

	/* standby: active/standby pairs through one advisory lock */
	bool standby_enabled;
	int standby_lock_id;
	int standby_poll_ms;

	/* rollups: NULL means every rollup registered in the database */
	char **rollups;
	size_t n_rollups;

	/* log */
	enum log_level log_level;
	int log_summary_interval_s;

	/* daemon */
	int shutdown_timeout_ms;
	char *pidfile;
};

/* Every default, no conninfo and no path yet. Free with config_free(). */
struct config *config_new(void);

/*
 * Load `path`. `conninfo_override`, when not NULL, replaces
 * database.conninfo (the -d option). On error returns NULL and leaves
 * "FILE:LINE: message" (or "FILE: message") in `err`.
 */
struct config *config_load(const char *path, const char *conninfo_override, char *err, size_t errlen);

/* Every default, with `conninfo`: for -d without a config file. NULL with
 * `err` set when `conninfo` does not parse. */
struct config *config_defaults(const char *conninfo, char *err, size_t errlen);

/* NULL is fine. */
void config_free(struct config *cfg);

/* True when the rollup should run under this config's `rollups` list. */
bool config_wants_rollup(const struct config *cfg, const char *name);

#endif
