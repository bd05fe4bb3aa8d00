/*
 * uploads_sweep.c — the walks over every resumable upload on disk (uploads.h): the expiry
 * sweep, the erasure of a family's or a member's uploads, and the ledger made again from the
 * records at open. Each upload is handled under the directory's mutex, one at a time, so that
 * creations and PATCHes wait for one upload's files at most, never for a whole walk.
 */
#include "uploads_internal.h"
#include "upload_holds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	upload_file_name(tmp, id, ".info.tmp");
	upload_file_name(part, id, ".part");
	upload_file_name(info, id, ".info");
	/* Records are written under the mutex we hold: a temporary one is a crash's. */
	if (unlinkat(dev, tmp, 0) < 0 && errno != ENOENT)
		return upload_errno();
	/* A request took it in time after the sweep's list of those in use was made (a PATCH at
	 * its expiry moment): it counts until that request ends, which renews it. */
	if (srv_upload_holds_is_busy(d->holds, id))
		return 0;
	srv_upload u;
	int rc = upload_record_read(dev, id, &u);
	bool expired;
	if (rc == 0) {
		expired = now_ms >= srv_upload_expires_ms(d, &u) || in_list(a->gone, id);
		if (!expired && u.message_id[0]) {
			/* A message already: its bytes are not needed (a crash between the two). */
			if (unlinkat(dev, part, 0) < 0 && errno != ENOENT)
				return upload_errno();
			return 0;
		}
	} else if (rc == SRV_UPLOAD_ENOTFOUND) {
		expired = true; /* a .part without a record: a creation that did not finish */
	} else {
		/* A record that does not read: it goes when its file is as old as an expiry. */
		struct stat st;
		if (fstatat(dev, info, &st, 0) < 0)
			return errno == ENOENT ? 0 : upload_errno();
		expired = (int64_t)st.st_mtime * 1000 + d->expiry_ms <= now_ms;
	}
	if (!expired)
		return 0;
	rc = upload_remove_files(d, dev, id);
	return rc < 0 ? rc : 1;
}

/* The ids in directory `at`/`name`: of uploads' files (uploads), else of device directories. */
static int list_dir(int at, const char *name, bool uploads, id_list *out)
{
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : upload_errno();
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int rc = upload_errno();
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
	if (upload_record_read(dev, id, &u) != 0 ||
	    strcmp(o->member ? u.member : u.family, o->id) != 0)
		return 0;
	int rc = upload_remove_files(d, dev, id);
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
		int dev = upload_device_dir(d, devices.ids[i], false);
		if (dev >= 0 && list_dir(d->fd, devices.ids[i], true, &uploads) == 0) {
			for (size_t k = 0; k < uploads.n; k++) {
				srv_upload u;
				if (!is_busy(uploads.ids[k], busy, nbusy) &&
				    upload_record_read(dev, uploads.ids[k], &u) == 0 &&
				    !owned(&u, arg))
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
			int dev = upload_device_dir(d, devices.ids[i], false);
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
			rc = upload_errno();
		pthread_mutex_unlock(&d->mu);
	}
	free(devices.ids);
	return rc;
}

/* An unfinished upload's length into the ledger (the .part of one of no length holds none, nor
 * one whose .part has less than its offset: its bytes were given up once its message was stored,
 * when the record could not say so, srv_upload_stored). */
static int hold_one(srv_upload_dir *d, int dev, const char *id, const void *arg)
{
	srv_upload u;
	uint64_t got;
	struct stat st;
	char part[NAME_MAX_LEN];
	(void)arg;
	if (upload_record_read(dev, id, &u) != 0 || u.message_id[0] || u.length == 0)
		return 0; /* a record that does not read is a crash's: the sweep's */
	upload_file_name(part, id, ".part");
	if (fstatat(dev, part, &st, 0) == 0 && (uint64_t)st.st_size < u.offset)
		return 0;
	int rc = srv_upload_holds_take(d->holds, u.family, u.id, 1, u.length, UINT64_MAX,
	                               UINT64_MAX, INT64_MIN, &got);
	if (rc == 0) {
		srv_upload_holds_written(d->holds, u.id, u.offset);
		(void)srv_upload_holds_renew(d->holds, u.id, srv_upload_expires_ms(d, &u),
		                             INT64_MIN);
	}
	return rc;
}

/* At open: what every unfinished upload held before a restart (an expired one too, which counts
 * nothing, until the sweep removes its files and its entry). */
int upload_hold_all(srv_upload_dir *d)
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
