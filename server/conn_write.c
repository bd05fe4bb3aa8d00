/*
 * conn_write.c — putting a response on the wire: parts written at once with uv_try_write when
 * the socket takes them (no copy, no allocation; the response finishes before the call
 * returns), the rest queued with uv_write (or, for a streamed part offered, at most what the
 * stream lets wait: srv_conn_offer); 100 Continue; the buffer memory a streamed response or an
 * upload reserves (capped in all, for uploads apart, per signed-in caller or else client
 * address, and per address in all), grown and shrunk as its client goes.
 *
 * A response is not given a deadline as a whole (a slow phone downloading an export may take
 * an hour) but must keep moving: every quarter of write-timeout-ms the bytes the client has
 * taken (handed to the socket, less what libuv and the kernel still hold: SIOCOUTQ) are
 * sampled, and a response whose client took less than write-min-rate over the last
 * write-timeout-ms (nothing at all, at 0) is cut: after write-timeout-ms and a quarter at most.
 * Time when the client holds nothing of ours (we are reading storage) does not count. The same
 * sliding window measures request bodies (conn.c). Loop thread only; conn.c drives it.
 */
#include "conn_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#ifdef __linux__
#include <linux/sockios.h> /* SIOCOUTQ */
#endif

static void on_continue_written(uv_write_t *w, int status)
{
	srv_conn *c = w->data;
	(void)status; /* a failure shows on the next read or write */
	free(w);
	srv_conn_unref(c);
}

/* 100 Continue: almost always taken by the socket at once; if not, the rest is queued. */
void conn_send_continue(srv_conn *c)
{
	static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	uv_buf_t b = uv_buf_init(cont, sizeof cont - 1);
	int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n > 0) /* sent: in the server's bytes, not the response's (its access log line) */
		c->srv->metrics.bytes_out += (unsigned)n;
	if (n == (int)b.len)
		return;
	if (n < 0 && n != UV_EAGAIN)
		return; /* the connection is failing: the read side will see it */
	uv_write_t *w = malloc(sizeof *w);
	b = uv_buf_init(cont + (n > 0 ? n : 0), (unsigned)(b.len - (n > 0 ? (unsigned)n : 0)));
	if (!w)
		return;
	w->data = c;
	if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written) != 0) {
		free(w);
		return;
	}
	c->srv->metrics.bytes_out += b.len; /* queued, as responses are counted */
	c->refs++;
}

typedef struct write_req {
	uv_write_t req;
	srv_conn *conn;
	size_t len;
	bool more;              /* another part of this response follows */
	srv_write_cb cb;        /* the part is out (or failed); NULL for none */
	void *arg;
	char data[];            /* the head, and a copied body */
} write_req;

/* Whose share a buffer counts in: the client's address, an IPv6 one cut to its /64 (what one
 * subscriber gets; a v4-mapped address stays whole). Not an address: all such share one. */
static void client_share(const char *client, unsigned char key[16])
{
	static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (!conn_addr16(client, key)) {
		memset(key, 0, 16);
		return;
	}
	if (memcmp(key, v4mapped, sizeof v4mapped) != 0)
		memset(key + 8, 0, 8);
}

/* The most upload stages may hold between them: the rest of buffer-memory is kept for
 * responses, so slow uploads, however many, never leave a child without a clip to play. */
static uint64_t upload_cap(const srv_server *s)
{
	return s->cfg.buffer_memory * s->cfg.upload_buffer_percent / 100;
}

/* Has the client of x its share of holders already, or its address all of its own? At most
 * buffer-memory / SRV_STAGE_MIN (4096 by default) hold one: a walk is cheap next to the
 * request. */
static bool share_taken(srv_exchange *x)
{
	srv_server *s = x->srv;
	unsigned mine = 0, address = 0;
	for (const srv_exchange *h = s->buffer_holders; h; h = h->buffer_next) {
		bool same_address = memcmp(h->buffer_client, x->buffer_client, 16) == 0;
		if (same_address && ++address >= s->cfg.buffers_per_address) {
			s->metrics.buffers_refused_address++;
			return true;
		}
		bool same = x->buffer_owned ? h->buffer_owned &&
		                                  memcmp(h->buffer_owner, x->buffer_owner, 16) == 0
		                            : !h->buffer_owned && same_address;
		if (same && ++mine >= s->cfg.buffers_per_client) {
			s->metrics.buffers_refused_client++;
			return true;
		}
	}
	return false;
}

void srv_buffer_owner(srv_exchange *x, const uint8_t *key)
{
	if (x->buffer_reserved)
		return; /* counted where it was reserved */
	memcpy(x->buffer_owner, key, sizeof x->buffer_owner);
	x->buffer_owned = true;
}

static int reserve(srv_exchange *x, size_t bytes, bool upload)
{
	srv_server *s = x->srv;
	if (x->buffer_reserved)
		return 0;
	if (s->buffer_bytes + bytes > s->cfg.buffer_memory) {
		s->metrics.buffers_refused_memory++;
		return -1;
	}
	if (upload && s->upload_buffer_bytes + bytes > upload_cap(s)) {
		s->metrics.buffers_refused_uploads++;
		return -1;
	}
	client_share(x->client, x->buffer_client);
	if (share_taken(x))
		return -1;
	s->buffer_bytes += bytes;
	if (upload)
		s->upload_buffer_bytes += bytes;
	x->buffer_held = bytes;
	x->buffer_upload = upload;
	x->buffer_reserved = true;
	x->buffer_prev = NULL;
	x->buffer_next = s->buffer_holders;
	if (x->buffer_next)
		x->buffer_next->buffer_prev = x;
	s->buffer_holders = x;
	return 0;
}

int srv_buffer_reserve(srv_exchange *x, size_t bytes)
{
	return reserve(x, bytes, false);
}

int conn_upload_reserve(srv_exchange *x, size_t bytes)
{
	return reserve(x, bytes, true);
}

int srv_buffer_resize(srv_exchange *x, size_t bytes)
{
	srv_server *s = x->srv;
	if (!x->buffer_reserved)
		return -1;
	bool upload = x->buffer_upload;
	if (bytes > x->buffer_held) {
		size_t more = bytes - x->buffer_held;
		if (s->buffer_bytes + more > s->cfg.buffer_memory ||
		    (upload && s->upload_buffer_bytes + more > upload_cap(s)))
			return -1; /* not refused: the stage stays as it is */
		s->buffer_bytes += more;
		if (upload)
			s->upload_buffer_bytes += more;
	} else {
		s->buffer_bytes -= x->buffer_held - bytes;
		if (upload)
			s->upload_buffer_bytes -= x->buffer_held - bytes;
	}
	x->buffer_held = bytes;
	return 0;
}

void conn_buffer_release(srv_exchange *x)
{
	if (!x->buffer_reserved)
		return;
	srv_server *s = x->srv;
	s->buffer_bytes -= x->buffer_held;
	if (x->buffer_upload)
		s->upload_buffer_bytes -= x->buffer_held;
	x->buffer_held = 0;
	if (x->buffer_prev)
		x->buffer_prev->buffer_next = x->buffer_next;
	else
		s->buffer_holders = x->buffer_next;
	if (x->buffer_next)
		x->buffer_next->buffer_prev = x->buffer_prev;
	x->buffer_prev = x->buffer_next = NULL;
	x->buffer_reserved = false;
}

/* ---- progress over a sliding window ---- */
void conn_progress_start(srv_exchange *x, uint64_t now, int64_t count)
{
	x->progress.t0 = now;
	x->progress.slot = 0;
	x->progress.paused_at = 0;
	for (int i = 0; i <= RATE_SLOTS; i++)
		x->progress.mark[i] = count;
}

void conn_progress_observe(srv_exchange *x, uint64_t now, uint64_t window_ns, int64_t before,
			   int64_t after, int64_t *grew, uint64_t *span_ns)
{
	uint64_t slot_ns = window_ns / RATE_SLOTS ? window_ns / RATE_SLOTS : 1;
	if (x->progress.t0 > now)
		x->progress.t0 = now;
	uint64_t t0 = x->progress.t0;
	uint64_t k = (now - t0) / slot_ns; /* the slot now is in */
	/* Every slot boundary passed since the last observation saw the count as it was until
	 * now (before): record them (no more than the ring holds). */
	if (k > x->progress.slot + RATE_SLOTS + 1)
		x->progress.slot = k - RATE_SLOTS - 1;
	while (x->progress.slot < k) {
		x->progress.slot++;
		x->progress.mark[x->progress.slot % (RATE_SLOTS + 1)] = before;
	}
	uint64_t from = k >= RATE_SLOTS ? k - RATE_SLOTS : 0; /* the window's first boundary */
	*grew = after - x->progress.mark[from % (RATE_SLOTS + 1)];
	*span_ns = now - (t0 + from * slot_ns);
}

void conn_progress_pause(srv_exchange *x)
{
	if (!x->progress.paused_at)
		x->progress.paused_at = srv_now_ns();
}

uint64_t conn_progress_resume(srv_exchange *x)
{
	if (!x->progress.paused_at)
		return 0;
	uint64_t waited = srv_now_ns() - x->progress.paused_at;
	x->progress.paused_at = 0;
	/* As if the wait had not been: every boundary so far moves on by it. */
	x->progress.t0 += waited;
	return waited;
}

/* ---- the write phase ---- */
static unsigned tick_ms(const srv_server *s)
{
	unsigned ms = s->cfg.write_timeout_ms / RATE_SLOTS;
	return ms ? ms : 1;
}

/*
 * The bytes of this response the client has taken: those handed to the socket, less those
 * libuv still queues and those the kernel has not had acknowledged (SIOCOUTQ). Off by a
 * constant when an earlier response's tail is still in the socket: only differences count.
 * *idle: nothing of ours is waiting for the client.
 */
static int64_t taken(srv_conn *c, bool *idle)
{
	size_t queued = uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
	int unsent = 0;
#ifdef SIOCOUTQ
	uv_os_fd_t fd;
	if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0 || ioctl(fd, SIOCOUTQ, &unsent) < 0 ||
	    unsent < 0)
		unsent = 0;
#endif
	*idle = queued == 0 && unsent == 0;
	return (int64_t)c->a->x.bytes_out - (int64_t)queued - (int64_t)unsent;
}

void conn_write_tick(srv_conn *c)
{
	srv_server *s = c->srv;
	srv_exchange *x = &c->a->x;
	uint64_t now = srv_now_ns();
	bool idle;
	int64_t count = taken(c, &idle);
	if (idle || !x->progress.t0) {
		/* The first look (the window starts here), or the client has all we gave it: the
		 * wait is ours (storage), not its. */
		conn_progress_start(x, now, count);
	} else {
		uint64_t window = (uint64_t)s->cfg.write_timeout_ms * 1000000ull;
		int64_t grew;
		uint64_t span;
		conn_progress_observe(x, now, window, count, count, &grew, &span);
		if (span >= window &&
		    (grew <= 0 || (double)grew * 1e9 < (double)s->cfg.write_min_rate * (double)span)) {
			/* Stalled (or as good as): the head is out, so cutting is the only answer,
			 * and what the kernel still holds for this client goes too. */
			conn_end_keep_alive(c);
			conn_close_reset(c);
			return;
		}
	}
	conn_arm(c, tick_ms(s));
}

/* The response is over (written, or cut): log it once and move on. */
void conn_finish(srv_conn *c)
{
	if (c->a->x.finished)
		return;
	c->a->x.finished = true;
	conn_buffer_release(&c->a->x);
	free(c->a->stage); /* an upload's stage is done with once it is answered */
	c->a->stage = NULL;
	c->a->stage_cap = 0;
	conn_response_done(c);
}

static void on_write(uv_write_t *w, int status)
{
	write_req *wr = (write_req *)w;
	srv_conn *c = wr->conn;
	c->pending_write -= wr->len;
	bool more = wr->more;
	srv_write_cb cb = wr->cb;
	void *arg = wr->arg;
	free(wr);
	if (status < 0)
		srv_conn_close(c);
	if (cb)
		cb(arg, status < 0 ? status : c->closed ? UV_ECANCELED : 0);
	if (status < 0 || !more)
		conn_finish(c);
	srv_conn_unref(c);
}

/*
 * Writes a part of a response. The socket usually takes it at once (uv_try_write): then
 * nothing is copied or allocated and the response finishes before this returns. Otherwise what
 * is left of the head (and of the body when copy, else the caller keeps it until cb) goes into
 * a write request; of the body, at most queue_max bytes (a copy): *accepted (when not NULL)
 * says how many of its bytes went, the rest is the caller's to offer again.
 */
static void write_impl(srv_conn *c, const char *head, size_t head_len, const void *body,
                       size_t body_len, bool copy, size_t queue_max, size_t *accepted, bool more,
                       srv_write_cb cb, void *arg)
{
	if (accepted)
		*accepted = 0;
	if (c->closed) {
		if (cb)
			cb(arg, UV_ECANCELED);
		conn_finish(c);
		return;
	}
	size_t total = head_len + body_len;
	if (c->state != CONN_WRITING) {
		/* From here on the response must keep moving (conn_write_tick), however many parts
		 * and however long it takes. Most responses are out before the first look, so it
		 * is then that the window starts (no system call per response). */
		c->state = CONN_WRITING;
		c->a->x.progress.t0 = 0;
		conn_arm(c, tick_ms(c->srv));
	}
	c->srv->metrics.bytes_out += total;
	c->a->x.bytes_out += total;
	conn_stop_reading(c);
	uv_buf_t b[2] = {uv_buf_init((char *)head, (unsigned)head_len),
			 uv_buf_init((char *)body, (unsigned)body_len)};
	uv_buf_t *bufs = head_len ? b : b + 1;
	unsigned nb = head_len && body_len ? 2 : 1;
	size_t done = 0;
	if (c->pending_write == 0) {
		int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
		if (n >= 0) {
			done = (size_t)n;
		} else if (n != UV_EAGAIN) {
			srv_conn_close(c);
			if (cb)
				cb(arg, n);
			conn_finish(c);
			return;
		}
	}
	if (done == total) {
		if (accepted)
			*accepted = body_len;
		if (cb)
			cb(arg, 0);
		if (!more)
			conn_finish(c);
		return;
	}
	size_t head_rest = done < head_len ? head_len - done : 0;
	size_t body_done = done > head_len ? done - head_len : 0;
	size_t body_rest = body_len - body_done;
	if (body_rest > queue_max) {
		/* Not sent, nor counted as sent: what the client takes is measured on what went. */
		c->srv->metrics.bytes_out -= body_rest - queue_max;
		c->a->x.bytes_out -= body_rest - queue_max;
		body_rest = queue_max;
		more = true;
	}
	if (accepted)
		*accepted = body_done + body_rest;
	write_req *wr = malloc(sizeof *wr + head_rest + (copy ? body_rest : 0));
	if (!wr) {
		srv_conn_close(c);
		if (cb)
			cb(arg, UV_ENOMEM);
		conn_finish(c);
		return;
	}
	if (head_rest)
		memcpy(wr->data, head + done, head_rest);
	const char *body_from = (const char *)body + body_done;
	if (copy && body_rest) {
		memcpy(wr->data + head_rest, body_from, body_rest);
		head_rest += body_rest; /* one buffer now */
		body_rest = 0;
	}
	wr->conn = c;
	wr->len = head_rest + body_rest;
	wr->more = more;
	wr->cb = cb;
	wr->arg = arg;
	b[0] = uv_buf_init(wr->data, (unsigned)head_rest);
	b[1] = uv_buf_init((char *)body_from, (unsigned)body_rest);
	bufs = head_rest ? b : b + 1;
	nb = head_rest && body_rest ? 2 : 1;
	c->pending_write += wr->len;
	c->refs++;
	if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, nb, on_write) != 0) {
		c->pending_write -= wr->len;
		c->refs--;
		free(wr);
		srv_conn_close(c);
		if (cb)
			cb(arg, UV_ECANCELED);
		conn_finish(c);
	}
}

void srv_conn_write_part(srv_conn *c, const char *head, size_t head_len, const void *body,
			 size_t body_len, bool more, srv_write_cb cb, void *arg)
{
	write_impl(c, head, head_len, body, body_len, false, SIZE_MAX, NULL, more, cb, arg);
}

void srv_conn_offer(srv_conn *c, const char *head, size_t head_len, const void *body,
                    size_t body_len, size_t queue_max, bool more, size_t *accepted, srv_write_cb cb,
                    void *arg)
{
	write_impl(c, head, head_len, body, body_len, true, queue_max ? queue_max : 1, accepted,
	           more, cb, arg);
}

/* Queues one whole response (already formatted); the body is copied. */
void srv_conn_write(srv_conn *c, const char *head, size_t head_len, const void *body,
		    size_t body_len)
{
	write_impl(c, head, head_len, body, body_len, true, SIZE_MAX, NULL, false, NULL, NULL);
}

/* A streamed response cannot go on (storage failed mid-body): cut the connection. */
void srv_conn_abort(srv_conn *c)
{
	conn_end_keep_alive(c);
	srv_conn_close(c);
	conn_finish(c);
}
