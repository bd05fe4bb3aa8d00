/*
 * ratelimit.c — how many times a key (a client address) did something within a window.
 *
 * A key is a client address (an IPv6 one counted as its /64) or a name ("*" for everyone).
 * A fixed table of SRV_RATE_SLOTS slots, found by hashing the key; a slot whose window has
 * passed is reused, and when the table is full of live windows the key shares a slot with
 * another (it can only be limited sooner, never later). Constant memory whatever the
 * traffic. An action counted before it is known to be one (a pairing code, checked on the
 * pool) is given back with srv_rate_refund when it was not. Loop thread only.
 *
 * The hash is SipHash keyed at random for each limiter: with a hash anyone can compute (it was
 * FNV-1a), keys that share a victim's home slot were found offline, eight of them filled its
 * neighbourhood and one spent its window where the victim had to share it, locking out a
 * chosen address (helper-137's review).
 */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof((srv_ratelimit *)0)->hash_key == crypto_shorthash_KEYBYTES,
               "the limiter's hash key is SipHash's");

/* tag, then bytes (at most 64: a longer text key is cut, as the callers' keys never are) */
static uint64_t keyed(const srv_ratelimit *r, char tag, const void *p, size_t n)
{
	unsigned char in[65], out[crypto_shorthash_BYTES];
	if (n > sizeof in - 1)
		n = sizeof in - 1;
	in[0] = (unsigned char)tag;
	memcpy(in + 1, p, n);
	crypto_shorthash(out, in, n + 1, r->hash_key);
	uint64_t h;
	memcpy(&h, out, sizeof h);
	return h;
}

/*
 * An IPv6 address counts as its /64: one line or one home is given a /64 to number its
 * devices from, so per-address limits on single IPv6 addresses limit nothing. An IPv4 address
 * written as IPv6 (::ffff:a.b.c.d) is that IPv4 address. Anything else is its text.
 */
uint64_t srv_rate_hash(const srv_ratelimit *r, const char *key)
{
	unsigned char a6[16];
	struct in_addr a4;
	if (strchr(key, ':') && inet_pton(AF_INET6, key, a6) == 1) {
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a6, mapped, sizeof mapped) == 0)
			return keyed(r, '4', a6 + 12, 4);
		return keyed(r, '6', a6, 8);
	}
	if (inet_pton(AF_INET, key, &a4) == 1)
		return keyed(r, '4', &a4, 4);
	return keyed(r, 't', key, strlen(key));
}

/* The key's live slot in its neighbourhood of eight, or -1. */
static long live_slot(const srv_ratelimit *r, uint64_t h, size_t home, uint64_t now_ms)
{
	for (size_t i = 0; i < 8; i++) {
		const srv_rate_slot *s = &r->slots[(home + i) % SRV_RATE_SLOTS];
		if (s->hash == h && s->count > 0 && now_ms - s->start_ms < r->window_ms)
			return (long)((home + i) % SRV_RATE_SLOTS);
	}
	return -1;
}

/* The first free or expired slot in the key's neighbourhood of eight, or -1: its own to take
 * (srv_rate_take), and what srv_rate_exhausted must find as srv_rate_take would. */
static long free_slot(const srv_ratelimit *r, size_t home, uint64_t now_ms)
{
	for (size_t i = 0; i < 8; i++) {
		const srv_rate_slot *s = &r->slots[(home + i) % SRV_RATE_SLOTS];
		if (s->count == 0 || now_ms - s->start_ms >= r->window_ms)
			return (long)((home + i) % SRV_RATE_SLOTS);
	}
	return -1;
}

bool srv_rate_take(srv_ratelimit *r, const char *key, uint64_t now_ms)
{
	uint64_t h = srv_rate_hash(r, key);
	size_t home = (size_t)(h % SRV_RATE_SLOTS);
	/*
	 * The key's own live slot first, wherever it is among the eight: a free or expired slot
	 * before it is not the key's (taking it restarted the key's count whenever another key's
	 * window ended, review finding). Else the first free or expired one, else the home slot,
	 * shared.
	 */
	long found = live_slot(r, h, home, now_ms);
	size_t pick = home;
	if (found >= 0) {
		pick = (size_t)found;
	} else if ((found = free_slot(r, home, now_ms)) >= 0) {
		pick = (size_t)found;
		r->slots[pick] = (srv_rate_slot){.hash = h, .start_ms = now_ms, .count = 0};
	}
	srv_rate_slot *s = &r->slots[pick];
	if (now_ms - s->start_ms >= r->window_ms) {
		s->hash = h;
		s->start_ms = now_ms;
		s->count = 0;
	}
	if (s->count >= r->max)
		return false;
	s->count++;
	return true;
}

bool srv_rate_exhausted(const srv_ratelimit *r, const char *key, uint64_t now_ms)
{
	uint64_t h = srv_rate_hash(r, key);
	size_t home = (size_t)(h % SRV_RATE_SLOTS);
	long found = live_slot(r, h, home, now_ms);
	if (found >= 0)
		return r->slots[found].count >= r->max;
	/* Not in its neighbourhood: a free or expired slot there would be its own, else it would
	 * share the home slot (srv_rate_take). */
	if (free_slot(r, home, now_ms) >= 0)
		return false;
	const srv_rate_slot *s = &r->slots[home];
	return now_ms - s->start_ms < r->window_ms && s->count >= r->max;
}

uint64_t srv_rate_wait_ms(const srv_ratelimit *r, const char *key, uint64_t now_ms)
{
	if (!srv_rate_exhausted(r, key, now_ms))
		return 0;
	uint64_t h = srv_rate_hash(r, key);
	size_t home = (size_t)(h % SRV_RATE_SLOTS);
	long found = live_slot(r, h, home, now_ms); /* else the home slot, as srv_rate_exhausted */
	const srv_rate_slot *s = &r->slots[found >= 0 ? (size_t)found : home];
	return s->start_ms + r->window_ms - now_ms;
}

void srv_rate_refund(srv_ratelimit *r, const char *key, uint64_t taken_ms, uint64_t now_ms)
{
	uint64_t h = srv_rate_hash(r, key);
	size_t home = (size_t)(h % SRV_RATE_SLOTS);
	/*
	 * Where srv_rate_take counted it: the key's live slot, else the home slot it shared. A
	 * window started after taken_ms is a later one (the key's own, or another key's in the
	 * slot): the action does not count there, so nothing is taken from it.
	 */
	long found = live_slot(r, h, home, now_ms);
	/*
	 * A key with a slot of its own from taken_ms or before counted it there, not in the home
	 * slot (it shares that only when it has none): that window has ended, so nothing is given
	 * back, and above all not to the key whose window now holds the home slot.
	 */
	for (size_t i = 0; found < 0 && i < 8; i++) {
		const srv_rate_slot *o = &r->slots[(home + i) % SRV_RATE_SLOTS];
		if (o->hash == h && o->start_ms <= taken_ms)
			return;
	}
	srv_rate_slot *s = &r->slots[found >= 0 ? (size_t)found : home];
	if (s->count > 0 && s->start_ms <= taken_ms && now_ms - s->start_ms < r->window_ms)
		s->count--;
}

void srv_rate_init(srv_ratelimit *r, unsigned max, uint64_t window_ms)
{
	memset(r, 0, sizeof *r);
	r->max = max;
	r->window_ms = window_ms;
	if (sodium_init() < 0)
		abort(); /* no randomness: nothing the server does is safe */
	randombytes_buf(r->hash_key, sizeof r->hash_key);
}
