/*
 * http_parse_fixture.h — what the HTTP/1.1 request parser tests (test_http_parse_head.c,
 * test_http_parse_body.c) share: one parser under limits a test may change (use_limits()), the
 * exact-size heap copies of every buffer handed to it (so ASan catches a read one byte past it;
 * teardown frees them), parse_n()/PARSE() to scan and parse a whole head, slice_is(), and the
 * refusal table type: an input and the error it must give, 0 for accepted.
 */
#ifndef JIAYIN_TESTS_HTTP_PARSE_FIXTURE_H
#define JIAYIN_TESTS_HTTP_PARSE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_parse.h"

#include <stdlib.h>
#include <string.h>

static srv_limits lim;
static srv_parser p;
static char **owned; /* exact-size copies handed to the parser, freed by teardown */
static size_t owned_count, owned_cap;

static inline int setup(void **st)
{
	(void)st;
	srv_limits_init(&lim);
	owned_count = 0;
	return srv_parser_init(&p, &lim);
}

static inline int teardown(void **st)
{
	(void)st;
	srv_parser_free(&p);
	for (size_t i = 0; i < owned_count; i++)
		free(owned[i]);
	free(owned);
	owned = NULL;
	owned_count = owned_cap = 0;
	return 0;
}

static inline char *copy(const char *s, size_t len)
{
	char *c = malloc(len ? len : 1);
	assert_non_null(c);
	memcpy(c, s, len);
	if (owned_count == owned_cap) {
		owned_cap = owned_cap ? owned_cap * 2 : 64;
		owned = realloc(owned, owned_cap * sizeof *owned);
		assert_non_null(owned);
	}
	owned[owned_count++] = c;
	return c;
}

/* Re-initialises the parser under changed limits. */
static inline void use_limits(void)
{
	srv_parser_free(&p);
	assert_int_equal(srv_parser_init(&p, &lim), 0);
}

/* Scans, then parses, a whole head at the start of s[0..len); 1 if the scan wants more. */
static inline int parse_n(const char *s, size_t len, srv_request *req, size_t *head_len)
{
	const char *buf = copy(s, len);
	size_t resume = 0, hl = 0;
	int rc = srv_head_scan(buf, len, &resume, &lim, &hl);
	if (rc <= 0)
		return rc == 0 ? 1 : rc;
	if (head_len)
		*head_len = hl;
	return srv_head_parse(&p, buf, hl, req);
}
#define PARSE(lit, req) parse_n(lit, sizeof(lit) - 1, req, NULL)

static inline int slice_is(srv_slice s, const char *lit)
{
	return s.ptr && s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* One refusal case: what the parser is handed and the error it must give, 0 for accepted. */
typedef struct refusal {
	const char *head;
	int err;
} refusal;

#endif
