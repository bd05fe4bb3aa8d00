/*
 * conn.c — one client connection: a state machine over libuv's TCP stream.
 *
 * HEAD: bytes gather in the connection's buffer until srv_head_scan() finds the head's end,
 * then srv_head_parse() and the router decide; BODY: the body is decoded into the exchange
 * (bounded by the route's limit) as it arrives; HANDLER and WRITING: reading is paused, so
 * pipelined requests wait in the socket and are parsed only as fast as responses drain (a
 * long-poll waiting is read all the same, srv_conn_watch, only to see its client leave);
 * after the response, bytes left in the buffer start the next request. CLOSING: after a
 * last response the write side is shut and what the client still sends is read and dropped
 * for a moment (a lingering close), so the client sees the response instead of a reset.
 * One timer per connection enforces the phase's deadline: head (slowloris), body idle,
 * keep-alive idle, and while writing, the progress check (conn_write.c). A body must also keep
 * up a floor rate over a sliding window. The buffer is freed while a connection idles. Where a
 * body goes is conn_body.c's; putting a response on the wire is conn_write.c's; who the client
 * is (the peer, or a trusted proxy's X-Forwarded-For) is conn_addr.c's; taking connections,
 * and refusing those beyond max-connections, conn_accept.c's.
 */
#include "conn_internal.h"
#include "http_coding.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINGER_MS 2000
#define BUF_EXTRA 16384 /* room past the head's limit for body bytes */
#define BUF_FIRST 2048  /* a buffer starts this small: most heads fit, and a slowloris
			   connection that sent one byte costs 2 KiB, not 32 */
#define BODY_RATE_GRACE_NS 10000000000ull /* a body's rate is judged from its 10th second on
					     (or once its window is full, if shorter) */

/*
 * A connection starts at most TURN_REQUESTS requests in one turn of the loop; what it pipelined
 * beyond waits for the next turn (s->deferred), so that other connections are read in between.
 * Without it a connection read up to 32 times a turn (libuv) and answered all it found: 200
 * connections pipelining 1,000 health checks each kept another client's waiting 1.3 s.
 */
#define TURN_REQUESTS 16

static void begin_exchange(srv_conn *c);

/*
 * A connection's per-request state (parser and exchange, ~2.5 KB with the header table)
 * exists only while a request is in progress: an idle keep-alive connection holds its two
 * libuv handles and a few fields, not a parser.
 */
static int active_get(srv_conn *c)
{
	if (c->a)
		return 0;
	c->a = calloc(1, sizeof *c->a);
	if (!c->a)
		return -1;
	c->a->x.body_fd = -1;
	if (srv_parser_init(&c->a->parser, &c->srv->cfg.http) < 0) {
		free(c->a);
		c->a = NULL;
		return -1;
	}
	return 0;
}

static void active_free(srv_conn *c)
{
	if (!c->a)
		return;
	/* The client went away before the response: the reservation ends with it. */
	conn_buffer_release(&c->a->x);
	srv_parser_free(&c->a->parser);
	free(c->a->x.body);
	if (c->a->x.body_fd >= 0)
		close(c->a->x.body_fd); /* unnamed: the file goes with it */
	free(c->a->stage);
	free(c->a);
	c->a = NULL;
}

void srv_conn_unref(srv_conn *c)
{
	if (--c->refs > 0)
		return;
	srv_server *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->open_conns--;
	active_free(c);
	free(c->buf);
	free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	srv_conn_unref(h->data);
}

void conn_log_unanswered(srv_conn *c)
{
	if (!c->a || c->a->x.finished)
		return;
	srv_exchange *x = &c->a->x;
	double secs = (double)(srv_now_ns() - x->start_ns) / 1e9;
	x->finished = true;
	x->status = 499;
	srv_metrics_request(&c->srv->metrics, x->route_index, x->status, secs);
	srv_log_request(c->srv, x, secs);
}

static void close_conn(srv_conn *c, bool reset)
{
	if (c->closed)
		return;
	/* The connection ends while its request's body arrives (the client went away, a phone
	 * lost its signal): no route will answer a body it has not claimed. */
	if (c->a && c->state == CONN_BODY && !c->a->claim.done)
		conn_log_unanswered(c);
	c->closed = true;
	c->state = CONN_CLOSING;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_stop(&c->timer);
	if (!reset || uv_tcp_close_reset(&c->tcp, on_handle_closed) != 0)
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	if (c->a && c->a->claim.done && !c->a->claim.over && !c->a->claim.err)
		conn_claim_fail(c, UV_ECANCELED, 0, NULL, NULL, NULL); /* the route keeps its bytes */
}

void srv_conn_close(srv_conn *c)
{
	close_conn(c, false);
}

void conn_close_reset(srv_conn *c)
{
	close_conn(c, true);
}

/* Only the one empty line a client may send before a request (RFC 9112 2.2), or part of it:
 * some clients end a body with a CRLF it does not count. Such a connection is still idle. */
static bool only_stray_crlf(const srv_conn *c)
{
	return (c->len == 1 && c->buf[0] == '\r') ||
	       (c->len == 2 && c->buf[0] == '\r' && c->buf[1] == '\n');
}

bool conn_idle(const srv_conn *c)
{
	return c->state == CONN_HEAD && (c->len == 0 || (only_stray_crlf(c) && !c->head_started));
}

void conn_end_keep_alive(srv_conn *c)
{
	c->keep_alive = false;
	if (c->a)
		c->a->claim.keep_alive = false; /* what a claimed body would have restored */
}

static void on_timer(uv_timer_t *t)
{
	srv_conn *c = t->data;
	if (c->state == CONN_WRITING) {
		conn_write_tick(c); /* cuts the response if its client stopped taking it */
		return;
	}
	if (c->state == CONN_BODY && c->a->stage_timer) {
		conn_stage_hold(c); /* not the client's deadline: its stage's */
		return;
	}
	if (c->state == CONN_BODY && c->a->claim.done) {
		conn_claim_fail(c, UV_ETIMEDOUT, 408, "request_timeout",
				"the request did not arrive in time", NULL);
		return;
	}
	if ((c->state == CONN_HEAD && c->len > 0 && !only_stray_crlf(c)) ||
	    c->state == CONN_BODY) {
		/* The client started a request and stalled: say so, then close. */
		conn_end_keep_alive(c);
		if (c->state == CONN_HEAD)
			begin_exchange(c);
		c->state = CONN_HANDLER;
		srv_respond_error(&c->a->x, 408, "request_timeout",
				  "the request did not arrive in time");
		return;
	}
	srv_conn_close(c); /* idle keep-alive, a stalled write, or the end of a linger */
}

void conn_arm(srv_conn *c, unsigned ms)
{
	if (c->a)
		c->a->stage_timer = false; /* conn_wait_body says when it is */
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)suggested;
	srv_conn *c = h->data;
	if (!c->buf) {
		c->cap = BUF_FIRST;
		c->buf = malloc(c->cap);
		if (!c->buf) {
			c->cap = 0;
			*b = uv_buf_init(NULL, 0);
			return;
		}
	}
	if (c->state == CONN_CLOSING) { /* lingering: read into the whole buffer, drop it */
		*b = uv_buf_init(c->buf, (unsigned)c->cap);
		return;
	}
	*b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

void conn_stop_reading(srv_conn *c)
{
	if (c->reading)
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);

void conn_start_reading(srv_conn *c)
{
	if (!c->reading && !c->closed &&
	    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

void srv_conn_watch(srv_conn *c, void (*gone)(void *arg, srv_gone why), void *arg)
{
	c->gone = gone;
	c->gone_arg = arg;
	conn_start_reading(c);
}

void srv_conn_unwatch(srv_conn *c)
{
	if (!c->gone)
		return;
	c->gone = NULL;
	if (!c->closed)
		conn_stop_reading(c);
}

/*
 * A watched wait (a long-poll) whose socket reports n < 0: the watch is over and the handler
 * hears why. Its client went away: its place is freed now rather than when the wait ends (the
 * review: 400 long-polls dropped by their clients held the connection limit full for their
 * 60 s). A reset is dropped; an EOF may be a client that only shut its side and still reads:
 * answered now, then closed. A client that sent more than the buffer holds is answered now and
 * what it sent is served after (no longer read, its leaving would go unseen for the rest of
 * the wait). The last two from the review of that.
 */
static void watch_over(srv_conn *c, ssize_t n)
{
	void (*gone)(void *, srv_gone) = c->gone;
	srv_conn_unwatch(c);
	if (n == UV_ENOBUFS) {
		gone(c->gone_arg, SRV_GONE_FULL);
		return;
	}
	conn_end_keep_alive(c);
	if (n == UV_EOF) {
		gone(c->gone_arg, SRV_GONE_EOF);
		return;
	}
	gone(c->gone_arg, SRV_GONE_RESET);
	conn_log_unanswered(c);
	srv_conn_close(c);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	(void)b;
	srv_conn *c = st->data;
	if (n < 0 && c->state == CONN_HANDLER && c->gone) {
		watch_over(c, n);
		return;
	}
	if (n == UV_ENOBUFS) {
		/* The buffer is full because nothing consumes it right now (a body waiting on its
		 * file, or no memory for a buffer): wait; whoever consumes resumes reading. */
		conn_stop_reading(c);
		if (!c->buf)
			srv_conn_close(c);
		return;
	}
	if (n < 0) {
		/* EOF or a reset. A request being handled still gets its answer written. */
		if (c->state == CONN_HANDLER || c->state == CONN_WRITING) {
			conn_stop_reading(c);
			conn_end_keep_alive(c);
			return;
		}
		if (c->state == CONN_BODY && c->a->claim.done) {
			/* Inside a claimed body: what the client sent before it went away is still the
			 * route's. The buffer is taken in, then the body ends (process_loop). */
			c->a->claim.eof = true;
			conn_end_keep_alive(c);
			conn_stop_reading(c);
			conn_process(c);
			return;
		}
		srv_conn_close(c);
		return;
	}
	if (n == 0)
		return;
	c->srv->metrics.bytes_in += (uint64_t)n;
	if (c->state == CONN_CLOSING)
		return; /* lingering: dropped */
	c->len += (size_t)n;
	if (c->state == CONN_BODY && c->a->claim.cut_left) {
		/* A cut body: what was in the socket when it was cut, and no more waiting. */
		uint64_t took = (uint64_t)n < c->a->claim.cut_left ? (uint64_t)n : c->a->claim.cut_left;
		c->a->claim.cut_left -= took;
		if (!c->a->claim.cut_left) {
			c->a->claim.eof = true;
			conn_stop_reading(c);
		}
	}
	conn_process(c);
}

/* The full-size buffer (the head's limit and room for body bytes). Only where nothing points
 * into the buffer yet, or where the caller parses the head again after it moved. */
static int grow_buffer(srv_conn *c)
{
	size_t full = c->srv->cfg.http.max_head_bytes + BUF_EXTRA;
	if (c->cap >= full)
		return 0;
	char *b = realloc(c->buf, full);
	if (!b)
		return -1;
	c->buf = b;
	c->cap = full;
	return 0;
}

/* A new exchange for the request starting in the buffer (or for an error about its head). */
static void begin_exchange(srv_conn *c)
{
	srv_server *s = c->srv;
	srv_exchange *x = &c->a->x;
	conn_buffer_release(x); /* ended with its response; this keeps the holders' list whole */
	free(x->body);
	if (x->body_fd >= 0)
		close(x->body_fd);
	memset(x, 0, sizeof *x);
	x->body_fd = -1;
	memset(&c->a->claim, 0, sizeof c->a->claim);
	c->a->claim.fd = -1;
	c->a->stage_len = 0;
	c->a->file_off = 0;
	c->a->body_complete = false;
	x->conn = c;
	x->srv = s;
	x->id = ++s->next_request_id;
	x->start_ns = srv_now_ns();
	x->route_index = s->route_count; /* "unrouted" until a route matches */
	snprintf(x->client, sizeof x->client, "%s", c->peer);
	c->requests++;
}

static void fail_request(srv_conn *c, int err)
{
	c->srv->metrics.parse_errors++;
	conn_end_keep_alive(c);
	c->state = CONN_HANDLER;
	conn_stop_reading(c);
	/* A head refused after its method was read (no Host, a bad Expect...): a HEAD's answer
	 * has no body however it ends (RFC 9110 9.3.2). Before that, req is zero: GET. */
	c->a->x.head_only = c->a->x.req.method == SRV_METHOD_HEAD;
	srv_respond_error(&c->a->x, srv_parse_status(err), srv_parse_errcode(err),
			  srv_parse_strerror(err));
}

static void dispatch(srv_conn *c)
{
	c->state = CONN_HANDLER;
	conn_stop_reading(c);
	uv_timer_stop(&c->timer);
	c->a->x.route->handler(&c->a->x);
}

/* A head was found in buf[0..head_len): parse, route, and take the body or dispatch. */
static void start_request(srv_conn *c, size_t head_len)
{
	srv_server *s = c->srv;
	srv_exchange *x = &c->a->x;
	begin_exchange(c);
	int r = srv_head_parse(&c->a->parser, c->buf, head_len, &x->req);
	if (r == 0 && x->req.body != SRV_BODY_NONE && c->cap < s->cfg.http.max_head_bytes + BUF_EXTRA) {
		/* A body comes: read it through the full-size buffer. The head moves with it,
		 * so it is parsed again where it now is (the same bytes, the same answer). */
		if (grow_buffer(c) < 0) {
			r = SRV_HTTP_ENOMEM;
		} else {
			srv_parser_reset(&c->a->parser);
			r = srv_head_parse(&c->a->parser, c->buf, head_len, &x->req);
		}
	}
	if (r < 0) {
		fail_request(c, r);
		return;
	}
	conn_forwarded(x);
	x->head_only = x->req.method == SRV_METHOD_HEAD; /* errors to HEAD carry no body either */
	x->accepts_gzip = srv_accepts_gzip(&x->req);
	c->keep_alive = x->req.keep_alive && !s->draining &&
			c->requests < s->cfg.max_requests_per_conn;
	c->body_start = head_len;
	srv_method m = x->req.method;
	char allow[128];
	r = srv_route_find(s->routes, s->route_count, m, x->req.path, &x->route, x->params, allow,
			   sizeof allow);
	if (r == 405 && m == SRV_METHOD_HEAD) {
		const srv_route *get;
		char get_allow[128];
		if (srv_route_find(s->routes, s->route_count, SRV_METHOD_GET, x->req.path, &get,
				   x->params, get_allow, sizeof get_allow) == 0 &&
		    (get->flags & SRV_ROUTE_HEAD_OK)) {
			x->route = get;
			x->head_only = true;
			r = 0;
		}
	}
	bool has_body = x->req.body == SRV_BODY_CHUNKED ||
			(x->req.body == SRV_BODY_LENGTH && x->req.content_length > 0);
	if (r != 0) {
		/* The body, if any, is not read: the connection cannot be reused. */
		if (has_body)
			conn_end_keep_alive(c);
		c->state = CONN_HANDLER;
		conn_stop_reading(c);
		if (r == 405) {
			char hdr[160];
			snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
			srv_respond(x, 405, "application/json", hdr,
				    "{\"error\":{\"code\":\"method_not_allowed\",\"message\":"
				    "\"this path does not take that method\"}}",
				    strlen("{\"error\":{\"code\":\"method_not_allowed\",\"message\":"
					   "\"this path does not take that method\"}}"));
		} else {
			srv_respond_error(x, 404, "not_found", "no such path");
		}
		return;
	}
	x->route_index = (size_t)(x->route - s->routes);
	if (!s->draining && (x->route->flags & SRV_ROUTE_BODY_CLAIM)) {
		/* The handler decides before the body (srv_body_claim): until it takes the body,
		 * the connection ends with the answer. */
		c->a->claim.keep_alive = c->keep_alive;
		if (has_body)
			c->keep_alive = false; /* for now: srv_body_claim() may restore it, unless
						  conn_end_keep_alive() is called meanwhile */
		dispatch(c);
		return;
	}
	if (s->draining) {
		conn_end_keep_alive(c);
		c->state = CONN_HANDLER;
		conn_stop_reading(c);
		srv_respond(x, 503, "application/json", "Retry-After: 5\r\n",
			    "{\"error\":{\"code\":\"shutting_down\",\"message\":\"the server is "
			    "restarting\"}}",
			    strlen("{\"error\":{\"code\":\"shutting_down\",\"message\":\"the server "
				   "is restarting\"}}"));
		return;
	}
	if (has_body && (x->route->max_body == 0 ||
			 (x->req.body == SRV_BODY_LENGTH &&
			  x->req.content_length > x->route->max_body))) {
		/* Refused before a byte of it is read (and before any 100 Continue). */
		conn_end_keep_alive(c);
		c->state = CONN_HANDLER;
		conn_stop_reading(c);
		srv_respond_error(x, 413, x->route->max_body ? "body_too_large" : "body_not_allowed",
				  x->route->max_body ? "the request body is too large"
						     : "this request takes no body");
		return;
	}
	c->a->parser.max_body = x->route->max_body;
	if (!has_body) {
		/* The parser completed the message with the head; nothing to feed. */
		dispatch(c);
		return;
	}
	if (x->req.expect_continue && c->len == head_len)
		conn_send_continue(c);
	c->state = CONN_BODY;
	c->a->body_in = 0;
	c->a->body_t0 = srv_now_ns();
	conn_progress_start(x, c->a->body_t0, 0);
	conn_arm(c, s->cfg.body_idle_ms);
	if (x->route->flags & SRV_ROUTE_BODY_FILE) {
		int r2 = conn_open_body_file(c);
		if (r2 < 0)
			conn_file_failed(c, r2);
	}
}

/* Has the body brought less than body-min-rate over its window (used: bytes just taken)? */
static bool body_too_slow(srv_conn *c, size_t used)
{
	srv_server *s = c->srv;
	srv_active *a = c->a;
	uint64_t now = srv_now_ns();
	uint64_t window = (uint64_t)s->cfg.body_rate_window_ms * 1000000ull;
	uint64_t grace = window < BODY_RATE_GRACE_NS ? window : BODY_RATE_GRACE_NS;
	int64_t grew;
	uint64_t span;
	conn_progress_observe(&a->x, now, window, (int64_t)(a->body_in - used), (int64_t)a->body_in,
			      &grew, &span);
	return now - a->body_t0 >= grace &&
	       (double)grew * 1e9 < (double)s->cfg.body_min_rate * (double)span;
}

static void on_resume(uv_idle_t *h)
{
	srv_server *s = h->data;
	srv_conn *c = s->deferred;
	s->deferred = s->deferred_tail = NULL;
	uv_idle_stop(h);
	while (c) {
		srv_conn *next = c->defer_next;
		c->deferred = false;
		c->defer_next = NULL;
		c->turn_ms = uv_now(s->loop);
		c->turn_requests = 0;
		conn_process(c); /* closed meanwhile: it does nothing */
		srv_conn_unref(c);
		c = next;
	}
}

void srv_conns_turns_init(srv_server *s)
{
	uv_idle_init(s->loop, &s->resume_idle);
	s->resume_idle.data = s;
}

/* The connection has started its share of requests this turn: the rest wait for the next. */
static bool turn_used(srv_conn *c)
{
	srv_server *s = c->srv;
	uint64_t now = uv_now(s->loop);
	if (c->turn_ms != now) {
		c->turn_ms = now;
		c->turn_requests = 0;
	}
	if (c->turn_requests < TURN_REQUESTS)
		return false;
	conn_stop_reading(c);
	if (!c->deferred) {
		c->deferred = true;
		c->refs++;
		if (s->deferred_tail)
			s->deferred_tail->defer_next = c;
		else
			s->deferred = c;
		s->deferred_tail = c;
		uv_idle_start(&s->resume_idle, on_resume);
	}
	return true;
}

static void process_loop(srv_conn *c)
{
	srv_server *s = c->srv;
	while (!c->closed) {
		if (c->state == CONN_HEAD) {
			if (conn_idle(c)) {
				conn_arm(c, s->cfg.keepalive_ms);
				if (!c->reading)
					conn_start_reading(c);
				return;
			}
			if (turn_used(c))
				return;
			if (active_get(c) < 0) {
				srv_conn_close(c);
				return;
			}
			if (!c->head_started) {
				/* The deadline runs from the head's first byte: a client dripping
				 * bytes does not push it back. */
				c->head_started = true;
				conn_arm(c, s->cfg.head_timeout_ms);
			}
			size_t head_len = 0;
			int r = srv_head_scan(c->buf, c->len, &c->scan_resume, &s->cfg.http,
					      &head_len);
			if (r < 0) {
				begin_exchange(c);
				fail_request(c, r);
				return;
			}
			if (r == 0) {
				/* Nothing points into the buffer before the head is parsed. */
				if (c->len == c->cap && grow_buffer(c) < 0) {
					srv_conn_close(c);
					return;
				}
				conn_start_reading(c);
				return;
			}
			c->head_started = false;
			c->turn_requests++;
			start_request(c, head_len);
			continue;
		}
		if (c->state == CONN_BODY) {
			srv_active *a = c->a;
			bool claimed = a->claim.done != NULL;
			bool to_file = (a->x.route->flags & SRV_ROUTE_BODY_FILE) || claimed;
			if (to_file && a->fs_busy) {
				conn_stop_reading(c); /* the file is opening or being written: wait */
				return;
			}
			size_t used = 0, head_end = c->body_start;
			size_t avail = c->len - head_end;
			bool complete = a->body_complete;
			if (!complete) {
				/* A file-bound body takes no more input than its stage can hold
				 * (decoded bytes never outnumber input bytes). */
				size_t feed = avail;
				if (to_file && feed > a->stage_cap - a->stage_len)
					feed = a->stage_cap - a->stage_len;
				int r = srv_body_feed(&a->parser, c->buf + head_end, feed, &used,
						      to_file ? conn_stage_body : conn_collect_body, &a->x,
						      &complete);
				if (r < 0 && claimed) {
					conn_claim_parse_failed(c, r);
					return;
				}
				if (r < 0) {
					fail_request(c, r);
					return;
				}
			}
			a->body_in += used;
			if (!complete) {
				/* Drop what was taken; keep the head and what was not. */
				memmove(c->buf + head_end, c->buf + head_end + used, avail - used);
				c->len -= used;
				/* A body trickled to hold a connection (a byte every 29 s beats the
				 * idle timer) falls below the floor, measured over the last window:
				 * what it sent before does not buy it time once it stops moving. */
				if (s->cfg.body_min_rate && body_too_slow(c, used)) {
					if (claimed) {
						conn_claim_fail(c, UV_ETIMEDOUT, 408, "body_too_slow",
								"the request body arrives too slowly",
								NULL);
						return;
					}
					conn_end_keep_alive(c);
					c->state = CONN_HANDLER;
					conn_stop_reading(c);
					srv_respond_error(&a->x, 408, "body_too_slow",
							  "the request body arrives too slowly");
					return;
				}
				if (to_file && a->stage_len == a->stage_cap) {
					conn_write_full_stage(c);
					return;
				}
				if (used > 0 && avail > used)
					continue; /* framing took input without filling the stage */
				if (a->claim.eof) {
					/* All that arrived is taken: the body ends here. */
					conn_claim_fail(c, a->claim.cut ? UV_ECANCELED : UV_EOF, 0, NULL,
							NULL, NULL);
					return;
				}
				conn_wait_body(c);
				return;
			}
			if (!a->body_complete) {
				a->body_complete = true;
				c->body_start = head_end + used; /* pipelined bytes start here */
			}
			if (to_file && a->stage_len > 0) {
				conn_write_stage(c);
				return;
			}
			if (to_file && a->stage) {
				/* All of it is in the file: the stage and its share of buffer
				 * memory are not held while the transcode waits its turn (the
				 * review). */
				free(a->stage);
				a->stage = NULL;
				a->stage_cap = 0;
				conn_buffer_release(&a->x);
			}
			if (claimed) {
				/* All of it is in the route's file: the route answers. */
				c->state = CONN_HANDLER;
				conn_stop_reading(c);
				uv_timer_stop(&c->timer);
				a->claim.over = true;
				a->x.body_len = a->file_off - a->claim.start;
				a->claim.done(&a->x, a->claim.arg, 0);
				continue;
			}
			dispatch(c);
			continue; /* answered at once: the next pipelined request */
		}
		return; /* HANDLER, WRITING, CLOSING: the response decides what is next */
	}
}

static void on_shutdown(uv_shutdown_t *sh, int status)
{
	(void)status;
	free(sh);
}

/*
 * Runs the connection's state machine as far as the bytes in hand allow. A response written
 * at once finishes inside a handler, and its conn_response_done() asks for the next request: the
 * guard turns that into the next turn of this loop instead of a recursion as deep as the
 * pipeline.
 */
void conn_process(srv_conn *c)
{
	if (c->processing)
		return;
	c->processing = true;
	process_loop(c);
	c->processing = false;
}

void conn_linger(srv_conn *c, unsigned ms)
{
	c->state = CONN_CLOSING;
	uv_timer_stop(&c->timer);
	uv_shutdown_t *sh = malloc(sizeof *sh);
	if (!sh || uv_shutdown(sh, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
		free(sh);
		srv_conn_close(c);
		return;
	}
	c->len = 0;
	conn_arm(c, ms);
	conn_start_reading(c);
}

/* The response is written: log it, then the next request, or close. */
void conn_response_done(srv_conn *c)
{
	srv_exchange *x = &c->a->x;
	double secs = (double)(srv_now_ns() - x->start_ns) / 1e9;
	srv_metrics_request(&c->srv->metrics, x->route_index, x->status, secs);
	srv_log_request(c->srv, x, secs);
	free(x->body);
	x->body = NULL;
	x->body_len = x->body_cap = 0;
	if (c->closed)
		return;
	if (!c->keep_alive || c->srv->draining) {
		conn_linger(c, LINGER_MS);
		return;
	}
	/* Keep-alive: what followed the request moves to the front and is the next head. */
	size_t rest = c->len - c->body_start;
	memmove(c->buf, c->buf + c->body_start, rest);
	c->len = rest;
	c->body_start = 0;
	c->scan_resume = 0;
	c->state = CONN_HEAD;
	if (c->len == 0) {
		free(c->buf); /* idle connections hold no buffer and no parser */
		c->buf = NULL;
		c->cap = 0;
		active_free(c);
	} else {
		srv_parser_reset(&c->a->parser);
	}
	conn_start_reading(c);
	conn_process(c);
}
