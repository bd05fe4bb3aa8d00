/*
 * api_uploads.c — resumable uploads: the tus 1.0.0 protocol (core, creation, termination,
 * expiration; OPTIONS discovery) under /v1/uploads, so a recording interrupted by a dropped
 * signal resumes where the server's durable offset says. The finished upload becomes a message
 * through the plain upload's own steps (api_upload_work, api_upload_done), its answer reshaped
 * into tus's 204; the files and records are uploads.c's.
 *
 * An upload belongs to the device (and member) that created it: its files live in that
 * device's directory, so another device finds nothing (404, like an unknown id). One request
 * at a time works on an upload: a lock table on the loop, taken only once a job has found the
 * caller is the upload's own (so no one else's request, however many, keeps it from its owner);
 * another of the owner's requests for it meanwhile is answered 423 upload_locked
 * (upload_state.c), and a HEAD or DELETE also cuts a PATCH still receiving for it, because a
 * client that resumes has lost that connection even if the server has not noticed yet (the cut
 * PATCH keeps the bytes it received). PATCH bodies are claimed bodies (server.h): the engine
 * writes them into the .part at the offset, off the loop; then a job fsyncs and moves the
 * record's offset, and when the offset reaches the length, transcodes and stores the message
 * before the 204. Every file touch is on the job pool.
 */
#include "api_internal.h"
#include "tus_metadata.h"
#include "api_uploads.h"
#include "routes.h"
#include "upload_state.h"
#include "uploads.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define TUS_HEADER "Tus-Resumable: 1.0.0\r\n"

/* Outcomes of our own, next to uploads.c's SRV_UPLOAD_E* and -errno. */
enum {
	TUS_EMISMATCH = -20001, /* Upload-Offset is not the upload's offset: 409 */
	TUS_EOVERFLOW = -20002, /* the body would pass Upload-Length: 413 */
	TUS_ERECIPIENT = -20003, /* `to` is not a member of the family: 400 */
};

enum { OP_CREATE, OP_HEAD, OP_GET, OP_PATCH, OP_DELETE };

/* One request's state, from its handler to its answer (across its jobs and its body). */
typedef struct tus_op {
	api_job j;             /* first: api_job_run() runs it, the steps cast back to the op */
	api_job fin;           /* the whole upload, through the plain upload's steps */
	struct srv_uploads *up;
	int kind;
	char id[STORE_ID_LEN + 1];
	upload_lock *lock;     /* held by this request (its step under the lock); else NULL */
	api_work_fn step_work; /* HEAD, PATCH, DELETE: what runs under the lock (op_submit_owned) */
	api_done_fn step_done;
	srv_upload u;          /* the record */
	int rc;                /* the step's outcome: 0, TUS_E*, SRV_UPLOAD_E* or -errno */
	int store_rc;          /* a storage call's, answered as storage's */
	unsigned cap;          /* creation: the device's cap */
	int fd;                /* PATCH: the .part the body goes to */
	uint64_t want_offset;  /* PATCH: Upload-Offset */
	uint64_t declared;     /* PATCH: Content-Length (0 when chunked: the claim bounds it) */
	int body_status;       /* PATCH: how the body ended (0, or why not) */
	uint64_t written;      /* PATCH: bytes of it in the .part */
	bool finished;         /* fin ran: the upload was whole */
	bool whole;            /* HEAD: whole but not yet a message; fin runs next */
	bool pending;          /* PATCH: counted among its upload's pending ones (upload_state.h) */
	bool claiming;         /* PATCH: inside srv_body_claim() */
	bool claim_failed;     /* PATCH: the body ended at once and its job did not start */
} tus_op;

/* ---- requests ---- */
/*
 * Give the upload back before answering: an answer written at once lets the connection start
 * its next, pipelined request right away, which must find the upload free (it met a 423
 * from the lock of the request before it).
 */
static void op_unlock(tus_op *op)
{
	if (op->lock)
		srv_upload_lock_release(op->up, op->lock);
	op->lock = NULL;
	if (op->fd >= 0)
		close(op->fd);
	op->fd = -1;
}

static void op_end(tus_op *op)
{
	if (op->pending)
		srv_upload_pending_drop(op->up, op->id, op->j.token_hash);
	if (op->lock)
		srv_upload_lock_release(op->up, op->lock);
	if (op->fd >= 0)
		close(op->fd);
	sodium_memzero(op->j.token_hash, sizeof op->j.token_hash);
	sodium_memzero(op->fin.token_hash, sizeof op->fin.token_hash);
	free(op);
}

/* The header `name` at most once (*out NULL when absent); false when it came twice. */
static bool one_header(srv_exchange *x, const char *name, const srv_slice **out)
{
	size_t n = strlen(name), seen = 0;
	*out = NULL;
	for (size_t i = 0; i < x->req.header_count; i++) {
		const srv_header *h = &x->req.headers[i];
		if (h->name.len == n && strncasecmp(h->name.ptr, name, n) == 0) {
			*out = &h->value;
			seen++;
		}
	}
	return seen <= 1;
}

/* tus's version check (one Tus-Resumable: 1.0.0); every answer of the exchange says it too. */
static bool tus_begin(srv_exchange *x)
{
	x->always_headers = TUS_HEADER;
	const srv_slice *v;
	if (one_header(x, "Tus-Resumable", &v) && v && v->len == 5 &&
	    memcmp(v->ptr, "1.0.0", 5) == 0)
		return true;
	srv_respond_error_with(x, 412, "tus_version_unsupported",
			       "this server speaks tus 1.0.0: send Tus-Resumable: 1.0.0",
			       "Tus-Version: 1.0.0\r\n");
	return false;
}

/* A non-negative decimal integer, nothing else (no sign, no space), below 10^19. */
static bool parse_u64(const srv_slice *s, uint64_t *out)
{
	if (!s || s->len == 0 || s->len > 19)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < s->len; i++) {
		if (s->ptr[i] < '0' || s->ptr[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s->ptr[i] - '0');
	}
	*out = v;
	return true;
}

static void http_date(int64_t ms, char out[40])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* A job for the caller, with the path's upload id; NULL after answering (401 without a token,
 * 500). An id that cannot be one stays empty: the caller is checked first (a bad token is 401),
 * then load() finds nothing under it (404). */
static tus_op *op_start(srv_exchange *x, int kind, bool has_id)
{
	api_job *a = api_authed_job(x, NULL, NULL);
	if (!a)
		return NULL;
	tus_op *op = calloc(1, sizeof *op);
	if (!op) {
		free(a);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return NULL;
	}
	op->j = *a;
	sodium_memzero(a, sizeof *a);
	free(a);
	op->j.st = x->srv->store;
	op->j.secret = x->srv->secret;
	op->j.default_quota = x->srv->cfg.family_quota; /* families stored without a quota */
	op->up = x->srv->uploads;
	op->kind = kind;
	op->fd = -1;
	if (!has_id)
		return op;
	srv_slice p = x->params[0];
	if (p.len != STORE_ID_LEN)
		return op;
	memcpy(op->id, p.ptr, STORE_ID_LEN);
	op->id[STORE_ID_LEN] = '\0';
	if (store_id_check(op->id) < 0)
		op->id[0] = '\0';
	return op;
}

/* Authentication and then the step's work on the pool; the step's done on the loop. */
static void op_after(srv_exchange *x, void *arg)
{
	tus_op *op = arg;
	if (op->j.authed && op->j.auth_rc < 0) {
		if (op->j.auth_rc == STORE_ENOTFOUND)
			srv_respond_error_with(x, 401, "unauthorized", "the token is not valid",
					       "WWW-Authenticate: Bearer\r\n");
		else
			api_storage_failed(x, op->j.auth_rc);
		op_end(op);
		return;
	}
	op->j.done(x, &op->j);
}

/* Submits the step; false after answering 503 busy and ending the request. */
static bool op_submit(srv_exchange *x, tus_op *op, api_work_fn work, api_done_fn done)
{
	op->j.work = work;
	op->j.done = done;
	if (srv_job_submit(x, api_job_run, op_after, op) == 0)
		return true;
	srv_respond_busy(x);
	op_end(op);
	return false;
}

static void answer_failure(srv_exchange *x, const tus_op *op)
{
	if (op->store_rc < 0) {
		api_storage_failed(x, op->store_rc);
		return;
	}
	switch (op->rc) {
	case SRV_UPLOAD_ENOTFOUND:
		srv_respond_error(x, 404, "not_found", "no such upload (or it expired)");
		return;
	case SRV_UPLOAD_ETOOMANY:
		srv_respond_error(x, 429, "too_many_uploads",
				  "this device has too many unfinished uploads: finish or delete one");
		return;
	case TUS_EMISMATCH:
		srv_respond_error(x, 409, "offset_mismatch",
				  "Upload-Offset is not the upload's offset: ask with HEAD");
		return;
	case TUS_EOVERFLOW:
		srv_respond_error(x, 413, "beyond_upload_length",
				  "the body would go past Upload-Length");
		return;
	case TUS_ERECIPIENT:
		srv_respond_error(x, 400, "invalid_recipient", "to: no such member in this family");
		return;
	case SRV_UPLOAD_ECORRUPT:
		x->srv->metrics.storage_errors++;
		srv_respond_error_with(x, 503, "storage_corrupt", "the upload's record is damaged",
				       "Retry-After: 5\r\n");
		return;
	case -ENOSPC:
	case -EDQUOT:
		x->srv->metrics.storage_errors++;
		srv_respond_error_with(x, 507, "storage_full", "the server's disk is full",
				       "Retry-After: 30\r\n");
		return;
	default:
		x->srv->metrics.storage_errors++;
		srv_respond_error_with(x, 503, "storage_io_error", "the upload could not be stored",
				       "Retry-After: 5\r\n");
		return;
	}
}

/*
 * Another request works on the upload. A HEAD or DELETE also cuts a PATCH still receiving (or
 * about to): a client resumes only once it lost that PATCH's connection, even if the server
 * has not noticed. The cut PATCH keeps what reached us, and the lock goes in a moment.
 */
static void answer_locked(srv_exchange *x, tus_op *op, bool cut_receiver)
{
	upload_lock *l = srv_upload_lock_find(op->up, op->id);
	if (cut_receiver && l && l->holder != x) {
		l->cut = true;
		if (l->receiving)
			srv_body_cut(l->holder);
	}
	srv_respond_error_with(x, 423, "upload_locked",
			       "another request is working on this upload; try again in a moment",
			       "Retry-After: 1\r\n");
}

/* The upload's offset, its length, when it expires and (once it is one) its message. */
static void answer_offset(srv_exchange *x, const tus_op *op, int status, const char *message_id)
{
	char date[40], hdr[512];
	http_date(srv_upload_expires_ms(op->up->dir, &op->u), date);
	bool msg = message_id && message_id[0];
	snprintf(hdr, sizeof hdr,
		 "Upload-Offset: %llu\r\nUpload-Length: %llu\r\nUpload-Expires: %s\r\n"
		 "Cache-Control: no-store\r\n%s%s%s",
		 (unsigned long long)op->u.offset, (unsigned long long)op->u.length, date,
		 msg ? "Jiayin-Message-Id: " : "", msg ? message_id : "", msg ? "\r\n" : "");
	srv_respond_head(x, status, NULL, hdr, status == 204 ? -1 : 0);
}

/* The caller's upload op->id into op->u (pool); none under an id that cannot be one. */
static bool load(tus_op *op)
{
	if (!op->id[0]) {
		op->rc = SRV_UPLOAD_ENOTFOUND;
		return false;
	}
	op->rc = srv_upload_load(op->up->dir, op->j.device.id.s, op->id, api_now_ms(), &op->u);
	if (op->rc == 0 && strcmp(op->u.member, op->j.member.id.s) != 0)
		op->rc = SRV_UPLOAD_ENOTFOUND; /* a kiosk's: another child's */
	return op->rc == 0;
}

/*
 * HEAD, PATCH and DELETE work under the upload's lock, which only its own caller takes: a job
 * checks the caller and finds the upload (401, 404 as for anyone), then the loop takes the lock
 * (held: 423, and a HEAD or DELETE cuts a PATCH still receiving), then the step runs under it
 * and loads the upload again. A request of someone else's never holds it, not even for a job.
 */
static void owner_work(api_job *j)
{
	load((tus_op *)j);
}

static void owner_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	bool oom = false;
	if (op->pending) { /* checked: it takes the lock now, or answers */
		srv_upload_pending_drop(op->up, op->id, op->j.token_hash);
		op->pending = false;
	}
	if (op->rc < 0) {
		answer_failure(x, op);
		op_end(op);
		return;
	}
	/* A PATCH with the same token that arrived before this HEAD or DELETE and is still being
	 * checked is about to move the offset (a client resuming after a cut connection asks
	 * while the server reads what reached it): 423 too, without cutting it (what it carries is
	 * the client's), though a PATCH holding the lock and receiving is cut as always. */
	if (op->kind != OP_PATCH && srv_upload_pending(op->up, op->id, op->j.token_hash) > 0) {
		answer_locked(x, op, true);
		op_end(op);
		return;
	}
	if (!(op->lock = srv_upload_lock_take(op->up, op->id, x, &oom))) {
		if (oom)
			srv_respond_error(x, 500, "out_of_memory", "no memory");
		else
			answer_locked(x, op, op->kind != OP_PATCH);
		op_end(op);
		return;
	}
	op->j.authed = false; /* checked by owner_work just now; a finish checks again */
	op_submit(x, op, op->step_work, op->step_done);
}

static void op_submit_owned(srv_exchange *x, tus_op *op, api_work_fn work, api_done_fn done)
{
	op->step_work = work;
	op->step_done = done;
	op_submit(x, op, owner_work, owner_done);
}

/*
 * The upload is whole (pool): the plain upload's work makes it a message, the caller checked
 * again first, under the client's idempotency key or one of the upload's own, so that doing
 * this twice (a crash, a lost answer) stores one message. The record then names the message;
 * a recording refused for good (bad audio, no such recipient) takes the upload with it.
 */
static void finish_work(tus_op *op)
{
	api_job *f = &op->fin;
	*f = op->j;
	f->authed = true;
	f->auth_rc = f->rc = f->codec_rc = 0;
	f->existed = false;
	f->work = api_upload_work;
	f->done = NULL;
	snprintf(f->param[0], sizeof f->param[0], "%s", op->u.family);
	snprintf(f->to, sizeof f->to, "%s", op->u.to);
	if (op->u.idem[0])
		snprintf(f->idem, sizeof f->idem, "%s", op->u.idem);
	else
		snprintf(f->idem, sizeof f->idem, "tus-%s", op->u.id);
	f->body_fd = srv_upload_open_part(op->up->dir, &op->u, false);
	if (f->body_fd < 0) {
		op->rc = f->body_fd;
		f->body_fd = -1;
		return;
	}
	api_job_run(f);
	close(f->body_fd);
	f->body_fd = -1;
	op->finished = true;
	if (f->auth_rc < 0)
		return;
	if (f->rc == 0 && f->codec_rc >= 0) {
		/* If this fails the next HEAD finds the message again under the same key. */
		(void)srv_upload_stored(op->up->dir, &op->u, f->msg.id.s, api_now_ms());
	} else if (f->rc == 2 || (f->rc == 0 && codec_err_is_input(f->codec_rc))) {
		(void)srv_upload_remove(op->up->dir, op->u.device, op->u.id); /* nothing is kept */
	} /* else ours (503): the bytes stay, and the next HEAD or PATCH tries again */
}

static void finish_step(api_job *j)
{
	finish_work((tus_op *)j);
}

/*
 * Submit fin (finish_step) as a heavy job, under the lock this request still holds, to be
 * answered by done; false after answering 503 busy (the bytes stay for the next HEAD).
 */
static bool finish_submit(srv_exchange *x, tus_op *op, api_done_fn done)
{
	op->j.work = finish_step;
	op->j.done = done;
	if (srv_job_submit_heavy(x, op->u.family, api_job_run, op_after, op) == 0)
		return true;
	op_unlock(op);
	if (op->body_status < 0)
		srv_respond_body_failure(x);
	else
		srv_respond_busy(x);
	op_end(op);
	return false;
}

/* The plain upload's answer, seen through tus: success is the offset with the message's id;
 * errors pass as they are. A PATCH whose body broke still gets the engine's answer. */
static void finished_hook(srv_exchange *x, int status, const char *content_type,
			  const char *extra_headers, const void *body, size_t len)
{
	tus_op *op = x->respond_hook_arg;
	if (op->body_status < 0) {
		srv_respond_body_failure(x);
		return;
	}
	if (status == 200 || status == 201) {
		answer_offset(x, op, op->kind == OP_PATCH ? 204 : 200, op->fin.msg.id.s);
		return;
	}
	srv_respond(x, status, content_type, extra_headers, body, len);
}

static void finish_answer(srv_exchange *x, tus_op *op)
{
	api_job *f = &op->fin;
	if (f->auth_rc < 0) {
		if (op->body_status < 0)
			srv_respond_body_failure(x);
		else if (f->auth_rc == STORE_ENOTFOUND)
			srv_respond_error_with(x, 401, "unauthorized", "the token is not valid",
					       "WWW-Authenticate: Bearer\r\n");
		else
			api_storage_failed(x, f->auth_rc);
		return;
	}
	/* The plain upload's done counts the transcode and wakes the family's long-polls. */
	x->respond_hook = finished_hook;
	x->respond_hook_arg = op;
	api_upload_done(x, f); /* x may be gone after its answer */
}

/* ---- OPTIONS /v1/uploads ---- */
void srv_api_uploads_options(srv_exchange *x)
{
	x->always_headers = TUS_HEADER;
	char hdr[256];
	snprintf(hdr, sizeof hdr,
		 "Tus-Version: 1.0.0\r\nTus-Extension: creation,termination,expiration\r\n"
		 "Tus-Max-Size: %u\r\n",
		 (unsigned)SRV_UPLOAD_MAX);
	srv_respond_head(x, 204, NULL, hdr, -1);
}

/* ---- POST /v1/uploads ---- */

/* Upload-Metadata: "key base64,key base64" (tus_metadata.c); family_id, to and
 * idempotency_key are ours, the rest is the client's and ignored. 0, or -1 after answering 400. */
static int parse_metadata(srv_exchange *x, srv_upload *u)
{
	const srv_slice *m;
	const char *why = NULL, *code = "invalid_upload_metadata";
	srv_tus_metadata meta = {u->family, u->to, u->idem, sizeof u->family, sizeof u->to,
				 sizeof u->idem, false, false, false};
	if (!one_header(x, "Upload-Metadata", &m))
		why = "Upload-Metadata came twice";
	else
		why = srv_tus_metadata_parse(m ? m->ptr : NULL, m ? m->len : 0, &meta, &code);
	bool family = meta.has_family, to = meta.has_to, idem = meta.has_idem;
	if (!why && (!family || store_id_check(u->family) < 0))
		why = "Upload-Metadata must carry family_id, the family's id";
	if (why) {
		srv_respond_error(x, 400, code, why);
		return -1;
	}
	if (to && u->to[0] && store_id_check(u->to) < 0) {
		srv_respond_error(x, 400, "invalid_recipient", "to: not a member id");
		return -1;
	}
	bool printable = idem ? u->idem[0] != '\0' : true;
	for (const char *p = u->idem; printable && *p; p++)
		printable = *p >= 0x20 && *p < 0x7f;
	if (!printable) {
		srv_respond_error(x, 400, "invalid_idempotency_key",
				  "idempotency_key: 1-128 printable ASCII characters");
		return -1;
	}
	return 0;
}

static void create_work(api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (strcmp(op->u.family, j->device.family_id.s) != 0) {
		op->rc = SRV_UPLOAD_ENOTFOUND; /* another family: as if it did not exist */
		return;
	}
	if (op->u.to[0]) {
		store_member to;
		int rc = store_member_get(j->st, op->u.to, &to);
		if (rc == STORE_ENOTFOUND || (rc == 0 && strcmp(to.family_id.s, op->u.family) != 0)) {
			op->rc = TUS_ERECIPIENT;
			return;
		}
		if (rc < 0) {
			op->store_rc = rc;
			return;
		}
	}
	memcpy(op->u.device, j->device.id.s, sizeof op->u.device);
	memcpy(op->u.member, j->member.id.s, sizeof op->u.member);
	op->rc = srv_upload_create(op->up->dir, &op->u, op->cap, api_now_ms());
}

static void create_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (op->rc < 0 || op->store_rc < 0) {
		if (op->rc == SRV_UPLOAD_ENOTFOUND)
			srv_respond_error(x, 404, "not_found", "no such family");
		else
			answer_failure(x, op);
	} else {
		char date[40], hdr[512];
		http_date(srv_upload_expires_ms(op->up->dir, &op->u), date);
		snprintf(hdr, sizeof hdr,
			 "Location: /v1/uploads/%s\r\nUpload-Offset: 0\r\nUpload-Expires: %s\r\n"
			 "Cache-Control: no-store\r\n",
			 op->u.id, date);
		srv_respond_head(x, 201, NULL, hdr, 0);
	}
	op_end(op);
}

void srv_api_upload_create(srv_exchange *x)
{
	if (!tus_begin(x) || !api_bearer_present(x)) /* 412, then 401 before the headers' 400s */
		return;
	const srv_slice *len;
	uint64_t length;
	if (srv_request_header(&x->req, "Upload-Defer-Length")) {
		srv_respond_error(x, 400, "invalid_upload_length",
				  "Upload-Defer-Length is not supported: send Upload-Length");
		return;
	}
	if (!one_header(x, "Upload-Length", &len) || !parse_u64(len, &length)) {
		srv_respond_error(x, 400, "invalid_upload_length",
				  "Upload-Length: the recording's size in bytes");
		return;
	}
	if (length > SRV_UPLOAD_MAX) {
		char hdr[64];
		snprintf(hdr, sizeof hdr, "Tus-Max-Size: %u\r\n", (unsigned)SRV_UPLOAD_MAX);
		srv_respond_error_with(x, 413, "upload_too_large", "an upload is at most 200 MiB",
				       hdr);
		return;
	}
	if (length == 0) {
		srv_respond_error(x, 422, "audio_truncated", "the upload has no audio");
		return;
	}
	srv_upload u;
	memset(&u, 0, sizeof u);
	u.length = length;
	if (parse_metadata(x, &u) < 0)
		return;
	tus_op *op = op_start(x, OP_CREATE, false);
	if (!op)
		return;
	op->u = u;
	op->cap = x->srv->cfg.uploads_per_device;
	op_submit(x, op, create_work, create_done);
}

/* ---- HEAD and GET /v1/uploads/{id} ---- */
static void head_work(api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (!load(op))
		return;
	/* Whole but not yet a message (a crash, a full mailbox, a lost answer): next. */
	op->whole = !op->u.message_id[0] && op->u.offset == op->u.length;
}

static void head_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (op->rc == 0 && op->whole) { /* the transcode, as a heavy job, then here again */
		op->whole = false;
		finish_submit(x, op, head_done);
		return;
	}
	op_unlock(op);
	if (op->rc < 0)
		answer_failure(x, op);
	else if (op->finished)
		finish_answer(x, op);
	else
		answer_offset(x, op, 200, op->u.message_id);
	op_end(op);
}

void srv_api_upload_head(srv_exchange *x)
{
	if (!tus_begin(x))
		return;
	tus_op *op = op_start(x, OP_HEAD, true);
	if (op)
		op_submit_owned(x, op, head_work, head_done);
}

static void get_work(api_job *j)
{
	load((tus_op *)j);
}

static void get_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	op_unlock(op);
	if (op->rc < 0) {
		answer_failure(x, op);
	} else {
		const srv_upload *u = &op->u;
		int64_t expires = srv_upload_expires_ms(op->up->dir, u) / 1000;
		api_respond_json(
		    x, 200,
		    json_pack("{s:{s:s, s:I, s:I, s:I, s:s, s:o, s:o}}", "upload", "id", u->id,
			      "length", (json_int_t)u->length, "offset", (json_int_t)u->offset,
			      "expires_at", (json_int_t)expires, "family_id", u->family, "to",
			      u->to[0] ? json_string(u->to) : json_null(), "message_id",
			      u->message_id[0] ? json_string(u->message_id) : json_null()));
	}
	op_end(op);
}

void srv_api_upload_get(srv_exchange *x)
{
	x->always_headers = TUS_HEADER;
	tus_op *op = op_start(x, OP_GET, true);
	if (op)
		op_submit(x, op, get_work, get_done);
}

/* ---- PATCH /v1/uploads/{id} ---- */
static void patch_commit_work(api_job *j)
{
	tus_op *op = (tus_op *)j;
	op->rc = srv_upload_commit(op->up->dir, &op->u, op->fd, op->written, api_now_ms());
	close(op->fd);
	op->fd = -1;
}

static void patch_answer(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	op_unlock(op);
	if (op->finished)
		finish_answer(x, op);
	else if (op->body_status < 0)
		srv_respond_body_failure(x); /* what the engine owes: 408, 400, 413, 507 ... */
	else if (op->rc < 0)
		answer_failure(x, op);
	else
		answer_offset(x, op, 204, NULL);
	op_end(op);
}

/*
 * The bytes are durable. A whole upload is then transcoded and stored: a heavy job, which
 * waits its turn like a plain upload's (the commit before it may not be refused, the
 * transcode may): refused, it is 503 and the next HEAD makes the message.
 */
static void patch_commit_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (op->rc < 0 || op->u.offset != op->u.length || op->u.message_id[0]) {
		patch_answer(x, j);
		return;
	}
	finish_submit(x, op, patch_answer);
}

/* The body is over, whole or not: what reached the .part is made durable and counted. */
static void patch_body_done(srv_exchange *x, void *arg, int status)
{
	tus_op *op = arg;
	op->lock->receiving = false;
	op->body_status = status;
	op->written = x->body_len;
	op->j.authed = false; /* checked before the body; the message checks again */
	op->j.work = patch_commit_work;
	op->j.done = patch_commit_done;
	/* Unbounded: this is the rest of work already accepted, and must not be lost. */
	if (srv_job_submit_any(x, api_job_run, op_after, op) == 0)
		return;
	op_unlock(op);
	if (status < 0)
		srv_respond_body_failure(x);
	else
		srv_respond_error(x, 500, "out_of_memory", "no memory");
	if (op->claiming)
		op->claim_failed = true; /* patch_load_done, still inside the claim, frees it */
	else
		op_end(op);
}

static void patch_load_work(api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (!load(op))
		return;
	if (op->want_offset != op->u.offset) {
		op->rc = TUS_EMISMATCH;
		return;
	}
	if (op->declared > op->u.length - op->u.offset) {
		op->rc = TUS_EOVERFLOW;
		return;
	}
	if (op->u.message_id[0])
		return; /* whole and a message: answered with its id */
	op->fd = srv_upload_open_part(op->up->dir, &op->u, true);
	if (op->fd < 0) {
		op->rc = op->fd;
		op->fd = -1;
	}
}

static void patch_load_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (op->rc < 0 || op->u.message_id[0]) {
		op_unlock(op);
		if (op->rc < 0)
			answer_failure(x, op);
		else
			answer_offset(x, op, 204, op->u.message_id);
		op_end(op);
		return;
	}
	op->lock->receiving = true;
	op->claiming = true;
	int rc = srv_body_claim(x, op->fd, op->u.offset, op->u.length - op->u.offset,
				patch_body_done, op);
	op->claiming = false;
	if (op->claim_failed) {
		op_end(op); /* the body ended at once and was answered: nothing follows */
		return;
	}
	if (rc == 0 && op->lock && op->lock->receiving && op->lock->cut)
		srv_body_cut(x); /* a HEAD came for it meanwhile: its client is gone */
	if (rc < 0) {
		op->lock->receiving = false;
		if (rc == UV_EBUSY)
			srv_respond_busy(x);
		else if (rc != UV_ECANCELED)
			srv_respond_error(x, 500, "out_of_memory", "no memory");
		op_end(op);
	}
	/* Otherwise patch_body_done follows (perhaps already has). */
}

void srv_api_upload_patch(srv_exchange *x)
{
	if (!tus_begin(x) || !api_bearer_present(x))
		return;
	static const char octets[] = "application/offset+octet-stream";
	const srv_slice *ct, *off;
	uint64_t want;
	if (!one_header(x, "Content-Type", &ct) || !ct || ct->len != sizeof octets - 1 ||
	    strncasecmp(ct->ptr, octets, ct->len) != 0) {
		srv_respond_error(x, 415, "unsupported_media_type",
				  "send Content-Type: application/offset+octet-stream");
		return;
	}
	if (!one_header(x, "Upload-Offset", &off) || !parse_u64(off, &want)) {
		srv_respond_error(x, 400, "invalid_upload_offset",
				  "Upload-Offset: the byte this body starts at");
		return;
	}
	tus_op *op = op_start(x, OP_PATCH, true);
	if (!op)
		return;
	op->want_offset = want;
	op->declared = x->req.body == SRV_BODY_LENGTH ? x->req.content_length : 0;
	if (op->id[0]) {
		if (!srv_upload_pending_add(op->up, op->id, op->j.token_hash)) {
			srv_respond_error(x, 500, "out_of_memory", "no memory");
			op_end(op);
			return;
		}
		op->pending = true;
	}
	op_submit_owned(x, op, patch_load_work, patch_load_done);
}

/* ---- DELETE /v1/uploads/{id} ---- */
static void delete_work(api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (load(op))
		op->rc = srv_upload_remove(op->up->dir, op->u.device, op->u.id);
}

static void delete_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	op_unlock(op);
	if (op->rc < 0)
		answer_failure(x, op);
	else
		srv_respond_head(x, 204, NULL, NULL, -1);
	op_end(op);
}

void srv_api_upload_delete(srv_exchange *x)
{
	if (!tus_begin(x))
		return;
	tus_op *op = op_start(x, OP_DELETE, true);
	if (op)
		op_submit_owned(x, op, delete_work, delete_done);
}
