/*
 * test_ratelimit.c — the fixed-memory rate limiter (server/ratelimit.c): a key is refused
 * after max actions in its window and allowed again after it; keys that hash to the same slot
 * keep their own counts; a key's count does not restart when a slot before its own in the
 * neighbourhood frees up (review finding: pairing-code failures counted afresh); an IPv6
 * client is its /64; and an action given back (srv_rate_refund: a pairing code counted before
 * it was checked, then right) frees its place in the window that counted it, and only there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"

#include <stdio.h>
#include <stdlib.h>

static uint64_t fnv(const char *key)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 0x100000001b3ull;
	return h;
}

/* n different keys "k<i>" whose home slot is the same under an unkeyed FNV-1a hash: what an
 * attacker computes offline. */
static void fnv_colliding_keys(char keys[][16], int n)
{
	char first[16];
	snprintf(first, sizeof first, "k0");
	size_t home = (size_t)(fnv(first) % SRV_RATE_SLOTS);
	int found = 0;
	for (int i = 0; found < n && i < 10000000; i++) {
		char k[16];
		snprintf(k, sizeof k, "k%d", i);
		if ((size_t)(fnv(k) % SRV_RATE_SLOTS) == home)
			snprintf(keys[found++], 16, "%s", k);
	}
	assert_int_equal(found, n);
}

/* n different keys "k<i>" whose home slot in r is the same. */
static void colliding_keys_in(const srv_ratelimit *r, char keys[][16], int n)
{
	size_t home = (size_t)(srv_rate_hash(r, "k0") % SRV_RATE_SLOTS);
	int found = 0;
	for (int i = 0; found < n && i < 10000000; i++) {
		char k[16];
		snprintf(k, sizeof k, "k%d", i);
		if ((size_t)(srv_rate_hash(r, k) % SRV_RATE_SLOTS) == home)
			snprintf(keys[found++], 16, "%s", k);
	}
	assert_int_equal(found, n);
}

/*
 * An attacker who knows a victim's address cannot aim at its slots: with an unkeyed hash (FNV,
 * as the limiter had), keys that share the victim's home slot are found offline, eight of
 * them fill its neighbourhood, and one spends its window in the home slot the victim must
 * then share, locking the victim out (pairing_locked for 15 minutes from about 17 wrong codes,
 * helper-137's review). The limiter's hash is keyed per limiter now: the keys found offline
 * land anywhere.
 */
static void a_victim_cannot_be_aimed_at(void **state)
{
	(void)state;
	char keys[9][16];
	fnv_colliding_keys(keys, 9);
	const char *victim = keys[8];
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 3, 1000);
	for (int i = 0; i < 8; i++)
		assert_true(srv_rate_take(r, keys[i], 100));
	for (int i = 0; i < 2; i++)
		assert_true(srv_rate_take(r, keys[0], 100));
	assert_false(srv_rate_exhausted(r, victim, 200));
	assert_true(srv_rate_take(r, victim, 200));
	free(r);
}

static void counts_within_a_window(void **state)
{
	(void)state;
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 3, 1000);
	for (int i = 0; i < 3; i++) {
		assert_false(srv_rate_exhausted(r, "10.0.0.1", 100));
		assert_true(srv_rate_take(r, "10.0.0.1", 100));
	}
	assert_true(srv_rate_exhausted(r, "10.0.0.1", 500));
	assert_false(srv_rate_take(r, "10.0.0.1", 500));
	assert_true(srv_rate_take(r, "10.0.0.2", 500)); /* another key, its own count */
	assert_false(srv_rate_exhausted(r, "10.0.0.1", 1100)); /* the window is over */
	assert_true(srv_rate_take(r, "10.0.0.1", 1100));
	free(r);
}

/* The wait a refusal names (Retry-After): until the key's window ends, none while it may act. */
static void waits_until_the_window_ends(void **state)
{
	(void)state;
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 2, 1000);
	assert_int_equal(srv_rate_wait_ms(r, "pinset-a", 100), 0);
	assert_true(srv_rate_take(r, "pinset-a", 100));
	assert_true(srv_rate_take(r, "pinset-a", 300));
	assert_int_equal(srv_rate_wait_ms(r, "pinset-a", 400), 700); /* from the first, at 100 */
	assert_int_equal(srv_rate_wait_ms(r, "pinset-b", 400), 0);
	assert_int_equal(srv_rate_wait_ms(r, "pinset-a", 1100), 0);
	free(r);
}

static void colliding_keys_keep_their_counts(void **state)
{
	(void)state;
	char keys[3][16];
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 3, 1000);
	colliding_keys_in(r, keys, 3);
	/* a and b take the first two slots of the neighbourhood at 0 ms; k the third at 100 ms. */
	assert_true(srv_rate_take(r, keys[0], 0));
	assert_true(srv_rate_take(r, keys[1], 0));
	for (int i = 0; i < 3; i++)
		assert_true(srv_rate_take(r, keys[2], 100));
	assert_false(srv_rate_take(r, keys[2], 200));
	assert_true(srv_rate_take(r, keys[0], 200)); /* a's count is its own: 2 of 3 */
	/* At 1050 ms a's and b's windows are over, k's (from 100 ms) is not: k stays refused. */
	assert_true(srv_rate_exhausted(r, keys[2], 1050));
	assert_false(srv_rate_take(r, keys[2], 1050));
	assert_false(srv_rate_take(r, keys[2], 1099));
	assert_true(srv_rate_take(r, keys[2], 1100)); /* and is allowed once its own ends */
	free(r);
}

/*
 * A key that has done nothing is not locked because another key whose home slot is the same
 * used up its own count: it would be given a free slot of the neighbourhood (review finding:
 * a parent's first pairing code was 429 pairing_locked after another address's ten wrong ones).
 */
static void a_colliding_key_is_not_locked_by_another(void **state)
{
	(void)state;
	char keys[2][16];
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 3, 1000);
	colliding_keys_in(r, keys, 2);
	for (int i = 0; i < 3; i++)
		assert_true(srv_rate_take(r, keys[0], 0));
	assert_true(srv_rate_exhausted(r, keys[0], 100));
	assert_false(srv_rate_exhausted(r, keys[1], 100));
	assert_int_equal(srv_rate_wait_ms(r, keys[1], 100), 0);
	assert_true(srv_rate_take(r, keys[1], 100));
	assert_true(srv_rate_exhausted(r, keys[0], 100));
	free(r);
}

/* One IPv6 /64 is one client; an IPv4 address written as IPv6 is that address. */
static void addresses_as_clients(void **state)
{
	(void)state;
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 2, 1000);
	assert_true(srv_rate_take(r, "2001:db8:1:2::10", 0));
	assert_true(srv_rate_take(r, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", 0));
	assert_false(srv_rate_take(r, "2001:db8:1:2:ffff::1", 0)); /* the same /64 */
	assert_true(srv_rate_exhausted(r, "2001:db8:1:2::10", 0));
	assert_true(srv_rate_take(r, "2001:db8:1:3::10", 0)); /* the next /64 */
	assert_true(srv_rate_take(r, "10.1.2.3", 0));
	assert_true(srv_rate_take(r, "::ffff:10.1.2.3", 0));
	assert_false(srv_rate_take(r, "10.1.2.3", 0));
	assert_true(srv_rate_take(r, "10.1.2.4", 0)); /* IPv4: each address its own */
	free(r);
}

/* A refund frees the place of one action in its own window, never below zero. */
static void refunds_give_back_one(void **state)
{
	(void)state;
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 3, 1000);
	srv_rate_refund(r, "10.0.0.1", 0, 0); /* nothing taken: nothing to give back */
	for (int i = 0; i < 3; i++)
		assert_true(srv_rate_take(r, "10.0.0.1", 100 + i));
	assert_true(srv_rate_exhausted(r, "10.0.0.1", 200));
	srv_rate_refund(r, "10.0.0.1", 101, 300);
	assert_false(srv_rate_exhausted(r, "10.0.0.1", 300));
	assert_true(srv_rate_take(r, "10.0.0.1", 300));
	assert_false(srv_rate_take(r, "10.0.0.1", 300));
	/* Another key's refund takes nothing from this one. */
	srv_rate_refund(r, "10.0.0.2", 100, 400);
	assert_true(srv_rate_exhausted(r, "10.0.0.1", 400));
	/* Refunding more than was taken cannot go below zero: the key still has 3 places. */
	for (int i = 0; i < 5; i++)
		srv_rate_refund(r, "10.0.0.1", 100, 500);
	for (int i = 0; i < 3; i++)
		assert_true(srv_rate_take(r, "10.0.0.1", 600));
	assert_false(srv_rate_take(r, "10.0.0.1", 600));
	free(r);
}

/* An action of a window that has ended is not given back to the next one. */
static void refunds_stay_in_their_window(void **state)
{
	(void)state;
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 2, 1000);
	assert_true(srv_rate_take(r, "10.0.0.1", 0));
	assert_true(srv_rate_take(r, "10.0.0.1", 1100)); /* a new window from 1100 ms */
	assert_true(srv_rate_take(r, "10.0.0.1", 1200));
	srv_rate_refund(r, "10.0.0.1", 0, 1300); /* taken in the old window */
	assert_true(srv_rate_exhausted(r, "10.0.0.1", 1300));
	assert_false(srv_rate_take(r, "10.0.0.1", 1300));
	srv_rate_refund(r, "10.0.0.1", 1200, 2200); /* its window is over by now */
	assert_true(srv_rate_take(r, "10.0.0.1", 2200));
	assert_true(srv_rate_take(r, "10.0.0.1", 2200));
	assert_false(srv_rate_take(r, "10.0.0.1", 2200));
	free(r);
}

/* Colliding keys: a refund goes to the slot that counted the action, the shared one too. */
static void refunds_of_colliding_keys(void **state)
{
	(void)state;
	char keys[9][16];
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 2, 1000);
	colliding_keys_in(r, keys, 9);
	assert_true(srv_rate_take(r, keys[0], 0));
	assert_true(srv_rate_take(r, keys[0], 0));
	for (int i = 1; i < 8; i++) /* the neighbourhood of eight is full of live windows */
		assert_true(srv_rate_take(r, keys[i], 0));
	srv_rate_refund(r, keys[1], 0, 10);
	assert_true(srv_rate_exhausted(r, keys[0], 10)); /* keys[1]'s refund is its own */
	assert_true(srv_rate_take(r, keys[1], 10));
	assert_true(srv_rate_take(r, keys[1], 10));
	assert_false(srv_rate_take(r, keys[1], 10));
	/* keys[8] finds no slot of its own: it shares the home slot, keys[0]'s, and is refused
	 * with it; keys[7]'s second action is counted in its own slot, and given back there. */
	assert_false(srv_rate_take(r, keys[8], 20));
	assert_true(srv_rate_take(r, keys[7], 20));
	srv_rate_refund(r, keys[7], 20, 30);
	assert_true(srv_rate_take(r, keys[7], 30));
	assert_false(srv_rate_take(r, keys[7], 30));
	srv_rate_refund(r, keys[0], 0, 40); /* keys[0] and keys[8] share: both may act once more */
	assert_false(srv_rate_exhausted(r, keys[8], 40));
	assert_true(srv_rate_take(r, keys[8], 40));
	assert_true(srv_rate_exhausted(r, keys[0], 40));
	srv_rate_refund(r, keys[8], 40, 50); /* given back to the slot it was counted in */
	assert_false(srv_rate_exhausted(r, keys[0], 50));
	free(r);
}

/*
 * An action counted in the key's own slot, whose window has ended by the time it is given back
 * (a job answered just after), is given back nowhere: not to the home slot, another key's
 * (review finding: that key had one more try than its limit).
 */
static void a_late_refund_frees_nothing_of_another_key(void **state)
{
	(void)state;
	char keys[2][16];
	srv_ratelimit *r = malloc(sizeof *r);
	srv_rate_init(r, 2, 1000);
	colliding_keys_in(r, keys, 2);
	assert_true(srv_rate_take(r, keys[0], 0));    /* the home slot, until 1000 */
	assert_true(srv_rate_take(r, keys[1], 100));  /* the next one, until 1100 */
	assert_true(srv_rate_take(r, keys[0], 1050)); /* the home slot again, from 1050 */
	assert_true(srv_rate_take(r, keys[0], 1060));
	assert_true(srv_rate_exhausted(r, keys[0], 1070));
	assert_true(srv_rate_take(r, keys[1], 1070)); /* counted in keys[1]'s window */
	srv_rate_refund(r, keys[1], 1070, 1120);      /* given back once that window is over */
	assert_true(srv_rate_exhausted(r, keys[0], 1120));
	assert_false(srv_rate_take(r, keys[0], 1120));
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(counts_within_a_window),
	    cmocka_unit_test(waits_until_the_window_ends),
	    cmocka_unit_test(colliding_keys_keep_their_counts),
	    cmocka_unit_test(a_victim_cannot_be_aimed_at),
	    cmocka_unit_test(a_colliding_key_is_not_locked_by_another),
	    cmocka_unit_test(addresses_as_clients),
	    cmocka_unit_test(refunds_give_back_one),
	    cmocka_unit_test(refunds_stay_in_their_window),
	    cmocka_unit_test(refunds_of_colliding_keys),
	    cmocka_unit_test(a_late_refund_frees_nothing_of_another_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
