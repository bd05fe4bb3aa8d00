/*
 * jiayinctl — the administrator's tool: schools, kiosks and their device tokens, a family's
 * state, its erasure and export, and online backups, on the data directory through the storage
 * library (never the server: SQLite in WAL mode and the store's busy timeout let it run beside
 * a live jiayin). Single-threaded; one store handle per run; every mutation appends a row to
 * the audit log (actor "jiayinctl"). Tokens are made as the server makes them and only their
 * SHA-256 is stored. Output: readable text, or with --json exactly one JSON object on stdout.
 * Exit status: 0, 1 on failure (message and storage error code on stderr), 64 on bad usage.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 64
#define ACTOR "jiayinctl"
#define DEFAULT_DATA "./jiayin-data"
#define TOKEN_BYTES 32 /* as the server's SRV_TOKEN_BYTES: 256 random bits */
#define TOKEN_LEN sodium_base64_ENCODED_LEN(TOKEN_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)
#define LIST_FIRST 16       /* rows asked for first; doubled until a listing comes back short */
#define LIST_MAX (1u << 20) /* rows of one listing at most */

typedef struct ctl {
	store *s;
	bool json;
	const char *data; /* the data directory */
} ctl;

/* ---- output ---- */

/* A JSON string: `s`, or if it is not UTF-8 (a row written by something else), `s` with its
 * bytes above 0x7f as '?'. */
static json_t *jtext(const char *s)
{
	json_t *v = json_string(s);
	if (v)
		return v;
	char buf[256];
	size_t i = 0;
	for (; s[i] && i < sizeof buf - 1; i++)
		buf[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
	buf[i] = '\0';
	return json_string(buf);
}

/* {"code": ..., "message": ...}: what --json prints under "error". */
static json_t *error_json(const char *code, const char *msg)
{
	return json_pack("{s:s, s:o}", "code", code, "message", jtext(msg));
}

static void print_error_json(const char *code, const char *msg)
{
	json_t *o = json_pack("{s:o}", "error", error_json(code, msg));
	if (o && json_dumpf(o, stdout, JSON_COMPACT) == 0)
		putchar('\n');
	json_decref(o);
}

/* The message on stderr with the error's code; with --json, the error object on stdout. */
static int fail(ctl *c, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "jiayinctl: %s (%s)\n", msg, store_errcode(err));
	if (c->json)
		print_error_json(store_errcode(err), msg);
	return EXIT_FAIL;
}

static int usage_fail(ctl *c, const char *usage, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "jiayinctl: %s\n", msg);
	if (usage)
		fprintf(stderr, "usage: jiayinctl [--data DIR] [--json] %s\n", usage);
	fprintf(stderr, "`jiayinctl --help` lists every command.\n");
	if (c->json)
		print_error_json("usage", msg);
	return EXIT_USAGE;
}

/*
 * The end of a command that has done its work: with --json the result object is printed (it
 * takes `obj`; NULL means it could not be built); the human text is printed already. A failed
 * audit append (audit_rc < 0) is reported as a failure after the result: the change was made.
 */
static int finish(ctl *c, json_t *obj, int audit_rc)
{
	char msg[256] = "";
	if (audit_rc < 0)
		snprintf(msg, sizeof msg,
		         "the change above was made, but the audit log could not record it: %s",
		         store_strerror(audit_rc));
	if (c->json) {
		if (!obj)
			return fail(c, STORE_ENOMEM, "could not build the JSON result");
		if (audit_rc < 0 &&
		    json_object_set_new(obj, "error", error_json(store_errcode(audit_rc), msg)) <
		        0) {
			json_decref(obj);
			return fail(c, STORE_ENOMEM, "could not build the JSON result");
		}
		int r = json_dumpf(obj, stdout, JSON_COMPACT);
		json_decref(obj);
		if (r < 0)
			return fail(c, STORE_ENOMEM, "could not print the JSON result");
		putchar('\n');
	}
	if (audit_rc < 0) {
		fprintf(stderr, "jiayinctl: %s (%s)\n", msg, store_errcode(audit_rc));
		return EXIT_FAIL;
	}
	return 0;
}

/* Seconds since the epoch, as the API gives times; null for 0 ("never"). */
static json_t *jtime(int64_t ms)
{
	return ms ? json_integer((json_int_t)(ms / 1000)) : json_null();
}

static const char *opt_id(const store_id *id)
{
	return id->s[0] ? id->s : NULL;
}

static const char *fmt_time(int64_t ms, char buf[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms == 0)
		return "never";
	if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, 32, "%lld ms", (long long)ms);
	return buf;
}

/* A stored name in quotes, control bytes shown as '?' (names reach a terminal). */
static void print_name(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
	putchar('"');
}

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

static json_t *device_json(const store_device *d)
{
	return json_pack("{s:s, s:s, s:o, s:s?, s:s?, s:s?, s:o, s:o, s:b, s:o}", "id", d->id.s,
	                 "kind", d->kind == STORE_DEVICE_KIOSK ? "kiosk" : "personal", "name",
	                 jtext(d->name), "member_id", opt_id(&d->member_id), "family_id",
	                 opt_id(&d->family_id), "kiosk_id", opt_id(&d->kiosk_id), "created_at",
	                 jtime(d->created_ms), "last_seen_at", jtime(d->last_seen_ms), "revoked",
	                 d->revoked_ms != 0, "revoked_at", jtime(d->revoked_ms));
}

static json_t *member_json(const store_member *m)
{
	return json_pack("{s:s, s:o, s:s, s:o, s:o}", "id", m->id.s, "name", jtext(m->name), "role",
	                 store_role_name(m->role), "avatar", jtext(m->avatar), "created_at",
	                 jtime(m->created_ms));
}

/* A child's pairing with a kiosk; the PIN's hash stays in the store. */
static json_t *link_json(const store_kiosk_link *l)
{
	return json_pack("{s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:o, s:o, s:I, s:o, s:o}", "link_id",
	                 l->id.s, "member_id", l->member_id.s, "name", jtext(l->member_name),
	                 "family_id", l->family_id.s, "kiosk_id", l->kiosk_id.s, "kiosk_name",
	                 jtext(l->kiosk_name), "school_name", jtext(l->school_name), "avatar",
	                 jtext(l->avatar), "paired_at", jtime(l->created_ms), "pin_failures",
	                 (json_int_t)l->failures, "locked", json_boolean(l->locked_until_ms != 0),
	                 "locked_until", jtime(l->locked_until_ms));
}

static void print_device(const store_device *d, const char *indent)
{
	char t1[32], t2[32], t3[32];
	printf("%sdevice %s  ", indent, d->id.s);
	print_name(d->name);
	printf("  created %s, last seen %s", fmt_time(d->created_ms, t1),
	       fmt_time(d->last_seen_ms, t2));
	if (d->revoked_ms)
		printf("  REVOKED %s", fmt_time(d->revoked_ms, t3));
	putchar('\n');
}

/* ---- listings: all rows, whatever their number ---- */

typedef int (*list_fn)(store *s, const char *key, void *out, size_t max, size_t *n);

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

static int list_members(store *s, const char *family_id, void *out, size_t max, size_t *n)
{
	return store_members_list(s, family_id, out, max, n);
}

static int list_family_devices(store *s, const char *family_id, void *out, size_t max, size_t *n)
{
	return store_devices_list(s, family_id, out, max, n);
}

static int list_family_links(store *s, const char *family_id, void *out, size_t max, size_t *n)
{
	return store_kiosk_links_of_family(s, family_id, out, max, n);
}

/* *out (the caller frees it): every row fn lists; the listing calls take no page cursor, so
 * the buffer grows until a listing comes back shorter than it. */
static int list_all(store *s, list_fn fn, const char *key, size_t size, void **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	for (size_t cap = LIST_FIRST;; cap *= 2) {
		void *buf = calloc(cap, size);
		if (!buf)
			return STORE_ENOMEM;
		int rc = fn(s, key, buf, cap, n);
		if (rc < 0 || (*n == cap && cap < LIST_MAX)) {
			free(buf);
			*n = 0;
			if (rc < 0)
				return rc;
			continue;
		}
		*out = buf;
		return 0;
	}
}

/* ---- checks and helpers ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* As the API takes names: 1..STORE_NAME_MAX bytes of UTF-8, no control bytes. */
static bool name_ok(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > STORE_NAME_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	json_t *v = json_string(s); /* NULL unless valid UTF-8 */
	json_decref(v);
	return v != NULL;
}

static int bad_name(ctl *c, const char *what, const char *s)
{
	return fail(
	    c, STORE_EINVAL,
	    "a %s is 1-%d bytes of UTF-8 without control characters (this one is %zu bytes)", what,
	    STORE_NAME_MAX, strlen(s));
}

static int audit(ctl *c, const char *action, const char *family_id, const char *target,
                 const char *detail)
{
	return store_audit_append(c->s, now_ms(), ACTOR, action, family_id, target, detail);
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
	if ((rc2 != 0 && arc >= 0) || fflush(stdout) != 0 || ferror(stdout)) {
		store_device_revoke(c->s, dev.id.s, now_ms());
		audit(c, "device.revoke", NULL, dev.id.s, "its token could not be shown");
		fprintf(stderr,
		        "jiayinctl: the token could not be shown, so device %s is revoked again; "
		        "run the command again\n",
		        dev.id.s);
		return EXIT_FAIL;
	}
	return rc2;
}

/* ---- the commands ---- */

static int cmd_school_add(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_school sc;
	if (!name_ok(argv[0]))
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

static int cmd_school_list(ctl *c, int argc, char **argv)
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

static int cmd_kiosk_add(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_school school;
	store_kiosk k;
	if (!name_ok(argv[1]))
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

static int cmd_kiosk_token(ctl *c, int argc, char **argv)
{
	store_kiosk k;
	store_school school;
	if (argc > 1 && !name_ok(argv[1]))
		return bad_name(c, "device name", argv[1]);
	if (kiosk_find(c, argv[0], &k, &school))
		return EXIT_FAIL;
	return token_add(c, &k, &school, argc > 1 ? argv[1] : k.name, NULL);
}

static int cmd_kiosk_list(ctl *c, int argc, char **argv)
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
		if ((rc = list_all(c->s, list_kiosk_devices, k->id.s, sizeof *devs, (void **)&devs,
		                   &ndevs)) < 0)
			break;
		if (arr) {
			json_t *da = json_array();
			for (size_t j = 0; j < ndevs; j++)
				json_array_append_new(da, device_json(&devs[j]));
			json_array_append_new(arr, json_pack("{s:s, s:o, s:o, s:{s:s, s:o}, s:o}",
			                                     "id", k->id.s, "name", jtext(k->name),
			                                     "created_at", jtime(k->created_ms),
			                                     "school", "id", k->school_id.s, "name",
			                                     jtext(sc->name), "devices", da));
		} else {
			printf("kiosk %s  ", k->id.s);
			print_name(k->name);
			printf("  at school %s ", k->school_id.s);
			print_name(sc->name);
			printf("  created %s\n", fmt_time(k->created_ms, t));
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

static int cmd_kiosk_children(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_kiosk k;
	store_school school;
	store_kiosk_link *links;
	size_t n;
	char t[32];
	if (kiosk_find(c, argv[0], &k, &school))
		return EXIT_FAIL;
	int rc = list_all(c->s, list_kiosk_children, k.id.s, sizeof *links, (void **)&links, &n);
	if (rc < 0)
		return fail(c, rc, "the kiosk's children could not be listed");
	json_t *arr = c->json ? json_array() : NULL;
	if (!c->json) {
		printf("kiosk %s  ", k.id.s);
		print_name(k.name);
		printf(" at school ");
		print_name(school.name);
		putchar('\n');
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
		if (l->locked_until_ms)
			printf("  PIN LOCKED until %s", fmt_time(l->locked_until_ms, t));
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
	              arr ? json_pack("{s:o, s:o, s:o}", "kiosk", kiosk_json(&k), "school",
	                              school_json(&school), "children", arr)
	                  : NULL,
	              0);
}

static int cmd_device_revoke(ctl *c, int argc, char **argv)
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
		d.revoked_ms = now;
		arc = audit(c, "device.revoke", opt_id(&d.family_id), d.id.s,
		            d.kind == STORE_DEVICE_KIOSK ? d.kiosk_id.s : d.member_id.s);
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

static void print_family(const store_family *f, uint64_t usage, const store_member *m, size_t nm,
                         const store_device *d, size_t nd, const store_kiosk_link *l, size_t nl)
{
	char t[32];
	printf("family %s  ", f->id.s);
	print_name(f->name);
	printf("\n  created    %s\n  usage      %llu bytes", fmt_time(f->created_ms, t),
	       (unsigned long long)usage);
	if (f->quota_bytes)
		printf(" of a %llu-byte quota\n", (unsigned long long)f->quota_bytes);
	else
		printf(" (no quota)\n");
	if (f->retention_days)
		printf("  retention  %u days\n", f->retention_days);
	else
		printf("  retention  keeps messages for ever\n");
	printf("members (%zu):\n", nm);
	for (size_t i = 0; i < nm; i++) {
		printf("  %-9s %s  ", store_role_name(m[i].role), m[i].id.s);
		print_name(m[i].name);
		printf("  since %s\n", fmt_time(m[i].created_ms, t));
	}
	printf("devices (%zu):\n", nd);
	for (size_t i = 0; i < nd; i++) {
		print_device(&d[i], "  ");
		printf("    of member %s\n", d[i].member_id.s);
	}
	printf("paired at school kiosks (%zu):\n", nl);
	for (size_t i = 0; i < nl; i++) {
		printf("  child %s  ", l[i].member_id.s);
		print_name(l[i].member_name);
		printf(" at kiosk %s  ", l[i].kiosk_id.s);
		print_name(l[i].kiosk_name);
		printf(" (school ");
		print_name(l[i].school_name);
		printf(")  link %s\n", l[i].id.s);
	}
}

static int cmd_family_show(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_family f;
	store_member *m = NULL;
	store_device *d = NULL;
	store_kiosk_link *l = NULL;
	size_t nm = 0, nd = 0, nl = 0;
	uint64_t usage = 0;
	json_t *obj = NULL;
	int rc = store_family_get(c->s, argv[0], &f);
	if (rc == 0)
		rc = store_mailbox_usage(c->s, f.id.s, &usage);
	if (rc == 0)
		rc = list_all(c->s, list_members, f.id.s, sizeof *m, (void **)&m, &nm);
	if (rc == 0)
		rc = list_all(c->s, list_family_devices, f.id.s, sizeof *d, (void **)&d, &nd);
	if (rc == 0)
		rc = list_all(c->s, list_family_links, f.id.s, sizeof *l, (void **)&l, &nl);
	if (rc == 0 && c->json) {
		json_t *ma = json_array(), *da = json_array(), *la = json_array();
		for (size_t i = 0; i < nm; i++)
			json_array_append_new(ma, member_json(&m[i]));
		for (size_t i = 0; i < nd; i++)
			json_array_append_new(da, device_json(&d[i]));
		for (size_t i = 0; i < nl; i++)
			json_array_append_new(la, link_json(&l[i]));
		bool whole = json_array_size(ma) == nm && json_array_size(da) == nd &&
		             json_array_size(la) == nl;
		obj = json_pack("{s:{s:s, s:o, s:o, s:I, s:I, s:I}, s:o, s:o, s:o}", "family", "id",
		                f.id.s, "name", jtext(f.name), "created_at", jtime(f.created_ms),
		                "quota_bytes", (json_int_t)f.quota_bytes, "retention_days",
		                (json_int_t)f.retention_days, "usage_bytes", (json_int_t)usage,
		                "members", ma, "devices", da, "kiosk_links", la);
		if (!whole)
			json_decref(obj), obj = NULL;
	} else if (rc == 0) {
		print_family(&f, usage, m, nm, d, nd, l, nl);
	}
	free(m);
	free(d);
	free(l);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no family %s", argv[0])
		                             : fail(c, rc, "the family could not be read");
	return finish(c, obj, 0);
}

#define FAMILY_DEVICES_MAX 512

/* A device's unfinished uploads: the files of data/uploads/DEVICE/ and the directory (what
 * the server's expiry would remove a day later). Best effort: what stays expires. */
static void remove_uploads(const char *data, const char *device)
{
	char path[4096];
	if (store_id_check(device) < 0)
		return;
	snprintf(path, sizeof path, "%s/uploads/%s", data, device);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (fd >= 0 && !dir)
		close(fd);
	if (!dir)
		return;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL)
		if (de->d_name[0] != '.')
			unlinkat(fd, de->d_name, 0);
	closedir(dir);
	rmdir(path);
}

static int cmd_family_delete(ctl *c, int argc, char **argv)
{
	const char *id = NULL;
	int yes = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--yes") == 0)
			yes++;
		else if (!id)
			id = argv[i];
		else
			id = "";
	}
	if (!id || !*id || yes > 1)
		return usage_fail(c, "family delete FAMILY_ID --yes", "family delete takes an id");
	store_family f;
	uint64_t usage = 0;
	int rc = store_family_get(c->s, id, &f);
	if (rc == 0)
		rc = store_mailbox_usage(c->s, f.id.s, &usage);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no family %s", id)
		                             : fail(c, rc, "the family could not be read");
	if (!yes) {
		/* A refusal, not a mistake: no usage text, but the usage exit status. */
		char msg[256];
		snprintf(msg, sizeof msg,
		         "not deleting family %s (\"%s\", %llu bytes of messages) without --yes: "
		         "it erases its members, devices and every message for ever",
		         f.id.s, f.name, (unsigned long long)usage);
		fprintf(stderr, "jiayinctl: %s\n", msg);
		if (c->json)
			print_error_json("usage", msg);
		return EXIT_USAGE;
	}
	/* Its phones' unfinished resumable uploads (data/uploads/DEVICE/) go too: their devices
	 * are known only until the family's rows are gone. */
	store_device *devs = calloc(FAMILY_DEVICES_MAX, sizeof *devs);
	size_t ndevs = 0;
	if (!devs)
		return fail(c, STORE_ENOMEM, "no memory");
	if ((rc = store_devices_list(c->s, f.id.s, devs, FAMILY_DEVICES_MAX, &ndevs)) < 0) {
		free(devs);
		return fail(c, rc, "the family's devices could not be read");
	}
	if ((rc = store_family_delete(c->s, f.id.s)) < 0) {
		free(devs);
		return fail(c, rc, "family %s was not deleted", f.id.s);
	}
	for (size_t i = 0; i < ndevs; i++)
		remove_uploads(c->data, devs[i].id.s);
	free(devs);
	int arc = audit(c, "family.delete", f.id.s, f.id.s, NULL);
	if (!c->json)
		printf("family %s deleted: its members, devices and messages are erased\n", f.id.s);
	return finish(c, c->json ? json_pack("{s:s}", "deleted", f.id.s) : NULL, arc);
}

/* The storage error code closest to a file system errno. */
static int errno_code(int e)
{
	if (e == EEXIST)
		return STORE_EEXIST;
	if (e == ENOSPC || e == EDQUOT)
		return STORE_EFULL;
	if (e == EROFS || e == EACCES || e == EPERM)
		return STORE_EROFS;
	if (e == ENOENT || e == ENOTDIR)
		return STORE_ENOTFOUND;
	return e == ENOMEM ? STORE_ENOMEM : STORE_EIO;
}

static int cmd_family_export(ctl *c, int argc, char **argv)
{
	(void)argc;
	const char *id = argv[0], *path = argv[1];
	store_family f;
	uint64_t bytes = 0;
	int rc = store_family_get(c->s, id, &f);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no family %s", id)
		                             : fail(c, rc, "the family could not be read");
	/* Voices of a family: readable by the administrator only; never over an existing file. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		return fail(c, errno_code(e), "cannot create %s: %s", path, strerror(e));
	}
	int e = 0;
	rc = store_export_family(c->s, f.id.s, fd, &bytes);
	if (rc == 0 && fsync(fd) != 0)
		e = errno, rc = errno_code(e);
	if (close(fd) != 0 && rc == 0)
		e = errno, rc = errno_code(e);
	if (rc < 0) {
		unlink(path);
		return fail(c, rc, "family %s was not exported%s%s", f.id.s, e ? ": " : "",
		            e ? strerror(e) : "");
	}
	int arc = audit(c, "family.export", f.id.s, f.id.s, path);
	if (!c->json)
		printf("family %s exported to %s: %llu bytes\n", f.id.s, path,
		       (unsigned long long)bytes);
	return finish(c,
	              c->json ? json_pack("{s:s, s:o, s:I}", "family_id", f.id.s, "file",
	                                  jtext(path), "bytes", (json_int_t)bytes)
	                      : NULL,
	              arc);
}

/*
 * The server's key (data/secret: kiosk PINs, signed URLs, pairing codes depend on it) into the
 * backup, 0600, synced: a restored backup without it would lock every child out of the kiosks.
 */
static int copy_secret(const char *data, const char *dest)
{
	char from[4096], to[4096];
	uint8_t key[64];
	snprintf(from, sizeof from, "%s/secret", data);
	snprintf(to, sizeof to, "%s/secret", dest);
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return errno == ENOENT ? 0 : -errno; /* a server that never started has none */
	ssize_t n = read(in, key, sizeof key);
	int err = n < 0 ? errno : 0;
	close(in);
	int out = err ? -1 : open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (!err && out < 0)
		err = errno;
	if (out >= 0) {
		if (write(out, key, (size_t)n) != n || fsync(out) < 0)
			err = errno ? errno : EIO;
		close(out);
	}
	sodium_memzero(key, sizeof key);
	return -err;
}

static int cmd_backup(ctl *c, int argc, char **argv)
{
	(void)argc;
	const char *dest = argv[0];
	unsigned families = 0;
	int rc = store_backup_all(c->s, dest, &families);
	if (rc == STORE_EEXIST)
		return fail(c, rc, "%s exists already: a backup goes into a new directory", dest);
	if (rc < 0)
		return fail(c, rc, "the backup failed (%s may hold a partial copy: remove it)",
		            dest);
	if ((rc = copy_secret(c->data, dest)) < 0)
		return fail(c, errno_code(-rc),
		            "the databases are in %s but the server's key (secret) could not be "
		            "copied: %s",
		            dest, strerror(-rc));
	char detail[32];
	snprintf(detail, sizeof detail, "%u families", families);
	int arc = audit(c, "backup.all", NULL, dest, detail);
	if (!c->json)
		printf("backup in %s: the server's key, the directory and %u famil%s\n", dest,
		       families,
		       families == 1 ? "y" : "ies");
	return finish(c,
	              c->json ? json_pack("{s:o, s:I}", "backup", jtext(dest), "families",
	                                  (json_int_t)families)
	                      : NULL,
	              arc);
}

static int cmd_backup_family(ctl *c, int argc, char **argv)
{
	(void)argc;
	const char *id = argv[0], *dest = argv[1];
	store_family f;
	int rc = store_family_get(c->s, id, &f);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no family %s", id)
		                             : fail(c, rc, "the family could not be read");
	rc = store_backup_family(c->s, id, dest);
	if (rc == STORE_EEXIST)
		return fail(c, rc, "%s exists already: a backup goes into a new file", dest);
	if (rc < 0)
		return fail(c, rc, "family %s was not backed up to %s", id, dest);
	int arc = audit(c, "backup.family", id, dest, NULL);
	if (!c->json)
		printf("family %s backed up to %s\n", id, dest);
	return finish(
	    c, c->json ? json_pack("{s:s, s:o}", "family_id", id, "backup", jtext(dest)) : NULL,
	    arc);
}

/* ---- dispatch ---- */

typedef struct command {
	const char *group, *verb; /* verb NULL: a one-word command */
	int min_args, max_args;
	const char *args, *help;
	int (*run)(ctl *c, int argc, char **argv);
} command;

static const command commands[] = {
    {"school", "add", 1, 1, "NAME", "add a school; prints its id", cmd_school_add},
    {"school", "list", 0, 0, "", "list the schools", cmd_school_list},
    {"kiosk", "add", 2, 2, "SCHOOL_ID NAME",
     "register a kiosk and its first device token (shown once)", cmd_kiosk_add},
    {"kiosk", "list", 0, 1, "[SCHOOL_ID]", "kiosks with their school and devices", cmd_kiosk_list},
    {"kiosk", "token", 1, 2, "KIOSK_ID [DEVICE_NAME]",
     "a new device token for a kiosk (a replaced tablet)", cmd_kiosk_token},
    {"kiosk", "children", 1, 1, "KIOSK_ID", "the children paired to a kiosk", cmd_kiosk_children},
    {"device", "revoke", 1, 1, "DEVICE_ID", "revoke a kiosk's or a member's device token",
     cmd_device_revoke},
    {"family", "show", 1, 1, "FAMILY_ID", "a family: settings, usage, members, devices",
     cmd_family_show},
    {"family", "delete", 1, 2, "FAMILY_ID --yes",
     "erase a family, its members, devices and messages", cmd_family_delete},
    {"family", "export", 2, 2, "FAMILY_ID FILE.zip",
     "a family's messages and index.json as a zip (a new file)", cmd_family_export},
    {"backup", NULL, 1, 1, "DEST_DIR", "an online copy of every database into a new directory",
     cmd_backup},
    {"backup-family", NULL, 2, 2, "FAMILY_ID DEST_FILE",
     "an online copy of one family's database into a new file", cmd_backup_family},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void help(void)
{
	printf("usage: jiayinctl [--data DIR] [--json] COMMAND [ARGS]\n"
	       "Administer a Jiayin data directory (the server may be running).\n\n"
	       "  --data DIR   the data directory (default %s)\n"
	       "  --json       print one JSON object per command\n"
	       "  -h, --help   this text\n\ncommands:\n",
	       DEFAULT_DATA);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char head[64];
		snprintf(head, sizeof head, "%s%s%s %s", commands[i].group,
		         commands[i].verb ? " " : "", commands[i].verb ? commands[i].verb : "",
		         commands[i].args);
		printf("  %-40s %s\n", head, commands[i].help);
	}
	printf("\nIds are as `list` and `show` print them. Every change is written to the audit "
	       "log\n(actor \"jiayinctl\"). Exit status: 0; 1 on failure, with the storage error's "
	       "code\non stderr; 64 for usage errors.\n");
}

static const command *find_command(const char *group, const char *verb)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].group, group) == 0 &&
		    (!commands[i].verb || (verb && strcmp(commands[i].verb, verb) == 0)))
			return &commands[i];
	return NULL;
}

static int open_store(ctl *c, const char *dir)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		int e = errno;
		if (e == ENOENT)
			return fail(c, STORE_ENOTFOUND,
			            "no data directory at %s (name it with --data DIR; the server "
			            "makes it on its first start)",
			            dir);
		return fail(c, errno_code(e), "cannot use the data directory %s: %s", dir,
		            strerror(e));
	}
	if (!S_ISDIR(st.st_mode))
		return fail(c, STORE_EINVAL,
		            "%s is not a directory (--data names the server's data "
		            "directory)",
		            dir);
	/* Files SQLite makes here (a WAL, a family's database) must stay the server's: root
	 * running jiayinctl on the service user's directory would leave files it cannot write. */
	if (st.st_uid != geteuid())
		return fail(c, STORE_EROFS,
		            "%s belongs to uid %u: run jiayinctl as that user (sudo -u jiayin "
		            "jiayinctl ...) so that what it writes stays the server's",
		            dir, (unsigned)st.st_uid);
	store_options opt;
	store_options_init(&opt);
	opt.dir = dir;
	opt.max_open_families = 4; /* one command touches a family at a time */
	c->data = dir;
	int rc = store_open(&c->s, &opt);
	return rc < 0 ? fail(c, rc, "cannot open the data directory %s", dir) : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"data", required_argument, NULL, 'd'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	ctl c = {0};
	const char *data = DEFAULT_DATA;
	int opt;
	/* '+': options end at the command; what follows belongs to it. */
	while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			help();
			return fflush(stdout) == 0 ? 0 : EXIT_FAIL;
		}
		if (opt == 'd')
			data = optarg;
		else if (opt == 'j')
			c.json = true;
		else
			return usage_fail(&c, "COMMAND [ARGS]", "unknown option");
	}
	if (optind >= argc)
		return usage_fail(&c, "COMMAND [ARGS]", "no command given");
	if (strcmp(argv[optind], "help") == 0) {
		help();
		return fflush(stdout) == 0 ? 0 : EXIT_FAIL;
	}
	const char *group = argv[optind], *verb = optind + 1 < argc ? argv[optind + 1] : NULL;
	const command *cmd = find_command(group, verb);
	if (!cmd)
		return usage_fail(&c, NULL, "unknown command: %s%s%s", group, verb ? " " : "",
		                  verb ? verb : "");
	int first = optind + (cmd->verb ? 2 : 1), nargs = argc - first;
	char usage[96];
	snprintf(usage, sizeof usage, "%s%s%s %s", cmd->group, cmd->verb ? " " : "",
	         cmd->verb ? cmd->verb : "", cmd->args);
	if (nargs < cmd->min_args || nargs > cmd->max_args)
		return usage_fail(&c, usage, "%s takes %s", usage,
		                  cmd->max_args == 0 ? "no arguments" : "these arguments");
	if (!*data)
		return usage_fail(&c, usage, "--data needs a directory");
	if (sodium_init() < 0)
		return fail(&c, STORE_ENOMEM, "libsodium did not initialise");
	int rc = open_store(&c, data);
	if (rc == 0)
		rc = cmd->run(&c, nargs, argv + first);
	store_close(c.s);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "jiayinctl: could not write the output: %s\n", strerror(errno));
		rc = EXIT_FAIL;
	}
	return rc;
}
