/*
 * payload: parse a notification payload ("k1,k2,...") into canonical keys of
 * one key type. It validates and reports; it does not log or store.
 */
#ifndef ROLLUPD_PAYLOAD_H
#define ROLLUPD_PAYLOAD_H

#include <stddef.h>

enum key_type {
	KEY_BIGINT,
	KEY_TEXT,
};

/* Longest text key accepted, in bytes. */
#define PAYLOAD_MAX_TEXT_KEY 1024

/* "bigint" or "text". 0 on success, -1 otherwise. */
int key_type_parse(const char *name, enum key_type *out);
const char *key_type_name(enum key_type type);

struct payload_handler {
	/* A valid key in canonical form (not NUL-terminated). Non-zero stops parsing. */
	int (*on_key)(const char *key, size_t len, void *arg);
	/* A malformed key: the raw token (possibly empty) and why. */
	void (*on_malformed)(const char *token, size_t len, const char *reason, void *arg);
	void *arg;
};

/*
 * Split on ',', trim spaces and tabs around each key, validate and
 * canonicalise: bigint keys as plain decimal within int64 range (leading '+'
 * and zeros dropped), text keys as given (non-empty, at most
 * PAYLOAD_MAX_TEXT_KEY bytes, no control characters). An empty payload is
 * one malformed (empty) key. Returns the number of malformed keys, or -1 if
 * on_key asked to stop.
 */
int payload_parse(const char *payload, enum key_type type, const struct payload_handler *h);

/* One key as it comes (a column's text value: not split, not trimmed), in
 * canonical form into `out` (PAYLOAD_MAX_TEXT_KEY + 1 bytes suffice) with
 * its length: NULL, or why it is malformed. */
const char *payload_key(const char *value, size_t len, enum key_type type, char *out, size_t outlen,
                        size_t *outlen_used);

#endif
