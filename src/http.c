/*
 * http: accept, read one request line (and headers) into a fixed buffer,
 * answer, close. Every socket is non-blocking and watched by the loop.
 */
#include "http.h"
#include "hostport.h"
#include "xalloc.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define REQUEST_MAX 4096

struct client {
	struct http_server *server;
	int fd;
	ev_io io;
	ev_timer timer;
	char request[REQUEST_MAX];
	size_t got;
	char *response; /* once answered: what is left to write */
	size_t response_len;
	size_t sent;
	struct client *next;
};

struct http_server {
	struct ev_loop *loop;
	int fd;
	ev_io accept_io;
	http_handler_fn handler;
	void *arg;
	struct client *clients;
	unsigned n_clients;
};

void http_body_printf(struct http_body *b, const char *fmt, ...)
{
	va_list ap;
	if (b->failed)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
}

static void client_close(struct client *c)
{
	struct http_server *s = c->server;
	ev_io_stop(s->loop, &c->io);
	ev_timer_stop(s->loop, &c->timer);
	close(c->fd);
	for (struct client **p = &s->clients; *p != NULL; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	s->n_clients--;
	free(c->response);
	free(c);
}

static const char *reason_of(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

/* Build the whole answer, then write it as the socket allows. */
static void answer(struct client *c, int status, const char *content_type, const char *body, size_t body_len)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	                 status, reason_of(status), content_type, body_len);
	c->response = xmalloc((size_t)n + body_len);
	memcpy(c->response, head, (size_t)n);
	memcpy(c->response + n, body, body_len);
	c->response_len = (size_t)n + body_len;
	c->sent = 0;
	ev_io_stop(c->server->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(c->server->loop, &c->io);
}

static void answer_text(struct client *c, int status, const char *text)
{
	answer(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* A complete request head is in: "GET /path HTTP/1.x". */
static void handle(struct client *c)
{
	char method[8], target[256], version[16];
	char *eol = strstr(c->request, "\r\n");
	if (eol == NULL)
		eol = strchr(c->request, '\n');
	if (eol != NULL)
		*eol = '\0';
	if (sscanf(c->request, "%7s %255s %15s", method, target, version) != 3 || strncmp(version, "HTTP/", 5) != 0) {
		answer_text(c, 400, "bad request\n");
		return;
	}
	if (strcmp(method, "GET") != 0) {
		answer_text(c, 405, "only GET\n");
		return;
	}
	char *query = strchr(target, '?');
	if (query != NULL)
		*query = '\0';
	struct http_body body = {0};
	const char *type = "text/plain; charset=utf-8";
	int status = c->server->handler(target, &body, &type, c->server->arg);
	if (body.failed)
		answer_text(c, 500, "out of memory\n");
	else
		answer(c, status, type, body.data ? body.data : "", body.len);
	free(body.data);
}

static void client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;
	(void)loop;
	if (revents & EV_WRITE) {
		ssize_t n = send(c->fd, c->response + c->sent, c->response_len - c->sent, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			client_close(c);
			return;
		}
		c->sent += (size_t)n;
		if (c->sent == c->response_len) {
			shutdown(c->fd, SHUT_WR);
			client_close(c);
		}
		return;
	}
	ssize_t n = recv(c->fd, c->request + c->got, sizeof(c->request) - 1 - c->got, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c); /* gone before asking anything complete */
		return;
	}
	c->got += (size_t)n;
	c->request[c->got] = '\0';
	if (strstr(c->request, "\r\n\r\n") != NULL || strstr(c->request, "\n\n") != NULL)
		handle(c);
	else if (c->got == sizeof(c->request) - 1)
		answer_text(c, 431, "request too large\n");
}

static void client_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	client_close(t->data);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_server *s = w->data;
	(void)revents;
	for (;;) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warning("metrics: accept failed error=\"%s\"", strerror(errno));
			return;
		}
		if (s->n_clients >= HTTP_MAX_CLIENTS) {
			close(fd); /* over the cap: turned away at once */
			continue;
		}
		struct client *c = xcalloc(1, sizeof(*c));
		c->server = s;
		c->fd = fd;
		ev_io_init(&c->io, client_cb, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, client_timeout_cb, HTTP_TIMEOUT_S, 0.);
		c->timer.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->timer);
		c->next = s->clients;
		s->clients = c;
		s->n_clients++;
	}
}

struct http_server *http_server_new(struct ev_loop *loop, const char *address, http_handler_fn handler, void *arg,
                                    char *err, size_t errlen)
{
	char host[256], port[16];
	if (hostport_parse(address, host, sizeof(host), port, sizeof(port)) != 0) {
		snprintf(err, errlen, "metrics.listen \"%s\" is not HOST:PORT", address);
		return NULL;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "metrics.listen \"%s\": %s", address, gai_strerror(rc));
		return NULL;
	}
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
		snprintf(err, errlen, "metrics.listen \"%s\": %s", address, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return NULL;
	}
	freeaddrinfo(ai);
	struct http_server *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->fd = fd;
	s->handler = handler;
	s->arg = arg;
	ev_io_init(&s->accept_io, accept_cb, fd, EV_READ);
	s->accept_io.data = s;
	ev_io_start(loop, &s->accept_io);
	return s;
}

void http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	struct client *c = s->clients;
	while (c != NULL) {
		struct client *next = c->next;
		ev_io_stop(s->loop, &c->io);
		ev_timer_stop(s->loop, &c->timer);
		close(c->fd);
		free(c->response);
		free(c);
		c = next;
	}
	ev_io_stop(s->loop, &s->accept_io);
	close(s->fd);
	free(s);
}
