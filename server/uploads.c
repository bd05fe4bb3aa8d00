/*
 * uploads.c — resumable uploads on disk (uploads.h): data/uploads/DEVICE/ID.part holds the
 * bytes, ID.info the record (JSON). A record is replaced, never edited: ID.info.tmp is
 * written and fsynced, renamed over ID.info, and the directory is fsynced, so a reader sees
 * the old record or the new one and a crash leaves one of them. Blocking; pool threads only.
 * The mutex orders the changes (create with its count, commit, stored, remove, sweep); loads
 * read without it (a rename is atomic).
 *
 * Every unfinished upload holds its Upload-Length in the family's entry of a ledger
 * (upload_holds.h) from its creation until it becomes a message, its files go or it expires
 * (the ledger knows when, from each change of its record, and the request that works on it
 * past that: srv_upload_busy), and the
 * ledger is made again from the records at each open: so a creation can tell what the
 * family's other unfinished uploads hold, on its phones and on school kiosks, without reading
 * every record on the disk.
 */
#include "uploads_internal.h"
#include "upload_holds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define RECORD_MAX 4096       /* a record is a few hundred bytes; more is not ours */
#define GIVE_BACK (64u << 10) /* a full disk: the body's last bytes given up for the record */
#define BUSY_FREE_MS 60000    /* too many uploads, one receiving: ask again in a minute */

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

void upload_file_name(char out[NAME_MAX_LEN], const char *id, const char *suffix)
{
	snprintf(out, NAME_MAX_LEN, "%s%s", id, suffix);
}

int upload_errno(void)
{
	return errno ? -errno : -EIO;
}

int srv_upload_dir_open(srv_upload_dir **out, const char *data_dir, int64_t expiry_ms,
                        int64_t start_expiry_ms)
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
	d->start_expiry_ms = start_expiry_ms < expiry_ms ? start_expiry_ms : expiry_ms;
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
			rc = upload_errno();
		if (parent >= 0)
			close(parent);
		if (rc < 0)
			goto fail;
	} else if (errno != EEXIST) {
		rc = upload_errno();
		goto fail;
	}
	if ((d->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = upload_errno();
		goto fail;
	}
	if ((rc = srv_upload_holds_new(&d->holds)) < 0 || (rc = upload_hold_all(d)) < 0)
		goto fail;
	*out = d;
	return 0;
fail:
	srv_upload_dir_close(d);
	return rc;
}

void srv_upload_dir_set_reserve(srv_upload_dir *d, uint64_t reserve)
{
	d->disk_reserve = reserve;
	atomic_store(&d->disk_at_ms, INT64_MIN); /* look again */
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * fstatvfs() is cheap (the file system's counters, no disk I/O), but any thread asks, the
 * event loop's body watch too: once a second at most. In between, what unfinished uploads
 * wrote since the look is taken off what it found (and what they gave back, their files
 * removed, put back): each write counts in the ledger at once (srv_upload_holds_written), and
 * a fast upload would otherwise count its own new bytes as room for a second (the review: a
 * chunked body at 50 MB/s was taken whole at 60 MB with 30 MB of room).
 */
uint64_t upload_disk_room(srv_upload_dir *d)
{
	if (!d->disk_reserve)
		return UINT64_MAX;
	uint64_t written = srv_upload_holds_written_total(d->holds);
	int64_t now = mono_ms(), at = atomic_load(&d->disk_at_ms);
	if (at != INT64_MIN && now - at < 1000) {
		uint64_t room = atomic_load(&d->disk_room), then = atomic_load(&d->disk_written);
		if (room == UINT64_MAX)
			return room;
		if (written >= then)
			return room > written - then ? room - written + then : 0;
		return room + (then - written); /* bounded by the disk's size */
	}
	struct statvfs sv;
	uint64_t room = UINT64_MAX;
	if (fstatvfs(d->fd, &sv) == 0) {
		uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
		room = avail > d->disk_reserve ? avail - d->disk_reserve : 0;
	}
	atomic_store(&d->disk_room, room);
	atomic_store(&d->disk_written, written);
	atomic_store(&d->disk_at_ms, now);
	return room;
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

/* An upload that has received nothing since its creation holds its whole length for a client
 * that may never come: one whose answer was lost (without an idempotency key to find it again),
 * or that gave up. It goes sooner; a client that does come back after that loses no bytes, and
 * its HEAD's 404 makes it create the upload again (tus-js-client does). */
int64_t srv_upload_expires_ms(const srv_upload_dir *d, const srv_upload *u)
{
	bool started = u->offset > 0 || u->message_id[0];
	return u->updated_ms + (started ? d->expiry_ms : d->start_expiry_ms);
}

/* The device's directory (made when `create`), or a negative code. */
int upload_device_dir(srv_upload_dir *d, const char *device, bool create)
{
	if (store_id_check(device) < 0)
		return SRV_UPLOAD_ENOTFOUND; /* never a path of its own making */
	if (create) {
		if (mkdirat(d->fd, device, 0700) == 0) {
			if (fsync(d->fd) < 0) /* the new directory's name, durably */
				return upload_errno();
		} else if (errno != EEXIST) {
			return upload_errno();
		}
	}
	int fd = openat(d->fd, device, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SRV_UPLOAD_ENOTFOUND : upload_errno();
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? upload_errno() : -EIO;
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
	upload_file_name(name, u->id, ".info");
	upload_file_name(tmp, u->id, ".info.tmp");
	int rc = 0;
	int fd = openat(dev, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = upload_errno();
		goto done;
	}
	rc = write_all(fd, text, strlen(text));
	if (rc == 0 && fsync(fd) < 0)
		rc = upload_errno();
	if (close(fd) < 0 && rc == 0)
		rc = upload_errno();
	if (rc == 0 && renameat(dev, tmp, dev, name) < 0)
		rc = upload_errno();
	*renamed = rc == 0;
	if (rc == 0 && fsync(dev) < 0)
		rc = upload_errno();
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
int upload_record_read(int dev, const char *id, srv_upload *u)
{
	char name[NAME_MAX_LEN];
	upload_file_name(name, id, ".info");
	int fd = openat(dev, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SRV_UPLOAD_ENOTFOUND : upload_errno();
	char buf[RECORD_MAX];
	size_t len = 0;
	int rc = 0;
	while (len < sizeof buf) {
		ssize_t r = read(fd, buf + len, sizeof buf - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = upload_errno();
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
 * Each upload of the device directory dev that has a file ending in suffix (".part", ".info",
 * each an id's length before it): fn(arg, dev, its id), until fn says false.
 */
static int each_upload(int dev, const char *suffix, bool (*fn)(void *, int, const char *),
                       void *arg)
{
	int fd = openat(dev, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return upload_errno();
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int rc = upload_errno();
		close(fd);
		return rc;
	}
	size_t slen = strlen(suffix);
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		if (strlen(de->d_name) != STORE_ID_LEN + slen ||
		    strcmp(de->d_name + STORE_ID_LEN, suffix) != 0)
			continue;
		char id[STORE_ID_LEN + 1];
		memcpy(id, de->d_name, STORE_ID_LEN);
		id[STORE_ID_LEN] = '\0';
		if (!fn(arg, dev, id))
			break;
	}
	closedir(dir);
	return 0;
}

/*
 * The unfinished uploads in a device directory that count against the cap of u->member (the
 * device's own member; at a kiosk, the child whose session it is, so one child cannot use up
 * the others'): its .part files, except those whose record says they expired (the device can
 * no longer reach them; the sweep removes them) and no request works on, became a message or
 * are another member's.
 * A .part whose record does not read counts against everyone. *same: the one of them that
 * carries u's idempotency key for u's family (its id empty when none), which is not counted:
 * the creation finds it again or replaces it. *free_ms: when the first counted one expires (one
 * whose record does not read is the sweep's within an expiry), or, for one a request works on,
 * a minute on at most (and a minute for one past its expiry: the request's end renews it).
 */
typedef struct parts_arg {
	srv_upload_dir *d;
	int64_t now_ms;
	const srv_upload *want;
	unsigned *n;
	srv_upload *same;
	int64_t *free_ms;
} parts_arg;

static bool count_part(void *arg, int dev, const char *id)
{
	parts_arg *a = arg;
	srv_upload u;
	bool read = upload_record_read(dev, id, &u) == 0;
	/* One past its expiry that a request works on still holds its place: that request's
	 * end renews it (it was not counted, and the device got one more than its cap). */
	bool busy = read && srv_upload_holds_is_busy(a->d->holds, id);
	if (read && ((a->now_ms >= srv_upload_expires_ms(a->d, &u) && !busy) || u.message_id[0] ||
	             strcmp(u.member, a->want->member) != 0))
		return true;
	if (read && a->want->idem[0] && !a->same->id[0] && strcmp(u.idem, a->want->idem) == 0 &&
	    strcmp(u.family, a->want->family) == 0) {
		*a->same = u;
		return true;
	}
	/* One a request works on (a PATCH receiving) frees its place when that request makes it
	 * a message, which no one can tell, else its end renews it: its expiry says nothing. */
	int64_t free_at = read ? srv_upload_expires_ms(a->d, &u) : INT64_MAX;
	if (busy && (free_at > a->now_ms + BUSY_FREE_MS || free_at <= a->now_ms))
		free_at = a->now_ms + BUSY_FREE_MS;
	if (free_at < *a->free_ms)
		*a->free_ms = free_at;
	(*a->n)++;
	return true;
}

static int count_parts(srv_upload_dir *d, int dev, int64_t now_ms, const srv_upload *want,
                       unsigned *n, srv_upload *same, int64_t *free_ms)
{
	*n = 0;
	*free_ms = now_ms + d->expiry_ms;
	same->id[0] = '\0';
	parts_arg a = {d, now_ms, want, n, same, free_ms};
	return each_upload(dev, ".part", count_part, &a);
}

/*
 * Under the mutex: the device's unfinished upload `same` of the same recording becomes the
 * creation's answer. It changed now (its expiry starts again), and it holds its length already.
 */
static int create_again(srv_upload_dir *d, int dev, srv_upload *u, const srv_upload *same,
                        int64_t now_ms)
{
	srv_upload n = *same;
	n.updated_ms = now_ms;
	int rc = srv_upload_holds_renew(d->holds, n.id, srv_upload_expires_ms(d, &n), now_ms);
	if (rc == -ETIMEDOUT)
		return rc; /* out of the ledger's count already: expired, as another caller saw */
	rc = record_write(dev, &n);
	if (rc == 0)
		*u = n;
	return rc;
}

/* The ledger's refusals as the API's codes. */
static int hold_code(int rc)
{
	return rc == -ENOSPC   ? SRV_UPLOAD_EROOM
	       : rc == -EAGAIN ? SRV_UPLOAD_EHELD
	       : rc == -EDQUOT ? SRV_UPLOAD_EDISK
	                       : rc;
}

int srv_upload_create(srv_upload_dir *d, srv_upload *u, unsigned cap, uint64_t allowance,
                      int64_t now_ms, bool *again, int64_t *free_ms)
{
	pthread_mutex_lock(&d->mu);
	unsigned held = 0;
	uint64_t got;
	srv_upload same;
	*again = false;
	int rc = upload_device_dir(d, u->device, true);
	int dev = rc;
	if (dev < 0)
		goto done;
	if ((rc = count_parts(d, dev, now_ms, u, &held, &same, free_ms)) < 0)
		goto done;
	if (same.id[0] && same.length == u->length && strcmp(same.to, u->to) == 0) {
		rc = create_again(d, dev, u, &same, now_ms);
		*again = rc == 0;
		if (rc != -ETIMEDOUT)
			goto done;
	}
	/* The same key for another length or recipient: the client changed the recording, and the
	 * old one, which would become the same message, is of no use (nor its hold). Or it expired
	 * a moment ago, as far as the ledger knows: it is no one's to resume any more. */
	if (same.id[0] && (rc = upload_remove_files(d, dev, same.id)) < 0)
		goto done;
	if (held >= cap) {
		rc = SRV_UPLOAD_ETOOMANY;
		goto done;
	}
	new_id(u->id);
	rc = srv_upload_holds_take(d->holds, u->family, u->id, u->length, u->length, allowance,
	                           upload_disk_room(d), now_ms, &got);
	if (rc < 0) {
		rc = hold_code(rc);
		goto done;
	}
	u->offset = 0;
	u->created_ms = u->updated_ms = now_ms;
	u->message_id[0] = '\0';
	(void)srv_upload_holds_renew(d->holds, u->id, srv_upload_expires_ms(d, u), now_ms);
	char part[NAME_MAX_LEN];
	upload_file_name(part, u->id, ".part");
	int fd = openat(dev, part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = upload_errno();
		srv_upload_holds_give(d->holds, u->id);
		goto done;
	}
	bool renamed = false;
	if (close(fd) < 0) {
		rc = upload_errno();
	} else {
		/* its directory fsync covers the .part's name too */
		rc = record_write_renamed(dev, u, &renamed);
	}
	if (rc < 0) {
		/* Refused, it is no one's: its record, in place when only the directory's sync
		 * failed, would hold its length again at the next start until it expired. */
		if (renamed) {
			char info[NAME_MAX_LEN];
			upload_file_name(info, u->id, ".info");
			(void)unlinkat(dev, info, 0);
		}
		(void)unlinkat(dev, part, 0); /* best effort: the sweep removes a .part alone */
		srv_upload_holds_give(d->holds, u->id);
	}
done:
	if (dev >= 0)
		close(dev);
	pthread_mutex_unlock(&d->mu);
	return rc;
}

/*
 * Under the mutex: the device's records of u's idempotency key (of u->member, in u->family),
 * not expired: *done, the first that names a message (an earlier creation's answer, or the
 * upload that made it), and *same, the first unfinished one (ids empty when none). Their .info
 * files are read, not their .part ones: a finished upload has none.
 */
typedef struct key_arg {
	srv_upload_dir *d;
	int64_t now_ms;
	const srv_upload *want;
	srv_upload *done, *same;
} key_arg;

static bool key_record(void *arg, int dev, const char *id)
{
	key_arg *a = arg;
	srv_upload u;
	if (upload_record_read(dev, id, &u) == 0 && a->now_ms < srv_upload_expires_ms(a->d, &u) &&
	    strcmp(u.idem, a->want->idem) == 0 && strcmp(u.member, a->want->member) == 0 &&
	    strcmp(u.family, a->want->family) == 0) {
		srv_upload *slot = u.message_id[0] ? a->done : a->same;
		if (!slot->id[0])
			*slot = u;
	}
	return !(a->done->id[0] && a->same->id[0]);
}

static int key_records(srv_upload_dir *d, int dev, int64_t now_ms, const srv_upload *want,
                       srv_upload *done, srv_upload *same)
{
	done->id[0] = same->id[0] = '\0';
	key_arg a = {d, now_ms, want, done, same};
	return each_upload(dev, ".info", key_record, &a);
}

int srv_upload_create_done(srv_upload_dir *d, srv_upload *u, const char *message_id, int64_t now_ms)
{
	pthread_mutex_lock(&d->mu);
	srv_upload done, same;
	int rc = upload_device_dir(d, u->device, true);
	int dev = rc;
	if (dev < 0)
		goto done;
	if ((rc = key_records(d, dev, now_ms, u, &done, &same)) < 0)
		goto done;
	/* Its bytes could make no other message: of no use, nor its hold and its place. */
	if (same.id[0] && (rc = upload_remove_files(d, dev, same.id)) < 0)
		goto done;
	srv_upload n = *u;
	if (done.id[0]) { /* one record per key, however often it is created again */
		memcpy(n.id, done.id, sizeof n.id);
		n.created_ms = done.created_ms;
	} else {
		new_id(n.id);
		n.created_ms = now_ms;
	}
	n.offset = n.length;
	n.updated_ms = now_ms;
	snprintf(n.message_id, sizeof n.message_id, "%s", message_id);
	if ((rc = record_write(dev, &n)) == 0)
		*u = n;
done:
	if (dev >= 0)
		close(dev);
	pthread_mutex_unlock(&d->mu);
	return rc;
}

int srv_upload_hold(srv_upload_dir *d, const char *family, uint64_t min, uint64_t max,
                    uint64_t allowance, int64_t now_ms, char key[STORE_ID_LEN + 1], uint64_t *got)
{
	new_id(key);
	int rc = srv_upload_holds_take(d->holds, family, key, min, max, allowance,
	                               upload_disk_room(d), now_ms, got);
	if (rc < 0)
		key[0] = '\0';
	return hold_code(rc);
}

int srv_upload_hold_resize(srv_upload_dir *d, const char *key, uint64_t min, uint64_t max,
                           uint64_t allowance, int64_t now_ms, uint64_t *got)
{
	return hold_code(srv_upload_holds_resize(d->holds, key, min, max, allowance,
	                                         upload_disk_room(d), now_ms, got));
}

uint64_t srv_upload_room_left(srv_upload_dir *d, const char *family, uint64_t allowance,
                              int64_t now_ms)
{
	return srv_upload_holds_left(d->holds, family, allowance, now_ms);
}

int srv_upload_busy(srv_upload_dir *d, const char *id, int64_t now_ms)
{
	/* No entry: a message's record, or one that holds nothing (its bytes given up). */
	int rc = srv_upload_holds_busy(d->holds, id, now_ms);
	return rc == -ETIMEDOUT ? SRV_UPLOAD_ENOTFOUND : 0;
}

void srv_upload_idle(srv_upload_dir *d, const char *id)
{
	srv_upload_holds_idle(d->holds, id);
}

void srv_upload_hold_written(srv_upload_dir *d, const char *key, uint64_t written)
{
	if (key[0])
		srv_upload_holds_written(d->holds, key, written);
}

void srv_upload_release(srv_upload_dir *d, const char *key)
{
	if (key[0])
		srv_upload_holds_give(d->holds, key);
}

int srv_upload_refused(srv_upload_dir *d, const char *id, const srv_upload_refusal *r)
{
	return srv_upload_holds_refusal_set(d->holds, id, r);
}

void srv_upload_refusal_of(srv_upload_dir *d, const char *id, srv_upload_refusal *r)
{
	srv_upload_holds_refusal_get(d->holds, id, r);
}

uint64_t srv_upload_disk_free(srv_upload_dir *d)
{
	struct statvfs sv;
	if (fstatvfs(d->fd, &sv) != 0)
		return UINT64_MAX;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

bool srv_upload_disk_still_short(srv_upload_dir *d, const srv_upload_refusal *r, int64_t now_ms)
{
	if (!r->disk || now_ms - r->at_ms >= SRV_UPLOAD_REFUSED_DISK_MS || now_ms < r->at_ms)
		return false;
	uint64_t now_free = srv_upload_disk_free(d);
	if (now_free == UINT64_MAX)
		return false; /* it cannot tell: the finish tries */
	return now_free < r->disk_free || now_free - r->disk_free < r->needs;
}

int srv_upload_load(srv_upload_dir *d, const char *device, const char *id, int64_t now_ms,
		    srv_upload *u)
{
	if (store_id_check(id) < 0)
		return SRV_UPLOAD_ENOTFOUND;
	int dev = upload_device_dir(d, device, false);
	if (dev < 0)
		return dev;
	int rc = upload_record_read(dev, id, u);
	close(dev);
	if (rc == 0 && strcmp(u->device, device) != 0)
		rc = SRV_UPLOAD_ECORRUPT;
	if (rc == 0 && now_ms >= srv_upload_expires_ms(d, u))
		rc = SRV_UPLOAD_ENOTFOUND; /* expired: the sweep removes it */
	return rc;
}

int srv_upload_open_part(srv_upload_dir *d, const srv_upload *u, bool write)
{
	int dev = upload_device_dir(d, u->device, false);
	if (dev < 0)
		return dev;
	char part[NAME_MAX_LEN];
	upload_file_name(part, u->id, ".part");
	int fd = openat(dev, part, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	int rc = fd >= 0 ? fd : errno == ENOENT ? SRV_UPLOAD_ENOTFOUND : upload_errno();
	close(dev);
	/* Cut to the offset (a crash's bytes past it), never lengthened: a .part shorter than
	 * its offset had its bytes given up (srv_upload_stored) and must stay so. */
	struct stat st;
	if (fd >= 0 && write && fstat(fd, &st) == 0 && (uint64_t)st.st_size < u->offset)
		return fd;
	if (fd >= 0 && write && ftruncate(fd, (off_t)u->offset) < 0) {
		rc = upload_errno();
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
		return upload_errno(); /* not durable: the offset stays where it was */
	pthread_mutex_lock(&d->mu);
	struct stat st;
	int rc = 0, dev = -1;
	if (fstat(fd, &st) < 0)
		rc = upload_errno();
	else if (st.st_nlink == 0)
		rc = SRV_UPLOAD_ENOTFOUND; /* swept while it was being written: it had expired */
	if (rc == 0 && written > 0 && (rc = dev = upload_device_dir(d, u->device, false)) >= 0) {
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
				rc = upload_errno();
				break;
			}
		}
		if (rc == 0) {
			*u = n;
			srv_upload_holds_written(d->holds, u->id, u->offset);
			/* Busy under its request (srv_upload_busy), so counted: renewed. */
			(void)srv_upload_holds_renew(d->holds, u->id, srv_upload_expires_ms(d, u),
			                             now_ms);
		}
	}
	if (dev >= 0)
		close(dev);
	pthread_mutex_unlock(&d->mu);
	return rc;
}

/* The .part `part` in dev holds nothing any more: its blocks go back to the disk. */
static int give_up_bytes(int dev, const char *part)
{
	int fd = openat(dev, part, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return upload_errno();
	return close(fd) < 0 ? upload_errno() : 0;
}

int srv_upload_stored(srv_upload_dir *d, srv_upload *u, const char *message_id, int64_t now_ms)
{
	pthread_mutex_lock(&d->mu);
	int rc = upload_device_dir(d, u->device, false);
	int dev = rc;
	char info[NAME_MAX_LEN];
	upload_file_name(info, u->id, ".info");
	/* Swept (expired) while it was being transcoded: it stays gone, the message stays. */
	if (dev >= 0 && faccessat(dev, info, F_OK, 0) < 0) {
		rc = errno == ENOENT ? 0 : upload_errno();
		close(dev);
		dev = -1;
	}
	if (dev >= 0) {
		srv_upload n = *u;
		bool renamed;
		snprintf(n.message_id, sizeof n.message_id, "%s", message_id);
		n.updated_ms = now_ms;
		char part[NAME_MAX_LEN];
		upload_file_name(part, u->id, ".part");
		rc = record_write_renamed(dev, &n, &renamed);
		/* The record could not say so (a full disk had no block for it): the bytes are not
		 * needed all the same, as the message is stored under the upload's key and a finish
		 * done again looks the key up before it reads any (upload_checked). Kept, they
		 * would hold up to 200 MB of a full disk, and the family's room, until the record
		 * expires: the .part is cut to nothing (its name stays, for the HEAD or PATCH that
		 * finishes again to open) and the record written again in what that freed. */
		if (rc < 0 && give_up_bytes(dev, part) == 0) {
			srv_upload_holds_give(d->holds, u->id);
			if (!renamed)
				rc = record_write_renamed(dev, &n, &renamed);
		}
		/* A message now: the quota's, not the ledger's, once the record says so, even if
		 * only the directory's sync failed (the sweep takes no hold off a message's record,
		 * and the next open holds none for it). */
		if (renamed)
			srv_upload_holds_give(d->holds, u->id);
		if (rc == 0) {
			*u = n;
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
int upload_remove_files(srv_upload_dir *d, int dev, const char *id)
{
	static const char *const suffixes[] = {".info", ".part", ".info.tmp"};
	int found = 0, rc = 0;
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		char name[NAME_MAX_LEN];
		upload_file_name(name, id, suffixes[i]);
		if (unlinkat(dev, name, 0) == 0)
			found = 1;
		else if (errno != ENOENT && rc == 0)
			rc = upload_errno();
	}
	if (found)
		srv_upload_holds_give(d->holds, id);
	if (found && fsync(dev) < 0 && rc == 0)
		rc = upload_errno();
	return rc < 0 ? rc : found;
}

int srv_upload_remove(srv_upload_dir *d, const char *device, const char *id)
{
	if (store_id_check(id) < 0)
		return SRV_UPLOAD_ENOTFOUND;
	pthread_mutex_lock(&d->mu);
	int rc = upload_device_dir(d, device, false);
	int dev = rc;
	if (dev >= 0) {
		rc = upload_remove_files(d, dev, id);
		close(dev);
		if (rc == 0)
			rc = SRV_UPLOAD_ENOTFOUND;
		else if (rc > 0)
			rc = 0;
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}
