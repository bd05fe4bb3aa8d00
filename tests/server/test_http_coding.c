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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(accept_encoding),
	    cmocka_unit_test(types),
	    cmocka_unit_test(gzip_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
