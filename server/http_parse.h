/*
 * http_parse.h — the HTTP/1.1 request parser of server/: a buffered head, a streamed body.
 *
 * A connection keeps its bytes in its own read buffer. srv_head_scan() finds where the head ends
 * (resumable, rejecting bad bytes as it goes), srv_head_parse() runs llhttp over exactly those
 * bytes and fills a srv_request whose slices point into the caller's buffer (zero copy: the
 * buffer must stay put until the request is answered), srv_body_feed() decodes the body as it
 * arrives and stops at the message's last byte so pipelined bytes stay in the buffer.
 * srv_parser_reset() readies the parser for the next request of a keep-alive connection.
 * Every call returns 0 (or 1 where stated) or a negative SRV_HTTP_E* code; srv_parse_status()
 * gives the HTTP status to answer with, srv_parse_errcode() a stable name, srv_parse_strerror()
 * a sentence. No I/O, no allocation after srv_parser_init(); one parser per connection, not
 * shared between threads.
 */
#ifndef JIAYIN_HTTP_PARSE_H
#define JIAYIN_HTTP_PARSE_H

#include "http_limits.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	SRV_HTTP_OK = 0,
	SRV_HTTP_ENOMEM = -1,       /* 500 out_of_memory */
	SRV_HTTP_EINVAL = -2,       /* 500 invalid_argument: limits out of range */
	SRV_HTTP_ESTATE = -3,       /* 500 parser_state: call out of order */
	SRV_HTTP_EBARE_CR = -4,     /* 400 bare_cr: CR not followed by LF in the head */
	SRV_HTTP_EBARE_LF = -5,     /* 400 bare_lf: a line of the head ends in LF alone */
	SRV_HTTP_ECONTROL = -6,     /* 400 control_byte: NUL or another control byte */
	SRV_HTTP_EOBS_FOLD = -7,    /* 400 obs_fold: a header line starts with SP or HTAB */
	SRV_HTTP_EEMPTY_LINES = -8, /* 400 leading_empty_lines: more than one before the request */
	SRV_HTTP_EHEAD_TOO_LARGE = -9,    /* 431 head_too_large */
	SRV_HTTP_ETOO_MANY_HEADERS = -10, /* 431 too_many_headers */
	SRV_HTTP_EREQUEST_LINE = -11,     /* 400 bad_request_line */
	SRV_HTTP_EMETHOD = -12,           /* 501 method_not_implemented */
	SRV_HTTP_ETARGET_TOO_LONG = -13,  /* 414 target_too_long */
	SRV_HTTP_ETARGET = -14,           /* 400 bad_target: bytes, fragment or %-escape */
	SRV_HTTP_ETARGET_FORM = -15,    /* 400 target_form: absolute-, authority- or misused '*' */
	SRV_HTTP_EVERSION = -16,        /* 505 version_not_supported */
	SRV_HTTP_EHEADER = -17,         /* 400 bad_header: name not a token or bad value bytes */
	SRV_HTTP_EHOST_MISSING = -18,   /* 400 host_missing (HTTP/1.1) */
	SRV_HTTP_EHOST_DUPLICATE = -19, /* 400 host_duplicate */
	SRV_HTTP_EHOST = -20,           /* 400 bad_host */
	SRV_HTTP_ESMUGGLING_CL_TE =
	    -21, /* 400 smuggling_cl_te: Content-Length and Transfer-Encoding */
	SRV_HTTP_ECL_DUPLICATE = -22,    /* 400 content_length_duplicate, even with equal values */
	SRV_HTTP_ECL = -23,              /* 400 bad_content_length */
	SRV_HTTP_ETE = -24,              /* 400 bad_transfer_encoding: chunked not last or twice */
	SRV_HTTP_ETE_CODING = -25,       /* 501 transfer_coding_not_implemented: gzip, chunked */
	SRV_HTTP_EEXPECT = -26,          /* 417 expectation_failed */
	SRV_HTTP_ECHUNK = -27,           /* 400 bad_chunk: chunked framing */
	SRV_HTTP_ECHUNK_TOO_LARGE = -28, /* 413 chunk_too_large */
	SRV_HTTP_ETRAILER = -29,         /* 400 trailer_rejected */
	SRV_HTTP_EBODY_TOO_LARGE = -30,  /* 413 body_too_large */
	SRV_HTTP_EREQUEST = -31,         /* 400 bad_request: anything else llhttp refused */
};
#define SRV_HTTP_ERROR_COUNT 32

/* A run of bytes inside the caller's buffer; never NUL-terminated. */
typedef struct srv_slice {
	const char *ptr;
	size_t len;
} srv_slice;
/* s without leading and trailing SP and HTAB (HTTP's optional whitespace). */
srv_slice srv_slice_trim(srv_slice s);

typedef struct srv_header {
	srv_slice name;  /* as sent (compare case-insensitively) */
	srv_slice value; /* leading and trailing SP/HTAB removed; may be empty, never NULL */
} srv_header;

/* The methods the server implements; llhttp's others are SRV_HTTP_EMETHOD. */
typedef enum srv_method {
	SRV_METHOD_GET,
	SRV_METHOD_HEAD,
	SRV_METHOD_POST,
	SRV_METHOD_PUT,
	SRV_METHOD_DELETE,
	SRV_METHOD_OPTIONS,
	SRV_METHOD_PATCH, /* the last: srv_method_name() names GET..PATCH */
} srv_method;

/* "GET" ... "PATCH"; NULL for a value outside the enum. */
const char *srv_method_name(srv_method m);

typedef enum srv_body_kind {
	SRV_BODY_NONE,    /* neither Content-Length nor Transfer-Encoding */
	SRV_BODY_LENGTH,  /* Content-Length: content_length bytes (may be 0) */
	SRV_BODY_CHUNKED, /* Transfer-Encoding: chunked */
} srv_body_kind;

/* Filled by srv_head_parse(); slices point into its `head`, headers into the parser. */
typedef struct srv_request {
	srv_method method;
	srv_slice target;          /* origin-form "/p?q", or "*" (OPTIONS only) */
	srv_slice path;            /* target up to the first '?' */
	srv_slice query;           /* after the '?', without it; ptr NULL when there is no '?' */
	int version_minor;         /* HTTP/1.0 or HTTP/1.1 */
	const srv_header *headers; /* in arrival order; valid until srv_parser_reset() */
	size_t header_count;
	srv_slice host;       /* ptr NULL when absent (HTTP/1.0 only); may be empty */
	bool keep_alive;      /* llhttp_should_keep_alive(): version and Connection */
	bool expect_continue; /* HTTP/1.1 with Expect: 100-continue */
	srv_body_kind body;
	uint64_t content_length; /* SRV_BODY_LENGTH only */
} srv_request;

/* Receives decoded body bytes (valid during the call only); negative aborts the feed. */
typedef int (*srv_body_fn)(void *ctx, const char *data, size_t len);

/* One per connection. Only max_body is the caller's to write; the rest is private. */
typedef struct srv_parser {
	uint64_t max_body; /* body limit of the current request: srv_head_parse() sets
	                      lim->max_body_bytes, the router may change it before the body */
	llhttp_t http;
	const srv_limits *lim;
	srv_header *headers; /* lim->max_headers entries */
	srv_request *req;    /* during srv_head_parse() only */
	srv_body_kind req_body;
	srv_slice method, version;
	int phase;
	int err;       /* sticky once failed */
	int field;     /* which header the current field names */
	int in_header; /* 0 between headers, 1 in a name, 2 in a value */
	bool seen_cl, seen_te, seen_host;
	uint64_t body_seen;
	/* Chunked framing as we read it, checked against llhttp's reading (http_parse.c). */
	int frame;
	uint64_t chunk_size, chunk_left, llhttp_chunk;
	size_t chunk_digits, chunk_line;
	const char *frame_pos;
	srv_body_fn fn;
	void *ctx;
	int fn_err;
} srv_parser;

/* `lim` is borrowed and must outlive the parser. SRV_HTTP_EINVAL or SRV_HTTP_ENOMEM. */
int srv_parser_init(srv_parser *p, const srv_limits *lim);
/* Frees what init allocated; accepts a zeroed or half-initialised parser. */
void srv_parser_free(srv_parser *p);
/* Forgets the request (and any error): the next call must be srv_head_parse(). */
void srv_parser_reset(srv_parser *p);

/*
 * Looks for the end of the head (the empty line) in buf[0..len), buf being where the request
 * starts. `*resume` is 0 on the first call and is advanced past the bytes already checked, so
 * a head that arrives in pieces is scanned once. Returns 1 with *head_len (bytes up to and
 * including the blank line's CRLF), 0 when more bytes are needed, or SRV_HTTP_EBARE_CR,
 * _EBARE_LF, _ECONTROL, _EOBS_FOLD, _EEMPTY_LINES, _EREQUEST_LINE, _EHEAD_TOO_LARGE.
 * One empty line (CRLF) before the request line is allowed (RFC 9112 2.2), a second is not.
 */
int srv_head_scan(const char *buf, size_t len, size_t *resume, const srv_limits *lim,
                  size_t *head_len);

/*
 * Parses the head srv_head_scan() found (head[0..len), len = *head_len) into `req`. The parser
 * must be fresh or reset. Requests without a body (none, or Content-Length: 0) are complete
 * on return: srv_body_feed() then reports complete at once.
 */
int srv_head_parse(srv_parser *p, const char *head, size_t len, srv_request *req);

/*
 * Decodes body bytes from data[0..len): fn(ctx, ...) gets the decoded bytes (fn may be NULL to
 * discard them). *used is how many input bytes belong to this request: after *complete turns
 * true, data + *used is the start of the next request. A negative value from fn is returned
 * unchanged. len 0 is allowed (checks the declared length against max_body at once).
 */
int srv_body_feed(srv_parser *p, const char *data, size_t len, size_t *used, srv_body_fn fn,
                  void *ctx, bool *complete);

/* The first header called `name` (case-insensitive), or NULL. */
const srv_slice *srv_request_header(const srv_request *req, const char *name);
/* The header `name` at most once: false when it came twice or more (a request with two
 * readings); else *out is it, or NULL when absent. */
bool srv_request_header_once(const srv_request *req, const char *name, const srv_slice **out);

int srv_parse_status(int err);          /* 400, 413, 414, 417, 431, 501, 505; 500 otherwise */
const char *srv_parse_errcode(int err); /* "smuggling_cl_te"; never renamed, only added */
const char *srv_parse_strerror(int err);

#endif
