/*
 * fuzz_query.c — libFuzzer target: the API's query-string parsers (server/query.c), both on
 * every input. Checks what the handlers rely on: a list's wait is within its bound and its
 * since fits storage's signed 64-bit sequence numbers (else 400 invalid_query), and a
 * signed URL names its holder (a phone or a kiosk session), whose reference (before the
 * signature, no '&' in it) and signature lie inside the query they came from.
 */
#include "query.h"
#include "secret.h"

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
