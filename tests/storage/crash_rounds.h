/*
 * crash_rounds.h — the kill -9 rounds that test_crash and test_powercut share. A forked child
 * opens the store (with crash_run.vfs, NULL for the default) and appends to one family in a loop
 * (payloads are a function of a counter, stored as created_ms, so the parent can recompute bytes
 * and hash), writing "id + counter" to a pipe after each append that returned 0; in half the
 * rounds it keeps a cache of one family and touches another after each append, so its WAL is
 * checkpointed and deleted. The parent SIGKILLs it at a random moment (crash_round); what the
 * disk holds then is the caller's business (as the kill left it, or a power cut's); then
 * verify_after_crash reopens the store and checks every acknowledged message is there, whole,
 * with its SHA-256, any unacknowledged one that made it is whole too, nothing recovered once is
 * lost later, and the usage adds up. Include after cmocka.h (it asserts).
 */
#ifndef JIAYIN_TEST_CRASH_ROUNDS_H
#define JIAYIN_TEST_CRASH_ROUNDS_H

#include "storage_helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#define MAX_CHILD_THREADS 4
#define READY UINT64_MAX /* the child's first record: the store and the family are open */
#define CHILD_ERROR (UINT64_MAX - 1)
#define COUNTER(round, thread, i) ((uint64_t)(round + 1) << 24 | (uint64_t)(thread) << 20 | (i))
#define PER_THREAD_MAX (1u << 20)

/* What the child writes to the pipe: one record per write(), under PIPE_BUF, so atomic. */
typedef struct ack {
	store_id id;
	uint64_t counter; /* or READY, or CHILD_ERROR with `code` */
	int32_t code;
} ack;

typedef struct crash_run {
	char dir[256];
	store_family fam, decoy;
	store_member parent, child, decoy_parent;
	uint64_t seed;
	const char *vfs; /* the child's SQLite VFS by name; NULL: the default */
	fail_log log;
	/* Every acknowledged message so far, and every message any reopen has shown. */
	ack *acked;
	size_t nacked, capacked;
	store_message *known; /* sorted by id */
	size_t nknown;
	/* Figures for the report. */
	long rounds_without_acks, killed_before_ready, kills_by_time, kills_by_count,
	    kills_by_child, unacked_present, evicting_rounds;
	int64_t ms_to_ready, ms_children, ms_verifying;
} crash_run;

/* The message for a counter: everything derives from it. */
static inline size_t crash_len(const crash_run *r, uint64_t counter)
{
	uint64_t h = mix64(r->seed ^ counter);
	/* Mostly small clips, one in eight large enough to span many overflow pages. */
	return h % 8 == 0 ? 64 * 1024 + (size_t)((h >> 8) % (64 * 1024))
	                  : 1 + (size_t)((h >> 8) % (32 * 1024));
}

static inline uint8_t *crash_payload(const crash_run *r, uint64_t counter, size_t *len)
{
	*len = crash_len(r, counter);
	return payload_make(mix64(r->seed ^ counter ^ 0xc0ffee), *len);
}

static inline int send_ack(int fd, const ack *a)
{
	for (;;) {
		ssize_t k = write(fd, a, sizeof *a);
		if (k == (ssize_t)sizeof *a)
			return 0;
		if (k < 0 && errno == EINTR)
			continue;
		return -1;
	}
}

/* ---- The child ---- */

typedef struct child_ctx {
	const crash_run *r;
	store *s;
	int fd, round, thread;
	bool evict;
	pthread_t tid;
} child_ctx;

/* Message `counter` of a run: its payload (*audio, the caller frees it; NULL without memory),
 * its waveform into `waveform`; every third one to the child. */
static inline store_new_message crash_message(const crash_run *r, uint64_t counter,
                                              uint8_t *waveform, uint8_t **audio)
{
	size_t len = 0;
	*audio = crash_payload(r, counter, &len);
	waveform_fill(counter, waveform);
	return (store_new_message){
	    .sender = r->parent.id.s,
	    .to = counter % 3 ? NULL : r->child.id.s,
	    .created_ms = (int64_t)counter,
	    .duration_ms = (uint32_t)len,
	    .lufs = -16.0,
	    .waveform = waveform,
	    .audio = *audio,
	    .audio_len = len,
	};
}

static inline void *child_append_loop(void *arg)
{
	child_ctx *c = arg;
	const crash_run *r = c->r;
	uint8_t waveform[STORE_WAVEFORM_POINTS];
	for (uint32_t i = 0; i < PER_THREAD_MAX; i++) {
		uint64_t counter = COUNTER(c->round, c->thread, i);
		uint8_t *audio;
		store_new_message nm = crash_message(r, counter, waveform, &audio);
		if (!audio)
			_exit(4);
		char key[32];
		snprintf(key, sizeof key, "c%llu", (unsigned long long)counter);
		nm.idempotency_key = key;
		store_message out;
		int existed = 0;
		int rc = store_message_append(c->s, r->fam.id.s, &nm, &out, &existed);
		free(audio);
		ack a = {.counter = counter};
		if (rc || existed) {
			a.counter = CHILD_ERROR;
			a.code = rc ? rc : 1;
			send_ack(c->fd, &a);
			_exit(2);
		}
		a.id = out.id;
		if (send_ack(c->fd, &a))
			_exit(3);
		/* With a cache of one family, touching another closes this one: its WAL is
		 * checkpointed into the database file, and the kill may land in the middle. */
		uint64_t bytes;
		if (c->evict && (rc = store_mailbox_usage(c->s, r->decoy.id.s, &bytes))) {
			a.counter = CHILD_ERROR;
			a.code = rc;
			send_ack(c->fd, &a);
			_exit(2);
		}
	}
	return NULL;
}

/* Never returns. */
static inline void child_main(const crash_run *r, int fd, int round, int threads, bool evict)
{
	store *s = NULL;
	store_options opt;
	store_options_init(&opt);
	opt.dir = r->dir;
	opt.vfs = r->vfs;
	if (evict)
		opt.max_open_families = 1;
	int rc = store_open(&s, &opt);
	uint64_t bytes;
	if (rc == 0)
		rc = store_mailbox_usage(s, r->fam.id.s, &bytes); /* opens the family */
	ack a = {.counter = rc ? CHILD_ERROR : READY, .code = rc};
	send_ack(fd, &a);
	if (rc)
		_exit(2);
	child_ctx ctx[MAX_CHILD_THREADS];
	for (int t = 0; t < threads; t++) {
		ctx[t] = (child_ctx){
		    .r = r, .s = s, .fd = fd, .round = round, .thread = t, .evict = evict};
		if (t > 0 && pthread_create(&ctx[t].tid, NULL, child_append_loop, &ctx[t]))
			_exit(5);
	}
	child_append_loop(&ctx[0]);
	_exit(0); /* not reached before the kill in practice: a million appends */
}

/* ---- The parent ---- */

static inline void push_ack(ack **arr, size_t *n, size_t *cap, const ack *a)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 256;
		*arr = realloc(*arr, *cap * sizeof **arr);
		if (!*arr)
			abort();
	}
	(*arr)[(*n)++] = *a;
}

static inline int cmp_msg_id(const void *a, const void *b)
{
	return strcmp(((const store_message *)a)->id.s, ((const store_message *)b)->id.s);
}

/*
 * Read whole records from the pipe into `buf` (at most `max`, up to 64), keeping a partial one
 * in `carry`; returns records read, 0 at EOF, -1 on error, -2 on timeout.
 */
static inline int read_acks(int fd, ack *buf, size_t max, int timeout_ms, uint8_t *carry,
                            size_t *ncarry)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int k = poll(&p, 1, timeout_ms);
	if (k < 0)
		return errno == EINTR ? 0 : -1;
	if (k == 0)
		return -2; /* timeout */
	uint8_t raw[64 * sizeof(ack)];
	size_t room = (max < 64 ? max : 64) * sizeof(ack) - *ncarry;
	memcpy(raw, carry, *ncarry);
	ssize_t got = read(fd, raw + *ncarry, room);
	if (got < 0)
		return errno == EINTR ? -2 : -1;
	if (got == 0)
		return *ncarry ? -1 : 0; /* a torn record at EOF: writes were not atomic */
	size_t total = *ncarry + (size_t)got, n = total / sizeof(ack);
	memcpy(buf, raw, n * sizeof(ack));
	*ncarry = total - n * sizeof(ack);
	memmove(carry, raw + n * sizeof(ack), *ncarry);
	return (int)n;
}

/* One message the store returned, against what its counter says. */
static inline void check_message(crash_run *r, const store_message *m, const char *what)
{
	uint64_t counter = (uint64_t)m->created_ms;
	size_t len;
	uint8_t *p = crash_payload(r, counter, &len);
	uint8_t h[STORE_HASH_LEN];
	sha256_of(p, len, h);
	free(p);
	CHECK(&r->log, m->bytes == len, "%s %s (counter %llx): bytes %llu, expected %zu", what,
	      m->id.s, (unsigned long long)counter, (unsigned long long)m->bytes, len);
	CHECK(&r->log, !memcmp(m->sha256, h, STORE_HASH_LEN), "%s %s (counter %llx): wrong sha256",
	      what, m->id.s, (unsigned long long)counter);
	CHECK(&r->log, m->state == STORE_MSG_VISIBLE, "%s %s: state %d", what, m->id.s, m->state);
	CHECK(&r->log, ids_equal(&m->sender, &r->parent.id), "%s %s: sender %s", what, m->id.s,
	      m->sender.s);
	CHECK(&r->log, m->duration_ms == (uint32_t)len, "%s %s: duration %u", what, m->id.s,
	      m->duration_ms);
	if (counter % 3)
		CHECK(&r->log, m->to.s[0] == 0, "%s %s: to '%s'", what, m->id.s, m->to.s);
	else
		CHECK(&r->log, ids_equal(&m->to, &r->child.id), "%s %s: to '%s'", what, m->id.s,
		      m->to.s);
	uint8_t w[STORE_WAVEFORM_POINTS];
	waveform_fill(counter, w);
	CHECK(&r->log, !memcmp(m->waveform, w, sizeof w), "%s %s: waveform differs", what, m->id.s);
}

static inline void check_audio_of(crash_run *r, store *s, const char *id, uint64_t counter, rng *g,
                                  const char *what)
{
	size_t len;
	uint8_t *p = crash_payload(r, counter, &len);
	char why[200];
	int rc = audio_check(s, r->fam.id.s, id, p, len, g, why, sizeof why);
	free(p);
	CHECK(&r->log, rc == 0, "%s %s (counter %llx): %s", what, id, (unsigned long long)counter,
	      why);
}

/*
 * Reopen after a kill and check everything. `round_acks` are this round's acknowledgements;
 * `full`: read back every message's audio, not only this round's.
 */
static inline void verify_after_crash(crash_run *r, int round, const ack *round_acks, size_t nround,
                                      bool full, rng *g)
{
	store *s = NULL;
	store_options opt;
	store_options_init(&opt);
	opt.dir = r->dir;
	int rc = store_open(&s, &opt);
	if (!CHECK(&r->log, rc == 0, "round %d: reopen: %s", round, store_errcode(rc)))
		return;
	size_t n = 0;
	store_message *all = list_all_since(s, r->fam.id.s, 7, &n, NULL, &r->log);
	if (!all) {
		store_close(s);
		return;
	}
	if (n)
		qsort(all, n, sizeof *all, cmp_msg_id);
	uint64_t usage = 0;
	for (size_t i = 0; i < n; i++) {
		store_message *m = &all[i];
		uint64_t counter = (uint64_t)m->created_ms;
		usage += m->bytes;
		/* Seen (and checked against its counter) after an earlier crash: unchanged?
		 * Else check it against its counter now. */
		store_message *prev =
		    r->nknown ? bsearch(m, r->known, r->nknown, sizeof *m, cmp_msg_id) : NULL;
		if (prev)
			CHECK(&r->log,
			      prev->created_ms == m->created_ms && prev->bytes == m->bytes &&
			          prev->seq == m->seq &&
			          !memcmp(prev->sha256, m->sha256, STORE_HASH_LEN),
			      "%s changed between reopens", m->id.s);
		else
			check_message(r, m, "listed");
		CHECK(&r->log, counter >> 24 >= 1 && counter >> 24 <= (uint64_t)round + 1,
		      "%s: counter %llx was never appended", m->id.s, (unsigned long long)counter);
		if (i > 0)
			CHECK(&r->log, strcmp(m->id.s, all[i - 1].id.s), "%s listed twice",
			      m->id.s);
		/* This round's messages, acknowledged or not, must be whole. */
		if (full || counter >> 24 == (uint64_t)round + 1 || rng_next(g) % 64 == 0)
			check_audio_of(r, s, m->id.s, counter, g, "listed");
	}
	/* One message per counter: the idempotency keys were all different. */
	uint64_t *counters = malloc((n + 1) * sizeof *counters);
	for (size_t i = 0; i < n; i++)
		counters[i] = (uint64_t)all[i].created_ms;
	if (n)
		qsort(counters, n, sizeof *counters, cmp_u64);
	for (size_t i = 1; i < n; i++)
		CHECK(&r->log, counters[i] != counters[i - 1], "counter %llx stored twice",
		      (unsigned long long)counters[i]);
	free(counters);

	/* Every acknowledged append of this round: present, same id, whole. */
	for (size_t i = 0; i < nround; i++) {
		const ack *a = &round_acks[i];
		store_message key = {.id = a->id};
		store_message *m = bsearch(&key, all, n, sizeof *all, cmp_msg_id);
		if (!CHECK(&r->log, m, "round %d: acknowledged %s (counter %llx) is not listed",
		           round, a->id.s, (unsigned long long)a->counter))
			continue;
		CHECK(&r->log, (uint64_t)m->created_ms == a->counter,
		      "acknowledged %s has counter %llx, the ack says %llx", a->id.s,
		      (unsigned long long)m->created_ms, (unsigned long long)a->counter);
		store_message got;
		rc = store_message_get(s, r->fam.id.s, a->id.s, &got);
		if (CHECK(&r->log, rc == 0, "acknowledged %s: get: %s", a->id.s, store_errcode(rc)))
			check_message(r, &got, "acknowledged");
	}
	/* Every earlier acknowledgement and every message seen after an earlier crash: still
	 * here (one that was recovered once is committed and may not vanish). */
	for (size_t i = 0; i < r->nacked; i++) {
		store_message key = {.id = r->acked[i].id};
		CHECK(&r->log, bsearch(&key, all, n, sizeof *all, cmp_msg_id),
		      "round %d: %s (counter %llx), acknowledged in an earlier round, is gone",
		      round, r->acked[i].id.s, (unsigned long long)r->acked[i].counter);
	}
	for (size_t i = 0; i < r->nknown; i++)
		CHECK(&r->log, bsearch(&r->known[i], all, n, sizeof *all, cmp_msg_id),
		      "round %d: %s (counter %llx), recovered after an earlier crash, is gone",
		      round, r->known[i].id.s, (unsigned long long)r->known[i].created_ms);
	/* Unacknowledged but present: allowed (the kill came between commit and ack). */
	for (size_t i = 0; i < n; i++) {
		bool acked = false;
		for (size_t k = 0; k < nround && !acked; k++)
			acked = ids_equal(&round_acks[k].id, &all[i].id);
		if (!acked && (uint64_t)all[i].created_ms >> 24 == (uint64_t)round + 1)
			r->unacked_present++;
	}
	uint64_t bytes = 0;
	rc = store_mailbox_usage(s, r->fam.id.s, &bytes);
	CHECK(&r->log, rc == 0 && bytes == usage, "round %d: usage %s %llu, messages hold %llu",
	      round, store_errcode(rc), (unsigned long long)bytes, (unsigned long long)usage);

	free(r->known);
	r->known = all; /* sorted by id */
	r->nknown = n;
	for (size_t i = 0; i < nround; i++)
		push_ack(&r->acked, &r->nacked, &r->capacked, &round_acks[i]);
	store_close(s);
}

/* When crash_round kills the child. */
typedef enum {
	KILL_ANY = -1,       /* one of the others, drawn */
	KILL_AFTER_FORK = 0, /* a delay from the fork (may land in the child's store_open) */
	KILL_AFTER_READY,    /* a delay from "ready" */
	KILL_AT_ACKS,        /* as soon as a number of acks came */
	KILL_AFTER_ACKS,     /* a little after they came */
	KILL_BY_CHILD,       /* never: the child SIGKILLs itself (test_powercut's VFS, at an I/O) */
} kill_mode;

/* One round: fork, let the child append, kill it at a moment `how` says, collect the acks. */
static inline void crash_round(crash_run *r, int round, int threads, rng *g, kill_mode how,
                               ack **acks, size_t *nacks, size_t *cap)
{
	int p[2];
	/* Half the rounds close the family after every append (see child_append_loop). */
	bool evict = rng_next(g) % 2;
	r->evicting_rounds += evict;
	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		child_main(r, p[1], round, threads, evict);
	}
	close(p[1]);
	*nacks = 0;
	/* The moment: drawn even when `how` is given, so that a seed draws the same rounds. */
	int mode = (int)(rng_next(g) % 4);
	if (how != KILL_ANY)
		mode = (int)how;
	long delay_us = (long)rng_range(g, 1000, 50000);
	size_t want_acks = (size_t)rng_range(g, 1, evict ? 6 : 20);
	bool ready = false, killed = false, eof = false;
	int64_t start = now_ms();
	uint8_t carry[sizeof(ack)];
	size_t ncarry = 0;
	if (mode == KILL_AFTER_FORK) {
		sleep_us(delay_us);
		kill(pid, SIGKILL);
		killed = true;
		r->kills_by_time++;
	}
	while (!eof) {
		ack buf[64];
		int timeout = 100;
		if (!killed && mode == KILL_AFTER_READY && ready) {
			int64_t left = (int64_t)(delay_us / 1000) - (now_ms() - start);
			timeout = left > 0 ? (int)left : 0;
		}
		int k = read_acks(p[0], buf, 64, timeout, carry, &ncarry);
		if (k == -2) {
			if (!killed && mode == KILL_AFTER_READY && ready) {
				kill(pid, SIGKILL);
				killed = true;
				r->kills_by_time++;
			} else if (now_ms() - start > 20000) {
				FAIL(&r->log, "round %d: the child is silent for 20 s", round);
				kill(pid, SIGKILL);
				killed = true;
			}
			continue;
		}
		if (!CHECK(&r->log, k >= 0, "round %d: reading acks failed (a torn record?)",
		           round))
			break;
		if (k == 0) {
			eof = true;
			break;
		}
		for (int i = 0; i < k; i++) {
			if (buf[i].counter == READY) {
				ready = true;
				r->ms_to_ready += now_ms() - start;
				start = now_ms();
			} else if (buf[i].counter == CHILD_ERROR) {
				FAIL(&r->log, "round %d: the child failed: %s", round,
				     buf[i].code == 1 ? "a fresh key existed"
				                      : store_errcode(buf[i].code));
			} else {
				push_ack(acks, nacks, cap, &buf[i]);
			}
		}
		if (!killed && (mode == KILL_AT_ACKS || mode == KILL_AFTER_ACKS) &&
		    *nacks >= want_acks) {
			if (mode == KILL_AFTER_ACKS)
				sleep_us((long)rng_range(g, 0, 3000));
			kill(pid, SIGKILL);
			killed = true;
			r->kills_by_count++;
		}
	}
	close(p[0]);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	CHECK(&r->log, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	      "round %d: the child ended by itself (status %#x)", round, status);
	r->kills_by_child += !killed;
	if (!ready)
		r->killed_before_ready++;
	if (*nacks == 0)
		r->rounds_without_acks++;
}

static inline void crash_setup(crash_run *r)
{
	memset(r, 0, sizeof *r);
	fail_log_init(&r->log);
	r->seed = test_seed();
	assert_non_null(temp_dir(r->dir, sizeof r->dir));
	store *s = NULL;
	store_options opt;
	store_options_init(&opt);
	opt.dir = r->dir;
	assert_int_equal(store_open(&s, &opt), 0);
	assert_int_equal(store_family_create(s, "the crash family", "parent", 0, 1700000000000ll,
	                                     &r->fam, &r->parent),
	                 0);
	assert_int_equal(store_member_add(s, r->fam.id.s, "child", STORE_ROLE_CHILD, "",
	                                  1700000000001ll, &r->child),
	                 0);
	assert_int_equal(store_family_create(s, "a decoy", "parent", 0, 1700000000000ll, &r->decoy,
	                                     &r->decoy_parent),
	                 0);
	store_close(s); /* the child opens its own: nothing is shared across the fork */
}

/* Frees everything; removes the data directory unless a check failed (then it is kept as
 * evidence), and reports the failures. */
static inline void crash_teardown(crash_run *r)
{
	static char text[sizeof r->log.text];
	int fails = atomic_load(&r->log.count);
	memcpy(text, r->log.text, sizeof text);
	free(r->acked);
	free(r->known);
	fail_log_destroy(&r->log);
	if (fails) {
		fprintf(stderr, "# data kept in %s\n", r->dir);
		fail_msg("%d check(s) failed (first ones below)\n%s", fails, text);
	}
	assert_int_equal(remove_tree(r->dir), 0);
}
#endif
