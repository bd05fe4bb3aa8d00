/*
 * store.h — Jiayin's storage: the only public header of storage/.
 *
 * One directory database for what spans families (families, members, devices, pairing codes,
 * schools and kiosks, volunteers, the moderation queue, the audit log) and one mailbox database
 * per family (messages, their audio, listened receipts, idempotency keys, a change sequence).
 * Deleting a family deletes its file. The API is blocking and thread-safe: the server calls it
 * from worker threads, never from the event loop. Nothing here names SQLite: a PostgreSQL + S3
 * backend can implement the same calls. Every fallible call returns 0 or a negative STORE_E*
 * code; store_errcode() gives its stable name, store_strerror() a sentence. Strings and ids
 * handed in are borrowed for the call; results are copied into caller-owned structs.
 */
#ifndef JIAYIN_STORE_H
#define JIAYIN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
	STORE_OK = 0,
	STORE_ENOMEM = -1,    /* out_of_memory */
	STORE_EIO = -2,       /* storage_io_error: the file system failed a read or write */
	STORE_EFULL = -3,     /* storage_full: the disk is full */
	STORE_EROFS = -4,     /* storage_read_only: the data directory is not writable */
	STORE_ECORRUPT = -5,  /* storage_corrupt: a database failed its integrity check */
	STORE_EBUSY = -6,     /* storage_busy: a lock was not granted within the busy timeout */
	STORE_ENOTFOUND = -7, /* not_found */
	STORE_EEXIST = -8,    /* conflict: the thing exists already */
	STORE_EINVAL = -9,    /* invalid_argument */
	STORE_EQUOTA = -10,   /* quota_exceeded */
	STORE_ESCHEMA = -11,  /* storage_schema_too_new: written by a newer Jiayin */
	STORE_ELIMIT = -12,   /* limit_reached: a family's members: too many, or its last parent */
	STORE_ENODIR = -13,   /* storage_directory_missing: family databases, but no directory */
	STORE_EOLD = -14,     /* storage_schema_old: written by an older Jiayin, not upgraded here */
	STORE_ECHANGED = -15, /* changed: what the call was based on changed meanwhile */
};
#define STORE_ERROR_COUNT 16

const char *store_strerror(int err);
const char *store_errcode(int err);

/* Ids: 128 random bits as 26 lowercase Crockford base32 characters; unguessable. */
#define STORE_ID_LEN 26
typedef struct store_id {
	char s[STORE_ID_LEN + 1];
} store_id;
/* 0 if `s` has the shape of an id (so malformed ids can be answered like unknown ones). */
int store_id_check(const char *s);

#define STORE_NAME_MAX 64     /* bytes of UTF-8 in a family, member, device or school name */
#define STORE_WAVEFORM_POINTS 100
#define STORE_MAX_LISTENERS STORE_MEMBERS_MAX /* a message's listeners: the family's members */
#define STORE_AUDIO_MAX (64u << 20) /* bytes of one message's audio (15 min at 64 kb/s: 7.2 MB) */
#define STORE_HASH_LEN 32     /* SHA-256 */

/*
 * How many bytes of a control character the UTF-8 text `s` starts with, 0 if none: C0 and
 * DEL (one byte), C1, U+0080-U+009F (two), or a bidirectional embedding, override or isolate,
 * U+202A-U+202E and U+2066-U+2069 (three: one left open turns the text after it around). A name
 * holds none: the API and jiayinctl refuse them and jiayinctl masks them when it prints a stored
 * name (U+009B is a terminal's CSI).
 */
size_t store_control_at(const char *s);

/*
 * Whether `s` is a name as the API and jiayinctl take it (families, members, devices, schools):
 * 1..STORE_NAME_MAX bytes of UTF-8, no control character (store_control_at), and at least one
 * character that shows: a name of spaces or zero-width characters alone would show a child an
 * empty label.
 */
bool store_name_ok(const char *s);

typedef struct store_options {
	const char *dir;            /* data directory; created if missing */
	unsigned max_open_families; /* family databases kept open (LRU), default 256 */
	unsigned readers;           /* read connections per open database, default 2 */
	int busy_timeout_ms;        /* default 5000 */
	int integrity_check;        /* PRAGMA quick_check when a family database opens, default 1 */
	const char *vfs;            /* a registered SQLite VFS by name, NULL for the default
				       (tests register a fault-injecting one) */
	int upgrade_directory;      /* 1 (default): an older directory.db is migrated; 0: it is
				       refused (STORE_EOLD), for a tool that may run beside an
				       older server, whose data it must not take from it */
	int apply_floor;            /* 1 (default): a restored copy's change floor is raised to
	                               the time of its first opening (store_mailbox_restored);
	                               0: it is left for the server (jiayinctl numbers no change,
	                               and the copy it opens may be a backup's, which must keep
	                               its floor for each of its restores) */
	int read_only;              /* 1: nothing in the data directory is written, made, moved
	                               or removed (a check of a backup's copy or a read-only
	                               mount): databases are opened read-only, an older one is
	                               STORE_EOLD (not migrated), a damaged mailbox is not set
	                               aside; writes fail (STORE_EROFS). Not beside a
	                               read-write store of the same directory in one process:
	                               the close removes the -wal and -shm it made once no one
	                               holds the file's lock, and fcntl locks are the process's,
	                               so it cannot see that store's (jiayinctl verify runs
	                               alone in its process). 0 (default) */
} store_options;
void store_options_init(store_options *opt);

typedef struct store store;
int store_open(store **out, const store_options *opt);
/* Accepts NULL. Every other call must have returned first. */
void store_close(store *s);
/*
 * A durable write to the directory database (one row rewritten, committed with
 * synchronous=FULL): 0 when storage takes writes, else the error a write would meet
 * (STORE_EFULL, STORE_EROFS, STORE_EIO, ...). For liveness checks; blocking.
 */
int store_health_check(store *s, int64_t now_ms);

/*
 * A small named value about the installation (the directory's meta table): get copies up to
 * cap bytes and sets *len (STORE_ENOTFOUND if unset); put sets it (at most 4 KiB).
 */
int store_meta_get(store *s, const char *name, void *buf, size_t cap, size_t *len);
int store_meta_put(store *s, const char *name, const void *value, size_t len);

/* ---- Families and members (directory database) ---- */

typedef enum { STORE_ROLE_PARENT = 1, STORE_ROLE_CAREGIVER, STORE_ROLE_CHILD } store_role;
const char *store_role_name(store_role r); /* "parent", "caregiver", "child" */
int store_role_parse(const char *name, store_role *out);

typedef struct store_family {
	store_id id;
	char name[STORE_NAME_MAX + 1];
	int64_t created_ms;
	uint64_t quota_bytes;    /* 0: no quota */
	uint32_t retention_days; /* 0: keep for ever */
} store_family;

typedef struct store_member {
	store_id id, family_id;
	char name[STORE_NAME_MAX + 1];
	store_role role;
	char avatar[32];
	int64_t created_ms;
	int64_t removed_ms; /* 0: a member; else when it left the family (store_member_remove) */
} store_member;

/* A family, its mailbox file and its first member (a parent), all or nothing. */
int store_family_create(store *s, const char *family_name, const char *member_name,
			uint64_t quota_bytes, int64_t now_ms, store_family *family,
			store_member *member);
int store_family_get(store *s, const char *family_id, store_family *out);
/* Change only the settings given (NULL: unchanged), in one statement: concurrent updates of
 * different settings never undo each other. Setting retention_days makes the family due for
 * the retention job at once. *out (if not NULL): the family as changed, from the same
 * statement (a read that fails: nothing changes). */
int store_family_update(store *s, const char *family_id, const uint64_t *quota_bytes,
                        const uint32_t *retention_days, store_family *out);
/*
 * Families with a retention period (retention_days > 0), not checked since checked_before_ms
 * (store_family_retention_checked), with an id after `after_id` ("" to start), in id order,
 * up to `max`: page through them all by passing the last id back.
 */
int store_families_retaining(store *s, const char *after_id, int64_t checked_before_ms,
			     store_family *out, size_t max, size_t *n);
/*
 * Every family, with an id after `after_id` ("" to start), in id order, up to `max` (*n ==
 * max: there may be more): page through them all by passing the last id back.
 */
int store_families_list(store *s, const char *after_id, store_family *out, size_t max, size_t *n);
/* The retention job is done with this family for now, having applied retention_days (as
 * store_families_retaining read it): not if the family's period has changed since, which
 * leaves it due. */
int store_family_retention_checked(store *s, const char *family_id, uint32_t retention_days,
                                   int64_t now_ms);
/*
 * Mailbox files that no family owns, for the server at its start, when no family is being
 * created. Those of a family erased (what a crash left between erasing its rows and its file)
 * are erased, with their damaged copies in quarantine/: *removed counts them. Others, which
 * this directory never knew to be erased (a
 * crash between making a file and its family, or families/ restored beside another directory),
 * are moved to quarantine/, not erased: *set_aside counts them.
 */
int store_families_sweep(store *s, unsigned *removed, unsigned *set_aside);
/*
 * Families whose mailbox a call of this store found damaged as it opened (storage_corrupt: its
 * integrity check failed, or it is another family's) and set aside, out of use, since the last
 * take: the family and where its mailbox went, relative to the data directory (this backend:
 * "quarantine/ID.TIME.db"). The store keeps up to STORE_SET_ASIDE_KEPT of them not yet taken;
 * one set aside while that many wait is not kept, only counted. A read-only store sets none aside,
 * and the start's sweep (store_families_sweep, which counts its own) is not among them.
 */
#define STORE_SET_ASIDE_KEPT 64
typedef struct store_set_aside {
	store_id family_id;
	char moved_to[72];
} store_set_aside;
/* Up to `max` of those, oldest first, into out (*n of them; the others stay for the next take),
 * and *dropped: how many were not kept since the last take. Never fails, and touches no file:
 * it takes only a lock that nothing holds across I/O, so the server calls it on its event loop. */
void store_take_set_aside(store *s, store_set_aside *out, size_t max, size_t *n, unsigned *dropped);
/*
 * Families whose mailbox a call of this store did not open because one of its files (the
 * database, its -wal or -shm) is not this process's to write, while the file system takes
 * writes: a copy put back by another user (root) without the chown, or copied without its
 * write permission. Their calls fail STORE_EROFS (storage_read_only) until it is given back,
 * and nothing else says why (the health check writes the directory, not the mailbox).
 * Each is noted once, then again at most once a minute while it stays so; up to
 * STORE_UNWRITABLE_KEPT wait to be taken, and more are counted as dropped. A read-only
 * store notes none.
 */
#define STORE_UNWRITABLE_KEPT 16
typedef struct store_unwritable {
	store_id family_id;
	char file[72]; /* relative to the data directory: "families/ID.db", or its -wal, -shm */
	unsigned uid;  /* the file's owner */
	unsigned mode; /* its permission bits */
} store_unwritable;
/* As store_take_set_aside, for those. */
void store_take_unwritable(store *s, store_unwritable *out, size_t max, size_t *n,
                           unsigned *dropped);
/* Deletes the family's rows, recording it as erased at now_ms, and erases its mailbox file (and
 * syncs its directory). */
int store_family_delete(store *s, const char *family_id, int64_t now_ms);
/*
 * Close the open families whose database file is gone from families/ (erased by another
 * process: jiayinctl's family delete while the server runs), so that the disk frees their
 * blocks now, not when the cache would have let them go (the review). Families in use are left
 * for the next call. *closed counts them. For a periodic job.
 */
int store_families_close_unlinked(store *s, unsigned *closed);
/* 0 if the family was erased (store_family_delete recorded it), else STORE_ENOTFOUND. */
int store_family_erased(store *s, const char *family_id);

/* A family's members at most: what a members list answers at once and a kiosk screen shows. */
#define STORE_MEMBERS_MAX 64
/* A family's member rows at most, former members (removed) included: they stay to name the
 * senders of old messages, and this bounds what adding and removing again and again keeps. */
#define STORE_MEMBER_ROWS_MAX 256
/* A member without a device; STORE_ELIMIT when the family has STORE_MEMBERS_MAX members (or
 * STORE_MEMBER_ROWS_MAX rows) already. */
int store_member_add(store *s, const char *family_id, const char *name, store_role role,
		     const char *avatar, int64_t now_ms, store_member *out);
/* Bytes of the key a member is added with, at most (store_member_add_once). */
#define STORE_ADD_KEY_MAX 160
/*
 * store_member_add made safe to retry: add_key (1-STORE_ADD_KEY_MAX bytes of text, the
 * caller's own: who asks and its Idempotency-Key; NULL or "" for none, as store_member_add)
 * names the member added. A key the family had a member added with before gives that member as
 * it is now (renamed, or removed since: removed_ms set) with *existed = 1, and nothing is
 * written; else a new member keeps the key, *existed = 0. The key is looked up and the member
 * inserted in one transaction: two calls with one key at once add one member.
 */
int store_member_add_once(store *s, const char *family_id, const char *name, store_role role,
                          const char *avatar, const char *add_key, int64_t now_ms,
                          store_member *out, int *existed);
/* A member of some family; a former member is STORE_ENOTFOUND, as an unknown id. */
int store_member_get(store *s, const char *member_id, store_member *out);
/*
 * A member of the family renamed (name: 1-64 bytes of text) and/or given another avatar
 * ("" for none); NULL keeps it. *out: the member afterwards. STORE_ENOTFOUND: no such member
 * in that family.
 */
int store_member_update(store *s, const char *family_id, const char *member_id, const char *name,
                        const char *avatar, store_member *out);
/*
 * The member leaves the family, all in one transaction: its phones are revoked, its kiosk
 * links deleted (with a session open there), the PINs it chose for others' links withdrawn
 * (pin_hash "", their sessions ended: it knows them) and its row kept as a former member, whose
 * name and avatar still say who sent its old messages (which stay, as the family's).
 * STORE_ENOTFOUND: no such member of the family; STORE_ELIMIT: a parent while no other parent
 * of the family has an active phone, who stays (a family always has one who may sign in, erase
 * it and pair a parent's phone). 1: a former member of the family, removed before (a removal
 * sent again, two at once), nothing changed. *out: the member, removed_ms set (0 and 1).
 */
int store_member_remove(store *s, const char *family_id, const char *member_id, int64_t now_ms,
                        store_member *out);
/* Up to `max` members of the family, oldest first; *n set. */
int store_members_list(store *s, const char *family_id, store_member *out, size_t max,
		       size_t *n);
/* Up to `max` of the family's member rows, in one read: its members oldest first, then its
 * former members (removed_ms set) in the order they left; *n set. */
int store_members_all(store *s, const char *family_id, store_member *out, size_t max, size_t *n);

/* ---- Devices (directory database; directory.c) ---- */

typedef enum { STORE_DEVICE_PERSONAL = 1, STORE_DEVICE_KIOSK } store_device_kind;

typedef struct store_device {
	store_id id;
	store_device_kind kind;
	store_id member_id;  /* personal devices */
	store_id family_id;  /* personal devices: the member's family */
	store_id kiosk_id;   /* kiosk devices */
	char name[STORE_NAME_MAX + 1];
	int64_t created_ms, last_seen_ms; /* last_seen_ms 0: never */
	int64_t revoked_ms;               /* 0: active */
} store_device;

/*
 * A new family, its first member (a parent) and that member's first device (its token's
 * hash), in one transaction: all three exist afterwards or none does (the API's sign-up).
 */
int store_family_create_with_device(store *s, const char *family_name, const char *member_name,
				    uint64_t quota_bytes, const uint8_t token_hash[STORE_HASH_LEN],
				    const char *device_name, int64_t now_ms, store_family *family,
				    store_member *member, store_device *device);
/* What store_family_signup did. */
typedef enum {
	STORE_SIGNUP_MADE = 1, /* a new family, member and device, the device keeping the key */
	STORE_SIGNUP_AGAIN,    /* the key's three again, its device's token hash replaced */
	STORE_SIGNUP_DONE,  /* the key's device was used or revoked, or made before again_since */
	STORE_SIGNUP_OTHER, /* the key's sign-up was of other names */
	STORE_SIGNUP_NONE,  /* no sign-up has the key, and none was to be made */
} store_signup;
/*
 * store_family_create_with_device made safe to retry (the API's sign-up with an
 * Idempotency-Key): key_hash (its SHA-256) is kept by the new device. A call with a key that
 * made a sign-up before, with the same three names, whose device was never used (no
 * last_seen_ms) nor revoked and was made at again_since_ms or later, gives that family, member
 * and device with token_hash as the device's new token hash (the one before stops working):
 * *done STORE_SIGNUP_AGAIN. Such a key's sign-up with other names is STORE_SIGNUP_OTHER, one
 * used, revoked or older STORE_SIGNUP_DONE, and nothing is written. An unknown key makes the
 * three (STORE_SIGNUP_MADE) when `make`, else nothing (STORE_SIGNUP_NONE). The key is looked up
 * and the three inserted in one transaction: two calls with one key at once make one family.
 * The key goes with its family (store_family_delete).
 */
int store_family_signup(store *s, const char *family_name, const char *member_name,
                        uint64_t quota_bytes, const uint8_t token_hash[STORE_HASH_LEN],
                        const char *device_name, const uint8_t key_hash[STORE_HASH_LEN],
                        int64_t again_since_ms, bool make, int64_t now_ms, store_family *family,
                        store_member *member, store_device *device, store_signup *done);
/*
 * Register a device by the hash of its token (the store never sees tokens). Exactly one of
 * member_id (a personal device) and kiosk_id (a school kiosk) is given; STORE_ENOTFOUND if
 * the member or the kiosk is none (a member who has left the family included).
 */
int store_device_add(store *s, const uint8_t token_hash[STORE_HASH_LEN], const char *member_id,
		     const char *kiosk_id, const char *name, int64_t now_ms, store_device *out);
/* The active (not revoked) device with this token hash; STORE_ENOTFOUND otherwise. */
int store_device_by_token(store *s, const uint8_t token_hash[STORE_HASH_LEN],
			  store_device *out);
int store_device_get(store *s, const char *device_id, store_device *out);
/* Devices of a family's members, oldest first. */
int store_devices_list(store *s, const char *family_id, store_device *out, size_t max,
		       size_t *n);
/* The family's active (not revoked) devices, oldest first, up to max (*n == max: there may be
 * more; a member has one phone, so a family's members' worth is enough). */
int store_devices_active(store *s, const char *family_id, store_device *out, size_t max, size_t *n);
/* Revoke a device: 0, or 1 if it was revoked already (the first time kept, so a caller
 * records the revocation once: of two at once, one gets 0). In the same transaction the unused
 * pairing codes made on it, and a kiosk tablet's unused kiosk codes, are deleted. */
int store_device_revoke(store *s, const char *device_id, int64_t now_ms);
/* The same, but not the family's last parent phone: a personal device of a parent (still a
 * member) is revoked only while another active personal device of a parent of its family
 * remains, checked in the transaction that revokes (of two parents revoking each other's only
 * phones at once, one is refused); else STORE_ELIMIT, nothing changed. Nobody but a parent can
 * pair a parent's phone, so without one the family could never be erased, exported or paired
 * again. A device revoked already is still 1; a kiosk's is revoked as by store_device_revoke.
 * A new phone paired for a member (store_pairing_redeem) replaces its old ones all the same. */
int store_device_revoke_keeping_parent(store *s, const char *device_id, int64_t now_ms);
/* Record use, at most once a minute per device (last_seen is advisory). */
int store_device_touch(store *s, const char *device_id, int64_t now_ms);

/* ---- Pairing codes (directory.c) ---- */

typedef struct store_pairing {
	store_id family_id;
	store_role role;
	char member_name[STORE_NAME_MAX + 1];
	store_id kiosk_id;   /* empty: a personal device */
	store_id member_id;  /* set: a new phone for this member (role and name are its own) */
	store_id created_by; /* the member who asked for it (empty: none, an operator's) */
	store_id created_by_device; /* and the phone it asked on */
	int64_t created_ms, expires_ms;
} store_pairing;

/* Store a code by its hash (single use, expiring); STORE_EEXIST if the hash is taken. A code
 * made by a member (created_by) who has left, or on a phone (created_by_device) revoked since,
 * is made but works for nobody. Codes expired at p->created_ms, used or not, are deleted in
 * the same transaction (a batch of them: a large backlog goes over several codes). */
int store_pairing_create(store *s, const uint8_t code_hash[STORE_HASH_LEN],
			 const store_pairing *p);
/*
 * The same, and a phone's code (no kiosk_id) only while its family has fewer than live_max
 * live ones (a phone's, unused, unexpired at p->created_ms; 0: no bound; codes made more than
 * a minute after p->created_ms, by a clock set back since, not counted), counted in the
 * transaction that stores it; else STORE_ELIMIT, nothing stored, and *first_expiry_ms (if not
 * NULL) when the first of them expires.
 */
int store_pairing_create_bounded(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                                 const store_pairing *p, unsigned live_max,
                                 int64_t *first_expiry_ms);
/*
 * Use a code: if it exists, is unused and unexpired at now_ms, mark it used and return what it
 * grants. A used, expired or unknown code is STORE_ENOTFOUND, all alike.
 */
int store_pairing_consume(store *s, const uint8_t code_hash[STORE_HASH_LEN], int64_t now_ms,
			  store_pairing *out);
/*
 * Pair a personal device with a code: in one transaction the code is used, the member it
 * names is added to its family and this device (its token's hash) to that member. Unknown,
 * used, expired or kiosk codes: STORE_ENOTFOUND; a family with STORE_MEMBERS_MAX members
 * already: STORE_ELIMIT. Either way nothing changes (the code stays unused).
 * A code with a member_id adds no member: the device is that member's new phone, and the
 * member's other phones are revoked in the same transaction (a lost or replaced phone stops
 * working, and so do the member's other codes for a new phone, and those its old phones
 * made); a member who has left its family since, or a code whose maker has, or whose maker's
 * phone was revoked: STORE_ENOTFOUND.
 */
int store_pairing_redeem(store *s, const uint8_t code_hash[STORE_HASH_LEN],
			 const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
			 int64_t now_ms, store_pairing *p, store_member *member,
			 store_device *device);
/*
 * The same, and only while fewer than hour_max phones (0: no bound) were paired into the code's
 * family in the hour up to now_ms (store_family_pairings), counted in the transaction that
 * pairs; else STORE_ELIMIT, nothing changed (the code stays unused), and *first_ms (if not
 * NULL) when the first of them was paired. A full family's STORE_ELIMIT leaves *first_ms as it
 * was: set it to 0 to tell the two apart. *family (if not NULL): the family joined, read in the
 * same transaction, so that a pairing is whole with what its phone is told or not made at all.
 */
int store_pairing_redeem_bounded(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                                 const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
                                 int64_t now_ms, unsigned hour_max, int64_t *first_ms,
                                 store_pairing *p, store_member *member, store_device *device,
                                 store_family *family);
/* What store_pairing_redeem_keyed did. */
typedef enum {
	STORE_PAIR_MADE = 1, /* a new pairing, its device keeping the key and the code */
	STORE_PAIR_AGAIN,    /* the key's pairing again, its device's token hash replaced */
	STORE_PAIR_DONE,  /* the key's device used or revoked, its member gone, its code expired */
	STORE_PAIR_OTHER, /* the key made a sign-up, or paired with another code or device name */
} store_pair_keyed;
/*
 * store_pairing_redeem_bounded made safe to retry (the API's pairing with an Idempotency-Key):
 * key_hash (its SHA-256) and the code's hash are kept by the new device (the key in
 * devices.signup_key: a key is one request's, a sign-up's or a pairing's). A call with a key
 * that paired a device before with this code and device_name, while that device was never used
 * (no last_seen_ms) nor revoked, its member still one and the code unexpired at now_ms (its row
 * is kept, used, until then), gives that device, its member and family with token_hash as the
 * device's new token hash (the one before stops working), nothing else changed (no member, no
 * phone revoked, not counted against hour_max; *p zeroed): *done STORE_PAIR_AGAIN. Such a key
 * of another code or name, or a sign-up's, is STORE_PAIR_OTHER; one whose device was used or
 * revoked, whose member left or whose code expired STORE_PAIR_DONE; nothing is written and 0
 * returned for both. An unknown key pairs as store_pairing_redeem_bounded does (its errors
 * alike) and is STORE_PAIR_MADE. The key is looked up and the phone paired in one transaction:
 * two calls with one key at once pair one phone. family must not be NULL.
 */
int store_pairing_redeem_keyed(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                               const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
                               const uint8_t key_hash[STORE_HASH_LEN], int64_t now_ms,
                               unsigned hour_max, int64_t *first_ms, store_pairing *p,
                               store_member *member, store_device *device, store_family *family,
                               store_pair_keyed *done);
#define STORE_PAIRING_HOUR_MS (60 * 60 * 1000)
/*
 * The phones paired into a family (with a code: a new member's, or a member's new phone) in
 * the hour up to now_ms, revoked since or not; not the phone it was made on, nor any dated
 * more than a minute after now_ms (a clock set back since). *n: how many; *first_ms: when the
 * first was (0: none).
 */
int store_family_pairings(store *s, const char *family_id, int64_t now_ms, unsigned *n,
                          int64_t *first_ms);
/* Delete codes that expired before now_ms; *removed counts them. */
int store_pairing_expire(store *s, int64_t now_ms, unsigned *removed);

/* ---- Schools and kiosks (directory.c) ---- */

typedef struct store_school {
	store_id id;
	char name[STORE_NAME_MAX + 1];
	int64_t created_ms;
} store_school;

typedef struct store_kiosk {
	store_id id, school_id;
	char name[STORE_NAME_MAX + 1];
	int64_t created_ms;
} store_kiosk;

int store_school_add(store *s, const char *name, int64_t now_ms, store_school *out);
int store_kiosk_add(store *s, const char *school_id, const char *name, int64_t now_ms,
		    store_kiosk *out);
int store_kiosk_get(store *s, const char *kiosk_id, store_kiosk *out);
int store_school_get(store *s, const char *school_id, store_school *out);
/* A kiosk and its first device (its token's hash), in one transaction: both or neither. */
int store_kiosk_add_with_device(store *s, const char *school_id, const char *name,
				const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
				int64_t now_ms, store_kiosk *kiosk, store_device *device);

int store_schools_list(store *s, store_school *out, size_t max, size_t *n);
/* Kiosks of one school (school_id) or of all (NULL), oldest first. */
int store_kiosks_list(store *s, const char *school_id, store_kiosk *out, size_t max, size_t *n);
/* The devices (tokens) of a kiosk, oldest first, revoked ones included. */
int store_kiosk_devices(store *s, const char *kiosk_id, store_device *out, size_t max,
			size_t *n);

/* ---- Children at school kiosks (kiosk.c) ---- */

#define STORE_PIN_HASH_MAX 191 /* bytes of a PIN hash string, as the server makes it */

/* A child paired to a kiosk, with what a session needs. */
typedef struct store_kiosk_link {
	store_id id, kiosk_id, member_id, family_id;
	char kiosk_name[STORE_NAME_MAX + 1], school_name[STORE_NAME_MAX + 1];
	char member_name[STORE_NAME_MAX + 1];
	char avatar[32];
	char pin_hash[STORE_PIN_HASH_MAX + 1]; /* opaque to the store; "": withdrawn */
	store_id pin_set_by;                   /* the member who chose it; "": not known */
	unsigned failures;                     /* wrong PINs since the last right one or lock */
	int64_t locked_until_ms;               /* 0: not locked */
	int64_t created_ms;
} store_kiosk_link;

/* A code a kiosk shows for a parent to type (stored by its hash, single use, expiring). */
int store_kiosk_code_create(store *s, const uint8_t code_hash[STORE_HASH_LEN],
			    const char *kiosk_id, int64_t now_ms, int64_t expires_ms);
/* The same, made by the kiosk's tablet device_id (NULL: none), only while that tablet is one of
 * the kiosk's and not revoked (else STORE_ENOTFOUND, nothing stored; revoking it deletes the
 * unused codes it made, store_device_revoke), and only while the kiosk has fewer than live_max
 * codes neither used nor expired at now_ms (0: no bound; codes made more than a minute after
 * now_ms, by a clock set back since, not counted), counted in the transaction that stores it;
 * else STORE_ELIMIT, nothing stored, and *first_expiry_ms (if not NULL) when the first of them
 * expires. Expired codes are deleted in its transaction, a batch at a time. */
int store_kiosk_code_create_bounded(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                                    const char *kiosk_id, const char *device_id, int64_t now_ms,
                                    int64_t expires_ms, unsigned live_max,
                                    int64_t *first_expiry_ms);
/* 0 if the code is one a kiosk showed, unused and unexpired at now_ms, else STORE_ENOTFOUND:
 * a look before the costly work of redeeming it (hashing the PIN); it uses nothing. */
int store_kiosk_code_check(store *s, const uint8_t code_hash[STORE_HASH_LEN], int64_t now_ms);
/*
 * A parent pairs a child (member_id) to the kiosk that showed the code: in one transaction the
 * code is used and the link made with the PIN's hash; a child paired to that kiosk before gets
 * the new PIN, its lock cleared and its open session ended (as by store_kiosk_link_set_pin).
 * set_by: the member choosing the PIN (NULL: not known, an operator's), who must still be a
 * member. Unknown, used or expired codes, a child or chooser who left: STORE_ENOTFOUND,
 * nothing changes. *out: the link, read in the same transaction (a read that fails: nothing
 * changes either).
 */
int store_kiosk_link_redeem(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                            const char *member_id, const char *pin_hash, const char *set_by,
                            int64_t now_ms, store_kiosk_link *out);
int store_kiosk_link_get(store *s, const char *link_id, store_kiosk_link *out);
/* The kiosks a family's children are paired to / the children paired to a kiosk (by name):
 * up to max, so *n == max means there may be more (ask again with more room). */
int store_kiosk_links_of_family(store *s, const char *family_id, store_kiosk_link *out,
				size_t max, size_t *n);
int store_kiosk_links_of_kiosk(store *s, const char *kiosk_id, store_kiosk_link *out,
			       size_t max, size_t *n);
/* All of the family's links (members times kiosks: no fixed bound) in *out, allocated to fit;
 * the caller frees it (free()). *n set. */
int store_kiosk_links_of_family_all(store *s, const char *family_id, store_kiosk_link **out,
                                    size_t *n);
/* All of the kiosk's links (a boarding school's children: no fixed bound), by the child's
 * name, in *out as store_kiosk_links_of_family_all's. */
int store_kiosk_links_of_kiosk_all(store *s, const char *kiosk_id, store_kiosk_link **out,
                                   size_t *n);
/* A new PIN (its hash), chosen by set_by (as for store_kiosk_link_redeem); clears failures and
 * any lock, and ends the child's open session. *out (if not NULL): the link, read in the same
 * transaction (a read that fails: nothing changes). */
int store_kiosk_link_set_pin(store *s, const char *link_id, const char *pin_hash,
                             const char *set_by, store_kiosk_link *out);
/* Unpair: the link and its session go. */
int store_kiosk_link_delete(store *s, const char *link_id);
/*
 * Before a PIN is checked: count the attempt, atomically, unless the link is locked at now_ms
 * (*allowed = 0: do not check the PIN). Every max_failures-th attempt since the last right
 * PIN (or new PIN) locks the link: the n-th lock until now + lock_ms * 2^(n-1), at most 64
 * times lock_ms. It is still checked, so concurrent logins can never check more than
 * max_failures PINs per lock. A lock ending further from now_ms than its length (set by a
 * clock set back since) is over. A link without a PIN (withdrawn: out->pin_hash "") checks
 * none: *allowed = 0, nothing counted. *out: the link afterwards, read in the same
 * transaction (a read that fails: nothing counted). No such link: STORE_ENOTFOUND.
 */
int store_kiosk_pin_attempt(store *s, const char *link_id, int64_t now_ms,
			    unsigned max_failures, int64_t lock_ms, store_kiosk_link *out,
			    int *allowed);
/* The hour a kiosk's wrong PINs are counted in (pin-failures-kiosk): the server's window, and
 * the one jiayinctl reads and ends it with. */
#define STORE_KIOSK_PIN_WINDOW_MS (60 * 60 * 1000)
/*
 * store_kiosk_pin_attempt, and the link's kiosk bounded too: of the attempts whose PIN is
 * checked (those its child's lock lets through), kiosk_max in a window of kiosk_window_ms, all
 * its children and tablets together, counted in the same transaction as the child's, so
 * attempts at once from any of its tablets never check more. The window starts with its first
 * attempt, or the earliest now_ms it counts (one started more than a minute ahead of now_ms, by
 * a clock set back since, is over) and its count is kept in the directory. Once spent:
 * STORE_ELIMIT, nothing counted (the child's attempt neither), *out the link as it is, and
 * *kiosk_until_ms (if not NULL) when the window ends; counted as its last attempt, 0 and
 * *kiosk_until_ms the same (a wrong PIN then starts the kiosk's lock); else *kiosk_until_ms 0.
 * A right PIN's attempt is given back by store_kiosk_session_start. kiosk_max 0: no bound
 * (store_kiosk_pin_attempt).
 */
int store_kiosk_pin_attempt_bounded(store *s, const char *link_id, int64_t now_ms,
                                    unsigned max_failures, int64_t lock_ms, unsigned kiosk_max,
                                    int64_t kiosk_window_ms, store_kiosk_link *out, int *allowed,
                                    int64_t *kiosk_until_ms);
/* When the kiosk's spent window of wrong PINs ends, as store_kiosk_pin_attempt_bounded at
 * now_ms would find it with kiosk_max and window_ms (for the screen), in *until_ms; 0: not
 * spent. STORE_ENOTFOUND: no such kiosk. */
int store_kiosk_pins_lock_end(store *s, const char *kiosk_id, int64_t now_ms, unsigned kiosk_max,
                              int64_t window_ms, int64_t *until_ms);
/* The kiosk's hour of wrong PINs as its logins find it at now_ms with window_ms: its start in
 * *start_ms and its count in *count (both 0: none, or over). STORE_ENOTFOUND: no such kiosk. */
int store_kiosk_pins_hour(store *s, const char *kiosk_id, int64_t now_ms, int64_t window_ms,
                          int64_t *start_ms, int64_t *count);
/* An operator ends the kiosk's hour of wrong PINs (its lock, if its count reached the bound) in
 * one transaction: its logins are counted again from the next wrong PIN. *start_ms and *count:
 * the hour it had, as store_kiosk_pins_hour found it at now_ms. The children's own locks stay. */
int store_kiosk_pins_reset(store *s, const char *kiosk_id, int64_t now_ms, int64_t window_ms,
                           int64_t *start_ms, int64_t *count);
/* When l's lock ends as store_kiosk_pin_attempt at now_ms would find it (for the screen); a
 * value not after now_ms (0 for a lock set by a clock set back since): not locked. */
int64_t store_kiosk_lock_end(const store_kiosk_link *l, int64_t now_ms, unsigned max_failures,
                             int64_t lock_ms);
/*
 * A right PIN: the child's session on this kiosk device (its token's hash) starts; the
 * device's earlier session ends (one child at a time), so do the child's sessions on other
 * devices, of any kiosk (the link's member's, whichever link: a child at one tablet at a
 * time), and the link's count and lock are cleared. pin_hash is the link's PIN hash the PIN was
 * checked against: if the link has another one by now (a new PIN since), STORE_ECHANGED; if the
 * link is gone, or the device is revoked or not a tablet of the link's kiosk, STORE_ENOTFOUND;
 * either way nothing changes. now_ms is the time of the attempt that checked the PIN
 * (store_kiosk_pin_attempt_bounded): its count on the kiosk is given back, a right PIN being no
 * wrong one, while the window that counted it is the kiosk's. *member and *family (either may
 * be NULL): the child and their family, read in the same transaction, so that a session starts
 * with what its tablet is told or not at all (a read that fails: nothing changes).
 */
int store_kiosk_session_start(store *s, const uint8_t token_hash[STORE_HASH_LEN],
                              const char *device_id, const char *link_id, const char *pin_hash,
                              int64_t now_ms, store_member *member, store_family *family);
/*
 * An attempt store_kiosk_pin_attempt_bounded counted at attempt_ms whose PIN (the link's
 * pin_hash then) could not be checked, or whose session could not start, for a reason not the
 * child's (no memory for the hash, a storage error): given back, the child's count and the
 * kiosk's (while the hour that counted it is the kiosk's), and the child's lock if that
 * attempt set it. A link with another PIN since, or gone: nothing to give back (0).
 */
int store_kiosk_pin_attempt_give_back(store *s, const char *link_id, const char *pin_hash,
                                      int64_t attempt_ms, unsigned max_failures, int64_t lock_ms);
/*
 * Who a session token speaks for: the kiosk device (its family_id and member_id set to the
 * child's) and the child. A session idle for idle_ms or longer, or whose device was revoked,
 * is STORE_ENOTFOUND. With `use` (the child did something, not the app waiting by itself) the
 * use is recorded (at most every few seconds), which keeps the session from going idle; a
 * record the disk refuses (full, read-only) is left, as a phone's last-seen is, and the
 * session holds, idle from the last use recorded. One
 * whose last use is more than a minute ahead of now_ms (the clock was set back) is over too.
 * *idle_at_ms (unless NULL), on success: when, on now_ms's clock, the session is idle (and this
 * function refuses it) unless it is used before (a long-poll of it is woken then to hear 401).
 */
int store_kiosk_session_auth(store *s, const uint8_t token_hash[STORE_HASH_LEN], int64_t now_ms,
                             int64_t idle_ms, bool use, store_device *device, store_member *member,
                             int64_t *idle_at_ms);
/* 0 if the kiosk device is not revoked and the child (still a member) is paired to its kiosk:
 * what a session stood on, whether or not the session is still open; else STORE_ENOTFOUND. */
int store_kiosk_child_linked(store *s, const char *device_id, const char *member_id);
/* End one session by its token's hash, or every session of a kiosk device. */
int store_kiosk_session_end(store *s, const uint8_t token_hash[STORE_HASH_LEN]);
int store_kiosk_sessions_end(store *s, const char *device_id);
/* Every child's kiosk PIN withdrawn (as a parent's removal withdraws those it chose: the link
 * kept, "pin_set" false) and every kiosk session ended: the server's key, which keys the PINs'
 * hashes, was replaced. *n: the PINs withdrawn. */
int store_kiosk_pins_withdraw_all(store *s, unsigned *n);

/* ---- Volunteers and the moderation queue (directory.c) ---- */

typedef struct store_volunteer {
	store_id id;
	char name[STORE_NAME_MAX + 1];
	int64_t created_ms, disabled_ms;
} store_volunteer;

int store_volunteer_add(store *s, const char *name, const uint8_t token_hash[STORE_HASH_LEN],
			int64_t now_ms, store_volunteer *out);
int store_volunteer_by_token(store *s, const uint8_t token_hash[STORE_HASH_LEN],
			     store_volunteer *out);
/* A volunteer disabled (its token finds it no more; the first time kept): in the same
 * transaction the flags it holds (claimed, not resolved) are open again for others to claim. */
int store_volunteer_disable(store *s, const char *volunteer_id, int64_t now_ms);

typedef enum { STORE_FLAG_OPEN = 1, STORE_FLAG_CLAIMED, STORE_FLAG_RESOLVED } store_flag_state;

typedef struct store_flag {
	store_id id, family_id, message_id;
	store_id reporter_id;  /* the member who flagged it; empty if none */
	char reason[512];
	store_flag_state state;
	store_id volunteer_id; /* empty until claimed */
	char resolution[512];
	int64_t created_ms, updated_ms;
} store_flag;

/*
 * Queue a message for review. A reporter whose own flag of the message is still open or
 * claimed gets that flag back, nothing written, and *existed (may be NULL) set.
 */
int store_flag_add(store *s, const char *family_id, const char *message_id, const char *reporter_id,
                   const char *reason, int64_t now_ms, store_flag *out, bool *existed);
/* That flag of the reporter's, still open or claimed, read and nothing written (a flag sent
 * again after its message was deleted is answered with it); STORE_ENOTFOUND when none. */
int store_flag_pending(store *s, const char *family_id, const char *message_id,
                       const char *reporter_id, store_flag *out);
/* Flags in a state, oldest first. */
int store_flags_list(store *s, store_flag_state state, store_flag *out, size_t max, size_t *n);
int store_flag_get(store *s, const char *flag_id, store_flag *out);
/*
 * Claim an open flag (STORE_EEXIST if someone else holds it), or resolve a claimed one with a
 * resolution text (only by the volunteer who claimed it: otherwise STORE_EEXIST).
 */
int store_flag_claim(store *s, const char *flag_id, const char *volunteer_id, int64_t now_ms);
int store_flag_resolve(store *s, const char *flag_id, const char *volunteer_id,
		       const char *resolution, int64_t now_ms);

/* ---- The audit log (append-only) ---- */

int store_audit_append(store *s, int64_t now_ms, const char *actor, const char *action,
		       const char *family_id, const char *target, const char *detail);

/* ---- Mailbox (one database per family) ---- */

typedef enum {
	STORE_MSG_VISIBLE = 1,
	STORE_MSG_HIDDEN,  /* hidden by a moderator */
	STORE_MSG_DELETED, /* audio erased; the row stays so "changes since" can report it */
} store_msg_state;
const char *store_msg_state_name(store_msg_state st);

typedef struct store_message {
	store_id id;
	uint64_t seq;            /* the change sequence number of its latest change */
	store_id sender;
	store_id to;             /* empty string: the whole family */
	int64_t created_ms;
	uint32_t duration_ms;
	double lufs;
	uint64_t bytes;          /* size of the stored Ogg Opus audio */
	uint8_t waveform[STORE_WAVEFORM_POINTS];
	uint8_t sha256[STORE_HASH_LEN];
	store_msg_state state;
	unsigned listened_count;
	store_id listened_by[STORE_MAX_LISTENERS];
	int kept;                /* 1: kept by the family, past any retention period */
} store_message;

typedef struct store_new_message {
	const char *sender;          /* member id */
	const char *to;              /* member id, or NULL for the whole family */
	int64_t created_ms;
	uint32_t duration_ms;
	double lufs;
	const uint8_t *waveform;     /* STORE_WAVEFORM_POINTS values */
	const uint8_t *audio;        /* the Ogg Opus file */
	size_t audio_len;            /* 1 to STORE_AUDIO_MAX bytes, else STORE_EINVAL */
	const char *idempotency_key; /* NULL or up to 128 bytes */
	uint64_t quota_bytes;        /* 0: none; else the mailbox may not grow past it */
} store_new_message;

/*
 * Append a message durably: when this returns 0 the message and its audio are on disk
 * (synchronous=FULL) and survive a crash or power cut. With an idempotency key seen before,
 * nothing is written and the earlier message is returned with *existed = 1.
 */
int store_message_append(store *s, const char *family_id, const store_new_message *m,
			 store_message *out, int *existed);
int store_message_get(store *s, const char *family_id, const char *message_id,
		      store_message *out);
/* The message an idempotency key was used for, as it is now; STORE_ENOTFOUND if unused. */
int store_message_by_key(store *s, const char *family_id, const char *key, store_message *out);
/*
 * Messages changed after `since` (new, listened, hidden, deleted), oldest change first, at most
 * `max`; *latest: the newest sequence number in the mailbox (pass it as `since` next time when
 * *n < max; otherwise pass the last returned message's seq).
 */
/*
 * A mailbox restored from a backup copy (backup.c marks each copy): the change it was taken at
 * (*from) and the floor its numbering went on from (*to: 2^32 above, or its first opening's
 * time in ms x 1024 if higher, so that a copy restored twice numbers above the first); both 0
 * for a mailbox that was never restored. A client's `since` strictly between the two names
 * changes this mailbox no longer has: the client must start over (the API's "reset").
 */
int store_mailbox_restored(store *s, const char *family_id, uint64_t *from, uint64_t *to);
int store_messages_since(store *s, const char *family_id, uint64_t since, store_message *out,
			 size_t max, size_t *n, uint64_t *latest);
/* The newest `max` messages that are not deleted, newest first. */
int store_messages_newest(store *s, const char *family_id, store_message *out, size_t max,
			  size_t *n);
/*
 * Copy audio bytes [offset, offset + len) of a message into buf; *got < len only at the end.
 * Each call opens and closes its own blob handle: nothing is held between calls.
 */
/* What serving a message's audio needs to know before sending it. */
typedef struct store_audio_info {
	uint64_t bytes;                  /* the audio's size */
	uint8_t sha256[STORE_HASH_LEN];  /* its content hash (a strong validator) */
	int64_t created_ms;
	store_msg_state state;           /* visible or hidden (deleted: STORE_ENOTFOUND) */
} store_audio_info;
/* Given the info, where to read and how much (at most the buffer's size); len 0: nothing.
 * A negative return is returned by store_audio_fetch. */
typedef int (*store_audio_choose_fn)(void *ctx, const store_audio_info *info, uint64_t *offset,
				     size_t *len);
/*
 * The audio's info and, as choose() decides from it, its bytes, in one read transaction:
 * serving a clip costs one storage call. *got: bytes read. info may be NULL.
 */
int store_audio_fetch(store *s, const char *family_id, const char *message_id,
		      store_audio_choose_fn choose, void *ctx, void *buf, size_t *got,
		      store_audio_info *info);
int store_audio_read(store *s, const char *family_id, const char *message_id, uint64_t offset,
		     void *buf, size_t len, size_t *got);
/* What store_family_verify found. */
typedef struct store_verify_counts {
	uint64_t messages;   /* messages whose audio was read whole and checked */
	uint64_t bytes;      /* their audio's bytes (read whole; not an unreadable one's part) */
	uint64_t damaged;    /* of those, the ones whose audio is not what was stored */
	uint64_t unreadable; /* messages whose audio the disk failed to read (not in `messages`) */
	uint64_t malformed;  /* message rows whose id is no id (a tampered or damaged mailbox):
	                        nothing of them checked */
} store_verify_counts;
/* A message found wrong, by its row (rowid) and id, called on the verifying thread during the
 * call: `why` is STORE_ECORRUPT when its audio is not what was stored (damaged), STORE_EIO
 * when it could not be read (unreadable), STORE_EINVAL when the row's id is malformed
 * (message_id is NULL then: what the row holds is no id to name it by). */
typedef void (*store_verify_damaged_fn)(void *arg, int64_t row, const char *message_id, int why);
/*
 * Check the audio of every message of the family that has audio (visible and hidden; a
 * deleted one has none) against the size and SHA-256 its row recorded when it was stored:
 * damage the database's structure does not show (bytes a failing disk changed inside audio
 * pages pass the quick_check at open and integrity_check, and backups copy them). A message
 * whose audio differs, is missing or whose pages SQLite finds damaged is damaged; one whose
 * reading fails with an I/O error (a bad sector) is unreadable; a row whose id is not an id
 * (which the storage never writes) is malformed. Each is counted and told to
 * `damaged` (may be NULL); the check goes on with the others. Audio is read as
 * store_audio_fetch reads it, a chunk per read transaction with its own blob handle, so a
 * running server's writes never wait on it; a message deleted meanwhile is skipped. Any other
 * error (listing the messages, STORE_EBUSY, STORE_ENOMEM, ...) ends the call with it; *counts
 * says what was checked until then. It reads all of the family's audio: docs/operations.md
 * gives its speed.
 */
int store_family_verify(store *s, const char *family_id, store_verify_damaged_fn damaged, void *arg,
                        store_verify_counts *counts);
/* Record that a member listened (idempotent); *seq: the message's new change number. */
int store_message_listened(store *s, const char *family_id, const char *message_id,
			   const char *member_id, int64_t now_ms, uint64_t *seq);
/* Hide or show (moderation), or delete (erases the audio). */
int store_message_set_state(store *s, const char *family_id, const char *message_id,
			    store_msg_state state, uint64_t *seq);
/* Keep (1) or stop keeping (0) a message past the family's retention period: a change
 * (*seq its new number; unchanged if it was so already). Deleted messages: STORE_ENOTFOUND. */
int store_message_keep(store *s, const char *family_id, const char *message_id, int keep,
		       uint64_t *seq);
/*
 * Retention: delete (as store_message_set_state does, each in its own transaction) up to `max`
 * messages older than retention_days (> 0, else STORE_EINVAL) at now_ms, that are neither
 * kept nor deleted, oldest first. *deleted counts them; *seq: the last change number taken (0
 * if none). The period is the one the caller read: each deletion first checks it is still the
 * family's, and stops with STORE_ECHANGED if not (*deleted those before). A change of the
 * period (store_family_update) waits for a deletion under way and goes before the next, so
 * none is made by a period a parent has already changed.
 */
int store_messages_expire(store *s, const char *family_id, uint32_t retention_days, int64_t now_ms,
                          unsigned max, unsigned *deleted, uint64_t *seq);
/* Bytes of audio the mailbox holds (deleted messages excluded). */
int store_mailbox_usage(store *s, const char *family_id, uint64_t *bytes);

/* ---- Backups and export (backup.c) ---- */

/*
 * An online, consistent copy of one family's mailbox database into `dest_path`, a file that
 * must not exist yet (STORE_EEXIST). Writers carry on meanwhile (WAL); the copy is the
 * snapshot taken when it started. It is made as .NAME.partial-PID beside dest_path and
 * renamed into place once synced, so dest_path is whole or absent; such leftovers of
 * processes that are gone are removed. Both backups leave errno on return: the file
 * system's reason for a failure that was the file system's (ENOENT, ENOSPC, ...), else 0.
 */
int store_backup_family(store *s, const char *family_id, const char *dest_path);
/* A family whose mailbox a full backup could not copy because it is damaged (set aside in
 * quarantine/, now or before): called on the backup's thread, with the family's id. */
typedef void (*store_backup_damaged_fn)(void *arg, const char *family_id);
/*
 * The directory and every family's database into `dest_dir` (created; it must not exist):
 * dest_dir/directory.db and dest_dir/families/<id>.db, and each of `extra_files` (paths, a
 * NULL-terminated list, or NULL) copied in under its base name, mode 0600; one missing is
 * STORE_ENOTFOUND. All of it is made in dest_dir.partial-PID, synced and renamed: dest_dir
 * is whole or absent. *families counts the families copied. A family whose mailbox is
 * damaged does not fail the backup (one family's damage would stop every family's
 * backups): its rows (members, phones) are kept without a families/<id>.db, so a restore
 * still has the family to put an earlier copy of its mailbox back into, and `damaged` (if not
 * NULL) is told its id. A family erased while the backup runs is in none of it.
 */
int store_backup_all(store *s, const char *dest_dir, const char *const *extra_files,
                     unsigned *families, store_backup_damaged_fn damaged, void *arg);
/*
 * A zip for a parent to download, written to `fd`: every visible message as
 * "<UTC time>_<id>.ogg" (stored, not recompressed: Opus is compressed already) and
 * index.json (the family, its members, and each message's metadata). Hidden and deleted
 * messages are left out. *bytes: the size of the zip. A write to fd that fails is the file
 * system's failure (STORE_EFULL for a full disk), its errno left on return as the backups do.
 * A visible message whose row's id is malformed (a tampered or damaged mailbox) is left out
 * too, its id never in a file name, and told to `left_out` (may be NULL) by its row (rowid),
 * `why` STORE_EINVAL and message_id NULL. With a `left_out`, a message whose audio the disk
 * fails to read (STORE_EIO) or SQLite finds damaged (STORE_ECORRUPT) is left out and told so
 * with its id, and the others are exported (what can be saved of a failing mailbox); without
 * one, that is the call's failure. With one, index.json lists what was left out ("left_out":
 * id or null, created_at, why "unreadable" or "damaged"; [] when nothing was).
 */
typedef void (*store_export_left_out_fn)(void *arg, int64_t row, const char *message_id, int why);
int store_export_family(store *s, const char *family_id, int fd, uint64_t *bytes,
                        store_export_left_out_fn left_out, void *arg);

#ifdef __cplusplus
}
#endif
#endif
