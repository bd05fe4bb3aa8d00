/*
 * test_faults.c — the storage under failing I/O and memory, SQLite's own way of testing.
 *
 * A VFS shim ("faulty") wraps the default VFS and, once armed, fails the Nth write, sync or
 * read with an I/O error or reports the disk full; an allocator wrapper fails the Nth
 * allocation.
 * For N = 1, 2, ... a fixed script of operations runs against a store using the shim (each
 * run on its own copy of one data directory holding one family); every
 * call must either succeed or fail with the expected mapped code (never crash, never hang);
 * then the faults stop, the store is reopened (quick_check runs) and the mailbox must hold
 * exactly the messages whose append returned 0, complete and with the right hash. The sweep
 * ends when a whole script runs without reaching the Nth fault.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store.h"

#include <errno.h>
#include <ftw.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the fault plan ---- */

typedef enum {
	FAULT_WRITE_IO,
	FAULT_WRITE_FULL,
	FAULT_SYNC,
	FAULT_MALLOC,
	FAULT_READ,
	FAULT_WRITE_ROFS,   /* write() fails with EROFS: the file system was remounted read-only */
	FAULT_SYNC_NOSPACE, /* fsync() fails with ENOSPC: blocks the file system could not place */
	FAULT_SHM_NOSPACE,  /* a family's -shm cannot grow (ENOSPC): its first open on a full disk */
} fault_kind;

static struct {
	fault_kind kind;
	long countdown; /* fail when it reaches 0; negative: disarmed */
	long hits;      /* faults injected */
} plan = {FAULT_WRITE_IO, -1, 0};

static bool fire(fault_kind kind)
{
	if (plan.countdown < 0 || plan.kind != kind)
		return false;
	if (plan.countdown-- == 0) {
		plan.hits++;
		plan.countdown = -1; /* one fault per run: then the disk "recovers" */
		return true;
	}
	return false;
}

/* ---- the VFS shim ---- */

typedef struct faulty_file {
	sqlite3_file base;
	int last_errno;     /* of the last fault injected here, as the unix VFS keeps it */
	bool family;        /* a file under families/ */
	sqlite3_file *real; /* allocated right after this struct */
} faulty_file;

static sqlite3_vfs *real_vfs;

static int f_close(sqlite3_file *f)
{
	faulty_file *p = (faulty_file *)f;
	int rc = p->real->pMethods ? p->real->pMethods->xClose(p->real) : SQLITE_OK;
	return rc;
}
static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	faulty_file *p = (faulty_file *)f;
	if (fire(FAULT_READ))
		return SQLITE_IOERR_READ;
	return p->real->pMethods->xRead(p->real, buf, n, off);
}
static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	faulty_file *p = (faulty_file *)f;
	if (fire(FAULT_WRITE_IO))
		return SQLITE_IOERR_WRITE;
	if (fire(FAULT_WRITE_FULL))
		return SQLITE_FULL;
	if (fire(FAULT_WRITE_ROFS)) {
		p->last_errno = EROFS;
		return SQLITE_IOERR_WRITE;
	}
	return p->real->pMethods->xWrite(p->real, buf, n, off);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	faulty_file *p = (faulty_file *)f;
	return p->real->pMethods->xTruncate(p->real, size);
}
static int f_sync(sqlite3_file *f, int flags)
{
	faulty_file *p = (faulty_file *)f;
	if (fire(FAULT_SYNC))
		return SQLITE_IOERR_FSYNC;
	if (fire(FAULT_SYNC_NOSPACE)) {
		p->last_errno = ENOSPC;
		return SQLITE_IOERR_FSYNC;
	}
	return p->real->pMethods->xSync(p->real, flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return ((faulty_file *)f)->real->pMethods->xFileSize(((faulty_file *)f)->real, size);
}
static int f_lock(sqlite3_file *f, int l)
{
	return ((faulty_file *)f)->real->pMethods->xLock(((faulty_file *)f)->real, l);
}
static int f_unlock(sqlite3_file *f, int l)
{
	return ((faulty_file *)f)->real->pMethods->xUnlock(((faulty_file *)f)->real, l);
}
static int f_check_lock(sqlite3_file *f, int *out)
{
	return ((faulty_file *)f)->real->pMethods->xCheckReservedLock(((faulty_file *)f)->real,
									out);
}
static int f_control(sqlite3_file *f, int op, void *arg)
{
	faulty_file *p = (faulty_file *)f;
	if (op == SQLITE_FCNTL_LAST_ERRNO && p->last_errno) {
		*(int *)arg = p->last_errno;
		return SQLITE_OK;
	}
	return p->real->pMethods->xFileControl(p->real, op, arg);
}
static int f_sector(sqlite3_file *f)
{
	return ((faulty_file *)f)->real->pMethods->xSectorSize(((faulty_file *)f)->real);
}
static int f_caps(sqlite3_file *f)
{
	return ((faulty_file *)f)->real->pMethods->xDeviceCharacteristics(((faulty_file *)f)->real);
}
static int f_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
	faulty_file *p = (faulty_file *)f;
	if (p->family && extend && fire(FAULT_SHM_NOSPACE)) {
		errno = ENOSPC; /* as the unix VFS leaves it, for SQLite's xGetLastError */
		return SQLITE_IOERR_SHMSIZE;
	}
	return p->real->pMethods->xShmMap(p->real, pg, sz, extend, pp);
}
static int f_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return ((faulty_file *)f)->real->pMethods->xShmLock(((faulty_file *)f)->real, off, n, flags);
}
static void f_shm_barrier(sqlite3_file *f)
{
	((faulty_file *)f)->real->pMethods->xShmBarrier(((faulty_file *)f)->real);
}
static int f_shm_unmap(sqlite3_file *f, int del)
{
	return ((faulty_file *)f)->real->pMethods->xShmUnmap(((faulty_file *)f)->real, del);
}

static const sqlite3_io_methods faulty_io = {
	2, f_close, f_read, f_write, f_truncate, f_sync, f_size, f_lock, f_unlock,
	f_check_lock, f_control, f_sector, f_caps, f_shm_map, f_shm_lock, f_shm_barrier,
	f_shm_unmap, NULL, NULL,
};

static int f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	(void)vfs;
	faulty_file *p = (faulty_file *)f;
	p->real = (sqlite3_file *)(p + 1);
	p->last_errno = 0;
	p->family = name && strstr(name, "/families/");
	int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
	/* On failure xClose is not called, so pMethods must stay NULL. */
	p->base.pMethods = rc == SQLITE_OK ? &faulty_io : NULL;
	return rc;
}

static sqlite3_vfs faulty_vfs;

static void register_faulty(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	faulty_vfs = *real_vfs;
	faulty_vfs.zName = "faulty";
	faulty_vfs.szOsFile = (int)sizeof(faulty_file) + real_vfs->szOsFile;
	faulty_vfs.xOpen = f_open;
	faulty_vfs.pNext = NULL;
	assert_int_equal(sqlite3_vfs_register(&faulty_vfs, 0), SQLITE_OK);
}

/* ---- the failing allocator ---- */

static sqlite3_mem_methods real_mem;

static void *m_malloc(int n)
{
	return fire(FAULT_MALLOC) ? NULL : real_mem.xMalloc(n);
}
static void *m_realloc(void *p, int n)
{
	return fire(FAULT_MALLOC) ? NULL : real_mem.xRealloc(p, n);
}

static void install_allocator(void)
{
	sqlite3_mem_methods m;
	assert_int_equal(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem), SQLITE_OK);
	m = real_mem;
	m.xMalloc = m_malloc;
	m.xRealloc = m_realloc;
	assert_int_equal(sqlite3_config(SQLITE_CONFIG_MALLOC, &m), SQLITE_OK);
}

/* ---- the script ---- */

#define SCRIPT_MESSAGES 6

typedef struct run {
	char dir[64];
	store_family fam;
	store_member parent;
	uint8_t audio[SCRIPT_MESSAGES][3000];
	bool acked[SCRIPT_MESSAGES];
	store_id ids[SCRIPT_MESSAGES];
} run;

static store *open_store(const char *dir, bool faulty)
{
	store_options o;
	store *s = NULL;
	store_options_init(&o);
	o.dir = dir;
	o.vfs = faulty ? "faulty" : NULL;
	return store_open(&s, &o) == 0 ? s : NULL;
}

/* A new data directory (dir, made in /tmp) holding one family, its parent in *parent. */
static void family_dir(char dir[64], store_family *fam, store_member *parent)
{
	snprintf(dir, 64, "/tmp/jiayin-faults-XXXXXX");
	assert_non_null(mkdtemp(dir));
	store *s = open_store(dir, false);
	assert_non_null(s);
	assert_int_equal(store_family_create(s, "f", "p", 0, 1, fam, parent), 0);
	store_close(s);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* In the process, not by a shell's rm: a sweep removes a directory per fault. */
static void remove_dir(const char *dir)
{
	assert_int_equal(nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

static struct {
	const char *from, *to;
} copying;

static int copy_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	char dest[256];
	snprintf(dest, sizeof dest, "%s%s", copying.to, path + strlen(copying.from));
	if (type == FTW_D)
		return strcmp(path, copying.from) == 0 ? 0 : mkdir(dest, st->st_mode & 07777);
	if (type != FTW_F)
		return -1;
	FILE *in = fopen(path, "rb"), *out = fopen(dest, "wb");
	char buf[8192];
	size_t n;
	int rc = in && out ? 0 : -1;
	while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
		rc = fwrite(buf, 1, n, out) == n ? 0 : -1;
	if (in)
		fclose(in);
	if (out && fclose(out) != 0)
		rc = -1;
	return rc;
}

/* A new data directory (dir, made in /tmp) with what the closed one at `from` holds: a sweep's
 * runs each start from a copy of one family_dir, not from a store made anew each time. */
static void copy_dir(char dir[64], const char *from)
{
	snprintf(dir, 64, "/tmp/jiayin-faults-XXXXXX");
	assert_non_null(mkdtemp(dir));
	copying.from = from;
	copying.to = dir;
	assert_int_equal(nftw(from, copy_entry, 8, FTW_PHYS), 0);
}

/* A message of the parent's with this audio, to append. */
static store_new_message message_of(const store_member *parent, const uint8_t *audio, size_t len,
				    const uint8_t *wave)
{
	return (store_new_message){.sender = parent->id.s,
				   .duration_ms = 1000,
				   .waveform = wave,
				   .audio = audio,
				   .audio_len = len};
}

/* The codes a failure may map to under this kind of fault. */
static void assert_fault_code(int rc, fault_kind kind)
{
	if (rc == 0)
		return;
	if (rc != STORE_EIO && rc != STORE_ENOMEM && rc != STORE_EFULL && rc != STORE_EROFS)
		print_message("# unexpected %s under fault %d\n", store_errcode(rc), (int)kind);
	switch (kind) {
	case FAULT_WRITE_FULL:
		assert_true(rc == STORE_EFULL || rc == STORE_EIO);
		break;
	case FAULT_MALLOC:
		assert_true(rc == STORE_ENOMEM || rc == STORE_EIO);
		break;
	case FAULT_READ:
		assert_true(rc == STORE_EIO || rc == STORE_ENOMEM); /* a short read: no memory */
		break;
	case FAULT_WRITE_ROFS:
		assert_int_equal(rc, STORE_EROFS);
		break;
	case FAULT_SYNC_NOSPACE:
		assert_int_equal(rc, STORE_EFULL);
		break;
	default:
		assert_true(rc == STORE_EIO);
	}
}

/* Run the script with the Nth fault armed; false when the fault was never reached. */
static bool run_script(run *r, fault_kind kind, long n)
{
	store *s = open_store(r->dir, true);
	assert_non_null(s);
	plan.kind = kind;
	plan.countdown = n;
	long hits_before = plan.hits;
	for (int i = 0; i < SCRIPT_MESSAGES; i++) {
		uint8_t wave[STORE_WAVEFORM_POINTS] = {0};
		store_new_message m = {.sender = r->parent.id.s,
				       .created_ms = i,
				       .duration_ms = 1000,
				       .waveform = wave,
				       .audio = r->audio[i],
				       .audio_len = sizeof r->audio[i]};
		store_message msg;
		int existed;
		char key[32];
		snprintf(key, sizeof key, "key-%d", i);
		m.idempotency_key = key;
		int rc = store_message_append(s, r->fam.id.s, &m, &msg, &existed);
		assert_fault_code(rc, kind);
		if (rc == 0) {
			r->acked[i] = true;
			r->ids[i] = msg.id;
			uint64_t seq;
			assert_fault_code(store_message_listened(s, r->fam.id.s, msg.id.s,
								 r->parent.id.s, i, &seq),
					  kind);
		}
	}
	bool reached = plan.hits > hits_before;
	plan.countdown = -1;
	store_close(s);
	return reached;
}

/*
 * With faults off: every acknowledged message present and complete. A failed append may still
 * be there (a sync that failed after the commit frame reached the WAL: its fate was unknown,
 * and a retry with its idempotency key finds it), but then whole; nothing appears twice, and
 * the byte count matches what is there.
 */
static void verify(run *r)
{
	store *s = open_store(r->dir, false);
	assert_non_null(s);
	store_message list[SCRIPT_MESSAGES + 1];
	size_t n;
	uint64_t latest, total = 0;
	bool seen[SCRIPT_MESSAGES] = {false};
	assert_int_equal(store_messages_since(s, r->fam.id.s, 0, list, SCRIPT_MESSAGES + 1, &n,
					      &latest),
			 0);
	assert_true(n <= SCRIPT_MESSAGES);
	for (size_t k = 0; k < n; k++) {
		uint8_t buf[3000], hash[32];
		size_t got;
		assert_int_equal(store_audio_read(s, r->fam.id.s, list[k].id.s, 0, buf, sizeof buf,
						  &got),
				 0);
		assert_int_equal(got, sizeof buf);
		crypto_hash_sha256(hash, buf, sizeof buf);
		assert_memory_equal(list[k].sha256, hash, 32);
		int which = -1;
		for (int i = 0; i < SCRIPT_MESSAGES; i++)
			if (memcmp(buf, r->audio[i], sizeof buf) == 0)
				which = i;
		assert_true(which >= 0);
		assert_false(seen[which]); /* no duplicates */
		seen[which] = true;
		if (r->acked[which])
			assert_string_equal(list[k].id.s, r->ids[which].s);
		total += got;
	}
	for (int i = 0; i < SCRIPT_MESSAGES; i++)
		if (r->acked[i])
			assert_true(seen[i]);
	uint64_t used;
	assert_int_equal(store_mailbox_usage(s, r->fam.id.s, &used), 0);
	assert_int_equal(used, total);
	store_close(s);
}

static void sweep(fault_kind kind)
{
	long n = 0, reached = 0;
	char fresh[64];
	store_family fam;
	store_member parent;
	family_dir(fresh, &fam, &parent);
	for (;; n++) {
		run *r = calloc(1, sizeof *r);
		copy_dir(r->dir, fresh);
		r->fam = fam;
		r->parent = parent;
		for (int i = 0; i < SCRIPT_MESSAGES; i++)
			randombytes_buf(r->audio[i], sizeof r->audio[i]);
		bool hit = run_script(r, kind, n);
		verify(r);
		remove_dir(r->dir);
		free(r);
		if (!hit)
			break;
		reached++;
	}
	remove_dir(fresh);
	print_message("# %ld faults injected before the script ran clean\n", reached);
	assert_true(reached > 5); /* the script really went through faulty I/O */
}

static void failing_writes(void **st)
{
	(void)st;
	sweep(FAULT_WRITE_IO);
}

static void disk_full(void **st)
{
	(void)st;
	sweep(FAULT_WRITE_FULL);
}

static void failing_syncs(void **st)
{
	(void)st;
	sweep(FAULT_SYNC);
}

/*
 * A file system remounted read-only after errors (ext4's errors=remount-ro) fails writes with
 * EROFS, and a disk can fill at fsync() (delayed allocation) or at a user's quota: SQLite says
 * only "I/O error" for them, and they were storage_io_error (500), not storage_read_only and
 * storage_full, which tell the operator what to do.
 */
static void read_only_remount(void **st)
{
	(void)st;
	sweep(FAULT_WRITE_ROFS);
}

static void full_at_sync(void **st)
{
	(void)st;
	sweep(FAULT_SYNC_NOSPACE);
}

static void failing_allocations(void **st)
{
	(void)st;
	sweep(FAULT_MALLOC);
}

/*
 * The quick_check of a family's opening under a failed allocation or read: the family opens
 * or the call fails with that error, and its mailbox is never set aside as damaged (the
 * review: quick_check reports a page it could not read, "Page 24: unable to get the page.
 * error code=7", as it reports damage, and a healthy family, quarantined for want of memory,
 * answered storage_corrupt from then on). For N = 0, 1, ... the Nth allocation, then read,
 * of the opening fails, in a mailbox of several pages per table.
 */
static void failed_check_quarantines_nothing(void **st)
{
	(void)st;
	char dir[64], path[160];
	store_family fam;
	store_member parent;
	family_dir(dir, &fam, &parent);
	store *s = open_store(dir, false);
	assert_non_null(s);
	static uint8_t audio[20000] = {1}; /* overflow pages too */
	uint8_t wave[STORE_WAVEFORM_POINTS] = {0};
	store_new_message m = message_of(&parent, audio, sizeof audio, wave);
	store_message msg;
	int existed;
	for (int i = 0; i < 40; i++)
		assert_int_equal(store_message_append(s, fam.id.s, &m, &msg, &existed), 0);
	store_close(s);
	snprintf(path, sizeof path, "%s/families/%s.db", dir, fam.id.s);
	static const fault_kind kinds[] = {FAULT_MALLOC, FAULT_READ};
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		long n = 0;
		for (bool hit = true; hit; n++) {
			assert_non_null(s = open_store(dir, true));
			store_message got;
			plan.kind = kinds[k];
			plan.countdown = n;
			long before = plan.hits;
			assert_fault_code(store_message_get(s, fam.id.s, msg.id.s, &got), kinds[k]);
			hit = plan.hits > before;
			plan.countdown = -1;
			assert_int_equal(access(path, F_OK), 0);
			assert_int_equal(store_message_get(s, fam.id.s, msg.id.s, &got), 0);
			store_close(s);
		}
		print_message("# %ld faults of kind %d in turn\n", n - 1, (int)kinds[k]);
	}
	remove_dir(dir);
}

/*
 * A listing's read transaction ends even when an allocation fails in it: the reader goes back
 * to the pool with no snapshot (the review: the COMMIT a new reader prepared on first use
 * could fail to, leaving its BEGIN open, and every later list on that reader was
 * storage_io_error, its reads the mailbox as it was then, until the family was closed). For
 * N = 0, 1, ... the Nth allocation of a list on a store just opened (so on a new reader)
 * fails; then a message appended is in the next list and found by its id. (The open's
 * quick_check is off: its allocations grow with the mailbox.)
 */
static void failed_allocation_leaves_no_snapshot(void **st)
{
	(void)st;
	char dir[64];
	store_family fam;
	store_member parent;
	family_dir(dir, &fam, &parent);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	o.integrity_check = 0;
	store *s;
	uint8_t audio[300] = {1}, wave[STORE_WAVEFORM_POINTS] = {0};
	store_new_message m = message_of(&parent, audio, sizeof audio, wave);
	long n = 0;
	for (bool hit = true; hit; n++) {
		assert_int_equal(store_open(&s, &o), 0);
		store_message list[8], msg;
		size_t got;
		uint64_t latest;
		int existed;
		plan.kind = FAULT_MALLOC;
		plan.countdown = n;
		long before = plan.hits;
		assert_fault_code(store_messages_since(s, fam.id.s, 0, list, 8, &got, &latest),
		                  FAULT_MALLOC);
		hit = plan.hits > before;
		plan.countdown = -1;
		assert_int_equal(store_message_append(s, fam.id.s, &m, &msg, &existed), 0);
		assert_int_equal(
		    store_messages_since(s, fam.id.s, msg.seq - 1, list, 8, &got, &latest), 0);
		assert_int_equal(got, 1);
		assert_string_equal(list[0].id.s, msg.id.s);
		assert_int_equal(store_message_get(s, fam.id.s, msg.id.s, &msg), 0);
		store_close(s);
	}
	print_message("# %ld allocations failed in turn\n", n - 1);
	remove_dir(dir);
}

/*
 * A failure is labelled by the errno of its own call, not one a file kept from an earlier
 * failure: SQLite never clears a file's last errno, so once a sync of the WAL had failed with
 * ENOSPC (storage_full, right), a read of the database that failed later was storage_full too,
 * and a disk that had filled once read as full for good. After the full sync, for N = 0, 1,
 * ... the Nth read of the next append and reads fails: storage_io_error, never storage_full.
 */
static void stale_errno_labels_nothing(void **st)
{
	(void)st;
	char dir[64];
	store_family fam;
	store_member parent;
	family_dir(dir, &fam, &parent);
	store *s;
	uint8_t audio[20000] = {1}, wave[STORE_WAVEFORM_POINTS] = {0};
	store_new_message m = message_of(&parent, audio, sizeof audio, wave);
	long n = 0, reads = 0;
	for (bool hit = true; hit; n++) {
		assert_non_null(s = open_store(dir, true));
		store_message msg, list[4];
		size_t got;
		uint64_t latest;
		int existed;
		plan.kind = FAULT_SYNC_NOSPACE;
		plan.countdown = 0;
		assert_int_equal(store_message_append(s, fam.id.s, &m, &msg, &existed),
		                 STORE_EFULL);
		plan.kind = FAULT_READ;
		plan.countdown = n;
		long before = plan.hits;
		int rc = store_message_append(s, fam.id.s, &m, &msg, &existed);
		assert_fault_code(rc, FAULT_READ);
		if (rc == 0)
			assert_fault_code(store_message_get(s, fam.id.s, msg.id.s, &msg),
			                  FAULT_READ);
		assert_fault_code(store_messages_since(s, fam.id.s, 0, list, 4, &got, &latest),
		                  FAULT_READ);
		hit = plan.hits > before;
		reads += hit;
		plan.countdown = -1;
		store_close(s);
	}
	print_message("# %ld reads failed in turn after a full sync\n", reads);
	assert_true(reads > 0);
	remove_dir(dir);
}

/* What store_family_verify told of the messages it found wrong. */
typedef struct verify_notes {
	size_t n;
	char ids[4][STORE_ID_LEN + 1];
	int why[4];
} verify_notes;

static void note_wrong(void *arg, int64_t row, const char *message_id, int why)
{
	verify_notes *v = arg;
	assert_true(row > 0);
	assert_true(v->n < 4);
	snprintf(v->ids[v->n], sizeof v->ids[v->n], "%s", message_id);
	v->why[v->n++] = why;
}

/*
 * A voice the disk fails to read (an I/O error, a bad sector) is named as unreadable and the
 * family's other voices are still checked (the review: the error ended the family's check,
 * the voices after it unchecked and the unreadable one unnamed). For N = 0, 1, ... the Nth
 * read of verify fails, in a mailbox of three voices of several pages each: either the
 * listing failed (nothing checked), or each voice is checked whole or named unreadable.
 */
static void verify_names_an_unreadable_voice(void **st)
{
	(void)st;
	char dir[64];
	store_family fam;
	store_member parent;
	store_id ids[3];
	family_dir(dir, &fam, &parent);
	store *s = open_store(dir, false);
	assert_non_null(s);
	static uint8_t audio[3][40000];
	uint8_t wave[STORE_WAVEFORM_POINTS] = {0};
	for (int i = 0; i < 3; i++) {
		randombytes_buf(audio[i], sizeof audio[i]);
		store_new_message m = message_of(&parent, audio[i], sizeof audio[i], wave);
		store_message msg;
		int existed;
		assert_int_equal(store_message_append(s, fam.id.s, &m, &msg, &existed), 0);
		ids[i] = msg.id;
	}
	store_close(s); /* checkpointed: the audio is read from the main file */
	long n = 0, named = 0;
	for (bool hit = true; hit; n++) {
		assert_non_null(s = open_store(dir, true));
		store_message list[1];
		size_t got;
		/* The family opened (its checks run) before the fault is armed. */
		assert_int_equal(store_messages_newest(s, fam.id.s, list, 1, &got), 0);
		verify_notes v = {0};
		store_verify_counts c;
		plan.kind = FAULT_READ;
		plan.countdown = n;
		long before = plan.hits;
		int rc = store_family_verify(s, fam.id.s, note_wrong, &v, &c);
		hit = plan.hits > before;
		plan.countdown = -1;
		assert_int_equal(c.damaged, 0);
		if (rc < 0) { /* the listing of the messages could not be read */
			assert_int_equal(rc, STORE_EIO);
			assert_true(hit);
			assert_int_equal(c.messages + c.unreadable, 0);
		} else {
			assert_int_equal(c.messages + c.unreadable, 3);
			assert_int_equal(c.unreadable, v.n);
			if (!hit)
				assert_int_equal(c.unreadable, 0);
			for (size_t k = 0; k < v.n; k++) {
				assert_int_equal(v.why[k], STORE_EIO);
				bool ours = false;
				for (int i = 0; i < 3; i++)
					ours |= strcmp(v.ids[k], ids[i].s) == 0;
				assert_true(ours);
			}
			named += v.n == 1 && c.messages == 2;
		}
		/* The disk read again: every voice is whole. */
		assert_int_equal(store_family_verify(s, fam.id.s, NULL, NULL, &c), 0);
		assert_int_equal(c.messages, 3);
		assert_int_equal(c.unreadable + c.damaged, 0);
		store_close(s);
	}
	print_message("# %ld reads failed in turn, %ld named an unreadable voice\n", n - 1, named);
	assert_true(named > 0);
	remove_dir(dir);
}

/* The health check is a real durable write: it reports a full disk, then recovers. */
static void health_check_reports_a_full_disk(void **st)
{
	(void)st;
	char dir[64];
	snprintf(dir, sizeof dir, "/tmp/jiayin-health-XXXXXX");
	assert_non_null(mkdtemp(dir));
	store *s = open_store(dir, true);
	assert_non_null(s);
	assert_int_equal(store_health_check(s, 1000), 0);
	plan.kind = FAULT_WRITE_FULL;
	plan.countdown = 0;
	assert_int_equal(store_health_check(s, 2000), STORE_EFULL);
	assert_int_equal(plan.countdown, -1); /* the fault was met */
	assert_int_equal(store_health_check(s, 3000), 0);
	plan.kind = FAULT_SYNC;
	plan.countdown = 0;
	assert_int_equal(store_health_check(s, 4000), STORE_EIO);
	assert_int_equal(store_health_check(s, 5000), 0);
	store_close(s);
	remove_dir(dir);
}

/*
 * The health check, and a directory write outside a transaction (a member added), on a file
 * system remounted read-only (EROFS at write()) or full at fsync() (ENOSPC): storage_read_only
 * and storage_full, as store_health_check promises, where the write's own step (which commits
 * it) mapped SQLite's "I/O error" alone and said storage_io_error (the review).
 */
static void directory_writes_tell_the_file_systems_reason(void **st)
{
	(void)st;
	char dir[64];
	store_family fam;
	store_member parent, child;
	family_dir(dir, &fam, &parent);
	store *s = open_store(dir, true);
	assert_non_null(s);
	static const struct {
		fault_kind kind;
		int rc;
	} cases[] = {{FAULT_WRITE_ROFS, STORE_EROFS}, {FAULT_SYNC_NOSPACE, STORE_EFULL}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		plan.kind = cases[i].kind;
		plan.countdown = 0;
		assert_int_equal(store_health_check(s, 2000), cases[i].rc);
		assert_int_equal(plan.countdown, -1); /* the fault was met */
		plan.countdown = 0;
		assert_int_equal(
		    store_member_add(s, fam.id.s, "kid", STORE_ROLE_CHILD, NULL, 2000, &child),
		    cases[i].rc);
		assert_int_equal(plan.countdown, -1);
		assert_int_equal(store_health_check(s, 3000), 0); /* and recovers */
	}
	store_close(s);
	remove_dir(dir);
}

/*
 * A family opened for the first time on a full disk: its -shm (SQLite's shared index, made at
 * the open) cannot grow. That is storage_full, what the operator must hear, where the store
 * said storage_io_error (helper-123, on a full tmpfs). The family opens once there is room.
 */
static void full_disk_at_a_familys_first_open(void **st)
{
	(void)st;
	char dir[64];
	store_family fam;
	store_member parent;
	uint64_t bytes;
	family_dir(dir, &fam, &parent);
	store *s = open_store(dir, true);
	assert_non_null(s);
	plan.kind = FAULT_SHM_NOSPACE;
	plan.countdown = 0;
	assert_int_equal(store_mailbox_usage(s, fam.id.s, &bytes), STORE_EFULL);
	assert_int_equal(plan.countdown, -1); /* the fault was met */
	assert_int_equal(store_mailbox_usage(s, fam.id.s, &bytes), 0);
	assert_int_equal(bytes, 0);
	store_close(s);
	remove_dir(dir);
}

/*
 * A disk that fails to read a family's database as verify (a read-only store) opens it is
 * storage_io_error, as docs/operations.md says, never storage_read_only: every connection of a
 * read-only store is read-only, and the opening's I/O errors were all taken for a file system
 * that takes no writes. For N = 0, 1, ... the Nth read of the opening fails.
 */
static void read_only_store_tells_a_failed_read(void **st)
{
	(void)st;
	char dir[64];
	store_family fam;
	store_member parent;
	family_dir(dir, &fam, &parent);
	store *s = open_store(dir, false);
	assert_non_null(s);
	static uint8_t audio[20000] = {1};
	uint8_t wave[STORE_WAVEFORM_POINTS] = {0};
	store_new_message m = message_of(&parent, audio, sizeof audio, wave);
	store_message msg;
	int existed;
	assert_int_equal(store_message_append(s, fam.id.s, &m, &msg, &existed), 0);
	store_close(s);
	long n = 0, failed = 0;
	for (bool hit = true; hit; n++) {
		store_options o;
		store_options_init(&o);
		o.dir = dir;
		o.vfs = "faulty";
		o.read_only = 1;
		assert_int_equal(store_open(&s, &o), 0);
		store_message got;
		plan.kind = FAULT_READ;
		plan.countdown = n;
		long before = plan.hits;
		int rc = store_message_get(s, fam.id.s, msg.id.s, &got);
		hit = plan.hits > before;
		plan.countdown = -1;
		assert_true(rc == 0 || rc == STORE_EIO || rc == STORE_ENOMEM);
		failed += rc < 0;
		assert_int_equal(store_message_get(s, fam.id.s, msg.id.s, &got), 0);
		store_close(s);
	}
	print_message("# %ld reads failed in turn, %ld failed the call\n", n - 1, failed);
	assert_true(failed > 0);
	remove_dir(dir);
}

int main(void)
{
	/* The allocator must be set before SQLite initialises. */
	install_allocator();
	assert_int_equal(sqlite3_initialize(), SQLITE_OK);
	register_faulty();
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(health_check_reports_a_full_disk),
		cmocka_unit_test(directory_writes_tell_the_file_systems_reason),
		cmocka_unit_test(full_disk_at_a_familys_first_open),
		cmocka_unit_test(read_only_store_tells_a_failed_read),
		cmocka_unit_test(failing_writes),
		cmocka_unit_test(disk_full),
		cmocka_unit_test(failing_syncs),
		cmocka_unit_test(read_only_remount),
		cmocka_unit_test(full_at_sync),
		cmocka_unit_test(failing_allocations),
		cmocka_unit_test(failed_check_quarantines_nothing),
		cmocka_unit_test(failed_allocation_leaves_no_snapshot),
		cmocka_unit_test(stale_errno_labels_nothing),
		cmocka_unit_test(verify_names_an_unreadable_voice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
