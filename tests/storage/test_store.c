/*
 * test_store.c — every query of the storage library, on a fresh data directory per test:
 * families (and erasing their file), members, the append-only audit log, messages (append,
 * idempotency, quota, listings, chunked audio, receipts, hiding, deleting), malformed ids,
 * migrations from every earlier version, and quarantine of a corrupt family database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h" /* the migration steps, to build databases at old versions */
#include "store.h"

#include <archive.h>
#include <archive_entry.h>
#include <sodium.h>
#include <sqlite3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
	char dir[64];
	store *s;
	store_family fam;
	store_member parent;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/jiayin-store-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	if (store_open(&f->s, &o) != 0)
		return -1;
	if (store_family_create(f->s, "王家", "妈妈", 0, 1000, &f->fam, &f->parent) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	store_close(f->s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	int rc = system(cmd);
	free(f);
	return rc == 0 ? 0 : -1;
}

static store_new_message new_message(const char *sender, const uint8_t *audio, size_t len)
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

static void families(void **state)
{
	fixture *f = *state;
	store_family got;
	assert_int_equal(store_family_get(f->s, f->fam.id.s, &got), 0);
	assert_string_equal(got.name, "王家");
	assert_int_equal(got.created_ms, 1000);
	assert_int_equal(store_family_set(f->s, f->fam.id.s, 1 << 20, 30), 0);
	assert_int_equal(store_family_get(f->s, f->fam.id.s, &got), 0);
	assert_int_equal(got.quota_bytes, 1 << 20);
	assert_int_equal(got.retention_days, 30);
	/* Malformed ids answer exactly like unknown ones. */
	assert_int_equal(store_family_get(f->s, "nope", &got), STORE_ENOTFOUND);
	assert_int_equal(store_family_get(f->s, "0123456789abcdefghjkmnpqrs", &got),
			 STORE_ENOTFOUND);
	assert_int_equal(store_family_set(f->s, "0123456789abcdefghjkmnpqrs", 0, 0),
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
	assert_int_equal(store_family_delete(f->s, f->fam.id.s), 0);
	assert_int_not_equal(access(path, F_OK), 0);
	store_family got;
	store_member mem;
	assert_int_equal(store_family_get(f->s, f->fam.id.s, &got), STORE_ENOTFOUND);
	assert_int_equal(store_member_get(f->s, f->parent.id.s, &mem), STORE_ENOTFOUND);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ENOTFOUND);
	assert_int_equal(store_family_delete(f->s, f->fam.id.s), STORE_ENOTFOUND);
}

/* A crash between erasing a family's rows and its file left the voices on disk (review
 * finding): the server's start erases files that no family owns, and only those. */
static void orphaned_family_files_are_swept(void **state)
{
	fixture *f = *state;
	store_family other;
	store_member mem;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &mem), 0);
	uint8_t audio[100] = {1, 2, 3};
	store_new_message m = new_message(mem.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	assert_int_equal(store_message_append(f->s, other.id.s, &m, &msg, &existed), 0);
	store_close(f->s);
	f->s = NULL;
	/* The rows went, the crash came before the file did. */
	char db[256], orphan[256], kept[256];
	snprintf(db, sizeof db, "%s/directory.db", f->dir);
	sqlite3 *d;
	assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
	char sql[128];
	snprintf(sql, sizeof sql, "DELETE FROM families WHERE id = '%s'", other.id.s);
	assert_int_equal(sqlite3_exec(d, sql, 0, 0, 0), SQLITE_OK);
	sqlite3_close(d);
	snprintf(orphan, sizeof orphan, "%s/families/%s.db", f->dir, other.id.s);
	snprintf(kept, sizeof kept, "%s/families/%s.db", f->dir, f->fam.id.s);
	assert_int_equal(access(orphan, F_OK), 0);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	unsigned removed;
	assert_int_equal(store_families_sweep(f->s, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_not_equal(access(orphan, F_OK), 0);
	assert_int_equal(access(kept, F_OK), 0);
	assert_int_equal(store_families_sweep(f->s, &removed), 0);
	assert_int_equal(removed, 0);
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

static void secure_delete_leaves_no_audio_in_the_file(void **state)
{
	fixture *f = *state;
	uint8_t audio[50000];
	memset(audio, 0xA5, sizeof audio);
	memcpy(audio + 1000, "JIAYIN-SECRET-VOICE", 19);
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	uint64_t seq;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msg.id.s, STORE_MSG_DELETED,
						 &seq),
			 0);
	store_close(f->s); /* checkpoints the WAL into the database file */
	f->s = NULL;
	char cmd[512];
	snprintf(cmd, sizeof cmd, "cat '%s/families/%s.db'* | grep -c JIAYIN-SECRET-VOICE",
		 f->dir, f->fam.id.s);
	FILE *p = popen(cmd, "r");
	int count = -1;
	assert_int_equal(fscanf(p, "%d", &count), 1);
	pclose(p);
	assert_int_equal(count, 0);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
}

/* Overwrite `len` bytes at `offset` of a file. */
static void mangle(const char *path, long offset, int len)
{
	FILE *fp = fopen(path, "r+b");
	assert_non_null(fp);
	fseek(fp, offset, SEEK_SET);
	for (int i = 0; i < len; i++)
		fputc(0x5A ^ i, fp);
	fclose(fp);
}

/* The page number of a table's b-tree root. */
static long root_page(const char *path, const char *table)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long page = -1;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_master WHERE name = ?",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		page = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return page;
}

/*
 * A family database whose structure is damaged is detected when it opens, moved to
 * quarantine/, reported as storage_corrupt, and the other families carry on. (Damage inside
 * audio bytes is not structure: quick_check cannot see it; the per-message SHA-256 can.)
 */
static void check_quarantine(fixture *f, int damage)
{
	store_family other;
	store_member om;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &om), 0);
	uint8_t audio[40000] = {1};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	for (int i = 0; i < 20; i++)
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	store_close(f->s); /* checkpoints: everything is in the main file */
	f->s = NULL;
	char path[256];
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	if (damage == 0) {
		mangle(path, 0, 16); /* the header: "SQLite format 3" */
	} else {
		long page = root_page(path, "messages");
		assert_true(page > 1);
		mangle(path, (page - 1) * 16384, 64); /* the b-tree page header */
	}
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ECORRUPT);
	assert_int_not_equal(access(path, F_OK), 0); /* moved to quarantine/ */
	char cmd[300];
	snprintf(cmd, sizeof cmd, "ls '%s/quarantine/' | grep -q '^%s'", f->dir, f->fam.id.s);
	assert_int_equal(system(cmd), 0);
	/* Once set aside it is gone for the store, and the other family is untouched. */
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msg.id.s, &msg), STORE_ENOTFOUND);
	m.sender = om.id.s;
	assert_int_equal(store_message_append(f->s, other.id.s, &m, &msg, &existed), 0);
}

static void corrupt_header_is_quarantined(void **state)
{
	check_quarantine(*state, 0);
}

static void corrupt_btree_is_quarantined(void **state)
{
	check_quarantine(*state, 1);
}

static int count_rows(const char *path, const char *sql)
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

/* A database at `version`: the first `version` real steps, applied by hand. */
static void make_at_version(const char *path, const schema *sc, unsigned version)
{
	sqlite3 *db;
	char bump[64];
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	for (unsigned i = 0; i < version; i++)
		assert_int_equal(sqlite3_exec(db, sc->steps[i].sql, 0, 0, 0), SQLITE_OK);
	snprintf(bump, sizeof bump, "PRAGMA user_version = %u", version);
	assert_int_equal(sqlite3_exec(db, bump, 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
}

static void migrations_from_every_version(void **state)
{
	fixture *f = *state;
	store_close(f->s);
	f->s = NULL;
	for (unsigned v = 0; v < directory_schema.count; v++) {
		char dir[128], path[256];
		snprintf(dir, sizeof dir, "%s/v%u", f->dir, v);
		mkdir(dir, 0700);
		snprintf(path, sizeof path, "%s/directory.db", dir);
		make_at_version(path, &directory_schema, v);
		store_options o;
		store_options_init(&o);
		o.dir = dir;
		store *s;
		assert_int_equal(store_open(&s, &o), 0);
		store_family fam;
		store_member mem;
		assert_int_equal(store_family_create(s, "x", "y", 0, 1, &fam, &mem), 0);
		assert_int_equal(store_family_get(s, fam.id.s, &fam), 0);
		store_close(s);
		assert_int_equal(count_rows(path, "PRAGMA user_version"), (int)directory_schema.count);
		assert_int_equal(count_rows(path, "SELECT count(*) FROM sqlite_master WHERE name = "
						  "'moderation_by_family'"),
				 1);
	}
	for (unsigned v = 0; v < mailbox_schema.count; v++) {
		/* A family whose mailbox file is at version v opens and works. */
		store_options o;
		store_options_init(&o);
		o.dir = f->dir;
		store *s;
		store_family fam;
		store_member mem;
		assert_int_equal(store_open(&s, &o), 0);
		assert_int_equal(store_family_create(s, "z", "w", 0, 1, &fam, &mem), 0);
		store_close(s);
		char path[256];
		snprintf(path, sizeof path, "%s/families/%s.db", f->dir, fam.id.s);
		unlink(path);
		make_at_version(path, &mailbox_schema, v);
		assert_int_equal(store_open(&s, &o), 0);
		uint8_t audio[10] = {1}, wave[STORE_WAVEFORM_POINTS] = {0};
		store_new_message m = {.sender = mem.id.s, .waveform = wave, .audio = audio,
				       .audio_len = sizeof audio};
		store_message msg;
		int existed;
		assert_int_equal(store_message_append(s, fam.id.s, &m, &msg, &existed), 0);
		store_close(s);
	}
	/* A newer schema than ours is refused, not downgraded. */
	char path[256];
	snprintf(path, sizeof path, "%s/v0/directory.db", f->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
	store_options o;
	store_options_init(&o);
	snprintf(path, sizeof path, "%s/v0", f->dir);
	o.dir = path;
	store *s;
	assert_int_equal(store_open(&s, &o), STORE_ESCHEMA);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
}

/*
 * Mailbox step 4 rebuilds the messages table: a mailbox at version 3 with messages, changes,
 * receipts, an idempotency key and audio keeps every row (no cascade deleted what refers to
 * the dropped table), and its sequence, listings, reads and retention go on from it.
 */
static void mailbox_step_4_keeps_every_row(void **state)
{
	fixture *f = *state;
	char path[256];
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	store_close(f->s);
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	unlink(path);
	make_at_version(path, &mailbox_schema, 3);
	sqlite3 *db;
	char sql[2048];
	/* As version 3 left them: rowid 1 changed (seq 4), 2 unchanged, 3 deleted (seq 5). */
	snprintf(sql, sizeof sql,
		 "INSERT INTO messages (rowid, id, seq, sender, created_ms, duration_ms, lufs, bytes,"
		 " waveform, sha256, state, kept) VALUES"
		 " (1, '0000000000000000000000000a', 4, '%s', 1000, 1, -16, 3, zeroblob(100),"
		 "  zeroblob(32), 1, 0),"
		 " (2, '0000000000000000000000000b', 2, '%s', 2000, 1, -16, 4, zeroblob(100),"
		 "  zeroblob(32), 1, 0),"
		 " (3, '0000000000000000000000000c', 5, '%s', 3000, 1, -16, 5, zeroblob(100),"
		 "  zeroblob(32), 3, 0);"
		 "INSERT INTO audio VALUES (1, x'010203'), (2, x'04050607');"
		 "INSERT INTO receipts VALUES (1, '%s', 1500);"
		 "INSERT INTO idempotency VALUES ('key-b', 2, 2000);",
		 f->parent.id.s, f->parent.id.s, f->parent.id.s, f->parent.id.s);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(store_open(&f->s, &o), 0);
	store_message list[8], byk;
	size_t n;
	uint64_t latest, seq;
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 0, list, 8, &n, &latest), 0);
	assert_int_equal(n, 3);
	assert_int_equal(latest, 5);
	assert_string_equal(list[0].id.s, "0000000000000000000000000b");
	assert_string_equal(list[1].id.s, "0000000000000000000000000a");
	assert_int_equal(list[1].listened_count, 1);
	assert_int_equal(list[2].state, STORE_MSG_DELETED);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 2, list, 1, &n, &latest), 0);
	assert_int_equal(n, 1);
	assert_int_equal(list[0].seq, 4);
	assert_int_equal(count_rows(path, "PRAGMA user_version"), (int)mailbox_schema.count);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM audio"), 2);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM receipts"), 1);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM idempotency"), 1);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM messages WHERE aged = 1"), 3);
	assert_int_equal(store_message_by_key(f->s, f->fam.id.s, "key-b", &byk), 0);
	assert_string_equal(byk.id.s, "0000000000000000000000000b");
	uint8_t buf[8];
	size_t got;
	assert_int_equal(store_audio_read(f->s, f->fam.id.s, byk.id.s, 0, buf, sizeof buf, &got),
			 0);
	assert_int_equal(got, 4);
	assert_memory_equal(buf, "\x04\x05\x06\x07", 4);
	uint64_t used;
	assert_int_equal(store_mailbox_usage(f->s, f->fam.id.s, &used), 0);
	assert_int_equal(used, 7);

	/* New numbers go on from the highest; old rows are in the retention index. */
	uint8_t audio[4] = {9};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message fresh;
	int existed;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &fresh, &existed), 0);
	assert_int_equal(fresh.seq, 6);
	assert_int_equal(store_message_listened(f->s, f->fam.id.s, byk.id.s, f->parent.id.s, 9000,
						&seq),
			 0);
	assert_int_equal(seq, 7);
	assert_int_equal(store_messages_since(f->s, f->fam.id.s, 5, list, 8, &n, &latest), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id.s, fresh.id.s);
	assert_string_equal(list[1].id.s, byk.id.s);
	assert_int_equal(latest, 7);
	unsigned expired;
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 1500, 10, &expired, &seq), 0);
	assert_int_equal(expired, 1); /* rowid 1, created at 1000 */
	assert_int_equal(seq, 8);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM audio"), 2);
}

static void backups(void **state)
{
	fixture *f = *state;
	uint8_t audio[30000] = {7};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msg;
	int existed;
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msg, &existed), 0);
	store_family other;
	store_member om;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &om), 0);

	char path[256];
	snprintf(path, sizeof path, "%s/one.db", f->dir);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, path), 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM messages"), 3);
	assert_int_equal(count_rows(path, "SELECT sum(length(data)) FROM audio"), 90000);
	assert_int_equal(store_backup_family(f->s, f->fam.id.s, path), STORE_EEXIST);
	assert_int_equal(store_backup_family(f->s, "0123456789abcdefghjkmnpqrs", path),
			 STORE_ENOTFOUND);

	char dir[128];
	unsigned families;
	snprintf(dir, sizeof dir, "%s/all", f->dir);
	assert_int_equal(store_backup_all(f->s, dir, &families), 0);
	assert_int_equal(families, 2);
	snprintf(path, sizeof path, "%s/directory.db", dir);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM families"), 2);
	snprintf(path, sizeof path, "%s/families/%s.db", dir, f->fam.id.s);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM audio"), 3);
	assert_int_equal(store_backup_all(f->s, dir, &families), STORE_EEXIST);
}

static void export_zip(void **state)
{
	fixture *f = *state;
	uint8_t a1[20000], a2[5000];
	for (size_t i = 0; i < sizeof a1; i++)
		a1[i] = (uint8_t)(i * 13);
	memset(a2, 0x42, sizeof a2);
	store_new_message m = new_message(f->parent.id.s, a1, sizeof a1);
	store_message kept, gone, hidden;
	int existed;
	uint64_t seq, bytes;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &kept, &existed), 0);
	m.audio = a2;
	m.audio_len = sizeof a2;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &gone, &existed), 0);
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &hidden, &existed), 0);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, gone.id.s, STORE_MSG_DELETED,
						 &seq),
			 0);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, hidden.id.s, STORE_MSG_HIDDEN,
						 &seq),
			 0);
	char path[256];
	snprintf(path, sizeof path, "%s/export.zip", f->dir);
	FILE *fp = fopen(path, "w+b");
	assert_int_equal(store_export_family(f->s, f->fam.id.s, fileno(fp), &bytes), 0);
	fflush(fp);
	assert_int_equal((uint64_t)ftell(fp), bytes);
	fclose(fp);

	/* Read it back with libarchive: one Ogg with the right bytes, and the index. */
	struct archive *a = archive_read_new();
	archive_read_support_format_zip(a);
	assert_int_equal(archive_read_open_filename(a, path, 16384), ARCHIVE_OK);
	struct archive_entry *e;
	int oggs = 0, index = 0;
	static uint8_t buf[65536];
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		la_ssize_t n = archive_read_data(a, buf, sizeof buf);
		if (strstr(name, ".ogg")) {
			oggs++;
			assert_non_null(strstr(name, kept.id.s));
			assert_int_equal(n, sizeof a1);
			assert_memory_equal(buf, a1, sizeof a1);
		} else {
			index++;
			assert_string_equal(name, "index.json");
			buf[n] = 0;
			assert_non_null(strstr((char *)buf, "\"name\": \"王家\""));
			assert_non_null(strstr((char *)buf, kept.id.s));
			assert_null(strstr((char *)buf, gone.id.s));
			assert_null(strstr((char *)buf, hidden.id.s));
			assert_non_null(strstr((char *)buf, "\"role\": \"parent\""));
		}
	}
	archive_read_free(a);
	assert_int_equal(oggs, 1);
	assert_int_equal(index, 1);
}

static void locked_database_is_busy(void **state)
{
	fixture *f = *state;
	store_close(f->s);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	o.busy_timeout_ms = 50;
	assert_int_equal(store_open(&f->s, &o), 0);
	/* Another process holds the directory's write lock past our busy timeout. */
	char path[256];
	snprintf(path, sizeof path, "%s/directory.db", f->dir);
	sqlite3 *other;
	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", 0, 0, 0), SQLITE_OK);
	store_member m;
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "x", STORE_ROLE_CHILD, NULL, 1, &m),
			 STORE_EBUSY);
	assert_int_equal(sqlite3_exec(other, "COMMIT", 0, 0, 0), SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(store_member_add(f->s, f->fam.id.s, "x", STORE_ROLE_CHILD, NULL, 1, &m),
			 0);
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

/* Messages appended since the retention job's last run (not yet aged) are found by the next. */
static void retention_finds_messages_appended_after_its_last_run(void **state)
{
	fixture *f = *state;
	uint8_t audio[16] = {5};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message a, b, c, got;
	int existed;
	unsigned n;
	uint64_t seq;
	m.created_ms = 1000;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &a, &existed), 0);
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 500, 100, &n, &seq), 0);
	assert_int_equal(n, 0); /* a is aged now, not due */
	m.created_ms = 100;     /* an old time, appended after the run */
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &b, &existed), 0);
	m.created_ms = 9000;
	assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &c, &existed), 0);
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 2000, 100, &n, &seq), 0);
	assert_int_equal(n, 2);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, a.id.s, &got), 0);
	assert_int_equal(got.state, STORE_MSG_DELETED);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, b.id.s, &got), 0);
	assert_int_equal(got.state, STORE_MSG_DELETED);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, c.id.s, &got), 0);
	assert_int_equal(got.state, STORE_MSG_VISIBLE);
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 10000, 100, &n, &seq), 0);
	assert_int_equal(n, 1);
}

static void retention_spares_kept_messages(void **state)
{
	fixture *f = *state;
	uint8_t audio[64] = {7};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message msgs[6];
	int existed;
	uint64_t seq, usage;
	for (int i = 0; i < 6; i++) {
		m.created_ms = 1000 * (i + 1); /* 1 s, 2 s, ... 6 s */
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msgs[i], &existed), 0);
		assert_int_equal(msgs[i].kept, 0);
	}
	/* Keeping is a change the family sees; keeping twice is none. */
	assert_int_equal(store_message_keep(f->s, f->fam.id.s, msgs[1].id.s, 1, &seq), 0);
	assert_int_equal(seq, 7);
	assert_int_equal(store_message_keep(f->s, f->fam.id.s, msgs[1].id.s, 1, &seq), 0);
	assert_int_equal(seq, 7);
	store_message got;
	assert_int_equal(store_message_get(f->s, f->fam.id.s, msgs[1].id.s, &got), 0);
	assert_int_equal(got.kept, 1);
	assert_int_equal(store_message_set_state(f->s, f->fam.id.s, msgs[2].id.s,
						 STORE_MSG_DELETED, &seq),
			 0);
	assert_int_equal(store_message_keep(f->s, f->fam.id.s, msgs[2].id.s, 1, &seq),
			 STORE_ENOTFOUND);

	/* Older than 4.5 s: 0, 1 (kept), 2 (deleted already), 3. At most one at a time. */
	unsigned n;
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 4500, 1, &n, &seq), 0);
	assert_int_equal(n, 1);
	assert_int_equal(seq, 9);
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 4500, 100, &n, &seq), 0);
	assert_int_equal(n, 1);
	assert_int_equal(seq, 10);
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 4500, 100, &n, &seq), 0);
	assert_int_equal(n, 0);
	const store_msg_state want[6] = {STORE_MSG_DELETED, STORE_MSG_VISIBLE, STORE_MSG_DELETED,
					 STORE_MSG_DELETED, STORE_MSG_VISIBLE, STORE_MSG_VISIBLE};
	for (int i = 0; i < 6; i++) {
		assert_int_equal(store_message_get(f->s, f->fam.id.s, msgs[i].id.s, &got), 0);
		assert_int_equal(got.state, want[i]);
	}
	uint8_t buf[8];
	size_t len;
	assert_int_equal(store_audio_read(f->s, f->fam.id.s, msgs[0].id.s, 0, buf, 8, &len),
			 STORE_ENOTFOUND);
	assert_int_equal(store_mailbox_usage(f->s, f->fam.id.s, &usage), 0);
	assert_int_equal(usage, 3 * sizeof audio);
	/* Unkept, it goes with the next run. */
	assert_int_equal(store_message_keep(f->s, f->fam.id.s, msgs[1].id.s, 0, &seq), 0);
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 4500, 100, &n, &seq), 0);
	assert_int_equal(n, 1);

	/* The families the retention job visits, paged by id. */
	store_family other, fams[4];
	store_member mem;
	size_t nf;
	assert_int_equal(store_family_create(f->s, "李家", "爸爸", 0, 1, &other, &mem), 0);
	assert_int_equal(store_families_retaining(f->s, "", 1000, fams, 4, &nf), 0);
	assert_int_equal(nf, 0);
	assert_int_equal(store_family_set(f->s, f->fam.id.s, 0, 30), 0);
	assert_int_equal(store_family_set(f->s, other.id.s, 0, 7), 0);
	assert_int_equal(store_families_retaining(f->s, "", 1000, fams, 1, &nf), 0);
	assert_int_equal(nf, 1);
	assert_int_equal(store_families_retaining(f->s, fams[0].id.s, 1000, &fams[1], 4, &nf), 0);
	assert_int_equal(nf, 1);
	/* Checked at 500: not due again before 500 has passed. */
	assert_int_equal(store_family_retention_checked(f->s, other.id.s, 500), 0);
	assert_int_equal(store_families_retaining(f->s, "", 400, fams + 2, 2, &nf), 0);
	assert_int_equal(nf, 1);
	assert_string_equal(fams[2].id.s, f->fam.id.s);
	assert_int_equal(store_families_retaining(f->s, "", 501, fams + 2, 2, &nf), 0);
	assert_int_equal(nf, 2);
	assert_string_not_equal(fams[0].id.s, fams[1].id.s);
	assert_true(strcmp(fams[0].id.s, fams[1].id.s) < 0);
	assert_int_equal(fams[0].retention_days + fams[1].retention_days, 37);
}

typedef struct keeper {
	fixture *f;
	store_message *msgs;
	int n;
	int *kept_rc;
} keeper;

static void *keep_all(void *arg)
{
	keeper *k = arg;
	uint64_t seq;
	for (int i = 0; i < k->n; i += 2)
		k->kept_rc[i] = store_message_keep(k->f->s, k->f->fam.id.s, k->msgs[i].id.s, 1, &seq);
	return NULL;
}

/* A message kept while the retention job runs is never deleted by it (review finding: the
 * job chose its victims first and deleted them later without looking again). */
static void retention_never_deletes_what_was_just_kept(void **state)
{
	fixture *f = *state;
	enum { N = 300 };
	uint8_t audio[16] = {1};
	store_new_message m = new_message(f->parent.id.s, audio, sizeof audio);
	store_message *msgs = calloc(N, sizeof *msgs);
	int *kept_rc = calloc(N, sizeof *kept_rc), existed;
	for (int i = 0; i < N; i++)
		assert_int_equal(store_message_append(f->s, f->fam.id.s, &m, &msgs[i], &existed), 0);
	keeper k = {f, msgs, N, kept_rc};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, keep_all, &k), 0);
	unsigned deleted, total = 0;
	uint64_t seq;
	do {
		assert_int_equal(store_messages_expire(f->s, f->fam.id.s, 999999, 7, &deleted, &seq),
				 0);
		total += deleted;
	} while (deleted > 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	unsigned visible = 0;
	for (int i = 0; i < N; i++) {
		store_message got;
		assert_int_equal(store_message_get(f->s, f->fam.id.s, msgs[i].id.s, &got), 0);
		if (i % 2 == 0 && kept_rc[i] == 0)
			assert_int_equal(got.state, STORE_MSG_VISIBLE); /* kept: never deleted */
		if (got.state == STORE_MSG_VISIBLE)
			visible++;
		else
			assert_int_equal(got.kept, 0);
	}
	assert_int_equal(total + visible, N); /* every deletion counted once */
	free(msgs);
	free(kept_rc);
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

/* ---- the family cache ---- */

/*
 * The cache finds an open family through a table by id (review finding: every call walked the
 * LRU list, up to 256 string comparisons). These tests fail if a lookup answers with another
 * family of the same bucket, or with an entry that eviction, a failed open or an erasure left
 * behind: more families than the cache keeps, in orders that evict on every call, hit, and
 * share buckets; all held at once (more entries than the cache keeps, tables of 2 to 128
 * buckets); ids one character apart; families erased while open and while not, asked for
 * again and again.
 */
#define CACHE_FAMILIES 40

typedef struct cache_world {
	store *s;
	store_family fam[CACHE_FAMILIES];
	store_member parent[CACHE_FAMILIES];
	store_message msg[CACHE_FAMILIES];
	bool erased[CACHE_FAMILIES];
} cache_world;

/* Each family's one message: its length and bytes are the family's own. */
static size_t cache_audio_len(int i)
{
	return 100 + 7 * (size_t)i;
}

static void cache_audio(int i, uint8_t *buf)
{
	for (size_t k = 0; k < cache_audio_len(i); k++)
		buf[k] = (uint8_t)(i * 37 + k * 11 + 3);
}

/* The LRU list, the buckets' chains and the count agree: no entry is in one and not the other. */
static void cache_consistent(store *s)
{
	unsigned in_lru = 0, in_buckets = 0;
	for (family *f = s->head; f; f = f->next) {
		bool found = false;
		for (unsigned b = 0; b <= s->bucket_mask && !found; b++)
			for (family *c = s->buckets[b]; c && !found; c = c->chain)
				found = c == f;
		assert_true(found);
		in_lru++;
	}
	for (unsigned b = 0; b <= s->bucket_mask; b++)
		for (family *c = s->buckets[b]; c; c = c->chain)
			in_buckets++;
	assert_int_equal(in_lru, s->nfamilies);
	assert_int_equal(in_buckets, s->nfamilies);
}

/* 0 if family i answers as itself (or, erased, as not found); else which check failed. */
static int cache_check(cache_world *w, int i)
{
	uint64_t used;
	store_message out[4];
	size_t n, got;
	uint8_t want[512], buf[512];
	const char *id = w->fam[i].id.s;
	if (w->erased[i])
		return store_mailbox_usage(w->s, id, &used) == STORE_ENOTFOUND &&
			       store_messages_newest(w->s, id, out, 4, &n) == STORE_ENOTFOUND
			   ? 0
			   : 1;
	if (store_mailbox_usage(w->s, id, &used) != 0 || used != cache_audio_len(i))
		return 2;
	if (store_messages_newest(w->s, id, out, 4, &n) != 0 || n != 1 ||
	    strcmp(out[0].id.s, w->msg[i].id.s) != 0 ||
	    strcmp(out[0].sender.s, w->parent[i].id.s) != 0)
		return 3;
	cache_audio(i, want);
	if (store_audio_read(w->s, id, w->msg[i].id.s, 0, buf, sizeof buf, &got) != 0 ||
	    got != cache_audio_len(i) || memcmp(buf, want, got) != 0)
		return 4;
	return 0;
}

static void cache_check_order(cache_world *w, const int *order, int n)
{
	for (int k = 0; k < n; k++) {
		int rc = cache_check(w, order[k]);
		if (rc)
			fail_msg("family %d (%d-th in order): check %d failed", order[k], k, rc);
	}
	cache_consistent(w->s);
}

typedef struct cache_hold {
	cache_world *w;
	int i;
} cache_hold;

static int cache_hold_from(cache_world *w, int i);

/* Called with family h->i held: hold the next ones too; the deepest checks them all. */
static int cache_hold_choose(void *ctx, const store_audio_info *info, uint64_t *offset,
			     size_t *len)
{
	const cache_hold *h = ctx;
	*offset = 0;
	*len = info->bytes;
	if (h->i + 1 < CACHE_FAMILIES)
		return cache_hold_from(h->w, h->i + 1);
	unsigned held = 0;
	for (int i = 0; i < CACHE_FAMILIES; i++) {
		if (cache_check(h->w, i))
			return -1000 - i;
		held += !h->w->erased[i];
	}
	return h->w->s->nfamilies >= held ? 0 : -999; /* all in the cache, whatever its size */
}

/* Hold family i (an audio fetch whose choose() runs the next ones), i + 1... inside it. */
static int cache_hold_from(cache_world *w, int i)
{
	while (i < CACHE_FAMILIES && w->erased[i])
		i++;
	if (i == CACHE_FAMILIES)
		return 0;
	cache_hold h = {w, i};
	uint8_t buf[512], want[512];
	size_t got;
	int rc = store_audio_fetch(w->s, w->fam[i].id.s, w->msg[i].id.s, cache_hold_choose, &h, buf,
				   &got, NULL);
	if (rc)
		return rc;
	cache_audio(i, want);
	return got == cache_audio_len(i) && memcmp(buf, want, got) == 0 ? 0 : -2000 - i;
}

static void cache_all_orders(cache_world *w)
{
	int order[4 * CACHE_FAMILIES], n = 0;
	for (int r = 0; r < 2; r++) /* in turn: each call's family is the least recently used */
		for (int i = 0; i < CACHE_FAMILIES; i++)
			order[n++] = i;
	for (int i = CACHE_FAMILIES - 1; i >= 0; i--) /* backwards: the most recent first */
		order[n++] = i;
	for (int i = 0; i < CACHE_FAMILIES; i++) /* strided */
		order[n++] = i * 7 % CACHE_FAMILIES;
	cache_check_order(w, order, n);
	n = 0;
	for (int i = 0; i < CACHE_FAMILIES / 2; i++) { /* a hit, then pairs far apart */
		order[n++] = i;
		order[n++] = i;
		order[n++] = i + CACHE_FAMILIES / 2;
		order[n++] = i;
	}
	cache_check_order(w, order, n);
	uint64_t x = 0x2545f4914f6cdd1dull;
	for (int k = 0; k < 4 * CACHE_FAMILIES; k++) { /* at random (a fixed sequence) */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		order[k] = (int)(x % CACHE_FAMILIES);
	}
	cache_check_order(w, order, 4 * CACHE_FAMILIES);
	assert_int_equal(cache_hold_from(w, 0), 0);
	cache_consistent(w->s);
}

static void cache_reopen(fixture *f, cache_world *w, unsigned max_open)
{
	store_options o;
	store_close(f->s);
	store_options_init(&o);
	o.dir = f->dir;
	o.max_open_families = max_open;
	assert_int_equal(store_open(&f->s, &o), 0);
	w->s = f->s;
}

static void family_cache_finds_each_family_its_own(void **state)
{
	fixture *f = *state;
	cache_world *w = calloc(1, sizeof *w);
	uint8_t audio[512];
	int existed;
	assert_non_null(w);
	w->s = f->s;
	for (int i = 0; i < CACHE_FAMILIES; i++)
		assert_int_equal(store_family_create(f->s, "家", "妈妈", 0, 1000 + i, &w->fam[i],
						     &w->parent[i]),
				 0);
	/* The last two families' mailboxes are moved to ids one character away from the first
	 * family's: its last character, its first. */
	cache_reopen(f, w, 4); /* every mailbox closed */
	for (int t = 0; t < 2; t++) {
		store_family *twin = &w->fam[CACHE_FAMILIES - 1 - t];
		char from[256], to[256];
		snprintf(from, sizeof from, "%s/families/%s.db", f->dir, twin->id.s);
		twin->id = w->fam[0].id;
		char *c = &twin->id.s[t ? 0 : STORE_ID_LEN - 1];
		*c = *c == '0' ? '1' : '0';
		snprintf(to, sizeof to, "%s/families/%s.db", f->dir, twin->id.s);
		assert_int_equal(rename(from, to), 0);
	}
	for (int i = 0; i < CACHE_FAMILIES; i++) {
		cache_audio(i, audio);
		store_new_message m = new_message(w->parent[i].id.s, audio, cache_audio_len(i));
		assert_int_equal(
		    store_message_append(f->s, w->fam[i].id.s, &m, &w->msg[i], &existed), 0);
	}
	/* 1: a table of 2 buckets, a miss and an eviction on almost every call; 4: 8 buckets;
	 * 64: all open at once in 128 buckets, every call a hit. */
	static const unsigned sizes[] = {1, 4, 64};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		cache_reopen(f, w, sizes[k]);
		cache_all_orders(w);
		assert_true(f->s->nfamilies <= sizes[k]);
	}

	/* Erase one family just used (open) and one not open; ask for both, and
	 * for an id no family has, between the others' calls. */
	cache_reopen(f, w, 4);
	assert_int_equal(cache_check(w, 5), 0);
	assert_int_equal(store_family_delete(f->s, w->fam[5].id.s), 0);
	w->erased[5] = true;
	assert_int_equal(store_family_delete(f->s, w->fam[30].id.s), 0);
	w->erased[30] = true;
	cache_consistent(f->s);
	uint64_t used;
	for (int r = 0; r < 3; r++) {
		assert_int_equal(store_mailbox_usage(f->s, "0123456789abcdefghjkmnpqrs", &used),
				 STORE_ENOTFOUND);
		cache_all_orders(w);
	}
	assert_int_equal(store_family_delete(f->s, w->fam[5].id.s), STORE_ENOTFOUND);
	cache_reopen(f, w, 64); /* and in a store that never had them open */
	cache_all_orders(w);
	free(w);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(ids_are_unguessable_text),
		T(families),
		T(deleting_a_family_erases_its_file),
		T(orphaned_family_files_are_swept),
		T(meta_values),
		T(members),
		T(audit_log_is_append_only),
		T(append_get_and_read_audio),
		T(family_cache_finds_each_family_its_own),
		T(audio_fetch_reads_info_and_bytes_at_once),
		T(idempotency_keys),
		T(quota),
		T(changes_since_and_newest),
		T(changes_since_pages_through_changed_and_unchanged),
		T(retention_finds_messages_appended_after_its_last_run),
		T(retention_spares_kept_messages),
		T(retention_never_deletes_what_was_just_kept),
		T(secure_delete_leaves_no_audio_in_the_file),
		T(corrupt_header_is_quarantined),
		T(corrupt_btree_is_quarantined),
		T(migrations_from_every_version),
		T(mailbox_step_4_keeps_every_row),
		T(backups),
		T(export_zip),
		T(locked_database_is_busy),
		cmocka_unit_test(sqlite_errors_map_to_stable_codes),
		cmocka_unit_test(error_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
