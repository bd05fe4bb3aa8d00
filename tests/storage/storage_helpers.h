/*
 * storage_helpers.h — what the storage tests share: a throwaway data directory, payloads that
 * are a pure function of a 64-bit seed (so a checker can recompute bytes and SHA-256 without
 * keeping them), a full read-back of a message's audio in odd-sized chunks, and a failure log
 * that worker threads and forked children can write to (cmocka's assert_* may only run on the
 * test's own thread: it longjmps).
 */
#ifndef JIAYIN_TEST_STORAGE_HELPERS_H
#define JIAYIN_TEST_STORAGE_HELPERS_H

#include "store.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- Randomness: splitmix64, deterministic per seed ---- */

static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

typedef struct rng {
	uint64_t s;
} rng;

static inline uint64_t rng_next(rng *r)
{
	r->s += 0x9e3779b97f4a7c15ull;
	return mix64(r->s);
}

/* Uniform in [lo, hi]. */
static inline uint64_t rng_range(rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rng_next(r) % (hi - lo + 1);
}

/* The run's seed: JIAYIN_TEST_SEED if set, else the clock; printed so a failure can be rerun. */
static inline uint64_t test_seed(void)
{
	static uint64_t seed;
	if (!seed) {
		const char *e = getenv("JIAYIN_TEST_SEED");
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = e && *e ? strtoull(e, NULL, 0)
		               : ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
		                     ((uint64_t)getpid() << 32);
		if (!seed)
			seed = 1;
		fprintf(stderr, "# JIAYIN_TEST_SEED=%llu\n", (unsigned long long)seed);
	}
	return seed;
}

static inline long env_long(const char *name, long def)
{
	const char *e = getenv(name);
	return e && *e ? strtol(e, NULL, 0) : def;
}

static inline int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- Payloads: bytes, length and waveform are functions of the seed ---- */

static inline size_t payload_len(uint64_t seed, size_t min, size_t max)
{
	return min + (size_t)(mix64(seed ^ 0x5eedull) % (max - min + 1));
}

static inline void payload_fill(uint64_t seed, uint8_t *buf, size_t len)
{
	rng r = {seed};
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = rng_next(&r);
		memcpy(buf + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = rng_next(&r);
		memcpy(buf + i, &v, len - i);
	}
}

/* A fresh buffer with the payload; the caller frees it. NULL only if malloc fails. */
static inline uint8_t *payload_make(uint64_t seed, size_t len)
{
	uint8_t *b = malloc(len ? len : 1);
	if (b)
		payload_fill(seed, b, len);
	return b;
}

static inline void waveform_fill(uint64_t seed, uint8_t w[STORE_WAVEFORM_POINTS])
{
	rng r = {seed ^ 0xa5a5a5a5ull};
	for (int i = 0; i < STORE_WAVEFORM_POINTS; i++)
		w[i] = (uint8_t)rng_next(&r);
}

static inline void sha256_of(const uint8_t *d, size_t n, uint8_t out[STORE_HASH_LEN])
{
	crypto_hash_sha256(out, d, n);
}

/* ---- A failure log that any thread may write to ---- */

typedef struct fail_log {
	pthread_mutex_t lock;
	atomic_int count;
	char text[4096];
	size_t used;
} fail_log;

static inline void fail_log_init(fail_log *l)
{
	memset(l, 0, sizeof *l);
	pthread_mutex_init(&l->lock, NULL);
}

static inline void fail_log_destroy(fail_log *l)
{
	pthread_mutex_destroy(&l->lock);
}

static inline void fail_logf(fail_log *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void fail_logf(fail_log *l, const char *fmt, ...)
{
	atomic_fetch_add(&l->count, 1);
	pthread_mutex_lock(&l->lock);
	if (l->used + 2 < sizeof l->text) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(l->text + l->used, sizeof l->text - l->used - 1, fmt, ap);
		va_end(ap);
		if (k > 0) {
			l->used += (size_t)k < sizeof l->text - l->used - 2
			               ? (size_t)k
			               : sizeof l->text - l->used - 2;
			l->text[l->used++] = '\n';
			l->text[l->used] = 0;
		}
	}
	pthread_mutex_unlock(&l->lock);
}

/* Log "file:line: cond: message" as one entry. */
static inline void check_failed(fail_log *l, const char *file, int line, const char *cond,
                                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline void check_failed(fail_log *l, const char *file, int line, const char *cond,
                                const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fail_logf(l, "%s:%d: %s: %s", file, line, cond, msg);
}

/* Record a failure (with where) unless `cond` holds; evaluates to `cond`. */
#define CHECK(log, cond, ...)                                                                      \
	((cond) ? true : (check_failed((log), __FILE__, __LINE__, #cond, __VA_ARGS__), false))
/* Record a failure unconditionally. */
#define FAIL(log, ...) check_failed((log), __FILE__, __LINE__, "failed", __VA_ARGS__)

/* ---- The data directory ---- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

/* mkdtemp under $TMPDIR or /tmp into `buf`; returns buf or NULL. */
static inline char *temp_dir(char *buf, size_t cap)
{
	const char *base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	if (snprintf(buf, cap, "%s/jiayin-store-XXXXXX", base) >= (int)cap)
		return NULL;
	return mkdtemp(buf);
}

static inline int remove_tree(const char *dir)
{
	return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- Reading a message's audio back ---- */

/*
 * Read all of a message's audio in chunk sizes drawn from `r` (odd sizes, 1 to ~5 KB, and reads
 * that straddle the end), into a fresh buffer (*out, caller frees). Also checks the contract of
 * a short read: *got < len only at the end. Returns 0 or a STORE_E* code, or 1 when the store
 * broke the short-read rule (`why` says how).
 */
static inline int audio_read_all(store *s, const char *family_id, const char *message_id,
                                 uint64_t expect_len, rng *r, uint8_t **out, size_t *out_len,
                                 char *why, size_t why_cap)
{
	size_t cap = expect_len + 8192, n = 0;
	uint8_t *buf = malloc(cap);
	*out = NULL, *out_len = 0;
	if (!buf)
		return STORE_ENOMEM;
	for (;;) {
		size_t want = (size_t)rng_range(r, 1, 5000) | 1;
		if (n + want > cap) {
			snprintf(why, why_cap, "more than %llu bytes of audio (expected %llu)",
			         (unsigned long long)n, (unsigned long long)expect_len);
			free(buf);
			return 1;
		}
		size_t got = 12345678;
		int rc = store_audio_read(s, family_id, message_id, n, buf + n, want, &got);
		if (rc) {
			snprintf(why, why_cap, "store_audio_read at offset %zu of %llu: %s", n,
			         (unsigned long long)expect_len, store_errcode(rc));
			free(buf);
			return rc;
		}
		if (got > want) {
			snprintf(why, why_cap, "store_audio_read got %zu > asked %zu", got, want);
			free(buf);
			return 1;
		}
		n += got;
		if (got < want)
			break;
	}
	/* Reading at the end (and past it) gives nothing, not an error. */
	uint8_t tail[16];
	size_t got = 999;
	int rc = store_audio_read(s, family_id, message_id, n, tail, sizeof tail, &got);
	if (rc || got != 0) {
		snprintf(why, why_cap, "read at the end (offset %zu): rc %s got %zu", n,
		         store_errcode(rc), rc ? 0 : got);
		free(buf);
		return rc ? rc : 1;
	}
	*out = buf, *out_len = n;
	return 0;
}

/* Compare a message's stored audio with the expected bytes; 0 or a message in `why`. */
static inline int audio_check(store *s, const char *family_id, const char *message_id,
                              const uint8_t *expect, size_t expect_len, rng *r, char *why,
                              size_t why_cap)
{
	uint8_t *got;
	size_t n;
	int rc = audio_read_all(s, family_id, message_id, expect_len, r, &got, &n, why, why_cap);
	if (rc)
		return rc;
	if (n != expect_len) {
		snprintf(why, why_cap, "audio is %zu bytes, expected %zu", n, expect_len);
		rc = 1;
	} else if (memcmp(got, expect, n)) {
		size_t i = 0;
		while (got[i] == expect[i])
			i++;
		snprintf(why, why_cap, "audio differs at byte %zu of %zu", i, n);
		rc = 1;
	}
	free(got);
	return rc;
}

static inline bool ids_equal(const store_id *a, const store_id *b)
{
	return strcmp(a->s, b->s) == 0;
}

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static inline int cmp_id(const void *a, const void *b)
{
	return strcmp(((const store_id *)a)->s, ((const store_id *)b)->s);
}

static inline void hex32(const uint8_t h[STORE_HASH_LEN], char out[2 * STORE_HASH_LEN + 1])
{
	for (int i = 0; i < STORE_HASH_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/*
 * Every message of a family by paging store_messages_since with a small `max` from 0, as the
 * header says a client does. Checks, into `log`: sequence numbers strictly increase across the
 * whole walk, each page's seqs are above its `since` and at most its *latest, *n <= max. Returns
 * a malloc'ed array (caller frees) with *count, or NULL on a store error (logged).
 */
static inline store_message *list_all_since(store *s, const char *family_id, size_t max,
                                            size_t *count, uint64_t *latest_out, fail_log *log)
{
	size_t cap = 64, n = 0;
	store_message *all = malloc(cap * sizeof *all);
	store_message *page = malloc(max * sizeof *page);
	uint64_t since = 0, last = 0, latest = 0;
	for (int guard = 0; all && page; guard++) {
		size_t got = 999999;
		uint64_t lat = 0;
		int rc = store_messages_since(s, family_id, since, page, max, &got, &lat);
		if (!CHECK(log, rc == 0, "store_messages_since(%llu): %s",
		           (unsigned long long)since, store_errcode(rc)))
			goto fail;
		if (!CHECK(log, got <= max, "since returned %zu > max %zu", got, max))
			goto fail;
		for (size_t i = 0; i < got; i++) {
			CHECK(log, page[i].seq > since, "seq %llu not after since %llu",
			      (unsigned long long)page[i].seq, (unsigned long long)since);
			CHECK(log, page[i].seq > last, "seq %llu after %llu: not increasing",
			      (unsigned long long)page[i].seq, (unsigned long long)last);
			CHECK(log, page[i].seq <= lat, "seq %llu above latest %llu",
			      (unsigned long long)page[i].seq, (unsigned long long)lat);
			last = page[i].seq;
			if (n == cap) {
				store_message *m = realloc(all, 2 * cap * sizeof *all);
				if (!m)
					goto fail;
				all = m, cap *= 2;
			}
			all[n++] = page[i];
		}
		latest = lat;
		if (got < max) {
			CHECK(log, lat >= last, "latest %llu below the last seq %llu",
			      (unsigned long long)lat, (unsigned long long)last);
			break;
		}
		since = page[got - 1].seq;
		if (!CHECK(log, guard < 1000000, "since paging does not end"))
			goto fail;
	}
	free(page);
	*count = n;
	if (latest_out)
		*latest_out = latest;
	return all;
fail:
	free(page);
	free(all);
	*count = 0;
	return NULL;
}

#endif
