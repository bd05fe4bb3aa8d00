/*
 * test_races.c — three races the mixed workload of test_concurrency.c may never line up: threads
 * appending with one idempotency key behind a barrier (one message per key, and every racer gets
 * its id); ten families squeezed through a cache of two while threads append, read back, list and
 * ask usage (then all of it again after a fresh open); a family deleted while threads use it (the
 * delete must return, and after it nothing may succeed on that family, nor any file name it).
 * The world, its checks and the watchdog are in concurrency_world.h. Knobs: JIAYIN_CONC_MS (the
 * cache phase runs 3/4 of it, default 2000 ms), JIAYIN_TEST_SEED.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "concurrency_world.h"

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
		store_new_message nm = message_of(f, &sh, audio, key);
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
		store_new_message nm = message_of(f, &sh, audio, NULL);
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
	d->delete_rc = store_family_delete(d->w->s, d->f->f.id.s, 5000);
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
	    cmocka_unit_test(racing_one_idempotency_key_gives_one_message),
	    cmocka_unit_test(more_families_than_the_cache_holds),
	    cmocka_unit_test(deleted_family_stays_deleted_under_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
