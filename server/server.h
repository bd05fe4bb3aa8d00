/*
 * server.h — the jiayin server's shared types: the server, a connection, the exchange (one
 * request and its response) that handlers see, routes, metrics and the request log.
 *
 * Threading: everything here lives on the event-loop thread. Blocking work (storage, codec)
 * goes through srv_job_submit(), which runs it on libuv's thread pool and calls back on the
 * loop; a job holds a reference on its connection so the connection outlives it even when
 * the client hangs up.
 */
#ifndef JIAYIN_SERVER_H
#define JIAYIN_SERVER_H

#include "config.h"
#include "http_parse.h"
#include "ratelimit.h"
#include "secret.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct srv_server srv_server;
typedef struct srv_conn srv_conn;
typedef enum srv_gone { SRV_GONE_RESET, SRV_GONE_EOF, SRV_GONE_FULL } srv_gone;
typedef struct srv_exchange srv_exchange;
typedef void (*srv_respond_hook_fn)(srv_exchange *x, int status, const char *content_type,
				    const char *extra_headers, const void *body, size_t len);

/* ---- routes ---- */
typedef void (*srv_handler_fn)(srv_exchange *x);

#define SRV_ROUTE_HEAD_OK 1u   /* HEAD is answered like GET, without the body */
#define SRV_ROUTE_BODY_FILE 2u /* the body goes to an unnamed temporary file, not memory */
#define SRV_ROUTE_BODY_CLAIM 4u /* the handler runs as soon as the head is in, before the body:
				   it answers (the body is then not read), or takes the body
				   into a file of its own with srv_body_claim() */

typedef struct srv_route {
	const char *name;    /* for metrics and logs: "healthz", "messages.list" */
	srv_method method;
	const char *pattern; /* "/v1/families/{id}/messages": {x} matches one path segment,
				{*x} (last) the rest of the path */
	srv_handler_fn handler;
	uint64_t max_body;   /* 0: no body allowed */
	unsigned flags;
} srv_route;

#define SRV_MAX_PARAMS 4

/* Finds the route for method + path. 0, or 404 (no path matches) / 405 (another method). */
int srv_route_find(const srv_route *routes, size_t n, srv_method m, srv_slice path,
		   const srv_route **out, srv_slice params[SRV_MAX_PARAMS], char *allow,
		   size_t allow_len);

/* ---- metrics (metrics.c) ---- */
#define SRV_LATENCY_BUCKETS 12
typedef struct srv_route_stats {
	const char *route;
	uint64_t by_status[6][19]; /* [status / 100][a few common codes, see metrics.c] */
	uint64_t latency[SRV_LATENCY_BUCKETS + 1];
	double latency_sum;
	uint64_t count;
} srv_route_stats;

typedef struct srv_metrics {
	srv_route_stats *routes; /* one per route, plus "unrouted" last */
	size_t route_count;
	uint64_t bytes_in, bytes_out;
	uint64_t connections_total, connections_refused;
	uint64_t storage_errors;
	uint64_t audit_failures; /* audit records that could not be written (api_audit) */
	uint64_t families_set_aside; /* mailboxes the storage found damaged and set aside */
	uint64_t jobs_refused;
	uint64_t parse_errors;
	double transcode_seconds; /* every transcode run (api_transcode_counted) */
	uint64_t transcodes;
	uint64_t transcodes_not_stored; /* of those, the ones that added no message */
	uint64_t retention_deleted;
	uint64_t buffers_refused_memory; /* no stream/upload buffer left (buffer-memory) */
	uint64_t buffers_refused_client; /* the client's share of them in use (buffers-per-client) */
	uint64_t buffers_refused_address; /* its address's in use (buffers-per-address) */
	uint64_t buffers_refused_uploads; /* uploads' part in use (upload-buffer-percent) */
	uint64_t uploads_refused_disk;    /* the disk's reserve reached (upload-disk-reserve) */
} srv_metrics;

int srv_metrics_init(srv_metrics *m, const srv_route *routes, size_t n);
void srv_metrics_free(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, size_t route_index, int status, double seconds);
/* The Prometheus text exposition; malloc'd, *len set. NULL when out of memory. */
char *srv_metrics_render(const srv_server *s, size_t *len);

/* ---- the server ---- */
struct srv_server {
	uv_loop_t *loop;
	srv_config cfg;
	store *store;
	uv_tcp_t listener;
	int listen_fd;       /* bound by srv_server_bind, until the listener has it */
	uint16_t port;       /* the port bound (cfg's, or the one picked for port 0) */
	char tmp_dir[1100];  /* data/tmp: where bodies too big for memory go */
	uint8_t secret[SRV_SECRET_LEN]; /* data/secret: signs audio URLs, keys pairing-code hashes */
	int static_fd;       /* the static directory, or -1 */
	char start_failed[1200]; /* what srv_server_start could not set up, for its message */
	uint64_t buffer_bytes; /* stream and upload buffers reserved (cfg.buffer_memory caps it) */
	uint64_t upload_buffer_bytes; /* of those, the uploads' (cfg.upload_buffer_percent) */
	srv_exchange *buffer_holders; /* those holding one, for each client's share (conn_write.c) */
	srv_ratelimit signup_limit; /* new families per client address and hour */
	srv_ratelimit pair_fail;    /* wrong pairing codes per client address */
	srv_ratelimit pair_fail_all; /* wrong pairing codes from anywhere (key "*") */
	uint64_t started_ms;         /* loop time at start: codes of the old length until TTL */
	srv_ratelimit pin_sets;       /* new kiosk PINs per family (PUT .../pin), each an Argon2 */
	struct srv_waiter *waiters;  /* long-polls parked until their mailbox changes (api.c) */
	unsigned waiter_count;
	/* The waiters counted by a slot of their token's hash, shared by the tokens that fall in
	 * it (api_poll.c): NULL until a long-poll first waits, or when there was no memory. */
	uint32_t *waiting_by_token;
	size_t waiting_slots;        /* a power of two */
	/* Changes counted (api_mailbox_changed, api_kiosk_sessions_ended), and the count at the
	 * last change of the families that fall in each slot (by their id's hash) and at the last
	 * kiosk session ended: a list that ran on the pool while one came lists again rather than
	 * wait on, its wake-up missed (api_poll.c). */
	uint64_t changes;
	uint64_t changed_at[256];
	uint64_t sessions_ended_at;
	struct srv_uploads *uploads; /* resumable uploads: locks, the sweep (upload_state.c) */
	struct api_export *exports;  /* families with an export made or downloaded (api_family.c) */
	/* plain uploads with an Idempotency-Key whose recording is being transcoded and stored,
	 * each in its job (api_messages.c) */
	struct api_in_flight *uploads_in_flight;
	unsigned upload_retries_waiting; /* retries whose body is in, waiting on one of those */
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t health_timer, grace_timer, date_timer;
	uv_timer_t retention_timer; /* api_family.c: old messages go */
	bool retention_running;
	bool draining;       /* SIGTERM: no new connections or requests */
	unsigned open_conns;
	unsigned active_jobs; /* light jobs queued or running on the pool (max_queued_jobs) */
	/* Heavy jobs (transcodes, exports): at most heavy_max at once, a family one fewer, the
	 * rest wait here in order (server.c), so short jobs and /healthz always find a thread.
	 * Counted apart from the light jobs: heavy_queued, waiting or running (max_heavy_jobs). */
	struct srv_heavy *heavy_waiting, *heavy_waiting_tail;
	struct srv_heavy *heavy_running; /* list, for the per-family rule */
	unsigned heavy_count, heavy_max, heavy_queued;
	/* Transcodes reserved by plain uploads whose bodies are arriving: in their family's share,
	 * not among max_heavy_jobs (srv_job_heavy_reserve). */
	struct srv_heavy *heavy_reserved;
	unsigned heavy_reserved_count;
	srv_conn *conns;      /* all open connections (list) */
	/* Connections that answered their share of pipelined requests this turn of the loop,
	 * resumed on the next (conn.c) */
	uv_idle_t resume_idle;
	srv_conn *deferred, *deferred_tail;
	const srv_route *routes;
	size_t route_count;
	srv_metrics metrics;
	/* /healthz: the latest storage check, done by a job every health_interval_ms */
	int health_rc;
	bool health_running;
	uint64_t health_at_ms;
	/* the request log */
	FILE *log;
	bool log_reopen;
	uint64_t next_request_id;
	char date[40]; /* the Date header's value, refreshed every second */
	int64_t date_s; /* and its time, in seconds */
	int exit_code;
};

/*
 * The listening socket bound (s cleared first), not yet listening: before the data directory
 * is touched, so that a port in use stops the start before anything there is made or swept.
 * 0, or a negative errno with what could not be set up in s->start_failed.
 */
int srv_server_bind(srv_server *s, const srv_config *cfg);
/* After srv_server_bind: the rest, and the listening begins. */
int srv_server_start(srv_server *s, uv_loop_t *loop, const srv_config *cfg, store *st);
/* Frees what start made; after the loop ran dry. */
void srv_server_free(srv_server *s);
/* SIGTERM's path: stop accepting, let in-flight requests finish within the grace period. */
void srv_server_drain(srv_server *s);
/* The Date header's value (s->date, s->date_s) made again from the clock now: the timer does
 * it every second; an answer whose Last-Modified is later than that does it first. */
void srv_date_refresh(srv_server *s);

/* ---- a connection (conn.c) ---- */
typedef enum {
	CONN_HEAD,    /* reading a request head (or idle between requests) */
	CONN_BODY,    /* reading a body into the exchange */
	CONN_HANDLER, /* the handler (or its job) has the request; reading paused */
	CONN_WRITING, /* the response is being written */
	CONN_CLOSING,
} srv_conn_state;

struct srv_exchange {
	srv_conn *conn;
	srv_server *srv;
	srv_request req;
	const srv_route *route;
	size_t route_index;
	srv_slice params[SRV_MAX_PARAMS];
	char *body;            /* bounded by the route's max_body; NUL-terminated */
	size_t body_len;       /* bytes of body, in memory or in body_fd */
	size_t body_cap;       /* bytes allocated at body */
	int body_fd;           /* SRV_ROUTE_BODY_FILE: the body in an unnamed temporary file
				  (read it with pread); -1 none. A handler may take it (set -1). */
	uint64_t id;           /* request id, in logs and X-Request-Id */
	uint64_t start_ns;
	char client[46];       /* the peer, or X-Forwarded-For's last hop from a trusted proxy */
	bool https;            /* X-Forwarded-Proto: https from a trusted proxy */
	bool head_only;        /* HEAD: headers only */
	bool accepts_gzip;     /* its Accept-Encoding takes gzip (srv_accepts_gzip) */
	bool responded;
	bool finished;         /* logged and counted: the response is over */
	bool buffer_reserved;  /* holds buffer_held bytes of the server's buffer memory */
	bool buffer_upload;    /* for an upload's stage (conn_body.c), not a response */
	size_t buffer_held;
	srv_exchange *buffer_prev, *buffer_next; /* in srv_server.buffer_holders while reserved */
	unsigned char buffer_client[16]; /* the client's address (an IPv6 one cut to its /64): its
					    buffers count in that address's share */
	unsigned char buffer_owner[16];  /* srv_buffer_owner(): the caller they count in too */
	bool buffer_owned;
	/* The engine's: the progress of the body coming in or of the response going out, over a
	 * sliding window (conn_write.c): counts at the last RATE_SLOTS + 1 slot boundaries. */
	struct {
		uint64_t t0;        /* the window's clock starts here (ns); moved on by pauses */
		uint64_t slot;      /* the last slot boundary recorded */
		uint64_t paused_at; /* our disk, not the client, is being waited on since; 0: not */
		int64_t mark[5];
	} progress;
	int status;
	uint64_t bytes_out;
	/* A route's own protocol headers ("Name: value\r\n" lines, the route's static text),
	 * added to every answer of this exchange, errors included. */
	const char *always_headers;
	/* When set, the next srv_respond() (and the error answers built on it) goes to the hook,
	 * which answers in its place; it is cleared first, so the hook may call srv_respond(). */
	srv_respond_hook_fn respond_hook;
	void *respond_hook_arg;
};

/* A claimed body is over (srv_body_claim). */
typedef void (*srv_body_done_fn)(srv_exchange *x, void *arg, int status);
/* A claimed body's bytes reached its file up to `file_off` (srv_body_on_written). */
typedef void (*srv_body_written_fn)(void *arg, uint64_t file_off);

/* What a connection holds only while a request is in progress. */
typedef struct srv_active {
	srv_parser parser;
	srv_exchange x;
	/* A body on its way to a temporary file (SRV_ROUTE_BODY_FILE): staged, then written. The
	 * stage's size follows how fast its client sends (conn_body.c). */
	char *stage;
	size_t stage_len;
	size_t stage_cap;  /* its size now, reserved from buffer memory */
	size_t stage_next; /* the size it takes when the write in flight is done; 0: as it is */
	uint64_t stage_t0; /* since when it has been filling (ns): empty and ready then */
	bool stage_timer;  /* the connection's timer is the stage's hold, not the body's idle */
	uint64_t file_off;
	bool fs_busy;       /* an open or a write is in flight: feed nothing */
	bool body_complete; /* the last byte is staged or written */
	uint64_t body_in;   /* body bytes received (framing included) */
	uint64_t body_t0;   /* when the body phase began (ns) */
	uv_fs_t fs;
	/* A claimed body (SRV_ROUTE_BODY_CLAIM): the route's file, and how the body ended. */
	struct {
		srv_body_done_fn done; /* NULL: the body is not claimed */
		void *arg;
		int fd;
		uint64_t start;        /* the file offset of the body's first byte */
		bool keep_alive;       /* the connection's, should the body be read */
		bool eof;              /* the client went away: finish with what arrived */
		bool cut;              /* srv_body_cut(): the route ended it */
		uint64_t cut_left;     /* srv_body_cut(): socket bytes still to take, then end */
		bool over;             /* done was called */
		int err;               /* why the body ended early; 0: it has not */
		int status;            /* the answer owed for that; 0: none (the client is gone) */
		const char *code, *message, *extra;
		/* srv_body_limit_answer(): the answer past max; 0: 413 body_too_large */
		int limit_status;
		const char *limit_code, *limit_message, *limit_extra;
		srv_body_written_fn written; /* srv_body_on_written(); NULL: none */
	} claim;
} srv_active;

struct srv_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	srv_server *srv;
	srv_conn *prev, *next;
	srv_conn_state state;
	unsigned refs;          /* handles + jobs; freed at 0 */
	bool closed;            /* close started: nothing more is written or read */
	bool reading;
	bool keep_alive;        /* after the current response */
	bool processing;        /* inside conn_process() */
	char peer[46];
	char *buf;              /* read buffer: one head + what followed it */
	size_t len, cap;
	size_t scan_resume;
	bool head_started;      /* the head deadline is running */
	size_t body_start;      /* where the body's bytes begin in buf (CONN_BODY) */
	unsigned requests;      /* requests started on this connection */
	size_t pending_write;   /* bytes handed to uv_write and not yet written */
	srv_active *a;          /* while a request is in progress (conn.c) */
	uint64_t poll_answered_ms; /* api_poll.c: its last long-poll answer (loop time), or 0 */
	/* Requests started in this turn of the loop (turn_ms: its time); at SRV_TURN_REQUESTS
	 * the rest wait for the next turn, in s->deferred. */
	uint64_t turn_ms;
	unsigned turn_requests;
	bool deferred;
	srv_conn *defer_next;
	/* srv_conn_watch: called once if the client goes away while its handler waits */
	void (*gone)(void *arg, srv_gone why);
	void *gone_arg;
};

/* ---- responses (response.c) ---- */
/*
 * Sends status + headers + body (copied). extra_headers: "Name: value\r\n" lines or NULL. A body
 * of JSON or text (srv_gzip_type) of SRV_GZIP_MIN bytes or more is gzipped when the request
 * takes it (x->accepts_gzip), and says Vary: Accept-Encoding either way.
 */
void srv_respond(srv_exchange *x, int status, const char *content_type, const char *extra_headers,
		 const void *body, size_t len);
typedef enum srv_coding {
	SRV_CODING_AUTO,     /* as srv_respond */
	SRV_CODING_IDENTITY, /* tried already (srv_gzip gave NULL): as it is, with Vary */
	SRV_CODING_GZIP,     /* body is srv_gzip's, made for this request off the loop */
} srv_coding;
/* srv_respond, for a body a job may have gzipped on the pool. Not for a route with a
 * respond_hook, which is handed the body as it is meant (SRV_CODING_GZIP: 500). */
void srv_respond_coded(srv_exchange *x, int status, const char *content_type,
                       const char *extra_headers, const void *body, size_t len, srv_coding coding);
/* A JSON error: {"error": {"code": code, "message": message}}. */
void srv_respond_error(srv_exchange *x, int status, const char *code, const char *message);
const char *srv_status_text(int status);
/*
 * A full response head for status; content_length < 0 leaves Content-Length out (304).
 * Returns its length (a 500 head instead if extra_headers would not fit).
 */
size_t srv_format_head(srv_exchange *x, int status, const char *content_type,
		       const char *extra_headers, int64_t content_length, char *head, size_t cap);
/* A response without a body: HEAD, 304, ... (content_length as srv_format_head). */
void srv_respond_head(srv_exchange *x, int status, const char *content_type,
		      const char *extra_headers, int64_t content_length);
void srv_respond_error_with(srv_exchange *x, int status, const char *code, const char *message,
			    const char *extra_headers);
/* 503 busy with Retry-After: 1: the job queue or the buffers are full (try again soon). */
void srv_respond_busy(srv_exchange *x);
/* A job refused (rc from srv_job_submit*): 503 busy; a family past its share of heavy jobs
 * is told so, with a Retry-After of about a transcode's time. */
void srv_respond_job_refused(srv_exchange *x, int rc);

/*
 * Claimed bodies. A SRV_ROUTE_BODY_CLAIM route's handler runs when the head is in, with
 * reading paused; at once or later (from a job's done), it either answers (the body, if any,
 * is not read: the connection closes after the answer) or calls srv_body_claim(): the body is
 * then written to fd from offset on (at most max bytes: more is 413 body_too_large), staged
 * 16 to 256 KiB at a time (conn_body.c) and written off the loop, after a 100 Continue if the
 * client asked. The
 * engine neither syncs nor closes fd. Exactly once, done(x, arg, status) follows on the loop,
 * with x->body_len the bytes written to fd (contiguous from offset):
 *   status 0: the whole body is written; the handler answers as usual;
 *   status < 0 (a UV_E* code): the body ended early: the client went away (what it sent
 *   before, including what was still staged, is written first), stalled, broke the framing,
 *   or a write failed. The handler does what it must with the bytes and then calls
 *   srv_respond_body_failure(), which sends the answer the engine owes (408, 400, 413,
 *   503/507) or nothing when the client is gone.
 * srv_body_claim() returns 0, or a negative code (the connection is gone: UV_ECANCELED; no
 * buffer memory: UV_EBUSY) with nothing read and done not to be called.
 */
int srv_body_claim(srv_exchange *x, int fd, uint64_t offset, uint64_t max, srv_body_done_fn done,
		   void *arg);
void srv_respond_body_failure(srv_exchange *x);
/*
 * The answer a claimed body gets when it passes its max, in place of 413 body_too_large (a
 * chunked recording past its family's room: 507): called before srv_body_claim(). And the
 * same answer at once, for a body still arriving that the route will not take (the room it
 * needs next was taken meanwhile): what arrived is written, done follows with UV_EFBIG, and
 * srv_respond_body_failure() sends it, then the connection closes lingering, so that a client
 * still sending reads it instead of a reset (a body whose last byte is in is not refused: it
 * is here). The strings must outlive the exchange (literals).
 */
void srv_body_limit_answer(srv_exchange *x, int status, const char *code, const char *message,
                           const char *extra);
void srv_body_refuse(srv_exchange *x, int status, const char *code, const char *message,
                     const char *extra);
/*
 * Called before srv_body_claim(): fn(arg of the claim, the file offset its bytes reach) after
 * each write of the body to its file, on the loop, until done is called; it must only take
 * note (an upload's bytes leave what it has still to write: the disk's reserve counts them
 * in the disk's free space from then on, not twice).
 */
void srv_body_on_written(srv_exchange *x, srv_body_written_fn fn);
/*
 * Ends a claimed body still arriving whose client the route knows to be gone (it came back on
 * another connection while this one still looks alive): the bytes already in the socket are
 * taken and written like any others, then the body ends as if the client had gone (done with
 * UV_ECANCELED) and the connection closes. Closing it at once would drop those bytes.
 */
void srv_body_cut(srv_exchange *x);

/* conn.c, for response.c, entity.c and server.c */
typedef void (*srv_write_cb)(void *arg, int status);
/* Queues one whole response; the body is copied. */
void srv_conn_write(srv_conn *c, const char *head, size_t head_len, const void *body,
		    size_t body_len);
/*
 * Queues a part of a response (head may be empty after the first); body stays the caller's
 * until cb(arg, status) says the part is out (status < 0: failed, the connection is closing).
 * more: another part follows; the last part ends the response.
 */
void srv_conn_write_part(srv_conn *c, const char *head, size_t head_len, const void *body,
			 size_t body_len, bool more, srv_write_cb cb, void *arg);
/*
 * Offers a part of a streamed response: what the socket takes at once is sent, and at most
 * queue_max bytes of the body's rest are copied and queued; the others are not sent.
 * *accepted is how many of body's bytes were (set before cb may run). cb(arg, status) when
 * they are out: before this returns when the socket took them all. more as for
 * srv_conn_write_part; a part not all accepted is never the last.
 */
void srv_conn_offer(srv_conn *c, const char *head, size_t head_len, const void *body,
                    size_t body_len, size_t queue_max, bool more, size_t *accepted, srv_write_cb cb,
                    void *arg);
void srv_conn_abort(srv_conn *c);
void srv_conn_close(srv_conn *c);
void srv_conn_accept(srv_server *s);
void srv_conns_drain(srv_server *s);
void srv_conns_close_all(srv_server *s);
/* The idle handle that resumes connections deferred to the loop's next turn (start). */
void srv_conns_turns_init(srv_server *s);
void srv_conn_unref(srv_conn *c); /* drops a reference taken with c->refs++ */
/*
 * While a handler holds its request for long (a parked long-poll): read the socket meanwhile,
 * keeping what arrives (pipelined requests) for later, so that a client that goes away is seen
 * at once: gone(arg, why) is called once, and the watch is over.
 *   SRV_GONE_RESET: an error or a reset; after gone() the request is logged unanswered (499)
 *     and the connection closed.
 *   SRV_GONE_EOF: the client shut its side (it may still read): the handler answers now; the
 *     connection closes after the answer.
 *   SRV_GONE_FULL: the client sent more than the buffer holds: the handler answers now, and
 *     what it sent is served after.
 * Unwatch before answering otherwise. Loop thread.
 */
void srv_conn_watch(srv_conn *c, void (*gone)(void *arg, srv_gone why), void *arg);
void srv_conn_unwatch(srv_conn *c);

/*
 * Buffer memory: what a streamed body or an upload's body holds in memory at once is reserved
 * from cfg.buffer_memory (0, or -1 when it is used up or the client holds
 * cfg.buffers_per_client reservations: answer 503); the reservation ends with the response
 * (conn.c). Both follow their client, as a stage between SRV_STAGE_MIN and SRV_STAGE_MAX: it
 * doubles each time the client keeps up within SRV_STAGE_FAST_NS (a body's stage filled, a
 * response's part taken), and falls back to SRV_STAGE_MIN when it takes longer than
 * SRV_STAGE_HOLD_NS. A download reserves its first part (up to 256 KiB, read with the lookup;
 * SRV_STAGE_MIN when none) and, a second after its client fell behind, holds only what waits
 * for it (entity.c); an upload's stage starts at SRV_STAGE_MIN (conn_body.c) and comes
 * from a part of buffer_memory (cfg.upload_buffer_percent), so that responses always have the
 * rest. Slow readers thus hold 16 KiB each and cannot pin more than buffer_memory between
 * them, slow senders not more than the uploads' part, nor one client all of it.
 * srv_buffer_resize: grown (-1 when there is no room: nothing changes, nothing is counted as
 * refused) or shrunk (never fails).
 */
#define SRV_STAGE_MIN (16u * 1024)
#define SRV_STAGE_MAX (256u * 1024)
#define SRV_STAGE_FAST_NS 100000000ull  /* kept up within 100 ms: the stage doubles */
#define SRV_STAGE_HOLD_NS 1000000000ull /* slower than 1 s: back to SRV_STAGE_MIN */
int srv_buffer_reserve(srv_exchange *x, size_t bytes);
/*
 * Whose share of buffers a request's count in (cfg.buffers_per_client): by default its client
 * address's. A route that has verified its caller (a device's token, a link signed for one)
 * names it here, before any buffer is reserved: key is at least 16 bytes that tell callers
 * apart (a token's hash). Its buffers then count in that caller's share, and all of one
 * address's together in cfg.buffers_per_address, so that a school's tablets behind one NAT
 * each have a share while one client still cannot take every buffer.
 */
void srv_buffer_owner(srv_exchange *x, const uint8_t *key);
int srv_buffer_resize(srv_exchange *x, size_t bytes);

/* ---- blocking work (server.c) ---- */
typedef void (*srv_job_fn)(void *arg);
typedef void (*srv_job_done_fn)(srv_exchange *x, void *arg);
#define SRV_JOB_FULL (-1)        /* the queue is full (or no memory): 503 busy */
#define SRV_JOB_FAMILY_FULL (-2) /* the family holds its share of heavy jobs: 503 busy too */
/* Runs work(arg) off the loop, then done(x, arg) on it (x->conn may be closed: respond anyway,
 * it is dropped). SRV_JOB_FULL when max_queued_jobs are queued: answer 503. */
int srv_job_submit(srv_exchange *x, srv_job_fn work, srv_job_done_fn done, void *arg);
/* The same without the bound: for the next step of work already accepted (a stream's read). */
int srv_job_submit_any(srv_exchange *x, srv_job_fn work, srv_job_done_fn done, void *arg);
/* A heavy job (a transcode, an export) for family `key`: queued apart from the light jobs,
 * at most max_heavy_jobs of them and `threads` of the family's (else SRV_JOB_FULL or
 * SRV_JOB_FAMILY_FULL), then run when one of the threads - 1 heavy slots is free and `key`
 * holds fewer than all but one of them (one, when there is only one). */
int srv_job_submit_heavy(srv_exchange *x, const char *key, srv_job_fn work,
			 srv_job_done_fn done, void *arg);
/* Would srv_job_submit_heavy take a job of `key` now? 0, SRV_JOB_FULL or SRV_JOB_FAMILY_FULL. */
int srv_job_heavy_check(const srv_server *s, const char *key);
/*
 * A heavy job of `key` reserved before the work it will do has arrived (a plain upload's
 * transcode, before its body is read): refused as srv_job_submit_heavy would refuse it (0, or
 * SRV_JOB_FULL or SRV_JOB_FAMILY_FULL); once taken it counts in the family's share until it is
 * submitted with srv_job_submit_reserved, which never refuses it (nor max_heavy_jobs), or given
 * back with srv_job_heavy_unreserve (NULL is fine). Loop thread.
 */
int srv_job_heavy_reserve(srv_server *s, const char *key, struct srv_heavy **out);
void srv_job_submit_reserved(srv_exchange *x, struct srv_heavy *h, srv_job_fn work,
                             srv_job_done_fn done, void *arg);
void srv_job_heavy_unreserve(struct srv_heavy *h);

/* ---- the request log (log.c) ---- */
int srv_log_open(srv_server *s);
void srv_log_request(srv_server *s, const srv_exchange *x, double seconds);
void srv_log_event(srv_server *s, const char *event, const char *detail);

/* ---- handlers (ops.c) and the route table (routes.c) ---- */
void srv_handle_healthz(srv_exchange *x);
void srv_handle_metrics(srv_exchange *x);
void srv_handle_options_any(srv_exchange *x); /* OPTIONS *: the methods the server takes */
extern const srv_route srv_routes[];
extern const size_t srv_route_count;

uint64_t srv_now_ns(void);

#endif
