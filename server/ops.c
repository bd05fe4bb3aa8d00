/*
 * ops.c — the operations endpoints and the route table.
 *
 * GET /healthz answers from the latest storage check (a durable write every
 * health_interval_ms, server.c), so probing it costs no disk I/O: 200 when storage takes
 * writes, 503 with the storage error's code when it does not or when the check has stalled.
 * GET /metrics is the Prometheus text exposition (metrics.c).
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
