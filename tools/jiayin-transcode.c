/*
 * jiayin-transcode — transcode one clip with the codec library and print one JSON line.
 *
 * The output is written to a temporary file beside OUT, fsync'ed and renamed into place (the
 * directory synced after), so OUT either holds a complete Ogg Opus file or does not exist
 * (also when SIGTERM, SIGINT or SIGHUP stops it midway: the temporary file is removed first);
 * it is mode 0600 (a family's voice), whatever the umask. An io_error's message names the file
 * that failed (IN, OUT or OUT's folder) and why. Paths in the JSON line show bytes that are not
 * UTF-8 as U+FFFD. Exit status: 0 on success, the negated codec error code (1..15) on
 * failure, 64 on a usage error (OUT the same file as IN is one: it would replace the input).
 */
#include "codec.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 64

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: jiayin-transcode [options] IN OUT\n"
	    "Transcode a WAV, Ogg Opus or WebM Opus clip to loudness-normalised mono Ogg Opus.\n"
	    "\n"
	    "  --bitrate KBPS        Opus bitrate, %d-%d (default %d)\n"
	    "  --complexity N        libopus complexity 0-10 (default 10)\n"
	    "  --target-lufs LUFS    integrated loudness to reach (default %.0f)\n"
	    "  --true-peak DBTP      true-peak ceiling of the encoded file (default %.1f)\n"
	    "  --max-gain DB         largest gain applied to quiet clips (default %.0f)\n"
	    "  --min-duration SEC    shortest clip accepted (default %.1f)\n"
	    "  --max-duration SEC    longest clip accepted (default %u)\n"
	    "  --max-input-bytes N   largest input accepted (default %llu)\n"
	    "  --serial N            fixed Ogg serial number (default: random)\n"
	    "  -h, --help            this text\n"
	    "\n"
	    "Prints one JSON line: the measurements, or {\"error\":{\"code\",\"message\"}}\n"
	    "(a path's bytes that are not UTF-8 show as U+FFFD); an io_error's message names\n"
	    "the file that failed, IN or OUT (or OUT's folder), and why. OUT is made mode 0600.\n"
	    "IN is read twice: a pipe is refused, and so is an IN cut short meanwhile.\n"
	    "Exit status: 0, the codec error number (1-15), or 64 for usage errors (said on\n"
	    "stderr), among them OUT naming the same file as IN (the recording is kept).\n",
	    CODEC_MIN_BITRATE / 1000, CODEC_MAX_BITRATE / 1000, CODEC_DEFAULT_BITRATE / 1000,
	    CODEC_DEFAULT_TARGET_LUFS, CODEC_DEFAULT_TRUE_PEAK_DBTP, CODEC_DEFAULT_MAX_GAIN_DB,
	    CODEC_DEFAULT_MIN_DURATION_MS / 1000.0, CODEC_DEFAULT_MAX_DURATION_MS / 1000,
	    (unsigned long long)CODEC_DEFAULT_MAX_INPUT_BYTES);
}

/* The length of the well-formed UTF-8 sequence at p (1-4), or 0 if it is not one (a stray
 * byte, an overlong form, a surrogate, past U+10FFFF, cut short). */
static size_t utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	size_t n = p[0] >= 0xc2 && p[0] <= 0xdf   ? 2
	           : p[0] >= 0xe0 && p[0] <= 0xef ? 3
	           : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
	                                          : 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return n;
}

/*
 * Print a JSON string literal. Paths are bytes: quotes, backslashes and control bytes are
 * escaped, and each byte that is not part of well-formed UTF-8 prints as \ufffd (the
 * replacement character), so the line is always valid JSON; such a path reads back changed.
 */
static void json_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = utf8_len(p);
		if (n == 0)
			fputs("\\ufffd", stdout), n = 1;
		else if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			fwrite(p, 1, n, stdout);
		p += n;
	}
	putchar('"');
}

/* The error line with `message` as it is (NULL: the code's own sentence); the exit status. */
static int fail_saying(int err, const char *message)
{
	printf("{\"error\":{\"code\":\"%s\",\"message\":", codec_errcode(err));
	json_string(message ? message : codec_strerror(err));
	printf("}}\n");
	return err < 0 ? -err : EXIT_USAGE;
}

/* fail_saying(), then free(message). */
static int fail_freeing(int err, char *message)
{
	int status = fail_saying(err, message);
	free(message);
	return status;
}

/* The error line: the code's sentence, then `detail` when there is one. */
static int fail(int err, const char *detail)
{
	if (!detail)
		return fail_saying(err, NULL);
	char msg[1024];
	snprintf(msg, sizeof msg, "%s: %s", codec_strerror(err), detail);
	return fail_saying(err, msg);
}

/* before, path and after in one new string (NULL when out of memory); free() it. A path is
 * as long as it is: the line names it whole. */
static char *about(const char *before, const char *path, const char *after)
{
	size_t len = strlen(before) + strlen(path) + strlen(after) + 1;
	char *s = malloc(len);
	if (s)
		snprintf(s, len, "%s%s%s", before, path, after);
	return s;
}

/* before, path, ": " and errno's sentence, in one new string (NULL when out of memory). */
static char *about_errno(const char *before, const char *path, int err)
{
	char after[160];
	snprintf(after, sizeof after, ": %s", strerror(err ? err : EIO));
	return about(before, path, after);
}

static int parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* JSON has no infinities: a measurement of pure silence prints as `fallback`. */
static double finite_or(double v, double fallback)
{
	return isfinite(v) ? v : fallback;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The temporary file while it exists, for the signal handler to remove (NULL: none). */
static char *volatile tmp_to_remove;

/* SIGTERM, SIGINT or SIGHUP midway: remove the temporary file, then die of the signal. */
static void remove_tmp_and_die(int sig)
{
	char *path = tmp_to_remove;
	if (path)
		unlink(path);
	signal(sig, SIG_DFL);
	raise(sig); /* delivered when the handler returns */
}

static const int fatal_signals[] = {SIGTERM, SIGINT, SIGHUP};

/* The fatal signals as a set: blocked while one is handled, and while the file is made. */
static void fatal_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof fatal_signals / sizeof *fatal_signals; i++)
		sigaddset(set, fatal_signals[i]);
}

/* Handle the signals that would kill us with the temporary file left (one ignored, as
 * SIGINT in a background job, stays ignored). SIGXFSZ is ignored: a write past the file size
 * limit fails with EFBIG, an io_error, where the signal killed the process. */
static void catch_fatal_signals(void)
{
	for (size_t i = 0; i < sizeof fatal_signals / sizeof *fatal_signals; i++) {
		struct sigaction old, sa = {.sa_handler = remove_tmp_and_die};
		fatal_set(&sa.sa_mask);
		if (sigaction(fatal_signals[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
			sigaction(fatal_signals[i], &sa, NULL);
	}
	signal(SIGXFSZ, SIG_IGN);
}

/* Block the fatal signals (the old mask into *old), so the file and tmp_to_remove come
 * together; sigprocmask(SIG_SETMASK, old, NULL) lets them in again. */
static void block_fatal_signals(sigset_t *old)
{
	sigset_t set;
	fatal_set(&set);
	sigprocmask(SIG_BLOCK, &set, old);
}

/*
 * The codec's fd source and sink, watched to tell which side of an io_error failed: the errno
 * of the first failed read of IN and of the first failed write of the temporary file (0: none).
 */
typedef struct watched_io {
	codec_source src;
	codec_sink sink;
	int read_errno, write_errno;
} watched_io;

/* rc, with the errno behind a failure kept in *err (the first one; EIO when there was none). */
static int noted(int rc, int *err)
{
	if (rc < 0 && !*err)
		*err = errno ? errno : EIO;
	return rc;
}

static int watched_read(void *ctx, uint8_t *buf, size_t len, size_t *got)
{
	watched_io *w = ctx;
	errno = 0;
	return noted(w->src.read(w->src.ctx, buf, len, got), &w->read_errno);
}

static int watched_seek(void *ctx, uint64_t offset)
{
	watched_io *w = ctx;
	errno = 0;
	return noted(w->src.seek(w->src.ctx, offset), &w->read_errno);
}

static int watched_write(void *ctx, const uint8_t *buf, size_t len)
{
	watched_io *w = ctx;
	errno = 0;
	return noted(w->sink.write(w->sink.ctx, buf, len), &w->write_errno);
}

static int watched_patch(void *ctx, uint64_t offset, const uint8_t *buf, size_t len)
{
	watched_io *w = ctx;
	errno = 0;
	return noted(w->sink.patch(w->sink.ctx, offset, buf, len), &w->write_errno);
}

static int watched_reset(void *ctx)
{
	watched_io *w = ctx;
	errno = 0;
	return noted(w->sink.reset(w->sink.ctx), &w->write_errno);
}

/*
 * Transcode in_path into a temporary file beside out_path, fsync it and rename it into place;
 * on failure the temporary file is removed and out_path is untouched. On an io_error, *why says
 * which file failed and how, naming its path (NULL when there was no memory to say it); the
 * caller frees it. *elapsed: seconds spent transcoding.
 */
static int transcode_file(const char *in_path, const char *out_path, const codec_options *opt,
                          codec_result *res, double *elapsed, char **why)
{
	int rc = CODEC_ENOMEM, in_fd = -1, out_fd = -1;
	bool created = false; /* the temporary file exists and is ours to remove */
	char *dir_copy = strdup(out_path);
	size_t tmp_len = strlen(out_path) + 32;
	char *tmp_path = malloc(tmp_len);
	*elapsed = 0;
	*why = NULL;
	if (!dir_copy || !tmp_path)
		goto done;
	rc = CODEC_EIO;
	/* Not blocking in open(): a FIFO with no writer waited there for ever. */
	if ((in_fd = open(in_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		*why = about_errno("cannot open the input ", in_path, errno);
		goto done;
	}
	/* The limit is the file's size, also when the audio ends before it (the codec reads no
	 * further than it needs); a file, not a pipe or a device, has one to look at. */
	struct stat st;
	if (fstat(in_fd, &st) != 0) {
		*why = about_errno("cannot read the input ", in_path, errno);
		goto done;
	}
	/* A directory opens, and its first read fails (EISDIR): said before OUT's side is made. */
	if (S_ISDIR(st.st_mode)) {
		*why = about_errno("cannot read the input ", in_path, EISDIR);
		goto done;
	}
	/* The input is read twice, at offsets: a pipe (IN /dev/stdin, <(...), a FIFO) cannot be,
	 * and was told only "Illegal seek" after reading began. */
	if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || lseek(in_fd, 0, SEEK_CUR) < 0) {
		*why =
		    about("the input ", in_path,
		          " is a pipe or a socket: the tool reads its input twice, so IN must be "
		          "a file (save the stream to one first)");
		goto done;
	}
	int flags = fcntl(in_fd, F_GETFL);
	if (flags < 0 || fcntl(in_fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		*why = about_errno("cannot read the input ", in_path, errno);
		goto done;
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > opt->max_input_bytes) {
		rc = CODEC_ETOOLARGE;
		goto done;
	}
	/* In OUT's directory, so that the final rename is atomic. */
	const char *dir = dirname(dir_copy);
	snprintf(tmp_path, tmp_len, "%s/.jiayin-XXXXXX", dir);
	sigset_t old_mask;
	block_fatal_signals(&old_mask);
	if ((out_fd = mkostemp(tmp_path, O_CLOEXEC)) >= 0)
		tmp_to_remove = tmp_path;
	sigprocmask(SIG_SETMASK, &old_mask, NULL); /* errno is mkostemp's: this cannot fail */
	if (out_fd < 0) {
		/* OUT a bare name: the folder is named, not "." */
		int err = errno;
		char *cwd = strcmp(dir, ".") == 0 ? getcwd(NULL, 0) : NULL;
		*why = about_errno("cannot write the output in ", cwd ? cwd : dir, err);
		free(cwd);
		goto done;
	}
	created = true; /* 0600, as mkostemp makes it: a voice is its owner's alone */

	codec_fd_source fds;
	watched_io w = {.read_errno = 0, .write_errno = 0};
	codec_source_fd(&w.src, &fds, in_fd);
	codec_sink_fd(&w.sink, &out_fd);
	codec_source src = {.read = watched_read, .seek = watched_seek, .ctx = &w};
	codec_sink sink = {
	    .write = watched_write, .patch = watched_patch, .reset = watched_reset, .ctx = &w};
	double t0 = now_seconds();
	rc = codec_transcode(&src, &sink, opt, res);
	*elapsed = now_seconds() - t0;
	/* IN cut short while it was read (truncated by another program, a recording being written
	 * again): the codec's verdict was about neither file, "the file ends before the audio it
	 * announces" for one that did not, or success with a WAV of unknown length cut in half.
	 * One that grew meanwhile (a WAV still being written) is read to the first pass's length.
	 */
	struct stat now;
	if (S_ISREG(st.st_mode) && rc != CODEC_ENOMEM && !w.write_errno &&
	    fstat(in_fd, &now) == 0 && now.st_size < st.st_size) {
		char after[200];
		snprintf(after, sizeof after,
		         " got shorter while it was read (%lld bytes, then %lld): another program "
		         "changed it; transcode it once it is complete",
		         (long long)st.st_size, (long long)now.st_size);
		*why = about("the input ", in_path, after);
		rc = CODEC_EIO;
	} else if (rc == CODEC_EIO && w.write_errno)
		*why = about_errno("cannot write the output ", out_path, w.write_errno);
	else if (rc == CODEC_EIO && w.read_errno)
		*why = about_errno("cannot read the input ", in_path, w.read_errno);
	else if (rc == CODEC_EIO) /* neither failed: the passes decoded different lengths */
		*why =
		    about("the input ", in_path,
		          " changed while it was read: its second reading ended before its first");
	if (rc < 0)
		goto done;
	rc = CODEC_EIO;
	if (fsync(out_fd) != 0) {
		*why = about_errno("cannot write the output ", out_path, errno);
		goto done;
	}
	int fd = out_fd;
	out_fd = -1;
	if (close(fd) != 0 || rename(tmp_path, out_path) != 0) {
		*why = about_errno("cannot write the output ", out_path, errno);
		goto done;
	}
	created = false;
	/* The new name is synced too, so OUT is still there after a power loss once we said 0
	 * (a directory we may write but not read cannot be opened to sync: left as it is). A
	 * failed sync is an io_error with OUT complete, as a result line unwritten is. */
	rc = 0;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		if (fsync(fd) != 0) {
			char after[200];
			snprintf(after, sizeof after,
			         " is complete, but its folder could not be synced: %s",
			         strerror(errno));
			*why = about("the output ", out_path, after);
			rc = CODEC_EIO;
		}
		close(fd);
	}
done:
	if (out_fd >= 0)
		close(out_fd);
	if (created)
		unlink(tmp_path);
	tmp_to_remove = NULL; /* renamed or removed: nothing left for a signal to remove */
	if (in_fd >= 0)
		close(in_fd);
	free(dir_copy);
	free(tmp_path);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"bitrate", required_argument, NULL, 'b'},
		{"complexity", required_argument, NULL, 'c'},
		{"target-lufs", required_argument, NULL, 't'},
		{"true-peak", required_argument, NULL, 'p'},
		{"max-gain", required_argument, NULL, 'g'},
		{"min-duration", required_argument, NULL, 'm'},
		{"max-duration", required_argument, NULL, 'M'},
		{"max-input-bytes", required_argument, NULL, 'B'},
		{"serial", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	codec_options opt;
	codec_options_init(&opt);
	int c, which = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, &which)) != -1) {
		double v = 0;
		if (c == 'h') {
			usage(stdout);
			return 0;
		}
		if (c == '?' || parse_double(optarg, &v) < 0) {
			usage(stderr);
			return EXIT_USAGE;
		}
		switch (c) {
		case 'b':
			opt.bitrate = v >= 0 && v <= 1000 ? (int)lround(v * 1000) : -1;
			break;
		case 'c':
			opt.complexity = v >= 0 && v <= 10 && v == floor(v) ? (int)v : -1;
			break;
		case 't':
			opt.target_lufs = v;
			break;
		case 'p':
			opt.true_peak_dbtp = v;
			break;
		case 'g':
			opt.max_gain_db = v;
			break;
		case 'm':
			opt.min_duration_ms = v >= 0 && v < 86400 ? (uint32_t)lround(v * 1000) : ~0u;
			break;
		case 'M':
			opt.max_duration_ms = v > 0 && v < 86400 ? (uint32_t)lround(v * 1000) : 0;
			break;
		case 'B':
			opt.max_input_bytes = v >= 1 && v < 1e18 && v == floor(v) ? (uint64_t)v : 0;
			break;
		case 's':
			if (v < 0 || v > 4294967295.0 || v != floor(v))
				return fail(CODEC_EINVAL, "--serial takes 0-4294967295");
			opt.serial = (uint32_t)v;
			opt.serial_fixed = 1;
			break;
		}
		/* Each value as it comes, so the one refused is named (a fraction where a whole
		 * number is asked for too: --complexity 5.5 was taken as 5). */
		if (codec_options_check(&opt) < 0) {
			char why[160];
			snprintf(why, sizeof why,
			         "--%s %.40s is not accepted (--help gives the ranges)",
			         longopts[which].name, optarg);
			return fail(CODEC_EINVAL, why);
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *in_path = argv[optind], *out_path = argv[optind + 1];
	/* OUT the same file as IN (the same path, ./a.wav for a.wav, a hard or symbolic link to
	 * it) replaced the recording with its transcode: refused before anything is read. */
	struct stat in_st, st;
	if (stat(in_path, &in_st) == 0 && stat(out_path, &st) == 0 && in_st.st_dev == st.st_dev &&
	    in_st.st_ino == st.st_ino) {
		fprintf(stderr,
		        "jiayin-transcode: IN %s and OUT %s are the same file: the output would "
		        "replace the recording (give OUT another name)\n",
		        in_path, out_path);
		return EXIT_USAGE;
	}
	/* OUT is made by renaming a file over its name, which would replace a device, a FIFO or
	 * a link to one (as root, jiayin-transcode IN /dev/null made /dev/null a voice file), or
	 * fail at the end on a directory: such an OUT is refused before any work. */
	if (stat(out_path, &st) == 0 && !S_ISREG(st.st_mode))
		return fail_freeing(CODEC_EIO,
		                    about("the output ", out_path,
		                          " is there and is not a regular file (a device, "
		                          "a pipe or a directory): it would be replaced"));
	/* A symbolic link is written through: the file it names is replaced, not the link (as
	 * root, OUT /dev/stdout with stdout a file replaced the system's /dev/stdout link). */
	char *target = NULL;
	if (lstat(out_path, &st) == 0 && S_ISLNK(st.st_mode) &&
	    !(target = realpath(out_path, NULL)))
		return fail_freeing(
		    CODEC_EIO, about("the output ", out_path, " is a symbolic link to nothing"));
	catch_fatal_signals();
	codec_result res;
	double elapsed;
	char *why;
	int rc = transcode_file(in_path, target ? target : out_path, &opt, &res, &elapsed, &why);
	free(target);
	if (rc < 0)
		return fail_freeing(rc, why);

	double seconds = res.output_samples / (double)CODEC_OUTPUT_RATE;
	printf("{\"input\":");
	json_string(in_path);
	printf(",\"output\":");
	json_string(out_path);
	printf(",\"input_format\":\"%s\",\"sample_rate\":%u,\"channels\":%u,\"input_frames\":%llu,"
	       "\"duration_ms\":%u,\"output_samples\":%llu,\"input_lufs\":%.2f,\"gain_db\":%.2f,"
	       "\"codec_loss_db\":%.2f,\"header_gain_db\":%.2f,"
	       "\"output_lufs\":%.2f,"
	       "\"output_peak_dbtp\":%.2f,\"limiter_max_db\":%.2f,\"fit_passes\":%u,"
	       "\"downmix_channel\":%d,"
	       "\"encodes\":%u,\"output_bytes\":%llu,\"bitrate_bps\":%.0f,\"preskip\":%u,"
	       "\"waveform\":[",
	       codec_format_name(res.input_format), res.input_rate, res.input_channels,
	       (unsigned long long)res.input_frames, res.duration_ms,
	       (unsigned long long)res.output_samples, res.input_lufs, res.gain_db,
	       res.codec_loss_db, res.header_gain_db, res.output_lufs,
	       finite_or(res.output_peak_dbtp, -200.0), res.limiter_max_db, res.fit_passes,
	       res.downmix_channel, res.encodes, (unsigned long long)res.output_bytes,
	       seconds > 0 ? res.output_bytes * 8 / seconds : 0.0, res.preskip);
	for (int i = 0; i < CODEC_WAVEFORM_POINTS; i++)
		printf("%s%u", i ? "," : "", res.waveform[i]);
	printf("],\"time_ms\":%.1f,\"realtime\":%.1f}\n", elapsed * 1000,
	       elapsed > 0 ? seconds / elapsed : 0.0);
	/* The line is the result: one that could not be written (stdout a full disk, a closed
	 * pipe) is a failure, said on stderr, where it exited 0 with no line (helper-133's review).
	 * OUT is complete and stays. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr,
		        "jiayin-transcode: %s is written, but its result line was not: %s\n",
		        out_path, strerror(errno ? errno : EIO));
		return -CODEC_EIO;
	}
	return 0;
}
