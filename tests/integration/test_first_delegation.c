/*
 * first_delegation through the running daemon: certificates, re-delegations
 * and rollbacks reach the cache, the cache is exactly the definition, and the
 * seniority page queries return what the correlated subquery returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

static char db[64];
static struct daemon d;
static PGconn *conn;

/* Pools 10 and 20 and addresses 1..3; blocks, transactions and
 * certificates come per test. */
static void start_empty(void)
{
	db_create_from("rollupd_fd_template", db, sizeof(db));
	conn = db_open(db);
	db_exec(conn, "INSERT INTO pool_hash (id, hash_raw, view) VALUES"
	              " (10, '\\x0a', 'pool1ten'), (20, '\\x14', 'pool1twenty')");
	db_exec(conn, "INSERT INTO stake_address (id, hash_raw, view) VALUES"
	              " (1, '\\xe101', 'stake1one'), (2, '\\xe102', 'stake1two'), (3, '\\xe103', 'stake1three')");
	daemon_start(&d, db, NULL);
}

/* One certificate: its block (one per slot) and transaction are created when missing. */
static void cert(long id, long addr, long pool, long slot, int block_index, int cert_index)
{
	db_exec(conn,
	        "INSERT INTO block (id, slot_no, block_no, epoch_no) VALUES (%ld, %ld, %ld, 300)"
	        " ON CONFLICT DO NOTHING",
	        slot, slot, slot);
	db_exec(conn,
	        "INSERT INTO tx (id, block_id, block_index) SELECT n, %ld, %d"
	        " FROM (SELECT coalesce(max(id), 0) + 1 AS n FROM tx) AS next"
	        " WHERE NOT EXISTS (SELECT 1 FROM tx WHERE block_id = %ld AND block_index = %d)",
	        slot, block_index, slot, block_index);
	db_exec(conn,
	        "INSERT INTO delegation (id, addr_id, cert_index, pool_hash_id, active_epoch_no, tx_id, slot_no)"
	        " SELECT %ld, %ld, %d, %ld, 302, t.id, %ld FROM tx t WHERE t.block_id = %ld AND t.block_index = %d",
	        id, addr, cert_index, pool, slot, slot, block_index);
}

/* An address's cache rows as "pool:slot:block_index:cert_index:delegation_id,...", NULL when none. */
#define ROWS_SQL                                                                                                       \
	"SELECT string_agg(concat_ws(':', pool_hash_id, slot_no, block_index, cert_index, delegation_id), ','"         \
	" ORDER BY pool_hash_id) FROM first_delegation WHERE addr_id = %ld"

static void expect_rows(long addr, const char *rows)
{
	char sql[512];
	snprintf(sql, sizeof(sql), ROWS_SQL, addr);
	if (!db_wait_value(conn, rows, 10.0, sql)) {
		char *got = db_value(conn, "%s", sql);
		ck_abort_msg("address %ld: rows %s, expected %s (log %s)", addr, got ? got : "(none)",
		             rows ? rows : "(none)", d.log);
	}
}

/* The definition written another way: row_number over each pair's certificates. */
static const char ORACLE[] = "SELECT addr_id, pool_hash_id, slot_no, block_index, cert_index, id FROM ("
                             "  SELECT d.addr_id, d.pool_hash_id, d.slot_no, t.block_index, d.cert_index, d.id,"
                             "         row_number() OVER (PARTITION BY d.addr_id, d.pool_hash_id"
                             "                            ORDER BY d.slot_no, t.block_index, d.cert_index, d.id) AS n"
                             "    FROM delegation d JOIN tx t ON t.id = d.tx_id) AS s WHERE n = 1";

/* rollupd --verify reports 0 mismatches, and the oracle agrees row for row. */
static void assert_fd_verified(const char *name)
{
	assert_verify_clean(name, "first_delegation");
	PGconn *c = db_open(name);
	char *diff = db_value(c,
	                      "SELECT count(*) FROM ((%s EXCEPT SELECT * FROM first_delegation)"
	                      " UNION ALL (SELECT * FROM first_delegation EXCEPT %s)) AS x",
	                      ORACLE, ORACLE);
	ck_assert_str_eq(diff, "0");
	free(diff);
	PQfinish(c);
}

static void stop_and_verify(void)
{
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	assert_fd_verified(db);
	PQfinish(conn);
}

START_TEST(test_first_delegation_appears)
{
	start_empty();
	cert(1, 1, 10, 1000, 0, 0);
	expect_rows(1, "10:1000:0:0:1");
	expect_rows(2, NULL);
	stop_and_verify();
}
END_TEST

START_TEST(test_redelegation_adds_a_pair_and_keeps_the_first)
{
	start_empty();
	cert(1, 1, 10, 1000, 0, 0);
	expect_rows(1, "10:1000:0:0:1");
	cert(2, 1, 20, 2000, 0, 0);
	expect_rows(1, "10:1000:0:0:1,20:2000:0:0:2");
	stop_and_verify();
}
END_TEST

START_TEST(test_return_to_an_earlier_pool_keeps_seniority)
{
	start_empty();
	cert(1, 1, 10, 1000, 0, 0);
	cert(2, 1, 20, 2000, 0, 0);
	expect_rows(1, "10:1000:0:0:1,20:2000:0:0:2");
	cert(3, 1, 10, 3000, 0, 0); /* back to pool 10: it still counts from slot 1000 */
	cert(4, 1, 20, 4000, 0, 0);
	cert(5, 2, 20, 4000, 1, 0);
	expect_rows(2, "20:4000:1:0:5");
	expect_rows(1, "10:1000:0:0:1,20:2000:0:0:2");
	stop_and_verify();
}
END_TEST

START_TEST(test_same_slot_orders_by_block_index_then_cert_index)
{
	start_empty();
	/* One statement, ids against chain order: the later transaction of
	 * the block and the later certificate of a transaction get the
	 * smaller delegation ids. The cache follows (block_index,
	 * cert_index), never ids. */
	db_exec(conn, "INSERT INTO block (id, slot_no, block_no, epoch_no) VALUES (5000, 5000, 5000, 300)");
	db_exec(conn, "INSERT INTO tx (id, block_id, block_index) VALUES (1, 5000, 7), (2, 5000, 3)");
	db_exec(conn, "INSERT INTO delegation (id, addr_id, cert_index, pool_hash_id, active_epoch_no, tx_id, slot_no)"
	              " VALUES (11, 1, 0, 10, 302, 1, 5000),"  /* block_index 7 */
	              "        (12, 1, 1, 10, 302, 2, 5000),"  /* block_index 3, cert 1 */
	              "        (13, 1, 0, 10, 302, 2, 5000),"  /* block_index 3, cert 0: the first */
	              "        (14, 2, 2, 20, 302, 2, 5000),"  /* address 2: cert 2 ... */
	              "        (15, 2, 1, 20, 302, 2, 5000)"); /* ... and cert 1, same transaction */
	expect_rows(1, "10:5000:3:0:13");
	expect_rows(2, "20:5000:3:1:15");
	stop_and_verify();
}
END_TEST

START_TEST(test_rollback_moves_or_removes_rows_and_replay_restores)
{
	start_empty();
	cert(1, 1, 10, 1000, 0, 0);
	cert(2, 2, 10, 1000, 0, 1);
	cert(3, 1, 10, 2000, 0, 0); /* address 1 again: its row stays at slot 1000 */
	cert(4, 2, 20, 2000, 0, 1);
	cert(5, 3, 20, 3000, 0, 0);
	expect_rows(3, "20:3000:0:0:5");
	expect_rows(1, "10:1000:0:0:1");

	/* A rollback to slot 999: db-sync deletes the suffix of delegation
	 * ids with their transactions and blocks, in one transaction. */
	db_exec(conn, "BEGIN");
	db_exec(conn, "DELETE FROM delegation WHERE id >= 1");
	db_exec(conn, "DELETE FROM tx WHERE block_id >= 1000");
	db_exec(conn, "DELETE FROM block WHERE slot_no >= 1000");
	db_exec(conn, "COMMIT");
	expect_rows(1, NULL);
	expect_rows(2, NULL);
	expect_rows(3, NULL);

	/* The chain grows back differently: the rolled-back certificates
	 * replayed in later slots (with new ids), address 1's second one
	 * first. */
	cert(6, 1, 10, 1500, 0, 0);
	cert(7, 2, 20, 1500, 0, 1);
	expect_rows(1, "10:1500:0:0:6");
	expect_rows(2, "20:1500:0:1:7");

	/* A partial rollback: only the first certificate of a pair goes;
	 * the pair moves to its next certificate. */
	cert(8, 1, 10, 1600, 0, 0);
	cert(9, 2, 10, 1700, 0, 0);
	expect_rows(2, "10:1700:0:0:9,20:1500:0:1:7");
	db_exec(conn, "DELETE FROM delegation WHERE id = 6");
	expect_rows(1, "10:1600:0:0:8");
	db_exec(conn, "DELETE FROM delegation WHERE id >= 8");
	expect_rows(1, NULL);
	expect_rows(2, "20:1500:0:1:7");
	stop_and_verify();
}
END_TEST

START_TEST(test_out_of_order_certificates_converge)
{
	start_empty();
	/* Later certificates arrive first (a backfill, or notifications
	 * handled in any order): each refresh recomputes from the source. */
	cert(1, 1, 10, 9000, 0, 0);
	expect_rows(1, "10:9000:0:0:1");
	cert(2, 1, 10, 5000, 0, 0);
	expect_rows(1, "10:5000:0:0:2");
	cert(3, 1, 10, 5000, 0, 1); /* same transaction, later certificate: no change */
	cert(4, 1, 10, 7000, 0, 0);
	cert(5, 1, 10, 1000, 2, 0);
	expect_rows(1, "10:1000:2:0:5");
	/* Refreshes called directly, in any order, many times: idempotent. */
	char *n = db_value(conn, "SELECT rollupd.first_delegation_refresh('{3,1,2,1,3}')");
	ck_assert_str_eq(n, "0");
	free(n);
	expect_rows(1, "10:1000:2:0:5");
	stop_and_verify();
}
END_TEST

START_TEST(test_changes_while_stopped_are_caught_up)
{
	start_empty();
	cert(1, 1, 10, 1000, 0, 0);
	expect_rows(1, "10:1000:0:0:1");
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	cert(2, 2, 20, 2000, 0, 0);
	db_exec(conn, "DELETE FROM delegation WHERE id = 1");
	/* A leftover row no delegation explains: reconcile removes it. */
	db_exec(conn, "INSERT INTO first_delegation VALUES (3, 10, 1, 0, 0, 99)");
	daemon_start(&d, db, NULL);
	expect_rows(1, NULL);
	expect_rows(2, "20:2000:0:0:2");
	if (harness_wal()) {
		/* The slot kept the changes made while rollupd was away: a restart
		 * walks nothing (one walk in the log: the first start's, after it
		 * created the slot). A row no change explains waits for a walk. */
		ck_assert_int_eq(daemon_log_count(&d, "reconcile started"), 1);
		char out[1024], args[700];
		snprintf(args, sizeof(args), "-d '%s' --reconcile first_delegation", daemon_conninfo(db));
		ck_assert_int_eq(run_rollupd(out, sizeof(out), args), 0);
	}
	expect_rows(3, NULL);
	stop_and_verify();
}
END_TEST

/*
 * The race the contract guards against: refresh A computes while B holds
 * the address; a rollback deletes the first certificate and B writes the
 * new first; then A finishes. A must not write its older answer. Returns
 * address 1's rows for pool 10 afterwards.
 */
static char *race(const char *refresh_fn)
{
	PGconn *a = db_open(db), *b = db_open(db), *c = db_open(db);
	db_exec(c, "SELECT rollupd.first_delegation_refresh('{1}')");

	db_exec(b, "BEGIN");
	db_exec(b, "SELECT rollupd.first_delegation_lock('{1}')");
	db_exec(b, "SELECT 1 FROM first_delegation WHERE addr_id = 1 FOR UPDATE");
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT %s('{1}')", refresh_fn);
	db_send_until_blocked(a, c, sql);

	db_exec(c, "DELETE FROM delegation WHERE id = 1");
	db_exec(b, "UPDATE first_delegation SET slot_no = 2000, delegation_id = 2 WHERE addr_id = 1");
	db_exec(b, "COMMIT");
	db_finish(a);
	char *rows = db_value(c, ROWS_SQL, 1L);
	PQfinish(a);
	PQfinish(b);
	PQfinish(c);
	return rows;
}

START_TEST(test_concurrent_refreshes_never_leave_an_older_answer)
{
	db_create_from("rollupd_fd_template", db, sizeof(db));
	conn = db_open(db);
	/* The naive form: compute, then upsert. It must lose this race, or the test proves nothing. */
	db_exec(conn, "CREATE FUNCTION naive_refresh(keys bigint[]) RETURNS integer LANGUAGE sql AS $$"
	              " INSERT INTO first_delegation SELECT * FROM rollupd.first_delegation_compute(keys)"
	              " ON CONFLICT (addr_id, pool_hash_id) DO UPDATE SET slot_no = EXCLUDED.slot_no,"
	              " delegation_id = EXCLUDED.delegation_id RETURNING 1 $$");
	cert(1, 1, 10, 1000, 0, 0);
	cert(2, 1, 10, 2000, 0, 0);
	char *naive = race("naive_refresh");
	ck_assert_str_eq(naive, "10:1000:0:0:1"); /* stale: certificate 1 is gone */
	free(naive);

	cert(1, 1, 10, 1000, 0, 0);
	char *locked = race("rollupd.first_delegation_refresh");
	ck_assert_str_eq(locked, "10:2000:0:0:2");
	free(locked);
	PQfinish(conn);
	assert_fd_verified(db);
}
END_TEST

/*
 * Refreshes lock their addresses, not the rollup: while one holds address 1,
 * a refresh of address 2 goes through at once, and one that includes address
 * 1 waits for it and then finds its rows right. The initial build waits for
 * every refresh in flight: it must not fill the table beside one.
 */
START_TEST(test_refreshes_wait_only_for_the_same_addresses)
{
	db_create_from("rollupd_fd_template", db, sizeof(db));
	conn = db_open(db);
	cert(1, 1, 10, 1000, 0, 0);
	cert(2, 2, 10, 1000, 0, 1);
	PGconn *a = db_open(db), *b = db_open(db);
	db_exec(a, "BEGIN");
	db_exec(a, "SELECT rollupd.first_delegation_refresh('{1}')");
	/* While a is open the table holds only its uncommitted row: the build
	 * must wait rather than fill the table beside it (it would collide with
	 * a's row), then find the table filled and add nothing. */
	db_send_until_blocked(b, conn, "SELECT rollupd.first_delegation_build()");
	db_exec(a, "COMMIT");
	db_finish(b);
	expect_rows(1, "10:1000:0:0:1");
	expect_rows(2, NULL);

	db_exec(a, "BEGIN");
	db_exec(a, "SELECT rollupd.first_delegation_refresh('{1}')");
	db_exec(b, "SET lock_timeout = '5s'"); /* a wait here fails the call, and the test */
	char *n = db_value(b, "SELECT rollupd.first_delegation_refresh('{2}')");
	ck_assert_str_eq(n, "1");
	free(n);
	db_exec(b, "RESET lock_timeout"); /* the next call is meant to wait */
	expect_rows(2, "10:1000:0:1:2");
	db_exec(conn, "DELETE FROM delegation WHERE id = 2");
	db_send_until_blocked(b, conn, "SELECT rollupd.first_delegation_refresh('{2,1}')");
	db_exec(a, "UPDATE first_delegation SET slot_no = 5 WHERE addr_id = 1"); /* seen only once a commits */
	db_exec(a, "COMMIT");
	db_finish(b);
	expect_rows(1, "10:1000:0:0:1"); /* b recomputed address 1 after a's commit */
	expect_rows(2, NULL);
	PQfinish(a);
	PQfinish(b);
	PQfinish(conn);
	assert_fd_verified(db);
}
END_TEST

/* ---- the page queries on generated data ---- */

static char *slurp(const char *dir_env, const char *rel)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", getenv(dir_env), rel);
	char *text = read_file(path);
	ck_assert_msg(text[0] != '\0', "cannot read %s", path);
	return text;
}

/* The page queries' texts: the cache's (c) and the correlated subquery's (a). */
static char *c_epoch, *c_pool, *a_epoch, *a_pool;

/* One page as text, one line per row; *rows gets the row count. */
static char *page(PGconn *c, const char *sql, int nparams, const char *const *params, int *rows)
{
	/* Unnamed statements, as API drivers send them: planned with the values. */
	PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
	size_t cap = 64, len = 0;
	char *out = malloc(cap);
	out[0] = '\0';
	for (int i = 0; i < PQntuples(r); i++)
		for (int j = 0; j < PQnfields(r); j++) {
			const char *v = PQgetvalue(r, i, j);
			size_t need = len + strlen(v) + 2;
			if (need > cap) {
				while (cap < need)
					cap *= 2;
				char *grown = realloc(out, cap);
				ck_assert_ptr_nonnull(grown);
				out = grown;
			}
			len += (size_t)snprintf(out + len, cap - len, "%s%c", v, j + 1 < PQnfields(r) ? '|' : '\n');
		}
	*rows = PQntuples(r);
	PQclear(r);
	return out;
}

/* Every page of one endpoint, cache against correlated subquery; returns the rows seen. */
static int compare_pages(PGconn *c, const char *cache, const char *subquery, const char *epoch, const char *pool,
                         const char *size)
{
	int total = 0;
	for (int p = 1;; p++) {
		char pg[16];
		snprintf(pg, sizeof(pg), "%d", p);
		const char *with_pool[4] = {epoch, pool, pg, size};
		const char *epoch_only[3] = {epoch, pg, size};
		const char *const *params = pool ? with_pool : epoch_only;
		int n = pool ? 4 : 3, got_rows, want_rows;
		char *got = page(c, cache, n, params, &got_rows);
		char *want = page(c, subquery, n, params, &want_rows);
		ck_assert_msg(strcmp(got, want) == 0, "%s: epoch %s pool %s page %d size %s differs from the subquery",
		              pool ? "pool_stakes" : "epoch_stakes", epoch, pool ? pool : "-", p, size);
		free(got);
		free(want);
		total += got_rows;
		if (got_rows == 0)
			return total;
	}
}

/* EXPLAIN of page 1 of a prepared page query, all lines. */
static char *plan_of(PGconn *c, const char *query, const char *args)
{
	/* A new prepared statement, so EXPLAIN EXECUTE shows a plan for these values. */
	static int n;
	char name[32], sql[512];
	snprintf(name, sizeof(name), "plan_%d", ++n);
	PGresult *r = PQprepare(c, name, query, 0, NULL);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
	PQclear(r);
	snprintf(sql, sizeof(sql), "EXPLAIN EXECUTE %s(%s)", name, args);
	r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
	size_t len = 1;
	for (int i = 0; i < PQntuples(r); i++)
		len += strlen(PQgetvalue(r, i, 0)) + 1;
	char *plan = calloc(1, len);
	size_t used = 0;
	for (int i = 0; i < PQntuples(r); i++)
		used += (size_t)snprintf(plan + used, len - used, "%s\n", PQgetvalue(r, i, 0));
	PQclear(r);
	return plan;
}

static void assert_plan_uses(PGconn *c, const char *query, const char *args, const char *index)
{
	char *plan = plan_of(c, query, args);
	ck_assert_msg(strstr(plan, index) != NULL && strstr(plan, "unique_epoch_stake") != NULL,
	              "page 1 does not walk %s and probe unique_epoch_stake:\n%s", index, plan);
	free(plan);
}

static void compare_all(PGconn *c)
{
	char *epoch = db_value(c, "SELECT max(epoch_no) FROM epoch_stake");
	char *big = db_value(c, "SELECT view FROM pool_hash WHERE id = 1");
	char *small = db_value(c, "SELECT view FROM pool_hash WHERE id = (SELECT max(pool_hash_id) FROM delegation)");
	char *orphan = db_value(c, "SELECT view FROM pool_hash WHERE id = (SELECT max(id) FROM pool_hash)");
	char *stakes = db_value(c, "SELECT count(*) FROM epoch_stake WHERE epoch_no = %s", epoch);

	/* Every row of the epoch, in pages across the boundary between
	 * delegated stakes and stakes no delegation explains. */
	ck_assert_int_eq(compare_pages(c, c_epoch, a_epoch, epoch, NULL, "1000"), (int)strtol(stakes, NULL, 10));
	compare_pages(c, c_pool, a_pool, epoch, big, "500");
	compare_pages(c, c_pool, a_pool, epoch, small, "7");
	ck_assert_int_gt(compare_pages(c, c_pool, a_pool, epoch, orphan, "3"), 0);

	/* Page 1 walks the seniority indexes and probes epoch_stake by its unique key. */
	char args[128];
	snprintf(args, sizeof(args), "%s, 1, 100", epoch);
	assert_plan_uses(c, c_epoch, args, "first_delegation_seniority_idx");
	snprintf(args, sizeof(args), "%s, '%s', 1, 100", epoch, big);
	assert_plan_uses(c, c_pool, args, "first_delegation_pool_seniority_idx");
	free(epoch);
	free(big);
	free(small);
	free(orphan);
	free(stakes);
}

START_TEST(test_page_queries_equal_the_subquery_with_either_key_order)
{
	db_create_from("rollupd_fd_gen_template", db, sizeof(db));
	conn = db_open(db);
	/* The daemon's start-up reconcile builds the empty cache in one pass. */
	daemon_start(&d, db, NULL);
	ck_assert_int_eq(daemon_log_count(&d, "reconcile done rollup=first_delegation"), 1);
	ck_assert_int_eq(daemon_stop(&d, 10, NULL), 0);
	char *rows = db_value(conn, "SELECT count(*) > 20000 FROM first_delegation");
	ck_assert_str_eq(rows, "t");
	free(rows);
	assert_fd_verified(db);

	c_epoch = slurp("ROLLUPD_SQL", "first_delegation/queries/epoch_stakes.sql");
	c_pool = slurp("ROLLUPD_SQL", "first_delegation/queries/pool_stakes.sql");
	a_epoch = slurp("ROLLUPD_BENCH", "first_delegation/baseline/epoch_stakes_subquery.sql");
	a_pool = slurp("ROLLUPD_BENCH", "first_delegation/baseline/pool_stakes_subquery.sql");

	/* The template has the newer key order, (addr_id, pool_id, epoch_no). */
	compare_all(conn);
	db_exec(conn, "DROP INDEX unique_epoch_stake");
	db_exec(conn, "CREATE UNIQUE INDEX unique_epoch_stake ON epoch_stake (epoch_no, addr_id, pool_id)");
	db_exec(conn, "ANALYZE epoch_stake");
	compare_all(conn);
	free(c_epoch);
	free(c_pool);
	free(a_epoch);
	free(a_pool);
	PQfinish(conn);
}
END_TEST

START_TEST(test_install_is_idempotent_and_uninstall_complete)
{
	db_create_from("rollupd_fd_template", db, sizeof(db));
	conn = db_open(db);
	cert(1, 1, 10, 1000, 0, 0);
	db_exec(conn, "SELECT rollupd.first_delegation_refresh('{1}')");
	/* A role that may write the cache may lock its keys once install.sql
	 * ran (an upgrade that adds the key table, before roles.sql runs). */
	db_exec(conn, "CREATE ROLE %s_writer", db);
	db_exec(conn, "GRANT UPDATE ON first_delegation TO %s_writer", db);
	ck_assert_int_eq(psql_file(db, "first_delegation/install.sql"), 0);
	expect_rows(1, "10:1000:0:0:1"); /* a re-install keeps the cache */
	char *may = db_value(conn,
	                     "SELECT has_table_privilege('%s_writer', 'rollupd.first_delegation_key', 'INSERT')"
	                     " AND has_table_privilege('%s_writer', 'rollupd.first_delegation_key', 'UPDATE')",
	                     db, db);
	ck_assert_str_eq(may, "t");
	free(may);
	char *n = db_value(conn, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'rollupd_capture_%%'");
	ck_assert_str_eq(n, harness_wal() ? "0" : "3");
	free(n);
	/* In WAL mode delegation's deletes must carry addr_id. */
	n = db_value(conn, "SELECT relreplident FROM pg_class WHERE relname = 'delegation'");
	ck_assert_str_eq(n, harness_wal() ? "f" : "d");
	free(n);

	ck_assert_int_eq(psql_file(db, "first_delegation/uninstall.sql"), 0);
	db_exec(conn, "DROP OWNED BY %s_writer", db);
	db_exec(conn, "DROP ROLE %s_writer", db);
	char *left = db_value(conn, "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'rollupd_capture_%%')"
	                            " + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'first_delegation%%')"
	                            " + (SELECT count(*) FROM pg_class WHERE relname LIKE 'first_delegation%%')"
	                            " + (SELECT count(*) FROM pg_namespace WHERE nspname = 'rollupd')");
	ck_assert_str_eq(left, "0");
	free(left);
	/* db-sync's own index on delegation(addr_id) stays. */
	char *idx = db_value(conn, "SELECT count(*) FROM pg_class WHERE relname = 'idx_delegation_addr_id'");
	ck_assert_str_eq(idx, "1");
	free(idx);
	PQfinish(conn);
}
END_TEST

/* Every test here runs in notify mode and again in WAL mode. */
static void add_rollup_tests(TCase *tc)
{
	tcase_add_test(tc, test_first_delegation_appears);
	tcase_add_test(tc, test_redelegation_adds_a_pair_and_keeps_the_first);
	tcase_add_test(tc, test_return_to_an_earlier_pool_keeps_seniority);
	tcase_add_test(tc, test_same_slot_orders_by_block_index_then_cert_index);
	tcase_add_test(tc, test_rollback_moves_or_removes_rows_and_replay_restores);
	tcase_add_test(tc, test_out_of_order_certificates_converge);
	tcase_add_test(tc, test_changes_while_stopped_are_caught_up);
	tcase_add_test(tc, test_concurrent_refreshes_never_leave_an_older_answer);
	tcase_add_test(tc, test_refreshes_wait_only_for_the_same_addresses);
	tcase_add_test(tc, test_page_queries_equal_the_subquery_with_either_key_order);
	tcase_add_test(tc, test_install_is_idempotent_and_uninstall_complete);
}

Suite *first_delegation_suite(void)
{
	Suite *s = suite_create("first_delegation");
	TCase *tc = tcase_create("cache");
	add_rollup_tests(tc);
	suite_add_tcase(s, tc);
	TCase *wal = tcase_create("cache-wal");
	tcase_add_checked_fixture(wal, harness_use_wal, NULL);
	add_rollup_tests(wal);
	suite_add_tcase(s, wal);
	return s;
}
