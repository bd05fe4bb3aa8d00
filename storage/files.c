/*
 * files.c — the data directory's files: a family's path, syncing directories so that names
 * survive a power cut, erasing a database with its -wal and -shm, quarantine/ (where a damaged
 * family database, or one no family owns, is set aside), and the start's sweep of families/,
 * and the note of a mailbox this process may not write (its owner or mode).
 * The store (store.c) owns the cache and the directory database these decide by.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int family_path(const store *s, const char *family_id, char *buf, size_t cap)
{
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND; /* a malformed id names nothing */
	int n = snprintf(buf, cap, "%s/families/%s.db", s->dir, family_id);
	return n > 0 && (size_t)n < cap ? 0 : STORE_EINVAL;
}

/* dst = path + suffix; false when it does not fit (never with STORE_DIR_MAX). */
bool with_suffix(char *dst, size_t cap, const char *path, const char *suffix)
{
	int n = snprintf(dst, cap, "%s%s", path, suffix);
	return n > 0 && (size_t)n < cap;
}

/* Sync a directory, so that the names removed from it stay removed after a power cut. */
static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Sync the directory `path` is in: the path up to its last '/', or the working directory. */
void sync_parent(const char *path)
{
	char p[PATH_CAP];
	const char *slash = strrchr(path, '/');
	if (!slash) {
		sync_dir(".");
	} else if ((size_t)(slash - path) < sizeof p) {
		memcpy(p, path, (size_t)(slash - path));
		p[slash - path] = '\0';
		sync_dir(slash == path ? "/" : p);
	}
}

/* A directory made durably: its name in its parent survives a power cut, and with it every
 * family database (the data directory's families/ above all). */
int make_dir(const char *path)
{
	if (mkdir(path, 0700) == 0) {
		/* "data/" is made in the directory "data" is in, not in itself (the review). */
		char p[PATH_CAP];
		size_t n = strlen(path);
		while (n > 1 && path[n - 1] == '/')
			n--;
		if (n < sizeof p) {
			memcpy(p, path, n);
			p[n] = '\0';
			sync_parent(p);
		}
		return 0;
	}
	if (errno == EEXIST)
		return 0;
	return errno == EROFS || errno == EACCES ? STORE_EROFS
	       : errno == ENOSPC                 ? STORE_EFULL
	                                         : STORE_EIO;
}

void unlink_db_files(const char *path)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	char p[PATH_CAP];
	for (int i = 0; i < 3; i++)
		if (with_suffix(p, sizeof p, path, suffix[i]))
			unlink(p);
	sync_parent(path);
}

int mailbox_writable(store *s, const char *family_id, const char *path)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	char p[PATH_CAP];
	struct stat st;
	int i = 0;
	/* EACCES, not EROFS: a file system remounted read-only is the health check's to say. */
	for (; i < 3; i++)
		if (with_suffix(p, sizeof p, path, suffix[i]) && stat(p, &st) == 0 &&
		    faccessat(AT_FDCWD, p, W_OK, AT_EACCESS) != 0 && errno == EACCES)
			break;
	if (i == 3)
		return 0;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	struct unwritable_slot *free_slot = NULL;
	pthread_mutex_lock(&s->aside_lock);
	for (unsigned k = 0; k < STORE_UNWRITABLE_KEPT; k++) {
		struct unwritable_slot *u = &s->unwritable[k];
		if (u->noted_ms && strcmp(u->u.family_id.s, family_id) == 0) {
			if (u->waiting || now - u->noted_ms < 60000) {
				pthread_mutex_unlock(&s->aside_lock);
				return STORE_EROFS;
			}
			free_slot = u;
			break;
		}
		/* an empty slot, or the one noted longest ago of those taken */
		if (!u->waiting && (!free_slot || u->noted_ms < free_slot->noted_ms))
			free_slot = u;
	}
	if (free_slot) {
		snprintf(free_slot->u.family_id.s, sizeof free_slot->u.family_id.s, "%s",
		         family_id);
		snprintf(free_slot->u.file, sizeof free_slot->u.file, "families/%s.db%s", family_id,
		         suffix[i]);
		free_slot->u.uid = (unsigned)st.st_uid;
		free_slot->u.mode = (unsigned)st.st_mode & 07777;
		free_slot->noted_ms = now ? now : 1;
		free_slot->waiting = true;
	} else {
		s->unwritable_dropped++;
	}
	pthread_mutex_unlock(&s->aside_lock);
	return STORE_EROFS;
}

void store_take_unwritable(store *s, store_unwritable *out, size_t max, size_t *n,
                           unsigned *dropped)
{
	*n = 0;
	pthread_mutex_lock(&s->aside_lock);
	for (unsigned k = 0; k < STORE_UNWRITABLE_KEPT && *n < max; k++)
		if (s->unwritable[k].waiting) {
			out[(*n)++] = s->unwritable[k].u;
			s->unwritable[k].waiting = false;
		}
	*dropped = s->unwritable_dropped;
	s->unwritable_dropped = 0;
	pthread_mutex_unlock(&s->aside_lock);
}

/*
 * Move a damaged family database (and its WAL) aside, out of the families/ directory, to
 * quarantine/ID.TIME.db, or ID.TIME-K.db when a copy of the same second is there already: the
 * rename would replace it, and it may be the only copy of voices (the review: a copy set aside,
 * put back and set aside again within the second was lost). Where no name is free the file
 * stays (false): it is found damaged again at its next open.
 */
bool quarantine(const store *s, const char *family_id, const char *path, char *moved_to, size_t cap)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	char dst[PATH_CAP], src[PATH_CAP], base[PATH_CAP];
	long long now = (long long)time(NULL);
	for (unsigned k = 0;; k++) {
		int n = k ? snprintf(base, sizeof base, "%s/quarantine/%s.%lld-%u.db", s->dir,
		                     family_id, now, k)
		          : snprintf(base, sizeof base, "%s/quarantine/%s.%lld.db", s->dir,
		                     family_id, now);
		if (n <= 0 || (size_t)n >= sizeof base || k == 100)
			return false;
		bool taken = false;
		for (int i = 0; i < 3 && !taken; i++)
			taken = !with_suffix(dst, sizeof dst, base, suffix[i]) ||
			        access(dst, F_OK) == 0 || errno != ENOENT;
		if (!taken)
			break;
	}
	bool moved = false;
	for (int i = 0; i < 3; i++)
		if (with_suffix(src, sizeof src, path, suffix[i]) &&
		    with_suffix(dst, sizeof dst, base, suffix[i]) && rename(src, dst) == 0) {
			(void)chmod(dst, 0600); /* a file from an older version may be 0644 */
			moved = moved || i == 0;
		}
	/* Both names durable: after a power cut the -wal (which may hold acknowledged messages)
	 * is beside its database, both in quarantine/ or both in families/ (the review). */
	sync_parent(base);
	sync_parent(path);
	if (moved && moved_to)
		snprintf(moved_to, cap, "%s", base + strlen(s->dir) + 1);
	return moved;
}

void set_aside_note(store *s, const char *family_id, const char *moved_to)
{
	pthread_mutex_lock(&s->aside_lock);
	if (s->naside < STORE_SET_ASIDE_KEPT) {
		store_set_aside *a = &s->aside[s->naside++];
		snprintf(a->family_id.s, sizeof a->family_id.s, "%s", family_id);
		snprintf(a->moved_to, sizeof a->moved_to, "%s", moved_to);
	} else {
		s->aside_dropped++;
	}
	pthread_mutex_unlock(&s->aside_lock);
}

void store_take_set_aside(store *s, store_set_aside *out, size_t max, size_t *n, unsigned *dropped)
{
	pthread_mutex_lock(&s->aside_lock);
	size_t k = s->naside < max ? s->naside : max;
	memcpy(out, s->aside, k * sizeof *out);
	memmove(s->aside, s->aside + k, (s->naside - k) * sizeof *s->aside);
	s->naside -= (unsigned)k;
	*n = k;
	*dropped = s->aside_dropped;
	s->aside_dropped = 0;
	pthread_mutex_unlock(&s->aside_lock);
}

/*
 * one(s, dir_fd, name, id, arg) for each file of data/sub named after a family's id: exactly
 * ID.db for families/ (exact set), or ID.anything for quarantine/ (ID.TIME.db and its -wal,
 * -shm), until one returns < 0: that is the result. one returns 1 when it unlinked the file:
 * those are counted in *unlinked (if not NULL) and the directory is synced once at the end.
 * 0 when the directory is not there at all.
 */
int each_id_file(store *s, const char *sub, bool exact,
                 int (*one)(store *, int, const char *, const char *, void *), void *arg,
                 unsigned *unlinked)
{
	char dir[PATH_CAP];
	snprintf(dir, sizeof dir, "%s/%s", s->dir, sub);
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : STORE_EIO;
	int rc = 0;
	unsigned gone = 0;
	struct dirent *e;
	while (rc >= 0 && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (exact ? n != STORE_ID_LEN + 3 || strcmp(e->d_name + STORE_ID_LEN, ".db") != 0
		          : n <= STORE_ID_LEN + 1 || e->d_name[STORE_ID_LEN] != '.')
			continue;
		char id[STORE_ID_LEN + 1];
		memcpy(id, e->d_name, STORE_ID_LEN);
		id[STORE_ID_LEN] = '\0';
		if (store_id_check(id) == 0 && (rc = one(s, dirfd(d), e->d_name, id, arg)) > 0)
			gone++;
	}
	closedir(d);
	if (gone)
		sync_dir(dir);
	if (unlinked)
		*unlinked += gone;
	return rc < 0 ? rc : 0;
}

/* A family's damaged copies set aside in quarantine/ (ID.TIME.db and its -wal, -shm) go with
 * it: erasing is for ever (the review: they stayed). */
static int unlink_if_of(store *s, int dir, const char *name, const char *id, void *family_id)
{
	(void)s;
	return strcmp(id, family_id) == 0 && unlinkat(dir, name, 0) == 0;
}

void unlink_quarantined(store *s, const char *family_id)
{
	(void)each_id_file(s, "quarantine", false, unlink_if_of, (void *)family_id, NULL);
}

static void row_found(sqlite3_stmt *st, void *out)
{
	(void)st;
	*(int *)out = 1;
}

int store_family_erased(store *s, const char *family_id)
{
	static const char sql[] = "SELECT 1 FROM erased_families WHERE id = ?";
	int found = 0;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	return read_one(s, sql, text_key(family_id), row_found, &found);
}

static int sweep_one_family(store *s, int dir, const char *name, const char *id, void *arg)
{
	(void)dir, (void)name;
	static const char sql[] = "SELECT 1 FROM families WHERE id = ?";
	unsigned *counts = arg;
	char path[PATH_CAP];
	int found = 0;
	int rc = read_one(s, sql, text_key(id), row_found, &found);
	if (rc != STORE_ENOTFOUND || family_path(s, id, path, sizeof path) < 0)
		return rc;
	rc = store_family_erased(s, id);
	if (rc == 0) {
		unlink_db_files(path); /* erased: its voices go */
		counts[0]++;
	} else if (rc == STORE_ENOTFOUND) {
		/* Never known erased: a mailbox this directory did not make, or one whose family
		 * was never stored. Set aside, as a damaged one is (the review: families/ restored
		 * beside a new directory was erased whole). */
		(void)quarantine(s, id, path, NULL, 0);
		counts[1]++;
		rc = 0;
	}
	return rc;
}

/* Damaged copies in quarantine/ of families erased since (or before their copies went with
 * them: a crash, or a version that did not erase them): erased too (the review). */
static int unlink_if_erased(store *s, int dir, const char *name, const char *id, void *arg)
{
	(void)arg;
	int rc = store_family_erased(s, id);
	return rc == 0 ? unlinkat(dir, name, 0) == 0 : rc == STORE_ENOTFOUND ? 0 : rc;
}

int store_families_sweep(store *s, unsigned *removed, unsigned *set_aside)
{
	unsigned counts[2] = {0, 0}, aside_erased = 0;
	int rc = each_id_file(s, "families", true, sweep_one_family, counts, NULL);
	if (rc == 0)
		rc = each_id_file(s, "quarantine", false, unlink_if_erased, NULL, &aside_erased);
	*removed = counts[0] + aside_erased;
	*set_aside = counts[1];
	return rc;
}
