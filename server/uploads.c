/*
 * uploads.c — resumable uploads on disk (uploads.h): data/uploads/DEVICE/ID.part holds the
 * bytes, ID.info the record (JSON). A record is replaced, never edited: ID.info.tmp is
 * written and fsynced, renamed over ID.info, and the directory is fsynced, so a reader sees
 * the old record or the new one and a crash leaves one of them. Blocking; pool threads only.
 * The mutex orders the changes (create with its count, commit, stored, remove, sweep); loads
 * read without it (a rename is atomic).
 *
 * Every unfinished upload holds its Upload-Length in the family's entry of a ledger
 * (upload_holds.h) from its creation until it becomes a message or its files go, and the
 * ledger is made again from the records at each open: so a creation can tell what the
 * family's other unfinished uploads hold, on its phones and on school kiosks, without reading
 * every record on the disk.
 */
#include "uploads.h"
#include "upload_holds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECORD_MAX 4096 /* a record is a few hundred bytes; more is not ours */
#define NAME_MAX_LEN 48  /* ID.info.tmp and the like */
#define GIVE_BACK (64u << 10) /* a full disk: the body's last bytes given up for the record */

struct srv_upload_dir {
	int fd; /* data/uploads */
	int64_t expiry_ms;
	pthread_mutex_t mu;
	bool mu_ready;
	srv_upload_holds *holds; /* each unfinished upload's length, and plain bodies' */
};

/* 128 random bits as 26 lowercase Crockford base32 characters: the store's id shape. */
static void new_id(char out[STORE_ID_LEN + 1])
{
	static const char base32[] = "0123456789abcdefghjkmnpqrstvwxyz";
	uint8_t raw[16];
	randombytes_buf(raw, sizeof raw);
	unsigned bits = 0, acc = 0, n = 0;
	for (int i = 0; i < 16; i++) {
		acc = acc << 8 | raw[i];
		bits += 8;
		while (bits >= 5) {
			out[n++] = base32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	out[n++] = base32[(acc << (5 - bits)) & 31];
	out[n] = '\0';
}

static void file_name(char out[NAME_MAX_LEN], const char *id, const char *suffix)
{
	snprintf(out, NAME_MAX_LEN, "%s%s", id, suffix);
}

static int errno_code(void)
{
	return errno ? -errno : -EIO;
}

static int hold_all(srv_upload_dir *d);

int srv_upload_dir_open(srv_upload_dir **out, const char *data_dir, int64_t expiry_ms)
{
	*out = NULL;
	char path[1200];
	int n = snprintf(path, sizeof path, "%s/uploads", data_dir);
	if (n < 0 || (size_t)n >= sizeof path)
		return -ENAMETOOLONG;
	srv_upload_dir *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	int rc = 0;
	d->fd = -1;
	d->expiry_ms = expiry_ms;
	if (pthread_mutex_init(&d->mu, NULL) != 0) {
		rc = -ENOMEM;
		goto fail;
	}
	d->mu_ready = true;
	if (mkdir(path, 0700) == 0) {
		/* The new directory's name, durably, as device_dir does for the ones inside: else
		 * a power cut soon after the first start could take every upload with it. */
		int parent = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (parent < 0 || fsync(parent) < 0)
			rc = errno_code();
		if (parent >= 0)
			close(parent);
		if (rc < 0)
			goto fail;
	} else if (errno != EEXIST) {
		rc = errno_code();
		goto fail;
	}
	if ((d->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = errno_code();
		goto fail;
	}
	if ((rc = srv_upload_holds_new(&d->holds)) < 0 || (rc = hold_all(d)) < 0)
		goto fail;
	*out = d;
	return 0;
fail:
	srv_upload_dir_close(d);
	return rc;
}

void srv_upload_dir_close(srv_upload_dir *d)
{
	if (!d)
		return;
	if (d->fd >= 0)
		close(d->fd);
	if (d->mu_ready)
		pthread_mutex_destroy(&d->mu);
	srv_upload_holds_free(d->holds);
	free(d);
}

int64_t srv_upload_expires_ms(const srv_upload_dir *d, const srv_upload *u)
{
	return u->updated_ms + d->expiry_ms;
}

/* The device's directory (made when `create`), or a negative code. */
static int device_dir(srv_upload_dir *d, const char *device, bool create)
{
	if (store_id_check(device) < 0)
		return SRV_UPLOAD_ENOTFOUND; /* never a path of its own making */
	if (create) {
		if (mkdirat(d->fd, device, 0700) == 0) {
			if (fsync(d->fd) < 0) /* the new directory's name, durably */
				return errno_code();
		} else if (errno != EEXIST) {
			return errno_code();
		}
	}
	int fd = openat(d->fd, device, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SRV_UPLOAD_ENOTFOUND : errno_code();
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno_code() : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Replaces u's record atomically and durably; *renamed: the new record took the old one's
 * place, whatever failed after (the directory's sync). */
static int record_write_renamed(int dev, const srv_upload *u, bool *renamed)
{
	*renamed = false;
	json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "v",
			      1, "id", u->id, "device", u->device, "member", u->member, "family",
			      u->family, "to", u->to,
			      "idempotency_key", u->idem, "length", (json_int_t)u->length, "offset",
			      (json_int_t)u->offset, "created_ms", (json_int_t)u->created_ms,
			      "updated_ms", (json_int_t)u->updated_ms, "message_id", u->message_id);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text)
		return -ENOMEM;
	char name[NAME_MAX_LEN], tmp[NAME_MAX_LEN];
	file_name(name, u->id, ".info");
	file_name(tmp, u->id, ".info.tmp");
	int rc = 0;
	int fd = openat(dev, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = errno_code();
		goto done;
	}
	rc = write_all(fd, text, strlen(text));
	if (rc == 0 && fsync(fd) < 0)
		rc = errno_code();
	if (close(fd) < 0 && rc == 0)
		rc = errno_code();
	if (rc == 0 && renameat(dev, tmp, dev, name) < 0)
		rc = errno_code();
	*renamed = rc == 0;
	if (rc == 0 && fsync(dev) < 0)
		rc = errno_code();
	if (rc < 0)
		(void)unlinkat(dev, tmp, 0); /* best effort: the sweep removes a leftover */
done:
	free(text);
	return rc;
}

static int record_write(int dev, const srv_upload *u)
{
	bool renamed;
	return record_write_renamed(dev, u, &renamed);
}

static bool copy_id(char out[STORE_ID_LEN + 1], const char *s, bool may_be_empty)
{
	if (!s || (*s ? store_id_check(s) < 0 : !may_be_empty))
		return false;
	memcpy(out, s, strlen(s) + 1);
	return true;
}

/* Reads `id`'s record in the device directory `dev`. */
static int record_read(int dev, const char *id, srv_upload *u)
{
	char name[NAME_MAX_LEN];
	file_name(name, id, ".info");
	int fd = openat(dev, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SRV_UPLOAD_ENOTFOUND : errno_code();
	char buf[RECORD_MAX];
	size_t len = 0;
	int rc = 0;
	while (len < sizeof buf) {
		ssize_t r = read(fd, buf + len, sizeof buf - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = errno_code();
			break;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (rc < 0)
		return rc;
	if (len == sizeof buf)
		return SRV_UPLOAD_ECORRUPT;
	json_error_t e;
	json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &e);
	int v = 0;
	const char *rid, *device, *member, *family, *to, *idem, *message;
	json_int_t length, offset, created, updated;
	memset(u, 0, sizeof *u);
	if (!o || json_unpack_ex(o, &e, JSON_STRICT,
				 "{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "v",
				 &v, "id", &rid, "device", &device, "member", &member, "family",
				 &family, "to", &to,
				 "idempotency_key", &idem, "length", &length, "offset", &offset,
				 "created_ms", &created, "updated_ms", &updated, "message_id",
				 &message) < 0) {
		rc = SRV_UPLOAD_ECORRUPT;
	} else if (v != 1 || strcmp(rid, id) != 0 || !copy_id(u->id, rid, false) ||
		   !copy_id(u->device, device, false) || !copy_id(u->member, member, false) ||
		   !copy_id(u->family, family, false) ||
		   !copy_id(u->to, to, true) || !copy_id(u->message_id, message, true) ||
		   strlen(idem) > SRV_UPLOAD_IDEM_MAX || length < 0 || offset < 0 ||
		   offset > length) {
		rc = SRV_UPLOAD_ECORRUPT;
	} else {
		memcpy(u->idem, idem, strlen(idem) + 1);
		u->length = (uint64_t)length;
		u->offset = (uint64_t)offset;
		u->created_ms = created;
		u->updated_ms = updated;
	}
	json_decref(o);
	return rc;
}

/*
 * The unfinished uploads in a device directory that count against the cap of `member` (the
 * device's own member; at a kiosk, the child whose session it is, so one child cannot use up
 * the others'): its .part files, except those whose record says they expired (the device can
 * no longer reach them; the sweep removes them), became a message or are another member's.
 * A .part whose record does not read counts against everyone.
 */
static int count_parts(srv_upload_dir *d, int dev, int64_t now_ms, const char *member,
		       unsigned *n)
{
	*n = 0;
	int fd = openat(dev, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno_code();
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int rc = errno_code();
		close(fd);
		return rc;
	}
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len != STORE_ID_LEN + 5 || strcmp(de->d_name + STORE_ID_LEN, ".part") != 0)
			continue;
		char id[STORE_ID_LEN + 1];
		memcpy(id, de->d_name, STORE_ID_LEN);
		id[STORE_ID_LEN] = '\0';
		srv_upload u;
		if (record_read(dev, id, &u) == 0 &&
		    (now_ms >= srv_upload_expires_ms(d, &u) || u.message_id[0] ||
		     strcmp(u.member, member) != 0))
			continue;
		(*n)++;
	}
	closedir(dir);
	return 0;
}

int srv_upload_create(srv_upload_dir *d, srv_upload *u, unsigned cap, uint64_t allowance,
                      int64_t now_ms)
{
	pthread_mutex_lock(&d->mu);
	unsigned held = 0;
	uint64_t got;
	int rc = device_dir(d, u->device, true);
	int dev = rc;
	if (dev < 0)
		goto done;
	if ((rc = count_parts(d, dev, now_ms, u->member, &held)) < 0)
		goto done;
	if (held >= cap) {
		rc = SRV_UPLOAD_ETOOMANY;
		goto done;
	}
	new_id(u->id);
	rc = srv_upload_holds_take(d->holds, u->family, u->id, u->length, u->length, allowance,
	                           &got);
	if (rc < 0) {
		if (rc == -ENOSPC)
			rc = SRV_UPLOAD_EROOM;
		goto done;
	}
	u->offset = 0;
	u->created_ms = u->updated_ms = now_ms;
	u->message_id[0] = '\0';
	char part[NAME_MAX_LEN];
	file_name(part, u->id, ".part");
	int fd = openat(dev, part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = errno_code();
		srv_upload_holds_give(d->holds, u->id);
		goto done;
	}
	if (close(fd) < 0) {
		rc = errno_code();
	} else {
		rc = record_write(dev, u); /* its directory fsync covers the .part's name too */
	}
	if (rc < 0) {
		(void)unlinkat(dev, part, 0); /* best effort: the sweep removes a .part alone */
		srv_upload_holds_give(d->holds, u->id);
	}
done:
	if (dev >= 0)
		close(dev);
	pthread_mutex_unlock(&d->mu);
	return rc;
}

int srv_upload_hold(srv_upload_dir *d, const char *family, uint64_t min, uint64_t max,
                    uint64_t allowance, char key[STORE_ID_LEN + 1], uint64_t *got)
{
	new_id(key);
	int rc = srv_upload_holds_take(d->holds, family, key, min, max, allowance, got);
	if (rc < 0)
		key[0] = '\0';
	return rc == -ENOSPC ? SRV_UPLOAD_EROOM : rc;
}

void srv_upload_release(srv_upload_dir *d, const char *key)
{
	if (key[0])
		srv_upload_holds_give(d->holds, key);
}

int srv_upload_load(srv_upload_dir *d, const char *device, const char *id, int64_t now_ms,
		    srv_upload *u)
{
	if (store_id_check(id) < 0)
		return SRV_UPLOAD_ENOTFOUND;
	int dev = device_dir(d, device, false);
	if (dev < 0)
		return dev;
	int rc = record_read(dev, id, u);
	close(dev);
	if (rc == 0 && strcmp(u->device, device) != 0)
		rc = SRV_UPLOAD_ECORRUPT;
	if (rc == 0 && now_ms >= srv_upload_expires_ms(d, u))
		rc = SRV_UPLOAD_ENOTFOUND; /* expired: the sweep removes it */
	return rc;
}

int srv_upload_open_part(srv_upload_dir *d, const srv_upload *u, bool write)
{
	int dev = device_dir(d, u->device, false);
	if (dev < 0)
		return dev;
	char part[NAME_MAX_LEN];
	file_name(part, u->id, ".part");
	int fd = openat(dev, part, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	int rc = fd >= 0 ? fd : errno == ENOENT ? SRV_UPLOAD_ENOTFOUND : errno_code();
	close(dev);
	if (fd >= 0 && write && ftruncate(fd, (off_t)u->offset) < 0) {
		rc = errno_code();
		close(fd);
	}
	return rc;
}

int srv_upload_commit(srv_upload_dir *d, srv_upload *u, int fd, uint64_t written,
		      int64_t now_ms)
{
	if (written > u->length - u->offset)
		return -EINVAL;
	if (written > 0 && fdatasync(fd) < 0)
		return errno_code(); /* not durable: the offset stays where it was */
	pthread_mutex_lock(&d->mu);
	struct stat st;
	int rc = 0, dev = -1;
	if (fstat(fd, &st) < 0)
		rc = errno_code();
	else if (st.st_nlink == 0)
		rc = SRV_UPLOAD_ENOTFOUND; /* swept while it was being written: it had expired */
	if (rc == 0 && written > 0 && (rc = dev = device_dir(d, u->device, false)) >= 0) {
		srv_upload n = *u;
		n.updated_ms = now_ms;
		/* When the body took the disk's last blocks, the record has none left: give up the
		 * body's last GIVE_BACK bytes (cut off, uncounted: the client sends them again)
		 * and count the rest, so a full disk costs the client that much, not everything.
		 * Not once the new record is in place (only the directory's sync failed): it counts
		 * those bytes, which must stay (the review: cut off under it, they came back as
		 * zeros inside the recording when the retry's record could not be written). */
		for (int tries = 0;; tries++) {
			bool renamed;
			n.offset = u->offset + written;
			rc = record_write_renamed(dev, &n, &renamed);
			if (rc != -ENOSPC || renamed || tries == 1 || written == 0)
				break;
			written = written > GIVE_BACK ? written - GIVE_BACK : 0;
			if (ftruncate(fd, (off_t)(u->offset + written)) < 0 || fdatasync(fd) < 0) {
				rc = errno_code();
				break;
			}
		}
		if (rc == 0)
			*u = n;
	}
	if (dev >= 0)
		close(dev);
	pthread_mutex_unlock(&d->mu);
	return rc;
}

int srv_upload_stored(srv_upload_dir *d, srv_upload *u, const char *message_id, int64_t now_ms)
{
	pthread_mutex_lock(&d->mu);
	int rc = device_dir(d, u->device, false);
	int dev = rc;
	char info[NAME_MAX_LEN];
	file_name(info, u->id, ".info");
	/* Swept (expired) while it was being transcoded: it stays gone, the message stays. */
	if (dev >= 0 && faccessat(dev, info, F_OK, 0) < 0) {
		rc = errno == ENOENT ? 0 : errno_code();
		close(dev);
		dev = -1;
	}
	if (dev >= 0) {
		srv_upload n = *u;
		snprintf(n.message_id, sizeof n.message_id, "%s", message_id);
		n.updated_ms = now_ms;
		if ((rc = record_write(dev, &n)) == 0) {
			*u = n;
			srv_upload_holds_give(d->holds, u->id); /* a message now: the quota's */
			char part[NAME_MAX_LEN];
			file_name(part, u->id, ".part");
			/* The bytes are a message now; a .part this fails to remove is swept. */
			(void)unlinkat(dev, part, 0);
		}
		close(dev);
	}
	pthread_mutex_unlock(&d->mu);
	return rc < 0 ? rc : 0;
}

/* Under the mutex: removes id's files from dev, and what the upload held; 1 if there were
 * any, 0 if none. */
static int remove_files(srv_upload_dir *d, int dev, const char *id)
{
	static const char *const suffixes[] = {".info", ".part", ".info.tmp"};
	int found = 0, rc = 0;
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		char name[NAME_MAX_LEN];
		file_name(name, id, suffixes[i]);
		if (unlinkat(dev, name, 0) == 0)
			found = 1;
		else if (errno != ENOENT && rc == 0)
			rc = errno_code();
	}
	if (found)
		srv_upload_holds_give(d->holds, id);
	if (found && fsync(dev) < 0 && rc == 0)
		rc = errno_code();
	return rc < 0 ? rc : found;
}

int srv_upload_remove(srv_upload_dir *d, const char *device, const char *id)
{
	if (store_id_check(id) < 0)
		return SRV_UPLOAD_ENOTFOUND;
	pthread_mutex_lock(&d->mu);
	int rc = device_dir(d, device, false);
	int dev = rc;
	if (dev >= 0) {
		rc = remove_files(d, dev, id);
		close(dev);
		if (rc == 0)
			rc = SRV_UPLOAD_ENOTFOUND;
		else if (rc > 0)
			rc = 0;
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

static bool is_busy(const char *id, const char (*busy)[STORE_ID_LEN + 1], size_t nbusy)
{
	for (size_t i = 0; i < nbusy; i++)
		if (strcmp(busy[i], id) == 0)
			return true;
	return false;
}

/* The id a file of an upload is named after (ID.info, ID.part, ID.info.tmp), or false. */
static bool id_of(const char *name, char id[STORE_ID_LEN + 1])
{
	size_t len = strlen(name);
	if (len <= STORE_ID_LEN)
		return false;
	const char *suffix = name + STORE_ID_LEN;
	if (strcmp(suffix, ".info") != 0 && strcmp(suffix, ".part") != 0 &&
	    strcmp(suffix, ".info.tmp") != 0)
		return false;
	memcpy(id, name, STORE_ID_LEN);
	id[STORE_ID_LEN] = '\0';
	return store_id_check(id) == 0;
}

/* Under the mutex: what becomes of one upload's files. 1 if the upload was removed. */
typedef struct id_list {
	char (*ids)[STORE_ID_LEN + 1];
	size_t n, cap;
} id_list;

static int list_add(id_list *l, const char *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->ids[i], id) == 0)
			return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		void *p = realloc(l->ids, cap * sizeof *l->ids);
		if (!p)
			return -ENOMEM;
		l->ids = p;
		l->cap = cap;
	}
	memcpy(l->ids[l->n++], id, STORE_ID_LEN + 1);
	return 0;
}

static bool in_list(const id_list *l, const char *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->ids[i], id) == 0)
			return true;
	return false;
}

typedef struct sweep_args {
	int64_t now_ms;
	const id_list *gone; /* uploads whose owner is gone (collect_gone) */
} sweep_args;

static int sweep_one(srv_upload_dir *d, int dev, const char *id, const void *arg)
{
	const sweep_args *a = arg;
	int64_t now_ms = a->now_ms;
	char tmp[NAME_MAX_LEN], part[NAME_MAX_LEN], info[NAME_MAX_LEN];
	file_name(tmp, id, ".info.tmp");
	file_name(part, id, ".part");
	file_name(info, id, ".info");
	/* Records are written under the mutex we hold: a temporary one is a crash's. */
	if (unlinkat(dev, tmp, 0) < 0 && errno != ENOENT)
		return errno_code();
	srv_upload u;
	int rc = record_read(dev, id, &u);
	bool expired;
	if (rc == 0) {
		expired = now_ms >= srv_upload_expires_ms(d, &u) || in_list(a->gone, id);
		if (!expired && u.message_id[0]) {
			/* A message already: its bytes are not needed (a crash between the two). */
			if (unlinkat(dev, part, 0) < 0 && errno != ENOENT)
				return errno_code();
			return 0;
		}
	} else if (rc == SRV_UPLOAD_ENOTFOUND) {
		expired = true; /* a .part without a record: a creation that did not finish */
	} else {
		/* A record that does not read: it goes when its file is as old as an expiry. */
		struct stat st;
		if (fstatat(dev, info, &st, 0) < 0)
			return errno == ENOENT ? 0 : errno_code();
		expired = (int64_t)st.st_mtime * 1000 + d->expiry_ms <= now_ms;
	}
	if (!expired)
		return 0;
	rc = remove_files(d, dev, id);
	return rc < 0 ? rc : 1;
}

/* The ids in directory `at`/`name`: of uploads' files (uploads), else of device directories. */
static int list_dir(int at, const char *name, bool uploads, id_list *out)
{
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : errno_code();
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int rc = errno_code();
		close(fd);
		return rc;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(dir)) != NULL) {
		char id[STORE_ID_LEN + 1];
		bool named;
		if (uploads) {
			named = id_of(de->d_name, id);
		} else {
			named = store_id_check(de->d_name) == 0;
			if (named)
				memcpy(id, de->d_name, STORE_ID_LEN + 1);
		}
		if (named)
			rc = list_add(out, id);
	}
	closedir(dir);
	return rc;
}

/* Whose uploads go: a family's, or a member's. */
typedef struct owner {
	bool member;
	const char *id;
} owner;

/* Under the mutex: one upload's files go if its record names the owner `arg`. */
static int owner_one(srv_upload_dir *d, int dev, const char *id, const void *arg)
{
	const owner *o = arg;
	srv_upload u;
	if (record_read(dev, id, &u) != 0 || strcmp(o->member ? u.member : u.family, o->id) != 0)
		return 0;
	int rc = remove_files(d, dev, id);
	return rc < 0 ? rc : 1;
}

/*
 * The uploads whose owner is gone (owned() false), asked without the mutex: the owner's
 * questions go to storage, and creations and PATCHes must not wait on them (the review). A
 * record is replaced whole (a rename), and its owner never changes, so what is read here
 * stands when the sweep takes the mutex. Best effort: what cannot be read is left for the next.
 */
static void collect_gone(srv_upload_dir *d, srv_upload_owned_fn owned, void *arg,
                         const char (*busy)[STORE_ID_LEN + 1], size_t nbusy, id_list *gone)
{
	id_list devices = {0};
	if (list_dir(d->fd, ".", false, &devices) < 0)
		devices.n = 0;
	for (size_t i = 0; i < devices.n; i++) {
		id_list uploads = {0};
		int dev = device_dir(d, devices.ids[i], false);
		if (dev >= 0 && list_dir(d->fd, devices.ids[i], true, &uploads) == 0) {
			for (size_t k = 0; k < uploads.n; k++) {
				srv_upload u;
				if (!is_busy(uploads.ids[k], busy, nbusy) &&
				    record_read(dev, uploads.ids[k], &u) == 0 && !owned(&u, arg))
					(void)list_add(gone,
					               uploads.ids[k]); /* no room: next time */
			}
		}
		if (dev >= 0)
			close(dev);
		free(uploads.ids);
	}
	free(devices.ids);
}

/* one(d, dev, id, arg) for every upload of every device but the busy ones, each under the
 * mutex; then empty device directories go. *removed counts one()'s 1s. */
static int each_upload(srv_upload_dir *d, const char (*busy)[STORE_ID_LEN + 1], size_t nbusy,
		       int (*one)(srv_upload_dir *, int, const char *, const void *),
		       const void *arg, unsigned *removed)
{
	*removed = 0;
	id_list devices = {0};
	int rc = list_dir(d->fd, ".", false, &devices);
	for (size_t i = 0; rc == 0 && i < devices.n; i++) {
		id_list uploads = {0};
		rc = list_dir(d->fd, devices.ids[i], true, &uploads);
		for (size_t k = 0; rc == 0 && k < uploads.n; k++) {
			if (is_busy(uploads.ids[k], busy, nbusy))
				continue;
			pthread_mutex_lock(&d->mu);
			int dev = device_dir(d, devices.ids[i], false);
			int r = dev;
			if (dev >= 0) {
				r = one(d, dev, uploads.ids[k], arg);
				close(dev);
			}
			pthread_mutex_unlock(&d->mu);
			if (r > 0)
				(*removed)++;
			else if (r < 0 && r != SRV_UPLOAD_ENOTFOUND)
				rc = r;
		}
		free(uploads.ids);
		/* An empty device directory goes (creation makes it again, under the mutex). */
		pthread_mutex_lock(&d->mu);
		if (unlinkat(d->fd, devices.ids[i], AT_REMOVEDIR) < 0 && errno != ENOTEMPTY &&
		    errno != EEXIST && errno != ENOENT && rc == 0)
			rc = errno_code();
		pthread_mutex_unlock(&d->mu);
	}
	free(devices.ids);
	return rc;
}

/* An unfinished upload's length into the ledger (the .part of one of no length holds none). */
static int hold_one(srv_upload_dir *d, int dev, const char *id, const void *arg)
{
	srv_upload u;
	uint64_t got;
	(void)arg;
	if (record_read(dev, id, &u) != 0 || u.message_id[0] || u.length == 0)
		return 0; /* a record that does not read is a crash's: the sweep's */
	return srv_upload_holds_take(d->holds, u.family, u.id, 1, u.length, UINT64_MAX, &got);
}

/* At open: what every unfinished upload held before a restart (an expired one too, until the
 * sweep removes its files). */
static int hold_all(srv_upload_dir *d)
{
	unsigned none;
	return each_upload(d, NULL, 0, hold_one, NULL, &none);
}

int srv_upload_sweep(srv_upload_dir *d, int64_t now_ms, const char (*busy)[STORE_ID_LEN + 1],
                     size_t nbusy, srv_upload_owned_fn owned, void *arg, unsigned *removed)
{
	id_list gone = {0};
	if (owned)
		collect_gone(d, owned, arg, busy, nbusy, &gone);
	sweep_args a = {now_ms, &gone};
	int rc = each_upload(d, busy, nbusy, sweep_one, &a, removed);
	free(gone.ids);
	return rc;
}

int srv_upload_remove_family(srv_upload_dir *d, const char *family, unsigned *removed)
{
	return each_upload(d, NULL, 0, owner_one, &(owner){false, family}, removed);
}

int srv_upload_remove_member(srv_upload_dir *d, const char *member, unsigned *removed)
{
	return each_upload(d, NULL, 0, owner_one, &(owner){true, member}, removed);
}
