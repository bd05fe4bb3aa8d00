/*
 * eio_preload.c — a disk sector that goes bad, for test_jiayinctl.py and the server's tests
 * (serverlib.each_read_failing): preloaded into one jiayinctl or jiayin run (LD_PRELOAD), it
 * makes pread64() of the file named by JIAYIN_EIO_FILE fail
 * with EIO whenever the read covers byte JIAYIN_EIO_AT, after the first JIAYIN_EIO_PASS such
 * reads went through (a sector that read at the family's opening and fails after it). SQLite
 * reads its files with pread64() only. And a file system that keeps no locks (NFS without its
 * lock manager): with JIAYIN_NOLCK set, an open file description's lock (F_OFD_SETLK, the data
 * directory's lock) fails with ENOLCK. And a disk that fills: while the file JIAYIN_FULL_WHILE
 * exists, pwrite64() (SQLite's only write of its pages) of a file under the directory
 * JIAYIN_FULL_DIR fails with ENOSPC. And which directories are synced: with JIAYIN_FSYNC_LOG
 * set, each fsync() of a directory appends its path, a line, to that file. Every other call is
 * the real one.
 */
/* The symbols by their own names: with meson's _FILE_OFFSET_BITS=64, <fcntl.h> would name
 * this file's fcntl fcntl64. */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT, off64_t */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
	static ssize_t (*real)(int, void *, size_t, off64_t);
	static long passed;
	if (!real)
		real = (ssize_t(*)(int, void *, size_t, off64_t))dlsym(RTLD_NEXT, "pread64");
	const char *file = getenv("JIAYIN_EIO_FILE"), *at = getenv("JIAYIN_EIO_AT");
	const char *pass = getenv("JIAYIN_EIO_PASS");
	struct stat a, b;
	if (file && at && fstat(fd, &a) == 0 && stat(file, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino) {
		long long bad = atoll(at);
		if (off <= bad && bad < off + (long long)n && passed++ >= (pass ? atol(pass) : 0)) {
			errno = EIO;
			return -1;
		}
	}
	return real(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off64_t);
	if (!real)
		real = (ssize_t(*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
	const char *flag = getenv("JIAYIN_FULL_WHILE"), *dir = getenv("JIAYIN_FULL_DIR");
	if (flag && dir && access(flag, F_OK) == 0) {
		char link[64], path[4096];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t k = readlink(link, path, sizeof path - 1);
		if (k > 0) {
			path[k] = 0;
			if (strncmp(path, dir, strlen(dir)) == 0) {
				errno = ENOSPC;
				return -1;
			}
		}
	}
	return real(fd, buf, n, off);
}

/* fcntl's third argument, whatever the command, is passed on as glibc reads it: a pointer's
 * worth. With _FILE_OFFSET_BITS=64 (meson's default) callers reach fcntl64. */
typedef int (*fcntl_fn)(int, int, ...);

static int fcntl_or_nolck(fcntl_fn *real, const char *name, int fd, int cmd, void *arg)
{
	if (!*real)
		*real = (fcntl_fn)dlsym(RTLD_NEXT, name);
	if (cmd == F_OFD_SETLK && getenv("JIAYIN_NOLCK")) {
		errno = ENOLCK;
		return -1;
	}
	return (*real)(fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	static fcntl_fn real;
	return fcntl_or_nolck(&real, "fcntl", fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	static fcntl_fn real;
	return fcntl_or_nolck(&real, "fcntl64", fd, cmd, arg);
}

int fsync(int fd)
{
	static int (*real)(int);
	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	const char *log = getenv("JIAYIN_FSYNC_LOG");
	struct stat st;
	if (log && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		char link[64], path[4096];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t k = readlink(link, path, sizeof path - 1);
		FILE *f = k > 0 ? fopen(log, "a") : NULL;
		if (f) {
			fprintf(f, "%.*s\n", (int)k, path);
			fclose(f);
		}
	}
	return real(fd);
}
