/*
 * fuzz_query.c — libFuzzer target: the API's query-string parsers (server/query.c), both on
 * every input. Checks what the handlers rely on: a list's wait is within its bound and its
 * since fits storage's signed 64-bit sequence numbers, each given at most once (else 400
 * invalid_query), and a
 * signed URL names its holder (a phone or a kiosk session), whose reference (before the
 * signature, no '&' in it) and signature lie inside the query they came from.
 */
#include "query.h"
#include "secret.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How many of q's &-separated parameters start with key. */
static unsigned count_key(const char *q, size_t n, const char *key)
{
	size_t k = strlen(key);
	unsigned c = 0;
	for (size_t i = 0; i < n;) {
		size_t end = i;
		while (end < n && q[end] != '&')
			end++;
		c += end - i >= k && memcmp(q + i, key, k) == 0;
		i = end + 1;
	}
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *q = (const char *)data;
	uint64_t since;
	unsigned wait_s;
	if (srv_query_list(q, size, 60, &since, &wait_s) == 0 &&
	    (wait_s > 60 || since > (uint64_t)INT64_MAX || count_key(q, size, "since=") > 1 ||
	     count_key(q, size, "wait=") > 1))
		abort();
	int64_t expires;
	int holder = 0;
	const char *sig, *ref;
	size_t len, ref_len;
	if (srv_query_signed(q, size, &expires, &holder, &ref, &ref_len, &sig, &len) == 0 &&
	    (expires < 0 || sig < q || sig + len != q + size || !ref || ref < q || ref_len == 0 ||
	     ref + ref_len > sig || memchr(ref, '&', ref_len) ||
	     (holder != SRV_AUDIO_PHONE && holder != SRV_AUDIO_SESSION)))
		abort();
	return 0;
}
