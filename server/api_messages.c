/*
 * api_messages.c — the v1 API's voice mailbox: sending a recording (transcoded from its
 * temporary file on the job pool, appended durably with its idempotency key), the audio,
 * listened receipts, keeping, deleting, flagging. Listing and long-polling are api_poll.c's. The shared request machinery
 * (authentication, one job per request, JSON) is api.c's.
 */
#include "api_internal.h"
#include "audio.h"
#include "query.h"
#include "routes.h"
#include "upload_state.h"
#include "uploads.h"

#include "codec.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

json_t *api_message_json(const store_message *m)
{
	/* A message a moderator hid is not the family's to hear: it reads as deleted, wherever
	 * the family sees it (a list, a retried upload's answer). */
	if (m->state == STORE_MSG_DELETED || m->state == STORE_MSG_HIDDEN)
		return json_pack("{s:s, s:I, s:s}", "id", m->id.s, "seq", (json_int_t)m->seq,
				 "state", "deleted");
	json_t *wave = json_array(), *heard = json_array();
	for (int i = 0; wave && i < STORE_WAVEFORM_POINTS; i++)
		json_array_append_new(wave, json_integer(m->waveform[i]));
	for (unsigned i = 0; heard && i < m->listened_count; i++)
		json_array_append_new(heard, json_string(m->listened_by[i].s));
	return json_pack("{s:s, s:I, s:s, s:o, s:I, s:I, s:I, s:o, s:o, s:s, s:b}", "id", m->id.s,
			 "seq", (json_int_t)m->seq, "sender", m->sender.s, "to",
			 m->to.s[0] ? json_string(m->to.s) : json_null(), "created_at",
			 (json_int_t)(m->created_ms / 1000), "duration_ms",
			 (json_int_t)m->duration_ms, "bytes", (json_int_t)m->bytes, "waveform",
			 wave, "listened_by", heard, "state", store_msg_state_name(m->state),
			 "kept", m->kept);
}

bool api_may_see(const store_message *m, const store_member *me)
{
	return !m->to.s[0] || me->role != STORE_ROLE_CHILD || strcmp(m->to.s, me->id.s) == 0 ||
	       strcmp(m->sender.s, me->id.s) == 0;
}

/* The path's message in j->msg, in whatever state, if the caller may see it; one they may
 * not see is STORE_ENOTFOUND like an unknown id. */
static int seen_message(api_job *j)
{
	if (!api_own_family(j))
		return j->rc;
	int rc = store_message_get(j->st, j->param[0], j->param[1], &j->msg);
	if (rc < 0)
		return rc;
	return api_may_see(&j->msg, &j->member) ? 0 : STORE_ENOTFOUND;
}

/*
 * seen_message, and a deleted message and (unless allow_hidden) a hidden one are
 * STORE_ENOTFOUND too.
 */
static int visible_message(api_job *j, bool allow_hidden)
{
	int rc = seen_message(j);
	if (rc < 0)
		return rc;
	if (j->msg.state == STORE_MSG_DELETED ||
	    (j->msg.state == STORE_MSG_HIDDEN && !allow_hidden))
		return STORE_ENOTFOUND;
	return 0;
}

int api_upload_key_message(api_job *j, const char *family, const char *idem, store_message *out)
{
	char key[API_IDEM_STORED_LEN];
	api_idempotency_stored(j, idem, key);
	return store_message_by_key(j->st, family, key, out);
}

/*
 * The quota counts stored Opus, and a recording arrives as up to 64 times as many bytes (48 kHz
 * 16-bit stereo WAV, 1,536 kb/s, becomes 24 kb/s): so the family's unfinished uploads may hold
 * that many times its room, and a grandparent's 170 MB WAV is not refused by a family with
 * 100 MB of room. family-upload-bytes bounds what any family holds of the disk (the review: a
 * family whose quota was 1 byte held 161 MB of unfinished uploads, and could have held 100 GiB).
 */
int api_upload_allowance(api_job *j, const char *family, const char *idem, uint64_t *allowance)
{
	store_family f;
	store_message m;
	uint64_t usage;
	int rc;
	*allowance = j->upload_cap;
	if (idem && idem[0] &&
	    (rc = api_upload_key_message(j, family, idem, &m)) != STORE_ENOTFOUND)
		return rc; /* 0: a retry of a stored message, answered with it */
	if ((rc = store_family_get(j->st, family, &f)) < 0 ||
	    (rc = store_mailbox_usage(j->st, family, &usage)) < 0)
		return rc;
	uint64_t quota = f.quota_bytes ? f.quota_bytes : j->default_quota;
	uint64_t room = quota > usage ? quota - usage : 0;
	if (room < j->upload_cap / UPLOAD_ROOM_FACTOR)
		*allowance = room * UPLOAD_ROOM_FACTOR;
	return 0;
}

void api_respond_disk_kept(srv_exchange *x)
{
	x->srv->metrics.uploads_refused_disk++;
	srv_respond_error_with(x, 507, "storage_full", STORAGE_KEPT_WHY, STORAGE_KEPT_RETRY);
}

/* The recipient (j->to, if any) is a member of the caller's family: 0, else j->rc 2 (no such
 * member here) or a storage code, and false. */
static bool recipient_checked(api_job *j)
{
	if (!j->to[0])
		return true;
	store_member to;
	j->rc = store_member_get(j->st, j->to, &to);
	if (j->rc == 0 && strcmp(to.family_id.s, j->device.family_id.s) != 0)
		j->rc = STORE_ENOTFOUND;
	if (j->rc == STORE_ENOTFOUND)
		j->rc = 2; /* no such recipient in this family */
	return j->rc == 0;
}

/*
 * What is decided before a recording is read (the caller's own family checked first): a retry
 * of a stored message (j->existed, its message in j->msg; key: the stored form of j->idem), the
 * recipient (j->rc 2: no such member here) and the family. true when the recording is to be
 * transcoded next.
 */
static bool upload_checked(api_job *j, char key[API_IDEM_STORED_LEN])
{
	/* A retry of an upload that was stored: the message, without transcoding it again. First:
	 * the key names what was stored, even when its recipient has left since (the review: the
	 * retry of a lost 201 was 400 invalid_recipient, and a resumable upload's finish done again
	 * after a crash removed the upload, though its message was stored). */
	if (j->idem[0]) {
		api_idempotency_stored(j, j->idem, key);
		j->rc = store_message_by_key(j->st, j->device.family_id.s, key, &j->msg);
		if (j->rc == 0) {
			j->existed = true;
			return false;
		}
		if (j->rc != STORE_ENOTFOUND)
			return false;
		j->rc = 0;
	}
	if (!recipient_checked(j))
		return false;
	if ((j->rc = store_family_get(j->st, j->device.family_id.s, &j->family)) < 0)
		return false;
	return true;
}

void api_upload_work(api_job *j)
{
	char key[API_IDEM_STORED_LEN];
	if (!api_own_family(j) || !upload_checked(j, key))
		return;
	codec_source src;
	codec_fd_source fds;
	codec_sink sink;
	codec_buffer out = {0};
	codec_options opt;
	codec_options_init(&opt);
	codec_source_fd(&src, &fds, j->body_fd);
	codec_sink_buffer(&sink, &out);
	uint64_t t0 = uv_hrtime();
	j->codec_rc = codec_transcode(&src, &sink, &opt, &j->cres);
	j->transcode_s = (double)(uv_hrtime() - t0) / 1e9;
	j->transcoded = true;
	/* Removed while it ran, the sender or the one it is for: nothing (review finding: a
	 * story for a member removed meanwhile was stored, to a former member). */
	if (j->codec_rc < 0 || !api_still_the_caller(j) || !recipient_checked(j)) {
		free(out.data);
		return;
	}
	store_new_message m = {.sender = j->member.id.s,
			       .to = j->to[0] ? j->to : NULL,
			       .created_ms = api_now_ms(),
			       .duration_ms = j->cres.duration_ms,
			       .lufs = j->cres.output_lufs,
			       .waveform = j->cres.waveform,
			       .audio = out.data,
			       .audio_len = out.len,
			       .idempotency_key = j->idem[0] ? key : NULL,
			       .quota_bytes = j->family.quota_bytes ? j->family.quota_bytes
								: j->default_quota};
	int existed = 0;
	j->audio_bytes = out.len; /* what a refusal for want of room needed (tus_op.c) */
	j->rc = store_message_append(j->st, j->device.family_id.s, &m, &j->msg, &existed);
	j->existed = existed;
	free(out.data);
}

/*
 * Every transcode is CPU spent, whatever became of its recording: an operator sizing the
 * machine by these counts saw only those whose message was stored (a recording refused after
 * its transcode, 422 audio_silent or 507 quota_exceeded, a resumable upload's finish among
 * them, was not counted). Those that added no message are counted apart as well.
 */
void api_transcode_counted(srv_server *s, api_job *j)
{
	if (!j->transcoded)
		return;
	j->transcoded = false;
	s->metrics.transcodes++;
	s->metrics.transcode_seconds += j->transcode_s;
	if (j->auth_rc < 0 || j->rc != 0 || j->codec_rc < 0 || j->existed)
		s->metrics.transcodes_not_stored++;
}

void api_upload_done(srv_exchange *x, api_job *j)
{
	if (j->rc == 2) {
		srv_respond_error(x, 400, "invalid_recipient", "to: no such member in this family");
		return;
	}
	if (j->rc == 0 && j->codec_rc < 0 && !codec_err_is_input(j->codec_rc)) {
		/* Ours, not the recording's (no memory, a read failed): try again, not "bad audio". */
		srv_respond_error_with(x, 503, codec_errcode(j->codec_rc),
				       codec_strerror(j->codec_rc), "Retry-After: 5\r\n");
		return;
	}
	if (j->rc == 0 && j->codec_rc < 0) {
		bool big = j->codec_rc == CODEC_ETOOLARGE;
		srv_respond_error(x, big ? 413 : 422, codec_errcode(j->codec_rc),
				  codec_strerror(j->codec_rc));
		return;
	}
	if (j->rc == STORE_EQUOTA) {
		srv_respond_error(x, 507, "quota_exceeded", "the family's mailbox is full");
		return;
	}
	if (j->rc < 0) {
		if (j->refused_before)
			api_storage_failed_again(x, j->rc); /* counted when it failed */
		else
			api_storage_failed(x, j->rc);
		return;
	}
	if (!j->existed)
		api_mailbox_changed(x->srv, j->device.family_id.s);
	api_respond_json(x, j->existed ? 200 : 201, json_pack("{s:o}", "message",
							  api_message_json(&j->msg)));
}

/*
 * A chunked body's length is not known before it ends. Held whole, what the family has left
 * (200 MiB with the defaults) would keep the rest of the family out while it arrives (the
 * review: Mum's 80 KB clip, sent chunked, made grandma's 48 KB clip and her resumable upload of
 * 1 MB 507): so it holds CHUNKED_FIRST_HOLD, and a timer keeps the hold at twice what arrived,
 * up to what it may have. When the family's other uploads took the room it needs meanwhile,
 * the body is refused in its middle (507 uploads_hold_room, srv_body_refuse) and the phone,
 * still sending, reads why.
 */
#define CHUNKED_FIRST_HOLD (1u << 20)
#define CHUNKED_WATCH_MS 250

typedef struct body_watch {
	uv_timer_t timer;
	api_job *j;
	srv_exchange *x; /* the claimed body's, until upload_body_done */
} body_watch;

static void body_watch_tick(uv_timer_t *t)
{
	body_watch *w = t->data;
	api_job *j = w->j;
	uint64_t in = w->x->body_len; /* staged or written so far (conn_body.c counts them) */
	uint64_t want = in * 2 > CHUNKED_FIRST_HOLD ? in * 2 : CHUNKED_FIRST_HOLD;
	if (want > j->body_max)
		want = j->body_max;
	if (want <= j->held)
		return;
	uint64_t got;
	int rc = srv_upload_hold_resize(j->upload_dir, j->hold, in > j->held ? in : j->held, want,
	                                j->allowance, api_now_ms(), &got);
	if (rc == 0) {
		j->held = got;
		return;
	}
	if (in <= j->held)
		return; /* what arrived is held: perhaps room comes back before it needs more */
	uv_timer_stop(t);
	if (rc == SRV_UPLOAD_EDISK) {
		w->x->srv->metrics.uploads_refused_disk++;
		srv_body_refuse(w->x, 507, "storage_full", STORAGE_KEPT_WHY, STORAGE_KEPT_RETRY);
		return;
	}
	srv_log_event(w->x->srv, "upload_refused",
	              "a chunked upload passed the room its family's other uploads left it");
	srv_body_refuse(w->x, 507, "uploads_hold_room", UPLOADS_HOLD_ROOM_WHY,
	                UPLOADS_HOLD_ROOM_RETRY);
}

static void body_watch_closed(uv_handle_t *h)
{
	free(h->data);
}

static void body_watch_end(api_job *j)
{
	if (!j->watch)
		return;
	uv_close((uv_handle_t *)&j->watch->timer, body_watch_closed);
	j->watch = NULL;
}

/* Before the claim: its done may come at once. Without memory for the timer, the body may
 * have no more than its first hold (413 past it). */
static void body_watch_start(srv_exchange *x, api_job *j)
{
	body_watch *w = calloc(1, sizeof *w);
	if (!w) {
		j->body_max = j->held;
		return;
	}
	w->j = j;
	w->x = x;
	uv_timer_init(x->srv->loop, &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, body_watch_tick, CHUNKED_WATCH_MS, CHUNKED_WATCH_MS);
	uv_unref((uv_handle_t *)&w->timer);
	j->watch = w;
}

/*
 * A recording is taken only from a caller who may send it: the token and the family are
 * checked on the pool while the body waits unread (no 100 Continue yet), and only then does
 * the body go to an unnamed file in data/tmp. Anyone else is answered before a byte of it
 * lands on the disk, so nobody without a place in the family can fill it.
 */
static void upload_gate_work(api_job *j)
{
	if (!api_own_family(j))
		return;
	/* A recording that waits for 100 Continue is answered now when its key names a stored
	 * message (200, as after its body), or its recipient is none, with a key or without: the
	 * phone need not send the recording (a 170 MB WAV whose answer was lost, or for a member
	 * removed meanwhile). Without the expectation the body is on its way, and a client that
	 * writes it whole before reading would meet the close instead of the answer, and send it
	 * again. */
	char key[API_IDEM_STORED_LEN];
	if (j->expect && !upload_checked(j, key))
		return;
	/* The body counts with the family's unfinished uploads while it arrives: all of it when
	 * its length is declared; else it may have what the family has left now (more is 507,
	 * srv_body_limit_answer) and holds CHUNKED_FIRST_HOLD of it, more as it arrives
	 * (body_watch). Either way the server's disk keeps its reserve (SRV_UPLOAD_EDISK). */
	bool chunked = j->declared == 0;
	if ((j->rc = api_upload_allowance(j, j->param[0], j->idem, &j->allowance)) < 0)
		return;
	j->body_max = j->declared;
	if (chunked) {
		uint64_t left =
		    srv_upload_room_left(j->upload_dir, j->param[0], j->allowance, api_now_ms());
		j->body_max = left < SRV_UPLOAD_MAX ? left : SRV_UPLOAD_MAX;
	}
	uint64_t first =
	    chunked && j->body_max > CHUNKED_FIRST_HOLD ? CHUNKED_FIRST_HOLD : j->body_max;
	int rc = srv_upload_hold(j->upload_dir, j->param[0], chunked ? 1 : j->declared,
	                         chunked ? (first ? first : 1) : j->declared, j->allowance,
	                         api_now_ms(), j->hold, &j->held);
	if (rc < 0) {
		j->rc = rc == SRV_UPLOAD_EROOM   ? STORE_EQUOTA
		        : rc == SRV_UPLOAD_EHELD ? SRV_UPLOAD_EHELD
		        : rc == SRV_UPLOAD_EDISK ? SRV_UPLOAD_EDISK
		                                 : STORE_ENOMEM;
		return;
	}
	j->body_fd = open(j->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (j->body_fd < 0)
		j->rc = errno == ENOSPC || errno == EDQUOT ? STORE_EFULL : STORE_EIO;
}

static void upload_refused(srv_exchange *x, api_job *j)
{
	if (j->rc == STORE_EQUOTA)
		srv_respond_error(x, 507, "quota_exceeded", QUOTA_EXCEEDED_WHY);
	else if (j->rc == SRV_UPLOAD_EHELD)
		srv_respond_error_with(x, 507, "uploads_hold_room", UPLOADS_HOLD_ROOM_WHY,
		                       UPLOADS_HOLD_ROOM_RETRY);
	else if (j->rc == SRV_UPLOAD_EDISK)
		api_respond_disk_kept(x);
	else
		api_storage_failed(x, j->rc); /* 404 another family's, 503/507 no file */
}

/*
 * A phone that gave up waiting for its upload's answer (OkHttp's read timeout of 10 s against
 * a long clip's transcode, docs/api.md) sends it again at once, with Expect: 100-continue and
 * its Idempotency-Key. The first was still being transcoded then, its key not stored yet: the
 * retry was told 100 Continue, and the phone sent the whole recording again (9.6 MB for five
 * minutes of WAV), transcoded a second time for the same 200. Now, while the same phone's
 * recording under the same key is being transcoded here, the retry is answered 503
 * upload_in_progress before its body; sent again after Retry-After, it finds the message (200,
 * before its body). It is looked for on the loop before the retry's key is looked up on the
 * pool: a first no longer listed was stored (or refused) before that lookup, which finds it.
 *
 * A retry without the expectation (OkHttp never sends it) has its body read all the same, and
 * so has one whose gate came before the first's body was whole. Its recording whole, it was
 * transcoded again, taking another of the family's transcode places, for storage to find the
 * key and answer 200. Now it waits on the loop for the first (retry_park), its place given
 * back, its client watched: when the first's job ends, its key is looked up (a light job) and
 * it is answered 200 with the message; only when the first stored nothing (it failed) is this
 * one, whole, transcoded itself. A client that goes away while it waits frees it at once.
 */
#define IN_FLIGHT_RETRY_AFTER "Retry-After: 2\r\n"

/* The same phone's recording of family's under idem in flight (plain_only: a plain copy). */
static api_in_flight *find(const srv_server *s, const char *family,
                           const uint8_t token_hash[STORE_HASH_LEN], const char *idem,
                           bool plain_only)
{
	if (!idem[0])
		return NULL;
	for (api_in_flight *f = s->uploads_in_flight; f; f = f->next)
		if (strcmp(f->idem, idem) == 0 && strcmp(f->family, family) == 0 &&
		    memcmp(f->token_hash, token_hash, STORE_HASH_LEN) == 0 &&
		    !(plain_only && f->resumable))
			return f;
	return NULL;
}

static api_in_flight *in_flight(const srv_server *s, const api_job *j)
{
	return find(s, j->param[0], j->token_hash, j->idem, false);
}

bool api_plain_in_flight(const srv_server *s, const char *family,
                         const uint8_t token_hash[STORE_HASH_LEN], const char *idem)
{
	return find(s, family, token_hash, idem, true) != NULL;
}

void api_respond_in_flight(srv_exchange *x)
{
	srv_respond_error_with(x, 503, "upload_in_progress",
	                       "this recording is being stored: send it again shortly",
	                       IN_FLIGHT_RETRY_AFTER);
}

static void in_flight_link(api_in_flight *f, api_in_flight **head)
{
	f->head = head;
	f->prev = NULL;
	f->next = *head;
	if (f->next)
		f->next->prev = f;
	*head = f;
}

static void in_flight_unlink(api_in_flight *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		*f->head = f->next;
	if (f->next)
		f->next->prev = f->prev;
	f->head = NULL;
	f->prev = f->next = NULL;
}

void api_in_flight_begin(srv_server *s, api_in_flight *f, const char *family,
                         const uint8_t token_hash[STORE_HASH_LEN], const char *idem)
{
	if (!idem[0] || f->head)
		return;
	snprintf(f->family, sizeof f->family, "%.*s", STORE_ID_LEN, family);
	memcpy(f->token_hash, token_hash, sizeof f->token_hash);
	snprintf(f->idem, sizeof f->idem, "%s", idem);
	in_flight_link(f, &s->uploads_in_flight);
}

/* j's recording is whole and goes to be transcoded: listed until its job is freed. */
static void in_flight_begin(srv_server *s, api_job *j)
{
	api_in_flight_begin(s, &j->flight, j->param[0], j->token_hash, j->idem);
}

/* A waiting retry off its first's list and no longer watched; the caller still holds its
 * connection (srv_conn_unref once done with the exchange). */
static void retry_unpark(api_in_flight *f)
{
	srv_exchange *x = f->x;
	in_flight_unlink(f);
	f->job = NULL;
	f->x = NULL;
	x->srv->upload_retries_waiting--;
	srv_conn_unwatch(x->conn);
}

static void retry_lookup_work(api_job *j)
{
	char key[API_IDEM_STORED_LEN];
	if (api_own_family(j))
		(void)upload_checked(j, key); /* j->existed: the first's message, in j->msg */
}

static void upload_whole(srv_exchange *x, api_job *j);

/* Looked up after the first's end: its message (200), or what this one is told without a
 * transcode (its phone revoked: 401; its recipient gone: 400); else transcoded now. */
static void retry_looked_up(srv_exchange *x, void *arg)
{
	api_job *j = arg;
	if (j->auth_rc < 0 || j->rc != 0 || j->existed) {
		j->done = api_upload_done;
		api_job_done(x, j);
		return;
	}
	upload_whole(x, j); /* the first stored nothing: this one is whole */
}

/* The first's job ended (stored, or refused): the waiting retry's key is looked up. */
static void retry_resume(api_in_flight *f)
{
	srv_exchange *x = f->x;
	srv_conn *c = x->conn;
	api_job *j = f->job;
	retry_unpark(f);
	if (c->closed) { /* every connection closed at the end of a shutdown's grace */
		api_job_free(j);
	} else {
		j->work = retry_lookup_work;
		if (srv_job_submit_any(x, api_job_run, retry_looked_up, j) < 0) {
			api_job_free(j);
			srv_respond_error(x, 500, "out_of_memory", "no memory");
		}
	}
	srv_conn_unref(c);
}

void api_in_flight_end(api_in_flight *f)
{
	if (!f->head)
		return;
	if (f->x) { /* a retry freed while it waits (retry_gone) */
		srv_conn *c = f->x->conn;
		retry_unpark(f);
		srv_conn_unref(c); /* its handles hold it still: the exchange stays */
		return;
	}
	in_flight_unlink(f);
	while (f->parked)
		retry_resume(f->parked);
}

/* Its client went away while it waited: freed now, its recording with it; one that only shut
 * its side (or sent more meanwhile) is told to send it again shortly, as before its body. */
static void retry_gone(void *arg, srv_gone why)
{
	api_in_flight *f = arg;
	srv_exchange *x = f->x;
	api_job_free(f->job);
	if (why != SRV_GONE_RESET)
		api_respond_in_flight(x);
}

/* j, whole, waits for first's end on the loop; its reserved transcode goes back to the family
 * meanwhile (if it transcodes after all, it asks for one again). */
static void retry_park(srv_exchange *x, api_job *j, api_in_flight *first)
{
	api_in_flight *f = &j->flight;
	srv_job_heavy_unreserve(j->heavy);
	j->heavy = NULL;
	f->job = j;
	f->x = x;
	x->conn->refs++;
	x->srv->upload_retries_waiting++;
	in_flight_link(f, &first->parked);
	srv_conn_watch(x->conn, retry_gone, f);
}

/* j's recording is whole: transcoded and stored, unless the same phone's copy under its key is
 * in flight, which it waits for. */
static void upload_whole(srv_exchange *x, api_job *j)
{
	api_in_flight *first = j->idem[0] ? in_flight(x->srv, j) : NULL;
	if (first) {
		retry_park(x, j, first);
		return;
	}
	j->work = api_upload_work;
	j->done = api_upload_done;
	in_flight_begin(x->srv, j);
	api_run_heavy(x, j, j->param[0]);
}

/* Bytes of the body on the disk: out of what it has still to write (srv_body_on_written). */
static void upload_body_written(void *arg, uint64_t file_off)
{
	api_job *j = arg;
	srv_upload_hold_written(j->upload_dir, j->hold, file_off);
}

/* The body is over: whole, it is transcoded and stored (the caller checked again first). */
static void upload_body_done(srv_exchange *x, void *arg, int status)
{
	api_job *j = arg;
	x->body_fd = j->body_fd; /* the exchange closes it at its end */
	body_watch_end(j);
	if (status == 0)
		srv_upload_hold_written(j->upload_dir, j->hold, x->body_len); /* all of it */
	if (status == 0 && j->declared == 0 && j->held != x->body_len) {
		/* Whole: it holds what it is while it is transcoded (what arrived since the last
		 * tick too, if there is room: it is here either way). */
		uint64_t got;
		(void)srv_upload_hold_resize(j->upload_dir, j->hold,
		                             x->body_len < j->held ? x->body_len : j->held,
		                             x->body_len, j->allowance, api_now_ms(), &got);
	}
	if (status < 0) {
		api_job_free(j);
		srv_respond_body_failure(x); /* 408, 400, 413, 507, or nothing if gone */
		return;
	}
	if (x->body_len == 0) {
		api_job_free(j);
		srv_respond_error(x, 422, "audio_truncated", "the request has no audio");
		return;
	}
	j->rc = j->auth_rc = 0;
	j->checked = true; /* at the gate: a session over since keeps its story */
	upload_whole(x, j);
}

static void upload_gate_done(srv_exchange *x, void *arg)
{
	api_job *j = arg;
	if (j->auth_rc >= 0 && (j->existed || j->rc == 2)) {
		j->done = api_upload_done; /* decided before the body (upload_checked) */
		api_job_done(x, j);
		return;
	}
	if (j->auth_rc < 0 || j->rc < 0) {
		api_job_done(x, j); /* 401, or upload_refused; the body stays unread */
		return;
	}
	/* The transcode is reserved now, before the body costs the phone its data and us the
	 * disk: refused now when the family has its share waiting (or the queue is full), and
	 * never once the body is in (api_job_free gives it back if the body never comes). */
	int busy = srv_job_heavy_reserve(x->srv, j->param[0], &j->heavy);
	if (busy < 0) {
		close(j->body_fd);
		api_job_free(j);
		srv_respond_job_refused(x, busy);
		return;
	}
	api_caller_buffers(x, j);
	/* A child's story over a slow link keeps its session in use until it is stored. */
	api_session_use_begin(x->srv, j);
	int fd = j->body_fd;
	if (j->declared == 0 && j->held < j->body_max)
		body_watch_start(x, j);
	if (j->declared == 0 && j->body_max < SRV_UPLOAD_MAX) {
		/* Past what it may have, a chunked body is told why, as a declared one would be
		 * before its body: the family's room, or what its other uploads hold of it. */
		if (j->body_max < j->allowance)
			srv_body_limit_answer(x, 507, "uploads_hold_room", UPLOADS_HOLD_ROOM_WHY,
			                      UPLOADS_HOLD_ROOM_RETRY);
		else
			srv_body_limit_answer(x, 507, "quota_exceeded", QUOTA_EXCEEDED_WHY, NULL);
	}
	srv_body_on_written(x, upload_body_written);
	int rc = srv_body_claim(x, fd, 0, j->body_max, upload_body_done, j);
	if (rc < 0) { /* nothing read, and upload_body_done will not come */
		body_watch_end(j);
		close(fd);
		api_job_free(j);
		if (rc == UV_EBUSY)
			srv_respond_busy(x);
		else if (rc != UV_ECANCELED)
			srv_respond_error(x, 500, "out_of_memory", "no memory");
	}
}

void srv_api_message_upload(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	const srv_slice *key;
	if (!api_idempotency_header(x, &key))
		return;
	if (x->req.body == SRV_BODY_NONE ||
	    (x->req.body == SRV_BODY_LENGTH && x->req.content_length == 0)) {
		srv_respond_error(x, 422, "audio_truncated", "the request has no audio");
		return;
	}
	if (x->req.body == SRV_BODY_LENGTH && x->req.content_length > SRV_UPLOAD_MAX) {
		srv_respond_error(x, 413, "body_too_large", "the request body is too large");
		return;
	}
	char to[64] = "";
	if (x->req.query.ptr && x->req.query.len > 0) { /* a bare `?` is no query, as for lists */
		/* ?to=MEMBER_ID, nothing else; ?to= with no id is the whole family, as a resumable
		 * upload's empty `to` is (tus-js-client cannot send none: docs/api.md) */
		if (x->req.query.len < 3 || x->req.query.len > 3 + STORE_ID_LEN ||
		    memcmp(x->req.query.ptr, "to=", 3) != 0 ||
		    memchr(x->req.query.ptr, '&', x->req.query.len)) {
			srv_respond_error(x, 400, "invalid_recipient", "the query is ?to=MEMBER_ID");
			return;
		}
		snprintf(to, sizeof to, "%.*s", (int)x->req.query.len - 3, x->req.query.ptr + 3);
		if (to[0] && store_id_check(to) < 0) {
			srv_respond_error(x, 400, "invalid_recipient", "to: not a member id");
			return;
		}
	}
	api_job *j = api_authed_job(x, upload_gate_work, upload_refused);
	if (!j)
		return;
	j->body_fd = -1;
	j->tmp_dir = x->srv->tmp_dir;
	j->upload_dir = x->srv->uploads->dir;
	j->declared = x->req.body == SRV_BODY_LENGTH ? x->req.content_length : 0;
	j->expect = x->req.expect_continue;
	snprintf(j->to, sizeof j->to, "%s", to);
	if (key)
		snprintf(j->idem, sizeof j->idem, "%.*s", (int)key->len, key->ptr);
	api_prepare(x, j);
	/* The same phone's recording under this key is being transcoded: not again (its token
	 * was good for that one a moment ago; a token revoked since hears 401 next time). */
	if (j->expect && j->idem[0] && in_flight(x->srv, j)) {
		api_job_free(j);
		api_respond_in_flight(x);
		return;
	}
	if (srv_job_submit(x, api_job_run, upload_gate_done, j) < 0) {
		api_job_free(j);
		srv_respond_busy(x);
	}
}

static void audio_auth_work(api_job *j)
{
	/* Parents and caregivers hear all of their family's messages: no look needed. */
	if (api_own_family(j) && j->member.role == STORE_ROLE_CHILD)
		j->rc = visible_message(j, true);
}

static void audio_refuse(srv_exchange *x, api_job *j)
{
	api_storage_failed(x, j->rc);
}

/* The caller's check, on the pool in the audio's own job: one trip for both. */
static int audio_check(void *ctx)
{
	api_job *j = ctx;
	api_job_run(j);
	return j->auth_rc < 0 || j->rc < 0;
}

static void audio_check_refuse(srv_exchange *x, void *ctx)
{
	api_job_done(x, ctx); /* 401, 404 or 503, then freed */
}

static void audio_check_release(void *ctx)
{
	api_job_free(ctx);
}

/* A child's session at a school kiosk: the shared tablet's browser keeps none of the family's
 * voices (a phone keeps them, so a message heard again costs no data). */
static bool audio_check_keep(void *ctx)
{
	return !((api_job *)ctx)->session;
}

void srv_api_message_audio(srv_exchange *x)
{
	api_job *j = api_authed_job(x, audio_auth_work, audio_refuse);
	if (!j)
		return;
	api_prepare(x, j);
	srv_audio_check check = {.run = audio_check,
	                         .refuse = audio_check_refuse,
	                         .release = audio_check_release,
	                         .ctx = j,
	                         .keep = audio_check_keep,
	                         .owner = j->caller_key};
	srv_respond_message_audio_checked(x, j->param[0], j->param[1], -1, &check);
}

/* ---- signed audio URLs: for an <audio> element, which cannot send a bearer token ---- */
static void audio_url_work(api_job *j)
{
	j->rc = visible_message(j, false);
}

/*
 * A URL carries its holder, the phone or the child's kiosk session it was issued to (its
 * token's hash, sealed: secret.h), inside what is signed, and plays only while that holder may
 * (checked on the pool with the fetch): a phone revoked, or its member removed, ends its URLs
 * as a kiosk session's end ends the session's. A phone may keep the audio as long as the URL
 * lives; a session's is served no-store like the session's own audio.
 */
static void audio_url_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	int64_t expires = api_now_ms() / 1000 + x->srv->cfg.audio_url_ttl_s;
	char sig[SRV_SIGNATURE_CHARS + 1], ref[SRV_SESSION_REF_CHARS + 1], url[320];
	srv_audio_holder holder = j->session ? SRV_AUDIO_SESSION : SRV_AUDIO_PHONE;
	srv_session_seal(x->srv->secret, j->token_hash, ref);
	srv_sign_audio(x->srv->secret, j->param[0], j->param[1], expires, holder, ref, strlen(ref),
	               sig);
	snprintf(url, sizeof url, "/v1/audio/%.26s/%.26s?expires=%lld&%s=%s&sig=%s", j->param[0],
	         j->param[1], (long long)expires, j->session ? "session" : "phone", ref, sig);
	api_respond_json(x, 200, json_pack("{s:s, s:I}", "url", url, "expires_at",
					   (json_int_t)expires));
}

void srv_api_message_audio_url(srv_exchange *x)
{
	api_start(x, audio_url_work, audio_url_done);
}

_Static_assert(SRV_SESSION_HASH_LEN == STORE_HASH_LEN, "a sealed holder is a token's hash");

/* A URL's holder: may it still hear the family? On the pool, with the fetch. */
typedef struct holder_check {
	store *st;
	srv_audio_holder holder;
	uint8_t hash[SRV_SESSION_HASH_LEN];
	char family[STORE_ID_LEN + 1];
	int64_t idle_ms;
	int rc;
} holder_check;

static int holder_check_run(void *ctx)
{
	holder_check *c = ctx;
	store_device d;
	store_member m;
	if (c->holder == SRV_AUDIO_SESSION) /* not a use: a player fetches by itself */
		c->rc = store_kiosk_session_auth(c->st, c->hash, api_now_ms(), c->idle_ms, false,
		                                 &d, &m, NULL);
	else if ((c->rc = store_device_by_token(c->st, c->hash, &d)) == 0)
		c->rc = d.kind == STORE_DEVICE_PERSONAL ? store_member_get(c->st, d.member_id.s, &m)
		                                        : STORE_ENOTFOUND;
	if (c->rc == 0 && strcmp(d.family_id.s, c->family) != 0)
		c->rc = STORE_ENOTFOUND;
	return c->rc < 0;
}

static void holder_check_release(void *ctx)
{
	holder_check *c = ctx;
	sodium_memzero(c, sizeof *c);
	free(c);
}

static void holder_check_refuse(srv_exchange *x, void *ctx)
{
	holder_check *c = ctx;
	if (c->rc == STORE_ENOTFOUND)
		srv_respond_error(x, 403, "url_expired",
		                  c->holder == SRV_AUDIO_SESSION
		                      ? "this audio link ended with its kiosk session"
		                      : "this audio link ended with its phone's access");
	else
		api_storage_failed(x, c->rc);
	holder_check_release(c);
}

static bool holder_check_keep(void *ctx)
{
	/* a shared tablet keeps none of the family's voices */
	return ((holder_check *)ctx)->holder != SRV_AUDIO_SESSION;
}

void srv_api_signed_audio(srv_exchange *x)
{
	char fam[STORE_ID_LEN + 1], msg[STORE_ID_LEN + 1];
	int64_t expires;
	int holder = 0;
	const char *sig, *ref;
	size_t sig_len, ref_len;
	bool ids = x->params[0].len == STORE_ID_LEN && x->params[1].len == STORE_ID_LEN;
	if (ids) {
		memcpy(fam, x->params[0].ptr, STORE_ID_LEN);
		memcpy(msg, x->params[1].ptr, STORE_ID_LEN);
		fam[STORE_ID_LEN] = msg[STORE_ID_LEN] = '\0';
	}
	if (!ids ||
	    srv_query_signed(x->req.query.ptr, x->req.query.len, &expires, &holder, &ref, &ref_len,
	                     &sig, &sig_len) < 0 ||
	    !srv_signature_ok(x->srv->secret, fam, msg, expires, (srv_audio_holder)holder, ref,
	                      ref_len, sig, sig_len)) {
		srv_respond_error(x, 403, "invalid_signature", "this audio link is not valid");
		return;
	}
	int64_t left = expires - api_now_ms() / 1000;
	if (left < 0) {
		srv_respond_error(x, 403, "url_expired", "this audio link has expired");
		return;
	}
	holder_check *c = calloc(1, sizeof *c);
	if (!c) {
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	if (srv_session_open(x->srv->secret, ref, ref_len, c->hash) < 0) {
		free(c); /* signed by us, so sealed by us: not reached without a forgery */
		srv_respond_error(x, 403, "invalid_signature", "this audio link is not valid");
		return;
	}
	c->st = x->srv->store;
	c->holder = (srv_audio_holder)holder;
	c->idle_ms = (int64_t)x->srv->cfg.kiosk_idle_s * 1000;
	memcpy(c->family, fam, sizeof c->family);
	srv_audio_check check = {.run = holder_check_run,
	                         .refuse = holder_check_refuse,
	                         .release = holder_check_release,
	                         .ctx = c,
	                         .keep = holder_check_keep,
	                         .owner = c->hash};
	/* A phone's answer is kept no longer than the link lives. */
	srv_respond_message_audio_checked(x, fam, msg, left, &check);
}

/* ---- keeping a message past the family's retention period ---- */
static void keep_work(api_job *j)
{
	if ((j->rc = visible_message(j, false)) < 0)
		return;
	j->rc = store_message_keep(j->st, j->param[0], j->param[1], j->keep, &j->latest);
}

static void keep_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	api_mailbox_changed(x->srv, j->param[0]);
	api_respond_json(x, 200, json_pack("{s:b, s:I}", "kept", j->keep, "seq",
					   (json_int_t)j->latest));
}

void srv_api_message_keep(srv_exchange *x)
{
	api_job *j = api_authed_job(x, keep_work, keep_done);
	if (!j)
		return;
	j->keep = x->req.method == SRV_METHOD_POST;
	api_run(x, j);
}

static void listened_work(api_job *j)
{
	if ((j->rc = visible_message(j, false)) < 0)
		return;
	j->rc = store_message_listened(j->st, j->param[0], j->param[1], j->member.id.s, api_now_ms(),
				       &j->latest);
}

static void listened_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	api_mailbox_changed(x->srv, j->param[0]);
	api_respond_json(x, 200, json_pack("{s:I}", "seq", (json_int_t)j->latest));
}

void srv_api_message_listened(srv_exchange *x)
{
	api_start(x, listened_work, listened_done);
}

/*
 * Deleting a message deleted already, by one who could (its sender, a parent, who saw it): 204
 * again, nothing changed (j->existed), where it was 404 and an app whose first DELETE's answer
 * was lost on the way said the message could not be found. Anyone else: 404, as for a message
 * that never was. A message a moderator hid reads as deleted (api_message_json), so it is 404
 * to anyone else too, not 403, which told a grandmother or a sibling that it was hidden, not
 * deleted; its sender or a parent deletes it (its voice erased).
 */
static void delete_work(api_job *j)
{
	if ((j->rc = seen_message(j)) < 0)
		return;
	bool may =
	    strcmp(j->msg.sender.s, j->member.id.s) == 0 || j->member.role == STORE_ROLE_PARENT;
	if (j->msg.state == STORE_MSG_DELETED) {
		j->rc = may ? 0 : STORE_ENOTFOUND;
		j->existed = true;
		return;
	}
	if (!may && j->msg.state == STORE_MSG_HIDDEN) {
		j->rc = STORE_ENOTFOUND;
		return;
	}
	if (!may) {
		j->rc = 1;
		return;
	}
	j->rc = store_message_set_state(j->st, j->param[0], j->param[1], STORE_MSG_DELETED,
					&j->latest);
}

static void delete_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, "only its sender or a parent can delete it"))
		return;
	if (!j->existed)
		api_mailbox_changed(x->srv, j->param[0]);
	srv_respond_head(x, 204, NULL, NULL, -1);
}

void srv_api_message_delete(srv_exchange *x)
{
	api_start(x, delete_work, delete_done);
}

/*
 * A flag sent again whose first answer was lost, its message deleted (or hidden) meanwhile: the
 * first flag still waits for a volunteer, and the retry is answered with it, 200, as while the
 * message was there (it was 404, and the child's app said its report was lost). Nothing is
 * queued for a message gone: a member without such a flag hears 404.
 */
static void flag_work(api_job *j)
{
	if ((j->rc = seen_message(j)) < 0)
		return;
	if (!(j->flag = calloc(1, sizeof *j->flag))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	if (j->msg.state != STORE_MSG_VISIBLE) {
		j->rc =
		    store_flag_pending(j->st, j->param[0], j->param[1], j->member.id.s, j->flag);
		j->existed = j->rc == 0;
		return;
	}
	j->rc = store_flag_add(j->st, j->param[0], j->param[1], j->member.id.s, j->reason,
	                       api_now_ms(), j->flag, &j->existed);
}

static void flag_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	/* Again while the caller's flag waits: that flag, 200 (a volunteer may have it). */
	const char *state = j->flag->state == STORE_FLAG_CLAIMED ? "claimed" : "open";
	api_respond_json(x, j->existed ? 200 : 201,
	                 json_pack("{s:{s:s, s:s}}", "flag", "id", j->flag->id.s, "state", state));
}

void srv_api_message_flag(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	const char *reason = json_string_value(json_object_get(body, "reason"));
	if (!reason || !*reason || strlen(reason) >= sizeof ((store_flag *)0)->reason) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_reason", "reason: 1-511 bytes of text");
		return;
	}
	api_job *j = api_authed_job(x, flag_work, flag_done);
	if (j)
		snprintf(j->reason, sizeof j->reason, "%s", reason);
	json_decref(body);
	if (j)
		api_run(x, j);
}
