/*
 * conn_body.c — where a request's body goes as it is decoded: into the exchange's memory (up to
 * the route's limit), or, for routes flagged SRV_ROUTE_BODY_FILE, into an unnamed temporary
 * file (O_TMPFILE in data/tmp) staged in memory and written with uv_fs_write off the loop while
 * the connection's reading is paused; or, for SRV_ROUTE_BODY_CLAIM routes, the same way into
 * the file and at the offset the route chose (srv_body_claim), where a body that ends early is
 * not thrown away: what arrived is written, then the route is told how much.
 *
 * The stage is what an upload holds of buffer memory, so its size follows its client: 16 KiB
 * at first, doubled each time it fills within 100 ms (up to 256 KiB: a fast client's body is
 * written in big pieces), and back to 16 KiB when a grown one has not filled within a second.
 * A slow upload thus holds 16 KiB, not 256, however it began. Loop thread only; conn.c drives
 * it.
 */
#include "conn_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Collects a body into the exchange; the route's limit bounds it (the parser enforces it). */
int conn_collect_body(void *ctx, const char *data, size_t len)
{
	srv_exchange *x = ctx;
	uint64_t limit = x->route ? x->route->max_body : 0;
	if (x->body_len + len > limit)
		return SRV_HTTP_EBODY_TOO_LARGE;
	size_t need = x->body_len + len + 1;
	if (need > x->body_cap) {
		/* Doubling, up to the limit: a body that arrives a read at a time is copied a
		 * bounded number of times, not once per read (quadratic in its length). */
		size_t cap = x->body_cap > need / 2 ? 2 * x->body_cap : need;
		if (cap > limit + 1)
			cap = (size_t)limit + 1;
		char *p = realloc(x->body, cap);
		if (!p)
			return SRV_HTTP_ENOMEM;
		x->body = p;
		x->body_cap = cap;
	}
	memcpy(x->body + x->body_len, data, len);
	x->body_len += len;
	x->body[x->body_len] = 0;
	return 0;
}

/* Stages a file-bound body; the feed is sized so that it always fits (conn_process). */
int conn_stage_body(void *ctx, const char *data, size_t len)
{
	srv_exchange *x = ctx;
	srv_active *a = x->conn->a;
	if (a->stage_len + len > a->stage_cap)
		return SRV_HTTP_ESTATE; /* cannot happen: the feed was sized to fit */
	memcpy(a->stage + a->stage_len, data, len);
	a->stage_len += len;
	x->body_len += len;
	return 0;
}

void conn_file_failed(srv_conn *c, int uv_err)
{
	c->srv->metrics.storage_errors++;
	srv_active *a = c->a;
	if (a->claim.done && !a->claim.over) {
		/* What was staged is lost with the write; what is on disk stays the route's. */
		bool full = uv_err == UV_ENOSPC || uv_err == -EDQUOT;
		a->stage_len = 0;
		conn_claim_fail(c, uv_err, full ? 507 : 503, full ? "storage_full" : "storage_io_error",
				full ? "the server's disk is full" : "the upload could not be stored",
				"Retry-After: 30\r\n");
		return;
	}
	conn_end_keep_alive(c);
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

/* The stage at its smallest, empty, from the uploads' part of buffer memory. */
static int stage_open(srv_conn *c)
{
	srv_active *a = c->a;
	if (conn_upload_reserve(&a->x, SRV_STAGE_MIN) < 0)
		return UV_EBUSY;
	char *p = malloc(SRV_STAGE_MIN);
	if (!p)
		return UV_ENOMEM; /* the reservation ends with the exchange */
	free(a->stage);
	a->stage = p;
	a->stage_cap = SRV_STAGE_MIN;
	a->stage_next = 0;
	a->stage_t0 = srv_now_ns();
	return 0;
}

/* The stage is empty: it takes the size decided when it was written (stage_next), if there is
 * room for it, and its clock starts again. */
static void stage_settle(srv_conn *c)
{
	srv_active *a = c->a;
	size_t cap = a->stage_next, old = a->stage_cap;
	a->stage_next = 0;
	a->stage_t0 = srv_now_ns();
	if (!cap || cap == old || a->stage_len > 0 || a->body_complete)
		return;
	/* The uploads' part full, or no memory: it stays as it is. Empty: nothing to copy. */
	if (cap > old && srv_buffer_resize(&a->x, cap) < 0)
		return;
	char *p = malloc(cap);
	if (!p) {
		if (cap > old)
			srv_buffer_resize(&a->x, old);
		return;
	}
	free(a->stage);
	a->stage = p;
	a->stage_cap = cap;
	if (cap < old)
		srv_buffer_resize(&a->x, cap);
}

void conn_write_full_stage(srv_conn *c)
{
	srv_active *a = c->a;
	if (a->stage_cap < SRV_STAGE_MAX && srv_now_ns() - a->stage_t0 <= SRV_STAGE_FAST_NS)
		a->stage_next = a->stage_cap * 2;
	conn_write_stage(c);
}

void conn_wait_body(srv_conn *c)
{
	srv_active *a = c->a;
	unsigned ms = c->srv->cfg.body_idle_ms;
	bool hold = false;
	if (a->stage && a->stage_cap > SRV_STAGE_MIN) {
		uint64_t now = srv_now_ns(), due = a->stage_t0 + SRV_STAGE_HOLD_NS;
		if (now >= due) {
			conn_stage_hold(c);
			return;
		}
		uint64_t left = (due - now + 999999) / 1000000;
		if (left < ms) {
			ms = (unsigned)left;
			hold = true;
		}
	}
	conn_arm(c, ms);
	a->stage_timer = hold;
	conn_start_reading(c);
}

void conn_stage_hold(srv_conn *c)
{
	srv_active *a = c->a;
	a->stage_next = SRV_STAGE_MIN;
	if (a->stage_len > 0) {
		conn_write_stage(c); /* on_file_write settles it, then reads on */
		return;
	}
	stage_settle(c); /* its clock starts again: the next wait is not a hold */
	conn_wait_body(c);
}

static void on_file_write(uv_fs_t *req);

/* Writes what is staged; reading pauses until it is on disk (backpressure on the client). */
void conn_write_stage(srv_conn *c)
{
	srv_active *a = c->a;
	uv_buf_t b = uv_buf_init(a->stage, (unsigned)a->stage_len);
	int fd = a->claim.done ? a->claim.fd : a->x.body_fd;
	a->fs.data = c;
	if (uv_fs_write(c->srv->loop, &a->fs, fd, &b, 1, (int64_t)a->file_off, on_file_write) < 0) {
		conn_file_failed(c, UV_EIO);
		return;
	}
	a->fs_busy = true;
	c->refs++;
	if (c->closed)
		return; /* a claimed body's last bytes, after the client went away */
	conn_stop_reading(c);
	uv_timer_stop(&c->timer); /* our disk, not the client, is the slow one now */
	conn_progress_pause(&a->x);
}

/* Our disk kept the body waiting: that time does not count against the client's rate. */
static void disk_waited(srv_conn *c)
{
	c->a->body_t0 += conn_progress_resume(&c->a->x);
}

static void on_file_write(uv_fs_t *req)
{
	srv_conn *c = req->data;
	srv_active *a = c->a;
	ssize_t n = req->result;
	uv_fs_req_cleanup(req);
	a->fs_busy = false;
	disk_waited(c);
	bool claimed = a->claim.done && !a->claim.over; /* its bytes matter even after a close */
	if (n == 0)
		n = UV_EIO; /* a write that takes nothing would never end */
	if (c->closed && !claimed) {
		/* nothing more to do */
	} else if (n < 0) {
		conn_file_failed(c, (int)n);
	} else {
		a->file_off += (uint64_t)n;
		if (claimed && a->claim.written)
			a->claim.written(a->claim.arg, a->file_off);
		memmove(a->stage, a->stage + n, a->stage_len - (size_t)n);
		a->stage_len -= (size_t)n;
		if (a->stage_len > 0)
			conn_write_stage(c); /* a short write: the rest */
		else if (claimed && a->claim.err)
			conn_claim_fail(c, a->claim.err, 0, NULL, NULL, NULL); /* ending: tell the route */
		else {
			stage_settle(c);
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
	disk_waited(c);
	if (c->closed) {
		if (fd >= 0)
			close((int)fd);
	} else if (fd < 0) {
		conn_file_failed(c, (int)fd);
	} else {
		a->x.body_fd = (int)fd;
		/* The stage's first fill is timed from here: the open took our time, not the
		 * client's. */
		a->stage_t0 = srv_now_ns();
		conn_process(c);
	}
	srv_conn_unref(c);
}

/* An unnamed temporary file (O_TMPFILE) for the body: nothing is left on disk if we die. */
int conn_open_body_file(srv_conn *c)
{
	srv_active *a = c->a;
	int r = stage_open(c);
	if (r < 0)
		return r;
	a->fs.data = c;
	r = uv_fs_open(c->srv->loop, &a->fs, c->srv->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600,
	               on_file_open);
	if (r < 0)
		return r;
	a->fs_busy = true;
	c->refs++;
	uv_timer_stop(&c->timer); /* our pool, not the client, is what we wait on */
	conn_progress_pause(&a->x);
	return 0;
}

/*
 * A claimed body ended early. The first reason counts (and the answer owed for it); the
 * connection stops reading, or is closed when nobody is left to answer. What is staged is
 * written first (on_file_write comes back here), then the route is told, once.
 */
void conn_claim_fail(srv_conn *c, int err, int status, const char *code, const char *message,
		     const char *extra)
{
	srv_active *a = c->a;
	if (a->claim.over)
		return;
	if (!a->claim.err) {
		a->claim.err = err;
		a->claim.status = status;
		a->claim.code = code;
		a->claim.message = message;
		a->claim.extra = extra;
		conn_end_keep_alive(c);
		if (!c->closed) {
			c->state = CONN_HANDLER;
			conn_stop_reading(c);
			uv_timer_stop(&c->timer);
			if (status == 0)
				srv_conn_close(c); /* the client is gone: nothing to answer */
		}
	}
	if (a->fs_busy || a->claim.over)
		return; /* the write in flight comes back here */
	if (a->stage_len > 0) {
		conn_write_stage(c);
		return;
	}
	a->claim.over = true;
	a->x.body_len = a->file_off - a->claim.start;
	a->claim.done(&a->x, a->claim.arg, a->claim.err);
}

void conn_claim_parse_failed(srv_conn *c, int parse_err)
{
	srv_active *a = c->a;
	if (parse_err == SRV_HTTP_EBODY_TOO_LARGE && a->claim.limit_status) {
		conn_claim_fail(c, UV_EFBIG, a->claim.limit_status, a->claim.limit_code,
		                a->claim.limit_message, a->claim.limit_extra);
		return;
	}
	c->srv->metrics.parse_errors++;
	conn_claim_fail(c, UV_EPROTO, srv_parse_status(parse_err), srv_parse_errcode(parse_err),
	                srv_parse_strerror(parse_err), NULL);
}

void srv_body_on_written(srv_exchange *x, srv_body_written_fn fn)
{
	x->conn->a->claim.written = fn;
}

void srv_body_limit_answer(srv_exchange *x, int status, const char *code, const char *message,
                           const char *extra)
{
	srv_active *a = x->conn->a;
	a->claim.limit_status = status;
	a->claim.limit_code = code;
	a->claim.limit_message = message;
	a->claim.limit_extra = extra;
}

int srv_body_claim(srv_exchange *x, int fd, uint64_t offset, uint64_t max, srv_body_done_fn done,
		   void *arg)
{
	srv_conn *c = x->conn;
	srv_active *a = c->a;
	if (c->closed)
		return UV_ECANCELED;
	if (!x->route || !(x->route->flags & SRV_ROUTE_BODY_CLAIM) || a->claim.done ||
	    x->responded || c->state != CONN_HANDLER || fd < 0 || !done)
		return UV_EINVAL;
	int r = stage_open(c);
	if (r < 0)
		return r;
	a->claim.done = done;
	a->claim.arg = arg;
	a->claim.fd = fd;
	a->claim.start = offset;
	a->file_off = offset;
	a->stage_len = 0;
	a->parser.max_body = max < x->route->max_body ? max : x->route->max_body;
	x->body_len = 0;
	/* The body will be read: the connection may go on, unless it was told to end meanwhile
	 * (conn_end_keep_alive: SIGTERM's drain, the client's EOF). */
	c->keep_alive = a->claim.keep_alive && !c->srv->draining;
	c->state = CONN_BODY;
	a->body_in = 0;
	a->body_t0 = srv_now_ns();
	conn_progress_start(x, a->body_t0, 0);
	bool has_body = x->req.body == SRV_BODY_CHUNKED ||
			(x->req.body == SRV_BODY_LENGTH && x->req.content_length > 0);
	if (has_body && x->req.expect_continue && c->len == c->body_start &&
	    x->req.content_length <= a->parser.max_body)
		conn_send_continue(c);
	conn_arm(c, c->srv->cfg.body_idle_ms);
	conn_process(c);
	return 0;
}

void srv_body_cut(srv_exchange *x)
{
	srv_conn *c = x->conn;
	srv_active *a = c->a;
	if (c->closed || !a->claim.done || a->claim.over || a->claim.err || a->claim.eof ||
	    a->claim.cut)
		return;
	a->claim.cut = true;
	conn_end_keep_alive(c);
	/* What the kernel holds for us now arrived before the cut: it is read first. */
	int fd = -1, pending = 0;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || ioctl(fd, FIONREAD, &pending) < 0)
		pending = 0;
	if (pending > 0) {
		a->claim.cut_left = (uint64_t)pending;
		conn_start_reading(c); /* unless a write is in flight: it resumes reading after */
		return;
	}
	a->claim.eof = true;
	conn_stop_reading(c);
	conn_process(c);
}

void srv_body_refuse(srv_exchange *x, int status, const char *code, const char *message,
                     const char *extra)
{
	srv_conn *c = x->conn;
	srv_active *a = c->a;
	/* A body whose last byte is in (its last write perhaps still in flight) is taken: it is
	 * here, and the phone would only send it again. */
	if (c->closed || !a->claim.done || a->claim.over || a->claim.err || a->body_complete)
		return;
	conn_claim_fail(c, UV_EFBIG, status, code, message, extra);
}

void srv_respond_body_failure(srv_exchange *x)
{
	srv_active *a = x->conn->a;
	if (x->conn->closed) {
		conn_log_unanswered(x->conn); /* the client is gone: nobody to tell */
		return;
	}
	if (!a->claim.status) {
		srv_conn_close(x->conn); /* cannot happen: an open connection is owed an answer */
		return;
	}
	srv_respond_error_with(x, a->claim.status, a->claim.code, a->claim.message, a->claim.extra);
}
