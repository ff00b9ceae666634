/*
 * cli: getopt_long over rollupd's options; exactly one mode per run.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

enum { OPT_VERIFY = 256, OPT_RECONCILE, OPT_LIST, OPT_DROP_SLOT, OPT_STATUS, OPT_JSON };

void cli_usage(FILE *out)
{
	fprintf(out, "Usage: rollupd [-c FILE] [-d CONNINFO] [-f]\n"
	             "       rollupd [-c FILE] [-d CONNINFO] -t | --list | --status [--json] | --verify NAME\n"
	             "               | --reconcile NAME | --drop-slot\n"
	             "\n"
	             "Keeps derived PostgreSQL tables fresh: LISTENs for changed keys, batches them\n"
	             "and runs each rollup's refresh function over a pool of connections.\n"
	             "\n"
	             "  -c, --config FILE    configuration file (default " CONFIG_DEFAULT_PATH ")\n"
	             "  -d, --dbname CONNINFO  libpq connection string, overrides database.conninfo\n"
	             "  -f, --foreground     stay in the foreground and log to stderr\n"
	             "  -t, --check-config   check the configuration and exit (0 valid, 78 invalid)\n"
	             "      --list           list the rollups registered in the database\n"
	             "      --status         what rollupd is doing, from the database: exit 0 if all is well,\n"
	             "                       1 if something needs attention (--json: the same for scripts)\n"
	             "      --verify NAME    read-only check of a rollup: exit 0 if no mismatch, 1 otherwise\n"
	             "      --reconcile NAME repair a rollup's derived rows once and print rows fixed\n"
	             "      --drop-slot      drop the WAL mode's replication slot (wal.slot), and the\n"
	             "                       publication when no rollup uses the WAL mode\n"
	             "  -V, --version        print the version\n"
	             "  -h, --help           print this help\n");
}

static int set_mode(struct cli_options *o, enum cli_mode mode, char *err, size_t errlen)
{
	if (o->mode != CLI_DAEMON && o->mode != mode) {
		snprintf(err, errlen,
		         "-t, --list, --status, --verify, --reconcile and --drop-slot are mutually exclusive");
		return -1;
	}
	o->mode = mode;
	return 0;
}

int cli_parse(int argc, char **argv, struct cli_options *o, char *err, size_t errlen)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"dbname", required_argument, NULL, 'd'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"check-config", no_argument, NULL, 't'},
	    {"verify", required_argument, NULL, OPT_VERIFY},
	    {"reconcile", required_argument, NULL, OPT_RECONCILE},
	    {"list", no_argument, NULL, OPT_LIST},
	    {"drop-slot", no_argument, NULL, OPT_DROP_SLOT},
	    {"status", no_argument, NULL, OPT_STATUS},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->config_path = CONFIG_DEFAULT_PATH;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":c:d:ftVh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config_path = optarg;
			o->config_given = true;
			break;
		case 'd':
			o->conninfo = optarg;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 't':
			if (set_mode(o, CLI_CHECK_CONFIG, err, errlen) != 0)
				return -1;
			break;
		case OPT_VERIFY:
		case OPT_RECONCILE:
			if (set_mode(o, c == OPT_VERIFY ? CLI_VERIFY : CLI_RECONCILE, err, errlen) != 0)
				return -1;
			o->rollup = optarg;
			break;
		case OPT_LIST:
			if (set_mode(o, CLI_LIST, err, errlen) != 0)
				return -1;
			break;
		case OPT_DROP_SLOT:
			if (set_mode(o, CLI_DROP_SLOT, err, errlen) != 0)
				return -1;
			break;
		case OPT_STATUS:
			if (set_mode(o, CLI_STATUS, err, errlen) != 0)
				return -1;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case 'V':
			o->mode = CLI_VERSION;
			return 0;
		case 'h':
			o->mode = CLI_HELP;
			return 0;
		case ':':
			snprintf(err, errlen, "option '%s' needs an argument", argv[optind - 1]);
			return -1;
		default:
			snprintf(err, errlen, "unknown option '%s'", argv[optind - 1]);
			return -1;
		}
	}
	if (o->json && o->mode != CLI_STATUS) {
		snprintf(err, errlen, "--json goes with --status");
		return -1;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	return 0;
}
