/*
 * libFuzzer target: the replication stream's parsers (pgoutput.c), on any
 * bytes: as a CopyData frame, and as a pgoutput message. Checks what they
 * promise, not only that they do not crash: a parse either fails with a
 * reason or succeeds with every value inside the input, and every column
 * count within its bound.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgoutput.h"

static struct pgo_msg msg;

static int inside(const void *p, size_t n, const uint8_t *data, size_t size)
{
	const uint8_t *q = p;
	return n == 0 || (q >= data && q + n <= data + size);
}

static void check_tuple(const struct pgo_tuple *t, const uint8_t *data, size_t size)
{
	if (t->ncols < 0 || t->ncols > PGO_MAX_COLUMNS)
		abort();
	for (int i = 0; i < t->ncols; i++) {
		const struct pgo_value *v = &t->cols[i];
		if (strchr("nutb", v->kind) == NULL || v->kind == '\0')
			abort();
		if ((v->kind == 't' || v->kind == 'b') && !inside(v->data, v->len, data, size))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct repl_frame f;
	err[0] = '\0';
	if (repl_frame_parse(data, size, &f, err, sizeof(err)) == 0) {
		if (f.kind == REPL_XLOGDATA && (!inside(f.data, f.data_len, data, size) || f.data_len == 0))
			abort();
	} else if (err[0] == '\0') {
		abort();
	}
	err[0] = '\0';
	if (pgo_parse(data, size, &msg, err, sizeof(err)) == 0) {
		if (msg.kind == PGO_INSERT || msg.kind == PGO_UPDATE)
			check_tuple(&msg.new_tuple, data, size);
		if (msg.old_kind)
			check_tuple(&msg.old_tuple, data, size);
		if (msg.kind == PGO_RELATION && (msg.natts < 0 || msg.natts > PGO_MAX_COLUMNS))
			abort();
		if (msg.kind == PGO_TRUNCATE && (msg.nrelids < 0 || msg.nrelids > PGO_MAX_COLUMNS))
			abort();
	} else if (err[0] == '\0') {
		abort();
	}
	return 0;
}
