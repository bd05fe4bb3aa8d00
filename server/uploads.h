/*
 * uploads.h — resumable uploads on disk, under data/uploads: a directory per device and, per
 * upload, its bytes (ID.part) and its record (ID.info, JSON, replaced atomically: written
 * beside, fsynced, renamed, the directory fsynced). The record's offset counts only bytes
 * that were fsynced in the .part first, so after a crash it never claims more than is there.
 * An upload's owner is the device whose directory holds it: another device looks in its own
 * directory and finds nothing.
 *
 * Blocking calls for the job pool, never the event loop. One mutex orders the calls that
 * change records (creation and the device's cap, commits, the message's id, removal, the
 * expiry sweep); two requests on one upload are kept apart by the caller (api_uploads.c's
 * locks). Calls return 0 or a negative code: -errno from the file system, or SRV_UPLOAD_E*.
 */
#ifndef JIAYIN_SERVER_UPLOADS_H
#define JIAYIN_SERVER_UPLOADS_H

#include "store.h"
#include "upload_holds.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_UPLOAD_IDEM_MAX 128 /* bytes of an idempotency key, as the plain upload's header */

enum {
	SRV_UPLOAD_ENOTFOUND = -10001, /* no such upload in this device's directory, or expired */
	SRV_UPLOAD_ETOOMANY = -10002,  /* the device holds its cap of unfinished uploads */
	SRV_UPLOAD_ECORRUPT = -10003,  /* a record that does not read back */
	SRV_UPLOAD_EROOM = -10004,     /* the family's room is less than it, whatever is held */
	SRV_UPLOAD_EHELD = -10005,     /* the family's other unfinished uploads hold that room */
	SRV_UPLOAD_EDISK = -10006,     /* the server's disk keeps its last free space for the
	                                  mailboxes (srv_upload_dir_set_reserve) */
};

typedef struct srv_upload {
	char id[STORE_ID_LEN + 1];
	char device[STORE_ID_LEN + 1];     /* the owner: this device, speaking for this member */
	char member[STORE_ID_LEN + 1];     /* (a kiosk's device speaks for several children) */
	char family[STORE_ID_LEN + 1];
	char to[STORE_ID_LEN + 1];         /* the recipient; empty: the whole family */
	char idem[SRV_UPLOAD_IDEM_MAX + 1]; /* the client's idempotency key; empty: none */
	uint64_t length, offset;           /* Upload-Length; bytes durably received */
	int64_t created_ms, updated_ms;    /* updated: the last change, from which it expires */
	char message_id[STORE_ID_LEN + 1]; /* the message it became; empty until then */
} srv_upload;

typedef struct srv_upload_dir srv_upload_dir;

/* data_dir/uploads, created if missing. expiry_ms: how long an upload lives after a change;
 * start_expiry_ms: how long one that has received nothing does, when that is shorter. */
int srv_upload_dir_open(srv_upload_dir **out, const char *data_dir, int64_t expiry_ms,
                        int64_t start_expiry_ms);
void srv_upload_dir_close(srv_upload_dir *d); /* NULL is fine */
/*
 * Unfinished uploads, all families together, leave `reserve` bytes of the data's filesystem
 * free, so that a disk filled by recordings on their way does not refuse the messages they and
 * everyone else's become (0 until set: they may fill it). Each counts what it has still to write;
 * past it, creations and holds are SRV_UPLOAD_EDISK. The free space is looked at once a second at
 * most.
 */
void srv_upload_dir_set_reserve(srv_upload_dir *d, uint64_t reserve);

/* When u expires (ms since the epoch). */
int64_t srv_upload_expires_ms(const srv_upload_dir *d, const srv_upload *u);

/*
 * A new upload of u->device (member, family, to, idem, length filled in): a fresh random id,
 * an empty .part and the record, durable on return. SRV_UPLOAD_ETOOMANY when the device
 * already holds `cap` unfinished uploads of u->member (a kiosk's children count apart), with
 * *free_ms when the first of them expires, freeing a place unless the device frees one sooner
 * (for one that a request works on, a minute on at most: it may finish any moment);
 * SRV_UPLOAD_EROOM when u->length passes `allowance`, SRV_UPLOAD_EHELD when it fits in it but
 * not beside what the family's other unfinished uploads hold (on any device, plain bodies
 * too), SRV_UPLOAD_EDISK when the server's disk keeps the rest (srv_upload_dir_set_reserve). It
 * holds u->length until it becomes a message, its files go, or it expires (unless a request
 * works on it then: srv_upload_busy): an expired upload, which no one can resume, holds
 * nothing while it waits for the sweep.
 *
 * The same recording created again (a lost answer's retry): when the device holds an
 * unfinished upload of u->member with u's idempotency key (not empty) in u's family, that
 * upload is the answer if its length and recipient are u's (*again, u filled from its record:
 * its offset, its expiry started again), and is removed first otherwise (the key's message can
 * be only one of them).
 */
int srv_upload_create(srv_upload_dir *d, srv_upload *u, unsigned cap, uint64_t allowance,
                      int64_t now_ms, bool *again, int64_t *free_ms);
/*
 * A creation whose idempotency key (u->idem, not empty) is the message `message_id` already:
 * its answer is an upload of u->device that is that message, whole (offset = u->length), with
 * no .part, no hold and no place among the device's unfinished uploads: a record only, durable
 * on return (u filled from it), which expires as a finished upload's does. The device's record
 * of the key that names a message is used again, if it has one (so there is one per key,
 * however often the key is created again); an unfinished upload of the key is removed (the
 * message is made: its bytes would make no other one).
 */
int srv_upload_create_done(srv_upload_dir *d, srv_upload *u, const char *message_id,
                           int64_t now_ms);
/*
 * A plain upload's body on its way in holds its bytes beside the family's unfinished uploads:
 * as many as they leave of `allowance`, up to `max` (*got), or, when that is under `min`,
 * SRV_UPLOAD_EROOM (`allowance` itself is), SRV_UPLOAD_EHELD (the others hold the rest) or
 * SRV_UPLOAD_EDISK (the server's disk);
 * key (a fresh id) names the hold, empty when none was taken. Given back with
 * srv_upload_release(key) (an empty key: nothing). Neither touches the disk: any thread.
 */
int srv_upload_hold(srv_upload_dir *d, const char *family, uint64_t min, uint64_t max,
                    uint64_t allowance, int64_t now_ms, char key[STORE_ID_LEN + 1], uint64_t *got);
void srv_upload_release(srv_upload_dir *d, const char *key);
/* The plain body's hold `key` grows (or shrinks) to as many bytes as the family's other
 * unfinished uploads leave of `allowance`, up to `max` (*got: what it holds on return);
 * SRV_UPLOAD_EHELD or SRV_UPLOAD_EDISK, unchanged, when that is under `min`. Any thread. */
int srv_upload_hold_resize(srv_upload_dir *d, const char *key, uint64_t min, uint64_t max,
                           uint64_t allowance, int64_t now_ms, uint64_t *got);
/* What the family's unfinished uploads leave of `allowance` now. Any thread. */
uint64_t srv_upload_room_left(srv_upload_dir *d, const char *family, uint64_t allowance,
                              int64_t now_ms);
/*
 * A request starts working on upload `id` (it holds the upload's lock): what the upload holds
 * keeps counting past its expiry until srv_upload_idle, as a PATCH receiving then counts its
 * bytes and starts the expiry again. SRV_UPLOAD_ENOTFOUND when it expired before (it holds
 * nothing already, and no one may resume it). Neither touches the disk: any thread.
 */
int srv_upload_busy(srv_upload_dir *d, const char *id, int64_t now_ms);
void srv_upload_idle(srv_upload_dir *d, const char *id);
/* Of the plain body's hold `key`, `written` bytes are on the disk now. Any thread. */
void srv_upload_hold_written(srv_upload_dir *d, const char *key, uint64_t written);

/*
 * Upload `id` is whole, and storage refused its message for want of room (the family's mailbox
 * full, or the server's disk): r says what the message needed, kept in memory with what the
 * upload holds until it becomes a message, its files go, it expires or the server restarts, so
 * that the next finish looks at that room before it transcodes the recording again (the review:
 * every HEAD of a phone retrying spent the whole transcode, 12 s of CPU for a 15-minute WAV, to
 * meet the same 507). -ENOENT when the upload holds nothing. Neither touches the disk.
 */
int srv_upload_refused(srv_upload_dir *d, const char *id, const srv_upload_refusal *r);
/* id's refusal (r->needs 0 when none is known). */
void srv_upload_refusal_of(srv_upload_dir *d, const char *id, srv_upload_refusal *r);
/* The data's filesystem's free bytes now (UINT64_MAX when it cannot tell). */
uint64_t srv_upload_disk_free(srv_upload_dir *d);
/*
 * A refusal for want of disk (r->disk): whether the disk is still as short as it was, so the
 * message would be refused again. It is until its free space grew by the message's bytes since,
 * or for SRV_UPLOAD_REFUSED_DISK_MS at most (a file system whose free space says nothing of its
 * room, a quota or its inodes, is tried again that often).
 */
#define SRV_UPLOAD_REFUSED_DISK_MS (5 * 60 * 1000)
bool srv_upload_disk_still_short(srv_upload_dir *d, const srv_upload_refusal *r, int64_t now_ms);

/* The record of `device`'s upload `id`; SRV_UPLOAD_ENOTFOUND if none (or expired). */
int srv_upload_load(srv_upload_dir *d, const char *device, const char *id, int64_t now_ms,
		    srv_upload *u);

/*
 * The .part of an unfinished upload, as a new descriptor (the caller closes it). For
 * writing, it is first cut back to the durable offset: bytes beyond it were never counted.
 */
int srv_upload_open_part(srv_upload_dir *d, const srv_upload *u, bool write);

/*
 * `written` more bytes are in fd (the .part, at u->offset): fdatasync, then the record's
 * offset and last change move on (u too). SRV_UPLOAD_ENOTFOUND if the upload was removed
 * meanwhile (it expired).
 */
int srv_upload_commit(srv_upload_dir *d, srv_upload *u, int fd, uint64_t written,
		      int64_t now_ms);

/*
 * The upload became message_id: the record says so, the .part goes. When the record cannot be
 * written (a full disk), the bytes go all the same (the .part cut to nothing, its name kept),
 * and what the upload held, and the record is written once more: the message is stored under
 * the upload's key, which a finish done again looks up before it reads a byte.
 */
int srv_upload_stored(srv_upload_dir *d, srv_upload *u, const char *message_id, int64_t now_ms);

/* The upload's files go. SRV_UPLOAD_ENOTFOUND if there were none. */
int srv_upload_remove(srv_upload_dir *d, const char *device, const char *id);
/* Every upload whose record names `family`, on any device: a family's phones and the kiosks
 * its children used (a kiosk's directory holds other families' uploads too, which stay).
 * *removed counts them. */
int srv_upload_remove_family(srv_upload_dir *d, const char *family, unsigned *removed);
/* Every upload whose record speaks for `member` (its phones', and a kiosk's for a child). */
int srv_upload_remove_member(srv_upload_dir *d, const char *member, unsigned *removed);

/* Whether an upload's owner is still there to finish it: false when its family was erased, its
 * member removed or its device revoked (what their own erasure missed, in a crash); true when
 * it cannot tell (a storage error). */
typedef bool (*srv_upload_owned_fn)(const srv_upload *u, void *arg);

/*
 * Removes expired uploads (except the `nbusy` ids in `busy`, in use right now, and those a
 * request took since: srv_upload_busy), those whose owner is gone (`owned`, if not NULL, with
 * `arg`), leftovers of a crash (a .part without its record, a record's temporary file, the
 * .part of an upload that became a message) and empty device directories. *removed counts the
 * uploads removed.
 */
int srv_upload_sweep(srv_upload_dir *d, int64_t now_ms, const char (*busy)[STORE_ID_LEN + 1],
                     size_t nbusy, srv_upload_owned_fn owned, void *arg, unsigned *removed);

#endif
