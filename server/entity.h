/*
 * entity.h — answering GET/HEAD for a stored thing: validators, conditional requests, ranges,
 * and a body streamed in chunks from a source read on the job pool (entity.c).
 */
#ifndef JIAYIN_SERVER_ENTITY_H
#define JIAYIN_SERVER_ENTITY_H

#include "server.h"

#define SRV_STREAM_CHUNK SRV_STAGE_MAX /* bytes of a streamed body read with its lookup */

typedef struct srv_entity {
	uint64_t size;
	char etag[80];             /* with its quotes: "\"3f2a...\"" (or W/"..." for weak) */
	int64_t last_modified;     /* Unix seconds; 0: none */
	const char *content_type;
	const char *cache_control; /* NULL: none */
	const char *disposition;   /* Content-Disposition; NULL: none */
	bool whole_only;           /* no ranges (Accept-Ranges: none): a Range is answered whole */
} srv_entity;

/* Reads the entity's bytes; runs on pool threads, one call at a time. */
#define SRV_SOURCE_REFUSED 1
typedef struct srv_source {
	/* Up to cap bytes at offset into buf; *got the count. 0, negative on failure, or
	 * SRV_SOURCE_REFUSED when the reader may have no more (the connection is cut, and it is
	 * not counted as a storage error). */
	int (*read)(void *ctx, uint64_t offset, char *buf, size_t cap, size_t *got);
	void (*close)(void *ctx); /* when the response is over; may be NULL */
	void *ctx;
} srv_source;

typedef struct srv_plan {
	int status;              /* 200, 206, 304, 412 or 416 */
	uint64_t offset, length; /* the bytes to send (200/206) */
} srv_plan;

/* What to answer, from the request's conditional and Range headers. Pure: any thread. */
void srv_entity_plan(const srv_request *req, const srv_entity *e, srv_plan *plan);

/*
 * Answers with plan: headers (ETag, Last-Modified, Accept-Ranges, Content-Range), then the
 * body from src in pieces of SRV_STAGE_MIN to SRV_STAGE_MAX bytes, as fast as the client takes
 * them. first[0..first_len) are bytes already read from plan->offset (malloc'd,
 * SRV_STREAM_CHUNK bytes big, or NULL); ownership of first and src passes here. A body needs
 * srv_stream_first_stage(first_len) bytes of buffer memory reserved first (srv_respond_stream
 * does that). On the loop thread.
 */
size_t srv_stream_first_stage(size_t first_len);
void srv_respond_entity(srv_exchange *x, const srv_entity *e, const srv_plan *plan,
			srv_source *src, char *first, size_t first_len);

/* HTTP-date (IMF-fixdate, RFC 850, asctime) to Unix seconds; -1 if not a date. */
int64_t srv_http_date_parse(const char *p, size_t n);
void srv_http_date_format(int64_t t, char *out, size_t cap);

#endif
