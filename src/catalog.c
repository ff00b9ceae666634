/*
 * catalog: turn rows of rollupd.rollup, rollupd.channel and rollupd.capture
 * into validated names and statements. Names come from the database, so
 * they are checked here before they are ever put into SQL text; keys never
 * are (they travel as parameters).
 */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sqlname.h"
#include "xalloc.h"

/* One row per (rollup, channel, capture); a rollup without channels or a
 * channel without captures has NULLs on the right. */
const char CATALOG_QUERY[] =
    "SELECT r.name, r.key_type, c.channel, c.key_type, c.refresh_fn, c.delivery,"
    " t.oid, coalesce(format('%I.%I', t.nspname, t.relname), k.source_table), k.key_column, k.filter_column,"
    " k.filter_value, array_to_string(k.watched_columns, ','), array_to_string(k.events, ','),"
    " k.channel IS NOT NULL, (SELECT string_agg(w.slot_name, ',') FROM rollupd.wal_slot w)"
    " FROM rollupd.rollup r"
    " LEFT JOIN rollupd.channel c ON c.rollup = r.name"
    " LEFT JOIN rollupd.capture k ON k.channel = c.channel"
    " LEFT JOIN LATERAL (SELECT rel.oid, ns.nspname, rel.relname FROM pg_catalog.pg_class rel"
    "   JOIN pg_catalog.pg_namespace ns ON ns.oid = rel.relnamespace"
    "   WHERE rel.oid = pg_catalog.to_regclass(k.source_table)) t ON true"
    " ORDER BY r.name, c.channel, k.source_table, k.key_column";

enum {
	COL_NAME,
	COL_KEY_TYPE,
	COL_CHANNEL,
	COL_CHANNEL_KEY_TYPE,
	COL_REFRESH,
	COL_DELIVERY,
	COL_TABLE_OID,
	COL_TABLE,
	COL_KEY_COLUMN,
	COL_FILTER_COLUMN,
	COL_FILTER_VALUE,
	COL_WATCHED,
	COL_EVENTS,
	COL_HAS_CAPTURE,
	COL_WAL_SLOTS,
	NCOLS
};

static const char *const delivery_names[] = {
    [DELIVERY_NOTIFY] = "notify",
    [DELIVERY_QUEUE] = "queue",
    [DELIVERY_WAL] = "wal",
};

const char *delivery_name(enum delivery d)
{
	return delivery_names[d];
}

int delivery_parse(const char *name, enum delivery *out)
{
	for (size_t i = 0; i < DELIVERY_MODES; i++) {
		if (strcmp(name, delivery_names[i]) == 0) {
			*out = (enum delivery)i;
			return 0;
		}
	}
	return -1;
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

static void capture_free(struct catalog_capture *k)
{
	free(k->channel);
	free(k->table);
	free(k->key_column);
	free(k->filter_column);
	free(k->filter_value);
	for (size_t i = 0; i < k->n_watched; i++)
		free(k->watched[i]);
	free(k->watched);
}

void catalog_free(struct catalog *cat)
{
	for (size_t i = 0; cat->rollups != NULL && i < cat->n_rollups; i++)
		rollup_free(&cat->rollups[i]);
	for (size_t i = 0; cat->channels != NULL && i < cat->n_channels; i++)
		channel_free(&cat->channels[i]);
	for (size_t i = 0; cat->captures != NULL && i < cat->n_captures; i++)
		capture_free(&cat->captures[i]);
	free(cat->wal_slots);
	free(cat->rollups);
	free(cat->channels);
	free(cat->captures);
	memset(cat, 0, sizeof(*cat));
}

/* Validate one catalog row's rollup part; 0 and `out` filled, or -1 logged.
 * The name is a validated identifier: safe as a literal in the statements. */
static int build_rollup(const PGresult *res, int row, struct catalog_rollup *out)
{
	const char *name = PQgetvalue(res, row, COL_NAME);
	const char *key_type = PQgetvalue(res, row, COL_KEY_TYPE);

	if (!sql_ident_valid(name)) {
		log_error("catalog: skipping rollup with invalid name rollup=\"%s\"", name);
		return -1;
	}
	if (key_type_parse(key_type, &out->key_type) != 0) {
		log_error("catalog: skipping rollup rollup=%s error=\"key_type '%s' is not bigint or text\"", name,
		          key_type);
		return -1;
	}
	out->name = xstrdup(name);
	out->reconcile_sql =
	    xasprintf("SELECT r.last_key, r.fixed FROM rollupd.reconcile_chunk('%s', $1, $2::integer) r", name);
	out->verify_sql = xasprintf("SELECT v.last_key, coalesce(cardinality(v.mismatched), 0),"
	                            " array_to_string(v.mismatched[1:20], ',')"
	                            " FROM rollupd.verify_chunk('%s', $1, $2::integer) v",
	                            name);
	return 0;
}

static int build_channel(const PGresult *res, int row, const char *rollup, struct catalog_channel *out)
{
	const char *name = PQgetvalue(res, row, COL_CHANNEL);
	const char *delivery = PQgetvalue(res, row, COL_DELIVERY);

	if (!sql_ident_valid(name)) {
		log_error("catalog: skipping channel with invalid name rollup=%s channel=\"%s\"", rollup, name);
		return -1;
	}
	if (key_type_parse(PQgetvalue(res, row, COL_CHANNEL_KEY_TYPE), &out->key_type) != 0) {
		log_error("catalog: skipping channel rollup=%s channel=%s error=\"key_type is not bigint or text\"",
		          rollup, name);
		return -1;
	}
	if (!sql_name_valid(PQgetvalue(res, row, COL_REFRESH))) {
		log_error("catalog: skipping channel rollup=%s channel=%s error=\"invalid refresh function name\"",
		          rollup, name);
		return -1;
	}
	if (delivery_parse(delivery, &out->delivery) != 0) {
		log_error("catalog: skipping channel rollup=%s channel=%s error=\"unknown delivery '%s'\"", rollup,
		          name, delivery);
		return -1;
	}
	out->name = xstrdup(name);
	out->rollup = xstrdup(rollup);
	/* Through rollupd.refresh_keys(), which isolates poison keys; the
	 * channel name is a validated identifier, safe as a literal. */
	out->refresh_sql =
	    xasprintf("SELECT written, poisoned, detail FROM rollupd.refresh_keys('%s', $1::text[])", name);
	return 0;
}

/* "a,b,c" into an array of validated names; -1 if one is not a name. */
static int split_names(const char *list, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (list[0] == '\0')
		return 0;
	size_t cap = 1;
	for (const char *p = list; *p; p++)
		cap += *p == ',';
	*out = xcalloc(cap, sizeof(char *));
	for (const char *p = list;;) {
		size_t len = strcspn(p, ",");
		char *name = xstrndup(p, len);
		(*out)[(*n)++] = name;
		if (!sql_ident_valid(name))
			return -1;
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
}

static int build_capture(const PGresult *res, int row, const char *channel, struct catalog_capture *out)
{
	const char *table = PQgetvalue(res, row, COL_TABLE);
	const char *key = PQgetvalue(res, row, COL_KEY_COLUMN);
	const char *events = PQgetvalue(res, row, COL_EVENTS);

	out->channel = xstrdup(channel);
	out->table = xstrdup(table);
	out->key_column = xstrdup(key);
	out->table_oid =
	    PQgetisnull(res, row, COL_TABLE_OID) ? 0 : (unsigned)strtoul(PQgetvalue(res, row, COL_TABLE_OID), NULL, 10);
	if (!PQgetisnull(res, row, COL_FILTER_COLUMN)) {
		out->filter_column = xstrdup(PQgetvalue(res, row, COL_FILTER_COLUMN));
		out->filter_value = xstrdup(PQgetvalue(res, row, COL_FILTER_VALUE));
	}
	bool ok = sql_ident_valid(key) && (out->filter_column == NULL || sql_ident_valid(out->filter_column));
	if (!PQgetisnull(res, row, COL_WATCHED) &&
	    split_names(PQgetvalue(res, row, COL_WATCHED), &out->watched, &out->n_watched) != 0)
		ok = false;
	out->events = (strstr(events, "insert") ? CAPTURE_INSERT : 0) |
	              (strstr(events, "update") ? CAPTURE_UPDATE : 0) | (strstr(events, "delete") ? CAPTURE_DELETE : 0);
	if (!ok || out->events == 0) {
		log_error("catalog: skipping capture channel=%s table=%s error=\"invalid column name or events\"",
		          channel, table);
		capture_free(out);
		memset(out, 0, sizeof(*out));
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
	out->rollups = xcalloc((size_t)rows + 1, sizeof(*out->rollups));
	out->channels = xcalloc((size_t)rows + 1, sizeof(*out->channels));
	out->captures = xcalloc((size_t)rows + 1, sizeof(*out->captures));
	if (rows > 0 && !PQgetisnull(res, 0, COL_WAL_SLOTS))
		out->wal_slots = xstrdup(PQgetvalue(res, 0, COL_WAL_SLOTS));

	for (int row = 0; row < rows;) {
		const char *name = PQgetvalue(res, row, COL_NAME);
		int next = row;
		while (next < rows && strcmp(PQgetvalue(res, next, COL_NAME), name) == 0)
			next++;
		if ((cfg == NULL || config_wants_rollup(cfg, name)) &&
		    build_rollup(res, row, &out->rollups[out->n_rollups]) == 0) {
			out->n_rollups++;
			const char *last_channel = NULL;
			bool channel_ok = false;
			for (int r = row; r < next; r++) {
				if (PQgetisnull(res, r, COL_CHANNEL))
					continue;
				const char *channel = PQgetvalue(res, r, COL_CHANNEL);
				if (last_channel == NULL || strcmp(last_channel, channel) != 0) {
					last_channel = channel;
					channel_ok = build_channel(res, r, name, &out->channels[out->n_channels]) == 0;
					if (channel_ok)
						out->n_channels++;
				}
				if (channel_ok && strcmp(PQgetvalue(res, r, COL_HAS_CAPTURE), "t") == 0 &&
				    build_capture(res, r, channel, &out->captures[out->n_captures]) == 0)
					out->n_captures++;
			}
		}
		row = next;
	}

	for (size_t i = 0; cfg != NULL && cfg->rollups != NULL && i < cfg->n_rollups; i++)
		if (catalog_find_rollup(out, cfg->rollups[i]) == NULL)
			log_warning("catalog: rollup named in the config is not registered (or invalid) rollup=%s",
			            cfg->rollups[i]);
	return 0;
}

const struct catalog_rollup *catalog_find_rollup(const struct catalog *cat, const char *name)
{
	for (size_t i = 0; i < cat->n_rollups; i++)
		if (strcmp(cat->rollups[i].name, name) == 0)
			return &cat->rollups[i];
	return NULL;
}

const struct catalog_channel *catalog_find_channel(const struct catalog *cat, const char *name)
{
	for (size_t i = 0; i < cat->n_channels; i++)
		if (strcmp(cat->channels[i].name, name) == 0)
			return &cat->channels[i];
	return NULL;
}

bool catalog_has_wal_slot(const struct catalog *cat, const char *slot)
{
	size_t n = strlen(slot);
	for (const char *p = cat->wal_slots; p != NULL && *p != '\0';) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, slot, n) == 0)
			return true;
		p += len + (p[len] == ',');
	}
	return false;
}

bool catalog_rollup_uses(const struct catalog *cat, const char *rollup, enum delivery delivery)
{
	for (size_t i = 0; i < cat->n_channels; i++)
		if (cat->channels[i].delivery == delivery && strcmp(cat->channels[i].rollup, rollup) == 0)
			return true;
	return false;
}

char *catalog_listen_sql(const struct catalog *cat)
{
	size_t len = 16 + sizeof(" LISTEN \"" CATALOG_CHANNEL "\";");
	for (size_t i = 0; i < cat->n_channels; i++)
		len += strlen(cat->channels[i].name) + 12;

	char *sql = xmalloc(len);
	size_t off = (size_t)snprintf(sql, len, "UNLISTEN *; LISTEN \"" CATALOG_CHANNEL "\";");
	for (size_t i = 0; i < cat->n_channels; i++)
		if (cat->channels[i].delivery != DELIVERY_WAL)
			off += (size_t)snprintf(sql + off, len - off, " LISTEN \"%s\";", cat->channels[i].name);
	return sql;
}
