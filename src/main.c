/*
 * main: parse the command line, load the config, pick the mode, and for the
 * daemon detach (unless -f) and run the loop. Wiring only; the only place
 * that decides the exit code.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "daemonize.h"
#include "log.h"
#include "loop.h"
#include "oneshot.h"
#include "xalloc.h"

/* The daemon is up: the parent waiting in daemonize_detach() may exit 0. */
static void report_ready(void *arg)
{
	(void)arg;
	daemonize_report(0, NULL);
}

/* Load the config named by the options; -d alone may run on the defaults. */
static struct config *load_config(const struct cli_options *o)
{
	char err[1024];
	struct config *cfg;

	if (!o->config_given && o->conninfo != NULL && access(o->config_path, F_OK) != 0)
		cfg = config_defaults(o->conninfo, err, sizeof(err));
	else
		cfg = config_load(o->config_path, o->conninfo, err, sizeof(err));
	if (cfg == NULL)
		fprintf(stderr, "rollupd: %s\n", err);
	return cfg;
}

int main(int argc, char **argv)
{
	struct cli_options o;
	char err[256];

	if (cli_parse(argc, argv, &o, err, sizeof(err)) != 0) {
		fprintf(stderr, "rollupd: %s\n", err);
		cli_usage(stderr);
		return EX_USAGE;
	}
	if (o.mode == CLI_HELP) {
		cli_usage(stdout);
		return EX_OK;
	}
	if (o.mode == CLI_VERSION) {
		printf("rollupd %s\n", PACKAGE_VERSION);
		return EX_OK;
	}

	struct config *cfg = load_config(&o);
	if (cfg == NULL)
		return EX_CONFIG;
	log_set_level(cfg->log_level);

	int code;
	switch (o.mode) {
	case CLI_CHECK_CONFIG:
		printf("rollupd: configuration %s is valid\n", cfg->path);
		code = EX_OK;
		break;
	case CLI_LIST:
		code = oneshot_list(cfg);
		break;
	case CLI_VERIFY:
		code = oneshot_verify(cfg, o.rollup);
		break;
	case CLI_RECONCILE:
		code = oneshot_reconcile(cfg, o.rollup);
		break;
	case CLI_DROP_SLOT:
		code = oneshot_drop_slot(cfg);
		break;
	case CLI_STATUS:
		code = oneshot_status(cfg, o.json);
		break;
	default: {
		/* Detaching changes directory to /: SIGHUP must still find the file. */
		char config_abs[PATH_MAX];
		if (!o.foreground && o.config_path && realpath(o.config_path, config_abs) != NULL)
			o.config_path = config_abs;
		log_open(o.foreground);
		if (!o.foreground && daemonize_detach() != 0) {
			fprintf(stderr, "rollupd: cannot detach: %s\n", strerror(errno));
			code = EX_OSERR;
			break;
		}
		char *pidfile = xstrdup(cfg->pidfile);
		if (pidfile && pidfile_write(pidfile) != 0)
			log_warning("cannot write pidfile path=%s error=\"%s\"", pidfile, strerror(errno));
		srandom((unsigned)time(NULL) ^ (unsigned)getpid());
		struct loop_options lo = {
		    .config_path = strcmp(cfg->path, "(built-in defaults)") == 0 ? NULL : o.config_path,
		    .conninfo_override = o.conninfo,
		    .on_ready = report_ready,
		};
		code = loop_run(cfg, &lo); /* takes cfg */
		cfg = NULL;
		if (pidfile)
			unlink(pidfile);
		free(pidfile);
		daemonize_report(code, log_last_error()); /* if it stopped before it was ready */
		return code;
	}
	}
	config_free(cfg);
	return code;
}
