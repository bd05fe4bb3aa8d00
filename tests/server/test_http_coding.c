/*
 * test_http_coding.c — server/http_coding.c: which Accept-Encoding values take gzip (weights,
 * wildcards, refusals that stand, several header lines, elements that do not parse), which
 * types are gzipped, and srv_gzip: what zlib's inflate reads back is the body, small bodies and
 * bodies that would not shrink are left alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_coding.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static srv_slice sl(const char *s)
{
	return (srv_slice){s, strlen(s)};
}

/* A request whose headers are the given (name, value) pairs, NULL-terminated. */
static bool takes(const char *name, const char *value, ...)
{
	srv_header h[8];
	size_t n = 0;
	va_list ap;
	va_start(ap, value);
	while (name && n < 8) {
		h[n++] = (srv_header){sl(name), sl(value)};
		name = va_arg(ap, const char *);
		if (name)
			value = va_arg(ap, const char *);
	}
	va_end(ap);
	srv_request req = {.headers = h, .header_count = n};
	return srv_accepts_gzip(&req);
}

static bool one(const char *value)
{
	return takes("Accept-Encoding", value, NULL);
}

static void accept_encoding(void **state)
{
	(void)state;
	/* What browsers and Android's OkHttp send. */
	assert_true(one("gzip, deflate, br"));
	assert_true(one("gzip"));
	assert_true(one("GZIP"));
	assert_true(one("x-gzip"));
	assert_true(one("deflate, gzip;q=1.0, *;q=0.5"));
	assert_true(one("gzip;q=0.001"));
	assert_true(one("gzip; Q=1"));
	assert_true(one("gzip ;q=0.5"));
	assert_true(one("*"));
	assert_true(one("br;q=1, *;q=0.1"));
	assert_true(one(" , ,gzip,"));
	assert_true(one("gzip;level=\"a,b\";q=1"));
	/* None, or refused. */
	assert_false(takes(NULL, NULL));
	assert_false(one(""));
	assert_false(one("identity"));
	assert_false(one("deflate, br"));
	assert_false(one("gzip;q=0"));
	assert_false(one("gzip;q=0."));
	assert_false(one("gzip;q=0.000"));
	assert_false(one("*;q=0"));
	assert_false(one("gzip;q=0, *")); /* gzip named: the wildcard does not speak for it */
	assert_false(one("*, gzip;q=0"));
	assert_false(one("gzip, gzip;q=0")); /* a refusal stands */
	assert_false(one("gzips"));
	assert_false(one("gzip;q=2")); /* not a weight: the element is ignored */
	assert_false(one("gzip;q=1.5"));
	assert_false(one("gzip;q=0.0001"));
	assert_false(one("gzip;q"));
	assert_false(one("gzip;q=\"1\""));
	assert_false(one("gzip junk"));
	assert_false(one("gzip;q=1 junk"));
	assert_false(one("gzip;a=\"unclosed, gzip"));
	assert_false(one(";q=1"));
	assert_false(one("\"gzip\""));
	/* Other headers do not count; several Accept-Encoding lines are one list. */
	assert_false(takes("Accept", "gzip", "TE", "gzip", NULL));
	assert_true(takes("Accept-Encoding", "br", "accept-encoding", "gzip", NULL));
	assert_false(takes("Accept-Encoding", "gzip", "Accept-Encoding", "gzip;q=0", NULL));
	assert_false(takes("Accept-Encoding", "*", "Accept-Encoding", "gzip;q=0", NULL));
}

/* The value in a buffer of its exact length, as a header's slice is: no byte after it. */
static bool exact(const char *value)
{
	size_t n = strlen(value);
	char *v = malloc(n ? n : 1);
	assert_non_null(v);
	memcpy(v, value, n);
	srv_header h = {sl("Accept-Encoding"), {v, n}};
	srv_request req = {.headers = &h, .header_count = 1};
	bool takes_it = srv_accepts_gzip(&req);
	free(v);
	return takes_it;
}

/* A value that ends inside an element reads nothing past its slice (ASan sees it), and a
 * second weight spoils an element (RFC 9110 12.5.3: codings [ weight ], one). */
static void slice_ends(void **state)
{
	(void)state;
	assert_false(exact("gzip;q="));
	assert_false(exact("gzip;a=b;q="));
	assert_false(exact("gzip;q"));
	assert_false(exact("gzip;"));
	assert_false(exact("gzip;a=\"x"));
	assert_false(exact("gzip;a=\"x\\"));
	assert_true(exact("br, gzip;q=1"));
	assert_true(exact("gzip;a=\"\""));
	assert_false(exact("gzip;q=0;q=1"));
	assert_false(exact("gzip;q=1;q=0"));
	assert_false(exact("gzip;q=1;Q=1"));
}

static void types(void **state)
{
	(void)state;
	assert_true(srv_gzip_type("application/json"));
	assert_true(srv_gzip_type("Application/JSON; charset=utf-8"));
	assert_true(srv_gzip_type("text/plain; version=0.0.4; charset=utf-8"));
	assert_true(srv_gzip_type("text/html"));
	assert_false(srv_gzip_type(NULL));
	assert_false(srv_gzip_type("application/jsonx"));
	assert_false(srv_gzip_type("audio/ogg"));
	assert_false(srv_gzip_type("application/zip"));
	assert_false(srv_gzip_type("application/octet-stream"));
}

static void inflate_back(const char *gz, size_t gz_len, const char *want, size_t want_len)
{
	char *out = malloc(want_len + 16);
	assert_non_null(out);
	z_stream z;
	memset(&z, 0, sizeof z);
	assert_int_equal(inflateInit2(&z, 16 + 15), Z_OK); /* gzip only */
	z.next_in = (Bytef *)(uintptr_t)gz;
	z.avail_in = (uInt)gz_len;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)want_len + 16;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	assert_int_equal(z.avail_in, 0);
	assert_int_equal(z.total_out, want_len);
	assert_memory_equal(out, want, want_len);
	inflateEnd(&z);
	free(out);
}

static void gzip_round_trip(void **state)
{
	(void)state;
	/* A list's JSON: keys and ids repeat, numbers vary. */
	size_t cap = 64 * 1024, len = 0;
	char *json = malloc(cap);
	assert_non_null(json);
	len += (size_t)snprintf(json, cap, "{\"messages\":[");
	srand(7);
	for (int i = 0; i < 50; i++) {
		len += (size_t)snprintf(json + len, cap - len,
		                        "%s{\"id\":\"m%024d\",\"seq\":%d,\"waveform\":[",
		                        i ? "," : "", rand(), i + 1);
		for (int k = 0; k < 100; k++)
			len += (size_t)snprintf(json + len, cap - len, "%s%d", k ? "," : "",
			                        rand() % 256);
		len += (size_t)snprintf(json + len, cap - len, "]}");
	}
	len += (size_t)snprintf(json + len, cap - len, "]}");
	size_t gz_len = 0;
	char *gz = srv_gzip(json, len, &gz_len);
	assert_non_null(gz);
	assert_true(gz_len < len * 2 / 3);
	assert_int_equal((unsigned char)gz[0], 0x1f); /* gzip's magic */
	assert_int_equal((unsigned char)gz[1], 0x8b);
	inflate_back(gz, gz_len, json, len);
	free(gz);

	/* Exactly the minimum is gzipped, one byte less is not. */
	memset(json, 'a', SRV_GZIP_MIN);
	assert_null(srv_gzip(json, SRV_GZIP_MIN - 1, &gz_len));
	assert_non_null(gz = srv_gzip(json, SRV_GZIP_MIN, &gz_len));
	inflate_back(gz, gz_len, json, SRV_GZIP_MIN);
	free(gz);

	/* Bytes that do not compress (Opus, random): left alone. */
	for (size_t i = 0; i < 4096; i++)
		json[i] = (char)rand();
	assert_null(srv_gzip(json, 4096, &gz_len));
	free(json);
}

/* zlib's gzip of in, at srv_gzip's level and window: its length. */
static size_t reference_len(const char *in, size_t len)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	assert_int_equal(
	    deflateInit2(&z, SRV_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&z, (uLong)len);
	char *out = malloc(cap);
	assert_non_null(out);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	size_t n = cap - z.avail_out;
	deflateEnd(&z);
	free(out);
	return n;
}

/* A body whose gzip is exactly as long as itself is no smaller: left alone, as documented
 * (fuzz_http's check_coding aborts on gz_len >= len). Such a body is found by trying mixes of
 * random bytes and a run of one byte. */
static void gzip_no_smaller(void **state)
{
	(void)state;
	char buf[1024];
	uint32_t x = 12345;
	int found = 0;
	for (int trial = 0; trial < 400000 && found < 3; trial++) {
		x = x * 1103515245u + 12345u;
		size_t n = 512 + (x >> 16) % 200, run = (x >> 8) % 61;
		for (size_t i = 0; i < n - run; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (char)(x >> 16);
		}
		memset(buf + n - run, 'a', run);
		if (reference_len(buf, n) != n)
			continue;
		found++;
		size_t gz_len = 0;
		char *gz = srv_gzip(buf, n, &gz_len);
		if (gz)
			assert_true(gz_len < n);
		free(gz);
	}
	assert_true(found > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(accept_encoding), cmocka_unit_test(slice_ends),
	    cmocka_unit_test(types),           cmocka_unit_test(gzip_round_trip),
	    cmocka_unit_test(gzip_no_smaller),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
