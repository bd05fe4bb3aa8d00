/*
 * query.h — the few query strings the API reads, parsed without a request around them
 * (query.c), so that a libFuzzer target can reach them.
 */
#ifndef JIAYIN_SERVER_QUERY_H
#define JIAYIN_SERVER_QUERY_H

#include <stddef.h>
#include <stdint.h>

/*
 * "since=N&wait=S" (either, both, in any order, or nothing; q may be NULL): *since and
 * *wait_s (0 when absent). -1 for anything else, a number over 19 digits, since > INT64_MAX
 * (storage's sequence numbers are signed 64-bit), or wait > wait_max.
 */
int srv_query_list(const char *q, size_t n, unsigned wait_max, uint64_t *since,
		   unsigned *wait_s);
/*
 * "expires=SECONDS&phone=REF&sig=SIGNATURE" or "expires=SECONDS&session=REF&sig=SIGNATURE",
 * in that order, nothing else (a signed audio URL's; REF: its holder's token hash, sealed):
 * *expires, *holder (SRV_AUDIO_PHONE or SRV_AUDIO_SESSION, secret.h), and the REF's and the
 * signature's bytes as they stand in q. 0 or -1.
 */
int srv_query_signed(const char *q, size_t n, int64_t *expires, int *holder, const char **ref,
                     size_t *ref_len, const char **sig, size_t *sig_len);

#endif
