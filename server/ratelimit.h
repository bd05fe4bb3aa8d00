/*
 * ratelimit.h — a fixed-memory counter of actions per key and window (ratelimit.c).
 */
#ifndef JIAYIN_SERVER_RATELIMIT_H
#define JIAYIN_SERVER_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define SRV_RATE_SLOTS 4096

typedef struct srv_rate_slot {
	uint64_t hash;
	uint64_t start_ms;
	unsigned count;
} srv_rate_slot;

typedef struct srv_ratelimit {
	unsigned max;        /* actions per window */
	uint64_t window_ms;
	uint8_t hash_key[16]; /* random, per limiter: where a key's slot is cannot be worked out */
	srv_rate_slot slots[SRV_RATE_SLOTS];
} srv_ratelimit;

void srv_rate_init(srv_ratelimit *r, unsigned max, uint64_t window_ms);
/* The hash of key that places it in r's table (its home slot: the hash % SRV_RATE_SLOTS). */
uint64_t srv_rate_hash(const srv_ratelimit *r, const char *key);
/* Counts one action of key now; false when key has used up its window (do not act). */
bool srv_rate_take(srv_ratelimit *r, const char *key, uint64_t now_ms);
/* Would the next action of key be refused? (Counts nothing.) */
bool srv_rate_exhausted(const srv_ratelimit *r, const char *key, uint64_t now_ms);
/* When key's next action would be refused: the ms until its window ends; else 0. */
uint64_t srv_rate_wait_ms(const srv_ratelimit *r, const char *key, uint64_t now_ms);
/*
 * Gives back one action of key that srv_rate_take counted (returned true) at taken_ms: an
 * attempt counted up front that turned out not to be one (a right pairing code). Only while
 * the window that counted it is the key's current one; after it ended there is nothing to
 * give back, and the count never goes below zero.
 */
void srv_rate_refund(srv_ratelimit *r, const char *key, uint64_t taken_ms, uint64_t now_ms);

#endif
