/*
 * upload_holds.c — the ledger of upload_holds.h: an array of entries searched in full. A
 * server holds a few entries per device at most (uploads-per-device unfinished uploads, and
 * the plain bodies its buffers allow), so a creation's sum over thousands of them costs
 * microseconds, less than the record it writes.
 */
#include "upload_holds.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOLD_KEY_MAX 27 /* an id (26 characters) and its NUL */

typedef struct hold {
	char key[HOLD_KEY_MAX];
	char family[HOLD_KEY_MAX];
	uint64_t bytes;
	uint64_t written; /* of them, on the disk already */
	int64_t expires_ms; /* an upload's expiry (INT64_MAX: a plain body's, none) */
	bool busy;          /* a request works on it: it counts past its expiry */
	srv_upload_refusal refusal; /* its message refused for want of room (needs 0: never) */
} hold;

struct srv_upload_holds {
	pthread_mutex_t mu;
	hold *v;
	size_t n, cap;
	uint64_t written; /* the entries' written bytes, all together */
	int64_t now;      /* the latest time a caller gave: once out of count, out for all */
};

int srv_upload_holds_new(srv_upload_holds **out)
{
	*out = NULL;
	srv_upload_holds *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h);
		return -ENOMEM;
	}
	*out = h;
	return 0;
}

void srv_upload_holds_free(srv_upload_holds *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h->v);
	free(h);
}

/* Under the mutex: time goes forward only, whichever thread's clock a caller read (a
 * creation reads it before its walk), so an entry that one caller found expired is expired to
 * every later one, and no renewal or request brings it back. A clock set back by more than a
 * walk could lag (CLOCK_BACK_MS) is the time again, as it is for the records' own expiry
 * (tus_load): else every upload, a new one too, would be out of count, 404 to its PATCH,
 * until the clock came back to the latest time it had said. */
#define CLOCK_BACK_MS 60000
static void tick(srv_upload_holds *h, int64_t now_ms)
{
	if (now_ms > h->now ||
	    (now_ms != INT64_MIN && (uint64_t)h->now - (uint64_t)now_ms > CLOCK_BACK_MS))
		h->now = now_ms;
}

/* Under the mutex: whether the entry counts. One past its expiry can be resumed by no one
 * (tus_load's 404): it holds nothing, though its files wait for the sweep, unless a request
 * that began in time works on it still (a PATCH receiving past the expiry). */
static bool counts(const srv_upload_holds *h, const hold *e)
{
	return e->busy || h->now < e->expires_ms;
}

/* Under the mutex. */
static uint64_t family_sum(const srv_upload_holds *h, const char *family)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < h->n; i++)
		if (counts(h, &h->v[i]) && strcmp(h->v[i].family, family) == 0)
			sum += h->v[i].bytes;
	return sum;
}

static uint64_t unwritten(const hold *e)
{
	return e->bytes > e->written ? e->bytes - e->written : 0;
}

/* Under the mutex: what all entries but `except` (or none) have still to write. */
static uint64_t unwritten_sum(const srv_upload_holds *h, const hold *except)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < h->n; i++)
		if (&h->v[i] != except && counts(h, &h->v[i]))
			sum += unwritten(&h->v[i]);
	return sum;
}

static uint64_t min3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a < b ? a : b;
	return m < c ? m : c;
}

int srv_upload_holds_take(srv_upload_holds *h, const char *family, const char *key, uint64_t min,
                          uint64_t max, uint64_t allowance, uint64_t disk, int64_t now_ms,
                          uint64_t *got)
{
	*got = 0;
	if (strlen(key) >= HOLD_KEY_MAX || strlen(family) >= HOLD_KEY_MAX)
		return -EINVAL;
	pthread_mutex_lock(&h->mu);
	tick(h, now_ms);
	int rc = 0;
	uint64_t held = family_sum(h, family), pending = unwritten_sum(h, NULL);
	uint64_t left = held < allowance ? allowance - held : 0;
	uint64_t disk_left = pending < disk ? disk - pending : 0;
	uint64_t take = min3(left, disk_left, max);
	if (allowance < min || allowance == 0) {
		rc = -ENOSPC;
		goto done;
	}
	if (left < min || left == 0) {
		rc = -EAGAIN; /* it would fit, were it not for the family's other entries */
		goto done;
	}
	if (take < min || take == 0) {
		rc = -EDQUOT; /* the family has room; the server's disk has not */
		goto done;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		hold *v = realloc(h->v, cap * sizeof *v);
		if (!v) {
			rc = -ENOMEM;
			goto done;
		}
		h->v = v;
		h->cap = cap;
	}
	hold *e = &h->v[h->n++];
	snprintf(e->key, sizeof e->key, "%s", key);
	snprintf(e->family, sizeof e->family, "%s", family);
	e->bytes = take;
	e->written = 0;
	e->expires_ms = INT64_MAX;
	e->busy = false;
	memset(&e->refusal, 0, sizeof e->refusal);
	*got = take;
done:
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int srv_upload_holds_resize(srv_upload_holds *h, const char *key, uint64_t min, uint64_t max,
                            uint64_t allowance, uint64_t disk, int64_t now_ms, uint64_t *got)
{
	*got = 0;
	pthread_mutex_lock(&h->mu);
	tick(h, now_ms);
	int rc = -ENOENT;
	for (size_t i = 0; i < h->n; i++) {
		hold *e = &h->v[i];
		if (strcmp(e->key, key) != 0)
			continue;
		uint64_t others = family_sum(h, e->family) - (counts(h, e) ? e->bytes : 0);
		uint64_t left = others < allowance ? allowance - others : 0;
		/* Its written bytes are on the disk already (out of `disk`): they are its own. */
		uint64_t pending = unwritten_sum(h, e);
		uint64_t mine = disk > UINT64_MAX - e->written ? UINT64_MAX : disk + e->written;
		uint64_t disk_left = pending < mine ? mine - pending : 0;
		uint64_t bytes = min3(left, disk_left, max);
		rc = bytes >= min ? 0 : left < min ? -EAGAIN : -EDQUOT;
		if (rc == 0)
			e->bytes = bytes;
		*got = e->bytes;
		break;
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

uint64_t srv_upload_holds_left(srv_upload_holds *h, const char *family, uint64_t allowance,
                               int64_t now_ms)
{
	pthread_mutex_lock(&h->mu);
	tick(h, now_ms);
	uint64_t held = family_sum(h, family);
	pthread_mutex_unlock(&h->mu);
	return held < allowance ? allowance - held : 0;
}

uint64_t srv_upload_holds_written_total(srv_upload_holds *h)
{
	pthread_mutex_lock(&h->mu);
	uint64_t w = h->written;
	pthread_mutex_unlock(&h->mu);
	return w;
}

void srv_upload_holds_written(srv_upload_holds *h, const char *key, uint64_t written)
{
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->v[i].key, key) == 0) {
			h->written = h->written - h->v[i].written + written;
			h->v[i].written = written;
			break;
		}
	pthread_mutex_unlock(&h->mu);
}

void srv_upload_holds_give(srv_upload_holds *h, const char *key)
{
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->v[i].key, key) == 0) {
			h->written -= h->v[i].written;
			h->v[i] = h->v[--h->n]; /* order does not matter */
			break;
		}
	pthread_mutex_unlock(&h->mu);
}

/* Under the mutex: the entry under `key`, or NULL. */
static hold *find(srv_upload_holds *h, const char *key)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->v[i].key, key) == 0)
			return &h->v[i];
	return NULL;
}

/* Under the mutex, time moved to now_ms: the entry under `key` if it counts; else NULL and *rc
 * -ENOENT (none) or -ETIMEDOUT (out of count). */
static hold *counted(srv_upload_holds *h, const char *key, int64_t now_ms, int *rc)
{
	tick(h, now_ms);
	hold *e = find(h, key);
	*rc = !e ? -ENOENT : !counts(h, e) ? -ETIMEDOUT : 0;
	return *rc == 0 ? e : NULL;
}

int srv_upload_holds_renew(srv_upload_holds *h, const char *key, int64_t expires_ms, int64_t now_ms)
{
	int rc;
	pthread_mutex_lock(&h->mu);
	hold *e = counted(h, key, now_ms, &rc);
	if (e)
		e->expires_ms = expires_ms;
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int srv_upload_holds_busy(srv_upload_holds *h, const char *key, int64_t now_ms)
{
	int rc;
	pthread_mutex_lock(&h->mu);
	hold *e = counted(h, key, now_ms, &rc);
	if (e)
		e->busy = true;
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void srv_upload_holds_idle(srv_upload_holds *h, const char *key)
{
	pthread_mutex_lock(&h->mu);
	hold *e = find(h, key);
	if (e)
		e->busy = false;
	pthread_mutex_unlock(&h->mu);
}

bool srv_upload_holds_is_busy(srv_upload_holds *h, const char *key)
{
	pthread_mutex_lock(&h->mu);
	hold *e = find(h, key);
	bool busy = e && e->busy;
	pthread_mutex_unlock(&h->mu);
	return busy;
}

int srv_upload_holds_refusal_set(srv_upload_holds *h, const char *key, const srv_upload_refusal *r)
{
	pthread_mutex_lock(&h->mu);
	hold *e = find(h, key);
	if (e)
		e->refusal = *r;
	pthread_mutex_unlock(&h->mu);
	return e ? 0 : -ENOENT;
}

void srv_upload_holds_refusal_get(srv_upload_holds *h, const char *key, srv_upload_refusal *r)
{
	pthread_mutex_lock(&h->mu);
	hold *e = find(h, key);
	if (e)
		*r = e->refusal;
	else
		memset(r, 0, sizeof *r);
	pthread_mutex_unlock(&h->mu);
}
