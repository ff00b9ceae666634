/*
 * pgoutput: field by field, as the protocol's documentation lists them
 * ("Logical Replication Message Formats", "Streaming Replication Protocol").
 * The parsers read through the wire_* getters and look at `failed` once at
 * the end; no pointer arithmetic outside the reader.
 */
#include "pgoutput.h"

#include <stdio.h>
#include <string.h>

void wire_init(struct wire *w, const void *buf, size_t len)
{
	w->buf = buf;
	w->len = len;
	w->pos = 0;
	w->failed = NULL;
}

size_t wire_left(const struct wire *w)
{
	return w->failed ? 0 : w->len - w->pos;
}

/* `n` bytes at the position, or NULL (and the reader failed) when fewer are left. */
static const unsigned char *take(struct wire *w, size_t n, const char *what)
{
	if (w->failed != NULL)
		return NULL;
	if (n > w->len - w->pos) {
		w->failed = what;
		return NULL;
	}
	const unsigned char *p = w->buf + w->pos;
	w->pos += n;
	return p;
}

static uint64_t big_endian(const unsigned char *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

uint8_t wire_u8(struct wire *w, const char *what)
{
	const unsigned char *p = take(w, 1, what);
	return p ? p[0] : 0;
}

int16_t wire_i16(struct wire *w, const char *what)
{
	const unsigned char *p = take(w, 2, what);
	if (p == NULL)
		return 0;
	uint16_t u = (uint16_t)big_endian(p, 2);
	int16_t v;
	memcpy(&v, &u, sizeof(v)); /* two's complement, without an implementation-defined conversion */
	return v;
}

int32_t wire_i32(struct wire *w, const char *what)
{
	const unsigned char *p = take(w, 4, what);
	return p ? (int32_t)(uint32_t)big_endian(p, 4) : 0;
}

int64_t wire_i64(struct wire *w, const char *what)
{
	const unsigned char *p = take(w, 8, what);
	return p ? (int64_t)big_endian(p, 8) : 0;
}

const char *wire_string(struct wire *w, const char *what)
{
	if (w->failed != NULL)
		return "";
	const unsigned char *start = w->buf + w->pos;
	const unsigned char *nul = memchr(start, '\0', w->len - w->pos);
	if (nul == NULL) {
		w->failed = what;
		return "";
	}
	take(w, (size_t)(nul - start) + 1, what);
	return (const char *)start;
}

const unsigned char *wire_bytes(struct wire *w, size_t n, const char *what)
{
	return take(w, n, what);
}

/* ---- CopyData frames ---- */

int repl_frame_parse(const void *buf, size_t len, struct repl_frame *out, char *err, size_t errlen)
{
	struct wire w;
	wire_init(&w, buf, len);
	memset(out, 0, sizeof(*out));
	uint8_t kind = wire_u8(&w, "frame type");
	switch (kind) {
	case REPL_XLOGDATA:
		out->kind = REPL_XLOGDATA;
		out->wal_start = (uint64_t)wire_i64(&w, "XLogData start");
		out->wal_end = (uint64_t)wire_i64(&w, "XLogData end");
		out->send_time = wire_i64(&w, "XLogData send time");
		out->data_len = wire_left(&w);
		out->data = wire_bytes(&w, out->data_len, "XLogData payload");
		if (w.failed == NULL && out->data_len == 0)
			w.failed = "XLogData payload (empty)";
		break;
	case REPL_KEEPALIVE:
		out->kind = REPL_KEEPALIVE;
		out->wal_end = (uint64_t)wire_i64(&w, "keepalive end");
		out->send_time = wire_i64(&w, "keepalive send time");
		out->reply_requested = wire_u8(&w, "keepalive reply flag") != 0;
		if (w.failed == NULL && wire_left(&w) != 0)
			w.failed = "keepalive (bytes left over)";
		break;
	default:
		if (w.failed == NULL) {
			snprintf(err, errlen, "unknown replication message type 0x%02x", kind);
			return -1;
		}
	}
	if (w.failed != NULL) {
		snprintf(err, errlen, "malformed replication message: %s", w.failed);
		return -1;
	}
	return 0;
}

static void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

void repl_status_update(unsigned char out[REPL_STATUS_LEN], uint64_t written, uint64_t flushed, uint64_t applied,
                        int64_t now_us, bool reply_requested)
{
	out[0] = 'r';
	put_be64(out + 1, written);
	put_be64(out + 9, flushed);
	put_be64(out + 17, applied);
	put_be64(out + 25, (uint64_t)now_us);
	out[33] = reply_requested ? 1 : 0;
}

int64_t repl_time_from_unix(double seconds)
{
	/* 2000-01-01 is 946684800 s after the Unix epoch. */
	return (int64_t)((seconds - 946684800.0) * 1000000.0);
}

/* ---- pgoutput messages ---- */

static void read_tuple(struct wire *w, struct pgo_tuple *t, struct pgo_value *space)
{
	int16_t n = wire_i16(w, "tuple column count");
	if (w->failed != NULL)
		return;
	if (n < 0 || n > PGO_MAX_COLUMNS) {
		w->failed = "tuple column count (out of range)";
		return;
	}
	t->ncols = n;
	t->cols = space;
	for (int i = 0; i < n && w->failed == NULL; i++) {
		struct pgo_value *v = &space[i];
		v->kind = (char)wire_u8(w, "tuple column kind");
		v->data = NULL;
		v->len = 0;
		switch (v->kind) {
		case 'n':
		case 'u':
			break;
		case 't':
		case 'b': {
			int32_t len = wire_i32(w, "tuple value length");
			if (w->failed == NULL && len < 0) {
				w->failed = "tuple value length (negative)";
				break;
			}
			v->len = (uint32_t)len;
			v->data = (const char *)wire_bytes(w, (size_t)v->len, "tuple value");
			break;
		}
		default:
			if (w->failed == NULL)
				w->failed = "tuple column kind (unknown)";
		}
	}
}

/* 'N' then a tuple. */
static void read_new_tuple(struct wire *w, struct pgo_msg *m)
{
	if (wire_u8(w, "new tuple tag") != 'N' && w->failed == NULL)
		w->failed = "new tuple tag (not 'N')";
	read_tuple(w, &m->new_tuple, m->new_space);
	m->has_new = w->failed == NULL;
}

static void read_relation(struct wire *w, struct pgo_msg *m)
{
	m->relid = (uint32_t)wire_i32(w, "relation id");
	m->nspname = wire_string(w, "relation namespace");
	m->relname = wire_string(w, "relation name");
	m->replident = (char)wire_u8(w, "relation replica identity");
	int16_t n = wire_i16(w, "relation column count");
	if (w->failed != NULL)
		return;
	if (strchr("dnfi", m->replident) == NULL || m->replident == '\0') {
		w->failed = "relation replica identity (unknown)";
		return;
	}
	if (n < 0 || n > PGO_MAX_COLUMNS) {
		w->failed = "relation column count (out of range)";
		return;
	}
	m->natts = n;
	m->atts = m->att_space;
	for (int i = 0; i < n && w->failed == NULL; i++) {
		struct pgo_column *c = &m->att_space[i];
		c->flags = wire_u8(w, "column flags");
		c->name = wire_string(w, "column name");
		c->type_oid = (uint32_t)wire_i32(w, "column type");
		c->typmod = wire_i32(w, "column type modifier");
	}
}

int pgo_parse(const void *buf, size_t len, struct pgo_msg *m, char *err, size_t errlen)
{
	struct wire w;
	wire_init(&w, buf, len);
	m->old_kind = 0;
	m->has_new = false;
	m->old_tuple.ncols = 0;
	m->new_tuple.ncols = 0;
	m->natts = 0;
	m->nrelids = 0;
	uint8_t kind = wire_u8(&w, "message type");
	m->kind = (enum pgo_kind)kind;

	switch (kind) {
	case PGO_BEGIN:
		m->final_lsn = (uint64_t)wire_i64(&w, "Begin final LSN");
		m->commit_time = wire_i64(&w, "Begin commit time");
		m->xid = (uint32_t)wire_i32(&w, "Begin xid");
		break;
	case PGO_COMMIT:
		m->commit_flags = wire_u8(&w, "Commit flags");
		m->commit_lsn = (uint64_t)wire_i64(&w, "Commit LSN");
		m->end_lsn = (uint64_t)wire_i64(&w, "Commit end LSN");
		m->commit_time = wire_i64(&w, "Commit time");
		break;
	case PGO_ORIGIN:
		wire_i64(&w, "Origin LSN");
		wire_string(&w, "Origin name");
		break;
	case PGO_RELATION:
		read_relation(&w, m);
		break;
	case PGO_TYPE:
		wire_i32(&w, "Type id");
		wire_string(&w, "Type namespace");
		wire_string(&w, "Type name");
		break;
	case PGO_INSERT:
		m->relid = (uint32_t)wire_i32(&w, "Insert relation id");
		read_new_tuple(&w, m);
		break;
	case PGO_UPDATE: {
		m->relid = (uint32_t)wire_i32(&w, "Update relation id");
		uint8_t tag = wire_u8(&w, "Update tuple tag");
		if (tag == 'K' || tag == 'O') {
			m->old_kind = (char)tag;
			read_tuple(&w, &m->old_tuple, m->old_space);
			tag = wire_u8(&w, "Update new tuple tag");
		}
		if (w.failed == NULL && tag != 'N')
			w.failed = "Update new tuple tag (not 'N')";
		read_tuple(&w, &m->new_tuple, m->new_space);
		m->has_new = w.failed == NULL;
		break;
	}
	case PGO_DELETE: {
		m->relid = (uint32_t)wire_i32(&w, "Delete relation id");
		uint8_t tag = wire_u8(&w, "Delete tuple tag");
		if (w.failed == NULL && tag != 'K' && tag != 'O')
			w.failed = "Delete tuple tag (not 'K' or 'O')";
		m->old_kind = (char)tag;
		read_tuple(&w, &m->old_tuple, m->old_space);
		break;
	}
	case PGO_TRUNCATE: {
		int32_t n = wire_i32(&w, "Truncate relation count");
		m->truncate_flags = wire_u8(&w, "Truncate flags");
		if (w.failed == NULL && (n < 0 || n > PGO_MAX_COLUMNS))
			w.failed = "Truncate relation count (out of range)";
		m->relids = m->relid_space;
		for (int i = 0; i < n && w.failed == NULL; i++)
			m->relid_space[m->nrelids++] = (uint32_t)wire_i32(&w, "Truncate relation id");
		break;
	}
	case PGO_MESSAGE: {
		wire_u8(&w, "Message flags");
		wire_i64(&w, "Message LSN");
		wire_string(&w, "Message prefix");
		int32_t n = wire_i32(&w, "Message length");
		if (w.failed == NULL && n < 0)
			w.failed = "Message length (negative)";
		wire_bytes(&w, w.failed == NULL ? (size_t)n : 0, "Message content");
		break;
	}
	default:
		if (w.failed == NULL) {
			snprintf(err, errlen, "unknown pgoutput message type 0x%02x", kind);
			return -1;
		}
	}
	if (w.failed == NULL && wire_left(&w) != 0)
		w.failed = "message (bytes left over)";
	if (w.failed != NULL) {
		snprintf(err, errlen, "malformed pgoutput message '%c': %s", kind >= 0x20 && kind < 0x7f ? kind : '?',
		         w.failed);
		return -1;
	}
	return 0;
}
