/*
 * log: leveled, one-line log records, to stderr (foreground) or syslog.
 * Not a metrics sink: counters live with the modules that own them.
 */
#ifndef ROLLUPD_LOG_H
#define ROLLUPD_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Parse "error", "warning", "info" or "debug". 0 on success, -1 otherwise. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

/* Send records to stderr (with timestamps) or to syslog(3) as "rollupd". */
void log_open(bool to_stderr);
void log_set_level(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last error-level record ("" before one): why the process is failing,
 * for a caller that must tell someone who cannot read the log. */
const char *log_last_error(void);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
