/*
 * http: a small HTTP/1.0 server on the daemon's own event loop, for
 * /metrics, /healthz and /livez (metrics.listen). One request per
 * connection, GET only; bounded: at most HTTP_MAX_CLIENTS connections, a
 * 4 KiB request, and HTTP_TIMEOUT_S to send the request and take the
 * answer. A slow or malformed client costs one slot until its timeout, and
 * never blocks the loop.
 */
#ifndef ROLLUPD_HTTP_H
#define ROLLUPD_HTTP_H

#include <ev.h>
#include <stddef.h>

#define HTTP_MAX_CLIENTS 16
#define HTTP_TIMEOUT_S 5.0

/* A growable text buffer the handler writes the answer's body into. */
struct http_body {
	char *data;
	size_t len;
	size_t cap;
	int failed; /* a formatting error: the answer becomes a 500 */
};

void http_body_printf(struct http_body *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Answer a GET of `path`: fill `body` and return the status (200, 404, 503...). */
typedef int (*http_handler_fn)(const char *path, struct http_body *body, const char **content_type, void *arg);

struct http_server;

/* Listen on "HOST:PORT" ("127.0.0.1:9187", "[::1]:9187"). NULL with `err` set on failure. */
struct http_server *http_server_new(struct ev_loop *loop, const char *address, http_handler_fn handler, void *arg,
                                    char *err, size_t errlen);
void http_server_free(struct http_server *s);

#endif
