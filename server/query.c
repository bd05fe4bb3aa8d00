/*
 * query.c — query strings of the API: digits only where numbers go, every length checked
 * before it is read, nothing decoded (none of these values needs percent-decoding).
 */
#include "query.h"
#include "secret.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

int srv_query_list(const char *q, size_t n, unsigned wait_max, uint64_t *since,
		   unsigned *wait_s)
{
	size_t i = 0;
	bool seen_since = false, seen_wait = false;
	*since = 0;
	*wait_s = 0;
	while (q && i < n) {
		size_t end = i;
		while (end < n && q[end] != '&')
			end++;
		if (end == i) { /* an empty pair (`?&since=1`, `&&`): nothing, as after the last */
			i = end + 1;
			continue;
		}
		bool is_since = end - i > 6 && memcmp(q + i, "since=", 6) == 0;
		bool is_wait = end - i > 5 && memcmp(q + i, "wait=", 5) == 0;
		size_t v = i + (is_since ? 6 : 5);
		uint64_t val = 0;
		bool good = (is_since || is_wait) && end - v <= 19; /* 19 digits fit in 64 bits */
		for (size_t k = v; good && k < end; k++) {
			good = q[k] >= '0' && q[k] <= '9';
			val = val * 10 + (uint64_t)(q[k] - '0');
		}
		/* A sequence number is an SQLite integer: one above INT64_MAX is no sequence. */
		if (!good || (is_wait && val > wait_max) || (is_since && val > (uint64_t)INT64_MAX))
			return -1;
		/* Each at most once: which of two would count is no client's to guess (the
		 * review: the last won). */
		bool *seen = is_since ? &seen_since : &seen_wait;
		if (*seen)
			return -1;
		*seen = true;
		if (is_since)
			*since = val;
		else
			*wait_s = (unsigned)val;
		i = end + 1;
	}
	return 0;
}

int srv_query_signed(const char *q, size_t n, int64_t *expires, int *holder, const char **ref,
                     size_t *ref_len, const char **sig, size_t *sig_len)
{
	const char *p = q, *end = q + n;
	if (!p || n < 9 || memcmp(p, "expires=", 8) != 0)
		return -1;
	p += 8;
	int64_t v = 0;
	int digits = 0;
	for (; p < end && *p >= '0' && *p <= '9' && digits < 12; p++, digits++)
		v = v * 10 + (*p - '0');
	if (digits == 0)
		return -1;
	*ref = NULL;
	*ref_len = 0;
	size_t name = 0;
	if (end - p >= 9 && memcmp(p, "&session=", 9) == 0)
		name = 9, *holder = SRV_AUDIO_SESSION;
	else if (end - p >= 7 && memcmp(p, "&phone=", 7) == 0)
		name = 7, *holder = SRV_AUDIO_PHONE;
	else
		return -1; /* every URL names its holder */
	const char *s = p + name;
	for (p = s; p < end && *p != '&'; p++)
		;
	if (p == s)
		return -1;
	*ref = s;
	*ref_len = (size_t)(p - s);
	if (end - p < 5 || memcmp(p, "&sig=", 5) != 0)
		return -1;
	*expires = v;
	*sig = p + 5;
	*sig_len = (size_t)(end - p - 5);
	return 0;
}
