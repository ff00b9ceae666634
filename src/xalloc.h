/*
 * xalloc: the daemon's one out-of-memory policy. rollupd holds nothing that
 * the next start cannot rebuild (keys pending in memory are repaired by the
 * start-up reconcile, queued ones wait in the database), so running out of
 * memory is logged and ends the process at once (abort: systemd restarts it)
 * instead of limping on half-built state. Not for sizes that come from
 * outside (bounded before they get here).
 */
#ifndef ROLLUPD_XALLOC_H
#define ROLLUPD_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
/* NULL in, NULL out. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
