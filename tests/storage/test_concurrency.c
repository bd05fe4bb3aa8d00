/*
 * test_concurrency.c — the store under many threads at once. Writers append distinct payloads
 * (and race on shared idempotency keys) to several families while readers list, page, read
 * audio, record listened receipts and hide or delete messages, and a client follows each mailbox
 * with "since"; afterwards, and again after a fresh open, every acknowledged append must be there
 * exactly once with its bytes and SHA-256, every change must have its own sequence number, the
 * follower must have seen every message's last change, and the usage must add up. The focused
 * races (one idempotency key, a cache of two, a family deleted in use) are in test_races.c; the
 * world they share is in concurrency_world.h. Knobs: JIAYIN_CONC_MS (busy phase, default
 * 2000 ms), JIAYIN_TEST_SEED.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "concurrency_world.h"

#define NFAM 6
#define NREADERS 4

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
		store_new_message nm = message_of(f, &sh, audio, keyed ? key : NULL);
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

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	test_seed();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(mixed_readers_and_writers_lose_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
