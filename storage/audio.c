/*
 * audio.c — reading a message's audio: a range for the server (store_audio_fetch, with the
 * clip's size, hash and date from the same lookup) and a whole visible clip for the export
 * (audio_load). Each call finds the message and reads its blob in one read transaction, and
 * opens and closes its blob handle within the call: nothing is held between calls. And the
 * check of a family's stored audio against the SHA-256 each message recorded
 * (store_family_verify), a chunk per read transaction as the server reads a clip.
 */
#include "internal.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

typedef struct audio_row {
	sqlite3_int64 rowid;
	store_audio_info *info;
} audio_row;

static void audio_row_fn(sqlite3_stmt *st, void *out)
{
	audio_row *r = out;
	r->rowid = sqlite3_column_int64(st, 0);
	r->info->bytes = (uint64_t)sqlite3_column_int64(st, 1);
	r->info->created_ms = sqlite3_column_int64(st, 2);
	r->info->state = (store_msg_state)sqlite3_column_int(st, 3);
	const void *h = sqlite3_column_blob(st, 4);
	if (h && sqlite3_column_bytes(st, 4) == STORE_HASH_LEN)
		memcpy(r->info->sha256, h, STORE_HASH_LEN);
}

/* What to do with a message's audio, given its info and its open blob, inside the lookup's
 * read transaction. */
typedef int (*blob_fn)(void *ctx, const store_audio_info *info, sqlite3 *db,
		       sqlite3_int64 rowid);

/* Find a message that is not deleted and run fn on its audio row, in one read transaction. */
static int with_audio(store *s, const char *family_id, const char *message_id, blob_fn fn,
		      void *ctx, store_audio_info *info)
{
	static const char sql[] = "SELECT rowid, bytes, created_ms, state, sha256 FROM messages "
				  "WHERE id = ? AND state != 3";
	family *f;
	conn *c;
	sqlite3_stmt *st = NULL;
	audio_row row = {0, info};
	memset(info, 0, sizeof *info);
	if (store_id_check(message_id) < 0)
		return STORE_ENOTFOUND;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	if ((rc = db_read_begin(f->db, &c)) < 0)
		goto release;
	/*
	 * One read transaction for the lookup and the blob, without BEGIN and COMMIT: the
	 * lookup is left on its row (not reset) while the blob is read, so SQLite keeps the
	 * read transaction it started for the lookup (one snapshot, one read lock) until the
	 * reset below.
	 */
	if (!(st = conn_stmt(c, sql, &rc)))
		goto end;
	sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r != SQLITE_ROW) {
		rc = r == SQLITE_DONE ? STORE_ENOTFOUND : stmt_error(st, r);
		goto end;
	}
	audio_row_fn(st, &row);
	rc = fn(ctx, info, c->db, row.rowid);
end:
	if (st)
		sqlite3_reset(st); /* ends the read transaction */
	db_read_end(f->db, c);
release:
	family_release(s, f);
	return rc;
}

/* Opened, read and closed within one call: no handle outlives it. */
static int blob_open(sqlite3 *db, sqlite3_int64 rowid, sqlite3_blob **blob)
{
	int r = sqlite3_blob_open(db, "main", "audio", "data", rowid, 0, blob);
	if (r == SQLITE_OK)
		return 0;
	return r == SQLITE_ERROR ? STORE_ENOTFOUND : store_map_db(db, r);
}

typedef struct fetch_ctx {
	store_audio_choose_fn choose;
	void *ctx;
	void *buf;
	size_t *got;
} fetch_ctx;

static int fetch_fn(void *ctx, const store_audio_info *info, sqlite3 *db, sqlite3_int64 rowid)
{
	fetch_ctx *fc = ctx;
	sqlite3_blob *blob;
	uint64_t offset = 0;
	size_t len = 0;
	int rc;
	if (fc->choose && (rc = fc->choose(fc->ctx, info, &offset, &len)) < 0)
		return rc;
	if (len == 0)
		return 0;
	if ((rc = blob_open(db, rowid, &blob)) < 0)
		return rc;
	uint64_t size = (uint64_t)sqlite3_blob_bytes(blob);
	if (offset < size) {
		size_t n = size - offset < len ? (size_t)(size - offset) : len;
		int r = sqlite3_blob_read(blob, fc->buf, (int)n, (int)offset);
		if (r == SQLITE_OK)
			*fc->got = n;
		else
			rc = store_map_sqlite(r);
	}
	sqlite3_blob_close(blob);
	return rc;
}

int store_audio_fetch(store *s, const char *family_id, const char *message_id,
		      store_audio_choose_fn choose, void *ctx, void *buf, size_t *got,
		      store_audio_info *info)
{
	store_audio_info local;
	fetch_ctx fc = {choose, ctx, buf, got};
	*got = 0;
	return with_audio(s, family_id, message_id, fetch_fn, &fc, info ? info : &local);
}

typedef struct load_ctx {
	uint8_t **buf;
	size_t *cap;
} load_ctx;

static int load_fn(void *ctx, const store_audio_info *info, sqlite3 *db, sqlite3_int64 rowid)
{
	load_ctx *lc = ctx;
	sqlite3_blob *blob;
	if (info->state != STORE_MSG_VISIBLE)
		return STORE_ENOTFOUND; /* hidden by a moderator since it was listed */
	int rc = blob_open(db, rowid, &blob);
	/* No audio row for a visible message in the same snapshot: a deletion takes both at once,
	 * so the mailbox is damaged, as verify says (the review: the export left the message out
	 * as one deleted meanwhile, without a word). */
	if (rc == STORE_ENOTFOUND)
		return STORE_ECORRUPT;
	if (rc < 0)
		return rc;
	uint64_t size = (uint64_t)sqlite3_blob_bytes(blob);
	if (size != info->bytes || size > STORE_AUDIO_MAX)
		rc = STORE_ECORRUPT; /* not the size its row records */
	if (rc == 0 && size > *lc->cap) {
		uint8_t *p = realloc(*lc->buf, (size_t)size);
		if (p) {
			*lc->buf = p;
			*lc->cap = (size_t)size;
		} else {
			rc = STORE_ENOMEM;
		}
	}
	if (rc == 0) {
		int r = sqlite3_blob_read(blob, *lc->buf, (int)size, 0);
		if (r != SQLITE_OK)
			rc = store_map_sqlite(r);
	}
	sqlite3_blob_close(blob);
	return rc;
}

int audio_load(store *s, const char *family_id, const char *message_id, uint8_t **buf,
	       size_t *cap, store_audio_info *info)
{
	load_ctx lc = {buf, cap};
	return with_audio(s, family_id, message_id, load_fn, &lc, info);
}

typedef struct fixed_range {
	uint64_t offset;
	size_t len;
} fixed_range;

static int fixed_choose(void *ctx, const store_audio_info *info, uint64_t *offset, size_t *len)
{
	(void)info;
	const fixed_range *fr = ctx;
	*offset = fr->offset;
	*len = fr->len;
	return 0;
}

int store_audio_read(store *s, const char *family_id, const char *message_id, uint64_t offset,
		     void *buf, size_t len, size_t *got)
{
	fixed_range fr = {offset, len};
	return store_audio_fetch(s, family_id, message_id, fixed_choose, &fr, buf, got, NULL);
}

/* ---- verifying the stored audio ---- */

#define VERIFY_CHUNK (256u * 1024) /* bytes per read transaction: the server's chunk */
#define VERIFY_PAGE 64             /* messages listed per read transaction */

typedef struct verify_ctx {
	uint64_t offset;                /* where this chunk starts */
	uint8_t *buf;                   /* VERIFY_CHUNK bytes */
	EVP_MD_CTX *hash;               /* the audio so far */
	uint64_t size;                  /* the blob's size, as this chunk found it */
	size_t got;                     /* bytes this chunk read */
	bool damaged;                   /* missing, or not the size its row says */
	uint8_t sha256[STORE_HASH_LEN]; /* what its row says, as this chunk found it */
} verify_ctx;

/* One chunk from vc->offset into the hash, inside with_audio's read transaction. */
static int verify_fn(void *ctx, const store_audio_info *info, sqlite3 *db, sqlite3_int64 rowid)
{
	verify_ctx *vc = ctx;
	sqlite3_blob *blob;
	vc->got = 0;
	memcpy(vc->sha256, info->sha256, STORE_HASH_LEN);
	int r = sqlite3_blob_open(db, "main", "audio", "data", rowid, 0, &blob);
	/* No audio row where the message (same snapshot) has one, or one that does not read. */
	if (r == SQLITE_ERROR || store_map_db(db, r) == STORE_ECORRUPT) {
		vc->damaged = true;
		return 0;
	}
	if (r != SQLITE_OK)
		return store_map_db(db, r); /* a page on the way to its row unread: unreadable */
	int rc = 0;
	vc->size = (uint64_t)sqlite3_blob_bytes(blob);
	if (vc->size != info->bytes) {
		vc->damaged = true;
	} else if (vc->offset < vc->size) {
		size_t n = vc->size - vc->offset < VERIFY_CHUNK ? (size_t)(vc->size - vc->offset)
		                                                : VERIFY_CHUNK;
		r = sqlite3_blob_read(blob, vc->buf, (int)n, (int)vc->offset);
		if ((r & 0xff) == SQLITE_CORRUPT) /* its pages do not chain as they should */
			vc->damaged = true;
		else if (r != SQLITE_OK)
			rc = store_map_sqlite(r);
		else if (!EVP_DigestUpdate(vc->hash, vc->buf, n))
			rc = STORE_ENOMEM;
		else
			vc->got = n;
	}
	sqlite3_blob_close(blob);
	return rc;
}

/*
 * One message's audio read whole and hashed: *damaged set when it is not what its row
 * recorded. STORE_ENOTFOUND: deleted meanwhile.
 */
static int verify_message(store *s, const char *family_id, const char *message_id, verify_ctx *vc,
                          bool *damaged, uint64_t *bytes)
{
	store_audio_info info;
	uint8_t want[STORE_HASH_LEN], got[STORE_HASH_LEN];
	unsigned int hlen = 0;
	int rc = 0;
	*damaged = false;
	*bytes = 0;
	vc->offset = 0;
	vc->damaged = false;
	if (!EVP_DigestInit_ex(vc->hash, EVP_sha256(), NULL))
		return STORE_ENOMEM;
	/* A chunk per call, each its own read transaction (and blob handle), as the server
	 * streams a clip: nothing is held between chunks. The audio of a message is never
	 * rewritten, only erased, so the chunks are of one clip or the message is gone. */
	do {
		rc = with_audio(s, family_id, message_id, verify_fn, vc, &info);
		if (rc == 0 && vc->offset == 0)
			memcpy(want, vc->sha256, STORE_HASH_LEN);
		vc->offset += vc->got;
		*bytes = vc->offset;
	} while (rc == 0 && !vc->damaged && vc->got > 0 && vc->offset < vc->size);
	if (rc < 0)
		return rc;
	if (vc->damaged) {
		*damaged = true;
		return 0;
	}
	if (!EVP_DigestFinal_ex(vc->hash, got, &hlen) || hlen != STORE_HASH_LEN)
		return STORE_ENOMEM;
	*damaged = memcmp(got, want, STORE_HASH_LEN) != 0;
	return 0;
}

typedef struct stored_page {
	char ids[VERIFY_PAGE][STORE_ID_LEN + 1];
	sqlite3_int64 rows[VERIFY_PAGE];
	bool malformed[VERIFY_PAGE]; /* the row's id is no id: ids[] holds nothing */
	sqlite3_int64 last;          /* the last one's rowid */
	size_t n;
} stored_page;

/*
 * A row's id, whole: one the storage never wrote (a tampered or damaged mailbox) is marked
 * malformed, where it was looked up, found under no id, taken for a message deleted meanwhile
 * and left out without a word (the review). Its length is checked on the column, as a longer
 * text cut to 26 bytes may read as an id, another message's or none.
 */
static void stored_row(sqlite3_stmt *st, void *out)
{
	stored_page *p = out;
	if (p->n == VERIFY_PAGE)
		return;
	size_t i = p->n++;
	p->last = p->rows[i] = sqlite3_column_int64(st, 0);
	const char *id = (const char *)sqlite3_column_text(st, 1);
	p->malformed[i] = sqlite3_column_bytes(st, 1) != STORE_ID_LEN || store_id_check(id) < 0;
	copy_text(p->ids[i], STORE_ID_LEN + 1, p->malformed[i] ? NULL : (const unsigned char *)id);
}

/* Up to VERIFY_PAGE messages that have audio, after rowid `after`, in one read transaction. */
static int stored_after(store *s, const char *family_id, sqlite3_int64 after, stored_page *p)
{
	static const char sql[] = "SELECT rowid, id FROM messages WHERE rowid > ? AND state != 3 "
	                          "ORDER BY rowid LIMIT ?";
	const sqlite3_int64 params[] = {after, VERIFY_PAGE};
	p->n = 0;
	p->last = after; /* an empty page leaves the place where it was */
	return family_rows(s, family_id, sql, params, 2, stored_row, p);
}

int store_family_verify(store *s, const char *family_id, store_verify_damaged_fn damaged, void *arg,
                        store_verify_counts *counts)
{
	verify_ctx vc = {0};
	stored_page *page = malloc(sizeof *page);
	memset(counts, 0, sizeof *counts);
	vc.buf = malloc(VERIFY_CHUNK);
	vc.hash = EVP_MD_CTX_new();
	int rc = STORE_ENOMEM;
	if (!page || !vc.buf || !vc.hash)
		goto done;
	sqlite3_int64 after = 0;
	do {
		if ((rc = stored_after(s, family_id, after, page)) < 0)
			goto done;
		after = page->last;
		for (size_t i = 0; i < page->n; i++) {
			bool bad;
			uint64_t bytes;
			if (page->malformed[i]) {
				counts->malformed++;
				if (damaged)
					damaged(arg, page->rows[i], NULL, STORE_EINVAL);
				continue;
			}
			rc = verify_message(s, family_id, page->ids[i], &vc, &bad, &bytes);
			if (rc == STORE_ENOTFOUND) /* deleted since it was listed */
				continue;
			/* The disk failed to read this voice (a bad sector): it is named and the
			 * others are still checked, where it ended the family's check and left
			 * them unchecked, this one unnamed. What it read before the failure is
			 * not counted: `bytes` are those of the voices checked whole. */
			if (rc == STORE_EIO) {
				counts->unreadable++;
				if (damaged)
					damaged(arg, page->rows[i], page->ids[i], STORE_EIO);
				continue;
			}
			if (rc < 0)
				goto done;
			counts->messages++;
			counts->bytes += bytes;
			if (bad) {
				counts->damaged++;
				if (damaged)
					damaged(arg, page->rows[i], page->ids[i], STORE_ECORRUPT);
			}
		}
	} while (page->n == VERIFY_PAGE);
	rc = 0;
done:
	EVP_MD_CTX_free(vc.hash);
	free(vc.buf);
	free(page);
	return rc;
}
