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
 * before the 204. Every file touch is on the job pool. A creation holds its Upload-Length
 * against the family's room (api_upload_allowance) until the upload is a message or gone.
 */
#include "api_internal.h"
#include "tus_metadata.h"
#include "api_uploads.h"
#include "routes.h"
#include "tus_op.h"
#include "upload_state.h"
#include "uploads.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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
	if (!tus_one_header(x, "Upload-Metadata", &m))
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
	if (idem && !api_idempotency_key_ok(u->idem, strlen(u->idem))) {
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
	memcpy(op->u.device, j->device.id.s, sizeof op->u.device);
	memcpy(op->u.member, j->member.id.s, sizeof op->u.member);
	/* A key that is a message already gives that message, as the finish would, but now,
	 * before the phone sends the recording again over its metered data for nothing: an upload
	 * that is whole and that message. First, as the plain upload's retry: the recipient may
	 * have left since, and the device's places and the family's room are not needed. */
	if (op->u.idem[0]) {
		store_message m;
		int rc = api_upload_key_message(j, j->device.family_id.s, op->u.idem, &m);
		if (rc == 0) {
			/* whom it is for, as the list says */
			memcpy(op->u.to, m.to.s, sizeof op->u.to);
			op->rc = srv_upload_create_done(op->up->dir, &op->u, m.id.s, api_now_ms());
			return;
		}
		if (rc != STORE_ENOTFOUND) {
			op->store_rc = rc;
			return;
		}
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
	uint64_t allowance; /* the key, if any, was looked up just now: no message of it */
	int rc = api_upload_allowance(j, op->u.family, NULL, &allowance);
	if (rc < 0) {
		op->store_rc = rc;
		return;
	}
	op->rc = srv_upload_create(op->up->dir, &op->u, op->cap, allowance, api_now_ms(),
	                           &op->again, &op->free_ms);
	/* A new upload of a key: its look above may have come just before the finish of the
	 * device's upload of the key stored the message, and the creation's walk just after that
	 * finish removed the bytes it would have found again (the review: a new upload at 0, the
	 * whole recording sent again over the phone's metered data for the message stored
	 * meanwhile). The message is stored before those bytes go: looked at again, it is found,
	 * and the answer is it, the new upload removed. */
	store_message m;
	if (op->rc == 0 && !op->again && op->u.idem[0] &&
	    api_upload_key_message(j, j->device.family_id.s, op->u.idem, &m) == 0) {
		memcpy(op->u.to, m.to.s, sizeof op->u.to);
		op->rc = srv_upload_create_done(op->up->dir, &op->u, m.id.s, api_now_ms());
	}
}

static void create_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (op->rc < 0 || op->store_rc < 0) {
		if (op->rc == SRV_UPLOAD_ENOTFOUND)
			srv_respond_error(x, 404, "not_found", "no such family");
		else
			tus_answer_failure(x, op);
	} else {
		char date[40], hdr[512];
		tus_http_date(srv_upload_expires_ms(op->up->dir, &op->u), date);
		/* The same recording created again is the upload the lost answer named, with what
		 * it holds already (all of it, and its message, when its key made one): a client
		 * that PATCHes from 0 regardless (tus-js-client) hears 409 offset_mismatch, asks
		 * with HEAD and goes on from there, or learns it is done. */
		bool msg = op->u.message_id[0];
		snprintf(hdr, sizeof hdr,
		         "Location: /v1/uploads/%s\r\nUpload-Offset: %llu\r\nUpload-Expires: %s\r\n"
		         "Cache-Control: no-store\r\n%s%s%s",
		         op->u.id, (unsigned long long)op->u.offset, date,
		         msg ? "Jiayin-Message-Id: " : "", msg ? op->u.message_id : "",
		         msg ? "\r\n" : "");
		srv_respond_head(x, 201, NULL, hdr, 0);
	}
	tus_op_end(op);
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
	if (!tus_one_header(x, "Upload-Length", &len) || !parse_u64(len, &length)) {
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
	tus_op *op = tus_op_start(x, OP_CREATE, false);
	if (!op)
		return;
	/* The same phone's recording of this key is being transcoded (a plain copy, its answer
	 * late): not a new upload at 0, for the whole recording to come again over its metered
	 * data and be transcoded twice. Sent again once it is stored, the key finds its message. */
	if (api_plain_in_flight(x->srv, u.family, op->j.token_hash, u.idem)) {
		tus_op_end(op);
		api_respond_in_flight(x);
		return;
	}
	op->u = u;
	op->cap = x->srv->cfg.uploads_per_device;
	tus_op_submit(x, op, create_work, create_done);
}

/* ---- HEAD and GET /v1/uploads/{id} ---- */
static void head_work(api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (!tus_load(op))
		return;
	/* Whole but not yet a message (a crash, a full mailbox, a lost answer): next. */
	op->whole = !op->u.message_id[0] && op->u.offset == op->u.length;
}

static void head_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (op->rc == 0 && op->whole) { /* the transcode, as a heavy job, then here again */
		op->whole = false;
		tus_finish_submit(x, op, head_done);
		return;
	}
	tus_op_unlock(op);
	if (op->rc < 0)
		tus_answer_failure(x, op);
	else if (op->finished)
		tus_finish_answer(x, op);
	else
		tus_answer_offset(x, op, 200, op->u.message_id);
	tus_op_end(op);
}

void srv_api_upload_head(srv_exchange *x)
{
	if (!tus_begin(x))
		return;
	tus_op *op = tus_op_start(x, OP_HEAD, true);
	if (op)
		tus_op_submit_owned(x, op, head_work, head_done);
}

static void get_work(api_job *j)
{
	tus_load((tus_op *)j);
}

static void get_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	tus_op_unlock(op);
	if (op->rc < 0 && op->expired && srv_upload_lock_find(op->up, op->id)) {
		/* Past its expiry, but a PATCH of its owner still receives: there, as HEAD says
		 * (423, owner_done), not 404. GET ends nothing: the PATCH goes on. */
		tus_answer_locked(x, op, false);
	} else if (op->rc < 0) {
		tus_answer_failure(x, op);
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
	tus_op_end(op);
}

void srv_api_upload_get(srv_exchange *x)
{
	x->always_headers = TUS_HEADER;
	tus_op *op = tus_op_start(x, OP_GET, true);
	if (op)
		tus_op_submit(x, op, get_work, get_done);
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
	tus_op_unlock(op);
	if (op->finished)
		tus_finish_answer(x, op);
	else if (op->body_status < 0)
		srv_respond_body_failure(x); /* what the engine owes: 408, 400, 413, 507 ... */
	else if (op->rc < 0)
		tus_answer_failure(x, op);
	else
		tus_answer_offset(x, op, 204, NULL);
	tus_op_end(op);
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
	tus_finish_submit(x, op, patch_answer);
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
	if (srv_job_submit_any(x, api_job_run, tus_op_after, op) == 0)
		return;
	tus_op_unlock(op);
	if (status < 0)
		srv_respond_body_failure(x);
	else
		srv_respond_error(x, 500, "out_of_memory", "no memory");
	if (op->claiming)
		op->claim_failed = true; /* patch_load_done, still inside the claim, frees it */
	else
		tus_op_end(op);
}

static void patch_load_work(api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (!tus_load(op))
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

/* Its bytes in the .part: out of what it has still to write (srv_body_on_written). */
static void patch_body_written(void *arg, uint64_t file_off)
{
	tus_op *op = arg;
	srv_upload_hold_written(op->up->dir, op->u.id, file_off);
}

static void patch_load_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (op->rc < 0 || op->u.message_id[0]) {
		tus_op_unlock(op);
		if (op->rc < 0)
			tus_answer_failure(x, op);
		else
			tus_answer_offset(x, op, 204, op->u.message_id);
		tus_op_end(op);
		return;
	}
	op->lock->receiving = true;
	api_session_use_begin(x->srv, &op->j); /* a child's PATCH: in use until its answer */
	op->claiming = true;
	srv_body_on_written(x, patch_body_written);
	int rc = srv_body_claim(x, op->fd, op->u.offset, op->u.length - op->u.offset,
				patch_body_done, op);
	op->claiming = false;
	if (op->claim_failed) {
		tus_op_end(op); /* the body ended at once and was answered: nothing follows */
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
		tus_op_end(op);
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
	if (!tus_one_header(x, "Content-Type", &ct) || !ct || ct->len != sizeof octets - 1 ||
	    strncasecmp(ct->ptr, octets, ct->len) != 0) {
		srv_respond_error(x, 415, "unsupported_media_type",
				  "send Content-Type: application/offset+octet-stream");
		return;
	}
	if (!tus_one_header(x, "Upload-Offset", &off) || !parse_u64(off, &want)) {
		srv_respond_error(x, 400, "invalid_upload_offset",
				  "Upload-Offset: the byte this body starts at");
		return;
	}
	tus_op *op = tus_op_start(x, OP_PATCH, true);
	if (!op)
		return;
	op->want_offset = want;
	op->declared = x->req.body == SRV_BODY_LENGTH ? x->req.content_length : 0;
	if (op->id[0]) {
		if (!srv_upload_pending_add(op->up, op->id, op->j.token_hash)) {
			srv_respond_error(x, 500, "out_of_memory", "no memory");
			tus_op_end(op);
			return;
		}
		op->pending = true;
	}
	tus_op_submit_owned(x, op, patch_load_work, patch_load_done);
}

/* ---- DELETE /v1/uploads/{id} ---- */
static void delete_work(api_job *j)
{
	tus_op *op = (tus_op *)j;
	if (tus_load(op))
		op->rc = srv_upload_remove(op->up->dir, op->u.device, op->u.id);
}

static void delete_done(srv_exchange *x, api_job *j)
{
	tus_op *op = (tus_op *)j;
	tus_op_unlock(op);
	if (op->rc < 0)
		tus_answer_failure(x, op);
	else
		srv_respond_head(x, 204, NULL, NULL, -1);
	tus_op_end(op);
}

void srv_api_upload_delete(srv_exchange *x)
{
	if (!tus_begin(x))
		return;
	tus_op *op = tus_op_start(x, OP_DELETE, true);
	if (op)
		tus_op_submit_owned(x, op, delete_work, delete_done);
}

/* ---- POST /v1/uploads/{id} with X-HTTP-Method-Override ---- */
/* tus core: where PATCH or DELETE cannot pass (an old WebView, a proxy that lets only GET and
 * POST through), the client POSTs with X-HTTP-Method-Override naming the method, which is
 * then the request's (tus-js-client's overridePatchMethod). The route claims its body as
 * PATCH's does, so the PATCH reads it the same way. */
void srv_api_upload_override(srv_exchange *x)
{
	if (!tus_begin(x))
		return;
	const srv_slice *o;
	if (!tus_one_header(x, "X-HTTP-Method-Override", &o))
		o = NULL; /* twice: neither */
	if (o && o->len == 5 && memcmp(o->ptr, "PATCH", 5) == 0) {
		x->req.method = SRV_METHOD_PATCH;
		srv_api_upload_patch(x);
	} else if (o && o->len == 6 && memcmp(o->ptr, "DELETE", 6) == 0) {
		x->req.method = SRV_METHOD_DELETE;
		srv_api_upload_delete(x);
	} else {
		srv_respond_error(
		    x, 400, "invalid_method_override",
		    "POST on an upload needs X-HTTP-Method-Override: PATCH or DELETE");
	}
}
