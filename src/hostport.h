/*
 * hostport: "HOST:PORT" addresses ("127.0.0.1:9187", "[::1]:9187"), parsed
 * the same way by the config check and the HTTP listener that binds them.
 */
#ifndef ROLLUPD_HOSTPORT_H
#define ROLLUPD_HOSTPORT_H

#include <stddef.h>

/* 0 with `host` (brackets removed) and `port` (digits) filled, -1 if malformed or too long. */
int hostport_parse(const char *address, char *host, size_t hostlen, char *port, size_t portlen);

#endif
