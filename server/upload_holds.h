/*
 * upload_holds.h — the bytes each family's unfinished uploads hold (upload_holds.c): a ledger
 * of entries, each a key (an upload's id, or a plain upload's body's) with its family and its
 * bytes (and how many of them are written), so that a family's unfinished uploads are bounded
 * together, whichever phones and kiosks hold them, and all families' by the disk's free space.
 * uploads.c keeps it for data/uploads; the server holds plain bodies in it.
 *
 * An upload's entry has its expiry, and stops counting (the family's and the disk's) the moment
 * it passes, unless a request works on it (busy): nobody can resume an expired upload, and the
 * sweep, which gives the entry back with its files, comes minutes later. Each call that says
 * `now_ms` moves the ledger's time forward (never back): an entry once out of count stays out.
 *
 * Thread-safe: one mutex, held only for the ledger's own arithmetic (never across I/O), so the
 * event loop may give an entry back. Calls return 0 or a negative errno.
 */
#ifndef JIAYIN_SERVER_UPLOAD_HOLDS_H
#define JIAYIN_SERVER_UPLOAD_HOLDS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct srv_upload_holds srv_upload_holds;

int srv_upload_holds_new(srv_upload_holds **out);
void srv_upload_holds_free(srv_upload_holds *h); /* NULL is fine */

/*
 * Holds bytes for `family` under `key` (at most 26 characters, not held yet): as many as the
 * family's other entries leave of `allowance`, and all families' entries leave of `disk`
 * (what the server's disk may still take of unfinished uploads: each entry counts what it has
 * not written yet; UINT64_MAX: no bound), up to `max`; when that is less than `min` (or
 * nothing), nothing is held: -ENOSPC when `allowance` itself is, -EAGAIN when the family's
 * other entries hold the rest, else -EDQUOT (the disk). -ENOMEM. *got: the bytes held. The
 * entry does not expire until srv_upload_holds_renew says when.
 */
int srv_upload_holds_take(srv_upload_holds *h, const char *family, const char *key, uint64_t min,
                          uint64_t max, uint64_t allowance, uint64_t disk, int64_t now_ms,
                          uint64_t *got);
/*
 * The entry under `key` holds as many bytes as the family's other entries leave of `allowance`
 * and all entries leave of `disk`, up to `max` (less than it holds: it shrinks to `max`); when
 * that is less than `min`, it stays as it was: -EAGAIN (the family's others) or -EDQUOT (the
 * disk), or -ENOENT when there is no such entry. *got: what it holds on return.
 */
int srv_upload_holds_resize(srv_upload_holds *h, const char *key, uint64_t min, uint64_t max,
                            uint64_t allowance, uint64_t disk, int64_t now_ms, uint64_t *got);
/* What the family's entries leave of `allowance` now (0: none). */
uint64_t srv_upload_holds_left(srv_upload_holds *h, const char *family, uint64_t allowance,
                               int64_t now_ms);
/* The entry under `key` expires at `expires_ms` (its upload changed), unless it is out of
 * count already (-ETIMEDOUT: expired, and no request works on it) or there is none (-ENOENT). */
int srv_upload_holds_renew(srv_upload_holds *h, const char *key, int64_t expires_ms,
                           int64_t now_ms);
/* A request works on the entry's upload: it counts past its expiry until
 * srv_upload_holds_idle. -ETIMEDOUT when it is out of count already, -ENOENT when none. */
int srv_upload_holds_busy(srv_upload_holds *h, const char *key, int64_t now_ms);
void srv_upload_holds_idle(srv_upload_holds *h, const char *key);
bool srv_upload_holds_is_busy(srv_upload_holds *h, const char *key);
/* What all entries have written, together (it grows as they write, and falls as they go). */
uint64_t srv_upload_holds_written_total(srv_upload_holds *h);
/* The entry under `key` has `written` of its bytes on the disk (they are in its free space no
 * more, and count against `disk` no more). */
void srv_upload_holds_written(srv_upload_holds *h, const char *key, uint64_t written);
/* The entry under `key` goes, if there is one. */
void srv_upload_holds_give(srv_upload_holds *h, const char *key);

/*
 * A whole upload's message that storage refused for want of room (uploads.h,
 * srv_upload_refused): what it needed, kept with the upload's entry and gone with it.
 */
typedef struct srv_upload_refusal {
	uint64_t needs;     /* the message's audio bytes; 0: no refusal known */
	bool disk;          /* the server's disk was full; else the family's mailbox */
	uint64_t disk_free; /* the data's free bytes after the refusal (disk) */
	int64_t at_ms;      /* when */
} srv_upload_refusal;
/* The entry under `key` keeps *r (-ENOENT when there is none) / gives it (r->needs 0: none). */
int srv_upload_holds_refusal_set(srv_upload_holds *h, const char *key, const srv_upload_refusal *r);
void srv_upload_holds_refusal_get(srv_upload_holds *h, const char *key, srv_upload_refusal *r);

#endif
