/*
 * uploads_internal.h — what uploads.c (an upload's files and records) and uploads_sweep.c (the
 * walks over all of them) share: the directory's state and the helpers on one device's
 * directory. Private to the uploads library; blocking, pool threads only.
 */
#ifndef JIAYIN_SERVER_UPLOADS_INTERNAL_H
#define JIAYIN_SERVER_UPLOADS_INTERNAL_H

#include "upload_holds.h"
#include "uploads.h"

#include <pthread.h>
#include <stdatomic.h>

#define NAME_MAX_LEN 48 /* ID.info.tmp and the like */

struct srv_upload_dir {
	int fd; /* data/uploads */
	int64_t expiry_ms;
	int64_t start_expiry_ms; /* for an upload that has received nothing: at most expiry_ms */
	pthread_mutex_t mu;
	bool mu_ready;
	srv_upload_holds *holds; /* each unfinished upload's length, and plain bodies' */
	uint64_t disk_reserve;   /* srv_upload_dir_set_reserve */
	/* disk_room()'s last look (any thread): the bytes it found, the ledger's written bytes
	 * then, and when (monotonic ms) */
	_Atomic uint64_t disk_room;
	_Atomic uint64_t disk_written;
	_Atomic int64_t disk_at_ms;
};

/* What unfinished uploads may still write to the data's filesystem (UINT64_MAX: no bound). */
uint64_t upload_disk_room(srv_upload_dir *d);

void upload_file_name(char out[NAME_MAX_LEN], const char *id, const char *suffix);
int upload_errno(void); /* -errno, or -EIO when errno says nothing */
/* The device's directory (made when `create`), or a negative code. */
int upload_device_dir(srv_upload_dir *d, const char *device, bool create);
/* Reads `id`'s record in the device directory `dev`. */
int upload_record_read(int dev, const char *id, srv_upload *u);
/* Under the mutex: removes id's files from dev, and what the upload held; 1 if there were
 * any, 0 if none. */
int upload_remove_files(srv_upload_dir *d, int dev, const char *id);
/* At open: what every unfinished upload held before a restart (uploads_sweep.c). */
int upload_hold_all(srv_upload_dir *d);

#endif
