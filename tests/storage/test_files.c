/*
 * test_files.c — the storage library's files, on a fresh data directory per test: a deleted
 * message leaves no trace of its voice in the file, a corrupt family database is quarantined,
 * damaged audio bytes (whole structure) are found by the check against each clip's SHA-256,
 * a read-only file system and a locked database answer as such; and the cache of open families
 * answers each family as itself through evictions and shared buckets. Backups and the export
 * are test_backup.c's, migrations test_migrations.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h" /* the migration steps, to build databases at old versions */
#include "store.h"
#include "store_fixture.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How many times `marker` is in the family's database files (.db, -wal, -shm), now. */
static int marker_count(const fixture *f, const char *marker)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "cat '%s/families/%s.db'* | grep -c '%s'", f->dir, f->fam.id.s,
		 marker);
	FILE *p = popen(cmd, "r");
	int count = -1;
	assert_int_equal(fscanf(p, "%d", &count), 1);
	pclose(p);
	return count;
}

/* A 50,000-byte clip of the parent's with `marker` at `at`, appended to the family. */
static void append_marked(fixture *f, const char *marker, size_t at, store_message *msg)
{
	static uint8_t audio[50000];
	memset(audio, 0xA5, sizeof audio);
	memcpy(audio + at, marker, strlen(marker));
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, msg, &existed), 0);
}

static void secure_delete_leaves_no_audio_in_the_file(void **state)
{
	fixture *f = *state;
	store_message msg;
	uint64_t seq;
	append_marked(f, "JIAYIN-SECRET-VOICE", 1000, &msg);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msg.id.s, STORE_MSG_DELETED,
						 &seq),
			 0);
	store_close(f->s); /* checkpoints the WAL into the database file */
	f->s = NULL;
	assert_int_equal(marker_count(f, "JIAYIN-SECRET-VOICE"), 0);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
}

/* Deleting erases at once, not when the family is next closed (review finding): a message
 * stored long ago is in the database file, and a quiet family may stay open for days. */
static void deleted_audio_leaves_the_files_at_once(void **state)
{
	fixture *f = *state;
	store_message msg;
	uint64_t seq;
	append_marked(f, "JIAYIN-OLD-VOICE", 30000, &msg);
	store_close(f->s); /* the clip goes into the database file, as an old one would be */
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	assert_true(marker_count(f, "JIAYIN-OLD-VOICE") > 0);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msg.id.s, STORE_MSG_DELETED,
						 &seq),
			 0);
	assert_int_equal(marker_count(f, "JIAYIN-OLD-VOICE"), 0); /* the store still open */
	size_t got = 0;
	uint8_t buf[16];
	assert_int_equal(store_audio_read(f->s, f->fam.id.s, msg.id.s, 0, buf, sizeof buf, &got),
			 STORE_ENOTFOUND);
}

/*
 * A tombstone keeps nothing of the voice (review of the privacy of deletions): its waveform,
 * hash, duration, loudness, size and receipts are cleared, the waveform's bytes are gone from
 * the files at once, and "since" still shows the deletion in order.
 */
static void deleted_message_keeps_no_trace_of_the_voice(void **state)
{
	fixture *f = *state;
	static uint8_t audio[40000], wave[STORE_WAVEFORM_POINTS];
	memset(audio, 0x3C, sizeof audio);
	for (size_t i = 0; i < sizeof wave; i++)
		wave[i] = (uint8_t) "JIAYIN-WAVEFORM-PEAKS-"[i % 22];
	store_new_message nm = new_message(f->parent.id.s, audio, sizeof audio);
	nm.waveform = wave;
	store_message msg, got;
	int existed;
	uint64_t seq;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &nm, &msg, &existed), 0);
	assert_int_equal(
	    store_message_listened(f->s, f->fam.id.s, msg.id.s, f->parent.id.s, 6000, &seq), 0);
	assert_true(marker_count(f, "JIAYIN-WAVEFORM-PEAKS") > 0);
	assert_int_equal(
	    store_message_set_state(f->s, f->fam.id.s, msg.id.s, STORE_MSG_DELETED, &seq), 0);
	assert_int_equal(marker_count(f, "JIAYIN-WAVEFORM-PEAKS"), 0);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &got), 0);
	static const uint8_t
	    zeros[STORE_HASH_LEN > STORE_WAVEFORM_POINTS ? STORE_HASH_LEN : STORE_WAVEFORM_POINTS];
	assert_int_equal(got.state, STORE_MSG_DELETED);
	assert_string_equal(got.sender.s, f->parent.id.s);
	assert_int_equal(got.created_ms, msg.created_ms);
	assert_int_equal(got.duration_ms, 0);
	assert_int_equal(got.bytes, 0);
	assert_true(got.lufs == 0);
	assert_int_equal(got.listened_count, 0);
	assert_memory_equal(got.waveform, zeros, STORE_WAVEFORM_POINTS);
	assert_memory_equal(got.sha256, zeros, STORE_HASH_LEN);
	store_message list[4];
	size_t n;
	uint64_t latest;
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, msg.seq, list, 4, &n, &latest), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id.s, msg.id.s);
	assert_int_equal(list[0].seq, seq);
}

/* The page number of a table's b-tree root. */
static long root_page(const char *path, const char *table)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long page = -1;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_master WHERE name = ?",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		page = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return page;
}

/*
 * A family database whose structure is damaged is detected when it opens, moved to
 * quarantine/, reported as storage_corrupt, and the other families carry on. (Damage inside
 * audio bytes is not structure: quick_check cannot see it; store_family_verify checks each
 * message's audio against its SHA-256, below.)
 */
static void check_quarantine(fixture *f, int damage)
{
	store_family other;
	store_member om;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &om), 0);
	uint8_t audio[40000] = {1};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	for (int i = 0; i < 20; i++)
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	store_close(f->s); /* checkpoints: everything is in the main file */
	f->s = NULL;
	char path[256];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	if (damage == 0) {
		mangle(path, 0, 16); /* the header: "SQLite format 3" */
	} else {
		long page = root_page(path, "messages");
		assert_true(page > 1);
		mangle(path, (page - 1) * 16384, 64); /* the b-tree page header */
	}
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ECORRUPT);
	assert_int_not_equal(access(path, F_OK), 0); /* moved to quarantine/ */
	char cmd[300];
	snprintf(cmd, sizeof cmd, "ls '%s/quarantine/' | grep -q '^%s'", f->dir, f->fam.id.s);
	assert_int_equal(system(cmd), 0);
	/* Once set aside, the family's mailbox stays damaged, not unknown, while the family
	 * exists (an app told "not found" drops the family), after a restart too; the other
	 * family is untouched. */
	size_t n;
	uint64_t latest;
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ECORRUPT);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, &msg, 1, &n, &latest),
	                 STORE_ECORRUPT);
	store_close(f->s);
	assert_int_equal(store_open(&f->s, &o), 0);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ECORRUPT);
	m.sender = om.id.s;
	assert_int_equal(store_message_append(f->s, other.id.s, &m, &msg, &existed), 0);
	/* Erasing the family erases its damaged copy too (the review: it stayed for ever), and
	 * then it is unknown. */
	assert_int_equal(store_family_delete(f->s, f->fam.id.s, 9000), 0);
	assert_int_not_equal(system(cmd), 0);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ENOTFOUND);
}

static void corrupt_header_is_quarantined(void **state)
{
	check_quarantine(*state, 0);
}

static void corrupt_btree_is_quarantined(void **state)
{
	check_quarantine(*state, 1);
}

/* Where the `len` bytes at `want` first are in the file at path, -1 if nowhere; *count: how
 * many times they are there. */
static long find_bytes(const char *path, const uint8_t *want, size_t len, int *count)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	long size = ftell(fp), at = -1;
	uint8_t *file = malloc((size_t)size);
	assert_non_null(file);
	fseek(fp, 0, SEEK_SET);
	assert_int_equal(fread(file, 1, (size_t)size, fp), (size_t)size);
	fclose(fp);
	*count = 0;
	for (long i = 0; i + (long)len <= size; i++) {
		if (memcmp(file + i, want, len) == 0) {
			if (at < 0)
				at = i;
			(*count)++;
		}
	}
	free(file);
	return at;
}

typedef struct damaged_ids {
	char ids[8][STORE_ID_LEN + 1];
	size_t n;
} damaged_ids;

static void note_damaged(void *arg, int64_t row, const char *message_id, int why)
{
	damaged_ids *d = arg;
	assert_int_equal(why, STORE_ECORRUPT); /* read, and not what was stored */
	assert_true(row > 0);
	assert_true(d->n < 8);
	snprintf(d->ids[d->n++], STORE_ID_LEN + 1, "%s", message_id);
}

/*
 * Bytes a failing disk changed inside one message's audio pages: the database's structure is
 * intact (the quick_check at open passes and the server would serve the bytes), and only
 * store_family_verify, reading each clip against its SHA-256, finds it: exactly that message,
 * not the others (one spanning several of its read chunks, one small enough to sit in its
 * row's page, a hidden one), nor the deleted one (no audio), nor the other family's copy of the
 * same voice.
 */
static void damaged_audio_bytes_are_found_by_verify(void **state)
{
	fixture *f = *state;
	enum { BIG = 700000, MID = 100000, SMALL = 20, AT = 400000 };
	static uint8_t big[BIG], mid[MID], small[SMALL] = "a tiny clip of bytes";
	uint32_t x = 2463534242u; /* xorshift32: bytes that repeat nowhere */
	for (size_t i = 0; i < BIG + MID; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		if (i < BIG)
			big[i] = (uint8_t)x;
		else
			mid[i - BIG] = (uint8_t)x;
	}
	store_family other;
	store_member om;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &om), 0);
	store_message bm, mm, sm, hm, dm, om_msg;
	int existed;
	uint64_t seq;
	store_new_message m = new_message(f->parent.id.s, big, BIG);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &bm, &existed), 0);
	m = new_message(f->parent.id.s, mid, MID);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &mm, &existed), 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &dm, &existed), 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &hm, &existed), 0);
	m = new_message(f->parent.id.s, small, SMALL);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &sm, &existed), 0);
	m = new_message(om.id.s, big, BIG);
	assert_int_equal(store_message_append(f->s, other.id.s, &m, &om_msg, &existed), 0);
	assert_int_equal(
	    store_message_set_state(f->s, f->fam.id.s, dm.id.s, STORE_MSG_DELETED, &seq), 0);
	assert_int_equal(
	    store_message_set_state(f->s, f->fam.id.s, hm.id.s, STORE_MSG_HIDDEN, &seq), 0);

	/* Undamaged: every clip with audio is read whole, none reported. */
	damaged_ids d = {0};
	store_verify_counts n;
	assert_int_equal(store_family_verify(f->s, f->fam.id.s, note_damaged, &d, &n), 0);
	assert_int_equal(n.messages, 4);
	assert_int_equal(n.bytes, BIG + 2 * MID + SMALL);
	assert_int_equal(n.damaged, 0);
	assert_int_equal(d.n, 0);

	/* Past the first 256 KiB chunk of the big clip: its bytes, found in the closed file. */
	store_close(f->s); /* checkpoints: everything is in the main file */
	f->s = NULL;
	char path[256], wal[300];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	snprintf(wal, sizeof wal, "%s-wal", path);
	assert_int_not_equal(access(wal, F_OK), 0);
	int count;
	long at = find_bytes(path, big + AT, 64, &count);
	assert_true(at > 0);
	assert_int_equal(count, 1);
	mangle(path, at, 16);
	assert_int_equal(find_bytes(path, big + AT, 64, &count), -1);

	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	/* The structure is whole: the family opens (quick_check) and the damaged bytes are
	 * served as they are, under the hash of the voice they no longer are. */
	static uint8_t got[BIG];
	size_t len = 0;
	store_audio_info info;
	for (size_t part; len < BIG; len += part)
		assert_int_equal(
		    store_audio_read(f->s, f->fam.id.s, bm.id.s, len, got + len, BIG - len, &part),
		    0);
	assert_int_equal(len, BIG);
	assert_memory_not_equal(got, big, BIG);
	assert_int_equal(
	    store_audio_fetch(f->s, f->fam.id.s, bm.id.s, NULL, NULL, got, &len, &info), 0);
	assert_memory_equal(info.sha256, bm.sha256, STORE_HASH_LEN);

	assert_int_equal(store_family_verify(f->s, f->fam.id.s, note_damaged, &d, &n), 0);
	assert_int_equal(n.messages, 4);
	assert_int_equal(n.damaged, 1);
	assert_int_equal(n.unreadable, 0);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.ids[0], bm.id.s);
	/* The other family's copy of the same voice is whole; a callback is optional. */
	assert_int_equal(store_family_verify(f->s, other.id.s, NULL, NULL, &n), 0);
	assert_int_equal(n.messages, 1);
	assert_int_equal(n.bytes, BIG);
	assert_int_equal(n.damaged, 0);
	/* An unknown or malformed family is not found, as everywhere. */
	assert_int_equal(store_family_verify(f->s, "0000000000000000000000000a", NULL, NULL, &n),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_family_verify(f->s, "../x", NULL, NULL, &n), STORE_ENOTFOUND);
}

/* A sector that reads once (the quick_check at open) and then fails with EIO, as
 * tests/tools/eio_preload.c makes one for jiayinctl: set as the unix VFS's pread64, for reads
 * of eio.file covering byte eio.at. */
static struct {
	struct stat file;
	off_t at;
	int passed, failed;
} eio;

static ssize_t failing_pread(int fd, void *buf, size_t n, off_t off)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_dev == eio.file.st_dev && st.st_ino == eio.file.st_ino &&
	    off <= eio.at && eio.at < off + (off_t)n && eio.passed++ >= 1) {
		eio.failed++;
		errno = EIO;
		return -1;
	}
	return pread(fd, buf, n, off);
}

/*
 * A voice the disk fails to read past its first 256 KiB chunk is named unreadable, and the
 * bytes verify says it checked are those of the voices it read whole (the review: the chunk
 * read before the failure was counted with them).
 */
static void an_unreadable_voice_adds_no_bytes_to_the_checked(void **state)
{
	fixture *f = *state;
	enum { BIG = 700000, SMALL = 20, AT = 400000 };
	static uint8_t big[BIG], small[SMALL] = "a tiny clip of bytes";
	uint32_t x = 2463534242u; /* xorshift32: bytes that repeat nowhere */
	for (size_t i = 0; i < BIG; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		big[i] = (uint8_t)x;
	}
	store_message bm, sm;
	int existed;
	store_new_message m = new_message(f->parent.id.s, big, BIG);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &bm, &existed), 0);
	m = new_message(f->parent.id.s, small, SMALL);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &sm, &existed), 0);
	store_close(f->s); /* checkpoints: everything is in the main file */
	f->s = NULL;
	char path[256];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	int count;
	long at = find_bytes(path, big + AT, 64, &count);
	assert_true(at > 0);
	assert_int_equal(count, 1);
	assert_int_equal(stat(path, &eio.file), 0);
	eio.at = at;
	eio.passed = eio.failed = 0;
	sqlite3_vfs *unix_vfs = sqlite3_vfs_find(NULL);
	assert_int_equal(
	    unix_vfs->xSetSystemCall(unix_vfs, "pread64", (sqlite3_syscall_ptr)failing_pread),
	    SQLITE_OK);

	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	store_verify_counts n;
	int rc = store_open(&f->s, &o);
	if (rc == 0)
		rc = store_family_verify(f->s, f->fam.id.s, NULL, NULL, &n);
	unix_vfs->xSetSystemCall(unix_vfs, "pread64", NULL); /* the real one again */
	assert_int_equal(rc, 0);
	assert_true(eio.failed > 0);
	assert_int_equal(n.unreadable, 1);
	assert_int_equal(n.messages, 1);
	assert_int_equal(n.damaged, 0);
	assert_int_equal(n.bytes, SMALL); /* the small voice's alone */
}

/* The fixture's family mailbox, its header mangled, met by a store opened afresh. */
static void reopen_mangled(fixture *f, char *path, size_t cap)
{
	snprintf(path, cap, "%s/families/%s.db", f->dir, f->fam.id.s);
	store_close(f->s);
	f->s = NULL;
	mangle(path, 0, 16);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
}

/* A damaged mailbox put back (say, to try it again) and set aside again within the same second
 * keeps both copies set aside: the second does not replace the first. */
static void set_aside_twice_in_a_second_keeps_both(void **state)
{
	fixture *f = *state;
	char path[256], cmd[700];
	reopen_mangled(f, path, sizeof path);
	store_message msg;
	size_t n;
	uint64_t latest;
	for (int round = 1; round <= 3; round++) {
		assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, &msg, 1, &n, &latest),
		                 STORE_ECORRUPT);
		snprintf(cmd, sizeof cmd, "test $(ls '%s/quarantine' | grep -c '^%s\\..*db$') = %d",
		         f->dir, f->fam.id.s, round);
		assert_int_equal(system(cmd), 0);
		/* Put one back: the next open finds it damaged again. */
		snprintf(cmd, sizeof cmd, "cp \"$(ls -d '%s'/quarantine/%s.*db | head -1)\" '%s'",
		         f->dir, f->fam.id.s, path);
		assert_int_equal(system(cmd), 0);
	}
}

/*
 * A family set aside as damaged is told once to the store's caller (the server logs it:
 * nothing did), with where its mailbox went: not again while it stays missing, not by a
 * read-only store (which moves nothing), and the store keeps STORE_SET_ASIDE_KEPT of them
 * untaken, counting those past that as dropped.
 */
static void a_family_set_aside_is_told_once(void **state)
{
	fixture *f = *state;
	char path[256], moved[200], copy[600];
	reopen_mangled(f, path, sizeof path);
	store_set_aside got[4];
	size_t n = 9;
	unsigned dropped = 9;
	store_take_set_aside(f->s, got, 4, &n, &dropped);
	assert_int_equal(n, 0);
	assert_int_equal(dropped, 0);
	store_message msg;
	size_t listed;
	uint64_t latest;
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    store_messages_since(f->s, f->fam.id.s, 0, &msg, 1, &listed, &latest),
		    STORE_ECORRUPT);
	store_take_set_aside(f->s, got, 4, &n, &dropped);
	assert_int_equal(n, 1);
	assert_int_equal(dropped, 0);
	assert_string_equal(got[0].family_id.s, f->fam.id.s);
	char prefix[64];
	snprintf(prefix, sizeof prefix, "quarantine/%s.", f->fam.id.s);
	assert_memory_equal(got[0].moved_to, prefix, strlen(prefix));
	size_t len = strlen(got[0].moved_to);
	assert_true(len > 3 && strcmp(got[0].moved_to + len - 3, ".db") == 0);
	snprintf(moved, sizeof moved, "%s/%s", f->dir, got[0].moved_to);
	assert_int_equal(access(moved, F_OK), 0);
	store_take_set_aside(f->s, got, 4, &n, &dropped); /* taken: gone */
	assert_int_equal(n, 0);

	/* Put back, and opened by a read-only store: found damaged, left, not told. */
	store_close(f->s);
	f->s = NULL;
	snprintf(copy, sizeof copy, "cp '%s' '%s'", moved, path);
	assert_int_equal(system(copy), 0);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	o.read_only = 1;
	assert_int_equal(store_open(&f->s, &o), 0);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, &msg, 1, &listed, &latest),
	                 STORE_ECORRUPT);
	assert_int_equal(access(path, F_OK), 0);
	store_take_set_aside(f->s, got, 4, &n, &dropped);
	assert_int_equal(n, 0);
	assert_int_equal(dropped, 0);
	store_close(f->s);
	o.read_only = 0;
	assert_int_equal(store_open(&f->s, &o), 0);

	/* The bound: 64 kept, the rest counted once; taken in order, a few at a time. */
	for (unsigned i = 0; i < STORE_SET_ASIDE_KEPT + 6; i++) {
		char where[32];
		snprintf(where, sizeof where, "quarantine/%u.db", i);
		set_aside_note(f->s, f->fam.id.s, where);
	}
	unsigned total = 0, lost = 0;
	do {
		store_take_set_aside(f->s, got, 4, &n, &dropped);
		for (size_t i = 0; i < n; i++) {
			char where[32];
			snprintf(where, sizeof where, "quarantine/%u.db", total + (unsigned)i);
			assert_string_equal(got[i].moved_to, where);
		}
		total += (unsigned)n;
		lost += dropped;
	} while (n > 0);
	assert_int_equal(total, STORE_SET_ASIDE_KEPT);
	assert_int_equal(lost, 6);
}

static void read_only_file_system(void **state)
{
	fixture *f = *state;
	char mnt[128];
	snprintf(mnt, sizeof mnt, "%s/ro", f->dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=8m") != 0) {
		rmdir(mnt);
		skip(); /* not root, or no mounts in this container */
	}
	store_options o;
	store_options_init(&o);
	o.dir = mnt;
	store *s;
	store_family fam;
	store_member mem;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(store_family_create(s, "家", "妈妈", 0, 1, &fam, &mem), 0);
	store_close(s);
	assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
	int rc = store_open(&s, &o);
	assert_int_equal(umount(mnt), 0);
	rmdir(mnt);
	assert_int_equal(rc, STORE_EROFS);
}

static void locked_database_is_busy(void **state)
{
	fixture *f = *state;
	store_close(f->s);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	o.busy_timeout_ms = 50;
	assert_int_equal(store_open(&f->s, &o), 0);
	/* Another process holds the directory's write lock past our busy timeout. */
	char path[256];
	snprintf(path, sizeof path, "%s/directory.db", f->dir);
	sqlite3 *other;
	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", 0, 0, 0), SQLITE_OK);
	store_member m;
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "x", STORE_ROLE_CHILD, NULL, 1, &m),
			 STORE_EBUSY);
	assert_int_equal(sqlite3_exec(other, "COMMIT", 0, 0, 0), SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "x", STORE_ROLE_CHILD, NULL, 1, &m),
			 0);
}

/* ---- the family cache ---- */

/*
 * The cache finds an open family through a table by id (review finding: every call walked the
 * LRU list, up to 256 string comparisons). These tests fail if a lookup answers with another
 * family of the same bucket, or with an entry that eviction, a failed open or an erasure left
 * behind: more families than the cache keeps, in orders that evict on every call, hit, and
 * share buckets; all held at once (more entries than the cache keeps, tables of 2 to 128
 * buckets); ids one character apart; families erased while open and while not, asked for
 * again and again.
 */
#define CACHE_FAMILIES 40

typedef struct cache_world {
	store *s;
	store_family fam[CACHE_FAMILIES];
	store_member parent[CACHE_FAMILIES];
	store_message msg[CACHE_FAMILIES];
	bool erased[CACHE_FAMILIES];
} cache_world;

/* Each family's one message: its length and bytes are the family's own. */
static size_t cache_audio_len(int i)
{
	return 100 + 7 * (size_t)i;
}

static void cache_audio(int i, uint8_t *buf)
{
	for (size_t k = 0; k < cache_audio_len(i); k++)
		buf[k] = (uint8_t)(i * 37 + k * 11 + 3);
}

/* The LRU list, the buckets' chains and the count agree: no entry is in one and not the other. */
static void cache_consistent(store *s)
{
	unsigned in_lru = 0, in_buckets = 0;
	for (family *f = s->head; f; f = f->next) {
		bool found = false;
		for (unsigned b = 0; b <= s->bucket_mask && !found; b++)
			for (family *c = s->buckets[b]; c && !found; c = c->chain)
				found = c == f;
		assert_true(found);
		in_lru++;
	}
	for (unsigned b = 0; b <= s->bucket_mask; b++)
		for (family *c = s->buckets[b]; c; c = c->chain)
			in_buckets++;
	assert_int_equal(in_lru, s->nfamilies);
	assert_int_equal(in_buckets, s->nfamilies);
}

/* 0 if family i answers as itself (or, erased, as not found); else which check failed. */
static int cache_check(cache_world *w, int i)
{
	uint64_t used;
	store_message out[4];
	size_t n, got;
	uint8_t want[512], buf[512];
	const char *id = w->fam[i].id.s;
	if (w->erased[i])
		return store_mailbox_usage(w->s, id, &used) == STORE_ENOTFOUND &&
			       store_messages_newest(w->s, id, out, 4, &n) == STORE_ENOTFOUND
			   ? 0
			   : 1;
	if (store_mailbox_usage(w->s, id, &used) != 0 || used != cache_audio_len(i))
		return 2;
	if (store_messages_newest(w->s, id, out, 4, &n) != 0 || n != 1 ||
	    strcmp(out[0].id.s, w->msg[i].id.s) != 0 ||
	    strcmp(out[0].sender.s, w->parent[i].id.s) != 0)
		return 3;
	cache_audio(i, want);
	if (store_audio_read(w->s, id, w->msg[i].id.s, 0, buf, sizeof buf, &got) != 0 ||
	    got != cache_audio_len(i) || memcmp(buf, want, got) != 0)
		return 4;
	return 0;
}

static void cache_check_order(cache_world *w, const int *order, int n)
{
	for (int k = 0; k < n; k++) {
		int rc = cache_check(w, order[k]);
		if (rc)
			fail_msg("family %d (%d-th in order): check %d failed", order[k], k, rc);
	}
	cache_consistent(w->s);
}

typedef struct cache_hold {
	cache_world *w;
	int i;
} cache_hold;

static int cache_hold_from(cache_world *w, int i);

/* Called with family h->i held: hold the next ones too; the deepest checks them all. */
static int cache_hold_choose(void *ctx, const store_audio_info *info, uint64_t *offset,
			     size_t *len)
{
	const cache_hold *h = ctx;
	*offset = 0;
	*len = info->bytes;
	if (h->i + 1 < CACHE_FAMILIES)
		return cache_hold_from(h->w, h->i + 1);
	unsigned held = 0;
	for (int i = 0; i < CACHE_FAMILIES; i++) {
		if (cache_check(h->w, i))
			return -1000 - i;
		held += !h->w->erased[i];
	}
	return h->w->s->nfamilies >= held ? 0 : -999; /* all in the cache, whatever its size */
}

/* Hold family i (an audio fetch whose choose() runs the next ones), i + 1... inside it. */
static int cache_hold_from(cache_world *w, int i)
{
	while (i < CACHE_FAMILIES && w->erased[i])
		i++;
	if (i == CACHE_FAMILIES)
		return 0;
	cache_hold h = {w, i};
	uint8_t buf[512], want[512];
	size_t got;
	int rc = store_audio_fetch(w->s, w->fam[i].id.s, w->msg[i].id.s, cache_hold_choose, &h, buf,
				   &got, NULL);
	if (rc)
		return rc;
	cache_audio(i, want);
	return got == cache_audio_len(i) && memcmp(buf, want, got) == 0 ? 0 : -2000 - i;
}

static void cache_all_orders(cache_world *w)
{
	int order[4 * CACHE_FAMILIES], n = 0;
	for (int r = 0; r < 2; r++) /* in turn: each call's family is the least recently used */
		for (int i = 0; i < CACHE_FAMILIES; i++)
			order[n++] = i;
	for (int i = CACHE_FAMILIES - 1; i >= 0; i--) /* backwards: the most recent first */
		order[n++] = i;
	for (int i = 0; i < CACHE_FAMILIES; i++) /* strided */
		order[n++] = i * 7 % CACHE_FAMILIES;
	cache_check_order(w, order, n);
	n = 0;
	for (int i = 0; i < CACHE_FAMILIES / 2; i++) { /* a hit, then pairs far apart */
		order[n++] = i;
		order[n++] = i;
		order[n++] = i + CACHE_FAMILIES / 2;
		order[n++] = i;
	}
	cache_check_order(w, order, n);
	uint64_t x = 0x2545f4914f6cdd1dull;
	for (int k = 0; k < 4 * CACHE_FAMILIES; k++) { /* at random (a fixed sequence) */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		order[k] = (int)(x % CACHE_FAMILIES);
	}
	cache_check_order(w, order, 4 * CACHE_FAMILIES);
	assert_int_equal(cache_hold_from(w, 0), 0);
	cache_consistent(w->s);
}

static void cache_reopen(fixture *f, cache_world *w, unsigned max_open)
{
	store_options o;
	store_close(f->s);
	store_options_init(&o);
	o.dir = f->dir;
	o.max_open_families = max_open;
	assert_int_equal(store_open(&f->s, &o), 0);
	w->s = f->s;
}

static void family_cache_finds_each_family_its_own(void **state)
{
	fixture *f = *state;
	cache_world *w = calloc(1, sizeof *w);
	uint8_t audio[512];
	int existed;
	assert_non_null(w);
	w->s = f->s;
	for (int i = 0; i < CACHE_FAMILIES; i++)
		assert_int_equal(store_family_create(f->s, "家", "妈妈", 0, 1000 + i, &w->fam[i],
						     &w->parent[i]),
				 0);
	/* The last two families' mailboxes are moved to ids one character away from the first
	 * family's: its last character, its first (and say so in their owner row: a mailbox
	 * under another family's name is set aside). */
	cache_reopen(f, w, 4); /* every mailbox closed */
	for (int t = 0; t < 2; t++) {
		store_family *twin = &w->fam[CACHE_FAMILIES - 1 - t];
		char from[256], to[256];
		snprintf(from, sizeof from, "%s/families/%s.db", f->dir, twin->id.s);
		twin->id = w->fam[0].id;
		char *c = &twin->id.s[t ? 0 : STORE_ID_LEN - 1];
		*c = *c == '0' ? '1' : '0';
		snprintf(to, sizeof to, "%s/families/%s.db", f->dir, twin->id.s);
		assert_int_equal(rename(from, to), 0);
		sqlite3 *db;
		char sql[128];
		snprintf(sql, sizeof sql, "UPDATE owner SET family = '%s'", twin->id.s);
		assert_int_equal(sqlite3_open(to, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_changes(db), 1);
		sqlite3_close(db);
	}
	for (int i = 0; i < CACHE_FAMILIES; i++) {
		cache_audio(i, audio);
		store_new_message m = new_message(w->parent[i].id.s, audio, cache_audio_len(i));
		assert_int_equal(
		    store_message_append(f->s, w->fam[i].id.s, &m, &w->msg[i], &existed), 0);
	}
	/* 1: a table of 2 buckets, a miss and an eviction on almost every call; 4: 8 buckets;
	 * 64: all open at once in 128 buckets, every call a hit. */
	static const unsigned sizes[] = {1, 4, 64};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		cache_reopen(f, w, sizes[k]);
		cache_all_orders(w);
		assert_true(f->s->nfamilies <= sizes[k]);
	}

	/* Erase one family just used (open) and one not open; ask for both, and
	 * for an id no family has, between the others' calls. */
	cache_reopen(f, w, 4);
	assert_int_equal(cache_check(w, 5), 0);
	assert_int_equal(store_family_delete(f->s, w->fam[5].id.s, 5000), 0);
	w->erased[5] = true;
	assert_int_equal(store_family_delete(f->s, w->fam[30].id.s, 5000), 0);
	w->erased[30] = true;
	cache_consistent(f->s);
	uint64_t used;
	for (int r = 0; r < 3; r++) {
		assert_int_equal(store_mailbox_usage(f->s, "0123456789abcdefghjkmnpqrs", &used),
				 STORE_ENOTFOUND);
		cache_all_orders(w);
	}
	assert_int_equal(store_family_delete(f->s, w->fam[5].id.s, 5000), STORE_ENOTFOUND);
	cache_reopen(f, w, 64); /* and in a store that never had them open */
	cache_all_orders(w);
	free(w);
}

/* Every file of a database is its owner's alone (the review: 0644 under the usual umask, so a
 * data directory readable by others showed every family's names and voices), and one an older
 * version left readable by others is made so when it is opened. */
static mode_t mode_of(const char *dir, const char *name, const char *suffix)
{
	char p[256];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s%s", dir, name, suffix);
	return stat(p, &st) == 0 ? st.st_mode & 0777 : 0;
}

static void database_files_are_the_owners_alone(void **state)
{
	fixture *f = *state;
	static const char *const suffix[] = {"", "-wal", "-shm"};
	char fam_db[64];
	snprintf(fam_db, sizeof fam_db, "families/%s.db", f->fam.id.s);
	mode_t old_mask = umask(022);
	store_close(f->s); /* made under the test runner's umask: made again under 022 */
	f->s = NULL;
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", f->dir);
	assert_int_equal(system(cmd), 0);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	assert_int_equal(store_family_create(f->s, "王家", "妈妈", 0, 1000, &f->fam, &f->parent),
	                 0);
	snprintf(fam_db, sizeof fam_db, "families/%s.db", f->fam.id.s);
	store_message msg;
	append_marked(f, "JIAYIN-MODE", 100, &msg); /* the family's -wal and -shm exist now */
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(mode_of(f->dir, "directory.db", suffix[i]), 0600);
		assert_int_equal(mode_of(f->dir, fam_db, suffix[i]), 0600);
	}
	store_close(f->s);
	f->s = NULL;
	/* As an older version left them. */
	for (size_t i = 0; i < 2; i++) {
		char p[256];
		snprintf(p, sizeof p, "%s/%s", f->dir, i ? fam_db : "directory.db");
		assert_int_equal(chmod(p, 0644), 0);
	}
	assert_int_equal(store_open(&f->s, &o), 0);
	store_family got;
	assert_int_equal(store_family_get(f->s, f->fam.id.s, &got), 0);
	size_t n = 0;
	uint8_t buf[16];
	assert_int_equal(store_audio_read(f->s, f->fam.id.s, msg.id.s, 0, buf, sizeof buf, &n), 0);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(mode_of(f->dir, "directory.db", suffix[i]), 0600);
		assert_int_equal(mode_of(f->dir, fam_db, suffix[i]), 0600);
	}
	umask(old_mask);
}

/* A directory.db gone missing (fsck's lost+found, a restore of families/ alone) is not made
 * again beside the families' databases: the server's sweep would erase every one of them as
 * owned by no family (the review). Nothing changes until it is back. */
static void missing_directory_erases_nothing(void **state)
{
	fixture *f = *state;
	char db[128], aside[128], fam_db[128];
	snprintf(db, sizeof db, "%s/directory.db", f->dir);
	snprintf(aside, sizeof aside, "%s/directory.db.aside", f->dir);
	snprintf(fam_db, sizeof fam_db, "%s/families/%s.db", f->dir, f->fam.id.s);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(rename(db, aside), 0);
	/* A backup holds no quarantine/: one restored without its directory.db gets none either. */
	char quarantine[128];
	snprintf(quarantine, sizeof quarantine, "%s/quarantine", f->dir);
	assert_int_equal(rmdir(quarantine), 0);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), STORE_ENODIR);
	assert_null(f->s);
	assert_string_equal(store_errcode(STORE_ENODIR), "storage_directory_missing");
	assert_int_equal(access(db, F_OK), -1); /* not made */
	assert_int_equal(access(quarantine, F_OK), -1);
	assert_int_equal(access(fam_db, F_OK), 0);
	/* A link to where it was, on a volume that is not mounted (the review: the link passed
	 * for a directory, SQLite made an empty one at its target and the sweep erased all). */
	char elsewhere[128];
	snprintf(elsewhere, sizeof elsewhere, "%s/unmounted/directory.db", f->dir);
	assert_int_equal(symlink(elsewhere, db), 0);
	assert_int_equal(store_open(&f->s, &o), STORE_ENODIR);
	assert_int_equal(access(elsewhere, F_OK), -1);
	assert_int_equal(access(fam_db, F_OK), 0);
	/* Mounted: the link is followed, and the directory there is the owner's alone. */
	char mnt[128];
	snprintf(mnt, sizeof mnt, "%s/unmounted", f->dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	assert_int_equal(rename(aside, elsewhere), 0);
	assert_int_equal(chmod(elsewhere, 0644), 0);
	assert_int_equal(store_open(&f->s, &o), 0);
	struct stat st;
	assert_int_equal(stat(elsewhere, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(unlink(db), 0);
	assert_int_equal(rename(elsewhere, db), 0);
	assert_int_equal(store_open(&f->s, &o), 0);
	unsigned removed = 9, set_aside = 9;
	assert_int_equal(store_families_sweep(f->s, &removed, &set_aside), 0);
	assert_int_equal(removed + set_aside, 0);
	store_family got;
	assert_int_equal(store_family_get(f->s, f->fam.id.s, &got), 0);
	/* An empty directory.db (what fsck, a full disk or a failed copy leaves) is a missing
	 * one (the review: it was opened as a new directory, and every family set aside). */
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(rename(db, aside), 0);
	FILE *empty = fopen(db, "w");
	assert_non_null(empty);
	fclose(empty);
	assert_int_equal(store_open(&f->s, &o), STORE_ENODIR);
	assert_int_equal(access(fam_db, F_OK), 0);
	assert_int_equal(rename(aside, db), 0);
	assert_int_equal(store_open(&f->s, &o), 0);
	/* An empty families/ (a first start) is no reason to refuse. */
	store_close(f->s);
	f->s = NULL;
	char cmd[192];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'/directory.db* '%s'/families/*", f->dir, f->dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(store_open(&f->s, &o), 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(secure_delete_leaves_no_audio_in_the_file),
	    T(deleted_message_keeps_no_trace_of_the_voice),
	    T(deleted_audio_leaves_the_files_at_once),
	    T(corrupt_header_is_quarantined),
	    T(corrupt_btree_is_quarantined),
	    T(damaged_audio_bytes_are_found_by_verify),
	    T(an_unreadable_voice_adds_no_bytes_to_the_checked),
	    T(set_aside_twice_in_a_second_keeps_both),
	    T(a_family_set_aside_is_told_once),
	    T(read_only_file_system),
	    T(locked_database_is_busy),
	    T(family_cache_finds_each_family_its_own),
	    T(database_files_are_the_owners_alone),
	    T(missing_directory_erases_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
