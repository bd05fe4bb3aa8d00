/*
 * main.c — the jiayin program: settings, the data directory, storage, the event loop.
 *
 * Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 64 for a bad command line or
 * config, 70 when the data directory, storage or the listening socket cannot be set up, 74
 * when --help or --print-config cannot write what it prints, 75 when another jiayin runs on
 * the data directory (its lock is held: nothing there was read or changed).
 *
 * The start's order: the settings, the listening socket bound (a port in use stops it before
 * the data directory is made), the data directory's lock (data_lock.c), then the storage, the
 * key and the sweeps, the rest, and the listening.
 */
#include "data_lock.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void pool_nothing(uv_work_t *w)
{
	(void)w;
}

static void pool_started(uv_work_t *w, int status)
{
	(void)status;
	free(w);
}

/*
 * libuv starts all of its pool's threads at the first job: one queued here, while SIGHUP is
 * blocked, starts them so, and a thread keeps the mask it started with. (No memory: they start
 * with the first request's job instead, and the stop's SIGHUP window is back; nothing else.)
 */
static void pool_start(uv_loop_t *loop)
{
	uv_work_t *w = malloc(sizeof *w);
	if (w && uv_queue_work(loop, w, pool_nothing, pool_started) < 0)
		free(w);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/*
 * The data directory's key (data/secret) is the one it was made with: children's kiosk PINs,
 * signed URLs and pending pairing codes depend on it, so a lost or replaced key stops the
 * start with what to do, never a silent new key. The directory keeps the key's fingerprint;
 * a directory without one (new, or from before the key) gets the key it has, or a new one.
 */
static int check_key(const srv_config *cfg, store *st)
{
	static const char name[] = "server_key_fingerprint";
	uint8_t key[SRV_SECRET_LEN], fp[SRV_SECRET_FINGERPRINT_LEN], known[SRV_SECRET_FINGERPRINT_LEN];
	size_t n = 0;
	int rc = store_meta_get(st, name, known, sizeof known, &n);
	if (rc < 0 && rc != STORE_ENOTFOUND) {
		fprintf(stderr, "jiayin: cannot read the data directory: %s\n", store_strerror(rc));
		return -1;
	}
	bool remembered = rc == 0 && n == sizeof known;
	/* Only "1" starts over: JIAYIN_NEW_KEY=0 (or an empty value) must not accept any key. */
	const char *new_key = getenv("JIAYIN_NEW_KEY");
	bool start_over = new_key && strcmp(new_key, "1") == 0, replaced = false;
	if (new_key && !start_over)
		fprintf(stderr, "jiayin: JIAYIN_NEW_KEY is ignored: only JIAYIN_NEW_KEY=1 starts "
		                "over with a new key\n");
	rc = remembered && !start_over ? srv_secret_read(cfg->data_dir, key)
				       : srv_secret_load(cfg->data_dir, key);
	if (rc == -EINVAL && start_over) {
		/* A damaged key, knowingly replaced: kept aside (never over an earlier one), a new
		 * one made. */
		char from[PATH_MAX], to[PATH_MAX];
		int a = snprintf(from, sizeof from, "%s/secret", cfg->data_dir), b = 0;
		rc = -EEXIST;
		for (unsigned n = 0; rc == -EEXIST && n < 100; n++) {
			b = snprintf(to, sizeof to, "%s/secret.damaged-%lld%s%.0u", cfg->data_dir,
			             (long long)time(NULL), n ? "-" : "", n);
			if (a < 0 || b < 0 || (size_t)a >= sizeof from || (size_t)b >= sizeof to)
				rc = -ENAMETOOLONG;
			else
				rc = renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) < 0
				         ? -errno
				         : 0;
		}
		if (rc == 0) {
			fprintf(stderr, "jiayin: the damaged key was moved to %s\n", to);
			rc = srv_secret_load(cfg->data_dir, key);
			replaced = true;
		}
	}
	if (rc == -ENOENT) {
		fprintf(stderr,
			"jiayin: %s/secret is missing, but this data directory was made with one. "
			"Restore it from the backup (jiayinctl backup keeps it). Without it, "
			"children's kiosk PINs, signed audio URLs and pending pairing codes stop "
			"working. To start over with a new key anyway (parents then set their "
			"children's kiosk PINs again), start once with JIAYIN_NEW_KEY=1 in the "
			"environment\n",
			cfg->data_dir);
		return -1;
	}
	if (rc < 0) {
		fprintf(stderr, "jiayin: cannot use %s/secret (32 bytes, the server's key): %s%s\n",
		        cfg->data_dir, strerror(-rc),
		        rc == -EINVAL
		            ? ". It is damaged: restore it from the backup (jiayinctl backup "
		              "keeps it), or start over with a new key (parents then set "
		              "their children's kiosk PINs again) by starting once with "
		              "JIAYIN_NEW_KEY=1 in the environment"
		            : "");
		return -1;
	}
	srv_secret_fingerprint(key, fp);
	sodium_memzero(key, sizeof key);
	if (remembered && sodium_memcmp(fp, known, sizeof fp) != 0) {
		if (!start_over) {
			fprintf(stderr,
				"jiayin: %s/secret is not the key this data directory was made with: "
				"restore the right one from the backup. To start over with this key "
				"anyway (children's kiosk PINs must then be set again), start once with "
				"JIAYIN_NEW_KEY=1 in the environment\n",
				cfg->data_dir);
			return -1;
		}
		remembered = false;
		replaced = true;
	}
	/* The children's PINs were hashed with the old key: no picture can match them now, and a
	 * child tapping the right ones would be told wrong_pin until locked out (the operations
	 * review). Withdrawn, each link says "pin_set": false and the kiosk asks for a parent;
	 * before the new key is recorded, so a start that fails in between does this again. */
	unsigned withdrawn = 0;
	if (replaced && (rc = store_kiosk_pins_withdraw_all(st, &withdrawn)) < 0) {
		fprintf(stderr, "jiayin: cannot withdraw the kiosk PINs of the old key: %s\n",
		        store_strerror(rc));
		return -1;
	}
	if (!remembered && (rc = store_meta_put(st, name, fp, sizeof fp)) < 0) {
		fprintf(stderr, "jiayin: cannot record the key's fingerprint: %s\n",
			store_strerror(rc));
		return -1;
	}
	if (replaced)
		fprintf(stderr,
		        "jiayin: started over with a new server key (JIAYIN_NEW_KEY=1): "
		        "%u children's kiosk PINs were withdrawn, and parents must set them "
		        "again. Remove JIAYIN_NEW_KEY from the environment now\n",
		        withdrawn);
	else if (start_over)
		fprintf(stderr,
		        "jiayin: JIAYIN_NEW_KEY=1 is set, but the key is this data "
		        "directory's own: nothing was replaced. Remove JIAYIN_NEW_KEY from the "
		        "environment\n");
	return 0;
}

/*
 * Each connection is a file descriptor, and so are the open family databases (up to 256, each
 * with its WAL, through several connections), bodies on their way in and the log. Past the
 * soft limit libuv closes new clients unanswered and nothing counts them (a shell's 1,024
 * against max-connections' 20,000): so the soft limit is raised as far as the hard one lets it,
 * and a limit still too low is said in `said` (empty when it is enough).
 */
#define FILES_BESIDE_CONNECTIONS 4096

static void raise_file_limit(const srv_config *cfg, char *said, size_t cap)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)cfg->max_connections + FILES_BESIDE_CONNECTIONS;
	said[0] = 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= want)
		return;
	struct rlimit raised = {
	    rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want, rl.rlim_max};
	if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
		rl.rlim_cur = raised.rlim_cur;
	if (rl.rlim_cur < want)
		snprintf(said, cap,
		         "the file limit, %llu, is below max-connections (%u) and %u files beside: "
		         "clients past it are closed unanswered; raise it (LimitNOFILE)",
		         (unsigned long long)rl.rlim_cur, cfg->max_connections,
		         FILES_BESIDE_CONNECTIONS);
}

/*
 * What is wrong with the data directory's path itself, when the storage could not open it: a
 * typo in --data (a folder above it missing) or a file where it should be was told as "could
 * not read or write a file", which sent the operator to the disk (helper-130's review).
 */
static const char *data_dir_hint(const char *dir)
{
	struct stat st;
	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? NULL : "it is not a directory";
	if (errno == ENOENT)
		return "the directory it would be made in does not exist; check the path";
	if (errno == ENOTDIR)
		return "a part of its path is not a directory; check the path";
	return NULL;
}

/*
 * The data directory, or its directory.db, that this user may not write: a first start tried
 * as root before the service's, a backup copied back as root without the chown. SQLite opens
 * such a file read-only, and the start said "the storage is read-only" (the operations
 * walk-through: the mounts were looked at, not the owners).
 */
static const char *owner_hint(const char *dir, char *buf, size_t cap)
{
	static const char *const name[] = {"", "/directory.db", "/server.lock"};
	char path[4096];
	for (int i = 0; i < 3; i++) {
		struct stat st;
		snprintf(path, sizeof path, "%s%s", dir, name[i]);
		if (stat(path, &st) != 0 || st.st_uid == geteuid() ||
		    faccessat(AT_FDCWD, path, i ? R_OK | W_OK : R_OK | W_OK | X_OK, AT_EACCESS) ==
		        0)
			continue;
		snprintf(buf, cap,
		         "%s belongs to uid %u, and jiayin runs as uid %u, which may not write it: "
		         "give the data directory and everything in it to that user (chown -R; "
		         "docs/operations.md, Backups)",
		         path, (unsigned)st.st_uid, (unsigned)geteuid());
		return buf;
	}
	return NULL;
}

#define EXIT_IN_USE 75

/* Another jiayin holds the data directory's lock: said with its process id when it wrote one. */
static int in_use(const char *dir, long holder, const char *port)
{
	char pid[40] = "";
	if (holder > 0)
		snprintf(pid, sizeof pid, " (process %ld)", holder);
	fprintf(stderr,
	        "jiayin: cannot start: %s%sthe data directory %s is in use by another jiayin%s. "
	        "Only one server at a time may run on a data directory: stop that one first, "
	        "or give this one a data directory of its own; nothing in it was changed\n",
	        port ? port : "", port ? ", and " : "", dir, pid);
	return EXIT_IN_USE;
}

/* The data directory's lock taken, or the start refused with why (its exit status). */
static int lock_data_dir(const srv_config *cfg, int *fd)
{
	long holder = 0;
	int rc = srv_data_lock(cfg->data_dir, fd, &holder);
	if (rc == 0)
		return 0;
	if (rc == -EWOULDBLOCK)
		return in_use(cfg->data_dir, holder, NULL);
	if (rc == -ENOLCK || rc == -EOPNOTSUPP || rc == -EINVAL) {
		/* Never run unlocked: a second server could then start on it unnoticed. */
		fprintf(stderr,
		        "jiayin: cannot lock the data directory %s (%s/server.lock): %s. The file "
		        "system keeps no locks there, and without one a second server could start "
		        "on it unnoticed, both writing its files: keep the data directory on a "
		        "local file system (docs/operations.md)\n",
		        cfg->data_dir, cfg->data_dir, strerror(-rc));
		return 70;
	}
	char owner[4500];
	const char *hint = data_dir_hint(cfg->data_dir);
	if (!hint)
		hint = owner_hint(cfg->data_dir, owner, sizeof owner);
	fprintf(stderr, "jiayin: cannot open storage in %s: %s\n", cfg->data_dir,
	        hint ? hint : strerror(-rc));
	return 70;
}

int main(int argc, char **argv)
{
	/*
	 * SIGHUP is held back until the loop's handler is in place: its default action ends the
	 * process, and logrotate's postrotate hook sends it whenever the log rotates, start or
	 * not (a start that sweeps many families, or makes a new data directory, takes a while).
	 * Blocked rather than ignored: one that arrives meanwhile stays pending and is delivered
	 * when it is unblocked below, so the log file opened during the start is reopened as
	 * the rotation asked. libuv's uv_signal_start() installs its own handler over any
	 * disposition and keeps the caller's mask. The pool's threads are started meanwhile
	 * (pool_start below) and keep it blocked for good: SIGHUP reaches the loop's thread only,
	 * which blocks it again to stop.
	 */
	sigset_t hup;
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &hup, NULL);
	srv_config cfg;
	char err[512];
	srv_config_defaults(&cfg);
	int rc = srv_config_from_args(&cfg, argc, argv, err, sizeof err);
	if (rc == 1)
		return 0;
	if (rc == -2) {
		fprintf(stderr, "jiayin: %s\n", err);
		return 74;
	}
	if (rc < 0) {
		fprintf(stderr, "jiayin: %s (see jiayin --help)\n", err);
		return 64;
	}
	signal(SIGPIPE, SIG_IGN);
	char file_limit[256];
	raise_file_limit(&cfg, file_limit, sizeof file_limit);
	if (sodium_init() < 0) {
		fprintf(stderr, "jiayin: libsodium could not start\n");
		return 70;
	}
	/*
	 * Streamed bodies use 256 KiB buffers, filled on pool threads and freed on the loop.
	 * glibc would map and unmap each (and trim the heap after each free): page faults were
	 * a fifth of the server's time serving clips. Keep them in the heap instead.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	/* Bound first: a port in use (another server's, this one's maybe) stops the start before
	 * anything in the data directory is made, read or swept. */
	static srv_server srv;
	if ((rc = srv_server_bind(&srv, &cfg)) < 0) {
		char what[sizeof srv.start_failed + 64];
		long holder = 0;
		snprintf(what, sizeof what, "%s: %s", srv.start_failed, uv_strerror(rc));
		if (rc == UV_EADDRINUSE && srv_data_lock_held(cfg.data_dir, &holder))
			return in_use(cfg.data_dir, holder, what);
		fprintf(stderr, "jiayin: cannot start: %s\n", what);
		return 70;
	}
	/* Then the data directory's lock, held until the process ends: a second server on it
	 * stops here, before its sweep could take a family the first is making. */
	int lock_fd = -1;
	if ((rc = lock_data_dir(&cfg, &lock_fd)) != 0) {
		srv_server_free(&srv);
		return rc;
	}
	/* The storage makes families/ on the first start (the lock made the data directory), each
	 * name synced into its parent. */
	store_options so;
	store_options_init(&so);
	so.dir = cfg.data_dir;
	store *st = NULL;
	if ((rc = store_open(&st, &so)) < 0) {
		/* A damaged directory is never set aside, as a family's mailbox is: said so. */
		char owner[4500];
		const char *hint = data_dir_hint(cfg.data_dir);
		if (!hint && rc != STORE_ECORRUPT)
			hint = owner_hint(cfg.data_dir, owner, sizeof owner);
		fprintf(stderr, "jiayin: cannot open storage in %s: %s (%s)\n", cfg.data_dir,
		        rc == STORE_ECORRUPT ? "directory.db is damaged (it stays where it is): "
		                               "restore it from the backup"
		        : hint               ? hint
		                             : store_strerror(rc),
		        store_errcode(rc));
		srv_server_free(&srv);
		return 70;
	}
	if (check_key(&cfg, st) < 0) {
		store_close(st);
		srv_server_free(&srv);
		return 70;
	}
	/* A family erased just before a crash may have left its file: erase it now. One no
	 * family owns that was never erased is set aside (quarantine/) and said. */
	unsigned swept = 0, aside = 0;
	if ((rc = store_families_sweep(st, &swept, &aside)) < 0)
		fprintf(stderr, "jiayin: could not look for orphaned family files: %s\n",
			store_strerror(rc));
	if (swept > 0)
		fprintf(stderr,
		        "jiayin: erased %u file(s) of families already erased (left by a crash, or "
		        "copied back)\n",
		        swept);
	if (aside > 0)
		fprintf(stderr,
		        "jiayin: moved %u family file(s) that this directory never knew to "
		        "quarantine/ (families/ restored without its directory.db?)\n",
		        aside);
	/* libuv sizes its pool from the environment, once, at the first job. */
	char threads[16];
	snprintf(threads, sizeof threads, "%u", cfg.threads);
	setenv("UV_THREADPOOL_SIZE", threads, 1);
	uv_loop_t *loop = uv_default_loop();
	/* An IPv6 address in brackets before its port, as in a URL: "[::1]:8080". */
	bool v6 = strchr(cfg.listen_host, ':') != NULL;
	if ((rc = srv_server_start(&srv, loop, &cfg, st)) < 0) {
		fprintf(stderr, "jiayin: cannot start: %s: %s\n", srv.start_failed,
		        uv_strerror(rc));
		uv_walk(loop, close_walk, NULL);
		uv_run(loop, UV_RUN_DEFAULT);
		uv_loop_close(loop);
		srv_server_free(&srv);
		store_close(st);
		return 70;
	}
	pool_start(loop);
	pthread_sigmask(SIG_UNBLOCK, &hup, NULL); /* the loop's handler is in place */
	char where[1400];
	snprintf(where, sizeof where, "listening on %s%s%s:%u, data in %s", v6 ? "[" : "",
	         cfg.listen_host, v6 ? "]" : "", srv.port, cfg.data_dir);
	srv_log_event(&srv, "start", where);
	if (file_limit[0])
		srv_log_event(&srv, "file_limit", file_limit);
	uv_run(loop, UV_RUN_DEFAULT);
	/* Drained: close what is left (the grace timer) and let the pool's jobs end. Closing its
	 * handle puts SIGHUP's default action back (libuv does), which would kill the process
	 * while storage closes if logrotate's hook fired now: no thread takes it from here on
	 * (the pool's never did), and then it is ignored: nothing is left to reopen. */
	pthread_sigmask(SIG_BLOCK, &hup, NULL);
	uv_walk(loop, close_walk, NULL);
	signal(SIGHUP, SIG_IGN);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	store_close(st);
	srv_log_event(&srv, "stop", "all requests finished; storage closed");
	srv_server_free(&srv);
	close(lock_fd); /* the data directory is free for the next server */
	return 0;
}
