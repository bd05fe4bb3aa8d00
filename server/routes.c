/*
 * routes.c — the route table of the jiayin program (the list is in routes.h). Kept apart from
 * the library so the end-to-end tests can link the same server with a table that adds
 * test-only routes (tests/server/echo_routes.c) without those routes ever shipping.
 */
#include "routes.h"

const srv_route srv_routes[] = {SRV_PRODUCT_ROUTES};
const size_t srv_route_count = sizeof srv_routes / sizeof srv_routes[0];
