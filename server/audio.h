/*
 * audio.h — serving a stored message's Ogg Opus audio (audio.c).
 */
#ifndef JIAYIN_SERVER_AUDIO_H
#define JIAYIN_SERVER_AUDIO_H

#include "server.h"

/*
 * Answers GET/HEAD for the audio of family_id's message_id (NUL-terminated ids): 200/206/304/
 * 412/416 with the body streamed from storage, 404 for an unknown or deleted message (or a
 * hidden one unless allow_hidden: moderators see those), 503 when storage fails or the job
 * queue is full. Access control is the caller's.
 */
void srv_respond_message_audio(srv_exchange *x, const char *family_id, const char *message_id,
			       bool allow_hidden);
/* The same for an answer that may be kept only max_age_s seconds (a signed URL's remaining
 * life) instead of for ever. */
void srv_respond_message_audio_for(srv_exchange *x, const char *family_id,
				   const char *message_id, bool allow_hidden, int64_t max_age_s);

/*
 * Who may hear it, decided in the same trip to the pool as the fetch: run(ctx) on the pool
 * first (0: go on); if it refuses, refuse(x, ctx) answers on the loop. Either way ctx is the
 * caller's to free in refuse or release (which runs when run() let the request through, or
 * when no job could start: then the answer is this module's). keep(ctx), if given, runs on the
 * pool after run() let it through: false answers `Cache-Control: private, no-store` (a shared
 * device must not keep it) instead of keeping it max_age_s seconds (-1: for ever). owner, if
 * given, names the caller run() let through (16 bytes or more, read on the loop before
 * release): the stream's buffer counts in its share (srv_buffer_owner).
 */
typedef struct srv_audio_check {
	int (*run)(void *ctx);
	void (*refuse)(srv_exchange *x, void *ctx);
	void (*release)(void *ctx);
	void *ctx;
	bool (*keep)(void *ctx);
	const uint8_t *owner;
} srv_audio_check;
void srv_respond_message_audio_checked(srv_exchange *x, const char *family_id,
                                       const char *message_id, int64_t max_age_s,
                                       const srv_audio_check *check);

#endif
