/*
 * http_parse.c — llhttp driven over one request: the head in one call, the body in as many
 * as the socket needs. llhttp runs with every lenient flag off; our callbacks add what it lets
 * through (duplicate framing headers, Transfer-Encoding codings, HTTP/1.0 with chunked, target
 * forms, Host) and each refusal gets its own code. llhttp 8.1 also accepts CR followed by any
 * byte as the end of a chunk-size line and a bare LF after the last chunk, so every framing
 * byte of a chunked body is read a second time here (frame_check) and both readings must
 * agree. on_message_complete pauses the parser, which is how a feed stops on the body's last
 * byte. The parser owns only its header array; everything else points into caller buffers.
 */
#include "http_parse.h"

#include <stdlib.h>
#include <string.h>

enum { PH_IDLE, PH_REQUEST_LINE, PH_HEADERS, PH_BODY, PH_DONE, PH_FAILED };
enum { HDR_OTHER, HDR_CONTENT_LENGTH, HDR_TRANSFER_ENCODING, HDR_HOST, HDR_EXPECT };

/* Where the chunked framing reader is: see frame_check(). */
enum {
	FR_SIZE,    /* chunk-size hex digits */
	FR_EXT,     /* after ';' up to CR: chunk extensions, ignored */
	FR_SIZE_LF, /* after the size line's CR */
	FR_DATA,    /* chunk_left data bytes, which llhttp hands to on_body */
	FR_DATA_CR, /* the CRLF after the data */
	FR_DATA_LF,
	FR_END_CR, /* after "0" CRLF: the empty line (a trailer field is refused) */
	FR_END_LF,
	FR_DONE,
};

static srv_parser *parser_of(llhttp_t *h)
{
	return h->data;
}

/* Records our own reason for the failure llhttp is about to report. */
static int fail(srv_parser *p, int err)
{
	if (!p->err)
		p->err = err;
	return -1;
}

static int is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(unsigned char c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int slice_ieq(srv_slice s, const char *lit)
{
	size_t n = strlen(lit);
	if (s.len != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)s.ptr[i]) != lower((unsigned char)lit[i]))
			return 0;
	return 1;
}

/* llhttp may split an element across calls; within one buffer the pieces are adjacent. */
static int extend(srv_slice *s, const char *at, size_t n)
{
	if (!s->ptr) {
		s->ptr = at;
		s->len = n;
		return 0;
	}
	if (s->ptr + s->len != at)
		return -1;
	s->len += n;
	return 0;
}

srv_slice srv_slice_trim(srv_slice s)
{
	while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
		s.ptr++;
		s.len--;
	}
	while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
		s.len--;
	return s;
}

/* ---- request line ---- */

const char *srv_method_name(srv_method m)
{
	static const char *const names[] = {"GET",    "HEAD",    "POST", "PUT",
	                                    "DELETE", "OPTIONS", "PATCH"};
	return (unsigned)m < sizeof names / sizeof names[0] ? names[m] : NULL;
}

static int on_method(llhttp_t *h, const char *at, size_t n)
{
	srv_parser *p = parser_of(h);
	return extend(&p->method, at, n) ? fail(p, SRV_HTTP_EREQUEST) : 0;
}

static int on_method_complete(llhttp_t *h)
{
	srv_parser *p = parser_of(h);
	static const struct {
		uint8_t llhttp;
		srv_method ours;
	} methods[] = {
	    {HTTP_GET, SRV_METHOD_GET},       {HTTP_HEAD, SRV_METHOD_HEAD},
	    {HTTP_POST, SRV_METHOD_POST},     {HTTP_PUT, SRV_METHOD_PUT},
	    {HTTP_DELETE, SRV_METHOD_DELETE}, {HTTP_OPTIONS, SRV_METHOD_OPTIONS},
	    {HTTP_PATCH, SRV_METHOD_PATCH},
	};
	uint8_t m = llhttp_get_method(h);
	if (m == HTTP_CONNECT)
		return 0; /* refused with its authority-form target, in on_url_complete */
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
		if (methods[i].llhttp == m) {
			p->req->method = methods[i].ours;
			return 0;
		}
	}
	return fail(p, SRV_HTTP_EMETHOD);
}

static int on_url(llhttp_t *h, const char *at, size_t n)
{
	srv_parser *p = parser_of(h);
	return extend(&p->req->target, at, n) ? fail(p, SRV_HTTP_EREQUEST) : 0;
}

/* Origin-form only ("*" for OPTIONS): visible ASCII, no fragment, well-formed %-escapes. */
static int on_url_complete(llhttp_t *h)
{
	srv_parser *p = parser_of(h);
	srv_request *req = p->req;
	srv_slice t = req->target;

	if (t.len > p->lim->max_target)
		return fail(p, SRV_HTTP_ETARGET_TOO_LONG);
	if (t.len == 0)
		return fail(p, SRV_HTTP_ETARGET);
	/* RFC 9112 3: method SP request-target; llhttp also takes several spaces. */
	if (!p->method.ptr || t.ptr != p->method.ptr + p->method.len + 1)
		return fail(p, SRV_HTTP_EREQUEST_LINE);
	if (llhttp_get_method(h) == HTTP_CONNECT)
		return fail(p, SRV_HTTP_ETARGET_FORM);
	if (t.len == 1 && t.ptr[0] == '*') {
		if (req->method != SRV_METHOD_OPTIONS)
			return fail(p, SRV_HTTP_ETARGET_FORM);
		req->path = t;
		return 0;
	}
	if (t.ptr[0] != '/')
		return fail(p, SRV_HTTP_ETARGET_FORM);
	size_t path_end = t.len;
	for (size_t i = 0; i < t.len; i++) {
		unsigned char c = (unsigned char)t.ptr[i];
		if (c <= 0x20 || c >= 0x7f || c == '#')
			return fail(p, SRV_HTTP_ETARGET);
		if (c == '%' && (i + 2 >= t.len || !is_hex((unsigned char)t.ptr[i + 1]) ||
		                 !is_hex((unsigned char)t.ptr[i + 2])))
			return fail(p, SRV_HTTP_ETARGET);
		if (c == '?' && path_end == t.len)
			path_end = i;
	}
	req->path = (srv_slice){t.ptr, path_end};
	if (path_end < t.len)
		req->query = (srv_slice){t.ptr + path_end + 1, t.len - path_end - 1};
	return 0;
}

static int on_version(llhttp_t *h, const char *at, size_t n)
{
	srv_parser *p = parser_of(h);
	return extend(&p->version, at, n) ? fail(p, SRV_HTTP_EREQUEST) : 0;
}

static int on_version_complete(llhttp_t *h)
{
	srv_parser *p = parser_of(h);
	srv_slice t = p->req->target;
	/* request-target SP "HTTP/" version CR: one space, nothing after the version. */
	if (!t.ptr || !p->version.ptr || p->version.ptr != t.ptr + t.len + 6 ||
	    p->version.ptr[p->version.len] != '\r')
		return fail(p, SRV_HTTP_EREQUEST_LINE);
	if (llhttp_get_http_major(h) != 1 || llhttp_get_http_minor(h) > 1)
		return fail(p, SRV_HTTP_EVERSION);
	p->req->version_minor = llhttp_get_http_minor(h);
	p->phase = PH_HEADERS;
	return 0;
}

/* ---- headers ---- */

/* A header callback outside the head: before a version (HTTP/0.9) or after the body. */
static int outside_head(srv_parser *p)
{
	return fail(p, p->phase == PH_REQUEST_LINE ? SRV_HTTP_EREQUEST_LINE : SRV_HTTP_ETRAILER);
}

static int on_header_field(llhttp_t *h, const char *at, size_t n)
{
	srv_parser *p = parser_of(h);
	srv_request *req = p->req;
	if (p->phase != PH_HEADERS)
		return outside_head(p); /* a trailer is never merged into the head */
	if (p->in_header != 1) {
		if (req->header_count == p->lim->max_headers)
			return fail(p, SRV_HTTP_ETOO_MANY_HEADERS);
		p->headers[req->header_count++] = (srv_header){{NULL, 0}, {NULL, 0}};
		p->in_header = 1;
	}
	srv_header *hd = &p->headers[req->header_count - 1];
	return extend(&hd->name, at, n) ? fail(p, SRV_HTTP_EREQUEST) : 0;
}

/* Framing and Host duplicates are refused here, before llhttp reads the value. */
static int on_header_field_complete(llhttp_t *h)
{
	srv_parser *p = parser_of(h);
	if (p->phase != PH_HEADERS)
		return outside_head(p);
	srv_slice name = p->headers[p->req->header_count - 1].name;
	p->in_header = 2;
	p->field = HDR_OTHER;
	/* llhttp 8.1 takes "Bad Name" and "Name " (RFC 9112 5.1: whitespace before the colon
	   must be refused, it is how "Transfer-Encoding :" smuggling starts). */
	if (name.len == 0)
		return fail(p, SRV_HTTP_EHEADER);
	for (size_t i = 0; i < name.len; i++)
		if (!is_tchar((unsigned char)name.ptr[i]))
			return fail(p, SRV_HTTP_EHEADER);
	if (slice_ieq(name, "content-length")) {
		if (p->seen_cl)
			return fail(p, SRV_HTTP_ECL_DUPLICATE);
		if (p->seen_te)
			return fail(p, SRV_HTTP_ESMUGGLING_CL_TE);
		p->seen_cl = true;
		p->field = HDR_CONTENT_LENGTH;
	} else if (slice_ieq(name, "transfer-encoding")) {
		if (p->seen_cl)
			return fail(p, SRV_HTTP_ESMUGGLING_CL_TE);
		if (p->seen_te)
			return fail(p, SRV_HTTP_ETE);
		p->seen_te = true;
		p->field = HDR_TRANSFER_ENCODING;
	} else if (slice_ieq(name, "host")) {
		if (p->seen_host)
			return fail(p, SRV_HTTP_EHOST_DUPLICATE);
		p->seen_host = true;
		p->field = HDR_HOST;
	} else if (slice_ieq(name, "expect")) {
		p->field = HDR_EXPECT;
	}
	return 0;
}

static int on_header_value(llhttp_t *h, const char *at, size_t n)
{
	srv_parser *p = parser_of(h);
	if (p->phase != PH_HEADERS)
		return outside_head(p);
	srv_header *hd = &p->headers[p->req->header_count - 1];
	return extend(&hd->value, at, n) ? fail(p, SRV_HTTP_EREQUEST) : 0;
}

/* 1*DIGIT that fits in 63 bits, as llhttp reads it (it also refuses lists like "5, 5"). */
static int parse_content_length(srv_slice v, uint64_t *out)
{
	uint64_t n = 0;
	if (v.len == 0)
		return SRV_HTTP_ECL;
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.ptr[i];
		if (c < '0' || c > '9' || n > (UINT64_MAX / 2 - 9) / 10)
			return SRV_HTTP_ECL;
		n = n * 10 + (c - '0');
	}
	*out = n;
	return 0;
}

/*
 * RFC 9112 6.3: chunked must be the final coding, exactly once, or the length cannot be known
 * (400). A list that ends in chunked after other codings is well-framed but asks for codings
 * we do not implement (501). Only the single value "chunked" is accepted.
 */
static int check_transfer_encoding(srv_slice v)
{
	size_t chunked = 0, other = 0;
	int last_chunked = 0;
	size_t i = 0;
	while (i < v.len) {
		size_t start = i;
		while (i < v.len && v.ptr[i] != ',')
			i++;
		srv_slice item = srv_slice_trim((srv_slice){v.ptr + start, i - start});
		i++; /* past the comma */
		if (item.len == 0)
			continue; /* empty list elements are allowed and mean nothing */
		last_chunked = slice_ieq(item, "chunked");
		if (last_chunked)
			chunked++;
		else
			other++;
	}
	if (!last_chunked || chunked != 1)
		return SRV_HTTP_ETE;
	return other ? SRV_HTTP_ETE_CODING : 0;
}

static int is_host_char(unsigned char c)
{
	/* unreserved / sub-delims / '%' of pct-encoded (RFC 3986 reg-name) */
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("-._~!$&'()*+,;=%", c));
}

/* uri-host [ ":" port ]; an empty value is valid (RFC 9110 7.2). */
static int check_host(srv_slice v)
{
	size_t i = 0;
	if (v.len && v.ptr[0] == '[') {
		for (i = 1; i < v.len && v.ptr[i] != ']'; i++)
			if (!is_hex((unsigned char)v.ptr[i]) && !strchr(":.vV", v.ptr[i]) &&
			    !is_host_char((unsigned char)v.ptr[i]))
				return SRV_HTTP_EHOST;
		if (i == v.len || i == 1)
			return SRV_HTTP_EHOST;
		i++;
	} else {
		while (i < v.len && is_host_char((unsigned char)v.ptr[i]))
			i++;
	}
	if (i < v.len) {
		if (v.ptr[i] != ':')
			return SRV_HTTP_EHOST;
		for (i++; i < v.len; i++)
			if (v.ptr[i] < '0' || v.ptr[i] > '9')
				return SRV_HTTP_EHOST;
	}
	return 0;
}

static int on_header_value_complete(llhttp_t *h)
{
	srv_parser *p = parser_of(h);
	srv_request *req = p->req;
	if (p->phase != PH_HEADERS)
		return outside_head(p);
	srv_header *hd = &p->headers[req->header_count - 1];
	if (!hd->value.ptr)
		hd->value.ptr = hd->name.ptr + hd->name.len; /* empty, but never NULL */
	hd->value = srv_slice_trim(hd->value);
	p->in_header = 0;

	int rc = 0;
	switch (p->field) {
	case HDR_CONTENT_LENGTH:
		rc = parse_content_length(hd->value, &req->content_length);
		break;
	case HDR_TRANSFER_ENCODING:
		rc = check_transfer_encoding(hd->value);
		break;
	case HDR_HOST:
		rc = check_host(hd->value);
		req->host = hd->value;
		break;
	case HDR_EXPECT:
		/* RFC 9110 10.1.1: a 100-continue from an HTTP/1.0 client is ignored. */
		if (!slice_ieq(hd->value, "100-continue"))
			rc = SRV_HTTP_EEXPECT;
		else
			req->expect_continue = req->version_minor == 1;
		break;
	}
	return rc ? fail(p, rc) : 0;
}

/* The head is complete: what llhttp decided about framing must be what we decided. */
static int on_headers_complete(llhttp_t *h)
{
	srv_parser *p = parser_of(h);
	srv_request *req = p->req;
	if (p->phase != PH_HEADERS)
		return outside_head(p);
	if (req->version_minor == 1 && !p->seen_host)
		return fail(p, SRV_HTTP_EHOST_MISSING);
	/* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
	if (req->version_minor == 0 && p->seen_te)
		return fail(p, SRV_HTTP_ETE);
	if (p->seen_te) {
		if (!(h->flags & F_CHUNKED))
			return fail(p, SRV_HTTP_ETE);
		req->body = SRV_BODY_CHUNKED;
	} else if (p->seen_cl) {
		if (!(h->flags & F_CONTENT_LENGTH) || h->content_length != req->content_length)
			return fail(p, SRV_HTTP_ECL);
		req->body = SRV_BODY_LENGTH;
	} else if (h->flags & (F_CHUNKED | F_CONTENT_LENGTH)) {
		return fail(p, SRV_HTTP_EREQUEST);
	}
	req->keep_alive = llhttp_should_keep_alive(h) != 0;
	p->phase = PH_BODY;
	p->max_body = p->lim->max_body_bytes;
	return 0;
}

/* ---- body ---- */

/*
 * Reads the chunked framing bytes in [s, end) — everything llhttp did not pass to on_body —
 * with the RFC 9112 7.1 grammar and no leniency: chunk-size [ ";" ext ] CRLF, data, CRLF, ...,
 * "0" CRLF CRLF. The sizes read here must equal llhttp's, and the data must come exactly where
 * this reading expects it (on_body), or the two parsers framed the body differently.
 */
static int frame_check(srv_parser *p, const char *s, const char *end)
{
	for (; s < end; s++) {
		const unsigned char c = (unsigned char)*s;
		switch (p->frame) {
		case FR_SIZE:
			if (c != '\r' && ++p->chunk_line > p->lim->max_chunk_line)
				return SRV_HTTP_ECHUNK;
			if (is_hex(c)) {
				if (p->chunk_size > (UINT64_MAX >> 4))
					return SRV_HTTP_ECHUNK;
				p->chunk_size = p->chunk_size << 4 | hex_value(c);
				p->chunk_digits++;
			} else if (p->chunk_digits && c == ';') {
				p->frame = FR_EXT;
			} else if (p->chunk_digits && c == '\r') {
				p->frame = FR_SIZE_LF;
			} else {
				return SRV_HTTP_ECHUNK;
			}
			break;
		case FR_EXT:
			/* llhttp checks the extension grammar; here only where the line ends. */
			if (c == '\r')
				p->frame = FR_SIZE_LF;
			else if (++p->chunk_line > p->lim->max_chunk_line ||
			         (c < 0x20 && c != '\t') || c == 0x7f)
				return SRV_HTTP_ECHUNK;
			break;
		case FR_SIZE_LF:
			if (c != '\n' || p->chunk_size != p->llhttp_chunk)
				return SRV_HTTP_ECHUNK;
			p->chunk_left = p->chunk_size;
			p->frame = p->chunk_size ? FR_DATA : FR_END_CR;
			p->chunk_size = 0;
			p->chunk_digits = 0;
			p->chunk_line = 0;
			break;
		case FR_DATA_CR:
			if (c != '\r')
				return SRV_HTTP_ECHUNK;
			p->frame = FR_DATA_LF;
			break;
		case FR_DATA_LF:
			if (c != '\n')
				return SRV_HTTP_ECHUNK;
			p->frame = FR_SIZE;
			break;
		case FR_END_CR:
			if (c != '\r')
				return c == '\n' ? SRV_HTTP_ECHUNK : SRV_HTTP_ETRAILER;
			p->frame = FR_END_LF;
			break;
		case FR_END_LF:
			if (c != '\n')
				return SRV_HTTP_ECHUNK;
			p->frame = FR_DONE;
			break;
		default: /* FR_DATA, FR_DONE: llhttp kept bytes we expected as data, or read on */
			return SRV_HTTP_ECHUNK;
		}
	}
	return 0;
}

/* What the body may still grow by; the router may have lowered max_body meanwhile. */
static uint64_t body_room(const srv_parser *p)
{
	return p->max_body > p->body_seen ? p->max_body - p->body_seen : 0;
}

static int on_chunk_header(llhttp_t *h)
{
	srv_parser *p = parser_of(h);
	uint64_t size = h->content_length;
	if (size > p->lim->max_chunk_bytes)
		return fail(p, SRV_HTTP_ECHUNK_TOO_LARGE);
	if (size > body_room(p))
		return fail(p, SRV_HTTP_EBODY_TOO_LARGE);
	p->llhttp_chunk = size;
	return 0;
}

static int on_body(llhttp_t *h, const char *at, size_t n)
{
	srv_parser *p = parser_of(h);
	if (p->phase != PH_BODY)
		return fail(p, SRV_HTTP_EREQUEST); /* never in a head: it ends before any body */
	if (p->req_body == SRV_BODY_CHUNKED) {
		int rc = frame_check(p, p->frame_pos, at);
		if (rc)
			return fail(p, rc);
		if (p->frame != FR_DATA || n > p->chunk_left)
			return fail(p, SRV_HTTP_ECHUNK);
		p->chunk_left -= n;
		if (p->chunk_left == 0)
			p->frame = FR_DATA_CR;
		p->frame_pos = at + n;
	}
	if (n > body_room(p))
		return fail(p, SRV_HTTP_EBODY_TOO_LARGE);
	p->body_seen += n;
	if (p->fn) {
		int rc = p->fn(p->ctx, at, n);
		if (rc < 0) {
			p->fn_err = rc;
			return -1;
		}
	}
	return 0;
}

static int on_message_complete(llhttp_t *h)
{
	srv_parser *p = parser_of(h);
	p->phase = PH_DONE;
	return HPE_PAUSED; /* stop on the last byte: what follows is the next request's */
}

static const llhttp_settings_t settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_version = on_version,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_url_complete = on_url_complete,
    .on_method_complete = on_method_complete,
    .on_version_complete = on_version_complete,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_chunk_header = on_chunk_header,
};

/* ---- the API ---- */

int srv_parser_init(srv_parser *p, const srv_limits *lim)
{
	memset(p, 0, sizeof *p);
	int rc = srv_limits_check(lim);
	if (rc)
		return rc;
	p->headers = calloc(lim->max_headers, sizeof *p->headers);
	if (!p->headers)
		return SRV_HTTP_ENOMEM;
	p->lim = lim;
	srv_parser_reset(p);
	return 0;
}

void srv_parser_free(srv_parser *p)
{
	if (!p)
		return;
	free(p->headers);
	p->headers = NULL;
}

void srv_parser_reset(srv_parser *p)
{
	const srv_limits *lim = p->lim;
	srv_header *headers = p->headers;
	memset(p, 0, sizeof *p);
	p->lim = lim;
	p->headers = headers;
	p->phase = PH_IDLE;
	p->frame = FR_SIZE;
	p->max_body = lim ? lim->max_body_bytes : 0;
}

/* A request line llhttp refused: a token method we do not know is 501, the rest 400. */
static int unknown_method(const char *head, size_t len)
{
	size_t i = (len >= 2 && head[0] == '\r') ? 2 : 0, start = i;
	while (i < len && is_tchar((unsigned char)head[i]))
		i++;
	return i > start && i < len && head[i] == ' ' ? SRV_HTTP_EMETHOD : SRV_HTTP_EREQUEST_LINE;
}

/*
 * A version llhttp refused: "HTTP/" DIGIT "." DIGIT CR is well-formed and unsupported (505).
 * The byte after the slice is inside the head, which ends in CRLF CRLF.
 */
static int bad_version(srv_slice v)
{
	if (v.len == 3 && v.ptr[0] >= '0' && v.ptr[0] <= '9' && v.ptr[1] == '.' &&
	    v.ptr[2] >= '0' && v.ptr[2] <= '9' && v.ptr[3] == '\r')
		return SRV_HTTP_EVERSION;
	return SRV_HTTP_EREQUEST_LINE;
}

static int from_llhttp(srv_parser *p, llhttp_errno_t e, const char *head, size_t len)
{
	if (p->err)
		return p->err;
	switch (e) {
	case HPE_INVALID_METHOD:
		return unknown_method(head, len);
	case HPE_INVALID_URL:
		return SRV_HTTP_ETARGET;
	case HPE_INVALID_VERSION:
		return bad_version(p->version);
	case HPE_INVALID_HEADER_TOKEN:
		return p->phase == PH_BODY ? SRV_HTTP_ETRAILER : SRV_HTTP_EHEADER;
	case HPE_INVALID_CONTENT_LENGTH:
		return SRV_HTTP_ECL;
	case HPE_UNEXPECTED_CONTENT_LENGTH:
		return p->seen_te ? SRV_HTTP_ESMUGGLING_CL_TE : SRV_HTTP_ECL_DUPLICATE;
	case HPE_INVALID_TRANSFER_ENCODING:
		return SRV_HTTP_ETE;
	case HPE_INVALID_CHUNK_SIZE:
		return SRV_HTTP_ECHUNK;
	default:
		break;
	}
	switch (p->phase) {
	case PH_REQUEST_LINE:
		return SRV_HTTP_EREQUEST_LINE;
	case PH_HEADERS:
		return SRV_HTTP_EHEADER;
	case PH_BODY:
		return p->req_body == SRV_BODY_CHUNKED ? SRV_HTTP_ECHUNK : SRV_HTTP_EREQUEST;
	default:
		return SRV_HTTP_EREQUEST;
	}
}

int srv_head_parse(srv_parser *p, const char *head, size_t len, srv_request *req)
{
	int rc;
	if (p->phase != PH_IDLE || !p->headers)
		return SRV_HTTP_ESTATE;
	*req = (srv_request){.headers = p->headers};
	p->req = req;
	p->phase = PH_REQUEST_LINE;
	llhttp_init(&p->http, HTTP_REQUEST, &settings);
	p->http.data = p;

	llhttp_errno_t e = llhttp_execute(&p->http, head, len);
	if (e == HPE_PAUSED && p->phase == PH_DONE && !p->err) {
		/* No body: llhttp must have stopped exactly where the scan said the head ends. */
		rc = llhttp_get_error_pos(&p->http) == head + len ? 0 : SRV_HTTP_EREQUEST;
	} else if (e == HPE_OK && p->phase == PH_BODY && !p->err) {
		rc = 0;
	} else if (e == HPE_OK && !p->err) {
		rc = SRV_HTTP_EREQUEST; /* llhttp wants more head than the scan found */
	} else {
		rc = from_llhttp(p, e, head, len);
	}
	p->req_body = req->body;
	p->req = NULL;
	if (rc) {
		p->phase = PH_FAILED;
		p->err = rc;
	}
	return rc;
}

int srv_body_feed(srv_parser *p, const char *data, size_t len, size_t *used, srv_body_fn fn,
                  void *ctx, bool *complete)
{
	*used = 0;
	*complete = false;
	if (p->phase == PH_FAILED)
		return p->err;
	if (p->phase == PH_DONE) {
		*complete = true;
		return 0;
	}
	if (p->phase != PH_BODY)
		return SRV_HTTP_ESTATE;
	if (p->req_body == SRV_BODY_LENGTH && p->http.content_length > body_room(p)) {
		p->err = SRV_HTTP_EBODY_TOO_LARGE;
		p->phase = PH_FAILED;
		return p->err;
	}
	if (len == 0)
		return 0;

	p->fn = fn;
	p->ctx = ctx;
	p->frame_pos = data;
	llhttp_errno_t e = llhttp_execute(&p->http, data, len);
	const char *stop = e == HPE_OK ? data + len : llhttp_get_error_pos(&p->http);
	int rc = 0;
	if (p->fn_err) {
		rc = p->fn_err;
	} else if (p->err || (e != HPE_OK && !(e == HPE_PAUSED && p->phase == PH_DONE))) {
		rc = from_llhttp(p, e, data, len);
	} else if (p->req_body == SRV_BODY_CHUNKED) {
		rc = frame_check(p, p->frame_pos, stop);
		if (!rc && (p->frame == FR_DONE) != (p->phase == PH_DONE))
			rc = SRV_HTTP_ECHUNK; /* one reader saw the end and the other did not */
	}
	p->fn = NULL;
	p->ctx = NULL;
	if (rc) {
		p->phase = PH_FAILED;
		p->err = rc;
		return rc;
	}
	*used = (size_t)(stop - data);
	*complete = p->phase == PH_DONE;
	return 0;
}

const srv_slice *srv_request_header(const srv_request *req, const char *name)
{
	for (size_t i = 0; i < req->header_count; i++)
		if (slice_ieq(req->headers[i].name, name))
			return &req->headers[i].value;
	return NULL;
}

bool srv_request_header_once(const srv_request *req, const char *name, const srv_slice **out)
{
	size_t seen = 0;
	*out = NULL;
	for (size_t i = 0; i < req->header_count; i++) {
		if (slice_ieq(req->headers[i].name, name)) {
			*out = &req->headers[i].value;
			seen++;
		}
	}
	return seen <= 1;
}
