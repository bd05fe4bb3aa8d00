/*
 * conn_addr.c — who the client is: the peer's address, or, behind a proxy the configuration
 * trusts, the last address of X-Forwarded-For (the one that proxy added) and its -Proto. Every
 * address goes through one parser and one spelling, so the log and the rate limits see one key
 * per client.
 */
#include "conn_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/*
 * An address as 16 bytes, IPv4 as v4-mapped IPv6, so that "1.2.3.4" and "::ffff:1.2.3.4" meet.
 * The C library's parser, not libuv's: uv_inet_pton() takes "fe80::1%anything" and ignores what
 * follows the '%', which let X-Forwarded-For carry any text into the log and the rate limits.
 */
bool conn_addr16(const char *text, unsigned char out[16])
{
	unsigned char v4[4];
	if (inet_pton(AF_INET, text, v4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, v4, 4);
		return true;
	}
	return inet_pton(AF_INET6, text, out) == 1;
}

/* The canonical text of conn_addr16()'s bytes: dotted IPv4 for a v4-mapped address. */
static void addr16_text(const unsigned char a[16], char out[46])
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(a, mapped, 12) == 0)
		inet_ntop(AF_INET, a + 12, out, 46);
	else
		inet_ntop(AF_INET6, a, out, 46);
}

static bool from_trusted_proxy(const srv_server *s, const char *peer)
{
	unsigned char p[16], t[16];
	if (!s->cfg.trusted_proxy_count || !conn_addr16(peer, p))
		return false;
	for (unsigned i = 0; i < s->cfg.trusted_proxy_count; i++)
		if (conn_addr16(s->cfg.trusted_proxies[i], t) && memcmp(p, t, 16) == 0)
			return true;
	return false;
}

/* The last line of a header: what the proxy nearest to us added comes last. */
static const srv_slice *last_header(const srv_request *req, const char *name)
{
	const srv_slice *v = NULL;
	size_t n = strlen(name);
	for (size_t i = 0; i < req->header_count; i++)
		if (req->headers[i].name.len == n &&
		    strncasecmp(req->headers[i].name.ptr, name, n) == 0)
			v = &req->headers[i].value;
	return v;
}

/* X-Forwarded-For's last address (the one our proxy added) and -Proto, from a trusted peer. */
void conn_forwarded(srv_exchange *x)
{
	snprintf(x->client, sizeof x->client, "%s", x->conn->peer);
	if (!from_trusted_proxy(x->srv, x->conn->peer))
		return;
	const srv_slice *ff = last_header(&x->req, "X-Forwarded-For");
	if (ff && ff->len > 0) {
		size_t start = ff->len;
		while (start > 0 && ff->ptr[start - 1] != ',')
			start--;
		while (start < ff->len && (ff->ptr[start] == ' ' || ff->ptr[start] == '\t'))
			start++;
		size_t n = ff->len - start;
		char addr[46];
		unsigned char a[16];
		if (n > 0 && n < sizeof addr) {
			memcpy(addr, ff->ptr + start, n);
			addr[n] = 0;
			if (conn_addr16(addr, a)) /* one spelling per address, nothing else */
				addr16_text(a, x->client);
		}
	}
	const srv_slice *fp = last_header(&x->req, "X-Forwarded-Proto");
	x->https = fp && fp->len == 5 && strncasecmp(fp->ptr, "https", 5) == 0;
}
