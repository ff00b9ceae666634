/*
 * libFuzzer target: the notification payload parser, for both key types.
 * Checks what the parser promises, not only that it does not crash: every
 * key it accepts is canonical (bigint: plain decimal, text: no control
 * characters, within the length limit), and keys plus malformed tokens
 * account for every comma-separated token.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "payload.h"

struct seen {
	enum key_type type;
	size_t keys;
	size_t malformed;
};

static int on_key(const char *key, size_t len, void *arg)
{
	struct seen *s = arg;
	if (len == 0)
		abort();
	if (s->type == KEY_BIGINT) {
		size_t i = key[0] == '-' ? 1 : 0;
		if (i == len || (key[i] == '0' && len > i + 1) || len > 20)
			abort();
		for (; i < len; i++)
			if (key[i] < '0' || key[i] > '9')
				abort();
	} else {
		if (len > PAYLOAD_MAX_TEXT_KEY)
			abort();
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f || key[i] == ',')
				abort();
	}
	s->keys++;
	return 0;
}

static void on_malformed(const char *token, size_t len, const char *reason, void *arg)
{
	struct seen *s = arg;
	(void)token;
	(void)len;
	if (reason == NULL || reason[0] == '\0')
		abort();
	s->malformed++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A payload arrives as a C string: stop at the first NUL, as libpq's does. */
	char *payload = malloc(size + 1);
	if (payload == NULL)
		return 0;
	memcpy(payload, data, size);
	payload[size] = '\0';
	size_t tokens = 1;
	for (const char *p = payload; *p; p++)
		tokens += *p == ',';

	for (int t = 0; t < 2; t++) {
		struct seen s = {.type = t == 0 ? KEY_BIGINT : KEY_TEXT};
		struct payload_handler h = {.on_key = on_key, .on_malformed = on_malformed, .arg = &s};
		int bad = payload_parse(payload, s.type, &h);
		if (bad < 0 || (size_t)bad != s.malformed || s.keys + s.malformed != tokens)
			abort();
	}
	free(payload);
	return 0;
}
