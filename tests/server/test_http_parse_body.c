/*
 * test_http_parse_body.c — the HTTP/1.1 request parser's bodies on raw bytes: by Content-Length
 * and chunked, split at every byte boundary (one byte at a time must decode the same), every
 * refusal of the chunked framing, the chunk and body limits exactly at and one past their values,
 * a body callback that aborts, and pipelined requests that each stop on their last byte. Heads
 * are in test_http_parse_head.c; the parser and its exact-size copies in http_parse_fixture.h.
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

typedef struct sink {
	char data[8192];
	size_t len;
	int fail_with;
} sink;

static int to_sink(void *ctx, const char *d, size_t n)
{
	sink *k = ctx;
	if (k->fail_with)
		return k->fail_with;
	assert_true(k->len + n <= sizeof k->data);
	memcpy(k->data + k->len, d, n);
	k->len += n;
	return 0;
}

/*
 * Feeds body[0..len) in pieces of `step` bytes (each an exact heap copy) until the message
 * completes; returns the error, or 0 with *used = bytes that belonged to the message.
 */
static int feed(const char *body, size_t len, size_t step, sink *k, size_t *used, bool *complete)
{
	size_t off = 0;
	*complete = false;
	do {
		size_t n = len - off < step ? len - off : step, u = 99999;
		char *piece = malloc(n ? n : 1);
		assert_non_null(piece);
		memcpy(piece, body + off, n);
		int rc = srv_body_feed(&p, piece, n, &u, to_sink, k, complete);
		free(piece);
		if (rc)
			return rc;
		assert_true(u <= n);
		if (!*complete)
			assert_int_equal(u, n);
		off += u;
	} while (!*complete && off < len);
	*used = off;
	return 0;
}

/* Parses head + body of one request held in `s`, body fed `step` bytes at a time. */
static int request(const char *s, size_t len, size_t step, sink *k, size_t *consumed)
{
	srv_request req;
	size_t hl = 0, used = 0;
	bool complete;
	int rc = parse_n(s, len, &req, &hl);
	if (rc)
		return rc;
	rc = feed(s + hl, len - hl, step, k, &used, &complete);
	if (rc)
		return rc;
	if (!complete)
		return 1;
	*consumed = hl + used;
	return 0;
}
#define REQUEST(lit, step, k, consumed) request(lit, sizeof(lit) - 1, step, k, consumed)

/* ---- bodies ---- */

static void content_length_body_in_any_pieces(void **st)
{
	(void)st;
	static const char r[] = "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
	                        "hello world";
	for (size_t step = 1; step <= sizeof r; step++) {
		sink k = {.len = 0};
		size_t consumed = 0;
		srv_parser_reset(&p);
		assert_int_equal(REQUEST(r, step, &k, &consumed), 0);
		assert_int_equal(consumed, sizeof r - 1);
		assert_int_equal(k.len, 11);
		assert_memory_equal(k.data, "hello world", 11);
	}
}

static const char chunked_req[] =
    "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n"
    "1;x=\"q s\"\r\n \r\n"
    "00a\r\nworld, abc\r\n"
    "1;y\r\n!\r\n"
    "0;z=1\r\n\r\n";
static const char chunked_body[] = "hello world, abc!";

/* Split in two at every byte, then in three, then one byte at a time: the same bytes. */
static void chunked_body_split_at_every_boundary(void **st)
{
	(void)st;
	srv_request req;
	size_t hl = 0;
	const size_t len = sizeof chunked_req - 1;
	assert_int_equal(parse_n(chunked_req, len, &req, &hl), 0);
	assert_int_equal(req.body, SRV_BODY_CHUNKED);
	const char *body = chunked_req + hl;
	const size_t blen = len - hl;
	for (size_t a = 0; a <= blen; a++) {
		for (size_t b = a; b <= blen; b += (a % 7 == 0 ? 1 : blen)) {
			sink k = {.len = 0};
			size_t used, total = 0;
			bool complete = false;
			const size_t cut[4] = {0, a, b, blen};
			srv_parser_reset(&p);
			assert_int_equal(parse_n(chunked_req, len, &req, &hl), 0);
			for (int i = 0; i < 3 && !complete; i++) {
				char *piece = copy(body + cut[i], cut[i + 1] - cut[i]);
				int rc = srv_body_feed(&p, piece, cut[i + 1] - cut[i], &used,
				                       to_sink, &k, &complete);
				if (rc)
					fail_msg("split %zu/%zu: %s", a, b, srv_parse_errcode(rc));
				total += used;
				free(owned[--owned_count]);
			}
			assert_true(complete);
			assert_int_equal(total, blen);
			assert_int_equal(k.len, sizeof chunked_body - 1);
			assert_memory_equal(k.data, chunked_body, k.len);
		}
	}
	sink k = {.len = 0};
	size_t consumed;
	srv_parser_reset(&p);
	assert_int_equal(REQUEST(chunked_req, 1, &k, &consumed), 0);
	assert_int_equal(consumed, len);
	assert_int_equal(k.len, sizeof chunked_body - 1);
	assert_memory_equal(k.data, chunked_body, k.len);
}

static void chunked_framing_refusals(void **st)
{
	(void)st;
	static const refusal r[] = {
	    /* llhttp 8.1 takes CR + any byte, or a bare LF, where CRLF belongs: we do not */
	    {"5\rXhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"5\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"5\r\nhello\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"5\r\nhello\r\n0\r\n\n", SRV_HTTP_ECHUNK},
	    {"5\r\nhelloXX0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"5 \r\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {" 5\r\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"0x5\r\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"-1\r\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"\r\n5\r\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"5;\r\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"5;a=\"b\nc\"\r\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    /* llhttp 8.1 takes one extension per chunk, not two */
	    {"5;a=b;c=d\r\nhello\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"ffffffffffffffffff\r\n", SRV_HTTP_ECHUNK},
	    {"ffffffffffffffff\r\n", SRV_HTTP_ECHUNK_TOO_LARGE},
	    {"100001\r\n", SRV_HTTP_ECHUNK_TOO_LARGE},
	    /* trailers are refused and never reach the headers */
	    {"0\r\nX-Trailer: y\r\n\r\n", SRV_HTTP_ETRAILER},
	    {"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n", SRV_HTTP_ETRAILER},
	};
	static const char head[] =
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
	for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
		for (size_t step = 1; step <= 64; step += 63) {
			char b[256];
			int n = snprintf(b, sizeof b, "%s%s", head, r[i].head);
			sink k = {.len = 0};
			size_t consumed;
			srv_parser_reset(&p);
			int rc = request(b, (size_t)n, step, &k, &consumed);
			if (rc != r[i].err)
				fail_msg("case %zu step %zu: got %d (%s), want %s", i, step, rc,
				         srv_parse_errcode(rc), srv_parse_errcode(r[i].err));
		}
	}
	assert_int_equal(srv_parse_status(SRV_HTTP_ECHUNK_TOO_LARGE), 413);
	assert_int_equal(srv_parse_status(SRV_HTTP_ETRAILER), 400);
}

/* The chunk-size and chunk-line limits: at each 0, one over refused. */
static void chunk_limits_exact_and_one_over(void **st)
{
	(void)st;
	lim.max_chunk_bytes = 16;
	lim.max_chunk_line = 8;
	use_limits();
	static const refusal r[] = {
	    {"10\r\n0123456789abcdef\r\n0\r\n\r\n", 0},
	    {"11\r\n0123456789abcdefg\r\n0\r\n\r\n", SRV_HTTP_ECHUNK_TOO_LARGE},
	    {"00000010\r\n0123456789abcdef\r\n0\r\n\r\n", 0},
	    {"000000010\r\n0123456789abcdef\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	    {"1;abcdef\r\nx\r\n0\r\n\r\n", 0},
	    {"1;abcdefg\r\nx\r\n0\r\n\r\n", SRV_HTTP_ECHUNK},
	};
	static const char head[] =
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
	for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
		char b[256];
		int n = snprintf(b, sizeof b, "%s%s", head, r[i].head);
		sink k = {.len = 0};
		size_t consumed;
		srv_parser_reset(&p);
		int rc = request(b, (size_t)n, 3, &k, &consumed);
		if (rc != r[i].err)
			fail_msg("case %zu: got %s, want %s", i, srv_parse_errcode(rc),
			         srv_parse_errcode(r[i].err));
	}
}

/* max_body: at it 0, one over 413, for both framings; the router may lower it. */
static void body_limit_exact_and_one_over(void **st)
{
	(void)st;
	srv_request req;
	size_t used;
	bool complete;
	sink k = {.len = 0};
	for (int extra = 0; extra <= 1; extra++) {
		char b[256];
		int n = snprintf(b, sizeof b,
		                 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s",
		                 10 + extra, extra ? "0123456789a" : "0123456789");
		size_t hl = 0;
		srv_parser_reset(&p);
		assert_int_equal(parse_n(b, (size_t)n, &req, &hl), 0);
		p.max_body = 10;
		k.len = 0;
		/* A zero-length feed answers before any byte (in time for 100-continue). */
		assert_int_equal(srv_body_feed(&p, b + hl, 0, &used, to_sink, &k, &complete),
		                 extra ? SRV_HTTP_EBODY_TOO_LARGE : 0);
		if (!extra) {
			assert_int_equal(feed(b + hl, (size_t)n - hl, 4, &k, &used, &complete), 0);
			assert_true(complete);
			assert_int_equal(k.len, 10);
		}
		n = snprintf(b, sizeof b,
		             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
		             "6\r\n012345\r\n%s\r\n0\r\n\r\n",
		             extra ? "5\r\n6789a" : "4\r\n6789");
		srv_parser_reset(&p);
		assert_int_equal(parse_n(b, (size_t)n, &req, &hl), 0);
		p.max_body = 10;
		k.len = 0;
		assert_int_equal(feed(b + hl, (size_t)n - hl, 5, &k, &used, &complete),
		                 extra ? SRV_HTTP_EBODY_TOO_LARGE : 0);
		assert_int_equal(k.len, 6 + (extra ? 0 : 4));
	}
	assert_int_equal(srv_parse_status(SRV_HTTP_EBODY_TOO_LARGE), 413);
	/* The default, before routing, is lim->max_body_bytes. */
	srv_parser_reset(&p);
	assert_int_equal(
	    PARSE("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", &req), 0);
	assert_int_equal(p.max_body, SRV_MAX_BODY_BYTES);
	assert_int_equal(srv_body_feed(&p, "x", 1, &used, NULL, NULL, &complete),
	                 SRV_HTTP_EBODY_TOO_LARGE);
}

static void body_callback_can_abort(void **st)
{
	(void)st;
	sink k = {.fail_with = -77};
	size_t consumed;
	assert_int_equal(REQUEST(chunked_req, 8, &k, &consumed), -77);
	srv_parser_reset(&p);
	assert_int_equal(
	    REQUEST("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab", 8, &k, &consumed),
	    -77);
}

/* ---- pipelining: each request stops on its last byte ---- */

static void pipelined_requests_in_one_buffer(void **st)
{
	(void)st;
	static const char *parts[] = {
	    "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
	    "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
	    "\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
	    ("POST /4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	     "3\r\nabc\r\n0\r\n\r\n"),
	    "GET /5 HTTP/1.0\r\n\r\n",
	};
	static const char *paths[] = {"/1", "/2", "/3", "/4", "/5"};
	static const char *bodies[] = {"", "body", "", "abc", ""};
	char all[1024];
	size_t n = 0;
	for (size_t i = 0; i < 5; i++) {
		memcpy(all + n, parts[i], strlen(parts[i]));
		n += strlen(parts[i]);
	}
	memcpy(all + n, "\x16\x03\x01garbage", 10);
	n += 10;
	const char *buf = copy(all, n);
	size_t off = 0;
	for (size_t i = 0; i < 5; i++) {
		size_t resume = 0, hl = 0, used;
		bool complete;
		srv_request req;
		sink k = {.len = 0};
		srv_parser_reset(&p);
		assert_int_equal(srv_head_scan(buf + off, n - off, &resume, &lim, &hl), 1);
		assert_int_equal(srv_head_parse(&p, buf + off, hl, &req), 0);
		assert_true(slice_is(req.path, paths[i]));
		assert_int_equal(
		    srv_body_feed(&p, buf + off + hl, n - off - hl, &used, to_sink, &k, &complete),
		    0);
		assert_true(complete);
		assert_int_equal(k.len, strlen(bodies[i]));
		assert_memory_equal(k.data, bodies[i], k.len);
		off += hl + used;
		assert_int_equal(off, (size_t)(strstr(all, parts[i]) - all) + strlen(parts[i]));
		assert_int_equal(req.keep_alive, i < 4);
	}
	/* What follows is not a request: the scan refuses it (a control byte). */
	size_t resume = 0, hl;
	srv_parser_reset(&p);
	assert_int_equal(srv_head_scan(buf + off, n - off, &resume, &lim, &hl), SRV_HTTP_ECONTROL);
}

/* Upgrade is not ours to grant: the request is an ordinary one, and the next follows. */
static void upgrade_is_ignored(void **st)
{
	(void)st;
	static const char r[] = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
	                        "Upgrade: websocket\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\n\r\n";
	srv_request req;
	size_t hl, used;
	bool complete;
	assert_int_equal(PARSE(r, &req), 0);
	assert_int_equal(srv_head_scan(r, sizeof r - 1, &(size_t){0}, &lim, &hl), 1);
	assert_int_equal(srv_body_feed(&p, r + hl, sizeof r - 1 - hl, &used, NULL, NULL, &complete),
	                 0);
	assert_true(complete);
	assert_int_equal(used, 0);
	assert_true(req.keep_alive);
}

static void two_gets_in_one_buffer(void **st)
{
	(void)st;
	static const char r[] =
	    "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\n\r\n";
	const char *buf = copy(r, sizeof r - 1);
	size_t resume = 0, hl, used;
	bool complete;
	srv_request req;
	assert_int_equal(srv_head_scan(buf, sizeof r - 1, &resume, &lim, &hl), 1);
	assert_int_equal(hl, 28);
	assert_int_equal(srv_head_parse(&p, buf, hl, &req), 0);
	assert_int_equal(
	    srv_body_feed(&p, buf + hl, sizeof r - 1 - hl, &used, NULL, NULL, &complete), 0);
	assert_true(complete);
	assert_int_equal(used, 0);
	srv_parser_reset(&p);
	resume = 0;
	assert_int_equal(srv_head_scan(buf + hl, sizeof r - 1 - hl, &resume, &lim, &hl), 1);
	assert_int_equal(srv_head_parse(&p, buf + 28, hl, &req), 0);
	assert_true(slice_is(req.path, "/b"));
	assert_true(slice_is(req.host, "b"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(content_length_body_in_any_pieces),
	    T(chunked_body_split_at_every_boundary),
	    T(chunked_framing_refusals),
	    T(chunk_limits_exact_and_one_over),
	    T(body_limit_exact_and_one_over),
	    T(body_callback_can_abort),
	    T(pipelined_requests_in_one_buffer),
	    T(upgrade_is_ignored),
	    T(two_gets_in_one_buffer),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
