/*
 * ops.c — the operations endpoints and the route table.
 *
 * GET /healthz answers from the latest storage check (a durable write every
 * health_interval_ms, server.c), so probing it costs no disk I/O: 200 when storage takes
 * writes, 503 with the storage error's code when it does not or when the check has stalled.
 * GET /metrics is the Prometheus text exposition (metrics.c).
 * OPTIONS * (RFC 9110 9.3.7: about the server, not a resource) answers 204 with the methods
 * some route takes, read from the route table so it cannot drift from it.
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_handle_healthz(srv_exchange *x)
{
	srv_server *s = x->srv;
	uint64_t age = uv_now(s->loop) - s->health_at_ms;
	const char *problem = NULL;
	if (s->health_rc < 0)
		problem = store_errcode(s->health_rc);
	else if (age > 5ull * s->cfg.health_interval_ms + 1000)
		problem = "storage_stalled"; /* the last check has not come back */
	char body[256];
	int n;
	if (problem)
		n = snprintf(body, sizeof body,
			     "{\"status\":\"unavailable\",\"storage\":\"%s\",\"checked_ms_ago\":%llu}",
			     problem, (unsigned long long)age);
	else
		n = snprintf(body, sizeof body,
			     "{\"status\":\"ok\",\"storage\":\"ok\",\"checked_ms_ago\":%llu}",
			     (unsigned long long)age);
	srv_respond(x, problem ? 503 : 200, "application/json",
		    "Cache-Control: no-store\r\n", body, (size_t)n);
}

void srv_handle_metrics(srv_exchange *x)
{
	size_t len;
	char *text = srv_metrics_render(x->srv, &len);
	if (!text) {
		srv_respond_error(x, 500, "out_of_memory", "the metrics could not be rendered");
		return;
	}
	srv_respond(x, 200, "text/plain; version=0.0.4; charset=utf-8",
		    "Cache-Control: no-store\r\n", text, len);
	free(text);
}

void srv_handle_options_any(srv_exchange *x)
{
	bool used[SRV_METHOD_PATCH + 1] = {false};
	for (size_t i = 0; i < x->srv->route_count; i++) {
		const srv_route *r = &x->srv->routes[i];
		if ((unsigned)r->method <= SRV_METHOD_PATCH)
			used[r->method] = true;
		if (r->method == SRV_METHOD_GET && (r->flags & SRV_ROUTE_HEAD_OK))
			used[SRV_METHOD_HEAD] = true;
	}
	char allow[128];
	size_t n = (size_t)snprintf(allow, sizeof allow, "Allow: ");
	for (unsigned m = SRV_METHOD_GET; m <= SRV_METHOD_PATCH; m++)
		if (used[m])
			n += (size_t)snprintf(allow + n, sizeof allow - n, "%s%s",
			                      n > sizeof "Allow: " - 1 ? ", " : "",
			                      srv_method_name((srv_method)m));
	snprintf(allow + n, sizeof allow - n, "\r\n");
	srv_respond_head(x, 204, NULL, allow, -1);
}
