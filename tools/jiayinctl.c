/*
 * jiayinctl — the administrator's tool: schools, kiosks and their device tokens, a family's
 * state, its erasure and export, online backups and the check of stored voices, on the data
 * directory through the storage library (never the server: SQLite in WAL mode and the store's
 * busy timeout let it run beside a live jiayin). Single-threaded; one store handle per run;
 * every mutation appends a row to the audit log (actor "jiayinctl"). Tokens are made as the
 * server makes them and only their SHA-256 is stored. Output: readable text, or with --json
 * exactly one JSON object on stdout. Exit status: 0, 1 on failure (message and storage error
 * code on stderr), 64 on bad usage.
 *
 * This file: the command line, the command table and --help, opening the store, and what every
 * command shares (reporting and exit status, rows as JSON and text, whole listings, the audit
 * log). The commands are in jiayinctl_school.c and jiayinctl_family.c.
 */
#include "jiayinctl.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ACTOR "jiayinctl"
#define DEFAULT_DATA "./jiayin-data"
#define LIST_FIRST 16       /* rows asked for first; doubled until a listing comes back short */
#define LIST_MAX (1u << 20) /* rows of one listing at most */

/* ---- output ---- */

/* A JSON string: `s`, or if it is not UTF-8 (a row written by something else), `s` with its
 * bytes above 0x7f as '?'. */
json_t *jtext(const char *s)
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

void print_error_json(const char *code, const char *msg)
{
	json_t *o = json_pack("{s:o}", "error", error_json(code, msg));
	if (o && json_dumpf(o, stdout, JSON_COMPACT) == 0)
		putchar('\n');
	json_decref(o);
}

/* The message on stderr with the error's code; with --json, the error object on stdout. */
int fail(ctl *c, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char shown[sizeof msg]; /* typed ids reach a terminal: control bytes masked */
	fprintf(stderr, "jiayinctl: %s (%s)\n", mask_name(shown, sizeof shown, msg),
	        store_errcode(err));
	if (c->json)
		print_error_json(store_errcode(err), msg);
	return EXIT_FAIL;
}

int usage_fail(ctl *c, const char *usage, const char *fmt, ...)
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
int finish(ctl *c, json_t *obj, int audit_rc)
{
	char msg[256] = "";
	if (audit_rc < 0)
		snprintf(msg, sizeof msg,
		         "the change above was made, but the audit log could not record it: %s",
		         store_strerror(audit_rc));
	return finish_failed(c, obj, audit_rc, msg);
}

int finish_failed(ctl *c, json_t *obj, int rc, const char *msg)
{
	if (c->json) {
		if (!obj)
			return fail(c, STORE_ENOMEM, "could not build the JSON result");
		if (rc < 0 &&
		    json_object_set_new(obj, "error", error_json(store_errcode(rc), msg)) < 0) {
			json_decref(obj);
			return fail(c, STORE_ENOMEM, "could not build the JSON result");
		}
		int r = json_dumpf(obj, stdout, JSON_COMPACT);
		json_decref(obj);
		if (r < 0)
			return fail(c, STORE_ENOMEM, "could not print the JSON result");
		putchar('\n');
	}
	if (rc < 0) {
		fprintf(stderr, "jiayinctl: %s (%s)\n", msg, store_errcode(rc));
		return EXIT_FAIL;
	}
	return 0;
}

/* Seconds since the epoch, as the API gives times; null for 0 ("never"). */
json_t *jtime(int64_t ms)
{
	return ms ? json_integer((json_int_t)(ms / 1000)) : json_null();
}

int64_t lock_end_second(int64_t ms)
{
	return (ms + 999) / 1000 * 1000;
}

const char *opt_id(const store_id *id)
{
	return id->s[0] ? id->s : NULL;
}

const char *fmt_time(int64_t ms, char buf[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms == 0)
		return "never";
	if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, 32, "%lld ms", (long long)ms);
	return buf;
}

/* A stored name in quotes, control characters shown as '?' (names reach a terminal, and one
 * stored before the API refused C1 could carry a terminal's 8-bit CSI, U+009B). */
void print_name(const char *s)
{
	putchar('"');
	while (*s) {
		size_t n = store_control_at(s);
		putchar(n ? '?' : *s);
		s += n ? n : 1;
	}
	putchar('"');
}

const char *mask_name(char *buf, size_t cap, const char *s)
{
	size_t i = 0;
	while (cap && *s && i < cap - 1) {
		size_t n = store_control_at(s);
		buf[i++] = n ? '?' : *s;
		s += n ? n : 1;
	}
	if (cap)
		buf[i] = '\0';
	return buf;
}

/* ---- stdout ---- */

static int output_errno; /* the first failed flush's errno: later calls see a stale one */

int flush_output(void)
{
	if (fflush(stdout) != 0 && !output_errno)
		output_errno = errno ? errno : EIO;
	return ferror(stdout) || output_errno ? -1 : 0;
}

/* The end of the run's output: 0, or the message and EXIT_FAIL. */
static int output_done(int rc)
{
	if (flush_output() == 0)
		return rc;
	if (output_errno)
		fprintf(stderr, "jiayinctl: could not write the output: %s\n",
		        strerror(output_errno));
	else
		fprintf(stderr, "jiayinctl: could not write the output\n");
	return EXIT_FAIL;
}

json_t *device_json(const store_device *d)
{
	return json_pack("{s:s, s:s, s:o, s:s?, s:s?, s:s?, s:o, s:o, s:b, s:o}", "id", d->id.s,
	                 "kind", d->kind == STORE_DEVICE_KIOSK ? "kiosk" : "personal", "name",
	                 jtext(d->name), "member_id", opt_id(&d->member_id), "family_id",
	                 opt_id(&d->family_id), "kiosk_id", opt_id(&d->kiosk_id), "created_at",
	                 jtime(d->created_ms), "last_seen_at", jtime(d->last_seen_ms), "revoked",
	                 d->revoked_ms != 0, "revoked_at", jtime(d->revoked_ms));
}

/* A child's pairing with a kiosk; the PIN's hash stays in the store. A lock whose time is
 * over is no lock (the row keeps its end until the next attempt or a new PIN): locked false,
 * locked_until null, as the server's screen says. */
json_t *link_json(const store_kiosk_link *l)
{
	bool locked = l->locked_until_ms > now_ms();
	return json_pack("{s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:o, s:o, s:b, s:o, s:I, s:o, s:o}",
	                 "link_id", l->id.s, "member_id", l->member_id.s, "name",
	                 jtext(l->member_name), "family_id", l->family_id.s, "kiosk_id",
	                 l->kiosk_id.s, "kiosk_name", jtext(l->kiosk_name), "school_name",
	                 jtext(l->school_name), "avatar", jtext(l->avatar), "paired_at",
	                 jtime(l->created_ms), "pin_set", l->pin_hash[0] != '\0', "pin_set_by",
	                 l->pin_set_by.s[0] ? json_string(l->pin_set_by.s) : json_null(),
	                 "pin_failures", (json_int_t)l->failures, "locked", json_boolean(locked),
	                 "locked_until", jtime(locked ? lock_end_second(l->locked_until_ms) : 0));
}

void print_device(const store_device *d, const char *indent)
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

/* *out (the caller frees it): every row fn lists; the listing calls take no page cursor, so
 * the buffer grows until a listing comes back shorter than it. */
int list_all(store *s, list_fn fn, const char *key, size_t size, void **out, size_t *n)
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

/* ---- the clock, the audit log, errno ---- */

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int audit(ctl *c, const char *action, const char *family_id, const char *target, const char *detail)
{
	return store_audit_append(c->s, now_ms(), ACTOR, action, family_id, target, detail);
}

/* The storage error code closest to a file system errno. */
int errno_code(int e)
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

/* ---- dispatch ---- */

typedef struct command {
	const char *group, *verb; /* verb NULL: a one-word command */
	int min_args, max_args;
	const char *args, *help;
	int (*run)(ctl *c, int argc, char **argv);
	bool looks; /* it only reads: the store is opened read-only (see open_store) */
} command;

static const command commands[] = {
    {"school", "add", 1, 1, "NAME", "add a school; prints its id", cmd_school_add, false},
    {"school", "list", 0, 0, "", "list the schools", cmd_school_list, true},
    {"kiosk", "add", 2, 2, "SCHOOL_ID NAME",
     "register a kiosk and its first device token (shown once)", cmd_kiosk_add, false},
    {"kiosk", "list", 0, 1, "[SCHOOL_ID]", "kiosks with their school and devices", cmd_kiosk_list,
     true},
    {"kiosk", "token", 1, 2, "KIOSK_ID [DEVICE_NAME]",
     "a new device token for a kiosk (a replaced tablet)", cmd_kiosk_token, false},
    {"kiosk", "children", 1, 1, "KIOSK_ID", "the children paired to a kiosk", cmd_kiosk_children,
     true},
    {"kiosk", "unlock", 1, 1, "KIOSK_ID",
     "end a kiosk's hour of wrong PINs (its lock): logins at once", cmd_kiosk_unlock, false},
    {"device", "revoke", 1, 1, "DEVICE_ID", "revoke a kiosk's or a member's device token",
     cmd_device_revoke, false},
    {"family", "show", 1, 1, "FAMILY_ID", "a family: settings, usage, members, devices",
     cmd_family_show, true},
    {"family", "delete", 1, 2, "FAMILY_ID --yes",
     "erase a family, its members, devices and messages", cmd_family_delete, false},
    {"family", "export", 2, 2, "FAMILY_ID FILE.zip",
     "a family's messages and index.json as a zip (a new file)", cmd_family_export, false},
    {"backup", NULL, 1, 1, "DEST_DIR", "an online copy of every database into a new directory",
     cmd_backup, false},
    {"backup-family", NULL, 2, 2, "FAMILY_ID DEST_FILE",
     "an online copy of one family's database into a new file", cmd_backup_family, false},
    {"verify", NULL, 0, 1, "[FAMILY_ID]",
     "check stored voices against their SHA-256 (every family's without an id)", cmd_verify, true},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void help(void)
{
	printf("usage: jiayinctl [--data DIR] [--json] COMMAND [ARGS]\n"
	       "Administer a Jiayin data directory (the server may be running).\n\n"
	       "  --data DIR   the data directory (default %s)\n"
	       "  --json       print one JSON object per command\n"
	       "  -h, --help   this text (after a command: that command's usage)\n\ncommands:\n",
	       DEFAULT_DATA);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char head[64];
		snprintf(head, sizeof head, "%s%s%s %s", commands[i].group,
		         commands[i].verb ? " " : "", commands[i].verb ? commands[i].verb : "",
		         commands[i].args);
		printf("  %-40s %s\n", head, commands[i].help);
	}
	printf(
	    "\nIds are as the API, `school list`, `kiosk list` and `show` print them (a family's:\n"
	    "the family's app, or the request log). Every change is written to the audit log\n"
	    "(actor \"jiayinctl\"). Exit status: 0; 1 on failure (for verify: a damaged or\n"
	    "unreadable voice, or a family it could not check), with the storage error's code\n"
	    "on stderr; 64 for usage errors.\n");
}

static const command *find_command(const char *group, const char *verb)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].group, group) == 0 &&
		    (!commands[i].verb || (verb && strcmp(commands[i].verb, verb) == 0)))
			return &commands[i];
	return NULL;
}

/* "GROUP VERB ARGS", as the usage line shows a command; returns buf. */
static const char *command_usage(const command *cmd, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%s%s%s%s", cmd->group, cmd->verb ? " " : "",
	         cmd->verb ? cmd->verb : "", *cmd->args ? " " : "", cmd->args);
	return buf;
}

static int cannot_use(ctl *c, const char *dir, int e)
{
	return fail(c, errno_code(e), "cannot use the data directory %s: %s", dir, strerror(e));
}

/* read_only: the command only reads (the lists, family show, verify), and the store writes
 * nothing either (see store_options.read_only): it may run on a backup's copy or a read-only
 * mount, and leaves every file there as it was (the review: school list made quarantine/ in a
 * backup's folder, family show turned its copy's journal to WAL, and on a read-only mount
 * neither could open it). */
static int open_store(ctl *c, const char *dir, bool read_only)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		if (errno == ENOENT)
			return fail(c, STORE_ENOTFOUND,
			            "no data directory at %s (name it with --data DIR; the server "
			            "makes it on its first start)",
			            dir);
		return cannot_use(c, dir, errno);
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
	/* A directory the server never started on (a typo, a home directory, /) is not made into
	 * one: opening the store would create directory.db, families/ and quarantine/ there. */
	char marker[4096];
	snprintf(marker, sizeof marker, "%s/directory.db", dir);
	if (access(marker, F_OK) != 0) {
		if (errno == ENOENT)
			return fail(c, STORE_ENOTFOUND,
			            "%s is not a Jiayin data directory (it has no directory.db; the "
			            "server makes one on its first start)",
			            dir);
		return cannot_use(c, dir, errno);
	}
	store_options opt;
	store_options_init(&opt);
	opt.dir = dir;
	opt.max_open_families = 4; /* one command touches a family at a time */
	/* An older server may still run on it (a backup before an upgrade): its data stays its
	 * own, not migrated away under it (the review: the older server could not start again). */
	opt.upgrade_directory = 0;
	/* A restored copy's floor is the server's to raise as it first opens it: a backup's copy
	 * opened here (family show, export or backup-family from a backup folder) keeps it for
	 * every restore of it (the review: raised here, a copy put back twice numbered its
	 * changes alike, and phones missed messages without a reset). */
	opt.apply_floor = 0;
	opt.read_only = read_only;
	c->data = dir;
	int rc = store_open(&c->s, &opt);
	/* The directory may be a backup taken before an upgrade (verify checks backups' copies):
	 * a server started on it, as the storage's message says, would upgrade it for good, and
	 * the older version, which that backup is kept to go back to, would refuse it. */
	if (rc == STORE_EOLD)
		return fail(
		    c, rc,
		    "cannot open the data directory %s: it was written by an older version "
		    "of Jiayin. A live one: start this version's server on it first (it "
		    "upgrades the data), or use the jiayinctl of the version that runs. A "
		    "backup: use the jiayinctl of the version that made it; a server started "
		    "on it would upgrade it, and that version could no longer restore it",
		    dir);
	return rc < 0
	           ? fail(c, rc, "cannot open the data directory %s: %s", dir, store_strerror(rc))
	           : 0;
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
	/* A closed pipe (`| head`, `| true`) is a failed write, EPIPE, as a full disk is: SIGPIPE
	 * killed the tool between a change and what follows it (a kiosk token nobody saw stayed
	 * valid, unrevoked). */
	signal(SIGPIPE, SIG_IGN);
	/* '+': options end at the command; what follows belongs to it. */
	while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			help();
			return output_done(0);
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
		return output_done(0);
	}
	const char *group = argv[optind], *verb = optind + 1 < argc ? argv[optind + 1] : NULL;
	const command *cmd = find_command(group, verb);
	char usage[96];
	/* COMMAND --help is its usage, never an argument: `school add --help` added a school
	 * named "--help", `kiosk token ID -h` a live token for a device named "-h". */
	for (int i = optind + 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") != 0 && strcmp(argv[i], "-h") != 0)
			continue;
		if (!cmd) {
			help();
			return output_done(0);
		}
		printf("usage: jiayinctl [--data DIR] [--json] %s\n%s\n",
		       command_usage(cmd, usage, sizeof usage), cmd->help);
		return output_done(0);
	}
	if (!cmd) { /* typed bytes reach a terminal: control bytes masked, as names are */
		char g[80], v[80];
		return usage_fail(&c, NULL, "unknown command: %s%s%s",
		                  mask_name(g, sizeof g, group), verb ? " " : "",
		                  verb ? mask_name(v, sizeof v, verb) : "");
	}
	int first = optind + (cmd->verb ? 2 : 1), nargs = argc - first;
	command_usage(cmd, usage, sizeof usage);
	/* jiayinctl's own options after the command are a mistake, not names or ids: `school add
	 * --json` added a school named "--json". */
	for (int i = first; i < argc; i++)
		if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "--data") == 0 ||
		    strncmp(argv[i], "--data=", 7) == 0)
			return usage_fail(&c, usage, "%s: options come before the command",
			                  argv[i][6] == '=' ? "--data" : argv[i]);
	if (nargs < cmd->min_args || nargs > cmd->max_args)
		return usage_fail(&c, usage, "%s takes %s", usage,
		                  cmd->max_args == 0 ? "no arguments" : "these arguments");
	if (!*data)
		return usage_fail(&c, usage, "--data needs a directory");
	if (sodium_init() < 0)
		return fail(&c, STORE_ENOMEM, "libsodium did not initialise");
	int rc = open_store(&c, data, cmd->looks);
	if (rc == 0)
		rc = cmd->run(&c, nargs, argv + first);
	store_close(c.s);
	return output_done(rc);
}
