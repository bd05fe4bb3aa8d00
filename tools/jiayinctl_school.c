/*
 * jiayinctl_school.c — jiayinctl's commands for schools, their kiosks and device tokens:
 * school add/list, kiosk add/list/token/children, device revoke (a kiosk's or a member's). A
 * kiosk's token is made here as the server makes device tokens, printed once, and only its
 * SHA-256 reaches the store; a token that could not be shown is revoked again.
 */
#include "jiayinctl.h"

#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_BYTES 32 /* as the server's SRV_TOKEN_BYTES: 256 random bits */
#define TOKEN_LEN sodium_base64_ENCODED_LEN(TOKEN_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)

static json_t *school_json(const store_school *sc)
{
	return json_pack("{s:s, s:o, s:o}", "id", sc->id.s, "name", jtext(sc->name), "created_at",
	                 jtime(sc->created_ms));
}

static json_t *kiosk_json(const store_kiosk *k)
{
	return json_pack("{s:s, s:s, s:o, s:o}", "id", k->id.s, "school_id", k->school_id.s, "name",
	                 jtext(k->name), "created_at", jtime(k->created_ms));
}

/*
 * The kiosk's hour of wrong PINs (all its tablets'), for kiosk list and children. The bound
 * that locks it (pin-failures-kiosk) is the server's setting, which jiayinctl does not read:
 * the count and the hour's end are shown, for the operator to hold against it.
 */
static json_t *wrong_pins_until(int64_t count, int64_t start)
{
	return jtime(count ? lock_end_second(start + STORE_KIOSK_PIN_WINDOW_MS) : 0);
}

static void print_wrong_pins(const char *kiosk_id, int64_t count, int64_t start, const char *indent)
{
	char t[32];
	if (count == 0)
		return;
	printf("%s%lld wrong PIN%s this hour, counted until %s (every login locked once they "
	       "reach pin-failures-kiosk; `jiayinctl kiosk unlock %s` ends it)\n",
	       indent, (long long)count, count == 1 ? "" : "s",
	       fmt_time(lock_end_second(start + STORE_KIOSK_PIN_WINDOW_MS), t), kiosk_id);
}

/* For list_all(): the schools, a school's kiosks, a kiosk's devices and children. */
static int list_schools(store *s, const char *key, void *out, size_t max, size_t *n)
{
	(void)key;
	return store_schools_list(s, out, max, n);
}

static int list_kiosks(store *s, const char *school_id, void *out, size_t max, size_t *n)
{
	return store_kiosks_list(s, school_id, out, max, n);
}

static int list_kiosk_devices(store *s, const char *kiosk_id, void *out, size_t max, size_t *n)
{
	return store_kiosk_devices(s, kiosk_id, out, max, n);
}

static int list_kiosk_children(store *s, const char *kiosk_id, void *out, size_t max, size_t *n)
{
	return store_kiosk_links_of_kiosk(s, kiosk_id, out, max, n);
}

static int bad_name(ctl *c, const char *what, const char *s)
{
	return fail(c, STORE_EINVAL,
	            "a %s is 1-%d bytes of UTF-8 that shows something, without control characters "
	            "(this one is %zu bytes)",
	            what, STORE_NAME_MAX, strlen(s));
}

/* The school with this id (a malformed id is as unknown as a missing one). */
static int school_find(ctl *c, const char *id, store_school *out)
{
	return store_school_get(c->s, id, out);
}

/*
 * A new device token for a kiosk, made as the server makes device tokens (32 random bytes,
 * base64url without padding); the store gets the SHA-256 of the token's text. Prints it once.
 * With new_kiosk_name, the kiosk is registered too, in the same transaction (*k filled).
 */
static int token_add(ctl *c, store_kiosk *k, const store_school *school,
                     const char *device_name, const char *new_kiosk_name)
{
	uint8_t raw[TOKEN_BYTES], hash[STORE_HASH_LEN];
	char token[TOKEN_LEN];
	store_device dev;
	randombytes_buf(raw, sizeof raw);
	sodium_bin2base64(token, sizeof token, raw, sizeof raw,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
	crypto_hash_sha256(hash, (const unsigned char *)token, strlen(token));
	int rc = new_kiosk_name ? store_kiosk_add_with_device(c->s, school->id.s, new_kiosk_name,
	                                                      hash, device_name, now_ms(), k, &dev)
	                        : store_device_add(c->s, hash, NULL, k->id.s, device_name, now_ms(),
	                                           &dev);
	if (rc < 0) {
		sodium_memzero(token, sizeof token);
		return new_kiosk_name ? fail(c, rc, "the kiosk was not added")
		                      : fail(c, rc, "no token was made for kiosk %s", k->id.s);
	}
	int karc = new_kiosk_name ? audit(c, "kiosk.add", NULL, k->id.s, k->name) : 0;
	int arc = audit(c, "kiosk.token", NULL, dev.id.s, k->id.s);
	if (karc < 0)
		arc = karc;
	json_t *obj = NULL;
	static const char note[] =
	    "The token is shown only this once: type it into the kiosk's setup screen now. "
	    "Jiayin keeps only its hash; if it is lost, `jiayinctl kiosk token KIOSK_ID` makes a "
	    "new one and `jiayinctl device revoke DEVICE_ID` retires this one.";
	if (c->json) {
		obj = json_pack("{s:o, s:o, s:o, s:s, s:s}", "kiosk", kiosk_json(k), "school",
		                school_json(school), "device", device_json(&dev), "token", token,
		                "note", note);
	} else {
		printf("kiosk   %s  ", k->id.s);
		print_name(k->name);
		printf(" at school %s ", school->id.s);
		print_name(school->name);
		printf("\ndevice  %s  ", dev.id.s);
		print_name(dev.name);
		printf(
		    "\ntoken   %s\n\n"
		    "The token is shown only this once: type it into the kiosk's setup screen "
		    "now.\nJiayin keeps only its hash. If it is lost, `jiayinctl kiosk token %s` "
		    "makes\na new one and `jiayinctl device revoke %s` retires this one.\n",
		    token, k->id.s, dev.id.s);
	}
	sodium_memzero(token, sizeof token);
	int rc2 = finish(c, obj, arc);
	/* A token nobody saw (the output could not be built or written) must not stay valid. */
	if ((rc2 != 0 && arc >= 0) || flush_output() != 0) {
		int rrc = store_device_revoke(c->s, dev.id.s, now_ms());
		if (rrc < 0) { /* the token, unseen, still works: the operator must know */
			fprintf(
			    stderr,
			    "jiayinctl: the token could not be shown, and device %s could not be "
			    "revoked (%s): its token still works; run `jiayinctl device revoke %s` "
			    "now\n",
			    dev.id.s, store_errcode(rrc), dev.id.s);
			return EXIT_FAIL;
		}
		audit(c, "device.revoke", NULL, dev.id.s, "its token could not be shown");
		/* kiosk add made the kiosk: running it again would make a second one. */
		fprintf(stderr,
		        "jiayinctl: the token could not be shown, so device %s is revoked again; "
		        "kiosk %s %s: `jiayinctl kiosk token %s` makes it a new token\n",
		        dev.id.s, k->id.s, new_kiosk_name ? "stays registered" : "is as it was",
		        k->id.s);
		return EXIT_FAIL;
	}
	return rc2;
}

/* ---- the commands ---- */

int cmd_school_add(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_school sc;
	if (!store_name_ok(argv[0]))
		return bad_name(c, "school name", argv[0]);
	int rc = store_school_add(c->s, argv[0], now_ms(), &sc);
	if (rc < 0)
		return fail(c, rc, "the school was not added");
	int arc = audit(c, "school.add", NULL, sc.id.s, sc.name);
	if (!c->json) {
		printf("school %s  ", sc.id.s);
		print_name(sc.name);
		printf(" added\n");
	}
	return finish(c, c->json ? json_pack("{s:o}", "school", school_json(&sc)) : NULL, arc);
}

int cmd_school_list(ctl *c, int argc, char **argv)
{
	(void)argc, (void)argv;
	store_school *all;
	size_t n;
	char t[32];
	int rc = list_all(c->s, list_schools, NULL, sizeof *all, (void **)&all, &n);
	if (rc < 0)
		return fail(c, rc, "the schools could not be listed");
	json_t *arr = c->json ? json_array() : NULL;
	for (size_t i = 0; i < n; i++) {
		if (arr) {
			json_array_append_new(arr, school_json(&all[i]));
			continue;
		}
		printf("school %s  created %s  ", all[i].id.s, fmt_time(all[i].created_ms, t));
		print_name(all[i].name);
		putchar('\n');
	}
	if (!c->json)
		printf("%zu school%s\n", n, n == 1 ? "" : "s");
	if (arr && json_array_size(arr) != n)
		json_decref(arr), arr = NULL;
	free(all);
	return finish(c, arr ? json_pack("{s:o}", "schools", arr) : NULL, 0);
}

int cmd_kiosk_add(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_school school;
	store_kiosk k;
	if (!store_name_ok(argv[1]))
		return bad_name(c, "kiosk name", argv[1]);
	int rc = school_find(c, argv[0], &school);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no school %s", argv[0])
		                             : fail(c, rc, "the school could not be read");
	/* Its first device (token) has the kiosk's name. */
	return token_add(c, &k, &school, argv[1], argv[1]);
}

static int kiosk_find(ctl *c, const char *id, store_kiosk *k, store_school *school)
{
	int rc = store_kiosk_get(c->s, id, k);
	if (rc == 0)
		rc = school_find(c, k->school_id.s, school);
	if (rc == STORE_ENOTFOUND)
		return fail(c, rc, "no kiosk %s", id);
	return rc < 0 ? fail(c, rc, "the kiosk could not be read") : 0;
}

int cmd_kiosk_token(ctl *c, int argc, char **argv)
{
	store_kiosk k;
	store_school school;
	if (argc > 1 && !store_name_ok(argv[1]))
		return bad_name(c, "device name", argv[1]);
	if (kiosk_find(c, argv[0], &k, &school))
		return EXIT_FAIL;
	return token_add(c, &k, &school, argc > 1 ? argv[1] : k.name, NULL);
}

int cmd_kiosk_list(ctl *c, int argc, char **argv)
{
	store_school *schools = NULL, none = {.name = "?"};
	store_kiosk *kiosks = NULL;
	size_t nschools = 0, nkiosks = 0;
	const char *school_id = argc > 0 ? argv[0] : NULL;
	char t[32];
	json_t *arr = c->json ? json_array() : NULL;
	int rc = list_all(c->s, list_schools, NULL, sizeof *schools, (void **)&schools, &nschools);
	if (rc == 0 && school_id) {
		rc = STORE_ENOTFOUND;
		for (size_t i = 0; i < nschools; i++)
			rc = strcmp(schools[i].id.s, school_id) == 0 ? 0 : rc;
	}
	if (rc == 0)
		rc = list_all(c->s, list_kiosks, school_id, sizeof *kiosks, (void **)&kiosks,
		              &nkiosks);
	for (size_t i = 0; rc == 0 && i < nkiosks; i++) {
		const store_kiosk *k = &kiosks[i];
		const store_school *sc = &none;
		store_device *devs;
		size_t ndevs;
		for (size_t j = 0; j < nschools; j++)
			sc = strcmp(schools[j].id.s, k->school_id.s) == 0 ? &schools[j] : sc;
		int64_t start, count;
		if ((rc = store_kiosk_pins_hour(c->s, k->id.s, now_ms(), STORE_KIOSK_PIN_WINDOW_MS,
		                                &start, &count)) < 0)
			break;
		if ((rc = list_all(c->s, list_kiosk_devices, k->id.s, sizeof *devs, (void **)&devs,
		                   &ndevs)) < 0)
			break;
		if (arr) {
			json_t *da = json_array();
			for (size_t j = 0; j < ndevs; j++)
				json_array_append_new(da, device_json(&devs[j]));
			json_array_append_new(
			    arr,
			    json_pack("{s:s, s:o, s:o, s:{s:s, s:o}, s:o, s:I, s:o}", "id", k->id.s,
			              "name", jtext(k->name), "created_at", jtime(k->created_ms),
			              "school", "id", k->school_id.s, "name", jtext(sc->name),
			              "devices", da, "wrong_pins", (json_int_t)count,
			              "wrong_pins_until", wrong_pins_until(count, start)));
		} else {
			printf("kiosk %s  ", k->id.s);
			print_name(k->name);
			printf("  at school %s ", k->school_id.s);
			print_name(sc->name);
			printf("  created %s\n", fmt_time(k->created_ms, t));
			print_wrong_pins(k->id.s, count, start, "  ");
			for (size_t j = 0; j < ndevs; j++)
				print_device(&devs[j], "  ");
			if (ndevs == 0)
				printf("  (no devices: `jiayinctl kiosk token %s` makes one)\n",
				       k->id.s);
		}
		free(devs);
	}
	free(schools);
	free(kiosks);
	if (rc < 0) {
		json_decref(arr);
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no school %s", school_id)
		                             : fail(c, rc, "the kiosks could not be listed");
	}
	if (!c->json)
		printf("%zu kiosk%s\n", nkiosks, nkiosks == 1 ? "" : "s");
	if (arr && json_array_size(arr) != nkiosks)
		json_decref(arr), arr = NULL;
	return finish(c, arr ? json_pack("{s:o}", "kiosks", arr) : NULL, 0);
}

int cmd_kiosk_children(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_kiosk k;
	store_school school;
	store_kiosk_link *links;
	size_t n;
	char t[32];
	if (kiosk_find(c, argv[0], &k, &school))
		return EXIT_FAIL;
	int64_t start, count;
	int rc = store_kiosk_pins_hour(c->s, k.id.s, now_ms(), STORE_KIOSK_PIN_WINDOW_MS, &start,
	                               &count);
	if (rc < 0)
		return fail(c, rc, "the kiosk could not be read");
	rc = list_all(c->s, list_kiosk_children, k.id.s, sizeof *links, (void **)&links, &n);
	if (rc < 0)
		return fail(c, rc, "the kiosk's children could not be listed");
	json_t *arr = c->json ? json_array() : NULL;
	if (!c->json) {
		printf("kiosk %s  ", k.id.s);
		print_name(k.name);
		printf(" at school ");
		print_name(school.name);
		putchar('\n');
		print_wrong_pins(k.id.s, count, start, "  ");
	}
	for (size_t i = 0; i < n; i++) {
		const store_kiosk_link *l = &links[i];
		if (arr) {
			json_array_append_new(arr, link_json(l));
			continue;
		}
		printf("  child %s  ", l->member_id.s);
		print_name(l->member_name);
		printf("  family %s  link %s  paired %s", l->family_id.s, l->id.s,
		       fmt_time(l->created_ms, t));
		if (l->locked_until_ms > now_ms()) /* an expired lock is none (link_json) */
			printf("  PIN LOCKED until %s",
			       fmt_time(lock_end_second(l->locked_until_ms), t));
		else if (l->failures)
			printf("  %u wrong PIN%s", l->failures, l->failures == 1 ? "" : "s");
		putchar('\n');
	}
	free(links);
	if (!c->json)
		printf("%zu child%s paired\n", n, n == 1 ? "" : "ren");
	if (arr && json_array_size(arr) != n)
		json_decref(arr), arr = NULL;
	return finish(c,
	              arr ? json_pack("{s:o, s:o, s:o, s:I, s:o}", "kiosk", kiosk_json(&k),
	                              "school", school_json(&school), "children", arr, "wrong_pins",
	                              (json_int_t)count, "wrong_pins_until",
	                              wrong_pins_until(count, start))
	                  : NULL,
	              0);
}

/*
 * The kiosk's hour of wrong PINs ends now: a school whose children mistyped their way to
 * pin-failures-kiosk waited out the hour on every tablet, and nothing could end it early. The
 * children's own locks stay: each is what stops someone guessing one child's PIN, and a parent's
 * new PIN ends it (or its 15 minutes, doubling); lifting them all for a class would hand whoever
 * was guessing a fresh set of tries on every child at once.
 */
int cmd_kiosk_unlock(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_kiosk k;
	store_school school;
	int64_t start, count;
	char t1[32], t2[32], detail[128];
	if (kiosk_find(c, argv[0], &k, &school))
		return EXIT_FAIL;
	int rc = store_kiosk_pins_reset(c->s, k.id.s, now_ms(), STORE_KIOSK_PIN_WINDOW_MS, &start,
	                                &count);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no kiosk %s", k.id.s)
		                             : fail(c, rc, "kiosk %s was not unlocked", k.id.s);
	int64_t until = count ? lock_end_second(start + STORE_KIOSK_PIN_WINDOW_MS) : 0;
	if (count)
		snprintf(detail, sizeof detail, "%lld wrong PIN%s since %s, counted until %s",
		         (long long)count, count == 1 ? "" : "s", fmt_time(start, t1),
		         fmt_time(until, t2));
	else
		snprintf(detail, sizeof detail, "no wrong PINs counted: not locked");
	int arc = audit(c, "kiosk.unlock", NULL, k.id.s, detail);
	if (!c->json) {
		printf("kiosk %s  ", k.id.s);
		print_name(k.name);
		printf(" at school ");
		print_name(school.name);
		if (count)
			printf(
			    ":\n  %lld wrong PIN%s counted since %s (if they reached the server's "
			    "pin-failures-kiosk, 30 by default, every login was locked until %s)\n "
			    " "
			    "its count starts again from "
			    "none: its tablets take logins now (a child locked by their own wrong "
			    "PINs stays locked)\n",
			    (long long)count, count == 1 ? "" : "s", fmt_time(start, t1),
			    fmt_time(until, t2));
		else
			printf(": no wrong PINs counted in the last hour: it was not locked\n");
	}
	return finish(c,
	              c->json
	                  ? json_pack("{s:o, s:o, s:I, s:o, s:o}", "kiosk", kiosk_json(&k),
	                              "school", school_json(&school), "wrong_pins",
	                              (json_int_t)count, "counted_since", jtime(count ? start : 0),
	                              "wrong_pins_until", jtime(until))
	                  : NULL,
	              arc);
}

int cmd_device_revoke(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_device d;
	char t[32];
	int rc = store_device_get(c->s, argv[0], &d);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no device %s", argv[0])
		                             : fail(c, rc, "the device could not be read");
	bool already = d.revoked_ms != 0;
	int arc = 0;
	if (!already) {
		int64_t now = now_ms();
		if ((rc = store_device_revoke(c->s, d.id.s, now)) < 0)
			return fail(c, rc, "device %s was not revoked", d.id.s);
		if (rc == 1) { /* revoked meanwhile, by the API: its time, its audit record */
			already = true;
			if ((rc = store_device_get(c->s, argv[0], &d)) < 0)
				return fail(c, rc, "the device could not be read");
		} else {
			d.revoked_ms = now;
			arc = audit(c, "device.revoke", opt_id(&d.family_id), d.id.s,
			            d.kind == STORE_DEVICE_KIOSK ? d.kiosk_id.s : d.member_id.s);
		}
	}
	if (!c->json) {
		printf("device %s  ", d.id.s);
		print_name(d.name);
		printf(" (%s %s) %s %s\n", d.kind == STORE_DEVICE_KIOSK ? "kiosk" : "member",
		       d.kind == STORE_DEVICE_KIOSK ? d.kiosk_id.s : d.member_id.s,
		       already ? "was revoked already, at"
		               : "revoked: its token stops working now,",
		       fmt_time(d.revoked_ms, t));
	}
	return finish(
	    c,
	    c->json ? json_pack("{s:o, s:b}", "device", device_json(&d), "already_revoked", already)
	            : NULL,
	    arc);
}
