/*
 * tus_op.h — one tus request's state and the steps every handler of api_uploads.c shares
 * (tus_op.c). Private to server/; loop thread unless a function says "pool".
 */
#ifndef JIAYIN_SERVER_TUS_OP_H
#define JIAYIN_SERVER_TUS_OP_H

#include "api_internal.h"
#include "upload_state.h"
#include "uploads.h"

#include <stdbool.h>
#include <stdint.h>

#define TUS_HEADER "Tus-Resumable: 1.0.0\r\n"

/* Outcomes of our own, next to uploads.c's SRV_UPLOAD_E* and -errno. */
enum {
	TUS_EMISMATCH = -20001,  /* Upload-Offset is not the upload's offset: 409 */
	TUS_EOVERFLOW = -20002,  /* the body would pass Upload-Length: 413 */
	TUS_ERECIPIENT = -20003, /* `to` is not a member of the family: 400 */
};

enum { OP_CREATE, OP_HEAD, OP_GET, OP_PATCH, OP_DELETE };

/* One request's state, from its handler to its answer (across its jobs and its body). */
typedef struct tus_op {
	api_job j;   /* first: api_job_run() runs it, the steps cast back to the op */
	api_job fin; /* the whole upload, through the plain upload's steps */
	struct srv_uploads *up;
	int kind;
	char id[STORE_ID_LEN + 1];
	upload_lock *lock; /* held by this request (its step under the lock); else NULL */
	api_work_fn
	    step_work; /* HEAD, PATCH, DELETE: what runs under the lock (tus_op_submit_owned) */
	api_done_fn step_done;
	srv_upload u;         /* the record */
	api_in_flight flight; /* its finish under the client's key, for a plain retry of it */
	int rc;               /* the step's outcome: 0, TUS_E*, SRV_UPLOAD_E* or -errno */
	int store_rc;         /* a storage call's, answered as storage's */
	unsigned cap;         /* creation: the device's cap */
	int64_t free_ms;      /* creation refused at the cap: when a place frees by itself */
	int fd;               /* PATCH: the .part the body goes to */
	uint64_t want_offset; /* PATCH: Upload-Offset */
	uint64_t declared;    /* PATCH: Content-Length (0 when chunked: the claim bounds it) */
	int body_status;      /* PATCH: how the body ended (0, or why not) */
	uint64_t written;     /* PATCH: bytes of it in the .part */
	bool again;           /* creation: the same recording's unfinished upload was the answer */
	bool expired;         /* tus_load: the caller's upload, but past its expiry */
	bool finished;        /* fin ran: the upload was whole */
	bool whole;           /* HEAD: whole but not yet a message; fin runs next */
	bool pending;         /* PATCH: counted among its upload's pending ones (upload_state.h) */
	bool claiming;        /* PATCH: inside srv_body_claim() */
	bool claim_failed;    /* PATCH: the body ended at once and its job did not start */
} tus_op;

/* The header `name` at most once (*out NULL when absent); false when it came twice. */
bool tus_one_header(srv_exchange *x, const char *name, const srv_slice **out);
/* tus's version check (one Tus-Resumable: 1.0.0); false after answering 412. */
bool tus_begin(srv_exchange *x);
/* An HTTP date (RFC 9110 IMF-fixdate) of ms since the epoch. */
void tus_http_date(int64_t ms, char out[40]);

/* A new op for the caller, with the path's upload id; NULL after answering (401, 500). */
tus_op *tus_op_start(srv_exchange *x, int kind, bool has_id);
/* Gives back the lock and the .part before answering; tus_op_end() frees the op. */
void tus_op_unlock(tus_op *op);
void tus_op_end(tus_op *op);
/* The job's done once its authentication passed (401 or storage's answer otherwise). */
void tus_op_after(srv_exchange *x, void *arg);
/* Submits work then done; false after answering 503 busy and ending the op. */
bool tus_op_submit(srv_exchange *x, tus_op *op, api_work_fn work, api_done_fn done);
/* The same, under the upload's lock, once a job found the caller is its owner (else 404/423). */
void tus_op_submit_owned(srv_exchange *x, tus_op *op, api_work_fn work, api_done_fn done);

/* The caller's upload op->id into op->u (pool); false with op->rc set when none. */
bool tus_load(tus_op *op);
/* The answer for op->rc or op->store_rc (404, 409, 413, 429, 507, 503 ...). */
void tus_answer_failure(srv_exchange *x, const tus_op *op);
/* 423 upload_locked: another request works on the upload; a HEAD or DELETE (cut_receiver) also
 * cuts a PATCH still receiving for it. */
void tus_answer_locked(srv_exchange *x, tus_op *op, bool cut_receiver);
/* The upload's offset, length and expiry (and its message's id, once it is one). */
void tus_answer_offset(srv_exchange *x, const tus_op *op, int status, const char *message_id);

/* The whole upload becomes a message in a heavy job, then done; false after answering 503 (busy,
 * or upload_in_progress: the same phone's plain copy of its key in flight). */
bool tus_finish_submit(srv_exchange *x, tus_op *op, api_done_fn done);
/* The finished upload's answer: the plain upload's, seen through tus. */
void tus_finish_answer(srv_exchange *x, tus_op *op);

#endif
