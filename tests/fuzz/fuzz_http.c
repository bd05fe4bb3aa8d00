/*
 * fuzz_http.c — libFuzzer target: the HTTP request layer, scan -> parse -> route -> body, over a
 * connection's worth of pipelined requests. The first byte picks where the input is split
 * (the head scan first sees only the bytes before the split and resumes, the body arrives in
 * pieces of 1-13 bytes) and, by its low bit, tiny limits that put every limit within reach of
 * short inputs. Every buffer the parser sees is an exact heap copy, so a read past it is an
 * ASan report; slices, counts and body sizes are checked against what the API promises, and
 * the connection is parsed a second time in one piece: both runs must see the same requests,
 * the same bodies and the same bytes consumed, or the split changed the framing.
 * An input may end in a trailer, FAIL_MARK and one byte K, which the connection does not see:
 * the body callback then fails, as the server's do (a body over the route's limit, no memory),
 * on the call that would take a request's body past K & 0x7f bytes; the feed must return that
 * error, call nothing more and stay failed. Every parsed request's headers are looked up by
 * name (srv_request_header) and must be the request's own; its Accept-Encoding is read
 * (srv_accepts_gzip), and its headers gzipped (srv_gzip) must read back as they were.
 */
#include "http_coding.h"
#include "http_parse.h"
#include "server.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FAIL_MARK "\xff" "FAIL"

typedef struct body_check {
	const char *lo, *hi; /* the piece being fed */
	uint64_t bytes;
	unsigned sum;
	int fail_rc;         /* 0: never fail; else returned once bytes would pass fail_after */
	uint64_t fail_after;
	bool failed;
} body_check;

static int on_body(void *ctx, const char *d, size_t n)
{
	body_check *b = ctx;
	if (n == 0 || (uintptr_t)d < (uintptr_t)b->lo || (uintptr_t)(d + n) > (uintptr_t)b->hi)
		abort();
	if (b->failed)
		abort(); /* called again after it failed */
	if (b->fail_rc && b->bytes + n > b->fail_after) {
		b->failed = true;
		return b->fail_rc;
	}
	for (size_t i = 0; i < n; i++)
		b->sum += (unsigned char)d[i]; /* every byte handed out is read */
	b->bytes += n;
	return 0;
}

static char *dup_exact(const char *s, size_t n)
{
	char *c = malloc(n ? n : 1);
	if (c)
		memcpy(c, s, n);
	return c;
}

static void check_slice(srv_slice s, const char *lo, const char *hi, int may_be_null)
{
	if (!s.ptr) {
		if (!may_be_null || s.len)
			abort();
		return;
	}
	if ((uintptr_t)s.ptr < (uintptr_t)lo || (uintptr_t)(s.ptr + s.len) > (uintptr_t)hi)
		abort();
}

static void nothing(srv_exchange *x)
{
	(void)x;
}

/* Patterns with parameters, like the API's, next to the server's own table. */
static const srv_route param_routes[] = {
	{"a", SRV_METHOD_GET, "/v1/families/{family}/messages", nothing, 0, SRV_ROUTE_HEAD_OK},
	{"b", SRV_METHOD_POST, "/v1/families/{family}/messages", nothing, 1, 0},
	{"c", SRV_METHOD_GET, "/v1/families/{family}/messages/{message}/audio", nothing, 0, 0},
	{"d", SRV_METHOD_DELETE, "/v1/devices/{device}", nothing, 0, 0},
	{"e", SRV_METHOD_GET, "/{a}/{b}/{c}/{d}", nothing, 0, 0},
	{"f", SRV_METHOD_GET, "/assets/{*path}", nothing, 0, 0},
};

/* The router: a match's parameters are non-empty path segments inside the path. */
static void check_route_in(const srv_route *table, size_t n, const srv_request *req)
{
	const srv_route *route;
	srv_slice params[SRV_MAX_PARAMS];
	char allow[128];
	int r = srv_route_find(table, n, req->method, req->path, &route, params, allow,
			       sizeof allow);
	if (r == 0) {
		if (!route || route->method != req->method)
			abort();
		size_t used = 0;
		for (const char *p = route->pattern, *q; (q = strchr(p, '{')); p = q + 1) {
			size_t i = 0;
			for (const char *t = route->pattern; t < q; t++)
				i += *t == '{';
			if (i >= SRV_MAX_PARAMS)
				abort();
			check_slice(params[i], req->path.ptr, req->path.ptr + req->path.len, 0);
			if (params[i].len == 0 ||
			    (q[1] != '*' && memchr(params[i].ptr, '/', params[i].len)))
				abort();
			used = i + 1;
		}
		/* The parameters a pattern does not have are empty: handlers read params[0..1]. */
		for (size_t i = used; i < SRV_MAX_PARAMS; i++)
			if (params[i].ptr || params[i].len)
				abort();
	} else if (r == 405) {
		if (!allow[0] || strlen(allow) >= sizeof allow)
			abort();
	} else if (r != 404) {
		abort();
	}
}

static void check_route(const srv_request *req)
{
	check_route_in(srv_routes, srv_route_count, req);
	check_route_in(param_routes, sizeof param_routes / sizeof param_routes[0], req);
}

/* A header looked up by name is one of the request's, and has that name. */
static const srv_slice *lookup(const srv_request *req, const char *name)
{
	const srv_slice *v = srv_request_header(req, name);
	if (!v)
		return NULL;
	size_t i = 0;
	while (i < req->header_count && v != &req->headers[i].value)
		i++;
	if (i == req->header_count || req->headers[i].name.len != strlen(name))
		abort();
	return v;
}

static void check_lookups(const srv_request *req)
{
	static const char *names[] = {"Content-Length", "Transfer-Encoding", "Host",
	                              "Authorization", "X-Jiayin-Never-Sent"};
	const srv_slice *v[5];
	for (size_t i = 0; i < 5; i++)
		v[i] = lookup(req, names[i]);
	if (v[4] && req->header_count == 0)
		abort();
	/* Case does not matter, and the first of a name is the one found. */
	if (lookup(req, "content-length") != v[0] || lookup(req, "HOST") != v[2])
		abort();
	if ((req->body == SRV_BODY_LENGTH) != (v[0] != NULL) && !v[1])
		abort();
	if (req->body == SRV_BODY_CHUNKED && !v[1])
		abort();
	if (req->host.ptr && (!v[2] || v[2]->ptr != req->host.ptr || v[2]->len != req->host.len))
		abort();
}

/* Accept-Encoding's gzip: never taken without the header. Each request's head (names and
 * values: text as the answers are) gzipped and read back with zlib is itself. */
static void check_coding(const srv_request *req)
{
	if (srv_accepts_gzip(req) && !srv_request_header(req, "Accept-Encoding"))
		abort();
	char text[8192];
	size_t len = 0;
	for (size_t i = 0; i < req->header_count; i++) {
		const srv_header *h = &req->headers[i];
		if (len + h->name.len + h->value.len + 2 > sizeof text)
			break;
		memcpy(text + len, h->name.ptr, h->name.len);
		len += h->name.len;
		text[len++] = ':';
		memcpy(text + len, h->value.ptr, h->value.len);
		len += h->value.len;
		text[len++] = '\n';
	}
	size_t gz_len;
	char *gz = srv_gzip(text, len, &gz_len);
	if (!gz)
		return;
	char back[sizeof text];
	uLongf back_len = sizeof back;
	z_stream z = {0};
	if (gz_len >= len || inflateInit2(&z, 16 + 15) != Z_OK)
		abort();
	z.next_in = (Bytef *)gz;
	z.avail_in = (uInt)gz_len;
	z.next_out = (Bytef *)back;
	z.avail_out = (uInt)back_len;
	if (inflate(&z, Z_FINISH) != Z_STREAM_END || z.total_out != len ||
	    memcmp(back, text, len) != 0)
		abort();
	inflateEnd(&z);
	free(gz);
}

static void check_request(const srv_request *req, const char *head, size_t len,
                          const srv_limits *lim)
{
	const char *end = head + len;
	check_slice(req->target, head, end, 0);
	check_slice(req->path, head, end, 0);
	check_slice(req->query, head, end, 1);
	check_slice(req->host, head, end, 1);
	if (req->target.len > lim->max_target || req->header_count > lim->max_headers)
		abort();
	if (req->version_minor != 0 && req->version_minor != 1)
		abort();
	if (req->version_minor == 1 && !req->host.ptr)
		abort();
	for (size_t i = 0; i < req->header_count; i++) {
		check_slice(req->headers[i].name, head, end, 0);
		check_slice(req->headers[i].value, head, end, 0);
		if (req->headers[i].name.len == 0)
			abort();
	}
	check_lookups(req);
	check_coding(req);
}

enum { DONE, INCOMPLETE, REFUSED };

typedef struct outcome {
	int kind;
	size_t consumed;
	uint64_t body;
	unsigned sum;
} outcome;

/* One request from buf[0..avail); 1 when it completed and another may follow. */
static int one_request(srv_parser *p, const srv_limits *lim, const char *buf, size_t avail,
                       size_t split, size_t step, const body_check *fail, outcome *o)
{
	o->kind = REFUSED;
	size_t resume = 0, hl = 0;
	int rc = 0;
	if (split > 0 && split < avail) {
		char *part = dup_exact(buf, split);
		if (!part)
			return 0;
		rc = srv_head_scan(part, split, &resume, lim, &hl);
		free(part);
		if (rc == 1 && hl > split)
			abort();
	}
	if (rc == 0) {
		char *all = dup_exact(buf, avail);
		if (!all)
			return 0;
		rc = srv_head_scan(all, avail, &resume, lim, &hl);
		free(all);
	}
	if (rc <= 0) {
		if (rc < 0 && srv_parse_status(rc) < 400)
			abort();
		o->kind = rc == 0 ? INCOMPLETE : REFUSED;
		return 0;
	}
	if (hl > avail || hl > lim->max_head_bytes || hl < 4)
		abort();

	char *head = dup_exact(buf, hl);
	if (!head)
		return 0;
	srv_request req;
	rc = srv_head_parse(p, head, hl, &req);
	if (rc) {
		if (srv_parse_status(rc) < 400 || srv_parse_status(rc) == 500)
			abort();
		free(head);
		return 0;
	}
	check_request(&req, head, hl, lim);
	if (req.expect_continue && req.version_minor != 1)
		abort();
	check_route(&req);

	size_t off = hl;
	bool complete = false;
	body_check b = {.fail_rc = fail->fail_rc, .fail_after = fail->fail_after};
	while (!complete) {
		size_t n = avail - off < step ? avail - off : step, used = 0;
		char *piece = dup_exact(buf + off, n);
		if (!piece)
			break;
		b.lo = piece;
		b.hi = piece + n;
		rc = srv_body_feed(p, piece, n, &used, on_body, &b, &complete);
		if (b.failed) {
			/* The callback's error, and the parser stays failed without calling it. */
			size_t again = 1;
			bool done = true;
			if (rc != b.fail_rc || used != 0 || complete)
				abort();
			if (srv_body_feed(p, piece, n, &again, on_body, &b, &done) != rc || again ||
			    done)
				abort();
			free(piece);
			break;
		}
		free(piece);
		if (rc) {
			if (srv_parse_status(rc) < 400 || srv_parse_status(rc) == 500)
				abort();
			break;
		}
		if (used > n || (!complete && used != n))
			abort();
		off += used;
		if (!complete && off == avail)
			break; /* the input ends inside the body */
	}
	if (b.bytes > p->max_body)
		abort();
	if (complete && req.body == SRV_BODY_LENGTH && b.bytes != req.content_length)
		abort();
	if (complete && req.body == SRV_BODY_NONE && b.bytes != 0)
		abort();
	free(head);
	if (rc == 0)
		o->kind = complete ? DONE : INCOMPLETE;
	o->consumed = off;
	o->body = b.bytes;
	o->sum = b.sum;
	return o->kind == DONE;
}

#define MAX_REQUESTS 64

/* Parses the whole connection; returns how many outcomes were recorded. */
static size_t connection(srv_parser *p, const srv_limits *lim, const char *in, size_t n,
                         size_t split, size_t step, const body_check *fail, outcome *out)
{
	size_t off = 0, count = 0;
	while (count < MAX_REQUESTS && off < n) {
		srv_parser_reset(p);
		size_t s = split > off ? split - off : 0;
		outcome *o = &out[count++];
		*o = (outcome){0};
		if (!one_request(p, lim, in + off, n - off, s, step, fail, o))
			break;
		off += o->consumed;
	}
	return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t ctl = data[0];
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	body_check fail = {0};
	const size_t mark = sizeof FAIL_MARK - 1;
	if (n >= mark + 1 && memcmp(in + n - mark - 1, FAIL_MARK, mark) == 0) {
		uint8_t k = (uint8_t)in[n - 1];
		fail.fail_rc = k & 0x80 ? SRV_HTTP_ENOMEM : SRV_HTTP_EBODY_TOO_LARGE;
		fail.fail_after = k & 0x7f;
		n -= mark + 1;
	}

	srv_limits lim;
	srv_limits_init(&lim);
	if (ctl & 1) {
		lim.max_head_bytes = 80;
		lim.max_headers = 3;
		lim.max_target = 16;
		lim.max_chunk_bytes = 8;
		lim.max_chunk_line = 6;
		lim.max_body_bytes = 24;
	}
	const size_t split = (size_t)(ctl >> 1) * n / 127;
	const size_t step = 1 + (ctl >> 1) % 13;

	srv_parser p;
	if (srv_parser_init(&p, &lim) == 0) {
		static outcome a[MAX_REQUESTS], b[MAX_REQUESTS];
		size_t na = connection(&p, &lim, in, n, split, step, &fail, a);
		size_t nb = connection(&p, &lim, in, n, 0, n ? n : 1, &fail, b);
		if (na != nb)
			abort();
		for (size_t i = 0; i < na; i++) {
			if (a[i].kind != b[i].kind)
				abort();
			if (a[i].kind == DONE && (a[i].consumed != b[i].consumed ||
			                          a[i].body != b[i].body || a[i].sum != b[i].sum))
				abort();
		}
	}
	srv_parser_free(&p);
	return 0;
}
