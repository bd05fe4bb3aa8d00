/*
 * tus_op.c — what the tus handlers of api_uploads.c share: one request's op from its
 * authentication to its answer, the upload's lock taken only by its owner (owner_done), the
 * answers every step may give, and the finish that makes a whole upload a message through the
 * plain upload's steps.
 */
#include "tus_op.h"
#include "tus_metadata.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Give the upload back before answering: an answer written at once lets the connection start
 * its next, pipelined request right away, which must find the upload free (it met a 423
 * from the lock of the request before it).
 */
void tus_op_unlock(tus_op *op)
{
	if (op->lock)
		srv_upload_lock_release(op->up, op->lock);
	op->lock = NULL;
	if (op->fd >= 0)
		close(op->fd);
	op->fd = -1;
}

void tus_op_end(tus_op *op)
{
	api_transcode_counted(op->up->srv, &op->fin); /* a finish's, whatever it answered */
	api_in_flight_end(&op->flight); /* a plain retry that waited for it finds its message */
	if (op->pending)
		srv_upload_pending_drop(op->up, op->id, op->j.token_hash);
	if (op->lock)
		srv_upload_lock_release(op->up, op->lock);
	if (op->fd >= 0)
		close(op->fd);
	api_session_use_end(op->j.in_use);
	sodium_memzero(op->j.token_hash, sizeof op->j.token_hash);
	sodium_memzero(op->fin.token_hash, sizeof op->fin.token_hash);
	sodium_memzero(op->flight.token_hash, sizeof op->flight.token_hash);
	free(op);
}

/* The header `name` at most once (*out NULL when absent); false when it came twice. */
bool tus_one_header(srv_exchange *x, const char *name, const srv_slice **out)
{
	return srv_request_header_once(&x->req, name, out);
}

/* tus's version check (one Tus-Resumable: 1.0.0); every answer of the exchange says it too. */
bool tus_begin(srv_exchange *x)
{
	x->always_headers = TUS_HEADER;
	const srv_slice *v;
	if (tus_one_header(x, "Tus-Resumable", &v) && v && v->len == 5 &&
	    memcmp(v->ptr, "1.0.0", 5) == 0)
		return true;
	srv_respond_error_with(x, 412, "tus_version_unsupported",
	                       "this server speaks tus 1.0.0: send Tus-Resumable: 1.0.0",
	                       "Tus-Version: 1.0.0\r\n");
	return false;
}

void tus_http_date(int64_t ms, char out[40])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* A job for the caller, with the path's upload id; NULL after answering (401 without a token,
 * 500). An id that cannot be one stays empty: the caller is checked first (a bad token is 401),
 * then tus_load() finds nothing under it (404). */
tus_op *tus_op_start(srv_exchange *x, int kind, bool has_id)
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
	op->j.upload_cap = x->srv->cfg.family_upload_bytes;
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
void tus_op_after(srv_exchange *x, void *arg)
{
	tus_op *op = arg;
	if (op->j.authed && op->j.auth_rc < 0) {
		if (op->j.auth_rc == STORE_ENOTFOUND)
			srv_respond_error_with(x, 401, "unauthorized", "the token is not valid",
			                       "WWW-Authenticate: Bearer\r\n");
		else
			api_storage_failed(x, op->j.auth_rc);
		tus_op_end(op);
		return;
	}
	api_caller_buffers(x, &op->j);
	op->j.done(x, &op->j);
}

/* Submits the step; false after answering 503 busy and ending the request. */
bool tus_op_submit(srv_exchange *x, tus_op *op, api_work_fn work, api_done_fn done)
{
	op->j.work = work;
	op->j.done = done;
	if (srv_job_submit(x, api_job_run, tus_op_after, op) == 0)
		return true;
	srv_respond_busy(x);
	tus_op_end(op);
	return false;
}

void tus_answer_failure(srv_exchange *x, const tus_op *op)
{
	if (op->store_rc < 0) {
		api_storage_failed(x, op->store_rc);
		return;
	}
	switch (op->rc) {
	case SRV_UPLOAD_ENOTFOUND:
		srv_respond_error(x, 404, "not_found", "no such upload (or it expired)");
		return;
	case SRV_UPLOAD_ETOOMANY: {
		/* A place frees by itself when the first of them expires (the device may free one
		 * sooner, finishing or terminating it): a client that backs off by Retry-After
		 * does not ask again and again meanwhile. */
		char hdr[48];
		int64_t wait_ms = op->free_ms - api_now_ms();
		snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n",
		         wait_ms > 1000 ? (long long)((wait_ms + 999) / 1000) : 1LL);
		srv_respond_error_with(
		    x, 429, "too_many_uploads",
		    "this device has too many unfinished uploads: finish or delete one", hdr);
		return;
	}
	case SRV_UPLOAD_EROOM:
		srv_respond_error(x, 507, "quota_exceeded", QUOTA_EXCEEDED_WHY);
		return;
	case SRV_UPLOAD_EHELD:
		srv_respond_error_with(x, 507, "uploads_hold_room", UPLOADS_HOLD_ROOM_WHY,
		                       UPLOADS_HOLD_ROOM_RETRY);
		return;
	case SRV_UPLOAD_EDISK:
		api_respond_disk_kept(x);
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
void tus_answer_locked(srv_exchange *x, tus_op *op, bool cut_receiver)
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

/* The upload's offset, its length, when it expires and (once it is one) its message; to a
 * HEAD, also the metadata it was created with (tus: a HEAD MUST echo it), as we keep it. */
void tus_answer_offset(srv_exchange *x, const tus_op *op, int status, const char *message_id)
{
	char date[40], meta[SRV_TUS_METADATA_ECHO_MAX], hdr[SRV_TUS_METADATA_ECHO_MAX + 512];
	tus_http_date(srv_upload_expires_ms(op->up->dir, &op->u), date);
	bool msg = message_id && message_id[0];
	bool echo =
	    op->kind == OP_HEAD &&
	    srv_tus_metadata_format(op->u.family, op->u.to, op->u.idem, meta, sizeof meta) &&
	    meta[0];
	snprintf(hdr, sizeof hdr,
	         "Upload-Offset: %llu\r\nUpload-Length: %llu\r\nUpload-Expires: %s\r\n"
	         "Cache-Control: no-store\r\n%s%s%s%s%s%s",
	         (unsigned long long)op->u.offset, (unsigned long long)op->u.length, date,
	         msg ? "Jiayin-Message-Id: " : "", msg ? message_id : "", msg ? "\r\n" : "",
	         echo ? "Upload-Metadata: " : "", echo ? meta : "", echo ? "\r\n" : "");
	srv_respond_head(x, status, NULL, hdr, status == 204 ? -1 : 0);
}

/* The caller's upload op->id into op->u (pool); none under an id that cannot be one. */
bool tus_load(tus_op *op)
{
	if (!op->id[0]) {
		op->rc = SRV_UPLOAD_ENOTFOUND;
		return false;
	}
	op->rc = srv_upload_load(op->up->dir, op->j.device.id.s, op->id, INT64_MIN, &op->u);
	if (op->rc == 0 && strcmp(op->u.member, op->j.member.id.s) != 0)
		op->rc = SRV_UPLOAD_ENOTFOUND; /* a kiosk's: another child's */
	if (op->rc == 0 && api_now_ms() >= srv_upload_expires_ms(op->up->dir, &op->u)) {
		op->expired = true; /* the caller's, but gone unless a request is working on it */
		op->rc = SRV_UPLOAD_ENOTFOUND;
	}
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
	tus_load((tus_op *)j);
}

static void owner_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	bool oom = false;
	if (op->pending) { /* checked: it takes the lock now, or answers */
		srv_upload_pending_drop(op->up, op->id, op->j.token_hash);
		op->pending = false;
	}
	/* Past its expiry, but one of the caller's requests works on it: a PATCH receiving for
	 * longer than the upload had left (a first PATCH of over an hour) counts its bytes, and
	 * the expiry starts again, only when it ends. Gone to the client it is not: locked, as
	 * in time (a resuming HEAD cuts that PATCH), not 404, which would make the phone send
	 * the whole recording again. Only the owner takes a lock, so the holder is the caller. */
	if (op->rc < 0 && op->expired && srv_upload_lock_find(op->up, op->id)) {
		tus_answer_locked(x, op, op->kind != OP_PATCH);
		tus_op_end(op);
		return;
	}
	if (op->rc < 0) {
		tus_answer_failure(x, op);
		tus_op_end(op);
		return;
	}
	/* A PATCH with the same token that arrived before this HEAD or DELETE and is still being
	 * checked is about to move the offset (a client resuming after a cut connection asks
	 * while the server reads what reached it): 423 too, without cutting it (what it carries is
	 * the client's), though a PATCH holding the lock and receiving is cut as always. */
	if (op->kind != OP_PATCH && srv_upload_pending(op->up, op->id, op->j.token_hash) > 0) {
		tus_answer_locked(x, op, true);
		tus_op_end(op);
		return;
	}
	if (!(op->lock = srv_upload_lock_take(op->up, op->id, x, &oom))) {
		if (oom)
			srv_respond_error(x, 500, "out_of_memory", "no memory");
		else
			tus_answer_locked(x, op, op->kind != OP_PATCH);
		tus_op_end(op);
		return;
	}
	/* Held, the upload keeps what it holds of the family's room past its expiry (a PATCH
	 * receiving then counts its bytes and renews it); expired since owner_work looked, it
	 * held nothing from that moment, and a creation may have taken its room: 404, as the
	 * step's own look would say. */
	if (srv_upload_busy(op->up->dir, op->id, api_now_ms()) < 0) {
		op->rc = SRV_UPLOAD_ENOTFOUND;
		tus_op_unlock(op);
		tus_answer_failure(x, op);
		tus_op_end(op);
		return;
	}
	op->lock->busy = true;
	op->j.authed = false; /* checked by owner_work just now; a finish checks again */
	tus_op_submit(x, op, op->step_work, op->step_done);
}

void tus_op_submit_owned(srv_exchange *x, tus_op *op, api_work_fn work, api_done_fn done)
{
	op->step_work = work;
	op->step_done = done;
	tus_op_submit(x, op, owner_work, owner_done);
}

/*
 * Its message was refused for want of room before (srv_upload_refused), and nothing gave it
 * that room since: true with fin's rc as storage said then (507 quota_exceeded or
 * storage_full, answered as that finish was), without reading or transcoding the recording.
 * A phone retries its HEAD while it waits: each cost the whole transcode (12 s of CPU for a
 * 15-minute WAV), for the same 507. The room is the store's own check: the family's quota less
 * its usage, against the message's bytes, which a transcode of the same recording makes again.
 * Its key made a message meanwhile (another of the member's phones), its recipient left the
 * family, or a read fails: false, and the finish says so.
 */
static bool still_refused(tus_op *op)
{
	api_job *f = &op->fin;
	srv_upload_refusal r;
	srv_upload_refusal_of(op->up->dir, op->u.id, &r);
	if (!r.needs)
		return false;
	store_message m;
	store_member to;
	if (api_upload_key_message(f, op->u.family, f->idem, &m) != STORE_ENOTFOUND)
		return false;
	if (op->u.to[0] && (store_member_get(f->st, op->u.to, &to) < 0 ||
	                    strcmp(to.family_id.s, op->u.family) != 0))
		return false;
	if (r.disk) {
		if (!srv_upload_disk_still_short(op->up->dir, &r, api_now_ms()))
			return false;
		f->rc = STORE_EFULL;
		f->refused_before = true; /* the write that failed was counted then */
		return true;
	}
	store_family fam;
	uint64_t used;
	if (store_family_get(f->st, op->u.family, &fam) < 0 ||
	    store_mailbox_usage(f->st, op->u.family, &used) < 0)
		return false;
	uint64_t quota = fam.quota_bytes ? fam.quota_bytes : f->default_quota;
	if (!quota || (r.needs <= quota && used <= quota - r.needs))
		return false;
	f->rc = STORE_EQUOTA;
	return true;
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
	f->in_use = NULL; /* op->j's, ended with the request (tus_op_end) */
	f->authed = true;
	f->checked = true; /* by this request: a session over since keeps its story */
	f->auth_rc = f->rc = f->codec_rc = 0;
	f->existed = f->refused_before = false;
	f->work = api_upload_work;
	f->done = NULL;
	snprintf(f->param[0], sizeof f->param[0], "%s", op->u.family);
	snprintf(f->to, sizeof f->to, "%s", op->u.to);
	if (op->u.idem[0])
		snprintf(f->idem, sizeof f->idem, "%s", op->u.idem);
	else
		snprintf(f->idem, sizeof f->idem, "tus-%s", op->u.id);
	if (still_refused(op)) {
		op->finished = true; /* answered as the refusal was */
		return;
	}
	f->body_fd = srv_upload_open_part(op->up->dir, &op->u, false);
	if (f->body_fd < 0) {
		op->rc = f->body_fd;
		f->body_fd = -1;
		return;
	}
	struct stat st;
	bool given_up = fstat(f->body_fd, &st) == 0 && (uint64_t)st.st_size < op->u.offset;
	api_job_run(f);
	close(f->body_fd);
	f->body_fd = -1;
	if (given_up && f->auth_rc >= 0 && f->rc == 0 && !f->existed) {
		/* Its bytes were given up once its message was stored (srv_upload_stored), and
		 * the key finds no message now (the mailbox restored from a copy taken before
		 * it): what was read was no recording. Gone, as an expired upload: the app sends
		 * it again, where a 422 would have told it the recording was not audio. */
		(void)srv_upload_remove(op->up->dir, op->u.device, op->u.id);
		op->rc = SRV_UPLOAD_ENOTFOUND;
		return;
	}
	op->finished = true;
	if (f->auth_rc < 0)
		return;
	if (f->rc == 0 && f->codec_rc >= 0) {
		/* If this fails the next HEAD finds the message again under the same key. */
		(void)srv_upload_stored(op->up->dir, &op->u, f->msg.id.s, api_now_ms());
	} else if (f->rc == 2 || (f->rc == 0 && codec_err_is_input(f->codec_rc))) {
		(void)srv_upload_remove(op->up->dir, op->u.device, op->u.id); /* nothing is kept */
	} else if ((f->rc == STORE_EQUOTA || f->rc == STORE_EFULL) && f->audio_bytes) {
		/* No room for its message: the bytes stay, and the next HEAD or PATCH looks at
		 * that room first (still_refused). */
		srv_upload_refusal r = {.needs = f->audio_bytes,
		                        .disk = f->rc == STORE_EFULL,
		                        .disk_free = srv_upload_disk_free(op->up->dir),
		                        .at_ms = api_now_ms()};
		(void)srv_upload_refused(op->up->dir, op->u.id, &r);
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
bool tus_finish_submit(srv_exchange *x, tus_op *op, api_done_fn done)
{
	/* The same phone's plain copy of the client's key is being transcoded: not a second
	 * transcode. The upload stays as it is, whole; its next HEAD, once that copy is stored,
	 * finds the key's message (api_upload_work) and answers with it. */
	if (api_plain_in_flight(x->srv, op->u.family, op->j.token_hash, op->u.idem)) {
		tus_op_unlock(op);
		if (op->body_status < 0)
			srv_respond_body_failure(x);
		else
			api_respond_in_flight(x);
		tus_op_end(op);
		return false;
	}
	op->j.work = finish_step;
	op->j.done = done;
	api_session_use_begin(x->srv, &op->j); /* a child's: in use while it waits its turn too */
	/* A plain upload of the client's key from this phone meanwhile (its answer came no
	 * more, or the app changed routes) waits for this finish instead of being transcoded
	 * again, or, with Expect: 100-continue, is told so before its body (api_messages.c). */
	op->flight.resumable = true;
	api_in_flight_begin(x->srv, &op->flight, op->u.family, op->j.token_hash, op->u.idem);
	int rc = srv_job_submit_heavy(x, op->u.family, api_job_run, tus_op_after, op);
	if (rc == 0)
		return true;
	tus_op_unlock(op);
	if (op->body_status < 0)
		srv_respond_body_failure(x);
	else
		srv_respond_job_refused(x, rc);
	tus_op_end(op);
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
		tus_answer_offset(x, op, op->kind == OP_PATCH ? 204 : 200, op->fin.msg.id.s);
		return;
	}
	srv_respond(x, status, content_type, extra_headers, body, len);
}

void tus_finish_answer(srv_exchange *x, tus_op *op)
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
	/* The plain upload's done wakes the family's long-polls. */
	x->respond_hook = finished_hook;
	x->respond_hook_arg = op;
	api_upload_done(x, f); /* x may be gone after its answer */
}
