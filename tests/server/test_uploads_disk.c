/*
 * test_uploads_disk.c — the partial uploads on disk (server/uploads.c) when the disk fills up
 * between a PATCH's bytes and its record. fsync() is wrapped at link time (-Wl,--wrap,
 * tests/meson.build) so a test can make chosen calls fail with ENOSPC, as a full disk does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "uploads.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int __real_fsync(int fd);

/* The fsyncs to fail with ENOSPC, in order: 'd' the next directory's, 'f' the next regular
 * file's; others pass until the first of the plan comes. */
static const char *plan = "";

int __wrap_fsync(int fd)
{
	struct stat st;
	if (*plan && fstat(fd, &st) == 0 && *plan == (S_ISDIR(st.st_mode) ? 'd' : 'f')) {
		plan++;
		errno = ENOSPC;
		return -1;
	}
	return __real_fsync(fd);
}

typedef struct world {
	char dir[64];
	srv_upload_dir *d;
	srv_upload u;
} world;

static int setup(void **state)
{
	world *w = calloc(1, sizeof *w);
	snprintf(w->dir, sizeof w->dir, "/tmp/jiayin-uploads-XXXXXX");
	if (!w || !mkdtemp(w->dir) || srv_upload_dir_open(&w->d, w->dir, 86400000, 86400000) != 0)
		return -1;
	memset(w->u.device, 'a', STORE_ID_LEN);
	memset(w->u.member, 'b', STORE_ID_LEN);
	memset(w->u.family, 'c', STORE_ID_LEN);
	w->u.length = 1000000;
	bool again;
	if (srv_upload_create(w->d, &w->u, 8, UINT64_MAX, 1000, &again) != 0 || again)
		return -1;
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	world *w = *state;
	srv_upload_dir_close(w->d);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
	int rc = system(cmd);
	free(w);
	return rc == 0 ? 0 : -1;
}

/* The record counts `counted` bytes, and they are in the .part, byte for byte: no zeros where
 * the client's were. */
static void assert_counted_bytes_are_the_clients(world *w, const uint8_t *sent, uint64_t counted)
{
	srv_upload now;
	assert_int_equal(srv_upload_load(w->d, w->u.device, w->u.id, 2000, &now), 0);
	assert_int_equal(now.offset, counted);
	int fd = srv_upload_open_part(w->d, &now, true); /* cut back (or out) to the offset */
	assert_true(fd >= 0);
	uint8_t *got = malloc(now.offset + 1);
	assert_int_equal(pread(fd, got, now.offset + 1, 0), (ssize_t)now.offset);
	assert_memory_equal(got, sent, now.offset);
	free(got);
	close(fd);
}

enum { SENT = 200000 };

/* A PATCH's body of SENT bytes (made from seed) in the .part; then its commit, with the fsyncs
 * in fail_plan failing; the commit's result, *u the record it leaves the caller. */
static int patch_with_full_disk(world *w, unsigned seed, uint8_t *sent, const char *fail_plan,
                                srv_upload *u)
{
	for (size_t i = 0; i < SENT; i++)
		sent[i] = (uint8_t)(i * seed + 1);
	int fd = srv_upload_open_part(w->d, &w->u, true);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, sent, SENT, 0), SENT);
	plan = fail_plan;
	*u = w->u;
	int rc = srv_upload_commit(w->d, u, fd, SENT, 1500);
	plan = "";
	close(fd);
	return rc;
}

/*
 * The body's bytes are durable and the new record in place, but the directory's sync finds
 * the disk full: the commit fails, and the bytes the record counts stay. (Review finding: the
 * give-back cut the last 64 KiB off the .part under that record, and when the retry's record
 * could not be written either, the next PATCH's reopen grew the file back with zeros, stored
 * inside the child's recording.)
 */
static void full_disk_after_the_record_keeps_the_counted_bytes(void **state)
{
	world *w = *state;
	uint8_t *sent = malloc(SENT);
	srv_upload u;
	/* the first record's directory, then a retry's own record */
	assert_int_equal(patch_with_full_disk(w, 7, sent, "df", &u), -ENOSPC);
	assert_counted_bytes_are_the_clients(w, sent, SENT); /* all of them: the record says so */
	free(sent);
}

/* A full disk before the record is written: the body's last 64 KiB are given back, the rest
 * counted (a full disk costs the client that much, not the whole body). */
static void full_disk_before_the_record_gives_back_the_tail(void **state)
{
	world *w = *state;
	uint8_t *sent = malloc(SENT);
	srv_upload u;
	/* the first record's own sync */
	assert_int_equal(patch_with_full_disk(w, 13, sent, "f", &u), 0);
	assert_int_equal(u.offset, SENT - 65536);
	assert_counted_bytes_are_the_clients(w, sent, SENT - 65536);
	free(sent);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(full_disk_after_the_record_keeps_the_counted_bytes),
	    T(full_disk_before_the_record_gives_back_the_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
