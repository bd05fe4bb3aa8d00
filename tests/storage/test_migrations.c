/*
 * test_migrations.c — the schema steps: a directory and a mailbox created at every earlier
 * version open and work, a newer version is refused, mailbox step 4 keeps every row, step 5
 * clears the tombstones made before it, and two processes opening an old file at once (the
 * server and jiayinctl, both upgraded) migrate it once, both successfully.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h" /* the migration steps, to build databases at old versions */
#include "store.h"
#include "store_fixture.h"

#include <pthread.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
		/* A sign-up with a key (step 18), and the same again: one family. */
		uint8_t token[STORE_HASH_LEN] = {1}, key[STORE_HASH_LEN] = {2};
		store_device dev;
		store_signup done;
		for (int i = 0; i < 2; i++) {
			assert_int_equal(store_family_signup(s, "x", "y", 0, token, "phone", key, 0,
			                                     true, 1, &fam, &mem, &dev, &done),
			                 0);
			assert_int_equal(done, i ? STORE_SIGNUP_AGAIN : STORE_SIGNUP_MADE);
		}
		/* A pairing with a key (step 19), and the same again: one member. */
		uint8_t code[STORE_HASH_LEN] = {3}, pair_key[STORE_HASH_LEN] = {4};
		store_pairing p = {.role = STORE_ROLE_CHILD, .created_ms = 1, .expires_ms = 1000};
		p.family_id = fam.id;
		snprintf(p.member_name, sizeof p.member_name, "z");
		assert_int_equal(store_pairing_create(s, code, &p), 0);
		for (int i = 0; i < 2; i++) {
			uint8_t pair_token[STORE_HASH_LEN] = {5, (uint8_t)i};
			store_pair_keyed paired;
			assert_int_equal(store_pairing_redeem_keyed(s, code, pair_token, "phone",
			                                            pair_key, 2, 0, NULL, &p, &mem,
			                                            &dev, &fam, &paired),
			                 0);
			assert_int_equal(paired, i ? STORE_PAIR_AGAIN : STORE_PAIR_MADE);
		}
		store_close(s);
		assert_int_equal(count_rows(path, "PRAGMA user_version"), (int)directory_schema.count);
		assert_int_equal(count_rows(path, "SELECT count(*) FROM sqlite_master WHERE name = "
						  "'moderation_by_family'"),
				 1);
	}
	for (unsigned v = 1; v < mailbox_schema.count; v++) {
		/* A family whose mailbox file is at version v opens and works (a mailbox is made
		 * at version 1 at least: one at 0 is an empty file, damaged, test_store.c). */
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
 * The store closed and the fixture's family mailbox made again at `version`, empty; *o set to
 * reopen the store; path: the mailbox's file.
 */
static void mailbox_at_version(fixture *f, unsigned version, store_options *o, char *path,
                               size_t size)
{
	store_options_init(o);
	o->dir = f->dir;
	store_close(f->s);
	snprintf(path, size, "%s/families/%s.db", f->dir, f->fam.id.s);
	unlink(path);
	make_at_version(path, &mailbox_schema, version);
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
	mailbox_at_version(f, 3, &o, path, sizeof path);
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
	const uint32_t day = 1; /* created before 1500 at a day and 1500 ms */
	assert_int_equal(store_family_update(f->s, f->fam.id.s, NULL, &day, NULL), 0);
	assert_int_equal(store_messages_expire(f->s, f->fam.id.s, day, 24 * 3600 * 1000LL + 1500,
	                                       10, &expired, &seq),
	                 0);
	assert_int_equal(expired, 1); /* rowid 1, created at 1000 */
	assert_int_equal(seq, 8);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM audio"), 2);
}

/* Whether `marker` is in the database file or its WAL. */
static bool in_files(const char *path, const char *marker)
{
	static const char *const suffixes[] = {"", "-wal"};
	bool found = false;
	for (size_t i = 0; i < 2 && !found; i++) {
		char name[300];
		snprintf(name, sizeof name, "%s%s", path, suffixes[i]);
		FILE *fp = fopen(name, "rb");
		if (!fp)
			continue;
		static char buf[1 << 20];
		size_t n = fread(buf, 1, sizeof buf, fp);
		fclose(fp);
		found = memmem(buf, n, marker, strlen(marker)) != NULL;
	}
	return found;
}

/*
 * Mailbox step 5: tombstones made before it kept their voice's waveform and hash, its length
 * and loudness, and who heard it. They are cleared, and the bytes are gone from the file: from
 * version 3, step 4 first copies the table and drops the old one, whose pages would keep them
 * on the free list without secure_delete during migrations. The live message beside them keeps
 * all of its own, and the deleted message's idempotency key still answers (a retry must not
 * store the voice again).
 */
static void mailbox_step_5_clears_old_tombstones(void **state)
{
	fixture *f = *state;
	char path[256];
	store_options o;
	mailbox_at_version(f, 3, &o, path, sizeof path);
	char sql[2048];
	snprintf(
	    sql, sizeof sql,
	    "INSERT INTO messages (rowid, id, seq, sender, created_ms, duration_ms, lufs, bytes,"
	    " waveform, sha256, state) VALUES"
	    " (1, '0000000000000000000000000a', 1, '%s', 1000, 4100, -16.5, 3,"
	    "  CAST('JIAYIN-LIVE-WAVEFORM' AS BLOB), zeroblob(32), 1),"
	    " (2, '0000000000000000000000000b', 3, '%s', 2000, 5200, -17.25, 4,"
	    "  CAST('JIAYIN-DELETED-WAVEFORM' AS BLOB), CAST('JIAYIN-DELETED-HASH' AS BLOB), 3);"
	    "INSERT INTO audio VALUES (1, x'010203');"
	    "INSERT INTO receipts VALUES (1, '%s', 1500), (2, '%s', 2500);"
	    "INSERT INTO idempotency VALUES ('key-b', 2, 2000);",
	    f->parent.id.s, f->parent.id.s, f->parent.id.s, f->parent.id.s);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
	assert_true(in_files(path, "JIAYIN-DELETED-WAVEFORM"));

	assert_int_equal(store_open(&f->s, &o), 0);
	store_message m;
	assert_int_equal(store_message_by_key(f->s, f->fam.id.s, "key-b", &m), 0);
	assert_int_equal(m.state, STORE_MSG_DELETED);
	assert_int_equal(m.duration_ms, 0);
	assert_int_equal(m.bytes, 0);
	assert_int_equal(m.listened_count, 0);
	static const uint8_t zeros[STORE_WAVEFORM_POINTS];
	assert_memory_equal(m.waveform, zeros, sizeof zeros);
	assert_int_equal(store_message_get(f->s, f->fam.id.s, "0000000000000000000000000a", &m), 0);
	assert_int_equal(m.state, STORE_MSG_VISIBLE);
	assert_int_equal(m.duration_ms, 4100);
	assert_int_equal(m.listened_count, 1);
	assert_int_equal(count_rows(path,
	                            "SELECT count(*) FROM messages WHERE state = 3 AND "
	                            "(length(waveform) + length(sha256) + duration_ms + bytes "
	                            "+ (lufs != 0)) = 0"),
	                 1);
	store_close(f->s); /* checkpoints: the file now holds what the WAL did */
	f->s = NULL;
	assert_int_equal(count_rows(path, "PRAGMA user_version"), (int)mailbox_schema.count);
	assert_false(in_files(path, "JIAYIN-DELETED-WAVEFORM"));
	assert_false(in_files(path, "JIAYIN-DELETED-HASH"));
	assert_true(in_files(path, "JIAYIN-LIVE-WAVEFORM"));
	assert_int_equal(store_open(&f->s, &o), 0);
}

/* ---- Two processes migrating one file ---- */

typedef struct opener {
	const char *dir;
	pthread_t thread;
	int rc;
} opener;

static void *opener_main(void *arg)
{
	opener *o = arg;
	store_options opt;
	store_options_init(&opt);
	opt.dir = o->dir;
	store *s = NULL;
	o->rc = store_open(&s, &opt);
	store_close(s);
	return NULL;
}

/*
 * Both read the old version while a third connection holds the write lock, then take their
 * turns at it: the second must find the steps taken, not take them again ("table exists").
 */
static void two_openers_migrate_once(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	snprintf(dir, sizeof dir, "%s/race", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof path, "%s/directory.db", dir);
	make_at_version(path, &directory_schema, 0);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL", 0, 0, 0), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), SQLITE_OK);
	opener o[2] = {{dir, 0, 1}, {dir, 0, 1}};
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&o[i].thread, NULL, opener_main, &o[i]), 0);
	usleep(300 * 1000); /* both at BEGIN IMMEDIATE, having read version 0 */
	assert_int_equal(sqlite3_exec(db, "COMMIT", 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
	for (int i = 0; i < 2; i++) {
		pthread_join(o[i].thread, NULL);
		assert_int_equal(o[i].rc, 0);
	}
	assert_int_equal(count_rows(path, "PRAGMA user_version"), (int)directory_schema.count);
}

/* dir = f->dir/name, holding a directory.db at `version` with `rows` (SQL, or NULL) in it. */
static void directory_at(const fixture *f, const char *name, unsigned version, const char *rows,
                         char dir[128], char path[256])
{
	snprintf(dir, 128, "%s/%s", f->dir, name);
	mkdir(dir, 0700);
	snprintf(path, 256, "%s/directory.db", dir);
	make_at_version(path, &directory_schema, version);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (rows)
		assert_int_equal(sqlite3_exec(db, rows, 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
}

/* Directory step 7 adds who left: the members of a directory at version 6 stay members, and
 * one of them can leave. */
static void directory_step_7_keeps_members(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	directory_at(f, "v6", 6,
	             "INSERT INTO families (id, name, created_ms) VALUES "
	             "('f0000000000000000000000000', '王家', 1);"
	             "INSERT INTO members (id, family_id, name, role, created_ms) VALUES "
	             "('a0000000000000000000000000', 'f0000000000000000000000000', '妈妈', "
	             "'parent', 1), "
	             "('b0000000000000000000000000', 'f0000000000000000000000000', '小明', "
	             "'child', 2);",
	             dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	store_member list[4], m;
	size_t n;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(store_members_list(s, "f0000000000000000000000000", list, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[1].removed_ms, 0);
	assert_int_equal(store_member_get(s, "b0000000000000000000000000", &m), 0);
	assert_int_equal(store_member_remove(s, "f0000000000000000000000000",
	                                     "b0000000000000000000000000", 5, &m),
	                 0);
	assert_int_equal(store_member_remove(s, "f0000000000000000000000000",
	                                     "a0000000000000000000000000", 6, &m),
	                 STORE_ELIMIT);
	assert_int_equal(store_members_all(s, "f0000000000000000000000000", list, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[1].id.s, "b0000000000000000000000000");
	assert_int_equal(list[1].removed_ms, 5);
	store_close(s);
}

/*
 * Directory step 12: kiosk links made before step 10 learn who chose their PIN from the audit
 * log, and a PIN chosen by a member who has left is withdrawn, its session ended (the review:
 * an aunt removed before the upgrade still logged in as the child). A PIN nobody is recorded
 * as choosing, or one a parent chose, stays.
 */
static void directory_step_12_withdraws_old_pins(void **state)
{
	fixture *f = *state;
#define FAM "'f0000000000000000000000000'"
#define MOM "'a0000000000000000000000000'"
#define AUNT "'a1111111111111111111111111'"
#define OUTSIDER "'a2222222222222222222222222'"
	char dir[128], path[256];
	directory_at(
	    f, "v9", 9,
	    "INSERT INTO families (id, name, created_ms) VALUES (" FAM ", '王家', 1), "
	    "('f1111111111111111111111111', '李家', 1);"
	    "INSERT INTO members (id, family_id, name, role, created_ms, removed_ms) VALUES "
	    "(" MOM ", " FAM ", '妈妈', 'parent', 1, NULL), "
	    "(" AUNT ", " FAM ", '姑姑', 'caregiver', 1, 50), "
	    "(" OUTSIDER ", 'f1111111111111111111111111', '外人', 'parent', 1, NULL), "
	    "('c0000000000000000000000000', " FAM ", '小明', 'child', 1, NULL), "
	    "('c1111111111111111111111111', " FAM ", '小红', 'child', 1, NULL), "
	    "('c2222222222222222222222222', " FAM ", '小刚', 'child', 1, NULL);"
	    "INSERT INTO schools VALUES ('s0000000000000000000000000', '希望小学', 1);"
	    "INSERT INTO kiosks VALUES ('k0000000000000000000000000', "
	    "'s0000000000000000000000000', '平板', 1);"
	    "INSERT INTO devices (id, token_hash, kind, kiosk_id, created_ms) VALUES "
	    "('d0000000000000000000000000', x'01', 'kiosk', 'k0000000000000000000000000', 1);"
	    "INSERT INTO kiosk_links (id, kiosk_id, member_id, pin_hash, created_ms) VALUES "
	    "('n0000000000000000000000000', 'k0000000000000000000000000', "
	    "'c0000000000000000000000000', 'pin-aunt', 1), "
	    "('n1111111111111111111111111', 'k0000000000000000000000000', "
	    "'c1111111111111111111111111', 'pin-mom', 1), "
	    "('n2222222222222222222222222', 'k0000000000000000000000000', "
	    "'c2222222222222222222222222', 'pin-unknown', 1);"
	    "INSERT INTO kiosk_sessions VALUES (x'02', 'd0000000000000000000000000', "
	    "'n0000000000000000000000000', 1, 1);"
	    /* 小明: the mother linked him, the aunt chose his PIN last; 小红: the aunt linked
	     * her, the mother chose her PIN last; 小刚: only another family's member is
	     * recorded (not a chooser). */
	    "INSERT INTO audit_log (at_ms, actor, action, family_id, target) VALUES "
	    "(2, " MOM ", 'kiosk.link', " FAM ", 'n0000000000000000000000000'), "
	    "(3, " AUNT ", 'kiosk.pin', " FAM ", 'n0000000000000000000000000'), "
	    "(4, " AUNT ", 'kiosk.link', " FAM ", 'n1111111111111111111111111'), "
	    "(5, " MOM ", 'kiosk.pin', " FAM ", 'n1111111111111111111111111'), "
	    "(6, " OUTSIDER ", 'kiosk.pin', " FAM ", 'n2222222222222222222222222');",
	    dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	store_kiosk_link l;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(store_kiosk_link_get(s, "n0000000000000000000000000", &l), 0);
	assert_string_equal(l.pin_hash, "");
	assert_string_equal(l.pin_set_by.s, "");
	assert_int_equal(count_rows(path, "SELECT count(*) FROM kiosk_sessions"), 0);
	assert_int_equal(store_kiosk_link_get(s, "n1111111111111111111111111", &l), 0);
	assert_string_equal(l.pin_hash, "pin-mom");
	assert_string_equal(l.pin_set_by.s, "a0000000000000000000000000");
	assert_int_equal(store_kiosk_link_get(s, "n2222222222222222222222222", &l), 0);
	assert_string_equal(l.pin_hash, "pin-unknown");
	assert_string_equal(l.pin_set_by.s, "");
#undef FAM
#undef MOM
#undef AUNT
#undef OUTSIDER
	store_close(s);
}

/* Directory step 13: families erased before step 11 are known as erased from the audit log,
 * so the file a crash left after such an erasure is erased at the start, not set aside (the
 * review); a family still there is not taken for one. */
static void directory_step_13_knows_older_erasures(void **state)
{
	fixture *f = *state;
	char dir[128], path[256], fams[160], left[256];
	directory_at(f, "v12", 12,
	             "INSERT INTO families (id, name, created_ms) VALUES "
	             "('f1111111111111111111111111', '李家', 1);"
	             "INSERT INTO audit_log (at_ms, actor, action, family_id, target) VALUES "
	             "(5, 'jiayinctl', 'family.delete', 'f0000000000000000000000000', "
	             "'f0000000000000000000000000'), "
	             "(6, 'a0000000000000000000000000', 'family.delete', "
	             "'f2222222222222222222222222', 'f2222222222222222222222222'), "
	             "(7, 'a1111111111111111111111111', 'family.delete', "
	             "'f1111111111111111111111111', NULL);",
	             dir, path);
	snprintf(fams, sizeof fams, "%s/families", dir);
	mkdir(fams, 0700);
	snprintf(left, sizeof left, "%s/f0000000000000000000000000.db", fams);
	FILE *file = fopen(left, "w");
	assert_non_null(file);
	fclose(file);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(store_family_erased(s, "f0000000000000000000000000"), 0);
	assert_int_equal(store_family_erased(s, "f2222222222222222222222222"), 0);
	assert_int_equal(store_family_erased(s, "f1111111111111111111111111"), STORE_ENOTFOUND);
	unsigned removed, aside;
	assert_int_equal(store_families_sweep(s, &removed, &aside), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(aside, 0);
	assert_int_equal(access(left, F_OK), -1);
	store_close(s);
}

/* Directory step 14: a kiosk from before counts its wrong PINs all together from the upgrade:
 * none counted yet, then its bound holds, its links with their own counts and locks kept. */
static void directory_step_14_counts_kiosk_pins(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	directory_at(f, "v13", 13,
	             "INSERT INTO families (id, name, created_ms) VALUES "
	             "('f0000000000000000000000000', '王家', 1);"
	             "INSERT INTO members (id, family_id, name, role, created_ms) VALUES "
	             "('c0000000000000000000000000', 'f0000000000000000000000000', '小明', "
	             "'child', 1);"
	             "INSERT INTO schools VALUES ('s0000000000000000000000000', '希望小学', 1);"
	             "INSERT INTO kiosks VALUES ('k0000000000000000000000000', "
	             "'s0000000000000000000000000', '平板', 1);"
	             "INSERT INTO kiosk_links (id, kiosk_id, member_id, pin_hash, failures, "
	             "created_ms) VALUES ('n0000000000000000000000000', "
	             "'k0000000000000000000000000', 'c0000000000000000000000000', 'pin', 7, 1);",
	             dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(count_rows(path, "SELECT pin_failures FROM kiosks"), 0);
	store_kiosk_link got;
	int allowed = -1;
	int64_t until = 0;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_kiosk_pin_attempt_bounded(s, "n0000000000000000000000000",
		                                                 5000000, 100, 60000, 2, 3600000,
		                                                 &got, &allowed, &until),
		                 0);
		assert_int_equal(allowed, 1);
	}
	assert_int_equal(got.failures, 9);
	assert_int_equal(store_kiosk_pin_attempt_bounded(s, "n0000000000000000000000000", 5000001,
	                                                 100, 60000, 2, 3600000, &got, &allowed,
	                                                 &until),
	                 STORE_ELIMIT);
	assert_int_equal(until, 5000000 + 3600000);
	assert_int_equal(count_rows(path, "SELECT pin_failures FROM kiosks"), 2);
	store_close(s);
}

/* Directory step 15: a family's pairings of the hour are read through the index of each
 * member's devices by when they were made; the devices from before are in it, counted as before
 * (the hour's, revoked ones too, not the family's first phone nor those an hour old). */
static void directory_step_15_indexes_pairings_by_time(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	directory_at(
	    f, "v14", 14,
	    "INSERT INTO families (id, name, created_ms) VALUES "
	    "('f0000000000000000000000000', '王家', 1000);"
	    "INSERT INTO members (id, family_id, name, role, created_ms) VALUES "
	    "('a0000000000000000000000000', 'f0000000000000000000000000', '妈妈', "
	    "'parent', 1000), "
	    "('b0000000000000000000000000', 'f0000000000000000000000000', '奶奶', "
	    "'caregiver', 2000);"
	    "INSERT INTO devices (id, token_hash, kind, member_id, created_ms, revoked_ms) "
	    "VALUES ('d0000000000000000000000000', x'01', 'personal', "
	    "'a0000000000000000000000000', 1000, NULL), "
	    "('d1000000000000000000000000', x'02', 'personal', "
	    "'b0000000000000000000000000', 2000, 5000000), "
	    "('d2000000000000000000000000', x'03', 'personal', "
	    "'b0000000000000000000000000', 5000000, NULL), "
	    "('d3000000000000000000000000', x'04', 'personal', "
	    "'a0000000000000000000000000', 6000000, NULL);",
	    dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM sqlite_master WHERE name = "
	                                  "'devices_by_member_created'"),
	                 1);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM sqlite_master WHERE name = "
	                                  "'devices_by_member'"),
	                 0);
	unsigned n = 0;
	int64_t first = 0;
	assert_int_equal(
	    store_family_pairings(s, "f0000000000000000000000000", 6000000, &n, &first), 0);
	assert_int_equal(n, 2);
	assert_int_equal(first, 5000000);
	/* The index serves the member's cascade too: a member's phones are found by it. */
	store_member m;
	assert_int_equal(store_member_remove(s, "f0000000000000000000000000",
	                                     "b0000000000000000000000000", 6000001, &m),
	                 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM devices WHERE member_id = "
	                                  "'b0000000000000000000000000' AND revoked_ms = 6000001"),
	                 1);
	store_close(s);
}

/* Directory step 16: a kiosk's codes from before name no tablet and live out their minutes (a
 * tablet revoked takes none of them); a code made since names its tablet and goes with it. */
static void directory_step_16_kiosk_codes_know_their_tablet(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	uint8_t before[STORE_HASH_LEN], since[STORE_HASH_LEN];
	memset(before, 0xb0, sizeof before);
	memset(since, 0x5c, sizeof since);
	directory_at(f, "v15", 15,
	             "INSERT INTO schools VALUES ('s0000000000000000000000000', '希望小学', 1);"
	             "INSERT INTO kiosks (id, school_id, name, created_ms) VALUES "
	             "('k0000000000000000000000000', 's0000000000000000000000000', '平板', 1);"
	             "INSERT INTO devices (id, token_hash, kind, kiosk_id, created_ms) VALUES "
	             "('d0000000000000000000000000', x'01', 'kiosk', "
	             "'k0000000000000000000000000', 1);"
	             "INSERT INTO kiosk_codes (code_hash, kiosk_id, created_ms, expires_ms) VALUES "
	             "(x'b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0', "
	             "'k0000000000000000000000000', 1000, 600000);",
	             dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM kiosk_codes WHERE "
	                                  "created_by_device IS NULL"),
	                 1);
	assert_int_equal(store_kiosk_code_create_bounded(s, since, "k0000000000000000000000000",
	                                                 "d0000000000000000000000000", 2000, 600000,
	                                                 10, NULL),
	                 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM kiosk_codes WHERE "
	                                  "created_by_device = 'd0000000000000000000000000'"),
	                 1);
	assert_int_equal(store_device_revoke(s, "d0000000000000000000000000", 3000), 0);
	assert_int_equal(store_kiosk_code_check(s, before, 3000), 0);
	assert_int_equal(store_kiosk_code_check(s, since, 3000), STORE_ENOTFOUND);
	store_close(s);
}

/* Directory step 17: members from before have no key (any number of them), and stay; a member
 * added since with one is found by it again, never added twice. */
static void directory_step_17_members_added_once(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	directory_at(f, "v16", 16,
	             "INSERT INTO families (id, name, created_ms) VALUES "
	             "('f0000000000000000000000000', '王家', 1);"
	             "INSERT INTO members (id, family_id, name, role, created_ms, removed_ms) "
	             "VALUES ('a0000000000000000000000000', 'f0000000000000000000000000', '妈妈', "
	             "'parent', 1, NULL), "
	             "('b0000000000000000000000000', 'f0000000000000000000000000', '小刚', "
	             "'child', 2, NULL), "
	             "('c0000000000000000000000000', 'f0000000000000000000000000', '小刚', "
	             "'child', 3, 4);",
	             dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	store_member list[8], a, b;
	size_t n;
	int existed = -1;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM members WHERE add_key IS NULL"), 3);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM sqlite_master WHERE name = "
	                                  "'members_by_add_key'"),
	                 1);
	assert_int_equal(store_member_add_once(s, "f0000000000000000000000000", "小康",
	                                       STORE_ROLE_CHILD, NULL, "a0:k", 5, &a, &existed),
	                 0);
	assert_int_equal(existed, 0);
	assert_int_equal(store_member_add_once(s, "f0000000000000000000000000", "小康",
	                                       STORE_ROLE_CHILD, NULL, "a0:k", 6, &b, &existed),
	                 0);
	assert_int_equal(existed, 1);
	assert_string_equal(b.id.s, a.id.s);
	assert_int_equal(store_member_add(s, "f0000000000000000000000000", "小康", STORE_ROLE_CHILD,
	                                  NULL, 7, &b),
	                 0);
	assert_int_equal(store_members_all(s, "f0000000000000000000000000", list, 8, &n), 0);
	assert_int_equal(n, 5);
	store_close(s);
}

/* Directory step 18: devices from before keep no sign-up key and work as before; a sign-up
 * made since with a key is found by it again, never made twice. */
static void directory_step_18_signups_made_once(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	directory_at(
	    f, "v17", 17,
	    "INSERT INTO families (id, name, created_ms) VALUES "
	    "('f0000000000000000000000000', '王家', 1);"
	    "INSERT INTO members (id, family_id, name, role, created_ms) VALUES "
	    "('a0000000000000000000000000', 'f0000000000000000000000000', '妈妈', "
	    "'parent', 1);"
	    "INSERT INTO devices (id, token_hash, kind, member_id, created_ms) VALUES "
	    "('d0000000000000000000000000', "
	    "x'0101010101010101010101010101010101010101010101010101010101010101', 'personal', "
	    "'a0000000000000000000000000', 1), "
	    "('e0000000000000000000000000', "
	    "x'0202020202020202020202020202020202020202020202020202020202020202', 'personal', "
	    "'a0000000000000000000000000', 2);",
	    dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM devices WHERE signup_key IS NULL"),
	                 2);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM sqlite_master WHERE name = "
	                                  "'devices_by_signup_key'"),
	                 1);
	uint8_t old_token[STORE_HASH_LEN], token[STORE_HASH_LEN], again[STORE_HASH_LEN],
	    key[STORE_HASH_LEN];
	memset(old_token, 0x01, sizeof old_token);
	memset(token, 0x11, sizeof token);
	memset(again, 0x22, sizeof again);
	memset(key, 0x33, sizeof key);
	store_device d, d2;
	assert_int_equal(store_device_by_token(s, old_token, &d), 0);
	assert_string_equal(d.id.s, "d0000000000000000000000000");
	store_family fam, fam2;
	store_member m, m2;
	store_signup done;
	assert_int_equal(store_family_signup(s, "李家", "爸爸", 0, token, "phone", key, 0, true, 10,
	                                     &fam, &m, &d, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_MADE);
	assert_int_equal(store_family_signup(s, "李家", "爸爸", 0, again, "phone", key, 0, true, 20,
	                                     &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_AGAIN);
	assert_string_equal(d2.id.s, d.id.s);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM families"), 2);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM devices WHERE signup_key IS NULL"),
	                 2);
	store_close(s);
}

/* Directory step 19: a sign-up's key from before keeps working for its retry; a pairing keeps
 * its key and code, and its retry finds its device. */
static void directory_step_19_pairings_made_once(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	directory_at(
	    f, "v18", 18,
	    "INSERT INTO families (id, name, created_ms) VALUES "
	    "('f0000000000000000000000000', '王家', 1);"
	    "INSERT INTO members (id, family_id, name, role, created_ms) VALUES "
	    "('a0000000000000000000000000', 'f0000000000000000000000000', '妈妈', "
	    "'parent', 1);"
	    "INSERT INTO devices (id, token_hash, kind, member_id, name, created_ms, signup_key) "
	    "VALUES ('d0000000000000000000000000', "
	    "x'0101010101010101010101010101010101010101010101010101010101010101', 'personal', "
	    "'a0000000000000000000000000', 'phone', 1, "
	    "x'3333333333333333333333333333333333333333333333333333333333333333');",
	    dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	store *s;
	assert_int_equal(store_open(&s, &o), 0);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM devices WHERE pair_code IS NULL"),
	                 1);
	uint8_t token[STORE_HASH_LEN], again[STORE_HASH_LEN], key[STORE_HASH_LEN],
	    code[STORE_HASH_LEN], pair_key[STORE_HASH_LEN];
	memset(token, 0x11, sizeof token);
	memset(again, 0x22, sizeof again);
	memset(key, 0x33, sizeof key);
	memset(code, 0x44, sizeof code);
	memset(pair_key, 0x55, sizeof pair_key);
	store_family fam;
	store_member m, m2;
	store_device d, d2;
	store_signup signed_up;
	assert_int_equal(store_family_signup(s, "王家", "妈妈", 0, again, "phone", key, 0, true, 10,
	                                     &fam, &m, &d, &signed_up),
	                 0);
	assert_int_equal(signed_up, STORE_SIGNUP_AGAIN);
	assert_string_equal(d.id.s, "d0000000000000000000000000");
	store_pairing p = {.role = STORE_ROLE_CAREGIVER, .created_ms = 10, .expires_ms = 600010};
	p.family_id = fam.id;
	snprintf(p.member_name, sizeof p.member_name, "奶奶");
	assert_int_equal(store_pairing_create(s, code, &p), 0);
	store_pair_keyed done;
	assert_int_equal(store_pairing_redeem_keyed(s, code, token, "老人机", pair_key, 20, 0, NULL,
	                                            &p, &m, &d, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_MADE);
	memset(token, 0x66, sizeof token);
	assert_int_equal(store_pairing_redeem_keyed(s, code, token, "老人机", pair_key, 30, 0, NULL,
	                                            &p, &m2, &d2, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_AGAIN);
	assert_string_equal(d2.id.s, d.id.s);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM members"), 2);
	assert_int_equal(count_rows(path, "SELECT count(*) FROM devices WHERE pair_code IS NULL"),
	                 1);
	store_close(s);
}

/* A tool that may run beside an older server (upgrade_directory 0: jiayinctl) refuses an older
 * directory instead of migrating it under that server (the review: the older server could not
 * start again); the server's own open migrates it. */
static void older_directory_refused_without_upgrade(void **state)
{
	fixture *f = *state;
	char dir[128], path[256];
	directory_at(f, "older", directory_schema.count - 1, NULL, dir, path);
	store_options o;
	store_options_init(&o);
	o.dir = dir;
	o.upgrade_directory = 0;
	store *s = NULL;
	assert_int_equal(store_open(&s, &o), STORE_EOLD);
	assert_null(s);
	assert_string_equal(store_errcode(STORE_EOLD), "storage_schema_old");
	assert_int_equal(count_rows(path, "PRAGMA user_version"), (int)directory_schema.count - 1);
	o.upgrade_directory = 1;
	assert_int_equal(store_open(&s, &o), 0);
	store_close(s);
	assert_int_equal(count_rows(path, "PRAGMA user_version"), (int)directory_schema.count);
	o.upgrade_directory = 0; /* and the current one opens */
	assert_int_equal(store_open(&s, &o), 0);
	store_close(s);
	/* A directory.db of the current version whose server runs older mailboxes (or does not
	 * say which): refused too, for the tool would migrate the live mailboxes under it (the
	 * review). */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "UPDATE meta SET value = x'05' WHERE name = 'mailbox_schema'",
	                              0, 0, 0),
	                 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(&s, &o), STORE_EOLD);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "DELETE FROM meta WHERE name = 'mailbox_schema'", 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(&s, &o), STORE_EOLD);
	o.upgrade_directory = 1; /* the server of this version says which it runs */
	assert_int_equal(store_open(&s, &o), 0);
	store_close(s);
	o.upgrade_directory = 0;
	assert_int_equal(store_open(&s, &o), 0);
	store_close(s);
}

/* The journal mode of the file at path ("wal", "delete"). */
static void journal_mode(const char *path, char *out, size_t cap)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* A database of a newer version (its own journal mode, here a rollback journal) is refused
 * before anything is written to it: the review found its journal mode made WAL first, the
 * directory's and a family's mailbox's alike. */
static void newer_versions_refused_untouched(void **state)
{
	fixture *f = *state;
	char path[256], mode[16];
	sqlite3 *db;
	store_close(f->s);
	f->s = NULL;
	snprintf(path, sizeof path, "%s/families/%s.db", f->dir, f->fam.id.s);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA user_version=99", 0, 0, 0),
	    SQLITE_OK);
	sqlite3_close(db);
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->s, &o), 0);
	store_message m;
	assert_int_equal(store_message_get(f->s, f->fam.id.s, "00000000000000000000000000", &m),
	                 STORE_ESCHEMA);
	store_close(f->s);
	f->s = NULL;
	journal_mode(path, mode, sizeof mode);
	assert_string_equal(mode, "delete");
	assert_int_equal(count_rows(path, "PRAGMA user_version"), 99);

	snprintf(path, sizeof path, "%s/directory.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA user_version=99", 0, 0, 0),
	    SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(&f->s, &o), STORE_ESCHEMA);
	journal_mode(path, mode, sizeof mode);
	assert_string_equal(mode, "delete");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(migrations_from_every_version),
	    T(mailbox_step_5_clears_old_tombstones),
	    T(mailbox_step_4_keeps_every_row),
	    T(two_openers_migrate_once),
	    T(directory_step_7_keeps_members),
	    T(directory_step_12_withdraws_old_pins),
	    T(directory_step_13_knows_older_erasures),
	    T(older_directory_refused_without_upgrade),
	    T(newer_versions_refused_untouched),
	    T(directory_step_14_counts_kiosk_pins),
	    T(directory_step_15_indexes_pairings_by_time),
	    T(directory_step_16_kiosk_codes_know_their_tablet),
	    T(directory_step_17_members_added_once),
	    T(directory_step_18_signups_made_once),
	    T(directory_step_19_pairings_made_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
