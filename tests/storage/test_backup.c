/*
 * test_backup.c — the storage library's copies, on a fresh data directory per test: online
 * backups of everything or of one family (whole or nothing, made under a hidden name, with the
 * server's key, without a family erased meanwhile; leftovers of a dead backup removed only when
 * they are ours), and the export zip (its index, and one made while the mailbox changes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store.h"
#include "store_fixture.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void backups(void **state)
{
	fixture *f = *state;
	uint8_t audio[30000] = {7};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	store_family other;
	store_member om;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &om), 0);

	char path[256];
	snprintf(path, sizeof path, "%s/one.db", f->dir);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, path), 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM messages"), 3);
	assert_int_equal(count_rows(path, "SELECT sum(length(data)) FROM audio"), 90000);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, path), STORE_EEXIST);
	assert_int_equal(store_backup_family(f->s, "0123456789abcdefghjkmnpqrs", path),
	                 STORE_ENOTFOUND);
	/* A family's voices: its owner's alone, whatever the umask (review finding: 0644), and
	 * never written through a symbolic link that is already there. */
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char target[256], link[256];
	snprintf(target, sizeof target, "%s/target", f->dir);
	snprintf(link, sizeof link, "%s/link.db", f->dir);
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, link), STORE_EEXIST);
	assert_int_not_equal(access(target, F_OK), 0);

	char dir[128];
	unsigned families;
	snprintf(dir, sizeof dir, "%s/all", f->dir);
	assert_int_equal(store_backup_all(f->s, dir, NULL, &families, NULL, NULL), 0);
	assert_int_equal(families, 2);
	snprintf(path, sizeof path, "%s/directory.db", dir);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM families"), 2);
	snprintf(path, sizeof path, "%s/families/%s.db", dir, f->fam.id.s);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM audio"), 3);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(store_backup_all(f->s, dir, NULL, &families, NULL, NULL), STORE_EEXIST);
}

static void export_zip(void **state)
{
	fixture *f = *state;
	uint8_t a1[20000], a2[5000];
	for (size_t i = 0; i < sizeof a1; i++)
		a1[i] = (uint8_t)(i * 13);
	memset(a2, 0x42, sizeof a2);
	store_new_message m = new_message(f->parent.id.s, a1, sizeof a1);
	store_message kept, gone, hidden;
	int existed;
	uint64_t seq, bytes;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &kept, &existed), 0);
	m.audio = a2;
	m.audio_len = sizeof a2;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &gone, &existed), 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &hidden, &existed), 0);
	assert_int_equal(
	    store_message_set_state(f->s, f->fam.id.s, gone.id.s, STORE_MSG_DELETED, &seq), 0);
	assert_int_equal(
	    store_message_set_state(f->s, f->fam.id.s, hidden.id.s, STORE_MSG_HIDDEN, &seq), 0);
	/* A member who left is named in the index still: some messages may be theirs. */
	store_member gran;
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "奶奶", STORE_ROLE_CAREGIVER, NULL, 1, &gran), 0);
	assert_int_equal(store_member_remove(f->s, f->fam.id.s, gran.id.s, 1700000000000, &gran),
	                 0);
	char path[256];
	snprintf(path, sizeof path, "%s/export.zip", f->dir);
	FILE *fp = fopen(path, "w+b");
	assert_int_equal(store_export_family(f->s, f->fam.id.s, fileno(fp), &bytes, NULL, NULL), 0);
	fflush(fp);
	assert_int_equal((uint64_t)ftell(fp), bytes);
	fclose(fp);

	/* Read it back with libarchive: one Ogg with the right bytes, and the index. */
	struct archive *a = archive_read_new();
	archive_read_support_format_zip(a);
	assert_int_equal(archive_read_open_filename(a, path, 16384), ARCHIVE_OK);
	struct archive_entry *e;
	int oggs = 0, index = 0;
	static uint8_t buf[65536];
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		la_ssize_t n = archive_read_data(a, buf, sizeof buf);
		if (strstr(name, ".ogg")) {
			oggs++;
			assert_non_null(strstr(name, kept.id.s));
			assert_int_equal(n, sizeof a1);
			assert_memory_equal(buf, a1, sizeof a1);
		} else {
			index++;
			assert_string_equal(name, "index.json");
			buf[n] = 0;
			assert_non_null(strstr((char *)buf, "\"name\": \"王家\""));
			assert_non_null(strstr((char *)buf, kept.id.s));
			assert_null(strstr((char *)buf, gone.id.s));
			assert_null(strstr((char *)buf, hidden.id.s));
			assert_non_null(strstr((char *)buf, "\"role\": \"parent\"}"));
			assert_non_null(strstr((char *)buf, "\"name\": \"奶奶\", \"role\": "
			                                    "\"caregiver\", \"left_at\": "
			                                    "\"2023-11-14T22:13:20Z\"}"));
		}
	}
	archive_read_free(a);
	assert_int_equal(oggs, 1);
	assert_int_equal(index, 1);
}

/* An export onto a full disk says so (storage_full, errno ENOSPC), as the backups do: the
 * parent's download is 507 storage_full, and jiayinctl says "No space left on device". */
static void export_to_a_full_disk(void **state)
{
	fixture *f = *state;
	uint8_t a[20000];
	memset(a, 0x17, sizeof a);
	store_new_message m = new_message(f->parent.id.s, a, sizeof a);
	store_message stored;
	int existed;
	uint64_t bytes = 1;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &stored, &existed), 0);
	int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(store_export_family(f->s, f->fam.id.s, fd, &bytes, NULL, NULL),
	                 STORE_EFULL);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(bytes, 0);
	close(fd);
}

/* Nothing named all.partial-* is left in f->dir. */
static void no_partial_backup(const fixture *f)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q '^all\\.partial'", f->dir);
	assert_int_not_equal(system(cmd), 0);
}

/* The ids a backup said were damaged. */
typedef struct damaged_ids {
	unsigned n;
	char ids[4][STORE_ID_LEN + 1];
} damaged_ids;

static void note_damaged(void *arg, const char *family_id)
{
	damaged_ids *d = arg;
	if (d->n < 4)
		snprintf(d->ids[d->n], sizeof d->ids[0], "%s", family_id);
	d->n++;
}

/* The backup in dir has both families' rows, and a mailbox only for `copied`. */
static void backup_keeps_damaged_rows(fixture *f, const char *dir, const char *copied)
{
	char path[256];
	snprintf(path, sizeof path, "%s/directory.db", dir);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM families"), 2);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM members"), 2);
	snprintf(path, sizeof path, "%s/families/%s.db", dir, f->fam.id.s);
	assert_int_not_equal(access(path, F_OK), 0);
	snprintf(path, sizeof path, "%s/families/%s.db", dir, copied);
	assert_int_equal(access(path, F_OK), 0);
}

/*
 * A damaged family fails neither the backup that finds it nor the next: the other families
 * are copied, and the damaged one's rows kept (a restore then still has its members and
 * phones, to put an earlier copy of its mailbox back into), and reported (the review: the
 * first backup failed, the next one erased its rows from the copy as an erased family's).
 */
static void damaged_family_keeps_its_rows(void **state)
{
	fixture *f = *state;
	store_family other;
	store_member om;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &om), 0);
	store_close(f->s);
	f->s = NULL;
	char path[256], dir[128];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	mangle(path, 0, 16);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	unsigned families = 7;
	damaged_ids d = {0};
	snprintf(dir, sizeof dir, "%s/all", f->dir);
	assert_int_equal(store_backup_all(f->s, dir, NULL, &families, note_damaged, &d), 0);
	assert_int_equal(families, 1);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.ids[0], f->fam.id.s);
	backup_keeps_damaged_rows(f, dir, other.id.s);
	no_partial_backup(f);
	/* Set aside by then: the same again. */
	memset(&d, 0, sizeof d);
	snprintf(dir, sizeof dir, "%s/all2", f->dir);
	assert_int_equal(store_backup_all(f->s, dir, NULL, &families, note_damaged, &d), 0);
	assert_int_equal(families, 1);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.ids[0], f->fam.id.s);
	backup_keeps_damaged_rows(f, dir, other.id.s);
	/* Erased, it is in no backup: neither rows nor report. */
	assert_int_equal(store_family_delete(f->s, f->fam.id.s, 9000), 0);
	memset(&d, 0, sizeof d);
	snprintf(dir, sizeof dir, "%s/all3", f->dir);
	assert_int_equal(store_backup_all(f->s, dir, NULL, &families, note_damaged, &d), 0);
	assert_int_equal(families, 1);
	assert_int_equal(d.n, 0);
	snprintf(path, sizeof path, "%s/directory.db", dir);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM families"), 1);
	no_partial_backup(f);
}

/* The id of a process that has ended (its number is not given out again this soon). */
static long dead_pid(void)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return (long)pid;
}

/*
 * Extra files (the tool's server key) go in before DEST has its name: one that cannot be
 * copied fails the backup and leaves nothing (review finding: the key was copied after the
 * rename, so a failed copy left a DEST that looked whole without it). A backup killed
 * midway leaves DEST.partial-PID, which the next backup to DEST removes; DEST/ is DEST.
 */
static void backup_extra_files_and_leftovers(void **state)
{
	fixture *f = *state;
	char key[160], dir[160], path[300];
	unsigned families;
	struct stat st;
	snprintf(key, sizeof key, "%s/secret", f->dir);
	FILE *fp = fopen(key, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite("0123456789abcdef0123456789abcdef", 1, 32, fp), 32);
	fclose(fp);
	const char *extra[] = {key, NULL};

	/* A leftover of a backup killed midway, by a process that is gone: removed. */
	snprintf(dir, sizeof dir, "%s/all", f->dir);
	snprintf(path, sizeof path, "%s.partial-%ld", dir, dead_pid());
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path + strlen(path), sizeof path - strlen(path), "/families");
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path + strlen(path), sizeof path - strlen(path), "/x.db");
	fp = fopen(path, "wb");
	fclose(fp);
	/* DEST with a trailing slash is DEST (review: storage_io_error, no reason). */
	char slashed[170];
	snprintf(slashed, sizeof slashed, "%s/", dir);
	assert_int_equal(store_backup_all(f->s, slashed, extra, &families, NULL, NULL), 0);
	no_partial_backup(f);
	snprintf(path, sizeof path, "%s/secret", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 32);

	/* A key that is missing, or that cannot be read: no DEST, no partial, the reason. */
	snprintf(dir, sizeof dir, "%s/nokey", f->dir);
	assert_int_equal(unlink(key), 0);
	errno = 0;
	assert_int_equal(store_backup_all(f->s, dir, extra, &families, NULL, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(families, 0);
	assert_int_not_equal(access(dir, F_OK), 0);
	assert_int_equal(mkdir(key, 0700), 0);
	assert_true(store_backup_all(f->s, dir, extra, &families, NULL, NULL) < 0);
	assert_int_equal(errno, EISDIR);
	assert_int_not_equal(access(dir, F_OK), 0);
	snprintf(path, sizeof path, "ls -a '%s' | grep -q '^nokey'", f->dir);
	assert_int_not_equal(system(path), 0);

	/* A missing folder: its reason (review: storage_io_error alone). */
	snprintf(dir, sizeof dir, "%s/no/such/dir", f->dir);
	assert_int_equal(store_backup_all(f->s, dir, NULL, &families, NULL, NULL), STORE_EIO);
	assert_int_equal(errno, ENOENT);
}

/* A file named `name` in `dir` with `text`. */
static void put_file(const char *dir, const char *name, const char *text)
{
	char path[600];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/*
 * Only a leftover that is ours and that no backup holds is removed (review of the leftovers'
 * removal): a symbolic link named like one, to the live data directory, was followed and every
 * file behind it unlinked; a live backup in another PID namespace looked like a dead process's
 * and was removed under it.
 */
static void backup_leaves_what_is_not_a_leftover(void **state)
{
	fixture *f = *state;
	char victim[200], dest[200], link[300], held[300], cmd[1400];
	unsigned families;
	snprintf(victim, sizeof victim, "%s/victim", f->dir);
	assert_int_equal(mkdir(victim, 0700), 0);
	put_file(victim, "directory.db", "precious");
	char fams[300];
	snprintf(fams, sizeof fams, "%s/families", victim);
	assert_int_equal(mkdir(fams, 0700), 0);
	put_file(fams, "f.db", "precious too");
	snprintf(dest, sizeof dest, "%s/night", f->dir);
	snprintf(link, sizeof link, "%s.partial-%ld", dest, dead_pid());
	assert_int_equal(symlink(victim, link), 0);
	/* A live backup's folder, under a number that is no process here: its lock says so. */
	snprintf(held, sizeof held, "%s.partial-%ld", dest, dead_pid() + 1);
	assert_int_equal(mkdir(held, 0700), 0);
	put_file(held, "directory.db", "being written");
	int fd = open(held, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	/* The same for a family's backup file. */
	char fam_dest[200], fam_held[300];
	snprintf(fam_dest, sizeof fam_dest, "%s/fam.db", f->dir);
	snprintf(fam_held, sizeof fam_held, "%s/.fam.db.partial-%ld", f->dir, dead_pid() + 2);
	int ffd = open(fam_held, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(ffd >= 0);
	assert_int_equal(flock(ffd, LOCK_EX), 0);

	assert_int_equal(store_backup_all(f->s, dest, NULL, &families, NULL, NULL), 0);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, fam_dest), 0);
	snprintf(cmd, sizeof cmd,
	         "test \"$(cat '%s/directory.db')\" = precious && "
	         "test \"$(cat '%s/families/f.db')\" = 'precious too' && "
	         "test \"$(cat '%s/directory.db')\" = 'being written' && test -f '%s'",
	         victim, victim, held, fam_held);
	assert_int_equal(system(cmd), 0);

	/* Once its backup is gone (the lock with it), the folder is a leftover. */
	close(fd);
	close(ffd);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dest, fam_dest);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(store_backup_all(f->s, dest, NULL, &families, NULL, NULL), 0);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, fam_dest), 0);
	assert_int_not_equal(access(held, F_OK), 0);
	assert_int_not_equal(access(fam_held, F_OK), 0);
	snprintf(cmd, sizeof cmd, "test \"$(cat '%s/directory.db')\" = precious", victim);
	assert_int_equal(system(cmd), 0);

	/* A link earlier in DEST's path is followed, as any path's (/var/backups -> /srv/...):
	 * the review of the next change found both backups refused there. */
	char real[160], linked[160];
	snprintf(real, sizeof real, "%s/real", f->dir);
	snprintf(linked, sizeof linked, "%s/linked", f->dir);
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(symlink(real, linked), 0);
	snprintf(dest, sizeof dest, "%s/all", linked);
	snprintf(fam_dest, sizeof fam_dest, "%s/fam.db", linked);
	assert_int_equal(store_backup_all(f->s, dest, NULL, &families, NULL, NULL), 0);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, fam_dest), 0);
	snprintf(cmd, sizeof cmd, "test -f '%s/all/directory.db' && test -f '%s/fam.db'", real,
	         real);
	assert_int_equal(system(cmd), 0);
}

/*
 * backup-family writes a hidden .NAME.partial-PID and renames it: the name asked for is
 * whole or absent (review finding: the database was filled in place, so a kill left a cut
 * file under it); a dead process's leftover is removed; errors say why.
 */
static void backup_family_through_a_hidden_name(void **state)
{
	fixture *f = *state;
	char path[256], stale[300];
	snprintf(path, sizeof path, "%s/fam.db", f->dir);
	snprintf(stale, sizeof stale, "%s/.fam.db.partial-%ld", f->dir, dead_pid());
	FILE *fp = fopen(stale, "wb");
	fputs("cut short", fp);
	fclose(fp);
	/* What SQLite had beside it: the copy's rollback journal, and the WAL and its index it
	 * opens to take the copy out of WAL mode (the review: those two were left for good). */
	static const char *const beside[] = {"-journal", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		char name[320];
		snprintf(name, sizeof name, "%s%s", strrchr(stale, '/') + 1, beside[i]);
		put_file(f->dir, name, "left by a kill");
	}
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, path), 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM messages"), 0);
	assert_int_not_equal(access(stale, F_OK), 0);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q 'partial'", f->dir);
	assert_int_not_equal(system(cmd), 0);

	snprintf(path, sizeof path, "%s/nodir/x.db", f->dir);
	errno = 0;
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, path), STORE_EIO);
	assert_int_equal(errno, ENOENT);
	snprintf(path, sizeof path, "%s/newdir/", f->dir);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, path), STORE_EINVAL);
	assert_int_equal(errno, EISDIR);
	assert_int_not_equal(access(path, F_OK), 0);
	snprintf(path, sizeof path, "%s/", f->dir);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, path), STORE_EEXIST);
	assert_int_equal(errno, EEXIST);
}

/*
 * A file system whose rename takes no flags, as NFS's and many FUSE mounts' (EINVAL for
 * RENAME_NOREPLACE), while no_rename_flags is set: the backups' renameat2() is this one.
 */
static bool no_rename_flags;

int renameat2(int from_dir, const char *from, int to_dir, const char *to, unsigned int flags)
{
	if (flags && no_rename_flags) {
		errno = EINVAL;
		return -1;
	}
	return (int)syscall(SYS_renameat2, from_dir, from, to_dir, to, flags);
}

/*
 * Backups onto a file system whose rename takes no flags (a NAS mounted over NFS, where
 * docs/operations.md has them go) are made all the same, and still never over what is there
 * (review finding: every backup and backup-family there failed, "Invalid argument").
 */
static void backups_where_rename_takes_no_flags(void **state)
{
	fixture *f = *state;
	uint8_t audio[3000] = {5};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	char dir[256], path[300], one[256];
	unsigned families = 0, again_families = 0;
	snprintf(dir, sizeof dir, "%s/nfs", f->dir);
	snprintf(one, sizeof one, "%s/nfs-family.db", f->dir);
	no_rename_flags = true;
	int all = store_backup_all(f->s, dir, NULL, &families, NULL, NULL);
	int all_again = store_backup_all(f->s, dir, NULL, &again_families, NULL, NULL);
	int fam = store_backup_family(f->s, f->fam.id.s, one);
	int fam_again = store_backup_family(f->s, f->fam.id.s, one);
	no_rename_flags = false;
	assert_int_equal(all, 0);
	assert_int_equal(families, 1);
	snprintf(path, sizeof path, "%s/families/%s.db", dir, f->fam.id.s);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM messages"), 1);
	assert_int_equal(all_again, STORE_EEXIST);
	assert_int_equal(fam, 0);
	assert_int_equal(count_rows(one, "SELECT count(*) FROM messages"), 1);
	assert_int_equal(fam_again, STORE_EEXIST);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q 'partial'", f->dir);
	assert_int_not_equal(system(cmd), 0);
}

#define BACKED_UP 60

typedef struct eraser {
	fixture *f;
	char partial[160];
	const char *victim;
	bool copied; /* wait until the victim's copy is done (another family's has begun) */
	bool during; /* the backup was still running after the erasure */
	int rc;
} eraser;

/* Once the backup is copying families (once it has copied the victim, with `copied`), erase
 * the victim. */
static void *eraser_main(void *arg)
{
	eraser *e = arg;
	e->rc = 1;
	for (int waited = 0; waited < 20000; waited++) {
		DIR *d = opendir(e->partial);
		int files = 0;
		for (struct dirent *de; d && (de = readdir(d));)
			files += de->d_name[0] != '.' &&
			         (!e->copied || strncmp(de->d_name, e->victim, 26) != 0);
		if (d)
			closedir(d);
		if (files > 0) {
			e->rc = store_family_delete(e->f->s, e->victim, 5000);
			e->during = access(e->partial, F_OK) == 0;
			return NULL;
		}
		usleep(500);
	}
	return NULL;
}

/* A full backup into dir (f's "all") while e's thread erases its victim; the families backed up. */
static unsigned backup_racing(fixture *f, char dir[128], eraser *e)
{
	snprintf(dir, 128, "%s/all", f->dir);
	snprintf(e->partial, sizeof e->partial, "%s.partial-%ld/families", dir, (long)getpid());
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, eraser_main, e), 0);
	unsigned families;
	int rc = store_backup_all(f->s, dir, NULL, &families, NULL, NULL);
	pthread_join(t, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(e->rc, 0);
	return families;
}

/* The full backup in dir holds its families but fam[gone]: neither its rows nor its file. */
static void backup_lacks(fixture *f, const char *dir, unsigned families,
			 const store_family fam[BACKED_UP], int gone)
{
	char path[256], sql[160];
	snprintf(path, sizeof path, "%s/directory.db", dir);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM families"), (int)families);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM members WHERE family_id = '%.26s'",
		 fam[gone].id.s);
	assert_int_equal(count_rows(path, sql), 0);
	for (int i = 0; i < BACKED_UP; i++) {
		snprintf(path, sizeof path, "%s/families/%.26s.db", dir, fam[i].id.s);
		assert_int_equal(access(path, F_OK) == 0, i != gone);
	}
	no_partial_backup(f);
}

/*
 * A family erased after the backup copied the directory, before it copied the family's file:
 * the backup does not name it (a restore would have its members and devices, no mailbox).
 */
static void backup_drops_a_family_erased_meanwhile(void **state)
{
	fixture *f = *state;
	store_family fam[BACKED_UP];
	store_member mem;
	int last = 0;
	for (int i = 0; i < BACKED_UP; i++) {
		assert_int_equal(store_family_create(f->s, "家", "妈妈", 0, 1, &fam[i], &mem), 0);
		if (strcmp(fam[i].id.s, fam[last].id.s) > 0)
			last = i;
	}
	if (strcmp(f->fam.id.s, fam[last].id.s) > 0) { /* the victim must be the last by id */
		assert_int_equal(store_family_delete(f->s, f->fam.id.s, 5000), 0);
		for (int i = 0; i < BACKED_UP; i++)
			if (strcmp(fam[i].id.s, fam[last].id.s) > 0)
				last = i;
	}
	char dir[128];
	eraser e = {.f = f, .victim = fam[last].id.s};
	unsigned families = backup_racing(f, dir, &e);
	backup_lacks(f, dir, families, fam, last);
}

/*
 * A family erased after the backup copied its file (by another process: a parent's DELETE on
 * the server while jiayinctl backs up) is taken out of the backup again, its file and its
 * rows: a restore must not bring an erased family back.
 */
static void backup_drops_a_family_erased_after_its_copy(void **state)
{
	fixture *f = *state;
	store_family fam[BACKED_UP];
	store_member mem;
	int first = 0;
	for (int i = 0; i < BACKED_UP; i++) {
		assert_int_equal(store_family_create(f->s, "家", "妈妈", 0, 1, &fam[i], &mem), 0);
		if (strcmp(fam[i].id.s, fam[first].id.s) < 0)
			first = i;
	}
	if (strcmp(f->fam.id.s, fam[first].id.s) < 0) /* the victim must be the first by id */
		assert_int_equal(store_family_delete(f->s, f->fam.id.s, 5000), 0);
	char dir[128];
	eraser e = {.f = f, .victim = fam[first].id.s, .copied = true};
	unsigned families = backup_racing(f, dir, &e);
	if (!e.during)
		skip(); /* the backup was over before the erasure: nothing raced */
	backup_lacks(f, dir, families, fam, first);
}

/* ---- An export racing changes ---- */

#define RACED 70 /* messages: more than the export's page of 64 */
#define RACED_SIZE 30000

typedef struct export_job {
	fixture *f;
	int fd, rc;
	uint64_t bytes;
} export_job;

static void *export_main(void *arg)
{
	export_job *j = arg;
	j->rc = store_export_family(j->f->s, j->f->fam.id.s, j->fd, &j->bytes, NULL, NULL);
	close(j->fd);
	return NULL;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * While an export of 70 clips waits on its reader (a slow disk, a pipe), the family carries
 * on: a child listens to message 2 (a new change number), a moderator hides message 3 and a
 * parent deletes message 4, all listed by then and not yet copied. None of them waits on the
 * export; the zip and its index hold every other message exactly once and those two not.
 */
static void export_carries_on_through_changes(void **state)
{
	fixture *f = *state;
	static uint8_t audio[RACED_SIZE], buf[4096];
	store_message msg[RACED];
	int existed;
	for (int i = 0; i < RACED; i++) {
		memset(audio, 'A' + i, sizeof audio);
		store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg[i], &existed), 0);
	}
	int p[2];
	assert_int_equal(pipe(p), 0);
	(void)fcntl(p[1], F_SETPIPE_SZ, 4096); /* the export waits on us after a few KiB */
	export_job j = {.f = f, .fd = p[1], .rc = 1};
	pthread_t exporter;
	assert_int_equal(pthread_create(&exporter, NULL, export_main, &j), 0);
	char path[256];
	snprintf(path, sizeof path, "%s/raced.zip", f->dir);
	FILE *out = fopen(path, "wb");
	assert_non_null(out);
	ssize_t n = read(p[0], buf, sizeof buf); /* the export is writing the first message */
	assert_true(n > 0);
	assert_int_equal(fwrite(buf, 1, (size_t)n, out), (size_t)n);

	uint64_t seq;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(
	    store_message_listened(f->s, f->fam.id.s, msg[2].id.s, f->parent.id.s, 1000, &seq), 0);
	assert_int_equal(
	    store_message_set_state(f->s, f->fam.id.s, msg[3].id.s, STORE_MSG_HIDDEN, &seq), 0);
	assert_int_equal(
	    store_message_set_state(f->s, f->fam.id.s, msg[4].id.s, STORE_MSG_DELETED, &seq), 0);
	/* The deletion's checkpoint had no snapshot to wait for (the busy timeout is 5 s). */
	assert_true(seconds_since(&t0) < 2.5);

	while ((n = read(p[0], buf, sizeof buf)) > 0)
		assert_int_equal(fwrite(buf, 1, (size_t)n, out), (size_t)n);
	close(p[0]);
	fclose(out);
	pthread_join(exporter, NULL);
	assert_int_equal(j.rc, 0);

	struct archive *a = archive_read_new();
	archive_read_support_format_zip(a);
	assert_int_equal(archive_read_open_filename(a, path, 16384), ARCHIVE_OK);
	struct archive_entry *e;
	static uint8_t data[RACED_SIZE + 1], index[65536];
	int seen[RACED] = {0}, oggs = 0;
	la_ssize_t index_len = -1;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		if (strcmp(name, "index.json") == 0) {
			index_len = archive_read_data(a, index, sizeof index - 1);
			continue;
		}
		assert_int_equal(archive_read_data(a, data, sizeof data), RACED_SIZE);
		for (int i = 0; i < RACED; i++)
			if (strstr(name, msg[i].id.s)) {
				seen[i]++;
				assert_int_equal(data[RACED_SIZE / 2], 'A' + i);
			}
		oggs++;
	}
	archive_read_free(a);
	assert_int_equal(oggs, RACED - 2);
	assert_true(index_len > 0);
	index[index_len] = 0;
	for (int i = 0; i < RACED; i++) {
		int listed = 0;
		for (const char *q = (char *)index; (q = strstr(q, msg[i].id.s)); q++)
			listed++;
		/* In the index: its id, and its file name, which has the id too. */
		assert_int_equal(seen[i], i == 3 || i == 4 ? 0 : 1);
		assert_int_equal(listed, i == 3 || i == 4 ? 0 : 2);
	}
}

/* A data directory on a file system mounted read-only is "read-only", not an I/O error. */

/*
 * A backup's copy of a family records the change it was taken at and a floor 2^32 above;
 * restored in place, the mailbox numbers its changes from the floor and tells which numbers
 * are gone (the review: after a restore, phones whose last list was past the copy's newest
 * change missed the messages numbered below it once the family caught up).
 */
/* The store opened again on the fixture's data directory (closed before, f->s NULL). */
static void reopen(fixture *f)
{
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
}

/* `sql` run on the database file at `path` behind the store's back (closed meanwhile). */
static void alter(const char *path, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* The service stopped, `copy` put in place of a family's mailbox as docs/operations.md says
 * (its -wal and -shm deleted first), the service started. */
static void restore_as(fixture *f, const char *copy, const char *family_id)
{
	char live[256], cmd[1400];
	snprintf(live, sizeof live, "%s/families/%s.db", f->dir, family_id);
	store_close(f->s);
	f->s = NULL;
	snprintf(cmd, sizeof cmd, "rm -f '%s' '%s-wal' '%s-shm' && cp '%s' '%s'", live, live, live,
	         copy, live);
	assert_int_equal(system(cmd), 0);
	reopen(f);
}

static void restored_copy_numbers_above_the_floor(void **state)
{
	fixture *f = *state;
	uint8_t audio[1000] = {9};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	uint64_t from = 7, to = 7;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(msg.seq, 2);
	assert_int_equal(store_mailbox_restored(f->s, f->fam.id.s, &from, &to), 0);
	assert_int_equal(from + to, 0); /* never restored */
	char copy[128], live[256];
	snprintf(copy, sizeof copy, "%s/copy.db", f->dir);
	snprintf(live, sizeof live, "%s/families/%s.db", f->dir, f->fam.id.s);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, copy), 0);
	assert_int_equal(count_rows(copy, "SELECT restored_latest FROM seq_floor"), 2);
	assert_int_equal(count_rows(copy, "SELECT floor = 4294967298 FROM seq_floor"), 1);
	/* Written through a rollback journal: a killed backup leaves no -wal or -shm beside it. */
	assert_int_equal(
	    count_rows(copy, "SELECT journal_mode = 'delete' FROM pragma_journal_mode"), 1);
	/* The live mailbox goes on as before. */
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(msg.seq, 3);
	restore_as(f, copy, f->fam.id.s);
	assert_int_equal(store_mailbox_restored(f->s, f->fam.id.s, &from, &to), 0);
	assert_int_equal(from, 2);
	/* At least 2^32 above, and at least its opening's time in ms x 1024; below 2^53. */
	assert_true(to >= 4294967298u && to < (UINT64_C(1) << 53));
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(msg.seq, to + 1);
	uint64_t phone = msg.seq; /* what a phone listed after the restore */
	store_message list[4];
	size_t n;
	uint64_t latest;
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 2, list, 4, &n, &latest), 0);
	assert_int_equal(n, 1);
	assert_int_equal(latest, phone);
	/* A backup of the restored mailbox marks it above its own numbers again. */
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, copy), STORE_EEXIST);
	char copy2[128];
	snprintf(copy2, sizeof copy2, "%s/copy2.db", f->dir);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, copy2), 0);
	snprintf(live, sizeof live, "SELECT restored_latest = %llu FROM seq_floor",
	         (unsigned long long)phone);
	assert_int_equal(count_rows(copy2, live), 1);
	/* The same first copy put back again (the operations review): the phone's number is
	 * between the copy's change and the new floor, so it is told to start over, and the new
	 * changes are numbered above it, not as the first restore numbered them. */
	restore_as(f, copy, f->fam.id.s);
	assert_int_equal(store_mailbox_restored(f->s, f->fam.id.s, &from, &to), 0);
	assert_true(from == 2 && from < phone && phone < to);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_true(msg.seq > phone);
	uint64_t again = msg.seq;
	/* And the copy taken after the first restore, put back after the second. */
	restore_as(f, copy2, f->fam.id.s);
	assert_int_equal(store_mailbox_restored(f->s, f->fam.id.s, &from, &to), 0);
	assert_true(from == phone && again < to);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_true(msg.seq > again);
}

/*
 * A mailbox restored and written to by a version before mailbox step 8 (its seq_floor row
 * without applied_ms) is a live one, not a copy as a backup made it: its phones hold numbers
 * above its floor, and the upgrade's first opening must not raise the floor above them, which
 * told every phone of every family restored before to start over (reset) for nothing.
 */
static void restored_before_step_8_keeps_its_floor(void **state)
{
	fixture *f = *state;
	uint8_t audio[1000] = {5};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	uint64_t from, to;
	char copy[128], live[256];
	snprintf(copy, sizeof copy, "%s/copy.db", f->dir);
	snprintf(live, sizeof live, "%s/families/%s.db", f->dir, f->fam.id.s);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, copy), 0);
	restore_as(f, copy, f->fam.id.s);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	uint64_t phone = msg.seq; /* a phone listed after the restore */
	store_close(f->s);
	f->s = NULL;
	/* As the version before step 8 left it: the same rows, without the column. */
	alter(live, "ALTER TABLE seq_floor DROP COLUMN applied_ms; PRAGMA user_version = 7");
	usleep(5000); /* a later millisecond: the floor would be above the phone's number */
	reopen(f);
	assert_int_equal(store_mailbox_restored(f->s, f->fam.id.s, &from, &to), 0);
	assert_true(from == 1 && to < phone); /* no reset for the phone */
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(msg.seq, phone + 1);
	/* A copy made before step 8 is still taken up at its first opening. */
	alter(copy, "ALTER TABLE seq_floor DROP COLUMN applied_ms; PRAGMA user_version = 7");
	restore_as(f, copy, f->fam.id.s);
	assert_int_equal(store_mailbox_restored(f->s, f->fam.id.s, &from, &to), 0);
	assert_true(from == 1 && phone < to);
}

static size_t quarantined(const fixture *f)
{
	char cmd[160];
	snprintf(cmd, sizeof cmd, "ls '%s/quarantine' | grep -c '\\.db$'", f->dir);
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%zu", &n), 1);
	pclose(p);
	return n;
}

/*
 * A backup-family file copied to another family's name (the operator's slip) is never served
 * to that family: its owner row names its own family, and a copy taken before mailboxes had
 * one is known by its newest message's sender. The family gets storage_corrupt and the file is
 * set aside in quarantine/, as a damaged one is; under its own name the old copy opens and
 * learns its owner.
 */
static void a_copy_under_another_family_is_set_aside(void **state)
{
	fixture *f = *state;
	uint8_t audio[1000] = {7};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_family li;
	store_member dad;
	store_message msg, list[4];
	int existed;
	size_t n;
	uint64_t latest;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1000, &li, &dad), 0);
	store_new_message theirs = new_message(dad.id.s, audio, sizeof audio);
	assert_int_equal(store_message_append(f->s, li.id.s, &theirs, &msg, &existed), 0);
	char copy[128], old[128], cmd[512];
	snprintf(copy, sizeof copy, "%s/wang.db", f->dir);
	snprintf(old, sizeof old, "%s/wang-old.db", f->dir);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, copy), 0);
	snprintf(cmd, sizeof cmd, "SELECT family = '%s' FROM owner", f->fam.id.s);
	assert_int_equal(count_rows(copy, cmd), 1);
	/* The same copy as a backup taken before step 7 would have it. */
	snprintf(cmd, sizeof cmd, "cp '%s' '%s'", copy, old);
	assert_int_equal(system(cmd), 0);
	alter(old, "DROP TABLE owner; ALTER TABLE seq_floor DROP COLUMN applied_ms; "
	           "PRAGMA user_version = 6");

	for (int pass = 0; pass < 2; pass++) {
		restore_as(f, pass ? old : copy, li.id.s);
		assert_int_equal(store_messages_since(f->s, li.id.s, 0, list, 4, &n, &latest),
		                 STORE_ECORRUPT);
		assert_int_equal(quarantined(f), (size_t)pass + 1);
		assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, list, 4, &n, &latest),
		                 0);
		assert_int_equal(n, 1);
	}
	/* Under its own name the old copy is the family's: it opens, and records so. */
	restore_as(f, old, f->fam.id.s);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, list, 4, &n, &latest), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].sender.s, f->parent.id.s);
	char live[256];
	snprintf(live, sizeof live, "%s/families/%s.db", f->dir, f->fam.id.s);
	snprintf(cmd, sizeof cmd, "SELECT family = '%s' FROM owner", f->fam.id.s);
	assert_int_equal(count_rows(live, cmd), 1);
}

/*
 * A mailbox from before the owner row, opened while directory.db cannot answer who its newest
 * message's sender is (a damaged page of members): the directory's damage is no verdict on
 * the mailbox, which stays in families/ (it was set aside as another family's).
 */
static void a_damaged_directory_sets_no_mailbox_aside(void **state)
{
	fixture *f = *state;
	uint8_t audio[1000] = {7};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg, list[4];
	int existed;
	size_t n;
	uint64_t latest;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	store_close(f->s);
	f->s = NULL;
	char live[256], directory[256];
	snprintf(live, sizeof live, "%s/families/%s.db", f->dir, f->fam.id.s);
	snprintf(directory, sizeof directory, "%s/directory.db", f->dir);
	alter(live, "DROP TABLE owner; ALTER TABLE seq_floor DROP COLUMN applied_ms; "
	            "PRAGMA user_version = 6");
	/* members' b-tree made a table's: reading it is SQLITE_CORRUPT */
	alter(directory, "PRAGMA writable_schema = ON; UPDATE sqlite_master SET rootpage = "
	                 "(SELECT rootpage FROM sqlite_master WHERE name = 'audit_log') "
	                 "WHERE name = 'members'");
	reopen(f);
	assert_int_not_equal(store_messages_since(f->s, f->fam.id.s, 0, list, 4, &n, &latest), 0);
	assert_int_equal(quarantined(f), 0);
	assert_int_equal(access(live, F_OK), 0);
}

/*
 * A mailbox holding what the storage never writes (a damaged or hand-edited copy put back): one
 * message of 3000 bytes of 0x21 with the parent's receipt, then `sql` (its %s: the message's id)
 * run on the closed file, and the family exported to f->dir/name (path: where). The message.
 */
/* The rows the last tampered_export left out (store_export_left_out_fn). */
static struct {
	int64_t rows[4];
	size_t n;
} left_out;

static void note_left_out(void *arg, int64_t row, const char *message_id, int why)
{
	assert_int_equal(why, STORE_EINVAL);
	assert_null(message_id);
	assert_ptr_equal(arg, &left_out);
	assert_true(left_out.n < 4);
	left_out.rows[left_out.n++] = row;
}

static store_message tampered_export(fixture *f, const char *sql_fmt, const char *name,
                                     char path[256])
{
	uint8_t a[3000];
	memset(a, 0x21, sizeof a);
	store_new_message m = new_message(f->parent.id.s, a, sizeof a);
	store_message stored;
	int existed;
	uint64_t seq, bytes;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &stored, &existed), 0);
	assert_int_equal(
	    store_message_listened(f->s, f->fam.id.s, stored.id.s, f->parent.id.s, 2000, &seq), 0);
	store_close(f->s);
	f->s = NULL;
	char sql[512];
	snprintf(path, 256, "%s/families/%s.db", f->dir, f->fam.id.s);
	snprintf(sql, sizeof sql, sql_fmt, stored.id.s);
	alter(path, sql);
	reopen(f);
	snprintf(path, 256, "%s/%s", f->dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	left_out.n = 0;
	assert_int_equal(
	    store_export_family(f->s, f->fam.id.s, fd, &bytes, note_left_out, &left_out), 0);
	close(fd);
	return stored;
}

/*
 * A mailbox that holds what the storage never writes (a damaged or hand-edited copy put back):
 * a sender, a recipient and a receipt with quotes and a backslash. The export is still a zip
 * that unzip tests whole, and its index.json is JSON giving those values back as they are
 * (the review: they were written between quotes unescaped, and the index was not JSON).
 */
static void export_escapes_what_the_mailbox_holds(void **state)
{
	fixture *f = *state;
	char path[256], cmd[1024];
	store_message stored = tampered_export(
	    f,
	    "UPDATE messages SET sender = 'a\"b\\', recipient = '\"to' WHERE id = '%s'; "
	    "UPDATE receipts SET member = '\"aaaaaaaaaaaaaaaaaaaaaaaaa';",
	    "tampered.zip", path);
	snprintf(cmd, sizeof cmd, "unzip -tq '%s' >/dev/null", path);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof cmd,
	         "python3 -c 'import json, sys, zipfile\n"
	         "z = zipfile.ZipFile(sys.argv[1])\n"
	         "names = z.namelist()\n"
	         "assert all(\"/\" not in n and \"\\\\\" not in n and n[0] != \".\" for n in "
	         "names), names\n"
	         "m = json.loads(z.read(\"index.json\"))[\"messages\"]\n"
	         "assert len(m) == 1 and m[0][\"file\"] in names, (m, names)\n"
	         "assert m[0][\"id\"] == sys.argv[2], m\n"
	         "assert m[0][\"to\"] == \"\\\"to\", m\n"
	         "assert m[0][\"sender\"] == \"a\\\"b\\\\\", m\n"
	         "assert m[0][\"listened_by\"] == [\"\\\"\" + \"a\" * 25], m\n"
	         "assert z.read(m[0][\"file\"]) == bytes([0x21]) * 3000\n"
	         "' '%s' '%s'",
	         path, stored.id.s);
	assert_int_equal(system(cmd), 0);
}

/*
 * The same, with bytes that are no UTF-8: a damaged copy's bytes (0xff), and an id column that
 * held a longer text cut to an id's 26 bytes in the middle of a character (nine 3-byte
 * characters are 27 bytes). index.json is still JSON, which is UTF-8: each such byte is given
 * as U+FFFD, the text around it as it is (the review: the bytes went into the index as they
 * were, and Python's json refused it).
 */
static void export_index_is_utf8_whatever_the_mailbox_holds(void **state)
{
#define X23 "xxxxxxxxxxxxxxxxxxxxxxx" /* with the 3 bytes before it, an id's 26 */
	fixture *f = *state;
	char path[256], cmd[1200];
	store_message stored =
	    tampered_export(f,
	                    "UPDATE messages SET sender = CAST(X'61FF62C0AF63' AS TEXT), "
	                    "recipient = '小明小明小明小明小' WHERE id = '%s'; "
	                    "UPDATE receipts SET member = CAST(X'EDA080' AS TEXT) || '" X23 "';",
	                    "not-utf8.zip", path);
	snprintf(cmd, sizeof cmd,
	         "python3 -c 'import json, sys, zipfile\n"
	         "z = zipfile.ZipFile(sys.argv[1])\n"
	         "m = json.loads(z.read(\"index.json\"))[\"messages\"]\n"
	         "assert len(m) == 1 and m[0][\"id\"] == sys.argv[2], m\n"
	         "r = \"\\ufffd\"\n"
	         "assert m[0][\"sender\"] == \"a\" + r + \"b\" + r + r + \"c\", m\n"
	         "assert m[0][\"to\"] == \"小明\" * 4 + r + r, m\n"
	         "assert m[0][\"listened_by\"] == [r * 3 + \"x\" * 23], m\n"
	         "' '%s' '%s'",
	         path, stored.id.s);
	assert_int_equal(system(cmd), 0);
#undef X23
}

/* What store_family_verify told of the rows whose id is malformed. */
static void note_malformed(void *arg, int64_t row, const char *message_id, int why)
{
	note_left_out(arg, row, message_id, why);
}

/*
 * Message ids the storage never writes, in a tampered mailbox: a path, and an id with a byte
 * more (cut to 26 it reads as an id). The export leaves those rows out of the zip and says so
 * by row, no file named after them; verify counts them as malformed, by row, and checks the
 * others (the review: both left them out without a word, as messages deleted meanwhile).
 */
static void malformed_ids_are_named_by_row(void **state)
{
	fixture *f = *state;
	char path[256], mailbox[256], cmd[1200];
	uint8_t a[500];
	memset(a, 0x33, sizeof a);
	store_new_message m = new_message(f->parent.id.s, a, sizeof a);
	store_message longer, good;
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &longer, &existed), 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &good, &existed), 0);
	snprintf(mailbox, sizeof mailbox, "%s/families/%s.db", f->dir, f->fam.id.s);
	char sql[256];
	snprintf(sql, sizeof sql, "SELECT rowid FROM messages WHERE id = '%s'", longer.id.s);
	int longer_row = count_rows(mailbox, sql);
	tampered_export(f,
	                "UPDATE messages SET id = '../../../etc/passwd' WHERE id = '%s'; "
	                "UPDATE messages SET id = id || '0' WHERE rowid = 1;",
	                "malformed.zip", path);
	assert_int_equal(longer_row, 1);
	int path_row = count_rows(mailbox, "SELECT rowid FROM messages WHERE id LIKE '../%'");
	assert_true(path_row > 1);
	assert_int_equal(left_out.n, 2);
	assert_int_equal(left_out.rows[0], longer_row);
	assert_int_equal(left_out.rows[1], path_row);
	snprintf(cmd, sizeof cmd,
	         "python3 -c 'import json, sys, zipfile\n"
	         "z = zipfile.ZipFile(sys.argv[1])\n"
	         "names = z.namelist()\n"
	         "assert all(\"/\" not in n and \"passwd\" not in n for n in names), names\n"
	         "m = json.loads(z.read(\"index.json\"))[\"messages\"]\n"
	         "assert [x[\"id\"] for x in m] == [sys.argv[2]], m\n"
	         "assert len(names) == 2 and m[0][\"file\"] in names, (m, names)\n"
	         "' '%s' '%s'",
	         path, good.id.s);
	assert_int_equal(system(cmd), 0);

	store_verify_counts n;
	left_out.n = 0;
	assert_int_equal(store_family_verify(f->s, f->fam.id.s, note_malformed, &left_out, &n), 0);
	assert_int_equal(n.malformed, 2);
	assert_int_equal(n.messages, 1); /* the good one */
	assert_int_equal(n.damaged, 0);
	assert_int_equal(left_out.n, 2);
	assert_int_equal(left_out.rows[0], longer_row);
	assert_int_equal(left_out.rows[1], path_row);
}

/* What the export told of the messages it left out for their audio. */
static struct {
	char ids[2][STORE_ID_LEN + 1];
	int why[2];
	size_t n;
} lost;

static void note_lost(void *arg, int64_t row, const char *message_id, int why)
{
	assert_ptr_equal(arg, &lost);
	assert_true(row > 0);
	assert_non_null(message_id);
	assert_true(lost.n < 2);
	snprintf(lost.ids[lost.n], sizeof lost.ids[0], "%s", message_id);
	lost.why[lost.n++] = why;
}

/*
 * A visible message whose audio row is gone (a damaged or hand-edited mailbox put back), which
 * verify counts damaged: the export leaves it out and names it damaged to a caller that takes
 * what is left out (jiayinctl), and fails without one, as for a clip whose pages SQLite finds
 * damaged (the review: it was left out as a message deleted meanwhile, without a word, and
 * the operator saving what could be read of the mailbox never heard of it).
 */
static void export_names_a_voice_whose_audio_row_is_gone(void **state)
{
	fixture *f = *state;
	uint8_t a[2000];
	memset(a, 0x44, sizeof a);
	store_new_message m = new_message(f->parent.id.s, a, sizeof a);
	store_message gone, kept;
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &gone, &existed), 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &kept, &existed), 0);
	store_close(f->s);
	f->s = NULL;
	char mailbox[256], sql[256], path[256], cmd[1200];
	snprintf(mailbox, sizeof mailbox, "%s/families/%s.db", f->dir, f->fam.id.s);
	snprintf(sql, sizeof sql,
	         "DELETE FROM audio WHERE message = (SELECT rowid FROM messages WHERE id = '%s')",
	         gone.id.s);
	alter(mailbox, sql);
	reopen(f);

	store_verify_counts n;
	assert_int_equal(store_family_verify(f->s, f->fam.id.s, NULL, NULL, &n), 0);
	assert_int_equal(n.damaged, 1);

	uint64_t bytes;
	snprintf(path, sizeof path, "%s/gone.zip", f->dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	lost.n = 0;
	assert_int_equal(store_export_family(f->s, f->fam.id.s, fd, &bytes, note_lost, &lost), 0);
	close(fd);
	assert_int_equal(lost.n, 1);
	assert_string_equal(lost.ids[0], gone.id.s);
	assert_int_equal(lost.why[0], STORE_ECORRUPT);
	snprintf(cmd, sizeof cmd,
	         "python3 -c 'import json, sys, zipfile\n"
	         "z = zipfile.ZipFile(sys.argv[1])\n"
	         "m = json.loads(z.read(\"index.json\"))[\"messages\"]\n"
	         "assert [x[\"id\"] for x in m] == [sys.argv[2]], m\n"
	         "assert len(z.namelist()) == 2, z.namelist()\n"
	         "' '%s' '%s'",
	         path, kept.id.s);
	assert_int_equal(system(cmd), 0);

	snprintf(path, sizeof path, "%s/gone-server.zip", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(store_export_family(f->s, f->fam.id.s, fd, &bytes, NULL, NULL),
	                 STORE_ECORRUPT);
	close(fd);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(backups),
	    T(restored_copy_numbers_above_the_floor),
	    T(restored_before_step_8_keeps_its_floor),
	    T(a_copy_under_another_family_is_set_aside),
	    T(a_damaged_directory_sets_no_mailbox_aside),
	    T(damaged_family_keeps_its_rows),
	    T(backup_drops_a_family_erased_meanwhile),
	    T(backup_drops_a_family_erased_after_its_copy),
	    T(backup_extra_files_and_leftovers),
	    T(backup_leaves_what_is_not_a_leftover),
	    T(backup_family_through_a_hidden_name),
	    T(backups_where_rename_takes_no_flags),
	    T(export_zip),
	    T(export_carries_on_through_changes),
	    T(export_to_a_full_disk),
	    T(export_escapes_what_the_mailbox_holds),
	    T(export_index_is_utf8_whatever_the_mailbox_holds),
	    T(malformed_ids_are_named_by_row),
	    T(export_names_a_voice_whose_audio_row_is_gone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
