/*
 * log.c — the request log: one line per request, JSON or logfmt, to stderr or a file.
 *
 * A line names the request id, the client, the method, the path without its query (signed
 * audio URLs carry their signature there; a '?' sent percent-encoded, once or twice, ends it
 * too), the route, the status, the bytes sent and the time taken. Lines are buffered and
 * flushed every second by the server's clock timer and at exit, so logging costs no system call
 * per request; SIGHUP reopens the file (log rotation).
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static char logbuf[65536];

int srv_log_open(srv_server *s)
{
	if (!s->cfg.log_file[0]) {
		s->log = stderr;
		setvbuf(stderr, logbuf, _IOFBF, sizeof logbuf);
		return 0;
	}
	/* 0640: the log names clients' addresses and families' ids (a logrotate "create" line
	 * sets its own mode). Opened without blocking: a FIFO whose reader (a log shipper) has
	 * gone is refused (ENXIO) rather than waited on, which hung the start, or the whole loop
	 * at SIGHUP. Written blocking, as stderr is. */
	int fd =
	    open(s->cfg.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
	int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
	FILE *f = fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0 ? fdopen(fd, "a") : NULL;
	if (!f) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return -err;
	}
	setvbuf(f, NULL, _IOFBF, sizeof logbuf);
	if (s->log && s->log != stderr)
		fclose(s->log);
	s->log = f;
	return 0;
}

/* Copies text for a log line: bytes outside printable ASCII become '?', quotes too. */
static void clean(char *out, size_t cap, const char *p, size_t n, bool spaces)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < cap; i++) {
		unsigned char ch = (unsigned char)p[i];
		out[o++] = (ch == ' ' && !spaces) || ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
	}
	out[o] = 0;
}

static void stamp(char *out, size_t cap)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static const char *method_text(const srv_exchange *x)
{
	const char *name = x->req.path.ptr ? srv_method_name(x->req.method) : NULL;
	return name ? name : "-";
}

/*
 * How much of the path a line names: up to a '?' a client sent percent-encoded (one that
 * encoded a signed audio URL whole, or its '?', sends its signature and sealed phone in the
 * path, which the log never names; the path is refused all the same), once or more (%253F:
 * a URL encoded twice, its '%' encoded again as %25).
 */
static size_t path_logged(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '%')
			continue;
		size_t j = i + 1;
		while (j + 1 < n && p[j] == '2' && p[j + 1] == '5')
			j += 2;
		if (j + 1 < n && p[j] == '3' && (p[j + 1] == 'F' || p[j + 1] == 'f'))
			return i;
	}
	return n;
}

void srv_log_request(srv_server *s, const srv_exchange *x, double seconds)
{
	if (!s->log)
		return;
	char path[256], ts[40];
	if (x->req.path.ptr)
		clean(path, sizeof path, x->req.path.ptr,
		      path_logged(x->req.path.ptr, x->req.path.len), false);
	else
		snprintf(path, sizeof path, "-");
	stamp(ts, sizeof ts);
	const char *route = x->route ? x->route->name : "unrouted";
	if (s->cfg.log_format == SRV_LOG_JSON)
		fprintf(s->log,
			"{\"ts\":\"%s\",\"id\":\"%016llx\",\"client\":\"%s\",\"method\":\"%s\","
			"\"path\":\"%s\",\"route\":\"%s\",\"status\":%d,\"bytes\":%llu,\"ms\":%.3f}\n",
			ts, (unsigned long long)x->id, x->client, method_text(x), path, route,
			x->status, (unsigned long long)x->bytes_out, seconds * 1000);
	else
		fprintf(s->log,
			"ts=%s id=%016llx client=%s method=%s path=\"%s\" route=%s status=%d "
			"bytes=%llu ms=%.3f\n",
			ts, (unsigned long long)x->id, x->client, method_text(x), path, route,
			x->status, (unsigned long long)x->bytes_out, seconds * 1000);
}

void srv_log_event(srv_server *s, const char *event, const char *detail)
{
	FILE *f = s->log ? s->log : stderr;
	char ts[40], d[512];
	stamp(ts, sizeof ts);
	clean(d, sizeof d, detail, strlen(detail), true);
	/* Events are rare and matter to whoever watches the console: a log file gets them too. */
	for (int i = 0; i < (f == stderr ? 1 : 2); i++) {
		FILE *to = i == 0 ? f : stderr;
		if (s->cfg.log_format == SRV_LOG_JSON)
			fprintf(to, "{\"ts\":\"%s\",\"event\":\"%s\",\"detail\":\"%s\"}\n", ts,
				event, d);
		else
			fprintf(to, "ts=%s event=%s detail=\"%s\"\n", ts, event, d);
		fflush(to);
	}
}
