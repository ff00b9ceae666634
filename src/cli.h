/*
 * cli: the command line, parsed into options. It prints usage and version
 * text but runs nothing; main decides what each mode does.
 */
#ifndef ROLLUPD_CLI_H
#define ROLLUPD_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum cli_mode {
	CLI_DAEMON,
	CLI_CHECK_CONFIG, /* -t */
	CLI_VERIFY,       /* --verify NAME */
	CLI_RECONCILE,    /* --reconcile NAME */
	CLI_LIST,         /* --list */
	CLI_DROP_SLOT,    /* --drop-slot */
	CLI_STATUS,       /* --status [--json] */
	CLI_VERSION,      /* -V */
	CLI_HELP,         /* -h */
};

struct cli_options {
	enum cli_mode mode;
	const char *config_path; /* -c, or the default */
	bool config_given;
	const char *conninfo; /* -d, or NULL */
	bool foreground;      /* -f */
	const char *rollup;   /* for --verify / --reconcile */
	bool json;            /* --json: --status for scripts */
};

/* 0 on success; -1 with a message in `err` on a usage error (exit 64). */
int cli_parse(int argc, char **argv, struct cli_options *out, char *err, size_t errlen);
void cli_usage(FILE *out);

#endif
