/*
 * http_coding.c — Accept-Encoding's gzip, and gzip through zlib (http_coding.h).
 */
#include "http_coding.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

static bool ows(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 9110 5.6.2's tchar. */
static bool tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool named(const char *p, size_t len, const char *name)
{
	return len == strlen(name) && strncasecmp(p, name, len) == 0;
}

/* A qvalue (RFC 9110 12.4.2): "0" ["." 0-3 digits] or "1" ["." 0-3 zeros]. 1 for above 0, 0
 * for 0, -1 for not a qvalue. */
static int qvalue(const char *p, size_t len)
{
	if (len == 0 || len > 5 || (p[0] != '0' && p[0] != '1') || (len > 1 && p[1] != '.'))
		return -1;
	bool above = p[0] == '1';
	for (size_t i = 2; i < len; i++) {
		if (p[i] < '0' || p[i] > '9' || (p[0] == '1' && p[i] != '0'))
			return -1;
		above |= p[i] != '0';
	}
	return above;
}

/* The end of a quoted-string starting at p[i] == '"', past its closing quote; 0 if unclosed. */
static size_t quoted_end(const char *p, size_t i, size_t end)
{
	for (i++; i < end; i++) {
		if (p[i] == '\\')
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
	return 0;
}

/* One list element p[i..]: its coding and weight (-1: it does not parse, or has two). i past the
 * element and its comma. */
static size_t element(const char *p, size_t i, size_t end, const char **coding, size_t *len,
                      int *weight)
{
	size_t c0 = i;
	while (i < end && tchar(p[i]))
		i++;
	*coding = p + c0;
	*len = i - c0;
	*weight = *len ? 1 : -1;
	bool weighed = false;
	for (;;) {
		while (i < end && ows(p[i]))
			i++;
		if (i >= end || p[i] != ';')
			break;
		for (i++; i < end && ows(p[i]);)
			i++;
		size_t n0 = i;
		while (i < end && tchar(p[i]))
			i++;
		size_t n1 = i;
		if (n1 == n0 || i >= end || p[i] != '=') {
			*weight = -1;
			break;
		}
		size_t v0 = ++i, v1;
		if (i < end && p[i] == '"') {
			if (!(v1 = quoted_end(p, i, end))) {
				*weight = -1;
				return end;
			}
			i = v1;
		} else {
			while (i < end && tchar(p[i]))
				i++;
			v1 = i;
		}
		/* One weight at most (RFC 9110 12.5.3: codings [ weight ]): a second spoils it.
		 * v0 == end for "q=" at the value's end: p[v0] is past the slice, not read. */
		if (named(p + n0, n1 - n0, "q")) {
			if (weighed || (v1 > v0 && p[v0] == '"'))
				*weight = -1;
			else if (*weight >= 0)
				*weight = qvalue(p + v0, v1 - v0);
			weighed = true;
		}
	}
	/* Whatever is left up to the next comma spoils the element. */
	while (i < end && p[i] != ',') {
		*weight = -1;
		if (p[i] == '"') {
			size_t q = quoted_end(p, i, end);
			i = q ? q : end;
		} else {
			i++;
		}
	}
	return i < end ? i + 1 : end;
}

bool srv_accepts_gzip(const srv_request *req)
{
	int gzip = -1, star = -1; /* -1: not named; else 0 or 1 */
	for (size_t h = 0; h < req->header_count; h++) {
		if (!named(req->headers[h].name.ptr, req->headers[h].name.len, "Accept-Encoding"))
			continue;
		const char *p = req->headers[h].value.ptr;
		size_t end = req->headers[h].value.len, i = 0;
		while (i < end) {
			while (i < end && (ows(p[i]) || p[i] == ','))
				i++;
			if (i >= end)
				break;
			const char *coding;
			size_t len;
			int weight;
			i = element(p, i, end, &coding, &len, &weight);
			if (weight < 0)
				continue;
			if (named(coding, len, "gzip") || named(coding, len, "x-gzip"))
				gzip = gzip == 0 ? 0 : weight; /* a refusal anywhere stands */
			else if (named(coding, len, "*"))
				star = star == 0 ? 0 : weight;
		}
	}
	return gzip >= 0 ? gzip == 1 : star == 1;
}

bool srv_gzip_type(const char *content_type)
{
	if (!content_type)
		return false;
	size_t n = strcspn(content_type, "; \t");
	return named(content_type, n, "application/json") ||
	       strncasecmp(content_type, "text/", 5) == 0;
}

char *srv_gzip(const void *in, size_t len, size_t *out_len)
{
	if (len < SRV_GZIP_MIN || len > UINT_MAX / 2)
		return NULL;
	z_stream z;
	memset(&z, 0, sizeof z);
	/* 15 + 16: a 32 KiB window, with gzip's header and trailer. */
	if (deflateInit2(&z, SRV_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	size_t cap = len - 1; /* as long as the body, or longer: not worth sending */
	char *out = malloc(cap);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap;
	int rc = out ? deflate(&z, Z_FINISH) : Z_MEM_ERROR;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) { /* Z_OK or Z_BUF_ERROR: it did not fit in len bytes */
		free(out);
		return NULL;
	}
	*out_len = cap - z.avail_out;
	return out;
}
