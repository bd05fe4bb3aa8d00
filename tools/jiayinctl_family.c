/*
 * jiayinctl_family.c — jiayinctl's commands for a family's data: family show, family delete
 * (with its phones' unfinished uploads), family export (a zip, a new 0600 file), the online
 * backups: backup (every database and the server's key into a new directory) and backup-family,
 * and verify (each stored voice against its SHA-256, beside the running server).
 */
#include "jiayinctl.h"
#include "secret.h"
#include "uploads.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *member_json(const store_member *m)
{
	json_t *o = json_pack("{s:s, s:o, s:s, s:o, s:o}", "id", m->id.s, "name", jtext(m->name),
	                      "role", store_role_name(m->role), "avatar", jtext(m->avatar),
	                      "created_at", jtime(m->created_ms));
	if (o && m->removed_ms && json_object_set_new(o, "left_at", jtime(m->removed_ms)) < 0)
		json_decref(o), o = NULL;
	return o;
}

/* For list_all(): a family's members (then its former members), devices and kiosk pairings. */
static int list_members(store *s, const char *family_id, void *out, size_t max, size_t *n)
{
	return store_members_all(s, family_id, out, max, n);
}

static int list_family_devices(store *s, const char *family_id, void *out, size_t max, size_t *n)
{
	return store_devices_list(s, family_id, out, max, n);
}

static int list_family_links(store *s, const char *family_id, void *out, size_t max, size_t *n)
{
	return store_kiosk_links_of_family(s, family_id, out, max, n);
}

/* ---- the commands ---- */

/* counted false: the mailbox could not be read (see mailbox_look), its usage not known. */
static void print_family(const store_family *f, uint64_t usage, bool counted, const store_member *m,
                         size_t nm, const store_device *d, size_t nd, const store_kiosk_link *l,
                         size_t nl)
{
	char t[32];
	printf("family %s  ", f->id.s);
	print_name(f->name);
	printf("\n  created    %s\n  usage      ", fmt_time(f->created_ms, t));
	if (counted)
		printf("%llu bytes", (unsigned long long)usage);
	else
		printf("not counted");
	if (f->quota_bytes)
		printf(" of a %llu-byte quota\n", (unsigned long long)f->quota_bytes);
	else
		printf(" (no quota)\n");
	if (f->retention_days)
		printf("  retention  %u days\n", f->retention_days);
	else
		printf("  retention  keeps messages for ever\n");
	size_t now = 0; /* the members; those who left follow them */
	while (now < nm && !m[now].removed_ms)
		now++;
	printf("members (%zu):\n", now);
	for (size_t i = 0; i < nm; i++) {
		if (i == now)
			printf("former members (%zu):\n", nm - now);
		printf("  %-9s %s  ", store_role_name(m[i].role), m[i].id.s);
		print_name(m[i].name);
		printf("  since %s", fmt_time(m[i].created_ms, t));
		if (m[i].removed_ms)
			printf(", left %s", fmt_time(m[i].removed_ms, t));
		printf("\n");
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

/*
 * The family's usage; a family whose mailbox file is missing (an older directory.db restored
 * beside newer families/, a file lost) has none, *missing set, so that it can be seen and
 * erased (the review: both said "no family", and only a parent's API call could erase it).
 * So has one whose mailbox the store found damaged as it opened it here (a read-write store:
 * family delete, export, backup-family), and set aside in quarantine/ as the server would (the
 * review: show and delete failed "could not be read" on the first run, and only a second one saw
 * the family missing).
 */
static int mailbox_usage(ctl *c, const store_family *f, uint64_t *usage, bool *missing)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/families/%s.db", c->data, f->id.s);
	*missing = stat(path, &st) != 0 && errno == ENOENT;
	int rc = *missing ? 0 : store_mailbox_usage(c->s, f->id.s, usage);
	if (rc == STORE_ECORRUPT && stat(path, &st) != 0 && errno == ENOENT)
		*missing = true, *usage = 0, rc = 0;
	return rc;
}

/* Whether quarantine/ holds a damaged copy of the family's mailbox (ID.TIME.db). */
static bool quarantined(ctl *c, const char *family_id)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/quarantine", c->data);
	DIR *d = opendir(dir);
	bool found = false;
	struct dirent *e;
	while (d && !found && (e = readdir(d)))
		found = strncmp(e->d_name, family_id, STORE_ID_LEN) == 0 &&
		        e->d_name[STORE_ID_LEN] == '.';
	if (d)
		closedir(d);
	return found;
}

/* What family show found of a family's mailbox. */
typedef enum mailbox_state {
	MAILBOX_READ,    /* its usage counted */
	MAILBOX_MISSING, /* no file (set aside in quarantine/ before, or lost) */
	MAILBOX_DAMAGED, /* its file found damaged, or another family's: left where it is */
	MAILBOX_OLDER,   /* of an older version, not yet opened by this version's server */
} mailbox_state;

/*
 * family show's look at the mailbox. The store is read-only for show (a look changes nothing
 * on disk: it may be a backup's folder, or a read-only mount of one; the review: a look into a
 * backup made quarantine/ in it and turned its copies' journal to WAL, and on a read-only
 * mount failed to open at all), so a damaged mailbox is not set aside here, nor an older one
 * migrated: each is said, and the family shown all the same (its members and phones are in
 * the directory). The server sets a damaged one aside as it next opens it, and family delete
 * erases it; the server upgrades an older one as it first opens it.
 */
static int mailbox_look(ctl *c, const store_family *f, uint64_t *usage, mailbox_state *state)
{
	bool missing = false;
	int rc = mailbox_usage(c, f, usage, &missing);
	*state = missing ? MAILBOX_MISSING : MAILBOX_READ;
	if (rc == STORE_ECORRUPT || rc == STORE_EOLD) {
		*state = rc == STORE_ECORRUPT ? MAILBOX_DAMAGED : MAILBOX_OLDER;
		*usage = 0;
		rc = 0;
	}
	return rc;
}

/* A family without a mailbox file has nothing to export or copy: said as it is, with where
 * its damaged copy went if one was set aside (the store's "damaged" named a file that was
 * not there: the review). */
static int no_mailbox(ctl *c, const char *family_id, const char *what)
{
	return fail(c, STORE_ECORRUPT,
	            "family %s has no mailbox file (families/%s.db is missing%s): %s; family "
	            "show says what is left of it",
	            family_id, family_id,
	            quarantined(c, family_id)
	                ? "; a damaged copy was set aside in quarantine/, restore it from a backup"
	                : "; its messages are gone",
	            what);
}

int cmd_family_show(ctl *c, int argc, char **argv)
{
	(void)argc;
	store_family f;
	store_member *m = NULL;
	store_device *d = NULL;
	store_kiosk_link *l = NULL;
	size_t nm = 0, nd = 0, nl = 0;
	uint64_t usage = 0;
	json_t *obj = NULL;
	mailbox_state state = MAILBOX_READ;
	int rc = store_family_get(c->s, argv[0], &f);
	if (rc == 0)
		rc = mailbox_look(c, &f, &usage, &state);
	if (rc == 0)
		rc = list_all(c->s, list_members, f.id.s, sizeof *m, (void **)&m, &nm);
	if (rc == 0)
		rc = list_all(c->s, list_family_devices, f.id.s, sizeof *d, (void **)&d, &nd);
	if (rc == 0)
		rc = list_all(c->s, list_family_links, f.id.s, sizeof *l, (void **)&l, &nl);
	bool counted = state == MAILBOX_READ || state == MAILBOX_MISSING;
	if (rc == 0 && c->json) {
		static const char *const flag[] = {NULL, "mailbox_missing", "mailbox_damaged",
		                                   "mailbox_older"};
		json_t *ma = json_array(), *da = json_array(), *la = json_array();
		for (size_t i = 0; i < nm; i++)
			json_array_append_new(ma, member_json(&m[i]));
		for (size_t i = 0; i < nd; i++)
			json_array_append_new(da, device_json(&d[i]));
		for (size_t i = 0; i < nl; i++)
			json_array_append_new(la, link_json(&l[i]));
		bool whole = json_array_size(ma) == nm && json_array_size(da) == nd &&
		             json_array_size(la) == nl;
		obj = json_pack("{s:{s:s, s:o, s:o, s:I, s:I, s:o}, s:o, s:o, s:o}", "family", "id",
		                f.id.s, "name", jtext(f.name), "created_at", jtime(f.created_ms),
		                "quota_bytes", (json_int_t)f.quota_bytes, "retention_days",
		                (json_int_t)f.retention_days, "usage_bytes",
		                counted ? json_integer((json_int_t)usage) : json_null(), "members",
		                ma, "devices", da, "kiosk_links", la);
		if (obj && flag[state] &&
		    json_object_set_new(json_object_get(obj, "family"), flag[state], json_true()) <
		        0)
			whole = false;
		if (!whole)
			json_decref(obj), obj = NULL;
	} else if (rc == 0) {
		print_family(&f, usage, counted, m, nm, d, nd, l, nl);
		if (state == MAILBOX_MISSING)
			printf(
			    "its mailbox file (families/%s.db) is missing%s; family delete erases "
			    "what is left\n",
			    f.id.s,
			    quarantined(c, f.id.s)
			        ? ": a damaged copy was set aside in quarantine/ (restore it from "
			          "a backup, or erase the family)"
			        : ": its messages are gone");
		else if (state == MAILBOX_DAMAGED)
			printf(
			    "its mailbox file (families/%s.db) is damaged, left where it is: the "
			    "server sets it aside in quarantine/ as it next opens it; restore it "
			    "from a backup, or erase the family (family delete)\n",
			    f.id.s);
		else if (state == MAILBOX_OLDER)
			printf(
			    "its mailbox file (families/%s.db) is of an older version, as it was "
			    "left: the server upgrades it as it first opens it, and its usage is "
			    "counted then\n",
			    f.id.s);
	}
	free(m);
	free(d);
	free(l);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no family %s", argv[0])
		                             : fail(c, rc, "the family could not be read");
	return finish(c, obj, 0);
}

/*
 * The family's unfinished resumable uploads (data/uploads/DEVICE/ID.*): every upload whose
 * record names the family, on any device: its phones', and the kiosks' its children recorded
 * at (a kiosk's directory holds other families' uploads too, which stay). The server's own
 * scan (server/uploads.c, without its event loop), as its erasure of a family runs it.
 */
static int remove_uploads(ctl *c, const char *family_id, unsigned *removed)
{
	srv_upload_dir *d = NULL;
	*removed = 0;
	int rc = srv_upload_dir_open(&d, c->data, 0, 0);
	if (rc == 0)
		rc = srv_upload_remove_family(d, family_id, removed);
	srv_upload_dir_close(d);
	return rc;
}

int cmd_family_delete(ctl *c, int argc, char **argv)
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
	bool missing = false;
	int rc = store_family_get(c->s, id, &f);
	if (rc == 0)
		rc = mailbox_usage(c, &f, &usage, &missing);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no family %s", id)
		                             : fail(c, rc, "the family could not be read");
	if (!yes) {
		/* A refusal, not a mistake: no usage text, but the usage exit status. */
		char msg[512], name[sizeof f.name];
		snprintf(msg, sizeof msg,
		         "not deleting family %s (\"%s\", %llu bytes of messages%s) without --yes: "
		         "it erases its members, devices and every message for ever",
		         f.id.s, mask_name(name, sizeof name, f.name), (unsigned long long)usage,
		         missing ? "; its mailbox file is missing" : "");
		fprintf(stderr, "jiayinctl: %s\n", msg);
		if (c->json)
			print_error_json("usage", msg);
		return EXIT_USAGE;
	}
	if ((rc = store_family_delete(c->s, f.id.s, now_ms())) < 0)
		return fail(c, rc, "family %s was not deleted", f.id.s);
	/* Its unfinished uploads go after its rows: the server takes none of its tokens now. */
	unsigned uploads = 0;
	int urc = remove_uploads(c, f.id.s, &uploads);
	int arc = audit(c, "family.delete", f.id.s, f.id.s, NULL);
	if (urc < 0) {
		/* The family is gone; what stays of its uploads, the server's expiry removes. */
		if (c->json)
			print_error_json("storage_io_error", "family deleted, but not all of its "
			                                     "unfinished uploads were removed");
		fprintf(stderr,
		        "jiayinctl: family %s is deleted, but its unfinished uploads in %s/uploads "
		        "could not all be removed (%u were): %s; the server's expiry removes what "
		        "is left\n",
		        f.id.s, c->data, uploads,
		        urc > -10000 ? strerror(-urc) : "an upload record does not read");
		return EXIT_FAIL;
	}
	if (!c->json)
		printf("family %s deleted: its members, devices, messages and %u unfinished "
		       "upload%s are erased\n",
		       f.id.s, uploads, uploads == 1 ? "" : "s");
	return finish(c, c->json ? json_pack("{s:s}", "deleted", f.id.s) : NULL, arc);
}

/*
 * A new file for `path` that has no name yet: O_TMPFILE in path's directory, so that a kill
 * at any moment leaves nothing; where the file system has no O_TMPFILE, a hidden name beside
 * it (.NAME.partial-PID, in *hidden; "" for none). Mode 0600. -errno on failure.
 */
/* The directory path is in ("." for a bare name, "/" for the root's files); false if too
 * long. */
static bool dir_of(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');
	int n = slash ? snprintf(dir, cap, "%.*s", (int)(slash - path + (slash == path)), path)
	              : snprintf(dir, cap, ".");
	return n >= 0 && (size_t)n < cap;
}

static int open_unnamed(const char *path, char *hidden, size_t cap)
{
	char dir[4096];
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	hidden[0] = '\0';
	if (!*base)
		return -EISDIR;
	if (!dir_of(path, dir, sizeof dir))
		return -ENAMETOOLONG;
	int n, fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd >= 0 ? fd : -errno;
	n = snprintf(hidden, cap, "%s/.%s.partial-%ld", dir, base, (long)getpid());
	if (n < 0 || (size_t)n >= cap)
		return hidden[0] = '\0', -ENAMETOOLONG;
	unlink(hidden); /* a leftover of ours, from before a restart that gave us this id */
	fd = open(hidden, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		hidden[0] = '\0';
		return -e;
	}
	return fd;
}

/* The synced file fd becomes `path` (never over a file that appeared meanwhile); its
 * directory is synced. 0 or -errno. */
static int publish(int fd, const char *hidden, const char *path)
{
	char proc[64];
	int rc;
	if (hidden[0]) {
		rc = link(hidden, path) == 0 ? 0 : -errno;
	} else {
		snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
		rc = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno;
		if (rc == -ENOENT && access("/proc/self/fd", F_OK) != 0) /* no /proc: root can */
			rc = linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0 ? 0 : -errno;
	}
	if (rc < 0)
		return rc;
	char dir[4096];
	int dfd =
	    dir_of(path, dir, sizeof dir) ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd >= 0) {
		if (fsync(dfd) != 0)
			rc = -errno;
		close(dfd);
	}
	return rc;
}

/* The messages store_family_verify found wrong, or the export left out, by kind: their ids;
 * the rows of malformed ones, which have none. */
typedef struct verify_found {
	json_t *damaged, *unreadable, *malformed;
} verify_found;

static void note_wrong(void *arg, int64_t row, const char *message_id, int why)
{
	verify_found *v = arg;
	if (why == STORE_EINVAL)
		json_array_append_new(v->malformed, json_integer((json_int_t)row));
	else
		json_array_append_new(why == STORE_EIO ? v->unreadable : v->damaged,
		                      json_string(message_id));
}

/* "LEFT OUT ..." for the messages of ids (a JSON array of their ids), when there are any. */
static void print_left_out(json_t *ids, const char *what)
{
	size_t n = json_array_size(ids);
	if (!n)
		return;
	printf("LEFT OUT %zu message%s %s:", n, n == 1 ? "" : "s", what);
	for (size_t i = 0; i < n; i++)
		printf("%s %s", i ? "," : "", json_string_value(json_array_get(ids, i)));
	putchar('\n');
}

/*
 * The zip is written to a file without a name and linked to FILE.zip only when it is whole
 * and synced: a failed, interrupted or killed export leaves no file under the name (a cut zip
 * of a family's voices there would look like an export and block the next one). Rows of a
 * tampered or damaged mailbox whose message id is malformed are left out of it, and said so
 * by row (the review: they were left out without a word).
 */
int cmd_family_export(ctl *c, int argc, char **argv)
{
	(void)argc;
	const char *id = argv[0], *path = argv[1];
	char hidden[4200];
	struct stat st;
	store_family f;
	uint64_t bytes = 0;
	int rc = store_family_get(c->s, id, &f);
	uint64_t usage = 0;
	bool missing = false;
	if (rc == 0)
		rc = mailbox_usage(c, &f, &usage, &missing);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no family %s", id)
		                             : fail(c, rc, "the family could not be read");
	if (missing)
		return no_mailbox(c, f.id.s, "nothing was exported");
	/* Voices of a family: readable by the administrator only; never over an existing file. */
	if (lstat(path, &st) == 0)
		return fail(c, STORE_EEXIST, "cannot create %s: %s", path, strerror(EEXIST));
	int fd = open_unnamed(path, hidden, sizeof hidden);
	if (fd < 0)
		return fail(c, errno_code(-fd), "cannot create %s: %s", path, strerror(-fd));
	int e = 0;
	bool linked = false;
	verify_found found = {json_array(), json_array(), json_array()};
	json_t *left_out = found.malformed;
	rc = left_out && found.unreadable && found.damaged
	         ? store_export_family(c->s, f.id.s, fd, &bytes, note_wrong, &found)
	         : STORE_ENOMEM;
	if (rc < 0)
		e = errno; /* the file system's reason (No space left on device), or 0 */
	if (rc == 0 && fsync(fd) != 0)
		e = errno, rc = errno_code(e);
	if (rc == 0 && (e = -publish(fd, hidden, path)) != 0)
		rc = errno_code(e);
	linked = rc == 0;
	if (close(fd) != 0 && rc == 0)
		e = errno, rc = errno_code(e);
	if (linked && rc < 0)
		unlink(path);
	if (hidden[0])
		unlink(hidden);
	if (rc < 0) {
		json_decref(left_out);
		json_decref(found.unreadable);
		json_decref(found.damaged);
		return fail(c, rc, "family %s was not exported: %s", f.id.s,
		            e == EEXIST ? "the file appeared meanwhile"
		            : e         ? strerror(e)
		                        : store_strerror(rc));
	}
	int arc = audit(c, "family.export", f.id.s, f.id.s, path);
	size_t nleft = json_array_size(left_out);
	if (!c->json) {
		printf("family %s exported to %s: %llu bytes\n", f.id.s, path,
		       (unsigned long long)bytes);
		if (nleft) {
			printf("LEFT OUT %zu message row%s whose id is malformed (a tampered or "
			       "damaged mailbox; jiayinctl verify reports them): row",
			       nleft, nleft == 1 ? "" : "s");
			for (size_t i = 0; i < nleft; i++)
				printf("%s %lld", i ? "," : "",
				       (long long)json_integer_value(json_array_get(left_out, i)));
			putchar('\n');
		}
		print_left_out(
		    found.unreadable,
		    "the disk failed to read (an I/O error: see its kernel log; jiayinctl "
		    "verify names them unreadable)");
		print_left_out(found.damaged, "whose stored audio is damaged (jiayinctl verify "
		                              "reports them)");
		json_decref(left_out);
		json_decref(found.unreadable);
		json_decref(found.damaged);
	}
	return finish(c,
	              c->json ? json_pack("{s:s, s:o, s:I, s:o, s:o, s:o}", "family_id", f.id.s,
	                                  "file", jtext(path), "bytes", (json_int_t)bytes,
	                                  "left_out_rows", left_out, "unreadable", found.unreadable,
	                                  "damaged", found.damaged)
	                      : NULL,
	              arc);
}

/*
 * Whether the data directory was made with a server key: the server records its fingerprint
 * (into fp) in the directory database when it makes or first finds one. 1, 0, or a storage
 * code.
 */
static int key_recorded(ctl *c, uint8_t fp[SRV_SECRET_FINGERPRINT_LEN])
{
	size_t n = 0;
	int rc = store_meta_get(c->s, "server_key_fingerprint", fp, SRV_SECRET_FINGERPRINT_LEN, &n);
	return rc == 0 && n == SRV_SECRET_FINGERPRINT_LEN ? 1
	       : rc == 0 || rc == STORE_ENOTFOUND         ? 0
	                                                  : rc;
}

/*
 * Whether data/secret is the key the directory was made with (its fingerprint `known`), as
 * the server checks at start: 0, or -errno (-EINVAL: not a 32-byte file; -EKEYREJECTED: another
 * key). The running server keeps its key in memory, so a key file damaged or replaced since
 * it started goes unnoticed until a restore (the review: the backup copied a 0-byte key,
 * said "the server's key", and the restored server refused to start).
 */
static int key_matches(ctl *c, const uint8_t known[SRV_SECRET_FINGERPRINT_LEN])
{
	uint8_t key[SRV_SECRET_LEN], fp[SRV_SECRET_FINGERPRINT_LEN];
	int rc = srv_secret_read(c->data, key);
	if (rc < 0)
		return rc;
	srv_secret_fingerprint(key, fp);
	sodium_memzero(key, sizeof key);
	return sodium_memcmp(fp, known, sizeof fp) == 0 ? 0 : -EKEYREJECTED;
}

/* A backup's or a copy's failure: errno is the file system's reason, 0 when it was not one. */
static const char *reason(int rc, int e)
{
	return e ? strerror(e) : store_strerror(rc);
}

/* store_backup_all's report of a damaged family: its id into the JSON array arg. */
static void note_damaged(void *arg, const char *family_id)
{
	json_array_append_new(arg, json_string(family_id));
}

/*
 * Every database and the server's key (data/secret: kiosk PINs, signed URLs and pairing
 * codes depend on it) into a new directory, the key copied in before the directory gets its
 * name: a backup is never named DEST without the key a restore needs. A data directory
 * without a key file is backed up without one only if it never had a key (no fingerprint).
 * A family whose mailbox is damaged is backed up without it and said on stderr: the backup
 * succeeds for every other family.
 */
int cmd_backup(ctl *c, int argc, char **argv)
{
	(void)argc;
	const char *dest = argv[0];
	char secret[4096];
	struct stat st;
	unsigned families = 0;
	int n = snprintf(secret, sizeof secret, "%s/secret", c->data);
	if (n < 0 || (size_t)n >= sizeof secret)
		return fail(c, STORE_EINVAL, "the data directory's path is too long");
	uint8_t fingerprint[SRV_SECRET_FINGERPRINT_LEN];
	int known = key_recorded(c, fingerprint);
	if (known < 0)
		return fail(c, known, "the directory database could not be read");
	bool has_key = lstat(secret, &st) == 0;
	if (!has_key && errno != ENOENT) {
		int e = errno;
		return fail(c, errno_code(e), "cannot use %s: %s; no backup was made", secret,
		            strerror(e));
	}
	if (!has_key && known)
		return fail(c, STORE_ENOTFOUND,
		            "%s is missing, but this data directory was made with a key: a backup "
		            "without it would lock every child out of the kiosks and break signed "
		            "URLs; restore the key from an earlier backup. No backup was made",
		            secret);
	int krc = has_key && known ? key_matches(c, fingerprint) : 0;
	if (krc == -EKEYREJECTED || krc == -EINVAL)
		return fail(c, STORE_ECORRUPT,
		            "%s is %s: the server would refuse to start on a backup with it, "
		            "and without it every child is locked out of the kiosks; restore "
		            "the key from an earlier backup (a running server keeps the key it "
		            "started with). No backup was made",
		            secret,
		            krc == -EINVAL ? "damaged (not a file of 32 bytes)"
		                           : "not the key this data directory was made with");
	if (krc < 0)
		return fail(c, errno_code(-krc), "cannot read %s: %s; no backup was made", secret,
		            strerror(-krc));
	const char *extra[] = {has_key ? secret : NULL, NULL};
	json_t *damaged = json_array();
	if (!damaged)
		return fail(c, STORE_ENOMEM, "no memory; no backup was made");
	int rc = store_backup_all(c->s, dest, extra, &families, note_damaged, damaged);
	int e = errno;
	if (rc < 0)
		json_decref(damaged);
	if (rc == STORE_EEXIST)
		return fail(c, rc, "%s exists already: a backup goes into a new directory", dest);
	if (rc < 0)
		return fail(c, rc, "the backup failed (%s); nothing was left in %s", reason(rc, e),
		            dest);
	size_t ndamaged = json_array_size(damaged);
	char detail[64];
	snprintf(detail, sizeof detail, "%u families, %zu damaged", families, ndamaged);
	int arc = audit(c, "backup.all", NULL, dest, detail);
	if (!c->json)
		printf("backup in %s: %sthe directory and %u famil%s\n", dest,
		       has_key ? "the server's key, " : "no server key (none made yet), ", families,
		       families == 1 ? "y" : "ies");
	for (size_t i = 0; i < ndamaged; i++)
		fprintf(
		    stderr,
		    "jiayinctl: family %s has a damaged mailbox: this backup has its members and "
		    "phones but not its messages; put an earlier backup's copy of them back "
		    "(docs/operations.md, Backups)\n",
		    json_string_value(json_array_get(damaged, i)));
	if (!c->json) {
		json_decref(damaged);
		return finish(c, NULL, arc);
	}
	return finish(c,
	              json_pack("{s:o, s:I, s:b, s:o}", "backup", jtext(dest), "families",
	                        (json_int_t)families, "server_key", has_key, "damaged", damaged),
	              arc);
}

int cmd_backup_family(ctl *c, int argc, char **argv)
{
	(void)argc;
	const char *id = argv[0], *dest = argv[1];
	store_family f;
	uint64_t usage = 0;
	bool missing = false;
	int rc = store_family_get(c->s, id, &f);
	if (rc == 0)
		rc = mailbox_usage(c, &f, &usage, &missing);
	if (rc < 0)
		return rc == STORE_ENOTFOUND ? fail(c, rc, "no family %s", id)
		                             : fail(c, rc, "the family could not be read");
	if (missing)
		return no_mailbox(c, f.id.s, "no backup was made");
	rc = store_backup_family(c->s, id, dest);
	int e = errno;
	if (rc == STORE_EEXIST)
		return fail(c, rc, "%s exists already: a backup goes into a new file", dest);
	if (rc < 0)
		return fail(c, rc, "family %s was not backed up to %s: %s", id, dest,
		            e == EISDIR ? "it names a directory, not a new file" : reason(rc, e));
	int arc = audit(c, "backup.family", id, dest, NULL);
	if (!c->json)
		printf("family %s backed up to %s\n", id, dest);
	return finish(
	    c, c->json ? json_pack("{s:s, s:o}", "family_id", id, "backup", jtext(dest)) : NULL,
	    arc);
}

/* ---- verify ---- */

#define VERIFY_PAGE 64 /* families listed at a time */

typedef struct verify_totals {
	uint64_t messages, bytes, damaged, unreadable, malformed;
	unsigned families, damaged_families, unchecked;
	int first_error; /* of the first family that could not be checked */
} verify_totals;

/* A damaged or unreadable message as the text shows it: its id, when it was sent and its
 * size (when its row still reads). */
static void print_damaged(ctl *c, const char *family_id, const char *message_id, const char *what)
{
	store_message m;
	char t[32];
	printf("  %smessage %s", what, message_id);
	if (store_message_get(c->s, family_id, message_id, &m) == 0)
		printf("  sent %s, %llu bytes", fmt_time(m.created_ms, t),
		       (unsigned long long)m.bytes);
	putchar('\n');
}

/* One family checked: a line of text (flushed: a long run shows its progress), or its object
 * appended to `out` for --json; counted into *t. */
static void verify_family(ctl *c, const store_family *f, json_t *out, verify_totals *t)
{
	store_verify_counts n;
	verify_found v = {json_array(), json_array(), json_array()};
	json_t *o = NULL;
	int rc = v.damaged && v.unreadable && v.malformed
	             ? store_family_verify(c->s, f->id.s, note_wrong, &v, &n)
	             : STORE_ENOMEM;
	if (rc == STORE_ENOTFOUND &&
	    store_family_get(c->s, f->id.s, &(store_family){0}) == STORE_ENOTFOUND) {
		json_decref(v.damaged); /* erased meanwhile: nothing to check any more */
		json_decref(v.unreadable);
		json_decref(v.malformed);
		return;
	}
	t->families++;
	if (rc < 0) {
		char msg[256];
		/* verify reads the store read-only: a damaged mailbox stays where it is, one of
		 * an older version is not migrated (the server does that as it opens it). */
		const char *why = store_strerror(rc);
		if (rc == STORE_ECORRUPT)
			why = "its mailbox is missing, or damaged (as it opened, or in its list of "
			      "messages): left where it is; its voices were not checked";
		else if (rc == STORE_EOLD)
			why =
			    "its mailbox is of an older version, which verify does not migrate (it "
			    "writes nothing): the server migrates it when it opens the family; its "
			    "voices were not checked";
		snprintf(msg, sizeof msg, "%s", why);
		t->unchecked++;
		if (!t->first_error)
			t->first_error = rc;
		if (c->json)
			o = json_pack("{s:s, s:o, s:{s:s, s:s}}", "family_id", f->id.s, "name",
			              jtext(f->name), "error", "code", store_errcode(rc), "message",
			              msg);
		else {
			printf("family %s  ", f->id.s);
			print_name(f->name);
			printf(": NOT CHECKED: %s (%s)\n", msg, store_errcode(rc));
		}
	} else {
		t->messages += n.messages;
		t->bytes += n.bytes;
		t->damaged += n.damaged;
		t->unreadable += n.unreadable;
		t->malformed += n.malformed;
		t->damaged_families += n.damaged > 0;
		if (c->json) {
			o = json_pack("{s:s, s:o, s:I, s:I, s:O, s:O, s:O}", "family_id", f->id.s,
			              "name", jtext(f->name), "messages", (json_int_t)n.messages,
			              "bytes", (json_int_t)n.bytes, "damaged", v.damaged,
			              "unreadable", v.unreadable, "malformed", v.malformed);
		} else {
			printf("family %s  ", f->id.s);
			print_name(f->name);
			printf(": %llu voice%s (%llu bytes) checked, ",
			       (unsigned long long)n.messages, n.messages == 1 ? "" : "s",
			       (unsigned long long)n.bytes);
			if (!n.damaged && !n.unreadable && !n.malformed)
				printf("all as stored");
			else
				printf("%llu DAMAGED", (unsigned long long)n.damaged);
			if (n.unreadable)
				printf(", %llu UNREADABLE (the disk failed to read them)",
				       (unsigned long long)n.unreadable);
			if (n.malformed)
				printf(", %llu MALFORMED (message rows whose id is no id: a "
				       "tampered or damaged mailbox; not checked)",
				       (unsigned long long)n.malformed);
			printf("%s\n", n.damaged || n.unreadable || n.malformed ? ":" : "");
			for (size_t i = 0; i < json_array_size(v.damaged); i++)
				print_damaged(c, f->id.s,
				              json_string_value(json_array_get(v.damaged, i)), "");
			for (size_t i = 0; i < json_array_size(v.unreadable); i++)
				print_damaged(c, f->id.s,
				              json_string_value(json_array_get(v.unreadable, i)),
				              "unreadable ");
			for (size_t i = 0; i < json_array_size(v.malformed); i++) {
				json_int_t row = json_integer_value(json_array_get(v.malformed, i));
				printf("  message row %lld: its id is malformed\n", (long long)row);
			}
		}
	}
	json_decref(v.damaged);
	json_decref(v.unreadable);
	json_decref(v.malformed);
	if (c->json && (!o || json_array_append_new(out, o) < 0))
		t->first_error = t->first_error ? t->first_error : STORE_ENOMEM, t->unchecked++;
	if (!c->json)
		flush_output();
}

/* A part of verify's message appended to msg, after "; and " when it holds one already. */
static void add_part(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_part(char *msg, size_t cap, const char *fmt, ...)
{
	size_t len = strlen(msg);
	if (len)
		len += (size_t)snprintf(msg + len, cap - len, "; and ");
	if (len >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + len, cap - len, fmt, ap);
	va_end(ap);
}

/*
 * Each stored voice of one family, or of every family, read and checked against the SHA-256
 * its message recorded: damage the databases' structure does not show (a disk's silent
 * corruption), which the server would serve and backups would copy. Read-only, beside the
 * running server (a chunk per read transaction): not in the audit log, as the other reads.
 * Exit status 1 when a voice is damaged or unreadable, a message row's id is malformed, or a
 * family could not be checked.
 */
int cmd_verify(ctl *c, int argc, char **argv)
{
	verify_totals t = {0};
	json_t *out = json_array();
	store_family *page = calloc(VERIFY_PAGE, sizeof *page);
	int rc = out && page ? 0 : STORE_ENOMEM;
	if (rc == 0 && argc == 1) {
		rc = store_family_get(c->s, argv[0], page);
		if (rc == STORE_ENOTFOUND) {
			json_decref(out);
			free(page);
			return fail(c, rc, "no family %s", argv[0]);
		}
		if (rc == 0)
			verify_family(c, page, out, &t);
	}
	for (store_id after = {{0}}; rc == 0 && argc == 0;) {
		size_t n = 0;
		if ((rc = store_families_list(c->s, after.s, page, VERIFY_PAGE, &n)) < 0)
			break;
		for (size_t i = 0; i < n; i++)
			verify_family(c, &page[i], out, &t);
		if (n < VERIFY_PAGE)
			break;
		after = page[n - 1].id;
	}
	free(page);
	if (rc < 0) {
		json_decref(out);
		return fail(c, rc, "the families could not be listed; %u were checked", t.families);
	}
	char msg[1024] = "";
	if (t.damaged)
		add_part(
		    msg, sizeof msg,
		    "%llu damaged voice%s in %u famil%s: they are served as they are and backups "
		    "copy them; put them back from a backup taken before the damage "
		    "(docs/operations.md, Backups)",
		    (unsigned long long)t.damaged, t.damaged == 1 ? "" : "s", t.damaged_families,
		    t.damaged_families == 1 ? "y" : "ies");
	if (t.unreadable)
		add_part(
		    msg, sizeof msg,
		    "%llu voice%s could not be read (the disk failed to read %s: see its kernel "
		    "log and SMART data; a voice that stays unreadable comes back from a backup "
		    "like a damaged one)",
		    (unsigned long long)t.unreadable, t.unreadable == 1 ? "" : "s",
		    t.unreadable == 1 ? "it" : "them");
	if (t.malformed)
		add_part(
		    msg, sizeof msg,
		    "%llu message row%s with a malformed id, which Jiayin never writes (a "
		    "tampered or damaged mailbox: their voices cannot be played, exported or "
		    "checked; put the mailbox back from a backup, docs/operations.md, Backups)",
		    (unsigned long long)t.malformed, t.malformed == 1 ? "" : "s");
	if (t.unchecked && *msg)
		add_part(msg, sizeof msg, "some families could not be checked");
	else if (t.unchecked)
		add_part(msg, sizeof msg, "%u famil%s could not be checked", t.unchecked,
		         t.unchecked == 1 ? "y" : "ies");
	int code = t.damaged || t.malformed ? STORE_ECORRUPT
	           : t.unreadable           ? STORE_EIO
	           : t.first_error < 0      ? t.first_error
	                                    : STORE_EIO;
	json_t *obj = NULL;
	if (!c->json) {
		printf("%u famil%s, %llu voice%s (%llu bytes) checked: %llu damaged", t.families,
		       t.families == 1 ? "y" : "ies", (unsigned long long)t.messages,
		       t.messages == 1 ? "" : "s", (unsigned long long)t.bytes,
		       (unsigned long long)t.damaged);
		if (t.unreadable)
			printf(", %llu unreadable", (unsigned long long)t.unreadable);
		if (t.malformed)
			printf(", %llu message row%s with a malformed id",
			       (unsigned long long)t.malformed, t.malformed == 1 ? "" : "s");
		if (t.unchecked)
			printf(", %u famil%s not checked", t.unchecked,
			       t.unchecked == 1 ? "y" : "ies");
		putchar('\n');
		json_decref(out);
	} else {
		obj = json_pack("{s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "families", out,
		                "messages", (json_int_t)t.messages, "bytes", (json_int_t)t.bytes,
		                "damaged", (json_int_t)t.damaged, "unreadable",
		                (json_int_t)t.unreadable, "malformed", (json_int_t)t.malformed,
		                "damaged_families", (json_int_t)t.damaged_families,
		                "unchecked_families", (json_int_t)t.unchecked);
	}
	return finish_failed(c, obj, *msg ? code : 0, msg);
}
