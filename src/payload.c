/*
 * payload: split, trim, validate and canonicalise notification keys.
 */
#include "payload.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int key_type_parse(const char *name, enum key_type *out)
{
	if (strcmp(name, "bigint") == 0) {
		*out = KEY_BIGINT;
		return 0;
	}
	if (strcmp(name, "text") == 0) {
		*out = KEY_TEXT;
		return 0;
	}
	return -1;
}

const char *key_type_name(enum key_type type)
{
	return type == KEY_BIGINT ? "bigint" : "text";
}

/* Canonicalise one bigint token: 0 and the decimal text in `out`, or -1 with `*reason` set. */
static int canonical_bigint(const char *token, size_t len, char *out, size_t outlen, const char **reason)
{
	size_t i = 0;
	bool negative = false;
	uint64_t value = 0;
	/* |INT64_MIN| = INT64_MAX + 1 */
	uint64_t limit;

	if (len == 0) {
		*reason = "empty key";
		return -1;
	}
	if (token[0] == '+' || token[0] == '-') {
		negative = token[0] == '-';
		i = 1;
	}
	if (i == len) {
		*reason = "not an integer";
		return -1;
	}
	limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < len; i++) {
		if (token[i] < '0' || token[i] > '9') {
			*reason = "not an integer";
			return -1;
		}
		unsigned digit = (unsigned)(token[i] - '0');
		if (value > (limit - digit) / 10) {
			*reason = "out of bigint range";
			return -1;
		}
		value = value * 10 + digit;
	}
	if (negative && value != 0)
		snprintf(out, outlen, "-%llu", (unsigned long long)value);
	else
		snprintf(out, outlen, "%llu", (unsigned long long)value);
	return 0;
}

static int check_text(const char *token, size_t len, const char **reason)
{
	if (len == 0) {
		*reason = "empty key";
		return -1;
	}
	if (len > PAYLOAD_MAX_TEXT_KEY) {
		*reason = "text key too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)token[i] < 0x20 || token[i] == 0x7f) {
			*reason = "control character in key";
			return -1;
		}
	}
	return 0;
}

const char *payload_key(const char *value, size_t len, enum key_type type, char *out, size_t outlen,
                        size_t *outlen_used)
{
	const char *reason = NULL;
	if (type == KEY_BIGINT) {
		if (canonical_bigint(value, len, out, outlen, &reason) != 0)
			return reason;
		*outlen_used = strlen(out);
		return NULL;
	}
	if (check_text(value, len, &reason) != 0)
		return reason;
	if (len >= outlen)
		return "text key too long";
	memcpy(out, value, len);
	out[len] = '\0';
	*outlen_used = len;
	return NULL;
}

int payload_parse(const char *payload, enum key_type type, const struct payload_handler *h)
{
	int malformed = 0;
	const char *p = payload;

	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *token = p;
		const char *reason = NULL;

		while (len > 0 && (*token == ' ' || *token == '\t')) {
			token++;
			len--;
		}
		while (len > 0 && (token[len - 1] == ' ' || token[len - 1] == '\t'))
			len--;

		if (type == KEY_BIGINT) {
			char canonical[24];
			if (canonical_bigint(token, len, canonical, sizeof(canonical), &reason) == 0) {
				if (h->on_key(canonical, strlen(canonical), h->arg) != 0)
					return -1;
			}
		} else if (check_text(token, len, &reason) == 0) {
			if (h->on_key(token, len, h->arg) != 0)
				return -1;
		}
		if (reason != NULL) {
			malformed++;
			if (h->on_malformed)
				h->on_malformed(token, len, reason, h->arg);
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return malformed;
}
