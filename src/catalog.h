/*
 * catalog: the rollups registered in the database (schema rollupd: rollup,
 * channel, capture), as read by the daemon at start and on reload and by the
 * tools. It validates every name and builds the statements rollupd sends for
 * refresh, reconcile and verify; it runs nothing.
 */
#ifndef ROLLUPD_CATALOG_H
#define ROLLUPD_CATALOG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "payload.h"

/* How writers deliver a channel's keys (docs/design.md, "Delivery"). */
enum delivery {
	DELIVERY_NOTIFY, /* keys in NOTIFY payloads */
	DELIVERY_QUEUE,  /* a dirty-key table; NOTIFY only rings a doorbell */
	DELIVERY_WAL,    /* no trigger: keys from rollupd's logical replication slot */
};
#define DELIVERY_MODES 3

const char *delivery_name(enum delivery d);
/* 0 and `out` set, or -1 for an unknown name. */
int delivery_parse(const char *name, enum delivery *out);

struct catalog_rollup {
	char *name;
	enum key_type key_type;
	char *reconcile_sql; /* $1 after (text, NULL to start), $2 max_keys -> last_key, fixed */
	char *verify_sql;    /* $1 after, $2 max_keys -> last_key, mismatches, first mismatching keys */
};

struct catalog_channel {
	char *name;   /* the channel (the LISTEN channel in notify and queue mode) */
	char *rollup; /* owning rollup's name */
	enum key_type key_type;
	char *refresh_sql; /* $1 array literal -> written, poisoned, detail (rollupd.refresh_keys) */
	enum delivery delivery;
};

/* The events a capture declaration covers. */
enum { CAPTURE_INSERT = 1, CAPTURE_UPDATE = 2, CAPTURE_DELETE = 4 };

/* Which changes of a source table give keys of a channel (rollupd.capture). */
struct catalog_capture {
	char *channel;
	char *table;        /* schema-qualified, as the server prints it */
	unsigned table_oid; /* 0 when the table does not exist (any more) */
	char *key_column;
	char *filter_column; /* NULL: every row */
	char *filter_value;
	char **watched; /* NULL: any column */
	size_t n_watched;
	unsigned events; /* CAPTURE_* bits */
};

struct catalog {
	struct catalog_rollup *rollups;
	size_t n_rollups;
	struct catalog_channel *channels;
	size_t n_channels;
	struct catalog_capture *captures;
	size_t n_captures;
	char *wal_slots; /* the slots rollupd.wal_slot records, "a,b" (NULL: none) */
};

/* The query that reads the catalog; its result feeds catalog_from_result(). */
extern const char CATALOG_QUERY[];

/*
 * Build a catalog from the result of CATALOG_QUERY, keeping only the rollups
 * `cfg` wants (all of them when `cfg` is NULL). A registered rollup with an
 * invalid name, key type or function name is skipped with an error logged
 * (the others still run), as is a channel or capture row that does not
 * validate; a rollup named in the config but not registered is logged as a
 * warning. Returns 0, or -1 on a result of the wrong shape. The caller frees
 * `out` with catalog_free().
 */
int catalog_from_result(const PGresult *res, const struct config *cfg, struct catalog *out);
void catalog_free(struct catalog *cat);

const struct catalog_rollup *catalog_find_rollup(const struct catalog *cat, const char *name);
const struct catalog_channel *catalog_find_channel(const struct catalog *cat, const char *name);

/* Is `slot` recorded in rollupd.wal_slot (created by a rollupd)? */
bool catalog_has_wal_slot(const struct catalog *cat, const char *slot);

/* Does `rollup` have a channel in `delivery` mode? */
bool catalog_rollup_uses(const struct catalog *cat, const char *rollup, enum delivery delivery);

/* The catalog's own channel: rollupd.catalog_changed() notifies it at every
 * registration or delivery change. No rollup channel can have this name. */
#define CATALOG_CHANNEL "rollupd.catalog"

/*
 * The one statement that makes a session listen on exactly the channels of
 * the catalog that use NOTIFY (notify and queue mode), and CATALOG_CHANNEL:
 * "UNLISTEN *; LISTEN "rollupd.catalog"; LISTEN "a"; ..." sent as one simple
 * query, so it is one transaction and a channel kept across a reload never
 * stops listening. Caller frees.
 */
char *catalog_listen_sql(const struct catalog *cat);

#endif
