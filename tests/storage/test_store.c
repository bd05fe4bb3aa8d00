/*
 * test_store.c — every query of the storage library, on a fresh data directory per test:
 * families (and erasing their file), members, the append-only audit log, messages (append,
 * idempotency, quota, listings, chunked audio, receipts, hiding, deleting), meta values,
 * malformed ids and error names. Retention is test_retention.c's. The files themselves (quarantine,
 * migrations, backups, export, locks) and the family cache are in test_files.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h" /* the migration steps, to build databases at old versions */
#include "store.h"
#include "store_fixture.h"

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void ids_are_unguessable_text(void **state)
{
	fixture *f = *state;
	assert_int_equal(store_id_check(f->fam.id.s), 0);
	assert_int_equal(store_id_check(f->parent.id.s), 0);
	assert_string_not_equal(f->fam.id.s, f->parent.id.s);
	assert_int_equal(store_id_check("../../etc/passwd"), STORE_EINVAL);
	assert_int_equal(store_id_check("0123456789abcdefghjkmnpqrs"), 0);
	assert_int_equal(store_id_check("0123456789abcdefghjkmnpqrsX"), STORE_EINVAL);
	assert_int_equal(store_id_check("0123456789abcdefghjkmnpqri"), STORE_EINVAL); /* no 'i' */
}

/* What the API and jiayinctl take as a name (store_name_ok), byte by byte at the edges. */
static void names_show_something(void **state)
{
	(void)state;
	const char *good[] = {
	    "王家",
	    "a",
	    " 小明 ",
	    "Ma\xe2\x80\x8dma",             /* a zero-width joiner inside */
	    "\xe2\x80\x8f\xd7\xa9\xd7\x9c", /* a right-to-left mark, then Hebrew */
	    "\xf0\x9f\x90\xb1",             /* U+1F431, a cat */
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_true(store_name_ok(good[i]));
	char longest[STORE_NAME_MAX + 2];
	memset(longest, 'y', STORE_NAME_MAX);
	longest[STORE_NAME_MAX] = '\0';
	assert_true(store_name_ok(longest));
	longest[STORE_NAME_MAX] = 'y';
	longest[STORE_NAME_MAX + 1] = '\0';
	assert_false(store_name_ok(longest));
	const char *bad[] = {
	    NULL,
	    "",
	    " ",
	    "   ",
	    "\xe3\x80\x80",          /* U+3000, the ideographic space */
	    "\xe2\x80\x8b",          /* U+200B, a zero-width space */
	    "\xef\xbb\xbf \xc2\xa0", /* a byte order mark, a space and a no-break space */
	    "\xe3\x85\xa4",          /* U+3164, the Hangul filler */
	    "\xf3\xa0\x80\x81",      /* U+E0001, a language tag */
	    "a\nb",
	    "\x7f",
	    "\xc2\x85",                 /* C0, DEL, C1 */
	    "\xe2\x80\xae\xe7\x88\xb8", /* U+202E, right-to-left override, then 爸 */
	    "\xe7\x88\xb8\xe2\x81\xa6", /* 爸, then U+2066, a left-to-right isolate */
	    "\xff\xfe\x61\x62",         /* not UTF-8 */
	    "\xc0\xaf",                 /* an overlong '/' */
	    "\xed\xa0\x80",             /* a surrogate, U+D800 */
	    "\xf4\x90\x80\x80",         /* past U+10FFFF */
	    "\xe7\x88",                 /* cut short */
	    "\xe7\x88\xb8\x80",         /* a stray continuation byte */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_false(store_name_ok(bad[i]));
	assert_int_equal(store_control_at("\xe2\x80\xaa"), 3);
	assert_int_equal(store_control_at("\xe2\x81\xa9"), 3);
	assert_int_equal(store_control_at("\xe2\x80\xa9"),
	                 0); /* U+2029 shows nothing, no control */
}

static void families(void **state)
{
	fixture *f = *state;
	store_family got;
	assert_int_equal(store_family_get(f->s, f->fam.id.s, &got), 0);
	assert_string_equal(got.name, "王家");
	assert_int_equal(got.created_ms, 1000);
	const uint64_t mib = 1 << 20, none = 0;
	const uint32_t month = 30, forever = 0;
	store_family changed;
	assert_int_equal(store_family_update(f->s, f->fam.id.s, &mib, &month, &changed), 0);
	assert_string_equal(changed.id.s, f->fam.id.s); /* as changed, from the same statement */
	assert_string_equal(changed.name, "王家");
	assert_int_equal(changed.quota_bytes, 1 << 20);
	assert_int_equal(changed.retention_days, 30);
	assert_int_equal(store_family_get(f->s, f->fam.id.s, &got), 0);
	assert_int_equal(got.quota_bytes, 1 << 20);
	assert_int_equal(got.retention_days, 30);
	const uint32_t week = 7; /* one setting: the other as it was */
	assert_int_equal(store_family_update(f->s, f->fam.id.s, NULL, &week, &changed), 0);
	assert_int_equal(changed.quota_bytes, 1 << 20);
	assert_int_equal(changed.retention_days, 7);
	assert_int_equal(store_family_update(f->s, f->fam.id.s, NULL, &month, NULL), 0);
	/* Malformed ids answer exactly like unknown ones. */
	assert_int_equal(store_family_get(f->s, "nope", &got), STORE_ENOTFOUND);
	assert_int_equal(store_family_get(f->s, "0123456789abcdefghjkmnpqrs", &got),
			 STORE_ENOTFOUND);
	assert_int_equal(
	    store_family_update(f->s, "0123456789abcdefghjkmnpqrs", &none, &forever, NULL),
	    STORE_ENOTFOUND);
	/* Names are validated. */
	store_family fam2;
	store_member m2;
	char long_name[STORE_NAME_MAX + 2];
	memset(long_name, 'x', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	assert_int_equal(store_family_create(f->s, long_name, "x", 0, 1, &fam2, &m2), STORE_EINVAL);
	assert_int_equal(store_family_create(f->s, "", "x", 0, 1, &fam2, &m2), STORE_EINVAL);
}

static void deleting_a_family_erases_its_file(void **state)
{
	fixture *f = *state;
	uint8_t audio[100] = {1, 2, 3};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	char path[256];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(store_family_delete(f->s, f->fam.id.s, 5000), 0);
	assert_int_not_equal(access(path, F_OK), 0);
	store_family got;
	store_member mem;
	assert_int_equal(store_family_get(f->s, f->fam.id.s, &got), STORE_ENOTFOUND);
	assert_int_equal(store_member_get(f->s, f->parent.id.s, &mem), STORE_ENOTFOUND);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ENOTFOUND);
	assert_int_equal(store_family_delete(f->s, f->fam.id.s, 5000), STORE_ENOTFOUND);
}

/* An erased family leaves no names behind in the directory's files (review finding: its
 * name, its members', its phones' and its flags' reasons stayed in freed space). */
static void deleting_a_family_leaves_no_names_in_the_directory(void **state)
{
	fixture *f = *state;
	store_family fam;
	store_member parent, child;
	store_device dev;
	store_flag flag;
	store_message msg;
	uint8_t audio[100] = {1, 2, 3}, token[STORE_HASH_LEN] = {7};
	int existed;
	assert_int_equal(store_family_create(f->s, "ZZ-FAMILY-NAME", "ZZ-PARENT-NAME", 0, 1, &fam,
					     &parent),
			 0);
	assert_int_equal(store_member_add(f->s, fam.id.s, "ZZ-CHILD-NAME", STORE_ROLE_CHILD, NULL, 2,
					  &child),
			 0);
	assert_int_equal(store_device_add(f->s, token, child.id.s, NULL, "ZZ-PHONE-NAME", 3, &dev), 0);
	store_new_message m = new_message(parent.id.s, audio, sizeof audio);
	assert_int_equal(store_message_append(f->s, fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(
	    store_flag_add(f->s, fam.id.s, msg.id.s, child.id.s, "ZZ-FLAG-REASON", 4, &flag, NULL),
	    0);
	assert_int_equal(store_family_delete(f->s, fam.id.s, 5000), 0);
	static const char *const names[] = {"ZZ-FAMILY-NAME", "ZZ-PARENT-NAME", "ZZ-CHILD-NAME",
					    "ZZ-PHONE-NAME", "ZZ-FLAG-REASON"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char cmd[512];
		snprintf(cmd, sizeof cmd, "cat '%s/directory.db'* | grep -c '%s'", f->dir, names[i]);
		FILE *p = popen(cmd, "r");
		int count = -1;
		assert_int_equal(fscanf(p, "%d", &count), 1);
		pclose(p);
		assert_int_equal(count, 0); /* the store still open */
	}
}

/* A crash between erasing a family's rows and its file left the voices on disk (review
 * finding): the server's start erases the files of families erased, and only those. A file no
 * family owns that this directory never erased (families/ restored beside a new directory, or
 * a crash between a mailbox and its family's row) is set aside in quarantine/, not erased (the
 * review: a restore of families/ was erased whole). */
static void orphaned_family_files_are_swept(void **state)
{
	fixture *f = *state;
	store_family other, third;
	store_member mem, mem3;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &mem), 0);
	assert_int_equal(store_family_create(f->s, "张家", "妈妈", 0, 1, &third, &mem3), 0);
	uint8_t audio[100] = {1, 2, 3};
	store_new_message m = new_message(mem.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	assert_int_equal(store_message_append(f->s, other.id.s, &m, &msg, &existed), 0);
	store_close(f->s);
	f->s = NULL;
	/* 李家: the rows went with its erasure's record, the crash came before the file did.
	 * 张家: its row is gone as if this directory had never known it. */
	char db[256], orphan[256], unknown[256], kept[256];
	snprintf(db, sizeof db, "%s/directory.db", f->dir);
	sqlite3 *d;
	assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
	char sql[256];
	snprintf(sql, sizeof sql,
	         "PRAGMA foreign_keys = ON; DELETE FROM families WHERE id IN ('%s', '%s'); "
	         "INSERT INTO erased_families VALUES ('%s', 9)",
	         other.id.s, third.id.s, other.id.s);
	assert_int_equal(sqlite3_exec(d, sql, 0, 0, 0), SQLITE_OK);
	sqlite3_close(d);
	snprintf(orphan, sizeof orphan, "%s/families/%s.db", f->dir, other.id.s);
	snprintf(unknown, sizeof unknown, "%s/families/%s.db", f->dir, third.id.s);
	snprintf(kept, sizeof kept, "%s/families/%s.db", f->dir, f->fam.id.s);
	assert_int_equal(access(orphan, F_OK), 0);
	assert_int_equal(chmod(unknown, 0644), 0); /* as an older version made it */
	/* and a damaged copy of the erased family, set aside before its erasure */
	char copy[256];
	snprintf(copy, sizeof copy, "%s/quarantine/%s.1795000000.db", f->dir, other.id.s);
	FILE *q = fopen(copy, "w");
	assert_non_null(q);
	fclose(q);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	unsigned removed, aside;
	assert_int_equal(store_families_sweep(f->s, &removed, &aside), 0);
	assert_int_equal(removed, 2); /* its file, and its copy in quarantine/ */
	assert_int_equal(aside, 1);
	assert_int_equal(access(copy, F_OK), -1);
	assert_int_not_equal(access(orphan, F_OK), 0);
	assert_int_not_equal(access(unknown, F_OK), 0);
	assert_int_equal(access(kept, F_OK), 0);
	char cmd[400];
	snprintf(cmd, sizeof cmd, "test \"$(stat -c %%a '%s'/quarantine/%s.*.db)\" = 600", f->dir,
	         third.id.s);
	assert_int_equal(system(cmd), 0); /* there, and its owner's alone */
	snprintf(cmd, sizeof cmd, "ls '%s/quarantine/' | grep -q '^%s'", f->dir, other.id.s);
	assert_int_not_equal(system(cmd), 0);
	assert_int_equal(store_families_sweep(f->s, &removed, &aside), 0);
	assert_int_equal(removed + aside, 0);
	/* A family erased through the store is recorded as erased. */
	assert_int_equal(store_family_delete(f->s, f->fam.id.s, 7000), 0);
	assert_int_equal(
	    count_rows(db, "SELECT count(*) FROM erased_families WHERE erased_ms = 7000"), 1);
}

static void members(void **state)
{
	fixture *f = *state;
	store_member child, grandma, list[8], got;
	size_t n;
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, "rabbit",
					  2000, &child),
			 0);
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "奶奶", STORE_ROLE_CAREGIVER, NULL,
					  3000, &grandma),
			 0);
	assert_int_equal(store_members_list(f->s, f->fam.id.s, list, 8, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(list[0].id.s, f->parent.id.s);
	assert_int_equal(list[0].role, STORE_ROLE_PARENT);
	assert_string_equal(list[1].name, "小明");
	assert_string_equal(list[1].avatar, "rabbit");
	assert_int_equal(list[2].role, STORE_ROLE_CAREGIVER);
	assert_int_equal(store_member_get(f->s, child.id.s, &got), 0);
	assert_string_equal(got.family_id.s, f->fam.id.s);
	assert_int_equal(store_members_list(f->s, f->fam.id.s, list, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(store_member_add(f->s, "0123456789abcdefghjkmnpqrs", "x",
					  STORE_ROLE_CHILD, NULL, 1, &got),
			 STORE_ENOTFOUND);
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "x", (store_role)9, NULL, 1, &got),
			 STORE_EINVAL);
	store_role r;
	assert_int_equal(store_role_parse("caregiver", &r), 0);
	assert_int_equal(r, STORE_ROLE_CAREGIVER);
	assert_int_equal(store_role_parse("admin", &r), STORE_EINVAL);
}

static void audit_log_is_append_only(void **state)
{
	fixture *f = *state;
	assert_int_equal(store_audit_append(f->s, 1, "device:abc", "family.create", f->fam.id.s,
					    NULL, "{}"),
			 0);
	assert_int_equal(store_audit_append(f->s, 2, "", "x", NULL, NULL, NULL), STORE_EINVAL);
	char path[256];
	snprintf(path, sizeof path, "%s/directory.db", f->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE audit_log SET actor = 'x'", 0, 0, 0),
			     SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit_log", 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
}

/* A choose() for store_audio_fetch: the last `want` bytes, after checking what it was told. */
typedef struct tail_choice {
	size_t want;
	store_audio_info seen;
	int calls;
} tail_choice;

static int choose_tail(void *ctx, const store_audio_info *info, uint64_t *offset, size_t *len)
{
	tail_choice *t = ctx;
	t->seen = *info;
	t->calls++;
	*offset = info->bytes - t->want;
	*len = t->want;
	return 0;
}

static int choose_refuse(void *ctx, const store_audio_info *info, uint64_t *offset, size_t *len)
{
	(void)ctx, (void)info, (void)offset, (void)len;
	return STORE_EINVAL;
}

static void audio_fetch_reads_info_and_bytes_at_once(void **state)
{
	fixture *f = *state;
	uint8_t audio[50000];
	for (size_t i = 0; i < sizeof audio; i++)
		audio[i] = (uint8_t)(i * 13 + 1);
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	uint8_t buf[1000];
	size_t got;
	store_audio_info info;
	tail_choice t = {700, {0}, 0};
	assert_int_equal(store_audio_fetch(f->s, f->fam.id.s, msg.id.s, choose_tail, &t, buf, &got,
					   &info),
			 0);
	assert_int_equal(t.calls, 1);
	assert_int_equal(t.seen.bytes, sizeof audio);
	assert_int_equal(info.bytes, sizeof audio);
	assert_int_equal(info.created_ms, 5000);
	assert_int_equal(info.state, STORE_MSG_VISIBLE);
	assert_memory_equal(info.sha256, msg.sha256, 32);
	assert_int_equal(got, 700);
	assert_memory_equal(buf, audio + sizeof audio - 700, 700);
	/* Nothing to read: the info alone. */
	assert_int_equal(store_audio_fetch(f->s, f->fam.id.s, msg.id.s, NULL, NULL, buf, &got, &info),
			 0);
	assert_int_equal(got, 0);
	assert_int_equal(info.bytes, sizeof audio);
	/* choose() can refuse; an unknown or deleted message is not found, choose() not called. */
	assert_int_equal(store_audio_fetch(f->s, f->fam.id.s, msg.id.s, choose_refuse, NULL, buf,
					   &got, NULL),
			 STORE_EINVAL);
	t.calls = 0;
	assert_int_equal(store_audio_fetch(f->s, f->fam.id.s, "0123456789abcdefghjkmnpqrs",
					   choose_tail, &t, buf, &got, NULL),
			 STORE_ENOTFOUND);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msg.id.s, STORE_MSG_DELETED,
						 &msg.seq),
			 0);
	assert_int_equal(store_audio_fetch(f->s, f->fam.id.s, msg.id.s, choose_tail, &t, buf, &got,
					   NULL),
			 STORE_ENOTFOUND);
	assert_int_equal(t.calls, 0);
}

static void append_get_and_read_audio(void **state)
{
	fixture *f = *state;
	uint8_t audio[70000];
	for (size_t i = 0; i < sizeof audio; i++)
		audio[i] = (uint8_t)(i * 31 + 7);
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg, got;
	int existed;
	/* Larger than any clip may be: refused as invalid (was "conflict" past SQLite's limit). */
	m.audio_len = STORE_AUDIO_MAX + 1;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed),
			 STORE_EINVAL);
	m.audio_len = sizeof audio;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(existed, 0);
	assert_int_equal(msg.seq, 1);
	assert_int_equal(msg.bytes, sizeof audio);
	assert_int_equal(msg.state, STORE_MSG_VISIBLE);
	assert_string_equal(msg.to.s, "");
	uint8_t hash[32];
	crypto_hash_sha256(hash, audio, sizeof audio);
	assert_memory_equal(msg.sha256, hash, 32);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &got), 0);
	assert_int_equal(got.duration_ms, 1234);
	assert_int_equal(got.waveform[10], 20);

	/* Chunked reads in odd sizes reassemble the exact bytes. */
	uint8_t back[70000];
	size_t off = 0, got_n;
	do {
		assert_int_equal(store_audio_read(f->s, f->fam.id.s, msg.id.s, off, back + off,
						  4093, &got_n),
				 0);
		off += got_n;
	} while (got_n == 4093);
	assert_int_equal(off, sizeof audio);
	assert_memory_equal(back, audio, sizeof audio);
	assert_int_equal(store_audio_read(f->s, f->fam.id.s, msg.id.s, 1 << 20, back, 10, &got_n),
			 0);
	assert_int_equal(got_n, 0);
	assert_int_equal(store_audio_read(f->s, f->fam.id.s, "0123456789abcdefghjkmnpqrs", 0, back,
					  10, &got_n),
			 STORE_ENOTFOUND);

	/* A recipient must be an id; audio must be there. */
	m.to = "not-an-id";
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), STORE_EINVAL);
	m.to = NULL;
	m.audio_len = 0;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), STORE_EINVAL);
}

static void idempotency_keys(void **state)
{
	fixture *f = *state;
	uint8_t a[10] = "0123456789", b[10] = "abcdefghij";
	store_new_message m = new_message(f->parent.id.s, a, sizeof a);
	store_message first, again;
	int existed;
	m.idempotency_key = "upload-42";
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &first, &existed), 0);
	assert_int_equal(existed, 0);
	m.audio = b; /* a retry never writes a second message, whatever it carries */
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &again, &existed), 0);
	assert_int_equal(existed, 1);
	assert_string_equal(again.id.s, first.id.s);
	uint64_t used;
	assert_int_equal(store_mailbox_usage(f->s, f->fam.id.s, &used), 0);
	assert_int_equal(used, 10);
	m.idempotency_key = "upload-43";
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &again, &existed), 0);
	assert_int_equal(existed, 0);
	assert_string_not_equal(again.id.s, first.id.s);

	/* A key can be looked up before any work is redone; with its receipts as they are now. */
	store_message byk;
	uint64_t seq;
	assert_int_equal(store_message_listened(f->s, f->fam.id.s, first.id.s, f->parent.id.s, 6000,
						&seq),
			 0);
	assert_int_equal(store_message_by_key(f->s, f->fam.id.s, "upload-42", &byk), 0);
	assert_string_equal(byk.id.s, first.id.s);
	assert_int_equal(byk.listened_count, 1);
	assert_int_equal(byk.seq, seq);
	assert_int_equal(store_message_by_key(f->s, f->fam.id.s, "never-used", &byk),
			 STORE_ENOTFOUND);
	assert_int_equal(store_message_by_key(f->s, f->fam.id.s, "", &byk), STORE_EINVAL);
}

static void quota(void **state)
{
	fixture *f = *state;
	uint8_t audio[600] = {0};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	m.quota_bytes = 1000;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), STORE_EQUOTA);
	uint64_t used, seq;
	assert_int_equal(store_mailbox_usage(f->s, f->fam.id.s, &used), 0);
	assert_int_equal(used, 600); /* nothing of the refused one was stored */
	size_t n;
	store_message list[4];
	assert_int_equal(store_messages_newest(f->s, f->fam.id.s, list, 4, &n), 0);
	assert_int_equal(n, 1);
	/* Deleting frees the space. */
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, list[0].id.s, STORE_MSG_DELETED,
						 &seq),
			 0);
	assert_int_equal(store_mailbox_usage(f->s, f->fam.id.s, &used), 0);
	assert_int_equal(used, 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
}

static void changes_since_and_newest(void **state)
{
	fixture *f = *state;
	uint8_t audio[32] = {0};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msgs[5], list[8];
	store_member child;
	int existed;
	size_t n;
	uint64_t latest, seq;
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, NULL, 1,
					  &child),
			 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msgs[i], &existed), 0);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, list, 8, &n, &latest), 0);
	assert_int_equal(n, 5);
	assert_int_equal(latest, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(list[i].seq, (uint64_t)i + 1);

	/* A receipt, a hide and a delete: each message once, in its latest state. */
	assert_int_equal(store_message_listened(f->s, f->fam.id.s, msgs[1].id.s, child.id.s, 9,
						&seq),
			 0);
	assert_int_equal(seq, 6);
	assert_int_equal(store_message_listened(f->s, f->fam.id.s, msgs[1].id.s, child.id.s, 10,
						&seq),
			 0);
	assert_int_equal(seq, 6); /* listening twice is one receipt and no new change */
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msgs[2].id.s, STORE_MSG_HIDDEN,
						 &seq),
			 0);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msgs[3].id.s,
						 STORE_MSG_DELETED, &seq),
			 0);
	assert_int_equal(seq, 8);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 5, list, 8, &n, &latest), 0);
	assert_int_equal(n, 3);
	assert_int_equal(latest, 8);
	assert_string_equal(list[0].id.s, msgs[1].id.s);
	assert_int_equal(list[0].listened_count, 1);
	assert_string_equal(list[0].listened_by[0].s, child.id.s);
	assert_int_equal(list[1].state, STORE_MSG_HIDDEN);
	assert_int_equal(list[2].state, STORE_MSG_DELETED);
	/* Paging with a small max sees every change once: 2-4 were renumbered 6-8. */
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, list, 2, &n, &latest), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[0].seq, 1);
	assert_int_equal(list[1].seq, 5);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 8, list, 8, &n, &latest), 0);
	assert_int_equal(n, 0);

	/* Newest first, deleted ones left out; deleted audio is gone and final. */
	assert_int_equal(store_messages_newest(f->s, f->fam.id.s, list, 8, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(list[0].id.s, msgs[4].id.s);
	assert_string_equal(list[1].id.s, msgs[2].id.s);
	uint8_t buf[8];
	size_t got;
	assert_int_equal(store_audio_read(f->s, f->fam.id.s, msgs[3].id.s, 0, buf, 8, &got),
			 STORE_ENOTFOUND);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msgs[3].id.s,
						 STORE_MSG_VISIBLE, &seq),
			 STORE_ENOTFOUND);
	assert_int_equal(store_message_listened(f->s, f->fam.id.s, msgs[3].id.s, child.id.s, 1,
						&seq),
			 STORE_ENOTFOUND);
}

static void sqlite_errors_map_to_stable_codes(void **state)
{
	(void)state;
	/* Read-only media cannot be made for real under root; the mapping is what is tested. */
	assert_int_equal(store_map_sqlite(SQLITE_READONLY), STORE_EROFS);
	assert_int_equal(store_map_sqlite(SQLITE_READONLY_DBMOVED), STORE_EROFS);
	assert_int_equal(store_map_sqlite(SQLITE_FULL), STORE_EFULL);
	assert_int_equal(store_map_sqlite(SQLITE_CORRUPT), STORE_ECORRUPT);
	assert_int_equal(store_map_sqlite(SQLITE_NOTADB), STORE_ECORRUPT);
	assert_int_equal(store_map_sqlite(SQLITE_BUSY_SNAPSHOT), STORE_EBUSY);
	assert_int_equal(store_map_sqlite(SQLITE_IOERR_FSYNC), STORE_EIO);
	assert_int_equal(store_map_sqlite(SQLITE_IOERR_NOMEM), STORE_ENOMEM);
	assert_int_equal(store_map_sqlite(SQLITE_NOMEM), STORE_ENOMEM);
	assert_int_equal(store_map_sqlite(SQLITE_CONSTRAINT_UNIQUE), STORE_EEXIST);
	assert_int_equal(store_map_sqlite(SQLITE_DONE), 0);
}

static void error_names(void **state)
{
	(void)state;
	assert_string_equal(store_errcode(STORE_EQUOTA), "quota_exceeded");
	assert_string_equal(store_errcode(STORE_EFULL), "storage_full");
	for (int i = 0; i < STORE_ERROR_COUNT; i++)
		for (int j = 0; j < i; j++)
			assert_string_not_equal(store_errcode(-i), store_errcode(-j));
	assert_string_equal(store_errcode(-99), "unknown_error");
}

/*
 * Since mailbox step 4 a message never changed is found by its rowid (= its seq) and a changed
 * one through the index of changed messages: paging with every max from 1 to 5 sees each
 * message once, in seq order, in its latest state, whatever the mix.
 */
static void changes_since_pages_through_changed_and_unchanged(void **state)
{
	fixture *f = *state;
	uint8_t audio[16] = {3};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msgs[14], page[5];
	int existed;
	uint64_t seq, latest, want_seq[14];
	for (int i = 0; i < 12; i++)
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msgs[i], &existed), 0);
	const int listened[] = {1, 5, 7, 11, 5};
	for (size_t i = 0; i < sizeof listened / sizeof listened[0]; i++) {
		const char *who = i == 4 ? "0000000000000000000000000z" : f->parent.id.s;
		assert_int_equal(store_message_listened(f->s, f->fam.id.s, msgs[listened[i]].id.s,
							who, 7000, &seq),
				 0);
	}
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msgs[3].id.s,
						 STORE_MSG_HIDDEN, &seq),
			 0);
	assert_int_equal(store_message_keep(f->s, f->fam.id.s, msgs[9].id.s, 1, &seq), 0);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msgs[7].id.s,
						 STORE_MSG_DELETED, &seq),
			 0);
	for (int i = 12; i < 14; i++) /* unchanged ones after changed ones */
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msgs[i], &existed), 0);
	for (int i = 0; i < 14; i++) {
		store_message now;
		assert_int_equal(store_message_get(f->s, f->fam.id.s, msgs[i].id.s, &now), 0);
		want_seq[i] = now.seq;
	}
	for (size_t max = 1; max <= 5; max++) {
		int seen[14] = {0}, total = 0;
		uint64_t since = 0, prev = 0;
		size_t n;
		do {
			assert_int_equal(store_messages_since(f->s, f->fam.id.s, since, page, max, &n,
							      &latest),
					 0);
			assert_true(n <= max);
			for (size_t k = 0; k < n; k++) {
				assert_true(page[k].seq > prev);
				prev = page[k].seq;
				int j = 0;
				while (j < 14 && strcmp(msgs[j].id.s, page[k].id.s) != 0)
					j++;
				assert_true(j < 14);
				assert_int_equal(page[k].seq, want_seq[j]);
				seen[j]++;
				total++;
			}
			if (n)
				since = page[n - 1].seq;
		} while (n == max);
		assert_int_equal(total, 14);
		for (int j = 0; j < 14; j++)
			assert_int_equal(seen[j], 1);
		assert_int_equal(latest, prev);
		assert_int_equal(latest, 22); /* 14 appends and 8 changes (a repeat receipt is none) */
	}
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, page, 0, &(size_t){0}, &latest),
			 0);
	assert_int_equal(latest, 22);
	/* The next number goes on after the highest, changed or not. */
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msgs[0], &existed), 0);
	assert_int_equal(msgs[0].seq, 23);
}

static void meta_values(void **state)
{
	fixture *f = *state;
	uint8_t buf[8];
	size_t n;
	assert_int_equal(store_meta_get(f->s, "k", buf, sizeof buf, &n), STORE_ENOTFOUND);
	assert_int_equal(store_meta_put(f->s, "k", "abc", 3), 0);
	assert_int_equal(store_meta_get(f->s, "k", buf, sizeof buf, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(buf, "abc", 3);
	assert_int_equal(store_meta_put(f->s, "k", "0123456789", 10), 0);
	assert_int_equal(store_meta_get(f->s, "k", buf, sizeof buf, &n), 0);
	assert_int_equal(n, 10); /* its length, though only 8 bytes fit */
	assert_memory_equal(buf, "01234567", 8);
	assert_int_equal(store_meta_put(f->s, "", "x", 1), STORE_EINVAL);
	static uint8_t big[4097];
	assert_int_equal(store_meta_put(f->s, "k", big, sizeof big), STORE_EINVAL);
}

/* A family may have STORE_MEMBERS_MAX members: a message lists every one of them who listened,
 * the last to listen too (32 were listed, so the 33rd's receipt was stored and never shown). */
static void every_member_who_listened_is_listed(void **state)
{
	fixture *f = *state;
	uint8_t audio[8] = {0};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_member members[STORE_MEMBERS_MAX];
	store_message msg, got;
	int existed;
	uint64_t seq;
	members[0] = f->parent;
	for (int i = 1; i < STORE_MEMBERS_MAX; i++)
		assert_int_equal(store_member_add(f->s, f->fam.id.s, "孩子", STORE_ROLE_CHILD, NULL,
		                                  2000 + i, &members[i]),
		                 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	for (int i = 0; i < STORE_MEMBERS_MAX; i++)
		assert_int_equal(store_message_listened(f->s, f->fam.id.s, msg.id.s,
		                                        members[i].id.s, 6000 + i, &seq),
		                 0);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &got), 0);
	assert_int_equal(got.listened_count, STORE_MEMBERS_MAX);
	for (int i = 0; i < STORE_MEMBERS_MAX; i++) /* in the order they listened */
		assert_string_equal(got.listened_by[i].s, members[i].id.s);
}

/* A family's mailbox left empty (0 bytes: what fsck, a full disk or a failed copy can leave)
 * was opened as a new mailbox: SQLite takes an empty file for an empty database, the steps made
 * its tables, and the family's voices were gone without a word, its changes numbered from 1
 * again below what its phones had seen. It is damaged: storage_corrupt, set aside in
 * quarantine/, and the other families carry on. */
static void an_emptied_mailbox_is_set_aside(void **state)
{
	fixture *f = *state;
	store_family other;
	store_member om;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &om), 0);
	uint8_t audio[100] = {1, 2, 3};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	store_close(f->s); /* checkpoints: no -wal left */
	f->s = NULL;
	char path[256], wal[300];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	snprintf(wal, sizeof wal, "%s-wal", path);
	assert_int_not_equal(access(wal, F_OK), 0);
	assert_int_equal(truncate(path, 0), 0);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	size_t n = 9;
	uint64_t latest = 0;
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, &msg, 1, &n, &latest),
	                 STORE_ECORRUPT);
	assert_int_not_equal(access(path, F_OK), 0); /* moved to quarantine/ */
	char cmd[300];
	snprintf(cmd, sizeof cmd, "ls '%s/quarantine/' | grep -q '^%s'", f->dir, f->fam.id.s);
	assert_int_equal(system(cmd), 0);
	m.sender = om.id.s;
	assert_int_equal(store_message_append(f->s, other.id.s, &m, &msg, &existed), 0);
}

/* A mailbox the file system cannot look up (here a symbolic link that points at itself: ELOOP,
 * as EIO or EACCES would be) was told storage_corrupt, as a missing one is, though nothing
 * said it was damaged: an operator told to restore a backup over a file that was whole. It is
 * storage_io_error, and the file stays where it is. */
static void a_mailbox_the_file_system_cannot_reach_is_an_io_error(void **state)
{
	fixture *f = *state;
	store_close(f->s);
	f->s = NULL;
	char path[256], kept[300];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	snprintf(kept, sizeof kept, "%s.kept", path);
	assert_int_equal(rename(path, kept), 0);
	assert_int_equal(symlink(path, path), 0);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	store_message msg;
	size_t n = 9;
	uint64_t latest = 0;
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, &msg, 1, &n, &latest),
	                 STORE_EIO);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0); /* left where it is: not quarantined */
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rename(kept, path), 0);
	store_close(f->s); /* the family opens again once the file system finds it */
	assert_int_equal(store_open(&f->s, &o), 0);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, &msg, 1, &n, &latest), 0);
}

/* A connection keeps every statement it is given, however many: the cache had 64 places and
 * refused the 65th statement with out_of_memory, for as long as the connection stayed open
 * (the directory's writer ran 60 of them in all). */
static void a_connection_keeps_every_statement(void **state)
{
	fixture *f = *state;
	static char sql[200][16];
	sqlite3_stmt *first[200];
	char path[128];
	db *d;
	int rc = 0;
	snprintf(path, sizeof path, "%s/many.db", f->dir);
	assert_int_equal(db_open(&d, path, &mailbox_schema, &f->s->opt, true), 0);
	conn *c = db_write_begin(d);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 200; i++) {
			snprintf(sql[i], sizeof sql[i], "SELECT %d", i);
			sqlite3_stmt *st = conn_stmt(c, sql[i], &rc);
			assert_non_null(st);
			if (round == 0)
				first[i] = st;
			assert_ptr_equal(st, first[i]); /* prepared once */
			assert_int_equal(sqlite3_step(st), SQLITE_ROW);
			assert_int_equal(sqlite3_column_int(st, 0), i);
			sqlite3_reset(st);
		}
	}
	db_write_end(d);
	db_close(d);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(ids_are_unguessable_text),
	    T(names_show_something),
	    T(families),
	    T(deleting_a_family_erases_its_file),
	    T(deleting_a_family_leaves_no_names_in_the_directory),
	    T(orphaned_family_files_are_swept),
	    T(meta_values),
	    T(members),
	    T(audit_log_is_append_only),
	    T(append_get_and_read_audio),
	    T(audio_fetch_reads_info_and_bytes_at_once),
	    T(idempotency_keys),
	    T(quota),
	    T(changes_since_and_newest),
	    T(changes_since_pages_through_changed_and_unchanged),
	    T(every_member_who_listened_is_listed),
	    T(a_connection_keeps_every_statement),
	    T(an_emptied_mailbox_is_set_aside),
	    T(a_mailbox_the_file_system_cannot_reach_is_an_io_error),
	    cmocka_unit_test(sqlite_errors_map_to_stable_codes),
	    cmocka_unit_test(error_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
