/*
 * config: a table of known keys drives defaults, type checks, ranges and the
 * unknown-key check, so adding a key is one line here and one in the
 * documented example file.
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hostport.h"
#include "xalloc.h"

enum value_kind { V_INT, V_BOOL, V_STRING, V_LOG_LEVEL };

struct key_spec {
	const char *section;
	const char *name;
	enum value_kind kind;
	size_t offset;
	long long min, max;
	long long default_int;   /* V_INT, V_BOOL */
	const char *default_str; /* V_STRING, V_LOG_LEVEL */
};

#define INT_KEY(sec, key, field, lo, hi, dflt)                                                                         \
	{                                                                                                              \
		sec, key, V_INT, offsetof(struct config, field), lo, hi, dflt, NULL                                    \
	}
#define BOOL_KEY(sec, key, field, dflt)                                                                                \
	{                                                                                                              \
		sec, key, V_BOOL, offsetof(struct config, field), 0, 1, dflt, NULL                                     \
	}
#define STR_KEY(sec, key, field, dflt)                                                                                 \
	{                                                                                                              \
		sec, key, V_STRING, offsetof(struct config, field), 0, 0, 0, dflt                                      \
	}

static const struct key_spec keys[] = {
    STR_KEY("database", "conninfo", conninfo, NULL),
    INT_KEY("database", "pool_size", pool_size, 1, 64, 2),
    INT_KEY("database", "connect_timeout_ms", connect_timeout_ms, 100, 600000, 5000),
    INT_KEY("database", "statement_timeout_ms", statement_timeout_ms, 0, 86400000, 60000),
    INT_KEY("database", "ping_interval_ms", ping_interval_ms, 0, 3600000, 10000),
    INT_KEY("database", "connect_retries", connect_retries, 0, 1000000, 5),
    INT_KEY("database", "reconnect_min_ms", reconnect_min_ms, 1, 600000, 100),
    INT_KEY("database", "reconnect_max_ms", reconnect_max_ms, 1, 3600000, 10000),
    INT_KEY("batch", "max_keys", batch_max_keys, 1, 1000000, 10000),
    INT_KEY("batch", "window_ms", batch_window_ms, 0, 600000, 20),
    INT_KEY("batch", "max_pending_keys", batch_max_pending_keys, 1, 100000000, 100000),
    INT_KEY("batch", "retry_min_ms", retry_min_ms, 1, 600000, 200),
    INT_KEY("batch", "retry_max_ms", retry_max_ms, 1, 3600000, 30000),
    INT_KEY("reconcile", "chunk_keys", reconcile_chunk_keys, 1, 1000000, 1000),
    BOOL_KEY("reconcile", "on_connect", reconcile_on_connect, 1),
    INT_KEY("reconcile", "interval_s", reconcile_interval_s, 0, 31536000, 0),
    INT_KEY("queue", "poll_ms", queue_poll_ms, 0, 3600000, 1000),
    INT_KEY("queue", "stats_interval_s", queue_stats_interval_s, 0, 86400, 10),
    INT_KEY("queue", "parallel", queue_parallel, 1, 64, 2),
    STR_KEY("wal", "slot", wal_slot, "rollupd"),
    INT_KEY("wal", "status_interval_ms", wal_status_interval_ms, 10, 60000, 1000),
    INT_KEY("wal", "stats_interval_s", wal_stats_interval_s, 0, 86400, 10),
    INT_KEY("wal", "visibility_wait_ms", wal_visibility_wait_ms, 0, 600000, 1000),
    {"log", "level", V_LOG_LEVEL, offsetof(struct config, log_level), 0, 0, 0, "info"},
    INT_KEY("log", "summary_interval_s", log_summary_interval_s, 0, 86400, 60),
    STR_KEY("metrics", "listen", metrics_listen, NULL),
    BOOL_KEY("standby", "enabled", standby_enabled, 0),
    INT_KEY("standby", "lock_id", standby_lock_id, 0, 2147483647, 1),
    INT_KEY("standby", "poll_ms", standby_poll_ms, 10, 600000, 1000),
    INT_KEY("daemon", "shutdown_timeout_ms", shutdown_timeout_ms, 0, 3600000, 10000),
    STR_KEY("daemon", "pidfile", pidfile, NULL),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const sections[] = {"database", "batch",   "reconcile", "queue", "wal",
                                       "standby",  "metrics", "log",       "daemon"};

static void set_error(char *err, size_t errlen, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void set_error(char *err, size_t errlen, const char *path, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(err, errlen, "%s:%d: %s", path, line, msg);
	else
		snprintf(err, errlen, "%s: %s", path, msg);
}

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	default:
		return "an unknown type";
	}
}

static void apply_defaults(struct config *cfg)
{
	for (size_t i = 0; i < NKEYS; i++) {
		char *field = (char *)cfg + keys[i].offset;
		switch (keys[i].kind) {
		case V_INT:
			*(int *)field = (int)keys[i].default_int;
			break;
		case V_BOOL:
			*(bool *)field = keys[i].default_int != 0;
			break;
		case V_STRING:
			*(char **)field = xstrdup(keys[i].default_str);
			break;
		case V_LOG_LEVEL:
			log_level_parse(keys[i].default_str, (enum log_level *)field);
			break;
		}
	}
}

static const struct key_spec *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static int load_value(const struct key_spec *spec, const config_setting_t *s, struct config *cfg, const char *path,
                      char *err, size_t errlen)
{
	char *field = (char *)cfg + spec->offset;
	int type = config_setting_type(s);
	int line = config_setting_source_line(s);

	switch (spec->kind) {
	case V_INT: {
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
			set_error(err, errlen, path, line, "%s.%s must be an integer, not %s", spec->section,
			          spec->name, type_name(type));
			return -1;
		}
		long long v = config_setting_get_int64(s);
		if (v < spec->min || v > spec->max) {
			set_error(err, errlen, path, line, "%s.%s = %lld is out of range [%lld, %lld]", spec->section,
			          spec->name, v, spec->min, spec->max);
			return -1;
		}
		*(int *)field = (int)v;
		return 0;
	}
	case V_BOOL:
		if (type != CONFIG_TYPE_BOOL) {
			set_error(err, errlen, path, line, "%s.%s must be a boolean (true or false), not %s",
			          spec->section, spec->name, type_name(type));
			return -1;
		}
		*(bool *)field = config_setting_get_bool(s) != 0;
		return 0;
	case V_STRING:
	case V_LOG_LEVEL: {
		if (type != CONFIG_TYPE_STRING) {
			set_error(err, errlen, path, line, "%s.%s must be a string, not %s", spec->section, spec->name,
			          type_name(type));
			return -1;
		}
		const char *v = config_setting_get_string(s);
		if (spec->kind == V_LOG_LEVEL) {
			if (log_level_parse(v, (enum log_level *)field) != 0) {
				set_error(err, errlen, path, line,
				          "%s.%s = \"%s\" is not one of error, warning, info, debug", spec->section,
				          spec->name, v);
				return -1;
			}
			return 0;
		}
		if (v[0] == '\0') {
			set_error(err, errlen, path, line, "%s.%s must not be empty", spec->section, spec->name);
			return -1;
		}
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		return 0;
	}
	}
	return -1;
}

static int load_section(const config_setting_t *group, struct config *cfg, const char *path, char *err, size_t errlen)
{
	const char *section = config_setting_name(group);

	if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
		set_error(err, errlen, path, config_setting_source_line(group), "'%s' must be a group { ... }, not %s",
		          section, type_name(config_setting_type(group)));
		return -1;
	}
	for (int i = 0; i < config_setting_length(group); i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const struct key_spec *spec = find_key(section, config_setting_name(s));
		if (spec == NULL) {
			set_error(err, errlen, path, config_setting_source_line(s), "unknown setting '%s.%s'", section,
			          config_setting_name(s));
			return -1;
		}
		if (load_value(spec, s, cfg, path, err, errlen) != 0)
			return -1;
	}
	return 0;
}

static int load_rollups(const config_setting_t *list, struct config *cfg, const char *path, char *err, size_t errlen)
{
	int type = config_setting_type(list);
	int n = config_setting_length(list);

	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
		set_error(err, errlen, path, config_setting_source_line(list),
		          "'rollups' must be an array of names like [\"eth_user_balances\"], not %s", type_name(type));
		return -1;
	}
	cfg->rollups = xcalloc((size_t)n + 1, sizeof(char *));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING || config_setting_get_string(e)[0] == '\0') {
			set_error(err, errlen, path, config_setting_source_line(list),
			          "'rollups' entry %d must be a non-empty string", i + 1);
			return -1;
		}
		cfg->rollups[cfg->n_rollups++] = xstrdup(config_setting_get_string(e));
	}
	return 0;
}

static bool is_section(const char *name)
{
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (strcmp(sections[i], name) == 0)
			return true;
	return false;
}

static int check_pairs(const struct config *cfg, const char *path, char *err, size_t errlen)
{
	if (cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
		set_error(err, errlen, path, 0,
		          "database.reconnect_max_ms (%d) is below database.reconnect_min_ms (%d)",
		          cfg->reconnect_max_ms, cfg->reconnect_min_ms);
		return -1;
	}
	if (cfg->retry_max_ms < cfg->retry_min_ms) {
		set_error(err, errlen, path, 0, "batch.retry_max_ms (%d) is below batch.retry_min_ms (%d)",
		          cfg->retry_max_ms, cfg->retry_min_ms);
		return -1;
	}
	return 0;
}

/*
 * database.conninfo must parse (PQconninfoParse: a misspelt keyword or an
 * unclosed quote is reported at -t, with the line, not at connect time), and
 * a password in it is refused while others may read the file (group is
 * allowed: the service's group), like ssh with a private key.
 */
static int check_conninfo(const char *conninfo, bool from_file, const char *path, int line, char *err, size_t errlen)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
	bool has_password = false;
	if (opts == NULL) {
		char msg[256];
		size_t n = perr ? strcspn(perr, "\n") : 0;
		snprintf(msg, sizeof(msg), "%.*s", (int)n, perr ? perr : "out of memory");
		PQfreemem(perr);
		if (from_file)
			set_error(err, errlen, path, line,
			          "database.conninfo is not a valid libpq connection string: %s", msg);
		else
			snprintf(err, errlen, "-d: not a valid libpq connection string: %s", msg);
		return -1;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0')
			has_password = true;
	PQconninfoFree(opts);
	struct stat st;
	if (!from_file || !has_password || stat(path, &st) != 0 || (st.st_mode & S_IROTH) == 0)
		return 0;
	set_error(err, errlen, path, line,
	          "database.conninfo holds a password and the file is readable by others (mode %04o):"
	          " chmod o-r it, or keep the password in ~/.pgpass or a service file",
	          (unsigned)(st.st_mode & 07777));
	return -1;
}

/* libconfig says only "syntax error" for the most natural mistake, a dotted
 * name ("database.conninfo = ..."): name the form it wants. */
static const char *syntax_hint(const char *path, int line)
{
	FILE *f = fopen(path, "r");
	char buf[1024];
	const char *hint = "";
	if (f == NULL || line <= 0) {
		if (f)
			fclose(f);
		return hint;
	}
	for (int i = 1; fgets(buf, sizeof(buf), f) != NULL; i++) {
		if (i != line)
			continue;
		const char *p = buf + strspn(buf, " \t");
		size_t word = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
		if (word > 0 && p[word] == '.' && strspn(p + word + 1, "abcdefghijklmnopqrstuvwxyz_") > 0)
			hint = " (a dotted name is not libconfig syntax: write the group form,"
			       " database = { conninfo = \"dbname=app\"; };)";
		break;
	}
	fclose(f);
	return hint;
}

struct config *config_new(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	apply_defaults(cfg);
	return cfg;
}

struct config *config_load(const char *path, const char *conninfo_override, char *err, size_t errlen)
{
	config_t lc;
	int rc = -1;
	struct config *out = config_new();

	out->path = xstrdup(path);

	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			set_error(err, errlen, path, 0, "cannot read file: %s", strerror(errno));
		else
			set_error(err, errlen, config_error_file(&lc) ? config_error_file(&lc) : path,
			          config_error_line(&lc), "syntax error: %s%s", config_error_text(&lc),
			          syntax_hint(config_error_file(&lc) ? config_error_file(&lc) : path,
			                      config_error_line(&lc)));
		goto done;
	}

	const config_setting_t *root = config_root_setting(&lc);
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		if (strcmp(name, "rollups") == 0) {
			if (load_rollups(s, out, path, err, errlen) != 0)
				goto done;
		} else if (is_section(name)) {
			if (load_section(s, out, path, err, errlen) != 0)
				goto done;
		} else {
			set_error(err, errlen, path, config_setting_source_line(s), "unknown setting '%s'", name);
			goto done;
		}
	}

	if (conninfo_override != NULL) {
		free(out->conninfo);
		out->conninfo = xstrdup(conninfo_override);
	}
	if (out->conninfo == NULL) {
		set_error(err, errlen, path, 0, "database.conninfo is required (or pass -d CONNINFO)");
		goto done;
	}
	if (check_pairs(out, path, err, errlen) != 0)
		goto done;
	/* A replication slot's name: lower-case letters, digits and underscores. */
	if (strlen(out->wal_slot) > 63 ||
	    strspn(out->wal_slot, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(out->wal_slot)) {
		const config_setting_t *ws = config_lookup(&lc, "wal.slot");
		set_error(err, errlen, path, ws ? config_setting_source_line(ws) : 0,
		          "wal.slot \"%s\" is not a replication slot name (lower-case letters, digits, _; at most 63)",
		          out->wal_slot);
		goto done;
	}
	char host[256], port[16];
	if (out->metrics_listen != NULL &&
	    hostport_parse(out->metrics_listen, host, sizeof(host), port, sizeof(port)) != 0) {
		set_error(err, errlen, path, 0,
		          "metrics.listen \"%s\" is not HOST:PORT (\"127.0.0.1:9187\", \"[::1]:9187\")",
		          out->metrics_listen);
		goto done;
	}
	const config_setting_t *ci = config_lookup(&lc, "database.conninfo");
	if (check_conninfo(out->conninfo, conninfo_override == NULL, path, ci ? config_setting_source_line(ci) : 0, err,
	                   errlen) != 0)
		goto done;
	rc = 0;
done:
	config_destroy(&lc);
	if (rc != 0) {
		config_free(out);
		return NULL;
	}
	return out;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_rollups; i++)
		free(cfg->rollups[i]);
	free(cfg->rollups);
	free(cfg->conninfo);
	free(cfg->pidfile);
	free(cfg->metrics_listen);
	free(cfg->wal_slot);
	free(cfg->path);
	free(cfg);
}

bool config_wants_rollup(const struct config *cfg, const char *name)
{
	if (cfg->rollups == NULL)
		return true;
	for (size_t i = 0; i < cfg->n_rollups; i++)
		if (strcmp(cfg->rollups[i], name) == 0)
			return true;
	return false;
}

struct config *config_defaults(const char *conninfo, char *err, size_t errlen)
{
	struct config *out = config_new();
	out->path = xstrdup("(built-in defaults)");
	out->conninfo = xstrdup(conninfo);
	if (check_conninfo(conninfo, false, out->path, 0, err, errlen) != 0) {
		config_free(out);
		return NULL;
	}
	return out;
}
