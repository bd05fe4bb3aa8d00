/*
 * test_directory.c — devices and pairing codes (storage/directory.c), each on a fresh data
 * directory with two families: success and failure paths, malformed ids answered like unknown
 * ones, a revoked device's token refused at once, sign-up and redeeming all or nothing, touch
 * throttling, a kiosk tablet's unused codes gone with its revoke, and a pairing code consumed by
 * two threads (on two store handles, so that the SQL and not only the writer mutex is tested)
 * exactly once. Schools, kiosks, volunteers, the
 * moderation queue and a deleted family's rows are in test_schools.c, members (their limit,
 * leaving, a new phone for one) in test_members.c; the fixture they share is in
 * directory_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store.h"
#include "directory_fixture.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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
	/* The row stays, with when it was revoked; revoking again keeps that time, and says the
	 * device was revoked already. */
	assert_int_equal(store_device_get(f->s, phone.id.s, &got), 0);
	assert_int_equal(got.revoked_ms, 5000);
	assert_int_equal(store_device_revoke(f->s, phone.id.s, 9000), 1);
	assert_int_equal(store_device_get(f->s, phone.id.s, &got), 0);
	assert_int_equal(got.revoked_ms, 5000);
	assert_int_equal(store_device_by_token(f->s, h, &got), STORE_ENOTFOUND);
	/* The revoked token's hash is still taken. */
	assert_int_equal(store_device_add(f->s, h, f->parent.id.s, NULL, "again", 9000, &got),
	                 STORE_EEXIST);
}

/*
 * The family's last parent phone is not revoked through store_device_revoke_keeping_parent
 * (STORE_ELIMIT, nothing changed: its token works, the codes made on it stay), as nobody but a
 * parent pairs a parent's phone; another family's parent phone, a parent member without a
 * phone, a caregiver's, a child's or a kiosk's do not keep it. With a second parent's phone it
 * goes; revoking it again is 1 even when it is the last; a new phone for the member replaces it
 * and an operator (store_device_revoke) may revoke it all the same.
 */
static void a_familys_last_parent_phone_stays(void **state)
{
	fixture *f = *state;
	uint8_t mom_h[STORE_HASH_LEN], gran_h[STORE_HASH_LEN], kid_h[STORE_HASH_LEN],
	    tab_h[STORE_HASH_LEN], lee_h[STORE_HASH_LEN], dad_h[STORE_HASH_LEN],
	    code_h[STORE_HASH_LEN], new_h[STORE_HASH_LEN];
	hash_of("mom", 1, mom_h);
	hash_of("gran", 1, gran_h);
	hash_of("kid", 1, kid_h);
	hash_of("tablet", 1, tab_h);
	hash_of("lee", 1, lee_h);
	hash_of("dad", 1, dad_h);
	hash_of("code", 1, code_h);
	hash_of("mom", 2, new_h);
	store_member gran, kid, dad, m;
	store_device mom_phone, gran_phone, kid_phone, tablet, lee_phone, dad_phone, got;
	assert_int_equal(
	    store_device_add(f->s, mom_h, f->parent.id.s, NULL, "妈妈", 2000, &mom_phone), 0);
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "奶奶", STORE_ROLE_CAREGIVER, NULL, 2000, &gran),
	    0);
	assert_int_equal(store_device_add(f->s, gran_h, gran.id.s, NULL, "奶奶", 2000, &gran_phone),
	                 0);
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, NULL, 2000, &kid), 0);
	assert_int_equal(store_device_add(f->s, kid_h, kid.id.s, NULL, "小明", 2000, &kid_phone),
	                 0);
	assert_int_equal(store_device_add(f->s, tab_h, NULL, f->kiosk.id.s, "平板", 2000, &tablet),
	                 0);
	assert_int_equal(
	    store_device_add(f->s, lee_h, f->other_parent.id.s, NULL, "爸爸", 2000, &lee_phone), 0);
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "爸爸", STORE_ROLE_PARENT, NULL, 2000, &dad), 0);
	store_pairing p = pairing(&f->fam.id, STORE_ROLE_CHILD, "小红", 2000, 602000);
	p.created_by = f->parent.id;
	p.created_by_device = mom_phone.id;
	assert_int_equal(store_pairing_create(f->s, code_h, &p), 0);

	/* 妈妈's is the family's only parent phone (爸爸 has none, 李家's is another family's). */
	assert_int_equal(store_device_revoke_keeping_parent(f->s, mom_phone.id.s, 3000),
	                 STORE_ELIMIT);
	assert_int_equal(store_device_by_token(f->s, mom_h, &got), 0);
	assert_int_equal(query_int(f,
	                           "SELECT count(*) FROM pairing_codes WHERE "
	                           "created_by_device = ?",
	                           mom_phone.id.s),
	                 1);
	/* The others' go as before. */
	assert_int_equal(store_device_revoke_keeping_parent(f->s, gran_phone.id.s, 3000), 0);
	assert_int_equal(store_device_revoke_keeping_parent(f->s, kid_phone.id.s, 3000), 0);
	assert_int_equal(store_device_revoke_keeping_parent(f->s, tablet.id.s, 3000), 0);
	assert_int_equal(store_device_revoke_keeping_parent(f->s, UNKNOWN_ID, 3000),
	                 STORE_ENOTFOUND);
	/* 李家's last parent phone is refused too, whatever 王家 has. */
	assert_int_equal(store_device_revoke_keeping_parent(f->s, lee_phone.id.s, 3000),
	                 STORE_ELIMIT);

	/* With 爸爸's phone, 妈妈's goes (and its codes); then 爸爸's is the last. */
	assert_int_equal(store_device_add(f->s, dad_h, dad.id.s, NULL, "爸爸", 4000, &dad_phone),
	                 0);
	assert_int_equal(store_device_revoke_keeping_parent(f->s, mom_phone.id.s, 5000), 0);
	assert_int_equal(store_device_by_token(f->s, mom_h, &got), STORE_ENOTFOUND);
	assert_int_equal(query_int(f,
	                           "SELECT count(*) FROM pairing_codes WHERE "
	                           "created_by_device = ?",
	                           mom_phone.id.s),
	                 0);
	assert_int_equal(store_device_revoke_keeping_parent(f->s, dad_phone.id.s, 6000),
	                 STORE_ELIMIT);
	/* 妈妈's again: revoked already (1), its first time kept, though no other phone is left. */
	assert_int_equal(store_device_revoke_keeping_parent(f->s, mom_phone.id.s, 6000), 1);
	assert_int_equal(store_device_get(f->s, mom_phone.id.s, &got), 0);
	assert_int_equal(got.revoked_ms, 5000);

	/* 爸爸's new phone replaces his last one. */
	store_pairing np = pairing(&f->fam.id, STORE_ROLE_PARENT, "爸爸", 7000, 607000);
	np.member_id = dad.id;
	store_pairing used;
	hash_of("code", 2, code_h);
	assert_int_equal(store_pairing_create(f->s, code_h, &np), 0);
	assert_int_equal(store_pairing_redeem(f->s, code_h, new_h, "新手机", 7000, &used, &m, &got),
	                 0);
	assert_int_equal(store_device_by_token(f->s, dad_h, &got), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, new_h, &got), 0);
	/* An operator retiring a stolen phone revokes it all the same. */
	assert_int_equal(store_device_revoke(f->s, got.id.s, 8000), 0);
	assert_int_equal(store_device_by_token(f->s, new_h, &got), STORE_ENOTFOUND);
}

/*
 * Two parents, one phone each, each revoking the other's at once, on two store handles (two
 * writer connections, so the SQL's transaction and not only one handle's mutex keeps them
 * apart): exactly one is revoked, the other refused, every round.
 */
typedef struct revoker {
	store *s;
	const char *device_id;
	pthread_barrier_t *start;
	int rc;
} revoker;

static void *revoke_race(void *arg)
{
	revoker *r = arg;
	pthread_barrier_wait(r->start);
	r->rc = store_device_revoke_keeping_parent(r->s, r->device_id, 5000);
	return NULL;
}

static void two_parents_revoking_each_other_keep_one(void **state)
{
	fixture *f = *state;
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->second, &o), 0);
	store_member dad;
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "爸爸", STORE_ROLE_PARENT, NULL, 1000, &dad), 0);
	for (int round = 0; round < 50; round++) {
		uint8_t mh[STORE_HASH_LEN], dh[STORE_HASH_LEN];
		hash_of("mom-race", round, mh);
		hash_of("dad-race", round, dh);
		store_device phones[2];
		assert_int_equal(
		    store_device_add(f->s, mh, f->parent.id.s, NULL, "妈妈", 2000, &phones[0]), 0);
		assert_int_equal(
		    store_device_add(f->s, dh, dad.id.s, NULL, "爸爸", 2000, &phones[1]), 0);
		pthread_barrier_t start;
		pthread_barrier_init(&start, NULL, 2);
		revoker r[2] = {
		    {.s = f->s, .device_id = phones[1].id.s, .start = &start, .rc = 1},
		    {.s = f->second, .device_id = phones[0].id.s, .start = &start, .rc = 1},
		};
		pthread_t t[2];
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&t[i], NULL, revoke_race, &r[i]), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&start);
		assert_true((r[0].rc == 0 && r[1].rc == STORE_ELIMIT) ||
		            (r[0].rc == STORE_ELIMIT && r[1].rc == 0));
		assert_int_equal(
		    query_int(f,
		              "SELECT count(*) FROM devices d JOIN members m ON m.id = "
		              "d.member_id WHERE m.family_id = ? AND m.role = 'parent' "
		              "AND d.revoked_ms IS NULL",
		              f->fam.id.s),
		    1);
		/* the one left goes by an operator, for the next round */
		store_device left;
		store_device *keep = r[0].rc == 0 ? &phones[0] : &phones[1];
		assert_int_equal(store_device_revoke(f->s, keep->id.s, 6000), 0);
		assert_int_equal(store_device_get(f->s, keep->id.s, &left), 0);
		assert_int_equal(left.revoked_ms, 6000);
	}
}

/*
 * A kiosk tablet revoked (a stolen one) takes the unused codes it made with it, in the revoke's
 * transaction: they no longer pair a child, nor count toward the kiosk's live codes (they did
 * both until they expired). The kiosk's other tablet keeps its own; a code that names no tablet
 * (made before directory step 16) lives out its minutes. A tablet revoked, or another kiosk's,
 * makes no code.
 */
static void kiosk_codes_go_with_their_tablet(void **state)
{
	fixture *f = *state;
	uint8_t h1[STORE_HASH_LEN], h2[STORE_HASH_LEN], h3[STORE_HASH_LEN];
	uint8_t mine[STORE_HASH_LEN], theirs[STORE_HASH_LEN], old[STORE_HASH_LEN];
	uint8_t more[STORE_HASH_LEN];
	hash_of("tablet", 1, h1);
	hash_of("tablet", 2, h2);
	hash_of("tablet", 3, h3);
	hash_of("kcode", 1, mine);
	hash_of("kcode", 2, theirs);
	hash_of("kcode", 3, old);
	hash_of("kcode", 4, more);
	store_kiosk elsewhere;
	store_device t1, t2, t3;
	assert_int_equal(store_kiosk_add(f->s, f->school.id.s, "图书馆", 1000, &elsewhere), 0);
	assert_int_equal(store_device_add(f->s, h1, NULL, f->kiosk.id.s, "一号", 1000, &t1), 0);
	assert_int_equal(store_device_add(f->s, h2, NULL, f->kiosk.id.s, "二号", 1000, &t2), 0);
	assert_int_equal(store_device_add(f->s, h3, NULL, elsewhere.id.s, "三号", 1000, &t3), 0);
	assert_int_equal(store_kiosk_code_create(f->s, old, f->kiosk.id.s, 2000, 9000), 0);
	assert_int_equal(store_kiosk_code_create_bounded(f->s, mine, f->kiosk.id.s, t1.id.s, 2000,
	                                                 9000, 3, NULL),
	                 0);
	assert_int_equal(store_kiosk_code_create_bounded(f->s, theirs, f->kiosk.id.s, t2.id.s, 2000,
	                                                 9000, 3, NULL),
	                 0);
	int64_t first = 0;
	assert_int_equal(store_kiosk_code_create_bounded(f->s, more, f->kiosk.id.s, t2.id.s, 3000,
	                                                 9000, 3, &first),
	                 STORE_ELIMIT);
	assert_int_equal(store_kiosk_code_check(f->s, mine, 3000), 0);

	assert_int_equal(store_device_revoke(f->s, t1.id.s, 4000), 0);
	assert_int_equal(store_kiosk_code_check(f->s, mine, 4000), STORE_ENOTFOUND);
	store_member kid;
	store_kiosk_link link;
	assert_int_equal(
	    store_member_add(f->s, f->fam.id.s, "小明", STORE_ROLE_CHILD, NULL, 4000, &kid), 0);
	assert_int_equal(store_kiosk_link_redeem(f->s, mine, kid.id.s, "hash-1", NULL, 4000, &link),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_code_check(f->s, theirs, 4000), 0);
	assert_int_equal(store_kiosk_code_check(f->s, old, 4000), 0);
	/* Two live codes now: the other tablet makes its third. */
	assert_int_equal(store_kiosk_code_create_bounded(f->s, more, f->kiosk.id.s, t2.id.s, 4000,
	                                                 9000, 3, NULL),
	                 0);
	/* The revoked tablet, and another kiosk's, make none: nothing is stored. */
	uint8_t none[STORE_HASH_LEN];
	hash_of("kcode", 5, none);
	assert_int_equal(store_kiosk_code_create_bounded(f->s, none, f->kiosk.id.s, t1.id.s, 4000,
	                                                 9000, 0, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_code_create_bounded(f->s, none, f->kiosk.id.s, t3.id.s, 4000,
	                                                 9000, 0, NULL),
	                 STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_code_check(f->s, none, 4000), STORE_ENOTFOUND);
	assert_int_equal(store_kiosk_code_create_bounded(f->s, none, elsewhere.id.s, t3.id.s, 4000,
	                                                 9000, 0, NULL),
	                 0);
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

/* The mailbox files in the fixture's families/ (one per family, and none a retry made). */
static int mailbox_files(const fixture *f)
{
	char dir[128];
	snprintf(dir, sizeof dir, "%s/families", f->dir);
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += strlen(e->d_name) > 3 && strcmp(e->d_name + strlen(e->d_name) - 3, ".db") == 0;
	if (d)
		closedir(d);
	return n;
}

/* store_family_signup: a key's sign-up again is that family, member and device with a new token
 * hash, the one before refused; never a second family, two at once included (two store handles);
 * other names: nothing; its device used, revoked or older than the window: nothing; an unknown
 * key without `make`: nothing; a family erased takes its key with it. */
static void family_signup_retried_by_key(void **state)
{
	fixture *f = *state;
	uint8_t key[STORE_HASH_LEN], key2[STORE_HASH_LEN], t1[STORE_HASH_LEN], t2[STORE_HASH_LEN];
	uint8_t t3[STORE_HASH_LEN];
	hash_of("signup-key", 1, key);
	hash_of("signup-key", 2, key2);
	hash_of("signup-token", 1, t1);
	hash_of("signup-token", 2, t2);
	hash_of("signup-token", 3, t3);
	store_family fam, fam2;
	store_member m, m2;
	store_device d, d2, got;
	store_signup done;
	int files = mailbox_files(f);
	assert_int_equal(store_family_signup(f->s, "张家", "奶奶", 0, t1, "老人机", key, 0, true,
	                                     5000, &fam, &m, &d, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_MADE);
	assert_int_equal(mailbox_files(f), files + 1);
	assert_int_equal(store_family_signup(f->s, "张家", "奶奶", 0, t2, "老人机", key, 5000, true,
	                                     6000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_AGAIN);
	assert_string_equal(fam2.id.s, fam.id.s);
	assert_string_equal(fam2.name, "张家");
	assert_string_equal(m2.id.s, m.id.s);
	assert_int_equal(m2.role, STORE_ROLE_PARENT);
	assert_string_equal(d2.id.s, d.id.s);
	assert_string_equal(d2.name, "老人机");
	assert_int_equal(d2.created_ms, 5000);
	assert_int_equal(store_device_by_token(f->s, t1, &got), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, t2, &got), 0);
	assert_string_equal(got.id.s, d.id.s);
	assert_int_equal(mailbox_files(f), files + 1);
	/* Other names, or a sign-up made before the window: nothing changes, t2 stays. */
	assert_int_equal(store_family_signup(f->s, "张家", "爷爷", 0, t3, "老人机", key, 5000, true,
	                                     6000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_OTHER);
	assert_int_equal(store_family_signup(f->s, "张家", "奶奶", 0, t3, "phone", key, 5000, true,
	                                     6000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_OTHER);
	assert_int_equal(store_family_signup(f->s, "张家", "奶奶", 0, t3, "老人机", key, 5001, true,
	                                     6000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_DONE);
	assert_int_equal(store_device_by_token(f->s, t3, &got), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, t2, &got), 0);
	/* Its device used: done, the token it uses kept. */
	assert_int_equal(store_device_touch(f->s, d.id.s, 7000), 0);
	assert_int_equal(store_family_signup(f->s, "张家", "奶奶", 0, t3, "老人机", key, 0, true,
	                                     8000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_DONE);
	assert_int_equal(store_device_by_token(f->s, t2, &got), 0);
	assert_int_equal(mailbox_files(f), files + 1);
	/* An unknown key without make: nothing made. */
	assert_int_equal(store_family_signup(f->s, "赵家", "爸爸", 0, t3, "手机", key2, 0, false,
	                                     8000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_NONE);
	assert_int_equal(mailbox_files(f), files + 1);
	assert_int_equal(store_device_by_token(f->s, t3, &got), STORE_ENOTFOUND);
	/* Revoked before it was used: done. */
	assert_int_equal(store_family_signup(f->s, "赵家", "爸爸", 0, t3, "手机", key2, 0, true,
	                                     8000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_MADE);
	assert_int_equal(store_device_revoke(f->s, d2.id.s, 8500), 0);
	uint8_t t4[STORE_HASH_LEN];
	hash_of("signup-token", 4, t4);
	assert_int_equal(store_family_signup(f->s, "赵家", "爸爸", 0, t4, "手机", key2, 0, false,
	                                     9000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_DONE);
	assert_int_equal(store_device_by_token(f->s, t4, &got), STORE_ENOTFOUND);
	/* The family erased: its key with it, and the key makes a new family. */
	assert_int_equal(store_family_delete(f->s, fam.id.s, 10000), 0);
	assert_int_equal(store_family_signup(f->s, "张家", "奶奶", 0, t4, "老人机", key, 0, true,
	                                     11000, &fam2, &m2, &d2, &done),
	                 0);
	assert_int_equal(done, STORE_SIGNUP_MADE);
	assert_string_not_equal(fam2.id.s, fam.id.s);
	/* Bad names: refused before the key is looked up. */
	assert_int_equal(store_family_signup(f->s, "", "奶奶", 0, t1, "老人机", key, 0, true, 11000,
	                                     &fam2, &m2, &d2, &done),
	                 STORE_EINVAL);
}

typedef struct signup_racer {
	store *s;
	uint8_t token[STORE_HASH_LEN];
	store_family fam;
	store_member m;
	store_device d;
	store_signup done;
	int rc;
} signup_racer;

static void *signup_race(void *arg)
{
	signup_racer *r = arg;
	uint8_t key[STORE_HASH_LEN];
	hash_of("signup-race", 1, key);
	r->rc = store_family_signup(r->s, "周家", "妈妈", 0, r->token, "phone", key, 0, true, 5000,
	                            &r->fam, &r->m, &r->d, &r->done);
	return NULL;
}

/* Two sign-ups with one key at once, on two store handles (the SQL, not only the writer's
 * mutex): one family, one MADE and one AGAIN, and no mailbox file left over. */
static void family_signup_once_under_a_race(void **state)
{
	fixture *f = *state;
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->second, &o), 0);
	int files = mailbox_files(f);
	for (int round = 0; round < 8; round++) {
		signup_racer r[2] = {{.s = f->s}, {.s = f->second}};
		hash_of("signup-race-token", 2 * round, r[0].token);
		hash_of("signup-race-token", 2 * round + 1, r[1].token);
		pthread_t th[2];
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&th[i], NULL, signup_race, &r[i]), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		assert_int_equal(r[0].rc, 0);
		assert_int_equal(r[1].rc, 0);
		assert_string_equal(r[0].fam.id.s, r[1].fam.id.s);
		assert_string_equal(r[0].d.id.s, r[1].d.id.s);
		if (round == 0)
			assert_int_equal(r[0].done + r[1].done,
			                 STORE_SIGNUP_MADE + STORE_SIGNUP_AGAIN);
		else
			assert_true(r[0].done == STORE_SIGNUP_AGAIN &&
			            r[1].done == STORE_SIGNUP_AGAIN);
		assert_int_equal(mailbox_files(f), files + 1);
	}
}

/* A keyed pairing (store_pairing_redeem_keyed): made once, then the same key and code give
 * the same device a new token while it is unused, unrevoked and the code unexpired; another
 * code, another name or a sign-up's key: OTHER; a key is one request's either way. */
static void pairing_retried_by_key(void **state)
{
	fixture *f = *state;
	uint8_t code[STORE_HASH_LEN], code2[STORE_HASH_LEN], key[STORE_HASH_LEN];
	uint8_t t[8][STORE_HASH_LEN];
	hash_of("keyed-code", 1, code);
	hash_of("keyed-code", 2, code2);
	hash_of("pair-key", 1, key);
	for (int i = 0; i < 8; i++)
		hash_of("keyed-token", i, t[i]);
	store_pairing p = pairing(&f->fam.id, STORE_ROLE_CAREGIVER, "奶奶", 1000, 601000), got;
	assert_int_equal(store_pairing_create(f->s, code, &p), 0);
	p = pairing(&f->fam.id, STORE_ROLE_CHILD, "小明", 1000, 601000);
	assert_int_equal(store_pairing_create(f->s, code2, &p), 0);
	store_family fam;
	store_member m, m2;
	store_device d, d2, dev;
	store_pair_keyed done;
	assert_int_equal(store_pairing_redeem_keyed(f->s, code, t[0], "老人机", key, 2000, 0, NULL,
	                                            &got, &m, &d, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_MADE);
	assert_string_equal(m.name, "奶奶");
	assert_string_equal(fam.id.s, f->fam.id.s);
	/* Again, with the family's hour spent (hour_max 1: the first is its one phone). */
	int64_t first_ms = 0;
	assert_int_equal(store_pairing_redeem_keyed(f->s, code, t[1], "老人机", key, 3000, 1,
	                                            &first_ms, &got, &m2, &d2, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_AGAIN);
	assert_string_equal(m2.id.s, m.id.s);
	assert_string_equal(d2.id.s, d.id.s);
	assert_int_equal(d2.created_ms, 2000);
	assert_string_equal(fam.id.s, f->fam.id.s);
	assert_string_equal(got.member_id.s, "");
	assert_int_equal(store_device_by_token(f->s, t[0], &dev), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, t[1], &dev), 0);
	assert_string_equal(dev.id.s, d.id.s);
	assert_int_equal(query_int(f, "SELECT count(*) FROM members WHERE name = '奶奶'", NULL), 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM devices WHERE name = '老人机'", NULL),
	                 1);
	/* Another device name, another code, a sign-up: the key is the first pairing's; nothing
	 * changes, and the other code stays unused. */
	assert_int_equal(store_pairing_redeem_keyed(f->s, code, t[2], "手机", key, 3000, 0, NULL,
	                                            &got, &m2, &d2, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_OTHER);
	assert_int_equal(store_pairing_redeem_keyed(f->s, code2, t[2], "老人机", key, 3000, 0, NULL,
	                                            &got, &m2, &d2, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_OTHER);
	store_signup signed_up;
	assert_int_equal(store_family_signup(f->s, "王家", "奶奶", 0, t[2], "老人机", key, 0, true,
	                                     3000, &fam, &m2, &d2, &signed_up),
	                 0);
	assert_int_equal(signed_up, STORE_SIGNUP_OTHER);
	assert_int_equal(store_device_by_token(f->s, t[2], &dev), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, t[1], &dev), 0);
	assert_int_equal(
	    query_int(f, "SELECT count(*) FROM pairing_codes WHERE used_ms IS NULL", NULL), 1);
	/* A sign-up's key is not a pairing's either. */
	uint8_t signup_key[STORE_HASH_LEN];
	hash_of("pair-key", 2, signup_key);
	assert_int_equal(store_family_signup(f->s, "赵家", "爸爸", 0, t[3], "phone", signup_key, 0,
	                                     true, 3000, &fam, &m2, &d2, &signed_up),
	                 0);
	assert_int_equal(signed_up, STORE_SIGNUP_MADE);
	assert_int_equal(store_pairing_redeem_keyed(f->s, code2, t[4], "phone", signup_key, 3000, 0,
	                                            NULL, &got, &m2, &d2, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_OTHER);
	/* The code expired (its row kept until swept, or swept): done. */
	assert_int_equal(store_pairing_redeem_keyed(f->s, code, t[4], "老人机", key, 601000, 0,
	                                            NULL, &got, &m2, &d2, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_DONE);
	/* Its device used: done, the token it uses kept. */
	assert_int_equal(store_device_touch(f->s, d.id.s, 4000), 0);
	assert_int_equal(store_pairing_redeem_keyed(f->s, code, t[4], "老人机", key, 5000, 0, NULL,
	                                            &got, &m2, &d2, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_DONE);
	assert_int_equal(store_device_by_token(f->s, t[4], &dev), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, t[1], &dev), 0);

	/* A member's new phone, retried: the same new phone, her old one revoked once. */
	uint8_t code3[STORE_HASH_LEN], key3[STORE_HASH_LEN];
	hash_of("keyed-code", 3, code3);
	hash_of("pair-key", 3, key3);
	p = pairing(&f->fam.id, STORE_ROLE_CAREGIVER, "奶奶", 5000, 605000);
	p.member_id = m.id;
	assert_int_equal(store_pairing_create(f->s, code3, &p), 0);
	assert_int_equal(store_pairing_redeem_keyed(f->s, code3, t[5], "新手机", key3, 6000, 0,
	                                            NULL, &got, &m2, &d2, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_MADE);
	assert_string_equal(got.member_id.s, m.id.s);
	assert_int_equal(store_pairing_redeem_keyed(f->s, code3, t[6], "新手机", key3, 7000, 0,
	                                            NULL, &got, &m2, &dev, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_AGAIN);
	assert_string_equal(dev.id.s, d2.id.s);
	assert_string_equal(m2.id.s, m.id.s);
	assert_int_equal(query_int(f,
	                           "SELECT count(*) FROM devices WHERE member_id = ?1 AND "
	                           "revoked_ms IS NULL",
	                           m.id.s),
	                 1);
	assert_int_equal(store_device_by_token(f->s, t[1], &dev), STORE_ENOTFOUND);
	assert_int_equal(store_device_by_token(f->s, t[6], &dev), 0);
	/* Revoked before it was used: done. */
	assert_int_equal(store_device_revoke(f->s, d2.id.s, 8000), 0);
	assert_int_equal(store_pairing_redeem_keyed(f->s, code3, t[7], "新手机", key3, 9000, 0,
	                                            NULL, &got, &m2, &dev, &fam, &done),
	                 0);
	assert_int_equal(done, STORE_PAIR_DONE);
	assert_int_equal(store_device_by_token(f->s, t[7], &dev), STORE_ENOTFOUND);
	/* An unknown key pairs as without one: a wrong code is not found, nothing kept. */
	uint8_t key4[STORE_HASH_LEN];
	hash_of("pair-key", 4, key4);
	assert_int_equal(store_pairing_redeem_keyed(f->s, code, t[7], "x", key4, 9000, 0, NULL,
	                                            &got, &m2, &dev, &fam, &done),
	                 STORE_ENOTFOUND);
	assert_int_equal(done, 0);
	assert_int_equal(store_pairing_redeem_keyed(f->s, code, t[7], "x", NULL, 9000, 0, NULL,
	                                            &got, &m2, &dev, &fam, &done),
	                 STORE_EINVAL);
}

typedef struct pair_racer {
	store *s;
	const uint8_t *code;
	uint8_t token[STORE_HASH_LEN];
	store_pairing p;
	store_member m;
	store_device d;
	store_family fam;
	store_pair_keyed done;
	int rc;
} pair_racer;

static void *pair_race(void *arg)
{
	pair_racer *r = arg;
	uint8_t key[STORE_HASH_LEN];
	hash_of("pair-race", 1, key);
	r->rc = store_pairing_redeem_keyed(r->s, r->code, r->token, "phone", key, 2000, 0, NULL,
	                                   &r->p, &r->m, &r->d, &r->fam, &r->done);
	return NULL;
}

/* Two pairings with one key and code at once, on two store handles: one member and device,
 * one MADE and one AGAIN. */
static void pairing_once_under_a_race(void **state)
{
	fixture *f = *state;
	store_options o;
	store_options_init(&o);
	o.dir = f->dir;
	assert_int_equal(store_open(&f->second, &o), 0);
	uint8_t code[STORE_HASH_LEN];
	hash_of("pair-race-code", 1, code);
	store_pairing p = pairing(&f->fam.id, STORE_ROLE_CHILD, "小红", 1000, 601000);
	assert_int_equal(store_pairing_create(f->s, code, &p), 0);
	for (int round = 0; round < 8; round++) {
		pair_racer r[2] = {{.s = f->s, .code = code}, {.s = f->second, .code = code}};
		hash_of("pair-race-token", 2 * round, r[0].token);
		hash_of("pair-race-token", 2 * round + 1, r[1].token);
		pthread_t th[2];
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&th[i], NULL, pair_race, &r[i]), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		assert_int_equal(r[0].rc, 0);
		assert_int_equal(r[1].rc, 0);
		assert_string_equal(r[0].m.id.s, r[1].m.id.s);
		assert_string_equal(r[0].d.id.s, r[1].d.id.s);
		if (round == 0)
			assert_int_equal(r[0].done + r[1].done, STORE_PAIR_MADE + STORE_PAIR_AGAIN);
		else
			assert_true(r[0].done == STORE_PAIR_AGAIN && r[1].done == STORE_PAIR_AGAIN);
		assert_int_equal(
		    query_int(f, "SELECT count(*) FROM members WHERE name = '小红'", NULL), 1);
	}
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

	/* The active ones only: the revoked phone and the kiosk are not the family's. */
	assert_int_equal(store_devices_active(f->s, f->fam.id.s, list, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id.s, mine[1].id.s);
	assert_string_equal(list[1].id.s, mine[2].id.s);
	assert_int_equal(store_devices_active(f->s, f->fam.id.s, list, 1, &n), 0);
	assert_int_equal(n, 1);
	for (size_t i = 0; i < NBAD; i++)
		assert_int_equal(store_devices_active(f->s, bad_ids[i], list, 8, &n),
		                 i + 1 < NBAD ? STORE_ENOTFOUND : 0); /* the last is well formed */

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

static void pairing_live_codes_bounded(void **state)
{
	fixture *f = *state;
	uint8_t h[6][STORE_HASH_LEN];
	for (int i = 0; i < 6; i++)
		hash_of("bounded", i, h[i]);
	store_pairing got, p = pairing(&f->fam.id, STORE_ROLE_CHILD, "x", 1000, 5000);
	int64_t first = 0;
	assert_int_equal(store_pairing_create_bounded(f->s, h[0], &p, 2, &first), 0);
	p.expires_ms = 6000;
	assert_int_equal(store_pairing_create_bounded(f->s, h[1], &p, 2, &first), 0);
	p.kiosk_id = f->kiosk.id; /* a kiosk's is no phone's: not counted, nor bounded */
	assert_int_equal(store_pairing_create_bounded(f->s, h[5], &p, 2, &first), 0);
	memset(&p.kiosk_id, 0, sizeof p.kiosk_id);
	/* Two live: the third refused, nothing stored, and when the first of them expires. */
	assert_int_equal(store_pairing_create_bounded(f->s, h[2], &p, 2, &first), STORE_ELIMIT);
	assert_int_equal(first, 5000);
	assert_int_equal(store_pairing_consume(f->s, h[2], 2000, &got), STORE_ENOTFOUND);
	/* One used: no longer counted. */
	assert_int_equal(store_pairing_consume(f->s, h[1], 2000, &got), 0);
	p.created_ms = 2000;
	assert_int_equal(store_pairing_create_bounded(f->s, h[2], &p, 2, &first), 0);
	assert_int_equal(store_pairing_create_bounded(f->s, h[3], &p, 2, &first), STORE_ELIMIT);
	/* One expired (at its expires_ms): no longer counted either. */
	p.created_ms = 5000;
	assert_int_equal(store_pairing_create_bounded(f->s, h[3], &p, 2, &first), 0);
	assert_int_equal(store_pairing_create_bounded(f->s, h[4], &p, 0, NULL), 0); /* unbounded */
	assert_int_equal(store_pairing_create_bounded(f->s, h[0], &p, 3, &first), STORE_ELIMIT);
	assert_int_equal(first, 6000);
}

static void pairing_hourly_bounded(void **state)
{
	fixture *f = *state;
	uint8_t h[5][STORE_HASH_LEN], phone[6][STORE_HASH_LEN];
	for (int i = 0; i < 5; i++)
		hash_of("hourly", i, h[i]), hash_of("hourly-phone", i, phone[i]);
	hash_of("hourly-phone", 5, phone[5]);
	store_pairing got, p = pairing(&f->fam.id, STORE_ROLE_CHILD, "x", 2000, 4000000);
	store_member m;
	store_device d;
	for (int i = 0; i < 4; i++)
		assert_int_equal(store_pairing_create(f->s, h[i], &p), 0);
	int64_t first = 0;
	assert_int_equal(store_pairing_redeem_bounded(f->s, h[0], phone[0], "x", 2000, 2, &first,
	                                              &got, &m, &d, NULL),
	                 0);
	assert_int_equal(store_pairing_redeem_bounded(f->s, h[1], phone[1], "x", 3000, 2, &first,
	                                              &got, &m, &d, NULL),
	                 0);
	/* Two phones in the hour: the third refused, nothing changed, the code still unused. */
	assert_int_equal(store_pairing_redeem_bounded(f->s, h[2], phone[2], "x", 4000, 2, &first,
	                                              &got, &m, &d, NULL),
	                 STORE_ELIMIT);
	assert_int_equal(first, 2000);
	assert_int_equal(query_int(f, "SELECT count(*) FROM devices WHERE kind = ?", "personal"),
	                 2);
	assert_int_equal(store_device_by_token(f->s, phone[2], &d), STORE_ENOTFOUND);
	unsigned n = 0;
	assert_int_equal(store_family_pairings(f->s, f->fam.id.s, 4000, &n, &first), 0);
	assert_int_equal(n, 2);
	assert_int_equal(first, 2000);
	/* Another family's hour is its own. */
	store_pairing o = pairing(&f->other.id, STORE_ROLE_CHILD, "y", 2000, 4000000);
	assert_int_equal(store_pairing_create(f->s, h[4], &o), 0);
	store_family joined;
	assert_int_equal(store_pairing_redeem_bounded(f->s, h[4], phone[4], "x", 4000, 2, &first,
	                                              &got, &m, &d, &joined),
	                 0);
	assert_string_equal(joined.id.s, f->other.id.s); /* what the phone is told it joined */
	assert_string_equal(joined.name, f->other.name);
	/* The first one's hour over (at 2000 + 1 h), the refused code pairs. */
	assert_int_equal(store_pairing_redeem_bounded(f->s, h[2], phone[2], "x", 3601999, 2, &first,
	                                              &got, &m, &d, NULL),
	                 STORE_ELIMIT);
	assert_int_equal(store_pairing_redeem_bounded(f->s, h[2], phone[2], "x", 3602000, 2, &first,
	                                              &got, &m, &d, NULL),
	                 0);
	assert_int_equal(store_family_pairings(f->s, f->fam.id.s, 3602000, &n, &first), 0);
	assert_int_equal(n, 2);
	assert_int_equal(first, 3000);
	/* A clock set back two minutes: the phone paired "later" is not counted; a few ms (pairings
	 * racing for the writer) would be. */
	assert_int_equal(store_family_pairings(f->s, f->fam.id.s, 3482000, &n, &first), 0);
	assert_int_equal(n, 2); /* 2000 and 3000 */
	assert_int_equal(store_family_pairings(f->s, f->fam.id.s, 3601990, &n, &first), 0);
	assert_int_equal(n, 3); /* 2000, 3000 and 3602000, 10 ms ahead */
	/* The phone a family was made on is no pairing. */
	store_family fam;
	assert_int_equal(store_family_create_with_device(f->s, "张家", "爸爸", 0, phone[3], "x",
	                                                 5000, &fam, &m, &d),
	                 0);
	assert_int_equal(store_family_pairings(f->s, fam.id.s, 5000, &n, &first), 0);
	assert_int_equal(n, 0);
	assert_int_equal(first, 0);
}

/* A family made while the clock was a day ahead (a wrong time put right since): the phones it
 * pairs in the next hour count, the one it was made on does not. Counted only after the
 * family's creation time, they went uncounted for as long as the clock had been ahead: a loop
 * pairing a member's new phone again and again had no bound for that day. */
static void pairings_of_a_family_made_ahead(void **state)
{
	fixture *f = *state;
	const int64_t day = 24 * 3600000LL, now = 10000000;
	uint8_t h[3][STORE_HASH_LEN], phone[4][STORE_HASH_LEN];
	for (int i = 0; i < 4; i++)
		hash_of("ahead-phone", i, phone[i]);
	store_family fam;
	store_pairing got;
	store_member m;
	store_device d;
	assert_int_equal(store_family_create_with_device(f->s, "张家", "爸爸", 0, phone[3], "x",
	                                                 now + day, &fam, &m, &d),
	                 0);
	store_pairing p = pairing(&fam.id, STORE_ROLE_CHILD, "x", now, now + 600000);
	int64_t first = 0;
	for (int i = 0; i < 3; i++) {
		hash_of("ahead", i, h[i]);
		assert_int_equal(store_pairing_create(f->s, h[i], &p), 0);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(store_pairing_redeem_bounded(f->s, h[i], phone[i], "x", now + i, 2,
		                                              &first, &got, &m, &d, NULL),
		                 0);
	unsigned n = 0;
	assert_int_equal(store_family_pairings(f->s, fam.id.s, now + 2, &n, &first), 0);
	assert_int_equal(n, 2);
	assert_int_equal(first, now);
	first = 0;
	assert_int_equal(store_pairing_redeem_bounded(f->s, h[2], phone[2], "x", now + 2, 2, &first,
	                                              &got, &m, &d, NULL),
	                 STORE_ELIMIT);
	assert_int_equal(first, now);
}

/* Codes made while the clock was an hour ahead (a wrong time put right since) do not count
 * towards the family's live codes: they kept it at the bound, and Retry-After at their expiry,
 * for 70 minutes where a code lives 10. They still pair until they expire. */
static void pairing_codes_of_a_clock_set_back(void **state)
{
	fixture *f = *state;
	const int64_t hour = 3600000;
	uint8_t h[5][STORE_HASH_LEN];
	for (int i = 0; i < 5; i++)
		hash_of("set back", i, h[i]);
	store_pairing got, p = pairing(&f->fam.id, STORE_ROLE_CHILD, "x", 1000 + hour, 5000 + hour);
	int64_t first = 0;
	assert_int_equal(store_pairing_create_bounded(f->s, h[0], &p, 2, &first), 0);
	assert_int_equal(store_pairing_create_bounded(f->s, h[1], &p, 2, &first), 0);
	/* The clock back at 1000: two made now (one by a thread 30 s ahead of another's clock:
	 * counted), the third refused until the first of those expires. */
	p = pairing(&f->fam.id, STORE_ROLE_CHILD, "x", 31000, 100000);
	assert_int_equal(store_pairing_create_bounded(f->s, h[2], &p, 2, &first), 0);
	p = pairing(&f->fam.id, STORE_ROLE_CHILD, "x", 1000, 5000);
	assert_int_equal(store_pairing_create_bounded(f->s, h[3], &p, 2, &first), 0);
	assert_int_equal(store_pairing_create_bounded(f->s, h[4], &p, 2, &first), STORE_ELIMIT);
	assert_int_equal(first, 5000);
	/* Those made ahead still pair. */
	assert_int_equal(store_pairing_consume(f->s, h[0], 2000, &got), 0);
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

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(device_add_personal_and_kiosk),
	    T(device_by_token_and_revoke),
	    T(a_familys_last_parent_phone_stays),
	    T(two_parents_revoking_each_other_keep_one),
	    T(kiosk_codes_go_with_their_tablet),
	    T(device_add_rejects_bad_input),
	    T(family_with_device_is_all_or_nothing),
	    T(family_signup_retried_by_key),
	    T(family_signup_once_under_a_race),
	    T(pairing_retried_by_key),
	    T(pairing_once_under_a_race),
	    T(devices_list_by_family),
	    T(device_touch_is_throttled),
	    T(device_malformed_ids),
	    T(pairing_consumed_once),
	    T(pairing_redeem_is_all_or_nothing),
	    T(pairing_expired_or_unknown),
	    T(pairing_for_a_kiosk),
	    T(pairing_create_rejects_bad_input),
	    T(pairing_expire_removes_only_expired),
	    T(pairing_live_codes_bounded),
	    T(pairing_hourly_bounded),
	    T(pairings_of_a_family_made_ahead),
	    T(pairing_codes_of_a_clock_set_back),
	    T(pairing_consumed_once_under_a_race),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
