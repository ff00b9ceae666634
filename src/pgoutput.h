/*
 * pgoutput: the bytes of a logical replication stream, read through one
 * bounds-checked reader: the CopyData frames of the streaming protocol
 * (XLogData 'w', primary keepalive 'k'), the pgoutput messages of protocol
 * version 1 inside them (Begin, Commit, Origin, Relation, Type, Insert,
 * Update, Delete, Truncate, Message), and the standby status update rollupd
 * sends back. It only parses and builds bytes: what the changes mean is
 * wal.c's. Every field is checked against the bytes left; a short, long or
 * unknown message is an error with a reason, never a read past the end.
 */
#ifndef ROLLUPD_PGOUTPUT_H
#define ROLLUPD_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The reader (PostgreSQL's pq_getmsg* are the model). */
struct wire {
	const unsigned char *buf;
	size_t len;
	size_t pos;
	const char *failed; /* the first thing that did not fit, NULL while all is well */
};

void wire_init(struct wire *w, const void *buf, size_t len);
uint8_t wire_u8(struct wire *w, const char *what);
int16_t wire_i16(struct wire *w, const char *what);
int32_t wire_i32(struct wire *w, const char *what);
int64_t wire_i64(struct wire *w, const char *what);
/* A NUL-terminated string inside the buffer; "" after a failure. */
const char *wire_string(struct wire *w, const char *what);
/* `n` bytes; NULL after a failure. */
const unsigned char *wire_bytes(struct wire *w, size_t n, const char *what);
size_t wire_left(const struct wire *w);

/* ---- the streaming protocol's CopyData frames ---- */

enum repl_kind { REPL_XLOGDATA = 'w', REPL_KEEPALIVE = 'k' };

struct repl_frame {
	enum repl_kind kind;
	uint64_t wal_start;        /* 'w' */
	uint64_t wal_end;          /* 'w' and 'k' (for 'k': the server's sent position) */
	int64_t send_time;         /* microseconds since 2000-01-01 */
	bool reply_requested;      /* 'k' */
	const unsigned char *data; /* 'w': one pgoutput message */
	size_t data_len;
};

/* 0 and `out` filled (pointing into `buf`), or -1 with `err` set. */
int repl_frame_parse(const void *buf, size_t len, struct repl_frame *out, char *err, size_t errlen);

/* The 34-byte standby status update ('r') into `out`. */
#define REPL_STATUS_LEN 34
void repl_status_update(unsigned char out[REPL_STATUS_LEN], uint64_t written, uint64_t flushed, uint64_t applied,
                        int64_t now_us, bool reply_requested);

/* Microseconds since 2000-01-01 (PostgreSQL's epoch) from a Unix time in seconds. */
int64_t repl_time_from_unix(double seconds);

/* ---- pgoutput protocol version 1 ---- */

#define PGO_MAX_COLUMNS 1664 /* MaxTupleAttributeNumber */

enum pgo_kind {
	PGO_BEGIN = 'B',
	PGO_COMMIT = 'C',
	PGO_ORIGIN = 'O',
	PGO_RELATION = 'R',
	PGO_TYPE = 'Y',
	PGO_INSERT = 'I',
	PGO_UPDATE = 'U',
	PGO_DELETE = 'D',
	PGO_TRUNCATE = 'T',
	PGO_MESSAGE = 'M',
};

/* One column of a tuple: 'n' NULL, 'u' unchanged TOASTed value (not sent),
 * 't' text (data, len), 'b' binary. */
struct pgo_value {
	char kind;
	const char *data;
	uint32_t len;
};

struct pgo_tuple {
	int ncols;
	struct pgo_value *cols; /* ncols entries, in a caller-sized array (see pgo_msg) */
};

struct pgo_column {
	uint8_t flags; /* 1: part of the replica identity key */
	const char *name;
	uint32_t type_oid;
	int32_t typmod;
};

struct pgo_msg {
	enum pgo_kind kind;
	/* B */
	uint64_t final_lsn;
	int64_t commit_time;
	uint32_t xid;
	/* C */
	uint8_t commit_flags;
	uint64_t commit_lsn;
	uint64_t end_lsn;
	/* R, I, U, D */
	uint32_t relid;
	/* R */
	const char *nspname;
	const char *relname;
	char replident; /* 'd' default, 'n' nothing, 'f' full, 'i' index */
	int natts;
	struct pgo_column *atts; /* natts entries in `att_space` */
	/* I, U, D: `old_kind` is 'K' (key columns), 'O' (the whole old row) or 0 */
	char old_kind;
	struct pgo_tuple old_tuple;
	bool has_new;
	struct pgo_tuple new_tuple;
	/* T */
	int nrelids;
	uint8_t truncate_flags;
	uint32_t *relids; /* nrelids entries in `relid_space` */
	/* Y, O, M: only skipped, after their bounds are checked */

	/* Storage the parser fills: PGO_MAX_COLUMNS each. */
	struct pgo_value old_space[PGO_MAX_COLUMNS];
	struct pgo_value new_space[PGO_MAX_COLUMNS];
	struct pgo_column att_space[PGO_MAX_COLUMNS];
	uint32_t relid_space[PGO_MAX_COLUMNS];
};

/* Parse one pgoutput message (protocol 1). 0 and `out` filled (strings and
 * values point into `buf`, which must outlive their use), or -1 with `err`
 * set: a message that is short, has bytes left over, or is of a kind this
 * protocol does not have. */
int pgo_parse(const void *buf, size_t len, struct pgo_msg *out, char *err, size_t errlen);

#endif
