/*
 * fuzz_query.c — libFuzzer target: the API's query-string parsers (server/query.c), both on
 * every input. Checks what the handlers rely on: a list's wait is within its bound and its
 * since fits storage's signed 64-bit sequence numbers (else 400 invalid_query), and a
 * signed URL's signature, and its kiosk session when it has one (before the signature, no
 * '&' in it), lie inside the query they came from.
 */
#include "query.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *q = (const char *)data;
	uint64_t since;
	unsigned wait_s;
	if (srv_query_list(q, size, 60, &since, &wait_s) == 0 &&
	    (wait_s > 60 || since > (uint64_t)INT64_MAX))
		abort();
	int64_t expires;
	const char *sig, *session;
	size_t len, session_len;
	if (srv_query_signed(q, size, &expires, &session, &session_len, &sig, &len) == 0 &&
	    (expires < 0 || sig < q || sig + len != q + size ||
	     (session && (session < q || session_len == 0 || session + session_len > sig ||
			  memchr(session, '&', session_len))) ||
	     (!session && session_len != 0)))
		abort();
	return 0;
}
