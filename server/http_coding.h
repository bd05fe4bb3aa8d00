/*
 * http_coding.h — content codings: whether a request takes gzip (its Accept-Encoding), and gzip
 * itself (zlib), for the answers that gain from it. A phone on a metered plan pays for every
 * byte of a mailbox's list; its JSON (ids, keys, waveforms) shrinks to about a quarter.
 */
#ifndef JIAYIN_SERVER_HTTP_CODING_H
#define JIAYIN_SERVER_HTTP_CODING_H

#include "http_parse.h"

#include <stdbool.h>
#include <stddef.h>

/* Bodies shorter than this are sent as they are: the gain is a few hundred bytes at most, and
 * a single message's change (about 600 bytes of JSON) is just above it. */
#define SRV_GZIP_MIN 512
/* zlib's level: 1 is nginx's default; 4 makes a list of 50 messages 16 % smaller again for
 * 2.7 times the time (155 us against 57 for 30 KB), and it is spent on the pool. */
#define SRV_GZIP_LEVEL 4

/*
 * Does the request take gzip? Its Accept-Encoding lines (RFC 9110 12.5.3), all of them, as one
 * list: "gzip" or "x-gzip" with a weight above 0, or else "*" with one. A weight of 0 refuses;
 * an element that does not parse (two weights among them) is ignored; no header, or an empty
 * one, takes none. Nothing past a value's slice is read.
 */
bool srv_accepts_gzip(const srv_request *req);

/* May a body of this Content-Type be gzipped? JSON and text. */
bool srv_gzip_type(const char *content_type);

/*
 * in[0..len) gzipped (RFC 1952), malloc'd, its size in *out_len (below len); NULL when len is
 * below SRV_GZIP_MIN, when the result would be no smaller, or when memory ran out (send it as it
 * is). Pure: any thread.
 */
char *srv_gzip(const void *in, size_t len, size_t *out_len);

#endif
