/*
 * data_lock.c — the data directory's lock (data/server.lock): a second server started on a
 * data directory in use (an operator checking "it works" beside the service, a second unit
 * with the same folder) swept the running one's families/ before it found its port taken,
 * moving a family being created at that moment to quarantine/, and on another port both ran
 * on the same files, each with its own caches.
 *
 * An open file description's lock (F_OFD_SETLK): the kernel drops it with the process, however
 * it ends, and no other descriptor of the file the process opens or closes touches it (a
 * POSIX lock goes with the first close of any); F_OFD_GETLK sees it without taking anything,
 * for a start refused before it locks. The file keeps the holder's process id, for the
 * refusal to name; it is never removed (removed, a server starting then would lock a new
 * file beside the one still held). NFS keeps such locks through its lock manager; a file
 * system that keeps none (ENOLCK) is refused, never run on unlocked.
 */
#include "data_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int lock_path(const char *dir, char *path, size_t cap)
{
	int n = snprintf(path, cap, "%s/server.lock", dir);
	return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

/* The process id the holder wrote, 0 if there is none yet (it is writing it) or it is not one. */
static long holder_pid(int fd)
{
	char buf[24];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *end;
	long pid = strtol(buf, &end, 10);
	return pid > 0 && end != buf && (*end == '\n' || *end == '\0') ? pid : 0;
}

/* The directory made, as the storage makes its own: 0700, its name synced into its parent. */
static int make_dir(const char *dir)
{
	if (mkdir(dir, 0700) < 0)
		return errno == EEXIST ? 0 : -errno;
	/* Its name is in the directory above: "data/"'s too, not in "data" itself (the review). */
	char parent[PATH_MAX];
	size_t len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	const char *slash = memrchr(dir, '/', len);
	size_t n = slash ? (size_t)(slash - dir) : 0;
	if (n >= sizeof parent)
		return 0;
	memcpy(parent, dir, n);
	parent[n] = '\0';
	int fd = open(!slash ? "." : n ? parent : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

int srv_data_lock(const char *dir, int *fd, long *holder)
{
	char path[PATH_MAX];
	*fd = -1;
	*holder = 0;
	int rc = lock_path(dir, path, sizeof path);
	if (rc < 0 || (rc = make_dir(dir)) < 0)
		return rc;
	int f = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f < 0)
		return -errno;
	struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(f, F_OFD_SETLK, &lk) < 0) {
		rc = errno == EAGAIN || errno == EACCES ? -EWOULDBLOCK : -errno;
		if (rc == -EWOULDBLOCK)
			*holder = holder_pid(f);
		close(f);
		return rc;
	}
	char pid[24];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	/* The id is for the message of a refused start only: the lock holds without it. */
	if (ftruncate(f, 0) < 0 || pwrite(f, pid, (size_t)n, 0) != n)
		fprintf(stderr, "jiayin: could not write the process id into %s: %s\n", path,
		        strerror(errno));
	*fd = f;
	return 0;
}

int srv_data_lock_held(const char *dir, long *holder)
{
	char path[PATH_MAX];
	*holder = 0;
	if (lock_path(dir, path, sizeof path) < 0)
		return 0;
	int f = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (f < 0)
		return 0;
	struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int held = fcntl(f, F_OFD_GETLK, &lk) == 0 && lk.l_type != F_UNLCK;
	if (held)
		*holder = holder_pid(f);
	close(f);
	return held;
}
