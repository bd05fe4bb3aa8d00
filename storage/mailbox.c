/*
 * mailbox.c — a family's messages: durable append with idempotency keys and a quota, the
 * change sequence, listings, listened receipts, hiding and deleting (reading the audio is in
 * audio.c).
 *
 * Every change (a new message, a receipt, a state change) takes the next number (one more than
 * max(seq), from its index, inside the write transaction) and stamps it on the message, so
 * "what changed since N" is one indexed range scan and shows each message once, in its latest
 * state. The bytes in use are summed once per open family and then kept, under the write
 * lock. Deleting erases the audio row (secure_delete zeroes its pages), the message's
 * waveform, hash, measures and receipts, and keeps a tombstone for "since" listings.
 */
#include "internal.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDEMPOTENCY_KEY_MAX 128

/* The columns every message query returns, receipts folded in as "id,id,...". */
#define MESSAGE_COLUMNS                                                                       \
	"m.rowid, m.id, m.seq, m.sender, m.recipient, m.created_ms, m.duration_ms, m.lufs, "  \
	"m.bytes, m.waveform, m.sha256, m.state, "                                            \
	"(SELECT group_concat(member) FROM (SELECT member FROM receipts r "                   \
	"WHERE r.message = m.rowid ORDER BY at_ms, member)), m.kept "

static void message_from_row(sqlite3_stmt *st, store_message *m)
{
	memset(m, 0, sizeof *m);
	/* An id column that is not an id's length (a tampered or damaged mailbox) is given as ""
	 * (no id): cut to 26 bytes, it could read as another message's id. */
	const unsigned char *id = sqlite3_column_text(st, 1);
	if (sqlite3_column_bytes(st, 1) == STORE_ID_LEN)
		copy_text(m->id.s, sizeof m->id.s, id);
	m->seq = (uint64_t)sqlite3_column_int64(st, 2);
	copy_text(m->sender.s, sizeof m->sender.s, sqlite3_column_text(st, 3));
	copy_text(m->to.s, sizeof m->to.s, sqlite3_column_text(st, 4));
	m->created_ms = sqlite3_column_int64(st, 5);
	m->duration_ms = (uint32_t)sqlite3_column_int64(st, 6);
	m->lufs = sqlite3_column_double(st, 7);
	m->bytes = (uint64_t)sqlite3_column_int64(st, 8);
	const void *w = sqlite3_column_blob(st, 9);
	if (w && sqlite3_column_bytes(st, 9) == STORE_WAVEFORM_POINTS)
		memcpy(m->waveform, w, STORE_WAVEFORM_POINTS);
	const void *h = sqlite3_column_blob(st, 10);
	if (h && sqlite3_column_bytes(st, 10) == STORE_HASH_LEN)
		memcpy(m->sha256, h, STORE_HASH_LEN);
	m->state = (store_msg_state)sqlite3_column_int(st, 11);
	m->kept = sqlite3_column_int(st, 13) != 0;
	const char *ids = (const char *)sqlite3_column_text(st, 12);
	while (ids && *ids && m->listened_count < STORE_MAX_LISTENERS) {
		const char *comma = strchr(ids, ',');
		size_t len = comma ? (size_t)(comma - ids) : strlen(ids);
		if (len == STORE_ID_LEN) {
			memcpy(m->listened_by[m->listened_count].s, ids, STORE_ID_LEN);
			m->listened_by[m->listened_count++].s[STORE_ID_LEN] = '\0';
		}
		ids = comma ? comma + 1 : ids + len;
	}
}

const char *store_msg_state_name(store_msg_state st)
{
	switch (st) {
	case STORE_MSG_VISIBLE:
		return "visible";
	case STORE_MSG_HIDDEN:
		return "hidden";
	case STORE_MSG_DELETED:
		return "deleted";
	default:
		return "unknown";
	}
}

/* A message row and its rowid (MESSAGE_COLUMNS start with m.rowid), for row_one(). */
typedef struct message_row {
	store_message *msg;
	sqlite3_int64 rowid;
} message_row;

static void message_row_fn(sqlite3_stmt *st, void *out)
{
	message_row *r = out;
	message_from_row(st, r->msg);
	r->rowid = sqlite3_column_int64(st, 0);
}

/* One message by id on connection c; its rowid too when `rowid` is not NULL. */
static int load_message(conn *c, const char *message_id, store_message *out,
			sqlite3_int64 *rowid)
{
	static const char sql[] = "SELECT " MESSAGE_COLUMNS "FROM messages m WHERE m.id = ?";
	message_row r = {out, 0};
	int rc = row_one(c, sql, text_key(message_id), message_row_fn, &r);
	if (rowid)
		*rowid = r.rowid;
	return rc;
}

/* One integer from a one-row query. */
static int query_int(conn *c, const char *sql, sqlite3_int64 *v)
{
	int rc = 0;
	*v = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	int r = sqlite3_step(st);
	*v = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	rc = r == SQLITE_ROW ? 0 : stmt_error(st, r ? r : SQLITE_CORRUPT);
	sqlite3_reset(st);
	return rc;
}

/* max(seq): a message never changed has seq = rowid (it was appended with its number as its
 * rowid), one changed since is in messages_changed; each max() reads the end of a b-tree. */
static const char sql_latest_seq[] =
    "SELECT max(coalesce((SELECT max(seq) FROM messages WHERE seq != rowid), 0), "
    "coalesce((SELECT max(rowid) FROM messages), 0), "
    "coalesce((SELECT floor FROM seq_floor), 0))"; /* a restored copy's (mailbox step 6) */

/* The next change number (with the write transaction open). */
static int next_seq(conn *c, uint64_t *seq)
{
	sqlite3_int64 v;
	int rc = query_int(c, sql_latest_seq, &v);
	*seq = (uint64_t)v + 1;
	return rc;
}

/* Bytes of audio the mailbox holds; the write lock must be held. */
static int usage(conn *c, family *f, uint64_t *out)
{
	static const char sql[] = "SELECT coalesce(sum(bytes), 0) FROM messages WHERE state != 3";
	if (!f->usage_known) {
		sqlite3_int64 v;
		int rc = query_int(c, sql, &v);
		if (rc < 0)
			return rc;
		f->bytes_used = (uint64_t)v;
		f->usage_known = true;
	}
	*out = f->bytes_used;
	return 0;
}

/* The message an idempotency key was used for, in one query. */
static int find_idempotent(conn *c, const char *key, store_message *out)
{
	static const char sql[] = "SELECT " MESSAGE_COLUMNS "FROM idempotency i "
				  "JOIN messages m ON m.rowid = i.message WHERE i.key = ?";
	message_row r = {out, 0};
	return row_one(c, sql, text_key(key), message_row_fn, &r);
}

static int check_new_message(const store_new_message *m)
{
	if (!m || store_id_check(m->sender) < 0 || (m->to && store_id_check(m->to) < 0) ||
	    !m->waveform || !m->audio || m->audio_len == 0 || m->audio_len > STORE_AUDIO_MAX ||
	    (m->idempotency_key && check_text(m->idempotency_key, IDEMPOTENCY_KEY_MAX) < 0))
		return STORE_EINVAL;
	return 0;
}

static int insert_message(conn *c, const store_new_message *m, const store_message *msg,
			  sqlite3_int64 *rowid)
{
	/* rowid = seq, and not aged: the row goes into no index but id's (schema step 4). */
	static const char sql_msg[] =
		"INSERT INTO messages (rowid, id, seq, sender, recipient, created_ms, duration_ms, "
		"lufs, bytes, waveform, sha256, state, aged) "
		"VALUES (?2, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, 0)";
	static const char sql_audio[] = "INSERT INTO audio (message, data) VALUES (?, ?)";
	static const char sql_key[] = "INSERT INTO idempotency (key, message, created_ms) "
				      "VALUES (?, ?, ?)";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql_msg, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, msg->id.s, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)msg->seq);
	sqlite3_bind_text(st, 3, m->sender, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, m->to ? m->to : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, m->created_ms);
	sqlite3_bind_int64(st, 6, m->duration_ms);
	sqlite3_bind_double(st, 7, m->lufs);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)m->audio_len);
	sqlite3_bind_blob(st, 9, m->waveform, STORE_WAVEFORM_POINTS, SQLITE_STATIC);
	sqlite3_bind_blob(st, 10, msg->sha256, STORE_HASH_LEN, SQLITE_STATIC);
	if ((rc = step_done(st)) < 0)
		return rc;
	*rowid = sqlite3_last_insert_rowid(c->db);

	if (!(st = conn_stmt(c, sql_audio, &rc)))
		return rc;
	sqlite3_bind_int64(st, 1, *rowid);
	sqlite3_bind_blob(st, 2, m->audio, (int)m->audio_len, SQLITE_STATIC);
	if ((rc = step_done(st)) < 0)
		return rc;

	if (!m->idempotency_key)
		return 0;
	if (!(st = conn_stmt(c, sql_key, &rc)))
		return rc;
	sqlite3_bind_text(st, 1, m->idempotency_key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, *rowid);
	sqlite3_bind_int64(st, 3, m->created_ms);
	return step_done(st);
}

int store_message_append(store *s, const char *family_id, const store_new_message *m,
			 store_message *out, int *existed)
{
	family *f;
	store_message msg;
	sqlite3_int64 rowid = 0;
	*existed = 0;
	if (check_new_message(m) < 0)
		return STORE_EINVAL;
	memset(&msg, 0, sizeof msg);
	store_new_id(&msg.id);
	/*
	 * Hash before taking the write lock: the lock is held only for the database work.
	 * OpenSSL's SHA-256 uses the CPU's SHA extensions: 0.1 ms for a 150 KB clip where
	 * libsodium's portable one took 0.58 ms, more than half of a durable append.
	 */
	unsigned int hlen = 0;
	if (!EVP_Digest(m->audio, m->audio_len, msg.sha256, &hlen, EVP_sha256(), NULL) ||
	    hlen != STORE_HASH_LEN)
		return STORE_ENOMEM;

	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	conn *c = db_write_begin(f->db);
	if ((rc = conn_begin(c)) < 0)
		goto done;
	if (m->idempotency_key) {
		rc = find_idempotent(c, m->idempotency_key, out);
		if (rc == 0) {
			*existed = 1;
			conn_rollback(c);
			goto done;
		}
		if (rc != STORE_ENOTFOUND)
			goto abort;
	}
	if ((rc = next_seq(c, &msg.seq)) < 0)
		goto abort;
	if (m->quota_bytes) {
		uint64_t used;
		if ((rc = usage(c, f, &used)) < 0)
			goto abort;
		if (m->audio_len > m->quota_bytes || used > m->quota_bytes - m->audio_len) {
			rc = STORE_EQUOTA;
			goto abort;
		}
	}
	if ((rc = insert_message(c, m, &msg, &rowid)) < 0)
		goto abort;
	rc = conn_commit(c); /* synchronous=FULL: on disk when this returns */
	if (rc < 0)
		f->usage_known = false; /* a failed commit's outcome can be unknown: sum again */
	if (rc == 0) {
		f->bytes_used += m->audio_len; /* meaningful once usage_known */
		/* Everything about a new message is known here: no need to read it back. */
		copy_text(msg.sender.s, sizeof msg.sender.s, (const unsigned char *)m->sender);
		copy_text(msg.to.s, sizeof msg.to.s, (const unsigned char *)(m->to ? m->to : ""));
		msg.created_ms = m->created_ms;
		msg.duration_ms = m->duration_ms;
		msg.lufs = m->lufs;
		msg.bytes = m->audio_len;
		memcpy(msg.waveform, m->waveform, STORE_WAVEFORM_POINTS);
		msg.state = STORE_MSG_VISIBLE;
		*out = msg;
	}
	goto done;
abort:
	conn_rollback(c);
done:
	db_write_end(f->db);
	family_release(s, f);
	return rc;
}

int store_message_get(store *s, const char *family_id, const char *message_id,
		      store_message *out)
{
	family *f;
	conn *c;
	if (store_id_check(message_id) < 0)
		return STORE_ENOTFOUND;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	if ((rc = db_read_begin(f->db, &c)) == 0) {
		rc = load_message(c, message_id, out, NULL);
		db_read_end(f->db, c);
	}
	family_release(s, f);
	return rc;
}

int store_message_by_key(store *s, const char *family_id, const char *key, store_message *out)
{
	family *f;
	conn *c;
	if (check_text(key, IDEMPOTENCY_KEY_MAX) < 0)
		return STORE_EINVAL;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	if ((rc = db_read_begin(f->db, &c)) == 0) {
		if ((rc = conn_begin_read(c)) == 0) {
			store_id id;
			if ((rc = find_idempotent(c, key, out)) == 0) {
				id = out->id;
				rc = load_message(c, id.s, out, NULL); /* with its receipts */
			}
			conn_end_read(c);
		}
		db_read_end(f->db, c);
	}
	family_release(s, f);
	return rc;
}

/*
 * Run a listing query with one integer parameter (?1) and a limit (?2), filling up to max
 * messages. With `bound_sql`, ?3 is what it returns for the same two parameters (INT64_MAX
 * when it finds no row), in the same read transaction.
 */
static int list(store *s, const char *family_id, const char *sql, const char *bound_sql,
                sqlite3_int64 param, sqlite3_int64 limit, store_message *out, size_t *n,
                uint64_t *latest, sqlite3_int64 *last_rowid, sqlite3_int64 *rowids)
{
	family *f;
	conn *c;
	sqlite3_int64 bound = INT64_MAX;
	*n = 0;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	if ((rc = db_read_begin(f->db, &c)) < 0)
		goto release;
	/* One read transaction, so the counter and the rows are the same snapshot. */
	if ((rc = conn_begin_read(c)) < 0)
		goto end;
	sqlite3_stmt *st = bound_sql ? conn_stmt(c, bound_sql, &rc) : NULL;
	if (st) {
		sqlite3_bind_int64(st, 1, param);
		sqlite3_bind_int64(st, 2, limit);
		int r = sqlite3_step(st);
		if (r == SQLITE_ROW)
			bound = sqlite3_column_int64(st, 0);
		else if (r != SQLITE_DONE)
			rc = stmt_error(st, r);
		sqlite3_reset(st);
	}
	if (rc == 0 && (st = conn_stmt(c, sql, &rc))) {
		sqlite3_bind_int64(st, 1, param);
		sqlite3_bind_int64(st, 2, limit);
		if (bound_sql)
			sqlite3_bind_int64(st, 3, bound);
		int r;
		while ((r = sqlite3_step(st)) == SQLITE_ROW) {
			if (rowids)
				rowids[*n] = sqlite3_column_int64(st, 0);
			message_from_row(st, &out[(*n)++]);
			if (last_rowid)
				*last_rowid = sqlite3_column_int64(st, 0);
		}
		rc = r == SQLITE_DONE ? 0 : stmt_error(st, r);
		sqlite3_reset(st);
	}
	if (rc == 0 && latest) {
		sqlite3_int64 v;
		rc = query_int(c, sql_latest_seq, &v);
		*latest = (uint64_t)v;
	}
	conn_end_read(c);
end:
	db_read_end(f->db, c);
release:
	family_release(s, f);
	return rc;
}

/*
 * "Changed since N": messages never changed have seq = rowid and are a rowid range; the
 * others come from messages_changed in seq order. The first query finds the limit-th changed
 * message's seq (?3): no message past it can be in the answer, so the rowid range stops
 * there, and paging through a mailbox (an export) reads each row once, not once per page.
 * Each side is capped at the limit before the two are merged by seq (column 3).
 */
int store_messages_since(store *s, const char *family_id, uint64_t since, store_message *out,
			 size_t max, size_t *n, uint64_t *latest)
{
	static const char sql_bound[] = "SELECT seq FROM messages INDEXED BY messages_changed "
					"WHERE seq > ?1 AND seq != rowid ORDER BY seq "
					"LIMIT 1 OFFSET ?2 - 1";
	static const char sql[] =
		"SELECT * FROM (SELECT " MESSAGE_COLUMNS "FROM messages m "
		"WHERE m.rowid > ?1 AND m.rowid <= ?3 AND m.seq = m.rowid ORDER BY m.rowid "
		"LIMIT ?2) "
		"UNION ALL SELECT * FROM (SELECT " MESSAGE_COLUMNS "FROM messages m "
		"INDEXED BY messages_changed WHERE m.seq > ?1 AND m.seq <= ?3 AND m.seq != m.rowid "
		"ORDER BY m.seq LIMIT ?2) "
		"ORDER BY 3 LIMIT ?2";
	if (since > INT64_MAX || max > INT32_MAX) {
		*n = 0;
		return STORE_EINVAL;
	}
	if (max == 0) { /* LIMIT 1 OFFSET -1 would not be "nothing" */
		*n = 0;
		return list(s, family_id, sql, NULL, (sqlite3_int64)since, 0, out, n, latest, NULL,
		            NULL);
	}
	return list(s, family_id, sql, sql_bound, (sqlite3_int64)since, (sqlite3_int64)max, out, n,
	            latest, NULL, NULL);
}

int store_messages_newest(store *s, const char *family_id, store_message *out, size_t max,
			  size_t *n)
{
	static const char sql[] = "SELECT " MESSAGE_COLUMNS
				  "FROM messages m WHERE m.state != ? ORDER BY m.rowid DESC "
				  "LIMIT ?";
	if (max > INT32_MAX) {
		*n = 0;
		return STORE_EINVAL;
	}
	return list(s, family_id, sql, NULL, STORE_MSG_DELETED, (sqlite3_int64)max, out, n, NULL,
	            NULL, NULL);
}

int messages_visible_after(store *s, const char *family_id, sqlite3_int64 *after,
                           store_message *out, sqlite3_int64 *rowids, size_t max, size_t *n)
{
	static const char sql[] = "SELECT " MESSAGE_COLUMNS "FROM messages m "
				  "WHERE m.rowid > ?1 AND m.state = 1 ORDER BY m.rowid LIMIT ?2";
	if (max > INT32_MAX) {
		*n = 0;
		return STORE_EINVAL;
	}
	return list(s, family_id, sql, NULL, *after, (sqlite3_int64)max, out, n, NULL, after,
	            rowids);
}

/* A change to one message under the write lock: fn runs inside the transaction. */
typedef int (*change_fn)(conn *c, sqlite3_int64 rowid, const store_message *before,
			 const void *arg, int64_t *bytes_delta);

/*
 * An erased voice is zeroed in the WAL (secure_delete), but the database file and the WAL's
 * older frames still hold it until a checkpoint copies the zeros over it: do that now, and cut
 * the WAL to nothing. Readers hold snapshots for one read (or one clip copied into an export)
 * only, so the busy timeout lets them finish; if one does not, the next checkpoint (every
 * ~16 MiB of writes, or when the family is closed) finishes the job. c: the write connection.
 */
static void checkpoint_erased(conn *c)
{
	(void)sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}

/* change_message; with erased, a change that erases audio sets *erased and leaves its
 * checkpoint to the caller (checkpoint_family), else it is made here. */
static int change_message_then(store *s, const char *family_id, const char *message_id,
                               change_fn fn, const void *arg, uint64_t *seq, bool *erased)
{
	static const char sql_seq[] = "UPDATE messages SET seq = ? WHERE rowid = ?";
	family *f;
	store_message before;
	sqlite3_int64 rowid = 0;
	sqlite3_stmt *st;
	int64_t delta = 0;
	if (store_id_check(message_id) < 0)
		return STORE_ENOTFOUND;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	conn *c = db_write_begin(f->db);
	if ((rc = conn_begin(c)) < 0)
		goto done;
	if ((rc = load_message(c, message_id, &before, &rowid)) < 0)
		goto abort;
	rc = fn(c, rowid, &before, arg, &delta);
	if (rc == 1) { /* nothing changed: keep the current number */
		*seq = before.seq;
		rc = 0;
		goto abort;
	}
	if (rc < 0 || (rc = next_seq(c, seq)) < 0 || !(st = conn_stmt(c, sql_seq, &rc)))
		goto abort;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)*seq);
	sqlite3_bind_int64(st, 2, rowid);
	if ((rc = step_done(st)) < 0)
		goto abort;
	rc = conn_commit(c);
	if (rc == 0)
		f->bytes_used += (uint64_t)delta; /* delta <= 0: a deletion frees its bytes */
	else
		f->usage_known = false;
	if (rc == 0 && delta < 0 && erased)
		*erased = true;
	else if (rc == 0 && delta < 0)
		checkpoint_erased(c);
	goto done;
abort:
	conn_rollback(c);
done:
	db_write_end(f->db);
	family_release(s, f);
	return rc;
}

/* A family's write connection: checkpoint_erased. */
static void checkpoint_family(store *s, const char *family_id)
{
	family *f;
	if (family_acquire(s, family_id, &f) < 0)
		return; /* the next checkpoint, or the family's closing, does it */
	checkpoint_erased(db_write_begin(f->db));
	db_write_end(f->db);
	family_release(s, f);
}

static int change_message(store *s, const char *family_id, const char *message_id, change_fn fn,
                          const void *arg, uint64_t *seq)
{
	return change_message_then(s, family_id, message_id, fn, arg, seq, NULL);
}

/* The family's members' ids as a JSON array, into *json (the caller frees it). */
static int members_json(store *s, const char *family_id, char **json)
{
	store_member *list = calloc(STORE_MEMBERS_MAX, sizeof *list);
	char *out = malloc(STORE_MEMBERS_MAX * (STORE_ID_LEN + 3) + 3);
	size_t n = 0;
	int rc = list && out ? store_members_list(s, family_id, list, STORE_MEMBERS_MAX, &n)
	                     : STORE_ENOMEM;
	if (rc == 0) {
		char *p = out;
		*p++ = '[';
		for (size_t i = 0; i < n; i++)
			p += sprintf(p, "%s\"%s\"", i ? "," : "", list[i].id.s);
		memcpy(p, "]", 2);
		*json = out;
		out = NULL;
	}
	free(list);
	free(out);
	return rc;
}

typedef struct listened_arg {
	store *s;
	const char *family_id;
	const char *member;
	int64_t now;
} listened_arg;

/*
 * A message lists STORE_MAX_LISTENERS receipts, the family's members at most, but receipts
 * stay when their members leave: in a family with turnover a message could hold more, and a
 * member who listened late was left out of its listed receipts for good, the message unheard
 * on its phone (the review). When a receipt makes them more, those of members who have left
 * give up their places: deleted, for this message, in the receipt's transaction. Receipts of
 * former members stay while there is room (who heard it then is still true).
 * The members are read from the directory here, under the mailbox's write lock: every receipt
 * in the mailbox now was committed by a member who had joined before it, so the list read
 * after the lock was taken names them all. Read before the lock (the review), a member who
 * joined and listened in between was taken for a former one and lost its receipt. Members
 * who leave meanwhile only keep theirs. The directory's readers wait on no mailbox lock.
 */
static int do_listened(conn *c, sqlite3_int64 rowid, const store_message *before,
		       const void *arg, int64_t *bytes_delta)
{
	static const char sql[] = "INSERT OR IGNORE INTO receipts (message, member, at_ms) "
				  "VALUES (?, ?, ?)";
	static const char sql_count[] = "SELECT count(*) FROM receipts WHERE message = ?";
	static const char sql_departed[] =
	    "DELETE FROM receipts WHERE message = ? AND member NOT IN "
	    "(SELECT value FROM json_each(?))";
	const listened_arg *a = arg;
	int rc = 0;
	(void)bytes_delta;
	if (before->state == STORE_MSG_DELETED)
		return STORE_ENOTFOUND;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_int64(st, 1, rowid);
	sqlite3_bind_text(st, 2, a->member, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, a->now);
	if ((rc = step_done(st)) < 0)
		return rc;
	int changes = sqlite3_changes(c->db);
	if (!(st = conn_stmt(c, sql_count, &rc)))
		return rc;
	sqlite3_bind_int64(st, 1, rowid);
	int r = sqlite3_step(st);
	sqlite3_int64 receipts = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	rc = r == SQLITE_ROW ? 0 : stmt_error(st, r ? r : SQLITE_CORRUPT);
	sqlite3_reset(st);
	if (rc < 0 || receipts <= STORE_MAX_LISTENERS)
		return rc < 0 ? rc : changes == 0 ? 1 : 0; /* already recorded: no change */
	char *members = NULL;
	if ((rc = members_json(a->s, a->family_id, &members)) < 0)
		return rc;
	if ((st = conn_stmt(c, sql_departed, &rc))) {
		sqlite3_bind_int64(st, 1, rowid);
		sqlite3_bind_text(st, 2, members, -1, SQLITE_TRANSIENT);
		rc = step_done(st);
		changes += sqlite3_changes(c->db);
	}
	free(members);
	return rc < 0 ? rc : changes == 0 ? 1 : 0;
}

int store_message_listened(store *s, const char *family_id, const char *message_id,
			   const char *member_id, int64_t now_ms, uint64_t *seq)
{
	if (store_id_check(member_id) < 0)
		return STORE_EINVAL;
	listened_arg arg = {s, family_id, member_id, now_ms};
	return change_message(s, family_id, message_id, do_listened, &arg, seq);
}

static int do_set_state(conn *c, sqlite3_int64 rowid, const store_message *before,
			const void *arg, int64_t *bytes_delta)
{
	static const char sql_state[] = "UPDATE messages SET state = ? WHERE rowid = ?";
	/* A tombstone keeps what "since" listings and the sequence need (id, sender, recipient,
	 * time, state), nothing taken from the voice or from who heard it. */
	static const char sql_clear[] = "UPDATE messages SET duration_ms = 0, lufs = 0, bytes = 0, "
					"waveform = x'', sha256 = x'' WHERE rowid = ?";
	static const char *const sql_erase[] = {
		"DELETE FROM audio WHERE message = ?",
		sql_clear,
		"DELETE FROM receipts WHERE message = ?",
	};
	store_msg_state to = *(const store_msg_state *)arg;
	int rc = 0;
	if (before->state == to)
		return 1;
	if (before->state == STORE_MSG_DELETED)
		return STORE_ENOTFOUND; /* deleted is final */
	sqlite3_stmt *st = conn_stmt(c, sql_state, &rc);
	if (!st)
		return rc;
	sqlite3_bind_int(st, 1, to);
	sqlite3_bind_int64(st, 2, rowid);
	if ((rc = step_done(st)) < 0)
		return rc;
	if (to != STORE_MSG_DELETED)
		return 0;
	/* The voice must not stay in free pages of the file: zero what this delete frees. */
	if ((rc = conn_exec(c, "PRAGMA secure_delete=ON")) < 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < sizeof sql_erase / sizeof sql_erase[0]; i++)
		if ((st = conn_stmt(c, sql_erase[i], &rc))) {
			sqlite3_bind_int64(st, 1, rowid);
			rc = step_done(st);
		}
	*bytes_delta = -(int64_t)before->bytes;
	int off = conn_exec(c, "PRAGMA secure_delete=OFF");
	return rc < 0 ? rc : off;
}

int store_message_set_state(store *s, const char *family_id, const char *message_id,
			    store_msg_state state, uint64_t *seq)
{
	if (state < STORE_MSG_VISIBLE || state > STORE_MSG_DELETED)
		return STORE_EINVAL;
	return change_message(s, family_id, message_id, do_set_state, &state, seq);
}

static int do_keep(conn *c, sqlite3_int64 rowid, const store_message *before, const void *arg,
		   int64_t *bytes_delta)
{
	static const char sql[] = "UPDATE messages SET kept = ? WHERE rowid = ?";
	int keep = *(const int *)arg, rc = 0;
	(void)bytes_delta;
	if (before->state == STORE_MSG_DELETED)
		return STORE_ENOTFOUND;
	if (before->kept == keep)
		return 1;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_int(st, 1, keep);
	sqlite3_bind_int64(st, 2, rowid);
	return step_done(st);
}

int store_message_keep(store *s, const char *family_id, const char *message_id, int keep,
		       uint64_t *seq)
{
	keep = keep != 0;
	return change_message(s, family_id, message_id, do_keep, &keep, seq);
}

typedef struct expire_arg {
	int64_t before_ms;
	bool deleted;
} expire_arg;

static int do_expire(conn *c, sqlite3_int64 rowid, const store_message *before, const void *arg,
		     int64_t *bytes_delta)
{
	expire_arg *a = (expire_arg *)arg;
	static const store_msg_state deleted = STORE_MSG_DELETED;
	if (before->kept || before->state == STORE_MSG_DELETED || before->created_ms >= a->before_ms)
		return 1; /* kept, deleted or not due after all: no change */
	int rc = do_set_state(c, rowid, before, &deleted, bytes_delta);
	a->deleted = rc == 0;
	return rc;
}

int family_rows(store *s, const char *family_id, const char *sql, const sqlite3_int64 *params,
                size_t n, row_fn fn, void *out)
{
	family *f;
	conn *c;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	if ((rc = db_read_begin(f->db, &c)) == 0) {
		sqlite3_stmt *st = conn_stmt(c, sql, &rc);
		if (st) {
			for (size_t i = 0; i < n; i++)
				sqlite3_bind_int64(st, (int)i + 1, params[i]);
			int r;
			while ((r = sqlite3_step(st)) == SQLITE_ROW)
				fn(st, out);
			rc = r == SQLITE_DONE ? 0 : stmt_error(st, r);
			sqlite3_reset(st);
		}
		db_read_end(f->db, c);
	}
	family_release(s, f);
	return rc;
}

#define EXPIRE_BATCH 64

/* A batch of due messages, and where the next one starts: after the last one listed (its
 * created_ms and rowid), in the order they are listed. */
typedef struct expiring {
	char ids[EXPIRE_BATCH][STORE_ID_LEN + 1];
	size_t n;
	sqlite3_int64 last_ms, last_row;
} expiring;

static void expiring_row(sqlite3_stmt *st, void *out)
{
	expiring *e = out;
	if (e->n < EXPIRE_BATCH) {
		copy_text(e->ids[e->n++], STORE_ID_LEN + 1, sqlite3_column_text(st, 0));
		e->last_ms = sqlite3_column_int64(st, 1);
		e->last_row = sqlite3_column_int64(st, 2);
	}
}

/*
 * Messages are appended not aged, outside messages_due (schema step 4): age those appended
 * since the last visit, a suffix of the rowids (every append takes the highest), so the
 * lookup goes back from the end only as far as the last aged row.
 */
static int age_new_messages(store *s, const char *family_id)
{
	static const char sql[] =
		"UPDATE messages SET aged = 1 WHERE aged = 0 AND rowid > coalesce((SELECT rowid "
		"FROM messages WHERE aged = 1 ORDER BY rowid DESC LIMIT 1), 0)";
	family *f;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	conn *c = db_write_begin(f->db);
	sqlite3_stmt *st;
	if ((rc = conn_begin(c)) == 0 && (st = conn_stmt(c, sql, &rc)) &&
	    (rc = step_done(st)) == 0)
		rc = conn_commit(c);
	db_write_end(f->db); /* rolls back what did not commit */
	family_release(s, f);
	return rc;
}

/* 0 if the family's retention period is still `days`, else STORE_ECHANGED (or the error). */
static int period_unchanged(store *s, const char *family_id, uint32_t days)
{
	store_family fam;
	int rc = store_family_get(s, family_id, &fam);
	return rc < 0 ? rc : fam.retention_days == days ? 0 : STORE_ECHANGED;
}

#define DAY_MS (24 * 3600 * 1000LL)

int store_messages_expire(store *s, const char *family_id, uint32_t retention_days, int64_t now_ms,
                          unsigned max, unsigned *deleted, uint64_t *seq)
{
	/* Each batch after the last one listed: a row the job could not delete (its id is no id,
	 * in a tampered mailbox) is passed, not listed again at the head of every batch. */
	static const char sql[] =
	    "SELECT id, created_ms, rowid FROM messages INDEXED BY messages_due "
	    "WHERE created_ms < ?1 AND state != 3 AND kept = 0 AND aged = 1 "
	    "AND (created_ms, rowid) > (?3, ?4) ORDER BY created_ms, rowid "
	    "LIMIT ?2";
	sqlite3_int64 after_ms = INT64_MIN, after_row = 0;
	*deleted = 0;
	*seq = 0;
	if (retention_days == 0 || now_ms < 0)
		return STORE_EINVAL;
	int64_t before_ms = now_ms - (int64_t)retention_days * DAY_MS;
	int rc = age_new_messages(s, family_id);
	if (rc < 0)
		return rc;
	while (*deleted < max) {
		expiring *e = calloc(1, sizeof *e);
		if (!e)
			return STORE_ENOMEM;
		unsigned want = max - *deleted < EXPIRE_BATCH ? max - *deleted : EXPIRE_BATCH;
		const sqlite3_int64 params[] = {before_ms, want, after_ms, after_row};
		rc = family_rows(s, family_id, sql, params, 4, expiring_row, e);
		if (e->n) {
			after_ms = e->last_ms;
			after_row = e->last_row;
		}
		/* Each its own transaction, like a parent's delete: the write lock is never held
		 * long, and a crash half-way leaves whole messages either side. Inside it, the
		 * message is looked at again: kept or deleted meanwhile, it is left alone. Before
		 * it, the period: a parent who changed it (to keep messages longer, say) was
		 * answered, and no message may go by the old one after that. */
		for (size_t i = 0; rc == 0 && i < e->n; i++) {
			expire_arg a = {before_ms, false};
			uint64_t q;
			bool erased = false;
			retention_delete_enter(s);
			/* STORE_ECHANGED, or STORE_ENOTFOUND: the family is being erased */
			int period = period_unchanged(s, family_id, retention_days);
			if (period == 0)
				rc = change_message_then(s, family_id, e->ids[i], do_expire, &a, &q,
				                         &erased);
			retention_delete_leave(s);
			/* Its checkpoint may wait for a reader (a backup's copy, up to the busy
			 * timeout): outside the gate, where no parent's change waits for it. */
			if (erased)
				checkpoint_family(s, family_id);
			if (rc == STORE_ENOTFOUND)
				rc = 0; /* the message: gone meanwhile */
			if (period < 0)
				rc = period;
			if (rc == 0 && a.deleted) {
				(*deleted)++;
				*seq = q;
			}
		}
		size_t n = e->n;
		free(e);
		if (rc < 0)
			return rc;
		if (n < want)
			break;
	}
	return 0;
}

int store_mailbox_restored(store *s, const char *family_id, uint64_t *from, uint64_t *to)
{
	static const char sql[] = "SELECT restored_latest, floor FROM seq_floor";
	family *f;
	*from = *to = 0;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&s->lock);
	bool known = f->restored_known;
	*from = f->restored_from;
	*to = f->restored_to;
	pthread_mutex_unlock(&s->lock);
	conn *c;
	if (!known && (rc = db_read_begin(f->db, &c)) == 0) {
		sqlite3_stmt *st = conn_stmt(c, sql, &rc);
		if (st) {
			int r = sqlite3_step(st);
			if (r == SQLITE_ROW) {
				*from = (uint64_t)sqlite3_column_int64(st, 0);
				*to = (uint64_t)sqlite3_column_int64(st, 1);
			} else if (r != SQLITE_DONE) {
				rc = stmt_error(st, r);
			}
			sqlite3_reset(st);
		}
		db_read_end(f->db, c);
		if (rc == 0) {
			pthread_mutex_lock(&s->lock);
			f->restored_known = true;
			f->restored_from = *from;
			f->restored_to = *to;
			pthread_mutex_unlock(&s->lock);
		}
	}
	family_release(s, f);
	return rc;
}

int store_mailbox_usage(store *s, const char *family_id, uint64_t *bytes)
{
	family *f;
	*bytes = 0;
	int rc = family_acquire(s, family_id, &f);
	if (rc < 0)
		return rc;
	conn *c = db_write_begin(f->db); /* the lock that guards the running total */
	rc = usage(c, f, bytes);
	db_write_end(f->db);
	family_release(s, f);
	return rc;
}
