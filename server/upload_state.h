/*
 * upload_state.h — what a running server keeps about resumable uploads, on the loop thread
 * (upload_state.c): which request works on which upload (the lock table api_uploads.c asks),
 * and the expiry sweep of data/uploads (uploads.c) that runs on the job pool.
 */
#ifndef JIAYIN_SERVER_UPLOAD_STATE_H
#define JIAYIN_SERVER_UPLOAD_STATE_H

#include "server.h"
#include "uploads.h"

#define UPLOAD_LOCK_BUCKETS 64

/* One request works on an upload at a time: its lock, held from its handler to its answer. */
typedef struct upload_lock {
	struct upload_lock *next;
	char id[STORE_ID_LEN + 1];
	srv_exchange *holder; /* valid while the lock is held */
	bool receiving;       /* the holder is a PATCH reading its body */
	bool cut;             /* a HEAD or DELETE came: the holder's body, once it reads one, is cut */
	bool busy;            /* the upload counts past its expiry while held (srv_upload_busy) */
} upload_lock;

/* PATCHes of an upload that arrived with one token and wait for their caller to be checked,
 * before any of them may take the lock: for that token's HEAD, the offset is about to change.
 * Kept by token (its hash), so that no one else's PATCHes hold the owner's HEAD back. */
typedef struct upload_pending {
	struct upload_pending *next;
	char id[STORE_ID_LEN + 1];
	uint8_t token_hash[STORE_HASH_LEN];
	unsigned count;
} upload_pending;

struct srv_uploads {
	srv_server *srv;
	srv_upload_dir *dir; /* data/uploads (used on the pool; set once at start) */
	uv_timer_t sweep_timer;
	bool sweeping;
	upload_lock *locks[UPLOAD_LOCK_BUCKETS];
	size_t nlocks;
	upload_pending *pending[UPLOAD_LOCK_BUCKETS];
};

/* id's lock, or NULL when nobody holds it. */
upload_lock *srv_upload_lock_find(struct srv_uploads *up, const char *id);
/* id's lock for x; NULL when another request holds it, or (*oom set) when out of memory. */
upload_lock *srv_upload_lock_take(struct srv_uploads *up, const char *id, srv_exchange *x,
				  bool *oom);
void srv_upload_lock_release(struct srv_uploads *up, upload_lock *l);
/* A PATCH of id with this token arrived (false: out of memory) / was checked or ended; how
 * many of the token's wait. */
bool srv_upload_pending_add(struct srv_uploads *up, const char *id,
                            const uint8_t token_hash[STORE_HASH_LEN]);
void srv_upload_pending_drop(struct srv_uploads *up, const char *id,
                             const uint8_t token_hash[STORE_HASH_LEN]);
unsigned srv_upload_pending(struct srv_uploads *up, const char *id,
                            const uint8_t token_hash[STORE_HASH_LEN]);

/* s->uploads: data/uploads and its sweep, at start then every min(expiry / 2, 10 min).
 * 0 or a negative errno. srv_uploads_free() once the loop has closed every handle. */
int srv_uploads_start(srv_server *s);
void srv_uploads_free(srv_server *s);

#endif
