/*
 * internal.h — what codec/'s files share and nothing outside codec/ may include.
 *
 * codec_in: a buffered, forward-only reader over a codec_source with a byte limit, so every
 * container parser reads through the same bounds-checked calls. decoder_ops: the three calls a
 * container decoder (wav.c, ogg_demux.c, webm.c) implements. opus_head/opusdec: OpusHead
 * parsing and packet decoding shared by the Ogg and WebM decoders (opus_dec.c).
 * Single-threaded: every object here belongs to one transcode at a time.
 */
#ifndef JIAYIN_CODEC_INTERNAL_H
#define JIAYIN_CODEC_INTERNAL_H

#include "codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CODEC_IN_BUFSIZE 65536

typedef struct codec_in {
	const codec_source *src;
	uint8_t *buf;
	size_t pos, len;    /* unread bytes are buf[pos..len) */
	uint64_t consumed;  /* bytes handed to the parser so far (its position in the file) */
	uint64_t fetched;   /* bytes read from the source so far */
	uint64_t max_bytes; /* reading past this many bytes fails with CODEC_ETOOLARGE */
	bool eof;
} codec_in;

int in_init(codec_in *in, const codec_source *src, uint64_t max_bytes);
void in_free(codec_in *in);
/* Up to n bytes; *got < n only at the end of input. */
int in_read(codec_in *in, void *dst, size_t n, size_t *got);
/* Exactly n bytes, or CODEC_ETRUNCATED. */
int in_read_exact(codec_in *in, void *dst, size_t n);
/* Skip n bytes (seeking when the source can), or CODEC_ETRUNCATED if the input ends first. */
int in_skip(codec_in *in, uint64_t n);
/* Make up to n (<= CODEC_IN_BUFSIZE) bytes visible at *p without consuming them. */
int in_peek(codec_in *in, const uint8_t **p, size_t n, size_t *avail);
/* Position of the next byte the parser will get. */
static inline uint64_t in_tell(const codec_in *in)
{
	return in->consumed;
}

static inline uint16_t rd_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t rd_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd_le64(const uint8_t *p)
{
	return (uint64_t)rd_le32(p) | (uint64_t)rd_le32(p + 4) << 32;
}

/*
 * A container decoder. open() reads headers from `in` (positioned at byte 0) and fills `info`;
 * read() produces up to max_frames interleaved float frames, *frames == 0 at the end;
 * close() accepts NULL and half-built states.
 */
typedef struct decoder_ops {
	int (*open)(codec_in *in, void **state, codec_stream_info *info);
	int (*read)(void *state, float *pcm, size_t max_frames, size_t *frames);
	void (*close)(void *state);
} decoder_ops;

extern const decoder_ops codec_wav_decoder;
extern const decoder_ops codec_ogg_decoder;
extern const decoder_ops codec_webm_decoder;

/* OpusHead (RFC 7845 section 5.1). */
typedef struct opus_head {
	uint8_t version;
	uint8_t channels;
	uint16_t preskip;
	uint32_t input_rate;
	int16_t output_gain_q8;
	uint8_t family;
	uint8_t streams, coupled;
	uint8_t mapping[CODEC_MAX_CHANNELS];
} opus_head;

/* Parse and validate an OpusHead packet: families 0 and 1, 1..8 channels. */
int opus_head_parse(const uint8_t *p, size_t len, opus_head *head);
/* Index of the LFE channel for the head's layout (Vorbis channel order), or -1. */
int opus_head_lfe(const opus_head *head);

/*
 * Opus packet decoding with pre-skip and an optional end limit. Each packet's PCM lands in
 * `pcm` (interleaved, `channels` wide) as pcm[pos..len) frames; the container decoder hands
 * them out and calls opusdec_packet again when they are used up.
 */
typedef struct opusdec {
	struct OpusMSDecoder *dec;
	unsigned channels;
	uint64_t skip;     /* frames still to drop from the start (pre-skip, start trimming) */
	uint64_t produced; /* frames handed out so far (after skipping) */
	uint64_t limit;    /* never hand out more than this many frames in total (UINT64_MAX: none) */
	float *pcm;        /* 5760 * channels floats: the largest Opus packet (120 ms) */
	size_t pos, len;
} opusdec;

int opusdec_init(opusdec *d, const opus_head *head);
void opusdec_free(opusdec *d);
/* Number of 48 kHz frames in a packet, or CODEC_ECORRUPT. */
int opusdec_packet_frames(const uint8_t *pkt, size_t len);
/* Decode one packet into d->pcm, applying skip and limit. */
int opusdec_packet(opusdec *d, const uint8_t *pkt, size_t len);
/* Copy up to max_frames decoded frames out; returns the count copied. */
size_t opusdec_take(opusdec *d, float *out, size_t max_frames);

#endif
