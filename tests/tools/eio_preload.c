/*
 * eio_preload.c — a disk sector that goes bad, for test_jiayinctl.py and the server's tests
 * (serverlib.each_read_failing): preloaded into one jiayinctl or jiayin run (LD_PRELOAD), it
 * makes pread64() of the file named by JIAYIN_EIO_FILE fail
 * with EIO whenever the read covers byte JIAYIN_EIO_AT, after the first JIAYIN_EIO_PASS such
 * reads went through (a sector that read at the family's opening and fails after it). SQLite
 * reads its files with pread64() only.
 * And a disk that fills, for the server's tests: while the file JIAYIN_FULL_WHILE exists,
 * pwrite64() (SQLite's only write of its pages) of a file under the directory JIAYIN_FULL_DIR
 * fails with ENOSPC. Every other call is the real one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT, off64_t */
#endif
#include <dlfcn.h>
#include <errno.h>
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
