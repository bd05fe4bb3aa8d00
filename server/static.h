/*
 * static.h — serving the static directory (static.c).
 */
#ifndef JIAYIN_SERVER_STATIC_H
#define JIAYIN_SERVER_STATIC_H

#include "entity.h"
#include "server.h"

#define SRV_STATIC_PATH_MAX 255

/* A relative path we are willing to look up: [A-Za-z0-9._-] segments, none empty or dotted. */
bool srv_static_path_ok(const char *p, size_t n);
/* GET/HEAD of static-dir/path (path[0..n), not NUL-terminated): 200/206/304/412/416 or 404. */
void srv_respond_static(srv_exchange *x, const char *path, size_t n);
/*
 * srv_respond_entity() (entity.h), holding a stream buffer (srv_buffer_reserve) when the plan
 * streams a body, and 503 busy (src closed, first freed) when none is to be had; answers that
 * stream nothing (304, 412, 416, HEAD, an empty body) hold none. Ownership as there.
 */
void srv_respond_stream(srv_exchange *x, const srv_entity *e, const srv_plan *plan,
			srv_source *src, char *first, size_t first_len);
/* Route handlers: /assets/{*path} (static-dir/assets/path) and / (static-dir/index.html). */
void srv_handle_static(srv_exchange *x);
void srv_handle_index(srv_exchange *x);

#endif
