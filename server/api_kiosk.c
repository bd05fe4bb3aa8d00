/*
 * api_kiosk.c — school kiosks: a shared tablet at a boarding school that many children of many
 * families use, one at a time.
 *
 * An administrator registers the kiosk (jiayinctl), which gives it a device token. The kiosk
 * shows a pairing code; a parent types it on their phone with which child and a 4-picture PIN,
 * which links the child to the kiosk. On the kiosk the child taps their picture and their four
 * pictures: a right PIN opens a session whose token speaks for the child like a phone of
 * theirs would (the v1 API as is), until it is idle for kiosk-idle-s, a login is tried on the
 * tablet (the next child's, right pictures or not), the child logs in on another tablet, or
 * the kiosk ends it. The kiosk's own token sees no family at all: only its list of children.
 *
 * The PIN is stored as Argon2id (libsodium's crypto_pwhash_str) of a keyed hash of the member
 * and the pictures, so a copy of the database alone cannot test the 12^4 PINs; pin-failures
 * wrong PINs in a row lock that child's login for pin-lock-s, and pin-failures-kiosk in an hour
 * all the kiosk's logins, on every tablet of it: both kept in the database.
 */
#include "api_internal.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIN_LENGTH 4
#define PIN_PICTURES 12
/* Argon2id's cost per PIN check: OWASP's minimum (19 MiB, 2 passes), ~40 ms on one core. */
#define PIN_OPSLIMIT 2
#define PIN_MEMLIMIT (19u << 20)

/* The keyed input Argon2id hashes: the member id and the pictures, under the server's key. */
static void pin_input(const api_job *j, const char *member_id, const int pin[PIN_LENGTH],
		      uint8_t out[crypto_auth_hmacsha256_BYTES])
{
	char text[80];
	int n = snprintf(text, sizeof text, "kiosk-pin\n%.26s\n%d,%d,%d,%d", member_id, pin[0],
			 pin[1], pin[2], pin[3]);
	crypto_auth_hmacsha256(out, (const unsigned char *)text, (unsigned long long)n, j->secret);
	sodium_memzero(text, sizeof text);
}

static int pin_hash(const api_job *j, const char *member_id, char out[STORE_PIN_HASH_MAX + 1])
{
	uint8_t in[crypto_auth_hmacsha256_BYTES];
	char h[crypto_pwhash_STRBYTES];
	pin_input(j, member_id, j->pin, in);
	int rc = crypto_pwhash_str_alg(h, (const char *)in, sizeof in, PIN_OPSLIMIT, PIN_MEMLIMIT,
				       crypto_pwhash_ALG_ARGON2ID13);
	sodium_memzero(in, sizeof in);
	if (rc != 0 || strlen(h) > STORE_PIN_HASH_MAX)
		return STORE_ENOMEM; /* Argon2 could not get its memory */
	snprintf(out, STORE_PIN_HASH_MAX + 1, "%s", h);
	return 0;
}

/* 1: the PIN is right; 0: it is not; -1: Argon2 could not run (no memory). */
static int pin_matches(const api_job *j, const store_kiosk_link *l)
{
	uint8_t in[crypto_auth_hmacsha256_BYTES];
	pin_input(j, l->member_id.s, j->pin, in);
	errno = 0;
	int rc = crypto_pwhash_str_verify(l->pin_hash, (const char *)in, sizeof in);
	int err = errno;
	sodium_memzero(in, sizeof in);
	if (rc == 0)
		return 1;
	return err == EINVAL ? 0 : -1; /* libsodium: EINVAL is a mismatch */
}

/* "pin": [four whole numbers 0-11]; false if absent or otherwise. */
static bool pin_field(json_t *body, int pin[PIN_LENGTH])
{
	json_t *a = json_object_get(body, "pin");
	if (!json_is_array(a) || json_array_size(a) != PIN_LENGTH)
		return false;
	for (size_t i = 0; i < PIN_LENGTH; i++) {
		json_t *v = json_array_get(a, i);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= PIN_PICTURES)
			return false;
		pin[i] = (int)json_integer_value(v);
	}
	return true;
}

static void bad_pin(srv_exchange *x)
{
	srv_respond_error(x, 400, "invalid_pin", "pin: 4 pictures, each a number 0-11");
}

/* A lock that ends at end_ms as the screen shows it: null once over, else the second it is
 * over by, rounded up as Retry-After is: rounded down, it named a second still locked (a
 * tablet that let the child try then was told 429 pin_locked, Retry-After: 1). */
static json_t *lock_end_json(int64_t end_ms, int64_t now_ms)
{
	return end_ms > now_ms ? json_integer((end_ms + 999) / 1000) : json_null();
}

/* A child's lock as the screen shows it, as a login would find it (one set by a clock set back
 * since is over: store_kiosk_lock_end). */
static json_t *locked_until(const srv_server *s, const store_kiosk_link *l, int64_t now_ms)
{
	return lock_end_json(
	    store_kiosk_lock_end(l, now_ms, s->cfg.pin_failures, (int64_t)s->cfg.pin_lock_s * 1000),
	    now_ms);
}

static json_t *link_json(const srv_server *s, const store_kiosk_link *l, int64_t now_ms)
{
	json_t *locked = locked_until(s, l, now_ms);
	json_t *by = l->pin_set_by.s[0] ? json_string(l->pin_set_by.s) : json_null();
	return json_pack("{s:s, s:{s:s, s:s}, s:s, s:s, s:s, s:b, s:o, s:o, s:I}", "id", l->id.s,
	                 "kiosk", "id", l->kiosk_id.s, "name", l->kiosk_name, "school",
	                 l->school_name, "member_id", l->member_id.s, "member_name", l->member_name,
	                 "pin_set", l->pin_hash[0] != '\0', "pin_set_by", by, "locked_until",
	                 locked, "created_at", (json_int_t)(l->created_ms / 1000));
}

/* The caller is the kiosk itself (its own token), or it is 403. */
static bool kiosk_caller(api_job *j)
{
	if (j->device.kind == STORE_DEVICE_KIOSK && !j->session)
		return true;
	j->rc = 1;
	return false;
}

static api_job *kiosk_job(srv_exchange *x, api_work_fn work, api_done_fn done)
{
	api_job *j = api_authed_job(x, work, done);
	if (j)
		j->kiosk_endpoint = true;
	return j;
}

static const char only_kiosk[] = "only a school kiosk's own token can do this";

/* ---- POST /v1/kiosk/pairing-codes: the code the kiosk shows a parent ---- */

/*
 * Codes a kiosk may have at once, neither used nor expired: a tablet shows one at a time, a
 * kiosk has a few tablets, and a used code no longer counts. Without a bound its token (a
 * tablet's app asking in a loop, a token copied off a tablet) made codes as fast as it asked,
 * 700 a second, each a write to the directory every family shares and, for its 10 minutes,
 * one more code a guesser of kiosk-links may hit. As a family's phone codes (api_pairing.c).
 */
#define KIOSK_CODES_LIVE_MAX 10
enum { CODES_SPENT = 2 };

static void code_work(api_job *j)
{
	if (!kiosk_caller(j))
		return;
	int64_t now = api_now_ms();
	j->expires_ms = now + PAIRING_TTL_MS;
	for (int attempt = 0; attempt < 4; attempt++) {
		uint8_t h[STORE_HASH_LEN];
		api_new_code(j, h);
		j->rc = store_kiosk_code_create_bounded(j->st, h, j->device.kiosk_id.s,
		                                        j->device.id.s, now, j->expires_ms,
		                                        KIOSK_CODES_LIVE_MAX, &j->expires_ms);
		if (j->rc != STORE_EEXIST)
			break;
	}
	if (j->rc == STORE_ENOTFOUND) /* the tablet revoked since its token was checked: 401 */
		j->auth_rc = j->rc;
	if (j->rc == STORE_ELIMIT) /* j->expires_ms: when the first of them expires */
		j->rc = CODES_SPENT;
}

static void code_done(srv_exchange *x, api_job *j)
{
	if (j->rc == CODES_SPENT) {
		char why[96];
		snprintf(why, sizeof why,
		         "the kiosk has %d codes waiting to be used: use one, or wait",
		         KIOSK_CODES_LIVE_MAX);
		api_respond_until(x, j->expires_ms, "too_many_pairing_codes", why);
		return;
	}
	if (api_failed(x, j, only_kiosk))
		return;
	api_respond_json(x, 201, json_pack("{s:s, s:I}", "code", j->token, "expires_at",
					   (json_int_t)(j->expires_ms / 1000)));
}

void srv_api_kiosk_code_create(srv_exchange *x)
{
	api_job *j = kiosk_job(x, code_work, code_done);
	if (j)
		api_run(x, j);
}

/* ---- GET /v1/kiosk/children: the pictures on the kiosk's first screen ---- */
static void children_work(api_job *j)
{
	if (!kiosk_caller(j))
		return;
	store_kiosk k;
	if ((j->rc = store_kiosk_get(j->st, j->device.kiosk_id.s, &k)) < 0)
		return;
	snprintf(j->family_name, sizeof j->family_name, "%s", k.name);
	/* The kiosk's lock too: its children's pictures looked open while every login on it was
	 * 429 (a child typed their pictures to be told to wait). */
	if ((j->rc = store_kiosk_pins_lock_end(j->st, k.id.s, api_now_ms(), j->pin_failures_kiosk,
	                                       STORE_KIOSK_PIN_WINDOW_MS, &j->expires_ms)) < 0)
		return;
	/* All of them: a boarding school's kiosk may list well over a thousand (review finding:
	 * the screen stopped at 1,000 without a word, and those named last never found themselves
	 * on it). */
	j->rc = store_kiosk_links_of_kiosk_all(j->st, j->device.kiosk_id.s, &j->links, &j->nlinks);
}

static void children_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, only_kiosk))
		return;
	int64_t now = api_now_ms();
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < j->nlinks; i++) {
		const store_kiosk_link *l = &j->links[i];
		/* Only what the screen needs: no family, no member id before the PIN. */
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:b, s:o}", "id", l->id.s,
		                                     "name", l->member_name, "avatar", l->avatar,
		                                     "pin_set", l->pin_hash[0] != '\0',
		                                     "locked_until", locked_until(x->srv, l, now)));
	}
	json_t *locked = lock_end_json(j->expires_ms, now);
	api_respond_json(x, 200,
	                 arr ? json_pack("{s:{s:s, s:s, s:o}, s:o, s:i, s:i}", "kiosk", "id",
	                                 j->device.kiosk_id.s, "name", j->family_name,
	                                 "locked_until", locked, "children", arr, "pin_length",
	                                 PIN_LENGTH, "pin_pictures", PIN_PICTURES)
	                     : (json_decref(locked), NULL));
}

void srv_api_kiosk_children(srv_exchange *x)
{
	api_job *j = kiosk_job(x, children_work, children_done);
	if (j) {
		j->pin_failures_kiosk = x->srv->cfg.pin_failures_kiosk;
		api_run(x, j);
	}
}

/* ---- POST /v1/kiosk/sessions: a child logs in with their pictures ---- */
enum {
	LOGIN_WRONG_PIN = 2,
	LOGIN_LOCKED = 3,
	LOGIN_NO_PIN = 4,
	LOGIN_BAD_PIN = 5,
	LOGIN_KIOSK_LOCKED = 6
};

/*
 * A login attempt of the kiosk's own token: the tablet is at its login screen, so the session
 * open on it is over, whatever the attempt's outcome (a wrong PIN, a lock, a malformed PIN, a
 * child not found). Only a right PIN ended it, so the child who walked away without the home
 * button left their family's voices on the tablet, on the long-poll too, for the next child
 * who tapped a picture and typed wrong pictures, until kiosk-idle-s. This device's only: the
 * kiosk's other tablets are not at this screen. False (j->rc set) if the caller is not the
 * kiosk, or its sessions could not be ended (503: not a PIN checked with one still open).
 */
static bool at_login_screen(api_job *j)
{
	if (!kiosk_caller(j))
		return false;
	if ((j->rc = store_kiosk_sessions_end(j->st, j->device.id.s)) < 0)
		return false;
	j->session_started = true; /* its long-polls hear 401 now (login_done) */
	return true;
}

/* A login refused before its PIN is looked at (malformed): the session ends all the same, and
 * no PIN is checked or counted. */
static void bad_pin_work(api_job *j)
{
	if (at_login_screen(j))
		j->rc = LOGIN_BAD_PIN;
}

/*
 * An attempt counted at now whose PIN was not checked, or whose session did not start, for a
 * reason not the child's (503): given back, so that a child with the right pictures whose
 * logins met a busy or failing store pin-failures times is not locked out for it, nor the
 * kiosk's hour spent (the review). Best effort: a store that failed may fail this too.
 */
static void give_back(api_job *j, const store_kiosk_link *l, int64_t now)
{
	(void)store_kiosk_pin_attempt_give_back(j->st, l->id.s, l->pin_hash, now, j->pin_failures,
	                                        j->pin_lock_ms);
}

/*
 * A kiosk's wrong PINs, all its children together (pin-failures-kiosk an hour): each child's
 * own lock lets a few dozen tries a week through, which over a kiosk's hundreds of children
 * (its first screen lists them all) added up to a PIN found every week or so, and another
 * family's voices (the review: 55 wrong PINs over 11 children in 0.8 s, and the 12th child's
 * login untouched). The kiosk's, not its tablet's: counted by its token's hash, before the
 * job had learned its kiosk, a kiosk of N tablets had N times the tries (the review: tablet 2
 * answered 201 while tablet 1 was locked). So the store counts it with the child's attempt,
 * in one transaction (store_kiosk_pin_attempt_bounded), before the PIN is checked: logins at
 * once from all its tablets check no more, a locked child's attempt is none, a revoked
 * tablet's stay the kiosk's, and a restart keeps them. A right PIN's is given back
 * (store_kiosk_session_start).
 */
static void login_work(api_job *j)
{
	if (!at_login_screen(j))
		return;
	store_kiosk_link *l = j->links = calloc(1, sizeof *j->links);
	if (!l) {
		j->rc = STORE_ENOMEM;
		return;
	}
	if ((j->rc = store_kiosk_link_get(j->st, j->to, l)) < 0)
		return;
	if (strcmp(l->kiosk_id.s, j->device.kiosk_id.s) != 0) {
		j->rc = STORE_ENOTFOUND; /* a child of another kiosk: as if unknown */
		return;
	}
	if (!l->pin_hash[0]) {
		j->rc = LOGIN_NO_PIN; /* its chooser left the family: nothing to check, nor count */
		return;
	}
	int64_t now = api_now_ms();
	/* The attempt is counted before the PIN is checked, so logins racing each other cannot
	 * check more PINs than the locks allow; while the child or the kiosk is locked, not even a
	 * right PIN is checked. */
	int allowed;
	j->rc = store_kiosk_pin_attempt_bounded(
	    j->st, l->id.s, now, j->pin_failures, j->pin_lock_ms, j->pin_failures_kiosk,
	    STORE_KIOSK_PIN_WINDOW_MS, l, &allowed, &j->expires_ms);
	if (j->rc == STORE_ELIMIT) { /* j->expires_ms: when the kiosk's hour is over */
		j->rc = LOGIN_KIOSK_LOCKED;
		return;
	}
	if (j->rc < 0)
		return;
	if (!l->pin_hash[0]) {
		/* Withdrawn since the first read (the review: 403 wrong_pin); nothing counted. */
		j->rc = LOGIN_NO_PIN;
		return;
	}
	if (!allowed) {
		j->rc = LOGIN_LOCKED;
		return;
	}
	int match = pin_matches(j, l);
	if (match < 0) {
		j->rc = STORE_ENOMEM; /* Argon2 found no memory: 503, and not the child's fault */
		give_back(j, l, now);
		return;
	}
	if (!match) {
		/* Wrong pictures that spend the kiosk's hour are answered as the lock they start,
		 * as the child's own last try is (they were 403 with attempts_left, and the next
		 * child at the kiosk met the lock unwarned); j->expires_ms: the hour's end. */
		j->rc = j->expires_ms              ? LOGIN_KIOSK_LOCKED
		        : l->locked_until_ms > now ? LOGIN_LOCKED
		                                   : LOGIN_WRONG_PIN;
		return;
	}
	uint8_t raw[SRV_TOKEN_BYTES];
	randombytes_buf(raw, sizeof raw);
	sodium_bin2base64(j->token, sizeof j->token, raw, sizeof raw,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
	crypto_hash_sha256(j->token_hash, (const unsigned char *)j->token, strlen(j->token));
	/* Only with the PIN just checked: a new one since makes this a wrong PIN. The child and
	 * family the answer names are read in the transaction that starts the session: read after
	 * it, a failed read was answered 503 and left a session whose token nobody was told, the
	 * child's sessions on other tablets ended (review finding). */
	j->rc = store_kiosk_session_start(j->st, j->token_hash, j->device.id.s, l->id.s,
	                                  l->pin_hash, now, &j->member, &j->family);
	if (j->rc == STORE_ECHANGED) {
		j->rc = LOGIN_WRONG_PIN; /* the PIN was changed meanwhile */
	} else if (j->rc == STORE_ENOTFOUND) {
		/* The tablet revoked while the PIN was checked: 401, as its next request would be
		 * (it was 201 with a session nothing could use); else the child's link is gone:
		 * 404. The attempt stays counted, as a revoked tablet's do. */
		store_device d;
		int r = store_device_get(j->st, j->device.id.s, &d);
		if (r == STORE_ENOTFOUND || (r == 0 && d.revoked_ms))
			j->auth_rc = STORE_ENOTFOUND;
		else if (r < 0)
			j->rc = r;
	} else if (j->rc < 0) {
		give_back(j, l, now); /* a right PIN the store could not open a session for */
	}
	if (j->rc != 0)
		sodium_memzero(j->token, sizeof j->token); /* no session: login_done wakes none */
}

static void login_done(srv_exchange *x, api_job *j)
{
	/* The previous child's session ended: its long-poll hears 401 now, not when its wait is
	 * over (the tablet showed that child's screen meanwhile, to the next child); whatever
	 * this login's outcome (at_login_screen), a 503 included. */
	if (j->session_started)
		api_kiosk_sessions_ended(x->srv, j->device.id.s);
	/* A session started (a token made and kept): the child's sessions on other tablets ended
	 * with it (store_kiosk_session_start), and their long-polls hear 401 now, not when their
	 * wait is over (the first tablet showed the family to whoever came to it). Which devices
	 * those were the store does not say: the child's family's waiters list again, theirs
	 * among them, as for a new PIN (link_done). */
	if (j->token[0])
		api_mailbox_changed(x->srv, j->links->family_id.s);
	if (j->rc == LOGIN_BAD_PIN) {
		bad_pin(x);
		return;
	}
	if (j->rc == LOGIN_KIOSK_LOCKED) {
		/* When its hour is over (it said 900 whatever was left of the hour: a child told to
		 * come back in 15 minutes met the lock again, up to 45 minutes more, and one near
		 * its end waited for nothing), or the child's own lock, if that ends later. */
		int64_t until = j->expires_ms;
		int64_t own =
		    store_kiosk_lock_end(j->links, api_now_ms(), j->pin_failures, j->pin_lock_ms);
		api_respond_until(x, own > until ? own : until, "pin_locked",
		                  "too many wrong pictures on this kiosk: ask a grown-up, or wait");
		return;
	}
	if (j->rc == LOGIN_LOCKED) {
		api_respond_until(x, j->links->locked_until_ms, "pin_locked",
		                  "too many wrong pictures: ask a grown-up, or wait");
		return;
	}
	if (j->rc == LOGIN_NO_PIN) {
		srv_respond_error(x, 409, "pin_not_set",
		                  "these pictures are no more: ask a grown-up to choose new ones");
		return;
	}
	if (j->rc == LOGIN_WRONG_PIN) {
		/* The count runs on through the locks: what is left before the next one. */
		unsigned left = j->pin_failures - (unsigned)(j->links->failures % j->pin_failures);
		json_t *e = json_pack("{s:{s:s, s:s, s:i}}", "error", "code", "wrong_pin", "message",
				      "those are not the right pictures", "attempts_left", (int)left);
		api_respond_json(x, 403, e);
		return;
	}
	if (api_failed(x, j, only_kiosk))
		return;
	api_respond_json(x, 201, json_pack("{s:s, s:o, s:o, s:i}", "token", j->token, "member",
					   api_member_json(&j->member), "family",
					   api_family_json(&j->family), "idle_s",
					   (int)x->srv->cfg.kiosk_idle_s));
}

void srv_api_kiosk_login(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	const char *child = json_string_value(json_object_get(body, "child"));
	int pin[PIN_LENGTH];
	bool pin_ok = pin_field(body, pin);
	if (!child)
		child = ""; /* answered 404 like an unknown child, after authentication */
	/* Every login has a job, refused ones too: the kiosk's token is authenticated, and its
	 * open session ended (at_login_screen), before any of them is answered. A malformed one
	 * neither checks nor counts a PIN, and its job gets none. */
	api_job *j = kiosk_job(x, pin_ok ? login_work : bad_pin_work, login_done);
	if (j && pin_ok) {
		snprintf(j->to, sizeof j->to, "%.*s", STORE_ID_LEN + 1, child);
		memcpy(j->pin, pin, sizeof pin);
		j->pin_failures = x->srv->cfg.pin_failures;
		j->pin_lock_ms = (int64_t)x->srv->cfg.pin_lock_s * 1000;
		j->pin_failures_kiosk = x->srv->cfg.pin_failures_kiosk;
	}
	json_decref(body);
	sodium_memzero(pin, sizeof pin);
	if (j)
		api_run(x, j);
}

/* ---- DELETE /v1/kiosk/session: the child's session ends ---- */
static void logout_work(api_job *j)
{
	if (j->session) {
		j->rc = store_kiosk_session_end(j->st, j->token_hash);
		/* Ended since its token was checked (a second tap of the button, the next child's
		 * login on the tablet, the child's on another): over, as asked, not 404. */
		if (j->rc == STORE_ENOTFOUND)
			j->rc = 0;
	} else if (kiosk_caller(j)) {
		j->rc = store_kiosk_sessions_end(j->st, j->device.id.s);
	}
}

static void logout_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, "a kiosk or a child's session ends sessions"))
		return;
	/* As a login: their long-polls hear 401 now */
	api_kiosk_sessions_ended(x->srv, j->device.id.s);
	srv_respond_head(x, 204, NULL, NULL, -1);
}

void srv_api_kiosk_logout(srv_exchange *x)
{
	/* With the session's token: that session; with the kiosk's: whichever is open on it. */
	api_job *j = kiosk_job(x, logout_work, logout_done);
	if (j)
		api_run(x, j);
}

/* ---- a family's kiosk links: /v1/families/{family_id}/kiosk-links ---- */
static void link_create_work(api_job *j)
{
	if (!api_grown_up(j))
		return;
	store_member child;
	j->rc = store_member_get(j->st, j->to, &child);
	if (j->rc == STORE_ENOTFOUND || (j->rc == 0 && (strcmp(child.family_id.s, j->param[0]) != 0 ||
						       child.role != STORE_ROLE_CHILD))) {
		j->rc = 2; /* not a child of this family */
		return;
	}
	if (j->rc < 0)
		return;
	/* The code before the PIN's hash: a wrong code costs a lookup, not Argon2's 19 MiB and
	 * ~40 ms (review finding). The redeem below checks it again, using it. */
	uint8_t h[STORE_HASH_LEN];
	srv_hash_pairing_code(j->secret, j->code, h);
	if ((j->rc = store_kiosk_code_check(j->st, h, api_now_ms())) == STORE_ENOTFOUND) {
		j->rc = 3;
		return;
	}
	if (j->rc < 0)
		return;
	char hash[STORE_PIN_HASH_MAX + 1];
	if ((j->rc = pin_hash(j, child.id.s, hash)) < 0)
		return;
	if (!(j->links = calloc(1, sizeof *j->links))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	j->rc = store_kiosk_link_redeem(j->st, h, child.id.s, hash, j->member.id.s, api_now_ms(),
	                                j->links);
	if (j->rc == STORE_ENOTFOUND) /* the code (wrong, used, expired), or the child just left */
		j->rc = store_member_get(j->st, child.id.s, &child) == STORE_ENOTFOUND ? 2 : 3;
	if (j->rc == 0)
		api_audit(j, api_now_ms(), "kiosk.link", j->param[0], j->links->id.s,
		          j->links->kiosk_id.s);
}

static void link_done(srv_exchange *x, api_job *j)
{
	if (j->rc == 2) {
		srv_respond_error(x, 400, "invalid_member", "member_id: a child of this family");
		return;
	}
	if (j->rc == 3) {
		api_pairing_code_wrong(x, j); /* counts towards the pairing locks */
		return;
	}
	if (api_failed(x, j, "only a parent or caregiver can do this"))
		return;
	/* The sessions it ended hear 401 now, on a long-poll too, not when their wait is over */
	api_mailbox_changed(x->srv, j->param[0]);
	api_respond_json(x, j->code[0] ? 201 : 200,
	                 json_pack("{s:o}", "link", link_json(x->srv, j->links, api_now_ms())));
}

void srv_api_kiosk_link_create(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	if (api_pairing_locked(x))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	const char *code = json_string_value(json_object_get(body, "code"));
	const char *member = json_string_value(json_object_get(body, "member_id"));
	int pin[PIN_LENGTH];
	char digits[PAIRING_CODE_MAX];
	int form = api_pairing_code_parse(x, code, digits);
	const char *err = form < 0                                ? "invalid_pairing_code"
	                  : !member || store_id_check(member) < 0 ? "invalid_member"
	                  : !pin_field(body, pin)                 ? "invalid_pin"
	                                                          : NULL;
	api_job *j = err ? NULL : api_authed_job(x, link_create_work, link_done);
	if (j) {
		snprintf(j->code, sizeof j->code, "%s", digits);
		snprintf(j->to, sizeof j->to, "%s", member);
		memcpy(j->pin, pin, sizeof pin);
	}
	json_decref(body);
	sodium_memzero(pin, sizeof pin);
	if (form < 0)
		api_pairing_code_refuse(x, form);
	else if (err)
		srv_respond_error(x, 400, err,
		                  strcmp(err, "invalid_pin") == 0
		                      ? "pin: 4 pictures, each 0-11"
		                      : "member_id: a child of this family");
	else if (j && !api_pairing_take(x, j)) /* counted now, given back unless wrong */
		api_job_free(j);
	else if (j)
		api_run(x, j);
}

/* All of them: a family has up to members times kiosks links, not MEMBERS_MAX (review
 * finding: the list stopped at 64 without a word). */
static void links_work(api_job *j)
{
	if (!api_own_family(j))
		return;
	j->rc = store_kiosk_links_of_family_all(j->st, j->param[0], &j->links, &j->nlinks);
}

static void links_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, "not yours"))
		return;
	int64_t now = api_now_ms();
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < j->nlinks; i++)
		json_array_append_new(arr, link_json(x->srv, &j->links[i], now));
	api_respond_json(x, 200, arr ? json_pack("{s:o}", "links", arr) : NULL);
}

void srv_api_kiosk_links_list(srv_exchange *x)
{
	api_start(x, links_work, links_done);
}

/* The path's link, if it is of a child of the caller's family. */
static bool own_link(api_job *j)
{
	if (!api_grown_up(j))
		return false;
	if (!(j->links = calloc(1, sizeof *j->links))) {
		j->rc = STORE_ENOMEM;
		return false;
	}
	j->rc = store_kiosk_link_get(j->st, j->param[1], j->links);
	if (j->rc == 0 && strcmp(j->links->family_id.s, j->param[0]) != 0)
		j->rc = STORE_ENOTFOUND;
	return j->rc == 0;
}

enum { PIN_SETS_SPENT = 4 };

static void pin_work(api_job *j)
{
	char hash[STORE_PIN_HASH_MAX + 1];
	if (!own_link(j))
		return;
	if (j->pin_sets_spent) { /* told only to whom it would have set the PIN */
		j->rc = PIN_SETS_SPENT;
		return;
	}
	j->attempt.counted = false; /* a grown-up's, its Argon2 spent: it stays counted */
	if ((j->rc = pin_hash(j, j->links->member_id.s, hash)) < 0)
		return;
	/* The link the answer shows is read in the transaction that sets the PIN: read after it,
	 * a failed read was answered 503 with the PIN changed, the child logged out and nothing
	 * audited (review finding). */
	store_id id = j->links->id;
	if ((j->rc = store_kiosk_link_set_pin(j->st, id.s, hash, j->member.id.s, j->links)) == 0)
		api_audit(j, api_now_ms(), "kiosk.pin", j->param[0], j->links->id.s, NULL);
}

/* The family's count of new PINs: the path's family, whoever asks. */
static void pin_sets_key(const srv_exchange *x, char key[48])
{
	const srv_slice *family = &x->params[0];
	snprintf(key, 48, "pinset-%.*s",
	         family->len < STORE_ID_LEN ? (int)family->len : STORE_ID_LEN,
	         family->ptr ? family->ptr : "");
}

static void pin_done(srv_exchange *x, api_job *j)
{
	if (j->rc == PIN_SETS_SPENT) {
		char key[48];
		pin_sets_key(x, key);
		api_respond_spent(x, &x->srv->pin_sets, key, "rate_limited",
		                  "too many new PINs in this family; try later");
		return;
	}
	link_done(x, j);
}

void srv_api_kiosk_link_pin(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	int pin[PIN_LENGTH];
	bool ok = pin_field(body, pin);
	json_decref(body);
	if (!ok) {
		bad_pin(x);
		return;
	}
	api_job *j = api_authed_job(x, pin_work, pin_done);
	if (j)
		memcpy(j->pin, pin, sizeof pin);
	sodium_memzero(pin, sizeof pin);
	/*
	 * Each new PIN is an Argon2 hash (19 MiB, ~40 ms of a pool thread), and only the job
	 * queue bounded how many a grown-up's token could ask for. Counted per family (the
	 * path's), before the job so that requests sent at once cannot pass the bound, and given
	 * back unless the job finds the caller a grown-up of that family with that link (401, 403,
	 * 404, 503): someone else's requests cannot use up the family's hour, only hold a place
	 * while they are in flight. Per family, not per device: a grown-up with several phones,
	 * or several grown-ups, share the family's count, and a family sets a few PINs a month.
	 * A spent hour is answered 429 only once the job has found the caller a grown-up of the
	 * family with that link (pin_work): to a bad token it was 429, not 401, and to another
	 * family's parent 429, not 404, telling them the family exists (the review).
	 */
	char key[48];
	pin_sets_key(x, key);
	if (j) {
		j->pin_sets_spent =
		    !api_attempt_take(x->srv, j, &x->srv->pin_sets, key, NULL, NULL);
		api_run(x, j);
	}
}

static void unlink_work(api_job *j)
{
	if (own_link(j) && (j->rc = store_kiosk_link_delete(j->st, j->links->id.s)) == 0)
		api_audit(j, api_now_ms(), "kiosk.unlink", j->param[0], j->links->id.s, NULL);
}

static void unlink_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, "only a parent or caregiver can do this"))
		return;
	api_mailbox_changed(x->srv, j->param[0]); /* as link_done: its sessions hear 401 now */
	srv_respond_head(x, 204, NULL, NULL, -1);
}

void srv_api_kiosk_link_delete(srv_exchange *x)
{
	api_start(x, unlink_work, unlink_done);
}
