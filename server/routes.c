/*
 * routes.c — the route table of the jiayin program. Kept apart from the library so the
 * end-to-end tests can link the same server with a table that adds test-only routes
 * (tests/server/echo_routes.c) without those routes ever shipping.
 */
#include "server.h"
#include "static.h"

const srv_route srv_routes[] = {
	{"healthz", SRV_METHOD_GET, "/healthz", srv_handle_healthz, 0, SRV_ROUTE_HEAD_OK},
	{"metrics", SRV_METHOD_GET, "/metrics", srv_handle_metrics, 0, SRV_ROUTE_HEAD_OK},
	{"index", SRV_METHOD_GET, "/", srv_handle_index, 0, SRV_ROUTE_HEAD_OK},
	{"assets", SRV_METHOD_GET, "/assets/{*path}", srv_handle_static, 0, SRV_ROUTE_HEAD_OK},
};
const size_t srv_route_count = sizeof srv_routes / sizeof srv_routes[0];
