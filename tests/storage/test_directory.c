/*
 * test_directory.c — devices, pairing codes, schools and kiosks, volunteers and the moderation
 * queue (storage/directory.c), each on a fresh data directory with two families: success and
 * failure paths, malformed ids answered like unknown ones, revocation taking effect at once,
 * touch throttling, a pairing code consumed by two threads (on two store handles, so that the
 * SQL and not only the writer mutex is tested) exactly once, the flag state machine, and the
 * rows a deleted family leaves behind (none: the foreign keys cascade).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store.h"

#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define UNKNOWN_ID "0123456789abcdefghjkmnpqrs" /* well formed, names nothing */

/* Malformed ids: each must be answered exactly like an unknown one. */
static const char *const bad_ids[] = {
    "",
    "short",
    "0123456789abcdefghjkmnpqri",  /* 'i' is not Crockford base32 */
    "0123456789ABCDEFGHJKMNPQRS",  /* upper case */
    "0123456789abcdefghjkmnpqrst", /* 27 characters */
    "../../../../etc/passwd",
    UNKNOWN_ID,
};
#define NBAD (sizeof bad_ids / sizeof bad_ids[0])

typedef struct fixture {
	char dir[64];
	store *s;
	store *second; /* a second handle on the same directory, when a test opens one */
	store_family fam, other;
	store_member parent, other_parent;
	store_school school;
	store_kiosk kiosk;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	*state = f;
	snprintf(f->dir, sizeof f->dir, "/tmp/jiayin-directory-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	if (store_open(&f->s, &o) != 0 ||
	    store_family_create(f->s, "王家", "妈妈", 0, 1000, &f->fam, &f->parent) != 0 ||
	    store_family_create(f->s, "李家", "爸爸", 0, 1000, &f->other, &f->other_parent) != 0 ||
	    store_school_add(f->s, "实验小学", 1000, &f->school) != 0 ||
	    store_kiosk_add(f->s, f->school.id.s, "大厅", 1000, &f->kiosk) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	store_close(f->second);
	store_close(f->s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	int rc = system(cmd);
	free(f);
	return rc == 0 ? 0 : -1;
}

/* A distinct 32-byte hash per label, as the server would make from a token. */
static void hash_of(const char *label, int i, uint8_t h[STORE_HASH_LEN])
{
	char text[128];
	int n = snprintf(text, sizeof text, "%s-%d", label, i);
	crypto_hash_sha256(h, (const unsigned char *)text, (unsigned long long)n);
}

/* One integer from the directory database, read beside the store (WAL lets us). */
static long long query_int(const fixture *f, const char *sql, const char *param)
{
	char path[128];
	snprintf(path, sizeof path, "%s/directory.db", f->dir);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	long long v = -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (param)
			sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static store_pairing pairing(const store_id *family, store_role role, const char *member_name,
                             int64_t created_ms, int64_t expires_ms)
{
	store_pairing p = {.role = role, .created_ms = created_ms, .expires_ms = expires_ms};
	p.family_id = *family;
	snprintf(p.member_name, sizeof p.member_name, "%s", member_name);
	return p;
}

/* ---- devices ---- */

static void device_add_personal_and_kiosk(void **state)
{
	fixture *f = *state;
	uint8_t h1[STORE_HASH_LEN], h2[STORE_HASH_LEN];
	hash_of("device", 1, h1);
	hash_of("device", 2, h2);
	store_device phone, kiosk, got;
	assert_int_equal(
	    store_device_add(f->s, h1, f->parent.id.s, NULL, "妈妈的手机", 2000, &phone), 0);
	assert_int_equal(store_id_check(phone.id.s), 0);
	assert_int_equal(phone.kind, STORE_DEVICE_PERSONAL);
	assert_string_equal(phone.member_id.s, f->parent.id.s);
	assert_string_equal(phone.family_id.s, f->fam.id.s);
	assert_string_equal(phone.kiosk_id.s, "");
	assert_string_equal(phone.name, "妈妈的手机");
	assert_int_equal(phone.created_ms, 2000);
	assert_int_equal(phone.last_seen_ms, 0);
	assert_int_equal(phone.revoked_ms, 0);

	assert_int_equal(store_device_add(f->s, h2, NULL, f->kiosk.id.s, "大厅平板", 3000, &kiosk),
	                 0);
	assert_int_equal(kiosk.kind, STORE_DEVICE_KIOSK);
	assert_string_equal(kiosk.kiosk_id.s, f->kiosk.id.s);
	assert_string_equal(kiosk.member_id.s, "");
	assert_string_equal(kiosk.family_id.s, "");

	assert_int_equal(store_device_get(f->s, phone.id.s, &got), 0);
	assert_memory_equal(&got, &phone, sizeof got);
	assert_int_equal(store_device_get(f->s, kiosk.id.s, &got), 0);
	assert_memory_equal(&got, &kiosk, sizeof got);
	/* An empty string counts as "not given". */
	uint8_t h3[STORE_HASH_LEN];
	hash_of("device", 3, h3);
	assert_int_equal(store_device_add(f->s, h3, "", f->kiosk.id.s, "x", 1, &got), 0);
	assert_int_equal(got.kind, STORE_DEVICE_KIOSK);
}

static void device_by_token_and_revoke(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN], kh[STORE_HASH_LEN], unknown[STORE_HASH_LEN];
	hash_of("phone", 1, h);
	hash_of("kiosk", 1, kh);
	hash_of("nobody", 1, unknown);
	store_device phone, kiosk, got;
	assert_int_equal(store_device_add(f->s, h, f->parent.id.s, NULL, "手机", 2000, &phone), 0);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "平板", 2000, &kiosk), 0);
	assert_int_equal(store_device_by_token(f->s, h, &got), 0);
	assert_memory_equal(&got, &phone, sizeof got);
	assert_int_equal(store_device_by_token(f->s, kh, &got), 0);
	assert_string_equal(got.id.s, kiosk.id.s);
	assert_int_equal(store_device_by_token(f->s, unknown, &got), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, NULL, &got), STORE_EINVAL);

	/* A revoked phone's token stops working at once: the very next lookup fails. */
	assert_int_equal(store_device_revoke(f->s, phone.id.s, 5000), 0);
	assert_int_equal(store_device_by_token(f->s, h, &got), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, kh, &got), 0); /* the other one works */
	/* The row stays, with when it was revoked; revoking again keeps that time. */
	assert_int_equal(store_device_get(f->s, phone.id.s, &got), 0);
	assert_int_equal(got.revoked_ms, 5000);
	assert_int_equal(store_device_revoke(f->s, phone.id.s, 9000), 0);
	assert_int_equal(store_device_get(f->s, phone.id.s, &got), 0);
	assert_int_equal(got.revoked_ms, 5000);
	assert_int_equal(store_device_by_token(f->s, h, &got), STORE_ENOTFOUND);
	/* The revoked token's hash is still taken. */
	assert_int_equal(store_device_add(f->s, h, f->parent.id.s, NULL, "again", 9000, &got),
	                 STORE_EEXIST);
}

/* Sign-up: family, parent and phone together, or nothing at all. */
static void family_with_device_is_all_or_nothing(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN];
	hash_of("signup", 1, h);
	store_family fam;
	store_member m;
	store_device d, got;
	assert_int_equal(store_family_create_with_device(f->s, "张家", "奶奶", 0, h, "老人机", 3000,
							 &fam, &m, &d),
			 0);
	assert_int_equal(m.role, STORE_ROLE_PARENT);
	assert_string_equal(m.family_id.s, fam.id.s);
	assert_string_equal(d.member_id.s, m.id.s);
	assert_string_equal(d.family_id.s, fam.id.s);
	assert_int_equal(store_device_by_token(f->s, h, &got), 0);
	assert_string_equal(got.id.s, d.id.s);
	/* The same token hash again: the device insert fails, so no second family appears. */
	store_family fam2;
	store_member m2;
	store_device d2;
	assert_int_equal(store_family_create_with_device(f->s, "赵家", "爸爸", 0, h, "手机", 4000,
							 &fam2, &m2, &d2),
			 STORE_EEXIST);
	store_family probe;
	assert_int_equal(store_family_get(f->s, fam2.id.s, &probe), STORE_ENOTFOUND);
	assert_int_equal(store_member_get(f->s, m2.id.s, &m2), STORE_ENOTFOUND);
	/* A bad device name is refused before anything is written. */
	uint8_t h2[STORE_HASH_LEN];
	hash_of("signup", 2, h2);
	assert_int_equal(store_family_create_with_device(f->s, "赵家", "爸爸", 0, h2, "", 4000,
							 &fam2, &m2, &d2),
			 STORE_EINVAL);
	assert_int_equal(store_device_by_token(f->s, h2, &got), STORE_ENOTFOUND);
}

static void device_add_rejects_bad_input(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN], h2[STORE_HASH_LEN];
	hash_of("device", 1, h);
	hash_of("device", 2, h2);
	store_device d;
	char long_name[STORE_NAME_MAX + 2];
	memset(long_name, 'x', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	const char *pid = f->parent.id.s, *kid = f->kiosk.id.s;

	/* Exactly one of member and kiosk. */
	assert_int_equal(store_device_add(f->s, h, pid, kid, "x", 1, &d), STORE_EINVAL);
	assert_int_equal(store_device_add(f->s, h, NULL, NULL, "x", 1, &d), STORE_EINVAL);
	assert_int_equal(store_device_add(f->s, h, "", "", "x", 1, &d), STORE_EINVAL);
	/* A token hash and a name. */
	assert_int_equal(store_device_add(f->s, NULL, pid, NULL, "x", 1, &d), STORE_EINVAL);
	assert_int_equal(store_device_add(f->s, h, pid, NULL, NULL, 1, &d), STORE_EINVAL);
	assert_int_equal(store_device_add(f->s, h, pid, NULL, "", 1, &d), STORE_EINVAL);
	assert_int_equal(store_device_add(f->s, h, pid, NULL, long_name, 1, &d), STORE_EINVAL);
	long_name[STORE_NAME_MAX] = '\0'; /* exactly the limit */
	assert_int_equal(store_device_add(f->s, h, pid, NULL, long_name, 1, &d), 0);
	/* The same token hash twice, whatever the kind. */
	assert_int_equal(store_device_add(f->s, h, pid, NULL, "x", 1, &d), STORE_EEXIST);
	assert_int_equal(store_device_add(f->s, h, NULL, kid, "x", 1, &d), STORE_EEXIST);
	/* Unknown or malformed member and kiosk ids. */
	for (size_t i = 0; i < NBAD; i++) {
		if (!*bad_ids[i])
			continue; /* empty is "not given", tested above */
		assert_int_equal(store_device_add(f->s, h2, bad_ids[i], NULL, "x", 1, &d),
		                 STORE_ENOTFOUND);
		assert_int_equal(store_device_add(f->s, h2, NULL, bad_ids[i], "x", 1, &d),
		                 STORE_ENOTFOUND);
	}
	/* Nothing of the failed attempts was kept. */
	assert_int_equal(query_int(f, "SELECT count(*) FROM devices", NULL), 1);
}

static void devices_list_by_family(void **state)
{
	fixture *f = *state;
	store_member child;
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, NULL, 1500, &child), 0);
	/* Added out of time order, across two members, with strangers in between. */
	const int64_t when[] = {3000, 1000, 2000};
	const char *member[] = {f->parent.id.s, child.id.s, f->parent.id.s};
	store_device mine[3], d;
	uint8_t h[STORE_HASH_LEN];
	for (int i = 0; i < 3; i++) {
		hash_of("mine", i, h);
		assert_int_equal(store_device_add(f->s, h, member[i], NULL, "d", when[i], &mine[i]),
		                 0);
		hash_of("theirs", i, h);
		assert_int_equal(
		    store_device_add(f->s, h, f->other_parent.id.s, NULL, "d", when[i], &d), 0);
	}
	hash_of("kiosk", 0, h);
	assert_int_equal(store_device_add(f->s, h, NULL, f->kiosk.id.s, "k", 500, &d), 0);
	assert_int_equal(store_device_revoke(f->s, mine[0].id.s, 4000), 0);

	store_device list[8];
	size_t n = 99;
	assert_int_equal(store_devices_list(f->s, f->fam.id.s, list, 8, &n), 0);
	assert_int_equal(n, 3); /* revoked ones are listed too, with revoked_ms */
	assert_string_equal(list[0].id.s, mine[1].id.s);
	assert_string_equal(list[1].id.s, mine[2].id.s);
	assert_string_equal(list[2].id.s, mine[0].id.s);
	assert_int_equal(list[2].revoked_ms, 4000);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(list[i].family_id.s, f->fam.id.s);
	assert_string_equal(list[0].member_id.s, child.id.s);

	/* `max` is respected: the oldest come first. */
	assert_int_equal(store_devices_list(f->s, f->fam.id.s, list, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id.s, mine[1].id.s);
	assert_int_equal(store_devices_list(f->s, f->fam.id.s, list, 0, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_devices_list(f->s, f->other.id.s, list, 8, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(list[i].family_id.s, f->other.id.s);

	for (size_t i = 0; i < NBAD; i++) {
		n = 99;
		int rc = store_devices_list(f->s, bad_ids[i], list, 8, &n);
		/* An unknown well-formed family has no devices; a malformed id names nothing. */
		if (strcmp(bad_ids[i], UNKNOWN_ID) == 0)
			assert_int_equal(rc, 0);
		else
			assert_int_equal(rc, STORE_ENOTFOUND);
		assert_int_equal(n, 0);
	}
}

static long long wal_size(const fixture *f)
{
	char path[128];
	struct stat st;
	snprintf(path, sizeof path, "%s/directory.db-wal", f->dir);
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void device_touch_is_throttled(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN];
	hash_of("phone", 1, h);
	store_device d, got;
	assert_int_equal(store_device_add(f->s, h, f->parent.id.s, NULL, "手机", 1000, &d), 0);
	assert_int_equal(store_device_touch(f->s, d.id.s, 100000), 0); /* never seen: recorded */
	assert_int_equal(store_device_get(f->s, d.id.s, &got), 0);
	assert_int_equal(got.last_seen_ms, 100000);

	/* Within a minute: nothing recorded and nothing written. */
	long long wal = wal_size(f);
	assert_true(wal > 0);
	assert_int_equal(store_device_touch(f->s, d.id.s, 130000), 0);
	assert_int_equal(store_device_touch(f->s, d.id.s, 160000), 0); /* exactly a minute */
	assert_int_equal(wal_size(f), wal);
	assert_int_equal(store_device_get(f->s, d.id.s, &got), 0);
	assert_int_equal(got.last_seen_ms, 100000);
	/* A clock that went backwards does not move last_seen back. */
	assert_int_equal(store_device_touch(f->s, d.id.s, 50000), 0);
	assert_int_equal(store_device_get(f->s, d.id.s, &got), 0);
	assert_int_equal(got.last_seen_ms, 100000);

	assert_int_equal(store_device_touch(f->s, d.id.s, 160001), 0);
	assert_int_equal(store_device_get(f->s, d.id.s, &got), 0);
	assert_int_equal(got.last_seen_ms, 160001);
	assert_int_equal(store_device_by_token(f->s, h, &got), 0);
	assert_int_equal(got.last_seen_ms, 160001);

	for (size_t i = 0; i < NBAD; i++)
		assert_int_equal(store_device_touch(f->s, bad_ids[i], 999999), STORE_ENOTFOUND);
}

static void device_malformed_ids(void **state)
{
	fixture *f = *state;
	store_device d;
	for (size_t i = 0; i < NBAD; i++) {
		assert_int_equal(store_device_get(f->s, bad_ids[i], &d), STORE_ENOTFOUND);
		assert_int_equal(store_device_revoke(f->s, bad_ids[i], 1), STORE_ENOTFOUND);
		assert_int_equal(store_device_touch(f->s, bad_ids[i], 1), STORE_ENOTFOUND);
	}
	assert_int_equal(store_device_get(f->s, NULL, &d), STORE_ENOTFOUND);
	assert_int_equal(store_device_revoke(f->s, NULL, 1), STORE_ENOTFOUND);
}

/* ---- pairing codes ---- */

static void pairing_consumed_once(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN];
	hash_of("code", 1, h);
	store_pairing p = pairing(&f->fam.id, STORE_ROLE_CAREGIVER, "奶奶", 1000, 601000), got;
	assert_int_equal(store_pairing_create(f->s, h, &p), 0);
	assert_int_equal(store_pairing_create(f->s, h, &p), STORE_EEXIST);

	memset(&got, 0x55, sizeof got);
	assert_int_equal(store_pairing_consume(f->s, h, 2000, &got), 0);
	assert_string_equal(got.family_id.s, f->fam.id.s);
	assert_int_equal(got.role, STORE_ROLE_CAREGIVER);
	assert_string_equal(got.member_name, "奶奶");
	assert_string_equal(got.kiosk_id.s, "");
	assert_int_equal(got.created_ms, 1000);
	assert_int_equal(got.expires_ms, 601000);
	assert_int_equal(query_int(f, "SELECT used_ms FROM pairing_codes", NULL), 2000);

	assert_int_equal(store_pairing_consume(f->s, h, 2001, &got), STORE_ENOTFOUND);
	/* A used code still holds its hash until it expires. */
	assert_int_equal(store_pairing_create(f->s, h, &p), STORE_EEXIST);
}

/* Redeeming: the code, the member and the device together, or nothing (the code stays). */
static void pairing_redeem_is_all_or_nothing(void **state)
{
	fixture *f = *state;
	uint8_t code[STORE_HASH_LEN], taken[STORE_HASH_LEN], fresh[STORE_HASH_LEN];
	hash_of("redeem", 1, code);
	hash_of("phone", 7, taken);
	hash_of("phone", 8, fresh);
	store_device existing, d;
	store_member m;
	store_pairing p = pairing(&f->fam.id, STORE_ROLE_CHILD, "小明", 1000, 601000), got;
	assert_int_equal(store_pairing_create(f->s, code, &p), 0);
	assert_int_equal(store_device_add(f->s, taken, f->parent.id.s, NULL, "旧手机", 1000,
					  &existing),
			 0);
	/* A token hash already in use fails the device: the code is not used up. */
	assert_int_equal(store_pairing_redeem(f->s, code, taken, "平板", 2000, &got, &m, &d),
			 STORE_EEXIST);
	size_t n;
	store_member list[8];
	assert_int_equal(store_members_list(f->s, f->fam.id.s, list, 8, &n), 0);
	assert_int_equal(n, 1); /* no 小明 yet */
	assert_int_equal(store_pairing_redeem(f->s, code, fresh, "平板", 3000, &got, &m, &d), 0);
	assert_int_equal(got.role, STORE_ROLE_CHILD);
	assert_string_equal(m.name, "小明");
	assert_int_equal(m.role, STORE_ROLE_CHILD);
	assert_string_equal(m.family_id.s, f->fam.id.s);
	assert_string_equal(d.member_id.s, m.id.s);
	assert_string_equal(d.family_id.s, f->fam.id.s);
	assert_int_equal(store_members_list(f->s, f->fam.id.s, list, 8, &n), 0);
	assert_int_equal(n, 2);
	/* Single use; an expired or unknown code is the same not-found. */
	hash_of("phone", 9, fresh);
	assert_int_equal(store_pairing_redeem(f->s, code, fresh, "x", 4000, &got, &m, &d),
			 STORE_ENOTFOUND);
	uint8_t late[STORE_HASH_LEN];
	hash_of("redeem", 2, late);
	p = pairing(&f->fam.id, STORE_ROLE_PARENT, "爸爸", 1000, 5000);
	assert_int_equal(store_pairing_create(f->s, late, &p), 0);
	assert_int_equal(store_pairing_redeem(f->s, late, fresh, "x", 5000, &got, &m, &d),
			 STORE_ENOTFOUND);
	assert_int_equal(store_pairing_redeem(f->s, late, fresh, "", 4000, &got, &m, &d),
			 STORE_EINVAL);
}

static void pairing_expired_or_unknown(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN], unknown[STORE_HASH_LEN];
	hash_of("code", 1, h);
	hash_of("code", 2, unknown);
	store_pairing p = pairing(&f->fam.id, STORE_ROLE_CHILD, "小明", 1000, 5000), got;
	assert_int_equal(store_pairing_create(f->s, h, &p), 0);
	assert_int_equal(store_pairing_consume(f->s, h, 5000, &got), STORE_ENOTFOUND); /* at */
	assert_int_equal(store_pairing_consume(f->s, h, 9000, &got), STORE_ENOTFOUND); /* after */
	assert_int_equal(store_pairing_consume(f->s, unknown, 2000, &got), STORE_ENOTFOUND);
	assert_int_equal(store_pairing_consume(f->s, NULL, 2000, &got), STORE_EINVAL);
	/* The refused attempts did not use it up: a moment before expiry it works. */
	assert_int_equal(store_pairing_consume(f->s, h, 4999, &got), 0);
	assert_int_equal(got.role, STORE_ROLE_CHILD);
}

static void pairing_for_a_kiosk(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN];
	hash_of("code", 1, h);
	store_pairing p = pairing(&f->fam.id, STORE_ROLE_CHILD, "", 1000, 5000), got;
	p.kiosk_id = f->kiosk.id; /* a child pairs with the school's kiosk; no name needed */
	assert_int_equal(store_pairing_create(f->s, h, &p), 0);
	assert_int_equal(store_pairing_consume(f->s, h, 2000, &got), 0);
	assert_string_equal(got.kiosk_id.s, f->kiosk.id.s);
	assert_string_equal(got.member_name, "");
	assert_string_equal(got.family_id.s, f->fam.id.s);
}

static void pairing_create_rejects_bad_input(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN];
	hash_of("code", 1, h);
	store_pairing good = pairing(&f->fam.id, STORE_ROLE_PARENT, "爸爸", 1000, 5000), p;
	assert_int_equal(store_pairing_create(f->s, NULL, &good), STORE_EINVAL);
	assert_int_equal(store_pairing_create(f->s, h, NULL), STORE_EINVAL);
	p = good, p.role = 0;
	assert_int_equal(store_pairing_create(f->s, h, &p), STORE_EINVAL);
	p = good, p.role = STORE_ROLE_CHILD + 1;
	assert_int_equal(store_pairing_create(f->s, h, &p), STORE_EINVAL);
	p = good, p.expires_ms = p.created_ms;
	assert_int_equal(store_pairing_create(f->s, h, &p), STORE_EINVAL);
	p = good, memset(p.member_name, 'x', sizeof p.member_name); /* not terminated */
	assert_int_equal(store_pairing_create(f->s, h, &p), STORE_EINVAL);
	for (size_t i = 0; i < NBAD; i++) {
		p = good;
		snprintf(p.family_id.s, sizeof p.family_id.s, "%s", bad_ids[i]);
		assert_int_equal(store_pairing_create(f->s, h, &p), STORE_ENOTFOUND);
		if (!*bad_ids[i])
			continue; /* an empty kiosk id is a personal code */
		p = good;
		snprintf(p.kiosk_id.s, sizeof p.kiosk_id.s, "%s", bad_ids[i]);
		assert_int_equal(store_pairing_create(f->s, h, &p), STORE_ENOTFOUND);
	}
	assert_int_equal(query_int(f, "SELECT count(*) FROM pairing_codes", NULL), 0);
	assert_int_equal(store_pairing_create(f->s, h, &good), 0);
}

static void pairing_expire_removes_only_expired(void **state)
{
	fixture *f = *state;
	uint8_t h[4][STORE_HASH_LEN];
	store_pairing got;
	for (int i = 0; i < 4; i++) {
		hash_of("code", i, h[i]);
		store_pairing p = pairing(&f->fam.id, STORE_ROLE_CHILD, "x", 0, 100 * (i + 1));
		assert_int_equal(store_pairing_create(f->s, h[i], &p), 0);
	}
	assert_int_equal(store_pairing_consume(f->s, h[3], 50, &got), 0); /* used, not expired */
	unsigned removed = 99;
	assert_int_equal(store_pairing_expire(f->s, 50, &removed), 0);
	assert_int_equal(removed, 0);
	assert_int_equal(store_pairing_expire(f->s, 250, &removed), 0);
	assert_int_equal(removed, 2); /* expired at 100 and 200 */
	assert_int_equal(query_int(f, "SELECT count(*) FROM pairing_codes", NULL), 2);
	assert_int_equal(query_int(f, "SELECT min(expires_ms) FROM pairing_codes", NULL), 300);
	assert_int_equal(store_pairing_consume(f->s, h[2], 260, &got), 0);
	assert_int_equal(store_pairing_expire(f->s, 300, NULL), 0); /* *removed is optional */
	assert_int_equal(query_int(f, "SELECT count(*) FROM pairing_codes", NULL), 1);
	assert_int_equal(store_pairing_expire(f->s, 10000, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM pairing_codes", NULL), 0);
	/* Its hash is free again. */
	store_pairing p = pairing(&f->fam.id, STORE_ROLE_CHILD, "x", 20000, 30000);
	assert_int_equal(store_pairing_create(f->s, h[0], &p), 0);
}

#define RACE_ROUNDS 50
#define RACERS 2

typedef struct racer {
	store *s;
	const uint8_t *hash;
	pthread_barrier_t *start;
	int rc;
	store_pairing got;
} racer;

static void *race(void *arg)
{
	racer *r = arg;
	pthread_barrier_wait(r->start);
	r->rc = store_pairing_consume(r->s, r->hash, 2000, &r->got);
	return NULL;
}

static void pairing_consumed_once_under_a_race(void **state)
{
	fixture *f = *state;
	/* Two handles on one data directory: two writer connections, so only the SQL keeps the
	 * racers apart, not the writer mutex of one handle. */
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->second, &o), 0);
	store *handles[RACERS] = {f->s, f->second};
	for (int round = 0; round < RACE_ROUNDS; round++) {
		uint8_t h[STORE_HASH_LEN];
		hash_of("race", round, h);
		store_pairing p = pairing(&f->fam.id, STORE_ROLE_CHILD, "小明", 1000, 60000);
		assert_int_equal(store_pairing_create(f->s, h, &p), 0);
		pthread_barrier_t start;
		pthread_barrier_init(&start, NULL, RACERS);
		racer r[RACERS];
		pthread_t t[RACERS];
		for (int i = 0; i < RACERS; i++) {
			r[i] = (racer){.s = handles[i], .hash = h, .start = &start, .rc = 1};
			assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
		}
		int won = 0;
		for (int i = 0; i < RACERS; i++) {
			pthread_join(t[i], NULL);
			if (r[i].rc == 0) {
				won++;
				assert_string_equal(r[i].got.family_id.s, f->fam.id.s);
				assert_string_equal(r[i].got.member_name, "小明");
			} else {
				assert_int_equal(r[i].rc, STORE_ENOTFOUND);
			}
		}
		pthread_barrier_destroy(&start);
		assert_int_equal(won, 1);
	}
	assert_int_equal(
	    query_int(f, "SELECT count(*) FROM pairing_codes WHERE used_ms IS NULL", NULL), 0);
}

/* ---- schools and kiosks ---- */

static void schools_and_kiosks(void **state)
{
	fixture *f = *state;
	store_school school;
	store_kiosk kiosk, got;
	assert_int_equal(store_school_add(f->s, "第二小学", 7000, &school), 0);
	assert_int_equal(store_id_check(school.id.s), 0);
	assert_string_equal(school.name, "第二小学");
	assert_int_equal(school.created_ms, 7000);
	assert_int_equal(query_int(f, "SELECT created_ms FROM schools WHERE id = ?", school.id.s),
	                 7000);

	assert_int_equal(store_kiosk_add(f->s, school.id.s, "图书馆", 8000, &kiosk), 0);
	assert_string_equal(kiosk.school_id.s, school.id.s);
	assert_string_equal(kiosk.name, "图书馆");
	assert_int_equal(kiosk.created_ms, 8000);
	assert_int_equal(store_kiosk_get(f->s, kiosk.id.s, &got), 0);
	assert_memory_equal(&got, &kiosk, sizeof got);
	assert_int_equal(store_kiosk_get(f->s, f->kiosk.id.s, &got), 0);
	assert_string_equal(got.school_id.s, f->school.id.s);

	assert_int_equal(store_school_add(f->s, "", 1, &school), STORE_EINVAL);
	assert_int_equal(store_school_add(f->s, NULL, 1, &school), STORE_EINVAL);
	assert_int_equal(store_kiosk_add(f->s, f->school.id.s, "", 1, &kiosk), STORE_EINVAL);
	for (size_t i = 0; i < NBAD; i++) {
		/* Unknown schools fail the foreign key; malformed ids never reach it. */
		assert_int_equal(store_kiosk_add(f->s, bad_ids[i], "x", 1, &kiosk),
		                 STORE_ENOTFOUND);
		assert_int_equal(store_kiosk_get(f->s, bad_ids[i], &got), STORE_ENOTFOUND);
	}
	assert_int_equal(query_int(f, "SELECT count(*) FROM kiosks", NULL), 2);
}

/* ---- volunteers ---- */

static void volunteers(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN], h2[STORE_HASH_LEN];
	hash_of("volunteer", 1, h);
	hash_of("volunteer", 2, h2);
	store_volunteer v, got;
	assert_int_equal(store_volunteer_add(f->s, "陈老师", h, 1000, &v), 0);
	assert_int_equal(store_id_check(v.id.s), 0);
	assert_string_equal(v.name, "陈老师");
	assert_int_equal(v.created_ms, 1000);
	assert_int_equal(v.disabled_ms, 0);
	assert_int_equal(store_volunteer_by_token(f->s, h, &got), 0);
	assert_memory_equal(&got, &v, sizeof got);
	assert_int_equal(store_volunteer_by_token(f->s, h2, &got), STORE_ENOTFOUND);
	assert_int_equal(store_volunteer_by_token(f->s, NULL, &got), STORE_EINVAL);

	assert_int_equal(store_volunteer_add(f->s, "x", h, 1, &got), STORE_EEXIST);
	assert_int_equal(store_volunteer_add(f->s, "x", NULL, 1, &got), STORE_EINVAL);
	assert_int_equal(store_volunteer_add(f->s, "", h2, 1, &got), STORE_EINVAL);
	assert_int_equal(store_volunteer_add(f->s, NULL, h2, 1, &got), STORE_EINVAL);

	assert_int_equal(store_volunteer_disable(f->s, v.id.s, 5000), 0);
	assert_int_equal(store_volunteer_by_token(f->s, h, &got), STORE_ENOTFOUND);
	assert_int_equal(store_volunteer_disable(f->s, v.id.s, 6000), 0); /* idempotent */
	assert_int_equal(query_int(f, "SELECT disabled_ms FROM volunteers WHERE id = ?", v.id.s),
	                 5000);
	for (size_t i = 0; i < NBAD; i++)
		assert_int_equal(store_volunteer_disable(f->s, bad_ids[i], 1), STORE_ENOTFOUND);
}

/* ---- the moderation queue ---- */

#define MSG_A "a0000000000000000000000000"
#define MSG_B "b0000000000000000000000000"

static void flag_add_and_get(void **state)
{
	fixture *f = *state;
	store_flag flag, got;
	assert_int_equal(
	    store_flag_add(f->s, f->fam.id.s, MSG_A, f->parent.id.s, "不友善", 3000, &flag), 0);
	assert_int_equal(store_id_check(flag.id.s), 0);
	assert_string_equal(flag.family_id.s, f->fam.id.s);
	assert_string_equal(flag.message_id.s, MSG_A);
	assert_string_equal(flag.reporter_id.s, f->parent.id.s);
	assert_string_equal(flag.reason, "不友善");
	assert_int_equal(flag.state, STORE_FLAG_OPEN);
	assert_string_equal(flag.volunteer_id.s, "");
	assert_string_equal(flag.resolution, "");
	assert_int_equal(flag.created_ms, 3000);
	assert_int_equal(flag.updated_ms, 3000);
	assert_int_equal(store_flag_get(f->s, flag.id.s, &got), 0);
	assert_memory_equal(&got, &flag, sizeof got);

	/* No reporter (an automatic flag); a reason of exactly 511 bytes. */
	char reason[513];
	memset(reason, 'r', 511);
	reason[511] = '\0';
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, reason, 4000, &flag), 0);
	assert_string_equal(flag.reporter_id.s, "");
	assert_int_equal(store_flag_get(f->s, flag.id.s, &got), 0);
	assert_memory_equal(&got, &flag, sizeof got);
	assert_int_equal(strlen(got.reason), 511);

	reason[511] = 'r', reason[512] = '\0';
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, reason, 1, &got),
	                 STORE_EINVAL);
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, "", 1, &got), STORE_EINVAL);
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, NULL, 1, &got),
	                 STORE_EINVAL);
	for (size_t i = 0; i < NBAD; i++) {
		assert_int_equal(store_flag_add(f->s, bad_ids[i], MSG_B, NULL, "r", 1, &got),
		                 STORE_ENOTFOUND);
		assert_int_equal(store_flag_get(f->s, bad_ids[i], &got), STORE_ENOTFOUND);
		if (strcmp(bad_ids[i], UNKNOWN_ID) == 0)
			continue; /* message and reporter ids are checked for shape only */
		assert_int_equal(store_flag_add(f->s, f->fam.id.s, bad_ids[i], NULL, "r", 1, &got),
		                 STORE_ENOTFOUND);
		if (*bad_ids[i])
			assert_int_equal(
			    store_flag_add(f->s, f->fam.id.s, MSG_B, bad_ids[i], "r", 1, &got),
			    STORE_ENOTFOUND);
	}
	assert_int_equal(query_int(f, "SELECT count(*) FROM moderation_queue", NULL), 2);
}

static void flag_claim_and_resolve(void **state)
{
	fixture *f = *state;
	uint8_t h1[STORE_HASH_LEN], h2[STORE_HASH_LEN];
	hash_of("volunteer", 1, h1);
	hash_of("volunteer", 2, h2);
	store_volunteer v1, v2;
	assert_int_equal(store_volunteer_add(f->s, "陈", h1, 1, &v1), 0);
	assert_int_equal(store_volunteer_add(f->s, "林", h2, 1, &v2), 0);
	store_flag flag, other, got;
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_A, NULL, "r", 1000, &flag), 0);
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, "r", 1000, &other), 0);

	/* Resolving an open flag: nobody holds it, so nobody may resolve it. */
	assert_int_equal(store_flag_resolve(f->s, flag.id.s, v1.id.s, "ok", 1500), STORE_EEXIST);

	assert_int_equal(store_flag_claim(f->s, flag.id.s, v1.id.s, 2000), 0);
	assert_int_equal(store_flag_get(f->s, flag.id.s, &got), 0);
	assert_int_equal(got.state, STORE_FLAG_CLAIMED);
	assert_string_equal(got.volunteer_id.s, v1.id.s);
	assert_int_equal(got.updated_ms, 2000);
	assert_int_equal(got.created_ms, 1000);
	/* Claiming again by the holder is fine and changes nothing; by another is a conflict. */
	assert_int_equal(store_flag_claim(f->s, flag.id.s, v1.id.s, 2500), 0);
	assert_int_equal(store_flag_claim(f->s, flag.id.s, v2.id.s, 2500), STORE_EEXIST);
	assert_int_equal(store_flag_resolve(f->s, flag.id.s, v2.id.s, "ok", 2500), STORE_EEXIST);
	assert_int_equal(store_flag_get(f->s, flag.id.s, &got), 0);
	assert_string_equal(got.volunteer_id.s, v1.id.s);
	assert_int_equal(got.updated_ms, 2000);

	char long_text[513];
	memset(long_text, 'x', 512);
	long_text[512] = '\0';
	assert_int_equal(store_flag_resolve(f->s, flag.id.s, v1.id.s, long_text, 3000),
	                 STORE_EINVAL);
	assert_int_equal(store_flag_resolve(f->s, flag.id.s, v1.id.s, "", 3000), STORE_EINVAL);
	assert_int_equal(store_flag_resolve(f->s, flag.id.s, v1.id.s, NULL, 3000), STORE_EINVAL);
	assert_int_equal(store_flag_resolve(f->s, flag.id.s, v1.id.s, "已隐藏", 3000), 0);
	assert_int_equal(store_flag_get(f->s, flag.id.s, &got), 0);
	assert_int_equal(got.state, STORE_FLAG_RESOLVED);
	assert_string_equal(got.volunteer_id.s, v1.id.s);
	assert_string_equal(got.resolution, "已隐藏");
	assert_int_equal(got.updated_ms, 3000);
	/* Resolved is final. */
	assert_int_equal(store_flag_resolve(f->s, flag.id.s, v1.id.s, "again", 4000), STORE_EEXIST);
	assert_int_equal(store_flag_claim(f->s, flag.id.s, v1.id.s, 4000), STORE_EEXIST);
	assert_int_equal(store_flag_claim(f->s, flag.id.s, v2.id.s, 4000), STORE_EEXIST);
	assert_int_equal(store_flag_get(f->s, flag.id.s, &got), 0);
	assert_string_equal(got.resolution, "已隐藏");

	/* Unknown, malformed or disabled volunteers and unknown flags are not found. */
	for (size_t i = 0; i < NBAD; i++) {
		assert_int_equal(store_flag_claim(f->s, other.id.s, bad_ids[i], 5000),
		                 STORE_ENOTFOUND);
		assert_int_equal(store_flag_claim(f->s, bad_ids[i], v1.id.s, 5000),
		                 STORE_ENOTFOUND);
		assert_int_equal(store_flag_resolve(f->s, bad_ids[i], v1.id.s, "r", 5000),
		                 STORE_ENOTFOUND);
		assert_int_equal(store_flag_resolve(f->s, other.id.s, bad_ids[i], "r", 5000),
		                 STORE_ENOTFOUND);
	}
	assert_int_equal(store_flag_claim(f->s, other.id.s, v2.id.s, 5000), 0);
	assert_int_equal(store_volunteer_disable(f->s, v2.id.s, 6000), 0);
	assert_int_equal(store_flag_resolve(f->s, other.id.s, v2.id.s, "r", 7000), STORE_ENOTFOUND);
	assert_int_equal(store_flag_claim(f->s, other.id.s, v2.id.s, 7000), STORE_ENOTFOUND);
	assert_int_equal(store_flag_get(f->s, other.id.s, &got), 0);
	assert_int_equal(got.state, STORE_FLAG_CLAIMED);
}

static void flags_listed_by_state_oldest_first(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN];
	hash_of("volunteer", 1, h);
	store_volunteer v;
	assert_int_equal(store_volunteer_add(f->s, "陈", h, 1, &v), 0);
	const int64_t when[] = {300, 100, 400, 200};
	store_flag fl[4], list[8];
	for (int i = 0; i < 4; i++)
		assert_int_equal(store_flag_add(f->s, i % 2 ? f->other.id.s : f->fam.id.s, MSG_A,
		                                NULL, "r", when[i], &fl[i]),
		                 0);
	size_t n = 99;
	assert_int_equal(store_flags_list(f->s, STORE_FLAG_OPEN, list, 8, &n), 0);
	assert_int_equal(n, 4);
	const int order[] = {1, 3, 0, 2}; /* by created_ms, across families */
	for (int i = 0; i < 4; i++) {
		assert_string_equal(list[i].id.s, fl[order[i]].id.s);
		assert_int_equal(list[i].state, STORE_FLAG_OPEN);
	}
	assert_int_equal(store_flags_list(f->s, STORE_FLAG_OPEN, list, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[1].id.s, fl[3].id.s);

	assert_int_equal(store_flag_claim(f->s, fl[2].id.s, v.id.s, 500), 0);
	assert_int_equal(store_flag_claim(f->s, fl[3].id.s, v.id.s, 600), 0);
	assert_int_equal(store_flag_resolve(f->s, fl[3].id.s, v.id.s, "ok", 700), 0);
	assert_int_equal(store_flags_list(f->s, STORE_FLAG_OPEN, list, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id.s, fl[1].id.s);
	assert_string_equal(list[1].id.s, fl[0].id.s);
	assert_int_equal(store_flags_list(f->s, STORE_FLAG_CLAIMED, list, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id.s, fl[2].id.s);
	assert_string_equal(list[0].volunteer_id.s, v.id.s);
	assert_int_equal(store_flags_list(f->s, STORE_FLAG_RESOLVED, list, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id.s, fl[3].id.s);
	assert_string_equal(list[0].resolution, "ok");

	n = 99;
	assert_int_equal(store_flags_list(f->s, 0, list, 8, &n), STORE_EINVAL);
	assert_int_equal(n, 0);
	assert_int_equal(store_flags_list(f->s, STORE_FLAG_RESOLVED + 1, list, 8, &n),
	                 STORE_EINVAL);
}

/* ---- deleting a family ---- */

static void family_delete_removes_its_rows(void **state)
{
	fixture *f = *state;
	uint8_t dh[2][STORE_HASH_LEN], ch[2][STORE_HASH_LEN], kh[STORE_HASH_LEN];
	store_device dev[2], kiosk_dev, got;
	store_flag flag[2];
	const store_member *who[2] = {&f->parent, &f->other_parent};
	const store_family *fam[2] = {&f->fam, &f->other};
	for (int i = 0; i < 2; i++) {
		hash_of("device", i, dh[i]);
		hash_of("code", i, ch[i]);
		assert_int_equal(store_device_add(f->s, dh[i], who[i]->id.s, NULL, "d", 1, &dev[i]),
		                 0);
		store_pairing p = pairing(&fam[i]->id, STORE_ROLE_CHILD, "x", 1, 100000);
		p.kiosk_id = f->kiosk.id;
		assert_int_equal(store_pairing_create(f->s, ch[i], &p), 0);
		assert_int_equal(
		    store_flag_add(f->s, fam[i]->id.s, MSG_A, who[i]->id.s, "r", 1, &flag[i]), 0);
	}
	hash_of("kiosk", 0, kh);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "k", 1, &kiosk_dev), 0);

	assert_int_equal(store_family_delete(f->s, f->other.id.s), 0);

	/* The deleted family's devices, codes and flags are gone, rows and all. */
	assert_int_equal(store_device_get(f->s, dev[1].id.s, &got), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, dh[1], &got), STORE_ENOTFOUND);
	store_pairing pg;
	assert_int_equal(store_pairing_consume(f->s, ch[1], 10, &pg), STORE_ENOTFOUND);
	store_flag fg;
	assert_int_equal(store_flag_get(f->s, flag[1].id.s, &fg), STORE_ENOTFOUND);
	assert_int_equal(query_int(f, "SELECT count(*) FROM devices WHERE id = ?", dev[1].id.s), 0);
	assert_int_equal(
	    query_int(f, "SELECT count(*) FROM pairing_codes WHERE family_id = ?", f->other.id.s),
	    0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM moderation_queue WHERE family_id = ?",
	                           f->other.id.s),
	                 0);
	assert_int_equal(
	    query_int(f, "SELECT count(*) FROM members WHERE family_id = ?", f->other.id.s), 0);
	size_t n = 99;
	store_device list[4];
	assert_int_equal(store_devices_list(f->s, f->other.id.s, list, 4, &n), 0);
	assert_int_equal(n, 0);
	/* The token hash is free again. */
	assert_int_equal(store_device_add(f->s, dh[1], f->parent.id.s, NULL, "d", 2, &got), 0);

	/* The other family and the school's kiosk are untouched. */
	assert_int_equal(store_device_by_token(f->s, dh[0], &got), 0);
	assert_string_equal(got.id.s, dev[0].id.s);
	assert_int_equal(store_device_by_token(f->s, kh, &got), 0);
	assert_int_equal(store_flag_get(f->s, flag[0].id.s, &fg), 0);
	assert_int_equal(store_pairing_consume(f->s, ch[0], 10, &pg), 0);
	assert_string_equal(pg.family_id.s, f->fam.id.s);
	/* And a flag for the deleted family cannot be added. */
	assert_int_equal(store_flag_add(f->s, f->other.id.s, MSG_A, NULL, "r", 2, &fg),
	                 STORE_ENOTFOUND);
	store_pairing p = pairing(&f->other.id, STORE_ROLE_CHILD, "x", 1, 100000);
	assert_int_equal(store_pairing_create(f->s, ch[1], &p), STORE_ENOTFOUND);
	hash_of("device", 9, dh[1]);
	assert_int_equal(store_device_add(f->s, dh[1], f->other_parent.id.s, NULL, "d", 2, &got),
	                 STORE_ENOTFOUND);
}

static void kiosk_links_pins_and_sessions(void **state)
{
	fixture *f = *state;
	uint8_t code[STORE_HASH_LEN], code2[STORE_HASH_LEN], kh[STORE_HASH_LEN];
	uint8_t sess[STORE_HASH_LEN], sess2[STORE_HASH_LEN];
	store_member kid, kid2;
	store_kiosk_link link, got;
	store_device kdev, d;
	store_member m;
	size_t n;
	hash_of("kcode", 0, code);
	hash_of("kcode", 1, code2);
	hash_of("kiosk-token", 0, kh);
	hash_of("session", 0, sess);
	hash_of("session", 1, sess2);
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, "cat", 1,
	                                  &kid),
	                 0);
	assert_int_equal(store_member_add(f->s, f->other.id.s, "小红", STORE_ROLE_CHILD, NULL, 1,
	                                  &kid2),
	                 0);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "大厅平板", 1, &kdev), 0);

	/* A code the kiosk shows pairs one child, once, before it expires. */
	assert_int_equal(store_kiosk_code_create(f->s, code, f->kiosk.id.s, 1000, 2000), 0);
	assert_int_equal(store_kiosk_code_create(f->s, code2, UNKNOWN_ID, 1000, 2000),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "hash-1", 2000, &link),
	                 STORE_ENOTFOUND); /* expired at 2000 */
	assert_int_equal(store_kiosk_link_redeem(f->s, code, UNKNOWN_ID, "hash-1", 1500, &link),
	                 STORE_ENOTFOUND); /* no such member: the code stays unused */
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "hash-1", 1500, &link), 0);
	assert_string_equal(link.kiosk_id.s, f->kiosk.id.s);
	assert_string_equal(link.member_id.s, kid.id.s);
	assert_string_equal(link.family_id.s, f->fam.id.s);
	assert_string_equal(link.kiosk_name, "大厅");
	assert_string_equal(link.school_name, "实验小学");
	assert_string_equal(link.member_name, "小明");
	assert_string_equal(link.avatar, "cat");
	assert_string_equal(link.pin_hash, "hash-1");
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid2.id.s, "hash-2", 1500, &got),
	                 STORE_ENOTFOUND); /* used */
	assert_int_equal(store_kiosk_code_create(f->s, code2, f->kiosk.id.s, 1000, 5000), 0);
	assert_int_equal(store_kiosk_link_redeem(f->s, code2, kid2.id.s, "hash-2", 1500, &got), 0);
	assert_int_equal(store_kiosk_links_of_kiosk(f->s, f->kiosk.id.s, (store_kiosk_link[4]){0},
	                                            4, &n),
	                 0);
	assert_int_equal(n, 2);
	store_kiosk_link fl[4];
	assert_int_equal(store_kiosk_links_of_family(f->s, f->fam.id.s, fl, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(fl[0].id.s, link.id.s);

	/* Attempts are counted before the check: the third locks for 60 s (it is still checked)
	 * and the count starts again; while locked, attempts are refused and not counted. */
	int allowed;
	assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, 3000, 3, 60000, &got, &allowed),
	                 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(got.failures, 1);
	assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, 3000, 3, 60000, &got, &allowed),
	                 0);
	assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, 3001, 3, 60000, &got, &allowed),
	                 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(got.failures, 0);
	assert_int_equal(got.locked_until_ms, 63001);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, 63000, 3, 60000, &got,
		                                         &allowed),
		                 0);
		assert_int_equal(allowed, 0);
	}
	assert_int_equal(got.failures, 0);
	assert_int_equal(got.locked_until_ms, 63001);
	assert_int_equal(store_kiosk_pin_attempt(f->s, UNKNOWN_ID, 1, 3, 1, &got, &allowed),
	                 STORE_ENOTFOUND);
	/* At the lock's end, attempts are counted again. */
	assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, 63001, 3, 60000, &got, &allowed),
	                 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(got.failures, 1);
	/* A parent's new PIN clears the lock. */
	assert_int_equal(store_kiosk_link_set_pin(f->s, link.id.s, "hash-3"), 0);
	assert_int_equal(store_kiosk_link_get(f->s, link.id.s, &got), 0);
	assert_int_equal(got.locked_until_ms, 0);
	assert_string_equal(got.pin_hash, "hash-3");

	/* A session speaks for the child, through the kiosk device, until idle. A right PIN
	 * clears the count and a lock (this attempt locked it, and was the right one). */
	assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, 3000, 1, 60000, &got, &allowed),
	                 0);
	assert_int_equal(got.locked_until_ms, 63000);
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, 10000), 0);
	assert_int_equal(store_kiosk_link_get(f->s, link.id.s, &got), 0);
	assert_int_equal(got.failures, 0);
	assert_int_equal(got.locked_until_ms, 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 100000, 180000, &d, &m), 0);
	assert_int_equal(d.kind, STORE_DEVICE_KIOSK);
	assert_string_equal(d.id.s, kdev.id.s);
	assert_string_equal(d.family_id.s, f->fam.id.s);
	assert_string_equal(m.id.s, kid.id.s);
	assert_int_equal(m.role, STORE_ROLE_CHILD);
	/* Used at 100 s: idle from then on, so 279.999 s is fine and 280 s is over. */
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 279999, 180000, &d, &m), 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 279999 + 180000, 180000, &d, &m),
	                 STORE_ENOTFOUND);
	/* The next child on the same kiosk ends the first one's session. */
	assert_int_equal(store_kiosk_session_start(f->s, sess2, kdev.id.s, got.id.s, 300000), 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 300001, 180000, &d, &m),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess2, 300001, 180000, &d, &m), 0);
	assert_int_equal(store_kiosk_session_end(f->s, sess2), 0);
	assert_int_equal(store_kiosk_session_end(f->s, sess2), STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess2, 300002, 180000, &d, &m),
	                 STORE_ENOTFOUND);
	/* Revoking the kiosk device ends its sessions; unpairing ends the child's. */
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, 400000), 0);
	assert_int_equal(store_kiosk_link_delete(f->s, link.id.s), 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 400001, 180000, &d, &m),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_link_delete(f->s, link.id.s), STORE_ENOTFOUND);
	store_kiosk_link other;
	assert_int_equal(store_kiosk_links_of_kiosk(f->s, f->kiosk.id.s, &other, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, other.id.s, 500000), 0);
	assert_int_equal(store_device_revoke(f->s, kdev.id.s, 500001), 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 500002, 180000, &d, &m),
	                 STORE_ENOTFOUND);
	/* Erasing a family takes its children's links along. */
	assert_int_equal(store_family_delete(f->s, f->other.id.s), 0);
	assert_int_equal(store_kiosk_links_of_kiosk(f->s, f->kiosk.id.s, &other, 1, &n), 0);
	assert_int_equal(n, 0);
	for (size_t i = 0; i < NBAD; i++) {
		assert_int_equal(store_kiosk_link_get(f->s, bad_ids[i], &got), STORE_ENOTFOUND);
		assert_int_equal(store_kiosk_link_set_pin(f->s, bad_ids[i], "h"), STORE_ENOTFOUND);
	}
	/* Listing for jiayinctl. */
	store_school schools[2];
	store_kiosk kiosks[2];
	store_device kd[2];
	assert_int_equal(store_schools_list(f->s, schools, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_kiosks_list(f->s, f->school.id.s, kiosks, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_kiosks_list(f->s, NULL, kiosks, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_kiosk_devices(f->s, f->kiosk.id.s, kd, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_true(kd[0].revoked_ms > 0);
	store_school sc;
	assert_int_equal(store_school_get(f->s, f->school.id.s, &sc), 0);
	assert_string_equal(sc.name, "实验小学");
	assert_int_equal(store_school_get(f->s, UNKNOWN_ID, &sc), STORE_ENOTFOUND);

	/* A kiosk with its first token: both or neither. */
	store_kiosk k2;
	store_device d2;
	uint8_t kh2[STORE_HASH_LEN];
	hash_of("kiosk-token", 2, kh2);
	assert_int_equal(store_kiosk_add_with_device(f->s, UNKNOWN_ID, "x", kh2, "x", 1, &k2, &d2),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_add_with_device(f->s, f->school.id.s, "二楼", kh, "二楼", 1,
	                                             &k2, &d2),
	                 STORE_EEXIST); /* the token hash is taken: no kiosk either */
	assert_int_equal(store_kiosks_list(f->s, NULL, kiosks, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_kiosk_add_with_device(f->s, f->school.id.s, "二楼", kh2, "二楼", 1,
	                                             &k2, &d2),
	                 0);
	assert_int_equal(store_device_by_token(f->s, kh2, &d), 0);
	assert_string_equal(d.kiosk_id.s, k2.id.s);
	assert_int_equal(d.kind, STORE_DEVICE_KIOSK);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(device_add_personal_and_kiosk),
	    T(device_by_token_and_revoke),
	    T(device_add_rejects_bad_input),
	    T(family_with_device_is_all_or_nothing),
	    T(devices_list_by_family),
	    T(device_touch_is_throttled),
	    T(device_malformed_ids),
	    T(pairing_consumed_once),
	    T(pairing_redeem_is_all_or_nothing),
	    T(pairing_expired_or_unknown),
	    T(pairing_for_a_kiosk),
	    T(pairing_create_rejects_bad_input),
	    T(pairing_expire_removes_only_expired),
	    T(pairing_consumed_once_under_a_race),
	    T(schools_and_kiosks),
	    T(volunteers),
	    T(flag_add_and_get),
	    T(flag_claim_and_resolve),
	    T(flags_listed_by_state_oldest_first),
	    T(family_delete_removes_its_rows),
	    T(kiosk_links_pins_and_sessions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
