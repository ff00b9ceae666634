/*
 * log: leveled, one-line log records, to stderr (foreground) or syslog.
 * Records read "LEVEL message key=value ..."; callers put the facts as key=value.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>

static enum log_level current_level = LOG_LEVEL_INFO;
static bool use_stderr = true;
static char last_error[2048];

static const char *const level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARNING] = "warning",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *log_level_name(enum log_level level)
{
	return level_names[level];
}

void log_open(bool to_stderr)
{
	use_stderr = to_stderr;
	if (!use_stderr)
		openlog("rollupd", LOG_PID, LOG_DAEMON);
}

void log_set_level(enum log_level level)
{
	current_level = level;
}

const char *log_last_error(void)
{
	return last_error;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const int syslog_priority[] = {
	    [LOG_LEVEL_ERROR] = LOG_ERR,
	    [LOG_LEVEL_WARNING] = LOG_WARNING,
	    [LOG_LEVEL_INFO] = LOG_INFO,
	    [LOG_LEVEL_DEBUG] = LOG_DEBUG,
	};
	char line[2048];
	va_list ap;

	if (level > current_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (level == LOG_LEVEL_ERROR)
		snprintf(last_error, sizeof(last_error), "%s", line);

	if (!use_stderr) {
		syslog(syslog_priority[level], "%s %s", level_names[level], line);
		return;
	}

	struct timeval tv;
	struct tm tm;
	char stamp[32];
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03dZ %s %s\n", stamp, (int)(tv.tv_usec / 1000), level_names[level], line);
}
