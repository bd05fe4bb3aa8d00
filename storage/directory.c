/*
 * directory.c — devices, pairing codes, schools and kiosks, volunteers and the moderation queue
 * (all in the directory database). Written against store.h; conventions as in store.c.
 *
 * Tokens and pairing codes are stored only as hashes and looked up by them. Reads use a read
 * connection, writes the locked writer. A pairing code is consumed by one conditional UPDATE
 * ... RETURNING, so two consumers can never both win; flag transitions read and update inside
 * one BEGIN IMMEDIATE transaction. A foreign-key failure means a referenced row is missing
 * (STORE_ENOTFOUND); a UNIQUE failure means a token or code hash is taken (STORE_EEXIST).
 */
#include "internal.h"

#include <string.h>

#define REASON_MAX 511 /* bytes of a flag's reason or resolution (store_flag's buffers) */
#define TOUCH_EVERY_MS 60000

/* ---- local helpers (the shared ones are in rows.c) ---- */


static void column_id(sqlite3_stmt *st, int i, store_id *id)
{
	copy_text(id->s, sizeof id->s, sqlite3_column_text(st, i));
}

/* ---- rows to structs (a NULL time reads as 0: "never") ---- */

static const char *const kind_names[] = {NULL, "personal", "kiosk"};
static const char *const flag_state_names[] = {NULL, "open", "claimed", "resolved"};

/* The index of `name` in `names[1..count]`, or 0. */
static int name_index(const char *const *names, int count, const unsigned char *name)
{
	for (int i = 1; name && i <= count; i++)
		if (strcmp((const char *)name, names[i]) == 0)
			return i;
	return 0;
}

#define DEVICE_COLUMNS                                                                             \
	"d.id, d.kind, d.member_id, m.family_id, d.kiosk_id, d.name, d.created_ms, "               \
	"d.last_seen_ms, d.revoked_ms FROM devices d LEFT JOIN members m ON m.id = d.member_id "

static void device_from_row(sqlite3_stmt *st, void *out)
{
	store_device *d = out;
	memset(d, 0, sizeof *d);
	column_id(st, 0, &d->id);
	d->kind = (store_device_kind)name_index(kind_names, 2, sqlite3_column_text(st, 1));
	column_id(st, 2, &d->member_id);
	column_id(st, 3, &d->family_id);
	column_id(st, 4, &d->kiosk_id);
	copy_text(d->name, sizeof d->name, sqlite3_column_text(st, 5));
	d->created_ms = sqlite3_column_int64(st, 6);
	d->last_seen_ms = sqlite3_column_int64(st, 7);
	d->revoked_ms = sqlite3_column_int64(st, 8);
}

#define PAIRING_COLUMNS                                                                            \
	"family_id, role, member_name, kiosk_id, created_ms, expires_ms, member_id, created_by, "  \
	"created_by_device"

/* A code works only while the member who made it is one: one who left (store_member_remove
 * deletes its unused codes) cannot come back with a code made before, or in a race with it. */
#define MAKER_STAYED                                                                               \
	"(created_by IS NULL OR EXISTS (SELECT 1 FROM members WHERE id = created_by AND "          \
	"removed_ms IS NULL)) AND (created_by_device IS NULL OR EXISTS (SELECT 1 FROM devices "    \
	"WHERE id = created_by_device AND revoked_ms IS NULL))"

static void pairing_from_row(sqlite3_stmt *st, void *out)
{
	store_pairing *p = out;
	memset(p, 0, sizeof *p);
	column_id(st, 0, &p->family_id);
	store_role_parse((const char *)sqlite3_column_text(st, 1), &p->role);
	copy_text(p->member_name, sizeof p->member_name, sqlite3_column_text(st, 2));
	column_id(st, 3, &p->kiosk_id);
	p->created_ms = sqlite3_column_int64(st, 4);
	p->expires_ms = sqlite3_column_int64(st, 5);
	column_id(st, 6, &p->member_id);
	column_id(st, 7, &p->created_by);
	column_id(st, 8, &p->created_by_device);
}

static void kiosk_from_row(sqlite3_stmt *st, void *out)
{
	store_kiosk *k = out;
	memset(k, 0, sizeof *k);
	column_id(st, 0, &k->id);
	column_id(st, 1, &k->school_id);
	copy_text(k->name, sizeof k->name, sqlite3_column_text(st, 2));
	k->created_ms = sqlite3_column_int64(st, 3);
}

static void volunteer_from_row(sqlite3_stmt *st, void *out)
{
	store_volunteer *v = out;
	memset(v, 0, sizeof *v);
	column_id(st, 0, &v->id);
	copy_text(v->name, sizeof v->name, sqlite3_column_text(st, 1));
	v->created_ms = sqlite3_column_int64(st, 2);
	v->disabled_ms = sqlite3_column_int64(st, 3);
}

#define FLAG_COLUMNS                                                                               \
	"id, family_id, message_id, reporter_id, reason, state, volunteer_id, resolution, "        \
	"created_ms, updated_ms FROM moderation_queue "

static void flag_from_row(sqlite3_stmt *st, void *out)
{
	store_flag *f = out;
	memset(f, 0, sizeof *f);
	column_id(st, 0, &f->id);
	column_id(st, 1, &f->family_id);
	column_id(st, 2, &f->message_id);
	column_id(st, 3, &f->reporter_id);
	copy_text(f->reason, sizeof f->reason, sqlite3_column_text(st, 4));
	f->state = (store_flag_state)name_index(flag_state_names, 3, sqlite3_column_text(st, 5));
	column_id(st, 6, &f->volunteer_id);
	copy_text(f->resolution, sizeof f->resolution, sqlite3_column_text(st, 7));
	f->created_ms = sqlite3_column_int64(st, 8);
	f->updated_ms = sqlite3_column_int64(st, 9);
}

/* ---- devices ---- */

static const char device_by_id_sql[] = "SELECT " DEVICE_COLUMNS "WHERE d.id = ?";

static int insert_device(conn *c, const uint8_t token_hash[STORE_HASH_LEN], const char *member_id,
                         const char *kiosk_id, const char *name, int64_t now_ms, const store_id *id)
{
	static const char sql[] = "INSERT INTO devices (id, token_hash, kind, member_id, "
	                          "kiosk_id, name, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, id->s, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, token_hash, STORE_HASH_LEN, SQLITE_STATIC);
	bool personal = member_id && *member_id;
	sqlite3_bind_text(st, 3, kind_names[personal ? STORE_DEVICE_PERSONAL : STORE_DEVICE_KIOSK],
	                  -1, SQLITE_STATIC);
	bind_optional(st, 4, member_id);
	bind_optional(st, 5, kiosk_id);
	sqlite3_bind_text(st, 6, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, now_ms);
	return step_write(st);
}

int device_insert(conn *c, const uint8_t token_hash[STORE_HASH_LEN], const char *member_id,
                  const char *kiosk_id, const char *name, int64_t now_ms, store_device *out)
{
	store_id id;
	store_new_id(&id);
	int rc = insert_device(c, token_hash, member_id, kiosk_id, name, now_ms, &id);
	/* Read back in the same transaction: the member's family comes with it. */
	return rc ? rc : row_one(c, device_by_id_sql, text_key(id.s), device_from_row, out);
}

int device_read(conn *c, const char *device_id, store_device *out)
{
	return row_one(c, device_by_id_sql, text_key(device_id), device_from_row, out);
}

static int device_reissue(conn *c, const char *device_id, const uint8_t token_hash[STORE_HASH_LEN],
                          store_family *family, store_member *member, store_device *device)
{
	static const char sql[] = "UPDATE devices SET token_hash = ? WHERE id = ?";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_blob(st, 1, token_hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
	if ((rc = step_write(st)) == 0 && (rc = device_read(c, device_id, device)) == 0 &&
	    (rc = family_read(c, device->family_id.s, family)) == 0)
		rc = member_current(c, family->id.s, device->member_id.s, member);
	return rc;
}

int device_key_again(conn *c, sqlite3_stmt *st, const uint8_t token_hash[STORE_HASH_LEN],
                     store_family *family, store_member *member, store_device *device,
                     device_key *found)
{
	*found = DEVICE_KEY_NONE;
	int r = sqlite3_step(st);
	store_id id = {{0}};
	if (r == SQLITE_ROW) {
		column_id(st, 0, &id);
		*found = !sqlite3_column_int(st, 1)   ? DEVICE_KEY_OTHER
		         : !sqlite3_column_int(st, 2) ? DEVICE_KEY_DONE
		                                      : DEVICE_KEY_AGAIN;
	}
	int rc = r == SQLITE_ROW || r == SQLITE_DONE ? 0 : stmt_error(st, r);
	sqlite3_reset(st);
	if (rc < 0 || *found != DEVICE_KEY_AGAIN)
		return rc;
	return device_reissue(c, id.s, token_hash, family, member, device);
}

static void found(sqlite3_stmt *st, void *out)
{
	(void)st;
	*(bool *)out = true;
}

/* 0 if the member is one (has not left its family), on the writer `c`; STORE_ENOTFOUND if
 * not: a phone of a former member would sign in as nobody's. */
static int member_stays(conn *c, const char *member_id)
{
	bool any = false;
	return row_one(c, "SELECT 1 FROM members WHERE id = ? AND removed_ms IS NULL",
	               text_key(member_id), found, &any);
}

int store_device_add(store *s, const uint8_t token_hash[STORE_HASH_LEN], const char *member_id,
                     const char *kiosk_id, const char *name, int64_t now_ms, store_device *out)
{
	bool personal = member_id && *member_id, at_kiosk = kiosk_id && *kiosk_id;
	if (!token_hash || personal == at_kiosk || check_text(name, STORE_NAME_MAX) < 0)
		return STORE_EINVAL;
	if (store_id_check(personal ? member_id : kiosk_id) < 0)
		return STORE_ENOTFOUND;
	conn *c = db_write_begin(s->directory);
	int rc = conn_begin(c);
	if (rc == 0) {
		if ((!personal || (rc = member_stays(c, member_id)) == 0) &&
		    (rc = device_insert(c, token_hash, member_id, kiosk_id, name, now_ms, out)) ==
		        0)
			rc = conn_commit(c);
		else
			conn_rollback(c);
	}
	db_write_end(s->directory);
	return rc;
}

int store_device_by_token(store *s, const uint8_t token_hash[STORE_HASH_LEN], store_device *out)
{
	static const char sql[] =
	    "SELECT " DEVICE_COLUMNS "WHERE d.token_hash = ? AND d.revoked_ms IS NULL";
	if (!token_hash)
		return STORE_EINVAL;
	return read_one(s, sql, hash_key(token_hash), device_from_row, out);
}

int store_device_get(store *s, const char *device_id, store_device *out)
{
	if (store_id_check(device_id) < 0)
		return STORE_ENOTFOUND;
	return read_one(s, device_by_id_sql, text_key(device_id), device_from_row, out);
}

int store_devices_list(store *s, const char *family_id, store_device *out, size_t max, size_t *n)
{
	static const char sql[] =
	    "SELECT " DEVICE_COLUMNS "WHERE m.family_id = ? ORDER BY d.created_ms, d.id";
	*n = 0;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	return read_many(s, sql, family_id, device_from_row, out, sizeof *out, max, n);
}

int store_devices_active(store *s, const char *family_id, store_device *out, size_t max, size_t *n)
{
	static const char sql[] = "SELECT " DEVICE_COLUMNS "WHERE m.family_id = ? AND "
	                          "d.revoked_ms IS NULL ORDER BY d.created_ms, d.id";
	*n = 0;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	return read_many(s, sql, family_id, device_from_row, out, sizeof *out, max, n);
}

/* 0 if a device has the id, on the writer `c` (an UPDATE that changed nothing: no such
 * device, or nothing to change); STORE_ENOTFOUND if none. */
static int device_exists(conn *c, const char *device_id)
{
	bool any = false;
	return row_one(c, "SELECT 1 FROM devices WHERE id = ?", text_key(device_id), found, &any);
}

/* Revoke a device; keep_parent: not the family's last parent phone (STORE_ELIMIT), checked in
 * the statement that revokes, on the writer, so of two parents revoking each other's only phones
 * at once the second finds the first's revoked and is refused. */
static int device_revoke(store *s, const char *device_id, int64_t now_ms, bool keep_parent)
{
	/* Revoking again keeps the first time, and says so (1), in the transaction that would
	 * have revoked it: of two revocations at once, one is told it revoked the device. The
	 * unused pairing codes the device made go with it (they would work for nobody:
	 * MAKER_STAYED), and so do a kiosk tablet's unused codes: a stolen tablet's would pair
	 * children to the kiosk for their minutes, and count toward its bound meanwhile
	 * (directory step 16). */
	static const char sql[] = "UPDATE devices SET revoked_ms = ? WHERE id = ? AND "
	                          "revoked_ms IS NULL";
	/* A parent's phone (a personal device of a parent still a member) goes only while
	 * another parent's phone of the family stays active. */
	static const char keep_sql[] =
	    "UPDATE devices SET revoked_ms = ?1 WHERE id = ?2 AND revoked_ms IS NULL AND NOT "
	    "EXISTS (SELECT 1 FROM members m WHERE m.id = devices.member_id AND "
	    "m.role = 'parent' AND m.removed_ms IS NULL AND NOT EXISTS (SELECT 1 FROM members "
	    "o JOIN devices od ON od.member_id = o.id WHERE o.family_id = m.family_id AND "
	    "o.role = 'parent' AND o.removed_ms IS NULL AND od.kind = 'personal' AND "
	    "od.revoked_ms IS NULL AND od.id != ?2))";
	static const char revoked_sql[] =
	    "SELECT 1 FROM devices WHERE id = ? AND revoked_ms IS NOT NULL";
	static const char *const codes_sql[] = {
	    "DELETE FROM pairing_codes WHERE used_ms IS NULL AND created_by_device = ?",
	    "DELETE FROM kiosk_codes WHERE used_ms IS NULL AND created_by_device = ?",
	};
	if (store_id_check(device_id) < 0)
		return STORE_ENOTFOUND;
	int rc = 0;
	bool already = false;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, keep_parent ? keep_sql : sql, &rc);
	if (st && (rc = conn_begin(c)) == 0) {
		sqlite3_bind_int64(st, 1, now_ms);
		rc = update_by_id(c, st, 2, device_id);
		if (rc == STORE_ENOTFOUND && (rc = device_exists(c, device_id)) == 0) {
			/* revoked already, or (keep_parent) the family's last parent phone */
			rc = row_one(c, revoked_sql, text_key(device_id), found, &already);
			if (rc == STORE_ENOTFOUND)
				rc = STORE_ELIMIT;
		}
		for (size_t i = 0; rc == 0 && i < sizeof codes_sql / sizeof *codes_sql; i++) {
			if ((st = conn_stmt(c, codes_sql[i], &rc))) {
				sqlite3_bind_text(st, 1, device_id, -1, SQLITE_STATIC);
				rc = step_write(st);
			}
		}
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	return rc == 0 && already ? 1 : rc;
}

int store_device_revoke(store *s, const char *device_id, int64_t now_ms)
{
	return device_revoke(s, device_id, now_ms, false);
}

int store_device_revoke_keeping_parent(store *s, const char *device_id, int64_t now_ms)
{
	return device_revoke(s, device_id, now_ms, true);
}

int store_device_touch(store *s, const char *device_id, int64_t now_ms)
{
	/* The WHERE clause does the throttling: a recent last_seen matches nothing, writes
	 * nothing. Only then is the device looked for, to tell "throttled" from "unknown". */
	static const char sql[] = "UPDATE devices SET last_seen_ms = ?1 WHERE id = ?2 AND "
	                          "(last_seen_ms IS NULL OR last_seen_ms < ?1 - ?3)";
	if (store_id_check(device_id) < 0)
		return STORE_ENOTFOUND;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_int64(st, 1, now_ms);
		sqlite3_bind_int64(st, 3, TOUCH_EVERY_MS);
		rc = update_by_id(c, st, 2, device_id);
		if (rc == STORE_ENOTFOUND)
			rc = device_exists(c, device_id);
	}
	db_write_end(s->directory);
	return rc;
}

/* ---- pairing codes ---- */

static int pairing_insert(sqlite3_stmt *st, const uint8_t code_hash[STORE_HASH_LEN],
                          const store_pairing *p)
{
	sqlite3_bind_blob(st, 1, code_hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, p->family_id.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, store_role_name(p->role), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, p->member_name, -1, SQLITE_STATIC);
	bind_optional(st, 5, p->kiosk_id.s);
	sqlite3_bind_int64(st, 6, p->created_ms);
	sqlite3_bind_int64(st, 7, p->expires_ms);
	bind_optional(st, 8, p->member_id.s);
	bind_optional(st, 9, p->created_by.s);
	bind_optional(st, 10, p->created_by_device.s);
	return step_write(st); /* an unknown member fails the foreign key: STORE_ENOTFOUND */
}

/*
 * Expired codes, used or not, that a new code's transaction deletes. Nothing else removes them
 * (a code lives minutes; its row stayed for ever, one a code ever made): the dead go as new
 * ones come, a batch at a time, so that a table grown large before is emptied over many codes,
 * never in one long hold of the writer (a million rows took 24 s to delete).
 */
#define PAIRING_SWEEP 100

/* A code made further ahead of now than threads lag each other: by a clock set back since (a
 * minute, as kiosk.c and the upload ledger take it). */
#define PAIRING_CLOCK_SET_BACK_MS 60000

/*
 * A family's live codes (unused, unexpired, a phone's) at now: how many, and the first to
 * expire (0: none). Not those made by a clock set back since (a wrong time put right): they
 * kept the family at its bound, and Retry-After at their expiry, for as long as the clock had
 * been ahead and a code's life on (an hour ahead: 70 minutes, where a code lives 10). They
 * still pair until they expire. Nor those whose maker is gone (MAKER_STAYED): a code stored in
 * a race with its phone's revocation, or its member's removal, pairs nobody, and held a place
 * for its 10 minutes, where the revocation promises the others may ask at once.
 */
static int pairing_live(conn *c, const char *family_id, int64_t now_ms, unsigned *n,
                        int64_t *first_expiry_ms)
{
	static const char sql[] =
	    "SELECT count(*), coalesce(min(expires_ms), 0) FROM pairing_codes "
	    "WHERE family_id = ?1 AND kiosk_id IS NULL AND used_ms IS NULL AND "
	    "expires_ms > ?2 AND created_ms <= ?3 AND " MAKER_STAYED;
	return count_and_first(c, sql, family_id, now_ms, now_ms + PAIRING_CLOCK_SET_BACK_MS, n,
	                       first_expiry_ms);
}

int store_pairing_create(store *s, const uint8_t code_hash[STORE_HASH_LEN], const store_pairing *p)
{
	return store_pairing_create_bounded(s, code_hash, p, 0, NULL);
}

int store_pairing_create_bounded(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                                 const store_pairing *p, unsigned live_max,
                                 int64_t *first_expiry_ms)
{
	static const char sweep_sql[] =
	    "DELETE FROM pairing_codes WHERE code_hash IN (SELECT code_hash FROM pairing_codes "
	    "WHERE expires_ms <= ?1 LIMIT ?2)";
	static const char sql[] = "INSERT INTO pairing_codes (code_hash, family_id, role, "
	                          "member_name, kiosk_id, created_ms, expires_ms, member_id, "
	                          "created_by, created_by_device) "
	                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	if (!code_hash || !p || p->role < STORE_ROLE_PARENT || p->role > STORE_ROLE_CHILD ||
	    strnlen(p->member_name, sizeof p->member_name) > STORE_NAME_MAX ||
	    p->expires_ms <= p->created_ms)
		return STORE_EINVAL;
	if (*p->kiosk_id.s && *p->member_id.s)
		return STORE_EINVAL; /* a kiosk's code names no member */
	if (store_id_check(p->family_id.s) < 0 ||
	    (*p->kiosk_id.s && store_id_check(p->kiosk_id.s) < 0) ||
	    (*p->member_id.s && store_id_check(p->member_id.s) < 0) ||
	    (*p->created_by.s && store_id_check(p->created_by.s) < 0) ||
	    (*p->created_by_device.s && store_id_check(p->created_by_device.s) < 0))
		return STORE_ENOTFOUND;
	conn *c = db_write_begin(s->directory);
	int rc = conn_begin(c);
	if (rc == 0) {
		sqlite3_stmt *st = conn_stmt(c, sweep_sql, &rc);
		if (st) { /* consume refuses a code at its expires_ms: one expiring now is dead */
			sqlite3_bind_int64(st, 1, p->created_ms);
			sqlite3_bind_int(st, 2, PAIRING_SWEEP);
			rc = step_write(st);
		}
		/* The member a code names is one of its family's as the code is stored: one who
		 * left since the caller looked (its codes went with it) gets none, where the code
		 * was stored, could pair nobody and held a live place for its minutes. */
		store_member named;
		if (rc == 0 && *p->member_id.s)
			rc = member_current(c, p->family_id.s, p->member_id.s, &named);
		/* Counted in the transaction that stores: codes asked for at once get no more. */
		unsigned live = 0;
		int64_t first = 0;
		if (rc == 0 && live_max && !*p->kiosk_id.s &&
		    (rc = pairing_live(c, p->family_id.s, p->created_ms, &live, &first)) == 0 &&
		    live >= live_max) {
			if (first_expiry_ms)
				*first_expiry_ms = first;
			rc = STORE_ELIMIT;
		}
		if (rc == 0 && (st = conn_stmt(c, sql, &rc)))
			rc = pairing_insert(st, code_hash, p);
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	return rc;
}

/*
 * Run a "mark used ... RETURNING" statement: of two callers, the second finds used_ms set.
 * The code is used only when the statement completes (inside the caller's transaction, if any).
 */
static int use_code(conn *c, const char *sql, const uint8_t code_hash[STORE_HASH_LEN],
                    int64_t now_ms, store_pairing *out)
{
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_int64(st, 1, now_ms);
	sqlite3_bind_blob(st, 2, code_hash, STORE_HASH_LEN, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		pairing_from_row(st, out);
		rc = step_write(st);
	} else {
		rc = r == SQLITE_DONE ? STORE_ENOTFOUND : stmt_error(st, r);
	}
	sqlite3_reset(st);
	return rc;
}

int store_pairing_consume(store *s, const uint8_t code_hash[STORE_HASH_LEN], int64_t now_ms,
                          store_pairing *out)
{
	static const char sql[] = "UPDATE pairing_codes SET used_ms = ?1 WHERE code_hash = ?2 "
	                          "AND used_ms IS NULL AND expires_ms > ?1 AND " MAKER_STAYED
	                          " RETURNING " PAIRING_COLUMNS;
	if (!code_hash)
		return STORE_EINVAL;
	conn *c = db_write_begin(s->directory);
	int rc = use_code(c, sql, code_hash, now_ms, out);
	db_write_end(s->directory);
	return rc;
}

/* For a code naming a member: the member (still one of its family), its phones revoked, and
 * the unused codes that could take the member over again go: its other codes for a new phone
 * and those its old phones made (a thief's, made on a stolen phone). */
static int member_phone_replaced(conn *c, const store_pairing *p, int64_t now_ms,
                                 store_member *member)
{
	static const char *const sql[] = {
	    "UPDATE devices SET revoked_ms = ?1 WHERE member_id = ?2 AND revoked_ms IS NULL",
	    "DELETE FROM pairing_codes WHERE used_ms IS NULL AND (member_id = ?2 OR "
	    "created_by_device IN (SELECT id FROM devices WHERE member_id = ?2))",
	};
	int rc = member_current(c, p->family_id.s, p->member_id.s, member);
	for (size_t i = 0; rc == 0 && i < sizeof sql / sizeof sql[0]; i++) {
		sqlite3_stmt *st = conn_stmt(c, sql[i], &rc);
		if (!st)
			break;
		sqlite3_bind_int64(st, 1, now_ms);
		sqlite3_bind_text(st, 2, member->id.s, -1, SQLITE_STATIC);
		rc = step_write(st);
	}
	return rc;
}

/*
 * The phones paired into a family after since_ms: devices of its members, revoked since or not
 * (a loop revokes each phone it replaces), but not the one the family was made on (its row has
 * the family's created_ms: only that one, as a family made while the clock was ahead, a wrong
 * time put right since, pairs phones dated before it, and leaving out all those left it
 * unbounded for as long as the clock had been ahead). How many, and the first (0: none). A row
 * dated up to a minute after now_ms counts: pairings sent at once read the clock before they wait
 * for the writer, so the one counting may be a few ms behind the one it follows (rows up to now_ms
 * let three of four such pairings through where two had room). A row further ahead is left out: a
 * clock since set back (a wrong time put right) would shut the family out until it caught up.
 */
static int family_pairings(conn *c, const char *family_id, int64_t since_ms, int64_t now_ms,
                           unsigned *n, int64_t *first_ms)
{
	static const char sql[] =
	    "SELECT count(*), coalesce(min(d.created_ms), 0) FROM members m "
	    "JOIN devices d ON d.member_id = m.id JOIN families f ON f.id = m.family_id "
	    "WHERE m.family_id = ?1 AND d.created_ms > ?2 AND d.created_ms <= ?3 AND "
	    "d.created_ms != f.created_ms";
	return count_and_first(c, sql, family_id, since_ms, now_ms + PAIRING_CLOCK_SET_BACK_MS, n,
	                       first_ms);
}

int store_family_pairings(store *s, const char *family_id, int64_t now_ms, unsigned *n,
                          int64_t *first_ms)
{
	*n = 0;
	*first_ms = 0;
	if (store_id_check(family_id) < 0)
		return STORE_ENOTFOUND;
	conn *c;
	int rc = db_read_begin(s->directory, &c);
	if (rc < 0)
		return rc;
	rc = family_pairings(c, family_id, now_ms - STORE_PAIRING_HOUR_MS, now_ms, n, first_ms);
	db_read_end(s->directory, c);
	return rc;
}

int store_pairing_redeem(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                         const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
                         int64_t now_ms, store_pairing *p, store_member *member,
                         store_device *device)
{
	return store_pairing_redeem_bounded(s, code_hash, token_hash, device_name, now_ms, 0, NULL,
	                                    p, member, device, NULL);
}

/* A pairing's Idempotency-Key (its hash) and what a call with it did (store_pairing_redeem_keyed).
 */
typedef struct pair_key {
	const uint8_t *hash;
	store_pair_keyed *done;
} pair_key;

/*
 * Inside the caller's write transaction: the pairing k's key made, if any (*k->done left 0 when
 * none). With the same code and device name, its device never used nor revoked, its member
 * still one and the code unexpired: the three, the device's token hash replaced by token_hash.
 */
static int pairing_again(conn *c, const pair_key *k, const uint8_t code_hash[STORE_HASH_LEN],
                         const char *device_name, const uint8_t token_hash[STORE_HASH_LEN],
                         int64_t now_ms, store_family *family, store_member *member,
                         store_device *device)
{
	static const char sql[] =
	    "SELECT d.id, d.pair_code IS ?2 AND d.name = ?3, d.last_seen_ms IS NULL AND "
	    "d.revoked_ms IS NULL AND m.removed_ms IS NULL AND EXISTS (SELECT 1 FROM "
	    "pairing_codes WHERE code_hash = ?2 AND used_ms IS NOT NULL AND expires_ms > ?4) "
	    "FROM devices d JOIN members m ON m.id = d.member_id WHERE d.signup_key = ?1";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_blob(st, 1, k->hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, code_hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, device_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_ms);
	device_key found;
	rc = device_key_again(c, st, token_hash, family, member, device, &found);
	if (found != DEVICE_KEY_NONE)
		*k->done = found == DEVICE_KEY_OTHER  ? STORE_PAIR_OTHER
		           : found == DEVICE_KEY_DONE ? STORE_PAIR_DONE
		                                      : STORE_PAIR_AGAIN;
	return rc;
}

/* The new device keeps the pairing's key and code (directory step 19), in its transaction. */
static int pair_key_keep(conn *c, const pair_key *k, const uint8_t code_hash[STORE_HASH_LEN],
                         const store_device *device)
{
	static const char sql[] = "UPDATE devices SET signup_key = ?, pair_code = ? WHERE id = ?";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_blob(st, 1, k->hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, code_hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, device->id.s, -1, SQLITE_STATIC);
	if ((rc = step_write(st)) == 0)
		*k->done = STORE_PAIR_MADE;
	return rc;
}

/* The pairing, with a key (k not NULL): the pairing that key made instead when there is one,
 * looked up in the transaction that would pair (*k->done says which). */
static int pairing_redeem(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                          const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
                          const pair_key *k, int64_t now_ms, unsigned hour_max, int64_t *first_ms,
                          store_pairing *p, store_member *member, store_device *device,
                          store_family *family)
{
	static const char sql[] =
	    "UPDATE pairing_codes SET used_ms = ?1 WHERE code_hash = ?2 "
	    "AND used_ms IS NULL AND expires_ms > ?1 AND kiosk_id IS NULL AND " MAKER_STAYED
	    " RETURNING " PAIRING_COLUMNS;
	if (!code_hash || !token_hash || check_text(device_name, STORE_NAME_MAX) < 0)
		return STORE_EINVAL;
	conn *c = db_write_begin(s->directory);
	int rc = conn_begin(c);
	if (rc == 0) {
		if (k) /* a retry: neither the code's use nor the hour's count is looked at */
			rc = pairing_again(c, k, code_hash, device_name, token_hash, now_ms, family,
			                   member, device);
		if (rc == 0 && (!k || !*k->done)) {
			rc = use_code(c, sql, code_hash, now_ms, p);
			/* Counted in the transaction that pairs: phones paired at once get no more.
			 */
			unsigned paired = 0;
			int64_t first = 0;
			if (rc == 0 && hour_max &&
			    (rc = family_pairings(c, p->family_id.s, now_ms - STORE_PAIRING_HOUR_MS,
			                          now_ms, &paired, &first)) == 0 &&
			    paired >= hour_max) {
				if (first_ms)
					*first_ms = first;
				rc = STORE_ELIMIT;
			}
			/* The code, the member it names and this device: all, or the code stays
			 * unused. */
			if (rc == 0 && !*p->member_id.s)
				rc = member_insert(c, p->family_id.s, p->member_name, p->role, NULL,
				                   NULL, now_ms, member);
			else if (rc == 0) /* a member's new phone, instead of the ones it had */
				rc = member_phone_replaced(c, p, now_ms, member);
			if (rc == 0)
				rc = device_insert(c, token_hash, member->id.s, NULL, device_name,
				                   now_ms, device);
			if (rc == 0 && k)
				rc = pair_key_keep(c, k, code_hash, device);
			/* What the phone is told, read before the commit: a read after it that
			 * failed left a device nobody holds and the code used (review finding). */
			if (rc == 0 && family)
				rc = family_read(c, p->family_id.s, family);
		}
		/* A retry's new token is kept; a key of another pairing, or of one done, changes
		 * nothing. */
		bool keep = !k || *k->done == STORE_PAIR_MADE || *k->done == STORE_PAIR_AGAIN;
		if (rc == 0 && keep)
			rc = conn_commit(c);
		else
			conn_rollback(c);
	}
	db_write_end(s->directory);
	return rc;
}

int store_pairing_redeem_bounded(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                                 const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
                                 int64_t now_ms, unsigned hour_max, int64_t *first_ms,
                                 store_pairing *p, store_member *member, store_device *device,
                                 store_family *family)
{
	return pairing_redeem(s, code_hash, token_hash, device_name, NULL, now_ms, hour_max,
	                      first_ms, p, member, device, family);
}

int store_pairing_redeem_keyed(store *s, const uint8_t code_hash[STORE_HASH_LEN],
                               const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
                               const uint8_t key_hash[STORE_HASH_LEN], int64_t now_ms,
                               unsigned hour_max, int64_t *first_ms, store_pairing *p,
                               store_member *member, store_device *device, store_family *family,
                               store_pair_keyed *done)
{
	*done = 0;
	if (!key_hash || !p || !member || !device || !family)
		return STORE_EINVAL;
	memset(p, 0, sizeof *p);
	pair_key k = {key_hash, done};
	return pairing_redeem(s, code_hash, token_hash, device_name, &k, now_ms, hour_max, first_ms,
	                      p, member, device, family);
}

int store_pairing_expire(store *s, int64_t now_ms, unsigned *removed)
{
	/* Consume refuses a code at its expires_ms, so a code expiring at now_ms goes too. */
	static const char sql[] = "DELETE FROM pairing_codes WHERE expires_ms <= ?";
	int rc = 0;
	if (removed)
		*removed = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_int64(st, 1, now_ms);
		if ((rc = step_write(st)) == 0 && removed)
			*removed = (unsigned)sqlite3_changes(c->db);
	}
	db_write_end(s->directory);
	return rc;
}

/* ---- schools and kiosks ---- */

int store_school_add(store *s, const char *name, int64_t now_ms, store_school *out)
{
	static const char sql[] = "INSERT INTO schools (id, name, created_ms) VALUES (?, ?, ?)";
	if (check_text(name, STORE_NAME_MAX) < 0)
		return STORE_EINVAL;
	store_school *school = out;
	memset(school, 0, sizeof *school);
	store_new_id(&school->id);
	copy_text(school->name, sizeof school->name, (const unsigned char *)name);
	school->created_ms = now_ms;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_text(st, 1, school->id.s, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now_ms);
		rc = step_write(st);
	}
	db_write_end(s->directory);
	return rc;
}

static void school_from_row(sqlite3_stmt *st, void *out)
{
	store_school *sc = out;
	memset(sc, 0, sizeof *sc);
	column_id(st, 0, &sc->id);
	copy_text(sc->name, sizeof sc->name, sqlite3_column_text(st, 1));
	sc->created_ms = sqlite3_column_int64(st, 2);
}

/* Insert a kiosk on connection c (the caller holds the writer); *out filled. */
static int kiosk_insert(conn *c, const char *school_id, const char *name, int64_t now_ms,
                        store_kiosk *out)
{
	static const char sql[] = "INSERT INTO kiosks (id, school_id, name, created_ms) "
	                          "VALUES (?, ?, ?, ?)";
	memset(out, 0, sizeof *out);
	store_new_id(&out->id);
	memcpy(out->school_id.s, school_id, STORE_ID_LEN + 1);
	copy_text(out->name, sizeof out->name, (const unsigned char *)name);
	out->created_ms = now_ms;
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, out->id.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, school_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_ms);
	return step_write(st); /* an unknown school fails the foreign key: ENOTFOUND */
}

int store_kiosk_add(store *s, const char *school_id, const char *name, int64_t now_ms,
                    store_kiosk *out)
{
	if (store_id_check(school_id) < 0)
		return STORE_ENOTFOUND;
	if (check_text(name, STORE_NAME_MAX) < 0)
		return STORE_EINVAL;
	conn *c = db_write_begin(s->directory);
	int rc = kiosk_insert(c, school_id, name, now_ms, out);
	db_write_end(s->directory);
	return rc;
}

int store_kiosk_add_with_device(store *s, const char *school_id, const char *name,
                                const uint8_t token_hash[STORE_HASH_LEN], const char *device_name,
                                int64_t now_ms, store_kiosk *kiosk, store_device *device)
{
	if (store_id_check(school_id) < 0)
		return STORE_ENOTFOUND;
	if (!token_hash || check_text(name, STORE_NAME_MAX) < 0 ||
	    check_text(device_name, STORE_NAME_MAX) < 0)
		return STORE_EINVAL;
	conn *c = db_write_begin(s->directory);
	int rc = conn_begin(c);
	if (rc == 0) {
		rc = kiosk_insert(c, school_id, name, now_ms, kiosk);
		if (rc == 0)
			rc = device_insert(c, token_hash, NULL, kiosk->id.s, device_name, now_ms,
			                   device);
		if (rc == 0)
			rc = conn_commit(c);
		else
			conn_rollback(c);
	}
	db_write_end(s->directory);
	return rc;
}

int store_school_get(store *s, const char *school_id, store_school *out)
{
	static const char sql[] = "SELECT id, name, created_ms FROM schools WHERE id = ?";
	if (store_id_check(school_id) < 0)
		return STORE_ENOTFOUND;
	return read_one(s, sql, text_key(school_id), school_from_row, out);
}

int store_kiosk_get(store *s, const char *kiosk_id, store_kiosk *out)
{
	static const char sql[] = "SELECT id, school_id, name, created_ms FROM kiosks WHERE id = ?";
	if (store_id_check(kiosk_id) < 0)
		return STORE_ENOTFOUND;
	return read_one(s, sql, text_key(kiosk_id), kiosk_from_row, out);
}


int store_schools_list(store *s, store_school *out, size_t max, size_t *n)
{
	/* The parameter is a dummy (read_many binds one): '' matches every id. */
	static const char sql[] = "SELECT id, name, created_ms FROM schools WHERE id > ? "
	                          "ORDER BY created_ms, id";
	return read_many(s, sql, "", school_from_row, out, sizeof *out, max, n);
}

int store_kiosks_list(store *s, const char *school_id, store_kiosk *out, size_t max, size_t *n)
{
	static const char all[] = "SELECT id, school_id, name, created_ms FROM kiosks "
	                          "WHERE id > ? ORDER BY created_ms, id";
	static const char one[] = "SELECT id, school_id, name, created_ms FROM kiosks "
	                          "WHERE school_id = ? ORDER BY created_ms, id";
	*n = 0;
	if (school_id && store_id_check(school_id) < 0)
		return STORE_ENOTFOUND;
	return read_many(s, school_id ? one : all, school_id ? school_id : "", kiosk_from_row, out,
	                 sizeof *out, max, n);
}

int store_kiosk_devices(store *s, const char *kiosk_id, store_device *out, size_t max, size_t *n)
{
	static const char sql[] =
	    "SELECT " DEVICE_COLUMNS "WHERE d.kiosk_id = ? ORDER BY d.created_ms, d.id";
	*n = 0;
	if (store_id_check(kiosk_id) < 0)
		return STORE_ENOTFOUND;
	return read_many(s, sql, kiosk_id, device_from_row, out, sizeof *out, max, n);
}

/* ---- volunteers ---- */

int store_volunteer_add(store *s, const char *name, const uint8_t token_hash[STORE_HASH_LEN],
                        int64_t now_ms, store_volunteer *out)
{
	static const char sql[] = "INSERT INTO volunteers (id, name, token_hash, created_ms) "
	                          "VALUES (?, ?, ?, ?)";
	if (check_text(name, STORE_NAME_MAX) < 0 || !token_hash)
		return STORE_EINVAL;
	store_volunteer *v = out;
	memset(v, 0, sizeof *v);
	store_new_id(&v->id);
	copy_text(v->name, sizeof v->name, (const unsigned char *)name);
	v->created_ms = now_ms;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_text(st, 1, v->id.s, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 3, token_hash, STORE_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, now_ms);
		rc = step_write(st);
	}
	db_write_end(s->directory);
	return rc;
}

int store_volunteer_by_token(store *s, const uint8_t token_hash[STORE_HASH_LEN],
                             store_volunteer *out)
{
	static const char sql[] = "SELECT id, name, created_ms, disabled_ms FROM volunteers "
	                          "WHERE token_hash = ? AND disabled_ms IS NULL";
	if (!token_hash)
		return STORE_EINVAL;
	return read_one(s, sql, hash_key(token_hash), volunteer_from_row, out);
}

int store_volunteer_disable(store *s, const char *volunteer_id, int64_t now_ms)
{
	/* The flags it holds are given back, in its transaction: it can resolve them no more,
	 * and while they were claimed nobody else could claim them (a report waited for ever). */
	static const char sql[] =
	    "UPDATE volunteers SET disabled_ms = coalesce(disabled_ms, ?) WHERE id = ?";
	static const char release_sql[] =
	    "UPDATE moderation_queue SET state = 'open', volunteer_id = NULL, updated_ms = ?1 "
	    "WHERE state = 'claimed' AND volunteer_id = ?2";
	if (store_id_check(volunteer_id) < 0)
		return STORE_ENOTFOUND;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st && (rc = conn_begin(c)) == 0) {
		sqlite3_bind_int64(st, 1, now_ms);
		rc = update_by_id(c, st, 2, volunteer_id);
		if (rc == 0 && (st = conn_stmt(c, release_sql, &rc))) {
			sqlite3_bind_int64(st, 1, now_ms);
			sqlite3_bind_text(st, 2, volunteer_id, -1, SQLITE_STATIC);
			rc = step_write(st);
		}
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	return rc;
}

/* ---- the moderation queue ---- */

/* The reporter's own flag of the message, still waiting for (or with) a volunteer. */
static const char flag_pending_sql[] = "SELECT " FLAG_COLUMNS "WHERE family_id = ? AND "
                                       "message_id = ? AND reporter_id = ? AND state != 'resolved'";

/* Its row in *f and *found, or nothing found; 0 or a storage code. */
static int flag_pending(conn *c, const char *family_id, const char *message_id,
                        const char *reporter_id, store_flag *f, bool *found)
{
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, flag_pending_sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, family_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, message_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, reporter_id, -1, SQLITE_STATIC);
	int step = sqlite3_step(st);
	*found = step == SQLITE_ROW;
	if (*found)
		flag_from_row(st, f);
	else if (step != SQLITE_DONE)
		rc = stmt_error(st, step);
	sqlite3_reset(st);
	return rc;
}

int store_flag_pending(store *s, const char *family_id, const char *message_id,
                       const char *reporter_id, store_flag *out)
{
	if (store_id_check(family_id) < 0 || store_id_check(message_id) < 0 || !reporter_id ||
	    store_id_check(reporter_id) < 0)
		return STORE_ENOTFOUND;
	conn *c;
	bool found = false;
	int rc = db_read_begin(s->directory, &c);
	if (rc < 0)
		return rc;
	rc = flag_pending(c, family_id, message_id, reporter_id, out, &found);
	db_read_end(s->directory, c);
	return rc < 0 ? rc : found ? 0 : STORE_ENOTFOUND;
}

int store_flag_add(store *s, const char *family_id, const char *message_id, const char *reporter_id,
                   const char *reason, int64_t now_ms, store_flag *out, bool *existed)
{
	static const char sql[] = "INSERT INTO moderation_queue (id, family_id, message_id, "
	                          "reporter_id, reason, state, created_ms, updated_ms) "
	                          "VALUES (?, ?, ?, ?, ?, 'open', ?, ?)";
	bool dummy;
	if (!existed)
		existed = &dummy;
	*existed = false;
	if (store_id_check(family_id) < 0 || store_id_check(message_id) < 0 ||
	    (reporter_id && *reporter_id && store_id_check(reporter_id) < 0))
		return STORE_ENOTFOUND;
	if (check_text(reason, REASON_MAX) < 0)
		return STORE_EINVAL;
	store_flag *f = out;
	memset(f, 0, sizeof *f);
	store_new_id(&f->id);
	memcpy(f->family_id.s, family_id, STORE_ID_LEN + 1);
	memcpy(f->message_id.s, message_id, STORE_ID_LEN + 1);
	if (reporter_id && *reporter_id)
		memcpy(f->reporter_id.s, reporter_id, STORE_ID_LEN + 1);
	copy_text(f->reason, sizeof f->reason, (const unsigned char *)reason);
	f->state = STORE_FLAG_OPEN;
	f->created_ms = f->updated_ms = now_ms;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	if ((rc = conn_begin(c)) < 0)
		goto done;
	sqlite3_stmt *st;
	if (reporter_id && *reporter_id) {
		/* Flagging again while the first flag waits is the same flag: one member cannot
		 * fill the volunteers' queue with one message. */
		if ((rc = flag_pending(c, family_id, message_id, reporter_id, f, existed)) < 0 ||
		    *existed)
			goto abort; /* nothing written */
	}
	if (!(st = conn_stmt(c, sql, &rc)))
		goto abort;
	sqlite3_bind_text(st, 1, f->id.s, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, family_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, message_id, -1, SQLITE_STATIC);
	bind_optional(st, 4, reporter_id);
	sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now_ms);
	sqlite3_bind_int64(st, 7, now_ms);
	/* An unknown family fails the foreign key: ENOTFOUND. */
	if ((rc = step_write(st)) == 0 && (rc = conn_commit(c)) == 0)
		goto done;
abort:
	conn_rollback(c);
done:
	db_write_end(s->directory);
	return rc;
}

int store_flags_list(store *s, store_flag_state state, store_flag *out, size_t max, size_t *n)
{
	static const char sql[] = "SELECT " FLAG_COLUMNS "WHERE state = ? ORDER BY created_ms, id";
	*n = 0;
	if (state < STORE_FLAG_OPEN || state > STORE_FLAG_RESOLVED)
		return STORE_EINVAL;
	return read_many(s, sql, flag_state_names[state], flag_from_row, out, sizeof *out, max, n);
}

int store_flag_get(store *s, const char *flag_id, store_flag *out)
{
	static const char sql[] = "SELECT " FLAG_COLUMNS "WHERE id = ?";
	if (store_id_check(flag_id) < 0)
		return STORE_ENOTFOUND;
	return read_one(s, sql, text_key(flag_id), flag_from_row, out);
}

/* Whether `volunteer_id` may move flag `f` to `to`: 0 (and *write) or STORE_EEXIST. */
static int flag_decide(const store_flag *f, const char *volunteer_id, store_flag_state to,
                       bool *write)
{
	bool holder =
	    f->state == STORE_FLAG_CLAIMED && strcmp(f->volunteer_id.s, volunteer_id) == 0;
	*write = to == STORE_FLAG_CLAIMED ? f->state == STORE_FLAG_OPEN : holder;
	/* Claiming what you hold already is fine and changes nothing. */
	return *write || (to == STORE_FLAG_CLAIMED && holder) ? 0 : STORE_EEXIST;
}

static int flag_update(conn *c, const char *flag_id, const char *volunteer_id, store_flag_state to,
                       const char *resolution, int64_t now_ms)
{
	static const char sql[] = "UPDATE moderation_queue SET state = ?, volunteer_id = ?, "
	                          "resolution = ?, updated_ms = ? WHERE id = ?";
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, flag_state_names[to], -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, volunteer_id, -1, SQLITE_STATIC);
	bind_optional(st, 3, resolution);
	sqlite3_bind_int64(st, 4, now_ms);
	return update_by_id(c, st, 5, flag_id);
}

/*
 * Move a flag to `to` (claimed or resolved) for an active volunteer: read its state and holder,
 * decide and update in one BEGIN IMMEDIATE transaction, so two volunteers cannot both claim.
 */
static int flag_transition(store *s, const char *flag_id, const char *volunteer_id,
                           store_flag_state to, const char *resolution, int64_t now_ms)
{
	static const char active_sql[] =
	    "SELECT 1 FROM volunteers WHERE id = ? AND disabled_ms IS NULL";
	static const char flag_sql[] = "SELECT " FLAG_COLUMNS "WHERE id = ?";
	if (store_id_check(flag_id) < 0 || store_id_check(volunteer_id) < 0)
		return STORE_ENOTFOUND;
	if (to == STORE_FLAG_RESOLVED && check_text(resolution, REASON_MAX) < 0)
		return STORE_EINVAL;
	store_flag f;
	bool active = false, write = false;
	conn *c = db_write_begin(s->directory);
	int rc = conn_begin(c);
	if (rc == 0) {
		if ((rc = row_one(c, active_sql, text_key(volunteer_id), found, &active)) == 0 &&
		    (rc = row_one(c, flag_sql, text_key(flag_id), flag_from_row, &f)) == 0 &&
		    (rc = flag_decide(&f, volunteer_id, to, &write)) == 0 && write)
			rc = flag_update(c, flag_id, volunteer_id, to, resolution, now_ms);
		rc = rc == 0 ? conn_commit(c) : (conn_rollback(c), rc);
	}
	db_write_end(s->directory);
	return rc;
}

int store_flag_claim(store *s, const char *flag_id, const char *volunteer_id, int64_t now_ms)
{
	return flag_transition(s, flag_id, volunteer_id, STORE_FLAG_CLAIMED, NULL, now_ms);
}

int store_flag_resolve(store *s, const char *flag_id, const char *volunteer_id,
                       const char *resolution, int64_t now_ms)
{
	return flag_transition(s, flag_id, volunteer_id, STORE_FLAG_RESOLVED, resolution, now_ms);
}
