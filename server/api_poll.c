/*
 * api_poll.c — the v1 API's list of changes since a sequence number (GET .../messages), and
 * long-polling: a list with nothing new for its caller is parked until its family's mailbox
 * changes (api_mailbox_changed), its wait ends or its kiosk session goes idle, then listed again
 * (authenticated again) on the pool, many at a time.
 */
#include "api_internal.h"
#include "http_coding.h"
#include "query.h"
#include "routes.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define LIST_MAX 200
#define LONG_POLL_MAX_S 60
#define LIST_FIRST 8 /* most lists (a long-poll woken by one message) need no more */
/* A connection's long-polls are answered at most this often: a family's changes in a burst
 * (or a loop of keep and unkeep: the review) cost each of its waiting phones one list per
 * interval, not one per change; the changes between come together in the next answer. */
#define WAKE_MIN_MS 200
/* A phone's waiter this old may make room for the phone's new long-poll: an app that polls
 * again has lost that one (a connection dead behind a NAT). Younger ones are live: the new
 * one is refused for this long instead (429), or 5 pollers of one token would evict each other
 * in a loop of empty answers (the review: 1,000 a second). */
#define EVICT_AGE_MS 10000

/*
 * On the pool: the changes since j->since (room for a few first, for 200 only when needed),
 * filtered for the caller, and the answer's JSON text (j->text), so the loop only sends it.
 */
static void list_work(api_job *j)
{
	if (!api_own_family(j))
		return;
	size_t room = LIST_FIRST;
	if (!(j->list = calloc(room, sizeof *j->list))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	/* j->since stays the caller's: a waiter woken in a batch shares the answer of the one
	 * before it only for the same token and since (batch_run). */
	uint64_t since = j->since, from = 0, to = 0;
	j->reset = false;
	j->rc =
	    store_messages_since(j->st, j->param[0], since, j->list, room, &j->nlist, &j->latest);
	if (j->rc == 0 && since > 0 && since <= j->latest)
		j->rc = store_mailbox_restored(j->st, j->param[0], &from, &to);
	if (j->rc == 0 && (since > j->latest || (since > from && since < to))) {
		/* A `since` past the newest change, or between a restored copy's last change and
		 * the floor it numbers from: the mailbox went back (restored from a backup older
		 * than the client's last list). Everything, and said, so the client starts over;
		 * else it would wait, hearing nothing, until the family caught up with a number it
		 * had seen, and then miss what was numbered below it (the reviews). */
		j->reset = true;
		since = 0;
		j->rc = store_messages_since(j->st, j->param[0], 0, j->list, room, &j->nlist,
		                             &j->latest);
	}
	if (j->rc == 0 && j->nlist == room) {
		store_message *more = realloc(j->list, LIST_MAX * sizeof *more);
		if (!more) {
			j->rc = STORE_ENOMEM;
			return;
		}
		j->list = more;
		room = LIST_MAX;
		j->rc = store_messages_since(j->st, j->param[0], since, j->list, room, &j->nlist,
		                             &j->latest);
	}
	if (j->rc < 0)
		return;
	json_t *arr = json_array();
	uint64_t seq = since;
	j->shown = 0;
	for (size_t i = 0; arr && i < j->nlist; i++) {
		store_message *m = &j->list[i];
		if (m->seq > seq)
			seq = m->seq;
		if (!api_may_see(m, &j->member))
			continue; /* another child's private message: not even its deletion */
		json_array_append_new(arr, api_message_json(m)); /* a hidden one as deleted */
		j->shown++;
	}
	/* A page cut at LIST_MAX resumes after its last change; else the newest there is. */
	if (j->nlist < LIST_MAX && j->latest > seq)
		seq = j->latest;
	j->next_seq = seq;
	json_t *obj = arr ? json_pack("{s:o, s:I}", "messages", arr, "seq", (json_int_t)seq) : NULL;
	if (obj && j->reset && json_object_set_new(obj, "reset", json_true()) < 0) {
		json_decref(obj);
		obj = NULL;
	}
	j->text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	json_decref(obj);
	if (!j->text)
		j->rc = STORE_ENOMEM;
	else if (j->gzip) /* here, not on the loop: 155 us for a list of 50 */
		j->gz = srv_gzip(j->text, strlen(j->text), &j->gz_len);
}

static void park(srv_exchange *x, api_job *j, bool news);

/* Where s->changed_at counts family_id's changes (FNV-1a: the ids spread evenly). */
static uint64_t *changed_at(srv_server *s, const char *family_id)
{
	uint32_t h = 2166136261u;
	for (const char *p = family_id; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return &s->changed_at[h % (sizeof s->changed_at / sizeof s->changed_at[0])];
}

static void list_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	/* Nothing (this member may see) changed: wait, from the new sequence, while time is left
	 * (answered when the mailbox changes or the wait is over). A full page of others'
	 * changes is answered at once instead: more may follow it already. */
	srv_conn *c = x->conn;
	uint64_t now = uv_now(x->srv->loop);
	bool may_wait = j->wait_until > now && !x->srv->draining && !c->closed;
	if (j->shown == 0 && !j->reset && j->nlist < LIST_MAX && may_wait) {
		j->since = j->next_seq;
		park(x, j, false);
		return;
	}
	/* News for a long-poll answered on this connection less than WAKE_MIN_MS ago: held
	 * until then, from the same `since` (it lists again then, with what came meanwhile). */
	if (j->by_itself && may_wait && c->poll_answered_ms &&
	    now < c->poll_answered_ms + WAKE_MIN_MS) {
		park(x, j, true);
		return;
	}
	if (j->by_itself)
		c->poll_answered_ms = now;
	if (j->gz)
		srv_respond_coded(x, 200, "application/json", "Cache-Control: no-store\r\n", j->gz,
		                  j->gz_len, SRV_CODING_GZIP);
	else
		srv_respond_coded(x, 200, "application/json", "Cache-Control: no-store\r\n",
		                  j->text, strlen(j->text),
		                  j->gzip ? SRV_CODING_IDENTITY : SRV_CODING_AUTO);
}

/* ?since=N&wait=S, both optional, nothing else (query.c). 0, or -1 after answering 400. */
static int list_query(srv_exchange *x, uint64_t *since, unsigned *wait_s)
{
	if (srv_query_list(x->req.query.ptr, x->req.query.len, LONG_POLL_MAX_S, since,
			   wait_s) == 0)
		return 0;
	srv_respond_error(x, 400, "invalid_query", "the query is ?since=N&wait=SECONDS (0-60)");
	return -1;
}

void srv_api_messages_list(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	uint64_t since;
	unsigned wait_s;
	if (list_query(x, &since, &wait_s) < 0)
		return;
	api_job *j = api_authed_job(x, list_work, list_done);
	if (!j)
		return;
	j->since = since;
	j->wait_until = wait_s ? uv_now(x->srv->loop) + (uint64_t)wait_s * 1000 : 0;
	j->changes_seen = x->srv->changes;
	/* An app waits for news by itself: that keeps no child's kiosk session from going idle
	 * (a child who walks away from a shared tablet is logged out while it waits). */
	j->by_itself = wait_s > 0;
	api_run(x, j);
}

/* ---- long-polling: a list with nothing new waits for its mailbox to change ---- */
typedef struct srv_waiter {
	struct srv_waiter *prev, *next;
	uv_timer_t timer;
	srv_exchange *x;
	srv_conn *conn;
	char family[STORE_ID_LEN + 1];
	uint8_t token_hash[STORE_HASH_LEN]; /* who waits: authenticated again on waking */
	char kiosk_device[STORE_ID_LEN + 1]; /* a child's kiosk session: its kiosk; else "" */
	int64_t idle_ms;
	uint64_t since, wait_until;
	uint64_t not_before; /* a change wakes it from then on (its connection's last answer) */
	uint64_t parked_ms;  /* when it began to wait (loop time) */
	bool answer_now;     /* answered on waking, not parked again (answer_now()) */
	bool picked;     /* api_mailbox_changed: woken in this batch */
} srv_waiter;

static void waiter_closed(uv_handle_t *h)
{
	srv_waiter *w = h->data;
	srv_conn_unref(w->conn);
	free(w);
}

/*
 * A token's waiters are counted in a slot of s->waiting_by_token chosen by its hash (SHA-256:
 * the tokens spread evenly), shared with the other tokens that fall in it. A slot holding fewer
 * than long-polls-per-device says the token does too, so share_room() walks the waiters only
 * for a token that may be at its share. It walked them for every new long-poll: parking
 * 4,000 at once took the loop twice as long (0.08 s against 0.04), the lists done on the pool
 * meanwhile waited for it, and the heap kept the higher peak, about 1 KiB more per waiter. As
 * many slots as max-connections or more: few tokens share one.
 */
static uint32_t *token_slot(srv_server *s, const uint8_t *token_hash)
{
	if (!s->waiting_by_token)
		return NULL;
	uint32_t h;
	memcpy(&h, token_hash, sizeof h);
	return &s->waiting_by_token[h & (s->waiting_slots - 1)];
}

/* The slots, made when a long-poll first waits (and counted from the waiters then); without
 * memory for them, share_room() walks the waiters each time. */
static void token_slots_make(srv_server *s)
{
	if (s->waiting_by_token)
		return;
	size_t n = 64;
	while (n < s->cfg.max_connections)
		n *= 2;
	if (!(s->waiting_by_token = calloc(n, sizeof *s->waiting_by_token)))
		return;
	s->waiting_slots = n;
	for (srv_waiter *w = s->waiters; w; w = w->next)
		(*token_slot(s, w->token_hash))++;
}

/*
 * Unpark: list again and answer whatever that finds (or park again, while time is left, if
 * nothing the caller may see changed). The caller is authenticated again first: a phone
 * revoked or a kiosk session ended while it waited hears 401, not the family's news.
 */
/* Take w off the list of waiters (its timer stopped); the caller answers and closes it. */
static void unpark(srv_waiter *w)
{
	srv_server *s = w->x->srv;
	uint32_t *slot = token_slot(s, w->token_hash);
	if (slot)
		(*slot)--;
	if (w->prev)
		w->prev->next = w->next;
	else
		s->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	s->waiter_count--;
	uv_timer_stop(&w->timer);
	srv_conn_unwatch(w->conn);
}

/* j (zeroed) set to list again for w, authenticated again first. */
static void relist_fill(api_job *j, srv_waiter *w)
{
	srv_server *s = w->x->srv;
	j->work = list_work;
	j->done = list_done;
	j->since = w->since;
	j->wait_until = w->answer_now ? 0 : w->wait_until;
	j->relisted = true;
	j->parked_ms = w->parked_ms;
	j->changes_seen = s->changes;
	j->authed = true;
	j->gzip = w->x->accepts_gzip;
	j->by_itself = true;
	memcpy(j->token_hash, w->token_hash, sizeof j->token_hash);
	j->idle_ms = w->idle_ms;
	j->st = s->store;
	j->secret = s->secret;
	snprintf(j->param[0], sizeof j->param[0], "%s", w->family);
}

static api_job *relist_job(srv_waiter *w)
{
	api_job *j = calloc(1, sizeof *j);
	if (j)
		relist_fill(j, w);
	return j;
}

static void wake(srv_waiter *w)
{
	unpark(w);
	api_job *j = relist_job(w);
	if (!j || srv_job_submit_any(w->x, api_job_run, api_job_done, j) < 0) {
		free(j);
		srv_respond_error(w->x, 500, "out_of_memory", "no memory");
	}
	uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

/*
 * A family's waiters woken together: one trip to the pool for all of them, where each is
 * authenticated and listed as alone, except that a waiter with the same token and sequence
 * as the one before it (a device waiting on several connections) shares its answer. The
 * waiters keep their connections until the batch is answered.
 */
typedef struct wake_batch {
	uv_work_t work;
	srv_server *s;
	size_t n;
	srv_waiter **w;
	api_job **j;
} wake_batch;

static void batch_run(uv_work_t *wk)
{
	wake_batch *b = wk->data;
	api_job *prev = NULL;
	for (size_t i = 0; i < b->n; i++) {
		api_job *j = b->j[i];
		if (prev && prev->auth_rc == 0 && prev->rc == 0 && prev->text &&
		    prev->since == j->since && strcmp(prev->param[0], j->param[0]) == 0 &&
		    memcmp(prev->token_hash, j->token_hash, sizeof j->token_hash) == 0 &&
		    (j->text = strdup(prev->text))) {
			j->device = prev->device;
			j->member = prev->member;
			j->session = prev->session;
			j->idle_at_ms = prev->idle_at_ms;
			j->nlist = prev->nlist;
			j->shown = prev->shown;
			j->next_seq = prev->next_seq;
			j->latest = prev->latest;
			j->reset = prev->reset;
			if (j->gzip && prev->gz && (j->gz = malloc(prev->gz_len))) {
				memcpy(j->gz, prev->gz, prev->gz_len);
				j->gz_len = prev->gz_len;
			} else if (j->gzip && !prev->gzip) { /* else it did not shrink for prev */
				j->gz = srv_gzip(j->text, strlen(j->text), &j->gz_len);
			}
			continue;
		}
		api_job_run(j);
		prev = j;
	}
}

static void batch_after(uv_work_t *wk, int status)
{
	(void)status;
	wake_batch *b = wk->data;
	b->s->active_jobs--;
	for (size_t i = 0; i < b->n; i++) {
		api_job_done(b->w[i]->x, b->j[i]); /* answers (or parks again), frees the job */
		uv_close((uv_handle_t *)&b->w[i]->timer, waiter_closed);
	}
	free(b->w);
	free(b->j);
	free(b);
}

static void on_wait_over(uv_timer_t *t)
{
	wake(t->data);
}

/* Answered now with what there is, as if its wait were over. */
static void answer_now(srv_waiter *w)
{
	w->answer_now = true;
	wake(w);
}

/* Its client went away (srv_conn_watch): after a reset, off the list (the connection closes
 * after this); it shut its side, or sent more than it may meanwhile: answered now. */
static void waiter_gone(void *arg, srv_gone why)
{
	srv_waiter *w = arg;
	if (why != SRV_GONE_RESET) {
		answer_now(w);
		return;
	}
	unpark(w);
	uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

/*
 * A token's share of waiters (long-polls-per-device), so that one that opens hundreds holds no
 * more (the review: 400 long-polls of one token held the server's connection limit). Full: its
 * oldest makes room if it has waited EVICT_AGE_MS (answered now: a phone whose connection died
 * unseen behind a NAT polls again and must be heard), else false.
 */
static bool share_room(srv_server *s, const uint8_t *token_hash)
{
	const uint32_t *slot = token_slot(s, token_hash);
	if (slot && *slot < s->cfg.long_polls_per_device)
		return true;
	srv_waiter *oldest = NULL;
	unsigned n = 0;
	/* The list is in the order they last parked, not of their age: the one that waited
	 * longest. */
	for (srv_waiter *w = s->waiters; w; w = w->next)
		if (memcmp(w->token_hash, token_hash, STORE_HASH_LEN) == 0) {
			if (!oldest || w->parked_ms <= oldest->parked_ms)
				oldest = w;
			n++;
		}
	if (n < s->cfg.long_polls_per_device)
		return true;
	if (uv_now(s->loop) - oldest->parked_ms < EVICT_AGE_MS)
		return false;
	answer_now(oldest); /* a newer wait of the same phone takes its place */
	return true;
}

/* Hold x until its family changes or its wait is over; with news already (held only for its
 * connection's interval), until the interval is over. */
static void park(srv_exchange *x, api_job *j, bool news)
{
	srv_server *s = x->srv;
	token_slots_make(s);
	if (!j->relisted && !share_room(s, j->token_hash)) {
		srv_respond_error_with(x, 429, "too_many_long_polls",
		                       "this device has long-polls-per-device waiting already",
		                       "Retry-After: 10\r\n");
		return;
	}
	srv_waiter *w = calloc(1, sizeof *w);
	if (!w || uv_timer_init(s->loop, &w->timer) != 0) {
		free(w);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	w->x = x;
	w->conn = x->conn;
	w->conn->refs++;
	w->since = j->since;
	w->wait_until = j->wait_until;
	memcpy(w->token_hash, j->token_hash, sizeof w->token_hash);
	w->idle_ms = j->idle_ms;
	snprintf(w->family, sizeof w->family, "%.*s", STORE_ID_LEN, j->param[0]);
	if (j->session)
		snprintf(w->kiosk_device, sizeof w->kiosk_device, "%s", j->device.id.s);
	w->timer.data = w;
	w->next = s->waiters;
	if (s->waiters)
		s->waiters->prev = w;
	s->waiters = w;
	s->waiter_count++;
	uint32_t *slot = token_slot(s, w->token_hash);
	if (slot)
		(*slot)++;
	uint64_t now = uv_now(s->loop);
	/* Its age counts from its request, not from its last listing again: a family's changes
	 * it may not see (another child's private message, a receipt sent again) woke and parked
	 * it again, and a phone whose connections had died was refused (429) while they were
	 * long past EVICT_AGE_MS (the review). */
	w->parked_ms = j->relisted ? j->parked_ms : now;
	uint64_t due = j->wait_until;
	/* A child's session goes idle while it waits, unless the child uses it meanwhile: woken
	 * then, authenticated again, it hears 401 (or, used meanwhile, waits on). Else the tablet
	 * kept the child's screen, for the next child at it, until its wait was over. */
	if (j->session) {
		int64_t idle_in = j->idle_at_ms - api_now_ms();
		uint64_t idle_due = now + (uint64_t)(idle_in > 0 ? idle_in : 0);
		if (idle_due < due)
			due = idle_due;
	}
	w->not_before = x->conn->poll_answered_ms ? x->conn->poll_answered_ms + WAKE_MIN_MS : 0;
	/* Its family changed, or a kiosk's sessions ended, while it listed on the pool: that
	 * change's wake-up did not find it (a family's waiters listing again together, after an
	 * earlier change, missed the next one and waited out their seconds: the review). It lists
	 * again as soon as it may, as if woken then. */
	bool missed = *changed_at(s, w->family) > j->changes_seen ||
	              (j->session && s->sessions_ended_at > j->changes_seen);
	if ((news || missed) && w->not_before < due)
		due = w->not_before;
	uv_timer_start(&w->timer, on_wait_over, due > now ? due - now : 0, 0);
	srv_conn_watch(w->conn, waiter_gone, w);
}

/* Whether w may be woken now by a change; if not, its timer is brought forward to when it
 * may (it lists again then, and finds the change). */
static bool wakeable(srv_waiter *w, uint64_t now)
{
	uint64_t at = w->not_before;
	if (now >= at)
		return true;
	if (uv_timer_get_due_in(&w->timer) > at - now)
		uv_timer_start(&w->timer, on_wait_over, at - now, 0);
	return false;
}

/* The n waiters picked (w->picked) list again, together. */
static void wake_picked(srv_server *s, size_t n)
{
	if (n == 0)
		return;
	wake_batch *b = calloc(1, sizeof *b);
	if (b) {
		b->w = calloc(n, sizeof *b->w);
		b->j = calloc(n, sizeof *b->j);
	}
	for (size_t i = 0; b && b->w && b->j && i < n; i++)
		if (!(b->j[i] = calloc(1, sizeof *b->j[i])))
			break;
	bool ready = b && b->w && b->j && b->j[n - 1];
	if (!ready) { /* no memory for a batch: one job each, as a timeout does */
		for (size_t i = 0; b && b->j && i < n; i++)
			free(b->j[i]);
		if (b) {
			free(b->w);
			free(b->j);
		}
		free(b);
		for (srv_waiter *w = s->waiters, *next; w; w = next) {
			next = w->next;
			if (w->picked)
				wake(w);
		}
		return;
	}
	size_t k = 0;
	for (srv_waiter *w = s->waiters, *next; w; w = next) {
		next = w->next;
		if (!w->picked)
			continue;
		unpark(w);
		b->w[k] = w;
		relist_fill(b->j[k], w);
		k++;
	}
	b->n = k;
	b->s = s;
	b->work.data = b;
	s->active_jobs++;
	if (uv_queue_work(s->loop, &b->work, batch_run, batch_after) != 0) {
		for (size_t i = 0; i < b->n; i++)
			b->j[i]->rc = STORE_ENOMEM; /* answered 503 */
		batch_after(&b->work, 0);
	}
}

/* A change in family_id's mailbox: its waiters list again. */
void api_mailbox_changed(srv_server *s, const char *family_id)
{
	*changed_at(s, family_id) = ++s->changes;
	size_t n = 0;
	uint64_t now = uv_now(s->loop);
	for (srv_waiter *w = s->waiters; w; w = w->next)
		n += (w->picked = strcmp(w->family, family_id) == 0 && wakeable(w, now));
	wake_picked(s, n);
}

/* The children's sessions on a kiosk device ended: their waiters are woken whatever family they
 * wait on (the session ended is not known by its family here), and hear 401. */
void api_kiosk_sessions_ended(srv_server *s, const char *device_id)
{
	if (!device_id[0])
		return; /* "" is every waiter that is no kiosk session's */
	s->sessions_ended_at = ++s->changes;
	size_t n = 0;
	uint64_t now = uv_now(s->loop);
	for (srv_waiter *w = s->waiters; w; w = w->next)
		n += (w->picked = strcmp(w->kiosk_device, device_id) == 0 && wakeable(w, now));
	wake_picked(s, n);
}

void srv_api_wake_all(srv_server *s)
{
	while (s->waiters)
		wake(s->waiters);
}
