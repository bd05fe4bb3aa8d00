/*
 * concurrency_world.h — what the storage concurrency tests (test_concurrency.c, test_races.c)
 * share: a "world" of families with four members each on one store handle, the test's record of
 * every acknowledged message and change, message shapes derived from a seed, the checks the
 * threads and the final pass make (fields, audio, and a family's whole record against the store),
 * and a watchdog that turns a hang into a failure. Threads never call cmocka's assert_* (it
 * longjmps): they log to the world's fail_log, which world_close() reports on the test's thread.
 */
#ifndef JIAYIN_TESTS_CONCURRENCY_WORLD_H
#define JIAYIN_TESTS_CONCURRENCY_WORLD_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "storage_helpers.h"

#include <signal.h>

#define NMEMBERS 4
/* The mixed workload's writers (test_concurrency.c): the world holds their pairs' keys. */
#define NWRITERS 8
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

static inline void shape_of(uint64_t seed, size_t min, size_t max, shape *sh)
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

/* The message a shape describes in family f, with its audio (the caller's, kept until the
 * append returns) and an idempotency key or NULL. */
static inline store_new_message message_of(const fam *f, const shape *sh, const uint8_t *audio,
					   const char *key)
{
	store_new_message nm = {
	    .sender = f->m[sh->sender].id.s,
	    .to = sh->to < 0 ? NULL : f->m[sh->to].id.s,
	    .created_ms = sh->created_ms,
	    .duration_ms = sh->duration_ms,
	    .lufs = sh->lufs,
	    .waveform = sh->waveform,
	    .audio = audio,
	    .audio_len = sh->len,
	    .idempotency_key = key,
	};
	return nm;
}

/* ---- Setting up and tearing down ---- */

static const char *watchdog_dir; /* named when the watchdog fires: kept for a look */

static inline void world_open(world *w, unsigned nfam, unsigned max_open)
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
static inline void world_close(world *w)
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

static inline void push_change(fam *f, uint64_t seq)
{
	if (f->nchanges == f->capchanges) {
		f->capchanges = f->capchanges ? 2 * f->capchanges : 256;
		f->changes = realloc(f->changes, f->capchanges * sizeof *f->changes);
		if (!f->changes)
			abort();
	}
	f->changes[f->nchanges++] = seq;
}

static inline void register_sent(fam *f, const store_message *m, uint64_t seed)
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
static inline void check_fields(fail_log *log, const fam *f, const store_message *m,
                                uint64_t seed, size_t min, size_t max, const char *where)
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
	if (m->state == STORE_MSG_DELETED) {
		/* A tombstone keeps nothing of the voice. */
		static const uint8_t zeros[STORE_WAVEFORM_POINTS + STORE_HASH_LEN];
		CHECK(log,
		      m->duration_ms == 0 && m->lufs == 0 && m->bytes == 0 &&
		          !memcmp(m->waveform, zeros, STORE_WAVEFORM_POINTS) &&
		          !memcmp(m->sha256, zeros, STORE_HASH_LEN) && m->listened_count == 0,
		      "%s %s: a deleted message keeps its measures, waveform, hash or receipts",
		      where, m->id.s);
		return;
	}
	CHECK(log, m->duration_ms == sh.duration_ms, "%s %s: duration %u, expected %u", where,
	      m->id.s, m->duration_ms, sh.duration_ms);
	CHECK(log, m->lufs == sh.lufs, "%s %s: lufs %.17g, expected %.17g", where, m->id.s, m->lufs,
	      sh.lufs);
	CHECK(log, !memcmp(m->waveform, sh.waveform, STORE_WAVEFORM_POINTS),
	      "%s %s: waveform differs", where, m->id.s);
	{
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
static inline int check_audio(world *w, const fam *f, const char *message_id, uint64_t seed,
                              size_t min, size_t max, rng *r, char *why, size_t cap)
{
	size_t len = payload_len(seed, min, max);
	uint8_t *p = payload_make(seed, len);
	int rc = audio_check(w->s, f->f.id.s, message_id, p, len, r, why, cap);
	free(p);
	return rc;
}

/* After the dust settles: the store and the test's record agree on everything. */
static inline void verify_family(world *w, fam *f, size_t min, size_t max, rng *r)
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
		/* Deleting drops the receipts. */
		unsigned want =
		    e->state == STORE_MSG_DELETED ? 0 : (unsigned)__builtin_popcount(e->listened);
		CHECK(log, m.listened_count == want, "%s: %u receipts, %u were recorded", e->id.s,
		      m.listened_count, want);
		for (int j = 0; j < NMEMBERS && want; j++) {
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

/* ---- A hung test says so, and keeps its data directory for a look ---- */

static inline void watchdog(int sig)
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

static inline void arm_watchdog(void)
{
	signal(SIGALRM, watchdog);
	alarm(WATCHDOG_S);
}

#endif
