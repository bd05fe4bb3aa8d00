/*
 * test_schools.c — schools and their kiosks, the children paired with a kiosk (codes, picture-PIN
 * attempts and lockouts, sessions), volunteers and the moderation queue they work through (the
 * flag state machine), and the rows a deleted family leaves behind (none: the foreign keys
 * cascade), each on a fresh data directory with two families (storage/directory.c). Devices and
 * pairing codes are in test_directory.c; the fixture they share is in directory_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store.h"
#include "directory_fixture.h"

#include <string.h>

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
	    store_flag_add(f->s, f->fam.id.s, MSG_A, f->parent.id.s, "不友善", 3000, &flag, NULL),
	    0);
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
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, reason, 4000, &flag, NULL),
	                 0);
	assert_string_equal(flag.reporter_id.s, "");
	assert_int_equal(store_flag_get(f->s, flag.id.s, &got), 0);
	assert_memory_equal(&got, &flag, sizeof got);
	assert_int_equal(strlen(got.reason), 511);

	reason[511] = 'r', reason[512] = '\0';
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, reason, 1, &got, NULL),
	                 STORE_EINVAL);
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, "", 1, &got, NULL),
	                 STORE_EINVAL);
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, NULL, 1, &got, NULL),
	                 STORE_EINVAL);
	for (size_t i = 0; i < NBAD; i++) {
		assert_int_equal(store_flag_add(f->s, bad_ids[i], MSG_B, NULL, "r", 1, &got, NULL),
		                 STORE_ENOTFOUND);
		assert_int_equal(store_flag_get(f->s, bad_ids[i], &got), STORE_ENOTFOUND);
		if (strcmp(bad_ids[i], UNKNOWN_ID) == 0)
			continue; /* message and reporter ids are checked for shape only */
		assert_int_equal(
		    store_flag_add(f->s, f->fam.id.s, bad_ids[i], NULL, "r", 1, &got, NULL),
		    STORE_ENOTFOUND);
		if (*bad_ids[i])
			assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, bad_ids[i], "r",
			                                1, &got, NULL),
			                 STORE_ENOTFOUND);
	}
	assert_int_equal(query_int(f, "SELECT count(*) FROM moderation_queue", NULL), 2);
}

/*
 * One member flagging one message again while the first flag waits (open or claimed) gets
 * that flag back and queues nothing (the review: a member could fill the volunteers' queue);
 * once it is resolved, a new flag may be raised. Other members and flags without a reporter
 * are flags of their own.
 */
static void flag_again_while_waiting(void **state)
{
	fixture *f = *state;
	uint8_t h[STORE_HASH_LEN];
	hash_of("volunteer", 3, h);
	store_volunteer v;
	assert_int_equal(store_volunteer_add(f->s, "周", h, 1, &v), 0);
	store_flag first, again;
	bool existed = true;
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_A, f->parent.id.s, "first", 1000,
	                                &first, &existed),
	                 0);
	assert_false(existed);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_A, f->parent.id.s, "again",
		                                2000 + i, &again, &existed),
		                 0);
		assert_true(existed);
		assert_string_equal(again.id.s, first.id.s);
		assert_string_equal(again.reason, "first");
	}
	assert_int_equal(store_flag_claim(f->s, first.id.s, v.id.s, 3000), 0);
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_A, f->parent.id.s, "again", 3500,
	                                &again, &existed),
	                 0);
	assert_true(existed);
	assert_int_equal(again.state, STORE_FLAG_CLAIMED);
	assert_int_equal(query_int(f, "SELECT count(*) FROM moderation_queue", NULL), 1);

	/* Another message, no reporter: flags of their own. */
	assert_int_equal(
	    store_flag_add(f->s, f->fam.id.s, MSG_B, f->parent.id.s, "b", 3600, &again, &existed),
	    0);
	assert_false(existed);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(
		    store_flag_add(f->s, f->fam.id.s, MSG_A, NULL, "auto", 3700, &again, &existed),
		    0);
		assert_false(existed);
	}
	assert_int_equal(query_int(f, "SELECT count(*) FROM moderation_queue", NULL), 4);

	assert_int_equal(store_flag_resolve(f->s, first.id.s, v.id.s, "ok", 4000), 0);
	assert_int_equal(
	    store_flag_add(f->s, f->fam.id.s, MSG_A, f->parent.id.s, "new", 5000, &again, &existed),
	    0);
	assert_false(existed);
	assert_string_not_equal(again.id.s, first.id.s);
	assert_int_equal(query_int(f, "SELECT count(*) FROM moderation_queue", NULL), 5);
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
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_A, NULL, "r", 1000, &flag, NULL), 0);
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, "r", 1000, &other, NULL),
	                 0);

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
	/* The disabled volunteer's refused calls wrote nothing; its disabling gave the flag back
	 * (a_disabled_volunteers_flags_are_open_again). */
	assert_int_equal(store_flag_get(f->s, other.id.s, &got), 0);
	assert_int_equal(got.state, STORE_FLAG_OPEN);
	assert_int_equal(got.updated_ms, 6000);
}

/*
 * A volunteer disabled while holding flags (one who left, or whose token leaked) gives them
 * back: they are open again for another to claim. Before, they stayed claimed by someone who
 * could no longer resolve them, and nobody else could claim them: the child's report waited
 * for ever.
 */
static void a_disabled_volunteers_flags_are_open_again(void **state)
{
	fixture *f = *state;
	uint8_t h1[STORE_HASH_LEN], h2[STORE_HASH_LEN];
	hash_of("volunteer", 1, h1);
	hash_of("volunteer", 2, h2);
	store_volunteer gone, other;
	assert_int_equal(store_volunteer_add(f->s, "陈", h1, 1, &gone), 0);
	assert_int_equal(store_volunteer_add(f->s, "林", h2, 1, &other), 0);
	store_flag held, done, theirs, got;
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_A, NULL, "r", 1000, &held, NULL), 0);
	assert_int_equal(store_flag_add(f->s, f->fam.id.s, MSG_B, NULL, "r", 1000, &done, NULL), 0);
	assert_int_equal(store_flag_add(f->s, f->other.id.s, MSG_A, NULL, "r", 1000, &theirs, NULL),
	                 0);
	assert_int_equal(store_flag_claim(f->s, held.id.s, gone.id.s, 2000), 0);
	assert_int_equal(store_flag_claim(f->s, done.id.s, gone.id.s, 2000), 0);
	assert_int_equal(store_flag_resolve(f->s, done.id.s, gone.id.s, "ok", 2500), 0);
	assert_int_equal(store_flag_claim(f->s, theirs.id.s, other.id.s, 2000), 0);

	assert_int_equal(store_volunteer_disable(f->s, gone.id.s, 3000), 0);
	assert_int_equal(store_flag_get(f->s, held.id.s, &got), 0);
	assert_int_equal(got.state, STORE_FLAG_OPEN);
	assert_string_equal(got.volunteer_id.s, "");
	assert_int_equal(got.updated_ms, 3000);
	assert_int_equal(store_flag_claim(f->s, held.id.s, other.id.s, 4000), 0);
	assert_int_equal(store_flag_resolve(f->s, held.id.s, other.id.s, "已隐藏", 5000), 0);
	/* What it resolved stays its, and another's claim stays that one's. */
	assert_int_equal(store_flag_get(f->s, done.id.s, &got), 0);
	assert_int_equal(got.state, STORE_FLAG_RESOLVED);
	assert_string_equal(got.volunteer_id.s, gone.id.s);
	assert_int_equal(got.updated_ms, 2500);
	assert_int_equal(store_flag_get(f->s, theirs.id.s, &got), 0);
	assert_int_equal(got.state, STORE_FLAG_CLAIMED);
	assert_string_equal(got.volunteer_id.s, other.id.s);
	/* Disabling again keeps the first time and changes no flag. */
	assert_int_equal(store_volunteer_disable(f->s, gone.id.s, 6000), 0);
	assert_int_equal(query_int(f, "SELECT disabled_ms FROM volunteers WHERE id = ?", gone.id.s),
	                 3000);
	assert_int_equal(store_flag_get(f->s, theirs.id.s, &got), 0);
	assert_int_equal(got.updated_ms, 2000);
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
		                                NULL, "r", when[i], &fl[i], NULL),
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
		    store_flag_add(f->s, fam[i]->id.s, MSG_A, who[i]->id.s, "r", 1, &flag[i], NULL),
		    0);
	}
	hash_of("kiosk", 0, kh);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "k", 1, &kiosk_dev), 0);

	assert_int_equal(store_family_delete(f->s, f->other.id.s, 5000), 0);

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
	assert_int_equal(store_flag_add(f->s, f->other.id.s, MSG_A, NULL, "r", 2, &fg, NULL),
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
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "hash-1", NULL, 2000, &link),
	                 STORE_ENOTFOUND); /* expired at 2000 */
	assert_int_equal(
	    store_kiosk_link_redeem(f->s, code, UNKNOWN_ID, "hash-1", NULL, 1500, &link),
	    STORE_ENOTFOUND); /* no such member: the code stays unused */
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "hash-1", NULL, 1500, &link),
	                 0);
	assert_string_equal(link.kiosk_id.s, f->kiosk.id.s);
	assert_string_equal(link.member_id.s, kid.id.s);
	assert_string_equal(link.family_id.s, f->fam.id.s);
	assert_string_equal(link.kiosk_name, "大厅");
	assert_string_equal(link.school_name, "实验小学");
	assert_string_equal(link.member_name, "小明");
	assert_string_equal(link.avatar, "cat");
	assert_string_equal(link.pin_hash, "hash-1");
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid2.id.s, "hash-2", NULL, 1500, &got),
	                 STORE_ENOTFOUND); /* used */
	assert_int_equal(store_kiosk_code_create(f->s, code2, f->kiosk.id.s, 1000, 5000), 0);
	assert_int_equal(
	    store_kiosk_link_redeem(f->s, code2, kid2.id.s, "hash-2", NULL, 1500, &got), 0);
	assert_int_equal(store_kiosk_links_of_kiosk(f->s, f->kiosk.id.s, (store_kiosk_link[4]){0},
	                                            4, &n),
	                 0);
	assert_int_equal(n, 2);
	store_kiosk_link fl[4];
	assert_int_equal(store_kiosk_links_of_family(f->s, f->fam.id.s, fl, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(fl[0].id.s, link.id.s);

	/* Attempts are counted before the check: the third locks for 60 s (it is still checked);
	 * while locked, attempts are refused and not counted. */
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
	assert_int_equal(got.failures, 3);
	assert_int_equal(got.locked_until_ms, 63001);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, 63000, 3, 60000, &got,
		                                         &allowed),
		                 0);
		assert_int_equal(allowed, 0);
	}
	assert_int_equal(got.failures, 3);
	assert_int_equal(got.locked_until_ms, 63001);
	assert_int_equal(store_kiosk_pin_attempt(f->s, UNKNOWN_ID, 1, 3, 1, &got, &allowed),
	                 STORE_ENOTFOUND);
	/* At the lock's end, attempts are counted again, and each lock is twice the one before
	 * (60 s, 120 s, 240 s, ...) up to 64 times: guessing gets slower, never steady. */
	int64_t t = 63001;
	for (int lock = 2; lock <= 9; lock++) {
		for (int i = 0; i < 3; i++) {
			assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, t, 3, 60000, &got,
			                                         &allowed),
			                 0);
			assert_int_equal(allowed, 1);
		}
		int64_t want = t + ((int64_t)60000 << (lock - 1 < 6 ? lock - 1 : 6));
		assert_int_equal(got.locked_until_ms, want);
		assert_int_equal(got.failures, 3 * lock);
		assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, want - 1, 3, 60000, &got,
		                                         &allowed),
		                 0);
		assert_int_equal(allowed, 0);
		t = want;
	}
	/* A parent's new PIN clears the lock and the count. */
	memset(&got, 0, sizeof got);
	assert_int_equal(store_kiosk_link_set_pin(f->s, link.id.s, "hash-3", NULL, &got), 0);
	assert_string_equal(got.id.s, link.id.s); /* the link as it is now, read with the change */
	assert_string_equal(got.school_name, "实验小学");
	assert_int_equal(got.locked_until_ms, 0);
	assert_int_equal(got.failures, 0);
	assert_string_equal(got.pin_hash, "hash-3");

	/* A session speaks for the child, through the kiosk device, until idle. A right PIN
	 * clears the count and a lock (this attempt locked it, and was the right one). */
	assert_int_equal(store_kiosk_pin_attempt(f->s, link.id.s, 3000, 1, 60000, &got, &allowed),
	                 0);
	assert_int_equal(got.locked_until_ms, 63000);
	/* The child and family the tablet is told of, read in the session's transaction. */
	store_member child;
	store_family family;
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "hash-3",
	                                           10000, &child, &family),
	                 0);
	assert_string_equal(child.id.s, kid.id.s);
	assert_string_equal(child.name, "小明");
	assert_string_equal(family.id.s, f->fam.id.s);
	assert_string_equal(family.name, f->fam.name);
	assert_int_equal(store_kiosk_link_get(f->s, link.id.s, &got), 0);
	assert_int_equal(got.failures, 0);
	assert_int_equal(got.locked_until_ms, 0);
	int64_t idle_at = 0;
	assert_int_equal(
	    store_kiosk_session_auth(f->s, sess, 100000, 180000, true, &d, &m, &idle_at), 0);
	assert_int_equal(idle_at, 280000); /* used now: idle 180 s on */
	assert_int_equal(d.kind, STORE_DEVICE_KIOSK);
	assert_string_equal(d.id.s, kdev.id.s);
	assert_string_equal(d.family_id.s, f->fam.id.s);
	assert_string_equal(m.id.s, kid.id.s);
	assert_int_equal(m.role, STORE_ROLE_CHILD);
	/* Used at 100 s: idle from then on, so 279.999 s is fine and 280 s is over. */
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 279999, 180000, true, &d, &m, NULL),
	                 0);
	assert_int_equal(
	    store_kiosk_session_auth(f->s, sess, 279999 + 180000, 180000, true, &d, &m, NULL),
	    STORE_ENOTFOUND);
	/* The next child on the same kiosk ends the first one's session. */
	assert_int_equal(store_kiosk_session_start(f->s, sess2, kdev.id.s, got.id.s, got.pin_hash,
	                                           300000, NULL, NULL),
	                 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 300001, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	/* A use within a few seconds of the last one recorded is not written: the session is idle
	 * (and refused) from the recorded one on, and says so. */
	assert_int_equal(
	    store_kiosk_session_auth(f->s, sess2, 300001, 180000, true, &d, &m, &idle_at), 0);
	assert_int_equal(idle_at, 480000);
	/* The app waiting by itself (use false) is not use: it keeps no session from going idle
	 * (last used when it started, at 300 s). */
	assert_int_equal(
	    store_kiosk_session_auth(f->s, sess2, 479999, 180000, false, &d, &m, &idle_at), 0);
	assert_int_equal(idle_at, 480000);
	assert_int_equal(store_kiosk_session_auth(f->s, sess2, 480000, 180000, false, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess2, 480000, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_end(f->s, sess2), 0);
	assert_int_equal(store_kiosk_session_end(f->s, sess2), STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess2, 300002, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	/* A parent's new PIN logs out whoever is in with the old one. */
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "hash-3",
	                                           390000, NULL, NULL),
	                 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 390001, 180000, true, &d, &m, NULL),
	                 0);
	assert_int_equal(store_kiosk_link_set_pin(f->s, link.id.s, "hash-4", NULL, NULL), 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 390002, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	/* Revoking the kiosk device ends its sessions; unpairing ends the child's. */
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "hash-4",
	                                           400000, NULL, NULL),
	                 0);
	assert_int_equal(store_kiosk_link_delete(f->s, link.id.s), 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 400001, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_link_delete(f->s, link.id.s), STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_start(f->s, sess2, kdev.id.s, link.id.s, "hash-4",
	                                           400002, NULL, NULL),
	                 STORE_ENOTFOUND);
	store_kiosk_link other;
	assert_int_equal(store_kiosk_links_of_kiosk(f->s, f->kiosk.id.s, &other, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, other.id.s,
	                                           other.pin_hash, 500000, NULL, NULL),
	                 0);
	assert_int_equal(store_device_revoke(f->s, kdev.id.s, 500001), 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 500002, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	/* A right PIN checked while the tablet was revoked opens nothing (it was a session no
	 * request could use), nor does one whose link went meanwhile. */
	assert_int_equal(store_kiosk_session_start(f->s, sess2, kdev.id.s, other.id.s,
	                                           other.pin_hash, 500003, NULL, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess2, 500004, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	/* Erasing a family takes its children's links along. */
	assert_int_equal(store_family_delete(f->s, f->other.id.s, 5000), 0);
	assert_int_equal(store_kiosk_links_of_kiosk(f->s, f->kiosk.id.s, &other, 1, &n), 0);
	assert_int_equal(n, 0);
	for (size_t i = 0; i < NBAD; i++) {
		assert_int_equal(store_kiosk_link_get(f->s, bad_ids[i], &got), STORE_ENOTFOUND);
		assert_int_equal(store_kiosk_link_set_pin(f->s, bad_ids[i], "h", NULL, NULL),
		                 STORE_ENOTFOUND);
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

/* A session starts only while the link has the PIN that was checked (review finding: a login
 * racing a PIN change kept a session opened with the old PIN), and pairing the child to the
 * kiosk again is a new PIN too: it ends the open session (review finding: it kept it). */
static void kiosk_sessions_follow_the_pin(void **state)
{
	fixture *f = *state;
	uint8_t code[STORE_HASH_LEN], code2[STORE_HASH_LEN], kh[STORE_HASH_LEN];
	uint8_t sess[STORE_HASH_LEN], sess2[STORE_HASH_LEN];
	store_member kid, m;
	store_kiosk_link link, again;
	store_device kdev, d;
	hash_of("kcode", 0, code);
	hash_of("kcode", 1, code2);
	hash_of("kiosk-token", 0, kh);
	hash_of("session", 0, sess);
	hash_of("session", 1, sess2);
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, NULL, 1, &kid), 0);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "大厅平板", 1, &kdev), 0);
	assert_int_equal(store_kiosk_code_create(f->s, code, f->kiosk.id.s, 1000, 5000), 0);
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "hash-1", NULL, 1500, &link),
	                 0);

	/* A PIN change between the check and the session: the old PIN opens nothing, and the
	 * refused start changes nothing (the session open on the device stays). */
	assert_int_equal(store_kiosk_link_set_pin(f->s, link.id.s, "hash-2", NULL, NULL), 0);
	assert_int_equal(store_kiosk_session_start(f->s, sess2, kdev.id.s, link.id.s, "hash-2",
	                                           2000, NULL, NULL),
	                 0);
	assert_int_equal(
	    store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "hash-1", 2001, NULL, NULL),
	    STORE_ECHANGED);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 2002, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess2, 2002, 180000, true, &d, &m, NULL),
	                 0);
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, UNKNOWN_ID, "hash-2",
	                                           2003, NULL, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(
	    store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "", 2003, NULL, NULL),
	    STORE_EINVAL);

	/* Pairing the child to the kiosk again: the same link, the new PIN, and whoever was in
	 * with the old one is out; the old PIN opens nothing, the new one does. */
	assert_int_equal(store_kiosk_code_create(f->s, code2, f->kiosk.id.s, 1000, 5000), 0);
	assert_int_equal(
	    store_kiosk_link_redeem(f->s, code2, kid.id.s, "hash-5", NULL, 3000, &again), 0);
	assert_string_equal(again.id.s, link.id.s);
	assert_string_equal(again.pin_hash, "hash-5");
	assert_int_equal(store_kiosk_session_auth(f->s, sess2, 3001, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(
	    store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "hash-2", 3002, NULL, NULL),
	    STORE_ECHANGED);
	assert_int_equal(
	    store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "hash-5", 3003, NULL, NULL),
	    0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 3004, 180000, true, &d, &m, NULL), 0);
	assert_string_equal(m.id.s, kid.id.s);
}

/* A child is at one tablet at a time: their login on another tablet, of the same kiosk or of
 * another kiosk they are paired to (another link of theirs), ends their session on the first
 * (review finding: it stayed open until idle, showing the family to whoever came to the first
 * tablet). Another child's sessions stay, and a refused start ends nothing. */
static void kiosk_child_at_one_tablet(void **state)
{
	fixture *f = *state;
	uint8_t code[STORE_HASH_LEN], kh[STORE_HASH_LEN], sess[5][STORE_HASH_LEN];
	store_member kid, kid2, m;
	store_kiosk second;
	store_kiosk_link here, there, other;
	store_device hall, hall2, floor2, d;
	assert_int_equal(store_kiosk_add(f->s, f->school.id.s, "二楼", 1000, &second), 0);
	hash_of("kiosk-token", 0, kh);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "大厅一", 1, &hall), 0);
	hash_of("kiosk-token", 1, kh);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "大厅二", 1, &hall2), 0);
	hash_of("kiosk-token", 2, kh);
	assert_int_equal(store_device_add(f->s, kh, NULL, second.id.s, "二楼", 1, &floor2), 0);
	for (int i = 0; i < 5; i++)
		hash_of("session", i, sess[i]);
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, NULL, 1, &kid), 0);
	assert_int_equal(
	    store_member_add(f->s, f->other.id.s, "小红", STORE_ROLE_CHILD, NULL, 1, &kid2), 0);
	const struct {
		const store_kiosk *kiosk;
		const store_member *child;
		store_kiosk_link *link;
	} pairs[] = {{&f->kiosk, &kid, &here}, {&second, &kid, &there}, {&f->kiosk, &kid2, &other}};
	for (int i = 0; i < 3; i++) {
		hash_of("kcode", i, code);
		assert_int_equal(
		    store_kiosk_code_create(f->s, code, pairs[i].kiosk->id.s, 1000, 5000), 0);
		assert_int_equal(store_kiosk_link_redeem(f->s, code, pairs[i].child->id.s, "hash-1",
		                                         NULL, 1500, pairs[i].link),
		                 0);
	}

	/* 小明 at the hall's first tablet, then at its second: the first session is over. */
	assert_int_equal(store_kiosk_session_start(f->s, sess[0], hall.id.s, here.id.s, "hash-1",
	                                           2000, NULL, NULL),
	                 0);
	assert_int_equal(store_kiosk_session_start(f->s, sess[1], hall2.id.s, here.id.s, "hash-1",
	                                           2100, NULL, NULL),
	                 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess[0], 2200, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess[1], 2200, 180000, true, &d, &m, NULL),
	                 0);
	/* 小红 at the hall's first tablet meanwhile; 小明 upstairs (another kiosk, another link):
	 * his session in the hall is over, hers is not. */
	assert_int_equal(store_kiosk_session_start(f->s, sess[2], hall.id.s, other.id.s, "hash-1",
	                                           2300, NULL, NULL),
	                 0);
	assert_int_equal(store_kiosk_session_start(f->s, sess[3], floor2.id.s, there.id.s, "hash-1",
	                                           2400, NULL, NULL),
	                 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess[1], 2500, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess[2], 2500, 180000, true, &d, &m, NULL),
	                 0);
	assert_string_equal(m.id.s, kid2.id.s);
	assert_int_equal(store_kiosk_session_auth(f->s, sess[3], 2500, 180000, true, &d, &m, NULL),
	                 0);
	assert_string_equal(d.id.s, floor2.id.s);
	/* A tablet of another kiosk opens no session with the hall's link. */
	assert_int_equal(store_kiosk_session_start(f->s, sess[4], floor2.id.s, here.id.s, "hash-1",
	                                           2550, NULL, NULL),
	                 STORE_ENOTFOUND);
	/* A start refused (a PIN since replaced) ends none of his sessions. */
	assert_int_equal(store_kiosk_session_start(f->s, sess[4], hall2.id.s, here.id.s, "hash-0",
	                                           2600, NULL, NULL),
	                 STORE_ECHANGED);
	assert_int_equal(store_kiosk_session_auth(f->s, sess[3], 2700, 180000, true, &d, &m, NULL),
	                 0);
}

/* A code is looked at before the PIN is hashed: live, or not (unknown, used, expired). */
static void kiosk_code_check(void **state)
{
	fixture *f = *state;
	uint8_t code[STORE_HASH_LEN], code2[STORE_HASH_LEN];
	store_member kid;
	store_kiosk_link link;
	hash_of("kcode", 0, code);
	hash_of("kcode", 1, code2);
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, NULL, 1, &kid), 0);
	assert_int_equal(store_kiosk_code_create(f->s, code, f->kiosk.id.s, 1000, 2000), 0);
	assert_int_equal(store_kiosk_code_check(f->s, code, 1999), 0);
	assert_int_equal(store_kiosk_code_check(f->s, code, 1999), 0); /* looking uses nothing */
	assert_int_equal(store_kiosk_code_check(f->s, code, 2000), STORE_ENOTFOUND);  /* expired */
	assert_int_equal(store_kiosk_code_check(f->s, code2, 1500), STORE_ENOTFOUND); /* unknown */
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "hash-1", NULL, 1500, &link),
	                 0);
	assert_int_equal(store_kiosk_code_check(f->s, code, 1500), STORE_ENOTFOUND); /* used */
	assert_int_equal(store_kiosk_code_check(f->s, NULL, 1500), STORE_EINVAL);
}

/* A family's links are members times kiosks: all of them are listed (review finding: the list
 * stopped at 64 without a word); a list with a max says there may be more by filling it. */
static void kiosk_links_of_family_all(void **state)
{
	fixture *f = *state;
	store_kiosk second;
	assert_int_equal(store_kiosk_add(f->s, f->school.id.s, "二楼", 1000, &second), 0);
	const store_kiosk *kiosks[2] = {&f->kiosk, &second};
	enum { CHILDREN = 33 }; /* 66 links: past 64, a family's members at most */
	int c = 0;
	for (int i = 0; i < CHILDREN; i++) {
		store_member kid;
		char name[16];
		snprintf(name, sizeof name, "孩子%d", i);
		assert_int_equal(
		    store_member_add(f->s, f->fam.id.s, name, STORE_ROLE_CHILD, NULL, 1, &kid), 0);
		for (int k = 0; k < 2; k++, c++) {
			uint8_t code[STORE_HASH_LEN];
			store_kiosk_link link;
			hash_of("many", c, code);
			assert_int_equal(
			    store_kiosk_code_create(f->s, code, kiosks[k]->id.s, 1000, 9000), 0);
			assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "h", NULL,
			                                         2000 + c, &link),
			                 0);
		}
	}
	store_kiosk_link *all = NULL;
	size_t n = 0;
	assert_int_equal(store_kiosk_links_of_family_all(f->s, f->fam.id.s, &all, &n), 0);
	assert_int_equal(n, 2 * CHILDREN);
	for (size_t i = 1; i < n; i++) /* oldest first */
		assert_true(all[i - 1].created_ms < all[i].created_ms);
	assert_string_equal(all[n - 1].kiosk_id.s, second.id.s);
	free(all);
	store_kiosk_link some[64];
	assert_int_equal(store_kiosk_links_of_family(f->s, f->fam.id.s, some, 64, &n), 0);
	assert_int_equal(n, 64);
	assert_int_equal(store_kiosk_links_of_family_all(f->s, f->other.id.s, &all, &n), 0);
	assert_int_equal(n, 0);
	free(all);
	assert_int_equal(store_kiosk_links_of_family_all(f->s, "nonsense", &all, &n),
	                 STORE_ENOTFOUND);
	assert_null(all);
}

/* The clock set back (a wrong time put right) while a child's session is open: its last use,
 * recorded by the wrong clock, was ahead of now, and the session went idle only once the clock
 * had caught up with it, kiosk-idle-s after that (an hour ahead: the tablet kept the child's
 * family an hour and 3 minutes, long-polls or not, for the next child at it). A last use more
 * than a minute ahead: the session is over; threads lagging each other by moments are not
 * that. */
static void kiosk_session_after_the_clock_set_back(void **state)
{
	fixture *f = *state;
	uint8_t code[STORE_HASH_LEN], kh[STORE_HASH_LEN], sess[STORE_HASH_LEN];
	store_member kid, m;
	store_kiosk_link link;
	store_device kdev, d;
	int64_t idle_at = 0;
	hash_of("kcode", 0, code);
	hash_of("kiosk-token", 0, kh);
	hash_of("session", 0, sess);
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, NULL, 1, &kid), 0);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "大厅平板", 1, &kdev), 0);
	assert_int_equal(store_kiosk_code_create(f->s, code, f->kiosk.id.s, 1000, 9000), 0);
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "hash-1", NULL, 2000, &link),
	                 0);

	/* Logged in at 10,000 s by a clock an hour ahead; put right, it says 6,400 s: neither the
	 * app's long-poll (not a use) nor a use finds the session, then or later. */
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "hash-1",
	                                           10000000, NULL, NULL),
	                 0);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 6400000, 180000, false, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 6400000, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 9990000, 180000, true, &d, &m, NULL),
	                 STORE_ENOTFOUND); /* ended: not open again as the clock comes near */

	/* Threads lag each other by moments (a use recorded by one, now read a little earlier by
	 * another): a last use seconds ahead is the last use, and idle from there. */
	assert_int_equal(store_kiosk_session_start(f->s, sess, kdev.id.s, link.id.s, "hash-1",
	                                           7000000, NULL, NULL),
	                 0);
	assert_int_equal(
	    store_kiosk_session_auth(f->s, sess, 6999000, 180000, false, &d, &m, &idle_at), 0);
	assert_int_equal(idle_at, 7180000);
	assert_int_equal(
	    store_kiosk_session_auth(f->s, sess, 6940000, 180000, true, &d, &m, &idle_at), 0);
	assert_int_equal(idle_at, 7180000);
	assert_string_equal(m.id.s, kid.id.s);
	assert_int_equal(store_kiosk_session_auth(f->s, sess, 7180000, 180000, false, &d, &m, NULL),
	                 STORE_ENOTFOUND);
}

/* A child of the fixture's family (n 0: 小明, else 小刚), linked to kiosk k (PIN hash "hash-1")
 * at 2,000 ms through code n. */
static void link_child_to(fixture *f, const store_kiosk *k, int n, store_kiosk_link *link)
{
	uint8_t code[STORE_HASH_LEN];
	store_member kid;
	hash_of("kcode", n, code);
	assert_int_equal(store_member_add(f->s, f->fam.id.s, n ? "小刚" : "小明", STORE_ROLE_CHILD,
	                                  NULL, 1, &kid),
	                 0);
	assert_int_equal(store_kiosk_code_create(f->s, code, k->id.s, 1000, 9000), 0);
	assert_int_equal(store_kiosk_link_redeem(f->s, code, kid.id.s, "hash-1", NULL, 2000, link),
	                 0);
}

/* 小明 of the fixture's family, linked to its kiosk. */
static void link_a_child(fixture *f, store_kiosk_link *link)
{
	link_child_to(f, &f->kiosk, 0, link);
}

/* The clock set back (a wrong time put right) while a child's login is locked: the lock, set
 * by the wrong clock, lasted until the clock had caught up with it (an hour ahead: a 1-minute
 * lock kept the child out an hour and a minute, whatever a grown-up told them). A lock ending
 * further on than its length is over (the screen says so too); one within it is kept; the
 * count goes on. */
static void kiosk_lock_after_the_clock_set_back(void **state)
{
	fixture *f = *state;
	store_kiosk_link link, got;
	int allowed = -1;
	link_a_child(f, &link);
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    store_kiosk_pin_attempt(f->s, link.id.s, 10000000, 3, 60000, &got, &allowed),
		    0);
	assert_int_equal(got.locked_until_ms, 10060000);
	assert_int_equal(store_kiosk_lock_end(&got, 10000000, 3, 60000), 10060000);

	/* Put right, the clock says 6,400 s: the lock is over, and the attempt counted. */
	assert_true(store_kiosk_lock_end(&got, 6400000, 3, 60000) <= 6400000);
	assert_int_equal(
	    store_kiosk_pin_attempt(f->s, link.id.s, 6400000, 3, 60000, &got, &allowed), 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(got.failures, 4);
	assert_true(got.locked_until_ms <= 6400000);

	/* The next lock is twice as long, and kept whole while the clock is right. */
	for (int i = 0; i < 2; i++)
		assert_int_equal(
		    store_kiosk_pin_attempt(f->s, link.id.s, 6400000, 3, 60000, &got, &allowed), 0);
	assert_int_equal(got.locked_until_ms, 6520000);
	assert_int_equal(store_kiosk_lock_end(&got, 6400001, 3, 60000), 6520000);
	assert_int_equal(
	    store_kiosk_pin_attempt(f->s, link.id.s, 6400001, 3, 60000, &got, &allowed), 0);
	assert_int_equal(allowed, 0);
	assert_int_equal(got.locked_until_ms, 6520000);
}

/* Wrong PINs sent at once read the clock in one order and reach the writer in another: one
 * that read it a few milliseconds before the attempt that locked the child, counted after it,
 * took the lock for one set by a clock set back since and lifted it, so two more PINs were
 * checked (server/kiosk's twelve wrong PINs at once: four answered wrong_pin, where the lock
 * allows two). A lock is taken for a clock set back only once it ends further ahead than its
 * length and a minute. */
static void kiosk_lock_kept_from_attempts_out_of_order(void **state)
{
	fixture *f = *state;
	store_kiosk_link link, got;
	int allowed = -1;
	link_a_child(f, &link);
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    store_kiosk_pin_attempt(f->s, link.id.s, 10000000 + i, 3, 2000, &got, &allowed),
		    0);
	assert_int_equal(got.locked_until_ms, 10002002);
	for (int64_t t = 9999990; t < 10000002; t++) {
		assert_int_equal(store_kiosk_lock_end(&got, t, 3, 2000), 10002002);
		assert_int_equal(
		    store_kiosk_pin_attempt(f->s, link.id.s, t, 3, 2000, &got, &allowed), 0);
		assert_int_equal(allowed, 0);
		assert_int_equal(got.failures, 3);
		assert_int_equal(got.locked_until_ms, 10002002);
	}
	/* A minute behind is still the lock's; further, a clock set back. */
	assert_int_equal(store_kiosk_lock_end(&got, 9940002, 3, 2000), 10002002);
	assert_true(store_kiosk_lock_end(&got, 9940001, 3, 2000) <= 9940001);
}

/* A kiosk's wrong PINs count all together, whichever tablet (device) they come from: the
 * server counted them by the tablet's token, so a kiosk of two tablets had twice the tries. The
 * store counts them by the link's kiosk, with the child's attempt: a locked child's attempt is
 * none, a right PIN's is given back when its session starts, the spent hour refuses (nothing
 * counted) until it is over, another kiosk has its own, and an hour started by a clock set back
 * since is over. */
static void kiosk_wrong_pins_bounded_per_kiosk(void **state)
{
	fixture *f = *state;
	static const char count_sql[] = "SELECT pin_failures FROM kiosks WHERE id = ?";
	static const char start_sql[] = "SELECT pin_window_ms FROM kiosks WHERE id = ?";
	const int64_t hour = 3600000;
	uint8_t kh[STORE_HASH_LEN], sess[STORE_HASH_LEN];
	store_kiosk second;
	store_kiosk_link la, lb, lc, got;
	store_device hall;
	int allowed = -1;
	int64_t until = 0;
	assert_int_equal(store_kiosk_add(f->s, f->school.id.s, "二楼", 1000, &second), 0);
	hash_of("kiosk-token", 0, kh);
	assert_int_equal(store_device_add(f->s, kh, NULL, f->kiosk.id.s, "大厅一", 1, &hall), 0);
	hash_of("session", 0, sess);
	store_kiosk_link *links[] = {&la, &lb, &lc};
	const store_kiosk *kiosks[] = {&f->kiosk, &f->kiosk, &second};
	for (int i = 0; i < 3; i++) {
		link_child_to(f, kiosks[i], i, links[i]);
	}
#define ATTEMPT(link, t)                                                                           \
	store_kiosk_pin_attempt_bounded(f->s, (link).id.s, t, 3, 60000, 4, hour, &got, &allowed,   \
	                                &until)
	/* A right PIN's attempt: given back as its session starts. */
	assert_int_equal(ATTEMPT(la, 10000), 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 1);
	assert_int_equal(
	    store_kiosk_session_start(f->s, sess, hall.id.s, la.id.s, "hash-1", 10000, NULL, NULL),
	    0);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 0);
	/* 小刚's three lock him; his fourth is refused by his lock and not the kiosk's. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ATTEMPT(lb, 10000), 0);
		assert_int_equal(allowed, 1);
	}
	assert_int_equal(ATTEMPT(lb, 10000), 0);
	assert_int_equal(allowed, 0);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 3);
	/* The fourth of the kiosk's hour is 小明's; the fifth is refused, nothing counted. */
	assert_int_equal(ATTEMPT(la, 10000), 0);
	assert_int_equal(allowed, 1);
	allowed = -1;
	assert_int_equal(ATTEMPT(la, 20000), STORE_ELIMIT);
	assert_int_equal(allowed, 0);
	assert_int_equal(until, 10000 + hour);
	assert_string_equal(got.id.s, la.id.s);
	assert_int_equal(got.failures, 1);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 4);
	/* Another kiosk's are its own. */
	assert_int_equal(ATTEMPT(lc, 20000), 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(query_int(f, count_sql, second.id.s), 1);
	/* The screen's: when the spent hour ends; not spent, or over: 0. */
	assert_int_equal(store_kiosk_pins_lock_end(f->s, f->kiosk.id.s, 20000, 4, hour, &until), 0);
	assert_int_equal(until, 10000 + hour);
	assert_int_equal(store_kiosk_pins_lock_end(f->s, f->kiosk.id.s, 20000, 5, hour, &until), 0);
	assert_int_equal(until, 0);
	assert_int_equal(store_kiosk_pins_lock_end(f->s, second.id.s, 20000, 1, hour, &until), 0);
	assert_int_equal(until, 20000 + hour); /* its own hour, from its first */
	assert_int_equal(
	    store_kiosk_pins_lock_end(f->s, f->kiosk.id.s, 10000 + hour, 4, hour, &until), 0);
	assert_int_equal(until, 0);
	assert_int_equal(store_kiosk_pins_lock_end(f->s, UNKNOWN_ID, 20000, 4, hour, &until),
	                 STORE_ENOTFOUND);
	/* The hour over: a new one from this attempt. */
	assert_int_equal(ATTEMPT(la, 10000 + hour), 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 1);
	assert_int_equal(query_int(f, start_sql, f->kiosk.id.s), 10000 + hour);
	/* The clock set back two minutes: that hour started ahead of it, and is over; within a
	 * minute it is the same hour. */
	assert_int_equal(ATTEMPT(la, 10000 + hour - 30000), 0);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 2);
	assert_int_equal(ATTEMPT(lc, 20000), 0);
	assert_int_equal(ATTEMPT(lb, 10000 + hour - 120000), 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 1);
	assert_int_equal(query_int(f, start_sql, f->kiosk.id.s), 10000 + hour - 120000);
#undef ATTEMPT
	assert_int_equal(
	    store_kiosk_pin_attempt_bounded(f->s, la.id.s, 1, 3, 60000, 4, 0, &got, &allowed, NULL),
	    STORE_EINVAL);
}

/*
 * Two tablets' logins at once, the first of the kiosk's hour: the one that read the clock first
 * reaches the writer second, so it is counted in an hour that started a few ms after its
 * reading. Both are right PINs and both are given back as their sessions start: the kiosk has
 * no wrong PIN (the later reading's was given back and the earlier's stayed counted, so each
 * such pair of logins cost the kiosk a try for the hour, and right PINs locked it).
 */
static void kiosk_right_pins_at_once_given_back(void **state)
{
	fixture *f = *state;
	static const char count_sql[] = "SELECT pin_failures FROM kiosks WHERE id = ?";
	const int64_t hour = 3600000;
	uint8_t kh[STORE_HASH_LEN], sess[STORE_HASH_LEN];
	store_kiosk_link la, lb, got;
	store_device tablet[2];
	int allowed = -1;
	int64_t until = 0;
	store_kiosk_link *links[] = {&la, &lb};
	for (int i = 0; i < 2; i++) {
		hash_of("kiosk-token", i, kh);
		assert_int_equal(
		    store_device_add(f->s, kh, NULL, f->kiosk.id.s, i ? "二" : "一", 1, &tablet[i]),
		    0);
		link_child_to(f, &f->kiosk, i, links[i]);
	}
#define ATTEMPT(link, t)                                                                           \
	store_kiosk_pin_attempt_bounded(f->s, (link).id.s, t, 3, 60000, 2, hour, &got, &allowed,   \
	                                &until)
	assert_int_equal(ATTEMPT(la, 10005), 0); /* read at 10005, first at the writer */
	assert_int_equal(allowed, 1);
	assert_int_equal(ATTEMPT(lb, 10000), 0); /* read at 10000, second */
	assert_int_equal(allowed, 1);
	hash_of("session", 0, sess);
	assert_int_equal(store_kiosk_session_start(f->s, sess, tablet[0].id.s, la.id.s, "hash-1",
	                                           10005, NULL, NULL),
	                 0);
	hash_of("session", 1, sess);
	assert_int_equal(store_kiosk_session_start(f->s, sess, tablet[1].id.s, lb.id.s, "hash-1",
	                                           10000, NULL, NULL),
	                 0);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 0);
	/* So the kiosk's two tries of the hour are there for the next logins. */
	assert_int_equal(ATTEMPT(la, 20000), 0);
	assert_int_equal(ATTEMPT(lb, 20000), 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(ATTEMPT(la, 20000), STORE_ELIMIT);
#undef ATTEMPT
}

/* A login whose child's pictures were withdrawn after the kiosk's screen read them (an
 * operator's withdrawal, or the grown-up who chose them leaving) checks no PIN, so it counts
 * nothing: not the child's tries, not the kiosk's hour (it was counted, the child answered
 * 409 pin_not_set, and the kiosk's hour spent by logins that checked nothing). */
static void withdrawn_pin_counts_nothing(void **state)
{
	fixture *f = *state;
	const int64_t hour = 3600000;
	store_kiosk_link link, got;
	int allowed = -1;
	int64_t until = -1, start = 0, count = -1;
	unsigned n = 0;
	link_a_child(f, &link);
	assert_int_equal(store_kiosk_pins_withdraw_all(f->s, &n), 0);
	assert_int_equal(n, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_kiosk_pin_attempt_bounded(f->s, link.id.s, 10000 + i, 3,
		                                                 60000, 2, hour, &got, &allowed,
		                                                 &until),
		                 0);
		assert_int_equal(allowed, 0);
		assert_string_equal(got.pin_hash, "");
		assert_int_equal(got.failures, 0);
		assert_int_equal(got.locked_until_ms, 0);
		assert_int_equal(until, 0);
	}
	assert_int_equal(store_kiosk_pins_hour(f->s, f->kiosk.id.s, 10005, hour, &start, &count),
	                 0);
	assert_int_equal(count, 0);
}

/* A kiosk's hour spent, a login that read the clock before the attempts that spent it, and
 * reached the writer after them, was told the hour ended an hour from its own reading, where
 * it ends an hour from the earliest attempt counted: a few ms early, so a Retry-After a second
 * short (the child sent back to the lock still there). It is told the hour as stored. */
static void kiosk_spent_hour_told_as_stored(void **state)
{
	fixture *f = *state;
	const int64_t hour = 3600000;
	store_kiosk_link link, got;
	int allowed = -1;
	int64_t until = 0, start = 0, count = 0;
	link_a_child(f, &link);
	for (int64_t t = 10000; t < 10002; t++) {
		assert_int_equal(store_kiosk_pin_attempt_bounded(f->s, link.id.s, t, 5, 60000, 2,
		                                                 hour, &got, &allowed, &until),
		                 0);
		assert_int_equal(allowed, 1);
	}
	for (int64_t t = 9999; t > 9990; t--) {
		allowed = -1;
		assert_int_equal(store_kiosk_pin_attempt_bounded(f->s, link.id.s, t, 5, 60000, 2,
		                                                 hour, &got, &allowed, &until),
		                 STORE_ELIMIT);
		assert_int_equal(allowed, 0);
		assert_int_equal(until, 10000 + hour);
	}
	/* Nothing moved: the hour and its end as the kiosk's screen tells them. */
	assert_int_equal(store_kiosk_pins_hour(f->s, f->kiosk.id.s, 9991, hour, &start, &count), 0);
	assert_int_equal(start, 10000);
	assert_int_equal(count, 2);
	assert_int_equal(store_kiosk_pins_lock_end(f->s, f->kiosk.id.s, 9991, 2, hour, &until), 0);
	assert_int_equal(until, 10000 + hour);
}

/* A kiosk whose hour of wrong PINs is spent refused every login, on every tablet, until the
 * hour was over: nothing could end it early. An operator's reset ends it at once (the next
 * attempt is checked and starts a new hour) and says what it ended; the children's own locks
 * stay, another kiosk's hour is its own, and an unknown or malformed kiosk is not found. */
static void kiosk_pins_reset_ends_the_kiosk_lock(void **state)
{
	fixture *f = *state;
	const int64_t hour = 3600000;
	uint8_t code[STORE_HASH_LEN];
	store_kiosk second;
	store_kiosk_link la, lb, got;
	int allowed = -1;
	int64_t until = 0, start = -1, count = -1;
	assert_int_equal(store_kiosk_add(f->s, f->school.id.s, "二楼", 1000, &second), 0);
	store_kiosk_link *links[] = {&la, &lb};
	const store_kiosk *kiosks[] = {&f->kiosk, &second};
	for (int i = 0; i < 2; i++) {
		link_child_to(f, kiosks[i], i, links[i]);
	}
#define ATTEMPT(link, t)                                                                           \
	store_kiosk_pin_attempt_bounded(f->s, (link).id.s, t, 3, 60000, 3, hour, &got, &allowed,   \
	                                &until)
	/* Nothing counted yet: not locked, and the reset says so. */
	assert_int_equal(store_kiosk_pins_reset(f->s, f->kiosk.id.s, 9000, hour, &start, &count),
	                 0);
	assert_int_equal(start, 0);
	assert_int_equal(count, 0);
	/* Three wrong PINs of 小明's spend the kiosk's hour and lock him too. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ATTEMPT(la, 10000 + i), 0);
		assert_int_equal(allowed, 1);
	}
	assert_int_equal(ATTEMPT(lb, 20000), 0); /* the other kiosk's: its own */
	assert_int_equal(ATTEMPT(la, 20000), STORE_ELIMIT);
	assert_int_equal(store_kiosk_pins_hour(f->s, f->kiosk.id.s, 20000, hour, &start, &count),
	                 0);
	assert_int_equal(start, 10000);
	assert_int_equal(count, 3);
	/* The reset: what it ended, and the kiosk's screen shows no lock. */
	assert_int_equal(store_kiosk_pins_reset(f->s, f->kiosk.id.s, 30000, hour, &start, &count),
	                 0);
	assert_int_equal(start, 10000);
	assert_int_equal(count, 3);
	assert_int_equal(store_kiosk_pins_lock_end(f->s, f->kiosk.id.s, 30000, 3, hour, &until), 0);
	assert_int_equal(until, 0);
	assert_int_equal(store_kiosk_pins_hour(f->s, f->kiosk.id.s, 30000, hour, &start, &count),
	                 0);
	assert_int_equal(count, 0);
	/* 小明's own lock stays: his attempt is refused by it, not by the kiosk. */
	assert_int_equal(store_kiosk_link_get(f->s, la.id.s, &got), 0);
	assert_true(got.locked_until_ms > 30000);
	assert_int_equal(ATTEMPT(la, 30000), 0);
	assert_int_equal(allowed, 0);
	/* Another child at the kiosk is checked at once, and starts a new hour. */
	store_kiosk_link lc;
	hash_of("kcode", 2, code);
	store_member third;
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "小红", STORE_ROLE_CHILD, NULL, 1, &third), 0);
	assert_int_equal(store_kiosk_code_create(f->s, code, f->kiosk.id.s, 1000, 50000), 0);
	assert_int_equal(store_kiosk_link_redeem(f->s, code, third.id.s, "hash-1", NULL, 1500, &lc),
	                 0);
	assert_int_equal(ATTEMPT(lc, 40000), 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(store_kiosk_pins_hour(f->s, f->kiosk.id.s, 40000, hour, &start, &count),
	                 0);
	assert_int_equal(start, 40000);
	assert_int_equal(count, 1);
	/* The other kiosk's hour was not touched. */
	assert_int_equal(store_kiosk_pins_hour(f->s, second.id.s, 40000, hour, &start, &count), 0);
	assert_int_equal(start, 20000);
	assert_int_equal(count, 1);
	/* An hour over is none: the reset reports nothing, and still leaves nothing counted. */
	assert_int_equal(
	    store_kiosk_pins_reset(f->s, second.id.s, 20000 + hour, hour, &start, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(start, 0);
#undef ATTEMPT
	assert_int_equal(store_kiosk_pins_reset(f->s, UNKNOWN_ID, 9000, hour, &start, &count),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_pins_reset(f->s, "not an id", 9000, hour, &start, &count),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_pins_hour(f->s, UNKNOWN_ID, 9000, hour, &start, &count),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_pins_reset(f->s, f->kiosk.id.s, 9000, 0, &start, &count),
	                 STORE_EINVAL);
}

/*
 * An attempt whose PIN could not be checked, or whose session could not start, for a reason not
 * the child's (no memory for the hash, a storage error: 503): given back, the child's count and
 * the kiosk's, and the lock it set. It stayed counted, so a child with the right PIN whose
 * logins met 503 pin-failures times was locked out (the review).
 */
static void kiosk_attempt_given_back_when_not_checked(void **state)
{
	fixture *f = *state;
	static const char count_sql[] = "SELECT pin_failures FROM kiosks WHERE id = ?";
	static const char fails_sql[] = "SELECT failures FROM kiosk_links WHERE id = ?";
	static const char lock_sql[] = "SELECT locked_until_ms FROM kiosk_links WHERE id = ?";
	const int64_t hour = 3600000;
	store_kiosk_link la, got;
	int allowed = -1;
	link_a_child(f, &la);
#define ATTEMPT(t)                                                                                 \
	store_kiosk_pin_attempt_bounded(f->s, la.id.s, t, 3, 60000, 10, hour, &got, &allowed, NULL)
	assert_int_equal(ATTEMPT(10000), 0);
	assert_int_equal(ATTEMPT(11000), 0);
	assert_int_equal(
	    store_kiosk_pin_attempt_give_back(f->s, la.id.s, "hash-1", 11000, 3, 60000), 0);
	assert_int_equal(query_int(f, fails_sql, la.id.s), 1);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 1);
	/* The third sets the lock; given back, the lock goes with it. */
	assert_int_equal(ATTEMPT(12000), 0);
	assert_int_equal(ATTEMPT(13000), 0);
	assert_int_equal(allowed, 1);
	assert_int_equal(query_int(f, lock_sql, la.id.s), 13000 + 60000);
	assert_int_equal(
	    store_kiosk_pin_attempt_give_back(f->s, la.id.s, "hash-1", 13000, 3, 60000), 0);
	assert_int_equal(query_int(f, fails_sql, la.id.s), 2);
	assert_int_equal(query_int(f, lock_sql, la.id.s), 0);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 2);
	assert_int_equal(ATTEMPT(14000), 0);
	assert_int_equal(allowed, 1); /* not locked: its third wrong PIN locks it */
	assert_int_equal(query_int(f, lock_sql, la.id.s), 14000 + 60000);
	/* An earlier attempt's give-back leaves a lock set by another. */
	assert_int_equal(
	    store_kiosk_pin_attempt_give_back(f->s, la.id.s, "hash-1", 12000, 3, 60000), 0);
	assert_int_equal(query_int(f, lock_sql, la.id.s), 14000 + 60000);
	assert_int_equal(query_int(f, fails_sql, la.id.s), 2);
	/* A new PIN since, or a kiosk's hour that started after it: nothing to give back there. */
	assert_int_equal(
	    store_kiosk_pin_attempt_give_back(f->s, la.id.s, "hash-2", 14000, 3, 60000), 0);
	assert_int_equal(query_int(f, fails_sql, la.id.s), 2);
	assert_int_equal(ATTEMPT(14000 + hour), 0); /* the lock over, the kiosk's hour too */
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 1);
	assert_int_equal(
	    store_kiosk_pin_attempt_give_back(f->s, la.id.s, "hash-1", 14000, 3, 60000), 0);
	assert_int_equal(query_int(f, count_sql, f->kiosk.id.s), 1);
	assert_int_equal(query_int(f, fails_sql, la.id.s), 2);
#undef ATTEMPT
	assert_int_equal(store_kiosk_pin_attempt_give_back(f->s, UNKNOWN_ID, "hash-1", 1, 3, 60000),
	                 0);
	assert_int_equal(
	    store_kiosk_pin_attempt_give_back(f->s, "not an id", "hash-1", 1, 3, 60000),
	    STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_pin_attempt_give_back(f->s, la.id.s, "hash-1", 1, 0, 60000),
	                 STORE_EINVAL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(schools_and_kiosks),
	    T(volunteers),
	    T(flag_add_and_get),
	    T(flag_claim_and_resolve),
	    T(flag_again_while_waiting),
	    T(a_disabled_volunteers_flags_are_open_again),
	    T(flags_listed_by_state_oldest_first),
	    T(family_delete_removes_its_rows),
	    T(kiosk_links_pins_and_sessions),
	    T(kiosk_sessions_follow_the_pin),
	    T(kiosk_child_at_one_tablet),
	    T(kiosk_code_check),
	    T(kiosk_links_of_family_all),
	    T(kiosk_session_after_the_clock_set_back),
	    T(kiosk_lock_after_the_clock_set_back),
	    T(kiosk_lock_kept_from_attempts_out_of_order),
	    T(kiosk_wrong_pins_bounded_per_kiosk),
	    T(kiosk_right_pins_at_once_given_back),
	    T(kiosk_spent_hour_told_as_stored),
	    T(withdrawn_pin_counts_nothing),
	    T(kiosk_pins_reset_ends_the_kiosk_lock),
	    T(kiosk_attempt_given_back_when_not_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
