/*
 * catalog: turn rows of rollupd.rollup/rollupd.channel into validated,
 * quoted SQL. Names come from the database, so they are checked here before
 * they are ever put into SQL text; keys never are (they travel as parameters).
 */
#include "catalog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const char CATALOG_QUERY[] =
    "SELECT r.name, r.key_type, r.reconcile_fn, r.verify_fn, c.channel, c.key_type, c.refresh_fn,"
    /* A catalog from before delivery modes has no such column: notify. */
    " coalesce(to_jsonb(c) ->> 'delivery', 'notify')"
    " FROM rollupd.rollup r LEFT JOIN rollupd.channel c ON c.rollup = r.name"
    " ORDER BY r.name, c.channel";

enum {
	COL_NAME,
	COL_KEY_TYPE,
	COL_RECONCILE,
	COL_VERIFY,
	COL_CHANNEL,
	COL_CHANNEL_KEY_TYPE,
	COL_REFRESH,
	COL_DELIVERY,
	NCOLS
};

static bool part_valid(const char *s, size_t len)
{
	if (len == 0 || len > 63)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

bool sql_name_valid(const char *name)
{
	const char *dot = strchr(name, '.');
	if (dot == NULL)
		return part_valid(name, strlen(name));
	return part_valid(name, (size_t)(dot - name)) && part_valid(dot + 1, strlen(dot + 1));
}

int sql_name_quote(const char *name, char *out, size_t outlen)
{
	const char *dot = strchr(name, '.');
	int n;

	if (!sql_name_valid(name))
		return -1;
	if (dot == NULL)
		n = snprintf(out, outlen, "\"%s\"", name);
	else
		n = snprintf(out, outlen, "\"%.*s\".\"%s\"", (int)(dot - name), name, dot + 1);
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

char *sql_array_literal(char *const *keys, size_t n, enum key_type type)
{
	size_t len = 3;
	for (size_t i = 0; i < n; i++)
		len += 2 * strlen(keys[i]) + 3;

	char *out = malloc(len);
	if (out == NULL)
		return NULL;
	char *p = out;
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			*p++ = ',';
		if (type == KEY_BIGINT) {
			size_t k = strlen(keys[i]);
			memcpy(p, keys[i], k);
			p += k;
			continue;
		}
		*p++ = '"';
		for (const char *s = keys[i]; *s; s++) {
			if (*s == '"' || *s == '\\')
				*p++ = '\\';
			*p++ = *s;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

/* asprintf with the failure mapped to NULL. */
static char *sql_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *sql_printf(const char *fmt, ...)
{
	char *out = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&out, fmt, ap) < 0)
		out = NULL;
	va_end(ap);
	return out;
}

static void rollup_free(struct catalog_rollup *r)
{
	free(r->name);
	free(r->reconcile_sql);
	free(r->verify_sql);
}

static void channel_free(struct catalog_channel *c)
{
	free(c->name);
	free(c->rollup);
	free(c->refresh_sql);
}

void catalog_free(struct catalog *cat)
{
	for (size_t i = 0; cat->rollups != NULL && i < cat->n_rollups; i++)
		rollup_free(&cat->rollups[i]);
	for (size_t i = 0; cat->channels != NULL && i < cat->n_channels; i++)
		channel_free(&cat->channels[i]);
	free(cat->rollups);
	free(cat->channels);
	memset(cat, 0, sizeof(*cat));
}

/* Validate one catalog row's rollup part; 0 and `out` filled, or -1 logged. */
static int build_rollup(const PGresult *res, int row, struct catalog_rollup *out)
{
	const char *name = PQgetvalue(res, row, COL_NAME);
	const char *key_type = PQgetvalue(res, row, COL_KEY_TYPE);
	char reconcile[140], verify[140];

	if (!sql_name_valid(name) || strchr(name, '.') != NULL) {
		log_error("catalog: skipping rollup with invalid name rollup=\"%s\"", name);
		return -1;
	}
	if (key_type_parse(key_type, &out->key_type) != 0) {
		log_error("catalog: skipping rollup rollup=%s error=\"key_type '%s' is not bigint or text\"", name,
		          key_type);
		return -1;
	}
	if (sql_name_quote(PQgetvalue(res, row, COL_RECONCILE), reconcile, sizeof(reconcile)) != 0 ||
	    sql_name_quote(PQgetvalue(res, row, COL_VERIFY), verify, sizeof(verify)) != 0) {
		log_error("catalog: skipping rollup rollup=%s error=\"invalid reconcile or verify function name\"",
		          name);
		return -1;
	}
	const char *type = key_type_name(out->key_type);
	out->name = strdup(name);
	out->reconcile_sql = sql_printf("SELECT r.last_key::text, r.fixed"
	                                " FROM %s($1::%s, $2::integer) AS r(last_key, fixed)",
	                                reconcile, type);
	out->verify_sql = sql_printf("SELECT v.last_key::text, coalesce(cardinality(v.mismatched), 0),"
	                             " array_to_string(v.mismatched[1:20], ',')"
	                             " FROM %s($1::%s, $2::integer) AS v(last_key, mismatched)",
	                             verify, type);
	if (out->name == NULL || out->reconcile_sql == NULL || out->verify_sql == NULL) {
		rollup_free(out);
		return -1;
	}
	return 0;
}

static int build_channel(const PGresult *res, int row, const char *rollup, struct catalog_channel *out)
{
	const char *name = PQgetvalue(res, row, COL_CHANNEL);
	char refresh[140];

	if (!sql_name_valid(name) || strchr(name, '.') != NULL) {
		log_error("catalog: skipping channel with invalid name rollup=%s channel=\"%s\"", rollup, name);
		return -1;
	}
	if (key_type_parse(PQgetvalue(res, row, COL_CHANNEL_KEY_TYPE), &out->key_type) != 0) {
		log_error("catalog: skipping channel rollup=%s channel=%s error=\"key_type is not bigint or text\"",
		          rollup, name);
		return -1;
	}
	if (sql_name_quote(PQgetvalue(res, row, COL_REFRESH), refresh, sizeof(refresh)) != 0) {
		log_error("catalog: skipping channel rollup=%s channel=%s error=\"invalid refresh function name\"",
		          rollup, name);
		return -1;
	}
	out->name = strdup(name);
	out->rollup = strdup(rollup);
	/* Through rollupd.refresh_keys(), which isolates poison keys; the
	 * channel name is a validated identifier, safe as a literal. */
	out->refresh_sql =
	    sql_printf("SELECT written, poisoned, detail FROM rollupd.refresh_keys('%s', $1::text[])", name);
	out->queue = strcmp(PQgetvalue(res, row, COL_DELIVERY), "queue") == 0;
	if (out->name == NULL || out->rollup == NULL || out->refresh_sql == NULL) {
		channel_free(out);
		return -1;
	}
	return 0;
}

int catalog_from_result(const PGresult *res, const struct config *cfg, struct catalog *out)
{
	int rows = PQntuples(res);
	*out = (struct catalog){0};

	if (PQnfields(res) != NCOLS) {
		log_error("catalog: unexpected shape columns=%d expected=%d", PQnfields(res), NCOLS);
		return -1;
	}
	out->rollups = calloc((size_t)rows + 1, sizeof(*out->rollups));
	out->channels = calloc((size_t)rows + 1, sizeof(*out->channels));
	if (out->rollups == NULL || out->channels == NULL) {
		catalog_free(out);
		return -1;
	}

	for (int row = 0; row < rows;) {
		const char *name = PQgetvalue(res, row, COL_NAME);
		int next = row;
		while (next < rows && strcmp(PQgetvalue(res, next, COL_NAME), name) == 0)
			next++;
		if (config_wants_rollup(cfg, name) && build_rollup(res, row, &out->rollups[out->n_rollups]) == 0) {
			out->n_rollups++;
			for (int r = row; r < next; r++) {
				if (PQgetisnull(res, r, COL_CHANNEL))
					continue;
				if (build_channel(res, r, name, &out->channels[out->n_channels]) == 0)
					out->n_channels++;
			}
		}
		row = next;
	}

	for (size_t i = 0; cfg->rollups != NULL && i < cfg->n_rollups; i++)
		if (catalog_find_rollup(out, cfg->rollups[i]) == NULL)
			log_warning("catalog: rollup named in the config is not registered (or invalid) rollup=%s",
			            cfg->rollups[i]);
	return 0;
}

const struct catalog_rollup *catalog_find_rollup(const struct catalog *cat, const char *name)
{
	for (size_t i = 0; i < cat->n_rollups; i++)
		if (cat->rollups[i].name != NULL && strcmp(cat->rollups[i].name, name) == 0)
			return &cat->rollups[i];
	return NULL;
}

const struct catalog_channel *catalog_find_channel(const struct catalog *cat, const char *name)
{
	for (size_t i = 0; i < cat->n_channels; i++)
		if (cat->channels[i].name != NULL && strcmp(cat->channels[i].name, name) == 0)
			return &cat->channels[i];
	return NULL;
}

char *catalog_listen_sql(const struct catalog *cat)
{
	size_t len = 16;
	for (size_t i = 0; i < cat->n_channels; i++)
		len += strlen(cat->channels[i].name) + 12;

	char *sql = malloc(len);
	if (sql == NULL)
		return NULL;
	size_t off = (size_t)snprintf(sql, len, "UNLISTEN *;");
	for (size_t i = 0; i < cat->n_channels; i++)
		off += (size_t)snprintf(sql + off, len - off, " LISTEN \"%s\";", cat->channels[i].name);
	return sql;
}
