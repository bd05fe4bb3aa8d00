/*
 * test_http_parse_head.c — the HTTP/1.1 request parser's head on raw bytes: every rejection of
 * the head scan and of the head parse with its code and status, valid GET/HEAD/POST/OPTIONS,
 * HTTP/1.0 keep-alive, query split, OWS trimming, Content-Length/Transfer-Encoding framing, the
 * head, target and header-count limits exactly at and one past their values, and the error
 * table and limit checks. Bodies and pipelining are in test_http_parse_body.c; the parser and
 * the exact-size copies it is handed come from http_parse_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_parse_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int scan_n(const char *s, size_t len, size_t *head_len)
{
	const char *buf = copy(s, len);
	size_t resume = 0;
	return srv_head_scan(buf, len, &resume, &lim, head_len);
}
#define SCAN(lit, hl) scan_n(lit, sizeof(lit) - 1, hl)

/* ---- the head scan ---- */

static void scan_finds_the_end_byte_by_byte(void **st)
{
	(void)st;
	static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET";
	const size_t head = sizeof r - 1 - 3;
	size_t resume = 0, hl = 0, last = 0;
	for (size_t n = 0; n <= head; n++) {
		const char *buf = copy(r, n);
		int rc = srv_head_scan(buf, n, &resume, &lim, &hl);
		assert_true(resume >= last && resume <= n);
		last = resume;
		assert_int_equal(rc, n == head ? 1 : 0);
	}
	assert_int_equal(hl, head);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET", &hl), 1);
	assert_int_equal(hl, head);
}

static void scan_refuses_bare_cr(void **st)
{
	(void)st;
	size_t hl = 0;
	assert_int_equal(SCAN("GET / HTTP/1.1\rHost: a\r\n\r\n", &hl), SRV_HTTP_EBARE_CR);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", &hl), SRV_HTTP_EBARE_CR);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", &hl), SRV_HTTP_EBARE_CR);
	/* A CR at the end of what has arrived waits for the next byte, then is judged. */
	size_t resume = 0;
	const char *b = copy("GET / HTTP/1.1\r", 15);
	assert_int_equal(srv_head_scan(b, 15, &resume, &lim, &hl), 0);
	assert_int_equal(resume, 14);
	b = copy("GET / HTTP/1.1\rX", 16);
	assert_int_equal(srv_head_scan(b, 16, &resume, &lim, &hl), SRV_HTTP_EBARE_CR);
	assert_int_equal(srv_parse_status(SRV_HTTP_EBARE_CR), 400);
}

static void scan_refuses_bare_lf(void **st)
{
	(void)st;
	size_t hl = 0;
	assert_int_equal(SCAN("GET / HTTP/1.1\nHost: a\n\n", &hl), SRV_HTTP_EBARE_LF);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\n\r\n", &hl), SRV_HTTP_EBARE_LF);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\r\n\n", &hl), SRV_HTTP_EBARE_LF);
	assert_int_equal(SCAN("\nGET / HTTP/1.1\r\n\r\n", &hl), SRV_HTTP_EBARE_LF);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\nb\r\n\r\n", &hl), SRV_HTTP_EBARE_LF);
}

static void scan_refuses_control_bytes(void **st)
{
	(void)st;
	size_t hl = 0;
	assert_int_equal(scan_n("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 27, &hl), SRV_HTTP_ECONTROL);
	assert_int_equal(scan_n("GET /\0 HTTP/1.1\r\n\r\n", 19, &hl), SRV_HTTP_ECONTROL);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", &hl), SRV_HTTP_ECONTROL);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n", &hl), SRV_HTTP_ECONTROL);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: \x7f\r\n\r\n", &hl), SRV_HTTP_ECONTROL);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: \x0b\r\n\r\n", &hl), SRV_HTTP_ECONTROL);
	/* HTAB inside a value, and obs-text, are field-value bytes. */
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\tb\x80\xff\r\n\r\n", &hl), 1);
}

static void scan_refuses_obs_fold(void **st)
{
	(void)st;
	size_t hl = 0;
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\r\n b\r\nHost: a\r\n\r\n", &hl),
	                 SRV_HTTP_EOBS_FOLD);
	assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", &hl), SRV_HTTP_EOBS_FOLD);
	/* Whitespace between the request line and the first header (RFC 9112 2.2). */
	assert_int_equal(SCAN("GET / HTTP/1.1\r\n Host: a\r\n\r\n", &hl), SRV_HTTP_EOBS_FOLD);
	assert_int_equal(SCAN(" GET / HTTP/1.1\r\n\r\n", &hl), SRV_HTTP_EREQUEST_LINE);
	assert_int_equal(SCAN("\r\n\tGET / HTTP/1.1\r\n\r\n", &hl), SRV_HTTP_EREQUEST_LINE);
}

static void scan_allows_one_empty_line_before_the_request(void **st)
{
	(void)st;
	size_t hl = 0;
	srv_request req;
	assert_int_equal(SCAN("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &hl), 1);
	assert_int_equal(hl, 29);
	assert_int_equal(PARSE("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	assert_true(slice_is(req.target, "/"));
	assert_int_equal(SCAN("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &hl),
	                 SRV_HTTP_EEMPTY_LINES);
	assert_int_equal(SCAN("\r\n", &hl), 0);
	assert_int_equal(SCAN("\r\n\r", &hl), 0);
	assert_int_equal(SCAN("\r\n\r\n", &hl), SRV_HTTP_EEMPTY_LINES);
}

/* A head of exactly max bytes is accepted; one more byte is 431, found or not. */
static void scan_head_limit_exact_and_one_over(void **st)
{
	(void)st;
	char buf[SRV_MAX_HEAD_BYTES + 8];
	size_t hl = 0;
	const size_t max = lim.max_head_bytes;
	for (int extra = 0; extra <= 1; extra++) {
		const char *start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
		size_t n = strlen(start);
		memcpy(buf, start, n);
		while (n < max + extra - 4)
			buf[n++] = 'v';
		memcpy(buf + n, "\r\n\r\n", 4);
		n += 4;
		assert_int_equal(n, max + extra);
		int rc = scan_n(buf, n, &hl);
		assert_int_equal(rc, extra ? SRV_HTTP_EHEAD_TOO_LARGE : 1);
		if (!extra) {
			srv_request req;
			assert_int_equal(srv_head_parse(&p, owned[owned_count - 1], hl, &req), 0);
			assert_int_equal(hl, max);
			assert_int_equal(req.headers[1].value.len, max - 4 - strlen(start));
		}
	}
	assert_int_equal(srv_parse_status(SRV_HTTP_EHEAD_TOO_LARGE), 431);
	/* No end yet: max - 1 bytes may still end well; max bytes cannot. A request line that
	 * has not ended is a target too long (414), as one that fits in the head; a line with
	 * no target in it, or a head whose header lines are too long, is 431. */
	memset(buf, 'a', max);
	memcpy(buf, "GET /", 5);
	assert_int_equal(scan_n(buf, max - 1, &hl), 0);
	assert_int_equal(scan_n(buf, max, &hl), SRV_HTTP_ETARGET_TOO_LONG);
	buf[max - 1] = '\r';
	assert_int_equal(scan_n(buf, max, &hl), SRV_HTTP_ETARGET_TOO_LONG);
	memcpy(buf, "\r\nGET /", 7);
	assert_int_equal(scan_n(buf, max, &hl), SRV_HTTP_ETARGET_TOO_LONG);
	memset(buf, 'a', max);
	assert_int_equal(scan_n(buf, max, &hl), SRV_HTTP_EHEAD_TOO_LARGE);
	memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(scan_n(buf, max, &hl), SRV_HTTP_EHEAD_TOO_LARGE);
}

/* ---- the head parse: what is accepted ---- */

static void get_is_parsed_in_place(void **st)
{
	(void)st;
	srv_request req;
	size_t used;
	bool complete;
	assert_int_equal(PARSE("GET /v1/messages?since=42&x HTTP/1.1\r\n"
	                       "Host: jiayin.example:8080\r\n"
	                       "User-Agent: test\r\n"
	                       "Accept: */*\r\n\r\n",
	                       &req),
	                 0);
	assert_int_equal(req.method, SRV_METHOD_GET);
	assert_true(slice_is(req.target, "/v1/messages?since=42&x"));
	assert_true(slice_is(req.path, "/v1/messages"));
	assert_true(slice_is(req.query, "since=42&x"));
	assert_int_equal(req.version_minor, 1);
	assert_int_equal(req.header_count, 3);
	assert_true(slice_is(req.headers[0].name, "Host"));
	assert_true(slice_is(req.headers[2].value, "*/*"));
	assert_true(slice_is(req.host, "jiayin.example:8080"));
	assert_true(req.keep_alive);
	assert_false(req.expect_continue);
	assert_int_equal(req.body, SRV_BODY_NONE);
	assert_true(slice_is(*srv_request_header(&req, "user-AGENT"), "test"));
	assert_null(srv_request_header(&req, "Cookie"));
	/* The slices are inside the buffer that was parsed. */
	const char *buf = owned[owned_count - 1];
	assert_ptr_equal(req.target.ptr, buf + 4);
	/* No body: the request is complete, and a feed consumes nothing. */
	assert_int_equal(srv_body_feed(&p, "GET", 3, &used, NULL, NULL, &complete), 0);
	assert_true(complete);
	assert_int_equal(used, 0);
}

static void head_options_and_methods(void **st)
{
	(void)st;
	srv_request req;
	assert_int_equal(PARSE("HEAD /a HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	assert_int_equal(req.method, SRV_METHOD_HEAD);
	srv_parser_reset(&p);
	assert_int_equal(PARSE("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	assert_int_equal(req.method, SRV_METHOD_OPTIONS);
	assert_true(slice_is(req.target, "*"));
	assert_true(slice_is(req.path, "*"));
	assert_null(req.query.ptr);
	static const struct {
		const char *line;
		srv_method m;
	} ok[] = {
	    {"PUT / HTTP/1.1\r\n", SRV_METHOD_PUT},
	    {"DELETE / HTTP/1.1\r\n", SRV_METHOD_DELETE},
	    {"PATCH / HTTP/1.1\r\n", SRV_METHOD_PATCH},
	    {"POST / HTTP/1.1\r\n", SRV_METHOD_POST},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char b[128];
		int n = snprintf(b, sizeof b, "%sHost: a\r\n\r\n", ok[i].line);
		srv_parser_reset(&p);
		assert_int_equal(parse_n(b, (size_t)n, &req, NULL), 0);
		assert_int_equal(req.method, ok[i].m);
	}
}

static void query_split(void **st)
{
	(void)st;
	srv_request req;
	assert_int_equal(PARSE("GET /a HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	assert_true(slice_is(req.path, "/a"));
	assert_null(req.query.ptr);
	srv_parser_reset(&p);
	assert_int_equal(PARSE("GET /a? HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	assert_true(slice_is(req.path, "/a"));
	assert_non_null(req.query.ptr);
	assert_int_equal(req.query.len, 0);
	srv_parser_reset(&p);
	assert_int_equal(PARSE("GET /a%20b?c=d?e/f HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	assert_true(slice_is(req.path, "/a%20b"));
	assert_true(slice_is(req.query, "c=d?e/f"));
	srv_parser_reset(&p);
	assert_int_equal(PARSE("GET //x/./y HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	assert_true(slice_is(req.path, "//x/./y"));
}

static void ows_is_trimmed(void **st)
{
	(void)st;
	srv_request req;
	assert_int_equal(PARSE("GET / HTTP/1.1\r\n"
	                       "Host:a\r\n"
	                       "X-A:  \t v a\tl \t \r\n"
	                       "X-Empty:\r\n"
	                       "X-Blank:  \t \r\n"
	                       "X-Obs: caf\xc3\xa9\r\n\r\n",
	                       &req),
	                 0);
	assert_int_equal(req.header_count, 5);
	assert_true(slice_is(req.host, "a"));
	assert_true(slice_is(req.headers[1].value, "v a\tl"));
	assert_non_null(req.headers[2].value.ptr);
	assert_int_equal(req.headers[2].value.len, 0);
	assert_non_null(req.headers[3].value.ptr);
	assert_int_equal(req.headers[3].value.len, 0);
	assert_true(slice_is(req.headers[4].value, "caf\xc3\xa9"));
}

static void keep_alive_by_version_and_connection(void **st)
{
	(void)st;
	srv_request req;
	static const struct {
		const char *head;
		bool keep_alive;
	} cases[] = {
	    {"GET / HTTP/1.0\r\n\r\n", false},
	    {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
	    {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\n\r\n", true},
	    {"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false},
	    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
	    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
	    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n", false},
	    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		srv_parser_reset(&p);
		assert_int_equal(parse_n(cases[i].head, strlen(cases[i].head), &req, NULL), 0);
		assert_int_equal(req.keep_alive, cases[i].keep_alive);
	}
	/* HTTP/1.0 needs no Host. */
	srv_parser_reset(&p);
	assert_int_equal(PARSE("GET / HTTP/1.0\r\n\r\n", &req), 0);
	assert_int_equal(req.version_minor, 0);
	assert_null(req.host.ptr);
}

static void expect_continue(void **st)
{
	(void)st;
	srv_request req;
	assert_int_equal(PARSE("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
	                       "Content-Length: 5\r\n\r\n",
	                       &req),
	                 0);
	assert_true(req.expect_continue);
	assert_int_equal(req.body, SRV_BODY_LENGTH);
	assert_int_equal(req.content_length, 5);
	srv_parser_reset(&p);
	assert_int_equal(PARSE("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &req), 0);
	assert_false(req.expect_continue); /* RFC 9110 10.1.1: ignored from HTTP/1.0 */
	srv_parser_reset(&p);
	assert_int_equal(PARSE("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", &req),
	                 SRV_HTTP_EEXPECT);
	srv_parser_reset(&p);
	assert_int_equal(
	    PARSE("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", &req),
	    SRV_HTTP_EEXPECT);
	assert_int_equal(srv_parse_status(SRV_HTTP_EEXPECT), 417);
}

/* ---- the head parse: what is refused ---- */

static void expect_refusals(const refusal *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		srv_request req;
		srv_parser_reset(&p);
		int rc = parse_n(r[i].head, strlen(r[i].head), &req, NULL);
		if (rc != r[i].err)
			fail_msg("case %zu: got %d (%s), want %d (%s) for %s", i, rc,
			         srv_parse_errcode(rc), r[i].err, srv_parse_errcode(r[i].err),
			         r[i].head);
	}
}
#define REFUSALS(a) expect_refusals(a, sizeof a / sizeof a[0])

static void request_line_refusals(void **st)
{
	(void)st;
	static const refusal r[] = {
	    {"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_EMETHOD},
	    {"get / HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_EMETHOD},
	    {"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_EMETHOD},
	    {"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_EMETHOD},
	    {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_EREQUEST_LINE},
	    {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_EREQUEST_LINE},
	    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_EREQUEST_LINE},
	    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", SRV_HTTP_EREQUEST_LINE},
	    {"GET /\r\nHost: a\r\n\r\n", SRV_HTTP_EREQUEST_LINE},
	    {"GET / http/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_EREQUEST_LINE},
	    {"GET / HTTP/1.x\r\nHost: a\r\n\r\n", SRV_HTTP_EREQUEST_LINE},
	    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", SRV_HTTP_EVERSION},
	    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", SRV_HTTP_EVERSION},
	    {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", SRV_HTTP_EVERSION},
	    {"GET / HTTP/3.0\r\nHost: a\r\n\r\n", SRV_HTTP_EVERSION},
	    {"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_ETARGET_FORM},
	    {"GET https://a:443/x?y HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_ETARGET_FORM},
	    {"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
	     SRV_HTTP_ETARGET_FORM},
	    {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_ETARGET_FORM},
	    {"POST * HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_ETARGET_FORM},
	    {"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_ETARGET},
	    {"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_ETARGET},
	    {"GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_ETARGET},
	    {"GET /a\x80 HTTP/1.1\r\nHost: a\r\n\r\n", SRV_HTTP_ETARGET},
	    {"GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	};
	REFUSALS(r);
	assert_int_equal(srv_parse_status(SRV_HTTP_EMETHOD), 501);
	assert_int_equal(srv_parse_status(SRV_HTTP_EVERSION), 505);
	assert_int_equal(srv_parse_status(SRV_HTTP_ETARGET_FORM), 400);
}

/* The target limit counts the request-target alone: at it 0, one over 414. */
static void target_limit_exact_and_one_over(void **st)
{
	(void)st;
	lim.max_target = 32;
	use_limits();
	char b[128];
	for (int extra = 0; extra <= 1; extra++) {
		char target[64];
		memset(target, 'a', sizeof target);
		target[0] = '/';
		target[32 + extra] = 0;
		int n = snprintf(b, sizeof b, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target);
		srv_request req;
		srv_parser_reset(&p);
		assert_int_equal(parse_n(b, (size_t)n, &req, NULL),
		                 extra ? SRV_HTTP_ETARGET_TOO_LONG : 0);
	}
	assert_int_equal(srv_parse_status(SRV_HTTP_ETARGET_TOO_LONG), 414);
}

/* Header lines, Host included: at the limit 0, one over 431. */
static void header_count_limit_exact_and_one_over(void **st)
{
	(void)st;
	lim.max_headers = 4;
	use_limits();
	srv_request req;
	assert_int_equal(PARSE("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &req),
	                 0);
	assert_int_equal(req.header_count, 4);
	srv_parser_reset(&p);
	assert_int_equal(
	    PARSE("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", &req),
	    SRV_HTTP_ETOO_MANY_HEADERS);
	assert_int_equal(srv_parse_status(SRV_HTTP_ETOO_MANY_HEADERS), 431);
	/* The default limit too. */
	lim.max_headers = SRV_MAX_HEADERS;
	use_limits();
	char b[4096];
	for (int extra = 0; extra <= 1; extra++) {
		int n = snprintf(b, sizeof b, "GET / HTTP/1.1\r\n");
		for (int i = 0; i < SRV_MAX_HEADERS + extra; i++)
			n += snprintf(b + n, sizeof b - (size_t)n,
			              i ? "X-%d: %d\r\n" : "Host: a\r\n", i, i);
		n += snprintf(b + n, sizeof b - (size_t)n, "\r\n");
		srv_parser_reset(&p);
		assert_int_equal(parse_n(b, (size_t)n, &req, NULL),
		                 extra ? SRV_HTTP_ETOO_MANY_HEADERS : 0);
	}
}

static void header_refusals(void **st)
{
	(void)st;
	static const refusal r[] = {
	    {"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", SRV_HTTP_EHEADER},
	    {"GET / HTTP/1.1\r\nHost: a\r\nX(: x\r\n\r\n", SRV_HTTP_EHEADER},
	    {"GET / HTTP/1.1\r\nHost: a\r\nX@y: x\r\n\r\n", SRV_HTTP_EHEADER},
	    {"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", SRV_HTTP_EHEADER},
	    {"GET / HTTP/1.1\r\nHost: a\r\nX : x\r\n\r\n", SRV_HTTP_EHEADER},
	    {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", SRV_HTTP_EHEADER},
	    {"GET / HTTP/1.1\r\nHost: a\r\nX\x80: x\r\n\r\n", SRV_HTTP_EHEADER},
	    {"GET / HTTP/1.1\r\n\r\n", SRV_HTTP_EHOST_MISSING},
	    {"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", SRV_HTTP_EHOST_MISSING},
	    {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", SRV_HTTP_EHOST_DUPLICATE},
	    {"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", SRV_HTTP_EHOST_DUPLICATE},
	    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", SRV_HTTP_EHOST},
	    {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", SRV_HTTP_EHOST},
	    {"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", SRV_HTTP_EHOST},
	    {"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", SRV_HTTP_EHOST},
	    {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", SRV_HTTP_EHOST},
	    {"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", SRV_HTTP_EHOST},
	    {"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0},
	    {"GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n", 0},
	    {"GET / HTTP/1.1\r\nHost: xn--caf-dma.example\r\n\r\n", 0},
	    {"GET / HTTP/1.1\r\nHost:\r\n\r\n", 0},
	};
	REFUSALS(r);
}

static void framing_refusals(void **st)
{
	(void)st;
	static const refusal r[] = {
	    /* CL.TE and TE.CL: either order */
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: "
	     "chunked\r\n\r\n",
	     SRV_HTTP_ESMUGGLING_CL_TE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
	     "3\r\n\r\n",
	     SRV_HTTP_ESMUGGLING_CL_TE},
	    {"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\ntransfer-encoding: "
	     "chunked\r\n\r\n",
	     SRV_HTTP_ESMUGGLING_CL_TE},
	    /* duplicate Content-Length, even equal */
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
	     SRV_HTTP_ECL_DUPLICATE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
	     SRV_HTTP_ECL_DUPLICATE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", SRV_HTTP_ECL},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", SRV_HTTP_ECL},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", SRV_HTTP_ECL},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", SRV_HTTP_ECL},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", SRV_HTTP_ECL},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", SRV_HTTP_ECL},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", SRV_HTTP_ECL},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
	     SRV_HTTP_ECL},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
	     SRV_HTTP_ECL},
	    /* Transfer-Encoding other than exactly chunked */
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	     SRV_HTTP_ETE_CODING},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
	     SRV_HTTP_ETE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", SRV_HTTP_ETE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
	     SRV_HTTP_ETE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", SRV_HTTP_ETE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", SRV_HTTP_ETE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", SRV_HTTP_ETE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	     "Transfer-Encoding: chunked\r\n\r\n",
	     SRV_HTTP_ETE},
	    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", SRV_HTTP_ETE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", 0},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", 0},
	};
	REFUSALS(r);
	assert_int_equal(srv_parse_status(SRV_HTTP_ETE_CODING), 501);
	assert_int_equal(srv_parse_status(SRV_HTTP_ESMUGGLING_CL_TE), 400);
	assert_int_equal(srv_parse_status(SRV_HTTP_ECL_DUPLICATE), 400);
}

static void errors_are_sticky_until_reset(void **st)
{
	(void)st;
	srv_request req;
	size_t used;
	bool complete;
	assert_int_equal(PARSE("GET / HTTP/1.1\r\n\r\n", &req), SRV_HTTP_EHOST_MISSING);
	assert_int_equal(srv_body_feed(&p, "x", 1, &used, NULL, NULL, &complete),
	                 SRV_HTTP_EHOST_MISSING);
	assert_int_equal(PARSE("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &req), SRV_HTTP_ESTATE);
	srv_parser_reset(&p);
	assert_int_equal(PARSE("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	srv_parser_reset(&p);
	assert_int_equal(srv_body_feed(&p, "x", 1, &used, NULL, NULL, &complete), SRV_HTTP_ESTATE);
}

/* ---- errors and limits ---- */

static void every_error_has_a_name_a_sentence_and_a_status(void **st)
{
	(void)st;
	for (int e = 0; e > -SRV_HTTP_ERROR_COUNT; e--) {
		int s = srv_parse_status(e);
		assert_true(e == 0 ? s == 200
		                   : (s == 400 || s == 413 || s == 414 || s == 417 || s == 431 ||
		                      s == 500 || s == 501 || s == 505));
		assert_non_null(srv_parse_strerror(e));
		for (int f = 0; f > e; f--)
			assert_string_not_equal(srv_parse_errcode(e), srv_parse_errcode(f));
	}
	assert_string_equal(srv_parse_errcode(SRV_HTTP_ESMUGGLING_CL_TE), "smuggling_cl_te");
	assert_string_equal(srv_parse_errcode(SRV_HTTP_EHEAD_TOO_LARGE), "head_too_large");
	assert_string_equal(srv_parse_errcode(-SRV_HTTP_ERROR_COUNT), "unknown_error");
	assert_int_equal(srv_parse_status(-1000), 500);
	assert_int_equal(srv_parse_status(7), 500);
}

static void limits_are_checked(void **st)
{
	(void)st;
	srv_limits l;
	srv_parser q;
	srv_limits_init(&l);
	assert_int_equal(srv_limits_check(&l), 0);
	l.max_headers = 0;
	assert_int_equal(srv_parser_init(&q, &l), SRV_HTTP_EINVAL);
	srv_parser_free(&q); /* a half-built parser is freed without harm */
	srv_limits_init(&l);
	l.max_target = l.max_head_bytes;
	assert_int_equal(srv_limits_check(&l), SRV_HTTP_EINVAL);
	srv_limits_init(&l);
	l.max_head_bytes = SRV_HEAD_BYTES_CEILING + 1;
	assert_int_equal(srv_limits_check(&l), SRV_HTTP_EINVAL);
	srv_limits_init(&l);
	l.max_chunk_line = 0;
	assert_int_equal(srv_limits_check(&l), SRV_HTTP_EINVAL);
	assert_int_equal(srv_limits_check(NULL), SRV_HTTP_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(scan_finds_the_end_byte_by_byte),
	    T(scan_refuses_bare_cr),
	    T(scan_refuses_bare_lf),
	    T(scan_refuses_control_bytes),
	    T(scan_refuses_obs_fold),
	    T(scan_allows_one_empty_line_before_the_request),
	    T(scan_head_limit_exact_and_one_over),
	    T(get_is_parsed_in_place),
	    T(head_options_and_methods),
	    T(query_split),
	    T(ows_is_trimmed),
	    T(keep_alive_by_version_and_connection),
	    T(expect_continue),
	    T(request_line_refusals),
	    T(target_limit_exact_and_one_over),
	    T(header_count_limit_exact_and_one_over),
	    T(header_refusals),
	    T(framing_refusals),
	    T(errors_are_sticky_until_reset),
	    T(every_error_has_a_name_a_sentence_and_a_status),
	    T(limits_are_checked),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
