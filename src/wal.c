/*
 * wal: the WAL delivery mode's key source. No trigger on any source table:
 * rollupd streams a logical replication slot of its own (pgoutput, over
 * publication rollupd), takes the keys from the captured columns of each
 * changed row, refreshes them in batches like the notify mode, and tells
 * the server it may forget a transaction only once every key of it, and of
 * every transaction before it, has been refreshed and committed
 * (docs/design.md, "WAL mode").
 *
 * The replication session is a step machine on a replication pgconn:
 *
 *   DOWN -> IDENTIFY -> CHECK -> [DROP_SLOT ->] [CREATE_SLOT -> RECORD_SLOT ->]
 *   START -> STREAMING
 *
 * Confirmation: every transaction gets a sequence number; a key pending or
 * in flight carries the number of the oldest transaction that changed it
 * since its last refresh (the batcher's tags), and each transaction counts
 * the keys that carry its number. The flush position sent to the server is
 * the end LSN of the last transaction of an unbroken run, from the oldest,
 * that is closed (its Commit arrived) and counts no key. With nothing
 * pending it is the server's last keepalive position, so an idle slot
 * advances. After any reconnect the server sends again from there: keys may
 * come twice (refreshes are idempotent), never not at all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sysexits.h>

#include "batcher.h"
#include "http.h"
#include "log.h"
#include "payload.h"
#include "pgconn.h"
#include "pgoutput.h"
#include "poison.h"
#include "refresh.h"
#include "source.h"
#include "sqlname.h"
#include "stats.h"
#include "xalloc.h"

/* How the replication session shows in pg_stat_activity / pg_stat_replication. */
#define WAL_APPLICATION_NAME "rollupd wal"
#define PUBLICATION "rollupd"

enum wal_step {
	WAL_DOWN,        /* no session (or not wanted) */
	WAL_IDENTIFY,    /* IDENTIFY_SYSTEM */
	WAL_CHECK,       /* rollupd.wal_check(): the server, the publication, the slot */
	WAL_DROP_SLOT,   /* the slot was lost: drop it */
	WAL_CREATE_SLOT, /* CREATE_REPLICATION_SLOT */
	WAL_RECORD_SLOT, /* rollupd.wal_slot_created() */
	WAL_START,       /* START_REPLICATION sent */
	WAL_STREAMING,   /* CopyData flows */
	WAL_DROP_ORPHAN, /* no WAL-mode channel is left: the slot goes (it would keep WAL for ever) */
	WAL_FORGET_SLOT, /* rollupd.wal_slot_dropped() */
};

static const char *const step_names[] = {
    [WAL_DOWN] = "down",
    [WAL_IDENTIFY] = "identify",
    [WAL_CHECK] = "check",
    [WAL_DROP_SLOT] = "drop-slot",
    [WAL_CREATE_SLOT] = "create-slot",
    [WAL_RECORD_SLOT] = "record-slot",
    [WAL_START] = "start",
    [WAL_STREAMING] = "streaming",
    [WAL_DROP_ORPHAN] = "drop-orphan-slot",
    [WAL_FORGET_SLOT] = "forget-slot",
};

/* A capture declaration of a WAL-mode channel (a copy of the catalog's). */
struct wal_capture {
	char *channel;
	char *rollup;
	enum key_type key_type;
	unsigned table_oid;
	char *table;
	char *key_column;
	char *filter_column;
	char *filter_value;
	char **watched;
	size_t n_watched;
	unsigned events;
};

/* A capture resolved against a relation's columns (by name: a Relation
 * message may come again, with columns added or moved). */
struct wal_binding {
	size_t capture;
	int key_att;
	int filter_att; /* -1: no filter */
	int *watched;   /* the watched, key and filter columns; n_watched of them */
	size_t n_watched;
	bool broken; /* a column it needs is not in the stream */
};

struct wal_relation {
	uint32_t relid;
	char *name;
	struct wal_binding *bindings;
	size_t n_bindings;
};

struct wal_txn {
	uint64_t seq;
	uint32_t xid;
	int64_t commit_time; /* from Begin: microseconds since 2000 */
	uint64_t end_lsn;    /* from Commit; 0 while open (or cut off by a lost session) */
	uint64_t refs;       /* pending or in-flight keys that carry this seq */
	uint32_t holds;      /* walks that must finish first (a TRUNCATE) */
	bool closed;
};

/* A TRUNCATE's walk, which holds back its transaction's confirmation. */
struct wal_hold {
	char *rollup;
	uint64_t seq;
};

/* A refresh job's own state. */
struct wal_batch {
	char *sql;
	char *xids;       /* the transactions to wait for, as an array literal */
	uint64_t max_seq; /* every transaction up to it was received when taken */
};

struct wal_source {
	struct source_env env;
	const struct config *cfg;
	struct batcher *batcher;
	struct pgconn *conn;
	enum wal_step step;
	bool wanted;      /* WAL-mode channels exist and this rollupd is active */
	bool drop_orphan; /* none is left, but this rollupd's slot is: drop it */
	bool stopping;    /* a stop: take no more keys */
	bool ever_streamed;
	char *fingerprint; /* of the channels and captures the state was built for */

	struct wal_capture *captures;
	size_t n_captures;
	struct wal_relation *relations;
	size_t n_relations;

	struct wal_txn *txns; /* [head, head + count) in a growable array */
	size_t txn_head, txn_count, txn_cap;
	uint64_t next_seq;
	bool in_txn;
	uint64_t visible_seq; /* every transaction up to it was visible to a refresh */
	struct wal_hold *holds;
	size_t n_holds;

	uint64_t confirmed_lsn; /* the flush position last sent */
	uint64_t keepalive_lsn; /* the last keepalive's position */
	uint64_t received_lsn;
	ev_timer status_timer;
	ev_timer stats_timer;
	bool stats_wanted;
	bool stats_in_flight;
	char stats_param[64];
	char wait_param[16]; /* wal.visibility_wait_ms, as the refreshes' parameter */

	/* what the stats step read */
	double lag_bytes;
	double retained_bytes;
	char slot_status[16];

	uint64_t transactions;
	uint64_t changes;
	uint64_t malformed;
	uint64_t restarts;
	uint64_t slot_rebuilds;
	uint64_t keys_unavailable;

	struct pgo_msg msg;
};

static void set_step(struct wal_source *ws, enum wal_step step)
{
	if (ws->step != step)
		log_debug("wal stream step=%s->%s", step_names[ws->step], step_names[step]);
	ws->step = step;
	ws->env.state_changed(ws->env.arg);
}

/* ---- transactions ---- */

static struct wal_txn *txn_of(struct wal_source *ws, uint64_t seq)
{
	if (ws->txn_count == 0 || seq < ws->txns[ws->txn_head].seq)
		return NULL; /* confirmed already, or of a state since reset */
	uint64_t i = seq - ws->txns[ws->txn_head].seq;
	return i < ws->txn_count ? &ws->txns[ws->txn_head + i] : NULL;
}

static struct wal_txn *txn_open(struct wal_source *ws, uint32_t xid, int64_t commit_time)
{
	if (ws->txn_head + ws->txn_count == ws->txn_cap) {
		if (ws->txn_head > 0) {
			memmove(ws->txns, ws->txns + ws->txn_head, ws->txn_count * sizeof(*ws->txns));
			ws->txn_head = 0;
		}
		if (ws->txn_count == ws->txn_cap) {
			ws->txn_cap = ws->txn_cap ? ws->txn_cap * 2 : 256;
			ws->txns = xrealloc(ws->txns, ws->txn_cap * sizeof(*ws->txns));
		}
	}
	struct wal_txn *t = &ws->txns[ws->txn_head + ws->txn_count++];
	*t = (struct wal_txn){.seq = ws->next_seq++, .xid = xid, .commit_time = commit_time};
	return t;
}

static struct wal_txn *current_txn(struct wal_source *ws)
{
	return ws->in_txn && ws->txn_count > 0 ? &ws->txns[ws->txn_head + ws->txn_count - 1] : NULL;
}

static void on_release(uint64_t tag, void *arg)
{
	struct wal_txn *t = txn_of(arg, tag);
	if (t != NULL && t->refs > 0)
		t->refs--;
}

/* The flush position that may be confirmed now (and forget what it covers). */
static uint64_t confirmable(struct wal_source *ws)
{
	for (size_t i = 0; i < ws->n_holds;) {
		if (ws->env.walking(ws->env.arg, ws->holds[i].rollup)) {
			i++;
			continue;
		}
		struct wal_txn *t = txn_of(ws, ws->holds[i].seq);
		if (t != NULL && t->holds > 0)
			t->holds--;
		free(ws->holds[i].rollup);
		ws->holds[i] = ws->holds[--ws->n_holds];
	}
	uint64_t lsn = ws->confirmed_lsn;
	while (ws->txn_count > 0) {
		struct wal_txn *t = &ws->txns[ws->txn_head];
		if (!t->closed || t->refs > 0 || t->holds > 0)
			break;
		if (t->end_lsn > lsn)
			lsn = t->end_lsn;
		ws->txn_head++;
		ws->txn_count--;
	}
	if (ws->txn_count == 0 && !ws->in_txn && ws->keepalive_lsn > lsn)
		lsn = ws->keepalive_lsn;
	return lsn;
}

static void send_status(struct wal_source *ws, bool reply_requested)
{
	if (ws->step != WAL_STREAMING)
		return;
	uint64_t flush = confirmable(ws);
	unsigned char msg[REPL_STATUS_LEN];
	struct timeval tv;
	gettimeofday(&tv, NULL);
	repl_status_update(msg, ws->received_lsn > flush ? ws->received_lsn : flush, flush, 0,
	                   repl_time_from_unix((double)tv.tv_sec + (double)tv.tv_usec / 1e6), reply_requested);
	if (pgconn_stream_send(ws->conn, msg, sizeof(msg)) == 0 && flush > ws->confirmed_lsn) {
		log_debug("wal confirmed lsn=%X/%X", (unsigned)(flush >> 32), (unsigned)flush);
		ws->confirmed_lsn = flush;
	}
}

static void status_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	send_status(t->data, false);
}

/* Forget everything held for the stream: the server sends it all again from
 * the confirmed position. In-flight refreshes finish unheard. */
static void reset_stream_state(struct wal_source *ws)
{
	struct catalog none = {0};
	batcher_set_channels(ws->batcher, &none, DELIVERY_WAL);
	ws->txn_head = ws->txn_count = 0;
	ws->in_txn = false;
	ws->visible_seq = ws->next_seq - 1; /* nothing received since is known to be visible */
	for (size_t i = 0; i < ws->n_holds; i++)
		free(ws->holds[i].rollup);
	ws->n_holds = 0;
}

/* ---- the catalog ---- */

static void captures_free(struct wal_source *ws)
{
	for (size_t i = 0; i < ws->n_captures; i++) {
		struct wal_capture *k = &ws->captures[i];
		free(k->channel);
		free(k->rollup);
		free(k->table);
		free(k->key_column);
		free(k->filter_column);
		free(k->filter_value);
		for (size_t j = 0; j < k->n_watched; j++)
			free(k->watched[j]);
		free(k->watched);
	}
	free(ws->captures);
	ws->captures = NULL;
	ws->n_captures = 0;
}

static void relations_free(struct wal_source *ws)
{
	for (size_t i = 0; i < ws->n_relations; i++) {
		for (size_t j = 0; j < ws->relations[i].n_bindings; j++)
			free(ws->relations[i].bindings[j].watched);
		free(ws->relations[i].bindings);
		free(ws->relations[i].name);
	}
	free(ws->relations);
	ws->relations = NULL;
	ws->n_relations = 0;
}

/* The WAL-mode channels and their captures, as text: the stream's state
 * stays valid across a reload only while this does not change. */
static char *fingerprint_of(const struct catalog *cat)
{
	struct http_body b = {0};
	for (size_t i = 0; i < cat->n_channels; i++)
		if (cat->channels[i].delivery == DELIVERY_WAL)
			http_body_printf(&b, "channel %s %s %d;", cat->channels[i].name, cat->channels[i].rollup,
			                 cat->channels[i].key_type);
	for (size_t i = 0; i < cat->n_captures; i++) {
		const struct catalog_capture *k = &cat->captures[i];
		const struct catalog_channel *ch = catalog_find_channel(cat, k->channel);
		if (ch == NULL || ch->delivery != DELIVERY_WAL)
			continue;
		http_body_printf(&b, "capture %s %u %s %s %s %u", k->channel, k->table_oid, k->key_column,
		                 k->filter_column ? k->filter_column : "-", k->filter_value ? k->filter_value : "-",
		                 k->events);
		for (size_t j = 0; j < k->n_watched; j++)
			http_body_printf(&b, " %s", k->watched[j]);
		http_body_printf(&b, ";");
	}
	return b.data ? b.data : xstrdup("");
}

static void copy_captures(struct wal_source *ws, const struct catalog *cat)
{
	captures_free(ws);
	ws->captures = xcalloc(cat->n_captures + 1, sizeof(*ws->captures));
	for (size_t i = 0; i < cat->n_captures; i++) {
		const struct catalog_capture *k = &cat->captures[i];
		const struct catalog_channel *ch = catalog_find_channel(cat, k->channel);
		if (ch == NULL || ch->delivery != DELIVERY_WAL)
			continue;
		struct wal_capture *c = &ws->captures[ws->n_captures++];
		c->channel = xstrdup(k->channel);
		c->rollup = xstrdup(ch->rollup);
		c->key_type = ch->key_type;
		c->table_oid = k->table_oid;
		c->table = xstrdup(k->table);
		c->key_column = xstrdup(k->key_column);
		c->filter_column = xstrdup(k->filter_column);
		c->filter_value = xstrdup(k->filter_value);
		c->events = k->events;
		if (k->watched != NULL) {
			c->watched = xcalloc(k->n_watched, sizeof(char *));
			for (size_t j = 0; j < k->n_watched; j++)
				c->watched[j] = xstrdup(k->watched[j]);
			c->n_watched = k->n_watched;
		}
	}
}

static void stop_stream(struct wal_source *ws)
{
	ev_timer_stop(ws->env.loop, &ws->status_timer);
	ev_timer_stop(ws->env.loop, &ws->stats_timer);
	pgconn_stop(ws->conn);
}

static void set_catalog(void *impl, const struct catalog *cat, bool new_session)
{
	struct wal_source *ws = impl;
	(void)new_session;
	char *fp = fingerprint_of(cat);
	bool wanted = fp[0] != '\0';
	bool changed = ws->fingerprint == NULL || strcmp(fp, ws->fingerprint) != 0;

	free(ws->fingerprint);
	ws->fingerprint = fp;
	if (changed) {
		/* What the held keys meant has changed: start the stream over. */
		if (ws->step != WAL_DOWN)
			stop_stream(ws);
		reset_stream_state(ws);
		copy_captures(ws, cat);
		relations_free(ws);
		batcher_set_channels(ws->batcher, cat, DELIVERY_WAL);
	}
	ws->wanted = wanted && !ws->stopping;
	/* Rollups, but none in WAL mode any more (a standby gets no rollups at all). */
	ws->drop_orphan =
	    !wanted && !ws->stopping && cat->n_rollups > 0 && catalog_has_wal_slot(cat, ws->cfg->wal_slot);
	if (!ws->wanted && ws->step != WAL_DOWN) {
		stop_stream(ws);
		set_step(ws, WAL_DOWN);
	}
	if ((ws->wanted || ws->drop_orphan) && pgconn_state(ws->conn) == PGCONN_DOWN)
		pgconn_start(ws->conn);
	ws->env.state_changed(ws->env.arg);
}

/* ---- the session's steps ---- */

static void on_result(struct pgconn *c, const PGresult *res, const char *error, void *arg);
static void send_start(struct wal_source *ws);

static void send_step(struct wal_source *ws, enum wal_step step, const char *sql)
{
	set_step(ws, step);
	if (pgconn_query(ws->conn, sql, 0, NULL, on_result, ws) != 0)
		log_warning("wal statement not sent step=%s; the session is being re-established", step_names[step]);
}

static void send_check(struct wal_source *ws)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
	         "SELECT array_to_string(problems, '; '), slot, array_to_string(walk, ',')"
	         " FROM rollupd.wal_check('%s', '" PUBLICATION "')",
	         ws->cfg->wal_slot);
	send_step(ws, WAL_CHECK, sql);
}

/* Walk every WAL-mode rollup named in `list` ("a,b"): their slot is newer
 * than their last complete walk. */
static void walk_rollups(struct wal_source *ws, const char *list)
{
	char *copy = xstrdup(list);
	for (char *save = NULL, *r = strtok_r(copy, ",", &save); r != NULL; r = strtok_r(NULL, ",", &save))
		ws->env.reconcile(ws->env.arg, r, WALK_SLOT_REBUILT);
	free(copy);
}

/* Every WAL-mode rollup (once each), after a slot was (re)created. */
static void walk_all(struct wal_source *ws)
{
	for (size_t i = 0; i < ws->n_captures; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(ws->captures[j].rollup, ws->captures[i].rollup) == 0;
		if (!seen)
			ws->env.reconcile(ws->env.arg, ws->captures[i].rollup, WALK_SLOT_REBUILT);
	}
}

static void on_check(struct wal_source *ws, const PGresult *res)
{
	const char *problems = PQgetvalue(res, 0, 0);
	const char *slot = PQgetvalue(res, 0, 1);
	char sql[160];

	if (problems[0] != '\0') {
		char reason[1024];
		snprintf(reason, sizeof(reason), "the WAL mode cannot run: %s", problems);
		log_error("%s", reason);
		if (!ws->env.fatal(ws->env.arg, EX_CONFIG, reason))
			pgconn_fail(ws->conn, "the WAL mode's checks failed (retrying)");
		return;
	}
	if (strcmp(slot, "lost") == 0) {
		log_warning("wal slot=%s was invalidated (wal_status lost, max_slot_wal_keep_size?); dropping and"
		            " re-creating it, then reconciling the WAL-mode rollups",
		            ws->cfg->wal_slot);
		snprintf(sql, sizeof(sql), "DROP_REPLICATION_SLOT \"%s\"", ws->cfg->wal_slot);
		send_step(ws, WAL_DROP_SLOT, sql);
		return;
	}
	if (strcmp(slot, "missing") == 0) {
		snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput (SNAPSHOT 'nothing')",
		         ws->cfg->wal_slot);
		send_step(ws, WAL_CREATE_SLOT, sql);
		return;
	}
	walk_rollups(ws, PQgetvalue(res, 0, 2));
	send_start(ws);
}

static void on_stream_started(struct pgconn *c, void *arg)
{
	struct wal_source *ws = arg;
	(void)c;
	if (ws->ever_streamed)
		ws->restarts++;
	ws->ever_streamed = true;
	log_info("wal streaming slot=%s publication=" PUBLICATION " from=%X/%X backend_pid=%d", ws->cfg->wal_slot,
	         (unsigned)(ws->confirmed_lsn >> 32), (unsigned)ws->confirmed_lsn, pgconn_backend_pid(c));
	pgconn_confirm(c);
	set_step(ws, WAL_STREAMING);
	double every = ws->cfg->wal_status_interval_ms / 1000.0;
	ev_timer_set(&ws->status_timer, every, every);
	ev_timer_start(ws->env.loop, &ws->status_timer);
	if (ws->cfg->wal_stats_interval_s > 0) {
		ws->stats_wanted = true;
		ev_timer_set(&ws->stats_timer, ws->cfg->wal_stats_interval_s, ws->cfg->wal_stats_interval_s);
		ev_timer_start(ws->env.loop, &ws->stats_timer);
	}
	ws->env.due(ws->env.arg);
}

static bool on_data(struct pgconn *c, const char *buf, size_t len, void *arg);

static void on_stream_refused(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	(void)res;
	(void)arg;
	char reason[600];
	snprintf(reason, sizeof(reason), "START_REPLICATION refused: %s", error);
	pgconn_fail(c, reason);
}

static void send_start(struct wal_source *ws)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
	         "START_REPLICATION SLOT \"%s\" LOGICAL 0/0 (proto_version '1', publication_names '\"" PUBLICATION
	         "\"')",
	         ws->cfg->wal_slot);
	struct pgconn_stream_handler h = {
	    .on_started = on_stream_started, .on_data = on_data, .on_refused = on_stream_refused, .arg = ws};
	set_step(ws, WAL_START);
	if (pgconn_stream(ws->conn, sql, &h) != 0)
		log_warning("wal START_REPLICATION not sent; the session is being re-established");
}

static void on_result(struct pgconn *c, const PGresult *res, const char *error, void *arg)
{
	struct wal_source *ws = arg;
	char reason[768];

	if (pgconn_state(c) != PGCONN_IDLE)
		return; /* the session is gone: on_down has the story */
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (error != NULL && ws->step == WAL_DROP_ORPHAN && state != NULL && strcmp(state, "42704") == 0)
		error = NULL; /* gone already */
	if (error != NULL) {
		snprintf(reason, sizeof(reason), "wal %s failed: %s", step_names[ws->step], error);
		/* Every slot in use (53400) or no rollupd schema: nothing a retry fixes soon. */
		if (ws->step == WAL_CREATE_SLOT && state != NULL && strcmp(state, "53400") == 0 &&
		    ws->env.fatal(ws->env.arg, EX_UNAVAILABLE, reason))
			return;
		pgconn_fail(c, reason);
		return;
	}
	switch (ws->step) {
	case WAL_IDENTIFY:
		if (PQntuples(res) != 1 || PQnfields(res) < 4 || PQgetisnull(res, 0, 3)) {
			if (!ws->env.fatal(ws->env.arg, EX_CONFIG,
			                   "the WAL mode's connection is not to a database (replication=database)"))
				pgconn_fail(c, "IDENTIFY_SYSTEM named no database");
			return;
		}
		send_check(ws);
		return;
	case WAL_CHECK:
		if (PQntuples(res) != 1 || PQnfields(res) != 3) {
			pgconn_fail(c, "rollupd.wal_check() answered in an unexpected shape");
			return;
		}
		on_check(ws, res);
		return;
	case WAL_DROP_SLOT: {
		char sql[160];
		ws->slot_rebuilds++;
		snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput (SNAPSHOT 'nothing')",
		         ws->cfg->wal_slot);
		send_step(ws, WAL_CREATE_SLOT, sql);
		return;
	}
	case WAL_CREATE_SLOT: {
		char sql[160];
		log_info("wal slot=%s created consistent_point=%s; every WAL-mode rollup is reconciled once",
		         ws->cfg->wal_slot, PQntuples(res) == 1 && PQnfields(res) >= 2 ? PQgetvalue(res, 0, 1) : "?");
		/* What changed before the slot existed is not in its stream. */
		ws->confirmed_lsn = 0;
		snprintf(sql, sizeof(sql), "SELECT rollupd.wal_slot_created('%s')", ws->cfg->wal_slot);
		send_step(ws, WAL_RECORD_SLOT, sql);
		return;
	}
	case WAL_RECORD_SLOT:
		/* The slot first, then the walk, then the stream is trusted. */
		walk_all(ws);
		send_start(ws);
		return;
	case WAL_DROP_ORPHAN: {
		char sql[160];
		snprintf(sql, sizeof(sql), "SELECT rollupd.wal_slot_dropped('%s')", ws->cfg->wal_slot);
		send_step(ws, WAL_FORGET_SLOT, sql);
		return;
	}
	case WAL_FORGET_SLOT:
		log_info("wal slot=%s dropped", ws->cfg->wal_slot);
		ws->drop_orphan = false;
		set_step(ws, WAL_DOWN);
		pgconn_stop(ws->conn);
		return;
	default:
		return;
	}
}

static void on_up(struct pgconn *c, void *arg)
{
	struct wal_source *ws = arg;
	(void)c;
	if (ws->drop_orphan && !ws->wanted) {
		char sql[160];
		log_warning("wal: no rollup uses the WAL mode any more; dropping slot=%s (it would keep WAL for ever)",
		            ws->cfg->wal_slot);
		snprintf(sql, sizeof(sql), "DROP_REPLICATION_SLOT \"%s\" WAIT", ws->cfg->wal_slot);
		send_step(ws, WAL_DROP_ORPHAN, sql);
		return;
	}
	if (!ws->wanted) {
		pgconn_stop(ws->conn);
		return;
	}
	send_step(ws, WAL_IDENTIFY, "IDENTIFY_SYSTEM");
}

static void on_down(struct pgconn *c, const char *reason, bool was_up, void *arg)
{
	struct wal_source *ws = arg;
	bool was_streaming = ws->step == WAL_STREAMING;
	(void)was_up;
	ev_timer_stop(ws->env.loop, &ws->status_timer);
	ev_timer_stop(ws->env.loop, &ws->stats_timer);
	/* A transaction cut off mid-way comes again, whole: it confirms nothing. */
	struct wal_txn *t = current_txn(ws);
	if (t != NULL) {
		t->closed = true;
		t->end_lsn = 0;
	}
	ws->in_txn = false;
	relations_free(ws);
	set_step(ws, WAL_DOWN);
	if (was_streaming)
		log_error("wal stream lost; reconnecting, the server sends again from lsn=%X/%X error=\"%s\"",
		          (unsigned)(ws->confirmed_lsn >> 32), (unsigned)ws->confirmed_lsn, reason);
	if (ws->wanted && ws->cfg->connect_retries > 0 && pgconn_failures(c) >= (uint32_t)ws->cfg->connect_retries) {
		char why[600];
		snprintf(why, sizeof(why), "the WAL mode's replication connection failed %u times: %s",
		         pgconn_failures(c), reason);
		ws->env.fatal(ws->env.arg, EX_UNAVAILABLE, why);
	}
}

/* ---- the stream ---- */

static struct wal_relation *find_relation(struct wal_source *ws, uint32_t relid)
{
	for (size_t i = 0; i < ws->n_relations; i++)
		if (ws->relations[i].relid == relid)
			return &ws->relations[i];
	return NULL;
}

static int column_index(const struct pgo_msg *m, const char *name)
{
	for (int i = 0; i < m->natts; i++)
		if (strcmp(m->atts[i].name, name) == 0)
			return i;
	return -1;
}

/* A Relation message: (re)bind every capture of that table by column name. */
static void on_relation(struct wal_source *ws, const struct pgo_msg *m)
{
	struct wal_relation *rel = find_relation(ws, m->relid);
	if (rel == NULL) {
		ws->relations = xrealloc(ws->relations, (ws->n_relations + 1) * sizeof(*ws->relations));
		rel = &ws->relations[ws->n_relations++];
		*rel = (struct wal_relation){.relid = m->relid};
	}
	for (size_t j = 0; j < rel->n_bindings; j++)
		free(rel->bindings[j].watched);
	free(rel->bindings);
	free(rel->name);
	rel->bindings = NULL;
	rel->n_bindings = 0;
	rel->name = xasprintf("%s.%s", m->nspname[0] ? m->nspname : "pg_catalog", m->relname);

	for (size_t i = 0; i < ws->n_captures; i++) {
		const struct wal_capture *k = &ws->captures[i];
		if (k->table_oid != m->relid)
			continue;
		rel->bindings = xrealloc(rel->bindings, (rel->n_bindings + 1) * sizeof(*rel->bindings));
		struct wal_binding *b = &rel->bindings[rel->n_bindings++];
		*b = (struct wal_binding){.capture = i, .key_att = column_index(m, k->key_column), .filter_att = -1};
		b->broken = b->key_att < 0;
		if (k->filter_column != NULL) {
			b->filter_att = column_index(m, k->filter_column);
			b->broken = b->broken || b->filter_att < 0;
		}
		b->watched = xcalloc(k->n_watched + 2, sizeof(int));
		for (size_t j = 0; j < k->n_watched; j++) {
			int a = column_index(m, k->watched[j]);
			b->broken = b->broken || a < 0;
			b->watched[b->n_watched++] = a;
		}
		b->watched[b->n_watched++] = b->key_att;
		if (b->filter_att >= 0)
			b->watched[b->n_watched++] = b->filter_att;
		if (b->broken)
			log_error("wal: table %s no longer has a column channel %s reads (%s); its changes reconcile "
			          "rollup=%s",
			          rel->name, k->channel, k->key_column, k->rollup);
	}
}

/* A column's value in a tuple, falling back on the old tuple for a TOASTed
 * value the new one did not repeat. NULL when unknown. */
static const struct pgo_value *value_of(const struct pgo_tuple *t, const struct pgo_tuple *fallback, int att)
{
	if (t == NULL || att < 0 || att >= t->ncols)
		return NULL;
	const struct pgo_value *v = &t->cols[att];
	if (v->kind == 'u' && fallback != NULL && att < fallback->ncols && fallback->cols[att].kind != 'u')
		return &fallback->cols[att];
	return v->kind == 'u' ? NULL : v;
}

static bool same_value(const struct pgo_value *a, const struct pgo_value *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return a->kind == b->kind && a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* A key or filter column that cannot be read: the rollup is walked instead. */
static void key_unavailable(struct wal_source *ws, const struct wal_capture *k, const char *what)
{
	ws->keys_unavailable++;
	if (ws->env.reconcile(ws->env.arg, k->rollup, WALK_OVERFLOW))
		log_warning("wal: a change of table %s came without %s (channel %s); reconciling rollup=%s", k->table,
		            what, k->channel, k->rollup);
}

/* The key of one row image, through the capture's filter, into the channel. */
static void add_row_key(struct wal_source *ws, const struct wal_capture *k, const struct wal_binding *b,
                        const struct pgo_tuple *row, const struct pgo_tuple *fallback)
{
	if (b->filter_att >= 0) {
		const struct pgo_value *f = value_of(row, fallback, b->filter_att);
		if (f != NULL && f->kind == 'n')
			return;
		if (f != NULL && (f->len != strlen(k->filter_value) || memcmp(f->data, k->filter_value, f->len) != 0))
			return;
		/* (An unknown filter value lets the key through: a refresh too many is harmless.) */
	}
	const struct pgo_value *v = value_of(row, fallback, b->key_att);
	if (v == NULL) {
		key_unavailable(ws, k, "its key column");
		return;
	}
	if (v->kind == 'n')
		return; /* no key, no derived row */
	char key[PAYLOAD_MAX_TEXT_KEY + 1];
	size_t len = 0;
	const char *bad =
	    v->kind == 't' ? payload_key(v->data, v->len, k->key_type, key, sizeof(key), &len) : "a binary value";
	struct batch_channel *ch = batcher_find(ws->batcher, k->channel);
	if (ch == NULL)
		return;
	if (bad != NULL) {
		ws->malformed++;
		batcher_count_malformed(ch);
		log_warning("malformed key skipped channel=%s key=\"%.*s\" reason=\"%s\"", k->channel,
		            (int)(v->len > 64 ? 64 : v->len), v->data ? v->data : "", bad);
		return;
	}
	struct wal_txn *t = current_txn(ws);
	uint64_t seq = t ? t->seq : ws->next_seq; /* (a change outside Begin/Commit is malformed: see on_message) */
	if (batcher_add_key(ws->batcher, ch, key, len, seq) == BATCH_KEY_NEW && t != NULL)
		t->refs++;
}

static void on_change(struct wal_source *ws, const struct pgo_msg *m)
{
	struct wal_relation *rel = find_relation(ws, m->relid);
	if (rel == NULL)
		return; /* a table no capture reads (pgoutput sends its Relation first) */
	ws->changes++;
	const struct pgo_tuple *old = m->old_kind ? &m->old_tuple : NULL;
	for (size_t i = 0; i < rel->n_bindings; i++) {
		const struct wal_binding *b = &rel->bindings[i];
		const struct wal_capture *k = &ws->captures[b->capture];
		if (b->broken) {
			key_unavailable(ws, k, "a column its capture reads");
			continue;
		}
		switch (m->kind) {
		case PGO_INSERT:
			if (k->events & CAPTURE_INSERT)
				add_row_key(ws, k, b, &m->new_tuple, NULL);
			break;
		case PGO_UPDATE:
			if (!(k->events & CAPTURE_UPDATE))
				break;
			if (old != NULL && m->old_kind == 'O' && k->watched != NULL) {
				/* The whole old row: an update that changed no watched column gives no key. */
				bool changed = false;
				for (size_t j = 0; j < b->n_watched && !changed; j++)
					changed = !same_value(value_of(old, NULL, b->watched[j]),
					                      value_of(&m->new_tuple, old, b->watched[j]));
				if (!changed)
					break;
			}
			add_row_key(ws, k, b, &m->new_tuple, old);
			if (old != NULL)
				add_row_key(ws, k, b, old, NULL);
			break;
		case PGO_DELETE:
			if (!(k->events & CAPTURE_DELETE))
				break;
			if (old != NULL) /* (the reader refuses a Delete without its old row) */
				add_row_key(ws, k, b, old, NULL);
			else
				key_unavailable(ws, k, "its old row");
			break;
		default:
			break;
		}
	}
}

/* TRUNCATE: every rollup that reads one of the tables is walked, and the
 * transaction is not confirmed before its walks are done. */
static void on_truncate(struct wal_source *ws, const struct pgo_msg *m)
{
	struct wal_txn *t = current_txn(ws);
	for (int r = 0; r < m->nrelids; r++) {
		for (size_t i = 0; i < ws->n_captures; i++) {
			const struct wal_capture *k = &ws->captures[i];
			if (k->table_oid != m->relids[r])
				continue;
			log_warning("wal: table %s was truncated; reconciling rollup=%s", k->table, k->rollup);
			ws->env.reconcile(ws->env.arg, k->rollup, WALK_SOURCE_TRUNCATED);
			if (t != NULL) {
				ws->holds = xrealloc(ws->holds, (ws->n_holds + 1) * sizeof(*ws->holds));
				ws->holds[ws->n_holds++] =
				    (struct wal_hold){.rollup = xstrdup(k->rollup), .seq = t->seq};
				t->holds++;
			}
		}
	}
}

/* One pgoutput message; false when the stream must be dropped. */
static bool on_message(struct wal_source *ws, const unsigned char *data, size_t len, char *err, size_t errlen)
{
	struct pgo_msg *m = &ws->msg;
	if (pgo_parse(data, len, m, err, errlen) != 0)
		return false;
	bool in_txn_kind = m->kind == PGO_INSERT || m->kind == PGO_UPDATE || m->kind == PGO_DELETE ||
	                   m->kind == PGO_TRUNCATE || m->kind == PGO_COMMIT;
	if (in_txn_kind && !ws->in_txn) {
		snprintf(err, errlen, "pgoutput message '%c' outside a transaction", (char)m->kind);
		return false;
	}
	switch (m->kind) {
	case PGO_BEGIN:
		if (ws->in_txn) {
			snprintf(err, errlen, "pgoutput Begin inside a transaction");
			return false;
		}
		txn_open(ws, m->xid, m->commit_time);
		ws->in_txn = true;
		break;
	case PGO_COMMIT: {
		struct wal_txn *t = current_txn(ws);
		t->closed = true;
		t->end_lsn = m->end_lsn;
		ws->in_txn = false;
		ws->transactions++;
		if (m->end_lsn > ws->received_lsn)
			ws->received_lsn = m->end_lsn;
		break;
	}
	case PGO_RELATION:
		on_relation(ws, m);
		break;
	case PGO_INSERT:
	case PGO_UPDATE:
	case PGO_DELETE:
		on_change(ws, m);
		break;
	case PGO_TRUNCATE:
		on_truncate(ws, m);
		break;
	default: /* Origin, Type, Message: nothing to take */
		break;
	}
	return true;
}

static bool on_data(struct pgconn *c, const char *buf, size_t len, void *arg)
{
	struct wal_source *ws = arg;
	struct repl_frame f;
	char err[256];

	if (repl_frame_parse(buf, len, &f, err, sizeof(err)) != 0 ||
	    (f.kind == REPL_XLOGDATA && !on_message(ws, f.data, f.data_len, err, sizeof(err)))) {
		/* Never past what it says: drop the stream; the server sends it again. */
		ws->malformed++;
		log_error("wal: %s; dropping the stream (it resumes from lsn=%X/%X)", err,
		          (unsigned)(ws->confirmed_lsn >> 32), (unsigned)ws->confirmed_lsn);
		pgconn_fail(c, err);
		return false;
	}
	if (f.kind == REPL_KEEPALIVE) {
		if (f.wal_end > ws->keepalive_lsn)
			ws->keepalive_lsn = f.wal_end;
		if (f.wal_end > ws->received_lsn)
			ws->received_lsn = f.wal_end;
		if (f.reply_requested)
			send_status(ws, false);
	}
	ws->env.due(ws->env.arg);
	/* Backpressure: the keys held in memory stay under batch.max_pending_keys. */
	return !ws->stopping && batcher_pending(ws->batcher) < (size_t)ws->cfg->batch_max_pending_keys;
}

/* ---- jobs: refresh batches and the stats step ---- */

static void maybe_resume(struct wal_source *ws)
{
	if (!ws->stopping && ws->step == WAL_STREAMING &&
	    batcher_pending(ws->batcher) < (size_t)ws->cfg->batch_max_pending_keys / 2 + 1)
		pgconn_stream_resume(ws->conn);
}

static void refresh_done(struct job *job, const PGresult *res, const char *error, ev_tstamp now)
{
	struct wal_source *ws = job->owner;
	struct wal_batch *wb = job->extra;
	if (refresh_job_finish(ws->batcher, &ws->env, job, res, error, now) && wb->max_seq > ws->visible_seq)
		ws->visible_seq = wb->max_seq;
	free(wb->sql);
	free(wb->xids);
	free(wb);
	maybe_resume(ws);
	if (ws->stopping && batcher_pending(ws->batcher) == 0)
		send_status(ws, false); /* the last word before the stop: what is confirmed */
}

/* The transactions a refresh taken now must see: every one received since
 * the last refresh that saw all before it. */
static char *unchecked_xids(struct wal_source *ws)
{
	struct http_body b = {0};
	http_body_printf(&b, "{");
	bool first = true;
	for (size_t i = 0; i < ws->txn_count; i++) {
		const struct wal_txn *t = &ws->txns[ws->txn_head + i];
		if (t->seq <= ws->visible_seq)
			continue;
		http_body_printf(&b, "%s%u", first ? "" : ",", t->xid);
		first = false;
	}
	http_body_printf(&b, "}");
	return b.data;
}

static const char STATS_SQL[] = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn),"
                                " pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), s.wal_status"
                                " FROM pg_replication_slots s WHERE s.slot_name = $1";

static void stats_done(struct job *job, const PGresult *res, const char *error, ev_tstamp now)
{
	struct wal_source *ws = job->owner;
	(void)now;
	ws->stats_in_flight = false;
	if (error != NULL) {
		log_warning("wal stats failed error=\"%s\"", error);
		return;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 3)
		return;
	ws->lag_bytes = strtod(PQgetvalue(res, 0, 0), NULL);
	ws->retained_bytes = strtod(PQgetvalue(res, 0, 1), NULL);
	snprintf(ws->slot_status, sizeof(ws->slot_status), "%s", PQgetvalue(res, 0, 2));
	log_info("wal slot=%s status=%s lag_bytes=%.0f retained_bytes=%.0f confirmed=%X/%X", ws->cfg->wal_slot,
	         ws->slot_status, ws->lag_bytes, ws->retained_bytes, (unsigned)(ws->confirmed_lsn >> 32),
	         (unsigned)ws->confirmed_lsn);
	if (strcmp(ws->slot_status, "lost") == 0 && ws->step == WAL_STREAMING)
		pgconn_fail(ws->conn, "the slot was invalidated (wal_status lost)");
}

static void stats_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct wal_source *ws = t->data;
	(void)loop;
	(void)revents;
	ws->stats_wanted = true;
	ws->env.due(ws->env.arg);
}

static bool take(void *impl, ev_tstamp now, struct job *job)
{
	struct wal_source *ws = impl;
	if (ws->stats_wanted && !ws->stats_in_flight && ws->step == WAL_STREAMING) {
		ws->stats_wanted = false;
		ws->stats_in_flight = true;
		snprintf(ws->stats_param, sizeof(ws->stats_param), "%s", ws->cfg->wal_slot);
		job->kind = JOB_STATS;
		job->sql = STATS_SQL;
		job->nparams = 1;
		job->params[0] = ws->stats_param;
		job->owner = ws;
		job->done = stats_done;
		return true;
	}
	struct batch *batch = batcher_take(ws->batcher, now);
	if (batch == NULL)
		return false;
	struct wal_batch *wb = xcalloc(1, sizeof(*wb));
	/* The channel name is a validated identifier, safe as a literal. */
	wb->sql = xasprintf("SELECT written, poisoned, detail FROM rollupd.refresh_keys('%s', $1::text[],"
	                    " $2::bigint[], $3::integer)",
	                    batch->channel);
	wb->xids = unchecked_xids(ws);
	wb->max_seq = ws->next_seq - 1;
	refresh_job_fill(job, batch, ws, refresh_done);
	job->sql = wb->sql;
	job->nparams = 3;
	job->params[1] = wb->xids;
	job->params[2] = ws->wait_param;
	job->extra = wb;
	return true;
}

static size_t pending(const void *impl)
{
	const struct wal_source *ws = impl;
	return batcher_pending(ws->batcher);
}

/* A stop: read no more of the stream, refresh what is held, and confirm it
 * (refresh_done sends the last status update). */
static void stop(void *impl)
{
	struct wal_source *ws = impl;
	ws->stopping = true;
	ws->wanted = false;
	batcher_set_draining(ws->batcher, true);
	if (batcher_pending(ws->batcher) == 0)
		send_status(ws, false);
}

static struct batch_policy policy_from(const struct config *cfg)
{
	return (struct batch_policy){
	    .max_keys = (size_t)cfg->batch_max_keys,
	    .max_pending = SIZE_MAX, /* never dropped: the stream waits instead (on_data) */
	    .window_s = cfg->batch_window_ms / 1000.0,
	    .retry_min_ms = (uint32_t)cfg->retry_min_ms,
	    .retry_max_ms = (uint32_t)cfg->retry_max_ms,
	};
}

static struct pgconn_settings settings_from(const struct config *cfg)
{
	return (struct pgconn_settings){
	    .conninfo = cfg->conninfo,
	    .application_name = WAL_APPLICATION_NAME,
	    .connect_timeout_ms = cfg->connect_timeout_ms,
	    .statement_timeout_ms = cfg->statement_timeout_ms,
	    .reconnect_min_ms = cfg->reconnect_min_ms,
	    .reconnect_max_ms = cfg->reconnect_max_ms,
	    .replication = true,
	    .owner_confirms = true,
	};
}

static void reload(void *impl, const struct config *cfg)
{
	struct wal_source *ws = impl;
	bool slot_changed = strcmp(ws->cfg->wal_slot, cfg->wal_slot) != 0;
	ws->cfg = cfg;
	struct batch_policy policy = policy_from(cfg);
	batcher_set_policy(ws->batcher, &policy);
	snprintf(ws->wait_param, sizeof(ws->wait_param), "%d", cfg->wal_visibility_wait_ms);
	struct pgconn_settings settings = settings_from(cfg);
	pgconn_update(ws->conn, &settings); /* a changed conninfo starts the session over */
	if (slot_changed && ws->step != WAL_DOWN) {
		reset_stream_state(ws);
		pgconn_fail(ws->conn, "wal.slot changed");
	}
	/* The checks run again on every reload (a publication changed, say). */
	if (!slot_changed && ws->step == WAL_STREAMING)
		pgconn_fail(ws->conn, "reload: checking the publication and the slot again");
}

static bool channel(const void *impl, size_t i, struct channel_stats *out)
{
	const struct wal_source *ws = impl;
	return source_batch_channel_stats(ws->batcher, i, DELIVERY_WAL, out);
}

/* A server shutting down waits for every logical walsender to have its
 * stream confirmed to the end, and what rollupd has not refreshed it does
 * not confirm: with the server gone from under the workers, let the stream
 * go (the server sends it again later). The listener's loss says so first. */
static void session_lost(void *impl)
{
	struct wal_source *ws = impl;
	if (ws->step != WAL_DOWN)
		pgconn_fail(ws->conn, "the control session was lost; the stream follows it");
}

static bool ready(const void *impl)
{
	const struct wal_source *ws = impl;
	return !ws->wanted || ws->step == WAL_STREAMING;
}

/* Seconds since the commit of the oldest transaction not yet confirmed (0: none). */
static double oldest_unconfirmed_s(const struct wal_source *ws)
{
	if (ws->txn_count == 0)
		return 0;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	double age = (double)(repl_time_from_unix((double)tv.tv_sec + (double)tv.tv_usec / 1e6) -
	                      ws->txns[ws->txn_head].commit_time) /
	             1e6;
	return age > 0 ? age : 0;
}

static void gauge(struct http_body *b, const char *name, const char *help, double value)
{
	http_body_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, value);
}

static void counter(struct http_body *b, const char *name, const char *help, uint64_t value)
{
	http_body_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
	                 (unsigned long long)value);
}

static void report(const void *impl, enum source_report what, struct http_body *b)
{
	const struct wal_source *ws = impl;
	if (ws->n_captures == 0)
		return; /* no WAL-mode rollup: nothing to say */
	switch (what) {
	case REPORT_METRICS:
		gauge(b, "rollupd_wal_streaming", "1 while the WAL mode's slot is being streamed.",
		      ws->step == WAL_STREAMING);
		gauge(b, "rollupd_wal_lag_bytes",
		      "WAL between the server's current position and the slot's confirmed one, at the last stats step.",
		      ws->lag_bytes);
		gauge(b, "rollupd_wal_retained_bytes", "WAL the slot keeps on the server (from its restart_lsn).",
		      ws->retained_bytes);
		gauge(b, "rollupd_wal_confirmed_lsn", "The flush position rollupd last confirmed to the server.",
		      (double)ws->confirmed_lsn);
		gauge(b, "rollupd_wal_received_lsn", "The position of the last commit or keepalive received.",
		      (double)ws->received_lsn);
		gauge(b, "rollupd_wal_oldest_unconfirmed_seconds",
		      "Age of the oldest received transaction not yet confirmed (by its commit time); 0 when none.",
		      oldest_unconfirmed_s(ws));
		gauge(b, "rollupd_wal_unconfirmed_transactions", "Received transactions not yet confirmed.",
		      (double)ws->txn_count);
		counter(b, "rollupd_wal_transactions_total", "Transactions received from the slot.", ws->transactions);
		counter(b, "rollupd_wal_changes_total", "Row changes of captured tables received.", ws->changes);
		counter(b, "rollupd_wal_stream_restarts_total", "Times the stream started again after the first.",
		        ws->restarts);
		counter(b, "rollupd_wal_slot_rebuilds_total",
		        "Times the slot was found invalidated, re-created, and the WAL-mode rollups reconciled.",
		        ws->slot_rebuilds);
		counter(b, "rollupd_wal_malformed_total", "Stream messages or keys that could not be read.",
		        ws->malformed);
		counter(b, "rollupd_wal_keys_unavailable_total",
		        "Changes whose key column did not come in the stream (the rollup was reconciled instead).",
		        ws->keys_unavailable);
		break;
	case REPORT_SUMMARY:
		http_body_printf(b, " wal=%s wal_lag_bytes=%.0f wal_oldest_unconfirmed_s=%.1f", step_names[ws->step],
		                 ws->lag_bytes, oldest_unconfirmed_s(ws));
		break;
	case REPORT_HEALTH:
		http_body_printf(b, "wal %s slot=%s lag_bytes=%.0f retained_bytes=%.0f oldest_unconfirmed_s=%.1f\n",
		                 step_names[ws->step], ws->cfg->wal_slot, ws->lag_bytes, ws->retained_bytes,
		                 oldest_unconfirmed_s(ws));
		break;
	}
}

static void wal_free(void *impl)
{
	struct wal_source *ws = impl;
	ev_timer_stop(ws->env.loop, &ws->status_timer);
	ev_timer_stop(ws->env.loop, &ws->stats_timer);
	pgconn_free(ws->conn);
	batcher_free(ws->batcher);
	captures_free(ws);
	relations_free(ws);
	for (size_t i = 0; i < ws->n_holds; i++)
		free(ws->holds[i].rollup);
	free(ws->holds);
	free(ws->txns);
	free(ws->fingerprint);
	free(ws);
}

static const struct source_ops wal_ops = {
    .mode = DELIVERY_WAL,
    .loses_keys_while_away = false, /* the slot keeps them */
    .set_catalog = set_catalog,
    .on_notify = NULL,
    .take = take,
    .pending = pending,
    .stop = stop,
    .reload = reload,
    .channel = channel,
    .session_lost = session_lost,
    .ready = ready,
    .report = report,
    .free = wal_free,
};

struct source *wal_source_new(const struct source_env *env, const struct config *cfg)
{
	struct wal_source *ws = xcalloc(1, sizeof(*ws));
	struct batch_policy policy = policy_from(cfg);
	ws->env = *env;
	ws->cfg = cfg;
	ws->next_seq = 1;
	snprintf(ws->wait_param, sizeof(ws->wait_param), "%d", cfg->wal_visibility_wait_ms);
	ws->batcher = batcher_new(env->loop, &policy, env->due, env->arg);
	batcher_on_release(ws->batcher, on_release, ws);
	struct pgconn_settings settings = settings_from(cfg);
	struct pgconn_handler h = {.on_up = on_up, .on_down = on_down, .arg = ws};
	ws->conn = pgconn_new(env->loop, "wal", &settings, &h);
	ev_init(&ws->status_timer, status_timer_cb);
	ws->status_timer.data = ws;
	ev_init(&ws->stats_timer, stats_timer_cb);
	ws->stats_timer.data = ws;
	snprintf(ws->slot_status, sizeof(ws->slot_status), "unknown");
	return source_new(&wal_ops, ws);
}
