/*
 * conn_body.c — where a request's body goes as it is decoded: into the exchange's memory (up to
 * the route's limit), or, for routes flagged SRV_ROUTE_BODY_FILE, into an unnamed temporary
 * file (O_TMPFILE in data/tmp) staged 256 KiB at a time and written with uv_fs_write off the
 * loop while the connection's reading is paused. Loop thread only; conn.c drives it.
 */
#include "conn_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Collects a body into the exchange; the route's limit bounds it (the parser enforces it). */
int conn_collect_body(void *ctx, const char *data, size_t len)
{
	srv_exchange *x = ctx;
	uint64_t limit = x->route ? x->route->max_body : 0;
	if (x->body_len + len > limit)
		return SRV_HTTP_EBODY_TOO_LARGE;
	char *p = realloc(x->body, x->body_len + len + 1);
	if (!p)
		return SRV_HTTP_ENOMEM;
	memcpy(p + x->body_len, data, len);
	x->body = p;
	x->body_len += len;
	p[x->body_len] = 0;
	return 0;
}

/* Stages a file-bound body; the feed is sized so that it always fits (conn_process). */
int conn_stage_body(void *ctx, const char *data, size_t len)
{
	srv_exchange *x = ctx;
	srv_active *a = x->conn->a;
	if (a->stage_len + len > STAGE_BYTES)
		return SRV_HTTP_ESTATE; /* cannot happen: the feed was sized to fit */
	memcpy(a->stage + a->stage_len, data, len);
	a->stage_len += len;
	x->body_len += len;
	return 0;
}

void conn_file_failed(srv_conn *c, int uv_err)
{
	c->srv->metrics.storage_errors++;
	c->keep_alive = false;
	c->state = CONN_HANDLER;
	conn_stop_reading(c);
	bool full = uv_err == UV_ENOSPC || uv_err == -EDQUOT;
	if (uv_err == UV_EBUSY)
		srv_respond_error_with(&c->a->x, 503, "busy", "the server is busy; try again",
				       "Retry-After: 5\r\n");
	else
		srv_respond_error_with(&c->a->x, full ? 507 : 503,
				       full ? "storage_full" : "storage_io_error",
				       full ? "the server's disk is full"
					    : "the upload could not be stored",
				       "Retry-After: 30\r\n");
}

static void on_file_write(uv_fs_t *req);

/* Writes what is staged; reading pauses until it is on disk (backpressure on the client). */
void conn_write_stage(srv_conn *c)
{
	srv_active *a = c->a;
	uv_buf_t b = uv_buf_init(a->stage, (unsigned)a->stage_len);
	a->fs.data = c;
	if (uv_fs_write(c->srv->loop, &a->fs, a->x.body_fd, &b, 1, (int64_t)a->file_off,
			on_file_write) < 0) {
		conn_file_failed(c, UV_EIO);
		return;
	}
	a->fs_busy = true;
	c->refs++;
	conn_stop_reading(c);
	uv_timer_stop(&c->timer); /* our disk, not the client, is the slow one now */
}

static void on_file_write(uv_fs_t *req)
{
	srv_conn *c = req->data;
	srv_active *a = c->a;
	ssize_t n = req->result;
	uv_fs_req_cleanup(req);
	a->fs_busy = false;
	if (!c->closed) {
		if (n < 0) {
			conn_file_failed(c, (int)n);
		} else {
			a->file_off += (uint64_t)n;
			memmove(a->stage, a->stage + n, a->stage_len - (size_t)n);
			a->stage_len -= (size_t)n;
			if (a->stage_len > 0)
				conn_write_stage(c); /* a short write: the rest */
			else
				conn_process(c);
		}
	}
	srv_conn_unref(c);
}

static void on_file_open(uv_fs_t *req)
{
	srv_conn *c = req->data;
	srv_active *a = c->a;
	ssize_t fd = req->result;
	uv_fs_req_cleanup(req);
	a->fs_busy = false;
	if (c->closed) {
		if (fd >= 0)
			close((int)fd);
	} else if (fd < 0) {
		conn_file_failed(c, (int)fd);
	} else {
		a->x.body_fd = (int)fd;
		conn_process(c);
	}
	srv_conn_unref(c);
}

/* An unnamed temporary file (O_TMPFILE) for the body: nothing is left on disk if we die. */
int conn_open_body_file(srv_conn *c)
{
	srv_active *a = c->a;
	if (srv_buffer_reserve(&a->x) < 0)
		return UV_EBUSY;
	if (!a->stage && !(a->stage = malloc(STAGE_BYTES)))
		return UV_ENOMEM;
	a->fs.data = c;
	int r = uv_fs_open(c->srv->loop, &a->fs, c->srv->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC,
			   0600, on_file_open);
	if (r < 0)
		return r;
	a->fs_busy = true;
	c->refs++;
	uv_timer_stop(&c->timer); /* our pool, not the client, is what we wait on */
	return 0;
}
