/*
 * oneshot: walk a rollup's key space chunk by chunk with its verify or
 * reconcile function, or print the catalog.
 */
#include "oneshot.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "catalog.h"
#include "log.h"
#include "xalloc.h"

static PGconn *connect_blocking(const struct config *cfg)
{
	char timeout[16], setup[64];
	snprintf(timeout, sizeof(timeout), "%d", (cfg->connect_timeout_ms + 999) / 1000);
	const char *keywords[] = {"fallback_application_name", "connect_timeout", "dbname", NULL};
	const char *values[] = {"rollupd tool", timeout, cfg->conninfo, NULL};

	PGconn *pg = PQconnectdbParams(keywords, values, 1);
	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "rollupd: cannot connect: %s", pg ? PQerrorMessage(pg) : "out of memory\n");
		PQfinish(pg);
		return NULL;
	}
	snprintf(setup, sizeof(setup), "SET statement_timeout = %d", cfg->statement_timeout_ms);
	PGresult *res = PQexec(pg, setup);
	PQclear(res);
	return pg;
}

/* The tools name their rollup explicitly: the config's rollup list does not filter. */
static int load_catalog(PGconn *pg, struct catalog *cat)
{
	PGresult *res = PQexec(pg, CATALOG_QUERY);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "rollupd: cannot read the rollup catalog (is a rollup installed?): %s",
		        PQresultErrorMessage(res));
		PQclear(res);
		return -1;
	}
	int rc = catalog_from_result(res, NULL, cat);
	PQclear(res);
	return rc;
}

static void print_capture(const struct catalog_capture *k)
{
	printf("  capture %s.%s -> %s on", k->table, k->key_column, k->channel);
	const char *sep = " ";
	static const char *const events[] = {"insert", "update", "delete"};
	for (unsigned i = 0; i < 3; i++) {
		if (k->events & (1u << i)) {
			printf("%s%s", sep, events[i]);
			sep = ",";
		}
	}
	if (k->filter_column != NULL)
		printf(" where %s = '%s'", k->filter_column, k->filter_value);
	if (k->watched != NULL) {
		printf(" (updates of");
		for (size_t i = 0; i < k->n_watched; i++)
			printf("%s%s", i ? ", " : " ", k->watched[i]);
		printf(")");
	}
	printf("%s\n", k->table_oid == 0 ? " [table missing]" : "");
}

int oneshot_list(const struct config *cfg)
{
	struct catalog cat;
	PGconn *pg = connect_blocking(cfg);
	if (pg == NULL)
		return EX_UNAVAILABLE;
	if (load_catalog(pg, &cat) != 0) {
		PQfinish(pg);
		return EX_SOFTWARE;
	}
	printf("%-28s %-7s %-8s %s\n", "ROLLUP", "KEY", "ENABLED", "CHANNELS (key type) delivery");
	for (size_t i = 0; i < cat.n_rollups; i++) {
		const struct catalog_rollup *r = &cat.rollups[i];
		printf("%-28s %-7s %-8s", r->name, key_type_name(r->key_type),
		       config_wants_rollup(cfg, r->name) ? "yes" : "no");
		const char *sep = " ";
		for (size_t j = 0; j < cat.n_channels; j++) {
			const struct catalog_channel *ch = &cat.channels[j];
			if (strcmp(ch->rollup, r->name) != 0)
				continue;
			printf("%s%s(%s) %s", sep, ch->name, key_type_name(ch->key_type), delivery_name(ch->delivery));
			sep = ", ";
		}
		printf("\n");
		for (size_t j = 0; j < cat.n_captures; j++) {
			const struct catalog_channel *ch = catalog_find_channel(&cat, cat.captures[j].channel);
			if (ch != NULL && strcmp(ch->rollup, r->name) == 0)
				print_capture(&cat.captures[j]);
		}
	}
	catalog_free(&cat);
	PQfinish(pg);
	return EX_OK;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Walk the rollup's key space with `verify` or reconcile SQL. */
static int walk(const struct config *cfg, const char *name, bool verify)
{
	struct catalog cat;
	PGconn *pg = connect_blocking(cfg);
	if (pg == NULL)
		return EX_UNAVAILABLE;
	if (load_catalog(pg, &cat) != 0) {
		PQfinish(pg);
		return EX_SOFTWARE;
	}
	const struct catalog_rollup *r = catalog_find_rollup(&cat, name);
	if (r == NULL) {
		fprintf(stderr, "rollupd: no rollup named '%s' is registered (see rollupd --list)\n", name);
		catalog_free(&cat);
		PQfinish(pg);
		return EX_SOFTWARE;
	}

	char chunk[16];
	char *after = NULL;
	char first_keys[512] = "";
	unsigned long long total = 0, chunks = 0;
	int rc = EX_OK;
	double started = now_s();
	snprintf(chunk, sizeof(chunk), "%d", cfg->reconcile_chunk_keys);

	for (;;) {
		const char *params[2] = {after, chunk};
		PGresult *res =
		    PQexecParams(pg, verify ? r->verify_sql : r->reconcile_sql, 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
			fprintf(stderr, "rollupd: %s failed rollup=%s after=%s: %s", verify ? "verify" : "reconcile",
			        name, after ? after : "(start)",
			        PQresultStatus(res) == PGRES_TUPLES_OK ? "expected one row\n"
			                                               : PQresultErrorMessage(res));
			PQclear(res);
			rc = EX_SOFTWARE;
			break;
		}
		chunks++;
		total += strtoull(PQgetvalue(res, 0, 1), NULL, 10);
		if (verify && !PQgetisnull(res, 0, 2) && PQgetvalue(res, 0, 2)[0] != '\0' && strlen(first_keys) < 200) {
			size_t used = strlen(first_keys);
			snprintf(first_keys + used, sizeof(first_keys) - used, "%s%s", used ? "," : "",
			         PQgetvalue(res, 0, 2));
		}
		free(after);
		after = PQgetisnull(res, 0, 0) ? NULL : xstrdup(PQgetvalue(res, 0, 0));
		PQclear(res);
		if (after == NULL)
			break;
	}
	free(after);

	if (rc == EX_OK) {
		double ms = (now_s() - started) * 1000.0;
		if (verify) {
			printf("verify rollup=%s mismatches=%llu chunks=%llu ms=%.0f\n", name, total, chunks, ms);
			if (total > 0) {
				printf("first mismatching keys: %s\n", first_keys);
				rc = 1;
			}
		} else {
			printf("reconcile rollup=%s fixed=%llu chunks=%llu ms=%.0f\n", name, total, chunks, ms);
		}
	}
	catalog_free(&cat);
	PQfinish(pg);
	return rc;
}

int oneshot_verify(const struct config *cfg, const char *rollup)
{
	return walk(cfg, rollup, true);
}

int oneshot_reconcile(const struct config *cfg, const char *rollup)
{
	return walk(cfg, rollup, false);
}

int oneshot_drop_slot(const struct config *cfg)
{
	PGconn *pg = connect_blocking(cfg);
	if (pg == NULL)
		return EX_UNAVAILABLE;
	const char *params[1] = {cfg->wal_slot};
	PGresult *res = PQexecParams(pg,
	                             "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots"
	                             " WHERE slot_name = $1",
	                             1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "rollupd: cannot drop slot %s: %s", cfg->wal_slot, PQresultErrorMessage(res));
		PQclear(res);
		PQfinish(pg);
		return EX_SOFTWARE;
	}
	bool dropped = strcmp(PQgetvalue(res, 0, 0), "1") == 0;
	PQclear(res);
	printf(dropped ? "dropped slot=%s\n" : "no slot named %s\n", cfg->wal_slot);
	res = PQexecParams(pg, "SELECT rollupd.wal_slot_dropped($1)", 1, NULL, params, NULL, NULL, 0);
	PQclear(res);
	/* The publication keeps no WAL; it goes only when nothing uses it. */
	res = PQexec(pg, "SELECT EXISTS (SELECT 1 FROM rollupd.channel WHERE delivery = 'wal')");
	bool in_use = PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "f") != 0;
	PQclear(res);
	if (in_use) {
		printf("publication rollupd kept: a channel still uses the WAL mode (the next start re-creates the"
		       " slot and reconciles)\n");
	} else {
		res = PQexec(pg, "DROP PUBLICATION IF EXISTS rollupd");
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			printf("dropped publication rollupd (if it existed)\n");
		else
			printf("publication rollupd kept (drop it as its owner): %s", PQresultErrorMessage(res));
		PQclear(res);
	}
	PQfinish(pg);
	return EX_OK;
}
