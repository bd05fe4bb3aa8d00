/*
 * static.c — files from the static directory (the web client's assets): GET and HEAD with
 * the same validators, conditionals and ranges as stored clips (entity.c).
 *
 * The path comes from the URL, so it is checked before it touches the file system: only
 * [A-Za-z0-9._-] and '/', no empty, "." or ".." segment, no segment starting with '.', and
 * the file is opened relative to the directory with O_NOFOLLOW on the last component and must
 * be a regular file. Opening, fstat and every read run on the job pool; the descriptor stays
 * open for the response (a file replaced meanwhile is served whole, as it was). The ETag is
 * made from the size and the modification time. Buffer memory (srv_buffer_reserve) is taken
 * only once the answer is known to stream a body: a 304, a HEAD, a 404 or a 416 holds none.
 */
#include "static.h"
#include "entity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct file_job {
	int dir_fd;
	char path[SRV_STATIC_PATH_MAX + 1];
	const srv_request *req;
	bool head_only;
	int64_t date_s; /* the response's Date */
	int fd;
	srv_entity e;
	srv_plan plan;
	char *first;
	size_t got;
	int err; /* errno-style, positive */
} file_job;

static const struct {
	const char *ext, *type;
} types[] = {
	{".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
	{".json", "application/json"},           {".webmanifest", "application/manifest+json"},
	{".svg", "image/svg+xml"},               {".png", "image/png"},
	{".webp", "image/webp"},                 {".jpg", "image/jpeg"},
	{".ico", "image/x-icon"},                {".woff2", "font/woff2"},
	{".ogg", "audio/ogg"},                   {".opus", "audio/ogg"},
	{".mp3", "audio/mpeg"},                  {".txt", "text/plain; charset=utf-8"},
	{".wasm", "application/wasm"},
};

static const char *type_of(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && !strchr(dot, '/'))
		for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
			if (strcmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

bool srv_static_path_ok(const char *p, size_t n)
{
	if (n == 0 || n > SRV_STATIC_PATH_MAX || p[0] == '/' || p[n - 1] == '/')
		return false;
	size_t seg = 0; /* where the current segment starts */
	for (size_t i = 0; i <= n; i++) {
		if (i == n || p[i] == '/') {
			if (i == seg || p[seg] == '.')
				return false; /* empty, ".", ".." or a hidden name */
			seg = i + 1;
			continue;
		}
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int file_read(void *ctx, uint64_t offset, char *buf, size_t cap, size_t *got)
{
	int fd = (int)(intptr_t)ctx;
	ssize_t n = pread(fd, buf, cap, (off_t)offset);
	if (n < 0)
		return -1;
	*got = (size_t)n;
	return 0;
}

static void file_close(void *ctx)
{
	close((int)(intptr_t)ctx);
}

static void open_work(void *arg)
{
	file_job *j = arg;
	/* O_NONBLOCK: opening a FIFO (or a device) would wait for a writer and hold a pool
	 * thread for ever; it changes nothing for the regular files served. */
	j->fd = openat(j->dir_fd, j->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (j->fd < 0) {
		j->err = errno;
		return;
	}
	struct stat st;
	if (fstat(j->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		j->err = ENOENT;
		return;
	}
	srv_entity *e = &j->e;
	e->size = (uint64_t)st.st_size;
	snprintf(e->etag, sizeof e->etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
		 (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
			 (unsigned long long)st.st_mtim.tv_nsec);
	/* Never after the response's Date (RFC 9110 8.8.2.1): a file written within its second. */
	e->last_modified =
	    (int64_t)st.st_mtim.tv_sec < j->date_s ? (int64_t)st.st_mtim.tv_sec : j->date_s;
	e->content_type = type_of(j->path);
	e->cache_control = "no-cache"; /* revalidate: the ETag makes that a 304 */
	srv_entity_plan(j->req, e, &j->plan);
	if ((j->plan.status != 200 && j->plan.status != 206) || j->head_only ||
	    j->plan.length == 0)
		return;
	if (!(j->first = malloc(SRV_STREAM_CHUNK))) {
		j->err = ENOMEM;
		return;
	}
	size_t want = j->plan.length < SRV_STREAM_CHUNK ? (size_t)j->plan.length : SRV_STREAM_CHUNK;
	ssize_t n = pread(j->fd, j->first, want, (off_t)j->plan.offset);
	if (n < 0)
		j->err = errno;
	else
		j->got = (size_t)n;
}

static void open_done(srv_exchange *x, void *arg)
{
	file_job *j = arg;
	if (j->err) {
		if (j->fd >= 0)
			close(j->fd);
		free(j->first);
		if (j->err == ENOENT || j->err == ENOTDIR || j->err == ELOOP || j->err == EACCES)
			srv_respond_error(x, 404, "not_found", "no such file");
		else
			srv_respond_error_with(x, 503, "storage_io_error", "the file could not be read",
					       "Retry-After: 5\r\n");
		free(j);
		return;
	}
	srv_source src = {file_read, file_close, (void *)(intptr_t)j->fd};
	srv_respond_stream(x, &j->e, &j->plan, &src, j->first, j->got);
	free(j);
}

void srv_respond_stream(srv_exchange *x, const srv_entity *e, const srv_plan *plan,
			srv_source *src, char *first, size_t first_len)
{
	bool body = (plan->status == 200 || plan->status == 206) && !x->head_only &&
		    plan->length > 0; /* as srv_respond_entity decides */
	if (body && srv_buffer_reserve(x, srv_stream_first_stage(first_len)) < 0) {
		if (src->close)
			src->close(src->ctx);
		free(first);
		srv_respond_busy(x);
		return;
	}
	srv_respond_entity(x, e, plan, src, first, first_len);
}

void srv_respond_static(srv_exchange *x, const char *path, size_t n)
{
	srv_server *s = x->srv;
	if (s->static_fd < 0 || !srv_static_path_ok(path, n)) {
		srv_respond_error(x, 404, "not_found", "no such file");
		return;
	}
	file_job *j = calloc(1, sizeof *j);
	if (!j) {
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	j->dir_fd = s->static_fd;
	memcpy(j->path, path, n);
	j->path[n] = 0;
	j->req = &x->req;
	j->head_only = x->head_only;
	j->date_s = x->srv->date_s;
	j->fd = -1;
	if (srv_job_submit(x, open_work, open_done, j) < 0) {
		free(j);
		srv_respond_busy(x);
	}
}

void srv_handle_static(srv_exchange *x)
{
	/* /assets/x is static-dir/assets/x: the URL and the tree look the same. */
	char path[SRV_STATIC_PATH_MAX + 1];
	srv_slice p = x->params[0];
	int n = snprintf(path, sizeof path, "assets/%.*s", (int)p.len, p.ptr);
	if (n < 0 || (size_t)n >= sizeof path) {
		srv_respond_error(x, 404, "not_found", "no such file");
		return;
	}
	srv_respond_static(x, path, (size_t)n);
}

void srv_handle_index(srv_exchange *x)
{
	srv_respond_static(x, "index.html", strlen("index.html"));
}
