/*
 * upload_state.c — resumable uploads' state on a running server (upload_state.h): the lock
 * table (a small hash of the uploads that a request is working on, loop thread only) and the
 * expiry sweep: a timer on the loop queues srv_upload_sweep() on the job pool with a copy of
 * the locked ids, which it leaves alone. The timer never keeps a stopping server running.
 */
#include "upload_state.h"

#include "api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_EVERY_MAX_MS (10 * 60 * 1000)
#define SWEEP_EVERY_MIN_MS 1000

static unsigned bucket_of(const char *id)
{
	unsigned h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % UPLOAD_LOCK_BUCKETS;
}

upload_lock *srv_upload_lock_find(struct srv_uploads *up, const char *id)
{
	for (upload_lock *l = up->locks[bucket_of(id)]; l; l = l->next)
		if (strcmp(l->id, id) == 0)
			return l;
	return NULL;
}

upload_lock *srv_upload_lock_take(struct srv_uploads *up, const char *id, srv_exchange *x,
				  bool *oom)
{
	*oom = false;
	if (srv_upload_lock_find(up, id))
		return NULL;
	upload_lock *l = calloc(1, sizeof *l);
	if (!l) {
		*oom = true;
		return NULL;
	}
	snprintf(l->id, sizeof l->id, "%s", id);
	l->holder = x;
	unsigned b = bucket_of(id);
	l->next = up->locks[b];
	up->locks[b] = l;
	up->nlocks++;
	return l;
}

void srv_upload_lock_release(struct srv_uploads *up, upload_lock *l)
{
	for (upload_lock **p = &up->locks[bucket_of(l->id)]; *p; p = &(*p)->next) {
		if (*p == l) {
			if (l->busy)
				srv_upload_idle(up->dir, l->id);
			*p = l->next;
			up->nlocks--;
			free(l);
			return;
		}
	}
}

static upload_pending **pending_slot(struct srv_uploads *up, const char *id,
                                     const uint8_t token_hash[STORE_HASH_LEN])
{
	upload_pending **p = &up->pending[bucket_of(id)];
	while (*p && (strcmp((*p)->id, id) != 0 ||
	              memcmp((*p)->token_hash, token_hash, STORE_HASH_LEN) != 0))
		p = &(*p)->next;
	return p;
}

bool srv_upload_pending_add(struct srv_uploads *up, const char *id,
                            const uint8_t token_hash[STORE_HASH_LEN])
{
	upload_pending **p = pending_slot(up, id, token_hash);
	if (!*p) {
		if (!(*p = calloc(1, sizeof **p)))
			return false;
		snprintf((*p)->id, sizeof(*p)->id, "%s", id);
		memcpy((*p)->token_hash, token_hash, STORE_HASH_LEN);
	}
	(*p)->count++;
	return true;
}

void srv_upload_pending_drop(struct srv_uploads *up, const char *id,
                             const uint8_t token_hash[STORE_HASH_LEN])
{
	upload_pending **p = pending_slot(up, id, token_hash), *e = *p;
	if (e && --e->count == 0) {
		*p = e->next;
		free(e);
	}
}

unsigned srv_upload_pending(struct srv_uploads *up, const char *id,
                            const uint8_t token_hash[STORE_HASH_LEN])
{
	upload_pending *e = *pending_slot(up, id, token_hash);
	return e ? e->count : 0;
}

/* ---- the expiry sweep ---- */
typedef struct sweep_job {
	uv_work_t work;
	struct srv_uploads *up;
	char (*busy)[STORE_ID_LEN + 1]; /* uploads in use when the sweep began: left alone */
	size_t nbusy;
	unsigned removed;
	int rc;
} sweep_job;

/*
 * The sweep's question (pool): is the upload's owner still there? Erasing a family or removing a
 * member erases its uploads right after its transaction, and a crash between the two left them
 * for a whole expiry (the review); a revoked phone can finish nothing either.
 */
static bool still_owned(const srv_upload *u, void *arg)
{
	store *st = arg;
	store_device dev;
	store_member m;
	int rc = store_device_get(st, u->device, &dev);
	/* A device the directory does not know: gone only with its family, recorded as erased. A
	 * directory that is not this data's own (a restore gone wrong: its families are set aside
	 * in quarantine/) must not cost their unfinished recordings too (the review). */
	if (rc == STORE_ENOTFOUND)
		return store_family_erased(st, u->family) != 0;
	if (rc == 0 && dev.revoked_ms)
		return false;
	if (rc == 0 && dev.kind == STORE_DEVICE_KIOSK)
		rc = store_kiosk_child_linked(st, u->device, u->member);
	else if (rc == 0 && (rc = store_member_get(st, u->member, &m)) == 0 &&
	         strcmp(m.family_id.s, u->family) != 0)
		rc = STORE_ENOTFOUND;
	return rc != STORE_ENOTFOUND;
}

static void sweep_run(uv_work_t *w)
{
	sweep_job *sj = w->data;
	sj->rc =
	    srv_upload_sweep(sj->up->dir, api_now_ms(), (const char(*)[STORE_ID_LEN + 1]) sj->busy,
	                     sj->nbusy, still_owned, sj->up->srv->store, &sj->removed);
}

static void sweep_after(uv_work_t *w, int status)
{
	(void)status;
	sweep_job *sj = w->data;
	srv_server *s = sj->up->srv;
	sj->up->sweeping = false;
	char what[96];
	if (sj->rc < 0) {
		s->metrics.storage_errors++;
		snprintf(what, sizeof what, "the sweep failed: %s", strerror(-sj->rc));
		srv_log_event(s, "uploads", what);
	} else if (sj->removed) {
		snprintf(what, sizeof what, "%u expired or unfinished leftovers removed", sj->removed);
		srv_log_event(s, "uploads", what);
	}
	free(sj->busy);
	free(sj);
}

static void on_sweep_timer(uv_timer_t *t)
{
	struct srv_uploads *up = t->data;
	if (up->sweeping)
		return;
	sweep_job *sj = calloc(1, sizeof *sj);
	if (!sj)
		return;
	sj->up = up;
	sj->work.data = sj;
	if (up->nlocks && !(sj->busy = calloc(up->nlocks, sizeof *sj->busy))) {
		free(sj);
		return;
	}
	for (size_t b = 0; b < UPLOAD_LOCK_BUCKETS; b++)
		for (upload_lock *l = up->locks[b]; l; l = l->next)
			memcpy(sj->busy[sj->nbusy++], l->id, sizeof l->id);
	if (uv_queue_work(up->srv->loop, &sj->work, sweep_run, sweep_after) != 0) {
		free(sj->busy);
		free(sj);
		return;
	}
	up->sweeping = true;
}

int srv_uploads_start(srv_server *s)
{
	struct srv_uploads *up = calloc(1, sizeof *up);
	if (!up)
		return UV_ENOMEM;
	up->srv = s;
	int64_t expiry_ms = (int64_t)s->cfg.upload_expiry_s * 1000;
	int64_t start_ms = (int64_t)s->cfg.upload_start_expiry_s * 1000;
	int rc = srv_upload_dir_open(&up->dir, s->cfg.data_dir, expiry_ms, start_ms);
	if (rc < 0) {
		free(up);
		return rc;
	}
	srv_upload_dir_set_reserve(up->dir, s->cfg.upload_disk_reserve);
	int64_t every = (start_ms < expiry_ms ? start_ms : expiry_ms) / 2;
	if (every > SWEEP_EVERY_MAX_MS)
		every = SWEEP_EVERY_MAX_MS;
	if (every < SWEEP_EVERY_MIN_MS)
		every = SWEEP_EVERY_MIN_MS;
	uv_timer_init(s->loop, &up->sweep_timer);
	up->sweep_timer.data = up;
	uv_timer_start(&up->sweep_timer, on_sweep_timer, 0, (uint64_t)every); /* first: at start */
	uv_unref((uv_handle_t *)&up->sweep_timer);
	s->uploads = up;
	return 0;
}

void srv_uploads_free(srv_server *s)
{
	struct srv_uploads *up = s->uploads;
	if (!up)
		return;
	for (size_t b = 0; b < UPLOAD_LOCK_BUCKETS; b++) {
		while (up->locks[b])
			srv_upload_lock_release(up, up->locks[b]);
		for (upload_pending *e = up->pending[b], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	srv_upload_dir_close(up->dir);
	free(up);
	s->uploads = NULL;
}
