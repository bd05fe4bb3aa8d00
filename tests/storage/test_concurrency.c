/*
 * test_concurrency.c — the store under many threads. Writers append distinct payloads (and race
 * on shared idempotency keys) to several families while readers list, page, read audio, record
 * listened receipts and hide or delete messages, and a client follows each mailbox with
 * "since"; afterwards every acknowledged append must be there exactly once with its bytes and
 * SHA-256, every change must have its own sequence number, the follower must have seen every
 * message's last change, and the usage must add up. Then: threads racing on one idempotency
 * key behind a barrier; ten families squeezed through a cache of two; a family deleted while
 * threads use it (the delete must return, and after it nothing may succeed on that family).
 * Threads never call cmocka's assert_* (it longjmps): they log failures, which the test's
 * thread reports after joining. Knobs: JIAYIN_CONC_MS (busy phase, default 2000 ms),
 * JIAYIN_TEST_SEED.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "storage_helpers.h"

#include <signal.h>

#define NFAM 6
#define NMEMBERS 4
#define NWRITERS 8
#define NREADERS 4
#define MAX_APPENDS_PER_WRITER 1500
#define KEY_EVERY 4 /* every 4th append of a writer uses its pair's next idempotency key */
#define MAX_KEYS (MAX_APPENDS_PER_WRITER / KEY_EVERY + 1)
#define MIN_AUDIO 1024
#define MAX_AUDIO (20 * 1024)
#define WATCHDOG_S 30

/* One acknowledged message as this test knows it. */
typedef struct sent {
	store_id id;
	uint64_t seed;     /* bytes, length, sender, recipient, waveform... derive from it */
	uint64_t last_seq; /* the seq of the newest change this test made to it */
	unsigned listened; /* bit i: member i's receipt was recorded (or is being) */
	store_msg_state state;
	bool busy;    /* a state change is in flight */
	int inflight; /* listened calls in flight */
} sent;

typedef struct fam {
	store_family f;
	store_member m[NMEMBERS];
	pthread_mutex_t lock;
	sent *msgs;
	size_t n, cap;
	uint64_t *changes; /* the seq of every change made: appends, receipts, state changes */
	size_t nchanges, capchanges;
} fam;

typedef struct key_slot {
	bool done;
	int existed;
	store_id id;
} key_slot;

typedef struct world {
	char dir[256];
	store *s;
	unsigned nfam;
	fam fams[10];
	fail_log log;
	uint64_t seed;
	int64_t deadline;
	atomic_bool stop;
	atomic_long appends, keyed, existed, reads, lists, listens, states;
	key_slot keys[NWRITERS / 2][MAX_KEYS][2];
} world;

typedef struct worker {
	world *w;
	int index;
	pthread_t thread;
} worker;

/* What a seed says about its message. */
typedef struct shape {
	size_t len;
	int sender, to; /* member indexes; to < 0: the whole family */
	int64_t created_ms;
	uint32_t duration_ms;
	double lufs;
	uint8_t waveform[STORE_WAVEFORM_POINTS];
} shape;

static void shape_of(uint64_t seed, size_t min, size_t max, shape *sh)
{
	uint64_t h = mix64(seed ^ 0x51a9e);
	sh->len = payload_len(seed, min, max);
	sh->sender = (int)(h % NMEMBERS);
	sh->to = (int)((h >> 8) % (NMEMBERS + 1)) - 1;
	sh->created_ms = 1700000000000ll + (int64_t)((h >> 16) % 1000000000ull);
	sh->duration_ms = 300 + (uint32_t)((h >> 40) % 120000);
	sh->lufs = -16.0 - (double)((h >> 50) % 97) / 7.0;
	waveform_fill(seed, sh->waveform);
}

/* ---- Setting up and tearing down ---- */

static const char *watchdog_dir; /* named when the watchdog fires: kept for a look */

static void world_open(world *w, unsigned nfam, unsigned max_open)
{
	memset(w, 0, sizeof *w);
	fail_log_init(&w->log);
	w->seed = test_seed() ^ (uint64_t)nfam << 56 ^ max_open;
	w->nfam = nfam;
	assert_non_null(temp_dir(w->dir, sizeof w->dir));
	watchdog_dir = w->dir;
	store_options opt;
	store_options_init(&opt);
	opt.dir = w->dir;
	if (max_open)
		opt.max_open_families = max_open;
	assert_int_equal(store_open(&w->s, &opt), 0);
	for (unsigned i = 0; i < nfam; i++) {
		fam *f = &w->fams[i];
		char name[32];
		snprintf(name, sizeof name, "family %u", i);
		assert_int_equal(
		    store_family_create(w->s, name, "parent", 0, 1700000000000ll, &f->f, &f->m[0]),
		    0);
		for (int k = 1; k < NMEMBERS; k++) {
			snprintf(name, sizeof name, "member %d", k);
			assert_int_equal(
			    store_member_add(w->s, f->f.id.s, name,
			                     k == 1 ? STORE_ROLE_CAREGIVER : STORE_ROLE_CHILD, "",
			                     1700000000000ll + k, &f->m[k]),
			    0);
		}
		pthread_mutex_init(&f->lock, NULL);
	}
}

/* Closes and frees everything, removes the data directory, then reports the failures. */
static void world_close(world *w)
{
	static char text[sizeof w->log.text];
	int fails = atomic_load(&w->log.count);
	memcpy(text, w->log.text, sizeof text);
	store_close(w->s);
	w->s = NULL;
	for (unsigned i = 0; i < w->nfam; i++) {
		pthread_mutex_destroy(&w->fams[i].lock);
		free(w->fams[i].msgs);
		free(w->fams[i].changes);
	}
	fail_log_destroy(&w->log);
	assert_int_equal(remove_tree(w->dir), 0);
	if (fails)
		fail_msg("%d check(s) failed (first ones below)\n%s", fails, text);
}

static void push_change(fam *f, uint64_t seq)
{
	if (f->nchanges == f->capchanges) {
		f->capchanges = f->capchanges ? 2 * f->capchanges : 256;
		f->changes = realloc(f->changes, f->capchanges * sizeof *f->changes);
		if (!f->changes)
			abort();
	}
	f->changes[f->nchanges++] = seq;
}

static void register_sent(fam *f, const store_message *m, uint64_t seed)
{
	pthread_mutex_lock(&f->lock);
	if (f->n == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 256;
		f->msgs = realloc(f->msgs, f->cap * sizeof *f->msgs);
		if (!f->msgs)
			abort();
	}
	f->msgs[f->n++] =
	    (sent){.id = m->id, .seed = seed, .last_seq = m->seq, .state = STORE_MSG_VISIBLE};
	push_change(f, m->seq);
	pthread_mutex_unlock(&f->lock);
}

/* ---- Checks shared by the threads and the final pass ---- */

/* A message as returned by the store against what its seed says. */
static void check_fields(fail_log *log, const fam *f, const store_message *m, uint64_t seed,
                         size_t min, size_t max, const char *where)
{
	shape sh;
	shape_of(seed, min, max, &sh);
	CHECK(log, store_id_check(m->id.s) == 0, "%s: bad id '%s'", where, m->id.s);
	CHECK(log, ids_equal(&m->sender, &f->m[sh.sender].id), "%s %s: sender %s, expected %s",
	      where, m->id.s, m->sender.s, f->m[sh.sender].id.s);
	if (sh.to < 0)
		CHECK(log, m->to.s[0] == 0, "%s %s: to '%s', expected the family", where, m->id.s,
		      m->to.s);
	else
		CHECK(log, ids_equal(&m->to, &f->m[sh.to].id), "%s %s: to '%s', expected %s", where,
		      m->id.s, m->to.s, f->m[sh.to].id.s);
	CHECK(log, m->created_ms == sh.created_ms, "%s %s: created_ms %lld, expected %lld", where,
	      m->id.s, (long long)m->created_ms, (long long)sh.created_ms);
	CHECK(log, m->duration_ms == sh.duration_ms, "%s %s: duration %u, expected %u", where,
	      m->id.s, m->duration_ms, sh.duration_ms);
	CHECK(log, m->lufs == sh.lufs, "%s %s: lufs %.17g, expected %.17g", where, m->id.s, m->lufs,
	      sh.lufs);
	CHECK(log, !memcmp(m->waveform, sh.waveform, STORE_WAVEFORM_POINTS),
	      "%s %s: waveform differs", where, m->id.s);
	if (m->state != STORE_MSG_DELETED) {
		uint8_t *p = payload_make(seed, sh.len);
		uint8_t h[STORE_HASH_LEN];
		sha256_of(p, sh.len, h);
		free(p);
		CHECK(log, m->bytes == sh.len, "%s %s: bytes %llu, expected %zu", where, m->id.s,
		      (unsigned long long)m->bytes, sh.len);
		CHECK(log, !memcmp(m->sha256, h, STORE_HASH_LEN),
		      "%s %s: sha256 is not the SHA-256 of the audio", where, m->id.s);
	}
	CHECK(log, m->listened_count <= NMEMBERS, "%s %s: %u listeners", where, m->id.s,
	      m->listened_count);
}

/* Read the audio back in odd chunks; compare with the payload. 0 if it matched. */
static int check_audio(world *w, const fam *f, const char *message_id, uint64_t seed, size_t min,
                       size_t max, rng *r, char *why, size_t cap)
{
	size_t len = payload_len(seed, min, max);
	uint8_t *p = payload_make(seed, len);
	int rc = audio_check(w->s, f->f.id.s, message_id, p, len, r, why, cap);
	free(p);
	return rc;
}

/* ---- The mixed workload ---- */

static void *writer_main(void *arg)
{
	worker *me = arg;
	world *w = me->w;
	rng r = {w->seed ^ mix64(0x1000 + (uint64_t)me->index)};
	uint64_t last_seq[NFAM] = {0};
	int pair = me->index / 2, side = me->index % 2, nkeys = 0;
	for (int i = 0; i < MAX_APPENDS_PER_WRITER && now_ms() < w->deadline; i++) {
		char key[64];
		uint64_t seed;
		bool keyed = i % KEY_EVERY == KEY_EVERY - 1 && nkeys < MAX_KEYS;
		int k = nkeys;
		if (keyed) {
			/* Both writers of a pair use the same keys in the same order, same payload.
			 */
			seed =
			    mix64(w->seed ^ 0xbe11ull << 48 ^ (uint64_t)pair << 32 ^ (uint64_t)k);
			snprintf(key, sizeof key, "pair-%d-key-%d", pair, k);
			nkeys++;
		} else {
			seed = mix64(w->seed ^ (uint64_t)(me->index + 1) << 40 ^ (uint64_t)i);
		}
		unsigned fi = (unsigned)(keyed ? mix64(seed) % w->nfam : rng_next(&r) % w->nfam);
		fam *f = &w->fams[fi];
		shape sh;
		shape_of(seed, MIN_AUDIO, MAX_AUDIO, &sh);
		uint8_t *audio = payload_make(seed, sh.len);
		store_new_message nm = {
		    .sender = f->m[sh.sender].id.s,
		    .to = sh.to < 0 ? NULL : f->m[sh.to].id.s,
		    .created_ms = sh.created_ms,
		    .duration_ms = sh.duration_ms,
		    .lufs = sh.lufs,
		    .waveform = sh.waveform,
		    .audio = audio,
		    .audio_len = sh.len,
		    .idempotency_key = keyed ? key : NULL,
		};
		store_message out;
		int existed = -1;
		int rc = store_message_append(w->s, f->f.id.s, &nm, &out, &existed);
		free(audio);
		if (!CHECK(&w->log, rc == 0, "writer %d append %d: %s", me->index, i,
		           store_errcode(rc)))
			continue;
		atomic_fetch_add(&w->appends, 1);
		CHECK(&w->log, existed == 0 || existed == 1, "existed = %d", existed);
		CHECK(&w->log, out.seq > 0, "append gave seq 0");
		check_fields(&w->log, f, &out, seed, MIN_AUDIO, MAX_AUDIO, "append");
		if (existed == 0) {
			CHECK(&w->log, out.state == STORE_MSG_VISIBLE, "new message in state %d",
			      out.state);
			CHECK(&w->log, out.listened_count == 0, "new message has %u listeners",
			      out.listened_count);
			/* One thread's appends to one family commit one after the other. */
			CHECK(&w->log, out.seq > last_seq[fi],
			      "writer %d: seq %llu after its own %llu in family %u", me->index,
			      (unsigned long long)out.seq, (unsigned long long)last_seq[fi], fi);
			last_seq[fi] = out.seq;
			register_sent(f, &out, seed);
		} else {
			CHECK(&w->log, keyed, "an append without a key says it existed (%s)",
			      out.id.s);
			atomic_fetch_add(&w->existed, 1);
		}
		if (keyed) {
			atomic_fetch_add(&w->keyed, 1);
			key_slot *slot = &w->keys[pair][k][side];
			slot->existed = existed, slot->id = out.id, slot->done = true;
		}
	}
	return NULL;
}

/* A random registered message of family f, copied; false if there is none. */
static bool pick(fam *f, rng *r, sent *out, size_t *index)
{
	bool ok = false;
	pthread_mutex_lock(&f->lock);
	if (f->n) {
		*index = (size_t)(rng_next(r) % f->n);
		*out = f->msgs[*index];
		ok = true;
	}
	pthread_mutex_unlock(&f->lock);
	return ok;
}

/* Whether the test deleted (or is deleting) message `id`; for excusing a failed read. */
static bool deleted_or_deleting(fam *f, const char *id)
{
	bool yes = false;
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->msgs[i].id.s, id)) {
			yes = f->msgs[i].busy || f->msgs[i].state == STORE_MSG_DELETED;
			break;
		}
	pthread_mutex_unlock(&f->lock);
	return yes;
}

/* Page through "since" from a random point; read some listed messages back by their hash. */
static void read_since(world *w, fam *f, rng *r)
{
	store_message page[8];
	uint64_t since = 0, latest = 0;
	sent any;
	size_t idx;
	if (rng_next(r) % 3 && pick(f, r, &any, &idx))
		since = any.last_seq > 3 ? any.last_seq - 3 : 0;
	size_t max = (size_t)rng_range(r, 1, 8), n = 99;
	int rc = store_messages_since(w->s, f->f.id.s, since, page, max, &n, &latest);
	if (!CHECK(&w->log, rc == 0, "since: %s", store_errcode(rc)))
		return;
	atomic_fetch_add(&w->lists, 1);
	if (!CHECK(&w->log, n <= max, "since gave %zu > max %zu", n, max))
		return;
	uint64_t last = since;
	for (size_t i = 0; i < n; i++) {
		store_message *m = &page[i];
		CHECK(&w->log, m->seq > last, "since(%llu): seq %llu after %llu",
		      (unsigned long long)since, (unsigned long long)m->seq,
		      (unsigned long long)last);
		CHECK(&w->log, m->seq <= latest, "since: seq %llu above latest %llu",
		      (unsigned long long)m->seq, (unsigned long long)latest);
		CHECK(&w->log, m->state >= STORE_MSG_VISIBLE && m->state <= STORE_MSG_DELETED,
		      "state %d", m->state);
		last = m->seq;
		if (m->state == STORE_MSG_DELETED || rng_next(r) % 4)
			continue;
		/* Check the audio against the store's own hash of it. */
		uint8_t *data;
		size_t len;
		char why[200];
		rc = audio_read_all(w->s, f->f.id.s, m->id.s, m->bytes, r, &data, &len, why,
		                    sizeof why);
		if (rc == 0) {
			uint8_t h[STORE_HASH_LEN];
			sha256_of(data, len, h);
			free(data);
			atomic_fetch_add(&w->reads, 1);
			if (len == m->bytes && !memcmp(h, m->sha256, STORE_HASH_LEN))
				continue;
			snprintf(why, sizeof why, "%zu bytes (listed %llu), hash %s", len,
			         (unsigned long long)m->bytes,
			         memcmp(h, m->sha256, STORE_HASH_LEN) ? "differs" : "matches");
		}
		CHECK(&w->log, deleted_or_deleting(f, m->id.s), "listed %s, read back: %s", m->id.s,
		      why);
	}
}

static void read_newest(world *w, fam *f, rng *r)
{
	store_message page[10];
	size_t max = (size_t)rng_range(r, 1, 10), n = 99;
	int rc = store_messages_newest(w->s, f->f.id.s, page, max, &n);
	if (!CHECK(&w->log, rc == 0, "newest: %s", store_errcode(rc)))
		return;
	atomic_fetch_add(&w->lists, 1);
	if (!CHECK(&w->log, n <= max, "newest gave %zu > max %zu", n, max))
		return;
	for (size_t i = 0; i < n; i++) {
		CHECK(&w->log, page[i].state != STORE_MSG_DELETED, "newest lists deleted %s",
		      page[i].id.s);
		for (size_t j = 0; j < i; j++)
			CHECK(&w->log, !ids_equal(&page[i].id, &page[j].id),
			      "newest lists %s twice", page[i].id.s);
	}
}

/* Read a registered message by id: its fields and every byte of its audio. */
static void read_known(world *w, fam *f, rng *r)
{
	sent e;
	size_t idx;
	if (!pick(f, r, &e, &idx) || e.busy || e.state == STORE_MSG_DELETED)
		return;
	store_message m;
	int rc = store_message_get(w->s, f->f.id.s, e.id.s, &m);
	if (!CHECK(&w->log, rc == 0, "get %s: %s", e.id.s, store_errcode(rc)))
		return;
	if (m.state != STORE_MSG_DELETED)
		check_fields(&w->log, f, &m, e.seed, MIN_AUDIO, MAX_AUDIO, "get");
	char why[200];
	rc = check_audio(w, f, e.id.s, e.seed, MIN_AUDIO, MAX_AUDIO, r, why, sizeof why);
	atomic_fetch_add(&w->reads, 1);
	if (rc)
		CHECK(&w->log, deleted_or_deleting(f, e.id.s), "%s: %s", e.id.s, why);
}

/* Member `member` listens to a message it has not listened to yet. */
static void listen_one(world *w, fam *f, rng *r, int member)
{
	pthread_mutex_lock(&f->lock);
	if (!f->n) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	sent *e = &f->msgs[rng_next(r) % f->n];
	if (e->busy || e->state != STORE_MSG_VISIBLE || e->listened & 1u << member) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	e->listened |= 1u << member;
	e->inflight++;
	store_id id = e->id;
	uint64_t before = e->last_seq;
	size_t index = (size_t)(e - f->msgs);
	pthread_mutex_unlock(&f->lock);

	uint64_t seq = 0;
	int rc = store_message_listened(w->s, f->f.id.s, id.s, f->m[member].id.s, now_ms(), &seq);
	CHECK(&w->log, rc == 0, "listened %s by member %d: %s", id.s, member, store_errcode(rc));
	CHECK(&w->log, rc || seq > before, "listened %s: seq %llu not after %llu", id.s,
	      (unsigned long long)seq, (unsigned long long)before);
	atomic_fetch_add(&w->listens, 1);

	pthread_mutex_lock(&f->lock);
	e = &f->msgs[index]; /* the array may have moved */
	e->inflight--;
	if (rc == 0) {
		push_change(f, seq);
		if (seq > e->last_seq)
			e->last_seq = seq;
	}
	pthread_mutex_unlock(&f->lock);
}

/* Hide, show or delete a message nobody is listening to; at most ~1 in 10 deleted. */
static void change_state(world *w, fam *f, rng *r)
{
	pthread_mutex_lock(&f->lock);
	size_t ndeleted = 0;
	for (size_t i = 0; i < f->n; i++)
		ndeleted += f->msgs[i].state == STORE_MSG_DELETED;
	if (!f->n || ndeleted * 10 > f->n) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	size_t index = (size_t)(rng_next(r) % f->n);
	sent *e = &f->msgs[index];
	if (e->busy || e->inflight || e->state == STORE_MSG_DELETED) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	store_msg_state to = e->state == STORE_MSG_HIDDEN ? STORE_MSG_VISIBLE
	                     : rng_next(r) % 3            ? STORE_MSG_DELETED
	                                                  : STORE_MSG_HIDDEN;
	e->busy = true;
	store_id id = e->id;
	uint64_t before = e->last_seq;
	pthread_mutex_unlock(&f->lock);

	uint64_t seq = 0;
	int rc = store_message_set_state(w->s, f->f.id.s, id.s, to, &seq);
	CHECK(&w->log, rc == 0, "set_state %s -> %d: %s", id.s, to, store_errcode(rc));
	CHECK(&w->log, rc || seq > before, "set_state %s: seq %llu not after %llu", id.s,
	      (unsigned long long)seq, (unsigned long long)before);
	atomic_fetch_add(&w->states, 1);

	pthread_mutex_lock(&f->lock);
	e = &f->msgs[index];
	e->busy = false;
	if (rc == 0) {
		e->state = to;
		e->last_seq = seq;
		push_change(f, seq);
	}
	pthread_mutex_unlock(&f->lock);
}

static void *reader_main(void *arg)
{
	worker *me = arg;
	world *w = me->w;
	rng r = {w->seed ^ mix64(0x2000 + (uint64_t)me->index)};
	int member = me->index % NMEMBERS;
	while (!atomic_load(&w->stop)) {
		fam *f = &w->fams[rng_next(&r) % w->nfam];
		unsigned op = (unsigned)(rng_next(&r) % 40);
		if (op < 10)
			read_since(w, f, &r);
		else if (op < 16)
			read_newest(w, f, &r);
		else if (op < 26)
			read_known(w, f, &r);
		else if (op < 39)
			listen_one(w, f, &r, member);
		else
			change_state(w, f, &r);
	}
	return NULL;
}

/* After the dust settles: the store and the test's record agree on everything. */
static void verify_family(world *w, fam *f, size_t min, size_t max, rng *r)
{
	fail_log *log = &w->log;
	/* The record, sorted by id; no id twice. */
	if (f->n)
		qsort(f->msgs, f->n, sizeof *f->msgs, cmp_id);
	for (size_t i = 1; i < f->n; i++)
		CHECK(log, !ids_equal(&f->msgs[i].id, &f->msgs[i - 1].id),
		      "two acknowledged appends share id %s", f->msgs[i].id.s);
	/* Every change has its own sequence number. */
	if (f->nchanges)
		qsort(f->changes, f->nchanges, sizeof *f->changes, cmp_u64);
	for (size_t i = 1; i < f->nchanges; i++)
		CHECK(log, f->changes[i] != f->changes[i - 1],
		      "two changes in family %s got seq %llu", f->f.id.s,
		      (unsigned long long)f->changes[i]);

	/* "Since" in small pages gives every message once, at the seq of its latest change. */
	size_t n = 0;
	uint64_t latest = 0;
	store_message *all = list_all_since(w->s, f->f.id.s, 3, &n, &latest, log);
	if (!all)
		return;
	CHECK(log, n == f->n, "since lists %zu messages, %zu were acknowledged", n, f->n);
	bool *seen = calloc(f->n + 1, 1);
	uint64_t newest_change = 0;
	for (size_t i = 0; i < f->n; i++)
		if (f->msgs[i].last_seq > newest_change)
			newest_change = f->msgs[i].last_seq;
	CHECK(log, latest == newest_change, "latest %llu, newest change %llu",
	      (unsigned long long)latest, (unsigned long long)newest_change);
	for (size_t i = 0; i < n; i++) {
		sent key = {.id = all[i].id};
		sent *e = f->n ? bsearch(&key, f->msgs, f->n, sizeof *f->msgs, cmp_id) : NULL;
		if (!CHECK(log, e, "since lists %s, which nobody appended", all[i].id.s))
			continue;
		size_t k = (size_t)(e - f->msgs);
		CHECK(log, !seen[k], "since lists %s twice", e->id.s);
		seen[k] = true;
		CHECK(log, all[i].seq == e->last_seq, "%s listed at seq %llu, its last change %llu",
		      e->id.s, (unsigned long long)all[i].seq, (unsigned long long)e->last_seq);
	}
	free(all);

	/* Each message: fields, receipts, state, audio. */
	uint64_t usage = 0;
	size_t live = 0;
	for (size_t k = 0; k < f->n; k++) {
		sent *e = &f->msgs[k];
		CHECK(log, seen[k], "acknowledged %s is missing from since", e->id.s);
		store_message m;
		int rc = store_message_get(w->s, f->f.id.s, e->id.s, &m);
		if (!CHECK(log, rc == 0, "acknowledged %s: get: %s", e->id.s, store_errcode(rc)))
			continue;
		check_fields(log, f, &m, e->seed, min, max, "final get");
		CHECK(log, m.seq == e->last_seq, "%s: seq %llu, its last change %llu", e->id.s,
		      (unsigned long long)m.seq, (unsigned long long)e->last_seq);
		CHECK(log, m.state == e->state, "%s: state %d, expected %d", e->id.s, m.state,
		      e->state);
		unsigned want = (unsigned)__builtin_popcount(e->listened);
		CHECK(log, m.listened_count == want, "%s: %u receipts, %u were recorded", e->id.s,
		      m.listened_count, want);
		for (int j = 0; j < NMEMBERS; j++) {
			if (!(e->listened & 1u << j))
				continue;
			bool found = false;
			for (unsigned q = 0; q < m.listened_count && q < STORE_MAX_LISTENERS; q++)
				found |= ids_equal(&m.listened_by[q], &f->m[j].id);
			CHECK(log, found, "%s: member %d's receipt is missing", e->id.s, j);
		}
		char why[200];
		if (e->state == STORE_MSG_DELETED) {
			uint8_t buf[64];
			size_t got = 0;
			rc = store_audio_read(w->s, f->f.id.s, e->id.s, 0, buf, sizeof buf, &got);
			CHECK(log, rc != 0 || got == 0, "deleted %s still reads %zu bytes", e->id.s,
			      got);
			continue;
		}
		live++;
		usage += payload_len(e->seed, min, max);
		rc = check_audio(w, f, e->id.s, e->seed, min, max, r, why, sizeof why);
		CHECK(log, rc == 0, "acknowledged %s: %s", e->id.s, why);
	}
	free(seen);

	uint64_t bytes = 0;
	int rc = store_mailbox_usage(w->s, f->f.id.s, &bytes);
	CHECK(log, rc == 0 && bytes == usage, "usage %s %llu, the live messages hold %llu",
	      store_errcode(rc), (unsigned long long)bytes, (unsigned long long)usage);

	/* Newest: all the messages that are not deleted, each once. */
	store_message *page = malloc((f->n + 4) * sizeof *page);
	size_t got = 0;
	rc = store_messages_newest(w->s, f->f.id.s, page, f->n + 4, &got);
	CHECK(log, rc == 0 && got == live, "newest %s: %zu messages, %zu are not deleted",
	      store_errcode(rc), got, live);
	for (size_t i = 0; rc == 0 && i < got; i++) {
		sent key = {.id = page[i].id};
		sent *e = f->n ? bsearch(&key, f->msgs, f->n, sizeof *f->msgs, cmp_id) : NULL;
		CHECK(log, e && e->state != STORE_MSG_DELETED, "newest lists %s", page[i].id.s);
		for (size_t j = 0; j < i; j++)
			CHECK(log, !ids_equal(&page[i].id, &page[j].id), "newest lists %s twice",
			      page[i].id.s);
	}
	free(page);
}

static void check_keys(world *w)
{
	for (int p = 0; p < NWRITERS / 2; p++)
		for (int k = 0; k < MAX_KEYS; k++) {
			key_slot *a = &w->keys[p][k][0], *b = &w->keys[p][k][1];
			if (a->done && b->done) {
				CHECK(&w->log, ids_equal(&a->id, &b->id),
				      "key pair-%d-key-%d gave two messages: %s and %s", p, k,
				      a->id.s, b->id.s);
				CHECK(&w->log, a->existed + b->existed == 1,
				      "key pair-%d-key-%d: existed %d and %d", p, k, a->existed,
				      b->existed);
			} else if (a->done || b->done) {
				key_slot *o = a->done ? a : b;
				CHECK(&w->log, o->existed == 0,
				      "key pair-%d-key-%d used once but existed", p, k);
			}
		}
}

static void watchdog(int sig)
{
	(void)sig;
	static const char msg[] = "# watchdog: the test hung (a deadlock?); data kept in ";
	ssize_t k = write(2, msg, sizeof msg - 1);
	if (watchdog_dir)
		k = write(2, watchdog_dir, strlen(watchdog_dir));
	k = write(2, "\n", 1);
	(void)k;
	_exit(3);
}

static void arm_watchdog(void)
{
	signal(SIGALRM, watchdog);
	alarm(WATCHDOG_S);
}

/* ---- A client syncing with "since" while everything changes ---- */

typedef struct seen_msg {
	store_id id;
	uint64_t seq;
} seen_msg;

typedef struct follower {
	world *w;
	pthread_t thread;
	uint64_t cursor[NFAM];
	seen_msg *seen[NFAM];
	size_t nseen[NFAM], capseen[NFAM];
	long pages;
} follower;

/* One page from the cursor, as the header tells a client to page; returns how many came. */
static size_t follow_once(follower *fl, unsigned fi, size_t max)
{
	world *w = fl->w;
	store_message page[5];
	size_t n = 0;
	uint64_t latest = 0, since = fl->cursor[fi];
	int rc = store_messages_since(w->s, w->fams[fi].f.id.s, since, page, max, &n, &latest);
	if (!CHECK(&w->log, rc == 0 && n <= max, "follower: since: %s, %zu of %zu",
	           store_errcode(rc), n, max))
		return 0;
	fl->pages++;
	for (size_t i = 0; i < n; i++) {
		CHECK(&w->log, page[i].seq > since, "follower: seq %llu after since %llu",
		      (unsigned long long)page[i].seq, (unsigned long long)since);
		if (fl->nseen[fi] == fl->capseen[fi]) {
			fl->capseen[fi] = fl->capseen[fi] ? 2 * fl->capseen[fi] : 1024;
			fl->seen[fi] = realloc(fl->seen[fi], fl->capseen[fi] * sizeof(seen_msg));
			if (!fl->seen[fi])
				abort();
		}
		fl->seen[fi][fl->nseen[fi]++] = (seen_msg){page[i].id, page[i].seq};
	}
	CHECK(&w->log, latest >= since, "follower: latest %llu went back from %llu",
	      (unsigned long long)latest, (unsigned long long)since);
	fl->cursor[fi] = n < max ? latest : page[n - 1].seq;
	return n;
}

static void *follower_main(void *arg)
{
	follower *fl = arg;
	while (!atomic_load(&fl->w->stop)) {
		for (unsigned fi = 0; fi < fl->w->nfam; fi++)
			follow_once(fl, fi, 1 + (size_t)(fl->pages % 5));
		sleep_us(300); /* a client, not a spinner: leave the CPUs to the writers */
	}
	return NULL;
}

static int cmp_seen(const void *a, const void *b)
{
	const seen_msg *x = a, *y = b;
	int c = strcmp(x->id.s, y->id.s);
	return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Once the writers are done: catch up, then the newest version the follower saw of each
 * message must be its last change. A change skipped while paging shows here. */
static void follower_check(follower *fl)
{
	world *w = fl->w;
	for (unsigned fi = 0; fi < w->nfam; fi++) {
		fam *f = &w->fams[fi];
		while (follow_once(fl, fi, 5))
			;
		size_t n = fl->nseen[fi], u = 0;
		seen_msg *seen = fl->seen[fi];
		if (n)
			qsort(seen, n, sizeof *seen, cmp_seen);
		for (size_t i = 0; i < n; i++) { /* keep the newest per id */
			if (u && ids_equal(&seen[u - 1].id, &seen[i].id))
				u--;
			seen[u++] = seen[i];
		}
		CHECK(&w->log, u == f->n,
		      "follower saw %zu messages in family %u, %zu were appended", u, fi, f->n);
		for (size_t k = 0; k < f->n; k++) {
			sent *e = &f->msgs[k];
			seen_msg key = {.id = e->id}, *hit = NULL;
			for (size_t lo = 0, hi = u; lo < hi && !hit;) { /* by id only */
				size_t mid = (lo + hi) / 2;
				int c = strcmp(key.id.s, seen[mid].id.s);
				if (c == 0)
					hit = &seen[mid];
				else if (c < 0)
					hi = mid;
				else
					lo = mid + 1;
			}
			if (!CHECK(&w->log, hit, "the follower never saw %s", e->id.s))
				continue;
			CHECK(
			    &w->log, hit->seq == e->last_seq,
			    "the follower's newest version of %s is seq %llu, its last change %llu",
			    e->id.s, (unsigned long long)hit->seq, (unsigned long long)e->last_seq);
		}
		free(fl->seen[fi]);
		fl->seen[fi] = NULL;
	}
}

static void mixed_readers_and_writers_lose_nothing(void **st)
{
	(void)st;
	arm_watchdog();
	static world w; /* big: the key slots */
	world_open(&w, NFAM, 0);
	long busy_ms = env_long("JIAYIN_CONC_MS", 2000);
	int64_t t0 = now_ms();
	w.deadline = t0 + busy_ms;
	worker writers[NWRITERS], readers[NREADERS];
	static follower fl;
	memset(&fl, 0, sizeof fl);
	fl.w = &w;
	assert_int_equal(pthread_create(&fl.thread, NULL, follower_main, &fl), 0);
	for (int i = 0; i < NREADERS; i++) {
		readers[i] = (worker){.w = &w, .index = i};
		assert_int_equal(pthread_create(&readers[i].thread, NULL, reader_main, &readers[i]),
		                 0);
	}
	for (int i = 0; i < NWRITERS; i++) {
		writers[i] = (worker){.w = &w, .index = i};
		assert_int_equal(pthread_create(&writers[i].thread, NULL, writer_main, &writers[i]),
		                 0);
	}
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(writers[i].thread, NULL);
	atomic_store(&w.stop, true);
	for (int i = 0; i < NREADERS; i++)
		pthread_join(readers[i].thread, NULL);
	pthread_join(fl.thread, NULL);
	int64_t t1 = now_ms();

	check_keys(&w);
	rng r = {w.seed ^ 0xf1a1};
	for (unsigned i = 0; i < w.nfam; i++)
		verify_family(&w, &w.fams[i], MIN_AUDIO, MAX_AUDIO, &r); /* sorts the record */
	follower_check(&fl);
	fprintf(stderr,
	        "# %ld appends (%ld keyed, %ld found existing), %ld audio reads, %ld lists, %ld "
	        "receipts, %ld state changes, %ld follower pages in %lld ms; verified in %lld ms\n",
	        atomic_load(&w.appends), atomic_load(&w.keyed), atomic_load(&w.existed),
	        atomic_load(&w.reads), atomic_load(&w.lists), atomic_load(&w.listens),
	        atomic_load(&w.states), fl.pages, (long long)(t1 - t0), (long long)(now_ms() - t1));
	CHECK(&w.log, atomic_load(&w.appends) > 0, "no append went through");

	/* And all of it again from a fresh open: nothing lived only in a cache. */
	store_close(w.s);
	store_options opt;
	store_options_init(&opt);
	opt.dir = w.dir;
	assert_int_equal(store_open(&w.s, &opt), 0);
	for (unsigned i = 0; i < w.nfam; i++)
		verify_family(&w, &w.fams[i], MIN_AUDIO, MAX_AUDIO, &r);
	alarm(0);
	world_close(&w);
}

/* ---- Racing on one idempotency key ---- */

#define RACERS 4
#define RACE_ROUNDS 40

typedef struct racer {
	world *w;
	int index;
	pthread_t thread;
	pthread_barrier_t *start;
	int rc[RACE_ROUNDS], existed[RACE_ROUNDS];
	store_id id[RACE_ROUNDS];
} racer;

static void *racer_main(void *arg)
{
	racer *me = arg;
	world *w = me->w;
	fam *f = &w->fams[0];
	for (int round = 0; round < RACE_ROUNDS; round++) {
		uint64_t seed = mix64(w->seed ^ 0x4ace0000ull ^ (uint64_t)round);
		shape sh;
		shape_of(seed, MIN_AUDIO, MAX_AUDIO, &sh);
		uint8_t *audio = payload_make(seed, sh.len);
		char key[32];
		snprintf(key, sizeof key, "race-%d", round);
		store_new_message nm = {
		    .sender = f->m[sh.sender].id.s,
		    .to = sh.to < 0 ? NULL : f->m[sh.to].id.s,
		    .created_ms = sh.created_ms,
		    .duration_ms = sh.duration_ms,
		    .lufs = sh.lufs,
		    .waveform = sh.waveform,
		    .audio = audio,
		    .audio_len = sh.len,
		    .idempotency_key = key,
		};
		store_message out;
		me->existed[round] = -1;
		pthread_barrier_wait(me->start);
		me->rc[round] =
		    store_message_append(w->s, f->f.id.s, &nm, &out, &me->existed[round]);
		free(audio);
		me->id[round] = out.id;
		if (me->rc[round] == 0)
			check_fields(&w->log, f, &out, seed, MIN_AUDIO, MAX_AUDIO, "race");
	}
	return NULL;
}

static void racing_one_idempotency_key_gives_one_message(void **st)
{
	(void)st;
	arm_watchdog();
	static world w;
	world_open(&w, 1, 0);
	pthread_barrier_t start;
	assert_int_equal(pthread_barrier_init(&start, NULL, RACERS), 0);
	static racer racers[RACERS];
	for (int i = 0; i < RACERS; i++) {
		racers[i] = (racer){.w = &w, .index = i, .start = &start};
		assert_int_equal(pthread_create(&racers[i].thread, NULL, racer_main, &racers[i]),
		                 0);
	}
	for (int i = 0; i < RACERS; i++)
		pthread_join(racers[i].thread, NULL);
	pthread_barrier_destroy(&start);
	fam *f = &w.fams[0];
	for (int round = 0; round < RACE_ROUNDS; round++) {
		int fresh = 0;
		for (int i = 0; i < RACERS; i++) {
			racer *q = &racers[i];
			if (!CHECK(&w.log, q->rc[round] == 0, "round %d racer %d: %s", round, i,
			           store_errcode(q->rc[round])))
				continue;
			fresh += q->existed[round] == 0;
			CHECK(&w.log, ids_equal(&q->id[round], &racers[0].id[round]),
			      "round %d: racer %d got %s, racer 0 got %s", round, i, q->id[round].s,
			      racers[0].id[round].s);
		}
		CHECK(&w.log, fresh == 1, "round %d: %d racers created the message", round, fresh);
		if (racers[0].rc[round] == 0) {
			store_message m = {.seq = 0};
			int rc = store_message_get(w.s, f->f.id.s, racers[0].id[round].s, &m);
			CHECK(&w.log, rc == 0, "round %d: get: %s", round, store_errcode(rc));
			register_sent(f, &m, mix64(w.seed ^ 0x4ace0000ull ^ (uint64_t)round));
		}
	}
	rng r = {w.seed ^ 0x4ace};
	verify_family(&w, f, MIN_AUDIO, MAX_AUDIO, &r);
	CHECK(&w.log, f->n == RACE_ROUNDS, "%zu messages for %d keys", f->n, RACE_ROUNDS);
	alarm(0);
	world_close(&w);
}

/* ---- More families than the cache holds ---- */

#define LRU_FAMILIES 10
#define LRU_THREADS 6
#define LRU_MAX_PER_THREAD 400
#define LRU_MIN 1
#define LRU_MAX 4096

static void *lru_main(void *arg)
{
	worker *me = arg;
	world *w = me->w;
	rng r = {w->seed ^ mix64(0x3000 + (uint64_t)me->index)};
	for (int i = 0; i < LRU_MAX_PER_THREAD && now_ms() < w->deadline; i++) {
		/* Round-robin, each thread offset: every call wants a different family than
		 * its neighbours, so the cache of two is always full of families in use. */
		fam *f = &w->fams[(me->index + i) % LRU_FAMILIES];
		uint64_t seed =
		    mix64(w->seed ^ 0x1c0000000ull ^ (uint64_t)me->index << 20 ^ (uint64_t)i);
		shape sh;
		shape_of(seed, LRU_MIN, LRU_MAX, &sh);
		uint8_t *audio = payload_make(seed, sh.len);
		store_new_message nm = {
		    .sender = f->m[sh.sender].id.s,
		    .to = sh.to < 0 ? NULL : f->m[sh.to].id.s,
		    .created_ms = sh.created_ms,
		    .duration_ms = sh.duration_ms,
		    .lufs = sh.lufs,
		    .waveform = sh.waveform,
		    .audio = audio,
		    .audio_len = sh.len,
		};
		store_message out;
		int existed = -1;
		int rc = store_message_append(w->s, f->f.id.s, &nm, &out, &existed);
		free(audio);
		if (!CHECK(&w->log, rc == 0 && existed == 0, "lru append: %s, existed %d",
		           store_errcode(rc), existed))
			continue;
		atomic_fetch_add(&w->appends, 1);
		register_sent(f, &out, seed);
		/* Read it back at once, from whatever family the cache holds now. */
		fam *g = &w->fams[(me->index + i + 3) % LRU_FAMILIES];
		char why[200];
		rc = check_audio(w, f, out.id.s, seed, LRU_MIN, LRU_MAX, &r, why, sizeof why);
		CHECK(&w->log, rc == 0, "lru read back %s: %s", out.id.s, why);
		atomic_fetch_add(&w->reads, 1);
		if (i % 3 == 0) {
			store_message page[4];
			size_t n;
			uint64_t latest;
			rc = store_messages_since(w->s, g->f.id.s, 0, page, 4, &n, &latest);
			CHECK(&w->log, rc == 0, "lru since: %s", store_errcode(rc));
			atomic_fetch_add(&w->lists, 1);
		}
		if (i % 5 == 0) {
			uint64_t bytes;
			rc = store_mailbox_usage(w->s, g->f.id.s, &bytes);
			CHECK(&w->log, rc == 0, "lru usage: %s", store_errcode(rc));
		}
		if (i % 7 == 0) {
			store_message m;
			rc = store_message_get(w->s, f->f.id.s, out.id.s, &m);
			CHECK(&w->log, rc == 0, "lru get: %s", store_errcode(rc));
		}
	}
	return NULL;
}

static void more_families_than_the_cache_holds(void **st)
{
	(void)st;
	arm_watchdog();
	static world w;
	world_open(&w, LRU_FAMILIES, 2);
	int64_t t0 = now_ms();
	w.deadline = t0 + env_long("JIAYIN_CONC_MS", 2000) * 3 / 4;
	worker threads[LRU_THREADS];
	for (int i = 0; i < LRU_THREADS; i++) {
		threads[i] = (worker){.w = &w, .index = i};
		assert_int_equal(pthread_create(&threads[i].thread, NULL, lru_main, &threads[i]),
		                 0);
	}
	for (int i = 0; i < LRU_THREADS; i++)
		pthread_join(threads[i].thread, NULL);
	int64_t t1 = now_ms();
	rng r = {w.seed ^ 0x1c};
	for (unsigned i = 0; i < w.nfam; i++)
		verify_family(&w, &w.fams[i], LRU_MIN, LRU_MAX, &r);
	fprintf(stderr, "# %ld appends, %ld reads, %ld lists over %d families in %lld ms\n",
	        atomic_load(&w.appends), atomic_load(&w.reads), atomic_load(&w.lists), LRU_FAMILIES,
	        (long long)(t1 - t0));
	store_close(w.s);
	store_options opt;
	store_options_init(&opt);
	opt.dir = w.dir;
	opt.max_open_families = 2;
	assert_int_equal(store_open(&w.s, &opt), 0);
	for (unsigned i = 0; i < w.nfam; i++)
		verify_family(&w, &w.fams[i], LRU_MIN, LRU_MAX, &r);
	alarm(0);
	world_close(&w);
}

/* ---- Deleting a family while others use it ---- */

#define DELETE_ROUNDS 25
#define DELETE_THREADS 4
#define DELETE_PATIENCE_MS 2000

typedef struct delete_round {
	world *w;
	fam *f;
	store_id msg;
	atomic_bool deleted; /* store_family_delete has returned */
	atomic_bool stop;
	int delete_rc;
	atomic_long after_ok, after_calls;
} delete_round;

typedef struct delete_user {
	delete_round *d;
	int index;
	pthread_t thread;
} delete_user;

static void *delete_user_main(void *arg)
{
	delete_user *me = arg;
	delete_round *d = me->d;
	world *w = d->w;
	rng r = {w->seed ^ mix64(0x5000 + (uint64_t)me->index)};
	uint8_t audio[64], waveform[STORE_WAVEFORM_POINTS] = {0};
	memset(audio, 0x4f, sizeof audio);
	for (unsigned i = 0; !atomic_load(&d->stop); i++) {
		bool after = atomic_load(&d->deleted);
		int rc, op = (int)(rng_next(&r) % 4);
		const char *what;
		if (op == 0) {
			uint64_t bytes;
			what = "usage";
			rc = store_mailbox_usage(w->s, d->f->f.id.s, &bytes);
		} else if (op == 1) {
			store_message m;
			what = "get";
			rc = store_message_get(w->s, d->f->f.id.s, d->msg.s, &m);
		} else if (op == 2) {
			uint8_t buf[16];
			size_t got;
			what = "audio_read";
			rc = store_audio_read(w->s, d->f->f.id.s, d->msg.s, 0, buf, sizeof buf,
			                      &got);
		} else {
			store_new_message nm = {.sender = d->f->m[0].id.s,
			                        .created_ms = i,
			                        .waveform = waveform,
			                        .audio = audio,
			                        .audio_len = sizeof audio};
			store_message out;
			int existed;
			what = "append";
			rc = store_message_append(w->s, d->f->f.id.s, &nm, &out, &existed);
		}
		if (!after)
			continue;
		atomic_fetch_add(&d->after_calls, 1);
		/* Begun after the delete returned: the family must be gone. An append that
		 * "succeeds" here is acknowledged and lost. */
		if (!CHECK(&w->log, rc == STORE_ENOTFOUND,
		           "%s on family %s, begun after store_family_delete returned: %s", what,
		           d->f->f.id.s, store_errcode(rc)))
			atomic_fetch_add(&d->after_ok, rc == 0);
	}
	return NULL;
}

static void *deleter_main(void *arg)
{
	delete_round *d = arg;
	d->delete_rc = store_family_delete(d->w->s, d->f->f.id.s);
	atomic_store(&d->deleted, true);
	return NULL;
}

static const char *find_name_part;
static int find_name_hits;

static int find_name(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag;
	if (strstr(path + ftw->base, find_name_part))
		find_name_hits++;
	return 0;
}

/* Files under `dir` whose name contains `part`. */
static int files_naming(const char *dir, const char *part)
{
	find_name_part = part;
	find_name_hits = 0;
	nftw(dir, find_name, 16, FTW_PHYS);
	return find_name_hits;
}

static void deleted_family_stays_deleted_under_load(void **st)
{
	(void)st;
	arm_watchdog();
	static world w;
	world_open(&w, 0, 0);
	rng r = {w.seed ^ 0xde1e7e};
	long after_ok = 0, after_calls = 0;
	for (int round = 0; round < DELETE_ROUNDS && !atomic_load(&w.log.count); round++) {
		fam f = {0};
		assert_int_equal(
		    store_family_create(w.s, "doomed", "parent", 0, 1700000000000ll, &f.f, &f.m[0]),
		    0);
		static delete_round d;
		memset(&d, 0, sizeof d);
		d.w = &w, d.f = &f;
		uint8_t audio[100] = {1}, waveform[STORE_WAVEFORM_POINTS] = {0};
		store_new_message nm = {.sender = f.m[0].id.s,
		                        .waveform = waveform,
		                        .audio = audio,
		                        .audio_len = sizeof audio};
		store_message out;
		int existed;
		assert_int_equal(store_message_append(w.s, f.f.id.s, &nm, &out, &existed), 0);
		d.msg = out.id;
		delete_user users[DELETE_THREADS];
		for (int i = 0; i < DELETE_THREADS; i++) {
			users[i] = (delete_user){.d = &d, .index = i};
			assert_int_equal(
			    pthread_create(&users[i].thread, NULL, delete_user_main, &users[i]), 0);
		}
		sleep_us((long)rng_range(&r, 0, 3000));
		pthread_t deleter;
		assert_int_equal(pthread_create(&deleter, NULL, deleter_main, &d), 0);
		/* The delete may wait for calls in progress, not for ever while new ones come. */
		int64_t t0 = now_ms();
		while (!atomic_load(&d.deleted) && now_ms() - t0 < DELETE_PATIENCE_MS)
			sleep_us(1000);
		bool starved = !atomic_load(&d.deleted);
		CHECK(&w.log, !starved,
		      "round %d: store_family_delete has not returned after %d ms while %d threads "
		      "keep using the family",
		      round, DELETE_PATIENCE_MS, DELETE_THREADS);
		if (!starved)
			sleep_us((long)rng_range(&r, 1000, 5000));
		atomic_store(&d.stop, true);
		for (int i = 0; i < DELETE_THREADS; i++)
			pthread_join(users[i].thread, NULL);
		pthread_join(deleter, NULL);
		int rc = d.delete_rc;
		CHECK(&w.log, rc == 0, "round %d: delete: %s", round, store_errcode(rc));
		after_ok += atomic_load(&d.after_ok);
		after_calls += atomic_load(&d.after_calls);
		uint64_t bytes;
		rc = store_mailbox_usage(w.s, f.f.id.s, &bytes);
		CHECK(&w.log, rc == STORE_ENOTFOUND, "round %d: usage after the delete: %s", round,
		      store_errcode(rc));
		store_family got;
		rc = store_family_get(w.s, f.f.id.s, &got);
		CHECK(&w.log, rc == STORE_ENOTFOUND, "round %d: family_get after the delete: %s",
		      round, store_errcode(rc));
		/* "Erases its mailbox file": no file in the data directory names the family. */
		int files = files_naming(w.dir, f.f.id.s);
		CHECK(&w.log, files == 0, "round %d: %d file(s) named after deleted family %s",
		      round, files, f.f.id.s);
	}
	fprintf(stderr, "# %ld calls began after a delete returned, %ld of them succeeded\n",
	        after_calls, after_ok);
	alarm(0);
	world_close(&w);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	test_seed();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(mixed_readers_and_writers_lose_nothing),
	    cmocka_unit_test(racing_one_idempotency_key_gives_one_message),
	    cmocka_unit_test(more_families_than_the_cache_holds),
	    cmocka_unit_test(deleted_family_stays_deleted_under_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
