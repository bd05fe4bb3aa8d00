/*
 * powercut_disk.h — a disk that a power cut can be pulled on, for test_powercut. A SQLite VFS
 * shim, "powercut" (pc_register), wraps the default one and keeps beside every file SQLite
 * writes and syncs (databases, their -wal; not the -shm) what a disk would hold after a power
 * cut: its content as of its last xSync, in NAME.synced. It notes the ranges each xWrite covers
 * and the smallest size an xTruncate left, and on xSync copies those ranges from the file into
 * the shadow (about one extra write per write: a WAL is never copied whole). A file deleted
 * without a directory sync (SQLite deletes a WAL so) leaves its shadow as NAME.gone: the name
 * may come back after a power cut, until a new file of that name is synced (SQLite syncs the
 * directory then). The shim's state is the process's: pc_reset before a child starts.
 *
 * pc_snapshot gives every file its shadow (a disk all synced, before a child starts); pc_cut,
 * after the child's kill, makes each file what the disk holds: its shadow, plus (the disk may
 * have written any part of what was not synced) a random share of the 512-byte sectors where
 * the file differs from it, and a length anywhere between the two sizes when the file grew
 * (either size when it shrank: a truncate is all or nothing); a file never synced is gone or
 * holds a random part of its sectors; a name deleted but not synced comes back or not; -shm
 * files are deleted. Include after cmocka.h (it asserts).
 */
#ifndef JIAYIN_TEST_POWERCUT_DISK_H
#define JIAYIN_TEST_POWERCUT_DISK_H

#include "storage_helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>

#define SECTOR 512
#define SHADOW ".synced" /* what the disk holds of a file */
#define GONE ".gone"     /* what it holds of a name deleted since, if the deletion was lost */

/* ---- The power-cut VFS ---- */

typedef struct pc_range {
	int64_t off, len;
} pc_range;

/* One file by name, over all its handles: an fsync makes the file's writes durable, whichever
 * descriptor they came through. */
typedef struct pc_file {
	char *path;
	pc_range *dirty; /* written since the last sync */
	size_t ndirty, cap;
	/* The smallest size a truncate left since the last sync; INT64_MAX: none. */
	int64_t min_size;
	struct pc_file *next;
} pc_file;

typedef struct pc_handle {
	sqlite3_file base;
	pc_file *file;      /* NULL: not a file a power cut keeps (a temporary one) */
	sqlite3_file *real; /* allocated right after this struct */
} pc_handle;

static struct {
	pthread_mutex_t lock;
	pc_file *files;
	long io, kill_at; /* writes and syncs of kept files so far; at kill_at (> 0), SIGKILL */
	sqlite3_vfs *real;
	sqlite3_vfs vfs;
} pc = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* One more write or sync: the one the power cut comes at? Called with pc.lock held. */
static inline void pc_count_io(void)
{
	if (++pc.io == pc.kill_at)
		raise(SIGKILL);
}

/* The file of that name; made on first use. Called with pc.lock held. */
static inline pc_file *pc_file_of(const char *path)
{
	for (pc_file *f = pc.files; f; f = f->next)
		if (!strcmp(f->path, path))
			return f;
	pc_file *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(path)))
		abort();
	f->min_size = INT64_MAX;
	f->next = pc.files;
	pc.files = f;
	return f;
}

/*
 * Forget every file (the parent, before a child starts with a disk that is all synced); the
 * child will SIGKILL itself at its kill_at'th write or sync (0: never): when a write is not yet
 * synced, or a sync not yet done, which a kill from outside mostly misses.
 */
static inline void pc_reset(long kill_at)
{
	pthread_mutex_lock(&pc.lock);
	pc.io = 0;
	pc.kill_at = kill_at;
	while (pc.files) {
		pc_file *f = pc.files;
		pc.files = f->next;
		free(f->dirty);
		free(f->path);
		free(f);
	}
	pthread_mutex_unlock(&pc.lock);
}

static inline bool suffixed(char *out, size_t cap, const char *path, const char *suffix)
{
	int n = snprintf(out, cap, "%s%s", path, suffix);
	return n > 0 && (size_t)n < cap;
}

static inline int cmp_range(const void *a, const void *b)
{
	int64_t x = ((const pc_range *)a)->off, y = ((const pc_range *)b)->off;
	return x < y ? -1 : x > y;
}

/*
 * What an fsync does to the disk: the shadow takes the file's size and the content of every
 * range written since the last sync. The name is then durable (SQLite syncs the directory of a
 * journal or WAL it created at the file's first sync), so an older file's GONE is not. A kill in
 * the middle leaves a shadow between the two, as a power cut in the middle of an fsync would.
 * Called with pc.lock held.
 */
static inline int pc_sync(pc_handle *h)
{
	pc_file *f = h->file;
	char shadow[PATH_MAX], gone[PATH_MAX];
	sqlite3_int64 size = 0;
	if (!suffixed(shadow, sizeof shadow, f->path, SHADOW) ||
	    !suffixed(gone, sizeof gone, f->path, GONE) ||
	    h->real->pMethods->xFileSize(h->real, &size) != SQLITE_OK)
		return SQLITE_IOERR_FSYNC;
	int fd = open(shadow, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		if (fd >= 0)
			close(fd);
		return SQLITE_IOERR_FSYNC;
	}
	int rc = SQLITE_OK;
	/* What a truncate took off and no write put back reads as zeros, as in the file. */
	if (f->min_size < st.st_size && ftruncate(fd, f->min_size))
		rc = SQLITE_IOERR_FSYNC;
	if (f->ndirty)
		qsort(f->dirty, f->ndirty, sizeof *f->dirty, cmp_range);
	static uint8_t buf[1 << 16]; /* pc.lock is held */
	int64_t done = 0;            /* copied up to here: ranges overlap */
	for (size_t i = 0; i < f->ndirty && rc == SQLITE_OK; i++) {
		int64_t off = f->dirty[i].off > done ? f->dirty[i].off : done;
		int64_t end = f->dirty[i].off + f->dirty[i].len;
		if (end > size)
			end = size;
		while (off < end && rc == SQLITE_OK) {
			int n =
			    end - off < (int64_t)sizeof buf ? (int)(end - off) : (int)sizeof buf;
			if (h->real->pMethods->xRead(h->real, buf, n, off) != SQLITE_OK ||
			    pwrite(fd, buf, (size_t)n, off) != n)
				rc = SQLITE_IOERR_FSYNC;
			off += n;
		}
		if (end > done)
			done = end;
	}
	if (rc == SQLITE_OK && ftruncate(fd, size))
		rc = SQLITE_IOERR_FSYNC;
	close(fd);
	if (rc == SQLITE_OK) {
		unlink(gone);
		f->ndirty = 0;
		f->min_size = INT64_MAX;
	}
	return rc;
}

static inline int pc_close(sqlite3_file *file)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods ? h->real->pMethods->xClose(h->real) : SQLITE_OK;
}
static inline int pc_read(sqlite3_file *file, void *buf, int n, sqlite3_int64 off)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xRead(h->real, buf, n, off);
}
static inline int pc_write(sqlite3_file *file, const void *buf, int n, sqlite3_int64 off)
{
	pc_handle *h = (pc_handle *)file;
	int rc = h->real->pMethods->xWrite(h->real, buf, n, off);
	if (rc != SQLITE_OK || !h->file)
		return rc;
	pthread_mutex_lock(&pc.lock);
	pc_file *f = h->file;
	if (f->ndirty == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 64;
		if (!(f->dirty = realloc(f->dirty, f->cap * sizeof *f->dirty)))
			abort();
	}
	f->dirty[f->ndirty++] = (pc_range){off, n};
	pc_count_io();
	pthread_mutex_unlock(&pc.lock);
	return rc;
}
static inline int pc_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	pc_handle *h = (pc_handle *)file;
	int rc = h->real->pMethods->xTruncate(h->real, size);
	if (rc == SQLITE_OK && h->file) {
		pthread_mutex_lock(&pc.lock);
		if (size < h->file->min_size)
			h->file->min_size = size;
		pthread_mutex_unlock(&pc.lock);
	}
	return rc;
}
/* The shadow is the disk: the real fsync would only cost time. */
static inline int pc_sync_method(sqlite3_file *file, int flags)
{
	(void)flags;
	pc_handle *h = (pc_handle *)file;
	if (!h->file)
		return SQLITE_OK;
	pthread_mutex_lock(&pc.lock);
	pc_count_io(); /* a kill here: the fsync was not done */
	int rc = pc_sync(h);
	pthread_mutex_unlock(&pc.lock);
	return rc;
}
static inline int pc_size(sqlite3_file *file, sqlite3_int64 *size)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xFileSize(h->real, size);
}
static inline int pc_lock_method(sqlite3_file *file, int l)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xLock(h->real, l);
}
static inline int pc_unlock(sqlite3_file *file, int l)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xUnlock(h->real, l);
}
static inline int pc_check_lock(sqlite3_file *file, int *out)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xCheckReservedLock(h->real, out);
}
static inline int pc_control(sqlite3_file *file, int op, void *arg)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xFileControl(h->real, op, arg);
}
static inline int pc_sector(sqlite3_file *file)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xSectorSize(h->real);
}
static inline int pc_caps(sqlite3_file *file)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xDeviceCharacteristics(h->real);
}
/* The -shm: never synced, rebuilt by SQLite after a cut, so passed through as it is. */
static inline int pc_shm_map(sqlite3_file *file, int pg, int sz, int extend, void volatile **pp)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xShmMap(h->real, pg, sz, extend, pp);
}
static inline int pc_shm_lock(sqlite3_file *file, int off, int n, int flags)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xShmLock(h->real, off, n, flags);
}
static inline void pc_shm_barrier(sqlite3_file *file)
{
	pc_handle *h = (pc_handle *)file;
	h->real->pMethods->xShmBarrier(h->real);
}
static inline int pc_shm_unmap(sqlite3_file *file, int del)
{
	pc_handle *h = (pc_handle *)file;
	return h->real->pMethods->xShmUnmap(h->real, del);
}

static const sqlite3_io_methods pc_io = {
    2,       pc_close,       pc_read,     pc_write,       pc_truncate,  pc_sync_method,
    pc_size, pc_lock_method, pc_unlock,   pc_check_lock,  pc_control,   pc_sector,
    pc_caps, pc_shm_map,     pc_shm_lock, pc_shm_barrier, pc_shm_unmap, NULL,
    NULL,
};

static inline int pc_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                          int *out_flags)
{
	(void)vfs;
	pc_handle *h = (pc_handle *)file;
	h->real = (sqlite3_file *)(h + 1);
	h->file = NULL;
	int rc = pc.real->xOpen(pc.real, name, h->real, flags, out_flags);
	/* On failure xClose is not called, so pMethods must stay NULL. */
	h->base.pMethods = rc == SQLITE_OK ? &pc_io : NULL;
	if (rc == SQLITE_OK && name &&
	    (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL |
	              SQLITE_OPEN_SUPER_JOURNAL))) {
		pthread_mutex_lock(&pc.lock);
		h->file = pc_file_of(name);
		pthread_mutex_unlock(&pc.lock);
	}
	return rc;
}

/* A deletion is durable with dirSync; without it (a WAL's), the old name may come back. */
static inline int pc_delete(sqlite3_vfs *vfs, const char *name, int dir_sync)
{
	(void)vfs;
	int rc = pc.real->xDelete(pc.real, name, dir_sync);
	char shadow[PATH_MAX], gone[PATH_MAX];
	if (rc != SQLITE_OK || !suffixed(shadow, sizeof shadow, name, SHADOW) ||
	    !suffixed(gone, sizeof gone, name, GONE))
		return rc;
	pthread_mutex_lock(&pc.lock);
	pc_file *f = pc_file_of(name);
	f->ndirty = 0; /* a new file of this name starts empty */
	f->min_size = INT64_MAX;
	if (dir_sync) {
		unlink(shadow);
		unlink(gone);
	} else if (access(shadow, F_OK) == 0) {
		rename(shadow, gone);
	}
	pthread_mutex_unlock(&pc.lock);
	return rc;
}

static inline void pc_register(void)
{
	pc.real = sqlite3_vfs_find(NULL);
	assert_non_null(pc.real);
	pc.vfs = *pc.real;
	pc.vfs.zName = "powercut";
	pc.vfs.szOsFile = (int)sizeof(pc_handle) + pc.real->szOsFile;
	pc.vfs.xOpen = pc_open;
	pc.vfs.xDelete = pc_delete;
	pc.vfs.pNext = NULL;
	assert_int_equal(sqlite3_vfs_register(&pc.vfs, 0), SQLITE_OK);
}

/* ---- The disk before and after ---- */

/* The directories of a data directory that hold databases. */
static const char *const data_dirs[] = {"", "/families", "/quarantine"};

static inline bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

static inline int copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct stat st;
	int rc = in >= 0 && out >= 0 && fstat(in, &st) == 0 ? 0 : -1;
	for (off_t left = rc ? 0 : st.st_size; left > 0;) {
		ssize_t k = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
		if (k <= 0) {
			rc = -1;
			break;
		}
		left -= k;
	}
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

/*
 * Before a child starts: the disk holds what the files hold (the parent closed the store), so
 * every file but a -shm gets its shadow.
 */
static inline void pc_snapshot(const char *dir)
{
	char d[PATH_MAX], from[PATH_MAX + 256], to[PATH_MAX + 256 + 8];
	for (size_t i = 0; i < sizeof data_dirs / sizeof *data_dirs; i++) {
		snprintf(d, sizeof d, "%s%s", dir, data_dirs[i]);
		DIR *dp = opendir(d);
		if (!dp)
			continue;
		for (struct dirent *e; (e = readdir(dp));) {
			if (e->d_type != DT_REG || ends_with(e->d_name, "-shm"))
				continue;
			assert_false(ends_with(e->d_name, SHADOW) || ends_with(e->d_name, GONE));
			snprintf(from, sizeof from, "%s/%s", d, e->d_name);
			snprintf(to, sizeof to, "%s%s", from, SHADOW);
			assert_int_equal(copy_file(from, to), 0);
		}
		closedir(dp);
	}
}

/* What one cut did, for the report. */
typedef struct cut_stats {
	long files_as_synced, files_never_synced_dropped, files_never_synced_kept;
	long deletions_lost, deletions_kept;
	long sectors_unsynced, sectors_taken, lengths_cut;
	long rounds_writing_directory;
} cut_stats;

static inline int64_t file_size(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (int64_t)st.st_size : -1;
}

/*
 * Make `disk` (the shadow, or an empty file for one never synced) what a power cut may have
 * left of `real`: with `mix`, a length between the two sizes if the file grew (either one if it
 * shrank) and a random share of the sectors in which they differ; without, the shadow as it is.
 */
static inline void mix_sectors(const char *disk, const char *real, rng *g, bool mix, cut_stats *cs)
{
	int dfd = open(disk, O_RDWR | O_CLOEXEC), rfd = open(real, O_RDONLY | O_CLOEXEC);
	assert_true(dfd >= 0 && rfd >= 0);
	int64_t ds = file_size(dfd), rs = file_size(rfd), len = ds;
	assert_true(ds >= 0 && rs >= 0);
	/* The share of differing sectors the disk wrote: none, all, or some. */
	static const unsigned shares[] = {0, 10, 50, 90, 100};
	unsigned share = mix ? shares[rng_next(g) % 5] : 0;
	if (mix && rs > ds) {
		uint64_t k = rng_next(g) % 4;
		len = k == 0 ? ds : k == 1 ? rs : (int64_t)rng_range(g, (uint64_t)ds, (uint64_t)rs);
	} else if (mix && rs < ds) {
		len = rng_next(g) % 2 ? ds : rs;
	}
	cs->lengths_cut += len != ds;
	/* Beyond the shadow, the sectors the disk did not write read as zeros. */
	if (len > ds)
		assert_int_equal(ftruncate(dfd, len), 0);
	int64_t end = len < rs ? len : rs;
	static uint8_t a[1 << 16], b[1 << 16];
	for (int64_t off = 0; off < end; off += sizeof a) {
		size_t n = end - off < (int64_t)sizeof a ? (size_t)(end - off) : sizeof a;
		assert_int_equal(pread(rfd, a, n, off), (ssize_t)n);
		ssize_t got = pread(dfd, b, n, off);
		assert_true(got >= 0);
		memset(b + got, 0, n - (size_t)got);
		for (size_t s = 0; s < n; s += SECTOR) {
			size_t k = n - s < SECTOR ? n - s : SECTOR;
			if (!memcmp(a + s, b + s, k))
				continue;
			cs->sectors_unsynced++;
			if (rng_next(g) % 100 < share) {
				cs->sectors_taken++;
				assert_int_equal(pwrite(dfd, a + s, k, off + (int64_t)s),
				                 (ssize_t)k);
			}
		}
	}
	if (len < file_size(dfd))
		assert_int_equal(ftruncate(dfd, len), 0);
	close(dfd);
	close(rfd);
}

/* The power cut of one name in directory `d`: what a disk holds under it afterwards. */
static inline void cut_one(const char *d, const char *name, rng *g, bool mix, cut_stats *cs)
{
	char real[PATH_MAX + 256], shadow[PATH_MAX + 256 + 8], gone[PATH_MAX + 256 + 8];
	snprintf(real, sizeof real, "%s/%s", d, name);
	snprintf(shadow, sizeof shadow, "%s%s", real, SHADOW);
	snprintf(gone, sizeof gone, "%s%s", real, GONE);
	bool has_real = access(real, F_OK) == 0, has_shadow = access(shadow, F_OK) == 0;
	bool has_gone = access(gone, F_OK) == 0;
	if (has_shadow && !has_real) {
		/* Killed between a deletion and the shim's note of it: a deletion not synced. */
		assert_int_equal(rename(shadow, gone), 0);
		has_shadow = false, has_gone = true;
	}
	if (has_shadow) {
		mix_sectors(shadow, real, g, mix, cs);
		assert_int_equal(rename(shadow, real), 0);
		cs->files_as_synced++;
		unlink(gone);
		return;
	}
	/*
	 * No file of this name was synced since it was made: the disk holds the old file a lost
	 * deletion left (without mixing: the deletion was not synced, so that), nothing, or the
	 * new file's directory entry with what the disk wrote of its sectors.
	 */
	unsigned pick = !mix ? (has_gone ? 0 : 1) : (unsigned)(rng_next(g) % 3);
	if (pick == 0 && !has_gone)
		pick = 1;
	if (pick == 2 && !has_real)
		pick = 1;
	if (pick == 0) {
		assert_int_equal(rename(gone, real), 0);
		cs->deletions_lost++;
		return;
	}
	if (has_gone) {
		unlink(gone);
		cs->deletions_kept++;
	}
	if (pick == 1) {
		if (has_real) {
			assert_int_equal(unlink(real), 0);
			cs->files_never_synced_dropped++;
		}
		return;
	}
	int fd = open(shadow, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	mix_sectors(shadow, real, g, true, cs);
	assert_int_equal(rename(shadow, real), 0);
	cs->files_never_synced_kept++;
}

static inline int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* After the child's kill: every database file of the data directory as a power cut left it. */
static inline void pc_cut(const char *dir, rng *g, bool mix, cut_stats *cs)
{
	char d[PATH_MAX], p[PATH_MAX + 256];
	struct stat st;
	snprintf(p, sizeof p, "%s/directory.db-wal", dir);
	cs->rounds_writing_directory += stat(p, &st) == 0 && st.st_size > 0;
	for (size_t i = 0; i < sizeof data_dirs / sizeof *data_dirs; i++) {
		snprintf(d, sizeof d, "%s%s", dir, data_dirs[i]);
		DIR *dp = opendir(d);
		if (!dp)
			continue;
		/* The names: the files and those their shadows speak for. In order: the draws
		 * must not depend on the order readdir gives. */
		char **names = NULL;
		size_t n = 0;
		for (struct dirent *e; (e = readdir(dp));) {
			if (e->d_type != DT_REG)
				continue;
			snprintf(p, sizeof p, "%s/%s", d, e->d_name);
			if (ends_with(e->d_name, "-shm")) {
				assert_int_equal(unlink(p), 0);
				continue;
			}
			size_t k = strlen(e->d_name);
			if (ends_with(e->d_name, SHADOW))
				k -= strlen(SHADOW);
			else if (ends_with(e->d_name, GONE))
				k -= strlen(GONE);
			names = realloc(names, (n + 1) * sizeof *names);
			assert_non_null(names);
			assert_non_null(names[n++] = strndup(e->d_name, k));
		}
		closedir(dp);
		if (n)
			qsort(names, n, sizeof *names, cmp_str);
		for (size_t k = 0; k < n; k++) {
			if (k == 0 || strcmp(names[k], names[k - 1]))
				cut_one(d, names[k], g, mix, cs);
		}
		for (size_t k = 0; k < n; k++)
			free(names[k]);
		free(names);
	}
}

#endif
