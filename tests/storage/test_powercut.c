/*
 * test_powercut.c — a power cut in the middle of appends. kill -9 (test_crash) leaves the
 * operating system's page cache, so it never tests what fsync is for. Here the child of each
 * round (crash_rounds.h) opens the store through powercut_disk.h's VFS shim, which keeps what
 * each file's last sync made durable; a third of the children SIGKILL themselves at a write or
 * sync drawn (inside a commit or a checkpoint, which a kill from outside mostly misses), the
 * others are killed as test_crash kills them. Then the parent makes the data directory what a
 * power cut leaves (synced content, a random share of the unsynced sectors, lengths cut, -shm
 * gone) and checks what test_crash checks: every acknowledged message is there, whole, its
 * SHA-256 matching; no half-present message; the mailbox opens and takes appends. A fresh data
 * directory every 30 rounds keeps the copies and comparisons small. The shim itself is checked
 * on plain SQLite (commits under synchronous=OFF lost, under FULL kept) and by rounds without
 * the sector mixing killed right after acknowledgements (all must be found). Appends write no
 * directory.db (the report counts the rounds that did); it is cut all the same.
 * Knobs: JIAYIN_POWERCUT_ROUNDS (default 300), JIAYIN_TEST_SEED.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "crash_rounds.h"
#include "powercut_disk.h"

#include <sqlite3.h>

/* ---- The shim on plain SQLite ---- */

static void sql_ok(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

/* In a child through the shim: insert `inserts` rows with `sync`, closing the database between
 * them if `reopen` (which checkpoints the WAL and deletes it), then end without closing it. */
static void shim_child(const char *path, const char *sync, int inserts, bool reopen)
{
	sqlite3 *db = NULL;
	char pragma[64];
	snprintf(pragma, sizeof pragma, "PRAGMA synchronous=%s", sync);
	for (int i = 0; i < inserts; i++) {
		if (!db &&
		    (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, "powercut") != SQLITE_OK ||
		     sqlite3_exec(db, pragma, NULL, NULL, NULL) != SQLITE_OK))
			_exit(2);
		if (sqlite3_exec(db, "INSERT INTO t VALUES (randomblob(40000))", NULL, NULL,
		                 NULL) != SQLITE_OK)
			_exit(3);
		if (reopen && i + 1 < inserts) {
			sqlite3_close(db);
			db = NULL;
		}
	}
	_exit(0); /* as a kill: the last connection is never closed */
}

static int shim_rows_after_cut(const char *sync, int inserts, bool reopen)
{
	char dir[256], path[300];
	assert_non_null(temp_dir(dir, sizeof dir));
	snprintf(path, sizeof path, "%s/t.db", dir);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sql_ok(db, "PRAGMA journal_mode=WAL; CREATE TABLE t (x); "
	           "INSERT INTO t VALUES (randomblob(40000))");
	sqlite3_close(db);
	pc_snapshot(dir);
	pc_reset(0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		shim_child(path, sync, inserts, reopen);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	rng g = {1};
	cut_stats cs = {0};
	pc_cut(dir, &g, false, &cs);
	int rows = -1;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL),
	                 SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		rows = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_stmt *ic = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &ic, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(ic), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(ic, 0), "ok");
	sqlite3_finalize(ic);
	sqlite3_close(db);
	assert_int_equal(remove_tree(dir), 0);
	return rows;
}

/*
 * The shim keeps what was synced and nothing else: commits made with synchronous=OFF are lost
 * (the WAL and the checkpoint that closing made were never synced), those made with FULL are
 * kept, across a WAL deleted and made again too.
 */
static void shim_keeps_what_was_synced_only(void **st)
{
	(void)st;
	assert_int_equal(shim_rows_after_cut("OFF", 1, false), 1);
	assert_int_equal(shim_rows_after_cut("OFF", 3, true), 1);
	assert_int_equal(shim_rows_after_cut("FULL", 1, false), 2);
	assert_int_equal(shim_rows_after_cut("FULL", 3, true), 4);
	/* NORMAL syncs the WAL at checkpoints only: the last commit, after one, is lost. */
	assert_int_equal(shim_rows_after_cut("NORMAL", 3, true), 3);
}

/* ---- Rounds of appends and power cuts ---- */

static void final_append(crash_run *r, int round)
{
	store *s = NULL;
	store_options opt;
	store_options_init(&opt);
	opt.dir = r->dir;
	int rc = store_open(&s, &opt);
	if (!CHECK(&r->log, rc == 0, "after the last cut: reopen: %s", store_errcode(rc)))
		return;
	uint8_t *audio;
	uint8_t waveform[STORE_WAVEFORM_POINTS];
	store_new_message nm = crash_message(r, COUNTER(round, 0, 0), waveform, &audio);
	assert_non_null(audio);
	store_message out, got;
	store_family fam;
	int existed = 0;
	rc = store_family_get(s, r->fam.id.s, &fam);
	CHECK(&r->log, rc == 0, "after the last cut: the family: %s", store_errcode(rc));
	rc = store_message_append(s, r->fam.id.s, &nm, &out, &existed);
	free(audio);
	if (CHECK(&r->log, rc == 0, "after the last cut: append: %s", store_errcode(rc))) {
		rc = store_message_get(s, r->fam.id.s, out.id.s, &got);
		if (CHECK(&r->log, rc == 0, "after the last cut: get: %s", store_errcode(rc)))
			check_message(r, &got, "appended after the last cut");
	}
	store_close(s);
}

/* What the rounds of all runs did, for the report. */
typedef struct powercut_totals {
	int rounds;
	long acked, messages, unacked_present, rounds_with_acks, rounds_without_acks;
	long kills_by_time, kills_by_count, kills_by_child, killed_before_ready, evicting;
	int64_t ms_children, ms_cutting, ms_verifying;
	cut_stats cs;
} powercut_totals;

/*
 * One data directory, `rounds` rounds of appends and power cuts (mixing unsynced sectors in or
 * not); `how` the child is killed (KILL_ANY: a third of the rounds at a write or sync drawn).
 */
static void powercut_run(long rounds, bool mix, kill_mode how, rng *g, powercut_totals *t)
{
	static crash_run run;
	crash_run *r = &run;
	crash_setup(r);
	r->vfs = "powercut";
	ack *acks = NULL;
	size_t nacks = 0, cap = 0;
	int round = 0;
	for (; round < rounds && !atomic_load(&r->log.count); round++) {
		int64_t a = now_ms();
		pc_snapshot(r->dir);
		kill_mode kill = how;
		if (how == KILL_ANY && rng_next(g) % 3 == 0)
			kill = KILL_BY_CHILD;
		/* An append is a few writes (a 16 KiB page each) and a sync. */
		pc_reset(kill == KILL_BY_CHILD ? (long)rng_range(g, 1, 300) : 0);
		/* One round in four with three appending threads. */
		int threads = rng_next(g) % 4 ? 1 : 3;
		crash_round(r, round, threads, g, kill, &acks, &nacks, &cap);
		t->rounds_with_acks += nacks > 0;
		int64_t b = now_ms();
		pc_cut(r->dir, g, mix, &t->cs);
		int64_t c = now_ms();
		verify_after_crash(r, round, acks, nacks, round == rounds - 1, g);
		t->ms_children += b - a, t->ms_cutting += c - b, t->ms_verifying += now_ms() - c;
	}
	if (!atomic_load(&r->log.count))
		final_append(r, round);
	free(acks);
	t->rounds += round;
	t->acked += (long)r->nacked, t->messages += (long)r->nknown;
	t->unacked_present += r->unacked_present, t->rounds_without_acks += r->rounds_without_acks;
	t->kills_by_time += r->kills_by_time, t->kills_by_count += r->kills_by_count;
	t->kills_by_child += r->kills_by_child, t->killed_before_ready += r->killed_before_ready;
	t->evicting += r->evicting_rounds;
	CHECK(&r->log, r->nacked > 0, "no append was ever acknowledged");
	if (how == KILL_AT_ACKS)
		CHECK(&r->log, t->rounds_with_acks == t->rounds, "only %ld of %d rounds had an ack",
		      t->rounds_with_acks, t->rounds);
	crash_teardown(r);
}

/* `rounds` in all, a fresh data directory every RUN_ROUNDS (the mailbox grows by ~0.5 MB a
 * round, and each round copies and compares it). */
#define RUN_ROUNDS 30

static void run_powercut_rounds(long rounds, bool mix, kill_mode how)
{
	rng g = {test_seed() ^ 0x90e7c07ull ^ (uint64_t)mix << 40};
	powercut_totals t = {0};
	int64_t t0 = now_ms();
	for (long left = rounds; left > 0; left -= RUN_ROUNDS)
		powercut_run(left < RUN_ROUNDS ? left : RUN_ROUNDS, mix, how, &g, &t);
	const cut_stats *cs = &t.cs;
	fprintf(stderr,
	        "# %s: %d rounds in %lld ms: %ld acknowledged, %ld messages, %ld present without "
	        "ack; kills: %ld timed, %ld after acks, %ld by the child at a write or sync, %ld "
	        "before the store was open, %ld rounds with no ack, %ld evicting; files: %ld from "
	        "their shadow, %ld never synced dropped, %ld kept in part, deletions %ld lost, %ld "
	        "kept; sectors unsynced %ld, taken %ld; %ld lengths cut; %ld rounds wrote "
	        "directory.db; %lld ms in children, %lld ms cutting, %lld ms verifying\n",
	        mix ? "mixing" : "synced only", t.rounds, (long long)(now_ms() - t0), t.acked,
	        t.messages, t.unacked_present, t.kills_by_time, t.kills_by_count, t.kills_by_child,
	        t.killed_before_ready, t.rounds_without_acks, t.evicting, cs->files_as_synced,
	        cs->files_never_synced_dropped, cs->files_never_synced_kept, cs->deletions_lost,
	        cs->deletions_kept, cs->sectors_unsynced, cs->sectors_taken, cs->lengths_cut,
	        cs->rounds_writing_directory, (long long)t.ms_children, (long long)t.ms_cutting,
	        (long long)t.ms_verifying);
	/* The cuts must have mixed: else this was kill -9 again. */
	if (mix && t.rounds >= 20 &&
	    !(cs->sectors_taken > 0 && cs->sectors_taken < cs->sectors_unsynced && cs->lengths_cut))
		fail_msg("the cuts took %ld of %ld unsynced sectors and cut %ld lengths",
		         cs->sectors_taken, cs->sectors_unsynced, cs->lengths_cut);
}

/*
 * The shim's own check in the store: killed at once after acknowledged appends, a disk that
 * holds exactly what was synced holds them all.
 */
static void synced_disk_holds_the_acknowledged_appends(void **st)
{
	(void)st;
	run_powercut_rounds(10, false, KILL_AT_ACKS);
}

static void power_cut_loses_no_acknowledged_message(void **st)
{
	(void)st;
	run_powercut_rounds(env_long("JIAYIN_POWERCUT_ROUNDS", 300), true, KILL_ANY);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	test_seed();
	pc_register();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(shim_keeps_what_was_synced_only),
	    cmocka_unit_test(synced_disk_holds_the_acknowledged_appends),
	    cmocka_unit_test(power_cut_loses_no_acknowledged_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
