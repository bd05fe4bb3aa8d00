/*
 * audio.c — GET/HEAD of a stored message's audio, streamed from storage.
 *
 * One job makes one storage call (store_audio_fetch): the message's size, hash and date, the
 * plan (entity.c: validators, conditionals, ranges) made from them inside that call, and the
 * first chunk, so a clip up to SRV_STREAM_CHUNK bytes costs one trip to the pool and one read
 * transaction; longer ones continue chunk by chunk, each read its own storage call. The ETag is
 * the content hash (the audio of a message never changes), Last-Modified its creation time.
 * Who may hear which family's audio is the caller's decision, made before calling this (or in
 * the same job, srv_audio_check). A stream buffer is reserved only when the job is back and
 * a body is to stream (srv_respond_stream): a refused caller, a 304 or a HEAD holds none.
 */
#include "audio.h"
#include "entity.h"
#include "static.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct source_ctx {
	store *st;
	char family[STORE_ID_LEN + 1];
	char message[STORE_ID_LEN + 1];
} source_ctx;

typedef struct audio_job {
	source_ctx *src;
	srv_entity e;
	srv_plan plan;
	char *first;
	size_t got;
	int rc;
	bool head_only;
	bool allow_hidden;
	char cache_control[48];
	srv_audio_check check; /* run == NULL: none */
	int check_rc;
	bool ids_ok;           /* both ids have an id's shape (else: 404 after the check) */
	const srv_request *req;
} audio_job;

/* A message deleted, or its family erased, while its clip streams: the clip is cut, as an
 * export whose phone was revoked, and it is no storage error (the first part's lookup would
 * have answered 404). */
static int source_read(void *ctx, uint64_t offset, char *buf, size_t cap, size_t *got)
{
	source_ctx *s = ctx;
	int rc = store_audio_read(s->st, s->family, s->message, offset, buf, cap, got);
	return rc == STORE_ENOTFOUND ? SRV_SOURCE_REFUSED : rc;
}

static void source_close(void *ctx)
{
	free(ctx);
}

/* Inside storage's read transaction: validators, then the plan, then what to read first. */
static int choose(void *ctx, const store_audio_info *info, uint64_t *offset, size_t *len)
{
	audio_job *j = ctx;
	if (info->state == STORE_MSG_HIDDEN && !j->allow_hidden)
		return STORE_ENOTFOUND; /* hidden by a moderator: not for the family's ears */
	srv_entity *e = &j->e;
	e->size = info->bytes;
	int n = snprintf(e->etag, sizeof e->etag, "\"");
	for (int i = 0; i < 16; i++)
		n += snprintf(e->etag + n, sizeof e->etag - (size_t)n, "%02x", info->sha256[i]);
	snprintf(e->etag + n, sizeof e->etag - (size_t)n, "\"");
	e->last_modified = info->created_ms / 1000;
	e->content_type = "audio/ogg";
	e->cache_control = j->cache_control;
	srv_entity_plan(j->req, e, &j->plan);
	*offset = j->plan.offset;
	*len = 0;
	if ((j->plan.status == 200 || j->plan.status == 206) && !j->head_only)
		*len = j->plan.length < SRV_STREAM_CHUNK ? (size_t)j->plan.length : SRV_STREAM_CHUNK;
	return 0;
}

static void audio_work(void *arg)
{
	audio_job *j = arg;
	if (j->check.run && (j->check_rc = j->check.run(j->check.ctx)) != 0)
		return;
	if (j->check.keep && !j->check.keep(j->check.ctx))
		snprintf(j->cache_control, sizeof j->cache_control, "private, no-store");
	if (!j->ids_ok) {
		j->rc = STORE_ENOTFOUND;
		return;
	}
	if (!(j->first = malloc(SRV_STREAM_CHUNK))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	j->rc = store_audio_fetch(j->src->st, j->src->family, j->src->message, choose, j,
				  j->first, &j->got, NULL);
}

static void audio_done(srv_exchange *x, void *arg)
{
	audio_job *j = arg;
	if (j->check.run && j->check_rc != 0) {
		j->check.refuse(x, j->check.ctx);
		free(j->src);
		free(j);
		return;
	}
	if (j->check.run && j->check.owner)
		srv_buffer_owner(x, j->check.owner);
	if (j->check.release)
		j->check.release(j->check.ctx);
	if (j->rc < 0) {
		free(j->first);
		free(j->src);
		if (j->rc == STORE_ENOTFOUND) {
			srv_respond_error(x, 404, "not_found", "no such message");
		} else {
			x->srv->metrics.storage_errors++;
			srv_respond_error_with(x, 503, store_errcode(j->rc), store_strerror(j->rc),
					       "Retry-After: 5\r\n");
		}
		free(j);
		return;
	}
	srv_source src = {source_read, source_close, j->src};
	if (x->head_only) {
		free(j->first);
		j->first = NULL;
		j->got = 0;
	}
	srv_respond_stream(x, &j->e, &j->plan, &src, j->first, j->got);
	free(j);
}

void srv_respond_message_audio(srv_exchange *x, const char *family_id, const char *message_id,
			       bool allow_hidden)
{
	srv_respond_message_audio_for(x, family_id, message_id, allow_hidden, -1);
}

static void start(srv_exchange *x, const char *family_id, const char *message_id,
		  bool allow_hidden, int64_t max_age_s, const srv_audio_check *check);

void srv_respond_message_audio_for(srv_exchange *x, const char *family_id,
				   const char *message_id, bool allow_hidden, int64_t max_age_s)
{
	if (store_id_check(family_id) < 0 || store_id_check(message_id) < 0) {
		srv_respond_error(x, 404, "not_found", "no such message");
		return;
	}
	start(x, family_id, message_id, allow_hidden, max_age_s, NULL);
}

void srv_respond_message_audio_checked(srv_exchange *x, const char *family_id,
                                       const char *message_id, int64_t max_age_s,
                                       const srv_audio_check *check)
{
	/* Malformed ids are not looked at here: the check answers first (401 before 404),
	 * then storage finds nothing under them. */
	start(x, family_id, message_id, false, max_age_s, check);
}

static void start(srv_exchange *x, const char *family_id, const char *message_id,
		  bool allow_hidden, int64_t max_age_s, const srv_audio_check *check)
{
	audio_job *j = calloc(1, sizeof *j);
	source_ctx *src = calloc(1, sizeof *src);
	if (!j || !src) {
		free(j);
		free(src);
		if (check && check->release)
			check->release(check->ctx);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	if (check)
		j->check = *check;
	j->ids_ok = store_id_check(family_id) == 0 && store_id_check(message_id) == 0;
	src->st = x->srv->store;
	snprintf(src->family, sizeof src->family, "%s", family_id);
	snprintf(src->message, sizeof src->message, "%s", message_id);
	j->src = src;
	j->req = &x->req;
	j->head_only = x->head_only;
	j->allow_hidden = allow_hidden;
	/* A message's audio never changes: kept for ever, unless the caller's access ends. */
	if (max_age_s < 0)
		snprintf(j->cache_control, sizeof j->cache_control,
			 "private, max-age=31536000, immutable");
	else
		snprintf(j->cache_control, sizeof j->cache_control, "private, max-age=%lld",
			 (long long)max_age_s);
	if (srv_job_submit(x, audio_work, audio_done, j) < 0) {
		if (check && check->release)
			check->release(check->ctx);
		free(src);
		free(j);
		srv_respond_busy(x);
	}
}
