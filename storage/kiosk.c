/*
 * kiosk.c — children at school kiosks (directory database): the codes a kiosk shows, the links
 * that pair a child to a kiosk with a picture PIN, the PIN's lockout, and child sessions.
 *
 * The store keeps the PIN's hash as an opaque string (the server makes and checks it) and
 * session tokens only as hashes. A code is used by one conditional UPDATE ... RETURNING inside
 * the transaction that makes the link, so it pairs once or not at all; a new PIN, by a parent
 * or by pairing the child to the kiosk again, ends the link's sessions in its transaction, and
 * a session starts only while the link still has the PIN that was checked. A kiosk device has at
 * most one session, and a child too (across the kiosks they are paired to): starting one deletes
 * the device's others and the child's on other devices, ending one deletes its row, and an idle
 * one is refused by its last use (recorded at most every TOUCH_MS or a twentieth of the idle
 * time, so a busy session does not write on every request). What the app asks by itself (a
 * long-poll) is not use: a child who walks away is logged out while the app waits. Wrong PINs
 * lock a link for lock_ms after every max_failures of them, twice as long each time (up to
 * LOCK_DOUBLINGS), until a right PIN or a parent's new one: guessing gets slower, not steady.
 * A kiosk's wrong PINs are also counted all together, in the kiosk's row (the hour's start and
 * count), in the transaction that counts the child's: whichever of its tablets they come from;
 * an operator may end that hour early (jiayinctl kiosk unlock), never a child's own lock.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define TOUCH_MS 5000
#define LOCK_DOUBLINGS 6 /* the longest lock: 64 times lock_ms (16 hours at 15 minutes) */
/* A last use or a code's making further ahead of now than threads lag each other: recorded by
 * a clock set back since (a minute, as the upload ledger takes it). */
#define CLOCK_SET_BACK_MS 60000

#define LINK_COLUMNS                                                                               \
	"l.id, l.kiosk_id, l.member_id, m.family_id, k.name, sc.name, m.name, m.avatar, "          \
	"l.pin_hash, l.failures, l.locked_until_ms, l.created_ms, l.pin_set_by "                   \
	"FROM kiosk_links l "                                                                      \
	"JOIN kiosks k ON k.id = l.kiosk_id JOIN schools sc ON sc.id = k.school_id "               \
	"JOIN members m ON m.id = l.member_id AND m.removed_ms IS NULL "

static const char link_by_id_sql[] = "SELECT " LINK_COLUMNS "WHERE l.id = ?";

static void link_from_row(sqlite3_stmt *st, void *out)
{
	store_kiosk_link *l = out;
	memset(l, 0, sizeof *l);
	copy_text(l->id.s, sizeof l->id.s, sqlite3_column_text(st, 0));
	copy_text(l->kiosk_id.s, sizeof l->kiosk_id.s, sqlite3_column_text(st, 1));
	copy_text(l->member_id.s, sizeof l->member_id.s, sqlite3_column_text(st, 2));
	copy_text(l->family_id.s, sizeof l->family_id.s, sqlite3_column_text(st, 3));
	copy_text(l->kiosk_name, sizeof l->kiosk_name, sqlite3_column_text(st, 4));
	copy_text(l->school_name, sizeof l->school_name, sqlite3_column_text(st, 5));
	copy_text(l->member_name, sizeof l->member_name, sqlite3_column_text(st, 6));
	copy_text(l->avatar, sizeof l->avatar, sqlite3_column_text(st, 7));
	copy_text(l->pin_hash, sizeof l->pin_hash, sqlite3_column_text(st, 8));
	l->failures = (unsigned)sqlite3_column_int(st, 9);
	l->locked_until_ms = sqlite3_column_int64(st, 10);
	l->created_ms = sqlite3_column_int64(st, 11);
	copy_text(l->pin_set_by.s, sizeof l->pin_set_by.s, sqlite3_column_text(st, 12));
}

static int check_pin_hash(const char *pin_hash)
{
	return check_text(pin_hash, STORE_PIN_HASH_MAX);
}

int store_kiosk_code_create(store *s, const uint8_t code_hash[STORE_HASH_LEN],
			    const char *kiosk_id, int64_t now_ms, int64_t expires_ms)
{
	return store_kiosk_code_create_bounded(s, code_hash, kiosk_id, NULL, now_ms, expires_ms, 0,
	                                       NULL);
}

/*
 * Expired codes a new code's transaction deletes, at most this many: all of them in one
 * statement held the writer every family shares for as long as a flood had made them (a
 * million rows of pairing codes took 24 s), where a batch a code empties the table over time.
 */
#define KIOSK_CODE_SWEEP 100

int store_kiosk_code_create_bounded(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                                    const char *kiosk_id, const char *device_id, int64_t now_ms,
                                    int64_t expires_ms, unsigned live_max, int64_t *first_expiry_ms)
{
	/* Only while the tablet is one of the kiosk's, not revoked: one revoked after its token
	 * was checked, before this, would leave a code its revoke did not delete. */
	static const char sql[] =
	    "INSERT INTO kiosk_codes (code_hash, kiosk_id, created_ms, expires_ms, "
	    "created_by_device) SELECT ?1, ?2, ?3, ?4, ?5 WHERE ?5 IS NULL OR EXISTS (SELECT 1 "
	    "FROM devices WHERE id = ?5 AND kiosk_id = ?2 AND revoked_ms IS NULL)";
	static const char expired[] =
	    "DELETE FROM kiosk_codes WHERE code_hash IN (SELECT code_hash FROM kiosk_codes "
	    "WHERE expires_ms <= ?1 LIMIT ?2)";
	/* Not those made more than a minute ahead of now: by a clock set back since (a wrong time
	 * put right). They kept the kiosk at its bound, and Retry-After at their expiry, for as
	 * long as the clock had been ahead and a code's life on (an hour ahead: 70 minutes without
	 * a code, where a code lives 10). They still pair until they expire. */
	static const char live_sql[] =
	    "SELECT count(*), coalesce(min(expires_ms), 0) FROM kiosk_codes "
	    "WHERE kiosk_id = ?1 AND used_ms IS NULL AND expires_ms > ?2 AND created_ms <= ?3";
	if (!code_hash || expires_ms <= now_ms)
		return STORE_EINVAL;
	if (store_id_check(kiosk_id) < 0 || (device_id && store_id_check(device_id) < 0))
		return STORE_ENOTFOUND;
	conn *c = db_write_begin(s->directory);
	int rc = conn_begin(c);
	sqlite3_stmt *st = rc == 0 ? conn_stmt(c, expired, &rc) : NULL;
	if (st) { /* codes live minutes: clear the dead ones as new ones come */
		sqlite3_bind_int64(st, 1, now_ms);
		sqlite3_bind_int(st, 2, KIOSK_CODE_SWEEP);
		rc = step_write(st);
	}
	/* Counted in the transaction that stores: codes asked for at once get no more. */
	unsigned live = 0;
	int64_t first = 0;
	if (rc == 0 && live_max &&
	    (rc = count_and_first(c, live_sql, kiosk_id, now_ms, now_ms + CLOCK_SET_BACK_MS, &live,
	                          &first)) == 0 &&
	    live >= live_max) {
		if (first_expiry_ms)
			*first_expiry_ms = first;
		rc = STORE_ELIMIT;
	}
	if (rc == 0 && (st = conn_stmt(c, sql, &rc))) {
		sqlite3_bind_blob(st, 1, code_hash, STORE_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, kiosk_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now_ms);
		sqlite3_bind_int64(st, 4, expires_ms);
		if (device_id)
			sqlite3_bind_text(st, 5, device_id, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 5);
		rc = step_write(st); /* an unknown kiosk fails the foreign key: ENOTFOUND */
		if (rc == 0 && sqlite3_changes(c->db) == 0)
			rc = STORE_ENOTFOUND; /* the tablet is revoked, or not the kiosk's */
	}
	rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	db_write_end(s->directory);
	return rc;
}

int store_kiosk_code_check(store *s, const uint8_t code_hash[STORE_HASH_LEN], int64_t now_ms)
{
	static const char sql[] = "SELECT kiosk_id FROM kiosk_codes WHERE code_hash = ? AND "
	                          "used_ms IS NULL AND expires_ms > ?";
	if (!code_hash)
		return STORE_EINVAL;
	conn *c;
	int rc = db_read_begin(s->directory, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_blob(st, 1, code_hash, STORE_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, now_ms);
		int r = sqlite3_step(st);
		rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? STORE_ENOTFOUND : stmt_error(st, r);
		sqlite3_reset(st);
	}
	db_read_end(s->directory, c);
	return rc;
}

/* Use the code (inside the caller's transaction): the kiosk it names in *kiosk. */
static int use_kiosk_code(conn *c, const uint8_t code_hash[STORE_HASH_LEN], int64_t now_ms,
			  store_id *kiosk)
{
	static const char sql[] = "UPDATE kiosk_codes SET used_ms = ?1 WHERE code_hash = ?2 AND "
				  "used_ms IS NULL AND expires_ms > ?1 RETURNING kiosk_id";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_int64(st, 1, now_ms);
	sqlite3_bind_blob(st, 2, code_hash, STORE_HASH_LEN, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		copy_text(kiosk->s, sizeof kiosk->s, sqlite3_column_text(st, 0));
		rc = step_write(st);
	} else {
		rc = r == SQLITE_DONE ? STORE_ENOTFOUND : stmt_error(st, r);
	}
	sqlite3_reset(st);
	return rc;
}

static void family_id_row(sqlite3_stmt *st, void *out)
{
	store_id *family = out;
	copy_text(family->s, sizeof family->s, sqlite3_column_text(st, 0));
}

/* Inside the caller's transaction: the family id that sql (one id parameter, one column)
 * finds for id into *family; STORE_ENOTFOUND if it finds none. */
static int family_of(conn *c, const char *sql, const char *id, store_id *family)
{
	return row_one(c, sql, text_key(id), family_id_row, family);
}

/*
 * Inside the caller's transaction: 0 if the child (the child of link_id, when child is NULL)
 * is a member (not one who left) and so is the PIN's chooser set_by (if known), in the same
 * family; else STORE_ENOTFOUND.
 */
static int child_and_chooser(conn *c, const char *child, const char *link_id, const char *set_by)
{
	static const char child_sql[] =
	    "SELECT family_id FROM members WHERE id = ? AND removed_ms IS NULL";
	static const char link_sql[] = "SELECT m.family_id FROM kiosk_links l JOIN members m ON "
	                               "m.id = l.member_id AND m.removed_ms IS NULL WHERE l.id = ?";
	store_id family = {{0}};
	store_member chooser;
	int rc = child ? family_of(c, child_sql, child, &family)
	               : family_of(c, link_sql, link_id, &family);
	return rc == 0 && set_by ? member_current(c, family.s, set_by, &chooser) : rc;
}

/* Make or renew the link of member to kiosk (inside the caller's transaction); its id in *id.
 * A renewed link has a new PIN: whoever is in with the old one is logged out, as by
 * store_kiosk_link_set_pin (review finding: pairing again kept the open session). */
static int upsert_link(conn *c, const store_id *kiosk, const char *member_id, const char *pin_hash,
                       const char *set_by, int64_t now_ms, store_id *id)
{
	static const char sql[] =
	    "INSERT INTO kiosk_links (id, kiosk_id, member_id, pin_hash, created_ms, pin_set_by) "
	    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kiosk_id, member_id) DO UPDATE SET "
	    "pin_hash = excluded.pin_hash, failures = 0, locked_until_ms = 0, "
	    "pin_set_by = excluded.pin_set_by RETURNING id";
	static const char end_sql[] = "DELETE FROM kiosk_sessions WHERE link_id = ?";
	store_id fresh;
	store_new_id(&fresh);
	/* A member who left meanwhile (its removal deleted its links) is paired to nothing, and
	 * one who left gives no PIN (its removal took those it gave). */
	int rc = child_and_chooser(c, member_id, NULL, set_by);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, fresh.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, kiosk->s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, member_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, pin_hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, now_ms);
	if (set_by)
		sqlite3_bind_text(st, 6, set_by, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 6);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		copy_text(id->s, sizeof id->s, sqlite3_column_text(st, 0));
		rc = step_write(st);
	} else {
		/* No row: a constraint (an unknown member fails the foreign key: ENOTFOUND). */
		rc = r == SQLITE_DONE ? STORE_EIO : stmt_write_error(st, r);
	}
	sqlite3_reset(st);
	if (rc == 0 && strcmp(id->s, fresh.s) != 0 && (st = conn_stmt(c, end_sql, &rc))) {
		sqlite3_bind_text(st, 1, id->s, -1, SQLITE_STATIC);
		rc = step_write(st);
	}
	return rc;
}

int store_kiosk_link_redeem(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                            const char *member_id, const char *pin_hash, const char *set_by,
                            int64_t now_ms, store_kiosk_link *out)
{
	if (!code_hash || check_pin_hash(pin_hash) < 0)
		return STORE_EINVAL;
	if (store_id_check(member_id) < 0 || (set_by && store_id_check(set_by) < 0))
		return STORE_ENOTFOUND;
	store_id kiosk, id;
	conn *c = db_write_begin(s->directory);
	int rc = conn_begin(c);
	if (rc == 0) {
		rc = use_kiosk_code(c, code_hash, now_ms, &kiosk);
		if (rc == 0)
			rc = upsert_link(c, &kiosk, member_id, pin_hash, set_by, now_ms, &id);
		/* The link as the parent is told it, read before the commit: a read after it that
		 * failed left the link made and the code used, the parent told 503 (review
		 * finding). */
		if (rc == 0)
			rc = row_one(c, link_by_id_sql, text_key(id.s), link_from_row, out);
		if (rc == 0)
			rc = conn_commit(c);
		else
			conn_rollback(c);
	}
	db_write_end(s->directory);
	return rc;
}

int store_kiosk_link_get(store *s, const char *link_id, store_kiosk_link *out)
{
	if (store_id_check(link_id) < 0)
		return STORE_ENOTFOUND;
	return read_one(s, link_by_id_sql, text_key(link_id), link_from_row, out);
}

int store_kiosk_links_of_family(store *s, const char *family_id, store_kiosk_link *out,
				size_t max, size_t *n)
{
	static const char sql[] =
	    "SELECT " LINK_COLUMNS "WHERE m.family_id = ? ORDER BY l.created_ms, l.id";
	*n = 0;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	return read_many(s, sql, family_id, link_from_row, out, sizeof *out, max, n);
}

/* Every link sql finds for key in *out, allocated to fit: room for a members list's worth
 * first, then read again with twice the room until nothing is left past it. */
static int links_all(store *s, const char *sql, const char *key, store_kiosk_link **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (store_id_check(key) < 0)
		return STORE_ENOTFOUND;
	for (size_t cap = STORE_MEMBERS_MAX;; cap *= 2) {
		store_kiosk_link *buf = calloc(cap, sizeof *buf);
		if (!buf)
			return STORE_ENOMEM;
		bool more = false;
		int rc = read_list(s, sql, key, link_from_row, buf, sizeof *buf, cap, n, &more);
		if (rc < 0 || !more) {
			if (rc < 0) {
				free(buf);
				*n = 0;
				return rc;
			}
			*out = buf;
			return 0;
		}
		free(buf);
	}
}

int store_kiosk_links_of_family_all(store *s, const char *family_id, store_kiosk_link **out,
                                    size_t *n)
{
	static const char sql[] =
	    "SELECT " LINK_COLUMNS "WHERE m.family_id = ? ORDER BY l.created_ms, l.id";
	return links_all(s, sql, family_id, out, n);
}

int store_kiosk_links_of_kiosk_all(store *s, const char *kiosk_id, store_kiosk_link **out,
                                   size_t *n)
{
	static const char sql[] =
	    "SELECT " LINK_COLUMNS "WHERE l.kiosk_id = ? ORDER BY m.name, l.id";
	return links_all(s, sql, kiosk_id, out, n);
}

int store_kiosk_links_of_kiosk(store *s, const char *kiosk_id, store_kiosk_link *out,
			       size_t max, size_t *n)
{
	static const char sql[] =
	    "SELECT " LINK_COLUMNS "WHERE l.kiosk_id = ? ORDER BY m.name, l.id";
	*n = 0;
	if (store_id_check(kiosk_id) < 0)
		return STORE_ENOTFOUND;
	return read_many(s, sql, kiosk_id, link_from_row, out, sizeof *out, max, n);
}

/* An UPDATE or DELETE of one link by id (the last parameter); STORE_ENOTFOUND if none. */
static int change_link(store *s, const char *sql, const char *text, int64_t a, int64_t b,
		       const char *link_id)
{
	if (store_id_check(link_id) < 0)
		return STORE_ENOTFOUND;
	int rc = 0, i = 1;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		if (text)
			sqlite3_bind_text(st, i++, text, -1, SQLITE_STATIC);
		if (a >= 0) {
			sqlite3_bind_int64(st, i++, a);
			sqlite3_bind_int64(st, i++, b);
		}
		rc = update_by_id(c, st, i, link_id);
	}
	db_write_end(s->directory);
	return rc;
}

int store_kiosk_link_set_pin(store *s, const char *link_id, const char *pin_hash,
                             const char *set_by, store_kiosk_link *out)
{
	static const char sql[] = "UPDATE kiosk_links SET pin_hash = ?, failures = 0, "
	                          "locked_until_ms = 0, pin_set_by = ? WHERE id = ?";
	/* Whoever learned the old PIN is logged out with it, in the same transaction. */
	static const char end_sql[] = "DELETE FROM kiosk_sessions WHERE link_id = ?";
	if (check_pin_hash(pin_hash) < 0)
		return STORE_EINVAL;
	if (store_id_check(link_id) < 0 || (set_by && store_id_check(set_by) < 0))
		return STORE_ENOTFOUND;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc), *end = st ? conn_stmt(c, end_sql, &rc) : NULL;
	if (end && (rc = conn_begin(c)) == 0) {
		sqlite3_bind_text(st, 1, pin_hash, -1, SQLITE_STATIC);
		if (set_by)
			sqlite3_bind_text(st, 2, set_by, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 2);
		/* One who left meanwhile gives no PIN (its removal took those it gave). */
		if (set_by)
			rc = child_and_chooser(c, NULL, link_id, set_by);
		if (rc == 0 && (rc = update_by_id(c, st, 3, link_id)) == 0) {
			sqlite3_bind_text(end, 1, link_id, -1, SQLITE_STATIC);
			rc = step_done(end);
		}
		/* The link as the caller is told it, read before the commit: read after it, a
		 * read that failed was answered 503 with the PIN changed, the child logged out and
		 * nothing audited (review finding). */
		if (rc == 0 && out)
			rc = row_one(c, link_by_id_sql, text_key(link_id), link_from_row, out);
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	return rc;
}

int store_kiosk_link_delete(store *s, const char *link_id)
{
	static const char sql[] = "DELETE FROM kiosk_links WHERE id = ?";
	return change_link(s, sql, NULL, -1, 0, link_id);
}

int store_kiosk_pin_attempt(store *s, const char *link_id, int64_t now_ms,
			    unsigned max_failures, int64_t lock_ms, store_kiosk_link *out,
			    int *allowed)
{
	return store_kiosk_pin_attempt_bounded(s, link_id, now_ms, max_failures, lock_ms, 0, 0, out,
	                                       allowed, NULL);
}

/* A kiosk's hour of wrong PINs that started at start and has count: over (none counted yet,
 * past, or started further ahead of now than threads lag, by a clock set back since: a wrong
 * time put right, which would hold the kiosk for as long as the clock had been ahead)? */
static bool kiosk_hour_over(int64_t start, int64_t count, int64_t now_ms, int64_t window_ms)
{
	return count <= 0 || now_ms - start >= window_ms || start > now_ms + CLOCK_SET_BACK_MS;
}

/* Inside the caller's transaction: the kiosk of link_id and the hour counting its wrong PINs
 * at now_ms (its start and count; kiosk "" if no such link). None counted yet, an hour over,
 * or one started further ahead of now than threads lag (by a clock set back since, a wrong time
 * put right: it would hold the kiosk for as long as the clock had been ahead): a new one from
 * now. An hour of kiosk_max is spent: as stored, for the attempt it refuses. */
static int kiosk_pin_hour(conn *c, const char *link_id, int64_t now_ms, int64_t window_ms,
                          unsigned kiosk_max, store_id *kiosk, int64_t *start, int64_t *count)
{
	static const char sql[] = "SELECT k.id, k.pin_window_ms, k.pin_failures FROM kiosk_links l "
	                          "JOIN kiosks k ON k.id = l.kiosk_id WHERE l.id = ?";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, link_id, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		copy_text(kiosk->s, sizeof kiosk->s, sqlite3_column_text(st, 0));
		*start = sqlite3_column_int64(st, 1);
		*count = sqlite3_column_int64(st, 2);
	} else if (r != SQLITE_DONE) {
		rc = stmt_error(st, r);
	}
	sqlite3_reset(st);
	if (kiosk_hour_over(*start, *count, now_ms, window_ms)) {
		*start = now_ms;
		*count = 0;
	} else if (*start > now_ms && *count < kiosk_max) {
		/* An attempt that read the clock before the one that started the hour but reached
		 * the writer after it: the hour starts with it, so that every attempt it counts is
		 * at or after its start, which is how store_kiosk_session_start knows a right PIN's
		 * to give back (else it stayed counted: two tablets' right PINs at once cost the
		 * kiosk a try for the hour). Not for one the hour refuses: it counts nothing, and
		 * the hour it is told of ends where stored (a few ms earlier, its Retry-After could
		 * be a second short, and the child sent back to a lock still there). */
		*start = now_ms;
	}
	return rc;
}

int store_kiosk_pin_attempt_bounded(store *s, const char *link_id, int64_t now_ms,
                                    unsigned max_failures, int64_t lock_ms, unsigned kiosk_max,
                                    int64_t kiosk_window_ms, store_kiosk_link *out, int *allowed,
                                    int64_t *kiosk_until_ms)
{
	/* The gate, the count and the lock in one statement: of concurrent attempts, only
	 * max_failures get through before each lock, whatever the timing. The count goes on
	 * through the locks (a right PIN or a new one clears it), so the n-th lock lasts
	 * lock_ms << (n - 1), up to LOCK_DOUBLINGS. A link whose pictures were withdrawn since
	 * it was read (out->pin_hash "" then) checks no PIN: nothing counted, the kiosk's hour
	 * neither (it was, and the child was answered 409 pin_not_set). */
	static const char sql[] =
	    "UPDATE kiosk_links SET "
	    "locked_until_ms = CASE WHEN (failures + 1) % ?1 = 0 "
	    "THEN ?2 + (?3 << min((failures + 1) / ?1 - 1, ?5)) ELSE locked_until_ms END, "
	    "failures = failures + 1 "
	    "WHERE id = ?4 AND locked_until_ms <= ?2 AND pin_hash <> ''";
	/* A lock ending further from now than its length (its count's) and a minute was set by a
	 * clock set back since (a wrong time put right): it lasted until the clock had caught up
	 * with it (an hour ahead: a 15-minute lock kept the child out an hour and 15 minutes). It
	 * is over, as store_kiosk_lock_end tells the screen: one started again from now would move
	 * on with each attempt the screen's time allowed. The count stays, so the next lock is
	 * longer. The minute is for attempts at once: one that read the clock a little before the
	 * attempt that set the lock, and reached the writer after it, lifted the lock without it,
	 * and checked pin-failures more PINs. */
	static const char set_back_sql[] =
	    "UPDATE kiosk_links SET locked_until_ms = 0 WHERE id = ?4 AND "
	    "locked_until_ms > ?2 + (?3 << min(max(failures / ?1 - 1, 0), ?5)) + ?6";
	/* The kiosk's hour, counted only with the child's attempt: one the child's lock refuses
	 * checks no PIN, so it is no wrong PIN of the kiosk's either. */
	static const char kiosk_sql[] =
	    "UPDATE kiosks SET pin_window_ms = ?1, pin_failures = ?2 WHERE id = ?3";
	*allowed = 0;
	if (kiosk_until_ms)
		*kiosk_until_ms = 0;
	if (max_failures == 0 || lock_ms < 0 || (kiosk_max && kiosk_window_ms <= 0))
		return STORE_EINVAL;
	if (store_id_check(link_id) < 0)
		return STORE_ENOTFOUND;
	store_id kiosk = {{0}};
	int64_t start = 0, count = 0;
	conn *c = db_write_begin(s->directory);
	/* One transaction: the kiosk's gate and count and the child's, so that of attempts at
	 * once, from any of the kiosk's tablets, no more than kiosk_max an hour check a PIN. */
	int rc = conn_begin(c);
	if (rc == 0 && kiosk_max)
		rc = kiosk_pin_hour(c, link_id, now_ms, kiosk_window_ms, kiosk_max, &kiosk, &start,
		                    &count);
	if (rc == 0 && kiosk.s[0] && count >= kiosk_max) { /* kiosk "": kiosk_max 0, or no link */
		if (kiosk_until_ms)
			*kiosk_until_ms = start + kiosk_window_ms;
		rc = STORE_ELIMIT;
	}
	const char *const steps[] = {set_back_sql, sql};
	for (size_t i = 0; rc == 0 && i < 2; i++) {
		sqlite3_stmt *st = conn_stmt(c, steps[i], &rc);
		if (!st)
			break;
		sqlite3_bind_int64(st, 1, max_failures);
		sqlite3_bind_int64(st, 2, now_ms);
		sqlite3_bind_int64(st, 3, lock_ms);
		sqlite3_bind_text(st, 4, link_id, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 5, LOCK_DOUBLINGS);
		if (i == 0)
			sqlite3_bind_int64(st, 6, CLOCK_SET_BACK_MS);
		if ((rc = step_write(st)) == 0 && i == 1)
			*allowed = sqlite3_changes(c->db) > 0;
	}
	sqlite3_stmt *st;
	if (rc == 0 && *allowed && kiosk.s[0] && (st = conn_stmt(c, kiosk_sql, &rc))) {
		sqlite3_bind_int64(st, 1, start);
		sqlite3_bind_int64(st, 2, count + 1);
		sqlite3_bind_text(st, 3, kiosk.s, -1, SQLITE_STATIC);
		rc = step_write(st);
		/* This attempt spent the hour: a wrong PIN starts the kiosk's lock. */
		if (rc == 0 && count + 1 >= kiosk_max && kiosk_until_ms)
			*kiosk_until_ms = start + kiosk_window_ms;
	}
	/* The link as the attempt leaves it (refused by the kiosk's hour, nothing counted: as it
	 * is, its own lock if any; not counted, locked or no such link: the read tells them
	 * apart), read before the commit: read after it, a read that failed was answered 503 and
	 * left the attempt counted, a right PIN's too, which could lock the child out (review
	 * finding). */
	if (rc == 0 || rc == STORE_ELIMIT) {
		int r = row_one(c, link_by_id_sql, text_key(link_id), link_from_row, out);
		if (r < 0)
			rc = r;
	}
	rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	db_write_end(s->directory);
	if (rc < 0)
		*allowed = 0;
	return rc;
}

typedef struct kiosk_hour {
	int64_t start, count;
} kiosk_hour;

/* A kiosk's hour of wrong PINs as stored: its start and count (kiosk_hour_from_row). */
static const char kiosk_hour_sql[] = "SELECT pin_window_ms, pin_failures FROM kiosks WHERE id = ?";

static void kiosk_hour_from_row(sqlite3_stmt *st, void *out)
{
	kiosk_hour *h = out;
	h->start = sqlite3_column_int64(st, 0);
	h->count = sqlite3_column_int64(st, 1);
}

int store_kiosk_pins_lock_end(store *s, const char *kiosk_id, int64_t now_ms, unsigned kiosk_max,
                              int64_t window_ms, int64_t *until_ms)
{
	*until_ms = 0;
	if (kiosk_max == 0)
		return STORE_EINVAL;
	int64_t start, count;
	int rc = store_kiosk_pins_hour(s, kiosk_id, now_ms, window_ms, &start, &count);
	if (rc == 0 && count >= kiosk_max) /* an hour over counts 0 */
		*until_ms = start + window_ms;
	return rc;
}

/* The hour h as the kiosk's logins find it at now_ms: over (see kiosk_hour_over) is none. */
static void kiosk_hour_live(kiosk_hour *h, int64_t now_ms, int64_t window_ms)
{
	if (kiosk_hour_over(h->start, h->count, now_ms, window_ms))
		h->start = h->count = 0;
}

int store_kiosk_pins_hour(store *s, const char *kiosk_id, int64_t now_ms, int64_t window_ms,
                          int64_t *start_ms, int64_t *count)
{
	*start_ms = *count = 0;
	if (window_ms <= 0)
		return STORE_EINVAL;
	if (store_id_check(kiosk_id) < 0)
		return STORE_ENOTFOUND;
	kiosk_hour h;
	int rc = read_one(s, kiosk_hour_sql, text_key(kiosk_id), kiosk_hour_from_row, &h);
	if (rc == 0) {
		kiosk_hour_live(&h, now_ms, window_ms);
		*start_ms = h.start;
		*count = h.count;
	}
	return rc;
}

int store_kiosk_pins_reset(store *s, const char *kiosk_id, int64_t now_ms, int64_t window_ms,
                           int64_t *start_ms, int64_t *count)
{
	/* No hour at all: the next wrong PIN starts one from its time, as for a kiosk that never
	 * had one; a right PIN's give-back (store_kiosk_session_start) finds nothing to give. */
	static const char reset_sql[] =
	    "UPDATE kiosks SET pin_window_ms = 0, pin_failures = 0 WHERE id = ?";
	*start_ms = *count = 0;
	if (window_ms <= 0)
		return STORE_EINVAL;
	if (store_id_check(kiosk_id) < 0)
		return STORE_ENOTFOUND;
	kiosk_hour h = {0, 0};
	conn *c = db_write_begin(s->directory);
	/* The hour read and ended in one transaction: a wrong PIN counted between them is ended
	 * with the others, not lost from what is reported. */
	int rc = conn_begin(c);
	sqlite3_stmt *st = rc == 0 ? conn_stmt(c, kiosk_hour_sql, &rc) : NULL;
	if (st) {
		sqlite3_bind_text(st, 1, kiosk_id, -1, SQLITE_STATIC);
		int r = sqlite3_step(st);
		if (r == SQLITE_ROW)
			kiosk_hour_from_row(st, &h);
		rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? STORE_ENOTFOUND : stmt_error(st, r);
		sqlite3_reset(st);
	}
	if (rc == 0 && (st = conn_stmt(c, reset_sql, &rc)))
		rc = update_by_id(c, st, 1, kiosk_id);
	rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	db_write_end(s->directory);
	if (rc == 0) {
		kiosk_hour_live(&h, now_ms, window_ms);
		*start_ms = h.start;
		*count = h.count;
	}
	return rc;
}

int64_t store_kiosk_lock_end(const store_kiosk_link *l, int64_t now_ms, unsigned max_failures,
                             int64_t lock_ms)
{
	if (max_failures == 0 || lock_ms < 0 || l->locked_until_ms <= now_ms)
		return l->locked_until_ms;
	/* The length store_kiosk_pin_attempt's set_back_sql computes */
	unsigned n = l->failures / max_failures;
	unsigned doublings = n < 1 ? 0 : n - 1 < LOCK_DOUBLINGS ? n - 1 : LOCK_DOUBLINGS;
	return l->locked_until_ms > now_ms + (lock_ms << doublings) + CLOCK_SET_BACK_MS
	           ? 0
	           : l->locked_until_ms;
}

/* An attempt store_kiosk_pin_attempt_bounded counted on the link's kiosk at attempt_ms, given
 * back on the writer `c` (a right PIN's, or one whose PIN could not be checked), while the
 * hour that counted it is the kiosk's (one started after it is a later one, which never
 * counted it). */
static int kiosk_give_back(conn *c, const char *link_id, int64_t attempt_ms)
{
	static const char sql[] =
	    "UPDATE kiosks SET pin_failures = pin_failures - 1 WHERE id = (SELECT kiosk_id FROM "
	    "kiosk_links WHERE id = ?1) AND pin_failures > 0 AND pin_window_ms <= ?2";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, link_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, attempt_ms);
	return step_write(st);
}

static void member_ids_row(sqlite3_stmt *st, void *out)
{
	store_member *m = out;
	copy_text(m->id.s, sizeof m->id.s, sqlite3_column_text(st, 0));
	copy_text(m->family_id.s, sizeof m->family_id.s, sqlite3_column_text(st, 1));
}

/* Inside the caller's transaction: the child of link_id (not one who left) into *member and
 * their family into *family, either NULL to skip it; STORE_ENOTFOUND if there is none. */
static int link_child(conn *c, const char *link_id, store_member *member, store_family *family)
{
	static const char sql[] = "SELECT m.id, m.family_id FROM kiosk_links l JOIN members m ON "
	                          "m.id = l.member_id AND m.removed_ms IS NULL WHERE l.id = ?";
	store_member who;
	int rc = row_one(c, sql, text_key(link_id), member_ids_row, &who);
	if (rc == 0 && member)
		rc = member_current(c, who.family_id.s, who.id.s, member);
	if (rc == 0 && family)
		rc = family_read(c, who.family_id.s, family);
	return rc;
}

int store_kiosk_session_start(store *s, const uint8_t token_hash[STORE_HASH_LEN],
                              const char *device_id, const char *link_id, const char *pin_hash,
                              int64_t now_ms, store_member *member, store_family *family)
{
	/* Only on a tablet of the link's kiosk that is not revoked, and while the link is there:
	 * one revoked while the PIN was checked was told 201 with a session no request could use,
	 * one whose link went meanwhile 403 wrong_pin. */
	static const char still_sql[] =
	    "SELECT l.pin_hash = ?3 FROM kiosk_links l JOIN devices d ON d.kiosk_id = l.kiosk_id "
	    "WHERE l.id = ?2 AND d.id = ?1 AND d.kind = 'kiosk' AND d.revoked_ms IS NULL";
	static const char end_sql[] = "DELETE FROM kiosk_sessions WHERE device_id = ?";
	/* Only while the link has the PIN that was checked: a new one committed since (which
	 * ended the sessions there were) refuses it (review finding: a login racing a PIN change
	 * kept a session opened with the old PIN). */
	static const char clear_sql[] = "UPDATE kiosk_links SET failures = 0, locked_until_ms = 0 "
	                                "WHERE pin_hash = ? AND id = ?";
	/* A child is at one tablet at a time: their sessions on the other devices end, of this
	 * kiosk and of every kiosk they are paired to (the member's links, not only this one).
	 * They stayed open until idle, showing the family to whoever came to the tablet next. */
	static const char elsewhere_sql[] =
	    "DELETE FROM kiosk_sessions WHERE device_id != ?1 AND link_id IN (SELECT id FROM "
	    "kiosk_links WHERE member_id = (SELECT member_id FROM kiosk_links WHERE id = ?2))";
	static const char sql[] = "INSERT INTO kiosk_sessions (token_hash, device_id, link_id, "
	                          "created_ms, last_used_ms) VALUES (?, ?, ?, ?, ?)";
	if (!token_hash || check_pin_hash(pin_hash) < 0)
		return STORE_EINVAL;
	if (store_id_check(device_id) < 0 || store_id_check(link_id) < 0)
		return STORE_ENOTFOUND;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = NULL;
	int rc = conn_begin(c);
	if (rc < 0)
		goto done;
	if ((st = conn_stmt(c, still_sql, &rc))) {
		sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, link_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, pin_hash, -1, SQLITE_STATIC);
		int r = sqlite3_step(st);
		rc = r == SQLITE_ROW    ? (sqlite3_column_int(st, 0) ? 0 : STORE_ECHANGED)
		     : r == SQLITE_DONE ? STORE_ENOTFOUND
		                        : stmt_error(st, r);
		sqlite3_reset(st);
	}
	if (rc == 0 && (st = conn_stmt(c, end_sql, &rc))) {
		sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
		rc = step_write(st);
	}
	if (rc == 0 && (st = conn_stmt(c, clear_sql, &rc))) {
		sqlite3_bind_text(st, 1, pin_hash, -1, SQLITE_STATIC);
		rc = update_by_id(c, st, 2, link_id); /* gone, or another PIN: ENOTFOUND */
	}
	/* The attempt store_kiosk_pin_attempt_bounded counted at now_ms was a right PIN. */
	if (rc == 0)
		rc = kiosk_give_back(c, link_id, now_ms);
	if (rc == 0 && (st = conn_stmt(c, elsewhere_sql, &rc))) {
		sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, link_id, -1, SQLITE_STATIC);
		rc = step_write(st);
	}
	if (rc == 0 && (st = conn_stmt(c, sql, &rc))) {
		sqlite3_bind_blob(st, 1, token_hash, STORE_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, link_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, now_ms);
		sqlite3_bind_int64(st, 5, now_ms);
		rc = step_write(st);
	}
	/* Whom the session is for, as its tablet is told, read before the commit: read after it,
	 * a read that failed was answered 503 and left the session stored (its token told to
	 * nobody) and the child's sessions on other tablets ended (review finding). */
	if (rc == 0 && (member || family))
		rc = link_child(c, link_id, member, family);
	if (rc == 0)
		rc = conn_commit(c);
	else
		conn_rollback(c);
done:
	db_write_end(s->directory);
	return rc;
}

int store_kiosk_pin_attempt_give_back(store *s, const char *link_id, const char *pin_hash,
                                      int64_t attempt_ms, unsigned max_failures, int64_t lock_ms)
{
	/* One count less, and the lock gone if it is the one this attempt set (the count's
	 * max_failures-th, ending when that attempt made it end: the same formula as
	 * store_kiosk_pin_attempt_bounded's, its count after the attempt being `failures` here):
	 * an attempt after it was refused by that lock, and counted nothing. Only while the link
	 * has the PIN that was checked: a new one since cleared the count. */
	static const char sql[] =
	    "UPDATE kiosk_links SET locked_until_ms = CASE WHEN failures % ?1 = 0 AND "
	    "locked_until_ms = ?2 + (?3 << min(failures / ?1 - 1, ?4)) THEN 0 "
	    "ELSE locked_until_ms END, failures = failures - 1 "
	    "WHERE id = ?5 AND pin_hash = ?6 AND failures > 0";
	if (max_failures == 0 || lock_ms < 0 || check_pin_hash(pin_hash) < 0)
		return STORE_EINVAL;
	if (store_id_check(link_id) < 0)
		return STORE_ENOTFOUND;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = NULL;
	int rc = conn_begin(c);
	if (rc < 0)
		goto done;
	if ((st = conn_stmt(c, sql, &rc))) {
		sqlite3_bind_int64(st, 1, max_failures);
		sqlite3_bind_int64(st, 2, attempt_ms);
		sqlite3_bind_int64(st, 3, lock_ms);
		sqlite3_bind_int(st, 4, LOCK_DOUBLINGS);
		sqlite3_bind_text(st, 5, link_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, pin_hash, -1, SQLITE_STATIC);
		rc = step_write(st);
	}
	if (rc == 0)
		rc = kiosk_give_back(c, link_id, attempt_ms);
	if (rc == 0)
		rc = conn_commit(c);
	else
		conn_rollback(c);
done:
	db_write_end(s->directory);
	return rc;
}

typedef struct session_row {
	store_device *device;
	store_member *member;
	int64_t last_used_ms;
} session_row;

static void session_from_row(sqlite3_stmt *st, void *out)
{
	session_row *r = out;
	store_device *d = r->device;
	store_member *m = r->member;
	memset(d, 0, sizeof *d);
	memset(m, 0, sizeof *m);
	r->last_used_ms = sqlite3_column_int64(st, 0);
	copy_text(d->id.s, sizeof d->id.s, sqlite3_column_text(st, 1));
	d->kind = STORE_DEVICE_KIOSK;
	copy_text(d->kiosk_id.s, sizeof d->kiosk_id.s, sqlite3_column_text(st, 2));
	copy_text(d->name, sizeof d->name, sqlite3_column_text(st, 3));
	d->created_ms = sqlite3_column_int64(st, 4);
	d->last_seen_ms = sqlite3_column_int64(st, 5);
	copy_text(m->id.s, sizeof m->id.s, sqlite3_column_text(st, 6));
	copy_text(m->family_id.s, sizeof m->family_id.s, sqlite3_column_text(st, 7));
	copy_text(m->name, sizeof m->name, sqlite3_column_text(st, 8));
	store_role_parse((const char *)sqlite3_column_text(st, 9), &m->role);
	copy_text(m->avatar, sizeof m->avatar, sqlite3_column_text(st, 10));
	m->created_ms = sqlite3_column_int64(st, 11);
	d->member_id = m->id;
	d->family_id = m->family_id;
}

int store_kiosk_session_auth(store *s, const uint8_t token_hash[STORE_HASH_LEN], int64_t now_ms,
                             int64_t idle_ms, bool use, store_device *device, store_member *member,
                             int64_t *idle_at_ms)
{
	static const char sql[] =
	    "SELECT ks.last_used_ms, d.id, d.kiosk_id, d.name, d.created_ms, d.last_seen_ms, "
	    "m.id, m.family_id, m.name, m.role, m.avatar, m.created_ms FROM kiosk_sessions ks "
	    "JOIN devices d ON d.id = ks.device_id JOIN kiosk_links l ON l.id = ks.link_id "
	    "JOIN members m ON m.id = l.member_id "
	    "WHERE ks.token_hash = ? AND d.revoked_ms IS NULL AND m.removed_ms IS NULL";
	static const char touch[] = "UPDATE kiosk_sessions SET last_used_ms = ?1 "
				    "WHERE token_hash = ?2 AND last_used_ms < ?1";
	if (!token_hash)
		return STORE_EINVAL;
	session_row r = {device, member, 0};
	int rc = read_one(s, sql, hash_key(token_hash), session_from_row, &r);
	if (rc < 0)
		return rc;
	if (now_ms - r.last_used_ms >= idle_ms)
		return STORE_ENOTFOUND; /* idle too long: over */
	/* The clock was set back (a wrong time put right) since the last use: unused since when,
	 * no one can tell, so the session ends, its row deleted, or it would open again as the
	 * clock came within a minute of that use. It went idle only once the clock had caught up
	 * with it (an hour ahead: the tablet kept the child's family an hour and kiosk-idle-s on,
	 * long-polls or not, for the next child at it). */
	if (r.last_used_ms - now_ms > CLOCK_SET_BACK_MS) {
		rc = store_kiosk_session_end(s, token_hash);
		return rc == 0 ? STORE_ENOTFOUND : rc;
	}
	/* Written at most every TOUCH_MS, and at least every twentieth of the idle time, so a
	 * session never ends more than 5% early. */
	int64_t every = idle_ms / 20 < TOUCH_MS ? idle_ms / 20 : TOUCH_MS;
	if (use && now_ms - r.last_used_ms >= every) {
		conn *c = db_write_begin(s->directory);
		sqlite3_stmt *st = conn_stmt(c, touch, &rc);
		if (st) {
			sqlite3_bind_int64(st, 1, now_ms);
			sqlite3_bind_blob(st, 2, token_hash, STORE_HASH_LEN, SQLITE_STATIC);
			rc = step_write(st);
		}
		db_write_end(s->directory);
		/* Not written (a full disk, a file system remounted read-only): the session holds
		 * all the same, idle from the last use written, as a phone's last-seen is left
		 * (store_device_touch). Failing the request for it, every request of the child's
		 * was 507 on a full disk, where the family's phones heard everything. */
		if (rc == 0)
			r.last_used_ms = now_ms;
		rc = 0;
	}
	/* The use recorded, not the last one: the time this function refuses the session from. */
	if (rc == 0 && idle_at_ms)
		*idle_at_ms = r.last_used_ms + idle_ms;
	return rc;
}

int store_kiosk_child_linked(store *s, const char *device_id, const char *member_id)
{
	static const char sql[] =
	    "SELECT 1 FROM devices d JOIN kiosk_links l ON l.kiosk_id = d.kiosk_id "
	    "JOIN members m ON m.id = l.member_id WHERE d.id = ?1 AND d.revoked_ms IS NULL AND "
	    "l.member_id = ?2 AND m.removed_ms IS NULL";
	if (store_id_check(device_id) < 0 || store_id_check(member_id) < 0)
		return STORE_ENOTFOUND;
	conn *c;
	int rc = db_read_begin(s->directory, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, member_id, -1, SQLITE_STATIC);
		int r = sqlite3_step(st);
		rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? STORE_ENOTFOUND : stmt_error(st, r);
		sqlite3_reset(st);
	}
	db_read_end(s->directory, c);
	return rc;
}

int store_kiosk_session_end(store *s, const uint8_t token_hash[STORE_HASH_LEN])
{
	static const char sql[] = "DELETE FROM kiosk_sessions WHERE token_hash = ?";
	if (!token_hash)
		return STORE_EINVAL;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_blob(st, 1, token_hash, STORE_HASH_LEN, SQLITE_STATIC);
		rc = step_write(st);
		if (rc == 0 && sqlite3_changes(c->db) == 0)
			rc = STORE_ENOTFOUND;
	}
	db_write_end(s->directory);
	return rc;
}

int store_kiosk_pins_withdraw_all(store *s, unsigned *n)
{
	static const char sessions_sql[] = "DELETE FROM kiosk_sessions";
	static const char pins_sql[] = "UPDATE kiosk_links SET pin_hash = '', pin_set_by = NULL, "
	                               "failures = 0, locked_until_ms = 0 WHERE pin_hash != ''";
	int rc = 0;
	*n = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sessions_sql, &rc);
	if (st && (rc = conn_begin(c)) == 0) {
		rc = step_write(st);
		if (rc == 0 && (st = conn_stmt(c, pins_sql, &rc)) != NULL &&
		    (rc = step_write(st)) == 0)
			*n = (unsigned)sqlite3_changes(c->db);
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	if (rc < 0)
		*n = 0;
	return rc;
}

int store_kiosk_sessions_end(store *s, const char *device_id)
{
	static const char sql[] = "DELETE FROM kiosk_sessions WHERE device_id = ?";
	if (store_id_check(device_id) < 0)
		return STORE_ENOTFOUND;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
		rc = step_write(st);
	}
	db_write_end(s->directory);
	return rc;
}
