/*
 * http_limits.c — the defaults of srv_limits and the range check a configuration passes
 * through before the parser uses it. The ranges keep the parser's arithmetic far from
 * overflow and a head's header array small enough to allocate per connection.
 */
#include "http_parse.h"

void srv_limits_init(srv_limits *lim)
{
	*lim = (srv_limits){
	    .max_head_bytes = SRV_MAX_HEAD_BYTES,
	    .max_headers = SRV_MAX_HEADERS,
	    .max_target = SRV_MAX_TARGET,
	    .max_chunk_bytes = SRV_MAX_CHUNK_BYTES,
	    .max_chunk_line = SRV_MAX_CHUNK_LINE,
	    .max_body_bytes = SRV_MAX_BODY_BYTES,
	};
}

int srv_limits_check(const srv_limits *lim)
{
	if (!lim || lim->max_head_bytes < 18 || lim->max_head_bytes > SRV_HEAD_BYTES_CEILING)
		return SRV_HTTP_EINVAL;
	if (lim->max_headers < 1 || lim->max_headers > SRV_HEADERS_CEILING)
		return SRV_HTTP_EINVAL;
	if (lim->max_target < 1 || lim->max_target >= lim->max_head_bytes)
		return SRV_HTTP_EINVAL;
	if (lim->max_chunk_bytes < 1 || lim->max_chunk_line < 1 ||
	    lim->max_chunk_line > SRV_CHUNK_LINE_CEILING)
		return SRV_HTTP_EINVAL;
	return 0;
}
