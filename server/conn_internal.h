/*
 * conn_internal.h — what conn.c (the state machine), conn_body.c (request bodies) and
 * conn_write.c (responses on the wire) share. Private to server/; loop thread only.
 */
#ifndef JIAYIN_SERVER_CONN_INTERNAL_H
#define JIAYIN_SERVER_CONN_INTERNAL_H

#include "server.h"

/*
 * A file-bound body is staged in memory and written in pieces the stage's size. The stage
 * starts small (SRV_STAGE_MIN), so that a slow upload holds little of buffer memory, and
 * doubles each time it fills within SRV_STAGE_FAST_NS, so that a fast one is written in big
 * pieces; a grown stage that does not fill within SRV_STAGE_HOLD_NS (its client slowed down,
 * or stopped) is written as it is and starts small again.
 */
#define RATE_SLOTS 4 /* a progress window slides a quarter of itself at a time */
_Static_assert(sizeof(((srv_exchange *)0)->progress.mark) / sizeof(int64_t) == RATE_SLOTS + 1,
	       "the progress window keeps RATE_SLOTS + 1 marks");

/* conn.c */
void conn_process(srv_conn *c);        /* as far as the bytes in hand allow */
void conn_arm(srv_conn *c, unsigned ms); /* the phase's deadline */
void conn_stop_reading(srv_conn *c);
void conn_start_reading(srv_conn *c);
void conn_response_done(srv_conn *c);  /* log, count, then the next request or close */
/* The connection ends after this response; keep-alive is never turned back on (a claimed body
 * included) once this was called. */
void conn_end_keep_alive(srv_conn *c);
/* Between requests: nothing of the next one yet (a stray CRLF after a body is nothing). */
bool conn_idle(const srv_conn *c);
/* Lingering close: FIN now, what still arrives read and dropped, closed at EOF or after ms. */
void conn_linger(srv_conn *c, unsigned ms);
/* Closes with a reset (SO_LINGER 0): the kernel drops what it still holds for the client
 * instead of sending it on after the close. For a client that stopped taking its response. */
void conn_close_reset(srv_conn *c);

/* conn_addr.c */
/* An address as 16 bytes (IPv4 as v4-mapped IPv6); false if text is not an address. */
bool conn_addr16(const char *text, unsigned char out[16]);
/* x->client (and x->https): the peer, or what a trusted proxy says the client is. */
void conn_forwarded(srv_exchange *x);

/* conn_body.c */
int conn_collect_body(void *ctx, const char *data, size_t len); /* ctx: the exchange */
int conn_stage_body(void *ctx, const char *data, size_t len);
void conn_file_failed(srv_conn *c, int uv_err); /* answers 503/507 and ends the connection */
void conn_write_stage(srv_conn *c);
void conn_write_full_stage(srv_conn *c); /* the stage is full: written, and perhaps grown */
/* Waits for more of the body: the idle deadline, or a grown stage's hold when sooner. */
void conn_wait_body(srv_conn *c);
void conn_stage_hold(srv_conn *c); /* the hold is over: written as it is, back to the least */
int conn_open_body_file(srv_conn *c);
/* A claimed body ended early: err, and the answer owed (status 0: none, the client is gone;
 * the connection is then closed). What is staged is written first, then the route is told. */
void conn_claim_fail(srv_conn *c, int err, int status, const char *code, const char *message,
		     const char *extra);
/* A claimed body's framing broke or it passed its max (srv_body_limit_answer). */
void conn_claim_parse_failed(srv_conn *c, int parse_err);

/* conn_write.c */
void conn_finish(srv_conn *c); /* the response is over: once, whatever the path */
void conn_send_continue(srv_conn *c);
/* An upload body's stage: bytes of buffer memory reserved from the uploads' part
 * (upload-buffer-percent), like srv_buffer_reserve (0, or -1: answer 503); then resized with
 * srv_buffer_resize. */
int conn_upload_reserve(srv_exchange *x, size_t bytes);
void conn_buffer_release(srv_exchange *x); /* ends x's buffer reservation, if any */
void conn_write_tick(srv_conn *c); /* the write phase's timer: cut a response that stalls */
/*
 * Progress over a sliding window of window_ns (x->progress): a count that only grows (body
 * bytes in, response bytes taken by the client). Start it with the count at now; then each
 * observation gives the count until now (before) and with what just happened (after), and gets
 * how much the count grew over the last window, or over all of it while it is younger, and
 * over how long (span_ns). Pause and resume exclude time spent waiting on our own disk.
 */
void conn_progress_start(srv_exchange *x, uint64_t now, int64_t count);
void conn_progress_observe(srv_exchange *x, uint64_t now, uint64_t window_ns, int64_t before,
			   int64_t after, int64_t *grew, uint64_t *span_ns);
void conn_progress_pause(srv_exchange *x);
uint64_t conn_progress_resume(srv_exchange *x); /* how long the pause lasted (ns) */

/*
 * A request that ends without an answer (its client went away while its body arrived) is
 * logged and counted once, as 499 like nginx's "client closed request".
 */
void conn_log_unanswered(srv_conn *c);

#endif
