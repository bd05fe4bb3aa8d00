/*
 * echo_routes.c — the route table of jiayin-test: the real server's routes plus some that
 * exist only for the end-to-end tests (this file is never linked into jiayin):
 *   POST /echo     takes a body up to 1 MiB and answers its length and FNV-1a hash, so tests
 *                  can check bodies arrive intact (chunked, pipelined, slow, 100-continue);
 *   POST /echo?work=MS  does the same after MS milliseconds of blocking work on the job pool,
 *                  so tests can fill the job queue and watch 503s and graceful shutdown;
 *   POST /echo-file  the same for a body of up to 8 MiB that the server puts in a temporary
 *                  file (SRV_ROUTE_BODY_FILE), read back on the job pool;
 *   POST /clips    stores its body (as it is, no transcoding) as a message of a test family
 *                  and answers {"family", "message"};
 *   GET  /clips/{family}/{message}  serves it through srv_respond_message_audio(), the path
 *                  the API's audio endpoint takes: conformance tests and the benchmark use it.
 *   GET  /storage-failed/{n}  answers as an API endpoint does when storage returned -n, so a
 *                  test can check every storage error reaches clients as a documented code.
 */
#include "api_internal.h"
#include "audio.h"
#include "routes.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct echo_job {
	unsigned ms;
	size_t len;
	uint64_t hash;
} echo_job;

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
	return h;
}

static void answer(srv_exchange *x, size_t len, uint64_t hash)
{
	char body[128];
	int n = snprintf(body, sizeof body, "{\"bytes\":%zu,\"fnv1a\":\"%016llx\"}", len,
			 (unsigned long long)hash);
	srv_respond(x, 200, "application/json", NULL, body, (size_t)n);
}

static void echo_work(void *arg)
{
	echo_job *j = arg;
	usleep(j->ms * 1000u);
}

static void echo_done(srv_exchange *x, void *arg)
{
	echo_job *j = arg;
	answer(x, j->len, j->hash);
	free(j);
}

static void echo(srv_exchange *x)
{
	unsigned ms = 0;
	if (x->req.query.ptr && x->req.query.len > 5 && memcmp(x->req.query.ptr, "work=", 5) == 0)
		ms = (unsigned)strtoul(x->req.query.ptr + 5, NULL, 10) % 60000;
	uint64_t hash = fnv1a(x->body ? x->body : "", x->body_len);
	if (!ms) {
		answer(x, x->body_len, hash);
		return;
	}
	echo_job *j = malloc(sizeof *j);
	if (!j) {
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	*j = (echo_job){ms, x->body_len, hash};
	if (srv_job_submit(x, echo_work, echo_done, j) < 0) {
		free(j);
		srv_respond(x, 503, "application/json", "Retry-After: 1\r\n",
			    "{\"error\":{\"code\":\"busy\",\"message\":\"too much work queued\"}}",
			    strlen("{\"error\":{\"code\":\"busy\",\"message\":\"too much work queued\"}}"));
	}
}

typedef struct file_job {
	int fd;
	size_t len, got;
	uint64_t hash;
	int err;
} file_job;

static void file_hash(void *arg)
{
	file_job *j = arg;
	char buf[65536];
	j->hash = 0xcbf29ce484222325ull;
	while (j->got < j->len) {
		ssize_t n = pread(j->fd, buf, sizeof buf, (off_t)j->got);
		if (n <= 0) {
			j->err = 1;
			return;
		}
		for (ssize_t i = 0; i < n; i++)
			j->hash = (j->hash ^ (unsigned char)buf[i]) * 0x100000001b3ull;
		j->got += (size_t)n;
	}
}

static void file_hashed(srv_exchange *x, void *arg)
{
	file_job *j = arg;
	if (j->err)
		srv_respond_error(x, 500, "read_back", "the body file could not be read");
	else
		answer(x, j->got, j->hash);
	free(j);
}

static void echo_file(srv_exchange *x)
{
	file_job *j = calloc(1, sizeof *j);
	if (!j || x->body || (x->body_len && x->body_fd < 0)) {
		free(j);
		srv_respond_error(x, 500, "body_in_memory", "the body should be in a file");
		return;
	}
	j->fd = x->body_fd;
	j->len = x->body_len;
	if (srv_job_submit(x, file_hash, file_hashed, j) < 0) {
		free(j);
		srv_respond_error(x, 503, "busy", "too much work queued");
	}
}

typedef struct clip_job {
	store *st;
	char *audio;
	size_t len;
	store_family fam;
	store_member member;
	store_message msg;
	int rc;
} clip_job;

static void clip_store(void *arg)
{
	clip_job *j = arg;
	static uint8_t wave[STORE_WAVEFORM_POINTS];
	j->rc = store_family_create(j->st, "test", "sender", 0, 1700000000000, &j->fam, &j->member);
	if (j->rc < 0)
		return;
	store_new_message m = {.sender = j->member.id.s,
			       .created_ms = 1700000000000,
			       .duration_ms = 1000,
			       .lufs = -16,
			       .waveform = wave,
			       .audio = (const uint8_t *)j->audio,
			       .audio_len = j->len};
	int existed = 0;
	j->rc = store_message_append(j->st, j->fam.id.s, &m, &j->msg, &existed);
}

static void clip_stored(srv_exchange *x, void *arg)
{
	clip_job *j = arg;
	if (j->rc < 0) {
		srv_respond_error(x, 503, store_errcode(j->rc), store_strerror(j->rc));
	} else {
		char body[128];
		int n = snprintf(body, sizeof body, "{\"family\":\"%s\",\"message\":\"%s\"}",
				 j->fam.id.s, j->msg.id.s);
		srv_respond(x, 201, "application/json", NULL, body, (size_t)n);
	}
	free(j->audio);
	free(j);
}

static void clip_post(srv_exchange *x)
{
	clip_job *j = calloc(1, sizeof *j);
	if (!j || !x->body_len) {
		free(j);
		srv_respond_error(x, 400, "empty", "a clip needs a body");
		return;
	}
	j->st = x->srv->store;
	j->audio = x->body; /* taken over */
	j->len = x->body_len;
	x->body = NULL;
	x->body_len = 0;
	if (srv_job_submit(x, clip_store, clip_stored, j) < 0) {
		free(j->audio);
		free(j);
		srv_respond_error(x, 503, "busy", "too much work queued");
	}
}

static void clip_get(srv_exchange *x)
{
	char fam[64], msg[64];
	snprintf(fam, sizeof fam, "%.*s", (int)x->params[0].len, x->params[0].ptr);
	snprintf(msg, sizeof msg, "%.*s", (int)x->params[1].len, x->params[1].ptr);
	srv_respond_message_audio(x, fam, msg, false);
}

static void storage_failed(srv_exchange *x)
{
	char n[16];
	snprintf(n, sizeof n, "%.*s", (int)x->params[0].len, x->params[0].ptr);
	api_storage_failed(x, -atoi(n));
}

const srv_route srv_routes[] = {
    SRV_PRODUCT_ROUTES,
    {"echo", SRV_METHOD_POST, "/echo", echo, 1u << 20, 0},
    {"echo-file", SRV_METHOD_POST, "/echo-file", echo_file, 8u << 20, SRV_ROUTE_BODY_FILE},
    {"clips.post", SRV_METHOD_POST, "/clips", clip_post, 32u << 20, 0},
    {"clips.get", SRV_METHOD_GET, "/clips/{family}/{message}", clip_get, 0, SRV_ROUTE_HEAD_OK},
    {"storage-failed", SRV_METHOD_GET, "/storage-failed/{n}", storage_failed, 0, 0},
};
const size_t srv_route_count = sizeof srv_routes / sizeof srv_routes[0];
