/*
 * store.c — the store: opening the data directory, the directory database, the family cache
 * and the audit log. The data directory's files (paths, quarantine, the sweep) are in files.c;
 * families and their members in families.c.
 *
 * Layout of the data directory: directory.db, families/<id>.db (one per family), and
 * quarantine/ where a family database that fails its integrity check is moved (with its -wal
 * and -shm) so that it can be examined and the other families carry on. Family ids are checked
 * to be ids before they become paths. The cache keeps at most max_open_families databases
 * open; the least recently used one that nobody holds is closed first. Opening happens outside
 * the cache lock (it can take a quick_check) with the entry marked `opening`. Every entry is
 * also in a hash table by id, chained through the entries themselves: a lookup costs one
 * bucket, not a walk of up to max_open_families entries, and the table (allocated with the
 * store, about two buckets per cache slot) never fills up, even with more families held than
 * the cache keeps.
 */
#include "internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Buckets of the family table: twice the cache's size up to this (a bucket is a pointer). */
#define FAMILY_BUCKETS_MAX (1u << 16)

static const struct {
	const char *code, *message;
} errors[STORE_ERROR_COUNT] = {
    {"ok", "success"},
    {"out_of_memory", "out of memory"},
    {"storage_io_error", "the storage could not read or write a file"},
    {"storage_full", "the disk is full"},
    {"storage_read_only", "the storage is read-only"},
    {"storage_corrupt", "a database file is damaged"},
    {"storage_busy", "the storage is busy; try again"},
    {"not_found", "not found"},
    {"conflict", "it exists already"},
    {"invalid_argument", "an argument is missing, malformed or out of range"},
    {"quota_exceeded", "the family's mailbox is full"},
    {"storage_schema_too_new", "the data was written by a newer version of Jiayin"},
    {"limit_reached", "a limit on the family's members: too many, or its last parent"},
    {"storage_directory_missing",
     "directory.db is missing but families/ holds family databases: restore directory.db "
     "from a backup (nothing was changed)"},
    {"storage_schema_old",
     "the data was written by an older version of Jiayin: start this version's server on it "
     "first (it upgrades the data), or use the tools of the version that runs"},
    {"changed", "what the call was based on changed meanwhile"},
};

const char *store_strerror(int err)
{
	return err <= 0 && err > -STORE_ERROR_COUNT ? errors[-err].message : "unknown error";
}

const char *store_errcode(int err)
{
	return err <= 0 && err > -STORE_ERROR_COUNT ? errors[-err].code : "unknown_error";
}

void store_options_init(store_options *o)
{
	*o = (store_options){
	    .dir = "jiayin-data",
	    .max_open_families = 256,
	    .readers = 2,
	    .busy_timeout_ms = 5000,
	    .integrity_check = 1,
	    .upgrade_directory = 1,
	    .apply_floor = 1,
	};
}

static const char base32[] = "0123456789abcdefghjkmnpqrstvwxyz"; /* Crockford, lower case */

void store_new_id(store_id *id)
{
	uint8_t raw[16];
	randombytes_buf(raw, sizeof raw);
	/* 128 bits -> 26 characters of 5 bits (the last carries 3). */
	unsigned bits = 0, acc = 0, n = 0;
	for (int i = 0; i < 16; i++) {
		acc = acc << 8 | raw[i];
		bits += 8;
		while (bits >= 5) {
			id->s[n++] = base32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	id->s[n++] = base32[(acc << (5 - bits)) & 31];
	id->s[n] = '\0';
}

/* Whether c is one of base32's characters: every storage call checks its ids, so no memchr. */
static bool is_base32(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return true;
	return c >= 'a' && c <= 'z' && c != 'i' && c != 'l' && c != 'o' && c != 'u';
}

int store_id_check(const char *s)
{
	if (!s)
		return STORE_EINVAL;
	size_t n = 0;
	for (; s[n]; n++)
		if (n >= STORE_ID_LEN || !is_base32((unsigned char)s[n]))
			return STORE_EINVAL;
	return n == STORE_ID_LEN ? 0 : STORE_EINVAL;
}

size_t store_control_at(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	if (*p < 0x20 || *p == 0x7f)
		return 1;
	if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
		return 2;
	/* U+202A-U+202E (embeddings, overrides) and U+2066-U+2069 (isolates) */
	if (p[0] == 0xe2 && ((p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae) ||
	                     (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)))
		return 3;
	return 0;
}

/* The code point the UTF-8 text `p` starts with, its length in *len; -1 for bytes that are not
 * UTF-8: a stray continuation, an overlong form, a surrogate, past U+10FFFF or cut short. */
static long utf8_at(const unsigned char *p, size_t *len)
{
	static const long least[] = {0, 0, 0x80, 0x800, 0x10000};
	size_t n = p[0] < 0x80                    ? 1
	           : p[0] >= 0xc2 && p[0] <= 0xdf ? 2
	           : (p[0] & 0xf0) == 0xe0        ? 3
	           : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
	                                          : 0;
	if (n == 0)
		return -1;
	long c = n == 1 ? p[0] : p[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		c = c << 6 | (p[i] & 0x3f);
	}
	if (c < least[n] || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return -1;
	*len = n;
	return c;
}

/* Characters that show nothing on their own: spaces (U+0020, U+00A0, U+1680, U+2000-U+200A,
 * U+2028, U+2029, U+202F, U+205F, U+3000) and Unicode's default-ignorable code points (the soft
 * hyphen, joiners, marks, fillers, variation selectors, the byte order mark, tags). */
static bool blank(long c)
{
	static const long ranges[][2] = {
	    {0x20, 0x20},       {0xa0, 0xa0},     {0xad, 0xad},       {0x34f, 0x34f},
	    {0x61c, 0x61c},     {0x115f, 0x1160}, {0x1680, 0x1680},   {0x17b4, 0x17b5},
	    {0x180b, 0x180f},   {0x2000, 0x200f}, {0x2028, 0x202f},   {0x205f, 0x206f},
	    {0x3000, 0x3000},   {0x3164, 0x3164}, {0xfe00, 0xfe0f},   {0xfeff, 0xfeff},
	    {0xffa0, 0xffa0},   {0xfff0, 0xfff8}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a},
	    {0xe0000, 0xe0fff},
	};
	for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
		if (c >= ranges[i][0] && c <= ranges[i][1])
			return true;
	return false;
}

bool store_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0, len;
	if (n == 0 || n > STORE_NAME_MAX)
		return false;
	bool shows = false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p += len) {
		long c = utf8_at(p, &len);
		if (c < 0 || store_control_at((const char *)p))
			return false;
		shows |= !blank(c);
	}
	return shows;
}

int check_text(const char *s, size_t max)
{
	if (!s || !*s)
		return STORE_EINVAL;
	size_t n = strnlen(s, max + 1);
	return n <= max ? 0 : STORE_EINVAL;
}

void copy_text(char *dst, size_t cap, const unsigned char *src)
{
	snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

static const char *const role_names[] = {NULL, "parent", "caregiver", "child"};

const char *store_role_name(store_role r)
{
	return r >= STORE_ROLE_PARENT && r <= STORE_ROLE_CHILD ? role_names[r] : "unknown";
}

int store_role_parse(const char *name, store_role *out)
{
	for (int r = STORE_ROLE_PARENT; name && r <= STORE_ROLE_CHILD; r++) {
		if (strcmp(name, role_names[r]) == 0) {
			*out = (store_role)r;
			return 0;
		}
	}
	return STORE_EINVAL;
}

/*
 * PRAGMA quick_check: STORE_ECORRUPT only when it reports damage (or SQLite says the file is
 * not a database). A check that cannot run, for want of memory or a read error, is that error:
 * a healthy family must never be quarantined because the machine was short of memory.
 */
static int integrity_check(db *d)
{
	conn *c = db_write_begin(d);
	sqlite3_stmt *st = NULL;
	int r = sqlite3_prepare_v2(c->db, "PRAGMA quick_check(1)", -1, &st, NULL);
	int rc;
	if (r == SQLITE_OK)
		r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		/* A page the check could not read, for want of memory or a read error (a tree
		 * page: "unable to get the page. error code=7"; an overflow page: "failed to
		 * get page 49"), is reported as damage is, yet says nothing of the page. */
		const char *code = t ? strstr(t, "error code=") : NULL;
		if (!t && sqlite3_errcode(c->db) == SQLITE_NOMEM)
			rc = STORE_ENOMEM;
		else if (code)
			rc = store_map_sqlite(atoi(code + strlen("error code=")));
		else if (t && strstr(t, "failed to get page"))
			rc = STORE_EIO;
		else
			rc = t && strcmp(t, "ok") == 0 ? 0 : STORE_ECORRUPT;
		if (rc == 0 && code)
			rc = STORE_EIO; /* a code that maps to none: still not a verdict */
	} else {
		rc = store_map_db(c->db, r);
		if (rc == 0)
			rc = STORE_EIO; /* no row at all: the check did not run */
	}
	sqlite3_finalize(st);
	db_write_end(d);
	return rc;
}

/* ---- opening and closing ---- */

static pthread_once_t sqlite_setup_once = PTHREAD_ONCE_INIT;

/*
 * Process-wide SQLite settings, before SQLite initialises (if the program set SQLite up
 * already, as the fault tests do, this is refused and harmless). Without it every connection
 * allocated 20 pages of cache up front: 330 KB at our 16 KiB pages, for each open family.
 */
static void sqlite_setup(void)
{
	sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
}

void store_close(store *s)
{
	if (!s)
		return;
	for (family *f = s->head, *next; f; f = next) {
		next = f->next;
		db_close(f->db);
		free(f);
	}
	free(s->buckets);
	db_close(s->directory);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->retention_lock);
	pthread_cond_destroy(&s->retention_turn);
	pthread_mutex_destroy(&s->aside_lock);
	free(s->dir);
	free(s->vfs);
	free(s);
}

int store_health_check(store *s, int64_t now_ms)
{
	static const char sql[] = "INSERT INTO health (id, checked_ms) VALUES (1, ?) "
				  "ON CONFLICT (id) DO UPDATE SET checked_ms = excluded.checked_ms";
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_int64(st, 1, now_ms);
		rc = step_write(st);
		sqlite3_reset(st);
	}
	db_write_end(s->directory);
	return rc;
}

static int refuse_any(store *s, int dir, const char *name, const char *id, void *arg)
{
	(void)s, (void)dir, (void)name, (void)id, (void)arg;
	return STORE_ENODIR;
}

/*
 * The mailbox schema this data directory's server runs (directory meta "mailbox_schema"): one
 * that upgrades records its own; one that does not (upgrade_directory 0) refuses a directory
 * whose server runs an older one, or that does not say (the review: jiayinctl's backup
 * migrated the live mailboxes under an older server whose directory.db had not changed).
 */
static int mailbox_schema_known(store *s)
{
	static const char name[] = "mailbox_schema";
	uint8_t mine = (uint8_t)mailbox_schema.count, theirs = 0;
	size_t n = 0;
	int rc = store_meta_get(s, name, &theirs, 1, &n);
	if (rc < 0 && rc != STORE_ENOTFOUND)
		return rc;
	bool known = rc == 0 && n == 1 && theirs >= mine;
	if (s->opt.upgrade_directory)
		return known ? 0 : store_meta_put(s, name, &mine, 1); /* written once per version */
	return known ? 0 : STORE_EOLD;
}

int store_open(store **out, const store_options *opt)
{
	store_options defaults;
	char path[PATH_CAP];
	int rc = STORE_ENOMEM;
	*out = NULL;
	if (!opt) {
		store_options_init(&defaults);
		opt = &defaults;
	}
	if (!opt->dir || !*opt->dir || strlen(opt->dir) > STORE_DIR_MAX ||
	    opt->max_open_families == 0)
		return STORE_EINVAL;
	if (sodium_init() < 0)
		return STORE_ENOMEM;
	pthread_once(&sqlite_setup_once, sqlite_setup);
	store *s = calloc(1, sizeof *s);
	if (!s)
		return STORE_ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->changed, NULL);
	pthread_mutex_init(&s->retention_lock, NULL);
	pthread_cond_init(&s->retention_turn, NULL);
	pthread_mutex_init(&s->aside_lock, NULL);
	s->opt = *opt;
	if (!(s->dir = strdup(opt->dir)) || (opt->vfs && !(s->vfs = strdup(opt->vfs))))
		goto fail;
	s->opt.dir = s->dir;
	s->opt.vfs = s->vfs;
	unsigned nbuckets = 2;
	while (nbuckets / 2 < opt->max_open_families && nbuckets < FAMILY_BUCKETS_MAX)
		nbuckets *= 2;
	if (!(s->buckets = calloc(nbuckets, sizeof *s->buckets)))
		goto fail;
	s->bucket_mask = nbuckets - 1;
	if (!opt->read_only && (rc = make_dir(s->dir)) < 0)
		goto fail;
	char directory[PATH_CAP];
	if (!with_suffix(directory, sizeof directory, s->dir, "/directory.db")) {
		rc = STORE_EINVAL; /* a path too long for the buffers */
		goto fail;
	}
	/* A directory made now beside families' databases would own none of them, and the
	 * server's sweep would erase them all as orphans (the review: a directory.db lost to fsck,
	 * or a restore of families/ alone, became every family's voices erased). Checked before
	 * anything is made, so that a refused start changes nothing. */
	/* stat: a link to a volume that is not there is a missing directory; and so is an empty
	 * file (what fsck, a full disk or a failed copy can leave: the review). */
	struct stat st;
	int missing = stat(directory, &st) != 0 ? errno == ENOENT : st.st_size == 0;
	if (missing && (rc = each_id_file(s, "families", true, refuse_any, NULL, NULL)) < 0)
		goto fail;
	if (opt->read_only) {
		/* nothing made: a missing families/ has no mailbox to read */
	} else if (!with_suffix(path, sizeof path, s->dir, "/families") ||
	           (rc = make_dir(path)) < 0 ||
	           !with_suffix(path, sizeof path, s->dir, "/quarantine") ||
	           (rc = make_dir(path)) < 0) {
		if (rc == 0)
			rc = STORE_EINVAL;
		goto fail;
	}
	if ((rc = db_open(&s->directory, directory, &directory_schema, &s->opt, true)) < 0 ||
	    (rc = mailbox_schema_known(s)) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

/* ---- the family cache ---- */

/*
 * The bucket of an id (checked to be STORE_ID_LEN base32 characters before it gets here):
 * its four 8-byte words (the last two overlap) multiplied in, the high half folded down.
 * Ids are random, and only families that exist stay in the table.
 */
static family **bucket(const store *s, const char *family_id)
{
	uint64_t h = 0;
	static const unsigned at[4] = {0, 8, 16, STORE_ID_LEN - 8};
	for (int i = 0; i < 4; i++) {
		uint64_t w;
		memcpy(&w, family_id + at[i], sizeof w);
		h = (h ^ w) * 0x9e3779b97f4a7c15ull;
	}
	return &s->buckets[(h ^ h >> 32) & s->bucket_mask];
}

static void lru_unlink(store *s, family *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		s->head = f->next;
	if (f->next)
		f->next->prev = f->prev;
	else
		s->tail = f->prev;
	f->prev = f->next = NULL;
}

static void lru_push_front(store *s, family *f)
{
	f->next = s->head;
	f->prev = NULL;
	if (s->head)
		s->head->prev = f;
	s->head = f;
	if (!s->tail)
		s->tail = f;
}

/* An entry into the cache (the LRU's head and its bucket) and out of it, with the lock held. */
static void cache_add(store *s, family *f)
{
	family **b = bucket(s, f->id.s);
	f->chain = *b;
	*b = f;
	lru_push_front(s, f);
	s->nfamilies++;
}

static void cache_remove(store *s, family *f)
{
	family **p = bucket(s, f->id.s);
	while (*p != f)
		p = &(*p)->chain;
	*p = f->chain;
	f->chain = NULL;
	lru_unlink(s, f);
	s->nfamilies--;
}

/*
 * Take unused databases beyond the limit out of the cache, with the lock held; the caller
 * closes them (close_evicted) after unlocking: a close checkpoints and syncs the WAL, which
 * must not stall every other family's calls.
 */
static family *evict(store *s)
{
	family *victims = NULL;
	for (family *f = s->tail; f && s->nfamilies > s->opt.max_open_families;) {
		family *prev = f->prev;
		if (f->refs == 0 && !f->opening && !f->deleting) {
			cache_remove(s, f);
			f->next = victims;
			victims = f;
		}
		f = prev;
	}
	return victims;
}

static void close_evicted(family *victims)
{
	while (victims) {
		family *next = victims->next;
		db_close(victims->db);
		free(victims);
		victims = next;
	}
}

static family *find_family(store *s, const char *family_id)
{
	family *f = *bucket(s, family_id);
	while (f && memcmp(f->id.s, family_id, STORE_ID_LEN) != 0)
		f = f->chain;
	return f;
}

/*
 * A statement a family's opening runs once (the owner row's, the restored floor's): prepared for
 * the call alone, not kept in the connection's cache for the family's life (bench_storage: 155
 * KiB per open family with the owner's cached, 140 without). One text parameter (param) or
 * none; the first column of its row into out (STORE_ENOTFOUND: no row) when out is given.
 */
static int once_sql(conn *c, const char *sql, const char *param, char out[STORE_ID_LEN + 1])
{
	sqlite3_stmt *st = NULL;
	int r = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	if (r == SQLITE_OK && param)
		sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
	if (r == SQLITE_OK)
		r = sqlite3_step(st);
	if (r == SQLITE_ROW && out)
		copy_text(out, STORE_ID_LEN + 1, sqlite3_column_text(st, 0));
	int rc = r == SQLITE_ROW    ? 0
	         : r == SQLITE_DONE ? (out ? STORE_ENOTFOUND : 0)
	                            : store_map_db(c->db, r);
	if (rc == 0 && r != SQLITE_ROW && r != SQLITE_DONE)
		rc = STORE_EIO;
	sqlite3_finalize(st);
	return rc;
}

int mailbox_owner_write(db *d, const char *family_id)
{
	conn *c = db_write_begin(d);
	int rc =
	    once_sql(c, "INSERT OR REPLACE INTO owner (id, family) VALUES (1, ?)", family_id, NULL);
	db_write_end(d);
	return rc;
}

static void family_of_member(sqlite3_stmt *st, void *out)
{
	copy_text(out, STORE_ID_LEN + 1, sqlite3_column_text(st, 0));
}

/*
 * Whether an opened mailbox is this family's: its owner row (mailbox step 7) names it. One
 * without the row (made before the step, or a backup-family copy taken before it) is taken as
 * this family's, and given the row, unless its newest message was sent by someone who is not a
 * member of the family (members are never deleted while their family stays): then, as one with
 * another family's name, it is STORE_ECORRUPT and set aside like a damaged file. Served, a
 * backup-family file copied to another family's name would play one family's voices to another.
 * The read and the write run on the write connection: nobody else has the family yet.
 */
static int owner_check(store *s, db *d, const char *family_id)
{
	char owner[STORE_ID_LEN + 1] = "", sender[STORE_ID_LEN + 1] = "";
	conn *c = db_write_begin(d);
	int rc = once_sql(c, "SELECT family FROM owner WHERE id = 1", NULL, owner);
	if (rc == STORE_ENOTFOUND)
		rc = once_sql(c, "SELECT sender FROM messages ORDER BY rowid DESC LIMIT 1", NULL,
		              sender);
	db_write_end(d);
	if (rc == 0 && owner[0])
		return strcmp(owner, family_id) == 0 ? 0 : STORE_ECORRUPT;
	if (rc == 0) {
		/* A sender unknown to the directory is no member of this family either. */
		char of[STORE_ID_LEN + 1] = "";
		rc = read_one(s, "SELECT family_id FROM members WHERE id = ?", text_key(sender),
		              family_of_member, of);
		if (rc == STORE_ENOTFOUND || (rc == 0 && strcmp(of, family_id) != 0))
			return STORE_ECORRUPT;
		/* directory.db's damage says nothing of this mailbox: it must not be set aside
		 * for it (as integrity_check, a check that cannot run is no verdict) */
		if (rc == STORE_ECORRUPT)
			return STORE_EIO;
	}
	if ((rc == 0 || rc == STORE_ENOTFOUND) && !s->opt.read_only)
		(void)mailbox_owner_write(d, family_id); /* best effort: asked again next time */
	return rc == STORE_ENOTFOUND ? 0 : rc;
}

/*
 * A restored copy, opened the first time since it was put back (its seq_floor row not yet
 * applied): its floor is raised to the time of this opening, in milliseconds times 1024, when
 * that is higher. The copy's own floor (2^32 above the change it was taken at) is the same each
 * time the copy is put back, so a second restore of one copy (or of a copy taken before an
 * earlier restore) numbered its changes as the first had, and a phone that listed after the
 * first missed them without a reset. Each opening's floor is above every number the mailbox
 * restored before could have given since (fewer than 1024 changes a millisecond), as long as
 * the clock did not go back; numbers stay below 2^53 (ms 8.8e12, the year 2248). On a file
 * system remounted read-only the floor is left: no number is given there.
 */
static int floor_apply(db *d)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	long long now_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	char sql[160];
	snprintf(sql, sizeof sql,
	         "UPDATE seq_floor SET floor = max(floor, %lld * 1024), applied_ms = %lld "
	         "WHERE applied_ms IS NULL",
	         now_ms, now_ms);
	char unapplied[STORE_ID_LEN + 1];
	conn *c = db_write_begin(d);
	int rc = once_sql(c, "SELECT 1 FROM seq_floor WHERE applied_ms IS NULL", NULL, unapplied);
	if (rc == 0)
		rc = once_sql(c, sql, NULL, NULL);
	db_write_end(d);
	return rc == STORE_ENOTFOUND || rc == STORE_EROFS ? 0 : rc;
}

/* 0: the file is there; STORE_ENOTFOUND: it is not; STORE_EIO: the file system could not say
 * (an I/O error, a directory it may not search, a loop of symbolic links). */
static int file_there(const char *path)
{
	if (access(path, F_OK) == 0)
		return 0;
	return errno == ENOENT ? STORE_ENOTFOUND : STORE_EIO;
}

int family_acquire(store *s, const char *family_id, family **out)
{
	char path[PATH_CAP];
	int rc;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND; /* a malformed id names nothing (family_path's answer) */
	pthread_mutex_lock(&s->lock);
	for (;;) {
		family *f = find_family(s, family_id);
		if (!f)
			break;
		if (f->deleting) {
			pthread_mutex_unlock(&s->lock);
			return STORE_ENOTFOUND;
		}
		if (f->opening) {
			pthread_cond_wait(&s->changed, &s->lock);
			continue; /* look again: it may have failed and gone */
		}
		f->refs++;
		lru_unlink(s, f);
		lru_push_front(s, f);
		pthread_mutex_unlock(&s->lock);
		*out = f;
		return 0;
	}
	family *f = calloc(1, sizeof *f);
	if (!f) {
		pthread_mutex_unlock(&s->lock);
		return STORE_ENOMEM;
	}
	memcpy(f->id.s, family_id, STORE_ID_LEN + 1);
	f->opening = true;
	f->refs = 1;
	cache_add(s, f);
	pthread_mutex_unlock(&s->lock);

	/* Open outside the lock: other families go on meanwhile. The path is built only here:
	 * an open family's calls skip the snprintf. */
	if ((rc = family_path(s, family_id, path, sizeof path)) < 0) {
		/* a path that does not fit: rc as family_path says */
	} else if ((rc = file_there(path)) == STORE_EIO) {
		/* not looked up (EIO, EACCES, ELOOP): nothing says it is damaged */
	} else if (rc == STORE_ENOTFOUND) {
		/* No mailbox: the family was erased (its rows went first), or its mailbox was set
		 * aside as damaged (or removed by hand) while its rows stay. The second is not "no
		 * such family" (an app told so would drop the family), but storage_corrupt, until a
		 * backup's copy is restored, as the request that found the damage was told. */
		store_family row;
		int known = store_family_get(s, family_id, &row);
		rc = known == 0 ? STORE_ECORRUPT : known;
	} else if (!s->opt.read_only && (rc = mailbox_writable(s, family_id, path)) < 0) {
		/* A copy put back without its owner (root's, 0644 or 0600) or its write permission:
		 * refused and said. Opened, SQLite would fall back to reading it (its writes
		 * failing storage_read_only with nothing said, or all of it for a file it cannot
		 * read), and the cached handle would stay read-only after the chown, until a
		 * restart. */
	} else {
		rc = db_open(&f->db, path, &mailbox_schema, &s->opt, false);
		if (rc == 0 && s->opt.integrity_check)
			rc = integrity_check(f->db);
		if (rc == 0)
			rc = owner_check(s, f->db, family_id);
		/* read-only, or a tool's store: no change is numbered */
		if (rc == 0 && !s->opt.read_only && s->opt.apply_floor)
			rc = floor_apply(f->db);
		/* The opening's checks read every page (quick_check) and the owner's and floor's:
		 * the cache given back once, so an open family holds only what its calls read. */
		if (f->db)
			db_release_memory(f->db);
		if (rc == STORE_ECORRUPT) {
			db_close(f->db);
			f->db = NULL;
			char moved_to[sizeof((store_set_aside *)0)->moved_to];
			/* read-only: left where it is, and said */
			if (!s->opt.read_only &&
			    quarantine(s, family_id, path, moved_to, sizeof moved_to))
				set_aside_note(s, family_id, moved_to);
		}
	}

	family *victims = NULL;
	pthread_mutex_lock(&s->lock);
	f->opening = false;
	if (rc < 0) {
		cache_remove(s, f);
	} else {
		victims = evict(s);
	}
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
	close_evicted(victims);
	if (rc < 0) {
		db_close(f->db);
		free(f);
		f = NULL;
	}
	*out = f;
	return rc;
}

void family_release(store *s, family *f)
{
	family *victims = NULL;
	pthread_mutex_lock(&s->lock);
	f->refs--;
	if (f->refs == 0) {
		victims = evict(s);
		pthread_cond_broadcast(&s->changed);
	}
	pthread_mutex_unlock(&s->lock);
	close_evicted(victims);
}

/*
 * Erase a family's mailbox file. The cache entry is marked `deleting` first (created if the
 * family was not open), so no call opens or uses the family from then on; calls already
 * inside finish, then the database is closed and its files unlinked, and only then does the
 * entry go. A call that comes during all this gets not_found.
 */
void family_erase(store *s, const char *family_id, const char *path)
{
	pthread_mutex_lock(&s->lock);
	family *f = find_family(s, family_id);
	while (f && f->opening) {
		pthread_cond_wait(&s->changed, &s->lock);
		f = find_family(s, family_id);
	}
	if (!f && (f = calloc(1, sizeof *f))) {
		memcpy(f->id.s, family_id, STORE_ID_LEN + 1);
		cache_add(s, f);
	}
	if (f) {
		f->deleting = true;
		while (f->refs > 0)
			pthread_cond_wait(&s->changed, &s->lock);
	}
	pthread_mutex_unlock(&s->lock);

	if (f) {
		db_close(f->db);
		f->db = NULL;
	}
	unlink_db_files(path);
	unlink_quarantined(s, family_id);

	if (f) {
		pthread_mutex_lock(&s->lock);
		cache_remove(s, f);
		pthread_cond_broadcast(&s->changed);
		pthread_mutex_unlock(&s->lock);
		free(f);
	}
}

int store_families_close_unlinked(store *s, unsigned *closed)
{
	*closed = 0;
	pthread_mutex_lock(&s->lock);
	size_t n = 0, cap = s->nfamilies;
	store_id *ids = cap ? calloc(cap, sizeof *ids) : NULL;
	for (family *f = s->head; ids && f && n < cap; f = f->next)
		if (f->refs == 0 && !f->opening && !f->deleting)
			ids[n++] = f->id;
	pthread_mutex_unlock(&s->lock);
	if (cap && !ids)
		return STORE_ENOMEM;
	/* The files are looked at without the lock: a stat each, other calls go on. */
	family *victims = NULL;
	for (size_t i = 0; i < n; i++) {
		char path[PATH_CAP];
		struct stat st;
		if (family_path(s, ids[i].s, path, sizeof path) < 0 || stat(path, &st) == 0 ||
		    errno != ENOENT)
			continue;
		pthread_mutex_lock(&s->lock);
		family *f = find_family(s, ids[i].s);
		if (f && f->refs == 0 && !f->opening && !f->deleting) {
			cache_remove(s, f);
			f->next = victims;
			victims = f;
			(*closed)++;
		}
		pthread_mutex_unlock(&s->lock);
	}
	free(ids);
	close_evicted(victims);
	return 0;
}

typedef struct meta_value {
	void *buf;
	size_t cap, len;
} meta_value;

static void meta_from_row(sqlite3_stmt *st, void *out)
{
	meta_value *v = out;
	const void *b = sqlite3_column_blob(st, 0);
	size_t n = (size_t)sqlite3_column_bytes(st, 0);
	v->len = n;
	if (b && n)
		memcpy(v->buf, b, n < v->cap ? n : v->cap);
}

int store_meta_get(store *s, const char *name, void *buf, size_t cap, size_t *len)
{
	static const char sql[] = "SELECT value FROM meta WHERE name = ?";
	meta_value v = {buf, cap, 0};
	*len = 0;
	if (check_text(name, 64) < 0)
		return STORE_EINVAL;
	int rc = read_one(s, sql, text_key(name), meta_from_row, &v);
	*len = v.len;
	return rc;
}

int store_meta_put(store *s, const char *name, const void *value, size_t len)
{
	static const char sql[] = "INSERT INTO meta (name, value) VALUES (?, ?) "
				  "ON CONFLICT (name) DO UPDATE SET value = excluded.value";
	if (check_text(name, 64) < 0 || !value || len > 4096)
		return STORE_EINVAL;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, value, (int)len, SQLITE_STATIC);
		rc = step_write(st);
	}
	db_write_end(s->directory);
	return rc;
}

/* ---- the audit log ---- */

int store_audit_append(store *s, int64_t now_ms, const char *actor, const char *action,
		       const char *family_id, const char *target, const char *detail)
{
	static const char sql[] = "INSERT INTO audit_log (at_ms, actor, action, family_id, "
				  "target, detail) VALUES (?, ?, ?, ?, ?, ?)";
	if (check_text(actor, 256) < 0 || check_text(action, 64) < 0)
		return STORE_EINVAL;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_int64(st, 1, now_ms);
		sqlite3_bind_text(st, 2, actor, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, family_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, target, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, detail, -1, SQLITE_STATIC);
		rc = step_done(st);
	}
	db_write_end(s->directory);
	return rc;
}
