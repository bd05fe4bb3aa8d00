/*
 * entity.c — GET and HEAD of a stored thing (a clip, a file): validators, conditional
 * requests, byte ranges, and a body streamed in chunks from storage.
 *
 * srv_entity_plan() is pure (RFC 9110 sections 13 and 14): If-Match / If-Unmodified-Since
 * (412), If-None-Match / If-Modified-Since (304), Range with If-Range (206, or 416 with
 * `Content-Range: bytes * /size`); several ranges or a Range it cannot read get the whole
 * body (200), which the RFC allows. It reads only the request, so a pool thread may run it.
 * srv_respond_entity() writes the head and the chunk read so far, then reads and writes one
 * chunk at a time, its size following how fast the client takes them (below): each read is a
 * job on the pool that opens and closes its own storage access, so nothing in storage is held
 * while the client is slow to read.
 */
#include "entity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- dates ---- */
int64_t srv_http_date_parse(const char *p, size_t n)
{
	static const char *formats[] = {
		"%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
		"%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
		"%a %b %e %H:%M:%S %Y",      /* asctime */
	};
	char buf[64];
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, p, n);
	buf[n] = 0;
	for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
		struct tm tm;
		memset(&tm, 0, sizeof tm);
		const char *end = strptime(buf, formats[i], &tm);
		if (end && *end == 0)
			return (int64_t)timegm(&tm);
	}
	return -1;
}

void srv_http_date_format(int64_t t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* ---- entity tags ---- */
/* Does the list `v` (If-Match / If-None-Match) name `etag`? Weak comparison unless strong. */
static bool etag_listed(srv_slice v, const char *etag, bool strong)
{
	size_t i = 0;
	size_t el = strlen(etag);
	while (i < v.len) {
		while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == '\t' || v.ptr[i] == ','))
			i++;
		if (i >= v.len)
			break;
		if (v.ptr[i] == '*')
			return true;
		bool weak = false;
		if (i + 2 <= v.len && v.ptr[i] == 'W' && v.ptr[i + 1] == '/') {
			weak = true;
			i += 2;
		}
		if (i >= v.len || v.ptr[i] != '"')
			return false; /* not a list of entity tags: matches nothing */
		size_t start = i++;
		while (i < v.len && v.ptr[i] != '"')
			i++;
		if (i >= v.len)
			return false;
		i++;
		const char *tag = v.ptr + start;
		size_t tl = i - start;
		const char *ours = etag;
		size_t ol = el;
		if (ol >= 2 && ours[0] == 'W' && ours[1] == '/') {
			if (strong)
				continue;
			ours += 2;
			ol -= 2;
		}
		if ((!weak || !strong) && tl == ol && memcmp(tag, ours, tl) == 0)
			return true;
	}
	return false;
}

/* ---- ranges ---- */
/* Digits, as many as sent (leading zeros, or a client's "to the end" as 2^64 or 10^20):
 * a value past UINT64_MAX is UINT64_MAX, beyond any stored size either way. */
static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
	if (n == 0)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*out = v;
	return true;
}

/*
 * One "bytes=" range against size. 1: satisfiable (offset, length); 0: unsatisfiable (416);
 * -1: not one range we read (several, another unit, bad syntax): serve the whole body.
 */
static int parse_range(srv_slice v, uint64_t size, uint64_t *offset, uint64_t *length)
{
	if (v.len < 6 || strncasecmp(v.ptr, "bytes=", 6) != 0)
		return -1;
	const char *p = v.ptr + 6;
	size_t n = v.len - 6;
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (memchr(p, ',', n))
		return -1; /* several ranges: the whole body */
	const char *dash = memchr(p, '-', n);
	if (!dash)
		return -1;
	size_t a_len = (size_t)(dash - p), b_len = n - a_len - 1;
	uint64_t a, b;
	if (a_len == 0) { /* suffix: the last b bytes */
		if (!parse_u64(dash + 1, b_len, &b))
			return -1;
		if (b == 0 || size == 0)
			return 0;
		*length = b < size ? b : size;
		*offset = size - *length;
		return 1;
	}
	if (!parse_u64(p, a_len, &a))
		return -1;
	if (b_len == 0)
		b = UINT64_MAX;
	else if (!parse_u64(dash + 1, b_len, &b) || b < a)
		return -1;
	if (a >= size)
		return 0;
	if (b >= size)
		b = size - 1;
	*offset = a;
	*length = b - a + 1;
	return 1;
}

void srv_entity_plan(const srv_request *req, const srv_entity *e, srv_plan *plan)
{
	memset(plan, 0, sizeof *plan);
	plan->status = 200;
	plan->offset = 0;
	plan->length = e->size;
	const srv_slice *im = srv_request_header(req, "If-Match");
	const srv_slice *ius = srv_request_header(req, "If-Unmodified-Since");
	const srv_slice *inm = srv_request_header(req, "If-None-Match");
	const srv_slice *ims = srv_request_header(req, "If-Modified-Since");
	if (im && !etag_listed(*im, e->etag, true)) {
		plan->status = 412;
		return;
	}
	if (!im && ius && e->last_modified > 0) {
		int64_t t = srv_http_date_parse(ius->ptr, ius->len);
		if (t >= 0 && e->last_modified > t) {
			plan->status = 412;
			return;
		}
	}
	if (inm) {
		if (etag_listed(*inm, e->etag, false)) {
			plan->status = 304;
			return;
		}
	} else if (ims && e->last_modified > 0 &&
		   (req->method == SRV_METHOD_GET || req->method == SRV_METHOD_HEAD)) {
		int64_t t = srv_http_date_parse(ims->ptr, ims->len);
		if (t >= 0 && e->last_modified <= t) {
			plan->status = 304;
			return;
		}
	}
	const srv_slice *range = srv_request_header(req, "Range");
	if (!range || req->method != SRV_METHOD_GET || e->whole_only)
		return;
	const srv_slice *ifr = srv_request_header(req, "If-Range");
	if (ifr) {
		bool fresh;
		if (ifr->len > 0 && (ifr->ptr[0] == '"' ||
		                     (ifr->len >= 2 && ifr->ptr[0] == 'W' && ifr->ptr[1] == '/'))) {
			/* One entity tag, not a list: ours, strong (a weak one never is fresh). A
			 * date may start with W too: a Wednesday's. */
			size_t el = strlen(e->etag);
			fresh = ifr->ptr[0] == '"' && ifr->len == el &&
				memcmp(ifr->ptr, e->etag, el) == 0;
		} else {
			int64_t t = srv_http_date_parse(ifr->ptr, ifr->len);
			fresh = t >= 0 && e->last_modified > 0 && e->last_modified == t;
		}
		if (!fresh)
			return; /* the client's copy is stale: the whole new body */
	}
	uint64_t off, len;
	int r = parse_range(*range, e->size, &off, &len);
	if (r < 0)
		return;
	if (r == 0) {
		plan->status = 416;
		plan->length = 0;
		return;
	}
	plan->status = 206;
	plan->offset = off;
	plan->length = len;
}

/* ---- streaming ---- */
/*
 * A streamed body's stage follows its client, measured by how fast it takes what it is given
 * (the write of a part completing), not by how fast storage reads. Each read takes the stage
 * (cap bytes) and is offered to the socket: when the socket takes it all at once, the client
 * keeps up and the next read is twice as big (up to SRV_STAGE_MAX). Otherwise at most
 * SRV_STAGE_MIN of the rest is copied into a write that waits for the client (the piece), and
 * the remainder stays in the buffer until the piece is out: the piece's time sets the stage
 * (doubled within SRV_STAGE_FAST_NS, SRV_STAGE_MIN past SRV_STAGE_HOLD_NS), then the
 * remainder is offered. A buffer kept SRV_STAGE_HOLD_NS beside a piece (the client slowed
 * down or stopped) is let go, to be read again later, and the stage falls to SRV_STAGE_MIN:
 * a slow reader thus holds one piece and its 16 KiB reads, a fast one 256 KiB reads, and the
 * first part (read with the lookup, up to SRV_STREAM_CHUNK) goes out whole to a client that
 * takes it. The reservation (x->buffer_held) follows what is held: the buffer, plus
 * SRV_STAGE_MIN while a piece is out.
 */
typedef struct stream {
	srv_exchange *x;
	srv_source src;
	uint64_t next, end; /* the next byte to read, one past the last */
	char *buf;          /* read and not yet offered: [pos, got); NULL when nothing is kept */
	size_t size;        /* buf's size */
	size_t pos, got;
	size_t cap;      /* the stage: how much the next read takes */
	size_t accepted; /* of the part offered last */
	uint64_t t0;     /* when the piece out was queued */
	uv_timer_t hold; /* a buffer kept beside a piece: let go when it fires */
	bool hold_made;  /* hold is initialised (only once a piece waits: most never do) */
	bool offering;   /* inside srv_conn_offer: its callback only notes the status */
	bool called;
	int status;
	int rc;
} stream;

static void stream_closed(uv_handle_t *h)
{
	free(h->data);
}

static void stream_free(stream *st)
{
	if (st->src.close)
		st->src.close(st->src.ctx);
	free(st->buf);
	st->buf = NULL;
	if (st->hold_made)
		uv_close((uv_handle_t *)&st->hold, stream_closed);
	else
		free(st);
}

/* Nothing read is kept: only the piece out, if any, is held. */
static void stream_let_go(stream *st)
{
	st->next -= st->got - st->pos; /* read again later */
	free(st->buf);
	st->buf = NULL;
	st->size = st->pos = st->got = 0;
	srv_buffer_resize(st->x, SRV_STAGE_MIN);
}

static void stream_held_too_long(uv_timer_t *t)
{
	stream *st = t->data;
	stream_let_go(st);
	st->cap = SRV_STAGE_MIN;
}

static void stream_read_job(void *arg)
{
	stream *st = arg;
	uint64_t want = st->end - st->next;
	if (want > st->size)
		want = st->size;
	st->rc = st->src.read(st->src.ctx, st->next, st->buf, (size_t)want, &st->got);
	if (st->rc == 0 && st->got == 0)
		st->rc = -1; /* the thing is shorter than it said: do not spin */
}

static void stream_offer(stream *st, const char *head, size_t head_len);

static void stream_read_done(srv_exchange *x, void *arg)
{
	stream *st = arg;
	if (st->rc != 0 || x->conn->closed) {
		/* The head is out: the only honest signal left is to cut the connection. */
		if (st->rc < 0)
			x->srv->metrics.storage_errors++;
		srv_conn_abort(x->conn);
		stream_free(st);
		return;
	}
	st->pos = 0;
	st->next += st->got;
	stream_offer(st, NULL, 0);
}

/* The next part, into a buffer the stage's size (no room to grow: as large as is held). */
static void stream_read(stream *st)
{
	if (st->cap > SRV_STAGE_MAX)
		st->cap = SRV_STAGE_MAX;
	if (srv_buffer_resize(st->x, st->cap) < 0 && st->x->buffer_held >= SRV_STAGE_MIN)
		st->cap = st->x->buffer_held;
	if (st->buf && st->size != st->cap) {
		free(st->buf);
		st->buf = NULL;
	}
	if (!st->buf) {
		if (!(st->buf = malloc(st->cap))) {
			srv_conn_abort(st->x->conn);
			stream_free(st);
			return;
		}
		st->size = st->cap;
	}
	st->pos = st->got = 0;
	if (srv_job_submit_any(st->x, stream_read_job, stream_read_done, st) < 0) {
		srv_conn_abort(st->x->conn);
		stream_free(st);
	}
}

static void stream_sent(void *arg, int status)
{
	stream *st = arg;
	if (st->offering) {
		st->called = true;
		st->status = status;
		return;
	}
	/* The piece is out: how long the client took for it sets the stage. A failure or the
	 * last part ended the response. */
	if (st->hold_made)
		uv_timer_stop(&st->hold);
	if (status < 0 || (st->next >= st->end && !st->buf) || st->x->conn->closed) {
		stream_free(st);
		return;
	}
	uint64_t took = srv_now_ns() - st->t0;
	if (took <= SRV_STAGE_FAST_NS)
		st->cap *= 2;
	else if (took > SRV_STAGE_HOLD_NS)
		st->cap = SRV_STAGE_MIN;
	if (st->buf) {
		srv_buffer_resize(st->x, st->size); /* the piece is no longer held */
		stream_offer(st, NULL, 0);
	} else {
		stream_read(st);
	}
}

/* Offers what buf holds (after the head, if any). */
static void stream_offer(stream *st, const char *head, size_t head_len)
{
	size_t len = st->got - st->pos;
	st->offering = true;
	st->called = false;
	srv_conn_offer(st->x->conn, head, head_len, len ? st->buf + st->pos : NULL, len,
	               SRV_STAGE_MIN, st->next < st->end, &st->accepted, stream_sent, st);
	st->offering = false;
	if (st->called) {
		/* The socket took it all: the client keeps up. A failure or the last part ended
		 * the response (and x with it, when the next request was served at once). */
		if (st->status < 0 || st->next >= st->end || st->x->conn->closed) {
			stream_free(st);
			return;
		}
		if (len)
			st->cap *= 2;
		stream_read(st);
		return;
	}
	/* A piece waits for the client. The rest is kept beside it if there is room, for a
	 * second at most; else let go at once. */
	st->pos += st->accepted;
	st->t0 = srv_now_ns();
	if (st->pos < st->got && srv_buffer_resize(st->x, st->size + SRV_STAGE_MIN) == 0) {
		if (!st->hold_made) {
			uv_timer_init(st->x->srv->loop, &st->hold);
			st->hold.data = st;
			st->hold_made = true;
		}
		uv_timer_start(&st->hold, stream_held_too_long, SRV_STAGE_HOLD_NS / 1000000, 0);
	} else {
		stream_let_go(st);
	}
}

size_t srv_stream_first_stage(size_t first_len)
{
	return first_len < SRV_STAGE_MIN   ? SRV_STAGE_MIN
	       : first_len > SRV_STAGE_MAX ? SRV_STAGE_MAX
	                                   : first_len;
}

void srv_respond_entity(srv_exchange *x, const srv_entity *e, const srv_plan *plan,
			srv_source *src, char *first, size_t first_len)
{
	char extra[512], lm[40] = "";
	size_t n = 0;
	/* Date is made once a second, so up to a second behind: a clip made within it would be
	 * Last-Modified after the Date of its answer, which RFC 9110 8.8.2.1 forbids. */
	int64_t modified = e->last_modified;
	if (modified > x->srv->date_s)
		srv_date_refresh(x->srv);
	if (modified > x->srv->date_s) /* still: the clock was set back since; Date it is */
		modified = x->srv->date_s;
	if (modified > 0)
		srv_http_date_format(modified, lm, sizeof lm);
	n += (size_t)snprintf(extra + n, sizeof extra - n, "Accept-Ranges: %s\r\nETag: %s\r\n",
	                      e->whole_only ? "none" : "bytes", e->etag);
	if (lm[0])
		n += (size_t)snprintf(extra + n, sizeof extra - n, "Last-Modified: %s\r\n", lm);
	if (e->cache_control)
		n += (size_t)snprintf(extra + n, sizeof extra - n, "Cache-Control: %s\r\n",
				      e->cache_control);
	if (e->disposition)
		n += (size_t)snprintf(extra + n, sizeof extra - n, "Content-Disposition: %s\r\n",
				      e->disposition);
	if (plan->status == 206)
		n += (size_t)snprintf(extra + n, sizeof extra - n,
				      "Content-Range: bytes %llu-%llu/%llu\r\n",
				      (unsigned long long)plan->offset,
				      (unsigned long long)(plan->offset + plan->length - 1),
				      (unsigned long long)e->size);
	if (plan->status == 416)
		n += (size_t)snprintf(extra + n, sizeof extra - n, "Content-Range: bytes */%llu\r\n",
				      (unsigned long long)e->size);
	bool body = (plan->status == 200 || plan->status == 206) && !x->head_only &&
		    plan->length > 0;
	if (plan->status == 304 || plan->status == 412 || plan->status == 416 || !body) {
		if (src && src->close)
			src->close(src->ctx);
		free(first);
		if (plan->status == 304) {
			srv_respond_head(x, 304, NULL, extra, -1);
		} else if (plan->status == 412) {
			srv_respond_error(x, 412, "precondition_failed",
					  "the stored version does not match the precondition");
		} else if (plan->status == 416) {
			srv_respond_error_with(x, 416, "range_not_satisfiable",
					       "the range is outside the stored bytes", extra);
		} else {
			srv_respond_head(x, plan->status, e->content_type, extra,
					 (int64_t)plan->length);
		}
		return;
	}
	stream *st = calloc(1, sizeof *st);
	if (!st) {
		free(first);
		if (src->close)
			src->close(src->ctx);
		srv_respond_error(x, 500, "out_of_memory", "no memory for the response");
		return;
	}
	st->x = x;
	st->src = *src;
	st->cap = srv_stream_first_stage(first_len); /* as the caller reserved */
	if (first && st->cap < SRV_STREAM_CHUNK && first_len < plan->length) {
		/* More parts follow: the buffer is no larger than is reserved. (A body read whole
		 * with the lookup, a clip, is let go once it is out: no copy for a moment's.) */
		char *p = realloc(first, st->cap); /* no more than is reserved */
		if (p)
			first = p;
	}
	st->buf = first; /* NULL without a first part: the offer below sends the head alone */
	st->size = first ? st->cap : 0;
	st->got = first_len;
	st->next = plan->offset + first_len;
	st->end = plan->offset + plan->length;
	/* The head and what was read with the lookup go out together. */
	x->responded = true;
	x->status = plan->status;
	char head[2048];
	size_t hl = srv_format_head(x, plan->status, e->content_type, extra,
				    (int64_t)plan->length, head, sizeof head);
	stream_offer(st, head, hl);
}
