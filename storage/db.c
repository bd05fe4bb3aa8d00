/*
 * db.c — one SQLite database: connections, pragmas, migrations, statement cache, errors.
 *
 * The page size is set before WAL is enabled (it cannot change afterwards). synchronous=FULL:
 * a commit returns only after the WAL is on disk, which is what "acknowledged" promises.
 * Migrations are numbered steps; PRAGMA user_version records how many have run, each step in
 * its own transaction with its version bump, so a crash mid-migration repeats only that step
 * (foreign keys off during a step, checked before its commit: see migrate_step).
 * A file written by a newer schema than we know is refused (STORE_ESCHEMA), never downgraded.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOOKASIDE_SLOT 256
#define LOOKASIDE_SLOTS 64

int store_map_sqlite(int rc)
{
	switch (rc & 0xFF) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return STORE_ENOMEM;
	case SQLITE_FULL:
		return STORE_EFULL;
	case SQLITE_READONLY:
		return STORE_EROFS;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return STORE_ECORRUPT;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return STORE_EBUSY;
	case SQLITE_CONSTRAINT:
		return STORE_EEXIST;
	case SQLITE_IOERR:
		return rc == SQLITE_IOERR_NOMEM ? STORE_ENOMEM : STORE_EIO;
	case SQLITE_CANTOPEN:
		return STORE_EIO;
	default:
		return STORE_EIO;
	}
}

/* The errno of the last failed call on db's WAL, or 0. */
static int wal_errno(sqlite3 *db)
{
	int e = 0;
	sqlite3_file *wal = NULL;
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) == SQLITE_OK &&
	    wal && wal->pMethods &&
	    wal->pMethods->xFileControl(wal, SQLITE_FCNTL_LAST_ERRNO, &e) == SQLITE_OK)
		return e;
	return 0;
}

/* The errno of the last failed call on the database file itself, or 0. */
static int main_errno(sqlite3 *db)
{
	int e = 0;
	return sqlite3_file_control(db, "main", SQLITE_FCNTL_LAST_ERRNO, &e) == SQLITE_OK ? e : 0;
}

/* The errno of the last failed call on a file of db's (its WAL, else the database), or 0. */
static int last_errno(sqlite3 *db)
{
	int e = wal_errno(db);
	return e ? e : main_errno(db);
}

/* The errnos SQLite's unix VFS turns a failed read into "damaged" for (SQLITE_IOERR_CORRUPTFS,
 * which a statement reports as SQLITE_CORRUPT): a sector the disk cannot read. */
static bool read_failure(int e)
{
	return e == EIO || e == ENXIO || e == ERANGE;
}

int store_map_db(sqlite3 *db, int rc)
{
	int mapped = store_map_sqlite(rc);
	/* A statement whose page the disk failed to read says SQLITE_CORRUPT: SQLite's unix VFS
	 * reports EIO, ENXIO and ERANGE on a read so (SQLITE_IOERR_CORRUPTFS), where a blob's read
	 * says SQLITE_IOERR. Nothing is known damaged then, only unread: STORE_EIO, as a blob's
	 * read and an opening's quick_check say. The file's errno may be one left by an earlier
	 * failure: a damaged page found after the disk failed a read is then STORE_EIO too, and
	 * the disk is looked at first either way. */
	if (mapped == STORE_ECORRUPT && (rc & 0xFF) == SQLITE_CORRUPT && db &&
	    (read_failure(wal_errno(db)) || read_failure(main_errno(db))))
		return STORE_EIO;
	if (mapped != STORE_EIO || (rc & 0xFF) != SQLITE_IOERR || !db)
		return mapped;
	/* Only a failed write, sync or truncation can mean a full or read-only file system, and
	 * each sets its file's errno; a file's errno is never cleared, so for any other failure
	 * (a read) it is one left by an earlier failure, not this one's. */
	switch (rc) {
	case SQLITE_IOERR_WRITE:
	case SQLITE_IOERR_FSYNC:
	case SQLITE_IOERR_DIR_FSYNC:
	case SQLITE_IOERR_TRUNCATE:
		break;
	default:
		return mapped;
	}
	switch (last_errno(db)) {
	case EROFS:
		return STORE_EROFS;
	case ENOSPC:
	case EDQUOT:
		return STORE_EFULL;
	default:
		return mapped;
	}
}

int stmt_error(sqlite3_stmt *st, int rc)
{
	return store_map_db(sqlite3_db_handle(st), rc);
}

int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : store_map_db(sqlite3_db_handle(st), rc);
}

sqlite3_stmt *conn_stmt(conn *c, const char *sql, int *rc)
{
	for (unsigned i = 0; i < c->ncache; i++) {
		if (c->cache[i].sql == sql) {
			sqlite3_reset(c->cache[i].st);
			sqlite3_clear_bindings(c->cache[i].st);
			return c->cache[i].st;
		}
	}
	sqlite3_stmt *st = NULL;
	int r = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (r != SQLITE_OK) {
		*rc = store_map_db(c->db, r);
		if (*rc == 0)
			*rc = STORE_EIO;
		return NULL;
	}
	if (c->ncache == c->cache_cap) {
		unsigned cap = c->cache_cap ? 2 * c->cache_cap : 32;
		struct stmt_entry *grown =
		    cap <= STMT_CACHE_MAX ? realloc(c->cache, cap * sizeof *grown) : NULL;
		if (!grown) {
			sqlite3_finalize(st);
			*rc = STORE_ENOMEM;
			return NULL;
		}
		c->cache = grown;
		c->cache_cap = cap;
	}
	c->cache[c->ncache].sql = sql;
	c->cache[c->ncache].st = st;
	c->ncache++;
	return st;
}

int conn_exec(conn *c, const char *sql)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : store_map_db(c->db, rc);
}

/* Transaction control through the statement cache: sqlite3_exec would parse it every time. */
static int run_cached(conn *c, const char *sql)
{
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	rc = step_done(st);
	sqlite3_reset(st);
	return rc;
}

static const char sql_begin[] = "BEGIN IMMEDIATE";
static const char sql_begin_read[] = "BEGIN";
static const char sql_commit[] = "COMMIT";
static const char sql_rollback[] = "ROLLBACK";

int conn_begin(conn *c)
{
	return run_cached(c, sql_begin);
}

int conn_begin_read(conn *c)
{
	return run_cached(c, sql_begin_read);
}

int conn_commit(conn *c)
{
	int rc = run_cached(c, sql_commit);
	if (rc < 0)
		conn_rollback(c);
	return rc;
}

void conn_rollback(conn *c)
{
	if (!sqlite3_get_autocommit(c->db))
		run_cached(c, sql_rollback);
}

void conn_end_read(conn *c)
{
	if (!sqlite3_get_autocommit(c->db))
		run_cached(c, sql_commit);
}

static void conn_close(conn *c)
{
	for (unsigned i = 0; i < c->ncache; i++)
		sqlite3_finalize(c->cache[i].st);
	free(c->cache);
	c->cache = NULL;
	c->ncache = c->cache_cap = 0;
	if (c->db)
		sqlite3_close_v2(c->db);
	c->db = NULL;
}

/*
 * An I/O error while opening as what it is when the file system is read-only or ours to read
 * only: SQLite opens such a file read-only without a word, then cannot make its -shm
 * (SQLITE_CANTOPEN), which alone would say "I/O error". Or when the disk is full: a file
 * opened for the first time cannot grow its -shm (SQLITE_IOERR_SHMSIZE, ENOSPC).
 */
static int open_code(const db *d, sqlite3 *db, int rc)
{
	if (rc != STORE_EIO || !db)
		return rc;
	int e = sqlite3_system_errno(db), x = sqlite3_extended_errcode(db);
	/* Only a failed growth can mean a full disk: any other failure's errno may be stale. */
	if ((e == ENOSPC || e == EDQUOT) && (x == SQLITE_IOERR_SHMSIZE || x == SQLITE_IOERR_WRITE ||
	                                     x == SQLITE_IOERR_FSYNC || x == SQLITE_IOERR_TRUNCATE))
		return STORE_EFULL;
	/* A store opened read_only has all its connections read-only: no word on the disk. */
	bool read_only = !d->read_only && sqlite3_db_readonly(db, "main") == 1;
	return e == EROFS || e == EACCES || read_only ? STORE_EROFS : rc;
}

static int conn_open(conn *c, const db *d, int flags, bool reader)
{
	memset(c, 0, sizeof *c);
	if (d->read_only)
		flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
	int rc = sqlite3_open_v2(d->read_only ? d->uri : d->path, &c->db,
	                         flags | SQLITE_OPEN_NOMUTEX, d->vfs);
	if (rc != SQLITE_OK) {
		int mapped =
		    open_code(d, c->db, store_map_sqlite(rc) ? store_map_sqlite(rc) : STORE_EIO);
		conn_close(c);
		return mapped;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, d->busy_timeout_ms);
	/*
	 * A small lookaside allocator: SQLite's default (1200 B x 100 slots) is 120 KB per
	 * connection, most of the ~390 KB an open family held with its writer and one reader; with
	 * hundreds of families open that is the server's memory.
	 */
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, LOOKASIDE_SLOT, LOOKASIDE_SLOTS);
	/* Per-connection settings; journal mode and page size belong to the file (db_open). */
	/* secure_delete: always on in the directory; in a mailbox switched on only where audio is
	 * erased (mailbox.c): on every write it cost appends 7% (SQLite zeroes freed cell space
	 * whenever it rebalances pages). */
	/* cache_size: 512 KiB per connection; the OS page cache holds the rest, and hundreds of
	 * families may be open. */
	rc = conn_exec(c, d->schema->secure_delete
			      ? "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL; "
				"PRAGMA secure_delete=ON; PRAGMA temp_store=MEMORY; "
				"PRAGMA cache_size=-512"
			      : "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL; "
				"PRAGMA secure_delete=OFF; PRAGMA temp_store=MEMORY; "
				"PRAGMA cache_size=-512");
	if (rc == 0 && reader)
		rc = conn_exec(c, "PRAGMA query_only=ON");
	/* Transaction control prepared now: ending a transaction never waits on an allocation
	 * that may fail, which would leave the connection in it (a reader holding its snapshot
	 * for good, a writer its lock). */
	static const char *const control[] = {sql_begin, sql_begin_read, sql_commit, sql_rollback};
	for (size_t i = 0; rc == 0 && i < sizeof control / sizeof control[0]; i++)
		(void)conn_stmt(c, control[i], &rc);
	if (rc < 0) {
		rc = open_code(d, c->db, rc);
		conn_close(c);
	}
	return rc;
}

static int user_version(conn *c, int *v)
{
	int rc = 0;
	sqlite3_stmt *st = NULL;
	int r = sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL);
	if (r == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		*v = sqlite3_column_int(st, 0);
	else
		rc = store_map_db(c->db, r ? r : sqlite3_errcode(c->db));
	sqlite3_finalize(st);
	return rc ? rc : 0;
}

/* Rows from PRAGMA foreign_key_check: 0 when every reference holds. */
static int foreign_key_violations(conn *c, int *n)
{
	sqlite3_stmt *st = NULL;
	*n = 0;
	int r = sqlite3_prepare_v2(c->db, "PRAGMA foreign_key_check", -1, &st, NULL);
	while (r == SQLITE_OK && (r = sqlite3_step(st)) == SQLITE_ROW)
		(*n)++;
	sqlite3_finalize(st);
	return r == SQLITE_DONE ? 0 : store_map_sqlite(r ? r : SQLITE_ERROR);
}

/*
 * Each step runs with foreign keys off, as SQLite's procedure for schema changes wants (a
 * table rebuilt by a step is dropped: with them on, the drop would delete the rows that
 * refer to it, ON DELETE CASCADE), and commits only if PRAGMA foreign_key_check finds every
 * reference intact. The pragma cannot change inside a transaction, hence around each step.
 */
static int migrate_step(conn *c, const schema *sc, unsigned version)
{
	const char *sql = sc->steps[version - 1].sql;
	char bump[64];
	int rc, violations = 0, now = 0;
	snprintf(bump, sizeof bump, "PRAGMA user_version=%u", version);
	/* What a step removes or rewrites (old tables, a tombstone's waveform) is zeroed. */
	if ((rc = conn_exec(c, "PRAGMA foreign_keys=OFF; PRAGMA secure_delete=ON")) < 0)
		return rc;
	if ((rc = conn_begin(c)) == 0) {
		/*
		 * The version again, under the write lock: another process (the server and
		 * jiayinctl, both upgraded) may have taken this step since we read it.
		 */
		if ((rc = user_version(c, &now)) == 0 && now >= (int)version)
			conn_rollback(c);
		else {
			if (rc == 0 && (rc = conn_exec(c, sql)) == 0 &&
			    (rc = conn_exec(c, bump)) == 0 &&
			    (rc = foreign_key_violations(c, &violations)) == 0 && violations)
				rc = STORE_ECORRUPT; /* references broken, by the step or before */
			if (rc < 0)
				conn_rollback(c);
			else
				rc = conn_commit(c);
		}
	}
	int on =
	    conn_exec(c, sc->secure_delete ? "PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON"
	                                   : "PRAGMA foreign_keys=ON; PRAGMA secure_delete=OFF");
	return rc < 0 ? rc : on;
}

static int migrate(conn *c, const schema *sc, bool refuse_older)
{
	int v = 0, rc = user_version(c, &v);
	if (rc < 0)
		return rc;
	if (v > (int)sc->count)
		return STORE_ESCHEMA;
	if (refuse_older && v > 0 && v < (int)sc->count)
		return STORE_EOLD; /* an older server may be running on it: leave it its data */
	for (unsigned i = (unsigned)v; i < sc->count; i++)
		if ((rc = migrate_step(c, sc, i + 1)) < 0)
			return rc;
	return 0;
}

/* SQLite's lock bytes in a database file (os_unix.c): every connection holds a read lock on
 * the SHARED range while it has a WAL-mode file open; EXCLUSIVE is a write lock on it. */
#define SQLITE_LOCK_SHARED_FIRST (0x40000000 + 2)
#define SQLITE_LOCK_SHARED_SIZE 510

/*
 * The -wal and -shm a read-only opening made (SQLite makes them to read a WAL-mode file, and a
 * read-only connection cannot checkpoint and remove them as the last writer's close does)
 * removed as that close would: under the EXCLUSIVE lock, so only when no process has the file
 * open, and only when the WAL holds nothing (a server that wrote in it meanwhile keeps it).
 * A lock not granted, or a file that does not open for writing, leaves them.
 */
static void remove_made_wal(const char *path)
{
	char wal[PATH_CAP], shm[PATH_CAP];
	if (!with_suffix(wal, sizeof wal, path, "-wal") ||
	    !with_suffix(shm, sizeof shm, path, "-shm"))
		return;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	struct flock lk = {.l_type = F_WRLCK,
	                   .l_whence = SEEK_SET,
	                   .l_start = SQLITE_LOCK_SHARED_FIRST,
	                   .l_len = SQLITE_LOCK_SHARED_SIZE};
	struct stat st;
	if (fcntl(fd, F_SETLK, &lk) == 0 && stat(wal, &st) == 0 && st.st_size == 0) {
		unlink(wal);
		unlink(shm);
	}
	close(fd); /* and the lock with it */
}

void db_close(db *d)
{
	if (!d)
		return;
	conn_close(&d->writer);
	for (unsigned i = 0; i < d->nreaders; i++)
		conn_close(&d->readers[i]);
	if (d->made_wal && d->path)
		remove_made_wal(d->path);
	free(d->readers);
	free(d->reader_busy);
	pthread_mutex_destroy(&d->write_lock);
	pthread_mutex_destroy(&d->read_lock);
	pthread_cond_destroy(&d->read_free);
	free(d->uri);
	free(d->path);
	free(d);
}

/*
 * The URI a read-only opening uses: the path percent-encoded (a '?' or '#' in it is no URI
 * syntax), mode=ro, and immutable=1 when the file has no WAL and its directory takes no new
 * file (a read-only mount, a copy without write permission): SQLite could not make the -wal
 * and -shm it reads a WAL-mode file through, and nobody can be writing the file there, as a
 * writer needs them. Where it can, SQLite makes them and the close removes them (made_wal):
 * immutable there would take no lock, and a server opening the family meanwhile could
 * checkpoint pages under the read.
 */
static int read_only_uri(db *d)
{
	char wal[PATH_CAP], dir[PATH_CAP];
	const char *slash = strrchr(d->path, '/');
	if (!with_suffix(wal, sizeof wal, d->path, "-wal"))
		return STORE_EINVAL;
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - d->path) + 1 : 1,
	         slash ? d->path : ".");
	bool wal_there = access(wal, F_OK) == 0;
	bool immutable = !wal_there && access(dir, W_OK) != 0;
	d->made_wal = !wal_there && !immutable;
	size_t n = strlen(d->path);
	if (!(d->uri = malloc(3 * n + 64)))
		return STORE_ENOMEM;
	char *p = d->uri + sprintf(d->uri, d->path[0] == '/' ? "file://" : "file:");
	for (const unsigned char *c = (const unsigned char *)d->path; *c; c++) {
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		    (*c >= '0' && *c <= '9') || strchr("/-._~", *c))
			*p++ = (char)*c;
		else
			p += sprintf(p, "%%%02X", *c);
	}
	strcpy(p, immutable ? "?mode=ro&immutable=1" : "?mode=ro");
	return 0;
}

/*
 * A database holds a family's voices, or every family's names: its owner alone reads it, its
 * -wal and -shm too, whatever the process's umask (SQLite makes a new file 0644 less the umask,
 * and the -wal and -shm as the database). A new file is made 0600 before SQLite opens it; one
 * an older Jiayin made readable by others is made 0600 (when it is ours to change). Through a
 * symbolic link (a database kept on another volume) as SQLite goes, and on the descriptor, so
 * what is changed is what was checked.
 */
static void owner_only(const char *path, bool create)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		char p[PATH_CAP];
		if (snprintf(p, sizeof p, "%s%s", path, suffix[i]) >= (int)sizeof p)
			continue;
		int fd = open(
		    p, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (create && i == 0 ? O_CREAT : 0), 0600);
		struct stat st;
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077))
			(void)fchmod(fd, st.st_mode & 0700);
		close(fd);
	}
}

int db_open(db **out, const char *path, const schema *sc, const store_options *opt, bool create)
{
	int rc = STORE_ENOMEM;
	*out = NULL;
	if (!opt->read_only)
		owner_only(path, create);
	db *d = calloc(1, sizeof *d);
	if (!d)
		return STORE_ENOMEM;
	pthread_mutex_init(&d->write_lock, NULL);
	pthread_mutex_init(&d->read_lock, NULL);
	pthread_cond_init(&d->read_free, NULL);
	d->schema = sc;
	d->vfs = opt->vfs;
	d->busy_timeout_ms = opt->busy_timeout_ms;
	d->max_readers = opt->readers ? opt->readers : 1;
	d->path = strdup(path);
	d->readers = calloc(d->max_readers, sizeof *d->readers);
	d->reader_busy = calloc(d->max_readers, sizeof *d->reader_busy);
	if (!d->path || !d->readers || !d->reader_busy)
		goto fail;
	d->read_only = opt->read_only;
	if (d->read_only && (rc = read_only_uri(d)) < 0)
		goto fail;
	int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
	if ((rc = conn_open(&d->writer, d, flags, false)) < 0)
		goto fail;
	/* A newer file is refused before anything is written to it (its journal mode is its
	 * version's choice); migrate() checks again, under the write lock. */
	int v = 0;
	if ((rc = user_version(&d->writer, &v)) < 0)
		goto fail;
	if (v > (int)sc->count) {
		rc = STORE_ESCHEMA;
		goto fail;
	}
	/* A file that must exist has had its first step (a mailbox is made and migrated before its
	 * family's row): one at version 0 is an empty file (what fsck, a full disk or a failed copy
	 * leaves: SQLite takes it for an empty database) or none of ours, never one to make new. */
	if (!create && v == 0) {
		rc = STORE_ECORRUPT;
		goto fail;
	}
	if (d->read_only) { /* as it is: nothing set, nothing migrated */
		rc = v < (int)sc->count ? STORE_EOLD : 0;
		if (rc < 0)
			goto fail;
		*out = d;
		return 0;
	}
	char pragma[64];
	snprintf(pragma, sizeof pragma, "PRAGMA page_size=%d", sc->page_size);
	if ((rc = conn_exec(&d->writer, pragma)) < 0 ||
	    (rc = conn_exec(&d->writer, "PRAGMA journal_mode=WAL")) < 0 ||
	    (rc = migrate(&d->writer, sc, sc == &directory_schema && !opt->upgrade_directory)) < 0)
		goto fail;
	*out = d;
	return 0;
fail:
	rc = open_code(d, d->writer.db, rc);
	db_close(d);
	return rc;
}

conn *db_write_begin(db *d)
{
	pthread_mutex_lock(&d->write_lock);
	return &d->writer;
}

void db_write_end(db *d)
{
	conn_rollback(&d->writer); /* a no-op unless the caller left a transaction open */
	pthread_mutex_unlock(&d->write_lock);
}

void db_release_memory(db *d)
{
	conn *c = db_write_begin(d);
	sqlite3_db_release_memory(c->db);
	db_write_end(d);
}

int db_read_begin(db *d, conn **out)
{
	pthread_mutex_lock(&d->read_lock);
	for (;;) {
		for (unsigned i = 0; i < d->nreaders; i++) {
			if (!d->reader_busy[i]) {
				d->reader_busy[i] = true;
				pthread_mutex_unlock(&d->read_lock);
				*out = &d->readers[i];
				return 0;
			}
		}
		if (d->nreaders < d->max_readers) {
			unsigned i = d->nreaders;
			int rc = conn_open(&d->readers[i], d, SQLITE_OPEN_READWRITE, true);
			if (rc < 0) {
				pthread_mutex_unlock(&d->read_lock);
				return rc;
			}
			d->nreaders++;
			d->reader_busy[i] = true;
			pthread_mutex_unlock(&d->read_lock);
			*out = &d->readers[i];
			return 0;
		}
		pthread_cond_wait(&d->read_free, &d->read_lock);
	}
}

void db_read_end(db *d, conn *c)
{
	/* A reader must not keep a read transaction (and its WAL snapshot) open: reset what is
	 * still running (sqlite3_stmt_busy is a flag test; a reset is not, on every statement). */
	for (unsigned i = 0; i < c->ncache; i++)
		if (sqlite3_stmt_busy(c->cache[i].st))
			sqlite3_reset(c->cache[i].st);
	pthread_mutex_lock(&d->read_lock);
	d->reader_busy[c - d->readers] = false;
	pthread_cond_signal(&d->read_free);
	pthread_mutex_unlock(&d->read_lock);
}
