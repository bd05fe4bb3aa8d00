/*
 * api_session_use.c — a child's kiosk session is in use for as long as one of its requests is
 * received or worked on, not only when the request arrives: a story sent over a school's slow
 * link (a plain upload's body, a resumable upload's long PATCH, then the transcode) took longer
 * than kiosk-idle-s, and the session went idle under it: its long-poll heard 401, the tablet
 * went back to the children's screen, and the child had to log in again right after sending
 * (and to log in before resuming a resumable upload whose PATCH was cut).
 *
 * While such a request lasts, a timer on the loop records the session's use on the pool every
 * quarter of kiosk-idle-s (store_kiosk_session_auth with `use`, which writes at most every
 * twentieth), and once more when the request ends, so the session goes idle kiosk-idle-s after
 * that end, as after any other request. A use opens no session that is over (ended, idle, its
 * tablet revoked): it finds none, and the timer stops. One allocation and a timer per such
 * request, unreferenced (it keeps no stopping server running: its request's connection does);
 * nothing for a phone, a kiosk's own token or a long-poll (the app waiting by itself). Loop
 * thread, but for the record itself on the job pool.
 */
#include "api_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct api_session_use {
	uv_timer_t timer;
	uv_work_t work;
	srv_server *s;
	uint8_t token_hash[STORE_HASH_LEN];
	int64_t idle_ms;
	int rc;         /* the last record's; STORE_ENOTFOUND: the session is over */
	bool recording; /* a record is on the pool */
	bool again;     /* the request ended while one was: one more after it */
	bool ended;     /* the request is over, the timer closing */
	bool closed;    /* the timer is closed */
};

static void use_free(api_session_use *u)
{
	if (!u->ended || !u->closed || u->recording)
		return;
	sodium_memzero(u->token_hash, sizeof u->token_hash);
	free(u);
}

static void record_run(uv_work_t *w)
{
	api_session_use *u = w->data;
	store_device d;
	store_member m;
	u->rc = store_kiosk_session_auth(u->s->store, u->token_hash, api_now_ms(), u->idle_ms, true,
	                                 &d, &m, NULL);
}

static void record_after(uv_work_t *w, int status);

/* A use recorded now, on the pool (without a free thread for it: at the next tick, or, at the
 * request's end, not at all: the session goes idle up to a quarter of kiosk-idle-s early). */
static void record(api_session_use *u)
{
	u->work.data = u;
	if (uv_queue_work(u->s->loop, &u->work, record_run, record_after) != 0)
		return;
	u->recording = true;
	u->s->active_jobs++;
}

static void record_after(uv_work_t *w, int status)
{
	(void)status;
	api_session_use *u = w->data;
	u->recording = false;
	u->s->active_jobs--;
	if (u->again) {
		u->again = false;
		record(u);
	} else if (u->rc == STORE_ENOTFOUND && !u->ended) {
		uv_timer_stop(&u->timer); /* over: nothing to keep from going idle any more */
	}
	use_free(u);
}

static void on_tick(uv_timer_t *t)
{
	api_session_use *u = t->data;
	if (!u->recording)
		record(u);
}

static void on_closed(uv_handle_t *h)
{
	api_session_use *u = h->data;
	u->closed = true;
	use_free(u);
}

void api_session_use_begin(srv_server *s, api_job *j)
{
	if (!j->session || j->by_itself || j->in_use || j->idle_ms < 4)
		return;
	api_session_use *u = calloc(1, sizeof *u);
	if (!u || uv_timer_init(s->loop, &u->timer) != 0) {
		free(u);
		return; /* no memory: used as the request arrived, as before */
	}
	u->s = s;
	u->idle_ms = j->idle_ms;
	memcpy(u->token_hash, j->token_hash, sizeof u->token_hash);
	u->timer.data = u;
	uint64_t every = (uint64_t)j->idle_ms / 4;
	uv_timer_start(&u->timer, on_tick, every, every);
	uv_unref((uv_handle_t *)&u->timer);
	j->in_use = u;
}

void api_session_use_end(api_session_use *u)
{
	if (!u)
		return;
	u->ended = true;
	uv_close((uv_handle_t *)&u->timer, on_closed);
	if (u->recording)
		u->again = true;
	else
		record(u);
}
