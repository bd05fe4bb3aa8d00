/*
 * test_crash.c — kill -9 in the middle of appends (the rounds and their checks: crash_rounds.h).
 * The disk is as the kill left it, page cache and all: test_powercut takes what was not synced
 * away. Rounds go on appending to the same family, so the database grows; in half of them the
 * child keeps a cache of one family and touches another after each append, which closes the
 * mailbox and checkpoints its WAL, so kills land in checkpoints too. A second test kills a
 * child whose three threads append at once. Knobs: JIAYIN_CRASH_ROUNDS (default 30; the
 * threaded test runs half as many), JIAYIN_TEST_SEED.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "crash_rounds.h"

static void run_crash_rounds(int threads, long rounds)
{
	static crash_run run;
	crash_run *r = &run;
	crash_setup(r);
	rng g = {r->seed ^ (uint64_t)threads << 40};
	ack *acks = NULL;
	size_t nacks = 0, cap = 0;
	int64_t t0 = now_ms();
	for (int round = 0; round < rounds && !atomic_load(&r->log.count); round++) {
		int64_t a = now_ms();
		crash_round(r, round, threads, &g, KILL_ANY, &acks, &nacks, &cap);
		int64_t b = now_ms();
		verify_after_crash(r, round, acks, nacks, round == rounds - 1, &g);
		r->ms_children += b - a, r->ms_verifying += now_ms() - b;
	}
	free(acks);
	fprintf(stderr,
	        "# %d thread(s), %ld rounds in %lld ms: %zu acknowledged, %zu messages, %ld "
	        "present without ack; kills: %ld timed, %ld after acks, %ld before the store was "
	        "open, %ld rounds with no ack, %ld evicting after each append; %lld ms in "
	        "children (%lld from fork to ready), %lld ms verifying\n",
	        threads, rounds, (long long)(now_ms() - t0), r->nacked, r->nknown,
	        r->unacked_present, r->kills_by_time, r->kills_by_count, r->killed_before_ready,
	        r->rounds_without_acks, r->evicting_rounds, (long long)r->ms_children,
	        (long long)r->ms_to_ready, (long long)r->ms_verifying);
	CHECK(&r->log, r->nacked > 0, "no append was ever acknowledged");
	crash_teardown(r);
}

static void killed_appender_loses_no_acknowledged_message(void **st)
{
	(void)st;
	run_crash_rounds(1, env_long("JIAYIN_CRASH_ROUNDS", 30));
}

static void killed_concurrent_appenders_lose_no_acknowledged_message(void **st)
{
	(void)st;
	long rounds = env_long("JIAYIN_CRASH_ROUNDS", 30) / 2;
	run_crash_rounds(3, rounds > 0 ? rounds : 1);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	test_seed();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(killed_appender_loses_no_acknowledged_message),
	    cmocka_unit_test(killed_concurrent_appenders_lose_no_acknowledged_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
