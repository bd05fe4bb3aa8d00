/*
 * response.c — formats a response head and hands it to the connection.
 *
 * Every response carries the security headers (nosniff, no referrer, a CSP that forbids all
 * for non-HTML and allows only our own origin for HTML, no framing) and no Server header;
 * Content-Length always (HEAD too, with no body); Connection: close when the connection ends
 * after it. Error bodies are JSON with a stable code (docs/api.md). A route may add its
 * protocol's headers to every answer of an exchange (x->always_headers) and take one answer
 * over to reshape it (x->respond_hook: resumable uploads answer the plain upload's 201 as tus's
 * 204). JSON and text of SRV_GZIP_MIN bytes or more go gzipped to a client that takes it
 * (http_coding.h), on the loop unless a job made it on the pool (srv_respond_coded).
 */
#include "http_coding.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *srv_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 423: return "Locked";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}

#define HTML_CSP                                                                                  \
	"default-src 'self'; img-src 'self' data:; media-src 'self' blob:; object-src 'none'; "    \
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

size_t srv_format_head(srv_exchange *x, int status, const char *content_type,
		       const char *extra_headers, int64_t content_length, char *head, size_t cap)
{
	srv_conn *c = x->conn;
	bool html = content_type && strncmp(content_type, "text/html", 9) == 0;
	char cl[48] = "";
	if (content_length >= 0)
		snprintf(cl, sizeof cl, "Content-Length: %lld\r\n", (long long)content_length);
	int n = snprintf(head, cap,
			 "HTTP/1.1 %d %s\r\n"
			 "Date: %s\r\n"
			 "%s%s%s"
			 "%s"
			 "X-Request-Id: %016llx\r\n"
			 "X-Content-Type-Options: nosniff\r\n"
			 "Referrer-Policy: no-referrer\r\n"
			 "Content-Security-Policy: %s\r\n"
			 "%s%s%s\r\n",
			 status, srv_status_text(status), x->srv->date,
			 content_type ? "Content-Type: " : "", content_type ? content_type : "",
			 content_type ? "\r\n" : "", cl, (unsigned long long)x->id,
			 html ? HTML_CSP : "default-src 'none'; frame-ancestors 'none'",
			 c->keep_alive ? (x->req.version_minor == 0 ? "Connection: keep-alive\r\n" : "")
				       : "Connection: close\r\n",
			 extra_headers ? extra_headers : "",
			 x->always_headers ? x->always_headers : "");
	if (n < 0 || (size_t)n >= cap) {
		/* Only our own extra headers could overflow: a bug, answered plainly. */
		n = snprintf(head, cap,
			     "HTTP/1.1 500 Internal Server Error\r\nDate: %s\r\nContent-Length: 0\r\n"
			     "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
			     "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
			     "Connection: close\r\n\r\n",
			     x->srv->date);
		c->keep_alive = false;
		x->status = 500;
	}
	return (size_t)n;
}

void srv_respond(srv_exchange *x, int status, const char *content_type, const char *extra_headers,
		 const void *body, size_t len)
{
	srv_respond_coded(x, status, content_type, extra_headers, body, len, SRV_CODING_AUTO);
}

#define VARY "Vary: Accept-Encoding\r\n"
#define GZIPPED "Content-Encoding: gzip\r\n" VARY

void srv_respond_coded(srv_exchange *x, int status, const char *content_type,
                       const char *extra_headers, const void *body, size_t len, srv_coding coding)
{
	if (x->responded)
		return;
	if (x->respond_hook) {
		if (coding == SRV_CODING_GZIP) { /* a bug: the hook cannot read it */
			x->respond_hook = NULL;
			srv_respond_error(x, 500, "internal_error", "the answer could not be sent");
			return;
		}
		/* The route answers in this answer's place (it may call srv_respond itself). */
		srv_respond_hook_fn hook = x->respond_hook;
		x->respond_hook = NULL;
		hook(x, status, content_type, extra_headers, body, len);
		return;
	}
	char *gz = NULL;
	char extra[1024];
	bool codable = coding == SRV_CODING_GZIP ||
	               (len >= SRV_GZIP_MIN && srv_gzip_type(content_type) && status != 204);
	if (codable) {
		size_t gz_len = 0;
		if (coding == SRV_CODING_AUTO && x->accepts_gzip &&
		    (gz = srv_gzip(body, len, &gz_len))) {
			body = gz;
			len = gz_len;
			coding = SRV_CODING_GZIP;
		}
		int n = snprintf(extra, sizeof extra, "%s%s", extra_headers ? extra_headers : "",
		                 coding == SRV_CODING_GZIP ? GZIPPED : VARY);
		if (n < 0 || (size_t)n >= sizeof extra) {
			free(gz);
			srv_respond_error(x, 500, "internal_error", "the answer could not be sent");
			return;
		}
		extra_headers = extra;
	}
	x->responded = true;
	x->status = status;
	char head[2048];
	size_t n = srv_format_head(x, status, content_type, extra_headers, (int64_t)len, head,
				   sizeof head);
	if (x->status == 500 && status != 500)
		len = 0;
	srv_conn_write(x->conn, head, n, x->head_only ? NULL : body, x->head_only ? 0 : len);
	free(gz);
}

void srv_respond_head(srv_exchange *x, int status, const char *content_type,
		      const char *extra_headers, int64_t content_length)
{
	if (x->responded)
		return;
	x->responded = true;
	x->status = status;
	char head[2048];
	size_t n = srv_format_head(x, status, content_type, extra_headers, content_length, head,
				   sizeof head);
	srv_conn_write(x->conn, head, n, NULL, 0);
}

/* JSON string contents: quotes, backslashes and control bytes escaped. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	for (; *s && o + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = 0;
	return o;
}

void srv_respond_error(srv_exchange *x, int status, const char *code, const char *message)
{
	srv_respond_error_with(x, status, code, message, NULL);
}

void srv_respond_error_with(srv_exchange *x, int status, const char *code, const char *message,
			    const char *extra_headers)
{
	char msg[512], body[700];
	json_escape(msg, sizeof msg, message);
	int n = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
			 msg);
	srv_respond(x, status, "application/json", extra_headers, body, (size_t)n);
}

void srv_respond_busy(srv_exchange *x)
{
	srv_respond_error_with(x, 503, "busy", "the server is busy; try again", "Retry-After: 1\r\n");
}

void srv_respond_job_refused(srv_exchange *x, int rc)
{
	if (rc == SRV_JOB_FAMILY_FULL)
		srv_respond_error_with(x, 503, "busy",
		                       "this family's recordings are already waiting their turn; "
		                       "try again in a moment",
		                       "Retry-After: 2\r\n");
	else
		srv_respond_busy(x);
}
