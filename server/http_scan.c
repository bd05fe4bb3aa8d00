/*
 * http_scan.c — finds the end of a request head in a connection's read buffer, before llhttp
 * sees it, and refuses the bytes on which HTTP implementations disagree about where a line or
 * a head ends: CR without LF, LF without CR, control bytes, obs-fold, stray empty lines.
 * Whatever passes has exactly one reading, so llhttp and any proxy in front of us frame it the
 * same way. Stateless: everything the scan needs is in the buffer and `*resume`.
 */
#include "http_parse.h"

#include <string.h>

int srv_head_scan(const char *buf, size_t len, size_t *resume, const srv_limits *lim,
                  size_t *head_len)
{
	const size_t max = lim->max_head_bytes;
	const size_t end = len < max ? len : max;
	size_t i = *resume;

	for (; i < end; i++) {
		const unsigned char c = (unsigned char)buf[i];
		const int line_start = i == 0 || buf[i - 1] == '\n';
		/* The request line starts at 0, or at 2 after the one empty line we allow. */
		const int request_line = i == 0 || (i == 2 && buf[0] == '\r');

		if (c == '\r') {
			if (i + 1 >= end)
				break; /* the LF decides; it is not here yet */
			if (buf[i + 1] != '\n')
				return SRV_HTTP_EBARE_CR;
			if (line_start) {
				if (i == 0) {
					i++; /* the one empty line allowed before a request */
					continue;
				}
				if (request_line)
					return SRV_HTTP_EEMPTY_LINES;
				*resume = i + 2;
				*head_len = i + 2;
				return 1;
			}
			i++;
			continue;
		}
		if (c == '\n')
			return SRV_HTTP_EBARE_LF; /* every LF that ends a line was taken with its CR
			                           */
		if (line_start && (c == ' ' || c == '\t'))
			return request_line ? SRV_HTTP_EREQUEST_LINE : SRV_HTTP_EOBS_FOLD;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return SRV_HTTP_ECONTROL;
	}
	*resume = i;
	if (end < max)
		return 0;
	/*
	 * The blank line's CRLF must end within max bytes; once max are here it cannot. A request
	 * line that has not ended by then has a target longer than max_target (< max): 414, as a
	 * long target that fits is (RFC 9112 3.2), where the head's limit would say 431.
	 */
	const size_t first = buf[0] == '\r' ? 2 : 0;
	const char *sp = memchr(buf + first, ' ', max - first);
	if (sp && !memchr(buf + first, '\n', max - first))
		return SRV_HTTP_ETARGET_TOO_LONG;
	return SRV_HTTP_EHEAD_TOO_LARGE;
}
