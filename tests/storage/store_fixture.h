/*
 * store_fixture.h — what the storage unit tests share: a fresh data directory with one family
 * (王家, its parent 妈妈) per test, and a new message with a waveform.
 */
#ifndef JIAYIN_TESTS_STORE_FIXTURE_H
#define JIAYIN_TESTS_STORE_FIXTURE_H

#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
	char dir[64];
	store *s;
	store_family fam;
	store_member parent;
} fixture;

/* The fixture with the store on the SQLite VFS of this name (NULL: the default). */
static inline int setup_on_vfs(void **state, const char *vfs)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/jiayin-store-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	o.vfs = vfs;
	if (store_open(&f->s, &o) != 0)
		return -1;
	if (store_family_create(f->s, "王家", "妈妈", 0, 1000, &f->fam, &f->parent) != 0)
		return -1;
	*state = f;
	return 0;
}

static inline int setup(void **state)
{
	return setup_on_vfs(state, NULL);
}

static inline int teardown(void **state)
{
	fixture *f = *state;
	store_close(f->s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	int rc = system(cmd);
	free(f);
	return rc == 0 ? 0 : -1;
}

static inline store_new_message new_message(const char *sender, const uint8_t *audio, size_t len)
{
	static uint8_t wave[STORE_WAVEFORM_POINTS];
	for (int i = 0; i < STORE_WAVEFORM_POINTS; i++)
		wave[i] = (uint8_t)(i * 2);
	return (store_new_message){.sender = sender,
				   .created_ms = 5000,
				   .duration_ms = 1234,
				   .lufs = -16.0,
				   .waveform = wave,
				   .audio = audio,
				   .audio_len = len};
}

/* The first column of sql's first row, read from the file at path (-1 if none). */
static inline int count_rows(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int n = -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* Overwrite `len` bytes at `offset` of a file. */
static inline void mangle(const char *path, long offset, int len)
{
	FILE *fp = fopen(path, "r+b");
	assert_non_null(fp);
	fseek(fp, offset, SEEK_SET);
	for (int i = 0; i < len; i++)
		fputc(0x5A ^ i, fp);
	fclose(fp);
}

#endif
