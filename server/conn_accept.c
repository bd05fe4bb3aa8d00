/*
 * conn_accept.c — taking connections: each accepted gets its state and the first head's
 * deadline; beyond max-connections, a 503 written at once and a lingering close; with no
 * memory for one, accepted and closed (or libuv stops accepting). And the ends of them all:
 * SIGTERM's drain, and closing every one at exit.
 */
#include "conn_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFUSE_LINGER_MS 1000    /* a refused connection's lingering close */
#define REFUSE_LINGER_EXTRA 1000 /* refused connections lingering at once, at most */

/*
 * A refusal written at once, then a lingering close as after any last response: FIN, what the
 * client still sends (its request, a body) read and dropped until its EOF or
 * REFUSE_LINGER_MS. Closed with the request unread, the socket answered the body with a reset,
 * and a phone whose write failed on it never read the 503 and its Retry-After (the review).
 * Beyond REFUSE_LINGER_EXTRA lingering refusals over the limit, closed at once.
 */
static void canned_close(srv_conn *c, const char *resp)
{
	srv_server *s = c->srv;
	uv_buf_t b = uv_buf_init((char *)resp, (unsigned)strlen(resp));
	int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n > 0)
		s->metrics.bytes_out += (unsigned)n;
	if (n != (int)b.len || s->open_conns > s->cfg.max_connections + REFUSE_LINGER_EXTRA)
		srv_conn_close(c);
	else
		conn_linger(c, REFUSE_LINGER_MS);
}

static void on_reject_closed(uv_handle_t *h)
{
	h->data = NULL; /* free for the next refusal */
}

/* No memory for a connection: accept it anyway and close it, or libuv stops accepting. */
static void accept_and_drop(srv_server *s)
{
	static uv_tcp_t reject;
	if (reject.data)
		return; /* one refusal at a time; the next readiness retries */
	if (uv_tcp_init(s->loop, &reject) != 0)
		return;
	reject.data = s;
	uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&reject);
	uv_close((uv_handle_t *)&reject, on_reject_closed);
	s->metrics.connections_refused++;
}

void srv_conn_accept(srv_server *s)
{
	srv_conn *c = calloc(1, sizeof *c);
	if (!c) {
		accept_and_drop(s);
		return;
	}
	c->srv = s;
	c->tcp.data = c->timer.data = c;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->refs = 2;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->open_conns++;
	s->metrics.connections_total++;
	if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0) {
		srv_conn_close(c);
		return;
	}
	struct sockaddr_storage sa;
	int salen = sizeof sa;
	snprintf(c->peer, sizeof c->peer, "-");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
		if (sa.ss_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)&sa, c->peer, sizeof c->peer);
		else if (sa.ss_family == AF_INET6) {
			/* An IPv4 client of a dual-stack listener ([::]:8080) is the IPv4 address
			 * it is, in the log and the rate limits, as it is behind a proxy. */
			struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
			if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
				inet_ntop(AF_INET, a6->sin6_addr.s6_addr + 12, c->peer,
				          sizeof c->peer);
			else
				uv_ip6_name(a6, c->peer, sizeof c->peer);
		}
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (s->open_conns > s->cfg.max_connections) {
		s->metrics.connections_refused++;
		static const char body[] =
			"{\"error\":{\"code\":\"too_many_connections\",\"message\":\"try again\"}}";
		char resp[768];
		snprintf(resp, sizeof resp,
			 "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
			 "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
			 "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
			 "Retry-After: 5\r\nConnection: close\r\n\r\n%s",
			 s->date, sizeof body - 1, body);
		canned_close(c, resp);
		return;
	}
	c->state = CONN_HEAD;
	c->head_started = true; /* the first head's deadline runs from the accept */
	conn_arm(c, s->cfg.head_timeout_ms);
	conn_start_reading(c);
}

/* SIGTERM: idle connections close now; busy ones close after their response. */
void srv_conns_drain(srv_server *s)
{
	for (srv_conn *c = s->conns; c; c = c->next) {
		conn_end_keep_alive(c); /* a body claimed later must not turn it back on */
		if (conn_idle(c))       /* a stray CRLF after a body too: not a request begun */
			srv_conn_close(c);
	}
}

void srv_conns_close_all(srv_server *s)
{
	for (srv_conn *c = s->conns; c; c = c->next)
		srv_conn_close(c);
}
