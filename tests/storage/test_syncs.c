/*
 * test_syncs.c — the storage's own renames and directory syncs, in the order a power cut needs
 * (SQLite syncs its own files; the names we move are ours). fsync() and rename() are wrapped at
 * link time (-Wl,--wrap, tests/meson.build): each call is recorded with the paths it touched,
 * then passed on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store.h"
#include "store_fixture.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define EVENTS_MAX 256

typedef struct event {
	char what[8];
	char a[PATH_MAX], b[PATH_MAX];
} event;

static event events[EVENTS_MAX];
static int nevents;

int __real_fsync(int fd);
int __real_rename(const char *from, const char *to);

static void record(const char *what, const char *a, const char *b)
{
	if (nevents == EVENTS_MAX)
		return;
	event *e = &events[nevents++];
	snprintf(e->what, sizeof e->what, "%s", what);
	snprintf(e->a, sizeof e->a, "%s", a);
	snprintf(e->b, sizeof e->b, "%s", b ? b : "");
}

int __wrap_fsync(int fd)
{
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	path[n > 0 ? n : 0] = '\0';
	record("fsync", path, NULL);
	return __real_fsync(fd);
}

int __wrap_rename(const char *from, const char *to)
{
	int rc = __real_rename(from, to);
	if (rc == 0)
		record("rename", from, to);
	return rc;
}

/* The index of the last event `what` whose first path ends with `suffix` (-1: none). */
static int last_event(const char *what, const char *suffix)
{
	size_t n = strlen(suffix);
	for (int i = nevents - 1; i >= 0; i--) {
		size_t m = strlen(events[i].a);
		if (strcmp(events[i].what, what) == 0 && m >= n &&
		    strcmp(events[i].a + m - n, suffix) == 0)
			return i;
	}
	return -1;
}

/*
 * A damaged family's files are moved to quarantine/ and both directories synced after the last
 * move (the review: no sync, so after a power cut the -wal, which may hold acknowledged
 * messages, could stay in families/ while its database was in quarantine/, or the reverse).
 */
static void quarantine_syncs_both_directories(void **state)
{
	fixture *f = *state;
	uint8_t audio[4000] = {1};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	store_close(f->s);
	f->s = NULL;
	char path[256], families[128], quarantine[128];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	mangle(path, 0, 16);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	nevents = 0;
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ECORRUPT);
	char suffix[64];
	snprintf(suffix, sizeof suffix, "/families/%s.db", f->fam.id.s);
	int moved = last_event("rename", suffix);
	assert_true(moved >= 0);
	assert_non_null(strstr(events[moved].b, "/quarantine/"));
	int last_move = last_event("rename", "");
	snprintf(families, sizeof families, "%s/families", f->dir);
	snprintf(quarantine, sizeof quarantine, "%s/quarantine", f->dir);
	/* realpath: /proc names the directory as the kernel sees it */
	char real_f[PATH_MAX], real_q[PATH_MAX];
	assert_non_null(realpath(families, real_f));
	assert_non_null(realpath(quarantine, real_q));
	int synced_f = last_event("fsync", real_f), synced_q = last_event("fsync", real_q);
	assert_true(synced_f > last_move);
	assert_true(synced_q > last_move);
}

/*
 * A data directory named with a trailing slash ("data/", as a shell's completion writes it),
 * made by the first open: its name is synced in the directory it is in (the review: "data/"
 * synced "data" itself and never its parent, so a power cut could take the new directory and
 * every family made in it).
 */
static void new_directory_with_a_slash_synced_in_its_parent(void **state)
{
	fixture *f = *state;
	char dir[256], real_top[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/new/", f->dir);
	assert_non_null(realpath(f->dir, real_top));
	store *s = NULL;
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	nevents = 0;
	assert_int_equal(store_open(&s, &o), 0);
	store_close(s);
	bool parent_synced = false;
	for (int i = 0; i < nevents; i++)
		parent_synced = parent_synced || (strcmp(events[i].what, "fsync") == 0 &&
		                                  strcmp(events[i].a, real_top) == 0);
	assert_true(parent_synced);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(quarantine_syncs_both_directories),
	    T(new_directory_with_a_slash_synced_in_its_parent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
