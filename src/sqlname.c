/*
 * sqlname: a whitelist for names, an escaper for array elements.
 */
#include "sqlname.h"

#include <stdio.h>
#include <string.h>

#include "xalloc.h"

static bool part_valid(const char *s, size_t len)
{
	if (len == 0 || len > 63)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

bool sql_ident_valid(const char *name)
{
	return part_valid(name, strlen(name));
}

bool sql_name_valid(const char *name)
{
	const char *dot = strchr(name, '.');
	if (dot == NULL)
		return part_valid(name, strlen(name));
	return part_valid(name, (size_t)(dot - name)) && part_valid(dot + 1, strlen(dot + 1));
}

int sql_name_quote(const char *name, char *out, size_t outlen)
{
	const char *dot = strchr(name, '.');
	int n;

	if (!sql_name_valid(name))
		return -1;
	if (dot == NULL)
		n = snprintf(out, outlen, "\"%s\"", name);
	else
		n = snprintf(out, outlen, "\"%.*s\".\"%s\"", (int)(dot - name), name, dot + 1);
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

char *sql_array_literal(char *const *keys, size_t n, enum key_type type)
{
	size_t len = 3;
	for (size_t i = 0; i < n; i++)
		len += 2 * strlen(keys[i]) + 3;

	char *out = xmalloc(len);
	char *p = out;
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			*p++ = ',';
		if (type == KEY_BIGINT) {
			size_t k = strlen(keys[i]);
			memcpy(p, keys[i], k);
			p += k;
			continue;
		}
		*p++ = '"';
		for (const char *s = keys[i]; *s; s++) {
			if (*s == '"' || *s == '\\')
				*p++ = '\\';
			*p++ = *s;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}
