/*
 * hold_preload.c — requests held at chosen points, for the server's tests: preloaded into one
 * jiayin run (LD_PRELOAD), it wraps sqlite3_step() and holds a thread that starts a statement
 * whose SQL holds one of the texts in JIAYIN_HOLD_SQL (up to four, separated by '|': text N),
 * so that a test orders what two requests do without a sleep (one waits inside its transaction
 * while the other reads, say). The test arms text N by writing DIR/armN (DIR: JIAYIN_HOLD_DIR)
 * with a count K: the first K statements of that text started from then on run, and the next
 * one waits, having made DIR/heldN, until the test removes DIR/armN. Unarmed, or without the
 * variables, every call is the real one. Only a statement's first step counts
 * (sqlite3_stmt_busy() is false before it): a query of many rows is one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEXTS_MAX 4

typedef struct sqlite3_stmt sqlite3_stmt;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	ino_t ino; /* the arm file counted from: a new one starts the count again */
	struct timespec mtime;
	long started; /* statements of the text started since it was armed */
} armed[TEXTS_MAX];

/* Text n of JIAYIN_HOLD_SQL into out; false when there is none. */
static bool text_of(const char *all, int n, char *out, size_t size)
{
	for (; n > 0 && all; n--)
		if ((all = strchr(all, '|')))
			all++;
	if (!all || !*all)
		return false;
	size_t len = strcspn(all, "|");
	if (len == 0 || len >= size)
		return false;
	memcpy(out, all, len);
	out[len] = '\0';
	return true;
}

/* Under mu: whether this start of text n is the one its arm file holds. */
static bool is_held(const char *arm, int n)
{
	FILE *f = fopen(arm, "r");
	if (!f)
		return false;
	struct stat st;
	long k = 0;
	bool known = fstat(fileno(f), &st) == 0;
	if (fscanf(f, "%ld", &k) != 1)
		k = 0;
	fclose(f);
	if (!known)
		return false;
	if (st.st_ino != armed[n].ino || st.st_mtim.tv_sec != armed[n].mtime.tv_sec ||
	    st.st_mtim.tv_nsec != armed[n].mtime.tv_nsec) {
		armed[n].ino = st.st_ino;
		armed[n].mtime = st.st_mtim;
		armed[n].started = 0;
	}
	return armed[n].started++ == k;
}

static void wait_while_armed(const char *dir, const char *arm, int n)
{
	char held[4096];
	snprintf(held, sizeof held, "%s/held%d", dir, n);
	int fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	struct timespec pause = {0, 10 * 1000 * 1000};
	while (access(arm, F_OK) == 0)
		nanosleep(&pause, NULL);
}

int sqlite3_step(sqlite3_stmt *stmt)
{
	static int (*real)(sqlite3_stmt *);
	static const char *(*sql_of)(sqlite3_stmt *);
	static int (*busy)(sqlite3_stmt *);
	if (!real) {
		real = (int (*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_step");
		sql_of = (const char *(*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_sql");
		busy = (int (*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_stmt_busy");
	}
	const char *texts = getenv("JIAYIN_HOLD_SQL"), *dir = getenv("JIAYIN_HOLD_DIR");
	const char *sql = texts && dir && sql_of && busy && !busy(stmt) ? sql_of(stmt) : NULL;
	char text[512], arm[4096];
	for (int n = 0; sql && n < TEXTS_MAX && text_of(texts, n, text, sizeof text); n++) {
		if (!strstr(sql, text))
			continue;
		snprintf(arm, sizeof arm, "%s/arm%d", dir, n);
		pthread_mutex_lock(&mu);
		bool hold = is_held(arm, n);
		pthread_mutex_unlock(&mu);
		if (hold)
			wait_while_armed(dir, arm, n);
	}
	return real(stmt);
}
