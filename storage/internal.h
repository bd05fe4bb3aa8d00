/*
 * internal.h — what storage/'s files share; nothing outside storage/ includes it.
 *
 * A `db` is one SQLite file: a write connection behind a mutex (one writer per database, as
 * SQLite wants; BEGIN IMMEDIATE so a transaction never upgrades its lock halfway) and up to
 * `readers` read connections opened on demand (WAL lets them read while the writer writes).
 * Each connection caches its prepared statements, keyed by the SQL literal's address.
 * A `family` is a cache entry: an open mailbox db with a reference count, kept in an LRU list
 * and in a hash table by id (a chain per bucket), so that finding an open family is O(1).
 */
#ifndef JIAYIN_STORAGE_INTERNAL_H
#define JIAYIN_STORAGE_INTERNAL_H

#include "store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

/* Prepared statements a connection keeps: every statement of the program that it runs (the
 * directory's writer ran 60 of them, where the cache had a fixed 64 places). The bound only
 * catches SQL that is not one of the program's constant strings. */
#define STMT_CACHE_MAX 1024
#define STORE_DIR_MAX 4000              /* bytes of the data directory's path */
#define PATH_CAP (STORE_DIR_MAX + 128)   /* any path under it */

typedef struct conn {
	sqlite3 *db;
	struct stmt_entry {
		const char *sql; /* a constant string: found by its address */
		sqlite3_stmt *st;
	} *cache;
	unsigned ncache, cache_cap;
} conn;

typedef struct migration {
	const char *sql; /* one step: run in its own transaction, then user_version = index + 1 */
} migration;

typedef struct schema {
	const char *name;
	const migration *steps;
	unsigned count;
	int page_size;
	bool secure_delete; /* on every write: what is deleted is zeroed in the file */
} schema;

extern const schema directory_schema;
extern const schema mailbox_schema;

typedef struct db {
	char *path;
	const char *vfs; /* borrowed from the store's options */
	const schema *schema;
	int busy_timeout_ms;
	pthread_mutex_t write_lock;
	conn writer;
	pthread_mutex_t read_lock;
	pthread_cond_t read_free;
	conn *readers;
	bool *reader_busy;
	unsigned nreaders, max_readers;
	/* store_options.read_only: every connection opens uri (mode=ro); the -wal and -shm SQLite
	 * makes for it (made_wal) are removed at the close when nobody else has the file open. */
	bool read_only, made_wal;
	char *uri;
} db;

/* Open (creating when `create`) and migrate a database file; one that must exist (not
 * `create`) at version 0, an empty file, is STORE_ECORRUPT. */
int db_open(db **out, const char *path, const schema *schema, const store_options *opt,
	    bool create);
void db_close(db *d);

/* The write connection, locked; db_write_end unlocks. */
conn *db_write_begin(db *d);
void db_write_end(db *d);
/* The page cache of the write connection given back (after the checks of an opening). */
void db_release_memory(db *d);
/* A read connection, exclusively yours until db_read_end. */
int db_read_begin(db *d, conn **out);
void db_read_end(db *d, conn *c);

/* A cached prepared statement, reset and unbound; NULL with *rc set on failure. */
sqlite3_stmt *conn_stmt(conn *c, const char *sql, int *rc);
/* Run SQL without results (pragmas, BEGIN, COMMIT). */
int conn_exec(conn *c, const char *sql);
/* BEGIN IMMEDIATE / COMMIT / ROLLBACK (a failed commit rolls back). */
int conn_begin(conn *c);
int conn_commit(conn *c);
void conn_rollback(conn *c);
/* A read transaction: one snapshot (and one set of locks) for several statements. */
int conn_begin_read(conn *c);
void conn_end_read(conn *c);

/* SQLite result code to STORE_E*. */
int store_map_sqlite(int rc);
/*
 * The same, and an I/O error as what the file system said where that has a code of its own
 * (SQLite says only "I/O error"): EROFS, a file system remounted read-only after errors, is
 * STORE_EROFS; ENOSPC at fsync() and EDQUOT, a user's quota, are STORE_EFULL (SQLite calls only
 * a write()'s ENOSPC full).
 */
int store_map_db(sqlite3 *db, int rc);
/* store_map_db with the statement's connection: what a step, a row read, says. */
int stmt_error(sqlite3_stmt *st, int rc);
/* sqlite3_step() expecting SQLITE_DONE, mapped. */
int step_done(sqlite3_stmt *st);

/* ---- query helpers (rows.c) ---- */

/* The value a one-row lookup binds to its single parameter: text, or a hash as a blob. */
typedef struct key {
	const void *data;
	int len; /* -1: text */
} key;
key text_key(const char *s);
key hash_key(const uint8_t *h);
void bind_key(sqlite3_stmt *st, int i, key k);
/* Bind text, or NULL for a NULL or empty string (optional ids). */
void bind_optional(sqlite3_stmt *st, int i, const char *s);
/* sqlite3_step() of a write, expecting SQLITE_DONE, with constraint failures told apart. */
int step_write(sqlite3_stmt *st);
/* The same mapping for a step's result already in hand (a RETURNING statement's first). */
int stmt_write_error(sqlite3_stmt *st, int r);
/* A count and a first time: sql is "SELECT count(*), coalesce(min(...), 0) ..." with ?1 the
 * id (text), ?2 and ?3 times; on the caller's connection (inside its transaction). */
int count_and_first(conn *c, const char *sql, const char *id, int64_t t2, int64_t t3, unsigned *n,
                    int64_t *first_ms);

/* store.c: record in a mailbox the family it is of (its owner row). */
int mailbox_owner_write(db *d, const char *family_id);
/* families.c: a member inserted, inside the caller's write transaction (out filled), with the
 * idempotency key it was added with (add_key, store_member_add_once; NULL or "": none). */
int member_insert(conn *c, const char *family_id, const char *name, store_role role,
                  const char *avatar, const char *add_key, int64_t now_ms, store_member *out);
/* families.c: the member of the family with this id, unless it left (STORE_ENOTFOUND), read
 * on the caller's connection (inside its transaction). */
int member_current(conn *c, const char *family_id, const char *member_id, store_member *out);
/* families.c: the family with this id (STORE_ENOTFOUND: none), read on the caller's connection
 * (inside its transaction). */
int family_read(conn *c, const char *family_id, store_family *out);
/* directory.c: a device inserted and read back, inside the caller's write transaction. */
int device_insert(conn *c, const uint8_t token_hash[STORE_HASH_LEN], const char *member_id,
		  const char *kiosk_id, const char *name, int64_t now_ms, store_device *out);
/* directory.c: the device with this id, read on the caller's connection (inside its
 * transaction); STORE_ENOTFOUND if none. */
int device_read(conn *c, const char *device_id, store_device *out);
/* What a keyed sign-up's or pairing's key found (device_key_again). */
typedef enum {
	DEVICE_KEY_NONE,  /* no device has the key */
	DEVICE_KEY_OTHER, /* the key's device came of another request */
	DEVICE_KEY_DONE,  /* the same request, but its device may no longer be handed a token */
	DEVICE_KEY_AGAIN, /* the same request: its device reissued */
} device_key;
/* directory.c: inside the caller's write transaction, st (bound; its row, if any: the key's
 * device id, whether it came of the same request, whether it may be reissued) stepped and
 * reset; DEVICE_KEY_AGAIN: the device's token hash replaced by token_hash (the retry's first
 * answer, and token, never arrived), then the device, its family and its member read. */
int device_key_again(conn *c, sqlite3_stmt *st, const uint8_t token_hash[STORE_HASH_LEN],
                     store_family *family, store_member *member, store_device *device,
                     device_key *found);

typedef void (*row_fn)(sqlite3_stmt *st, void *out);
/* mailbox.c: every row of a mailbox query with `n` integer parameters (?1 to ?n), through fn, in
 * one read transaction. */
int family_rows(store *s, const char *family_id, const char *sql, const sqlite3_int64 *params,
                size_t n, row_fn fn, void *out);
/* The row `sql` finds for `k` on connection `c`, through `fn`; STORE_ENOTFOUND if none. */
int row_one(conn *c, const char *sql, key k, row_fn fn, void *out);
/* row_one on a read connection of the directory. */
int read_one(store *s, const char *sql, key k, row_fn fn, void *out);
/* Up to `max` directory rows `sql` finds for the text `param`, `size` bytes apart in `out`;
 * *more (if not NULL): rows were left past `max`. read_many is read_list without *more: its
 * callers take *n == max as "there may be more" (jiayinctl asks again with more room). */
int read_list(store *s, const char *sql, const char *param, row_fn fn, void *out, size_t size,
              size_t max, size_t *n, bool *more);
int read_many(store *s, const char *sql, const char *param, row_fn fn, void *out, size_t size,
	      size_t max, size_t *n);
/* Run an UPDATE whose parameter `id_param` is an id; STORE_ENOTFOUND if it matched no row. */
int update_by_id(conn *c, sqlite3_stmt *st, int id_param, const char *id);
/* Run `sql` (UPDATE ... SET x = ?1 ... WHERE id = ?2, with ?3 the value `arg` where it has a
 * third parameter) on the directory's writer: a time set by id (revoking, disabling, a job's
 * visit); STORE_ENOTFOUND if no row has the id. */
int stamp_by_id(store *s, const char *sql, const char *id, int64_t now_ms, int64_t arg);

/* 16 random bytes in base32. */
void store_new_id(store_id *id);
/* 0 if `s` is NULL-free text of at most `max` bytes, not empty. */
int check_text(const char *s, size_t max);
/* Copy a column into a fixed buffer (truncating, always terminated). */
void copy_text(char *dst, size_t cap, const unsigned char *src);

/* The store: data directory, directory database, family cache. */
typedef struct family {
	store_id id;
	db *db;
	int refs;
	bool opening;
	bool deleting; /* being erased: acquire answers not_found until the entry goes */
	/* Audio bytes in use, summed on first need, then kept: guarded by db's write lock. */
	bool usage_known;
	uint64_t bytes_used;
	/* A copy restored in place (mailbox step 6): read once, guarded by the store's lock. */
	bool restored_known;
	uint64_t restored_from, restored_to;
	struct family *prev, *next; /* LRU: head is most recently used */
	struct family *chain;       /* the next family in the same bucket */
} family;

struct store {
	char *dir, *vfs; /* owned copies of the options' strings */
	store_options opt;
	db *directory;
	pthread_mutex_t lock; /* the family cache */
	pthread_cond_t changed;
	family *head, *tail;
	unsigned nfamilies;
	family **buckets; /* every family in the LRU list, by id: bucket_mask + 1 chains */
	unsigned bucket_mask;
	/* The retention gate (families.c): deletions by a period and changes of periods. */
	pthread_mutex_t retention_lock;
	pthread_cond_t retention_turn;
	unsigned deleting, changes; /* deletions under way; changes waiting or under way */
	/* Families set aside as damaged, not yet taken (store_take_set_aside), oldest first;
	 * those that found the queue full are counted in aside_dropped. */
	pthread_mutex_t aside_lock;
	store_set_aside aside[STORE_SET_ASIDE_KEPT];
	unsigned naside, aside_dropped;
	/* Families whose mailbox this process may not write (store_take_unwritable), under
	 * aside_lock: each slot is waiting to be taken, or remembers when it was noted (so that
	 * the same family is noted again only after a minute). */
	struct unwritable_slot {
		store_unwritable u;
		int64_t noted_ms;
		bool waiting;
	} unwritable[STORE_UNWRITABLE_KEPT];
	unsigned unwritable_dropped;
};

/* The retention gate: a deletion by a family's retention period (store_messages_expire) is
 * made between these two, and a change of any family's period waits for the deletions under
 * way and keeps new ones out until it is stored. Changes go first: a deletion waits while one
 * waits. Store-wide: a change waits for one deletion's period check and commit (the checkpoint
 * that follows an erasure, which may wait for readers, is made outside). Inside, a deletion
 * waits only for what never waits for the gate (a directory reader, the family's opening by
 * another thread, its write lock). */
void retention_delete_enter(store *s);
void retention_delete_leave(store *s);

/* The family's open mailbox, opened on demand; family_release when done. */
int family_acquire(store *s, const char *family_id, family **out);
void family_release(store *s, family *f);
/* files.c: build "<dir>/families/<id>.db" into buf. */
int family_path(const store *s, const char *family_id, char *buf, size_t cap);
/* dst = path + suffix; false when it does not fit. */
bool with_suffix(char *dst, size_t cap, const char *path, const char *suffix);
/* Sync the directory `path` is in (the path up to its last '/'), so that names made or
 * removed in it survive a power cut. */
void sync_parent(const char *path);
/* mkdir 0700, durably; 0 when it is there already. */
int make_dir(const char *path);
/* Unlink a database file with its -wal and -shm (and sync the directory). */
void unlink_db_files(const char *path);
/* Move a family's database at path (with its -wal and -shm) to quarantine/, durably. true
 * when the database moved, its new name (relative to the data directory) in moved_to. */
bool quarantine(const store *s, const char *family_id, const char *path, char *moved_to,
                size_t cap);
/* A family set aside as damaged, kept for store_take_set_aside (or counted as dropped). */
void set_aside_note(store *s, const char *family_id, const char *moved_to);
/* Before a family's mailbox at path is opened: STORE_EROFS, noted for store_take_unwritable,
 * if one of its files is not ours to write for its owner or mode (EACCES; not EROFS, a file
 * system that takes no writes); else 0. */
int mailbox_writable(store *s, const char *family_id, const char *path);
/* Unlink a family's copies in quarantine/. */
void unlink_quarantined(store *s, const char *family_id);
/* one(s, dir_fd, name, id, arg) for each file of data/sub named after a family id (see files.c). */
int each_id_file(store *s, const char *sub, bool exact,
                 int (*one)(store *, int, const char *, const char *, void *), void *arg,
                 unsigned *unlinked);
/* audio.c: all of a visible message's audio into *buf (grown to its size, *cap its new size)
 * in one read transaction; deleted or hidden: STORE_ENOTFOUND. */
int audio_load(store *s, const char *family_id, const char *message_id, uint8_t **buf,
	       size_t *cap, store_audio_info *info);
/* mailbox.c: up to max visible messages after rowid *after, in rowid order (each message once
 * however it changes meanwhile), with their rowids; *after becomes the last one's rowid. A
 * row whose id is not an id's length has the id "". For the export. */
int messages_visible_after(store *s, const char *family_id, sqlite3_int64 *after,
                           store_message *out, sqlite3_int64 *rowids, size_t max, size_t *n);
/* Close and erase a family's mailbox once the calls inside it are done (its rows already gone). */
void family_erase(store *s, const char *family_id, const char *path);

#endif
