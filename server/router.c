/*
 * router.c — matches a request path against the route table.
 *
 * Patterns are literal segments and `{name}` placeholders that match one non-empty segment
 * (`{*name}`, last in a pattern: the non-empty rest of the path, slashes included);
 * the first route whose pattern and method match wins. A path that matches some pattern but
 * not the method is a 405 with the methods that would do (Allow). Paths are compared as sent:
 * no decoding, no dot-segment folding (the parser refuses what would need them).
 */
#include "server.h"

#include <stdio.h>
#include <string.h>

static bool match(const char *pat, srv_slice path, srv_slice params[SRV_MAX_PARAMS])
{
	size_t i = 0, np = 0;
	const char *p = pat;
	while (*p) {
		if (*p == '{') {
			const char *close = strchr(p, '}');
			if (!close || np == SRV_MAX_PARAMS)
				return false;
			size_t start = i;
			bool tail = p[1] == '*'; /* {*name}: the rest of the path, slashes included */
			while (i < path.len && (tail || path.ptr[i] != '/'))
				i++;
			if (i == start)
				return false;
			params[np++] = (srv_slice){path.ptr + start, i - start};
			p = close + 1;
			continue;
		}
		if (i >= path.len || path.ptr[i] != *p)
			return false;
		i++;
		p++;
	}
	return i == path.len;
}

int srv_route_find(const srv_route *routes, size_t n, srv_method m, srv_slice path,
		   const srv_route **out, srv_slice params[SRV_MAX_PARAMS], char *allow,
		   size_t allow_len)
{
	size_t used = 0;
	bool path_known = false;
	allow[0] = 0;
	for (size_t i = 0; i < n; i++) {
		srv_slice tmp[SRV_MAX_PARAMS];
		memset(tmp, 0, sizeof tmp); /* a pattern's unused parameters are empty, not stack */
		if (!match(routes[i].pattern, path, tmp))
			continue;
		if (routes[i].method == m) {
			memcpy(params, tmp, sizeof tmp);
			*out = &routes[i];
			return 0;
		}
		path_known = true;
		int w = snprintf(allow + used, allow_len - used, "%s%s", used ? ", " : "",
		                 srv_method_name(routes[i].method));
		if (w > 0 && (size_t)w < allow_len - used)
			used += (size_t)w;
		if (routes[i].method == SRV_METHOD_GET && (routes[i].flags & SRV_ROUTE_HEAD_OK)) {
			w = snprintf(allow + used, allow_len - used, ", HEAD");
			if (w > 0 && (size_t)w < allow_len - used)
				used += (size_t)w;
		}
	}
	*out = NULL;
	return path_known ? 405 : 404;
}
