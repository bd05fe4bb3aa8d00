/*
 * api_pairing.c — joining a family: pairing codes (for a new member's phone, or a member's new
 * one), given out by a parent or caregiver, and pairing a phone with one (POST /v1/pair), with
 * the locks that keep guessers out: every try counts on the loop before its job runs, per
 * client address and for everyone, and is given back unless the code was wrong.
 */
#include "api_internal.h"
#include "ratelimit.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- POST /v1/families/{family_id}/pairing-codes ---- */

/*
 * Live codes (unused, unexpired) a family may have at once. A family reads out one code at a
 * time and asks again when one is mistyped or lost, and a code used no longer counts: ten
 * leaves room for a gathering inviting several at the table. Without a bound, one token (an app
 * retrying in a loop, a stolen phone) made codes as fast as it asked (1,500 a second on one
 * connection to a sanitizer build), each a write to the directory every family shares and, for
 * its 10 minutes, one more code a guesser of POST /v1/pair may hit.
 */
#define PAIRING_LIVE_MAX 10

/*
 * Phones paired into a family in an hour (pairings-per-hour), new members' and members' new
 * ones alike. The bound on live codes did not bound pairing: a token asking for a code for a
 * member's new phone and pairing it, over and over, made about 200 rounds a second (each a
 * device row kept for the list and the audit, an audit record, the previous phone revoked: a
 * KiB more of the directory every family shares, without end). Counted where it is exact, in
 * the transaction that pairs (the family is known only from the code, on the pool), so that
 * phones paired at once get no more and a restart forgets nothing; a code asked for once the
 * family's hour is spent is refused too, before it is read out to anyone, and writes nothing.
 */
static void pairings_spent(srv_exchange *x, int64_t first_ms)
{
	char why[128];
	snprintf(why, sizeof why,
	         "%u phones were paired into this family in the last hour; try later",
	         x->srv->cfg.pairings_per_hour);
	api_respond_until(x, first_ms + STORE_PAIRING_HOUR_MS, "rate_limited", why);
}

static void code_create_work(api_job *j)
{
	if (!api_grown_up(j))
		return;
	store_member target;
	if (j->to[0]) { /* a new phone for a member: its role and name */
		j->rc = store_member_get(j->st, j->to, &target);
		if (j->rc == 0 && strcmp(target.family_id.s, j->device.family_id.s) != 0)
			j->rc = STORE_ENOTFOUND;
		if (j->rc == STORE_ENOTFOUND)
			j->rc = 3; /* not a member of this family */
		if (j->rc != 0)
			return;
		j->role = target.role;
		snprintf(j->member_name, sizeof j->member_name, "%s", target.name);
	}
	/* Only a parent makes a parent, or a parent's phone: one who may erase, export and set
	 * the family's rules. Nor does a caregiver become another caregiver: its new phone is a
	 * parent's to give (a caregiver's, a child's or its own). */
	if ((j->role == STORE_ROLE_PARENT && j->member.role != STORE_ROLE_PARENT) ||
	    (j->to[0] && j->member.role == STORE_ROLE_CAREGIVER &&
	     target.role == STORE_ROLE_CAREGIVER && strcmp(target.id.s, j->member.id.s) != 0)) {
		j->rc = 1;
		return;
	}
	/* A full family hears it now, not its new member at the door with the code (pairing
	 * checks again: codes given out before the family filled up). Full: 64 members, or 256
	 * rows with former members. */
	if (!(j->members = calloc(STORE_MEMBER_ROWS_MAX, sizeof *j->members))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	size_t rows = 0;
	if ((j->rc = store_members_all(j->st, j->device.family_id.s, j->members,
	                               STORE_MEMBER_ROWS_MAX, &rows)) < 0)
		return;
	while (j->nmembers < rows && !j->members[j->nmembers].removed_ms)
		j->nmembers++;
	if ((j->nmembers >= MEMBERS_MAX || rows >= STORE_MEMBER_ROWS_MAX) && !j->to[0]) {
		j->rc = STORE_ELIMIT;
		return;
	}
	int64_t now = api_now_ms();
	unsigned paired = 0;
	if ((j->rc = store_family_pairings(j->st, j->device.family_id.s, now, &paired,
	                                   &j->paired_first_ms)) < 0)
		return;
	if (paired >= j->pairings_max) { /* it could pair no phone before its hour is over */
		j->rc = 5;
		return;
	}
	store_pairing p;
	memset(&p, 0, sizeof p);
	memcpy(p.family_id.s, j->device.family_id.s, sizeof p.family_id.s);
	if (j->to[0])
		p.member_id = target.id;
	p.created_by = j->member.id; /* who goes takes its codes with it */
	p.created_by_device = j->device.id; /* and a phone revoked, those made on it */
	p.role = j->role;
	snprintf(p.member_name, sizeof p.member_name, "%s", j->member_name);
	p.created_ms = now;
	p.expires_ms = j->expires_ms = now + PAIRING_TTL_MS;
	/* 10^15 codes: a live code colliding with another is unlikely; then draw again. */
	for (int attempt = 0; attempt < 4; attempt++) {
		uint8_t h[STORE_HASH_LEN];
		api_new_code(j, h);
		j->rc =
		    store_pairing_create_bounded(j->st, h, &p, PAIRING_LIVE_MAX, &j->expires_ms);
		if (j->rc != STORE_EEXIST)
			break;
	}
	if (j->rc == STORE_ELIMIT) { /* j->expires_ms: when the first of them expires */
		j->rc = 4;
		return;
	}
	if (j->rc == STORE_ENOTFOUND && j->to[0]) { /* removed since it was looked up */
		j->rc = 3;
		return;
	}
	if (j->rc == 0 && j->to[0]) /* whose new phone: never the code */
		api_audit(j, now, "pairing.new_phone", p.family_id.s, j->to, NULL);
	else if (j->rc == 0) /* who let whom in, in what role: never the code */
		api_audit(j, now, "pairing.invite", p.family_id.s, store_role_name(j->role), NULL);
}

static void code_create_done(srv_exchange *x, api_job *j)
{
	if (api_too_many_members(x, j->rc))
		return;
	if (j->rc == 3) {
		srv_respond_error(x, 400, "invalid_member",
		                  "member_id: no such member in this family");
		return;
	}
	if (j->rc == 4) { /* until the first of the family's live codes expires */
		char why[96];
		snprintf(why, sizeof why,
		         "the family has %d codes waiting to be used: use one, or wait",
		         PAIRING_LIVE_MAX);
		api_respond_until(x, j->expires_ms, "too_many_pairing_codes", why);
		return;
	}
	if (j->rc == 5) {
		pairings_spent(x, j->paired_first_ms);
		return;
	}
	if (api_failed(x, j, "only a parent or caregiver can invite, and only a parent a parent"))
		return;
	json_t *o = json_pack("{s:s, s:I, s:s, s:s}", "code", j->token, "expires_at",
	                      (json_int_t)(j->expires_ms / 1000), "role", store_role_name(j->role),
	                      "member_name", j->member_name);
	if (o && j->to[0] && json_object_set_new(o, "member_id", json_string(j->to)) < 0)
		json_decref(o), o = NULL;
	api_respond_json(x, 201, o);
}

void srv_api_pairing_code_create(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	json_t *mid = json_object_get(body, "member_id");
	if (mid) { /* a new phone for a member: nothing else in the body */
		const char *id = json_string_value(mid);
		char to[sizeof((api_job *)NULL)->to];
		/* "" too: else the body fell through to an invitation without a role (400
		 * invalid_argument from storage, a code the docs do not list). */
		bool good = id && *id && json_object_size(body) == 1 && strlen(id) < sizeof to;
		if (good)
			snprintf(to, sizeof to, "%s", id);
		json_decref(body);
		if (!good) {
			srv_respond_error(x, 400, "invalid_member",
			                  "member_id: a member of this family, and nothing else");
			return;
		}
		api_job *j = api_authed_job(x, code_create_work, code_create_done);
		if (j) {
			memcpy(j->to, to, sizeof to);
			j->pairings_max = x->srv->cfg.pairings_per_hour;
			api_run(x, j);
		}
		return;
	}
	const char *member = api_name_field(body, "member_name", true);
	const char *role = json_string_value(json_object_get(body, "role"));
	/* Nothing else, as for a member added without a phone: an avatar (or a key misspelt)
	 * was dropped, 201, and the phone paired without what the parent chose. */
	size_t known = (json_object_get(body, "member_name") != NULL) +
	               (json_object_get(body, "role") != NULL);
	if (json_object_size(body) != known) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_setting",
		                  "send member_name and role (or member_id alone), nothing else");
		return;
	}
	store_role r;
	if (!role || store_role_parse(role, &r) < 0) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_role", "role is parent, caregiver or child");
		return;
	}
	if (!member) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_name", "member_name: 1-64 bytes of text");
		return;
	}
	api_job *j = api_authed_job(x, code_create_work, code_create_done);
	if (j) {
		j->role = r;
		snprintf(j->member_name, sizeof j->member_name, "%s", member);
		j->pairings_max = x->srv->cfg.pairings_per_hour;
	}
	json_decref(body);
	if (j)
		api_run(x, j);
}

/* ---- POST /v1/pair ---- */
static void pair_work(api_job *j)
{
	uint8_t h[STORE_HASH_LEN];
	srv_hash_pairing_code(j->secret, j->code, h);
	api_new_token(j);
	store_pairing p;
	int64_t now = api_now_ms();
	/* The family the answer names is read in the transaction that pairs: read after it, a
	 * failed read was answered 503 and left the phone's device (its token never told), the
	 * code used and a new member in the family (review finding). */
	if (!j->idem[0]) {
		j->paired = STORE_PAIR_MADE;
		j->rc = store_pairing_redeem_bounded(j->st, h, j->token_hash, j->device_name, now,
		                                     j->pairings_max, &j->paired_first_ms, &p,
		                                     &j->member, &j->device, &j->family);
	} else {
		/* Only the key's hash is stored, as a token's; the same key with the same code is
		 * the pairing made before, handed a new token (pair_done). */
		uint8_t key[STORE_HASH_LEN];
		crypto_hash_sha256(key, (const unsigned char *)j->idem, strlen(j->idem));
		j->rc = store_pairing_redeem_keyed(j->st, h, j->token_hash, j->device_name, key,
		                                   now, j->pairings_max, &j->paired_first_ms, &p,
		                                   &j->member, &j->device, &j->family, &j->paired);
		sodium_memzero(key, sizeof key);
	}
	j->phones_revoked = j->rc == 0 && j->paired == STORE_PAIR_MADE && p.member_id.s[0];
	if (j->rc < 0 || j->paired != STORE_PAIR_MADE) /* a retry let nobody in: no record */
		return;
	/* Who came in, on which phone, with whose code (never the code): the invitation's record
	 * names only a role, so without this the log named members and phones (their removal,
	 * their revocation) that nothing in it had let in. The actor is the member the phone is
	 * now; a member's new phone is told from a new member. */
	char detail[64];
	snprintf(detail, sizeof detail, "%s%s%s", p.member_id.s[0] ? "new_phone" : "new_member",
	         p.created_by.s[0] ? " from " : "", p.created_by.s);
	api_audit(j, now, "pairing.join", j->family.id.s, j->device.id.s, detail);
}

/* 429 pairing_locked with Retry-After: when the address's lock, or everyone's, is over (the
 * later of the two that are on). */
static void pairing_locked(srv_exchange *x)
{
	srv_server *s = x->srv;
	uint64_t now = uv_now(s->loop), mine = srv_rate_wait_ms(&s->pair_fail, x->client, now),
	         all = srv_rate_wait_ms(&s->pair_fail_all, "*", now);
	api_respond_wait(x, mine > all ? mine : all, "pairing_locked",
	                 "too many wrong codes; pairing is locked for a while");
}

bool api_pairing_locked(srv_exchange *x)
{
	srv_server *s = x->srv;
	uint64_t now = uv_now(s->loop);
	if (!srv_rate_exhausted(&s->pair_fail, x->client, now) &&
	    !srv_rate_exhausted(&s->pair_fail_all, "*", now))
		return false;
	pairing_locked(x);
	return true;
}

/*
 * Counted before the code is checked: checked afterwards on the pool, the count came too late
 * for the attempts already in flight (review finding: 300 wrong codes sent at once from one
 * address got 64 answers 400, the rest 503, and no 429).
 */
bool api_pairing_take(srv_exchange *x, api_job *j)
{
	srv_server *s = x->srv;
	if (api_attempt_take(s, j, &s->pair_fail, x->client, &s->pair_fail_all, "*"))
		return true;
	pairing_locked(x);
	return false;
}

void api_pairing_code_wrong(srv_exchange *x, api_job *j)
{
	j->attempt.counted = false; /* it was an attempt: it stays counted */
	srv_respond_error(x, 400, "invalid_pairing_code", "the code is wrong, used or expired");
}

/*
 * Damm's check digit: it tells every single wrong digit and every swap of two neighbours, the
 * typos of a code read out over the phone and typed. It tells an attacker
 * nothing: anyone can compute it, so it costs a tenth of the codes, and a code failing it is
 * answered before any lookup.
 */
static const unsigned char damm[10][10] = {
    {0, 3, 1, 7, 5, 9, 8, 6, 4, 2}, /* 0 */
    {7, 0, 9, 2, 1, 5, 4, 8, 6, 3}, /* 1 */
    {4, 2, 0, 6, 8, 7, 1, 3, 5, 9}, /* 2 */
    {1, 7, 5, 0, 9, 8, 3, 4, 2, 6}, /* 3 */
    {6, 1, 2, 3, 0, 4, 5, 9, 7, 8}, /* 4 */
    {3, 6, 7, 4, 2, 0, 9, 5, 8, 1}, /* 5 */
    {5, 8, 6, 9, 7, 2, 0, 1, 3, 4}, /* 6 */
    {8, 9, 4, 5, 3, 6, 2, 0, 1, 7}, /* 7 */
    {9, 4, 3, 8, 6, 1, 7, 2, 0, 5}, /* 8 */
    {2, 5, 8, 1, 4, 3, 6, 7, 9, 0}, /* 9 */
};

static unsigned damm_check(const char *digits, size_t n)
{
	unsigned c = 0;
	for (size_t i = 0; i < n; i++)
		c = damm[c][digits[i] - '0'];
	return c;
}

int api_pairing_code_parse(srv_exchange *x, const char *code, char *digits)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)code; p && *p; p++) {
		char d = (char)*p;
		/* A Chinese keyboard in its full-width mode types U+FF10-FF19 for the digits,
		 * U+3000 for a space and U+FF0D for a hyphen (UTF-8 EF BC 90-99, E3 80 80, EF BC
		 * 8D). */
		if (p[0] == 0xef && p[1] == 0xbc &&
		    ((p[2] >= 0x90 && p[2] <= 0x99) || p[2] == 0x8d)) {
			d = p[2] == 0x8d ? '-' : (char)('0' + p[2] - 0x90);
			p += 2;
		} else if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) {
			d = ' ';
			p += 2;
		}
		if (d == ' ' || d == '-')
			continue;
		if (d < '0' || d > '9' || n == PAIRING_DIGITS)
			return -1;
		digits[n++] = d;
	}
	digits[n] = '\0';
	if (n == PAIRING_DIGITS_OLD && uv_now(x->srv->loop) - x->srv->started_ms < PAIRING_TTL_MS)
		return 0;
	if (n != PAIRING_DIGITS)
		return -1;
	return damm_check(digits, n) == 0 ? 0 : -2;
}

void api_pairing_code_refuse(srv_exchange *x, int rc)
{
	if (rc == -2)
		srv_respond_error(x, 400, "mistyped_pairing_code",
		                  "a digit of the code is wrong, or two are swapped: check it");
	else
		srv_respond_error(x, 400, "invalid_pairing_code",
		                  "a code is 16 digits (spaces and hyphens are left out)");
}

void api_new_code(api_job *j, uint8_t hash[STORE_HASH_LEN])
{
	/* 15 random digits, five at a draw (randombytes_uniform stops short of 2^32), and the
	 * digit that checks them. */
	for (int i = 0; i < 3; i++)
		snprintf(j->token + 5 * i, 6, "%05u", (unsigned)randombytes_uniform(100000));
	j->token[PAIRING_DIGITS - 1] = (char)('0' + damm_check(j->token, PAIRING_DIGITS - 1));
	j->token[PAIRING_DIGITS] = '\0';
	srv_hash_pairing_code(j->secret, j->token, hash);
}

static void pair_done(srv_exchange *x, api_job *j)
{
	if (j->phones_revoked) /* a long-poll the old phone has waiting hears 401 now */
		api_mailbox_changed(x->srv, j->family.id.s);
	if (j->rc == STORE_ENOTFOUND) {
		/* A wrong, used or expired code: it counts towards the locks. */
		api_pairing_code_wrong(x, j);
		return;
	}
	if (j->rc == STORE_ELIMIT && j->paired_first_ms) { /* a right code, given back too */
		pairings_spent(x, j->paired_first_ms);
		return;
	}
	if (api_too_many_members(x, j->rc)) /* a right code: given back by api_job_done */
		return;
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	/* A keyed retry is no wrong try: its attempt is given back when the job ends, as a
	 * pairing's is. */
	switch (j->paired) {
	case STORE_PAIR_DONE:
		srv_respond_error(x, 409, "already_paired",
		                  "this Idempotency-Key's pairing is done: its phone has used its "
		                  "token or was revoked, or its code has expired");
		return;
	case STORE_PAIR_OTHER:
		srv_respond_error(
		    x, 422, "idempotency_key_reused",
		    "this Idempotency-Key was sent with another request: send a new key");
		return;
	case STORE_PAIR_AGAIN:
		api_respond_device(x, j, 200);
		return;
	case STORE_PAIR_MADE:
		break;
	}
	api_respond_new_device(x, j);
}

void srv_api_pair(srv_exchange *x)
{
	if (api_pairing_locked(x))
		return;
	const srv_slice *key;
	if (!api_token_key_header(x, &key))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	const char *code = json_string_value(json_object_get(body, "code"));
	const char *device = api_name_field(body, "device_name", false);
	char digits[PAIRING_CODE_MAX];
	int form = api_pairing_code_parse(x, code, digits);
	if (form < 0 || !device) {
		json_decref(body);
		if (form < 0)
			api_pairing_code_refuse(x, form);
		else
			srv_respond_error(x, 400, "invalid_name",
			                  "device_name: 1-64 bytes of text");
		return;
	}
	api_job *j = calloc(1, sizeof *j);
	if (!j) {
		json_decref(body);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	j->work = pair_work;
	j->done = pair_done;
	j->pairings_max = x->srv->cfg.pairings_per_hour;
	snprintf(j->device_name, sizeof j->device_name, "%s", *device ? device : "phone");
	snprintf(j->code, sizeof j->code, "%s", digits);
	if (key)
		snprintf(j->idem, sizeof j->idem, "%.*s", (int)key->len, key->ptr);
	json_decref(body);
	if (!api_pairing_take(x, j)) {
		api_job_free(j);
		return;
	}
	api_run(x, j);
}
