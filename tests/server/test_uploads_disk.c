/*
 * test_uploads_disk.c — the partial uploads on disk (server/uploads.c) when the disk fills up
 * between a PATCH's bytes and its record, and the free space unfinished uploads leave for the
 * mailboxes (srv_upload_dir_set_reserve). fsync() and fstatvfs() are wrapped at link time
 * (-Wl,--wrap, tests/meson.build) so a test can make chosen calls fail with ENOSPC, as a full
 * disk does, and say how much of the disk is free.
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
#include <sys/statvfs.h>
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

/* What fstatvfs() says is free (bytes), when `free_set`; else the real file system's. */
static bool free_set;
static uint64_t free_bytes;

int __real_fstatvfs64(int fd, struct statvfs *sv);

int __wrap_fstatvfs64(int fd, struct statvfs *sv)
{
	int rc = __real_fstatvfs64(fd, sv);
	if (rc == 0 && free_set) {
		sv->f_frsize = 1;
		sv->f_bavail = free_bytes;
	}
	return rc;
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
	int64_t free_ms;
	if (srv_upload_create(w->d, &w->u, 8, UINT64_MAX, 1000, &again, &free_ms) != 0 || again)
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

enum { MB = 1000000 };

/* Says the disk has `bytes` free, reserve 40 MB: looked at again at once. */
static void disk_free(world *w, uint64_t bytes)
{
	free_set = true;
	free_bytes = bytes;
	srv_upload_dir_set_reserve(w->d, 40 * MB);
}

static int create_for(world *w, char family, uint64_t length, srv_upload *u)
{
	memset(u, 0, sizeof *u);
	memset(u->device, family, STORE_ID_LEN);
	memset(u->member, family, STORE_ID_LEN);
	memset(u->family, family, STORE_ID_LEN);
	u->length = length;
	bool again;
	int64_t free_ms;
	return srv_upload_create(w->d, u, 8, UINT64_MAX, 1000, &again, &free_ms);
}

/*
 * 100 MB free, 40 MB of it kept: unfinished uploads of every family together may hold 60 MB
 * (setup's holds 1 MB). What does not fit is SRV_UPLOAD_EDISK, a plain body takes what is
 * left, and an upload that goes gives its room back.
 */
static void unfinished_uploads_leave_the_reserve(void **state)
{
	world *w = *state;
	srv_upload d, e;
	disk_free(w, 100 * MB);
	assert_int_equal(create_for(w, 'd', 50 * MB, &d), 0);
	assert_int_equal(create_for(w, 'e', 10 * MB, &e), SRV_UPLOAD_EDISK);
	char key[STORE_ID_LEN + 1];
	uint64_t got;
	assert_int_equal(srv_upload_hold(w->d, e.family, 1, 20 * MB, UINT64_MAX, 1000, key, &got),
	                 0);
	assert_int_equal(got, 9 * MB);
	assert_int_equal(
	    srv_upload_hold_resize(w->d, key, 10 * MB, 10 * MB, UINT64_MAX, 1000, &got),
	    SRV_UPLOAD_EDISK);
	assert_int_equal(got, 9 * MB);
	srv_upload_release(w->d, key);
	assert_int_equal(srv_upload_remove(w->d, d.device, d.id), 0);
	assert_int_equal(create_for(w, 'e', 10 * MB, &e), 0);
	/* A family's own bound is told apart from the disk's. */
	assert_int_equal(srv_upload_hold(w->d, e.family, 1, 1, 10 * MB, 1000, key, &got),
	                 SRV_UPLOAD_EHELD);
	free_set = false;
}

/* Bytes an upload has written are in the disk's free space no more: they count once. */
static void written_bytes_count_once(void **state)
{
	world *w = *state;
	uint8_t *sent = malloc(SENT);
	srv_upload u, d;
	disk_free(w, 100 * MB);
	assert_int_equal(create_for(w, 'd', 59 * MB, &d), 0); /* all 60 MB held */
	assert_int_equal(patch_with_full_disk(w, 3, sent, "", &u), 0);
	assert_int_equal(u.offset, SENT);
	disk_free(w, 100 * MB - SENT); /* the PATCH's bytes took that much of the disk */
	char key[STORE_ID_LEN + 1];
	uint64_t got;
	assert_int_equal(srv_upload_hold(w->d, d.family, 1, 1, UINT64_MAX, 1000, key, &got),
	                 SRV_UPLOAD_EDISK);     /* still all held: nothing was counted twice */
	disk_free(w, 100 * MB - SENT - 5 * MB); /* someone else took 5 MB */
	assert_int_equal(create_for(w, 'e', 1, &d), SRV_UPLOAD_EDISK);
	disk_free(w, 101 * MB - SENT); /* 1 MB more came free */
	assert_int_equal(srv_upload_hold(w->d, d.family, 1, 2 * MB, UINT64_MAX, 1000, key, &got),
	                 0);
	assert_int_equal(got, 1 * MB);
	srv_upload_hold_written(w->d, key, 1 * MB); /* its body is on the disk: */
	disk_free(w, 100 * MB - SENT);
	assert_int_equal(srv_upload_hold_resize(w->d, key, 1 * MB, 2 * MB, UINT64_MAX, 1000, &got),
	                 0);
	assert_int_equal(got, 1 * MB); /* the disk did not take its 1 MB twice */
	srv_upload_release(w->d, key);
	free_set = false;
	free(sent);
}

/*
 * What is free beyond the reserve (10 MB: someone else took 10 MB besides the body's 40) is
 * less than what the others have still to write (20 MB): the body grows no further (the review
 * of the reserve's first version: the shortfall was taken as none, and a chunked body of
 * 150 MB went through 40 MB of room).
 */
static void a_body_past_the_room_grows_no_further(void **state)
{
	world *w = *state;
	srv_upload d;
	disk_free(w, 100 * MB); /* 60 MB for unfinished uploads; setup's holds 1 MB */
	assert_int_equal(create_for(w, 'd', 19 * MB, &d), 0);
	char key[STORE_ID_LEN + 1];
	uint64_t got;
	assert_int_equal(srv_upload_hold(w->d, d.family, 1, 40 * MB, UINT64_MAX, 1000, key, &got),
	                 0);
	assert_int_equal(got, 40 * MB);
	srv_upload_hold_written(w->d, key, 40 * MB);
	disk_free(w, 50 * MB);
	assert_int_equal(
	    srv_upload_hold_resize(w->d, key, 40 * MB, 50 * MB, UINT64_MAX, 1000, &got),
	    SRV_UPLOAD_EDISK);
	assert_int_equal(got, 40 * MB);
	srv_upload_release(w->d, key);
	free_set = false;
}

/*
 * Within the second the free space is not looked at, what the uploads write comes off what it
 * was: a fast body does not take its own new bytes for room (the second review: a chunked
 * body at 50 MB/s went 30 MB past the reserve).
 */
static void bytes_written_since_the_look_come_off_it(void **state)
{
	world *w = *state;
	char key[STORE_ID_LEN + 1];
	uint64_t got;
	disk_free(w, 100 * MB); /* 60 MB; setup's holds 1 MB */
	assert_int_equal(
	    srv_upload_hold(w->d, w->u.family, 1, 40 * MB, UINT64_MAX, 1000, key, &got), 0);
	srv_upload_hold_written(w->d, key, 40 * MB); /* the free space is not looked at again */
	assert_int_equal(
	    srv_upload_hold_resize(w->d, key, 59 * MB, 59 * MB, UINT64_MAX, 1000, &got), 0);
	assert_int_equal(
	    srv_upload_hold_resize(w->d, key, 60 * MB, 60 * MB, UINT64_MAX, 1000, &got),
	    SRV_UPLOAD_EDISK);
	srv_upload_release(w->d, key); /* its file goes: its 40 MB are free again */
	srv_upload d;
	assert_int_equal(create_for(w, 'd', 59 * MB, &d), 0);
	srv_upload_dir_set_reserve(w->d, 0); /* none: no bound */
	assert_int_equal(create_for(w, 'f', 500 * MB, &d), 0);
	free_set = false;
}

/*
 * The upload became a message, and its record says so, but the directory's sync finds the
 * disk full: the family's room it held comes back all the same. (Review finding: the hold
 * stayed until the record expired, a day later, as the sweep only takes the .part of a
 * message's record; the family's room counted the recording twice, as a message and as an
 * unfinished upload, so that its next long recording could be 507 uploads_hold_room.)
 */
static void a_message_whose_record_is_in_place_holds_no_room(void **state)
{
	world *w = *state;
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB, 1000), 2 * MB);
	plan = "d"; /* the record is written and renamed; the directory's sync fails */
	srv_upload u = w->u;
	(void)srv_upload_stored(w->d, &u, "dddddddddddddddddddddddddd", 1500);
	plan = "";
	srv_upload now;
	assert_int_equal(srv_upload_load(w->d, w->u.device, w->u.id, 2000, &now), 0);
	assert_string_equal(now.message_id, "dddddddddddddddddddddddddd");
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB, 1000), 3 * MB);
	/* and a restart counts it no more either */
	srv_upload_dir_close(w->d);
	assert_int_equal(srv_upload_dir_open(&w->d, w->dir, 86400000, 86400000), 0);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB, 1000), 3 * MB);
}

/* The size of the upload's .part, -1 when there is none. */
static long part_size(world *w)
{
	char path[256];
	struct stat st;
	snprintf(path, sizeof path, "%s/uploads/%s/%s.part", w->dir, w->u.device, w->u.id);
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/*
 * The upload became a message, but the disk is full and its record cannot say so: the
 * message is stored under the upload's key all the same, so its bytes go and so does the
 * family's room it held, and the record is written in the room they leave. (Review finding:
 * the .part, up to 200 MB, and the hold stayed until the record expired, a day later, on a
 * disk already full.)
 */
static void a_message_whose_record_finds_the_disk_full_gives_its_bytes_back(void **state)
{
	world *w = *state;
	uint8_t *sent = malloc(SENT);
	srv_upload u;
	assert_int_equal(patch_with_full_disk(w, 5, sent, "", &u), 0);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB, 1000), 2 * MB);
	plan = "f"; /* the record's own sync */
	assert_int_equal(srv_upload_stored(w->d, &u, "dddddddddddddddddddddddddd", 1600), 0);
	plan = "";
	srv_upload now;
	assert_int_equal(srv_upload_load(w->d, w->u.device, w->u.id, 2000, &now), 0);
	assert_string_equal(now.message_id, "dddddddddddddddddddddddddd");
	assert_int_equal(part_size(w), -1);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB, 1000), 3 * MB);
	free(sent);
}

/*
 * Nor can the record be written again: it stays an unfinished whole of bytes given up. The
 * .part keeps its name, empty, so that the HEAD or PATCH that finishes it again opens it (and
 * finds the message by its key without reading it); the room stays free, after a restart too,
 * and that finish names the message.
 */
static void a_record_that_cannot_name_its_message_holds_nothing(void **state)
{
	world *w = *state;
	uint8_t *sent = malloc(SENT);
	srv_upload u;
	assert_int_equal(patch_with_full_disk(w, 9, sent, "", &u), 0);
	plan = "ff"; /* the record's sync, and its second try's */
	assert_int_equal(srv_upload_stored(w->d, &u, "dddddddddddddddddddddddddd", 1600), -ENOSPC);
	plan = "";
	srv_upload now;
	assert_int_equal(srv_upload_load(w->d, w->u.device, w->u.id, 2000, &now), 0);
	assert_string_equal(now.message_id, "");
	assert_int_equal(now.offset, SENT);
	assert_int_equal(part_size(w), 0);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB, 1000), 3 * MB);
	srv_upload_dir_close(w->d);
	assert_int_equal(srv_upload_dir_open(&w->d, w->dir, 86400000, 86400000), 0);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB, 1000), 3 * MB);
	unsigned removed;
	assert_int_equal(srv_upload_sweep(w->d, 2000, NULL, 0, NULL, NULL, &removed), 0);
	assert_int_equal(removed, 0);
	int fd = srv_upload_open_part(w->d, &now, false);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(srv_upload_stored(w->d, &now, "dddddddddddddddddddddddddd", 2100), 0);
	assert_int_equal(part_size(w), -1);
	free(sent);
}

/* setup's upload (1 MB, of family c) lives a day after its creation at 1000. */
#define EXPIRES (1000 + 86400000)

/* A new upload of family c on another phone (device and member `who`), at now_ms, in a room
 * (allowance) of 1.5 MB. */
static int create_beside(world *w, char who, int64_t now_ms, srv_upload *u)
{
	memset(u, 0, sizeof *u);
	memset(u->device, who, STORE_ID_LEN);
	memset(u->member, who, STORE_ID_LEN);
	memcpy(u->family, w->u.family, sizeof u->family);
	u->length = 1 * MB;
	bool again;
	int64_t free_ms;
	return srv_upload_create(w->d, u, 8, 3 * MB / 2, now_ms, &again, &free_ms);
}

/*
 * An upload past its expiry, which no one can resume (404), holds none of the family's room,
 * though the sweep has not removed its files yet (up to 10 minutes): before, the family's next
 * recording was 507 uploads_hold_room until the sweep came. The sweep then removes it and the
 * room stays as it was.
 */
static void an_expired_upload_holds_no_room(void **state)
{
	world *w = *state;
	srv_upload e, f;
	assert_int_equal(create_beside(w, 'e', EXPIRES - 1, &e), SRV_UPLOAD_EHELD);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB / 2, EXPIRES - 1), MB / 2);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB / 2, EXPIRES), 3 * MB / 2);
	assert_int_equal(create_beside(w, 'e', EXPIRES, &e), 0);
	/* No request may start on it now and count it again (a late HEAD or PATCH is 404). */
	assert_int_equal(srv_upload_busy(w->d, w->u.id, EXPIRES), SRV_UPLOAD_ENOTFOUND);
	unsigned removed;
	assert_int_equal(srv_upload_sweep(w->d, EXPIRES + 1, NULL, 0, NULL, NULL, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB / 2, EXPIRES + 1), MB / 2);
	assert_int_equal(create_beside(w, 'f', EXPIRES + 1, &f), SRV_UPLOAD_EHELD);
}

/*
 * A PATCH that took the upload's lock before its expiry and still receives past it keeps its
 * room: its bytes count when it ends and the expiry starts again from there, so the room it
 * holds is not another recording's meanwhile.
 */
static void a_patch_receiving_at_the_expiry_keeps_its_room(void **state)
{
	world *w = *state;
	srv_upload e;
	assert_int_equal(srv_upload_busy(w->d, w->u.id, EXPIRES - 1), 0);
	assert_int_equal(create_beside(w, 'e', EXPIRES + 5000, &e), SRV_UPLOAD_EHELD);
	int fd = srv_upload_open_part(w->d, &w->u, true);
	assert_true(fd >= 0);
	static const uint8_t bytes[1000];
	assert_int_equal(pwrite(fd, bytes, sizeof bytes, 0), (ssize_t)sizeof bytes);
	assert_int_equal(srv_upload_commit(w->d, &w->u, fd, sizeof bytes, EXPIRES + 6000), 0);
	close(fd);
	srv_upload_idle(w->d, w->u.id);
	assert_int_equal(create_beside(w, 'e', EXPIRES + 7000, &e), SRV_UPLOAD_EHELD);
	int64_t renewed = srv_upload_expires_ms(w->d, &w->u);
	assert_int_equal(renewed, EXPIRES + 6000 + 86400000);
	assert_int_equal(create_beside(w, 'e', renewed, &e), 0);
}

/*
 * A clock set back (a wrong time put right) makes no upload out of count that its record
 * says may be resumed: before, the ledger kept the latest time any caller gave, so the
 * unfinished upload, and one created after the change, were 404 to their PATCH (and held no
 * room) until the clock came back to it.
 */
static void a_clock_set_back_keeps_the_uploads(void **state)
{
	world *w = *state;
	int64_t ahead = EXPIRES + 3600000, back = 2000;
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 3 * MB / 2, ahead), 3 * MB / 2);
	srv_upload now, e;
	assert_int_equal(srv_upload_load(w->d, w->u.device, w->u.id, back, &now), 0);
	assert_int_equal(srv_upload_busy(w->d, w->u.id, back), 0);
	srv_upload_idle(w->d, w->u.id);
	assert_int_equal(create_beside(w, 'e', back, &e), SRV_UPLOAD_EHELD);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 4 * MB, back), 4 * MB - 1000000);
	/* A new upload too: counted, and its PATCH may start. */
	memset(&e, 0, sizeof e);
	memset(e.device, 'f', STORE_ID_LEN);
	memset(e.member, 'f', STORE_ID_LEN);
	memcpy(e.family, w->u.family, sizeof e.family);
	e.length = 1 * MB;
	bool again;
	int64_t free_ms;
	assert_int_equal(srv_upload_create(w->d, &e, 8, 4 * MB, back, &again, &free_ms), 0);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 4 * MB, back), 3 * MB - 1000000);
	assert_int_equal(srv_upload_busy(w->d, e.id, back), 0);
}

/*
 * A PATCH that took the upload before its expiry, but after the sweep listed the uploads in
 * use (its lock came a moment later), keeps it: the sweep that reaches it past the expiry
 * leaves it, and the PATCH's bytes count, as docs/api.md says of a PATCH receiving at the
 * expiry. Before, the sweep removed its files under it: the body went into a removed .part,
 * its commit was 404, and the phone had to send the whole recording again.
 */
static void the_sweep_leaves_an_upload_a_patch_took_at_its_expiry(void **state)
{
	world *w = *state;
	assert_int_equal(srv_upload_busy(w->d, w->u.id, EXPIRES - 1), 0);
	int fd = srv_upload_open_part(w->d, &w->u, true);
	assert_true(fd >= 0);
	unsigned removed;
	assert_int_equal(srv_upload_sweep(w->d, EXPIRES + 1, NULL, 0, NULL, NULL, &removed), 0);
	assert_int_equal(removed, 0);
	static const uint8_t bytes[1000];
	assert_int_equal(pwrite(fd, bytes, sizeof bytes, 0), (ssize_t)sizeof bytes);
	assert_int_equal(srv_upload_commit(w->d, &w->u, fd, sizeof bytes, EXPIRES + 2), 0);
	close(fd);
	srv_upload_idle(w->d, w->u.id);
	srv_upload now;
	assert_int_equal(srv_upload_load(w->d, w->u.device, w->u.id, EXPIRES + 3, &now), 0);
	assert_int_equal(now.offset, sizeof bytes);
	/* Idle and past its expiry again, the next sweep takes it as any other. */
	assert_int_equal(
	    srv_upload_sweep(w->d, EXPIRES + 2 + 86400000, NULL, 0, NULL, NULL, &removed), 0);
	assert_int_equal(removed, 1);
}

/*
 * A creation whose record took its place but whose directory's sync failed (ENOSPC, EIO) is
 * refused, and the client creates the upload again: the refused one holds none of the
 * family's room, after a restart too. Before, its record stayed on the disk, and the ledger
 * made again at the next start held its length for an upload no one had the id of, until it
 * expired (507 uploads_hold_room meanwhile).
 */
static void a_creation_refused_at_the_directory_sync_holds_nothing(void **state)
{
	world *w = *state;
	srv_upload e = w->u;
	e.length = 1 * MB;
	bool again;
	int64_t free_ms;
	plan = "d";
	int rc = srv_upload_create(w->d, &e, 8, UINT64_MAX, 2000, &again, &free_ms);
	plan = "";
	assert_int_equal(rc, -ENOSPC);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 4 * MB, 2000), 4 * MB - 1000000);
	srv_upload_dir_close(w->d);
	assert_int_equal(srv_upload_dir_open(&w->d, w->dir, 86400000, 86400000), 0);
	assert_int_equal(srv_upload_room_left(w->d, w->u.family, 4 * MB, 2000), 4 * MB - 1000000);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(full_disk_after_the_record_keeps_the_counted_bytes),
	    T(full_disk_before_the_record_gives_back_the_tail),
	    T(unfinished_uploads_leave_the_reserve),
	    T(written_bytes_count_once),
	    T(a_body_past_the_room_grows_no_further),
	    T(bytes_written_since_the_look_come_off_it),
	    T(a_message_whose_record_is_in_place_holds_no_room),
	    T(a_message_whose_record_finds_the_disk_full_gives_its_bytes_back),
	    T(a_record_that_cannot_name_its_message_holds_nothing),
	    T(an_expired_upload_holds_no_room),
	    T(a_patch_receiving_at_the_expiry_keeps_its_room),
	    T(a_clock_set_back_keeps_the_uploads),
	    T(the_sweep_leaves_an_upload_a_patch_took_at_its_expiry),
	    T(a_creation_refused_at_the_directory_sync_holds_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
