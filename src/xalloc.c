/*
 * xalloc: allocation that logs and aborts on failure (see xalloc.h for why).
 */
#include "xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void *checked(void *p, size_t size)
{
	if (p == NULL) {
		log_error("out of memory allocating bytes=%zu; exiting (the next start repairs everything)", size);
		abort();
	}
	return p;
}

void *xmalloc(size_t size)
{
	return checked(malloc(size ? size : 1), size);
}

void *xcalloc(size_t n, size_t size)
{
	return checked(calloc(n ? n : 1, size ? size : 1), n * size);
}

void *xrealloc(void *p, size_t size)
{
	return checked(realloc(p, size ? size : 1), size);
}

char *xstrdup(const char *s)
{
	return s == NULL ? NULL : checked(strdup(s), strlen(s) + 1);
}

char *xstrndup(const char *s, size_t n)
{
	return s == NULL ? NULL : checked(strndup(s, n), n + 1);
}

char *xasprintf(const char *fmt, ...)
{
	char *out = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&out, fmt, ap);
	va_end(ap);
	return checked(n < 0 ? NULL : out, 0);
}
