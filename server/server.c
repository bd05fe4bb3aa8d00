/*
 * server.c — the listener, signals, the clock, the storage health check and blocking jobs.
 *
 * SIGTERM/SIGINT drain: the listener closes, idle connections close, requests in flight
 * finish (their responses say Connection: close) until shutdown_grace_ms, then the rest are
 * closed; the loop then runs dry and main() closes storage. SIGHUP reopens the log. Jobs run
 * on libuv's pool; at most max_queued_jobs at once, beyond which callers answer 503. Heavy
 * jobs (transcodes, exports) are bounded apart (max_heavy_jobs, and threads per family) and
 * take at most threads - 1 of the pool's threads, a family one fewer.
 */
#include "api.h"
#include "upload_state.h"
#include "server.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t srv_now_ns(void)
{
	return uv_hrtime();
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void srv_date_refresh(srv_server *s)
{
	/* clock_gettime, as a message's creation time (api_now_ms) is read: time() lags it by a
	 * few milliseconds after each second begins (the review) */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	time_t t = ts.tv_sec;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	s->date_s = (int64_t)t;
}

/*
 * Families whose mailbox file the storage could not write for its owner or mode (a copy put
 * back as root without the chown): an event each, once a minute at most while it stays so.
 * Their requests are answered 503 storage_read_only while /healthz says 200, and nothing said
 * which file or why (the operations walk-through).
 */
static void unwritable_report(srv_server *s)
{
	store_unwritable u[4];
	size_t n = 0;
	unsigned dropped = 0;
	char what[512];
	do {
		store_take_unwritable(s->store, u, sizeof u / sizeof u[0], &n, &dropped);
		for (size_t i = 0; i < n; i++) {
			snprintf(
			    what, sizeof what,
			    "family %.*s's mailbox cannot be written: %.*s belongs to uid %u "
			    "(mode %04o), and jiayin runs as uid %u; its requests are answered "
			    "503 storage_read_only until the file is given to that user, mode "
			    "0600 (chown; docs/operations.md, Backups)",
			    STORE_ID_LEN, u[i].family_id.s, (int)sizeof u[i].file - 1, u[i].file,
			    u[i].uid, u[i].mode, (unsigned)geteuid());
			srv_log_event(s, "family_unwritable", what);
		}
		if (dropped) {
			snprintf(what, sizeof what,
			         "%u more family mailbox(es) cannot be written by uid %u (too many "
			         "at once to name each): look at the owners in families/",
			         dropped, (unsigned)geteuid());
			srv_log_event(s, "family_unwritable", what);
		}
	} while (n == sizeof u / sizeof u[0]);
}

/*
 * Families whose mailbox the storage found damaged and set aside since the last look: an event
 * each (the 503 storage_corrupt lines alone told the operator nothing of it, nor which family
 * to restore), counted. Looked at after each job, before its answer (so the event comes before
 * that request's line), and every second for the jobs of the server's own (retention, the
 * health check, the uploads' sweep).
 */
static void set_aside_report(srv_server *s)
{
	store_set_aside a[8];
	size_t n = 0;
	unsigned dropped = 0;
	char what[256];
	if (!s->store)
		return;
	do {
		store_take_set_aside(s->store, a, sizeof a / sizeof a[0], &n, &dropped);
		for (size_t i = 0; i < n; i++) {
			snprintf(
			    what, sizeof what,
			    "family %.*s's mailbox is damaged: moved to %.*s; restore it from a "
			    "backup (docs/operations.md, Backups)",
			    STORE_ID_LEN, a[i].family_id.s, (int)sizeof a[i].moved_to - 1,
			    a[i].moved_to);
			srv_log_event(s, "family_set_aside", what);
		}
		if (dropped) {
			snprintf(what, sizeof what,
			         "%u more family mailbox(es) found damaged and moved to "
			         "quarantine/ (too many at once to name each: see quarantine/); "
			         "restore them from a backup (docs/operations.md, Backups)",
			         dropped);
			srv_log_event(s, "family_set_aside", what);
		}
		s->metrics.families_set_aside += n + dropped;
	} while (n == sizeof a / sizeof a[0]);
	unwritable_report(s);
}

static void on_date_timer(uv_timer_t *t)
{
	srv_server *s = t->data;
	srv_date_refresh(s);
	set_aside_report(s);
	if (s->log)
		fflush(s->log);
}

/* ---- jobs ---- */
typedef struct job {
	uv_work_t work;
	srv_exchange *x;
	srv_job_fn fn;
	srv_job_done_fn done;
	void *arg;
} job;

static void job_run(uv_work_t *w)
{
	job *j = w->data;
	j->fn(j->arg);
}

/* The job is over: its done on the loop, then the job and its hold on the connection go. */
static void job_end(job *j)
{
	srv_conn *c = j->x->conn;
	set_aside_report(j->x->srv);
	j->done(j->x, j->arg);
	free(j);
	srv_conn_unref(c);
}

static void job_after(uv_work_t *w, int status)
{
	(void)status; /* libuv cancels nothing we queued */
	job *j = w->data;
	j->x->srv->active_jobs--;
	job_end(j);
}

static int submit(srv_exchange *x, srv_job_fn work, srv_job_done_fn done, void *arg, bool bound)
{
	srv_server *s = x->srv;
	if (bound && s->active_jobs >= s->cfg.max_queued_jobs) {
		s->metrics.jobs_refused++;
		return SRV_JOB_FULL;
	}
	job *j = calloc(1, sizeof *j);
	if (!j)
		return SRV_JOB_FULL;
	j->x = x;
	j->fn = work;
	j->done = done;
	j->arg = arg;
	j->work.data = j;
	if (uv_queue_work(s->loop, &j->work, job_run, job_after) != 0) {
		free(j);
		return SRV_JOB_FULL;
	}
	x->conn->refs++;
	s->active_jobs++;
	return 0;
}

/*
 * Heavy jobs: a transcode takes a pool thread for seconds (a 15 min clip, 10 s). Left to the
 * pool's FIFO, four uploads from one family would hold every thread, and everyone else's
 * lists, audio and /healthz would wait behind them (a review measured 49 s, and a health
 * check reported a healthy disk as stalled). So at most heavy_max (threads - 1) run at once,
 * and one family may have all of those but one; the others wait here in order. (A family alone
 * on the server still keeps two cores busy at 4 threads.)
 *
 * Waiting heavy jobs are counted apart from the light ones (heavy_queued, bounded by
 * max_heavy_jobs), and a family may have at most `threads` of them queued or running: counted
 * with the light jobs, one family's uploads of small clips kept the queue full for a minute
 * and other families' lists and GET /v1/me were 503 busy (the review). A family past its share
 * is answered at once; its transcodes already queued run on.
 */
struct srv_heavy {
	job j; /* first: job_end's free() frees the whole */
	struct srv_heavy *next;
	srv_server *srv;
	char key[48];
};

static unsigned heavy_key_count(const struct srv_heavy *list, const char *key)
{
	unsigned n = 0;
	for (const struct srv_heavy *h = list; h; h = h->next)
		n += strcmp(h->key, key ? key : "") == 0;
	return n;
}

/* May another heavy job of `key` start? A family may have all slots but one. */
static bool heavy_key_room(const srv_server *s, const char *key)
{
	unsigned max = s->heavy_max > 1 ? s->heavy_max - 1 : 1;
	return heavy_key_count(s->heavy_running, key) < max;
}

int srv_job_heavy_check(const srv_server *s, const char *key)
{
	if (s->heavy_queued >= s->cfg.max_heavy_jobs)
		return SRV_JOB_FULL;
	unsigned mine = heavy_key_count(s->heavy_running, key) +
	                heavy_key_count(s->heavy_waiting, key) +
	                heavy_key_count(s->heavy_reserved, key);
	return mine >= s->cfg.threads ? SRV_JOB_FAMILY_FULL : 0;
}

/*
 * A plain upload's transcode is reserved before its body is read (api_messages.c): else a
 * body that took minutes over 2G could arrive to find its family's share taken by transcodes
 * that started meanwhile, and be thrown away with a 503 (the review: a 4.8 MB body, after
 * four relatives' clips). The reservation counts in the family's share, which the gate
 * checks, and not among max_heavy_jobs: bodies on their way are bounded by the uploads'
 * buffer memory, and counting them there would let a few dozen slow phones anywhere turn
 * every other family's upload away. So the transcode of a body received is never refused.
 */
/* An entry for a heavy job of key's family, when srv_job_heavy_check finds room; else NULL,
 * refused (counted) with *rc. */
static struct srv_heavy *heavy_new(srv_server *s, const char *key, int *rc)
{
	if ((*rc = srv_job_heavy_check(s, key)) < 0) {
		s->metrics.jobs_refused++;
		return NULL;
	}
	struct srv_heavy *h = calloc(1, sizeof *h);
	if (!h) {
		*rc = SRV_JOB_FULL;
		return NULL;
	}
	h->srv = s;
	snprintf(h->key, sizeof h->key, "%s", key ? key : "");
	return h;
}

int srv_job_heavy_reserve(srv_server *s, const char *key, struct srv_heavy **out)
{
	int rc;
	struct srv_heavy *h = heavy_new(s, key, &rc);
	*out = NULL;
	if (!h)
		return rc;
	h->next = s->heavy_reserved;
	s->heavy_reserved = h;
	s->heavy_reserved_count++;
	*out = h;
	return 0;
}

/* Takes h out of the reserved list. */
static void heavy_unlink_reserved(struct srv_heavy *h)
{
	srv_server *s = h->srv;
	for (struct srv_heavy **pp = &s->heavy_reserved; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			s->heavy_reserved_count--;
			break;
		}
	h->next = NULL;
}

void srv_job_heavy_unreserve(struct srv_heavy *h)
{
	if (!h)
		return;
	heavy_unlink_reserved(h);
	free(h);
}

static void heavy_after(uv_work_t *w, int status);

/* Start waiting heavy jobs while there is room: the first, in order, whose family has room. */
static void heavy_pump(srv_server *s)
{
	struct srv_heavy **pp = &s->heavy_waiting, *prev = NULL;
	while (s->heavy_count < s->heavy_max && *pp) {
		struct srv_heavy *h = *pp;
		if (!heavy_key_room(s, h->key)) {
			prev = h;
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		if (s->heavy_waiting_tail == h)
			s->heavy_waiting_tail = prev;
		h->next = s->heavy_running;
		s->heavy_running = h;
		s->heavy_count++;
		/* Fails only for a NULL callback. */
		(void)uv_queue_work(s->loop, &h->j.work, job_run, heavy_after);
	}
}

static void heavy_after(uv_work_t *w, int status)
{
	struct srv_heavy *h = w->data;
	srv_server *s = h->j.x->srv;
	for (struct srv_heavy **pp = &s->heavy_running; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	(void)status;
	s->heavy_count--;
	s->heavy_queued--;
	job_end(&h->j); /* frees h */
	heavy_pump(s);
}

/* h (its key set) waits its turn for work then done. */
static void heavy_queue(srv_exchange *x, struct srv_heavy *h, srv_job_fn work, srv_job_done_fn done,
                        void *arg)
{
	srv_server *s = x->srv;
	h->srv = s;
	h->j.x = x;
	h->j.fn = work;
	h->j.done = done;
	h->j.arg = arg;
	h->j.work.data = h;
	if (s->heavy_waiting_tail)
		s->heavy_waiting_tail->next = h;
	else
		s->heavy_waiting = h;
	s->heavy_waiting_tail = h;
	x->conn->refs++;
	s->heavy_queued++;
	heavy_pump(s);
}

int srv_job_submit_heavy(srv_exchange *x, const char *key, srv_job_fn work, srv_job_done_fn done,
                         void *arg)
{
	int rc;
	struct srv_heavy *h = heavy_new(x->srv, key, &rc);
	if (!h)
		return rc;
	heavy_queue(x, h, work, done, arg);
	return 0;
}

void srv_job_submit_reserved(srv_exchange *x, struct srv_heavy *h, srv_job_fn work,
                             srv_job_done_fn done, void *arg)
{
	heavy_unlink_reserved(h);
	heavy_queue(x, h, work, done, arg);
}

int srv_job_submit(srv_exchange *x, srv_job_fn work, srv_job_done_fn done, void *arg)
{
	return submit(x, work, done, arg, true);
}

int srv_job_submit_any(srv_exchange *x, srv_job_fn work, srv_job_done_fn done, void *arg)
{
	return submit(x, work, done, arg, false);
}

/* ---- the storage health check: a durable write every health_interval_ms ---- */
typedef struct health_job {
	uv_work_t work;
	srv_server *s;
	int rc;
	unsigned closed; /* families erased by another process, closed (their blocks freed) */
} health_job;

static void health_run(uv_work_t *w)
{
	health_job *h = w->data;
	h->rc = store_health_check(h->s->store, wall_ms());
	(void)store_families_close_unlinked(h->s->store, &h->closed);
}

static void health_after(uv_work_t *w, int status)
{
	(void)status;
	health_job *h = w->data;
	srv_server *s = h->s;
	if (h->rc < 0 && s->health_rc == 0) {
		s->metrics.storage_errors++;
		srv_log_event(s, "storage_unhealthy", store_errcode(h->rc));
	} else if (h->rc == 0 && s->health_rc < 0) {
		srv_log_event(s, "storage_healthy", "writes work again");
	}
	if (h->closed) {
		char what[96];
		snprintf(what, sizeof what,
		         "%u family database(s) erased by another program closed", h->closed);
		srv_log_event(s, "families_closed", what);
	}
	s->health_rc = h->rc;
	s->health_at_ms = uv_now(s->loop);
	s->health_running = false;
	free(h);
}

static void health_start(srv_server *s)
{
	if (s->health_running || !s->store)
		return;
	health_job *h = calloc(1, sizeof *h);
	if (!h)
		return;
	h->s = s;
	h->work.data = h;
	if (uv_queue_work(s->loop, &h->work, health_run, health_after) != 0) {
		free(h);
		return;
	}
	s->health_running = true;
}

static void on_health_timer(uv_timer_t *t)
{
	health_start(t->data);
}

/* ---- accept, signals, drain ---- */
static void on_connection(uv_stream_t *l, int status)
{
	srv_server *s = l->data;
	if (status < 0 || s->draining)
		return;
	srv_conn_accept(s);
}

static void on_grace_over(uv_timer_t *t)
{
	srv_server *s = t->data;
	srv_log_event(s, "shutdown", "grace period over: closing the remaining connections");
	srv_conns_close_all(s);
}

static void close_quietly(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void srv_server_drain(srv_server *s)
{
	if (s->draining)
		return;
	s->draining = true;
	srv_log_event(s, "shutdown", "stopped accepting; finishing requests in flight");
	close_quietly((uv_handle_t *)&s->listener);
	close_quietly((uv_handle_t *)&s->health_timer);
	close_quietly((uv_handle_t *)&s->retention_timer);
	/* The clock, the log flush and the signals keep working while requests finish, without
	 * keeping an otherwise finished loop alive (main closes them at the end). */
	uv_unref((uv_handle_t *)&s->date_timer);
	uv_unref((uv_handle_t *)&s->sig_term);
	uv_unref((uv_handle_t *)&s->sig_int);
	uv_unref((uv_handle_t *)&s->sig_hup);
	srv_conns_drain(s);
	srv_api_wake_all(s); /* long-polls answer now instead of holding the exit */
	uv_timer_start(&s->grace_timer, on_grace_over, s->cfg.shutdown_grace_ms, 0);
	uv_unref((uv_handle_t *)&s->grace_timer);
}

/* SIGHUP reopens the log only: an operator who changed the config file and reloaded
 * (systemctl reload) is told the change waits for a restart, where nothing was said. */
static void config_check(srv_server *s)
{
	const srv_config *c = &s->cfg;
	srv_file_stamp now;
	if (!c->config_file[0])
		return;
	int rc = srv_file_stamp_read(c->config_file, &now);
	if (rc == 0 && memcmp(&now, &c->config_stamp, sizeof now) == 0)
		return;
	char what[sizeof c->config_file + 160];
	if (rc < 0)
		snprintf(what, sizeof what, "%s: %s; the settings read at the start stay",
		         c->config_file, strerror(-rc));
	else
		snprintf(what, sizeof what,
		         "%s changed since the start: its settings take effect when jiayin is "
		         "restarted (SIGHUP reopens the log only)",
		         c->config_file);
	srv_log_event(s, "config", what);
}

static void on_signal(uv_signal_t *h, int signum)
{
	srv_server *s = h->data;
	if (signum == SIGHUP) {
		int rc = srv_log_open(s);
		if (rc < 0) {
			/* Named, with why: the lines go on to the file it had (renamed, say). */
			char what[sizeof s->cfg.log_file + 128];
			snprintf(what, sizeof what,
			         "could not reopen %s: %s; still writing to the old file",
			         s->cfg.log_file, strerror(-rc));
			srv_log_event(s, "log", what);
		}
		config_check(s);
		return;
	}
	if (s->draining) {
		/* Asked twice: stop waiting for what is in flight. */
		srv_log_event(s, "shutdown", "second signal: closing the remaining connections");
		srv_conns_close_all(s);
		return;
	}
	srv_server_drain(s);
}

/* rc, with what could not be set up said in s->start_failed (main's refusal names it). */
static int start_failed(srv_server *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int start_failed(srv_server *s, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->start_failed, sizeof s->start_failed, fmt, ap);
	va_end(ap);
	return rc;
}

/* "127.0.0.1:8080", "[::1]:8080": an IPv6 address in brackets before its port, as in a URL. */
static const char *listen_name(const srv_config *cfg, char *buf, size_t cap)
{
	bool v6 = strchr(cfg->listen_host, ':') != NULL;
	snprintf(buf, cap, "%s%s%s:%u", v6 ? "[" : "", cfg->listen_host, v6 ? "]" : "",
	         cfg->listen_port);
	return buf;
}

int srv_server_bind(srv_server *s, const srv_config *cfg)
{
	memset(s, 0, sizeof *s);
	s->listen_fd = -1;
	s->static_fd = -1;
	char name[sizeof cfg->listen_host + 16];
	union {
		struct sockaddr sa;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} a;
	socklen_t len = sizeof a.v4;
	if (uv_ip4_addr(cfg->listen_host, cfg->listen_port, &a.v4) != 0) {
		len = sizeof a.v6;
		if (uv_ip6_addr(cfg->listen_host, cfg->listen_port, &a.v6) != 0)
			return start_failed(s, UV_EINVAL, "listen address '%s'", cfg->listen_host);
	}
	/* Bound here rather than by uv_tcp_bind, which keeps an EADDRINUSE back for uv_listen to
	 * report: a port in use must be told now. Set up as it does: SO_REUSEADDR (a restart
	 * within the TIME_WAIT of the last one's connections), and an IPv6 address takes IPv4
	 * clients too (IPV6_V6ONLY off). */
	int on = 1, off = 0, rc = 0;
	int fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
	    (a.sa.sa_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0) ||
	    bind(fd, &a.sa, len) < 0)
		rc = -errno;
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		return start_failed(s, rc, "listen on %s", listen_name(cfg, name, sizeof name));
	}
	s->listen_fd = fd;
	return 0;
}

int srv_server_start(srv_server *s, uv_loop_t *loop, const srv_config *cfg, store *st)
{
	s->loop = loop;
	s->cfg = *cfg;
	s->store = st;
	/* The listener owns the bound socket from here: main's close of every handle closes it. */
	uv_tcp_init(loop, &s->listener);
	s->listener.data = s;
	int rc = uv_tcp_open(&s->listener, s->listen_fd);
	if (rc < 0) {
		close(s->listen_fd);
		s->listen_fd = -1;
		return start_failed(s, rc, "the listening socket");
	}
	s->listen_fd = -1;
	s->routes = srv_routes;
	s->route_count = srv_route_count;
	s->heavy_max = cfg->threads > 1 ? cfg->threads - 1 : 1;
	srv_date_refresh(s);
	srv_rate_init(&s->signup_limit, cfg->signups_per_hour, 3600 * 1000);
	srv_rate_init(&s->pair_fail, cfg->pair_failures, 15 * 60 * 1000);
	srv_rate_init(&s->pair_fail_all, cfg->pair_failures_all, 15 * 60 * 1000);
	s->started_ms = uv_now(loop);
	srv_rate_init(&s->pin_sets, cfg->pin_sets_per_hour, 60 * 60 * 1000);
	if (cfg->static_dir[0] &&
	    (s->static_fd = open(cfg->static_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return start_failed(s, -errno, "static-dir '%s'", cfg->static_dir);
	snprintf(s->tmp_dir, sizeof s->tmp_dir, "%s/tmp", cfg->data_dir);
	if (mkdir(s->tmp_dir, 0700) < 0 && errno != EEXIST)
		return start_failed(s, -errno, "%s", s->tmp_dir);
	int urc = srv_uploads_start(s); /* data/uploads, and its first sweep */
	if (urc < 0)
		return start_failed(s, urc, "%s/uploads", cfg->data_dir);
	rc = srv_secret_load(cfg->data_dir, s->secret);
	if (rc < 0)
		return start_failed(s, rc, "%s/secret", cfg->data_dir);
	if (srv_metrics_init(&s->metrics, s->routes, s->route_count) < 0)
		return start_failed(s, UV_ENOMEM, "the metrics");
	rc = srv_log_open(s);
	if (rc < 0)
		return start_failed(s, rc, "log-file '%s'", cfg->log_file);
	if ((rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection)) < 0) {
		char name[sizeof cfg->listen_host + 16];
		return start_failed(s, rc, "listen on %s", listen_name(cfg, name, sizeof name));
	}
	struct sockaddr_storage sa;
	/* Port 0 asked for any free port: the start line tells which one. */
	int salen = sizeof sa;
	if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &salen) == 0)
		s->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
							: ((struct sockaddr_in6 *)&sa)->sin6_port);
	uv_signal_init(loop, &s->sig_term);
	uv_signal_init(loop, &s->sig_int);
	uv_signal_init(loop, &s->sig_hup);
	s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
	uv_signal_start(&s->sig_term, on_signal, SIGTERM);
	uv_signal_start(&s->sig_int, on_signal, SIGINT);
	uv_signal_start(&s->sig_hup, on_signal, SIGHUP);
	srv_conns_turns_init(s);
	uv_timer_init(loop, &s->date_timer);
	uv_timer_init(loop, &s->health_timer);
	uv_timer_init(loop, &s->grace_timer);
	uv_timer_init(loop, &s->retention_timer);
	s->date_timer.data = s->health_timer.data = s->grace_timer.data = s;
	s->retention_timer.data = s;
	uv_timer_start(&s->date_timer, on_date_timer, 1000, 1000);
	/* The first check before serving (the loop is not running yet: blocking is fine). */
	s->health_rc = st ? store_health_check(st, wall_ms()) : 0;
	s->health_at_ms = uv_now(loop);
	if (s->health_rc < 0)
		srv_log_event(s, "storage_unhealthy", store_errcode(s->health_rc));
	uv_timer_start(&s->health_timer, on_health_timer, cfg->health_interval_ms,
		       cfg->health_interval_ms);
	srv_api_retention_start(s);
	return 0;
}

void srv_server_free(srv_server *s)
{
	if (s->listen_fd >= 0)
		close(s->listen_fd); /* bound, never handed to the listener */
	s->listen_fd = -1;
	if (s->static_fd >= 0)
		close(s->static_fd);
	s->static_fd = -1;
	if (s->log)
		fflush(s->log);
	if (s->log && s->log != stderr)
		fclose(s->log);
	s->log = NULL;
	srv_metrics_free(&s->metrics);
	srv_uploads_free(s);
	free(s->waiting_by_token);
	s->waiting_by_token = NULL;
}
