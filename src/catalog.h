/*
 * catalog: the rollups registered in the database (schema rollupd), as read
 * by the daemon at start and on reload. It validates and quotes every name
 * and builds the SQL for refresh, reconcile and verify calls; it runs nothing.
 */
#ifndef ROLLUPD_CATALOG_H
#define ROLLUPD_CATALOG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "payload.h"

struct catalog_rollup {
	char *name;
	enum key_type key_type;
	char *reconcile_sql; /* $1 after (text, NULL to start), $2 max_keys -> last_key text, fixed */
	char *verify_sql;    /* $1 after, $2 max_keys -> last_key text, mismatches, first mismatching keys */
};

struct catalog_channel {
	char *name;   /* the LISTEN channel */
	char *rollup; /* owning rollup's name */
	enum key_type key_type;
	char *refresh_sql; /* $1 array literal -> written, poisoned, detail (rollupd.refresh_keys) */
	bool queue;        /* queue-mode delivery: keys wait in rollupd.queue, NOTIFY only rings */
};

struct catalog {
	struct catalog_rollup *rollups;
	size_t n_rollups;
	struct catalog_channel *channels;
	size_t n_channels;
};

/* The query that reads the catalog; its result feeds catalog_from_result(). */
extern const char CATALOG_QUERY[];

/*
 * Build a catalog from the result of CATALOG_QUERY, keeping only the rollups
 * `cfg` wants. A registered rollup with an invalid name, key type or function
 * name is skipped with an error logged (the others still run); a rollup named
 * in the config but not registered is logged as a warning. Returns 0, or -1
 * on a result of the wrong shape. The caller frees `out` with catalog_free().
 */
int catalog_from_result(const PGresult *res, const struct config *cfg, struct catalog *out);
void catalog_free(struct catalog *cat);

const struct catalog_rollup *catalog_find_rollup(const struct catalog *cat, const char *name);
const struct catalog_channel *catalog_find_channel(const struct catalog *cat, const char *name);

/*
 * The one statement that makes a session listen on exactly the catalog's
 * channels: "UNLISTEN *; LISTEN "a"; ..." sent as one simple query, so it is
 * one transaction and a channel kept across a reload never stops listening.
 * Caller frees.
 */
char *catalog_listen_sql(const struct catalog *cat);

/*
 * [a-z_][a-z0-9_]* with an optional "schema." prefix of the same form, each
 * part at most 63 bytes. Writes the quoted form ("schema"."name") to `out`.
 */
bool sql_name_valid(const char *name);
int sql_name_quote(const char *name, char *out, size_t outlen);

/* An array literal ({1,2} or {"a","b"}) for a keys parameter. Caller frees. */
char *sql_array_literal(char *const *keys, size_t n, enum key_type type);

#endif
