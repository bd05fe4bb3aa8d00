/*
 * http_limits.h — every byte and count limit of the HTTP request parser, in one place.
 *
 * The SRV_MAX_* constants are the defaults; a srv_limits struct carries them so that the
 * configuration can change them at run time (srv_limits_init() fills the defaults,
 * srv_limits_check() refuses values outside SRV_*_CEILING). The struct is read, never kept
 * or written, by the parser except through the pointer given to srv_parser_init(), which
 * must outlive the parser. Plain data: any thread.
 */
#ifndef JIAYIN_HTTP_LIMITS_H
#define JIAYIN_HTTP_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#define SRV_MAX_HEAD_BYTES 16384       /* request line + headers + blank line (-> 431) */
#define SRV_MAX_HEADERS 64             /* header field lines per request (-> 431) */
#define SRV_MAX_TARGET 2048            /* request-target bytes (-> 414) */
#define SRV_MAX_CHUNK_BYTES (1u << 20) /* one chunk's declared size (-> 413) */
#define SRV_MAX_CHUNK_LINE 256         /* chunk-size line with extensions, CRLF excluded (-> 400) */
#define SRV_MAX_BODY_BYTES (1u << 20)  /* body before routing picks a limit (-> 413) */

/* What a configuration may raise the limits to: past these, the config is refused. */
#define SRV_HEAD_BYTES_CEILING (1u << 20)
#define SRV_HEADERS_CEILING 1024
#define SRV_CHUNK_LINE_CEILING 4096

typedef struct srv_limits {
	size_t max_head_bytes; /* >= 18 ("GET / HTTP/1.0" CRLF CRLF), <= SRV_HEAD_BYTES_CEILING */
	size_t max_headers;    /* 1..SRV_HEADERS_CEILING */
	size_t max_target;     /* >= 1, < max_head_bytes */
	uint64_t max_chunk_bytes; /* >= 1 */
	size_t max_chunk_line;    /* 1..SRV_CHUNK_LINE_CEILING */
	uint64_t max_body_bytes;  /* default for srv_parser.max_body; a route may change it */
} srv_limits;

/* Fills `lim` with the SRV_MAX_* defaults. */
void srv_limits_init(srv_limits *lim);
/* 0 if every limit is in range, else SRV_HTTP_EINVAL (http_parse.h). */
int srv_limits_check(const srv_limits *lim);

#endif
