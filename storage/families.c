/*
 * families.c — families and their members, in the directory database.
 *
 * A family is a row in the directory and a mailbox file of its own (families/<id>.db): it is
 * created mailbox first, so a crash in between leaves an orphan file (store_families_sweep sets
 * it aside), never a family without its mailbox; it is deleted rows first (recording it among
 * the erased families in the same transaction), so no new request finds it, then its file is
 * erased through the family cache (family_erase), or by the sweep after a crash.
 */
#include "internal.h"

#include <stdint.h>
#include <string.h>

int member_insert(conn *c, const char *family_id, const char *name, store_role role,
                  const char *avatar, const char *add_key, int64_t now_ms, store_member *out)
{
	/* The counts and the insert in one statement, under the caller's write transaction: two
	 * members added at once cannot both be the last one allowed. Former members count only
	 * towards the rows. */
	static const char sql[] =
	    "INSERT INTO members (id, family_id, name, role, avatar, created_ms, add_key) "
	    "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?9 WHERE (SELECT count(*) FROM members "
	    "WHERE family_id = ?2 AND removed_ms IS NULL) < ?7 AND (SELECT count(*) FROM members "
	    "WHERE family_id = ?2) < ?8";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	memset(out, 0, sizeof *out);
	store_new_id(&out->id);
	memcpy(out->family_id.s, family_id, STORE_ID_LEN + 1);
	copy_text(out->name, sizeof out->name, (const unsigned char *)name);
	copy_text(out->avatar, sizeof out->avatar, (const unsigned char *)(avatar ? avatar : ""));
	out->role = role;
	out->created_ms = now_ms;
	sqlite3_bind_text(st, 1, out->id.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, family_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, store_role_name(role), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, out->avatar, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now_ms);
	sqlite3_bind_int(st, 7, STORE_MEMBERS_MAX);
	sqlite3_bind_int(st, 8, STORE_MEMBER_ROWS_MAX);
	bind_optional(st, 9, add_key);
	if ((rc = step_write(st)) < 0) /* a foreign key failing: no such family */
		return rc;
	return sqlite3_changes(c->db) == 1 ? 0 : STORE_ELIMIT;
}

/* A sign-up's Idempotency-Key (its hash) and what a call with it did (store_family_signup). */
typedef struct signup_key {
	const uint8_t *hash;
	int64_t again_since_ms;
	store_signup *done;
} signup_key;

/*
 * Inside the caller's write transaction: the sign-up k's key made, if any (*k->done left 0
 * when none). Of the same names, its device never used nor revoked, and made since
 * k->again_since_ms: the three, the device's token hash replaced by token_hash. A key a
 * pairing made (the device has its code, step 19) is another request's: STORE_SIGNUP_OTHER.
 */
static int signup_again(conn *c, const signup_key *k, const char *family_name,
                        const char *member_name, const char *device_name, const uint8_t *token_hash,
                        store_family *family, store_member *member, store_device *device)
{
	static const char sql[] =
	    "SELECT d.id, f.name = ?2 AND m.name = ?3 AND d.name = ?4 AND d.pair_code IS NULL, "
	    "d.last_seen_ms IS NULL "
	    "AND d.revoked_ms IS NULL AND d.created_ms >= ?5 FROM devices d "
	    "JOIN members m ON m.id = d.member_id JOIN families f ON f.id = m.family_id "
	    "WHERE d.signup_key = ?1";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_blob(st, 1, k->hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, family_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, member_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, device_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, k->again_since_ms);
	/* Only hashes are kept, and the first answer never arrived: a new token for the device,
	 * the one before given up. */
	device_key found;
	rc = device_key_again(c, st, token_hash, family, member, device, &found);
	if (found != DEVICE_KEY_NONE)
		*k->done = found == DEVICE_KEY_OTHER  ? STORE_SIGNUP_OTHER
		           : found == DEVICE_KEY_DONE ? STORE_SIGNUP_DONE
		                                      : STORE_SIGNUP_AGAIN;
	return rc;
}

/* The new device keeps the sign-up's key (directory step 18), in the sign-up's transaction. */
static int signup_key_keep(conn *c, const signup_key *k, const store_device *device)
{
	static const char sql[] = "UPDATE devices SET signup_key = ? WHERE id = ?";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_blob(st, 1, k->hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, device->id.s, -1, SQLITE_STATIC);
	if ((rc = step_write(st)) == 0)
		*k->done = STORE_SIGNUP_MADE;
	return rc;
}

/*
 * A family, its first member (a parent) and, when token_hash is given, that member's device;
 * with a sign-up's key (k not NULL), the sign-up that key made instead when there is one,
 * looked up in the transaction that would insert the three (*k->done says which).
 */
static int family_create(store *s, const char *family_name, const char *member_name,
                         uint64_t quota_bytes, int64_t now_ms, const uint8_t *token_hash,
                         const char *device_name, const signup_key *k, store_family *family,
                         store_member *member, store_device *device)
{
	static const char sql[] = "INSERT INTO families (id, name, created_ms, quota_bytes) "
				  "VALUES (?, ?, ?, ?)";
	char path[PATH_CAP];
	db *mailbox = NULL;
	int rc;
	if (check_text(family_name, STORE_NAME_MAX) < 0 ||
	    check_text(member_name, STORE_NAME_MAX) < 0 || quota_bytes > INT64_MAX ||
	    (token_hash && check_text(device_name, STORE_NAME_MAX) < 0))
		return STORE_EINVAL;
	memset(family, 0, sizeof *family);
	store_new_id(&family->id);
	copy_text(family->name, sizeof family->name, (const unsigned char *)family_name);
	family->created_ms = now_ms;
	family->quota_bytes = quota_bytes;

	/* The mailbox file first: a crash after it leaves an orphan file, never a family
	 * without its mailbox. */
	if ((rc = family_path(s, family->id.s, path, sizeof path)) < 0)
		return rc;
	if ((rc = db_open(&mailbox, path, &mailbox_schema, &s->opt, true)) < 0)
		goto fail;
	rc = mailbox_owner_write(mailbox, family->id.s);
	db_close(mailbox);
	if (rc < 0)
		goto fail;

	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st && (rc = conn_begin(c)) == 0) {
		/* A sign-up sent again while the first was on its way: that one, and the mailbox
		 * file made for nothing goes. */
		if (k)
			rc = signup_again(c, k, family_name, member_name, device_name, token_hash,
			                  family, member, device);
		if (rc == 0 && (!k || !*k->done)) {
			sqlite3_bind_text(st, 1, family->id.s, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, family_name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, now_ms);
			sqlite3_bind_int64(st, 4, (sqlite3_int64)quota_bytes);
			if ((rc = step_done(st)) == 0)
				rc = member_insert(c, family->id.s, member_name, STORE_ROLE_PARENT,
				                   NULL, NULL, now_ms, member);
			if (rc == 0 && token_hash)
				rc = device_insert(c, token_hash, member->id.s, NULL, device_name,
				                   now_ms, device);
			if (rc == 0 && k)
				rc = signup_key_keep(c, k, device);
		}
		/* A retry's new token is kept; a key of other names, or of a sign-up done, changes
		 * nothing. */
		bool keep = !k || (*k->done != STORE_SIGNUP_OTHER && *k->done != STORE_SIGNUP_DONE);
		rc = rc == 0 && keep ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	if (rc == 0 && (!k || *k->done == STORE_SIGNUP_MADE))
		return 0;
fail:
	unlink_db_files(path);
	return rc;
}

int store_family_create(store *s, const char *family_name, const char *member_name,
			uint64_t quota_bytes, int64_t now_ms, store_family *family,
			store_member *member)
{
	return family_create(s, family_name, member_name, quota_bytes, now_ms, NULL, NULL, NULL,
	                     family, member, NULL);
}

int store_family_create_with_device(store *s, const char *family_name, const char *member_name,
				    uint64_t quota_bytes, const uint8_t token_hash[STORE_HASH_LEN],
				    const char *device_name, int64_t now_ms, store_family *family,
				    store_member *member, store_device *device)
{
	if (!token_hash || !device)
		return STORE_EINVAL;
	return family_create(s, family_name, member_name, quota_bytes, now_ms, token_hash,
	                     device_name, NULL, family, member, device);
}

int store_family_signup(store *s, const char *family_name, const char *member_name,
                        uint64_t quota_bytes, const uint8_t token_hash[STORE_HASH_LEN],
                        const char *device_name, const uint8_t key_hash[STORE_HASH_LEN],
                        int64_t again_since_ms, bool make, int64_t now_ms, store_family *family,
                        store_member *member, store_device *device, store_signup *done)
{
	*done = 0;
	if (!token_hash || !key_hash || !device || check_text(family_name, STORE_NAME_MAX) < 0 ||
	    check_text(member_name, STORE_NAME_MAX) < 0 ||
	    check_text(device_name, STORE_NAME_MAX) < 0)
		return STORE_EINVAL;
	signup_key k = {key_hash, again_since_ms, done};
	/* A retry is looked for first, so that it makes no mailbox file; family_create looks
	 * again, in the transaction that would insert the three (two sent at once). */
	conn *c = db_write_begin(s->directory);
	int rc = conn_begin(c);
	if (rc == 0) {
		rc = signup_again(c, &k, family_name, member_name, device_name, token_hash, family,
		                  member, device);
		rc = rc == 0 && *done == STORE_SIGNUP_AGAIN ? conn_commit(c)
		                                            : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	if (rc < 0 || *done)
		return rc;
	if (!make) {
		*done = STORE_SIGNUP_NONE;
		return 0;
	}
	return family_create(s, family_name, member_name, quota_bytes, now_ms, token_hash,
	                     device_name, &k, family, member, device);
}

static void family_from_row(sqlite3_stmt *st, void *row)
{
	store_family *out = row;
	memset(out, 0, sizeof *out);
	copy_text(out->id.s, sizeof out->id.s, sqlite3_column_text(st, 0));
	copy_text(out->name, sizeof out->name, sqlite3_column_text(st, 1));
	out->created_ms = sqlite3_column_int64(st, 2);
	out->quota_bytes = (uint64_t)sqlite3_column_int64(st, 3);
	out->retention_days = (uint32_t)sqlite3_column_int64(st, 4);
}

static const char family_by_id_sql[] = "SELECT id, name, created_ms, quota_bytes, "
                                       "retention_days FROM families WHERE id = ?";

int family_read(conn *c, const char *family_id, store_family *out)
{
	return row_one(c, family_by_id_sql, text_key(family_id), family_from_row, out);
}

int store_family_get(store *s, const char *family_id, store_family *out)
{
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	return read_one(s, family_by_id_sql, text_key(family_id), family_from_row, out);
}

int store_families_retaining(store *s, const char *after_id, int64_t checked_before_ms,
			     store_family *out, size_t max, size_t *n)
{
	static const char sql[] = "SELECT id, name, created_ms, quota_bytes, retention_days "
				  "FROM families WHERE id > ? AND retention_days > 0 AND "
				  "retention_checked_ms < ? ORDER BY id";
	conn *c;
	*n = 0;
	int rc = db_read_begin(s->directory, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_text(st, 1, after_id ? after_id : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, checked_before_ms);
		int r = SQLITE_DONE;
		while (*n < max && (r = sqlite3_step(st)) == SQLITE_ROW)
			family_from_row(st, &out[(*n)++]);
		rc = r == SQLITE_ROW || r == SQLITE_DONE ? 0 : stmt_error(st, r);
	}
	db_read_end(s->directory, c);
	return rc;
}

int store_families_list(store *s, const char *after_id, store_family *out, size_t max, size_t *n)
{
	static const char sql[] = "SELECT id, name, created_ms, quota_bytes, retention_days "
	                          "FROM families WHERE id > ? ORDER BY id";
	return read_many(s, sql, after_id ? after_id : "", family_from_row, out, sizeof *out, max,
	                 n);
}

int store_family_retention_checked(store *s, const char *family_id, uint32_t retention_days,
                                   int64_t now_ms)
{
	/* Only while the family has the period the job applied: one set since (made due at once
	 * by store_family_update) was marked checked by the job's visit with the period before,
	 * its time read before the new period was stored, and waited a day for the next visit
	 * (a parent who shortened it from 30 days to 7 kept the older messages that day on). */
	static const char sql[] = "UPDATE families SET retention_checked_ms = CASE WHEN "
	                          "retention_days = ?3 THEN ?1 ELSE retention_checked_ms END "
	                          "WHERE id = ?2";
	return stamp_by_id(s, sql, family_id, now_ms, retention_days);
}

void retention_delete_enter(store *s)
{
	pthread_mutex_lock(&s->retention_lock);
	while (s->changes > 0)
		pthread_cond_wait(&s->retention_turn, &s->retention_lock);
	s->deleting++;
	pthread_mutex_unlock(&s->retention_lock);
}

void retention_delete_leave(store *s)
{
	pthread_mutex_lock(&s->retention_lock);
	if (--s->deleting == 0)
		pthread_cond_broadcast(&s->retention_turn);
	pthread_mutex_unlock(&s->retention_lock);
}

static void retention_change_enter(store *s)
{
	pthread_mutex_lock(&s->retention_lock);
	s->changes++; /* from now on, no deletion starts */
	while (s->deleting > 0)
		pthread_cond_wait(&s->retention_turn, &s->retention_lock);
	pthread_mutex_unlock(&s->retention_lock);
}

static void retention_change_leave(store *s)
{
	pthread_mutex_lock(&s->retention_lock);
	if (--s->changes == 0)
		pthread_cond_broadcast(&s->retention_turn);
	pthread_mutex_unlock(&s->retention_lock);
}

int store_family_update(store *s, const char *family_id, const uint64_t *quota_bytes,
                        const uint32_t *retention_days, store_family *out)
{
	/* A retention period set (again) makes the family due for the retention job. The family
	 * as its caller answers with it comes back from the same statement: read after it, a read
	 * that failed was answered 503 with the change made and audited (review finding). */
	static const char sql[] =
	    "UPDATE families SET quota_bytes = coalesce(?1, quota_bytes), "
	    "retention_days = coalesce(?2, retention_days), retention_checked_ms = "
	    "CASE WHEN ?2 IS NULL THEN retention_checked_ms ELSE 0 END WHERE id = ?3 "
	    "RETURNING id, name, created_ms, quota_bytes, retention_days";
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	if (quota_bytes && *quota_bytes > INT64_MAX)
		return STORE_EINVAL;
	int rc = 0;
	if (retention_days) /* a deletion by the old period is done before, none after */
		retention_change_enter(s);
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		if (quota_bytes)
			sqlite3_bind_int64(st, 1, (sqlite3_int64)*quota_bytes);
		else
			sqlite3_bind_null(st, 1);
		if (retention_days)
			sqlite3_bind_int64(st, 2, *retention_days);
		else
			sqlite3_bind_null(st, 2);
		sqlite3_bind_text(st, 3, family_id, -1, SQLITE_STATIC);
		int r = sqlite3_step(st);
		if (r == SQLITE_ROW) {
			if (out)
				family_from_row(st, out);
			rc = step_write(st); /* the statement's end, which commits it */
		} else {
			rc = r == SQLITE_DONE ? STORE_ENOTFOUND : stmt_write_error(st, r);
		}
		sqlite3_reset(st);
	}
	db_write_end(s->directory);
	if (retention_days)
		retention_change_leave(s);
	return rc;
}

int store_family_delete(store *s, const char *family_id, int64_t now_ms)
{
	static const char sql[] = "DELETE FROM families WHERE id = ?";
	/* With the rows: so a file a crash leaves is known to be an erased family's. */
	static const char erased_sql[] =
	    "INSERT OR REPLACE INTO erased_families (id, erased_ms) VALUES (?, ?)";
	char path[PATH_CAP];
	int rc = family_path(s, family_id, path, sizeof path);
	if (rc < 0)
		return rc;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st && (rc = conn_begin(c)) == 0) {
		rc = update_by_id(c, st, 1, family_id);
		if (rc == 0 && (st = conn_stmt(c, erased_sql, &rc))) {
			sqlite3_bind_text(st, 1, family_id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, now_ms);
			rc = step_done(st);
		}
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	/* The rows' old copies (names, devices, flags' reasons) are zeroed in the WAL (the
	 * directory deletes securely); a checkpoint copies that over the file and empties the
	 * WAL, as a message's erasure does in its mailbox. */
	if (rc == 0)
		(void)sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_TRUNCATE, NULL,
						NULL);
	db_write_end(s->directory);
	if (rc < 0)
		return rc;
	/* The rows are gone, so no new request finds the family; erase its voices. */
	family_erase(s, family_id, path);
	return 0;
}

static void member_from_row(sqlite3_stmt *st, void *row)
{
	store_member *m = row;
	memset(m, 0, sizeof *m);
	copy_text(m->id.s, sizeof m->id.s, sqlite3_column_text(st, 0));
	copy_text(m->family_id.s, sizeof m->family_id.s, sqlite3_column_text(st, 1));
	copy_text(m->name, sizeof m->name, sqlite3_column_text(st, 2));
	store_role_parse((const char *)sqlite3_column_text(st, 3), &m->role);
	copy_text(m->avatar, sizeof m->avatar, sqlite3_column_text(st, 4));
	m->created_ms = sqlite3_column_int64(st, 5);
	m->removed_ms = sqlite3_column_int64(st, 6); /* NULL: 0 */
}

#define MEMBER_COLUMNS "id, family_id, name, role, avatar, created_ms, removed_ms"

int member_current(conn *c, const char *family_id, const char *member_id, store_member *out)
{
	static const char sql[] =
	    "SELECT " MEMBER_COLUMNS " FROM members WHERE id = ? AND removed_ms IS NULL";
	if (store_id_check(member_id) < 0)
		return STORE_ENOTFOUND;
	int rc = row_one(c, sql, text_key(member_id), member_from_row, out);
	return rc == 0 && strcmp(out->family_id.s, family_id) != 0 ? STORE_ENOTFOUND : rc;
}

int store_member_add(store *s, const char *family_id, const char *name, store_role role,
                     const char *avatar, int64_t now_ms, store_member *out)
{
	int existed;
	return store_member_add_once(s, family_id, name, role, avatar, NULL, now_ms, out, &existed);
}

int store_member_add_once(store *s, const char *family_id, const char *name, store_role role,
                          const char *avatar, const char *add_key, int64_t now_ms,
                          store_member *out, int *existed)
{
	/* members_by_add_key (directory step 17) finds it, and makes a second insert of the key
	 * fail rather than add a member twice. */
	static const char sql[] = "SELECT " MEMBER_COLUMNS " FROM members "
	                          "WHERE family_id = ?1 AND add_key = ?2";
	*existed = 0;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	if (check_text(name, STORE_NAME_MAX) < 0 || role < STORE_ROLE_PARENT ||
	    role > STORE_ROLE_CHILD || (avatar && strlen(avatar) >= sizeof out->avatar) ||
	    (add_key && *add_key && check_text(add_key, STORE_ADD_KEY_MAX) < 0))
		return STORE_EINVAL;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = add_key && *add_key ? conn_stmt(c, sql, &rc) : NULL;
	if (rc == 0 && (rc = conn_begin(c)) == 0) {
		/* The key's member looked up and the new one inserted in one transaction: two
		 * retries at once make one member. */
		if (st) {
			sqlite3_bind_text(st, 1, family_id, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, add_key, -1, SQLITE_STATIC);
			int r = sqlite3_step(st);
			if (r == SQLITE_ROW) {
				member_from_row(st, out);
				*existed = 1;
			}
			rc = r == SQLITE_ROW || r == SQLITE_DONE ? 0 : stmt_error(st, r);
			sqlite3_reset(st);
		}
		if (rc == 0 && !*existed)
			rc = member_insert(c, family_id, name, role, avatar, add_key, now_ms, out);
		rc = rc == 0 && !*existed ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	return rc;
}

int store_member_get(store *s, const char *member_id, store_member *out)
{
	static const char sql[] =
	    "SELECT " MEMBER_COLUMNS " FROM members WHERE id = ? AND removed_ms IS NULL";
	if (store_id_check(member_id) < 0)
		return STORE_ENOTFOUND;
	return read_one(s, sql, text_key(member_id), member_from_row, out);
}

int store_member_update(store *s, const char *family_id, const char *member_id, const char *name,
                        const char *avatar, store_member *out)
{
	static const char sql[] = "UPDATE members SET name = coalesce(?1, name), "
	                          "avatar = coalesce(?2, avatar) WHERE id = ?3 AND family_id = ?4 "
	                          "AND removed_ms IS NULL";
	static const char member_sql[] = "SELECT " MEMBER_COLUMNS " FROM members WHERE id = ?";
	if (store_id_check(family_id) < 0 || store_id_check(member_id) < 0)
		return STORE_ENOTFOUND;
	if ((name && check_text(name, STORE_NAME_MAX) < 0) ||
	    (avatar && (strlen(avatar) >= sizeof out->avatar ||
	                (*avatar && check_text(avatar, sizeof out->avatar - 1) < 0))))
		return STORE_EINVAL;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st && (rc = conn_begin(c)) == 0) {
		for (int i = 0; i < 2; i++) {
			const char *v =
			    i == 0 ? name : avatar; /* NULL: keep; "" is an avatar's none */
			if (v)
				sqlite3_bind_text(st, i + 1, v, -1, SQLITE_STATIC);
			else
				sqlite3_bind_null(st, i + 1);
		}
		sqlite3_bind_text(st, 4, family_id, -1, SQLITE_STATIC);
		rc = update_by_id(c, st, 3, member_id); /* not of this family: STORE_ENOTFOUND */
		/* Read back in its transaction: read after, a removal in between answered
		 * not_found for the change made (and the API recorded none). */
		if (rc == 0)
			rc = row_one(c, member_sql, text_key(member_id), member_from_row, out);
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	return rc;
}

int store_member_remove(store *s, const char *family_id, const char *member_id, int64_t now_ms,
                        store_member *out)
{
	/* A parent leaves only while another parent with an active phone stays, checked in the
	 * statement that removes: nobody but a parent pairs a parent's phone, so a parent added
	 * but never paired, left alone, could not sign in, and the family could never be erased,
	 * exported or paired again (as store_device_revoke_keeping_parent keeps the last phone). */
	static const char remove_sql[] =
	    "UPDATE members SET removed_ms = ?1 WHERE id = ?2 AND family_id = ?3 AND "
	    "removed_ms IS NULL AND (role != 'parent' OR EXISTS (SELECT 1 FROM members o JOIN "
	    "devices od ON od.member_id = o.id WHERE o.family_id = ?3 AND o.id != ?2 AND "
	    "o.role = 'parent' AND o.removed_ms IS NULL AND od.kind = 'personal' AND "
	    "od.revoked_ms IS NULL))";
	static const char member_sql[] = "SELECT " MEMBER_COLUMNS " FROM members WHERE id = ?";
	static const char *const after[] = {
	    "UPDATE devices SET revoked_ms = coalesce(revoked_ms, ?1) WHERE member_id = ?2",
	    /* its sessions go with it (ON DELETE CASCADE), the PIN's hash zeroed (secure_delete) */
	    "DELETE FROM kiosk_links WHERE member_id = ?2",
	    /* the codes it asked for (its way back in) and those for a new phone of its */
	    "DELETE FROM pairing_codes WHERE (created_by = ?2 OR member_id = ?2)",
	    /* the PINs it chose for the children's links: it knows them (review finding: an aunt
	     * removed from the family still logged in as the child at school and heard all) */
	    "DELETE FROM kiosk_sessions WHERE link_id IN "
	    "(SELECT id FROM kiosk_links WHERE pin_set_by = ?2)",
	    "UPDATE kiosk_links SET pin_hash = '', pin_set_by = NULL, failures = 0, "
	    "locked_until_ms = 0 WHERE pin_set_by = ?2",
	};
	if (store_id_check(family_id) < 0 || store_id_check(member_id) < 0)
		return STORE_ENOTFOUND;
	int rc = 0;
	bool already = false;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, remove_sql, &rc);
	if (st && (rc = conn_begin(c)) == 0) {
		sqlite3_bind_int64(st, 1, now_ms);
		sqlite3_bind_text(st, 3, family_id, -1, SQLITE_STATIC);
		rc = update_by_id(c, st, 2, member_id);
		/* There and a member: the last parent. There and gone already (a removal sent
		 * again after its answer was lost, two parents at once): its first removal stands,
		 * and is told (1), as a device revoked again is. */
		if (rc == STORE_ENOTFOUND &&
		    row_one(c, member_sql, text_key(member_id), member_from_row, out) == 0 &&
		    strcmp(out->family_id.s, family_id) == 0) {
			already = out->removed_ms != 0;
			rc = already ? 0 : STORE_ELIMIT;
		}
		for (size_t i = 0; rc == 0 && !already && i < sizeof after / sizeof after[0]; i++) {
			if (!(st = conn_stmt(c, after[i], &rc)))
				break;
			sqlite3_bind_int64(st, 1, now_ms);
			sqlite3_bind_text(st, 2, member_id, -1, SQLITE_STATIC);
			rc = step_write(st);
		}
		if (rc == 0 && !already)
			rc = row_one(c, member_sql, text_key(member_id), member_from_row, out);
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	return rc == 0 && already ? 1 : rc;
}

int store_members_list(store *s, const char *family_id, store_member *out, size_t max,
		       size_t *n)
{
	static const char sql[] = "SELECT " MEMBER_COLUMNS " FROM members WHERE family_id = ? "
	                          "AND removed_ms IS NULL ORDER BY created_ms, id";
	*n = 0;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	return read_many(s, sql, family_id, member_from_row, out, sizeof *out, max, n);
}

int store_members_all(store *s, const char *family_id, store_member *out, size_t max, size_t *n)
{
	static const char sql[] =
	    "SELECT " MEMBER_COLUMNS " FROM members WHERE family_id = ? ORDER BY "
	    "removed_ms IS NOT NULL, coalesce(removed_ms, created_ms), id";
	*n = 0;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	return read_many(s, sql, family_id, member_from_row, out, sizeof *out, max, n);
}
