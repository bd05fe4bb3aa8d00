/*
 * bench_storage.c — the storage library against its peers, side by side in one run.
 *
 *   append:  durable appends of a 150 KB message through store_message_append, against a bare
 *            SQLite loop doing one INSERT of the same blob per transaction with the same
 *            pragmas (WAL, synchronous=FULL, the mailbox's page size). Target: >= 0.8x.
 *   read:    a message's audio through store_audio_read, against pread() of the same bytes
 *            from a plain file (both from the page cache), in READ_CHUNK reads: the size the
 *            server reads with, so a 150 KB clip is one call. Target: >= 0.5x. Reported
 *            against an fd already open, and against open+pread+close per read: each library
 *            call finds the clip by its id, as a file-per-message store would open it by name.
 *            Three times: one clip read over and over (it stays in the CPU's caches and the
 *            connection's page cache); FEW_CLIPS clips of one mailbox read in turn against as
 *            many files (6 MB: within the last-level cache, 32 MB on the EPYC we measure on);
 *            MANY_CLIPS clips in turn (150 MB: from RAM, as a server serving many families
 *            reads them; a working set near the cache's size favours whichever side is
 *            smaller and measures the cache, not the reads).
 *   list:    the newest 50 messages of a mailbox holding 100,000. Target: < 1 ms median.
 *            (Audio lives in its own table, so the listing cost does not depend on clip sizes;
 *            the big mailbox is built with small clips in one transaction to save time.)
 *   open:    10,000 family databases on disk; the cost of opening one on demand (not open
 *            yet, with its quick_check; its file is in the OS page cache, just written) and the
 *            memory each open family holds (RSS growth / count): the floor, as the families are
 *            empty and opened by a call that uses the writer alone, its cache given back after
 *            the quick_check. A family in use adds its readers (2 by default) and up to 512 KiB
 *            of page cache per connection.
 *   lookup:  the cheapest call (store_mailbox_usage, total known: no SQL) on 256 open families
 *            in turn, so that each call's family is the least recently used, against the same
 *            call on one family over and over (the most recently used): what finding an open
 *            family costs when many are open. Target: >= 0.5x.
 * Medians of RUNS runs; every figure printed is measured here. Usage: bench_storage [WORKDIR]
 */
#include "bench_common.h"
#include "internal.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RUNS 5
#define READ_CHUNK (256 * 1024)
#define CLIP_BYTES (150 * 1024)
#define FEW_CLIPS 40	/* 6 MB: in the CPU's last-level cache, beyond a connection's 512 KiB */
#define MANY_CLIPS 1000 /* 150 MB: beyond the last-level cache on both sides, read from RAM */
#define READS 2000	/* per side and regime; at least three rounds of MANY_CLIPS */
#define APPENDS 210
#define APPEND_BLOCK 10
#define BIG_MAILBOX 100000
#define LIST_CALLS 2000
#define FAMILIES 10000
#define OPENS 400
#define LOOKUP_FAMILIES 256 /* the default max_open_families */
#define LOOKUP_CALLS (LOOKUP_FAMILIES * 400)

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_storage: %s failed: %d (%s)\n", what, rc, store_errcode(rc));
	exit(1);
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, resident = 0;
	if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = 0;
	if (f)
		fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static store *open_store(const char *dir, unsigned max_open)
{
	store_options o;
	store *s;
	store_options_init(&o);
	o.dir = dir;
	o.max_open_families = max_open;
	int rc = store_open(&s, &o);
	if (rc < 0)
		die("store_open", rc);
	return s;
}

static void fresh_dir(char *buf, size_t cap, const char *work, const char *name)
{
	char cmd[512];
	snprintf(buf, cap, "%s/%s", work, name);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
	if (system(cmd) != 0)
		exit(1);
	mkdir(buf, 0700);
}

/*
 * Appends per second through the library and through a bare SQLite loop (one INSERT per
 * transaction, the same pragmas), alternating blocks of APPEND_BLOCK so that the shared
 * machine's I/O weather falls on both alike.
 */
static void appends(const char *work, const uint8_t *clip, double *lib_rate, double *bare_rate)
{
	char dir[256], bdir[256], path[300], pragmas[256];
	store_family fam;
	store_member mem;
	uint8_t wave[STORE_WAVEFORM_POINTS] = {0};
	fresh_dir(dir, sizeof dir, work, "append-lib");
	fresh_dir(bdir, sizeof bdir, work, "append-bare");
	store *s = open_store(dir, 16);
	int rc = store_family_create(s, "bench", "parent", 0, 1, &fam, &mem);
	if (rc < 0)
		die("family_create", rc);
	store_new_message m = {.sender = mem.id.s, .waveform = wave, .audio = clip,
			       .audio_len = CLIP_BYTES};
	store_message out;
	int existed;

	sqlite3 *db;
	sqlite3_stmt *st;
	snprintf(path, sizeof path, "%s/bare.db", bdir);
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA page_size=%d; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
		 "PRAGMA foreign_keys=ON; "
		 "CREATE TABLE audio (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
		 mailbox_schema.page_size);
	if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, pragmas, 0, 0, 0) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO audio (data) VALUES (?)", -1, &st, 0) != SQLITE_OK)
		die("bare setup", STORE_EIO);

	double t_lib = 0, t_bare = 0;
	for (int done = 0; done < APPENDS; done += APPEND_BLOCK) {
		double t0 = now();
		for (int i = 0; i < APPEND_BLOCK; i++)
			if ((rc = store_message_append(s, fam.id.s, &m, &out, &existed)) < 0)
				die("append", rc);
		double t1 = now();
		for (int i = 0; i < APPEND_BLOCK; i++) {
			sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0);
			sqlite3_bind_blob(st, 1, clip, CLIP_BYTES, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				die("bare insert", STORE_EIO);
			sqlite3_reset(st);
			if (sqlite3_exec(db, "COMMIT", 0, 0, 0) != SQLITE_OK)
				die("bare commit", STORE_EIO);
		}
		double t2 = now();
		if (done > 0) { /* the first block of each warms up */
			t_lib += t1 - t0;
			t_bare += t2 - t1;
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	store_close(s);
	*lib_rate = (APPENDS - APPEND_BLOCK) / t_lib;
	*bare_rate = (APPENDS - APPEND_BLOCK) / t_bare;
}

/*
 * MB/s reading clips: through the library, and from plain files (one per message) with the
 * descriptor already open and opened by name per read. nclips = 1 reads one clip over and
 * over (it stays in the CPU's caches and the connection's page cache); more rotate through a
 * mailbox of nclips clips, as a server serving many messages would.
 */
static void reads(const char *work, const uint8_t *clip, int nclips, double *lib_mbs,
		  double *file_mbs, double *open_mbs)
{
	char dir[256], path[300];
	store_family fam;
	store_member mem;
	uint8_t wave[STORE_WAVEFORM_POINTS] = {0}, *buf = malloc(READ_CHUNK);
	uint8_t *mine = malloc(CLIP_BYTES);
	store_message *msg = calloc((size_t)nclips, sizeof *msg);
	int *fd = calloc((size_t)nclips, sizeof *fd);
	if (!buf || !mine || !msg || !fd)
		die("read setup", STORE_ENOMEM);
	fresh_dir(dir, sizeof dir, work, "read");
	store *s = open_store(dir, 16);
	int rc = store_family_create(s, "bench", "parent", 0, 1, &fam, &mem);
	if (rc < 0)
		die("read setup", rc);
	memcpy(mine, clip, CLIP_BYTES);
	for (int i = 0; i < nclips; i++) {
		memcpy(mine, &i, sizeof i); /* each clip its own bytes */
		store_new_message m = {.sender = mem.id.s, .waveform = wave, .audio = mine,
				       .audio_len = CLIP_BYTES};
		int existed;
		if ((rc = store_message_append(s, fam.id.s, &m, &msg[i], &existed)) < 0)
			die("read setup", rc);
		snprintf(path, sizeof path, "%s/%s.ogg", dir, msg[i].id.s);
		fd[i] = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
		if (fd[i] < 0 || write(fd[i], mine, CLIP_BYTES) != CLIP_BYTES)
			die("write file", STORE_EIO);
	}
	/* One untimed read on each side first: the library's first read of a family opens its
	 * read connection (0.3 ms, "open a cold family" below measures opening), as the file's
	 * descriptor is opened before the clock starts. 2,000 reads: 400 took only ~2 ms. */
	const int reps = READS > 3 * nclips ? READS : 3 * nclips;
	size_t warm;
	if ((rc = store_audio_read(s, fam.id.s, msg[0].id.s, 0, buf, READ_CHUNK, &warm)) < 0 ||
	    pread(fd[0], buf, READ_CHUNK, 0) != CLIP_BYTES)
		die("read warm-up", rc < 0 ? rc : STORE_EIO);
	double t0 = now();
	for (int r = 0; r < reps; r++) {
		const char *id = msg[r % nclips].id.s;
		for (uint64_t off = 0; off < CLIP_BYTES;) {
			size_t got;
			if ((rc = store_audio_read(s, fam.id.s, id, off, buf, READ_CHUNK, &got)) < 0)
				die("audio_read", rc);
			off += got;
		}
	}
	double tl = now() - t0;
	t0 = now();
	for (int r = 0; r < reps; r++) {
		for (off_t off = 0; off < CLIP_BYTES;) {
			ssize_t n = pread(fd[r % nclips], buf, READ_CHUNK, off);
			if (n <= 0)
				die("pread", STORE_EIO);
			off += n;
		}
	}
	double tf = now() - t0;
	/* The same through a file per message as a server would read it: open by name each time. */
	t0 = now();
	for (int r = 0; r < reps; r++) {
		snprintf(path, sizeof path, "%s/%s.ogg", dir, msg[r % nclips].id.s);
		int f2 = open(path, O_RDONLY);
		for (off_t off = 0; f2 >= 0 && off < CLIP_BYTES;) {
			ssize_t n = pread(f2, buf, READ_CHUNK, off);
			if (n <= 0)
				die("pread", STORE_EIO);
			off += n;
		}
		close(f2);
	}
	double to = now() - t0;
	for (int i = 0; i < nclips; i++)
		close(fd[i]);
	store_close(s);
	fresh_dir(dir, sizeof dir, work, "read"); /* 300 MB for MANY_CLIPS: not left behind */
	free(fd);
	free(msg);
	free(mine);
	free(buf);
	*lib_mbs = reps * (CLIP_BYTES / 1e6) / tl;
	*file_mbs = reps * (CLIP_BYTES / 1e6) / tf;
	*open_mbs = reps * (CLIP_BYTES / 1e6) / to;
}

/* A family whose mailbox holds BIG_MAILBOX small messages, built in one transaction. */
static void build_big_mailbox(const char *dir, store_id *family_id)
{
	store_family fam;
	store_member mem;
	store *s = open_store(dir, 16);
	int rc = store_family_create(s, "big", "parent", 0, 1, &fam, &mem);
	if (rc < 0)
		die("family_create", rc);
	store_close(s);
	*family_id = fam.id;
	char path[400];
	snprintf(path, sizeof path, "%s/families/%s.db", dir, fam.id.s);
	sqlite3 *db;
	sqlite3_stmt *msg, *audio;
	uint8_t wave[STORE_WAVEFORM_POINTS] = {0}, hash[32] = {0}, clip[1000] = {0};
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "BEGIN", 0, 0, 0) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
			       "INSERT INTO messages (id, seq, sender, created_ms, duration_ms, "
			       "lufs, bytes, waveform, sha256, state) "
			       "VALUES (?, ?, ?, ?, 30000, -16, 1000, ?, ?, 1)",
			       -1, &msg, 0) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO audio (message, data) VALUES (?, ?)", -1,
			       &audio, 0) != SQLITE_OK)
		die("big mailbox", STORE_EIO);
	for (int i = 1; i <= BIG_MAILBOX; i++) {
		store_id id;
		store_new_id(&id);
		sqlite3_bind_text(msg, 1, id.s, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(msg, 2, i);
		sqlite3_bind_text(msg, 3, mem.id.s, -1, SQLITE_STATIC);
		sqlite3_bind_int64(msg, 4, 1700000000000LL + i * 60000LL);
		sqlite3_bind_blob(msg, 5, wave, sizeof wave, SQLITE_STATIC);
		sqlite3_bind_blob(msg, 6, hash, sizeof hash, SQLITE_STATIC);
		if (sqlite3_step(msg) != SQLITE_DONE)
			die("big insert", STORE_EIO);
		sqlite3_reset(msg);
		sqlite3_bind_int64(audio, 1, sqlite3_last_insert_rowid(db));
		sqlite3_bind_blob(audio, 2, clip, sizeof clip, SQLITE_STATIC);
		if (sqlite3_step(audio) != SQLITE_DONE)
			die("big audio", STORE_EIO);
		sqlite3_reset(audio);
	}
	if (sqlite3_exec(db, "COMMIT", 0, 0, 0) != SQLITE_OK)
		die("big commit", STORE_EIO);
	sqlite3_finalize(msg);
	sqlite3_finalize(audio);
	sqlite3_close(db);
}

/* Median milliseconds of one newest-50 listing. */
static double list_newest(const char *dir, const store_id *fam)
{
	static store_message out[50];
	double t[LIST_CALLS];
	store *s = open_store(dir, 16);
	size_t n;
	int rc = store_messages_newest(s, fam->s, out, 50, &n); /* opens and warms */
	if (rc < 0 || n != 50)
		die("newest", rc);
	for (int i = 0; i < LIST_CALLS; i++) {
		double t0 = now();
		store_messages_newest(s, fam->s, out, 50, &n);
		t[i] = (now() - t0) * 1000;
	}
	store_close(s);
	return median(t, LIST_CALLS);
}

/* FAMILIES family files: one made through the library, copied, registered in bulk. Each copy
 * names its own family in its owner row (a mailbox under another family's name is set aside):
 * the template's id, in that row's text once, is overwritten with the copy's, same length. */
static void build_families(const char *dir, store_id *ids)
{
	store_family fam;
	store_member mem;
	store *s = open_store(dir, 16);
	int rc = store_family_create(s, "template", "parent", 0, 1, &fam, &mem);
	if (rc < 0)
		die("family_create", rc);
	store_close(s);
	char src[400], dst[400], path[400];
	snprintf(src, sizeof src, "%s/families/%s.db", dir, fam.id.s);
	FILE *in = fopen(src, "rb");
	static uint8_t file[1 << 20];
	size_t len = fread(file, 1, sizeof file, in);
	fclose(in);
	uint8_t *owner = memmem(file, len, fam.id.s, STORE_ID_LEN);
	if (!owner || memmem(owner + 1, len - (size_t)(owner + 1 - file), fam.id.s, STORE_ID_LEN))
		die("the template's owner row", STORE_EIO);
	snprintf(path, sizeof path, "%s/directory.db", dir);
	sqlite3 *db;
	sqlite3_stmt *st;
	if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, "BEGIN", 0, 0, 0) ||
	    sqlite3_prepare_v2(db, "INSERT INTO families (id, name, created_ms) VALUES (?, 'f', 1)",
			       -1, &st, 0) != SQLITE_OK)
		die("families setup", STORE_EIO);
	for (int i = 0; i < FAMILIES; i++) {
		store_new_id(&ids[i]);
		memcpy(owner, ids[i].s, STORE_ID_LEN);
		snprintf(dst, sizeof dst, "%s/families/%s.db", dir, ids[i].s);
		FILE *out = fopen(dst, "wb");
		if (!out || fwrite(file, 1, len, out) != len)
			die("copy family", STORE_EIO);
		fclose(out);
		sqlite3_bind_text(st, 1, ids[i].s, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) != SQLITE_DONE)
			die("register family", STORE_EIO);
		sqlite3_reset(st);
	}
	sqlite3_exec(db, "COMMIT", 0, 0, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* Median ms to open a cold family on demand, and KiB of memory per open family. */
static void open_costs(const char *dir, const store_id *ids, double *open_ms, double *kb_each)
{
	double t[OPENS];
	store *s = open_store(dir, OPENS);
	uint64_t used;
	long before = rss_kb();
	for (int i = 0; i < OPENS; i++) {
		const store_id *id = &ids[(i * 7919) % FAMILIES];
		double t0 = now();
		int rc = store_mailbox_usage(s, id->s, &used);
		t[i] = (now() - t0) * 1000;
		if (rc < 0)
			die("open family", rc);
	}
	*kb_each = (double)(rss_kb() - before) / OPENS;
	store_close(s);
	*open_ms = median(t, OPENS);
}

/*
 * Nanoseconds per store_mailbox_usage call on LOOKUP_FAMILIES open families taken in turn,
 * and on one family over and over; RUNS runs of each, interleaved, medians.
 */
static void lookups(const char *dir, const store_id *ids, double *turn_ns, double *one_ns)
{
	double t[RUNS], o[RUNS];
	store *s = open_store(dir, LOOKUP_FAMILIES);
	uint64_t used;
	int rc;
	for (int i = 0; i < LOOKUP_FAMILIES; i++) /* open each and learn its total, untimed */
		if ((rc = store_mailbox_usage(s, ids[i].s, &used)) < 0)
			die("lookup setup", rc);
	for (int r = 0; r < RUNS; r++) {
		double t0 = now();
		for (int i = 0; i < LOOKUP_CALLS; i++)
			if ((rc = store_mailbox_usage(s, ids[i % LOOKUP_FAMILIES].s, &used)) < 0)
				die("lookup", rc);
		double t1 = now();
		for (int i = 0; i < LOOKUP_CALLS; i++)
			if ((rc = store_mailbox_usage(s, ids[0].s, &used)) < 0)
				die("lookup", rc);
		double t2 = now();
		t[r] = (t1 - t0) * 1e9 / LOOKUP_CALLS;
		o[r] = (t2 - t1) * 1e9 / LOOKUP_CALLS;
	}
	store_close(s);
	*turn_ns = median(t, RUNS);
	*one_ns = median(o, RUNS);
}

int main(int argc, char **argv)
{
	const char *work = argc > 1 ? argv[1] : "/tmp/jiayin-bench-storage";
	mkdir(work, 0700);
	if (sodium_init() < 0)
		return 1;
	uint8_t *clip = malloc(CLIP_BYTES);
	randombytes_buf(clip, CLIP_BYTES);
	static const int regime[] = {1, FEW_CLIPS, MANY_CLIPS};
	enum { REGIMES = sizeof regime / sizeof regime[0] };
	double lib[RUNS], bare[RUNS], rl[REGIMES][RUNS], rf[REGIMES][RUNS], ro[REGIMES][RUNS];
	for (int r = 0; r < RUNS; r++) { /* interleaved, so noise falls on both */
		appends(work, clip, &lib[r], &bare[r]);
		for (int g = 0; g < REGIMES; g++)
			reads(work, clip, regime[g], &rl[g][r], &rf[g][r], &ro[g][r]);
	}
	double ml = median(lib, RUNS), mb = median(bare, RUNS);
	double mrl[REGIMES], mrf[REGIMES], mro[REGIMES];
	for (int g = 0; g < REGIMES; g++) {
		mrl[g] = median(rl[g], RUNS);
		mrf[g] = median(rf[g], RUNS);
		mro[g] = median(ro[g], RUNS);
	}

	char big[256];
	store_id fam;
	fresh_dir(big, sizeof big, work, "big");
	build_big_mailbox(big, &fam);
	double list_ms = list_newest(big, &fam);

	char many[256];
	store_id *ids = malloc(FAMILIES * sizeof *ids);
	fresh_dir(many, sizeof many, work, "many");
	build_families(many, ids);
	double open_ms, kb_each;
	open_costs(many, ids, &open_ms, &kb_each);
	double turn_ns, one_ns;
	lookups(many, ids, &turn_ns, &one_ns);

	printf("| measure | Jiayin storage | peer | ratio | target |\n|---|---|---|---|---|\n");
	printf("| durable append, 150 KB (appends/s) | %.1f | %.1f (bare SQLite loop) | %.2fx | "
	       ">= 0.8x: %s |\n",
	       ml, mb, ml / mb, ml / mb >= 0.8 ? "PASS" : "FAIL");
	for (int g = 0; g < REGIMES; g++) {
		char what[96];
		if (regime[g] == 1)
			snprintf(what, sizeof what, "one clip over and over");
		else
			snprintf(what, sizeof what, "%d clips of one mailbox in turn (%.0f MB)",
				 regime[g], regime[g] * (CLIP_BYTES / 1e6));
		printf("| audio read, 150 KB in %d KiB reads, %s (MB/s) | %.0f | %.0f (pread, "
		       "a file per clip, open fds) | %.2fx | >= 0.5x: %s |\n",
		       READ_CHUNK / 1024, what, mrl[g], mrf[g], mrl[g] / mrf[g],
		       mrl[g] / mrf[g] >= 0.5 ? "PASS" : "FAIL");
		printf("| the same by message: the library finds each clip by id | %.0f | %.0f (open "
		       "by name + pread + close) | %.2fx | >= 0.5x: %s |\n",
		       mrl[g], mro[g], mrl[g] / mro[g], mrl[g] / mro[g] >= 0.5 ? "PASS" : "FAIL");
	}
	printf("| newest 50 of %d messages (median ms) | %.3f | | | < 1 ms: %s |\n", BIG_MAILBOX,
	       list_ms, list_ms < 1.0 ? "PASS" : "FAIL");
	printf("| open a cold family of %d on disk, its file in the OS page cache (median ms) | "
	       "%.2f | | | reported |\n",
	       FAMILIES, open_ms);
	printf("| memory per open family: just opened, empty, writer only (KiB of RSS) | "
	       "%.0f | | | reported |\n",
	       kb_each);
	printf("| a call on %d open families in turn (ns per call) | %.0f | %.0f (one family "
	       "over and over) | %.2fx | >= 0.5x: %s |\n",
	       LOOKUP_FAMILIES, turn_ns, one_ns, one_ns / turn_ns,
	       one_ns / turn_ns >= 0.5 ? "PASS" : "FAIL");
	printf("\n%d runs (medians); %d timed appends per run and side, in alternating blocks of "
	       "%d; clip %d bytes.\n",
	       RUNS, APPENDS - APPEND_BLOCK, APPEND_BLOCK, CLIP_BYTES);
	free(ids);
	free(clip);
	return 0;
}
