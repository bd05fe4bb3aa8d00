/*
 * directory_fixture.h — what the directory tests (test_directory.c, test_schools.c) share: a fresh
 * data directory per test with two families (王家 with 妈妈, 李家 with 爸爸), a school and one
 * of its kiosks; the malformed ids that must be answered exactly like unknown ones; a distinct
 * token hash per label; one integer read from directory.db beside the store; a pairing code.
 */
#ifndef JIAYIN_TESTS_DIRECTORY_FIXTURE_H
#define JIAYIN_TESTS_DIRECTORY_FIXTURE_H

#include "store.h"

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static inline int setup(void **state)
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

static inline int teardown(void **state)
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
static inline void hash_of(const char *label, int i, uint8_t h[STORE_HASH_LEN])
{
	char text[128];
	int n = snprintf(text, sizeof text, "%s-%d", label, i);
	crypto_hash_sha256(h, (const unsigned char *)text, (unsigned long long)n);
}

/* One integer from the directory database, read beside the store (WAL lets us). */
static inline long long query_int(const fixture *f, const char *sql, const char *param)
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

static inline store_pairing pairing(const store_id *family, store_role role,
                                    const char *member_name, int64_t created_ms,
                                    int64_t expires_ms)
{
	store_pairing p = {.role = role, .created_ms = created_ms, .expires_ms = expires_ms};
	p.family_id = *family;
	snprintf(p.member_name, sizeof p.member_name, "%s", member_name);
	return p;
}

#endif
