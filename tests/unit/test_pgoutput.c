/*
 * pgoutput: the parsers on a stream captured from PostgreSQL 15 (protocol
 * 1, publication rollupd over the eth_user_balances tables, associated_wallets
 * with REPLICA IDENTITY FULL, users with a column list), and on what a
 * broken or hostile peer could send.
 *
 * Captured by streaming a slot (START_REPLICATION ... (proto_version '1'))
 * while these statements ran, one pgoutput message per line (the XLogData
 * header taken off):
 *   INSERT INTO users VALUES (900, 'tx9', true, '0xW900');             -- B R I C
 *   UPDATE eth_wallet_balances SET balance = 77 WHERE wallet = '0xw7';  -- B R U C
 *   UPDATE associated_wallets SET user_id = 6 WHERE user_id = 5;        -- B Y R U C (old row 'O')
 *   DELETE FROM associated_wallets WHERE user_id = 6;                   -- B D C ('O')
 *   DELETE FROM eth_wallet_balances WHERE wallet = '0xw8';              -- B D C (key 'K')
 *   UPDATE eth_wallet_balances SET wallet = '0xw9b' WHERE wallet = '0xw9'; -- B U C ('K')
 *   INSERT INTO associated_wallets ... ('0xsol', 'sol' ...);            -- B I C
 *   TRUNCATE eth_wallet_balances;                                       -- B R T C
 *   ALTER TABLE users ADD COLUMN extra text; UPDATE users SET extra = 'x', wallet = NULL ...; -- B R U C
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "pgoutput.h"
#include "suites.h"

/* Long messages are split over lines: adjacent literals are meant. */
/* NOLINTBEGIN(bugprone-suspicious-missing-comma) */
static const char *const captured[] = {
    "4200000000019c3fe0000304984ce556a6000002e8",
    "52000040077075626c69630075736572730064000401757365725f69640000000017ffffffff017478686173680000000413ffffffff006973"
    "5f63757272656e740000000010ffffffff0077616c6c65740000000413ffffffff",
    "49000040074e0004740000000339303074000000037478397400000001747400000006307857393030",
    "430000000000019c3fe000000000019c4028000304984ce556a6",
    "4200000000019c4090000304984ce55a4b000002e9",
    "520000401c7075626c6963006574685f77616c6c65745f62616c616e636573006400020177616c6c65740000000019ffffffff0062616c616e"
    "636500000006a4ffffffff",
    "550000401c4e000274000000043078773774000000023737",
    "430000000000019c409000000000019c40c0000304984ce55a4b",
    "4200000000019c4200000304984ce55bc5000002ea",
    "59000040027075626c69630077616c6c65745f636861696e00",
    "52000040127075626c6963006173736f6369617465645f77616c6c657473006600080169640000000017ffffffff01757365725f6964000000"
    "0017ffffffff0177616c6c65740000000413ffffffff01636861696e0000004002ffffffff0169735f63757272656e740000000010ffffffff"
    "0169735f64656c6574650000000010ffffffff01626c6f636b686173680000000413ffffffff01626c6f636b6e756d6265720000000017ffff"
    "ffff",
    "55000040124f0008740000000131740000000135740000000630787733303074000000036574687400000001747400000001666e6e4e000874"
    "0000000131740000000136740000000630787733303074000000036574687400000001747400000001666e6e",
    "430000000000019c420000000000019c4230000304984ce55bc5",
    "4200000000019c4288000304984ce55ca0000002eb",
    "44000040124f0008740000000131740000000136740000000630787733303074000000036574687400000001747400000001666e6e",
    "430000000000019c428800000000019c42b8000304984ce55ca0",
    "4200000000019c4340000304984ce55d36000002ec",
    "440000401c4b00027400000004307877386e",
    "430000000000019c434000000000019c4370000304984ce55d36",
    "4200000000019c4458000304984ce55d84000002ed",
    "550000401c4b00027400000004307877396e4e00027400000005307877396274000000023930",
    "430000000000019c445800000000019c4488000304984ce55d84",
    "4200000000019c45a0000304984ce55e2b000002ee",
    "49000040124e000874000000013274000000013774000000053078736f6c7400000003736f6c7400000001747400000001666e6e",
    "430000000000019c45a000000000019c45d0000304984ce55e2b",
    "4200000000019c5170000304984ce56125000002ef",
    "520000401c7075626c6963006574685f77616c6c65745f62616c616e636573006400020177616c6c65740000000019ffffffff0062616c616e"
    "636500000006a4ffffffff",
    "5400000001000000401c",
    "430000000000019c517000000000019c52e0000304984ce56125",
    "4200000000019c5740000304984ce56c6f000002f1",
    "52000040077075626c69630075736572730064000401757365725f69640000000017ffffffff017478686173680000000413ffffffff006973"
    "5f63757272656e740000000010ffffffff0077616c6c65740000000413ffffffff",
    "55000040074e0004740000000339303074000000037478397400000001746e",
    "430000000000019c574000000000019c5770000304984ce56c6f"};
/* NOLINTEND(bugprone-suspicious-missing-comma) */
#define N_CAPTURED (sizeof(captured) / sizeof(captured[0]))

static struct pgo_msg msg;

/* Hex into bytes; the length. */
static size_t unhex(const char *hex, unsigned char *out, size_t cap)
{
	size_t n = strlen(hex) / 2;
	ck_assert_uint_le(n, cap);
	for (size_t i = 0; i < n; i++) {
		char byte[3] = {hex[2 * i], hex[2 * i + 1], '\0'};
		out[i] = (unsigned char)strtoul(byte, NULL, 16);
	}
	return n;
}

static const struct pgo_msg *parse_captured(size_t i)
{
	static unsigned char buf[1024];
	char err[256];
	size_t n = unhex(captured[i], buf, sizeof(buf));
	ck_assert_msg(pgo_parse(buf, n, &msg, err, sizeof(err)) == 0, "message %zu: %s", i + 1, err);
	return &msg;
}

static void expect_text(const struct pgo_value *v, const char *text)
{
	ck_assert_int_eq(v->kind, 't');
	ck_assert_uint_eq(v->len, strlen(text));
	ck_assert(memcmp(v->data, text, v->len) == 0);
}

START_TEST(test_captured_stream_reads_message_by_message)
{
	static const char kinds[] = "BRICBRUCBYRUCBDCBDCBUCBICBRTCBRUC";
	ck_assert_uint_eq(N_CAPTURED, strlen(kinds));
	for (size_t i = 0; i < N_CAPTURED; i++)
		ck_assert_int_eq(parse_captured(i)->kind, kinds[i]);

	const struct pgo_msg *m = parse_captured(0);
	ck_assert_uint_eq(m->final_lsn, 0x19c3fe0);
	ck_assert_uint_eq(m->xid, 0x2e8);
	m = parse_captured(1);
	ck_assert_uint_eq(m->relid, 0x4007);
	ck_assert_str_eq(m->nspname, "public");
	ck_assert_str_eq(m->relname, "users");
	ck_assert_int_eq(m->replident, 'd');
	ck_assert_int_eq(m->natts, 4); /* the publication's column list */
	ck_assert_str_eq(m->atts[0].name, "user_id");
	ck_assert_uint_eq(m->atts[0].flags, 1); /* in the primary key */
	ck_assert_str_eq(m->atts[3].name, "wallet");
	ck_assert_uint_eq(m->atts[3].flags, 0);
	m = parse_captured(2);
	ck_assert_uint_eq(m->relid, 0x4007);
	ck_assert(m->has_new);
	ck_assert_int_eq(m->old_kind, 0);
	ck_assert_int_eq(m->new_tuple.ncols, 4);
	expect_text(&m->new_tuple.cols[0], "900");
	expect_text(&m->new_tuple.cols[3], "0xW900");
	m = parse_captured(3);
	ck_assert_uint_eq(m->commit_lsn, 0x19c3fe0);
	ck_assert_uint_eq(m->end_lsn, 0x19c4028);

	/* An UPDATE under REPLICA IDENTITY FULL carries the whole old row. */
	m = parse_captured(11);
	ck_assert_int_eq(m->old_kind, 'O');
	ck_assert_int_eq(m->old_tuple.ncols, 8);
	expect_text(&m->old_tuple.cols[1], "5");
	expect_text(&m->new_tuple.cols[1], "6");
	ck_assert_int_eq(m->new_tuple.cols[7].kind, 'n');
	/* A DELETE under the primary key carries the key, the rest NULL. */
	m = parse_captured(17);
	ck_assert_int_eq(m->old_kind, 'K');
	expect_text(&m->old_tuple.cols[0], "0xw8");
	ck_assert_int_eq(m->old_tuple.cols[1].kind, 'n');
	/* An UPDATE of the key itself carries the old key. */
	m = parse_captured(20);
	ck_assert_int_eq(m->old_kind, 'K');
	expect_text(&m->old_tuple.cols[0], "0xw9");
	expect_text(&m->new_tuple.cols[0], "0xw9b");
	/* TRUNCATE names its tables. */
	m = parse_captured(27);
	ck_assert_int_eq(m->nrelids, 1);
	ck_assert_uint_eq(m->relids[0], 0x401c);
	/* An UPDATE of a non-key column under DEFAULT: the new row only. */
	m = parse_captured(31);
	ck_assert_int_eq(m->old_kind, 0);
	ck_assert_int_eq(m->new_tuple.cols[3].kind, 'n');
}
END_TEST

/* Every message cut short anywhere, or with a byte more, is an error, never a read past its end. */
START_TEST(test_a_cut_or_padded_message_is_an_error)
{
	unsigned char buf[1024], copy[1025];
	char err[256];
	for (size_t i = 0; i < N_CAPTURED; i++) {
		size_t n = unhex(captured[i], buf, sizeof(buf));
		for (size_t cut = 0; cut < n; cut++) {
			/* A buffer of exactly `cut` bytes: the sanitizers see any read past it. */
			unsigned char *exact = malloc(cut ? cut : 1);
			memcpy(exact, buf, cut);
			ck_assert_msg(pgo_parse(exact, cut, &msg, err, sizeof(err)) == -1,
			              "message %zu cut at %zu parsed", i + 1, cut);
			free(exact);
		}
		memcpy(copy, buf, n);
		copy[n] = 0;
		ck_assert_int_eq(pgo_parse(copy, n + 1, &msg, err, sizeof(err)), -1);
		ck_assert_msg(strstr(err, "bytes left over") != NULL, "%s", err);
	}
}
END_TEST

START_TEST(test_malformed_messages_say_what_is_wrong)
{
	char err[256];
	ck_assert_int_eq(pgo_parse("Z", 1, &msg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "unknown pgoutput message type 0x5a");
	/* An Insert whose value claims a negative length. */
	static const unsigned char negative[] = {'I', 0, 0, 0x40, 0x07, 'N', 0, 1, 't', 0xff, 0xff, 0xff, 0xff};
	ck_assert_int_eq(pgo_parse(negative, sizeof(negative), &msg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "negative") != NULL, "%s", err);
	/* ... a value longer than the message. */
	static const unsigned char longer[] = {'I', 0, 0, 0x40, 0x07, 'N', 0, 1, 't', 0, 0, 0, 9, 'a'};
	ck_assert_int_eq(pgo_parse(longer, sizeof(longer), &msg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "tuple value") != NULL, "%s", err);
	/* ... a column kind that does not exist. */
	static const unsigned char kind[] = {'I', 0, 0, 0x40, 0x07, 'N', 0, 1, 'x'};
	ck_assert_int_eq(pgo_parse(kind, sizeof(kind), &msg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "kind") != NULL, "%s", err);
	/* ... more columns than a row can have. */
	static const unsigned char many[] = {'I', 0, 0, 0x40, 0x07, 'N', 0x7f, 0xff};
	ck_assert_int_eq(pgo_parse(many, sizeof(many), &msg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "out of range") != NULL, "%s", err);
	/* A Relation with a replica identity that does not exist, or a name without its NUL. */
	static const unsigned char ident[] = {'R', 0, 0, 0, 1, 'p', 0, 't', 0, 'q', 0, 0};
	ck_assert_int_eq(pgo_parse(ident, sizeof(ident), &msg, err, sizeof(err)), -1);
	static const unsigned char nonul[] = {'R', 0, 0, 0, 1, 'p', 'u', 'b'};
	ck_assert_int_eq(pgo_parse(nonul, sizeof(nonul), &msg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "namespace") != NULL, "%s", err);
	/* An Update whose new tuple is not tagged 'N'; a Delete with no old tuple. */
	static const unsigned char upd[] = {'U', 0, 0, 0, 1, 'X', 0, 0};
	ck_assert_int_eq(pgo_parse(upd, sizeof(upd), &msg, err, sizeof(err)), -1);
	static const unsigned char del[] = {'D', 0, 0, 0, 1, 'N', 0, 0};
	ck_assert_int_eq(pgo_parse(del, sizeof(del), &msg, err, sizeof(err)), -1);
	/* A Truncate that claims more tables than it holds. */
	static const unsigned char trunc[] = {'T', 0, 0, 0, 2, 0, 0, 0, 0, 1};
	ck_assert_int_eq(pgo_parse(trunc, sizeof(trunc), &msg, err, sizeof(err)), -1);
	ck_assert_int_eq(pgo_parse("", 0, &msg, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_replication_frames_and_the_status_update)
{
	char err[256];
	struct repl_frame f;
	static const unsigned char keepalive[] = {'k', 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 9, 1};
	ck_assert_int_eq(repl_frame_parse(keepalive, sizeof(keepalive), &f, err, sizeof(err)), 0);
	ck_assert_int_eq(f.kind, REPL_KEEPALIVE);
	ck_assert_uint_eq(f.wal_end, 0x123456);
	ck_assert(f.reply_requested);
	ck_assert_int_eq(repl_frame_parse(keepalive, sizeof(keepalive) - 1, &f, err, sizeof(err)), -1);

	unsigned char xlog[25 + 3] = {'w'};
	static const unsigned char payload[3] = {'a', 'b', 'c'};
	memcpy(xlog + 25, payload, sizeof(payload));
	ck_assert_int_eq(repl_frame_parse(xlog, sizeof(xlog), &f, err, sizeof(err)), 0);
	ck_assert_int_eq(f.kind, REPL_XLOGDATA);
	ck_assert_uint_eq(f.data_len, 3);
	ck_assert(memcmp(f.data, "abc", 3) == 0);
	ck_assert_int_eq(repl_frame_parse(xlog, 25, &f, err, sizeof(err)), -1); /* no message in it */
	ck_assert_int_eq(repl_frame_parse("x", 1, &f, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "unknown replication message type 0x78");

	unsigned char r[REPL_STATUS_LEN];
	repl_status_update(r, 0x0102030405060708ULL, 0x1122, 0, -1, true);
	ck_assert_int_eq(r[0], 'r');
	ck_assert_int_eq(r[1], 0x01);
	ck_assert_int_eq(r[8], 0x08);
	ck_assert_int_eq(r[15], 0x11);
	ck_assert_int_eq(r[16], 0x22);
	ck_assert_int_eq(r[24], 0);
	ck_assert_int_eq(r[25], 0xff); /* the clock, big-endian */
	ck_assert_int_eq(r[33], 1);
	ck_assert(repl_time_from_unix(946684800.0) == 0);
}
END_TEST

Suite *pgoutput_suite(void)
{
	Suite *s = suite_create("pgoutput");
	TCase *tc = tcase_create("pgoutput");
	tcase_add_test(tc, test_captured_stream_reads_message_by_message);
	tcase_add_test(tc, test_a_cut_or_padded_message_is_an_error);
	tcase_add_test(tc, test_malformed_messages_say_what_is_wrong);
	tcase_add_test(tc, test_replication_frames_and_the_status_update);
	suite_add_tcase(s, tc);
	return s;
}
