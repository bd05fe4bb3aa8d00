/*
 * test_conn_body.c — a request body the route keeps in memory (conn_collect_body), as the
 * connection feeds it, a read at a time: whole, NUL-terminated, refused past the route's
 * limit, and grown by doubling, so that a body of many reads is copied a bounded number of
 * times (it was reallocated to its exact size on every read: quadratic in its length, 24 MiB
 * took minutes under the sanitizers). realloc() is wrapped to count, and to fail on demand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conn_internal.h"

#include <stdlib.h>
#include <string.h>

/* The library's server.c names the program's routes; none are needed here. */
const srv_route srv_routes[] = {{.name = "none"}};
const size_t srv_route_count = 0;

void *__real_realloc(void *p, size_t n);
static unsigned reallocs;
static int fail_next; /* the next realloc() fails */

void *__wrap_realloc(void *p, size_t n)
{
	reallocs++;
	if (fail_next) {
		fail_next = 0;
		return NULL;
	}
	return __real_realloc(p, n);
}

/* Feed `len` bytes of a pattern in reads of `piece`; the first error, or 0. */
static int feed(srv_exchange *x, size_t len, size_t piece)
{
	static char buf[65536];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (char)('a' + i % 26);
	for (size_t off = 0; off < len; off += piece) {
		size_t n = len - off < piece ? len - off : piece;
		int rc = conn_collect_body(x, buf + off % 26, n);
		if (rc)
			return rc;
	}
	return 0;
}

static void body_of_many_reads_is_copied_a_few_times(void **state)
{
	(void)state;
	srv_route route = {.name = "t", .max_body = 32u << 20};
	srv_exchange x = {.route = &route, .body_fd = -1};
	reallocs = 0;
	/* 8 MiB in reads of 4 KiB: 2,048 reads. */
	assert_int_equal(feed(&x, 8u << 20, 4096), 0);
	assert_int_equal(x.body_len, 8u << 20);
	assert_true(reallocs <= 16); /* doubling from the first read's 4 KiB: 12 */
	assert_true(x.body_cap > x.body_len && x.body_cap <= (size_t)route.max_body + 1);
	for (size_t i = 0; i < x.body_len; i += 4096)
		assert_int_equal(x.body[i], 'a' + (int)(i % 26));
	assert_int_equal(x.body[x.body_len], 0);
	free(x.body);
}

static void body_up_to_the_limit_and_not_a_byte_more(void **state)
{
	(void)state;
	srv_route route = {.name = "t", .max_body = 16384}; /* a JSON body's limit */
	srv_exchange x = {.route = &route, .body_fd = -1};
	assert_int_equal(feed(&x, 16384, 1000), 0);
	assert_int_equal(x.body_len, 16384);
	assert_int_equal(x.body_cap, 16385); /* never more than the limit and its NUL */
	assert_int_equal(x.body[16384], 0);
	assert_int_equal(conn_collect_body(&x, "z", 1), SRV_HTTP_EBODY_TOO_LARGE);
	assert_int_equal(x.body_len, 16384);
	free(x.body);
	/* One byte, one small allocation. */
	srv_exchange y = {.route = &route, .body_fd = -1};
	assert_int_equal(conn_collect_body(&y, "{", 1), 0);
	assert_int_equal(y.body_cap, 2);
	assert_string_equal(y.body, "{");
	free(y.body);
	/* No body allowed: the first byte is too many. */
	srv_route none = {.name = "n"};
	srv_exchange z = {.route = &none, .body_fd = -1};
	assert_int_equal(conn_collect_body(&z, "x", 1), SRV_HTTP_EBODY_TOO_LARGE);
	assert_null(z.body);
}

static void failed_growth_keeps_what_was_read(void **state)
{
	(void)state;
	srv_route route = {.name = "t", .max_body = 1u << 20};
	srv_exchange x = {.route = &route, .body_fd = -1};
	assert_int_equal(feed(&x, 3000, 1000), 0);
	fail_next = 1;
	assert_int_equal(feed(&x, 10000, 10000), SRV_HTTP_ENOMEM);
	assert_int_equal(x.body_len, 3000);
	assert_int_equal(x.body[0], 'a');
	assert_int_equal(x.body[3000], 0);
	free(x.body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(body_of_many_reads_is_copied_a_few_times),
	    cmocka_unit_test(body_up_to_the_limit_and_not_a_byte_more),
	    cmocka_unit_test(failed_growth_keeps_what_was_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
