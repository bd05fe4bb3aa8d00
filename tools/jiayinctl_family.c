/*
 * jiayinctl_family.c — jiayinctl's commands for a family's data: family show, family delete
 * (with its phones' unfinished uploads), family export (a zip, a new 0600 file), and the online
 * backups: backup (every database and the server's key into a new directory) and backup-family.
 */
#include "jiayinctl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *member_json(const store_member *m)
{
	return json_pack("{s:s, s:o, s:s, s:o, s:o}", "id", m->id.s, "name", jtext(m->name), "role",
	                 store_role_name(m->role), "avatar", jtext(m->avatar), "created_at",
	                 jtime(m->created_ms));
}

/* For list_all(): a family's members, devices and kiosk pairings. */
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

/* ---- the commands ---- */

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

int cmd_family_export(ctl *c, int argc, char **argv)
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
		ssize_t w = write(out, key, (size_t)n); /* a short write sets no errno */
		if (w != n)
			err = w < 0 ? errno : EIO;
		else if (fsync(out) < 0)
			err = errno;
		close(out);
	}
	sodium_memzero(key, sizeof key);
	return -err;
}

int cmd_backup(ctl *c, int argc, char **argv)
{
	(void)argc;
	const char *dest = argv[0];
	unsigned families = 0;
	int rc = store_backup_all(c->s, dest, &families);
	if (rc == STORE_EEXIST)
		return fail(c, rc, "%s exists already: a backup goes into a new directory", dest);
	if (rc < 0)
		return fail(c, rc, "the backup failed; nothing was left in %s", dest);
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

int cmd_backup_family(ctl *c, int argc, char **argv)
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
