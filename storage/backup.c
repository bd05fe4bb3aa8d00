/*
 * backup.c — online backups with SQLite's backup API, and a family's export as a zip.
 *
 * A backup copies a database in one backup step from a read connection: one read transaction,
 * so the copy is a consistent snapshot while writers carry on in the WAL. Backups are made
 * under a .partial-PID name and renamed into place once synced (a kill leaves no cut copy
 * under the name asked for; the next backup removes leftovers no backup holds). The export is
 * what a parent downloads on a phone: zip (phones open it without an app; tar they do not), Ogg
 * files stored uncompressed, and an index.json naming who sent what to whom and when. It is built
 * a clip at a time (each read whole in one read transaction, written after it): memory is the
 * largest clip and a page of the listing.
 */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT_PAGE 64        /* messages listed per query */
#define EXPORT_BUF 262144     /* the clip buffer to begin with (grown to the largest clip) */
#define COPY_BUF 16384        /* an extra file is copied through this much stack */

/*
 * Errors: a failure of the file system gives its errno to the caller (errno on return, as
 * store.h says), so that "No such file or directory" reaches the administrator, not only
 * "storage_io_error". Internally the first errno is carried in *err.
 */

/* The storage code for a file-system call's errno; *err keeps the first errno. */
static int fs_fail(int *err, int e)
{
	if (!*err)
		*err = e;
	return e == EEXIST || e == ENOTEMPTY             ? STORE_EEXIST
	       : e == ENOSPC || e == EDQUOT              ? STORE_EFULL
	       : e == EROFS || e == EACCES || e == EPERM ? STORE_EROFS
	       : e == ENOMEM                             ? STORE_ENOMEM
	                                                 : STORE_EIO;
}

/* A public call's return: rc, with errno set to the file system's reason (0: not one). */
static int done_with(int rc, int err)
{
	errno = rc < 0 ? err : 0;
	return rc;
}

/* dir/name into buf (PATH_CAP bytes); false if it does not fit. */
static bool path_in(char *buf, const char *dir, const char *name)
{
	int n = snprintf(buf, PATH_CAP, "%s/%s", dir, name);
	return n > 0 && n < PATH_CAP;
}

/* path's directory ("." for a bare name) and base name (PATH_CAP bytes each); false when
 * the base name is empty (a path ending in '/') or either does not fit. */
static bool split_path(const char *path, char *dir, char *base)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;
	size_t dlen = slash ? (size_t)(slash - path) : 1;
	if (!*name || strlen(name) >= PATH_CAP || dlen >= PATH_CAP)
		return false;
	if (!slash)
		memcpy(dir, ".", 2);
	else if (slash == path)
		memcpy(dir, "/", 2);
	else
		memcpy(dir, path, dlen), dir[dlen] = '\0';
	memcpy(base, name, strlen(name) + 1);
	return true;
}

/* A copy's database file and whatever SQLite left beside it (WAL, shared memory, journal). */
static void remove_db_copy(const char *path)
{
	char journal[PATH_CAP];
	int n = snprintf(journal, sizeof journal, "%s-journal", path);
	if (n > 0 && n < (int)sizeof journal)
		unlink(journal);
	unlink_db_files(path);
}

/*
 * A backup in progress holds flock(LOCK_EX) on its partial copy (the DEST.partial-PID folder, or
 * the .NAME.partial-PID file) until it is renamed or removed. A partial copy that no one holds
 * is what a backup killed midway left. The lock, not the process id, decides: a live backup
 * in another PID namespace (a container) or on another host sharing the folder has an id that
 * means nothing here.
 */
/*
 * Our own partial copy, held. A file system that has no flock for it (NFS emulates flock with
 * POSIX locks, which need a file open for writing: a folder cannot be) leaves it unheld
 * rather than failing the backup; remove_stale() then never removes it, since it removes
 * only what it could lock.
 */
static int hold(int fd)
{
	if (flock(fd, LOCK_EX) == 0)
		return 0;
	int e = errno;
	return e == EOPNOTSUPP || e == ENOLCK || e == EBADF || e == EINVAL ? 0 : -e;
}

static bool partial_name(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(name, prefix, n) != 0 || !isdigit((unsigned char)name[n]))
		return false;
	for (const char *p = name + n; *p; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	return true;
}

/* Every file in the folder open at fd goes, and its families/ folder with its files; never
 * through a symbolic link (a partial backup holds nothing else). */
static void empty_dir_at(int fd, bool top)
{
	int own = dup(fd);
	DIR *d = own >= 0 ? fdopendir(own) : NULL;
	if (!d) {
		if (own >= 0)
			close(own);
		return;
	}
	for (struct dirent *e; (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (top && strcmp(e->d_name, "families") == 0) {
			int sub =
			    openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				empty_dir_at(sub, false);
				close(sub);
				unlinkat(fd, e->d_name, AT_REMOVEDIR);
				continue;
			}
		}
		unlinkat(fd, e->d_name, 0); /* a folder stays, and so does its parent */
	}
	closedir(d);
}

/*
 * Removes the partial copies in `dir` whose names begin with prefix that no backup holds
 * (folders when `folders`, else files with their SQLite journal, WAL and shm), only if they are
 * ours (our user's, and a folder or a regular file, not a link to one).
 */
static void remove_stale(const char *dir, const char *prefix, bool folders)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int own = dfd >= 0 ? dup(dfd) : -1;
	DIR *d = own >= 0 ? fdopendir(own) : NULL;
	if (!d) {
		if (own >= 0)
			close(own);
		if (dfd >= 0)
			close(dfd);
		return;
	}
	for (struct dirent *e; (e = readdir(d));) {
		if (!partial_name(e->d_name, prefix))
			continue;
		/* A file for writing: an exclusive lock emulated over NFS needs it. */
		int flags = O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
		            (folders ? O_RDONLY | O_DIRECTORY : O_RDWR);
		int fd = openat(dfd, e->d_name, flags);
		struct stat st;
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && st.st_uid == geteuid() &&
		    (folders ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode)) &&
		    flock(fd, LOCK_EX | LOCK_NB) == 0) {
			if (folders) {
				empty_dir_at(fd, true);
				unlinkat(dfd, e->d_name, AT_REMOVEDIR);
			} else {
				/* And what SQLite made beside it: the journal the mark is written
				 * through, and the WAL and its index opened to leave WAL mode (the
				 * review: a kill then left those two for good). */
				static const char *const beside[] = {"-journal", "-wal", "-shm"};
				unlinkat(dfd, e->d_name, 0);
				for (size_t i = 0; i < 3; i++) {
					char name[PATH_CAP];
					int n = snprintf(name, sizeof name, "%s%s", e->d_name,
					                 beside[i]);
					if (n > 0 && n < (int)sizeof name)
						unlinkat(dfd, name, 0);
				}
			}
		}
		close(fd);
	}
	closedir(d);
	close(dfd);
}

/*
 * `from` renamed to `to`, never over what is there: renameat2(RENAME_NOREPLACE), or where the
 * file system takes no flags for a rename (NFS and many FUSE mounts: EINVAL; no renameat2:
 * ENOSYS) the same another way: a folder through a new empty folder under the name, which the
 * rename replaces (never one with files in it), a file through a second link, its first name
 * then removed (the review: every backup to a NAS mounted over NFS failed, "Invalid argument").
 * 0, or -1 with errno.
 */
static int rename_new(const char *from, const char *to, bool folder)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (!folder) {
		if (link(from, to) != 0)
			return -1;
		unlink(from);
		return 0;
	}
	if (mkdir(to, 0700) != 0)
		return -1;
	if (rename(from, to) == 0)
		return 0;
	int e = errno;
	rmdir(to);
	errno = e;
	return -1;
}

/*
 * Copy the database behind `src` into a new file at dest_path. The file is made first, by us:
 * never over an existing one or through a symbolic link, and readable by its owner alone (a
 * family's voices; SQLite would make it 0644 less the umask). Its journal takes its mode.
 * The copy is synced; a failed one is removed.
 */
static int backup_db(db *d, const char *dest_path, bool made, bool mailbox, int *err)
{
	/* A family's copy is marked (mailbox step 6): the change it was taken at, and a floor
	 * 2^32 above it that a restored copy numbers its changes from, so that no change number
	 * a phone saw after the backup is given again to another change, and a phone's `since`
	 * between the two is told to start over (the review: phones missed messages after a
	 * restore, silently). */
	static const char mark_sql[] =
	    "INSERT OR REPLACE INTO seq_floor (id, restored_latest, floor) "
	    "SELECT 1, l, l + 4294967296 FROM (SELECT max("
	    "coalesce((SELECT max(seq) FROM messages WHERE seq != rowid), 0), "
	    "coalesce((SELECT max(rowid) FROM messages), 0), "
	    "coalesce((SELECT floor FROM seq_floor), 0)) AS l)";
	conn *c;
	sqlite3 *dest = NULL;
	int fd = -1;
	if (!made) {
		fd = open(dest_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return fs_fail(err, errno);
		close(fd);
	}
	int rc = db_read_begin(d, &c);
	if (rc < 0) {
		unlink(dest_path);
		return rc;
	}
	/*
	 * The file made above (O_EXCL, never through a link). Not SQLITE_OPEN_NOFOLLOW: it refuses
	 * a link anywhere in the path (a /var/backups that is one), not only the file's own name.
	 */
	int r = sqlite3_open_v2(dest_path, &dest, SQLITE_OPEN_READWRITE, NULL);
	if (r == SQLITE_OK) {
		sqlite3_backup *b = sqlite3_backup_init(dest, "main", c->db, "main");
		if (b) {
			r = sqlite3_backup_step(b, -1); /* all pages in one snapshot */
			int fin = sqlite3_backup_finish(b);
			r = r == SQLITE_DONE ? fin : r;
			/* The copy took the source's WAL mode from its header: the mark is written
			 * through a rollback journal instead, so no -wal or -shm is made beside it
			 * (a killed backup would leave them, a failed checkpoint would keep the
			 * mark in them: the review). The server makes it WAL again once restored.
			 */
			if (r == SQLITE_OK && mailbox)
				r = sqlite3_exec(dest, "PRAGMA journal_mode=DELETE", NULL, NULL,
				                 NULL);
			if (r == SQLITE_OK && mailbox)
				r = sqlite3_exec(dest, mark_sql, NULL, NULL, NULL);
		} else {
			r = sqlite3_errcode(dest);
		}
	}
	rc = r == SQLITE_OK ? 0 : store_map_sqlite(r);
	if (rc < 0 && dest && sqlite3_system_errno(dest) && !*err)
		*err = sqlite3_system_errno(dest); /* a full disk says so */
	if (dest && sqlite3_close_v2(dest) != SQLITE_OK && rc == 0)
		rc = STORE_EIO; /* what it had still to write may not be in the copy */
	db_read_end(d, c);
	/* SQLite syncs its commit; this makes sure of it whatever the journal mode. */
	if (rc == 0 && (fd = open(dest_path, O_RDONLY | O_CLOEXEC)) < 0)
		rc = fs_fail(err, errno);
	if (rc == 0) {
		if (fsync(fd) != 0)
			rc = fs_fail(err, errno);
		close(fd);
	}
	if (rc < 0)
		remove_db_copy(dest_path);
	return rc;
}

/* One family's database copied straight into dest_path (a new file). */
static int family_to(store *s, const char *family_id, const char *dest_path, int *err)
{
	family *f;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	rc = backup_db(f->db, dest_path, false, true, err);
	family_release(s, f);
	return rc;
}

/*
 * Into .NAME.partial-PID beside dest_path, renamed to dest_path (never over a file that
 * appeared meanwhile) once synced: an interrupted backup never leaves a cut database under
 * the name asked for. Leftovers that no backup holds are removed first.
 */
int store_backup_family(store *s, const char *family_id, const char *dest_path)
{
	char dir[PATH_CAP], base[PATH_CAP], prefix[PATH_CAP], tmp[PATH_CAP];
	struct stat st;
	family *f;
	int err = 0;
	if (!dest_path || !*dest_path)
		return done_with(STORE_EINVAL, 0);
	if (strlen(dest_path) > STORE_DIR_MAX)
		return done_with(STORE_EINVAL, ENAMETOOLONG);
	int rc = family_acquire(s, family_id, &f); /* an unknown family is that, first */
	if (rc < 0)
		return done_with(rc, 0);
	int n = 0, m = 0;
	if (lstat(dest_path, &st) == 0)
		rc = fs_fail(&err, EEXIST);
	else if (!split_path(dest_path, dir, base)) /* "dir/": a directory's name, not a file's */
		rc = STORE_EINVAL, err = EISDIR;
	else if ((n = snprintf(prefix, sizeof prefix, ".%s.partial-", base)) >= PATH_CAP ||
	         (m = snprintf(tmp, sizeof tmp, "%s/%s%ld", dir, prefix, (long)getpid())) >=
	             PATH_CAP ||
	         n < 0 || m < 0)
		rc = STORE_EINVAL, err = ENAMETOOLONG;
	if (rc == 0) {
		remove_stale(dir, prefix, false);
		/* Ours, new, and held until it is renamed or removed (remove_stale). */
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		int held = fd < 0 ? -errno : hold(fd);
		if (held < 0)
			rc = fs_fail(&err, -held);
		if (rc == 0)
			rc = backup_db(f->db, tmp, true, true, &err);
		if (rc == 0 && rename_new(tmp, dest_path, false) != 0)
			rc = fs_fail(&err, errno);
		if (rc == 0)
			sync_parent(dest_path);
		else if (fd >= 0)
			remove_db_copy(tmp); /* what there is of it */
		if (fd >= 0)
			close(fd);
	}
	family_release(s, f);
	return done_with(rc, err);
}

/* The family's rows out of the copied directory (theirs by cascade). */
static int erase_rows(sqlite3_stmt *erase, const char *family_id)
{
	sqlite3_bind_text(erase, 1, family_id, -1, SQLITE_STATIC);
	int rc = step_done(erase);
	sqlite3_reset(erase);
	return rc;
}

/*
 * Each family of the copied directory, in turn, into tmp/families/. A family erased since the
 * directory was copied is erased from the copy too (its rows, and theirs by cascade): one
 * erased before its turn is not copied, and one erased while or after it was copied (by
 * another process: a parent's DELETE on the server, another jiayinctl) is taken out again
 * by a last pass over the copy once every family is in (the review: its voices, members and
 * phones stayed in the backup, and a restore brought the erased family back). A family
 * whose mailbox is damaged (set aside now, or before) keeps its rows without a mailbox, as
 * the live directory has it, and is reported: a restore then still has the family, to put an
 * earlier copy of its mailbox back into (the review: its rows were erased from the copy as an
 * erased family's, and a restore lost its members and phones for good). The live directory
 * is not held while families are copied.
 */
static int backup_families(store *s, const char *tmp, unsigned *families,
                           store_backup_damaged_fn damaged, void *arg, int *err)
{
	static const char sql_next[] = "SELECT id FROM families WHERE id > ? ORDER BY id LIMIT 1";
	static const char sql_erase[] = "DELETE FROM families WHERE id = ?";
	char path[PATH_CAP];
	sqlite3 *copy = NULL;
	sqlite3_stmt *next = NULL, *erase = NULL;
	store_id last = {{0}};
	if (!path_in(path, tmp, "directory.db"))
		return STORE_EINVAL;
	int r = sqlite3_open_v2(path, &copy, SQLITE_OPEN_READWRITE, NULL);
	if (r == SQLITE_OK)
		r = sqlite3_exec(copy, "PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON", NULL,
				 NULL, NULL);
	if (r == SQLITE_OK)
		r = sqlite3_prepare_v2(copy, sql_next, -1, &next, NULL);
	if (r == SQLITE_OK)
		r = sqlite3_prepare_v2(copy, sql_erase, -1, &erase, NULL);
	int rc = r == SQLITE_OK ? 0 : store_map_sqlite(r);
	while (rc == 0) {
		sqlite3_bind_text(next, 1, last.s, -1, SQLITE_STATIC);
		r = sqlite3_step(next);
		if (r == SQLITE_ROW)
			copy_text(last.s, sizeof last.s, sqlite3_column_text(next, 0));
		sqlite3_reset(next);
		if (r == SQLITE_DONE)
			break;
		if (r != SQLITE_ROW) {
			rc = store_map_sqlite(r);
			break;
		}
		char name[sizeof last.s + 16];
		snprintf(name, sizeof name, "families/%s.db", last.s);
		rc = path_in(path, tmp, name) ? family_to(s, last.s, path, err) : STORE_EINVAL;
		if (rc == STORE_ENOTFOUND) {
			rc = erase_rows(erase, last.s);
		} else if (rc == STORE_ECORRUPT) {
			if (damaged)
				damaged(arg, last.s);
			rc = 0;
		} else if (rc == 0) {
			(*families)++;
		}
	}
	/* The last pass: a family copied whose rows are gone from the live directory now. */
	last.s[0] = '\0';
	while (rc == 0) {
		store_family live;
		sqlite3_bind_text(next, 1, last.s, -1, SQLITE_STATIC);
		r = sqlite3_step(next);
		if (r == SQLITE_ROW)
			copy_text(last.s, sizeof last.s, sqlite3_column_text(next, 0));
		sqlite3_reset(next);
		if (r != SQLITE_ROW) {
			rc = r == SQLITE_DONE ? 0 : store_map_sqlite(r);
			break;
		}
		if ((rc = store_family_get(s, last.s, &live)) != STORE_ENOTFOUND)
			continue;
		char name[sizeof last.s + 16];
		snprintf(name, sizeof name, "families/%s.db", last.s);
		if (path_in(path, tmp, name) && access(path, F_OK) == 0) {
			remove_db_copy(path);
			(*families)--;
		}
		rc = erase_rows(erase, last.s);
	}
	sqlite3_finalize(next);
	sqlite3_finalize(erase);
	if (sqlite3_close(copy) != SQLITE_OK && rc == 0)
		rc = STORE_EIO;
	return rc;
}

/*
 * The file `from` copied into dir under its base name: a new file of mode 0600, synced. A
 * missing `from` is STORE_ENOTFOUND. The bytes pass through the stack and are wiped there
 * (the server's key is one such file).
 */
static int copy_in(const char *dir, const char *from, int *err)
{
	char src_dir[PATH_CAP], base[PATH_CAP], to[PATH_CAP];
	uint8_t buf[COPY_BUF];
	if (!split_path(from, src_dir, base) || !path_in(to, dir, base))
		return STORE_EINVAL;
	int in = open(from, O_RDONLY | O_CLOEXEC), rc = 0;
	if (in < 0) {
		int e = errno;
		rc = fs_fail(err, e);
		return e == ENOENT ? STORE_ENOTFOUND : rc;
	}
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		rc = fs_fail(err, errno);
	while (rc == 0) {
		ssize_t n = read(in, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? fs_fail(err, errno) : 0;
			break;
		}
		for (ssize_t off = 0; rc == 0 && off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				rc = fs_fail(err, w < 0 ? errno : EIO);
			else
				off += w;
		}
	}
	explicit_bzero(buf, sizeof buf);
	if (rc == 0 && fsync(out) != 0)
		rc = fs_fail(err, errno);
	if (out >= 0 && close(out) != 0 && rc == 0)
		rc = fs_fail(err, errno);
	close(in);
	return rc;
}

/*
 * Built in DEST.partial-PID and renamed to DEST once complete and synced, the extra files
 * in it: a backup that failed (a full disk, a corrupt family, a missing extra file) leaves
 * nothing behind, and DEST is always whole. A backup killed midway leaves its DEST.partial-PID,
 * removed by the next backup to DEST (no backup holds its lock any more).
 */
int store_backup_all(store *s, const char *dest_dir, const char *const *extra_files,
                     unsigned *families, store_backup_damaged_fn damaged, void *arg)
{
	char dest[PATH_CAP], dir[PATH_CAP], base[PATH_CAP], prefix[PATH_CAP], tmp[PATH_CAP];
	char path[PATH_CAP];
	struct stat st;
	int err = 0;
	*families = 0;
	if (!dest_dir || !*dest_dir)
		return done_with(STORE_EINVAL, 0);
	size_t len = strlen(dest_dir);
	if (len > STORE_DIR_MAX)
		return done_with(STORE_EINVAL, ENAMETOOLONG);
	while (len > 1 && dest_dir[len - 1] == '/') /* DEST/ names the same new directory */
		len--;
	memcpy(dest, dest_dir, len);
	dest[len] = '\0';
	if (lstat(dest, &st) == 0)
		return done_with(STORE_EEXIST, EEXIST);
	if (!split_path(dest, dir, base))
		return done_with(STORE_EINVAL, EISDIR);
	int n = snprintf(prefix, sizeof prefix, "%s.partial-", base);
	int m = snprintf(tmp, sizeof tmp, "%s.partial-%ld", dest, (long)getpid());
	if (n < 0 || n >= PATH_CAP || m < 0 || m >= PATH_CAP)
		return done_with(STORE_EINVAL, ENAMETOOLONG);
	remove_stale(dir, prefix, true);
	if (mkdir(tmp, 0700) != 0) {
		int rc = fs_fail(&err, errno);
		return done_with(rc, err);
	}
	/* Held until renamed or removed: another backup to DEST leaves it alone meanwhile. */
	int held = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int locked = held < 0 ? -errno : hold(held);
	int rc = locked == 0 ? 0 : fs_fail(&err, -locked);
	if (rc == 0)
		rc = path_in(path, tmp, "families") && mkdir(path, 0700) == 0
		         ? 0
		         : fs_fail(&err, errno);
	if (rc == 0 && path_in(path, tmp, "directory.db"))
		rc = backup_db(s->directory, path, false, false, &err);
	if (rc == 0)
		rc = backup_families(s, tmp, families, damaged, arg, &err);
	for (size_t i = 0; rc == 0 && extra_files && extra_files[i]; i++)
		rc = copy_in(tmp, extra_files[i], &err);
	if (rc == 0) { /* the names in both folders, before the rename makes them DEST's */
		if (path_in(path, tmp, "families/"))
			sync_parent(path);
		if (path_in(path, tmp, "directory.db"))
			sync_parent(path);
	}
	if (rc == 0 && rename_new(tmp, dest, true) != 0)
		rc = fs_fail(&err, errno);
	if (rc == 0) {
		sync_parent(dest);
		close(held);
		return done_with(0, 0);
	}
	if (held >= 0) {
		empty_dir_at(held, true);
		close(held);
	}
	rmdir(tmp);
	sync_parent(tmp);
	*families = 0;
	return done_with(rc, err);
}

/* ---- export ---- */

/* A growable text buffer for index.json. */
typedef struct text {
	char *p;
	size_t len, cap;
	bool failed;
} text;

static void put(text *t, const char *s, size_t n)
{
	if (t->failed)
		return;
	if (n > t->cap - t->len) {
		size_t cap = t->cap ? t->cap : 4096;
		while (cap - t->len < n)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (!p) {
			t->failed = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
}

static void puts_(text *t, const char *s)
{
	put(t, s, strlen(s));
}

static void putf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(text *t, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof buf)
		t->failed = true;
	else
		put(t, buf, (size_t)n);
}

/*
 * The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong form, no surrogate,
 * nothing past U+10FFFF), or 0 when the byte at p begins none.
 */
static size_t utf8_sequence(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, lo = p[0] == 0xe0 ? 0xa0 : 0x80, hi = p[0] == 0xed ? 0x9f : 0xbf;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, lo = p[0] == 0xf0 ? 0x90 : 0x80, hi = p[0] == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0; /* the string's NUL ends it too */
	return n;
}

/*
 * A JSON string: quotes, backslashes and control characters escaped; UTF-8 passed through, and
 * each byte that is not part of it written as U+FFFD. JSON is UTF-8 (RFC 8259), and what is
 * written here comes from databases a damaged or hand-edited copy put back, or was cut to an id's
 * 26 bytes in the middle of a character: its bytes as they were made the index no JSON.
 */
static void put_json_string(text *t, const char *s)
{
	puts_(t, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = utf8_sequence(p);
		if (*p == '"' || *p == '\\')
			putf(t, "\\%c", *p);
		else if (*p < 0x20)
			putf(t, "\\u%04x", *p);
		else if (n == 0)
			puts_(t, "\\ufffd");
		else
			put(t, (const char *)p, n);
		p += n ? n : 1;
	}
	puts_(t, "\"");
}

static void iso_time(int64_t ms, char *buf, size_t cap, const char *fmt)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(buf, cap, fmt, &tm);
}

static int add_entry(struct archive *a, const char *name, uint64_t size, int64_t mtime_ms)
{
	struct archive_entry *e = archive_entry_new();
	if (!e)
		return STORE_ENOMEM;
	archive_entry_set_pathname(e, name);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_mtime(e, (time_t)(mtime_ms / 1000), 0);
	int r = archive_write_header(a, e);
	archive_entry_free(e);
	return r == ARCHIVE_OK ? 0 : STORE_EIO;
}

/*
 * Ids are written as JSON strings like names, escaped: they come from the databases, which
 * only the storage writes, but a damaged or hand-edited mailbox (a restored copy) can hold
 * anything, and a quote in one made the index unreadable JSON (the review).
 */
static void index_message(text *t, const store_message *m, const char *file, bool first)
{
	char when[32];
	iso_time(m->created_ms, when, sizeof when, "%Y-%m-%dT%H:%M:%SZ");
	putf(t, "%s\n    {\"id\": ", first ? "" : ",");
	put_json_string(t, m->id.s);
	puts_(t, ", \"file\": ");
	put_json_string(t, file);
	puts_(t, ", \"sender\": ");
	put_json_string(t, m->sender.s);
	puts_(t, ", \"to\": ");
	if (m->to.s[0])
		put_json_string(t, m->to.s);
	else
		puts_(t, "null");
	putf(t, ", \"created_at\": \"%s\", \"duration_ms\": %u, \"bytes\": %llu, \"sha256\": \"",
	     when, m->duration_ms, (unsigned long long)m->bytes);
	for (int i = 0; i < STORE_HASH_LEN; i++)
		putf(t, "%02x", m->sha256[i]);
	puts_(t, "\", \"listened_by\": [");
	for (unsigned i = 0; i < m->listened_count; i++) {
		puts_(t, i ? ", " : "");
		put_json_string(t, m->listened_by[i].s);
	}
	puts_(t, "]}");
}

/* A message left out of the zip (its audio unreadable: "unreadable" for the disk's failure,
 * "damaged" for SQLite's or a row no storage wrote): told to the caller by its row, and its id
 * when it has one, and added to t, the index's left_out entries. */
static void tell_left_out(store_export_left_out_fn left_out, void *arg, text *t,
                          sqlite3_int64 row, const store_message *m, bool id_ok, int why)
{
	char when[32];
	left_out(arg, row, id_ok ? m->id.s : NULL, why);
	iso_time(m->created_ms, when, sizeof when, "%Y-%m-%dT%H:%M:%SZ");
	putf(t, "%s\n    {\"id\": ", t->len ? "," : "");
	if (id_ok)
		put_json_string(t, m->id.s);
	else
		puts_(t, "null");
	putf(t, ", \"created_at\": \"%s\", \"why\": \"%s\"}", when,
	     why == STORE_EIO ? "unreadable" : "damaged");
}

static void index_header(text *t, const store_family *fam, const store_member *members,
			 size_t nmembers, int64_t now_ms)
{
	char when[32];
	iso_time(now_ms, when, sizeof when, "%Y-%m-%dT%H:%M:%SZ");
	puts_(t, "{\n  \"family\": {\"id\": ");
	put_json_string(t, fam->id.s);
	puts_(t, ", \"name\": ");
	put_json_string(t, fam->name);
	putf(t, "},\n  \"exported_at\": \"%s\",\n  \"members\": [", when);
	for (size_t i = 0; i < nmembers; i++) {
		puts_(t, i ? ",\n    {\"id\": " : "\n    {\"id\": ");
		put_json_string(t, members[i].id.s);
		puts_(t, ", \"name\": ");
		put_json_string(t, members[i].name);
		putf(t, ", \"role\": \"%s\"", store_role_name(members[i].role));
		if (members[i].removed_ms) { /* a former member, who sent some of the messages */
			iso_time(members[i].removed_ms, when, sizeof when, "%Y-%m-%dT%H:%M:%SZ");
			putf(t, ", \"left_at\": \"%s\"", when);
		}
		puts_(t, "}");
	}
	puts_(t, "\n  ],\n  \"messages\": [");
}

typedef struct sink_ctx {
	int fd;
	uint64_t bytes;
	int err; /* the first failed write's errno: libarchive keeps only "failed" */
} sink_ctx;

/* libarchive's write callback: all of buf to the caller's fd, or -1 (errno in k->err). */
static la_ssize_t zip_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
	sink_ctx *k = ctx;
	const uint8_t *p = buf;
	size_t left = len;
	(void)a;
	while (left > 0) {
		ssize_t n = write(k->fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!k->err)
				k->err = n < 0 ? errno : ENOSPC; /* nothing written: no room */
			return -1;
		}
		p += n;
		left -= (size_t)n;
		k->bytes += (uint64_t)n;
	}
	return (la_ssize_t)len;
}

int store_export_family(store *s, const char *family_id, int fd, uint64_t *bytes,
                        store_export_left_out_fn left_out, void *arg)
{
	store_family fam;
	store_member *members = NULL;
	store_message *page = NULL;
	sqlite3_int64 *rowids = NULL;
	uint8_t *buf = NULL;
	size_t cap = EXPORT_BUF;
	text index = {0}, gone = {0}; /* gone: the index's left_out */
	sink_ctx sink = {fd, 0, 0};
	int err = 0;
	size_t nmembers = 0;
	struct archive *a = NULL;
	*bytes = 0;
	int rc = store_family_get(s, family_id, &fam);
	if (rc < 0)
		return done_with(rc, 0);
	/* All of them, former members too: the index names every sender. */
	members = calloc(STORE_MEMBER_ROWS_MAX, sizeof *members);
	page = calloc(EXPORT_PAGE, sizeof *page);
	rowids = calloc(EXPORT_PAGE, sizeof *rowids);
	buf = malloc(cap);
	a = archive_write_new();
	rc = STORE_ENOMEM;
	if (!members || !page || !rowids || !buf || !a)
		goto done;
	if ((rc = store_members_all(s, family_id, members, STORE_MEMBER_ROWS_MAX, &nmembers)) < 0)
		goto done;
	rc = STORE_EIO;
	if (archive_write_set_format_zip(a) != ARCHIVE_OK ||
	    archive_write_zip_set_compression_store(a) != ARCHIVE_OK ||
	    archive_write_open(a, &sink, NULL, zip_write, NULL) != ARCHIVE_OK)
		goto done;
	index_header(&index, &fam, members, nmembers, (int64_t)time(NULL) * 1000);

	/*
	 * The visible messages page by page in rowid order, each once (a receipt or a keep
	 * meanwhile gives it a new change number, not a new place). Each clip is read whole in
	 * one read transaction and written after it: no snapshot waits on the caller's fd. One
	 * deleted or hidden since its page was read is left out of zip and index.
	 */
	sqlite3_int64 after = 0;
	bool first = true;
	for (;;) {
		size_t n;
		if ((rc = messages_visible_after(s, family_id, &after, page, rowids, EXPORT_PAGE,
		                                 &n)) < 0)
			goto done;
		for (size_t i = 0; i < n; i++) {
			const store_message *m = &page[i];
			store_audio_info info;
			/* An id the storage never wrote (a tampered or damaged mailbox) names no
			 * file: the row is left out, and said so, where it was looked up, found
			 * under no id and left out as a message deleted meanwhile (the review). */
			if (store_id_check(m->id.s) < 0) {
				if (left_out)
					tell_left_out(left_out, arg, &gone, rowids[i], m, false,
					              STORE_EINVAL);
				continue;
			}
			rc = audio_load(s, family_id, m->id.s, &buf, &cap, &info);
			if (rc == STORE_ENOTFOUND)
				continue;
			/* A clip the disk fails to read (a bad sector) or whose pages are damaged,
			 * told to a caller that says so (jiayinctl): the other messages are what an
			 * operator saves of a failing mailbox before a copy is put back (the
			 * review: one such clip failed the whole export). */
			if (left_out && (rc == STORE_EIO || rc == STORE_ECORRUPT)) {
				tell_left_out(left_out, arg, &gone, rowids[i], m, true, rc);
				continue;
			}
			char when[32], name[96];
			iso_time(m->created_ms, when, sizeof when, "%Y-%m-%d_%H%M%S");
			snprintf(name, sizeof name, "%s_%s.ogg", when, m->id.s);
			if (rc < 0 || (rc = add_entry(a, name, info.bytes, m->created_ms)) < 0)
				goto done;
			rc = STORE_EIO;
			if (archive_write_data(a, buf, info.bytes) != (la_ssize_t)info.bytes)
				goto done;
			index_message(&index, m, name, first);
			first = false;
		}
		if (n < EXPORT_PAGE)
			break;
	}
	/* What was left out, said in the file the family keeps, not only to the caller. */
	puts_(&index, "\n  ],\n  \"left_out\": [");
	if (gone.len)
		put(&index, gone.p, gone.len);
	puts_(&index, gone.len ? "\n  ]\n}\n" : "]\n}\n");
	rc = STORE_ENOMEM;
	if (index.failed || gone.failed)
		goto done;
	if ((rc = add_entry(a, "index.json", index.len, (int64_t)time(NULL) * 1000)) < 0)
		goto done;
	rc = STORE_EIO;
	if (archive_write_data(a, index.p, index.len) != (la_ssize_t)index.len ||
	    archive_write_close(a) != ARCHIVE_OK)
		goto done;
	*bytes = sink.bytes;
	rc = 0;
done:
	if (a)
		archive_write_free(a);
	free(index.p);
	free(gone.p);
	free(members);
	free(page);
	free(rowids);
	free(buf);
	/* A write to fd that failed is the file system's failure: a full disk is storage_full
	 * (the review: it was storage_io_error, to the administrator and to the parent's 507). */
	if (rc == STORE_EIO && sink.err)
		rc = fs_fail(&err, sink.err);
	return done_with(rc, err);
}
