/*
 * oneshot: walk a rollup's key space chunk by chunk with its verify or
 * reconcile function, or print the catalog.
 */
#include "oneshot.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "log.h"
#include "xalloc.h"

/* Progress of a walk: one updating line on a terminal (stderr), a plain
 * line every PROGRESS_PLAIN_S seconds otherwise. */
#define PROGRESS_TTY_S 0.5
#define PROGRESS_PLAIN_S 5.0
static bool progress_tty;
static bool progress_shown; /* an updating line is on the terminal */

static void progress_clear(void)
{
	if (progress_shown) {
		fputs("\r\033[K", stderr);
		progress_shown = false;
	}
}

/* The server's notices (a build's start, say) on stderr, above the progress line. */
static void tool_notice(void *arg, const char *message)
{
	(void)arg;
	progress_clear();
	fprintf(stderr, "%s", message);
}

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
	PQsetNoticeProcessor(pg, tool_notice, NULL);
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

/* The planner's estimate of the rollup's key space; 0 when unknown. */
static double walk_estimate(PGconn *pg, const char *name)
{
	const char *params[1] = {name};
	PGresult *res = PQexecParams(pg, "SELECT rollupd.walk_estimate($1)", 1, NULL, params, NULL, NULL, 0);
	double n = 0;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		n = strtod(PQgetvalue(res, 0, 0), NULL);
	PQclear(res);
	return n;
}

static void format_duration(char *out, size_t len, double s)
{
	if (s < 60)
		snprintf(out, len, "%.0fs", s);
	else if (s < 3600)
		snprintf(out, len, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
	else
		snprintf(out, len, "%.0fh%02.0fm", floor(s / 3600), floor(fmod(s, 3600) / 60));
}

static void show_progress(const char *what, const char *name, unsigned long long chunks, double keys, double estimate,
                          double elapsed)
{
	double rate = elapsed > 0 ? keys / elapsed : 0;
	char left[32] = "?";
	if (estimate > keys && rate > 0)
		format_duration(left, sizeof(left), (estimate - keys) / rate);
	else if (estimate > 0)
		snprintf(left, sizeof(left), "soon");
	char total[32] = "?";
	if (estimate > 0)
		snprintf(total, sizeof(total), "%.0f", estimate > keys ? estimate : keys);
	if (progress_tty) {
		fprintf(stderr, "\r\033[K%s %s: %llu chunks, ~%.0f of ~%s keys", what, name, chunks, keys, total);
		if (estimate > 0)
			fprintf(stderr, " (%.0f%%)",
			        keys < estimate ? 100.0 * keys / estimate : 99.0); /* (not done yet) */
		fprintf(stderr, ", %.0f keys/s, %s left", rate, left);
		progress_shown = true;
	} else {
		fprintf(stderr,
		        "%s progress rollup=%s chunks=%llu keys=%.0f estimated_keys=%s keys_per_s=%.0f left=%s\n", what,
		        name, chunks, keys, total, rate, left);
	}
	fflush(stderr);
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
	const char *what = verify ? "verify" : "reconcile";
	double estimate = walk_estimate(pg, name);
	double started = now_s(), shown = started;
	progress_tty = isatty(STDERR_FILENO);
	snprintf(chunk, sizeof(chunk), "%d", cfg->reconcile_chunk_keys);

	for (;;) {
		const char *params[2] = {after, chunk};
		PGresult *res =
		    PQexecParams(pg, verify ? r->verify_sql : r->reconcile_sql, 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
			progress_clear();
			fprintf(
			    stderr, "rollupd: %s failed rollup=%s after=%s: %s", what, name, after ? after : "(start)",
			    PQresultStatus(res) == PGRES_TUPLES_OK ? "expected one row\n" : PQresultErrorMessage(res));
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
		double now = now_s();
		if (now - shown >= (progress_tty ? PROGRESS_TTY_S : PROGRESS_PLAIN_S)) {
			shown = now;
			show_progress(what, name, chunks, (double)chunks * cfg->reconcile_chunk_keys, estimate,
			              now - started);
		}
	}
	free(after);
	progress_clear();

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

/* ---- --status ---- */

/* The rollupd sessions of this database. The listener's application_name
 * says "rollupd listener"; with standby.enabled the active one holds the
 * standby lock (pg_try_advisory_lock(1919904876, lock_id)), the others are
 * standbys. Without it, every listener is active. */
#define STATUS_SESSIONS_SQL                                                                                            \
	"SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local'),"                                    \
	"       extract(epoch FROM now() - a.backend_start)::bigint,"                                                  \
	"       CASE WHEN a.application_name <> 'rollupd listener' THEN 'worker'"                                      \
	"            WHEN NOT $1::boolean THEN 'active'"                                                               \
	"            WHEN EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'"            \
	"                         AND l.granted AND l.classid = 1919904876 AND l.objid = $2::bigint"                   \
	"                         AND l.objsubid = 2) THEN 'active'"                                                   \
	"            ELSE 'standby' END"                                                                               \
	"  FROM pg_stat_activity a"                                                                                    \
	" WHERE a.datname = current_database()"                                                                        \
	"   AND a.application_name IN ('rollupd listener', 'rollupd worker', 'rollupd wal')"                           \
	" ORDER BY a.application_name, a.pid"

/* Per channel: its delivery, the queue (queue mode), the poison keys and
 * the last one's error, the rollup's walks. */
#define STATUS_CHANNELS_SQL                                                                                            \
	"SELECT c.rollup, c.channel, c.delivery,"                                                                      \
	"       q.depth, round(extract(epoch FROM now() - q.oldest)::numeric, 1),"                                     \
	"       p.n, p.last_error,"                                                                                    \
	"       to_char(r.last_reconciled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"                   \
	"       r.walk_started_at IS DISTINCT FROM r.last_walk_started_at"                                             \
	"  FROM rollupd.channel c JOIN rollupd.rollup r ON r.name = c.rollup"                                          \
	"  LEFT JOIN LATERAL (SELECT count(*) AS depth, min(x.enqueued_at) AS oldest"                                  \
	"                       FROM rollupd.queue x WHERE x.channel = c.channel) q ON c.delivery = 'queue'"           \
	"  LEFT JOIN LATERAL (SELECT count(*) AS n,"                                                                   \
	"                            (array_agg(x.key || ': ' || x.error ORDER BY x.last_failed_at DESC))[1]"          \
	"                              AS last_error"                                                                  \
	"                       FROM rollupd.poison x WHERE x.channel = c.channel) p ON true"                          \
	" ORDER BY c.rollup, c.channel"

/* The WAL mode's slot: who streams it, how far behind its confirmed
 * position is, how much WAL it holds back. */
#define STATUS_SLOT_SQL                                                                                                \
	"SELECT s.active, s.active_pid, coalesce(s.wal_status, 'unknown'),"                                            \
	"       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,"                                 \
	"       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint"                                          \
	"  FROM pg_replication_slots s WHERE s.slot_name = $1 AND s.database = current_database()"

struct status_problems {
	char text[8][256];
	int n;
};

static void problem(struct status_problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct status_problems *p, const char *fmt, ...)
{
	if (p->n >= (int)(sizeof(p->text) / sizeof(p->text[0])))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->text[p->n++], sizeof(p->text[0]), fmt, ap);
	va_end(ap);
}

/* A JSON string, or null for NULL. */
static void json_string(const char *s)
{
	if (s == NULL) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			printf("\\%c", *c);
		else if (*c == '\n')
			fputs("\\n", stdout);
		else if (*c < 0x20)
			printf("\\u%04x", *c);
		else
			putchar(*c);
	}
	putchar('"');
}

static const char *value_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* A number column as JSON: its text, or null. */
static void json_number(const PGresult *res, int row, int col)
{
	fputs(PQgetisnull(res, row, col) ? "null" : PQgetvalue(res, row, col), stdout);
}

static void human_bytes(char *out, size_t len, const char *bytes)
{
	double b = bytes ? strtod(bytes, NULL) : 0;
	if (b < 0)
		b = 0;
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
	unsigned u = 0;
	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(out, len, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
}

static PGresult *status_query(PGconn *pg, const char *what, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "rollupd: cannot read %s: %s", what, PQresultErrorMessage(res));
		PQclear(res);
		return NULL;
	}
	return res;
}

static void print_status_table(const PGresult *ch, const PGresult *se, const PGresult *slot, const struct config *cfg,
                               bool wal, const struct status_problems *p)
{
	printf("%-24s %-24s %-8s %8s %8s %6s  %s\n", "ROLLUP", "CHANNEL", "DELIVERY", "QUEUED", "OLDEST", "POISON",
	       "LAST WALK");
	for (int i = 0; i < PQntuples(ch); i++) {
		char oldest[32] = "-";
		if (!PQgetisnull(ch, i, 4))
			snprintf(oldest, sizeof(oldest), "%ss", PQgetvalue(ch, i, 4));
		const char *walked = value_or_null(ch, i, 7);
		printf("%-24s %-24s %-8s %8s %8s %6s  %s%s\n", PQgetvalue(ch, i, 0), PQgetvalue(ch, i, 1),
		       PQgetvalue(ch, i, 2), PQgetisnull(ch, i, 3) ? "-" : PQgetvalue(ch, i, 3), oldest,
		       PQgetvalue(ch, i, 5), walked ? walked : "never",
		       strcmp(PQgetvalue(ch, i, 8), "t") == 0 ? " (walk under way)" : "");
	}
	for (int i = 0; i < PQntuples(ch); i++) {
		if (!PQgetisnull(ch, i, 6))
			printf("poison %s: %s keys, latest %s\n", PQgetvalue(ch, i, 1), PQgetvalue(ch, i, 5),
			       PQgetvalue(ch, i, 6));
	}
	int workers = 0;
	for (int i = 0; i < PQntuples(se); i++) {
		const char *role = PQgetvalue(se, i, 4);
		if (strcmp(role, "worker") == 0) {
			workers++;
			continue;
		}
		printf("session %-8s pid=%s %s from %s, up %ss\n", role, PQgetvalue(se, i, 0), PQgetvalue(se, i, 1),
		       PQgetvalue(se, i, 2), PQgetvalue(se, i, 3));
	}
	printf("workers %d connected\n", workers);
	if (wal) {
		if (slot == NULL || PQntuples(slot) == 0) {
			printf("wal slot %s: missing\n", cfg->wal_slot);
		} else {
			char lag[32], held[32];
			human_bytes(lag, sizeof(lag), value_or_null(slot, 0, 3));
			human_bytes(held, sizeof(held), value_or_null(slot, 0, 4));
			printf("wal slot %s: %s%s%s, wal_status %s, %s behind, holds %s of WAL\n", cfg->wal_slot,
			       strcmp(PQgetvalue(slot, 0, 0), "t") == 0 ? "streaming to pid " : "not streaming",
			       strcmp(PQgetvalue(slot, 0, 0), "t") == 0 ? PQgetvalue(slot, 0, 1) : "", "",
			       PQgetvalue(slot, 0, 2), lag, held);
		}
	}
	if (p->n == 0)
		printf("status: ok\n");
	for (int i = 0; i < p->n; i++)
		printf("attention: %s\n", p->text[i]);
}

static void print_status_json(const PGresult *ch, const PGresult *se, const PGresult *slot, const struct config *cfg,
                              bool wal, const struct status_problems *p)
{
	printf("{\"status\": \"%s\", \"problems\": [", p->n == 0 ? "ok" : "attention");
	for (int i = 0; i < p->n; i++) {
		fputs(i ? ", " : "", stdout);
		json_string(p->text[i]);
	}
	fputs("],\n \"channels\": [", stdout);
	for (int i = 0; i < PQntuples(ch); i++) {
		printf("%s\n  {\"rollup\": ", i ? "," : "");
		json_string(PQgetvalue(ch, i, 0));
		fputs(", \"channel\": ", stdout);
		json_string(PQgetvalue(ch, i, 1));
		fputs(", \"delivery\": ", stdout);
		json_string(PQgetvalue(ch, i, 2));
		fputs(", \"queued\": ", stdout);
		json_number(ch, i, 3);
		fputs(", \"oldest_queued_s\": ", stdout);
		json_number(ch, i, 4);
		fputs(", \"poison_keys\": ", stdout);
		json_number(ch, i, 5);
		fputs(", \"last_poison\": ", stdout);
		json_string(value_or_null(ch, i, 6));
		fputs(", \"last_reconciled_at\": ", stdout);
		json_string(value_or_null(ch, i, 7));
		printf(", \"walk_under_way\": %s}", strcmp(PQgetvalue(ch, i, 8), "t") == 0 ? "true" : "false");
	}
	fputs("],\n \"sessions\": [", stdout);
	for (int i = 0; i < PQntuples(se); i++) {
		printf("%s\n  {\"pid\": %s, \"role\": ", i ? "," : "", PQgetvalue(se, i, 0));
		json_string(PQgetvalue(se, i, 4));
		fputs(", \"application_name\": ", stdout);
		json_string(PQgetvalue(se, i, 1));
		fputs(", \"client\": ", stdout);
		json_string(PQgetvalue(se, i, 2));
		printf(", \"up_s\": %s}", PQgetvalue(se, i, 3));
	}
	fputs("],\n \"wal_slot\": ", stdout);
	if (!wal) {
		fputs("null", stdout);
	} else if (slot == NULL || PQntuples(slot) == 0) {
		fputs("{\"name\": ", stdout);
		json_string(cfg->wal_slot);
		fputs(", \"exists\": false}", stdout);
	} else {
		fputs("{\"name\": ", stdout);
		json_string(cfg->wal_slot);
		printf(", \"exists\": true, \"active\": %s, \"active_pid\": ",
		       strcmp(PQgetvalue(slot, 0, 0), "t") == 0 ? "true" : "false");
		json_number(slot, 0, 1);
		fputs(", \"wal_status\": ", stdout);
		json_string(PQgetvalue(slot, 0, 2));
		fputs(", \"confirmed_lag_bytes\": ", stdout);
		json_number(slot, 0, 3);
		fputs(", \"retained_bytes\": ", stdout);
		json_number(slot, 0, 4);
		putchar('}');
	}
	fputs("}\n", stdout);
}

int oneshot_status(const struct config *cfg, bool json)
{
	PGconn *pg = connect_blocking(cfg);
	if (pg == NULL)
		return EX_UNAVAILABLE;
	char lock_id[16];
	snprintf(lock_id, sizeof(lock_id), "%d", cfg->standby_lock_id);
	const char *session_params[2] = {cfg->standby_enabled ? "true" : "false", lock_id};
	const char *slot_params[1] = {cfg->wal_slot};
	PGresult *ch = status_query(pg, "the rollup catalog (is a rollup installed?)", STATUS_CHANNELS_SQL, 0, NULL);
	PGresult *se = ch ? status_query(pg, "pg_stat_activity", STATUS_SESSIONS_SQL, 2, session_params) : NULL;
	if (ch == NULL || se == NULL) {
		PQclear(ch);
		PQfinish(pg);
		return EX_SOFTWARE;
	}

	struct status_problems p = {.n = 0};
	bool wal = false;
	for (int i = 0; i < PQntuples(ch); i++) {
		const char *channel = PQgetvalue(ch, i, 1);
		wal = wal || strcmp(PQgetvalue(ch, i, 2), "wal") == 0;
		if (strcmp(PQgetvalue(ch, i, 5), "0") != 0)
			problem(&p, "%s poison keys on channel %s (rollupd retries them; see rollupd.poison)",
			        PQgetvalue(ch, i, 5), channel);
		if (!PQgetisnull(ch, i, 4) && strtod(PQgetvalue(ch, i, 4), NULL) > STATUS_QUEUE_AGE_S)
			problem(&p, "channel %s: a key has waited %ss in the queue (over %ds)", channel,
			        PQgetvalue(ch, i, 4), STATUS_QUEUE_AGE_S);
	}
	int active = 0;
	for (int i = 0; i < PQntuples(se); i++)
		active += strcmp(PQgetvalue(se, i, 4), "active") == 0;
	if (PQntuples(ch) == 0)
		problem(&p, "no rollup is installed");
	else if (active == 0)
		problem(&p, "no rollupd is running on this database (no active listener session)");

	PGresult *slot = NULL;
	if (wal) {
		slot = status_query(pg, "pg_replication_slots", STATUS_SLOT_SQL, 1, slot_params);
		if (slot == NULL) {
			PQclear(ch);
			PQclear(se);
			PQfinish(pg);
			return EX_SOFTWARE;
		}
		if (PQntuples(slot) == 0)
			problem(&p, "WAL mode: slot %s does not exist (rollupd creates it, then reconciles)",
			        cfg->wal_slot);
		else if (strcmp(PQgetvalue(slot, 0, 2), "lost") == 0)
			problem(
			    &p,
			    "WAL mode: slot %s is lost (max_slot_wal_keep_size); rollupd re-creates it and reconciles",
			    cfg->wal_slot);
		else if (strcmp(PQgetvalue(slot, 0, 0), "t") != 0)
			problem(&p, "WAL mode: nothing streams slot %s, and it holds back WAL", cfg->wal_slot);
	}

	if (json)
		print_status_json(ch, se, slot, cfg, wal, &p);
	else
		print_status_table(ch, se, slot, cfg, wal, &p);
	PQclear(ch);
	PQclear(se);
	PQclear(slot);
	PQfinish(pg);
	return p.n == 0 ? EX_OK : 1;
}
