/*
 * fuzz_entity.c — libFuzzer target: conditional requests and ranges (server/entity.c). The
 * input is text: a first line "M SIZE LASTMOD ETAG" (M: 'H' for HEAD, anything else GET; the
 * entity's size and Last-Modified in decimal; its ETag as stored, e.g. "abc" or W/"abc"), then
 * header lines "Name: value" (Range, If-Range, If-Match, If-None-Match, If-Modified-Since,
 * If-Unmodified-Since, anything). They become a request that goes through the server's head
 * parser and then srv_entity_plan(), as the audio and static routes call it; the same lines are
 * also handed over raw as a request's headers (any bytes, as a caller might), and both plans
 * must agree when the parser took the request. Checks what the responder and RFC 9110 rely on:
 * a 206 lies inside the entity and is the range asked for, a 416 only for a range that starts
 * past the end, a 412 or 304 only for a precondition that says so, If-Range only with a strong
 * validator that is ours, and HTTP dates that parse format back to themselves.
 */
#include "entity.h"
#include "http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_LINES 16

static bool slice_is(srv_slice s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* Decimal digits, saturating; *p moves past them. */
static uint64_t number(const char **p, const char *end)
{
	uint64_t v = 0;
	while (*p < end && **p >= '0' && **p <= '9') {
		unsigned d = (unsigned)(**p - '0');
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
		(*p)++;
	}
	return v;
}

static void skip_spaces(const char **p, const char *end)
{
	while (*p < end && **p == ' ')
		(*p)++;
}

/* A date header's value: parsed dates that fit IMF-fixdate's four-digit year format back. */
static int64_t date_of(const srv_slice *v)
{
	if (!v)
		return -1;
	int64_t t = srv_http_date_parse(v->ptr, v->len);
	if (t >= 0 && t < 253402300800) { /* year 9999 */
		char s[64];
		srv_http_date_format(t, s, sizeof s);
		if (srv_http_date_parse(s, strlen(s)) != t)
			abort();
	}
	return t;
}

/* The one range "bytes=A-B" / "bytes=A-" / "bytes=-S", as RFC 9110 section 14.1.2 reads it:
 * numbers of any length, those past 2^64 (beyond any size) as 2^64-1. */
typedef struct range_ref {
	int kind; /* -1 not one range we serve, 0 unsatisfiable, 1 satisfiable */
	uint64_t first, last;
} range_ref;

static range_ref range_of(srv_slice v, uint64_t size)
{
	range_ref r = {-1, 0, 0};
	if (v.len < 6 || strncasecmp(v.ptr, "bytes=", 6) != 0)
		return r;
	const char *p = v.ptr + 6, *end = v.ptr + v.len;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	const char *a = p;
	uint64_t first = number(&p, end);
	size_t a_digits = (size_t)(p - a);
	if (p >= end || *p != '-')
		return r;
	p++;
	const char *b = p;
	uint64_t last = number(&p, end);
	size_t b_digits = (size_t)(p - b);
	if (p != end || (a_digits == 0 && b_digits == 0))
		return r;
	if (a_digits == 0) { /* suffix */
		if (last == 0 || size == 0)
			return (range_ref){0, 0, 0};
		uint64_t n = last < size ? last : size;
		return (range_ref){1, size - n, size - 1};
	}
	if (b_digits > 0 && last < first)
		return r;
	if (first >= size)
		return (range_ref){0, 0, 0};
	if (b_digits == 0 || last >= size)
		last = size - 1;
	return (range_ref){1, first, last};
}

/* An opaque-tag: DQUOTE, etagc (no DQUOTE, space or control), DQUOTE; as the server makes. */
static bool opaque_tag(const char *etag)
{
	size_t n = strlen(etag);
	if (n < 2 || etag[0] != '"' || etag[n - 1] != '"')
		return false;
	for (size_t i = 1; i + 1 < n; i++) {
		unsigned char c = (unsigned char)etag[i];
		if (c == '"' || c <= 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static const srv_slice *header(const srv_request *req, const char *name)
{
	const srv_slice *v = srv_request_header(req, name);
	if (v && req->header_count) {
		const srv_header *h = req->headers;
		bool inside = false;
		for (size_t i = 0; i < req->header_count; i++)
			inside |= v == &h[i].value;
		if (!inside)
			abort();
	}
	return v;
}

/* What must hold of any plan for this request and entity. */
static void check_plan(const srv_request *req, const srv_entity *e, const srv_plan *plan)
{
	const srv_slice *im = header(req, "If-Match");
	const srv_slice *ius = header(req, "If-Unmodified-Since");
	const srv_slice *inm = header(req, "If-None-Match");
	const srv_slice *ims = header(req, "If-Modified-Since");
	const srv_slice *range = header(req, "Range");
	const srv_slice *ifr = header(req, "If-Range");
	int64_t t_ius = date_of(ius), t_ims = date_of(ims), t_ifr = date_of(ifr);
	srv_slice ours = {e->etag, strlen(e->etag)};
	bool strong = opaque_tag(e->etag); /* a well-formed strong tag */
	bool weak_ours = ours.len >= 2 && memcmp(ours.ptr, "W/", 2) == 0 && opaque_tag(e->etag + 2);
	range_ref rr = range ? range_of(*range, e->size) : (range_ref){-1, 0, 0};

	switch (plan->status) {
	case 200:
		if (plan->offset != 0 || plan->length != e->size)
			abort();
		break;
	case 206:
		if (req->method != SRV_METHOD_GET || !range || rr.kind != 1)
			abort();
		if (plan->length == 0 || plan->offset >= e->size ||
		    plan->length > e->size - plan->offset)
			abort();
		if (plan->offset != rr.first || plan->offset + plan->length - 1 != rr.last)
			abort();
		/* If-Range: the one strong entity tag we have, or exactly our date. */
		if (ifr && !(e->etag[0] == '"' && slice_is(*ifr, e->etag)) &&
		    !(e->last_modified > 0 && t_ifr == e->last_modified))
			abort();
		break;
	case 416:
		if (req->method != SRV_METHOD_GET || !range || rr.kind != 0 || plan->length != 0)
			abort();
		break;
	case 412:
		if (!im && !(ius && e->last_modified > 0 && t_ius >= 0 && e->last_modified > t_ius))
			abort();
		break;
	case 304:
		if (!inm && !(ims && e->last_modified > 0 && t_ims >= e->last_modified))
			abort();
		break;
	default:
		abort();
	}
	/* A precondition that names what we have holds. */
	if (plan->status == 412 && im &&
	    (slice_is(*im, "*") || (strong && slice_is(*im, e->etag))))
		abort();
	if (inm && plan->status != 412 && plan->status != 304 &&
	    (slice_is(*inm, "*") || ((strong || weak_ours) && slice_is(*inm, e->etag)) ||
	     (strong && inm->len == ours.len + 2 && memcmp(inm->ptr, "W/", 2) == 0 &&
	      memcmp(inm->ptr + 2, ours.ptr, ours.len) == 0) ||
	     (weak_ours && slice_is(*inm, e->etag + 2))))
		abort();
	/* A plain GET of one well-formed range is answered with it, and so is one whose If-Range
	 * is fresh: our strong tag, or exactly our date (a Wednesday's too, "Wed, ..."). */
	bool ifr_fresh = ifr && ((strong && slice_is(*ifr, e->etag)) ||
	                         (e->last_modified > 0 && t_ifr == e->last_modified));
	if (!im && !ius && !inm && !ims && (!ifr || ifr_fresh) && range &&
	    req->method == SRV_METHOD_GET && rr.kind >= 0 && plan->status != (rr.kind ? 206 : 416))
		abort();
}

typedef struct input {
	srv_method method;
	srv_entity e;
	srv_slice name[MAX_LINES], value[MAX_LINES];
	size_t lines;
} input;

static void read_input(const char *in, size_t n, input *x)
{
	const char *end = in + n, *eol = memchr(in, '\n', n);
	const char *p = in;
	if (!eol)
		eol = end;
	memset(x, 0, sizeof *x);
	x->method = p < eol && *p == 'H' ? SRV_METHOD_HEAD : SRV_METHOD_GET;
	while (p < eol && *p != ' ')
		p++;
	skip_spaces(&p, eol);
	x->e.size = number(&p, eol);
	skip_spaces(&p, eol);
	uint64_t lm = number(&p, eol);
	x->e.last_modified = lm > INT64_MAX ? INT64_MAX : (int64_t)lm;
	skip_spaces(&p, eol);
	size_t el = (size_t)(eol - p);
	if (el >= sizeof x->e.etag)
		el = sizeof x->e.etag - 1;
	memcpy(x->e.etag, p, el); /* may hold a NUL: the etag is then shorter, as a C string */
	x->e.content_type = "audio/ogg";
	for (p = eol < end ? eol + 1 : end; p < end && x->lines < MAX_LINES;) {
		const char *le = memchr(p, '\n', (size_t)(end - p));
		if (!le)
			le = end;
		const char *colon = memchr(p, ':', (size_t)(le - p));
		if (colon) {
			x->name[x->lines] = srv_slice_trim((srv_slice){p, (size_t)(colon - p)});
			x->value[x->lines] =
				srv_slice_trim((srv_slice){colon + 1, (size_t)(le - colon - 1)});
			x->lines++;
		}
		p = le < end ? le + 1 : end;
	}
}

/* The request as it arrives: through the server's head scan and parser. 0 if it took it. */
static int plan_parsed(const input *x, srv_plan *plan)
{
	static const char host[] = "Host: jiayin.example\r\n";
	const char *line = x->method == SRV_METHOD_HEAD ? "HEAD /a HTTP/1.1\r\n" : "GET /a HTTP/1.1\r\n";
	size_t len = strlen(line) + sizeof host - 1 + 2;
	for (size_t i = 0; i < x->lines; i++)
		len += x->name[i].len + 2 + x->value[i].len + 2;
	char *head = malloc(len);
	if (!head)
		return -1;
	size_t o = 0;
	memcpy(head + o, line, strlen(line));
	o += strlen(line);
	memcpy(head + o, host, sizeof host - 1);
	o += sizeof host - 1;
	for (size_t i = 0; i < x->lines; i++) {
		memcpy(head + o, x->name[i].ptr, x->name[i].len);
		o += x->name[i].len;
		memcpy(head + o, ": ", 2);
		o += 2;
		memcpy(head + o, x->value[i].ptr, x->value[i].len);
		o += x->value[i].len;
		memcpy(head + o, "\r\n", 2);
		o += 2;
	}
	memcpy(head + o, "\r\n", 2);
	o += 2;

	srv_limits lim;
	srv_limits_init(&lim);
	srv_parser p;
	int rc = srv_parser_init(&p, &lim);
	size_t resume = 0, hl = 0;
	if (rc == 0 && srv_head_scan(head, len, &resume, &lim, &hl) == 1 && hl == len) {
		srv_request req;
		rc = srv_head_parse(&p, head, hl, &req);
		if (rc == 0) {
			srv_entity_plan(&req, &x->e, plan);
			check_plan(&req, &x->e, plan);
		}
	} else {
		rc = -1;
	}
	srv_parser_free(&p);
	free(head);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static input x;
	read_input((const char *)data, size, &x);

	/* Raw: each header an exact heap copy, so a read past one is an ASan report. */
	srv_header headers[MAX_LINES];
	char *copies[2 * MAX_LINES] = {0};
	bool ok = true;
	for (size_t i = 0; i < x.lines; i++) {
		for (int k = 0; k < 2; k++) {
			srv_slice s = k ? x.value[i] : x.name[i];
			char *c = malloc(s.len ? s.len : 1);
			if (!c) {
				ok = false;
				continue;
			}
			memcpy(c, s.ptr, s.len);
			copies[2 * i + (size_t)k] = c;
			if (k)
				headers[i].value = (srv_slice){c, s.len};
			else
				headers[i].name = (srv_slice){c, s.len};
		}
	}
	if (ok) {
		srv_request req = {.method = x.method, .headers = headers, .header_count = x.lines};
		srv_plan raw, again, parsed;
		srv_entity_plan(&req, &x.e, &raw);
		check_plan(&req, &x.e, &raw);
		srv_entity_plan(&req, &x.e, &again);
		if (memcmp(&raw, &again, sizeof raw) != 0)
			abort();
		if (plan_parsed(&x, &parsed) == 0 &&
		    (parsed.status != raw.status || parsed.offset != raw.offset ||
		     parsed.length != raw.length))
			abort();
	}
	for (size_t i = 0; i < 2 * MAX_LINES; i++)
		free(copies[i]);
	return 0;
}
