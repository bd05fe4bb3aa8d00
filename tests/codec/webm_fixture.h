/*
 * webm_fixture.h — what the WebM demuxer tests (test_webm_layouts.c, test_webm_malformed.c,
 * test_webm_sources.c) share: a small EBML writer, real Opus packets encoded here with libopus,
 * build() that lays them out as a WebM file in every layout the demuxer must handle (known and
 * unknown sizes, the four lacing modes, DiscardPadding, CodecDelay, foreign tracks), the expected
 * PCM as a plain libopus decode of the same packets trimmed by an independent model, decoding
 * through the public API, and the packets every test builds from (encoded once per run by setup()).
 */
#ifndef JIAYIN_TESTS_WEBM_FIXTURE_H
#define JIAYIN_TESTS_WEBM_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <math.h>
#include <opus.h>
#include <opus_multistream.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PKTS 400
#define NS_PER_FRAME (1e9 / 48000)

/* ---- A growable byte buffer and an EBML writer. ---- */

typedef struct wbuf {
	uint8_t *d;
	size_t len, cap;
} wbuf;

static inline void put(wbuf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->d = realloc(b->d, cap);
		assert_non_null(b->d);
		b->cap = cap;
	}
	if (n)
		memcpy(b->d + b->len, p, n);
	b->len += n;
}

static inline void put_u8(wbuf *b, uint8_t v)
{
	put(b, &v, 1);
}

static inline void put_be(wbuf *b, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--)
		put_u8(b, (uint8_t)(v >> (8 * i)));
}

static inline void put_id(wbuf *b, uint32_t id)
{
	int n = id > 0xFFFFFF ? 4 : id > 0xFFFF ? 3 : id > 0xFF ? 2 : 1;
	put_be(b, id, n);
}

/* An EBML size (or lace size) in n bytes. */
static inline void put_vint_n(wbuf *b, uint64_t v, int n)
{
	put_be(b, v | (1ull << (7 * n)), n);
}

/* The shortest encoding that is not the all-ones (unknown) pattern. */
static inline void put_vint(wbuf *b, uint64_t v)
{
	int n = 1;
	while (v >= (1ull << (7 * n)) - 1)
		n++;
	put_vint_n(b, v, n);
}

static inline void el_bin(wbuf *b, uint32_t id, const void *p, size_t n)
{
	put_id(b, id);
	put_vint(b, n);
	put(b, p, n);
}

static inline void el_uint(wbuf *b, uint32_t id, uint64_t v)
{
	int n = 1;
	while (n < 8 && v >> (8 * n))
		n++;
	put_id(b, id);
	put_vint(b, (uint64_t)n);
	put_be(b, v, n);
}

static inline void el_sint(wbuf *b, uint32_t id, int64_t v)
{
	int n = 1;
	while (n < 8 && (v < -(1ll << (8 * n - 1)) || v >= (1ll << (8 * n - 1))))
		n++;
	put_id(b, id);
	put_vint(b, (uint64_t)n);
	put_be(b, (uint64_t)v, n);
}

static inline void el_str(wbuf *b, uint32_t id, const char *s)
{
	el_bin(b, id, s, strlen(s));
}

static inline void el_float(wbuf *b, uint32_t id, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	put_id(b, id);
	put_vint(b, 8);
	put_be(b, u, 8);
}

/* A master element with an 8-byte size patched by el_end(). */
static inline size_t el_begin(wbuf *b, uint32_t id)
{
	put_id(b, id);
	size_t mark = b->len;
	put_be(b, 0, 8);
	return mark;
}

static inline void el_end(wbuf *b, size_t mark)
{
	uint64_t size = b->len - mark - 8;
	for (int i = 0; i < 8; i++)
		b->d[mark + i] = (uint8_t)(size >> (8 * (7 - i)));
	b->d[mark] |= 0x01;
}

/* A master element of unknown size: all value bits set, in 8 bytes or in 1. */
static inline void el_begin_unknown(wbuf *b, uint32_t id, bool one_byte)
{
	put_id(b, id);
	if (one_byte)
		put_u8(b, 0xFF);
	else
		put_be(b, 0x01FFFFFFFFFFFFFFull, 8);
}

/* ---- Opus packets and their reference decode. ---- */

typedef struct pkts {
	int n, channels, preskip;
	uint8_t *data[MAX_PKTS];
	size_t len[MAX_PKTS];
} pkts;

static inline void encode(pkts *p, int channels, int count, int bitrate, bool cbr)
{
	int err;
	OpusEncoder *enc = opus_encoder_create(48000, channels, OPUS_APPLICATION_AUDIO, &err);
	assert_int_equal(err, OPUS_OK);
	assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate)), OPUS_OK);
	assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_VBR(!cbr)), OPUS_OK);
	assert_int_equal(opus_encoder_ctl(enc, OPUS_GET_LOOKAHEAD(&p->preskip)), OPUS_OK);
	p->n = count;
	p->channels = channels;
	float pcm[960 * 2];
	uint32_t seed = 12345;
	for (int k = 0; k < count; k++) {
		for (int i = 0; i < 960; i++) {
			double t = (k * 960 + i) / 48000.0;
			seed = seed * 1664525u + 1013904223u;
			double noise = ((seed >> 8) / 16777216.0 - 0.5) * 0.05;
			for (int c = 0; c < channels; c++)
				pcm[i * channels + c] =
				    (float)(0.4 * sin(2 * M_PI * (440 + 220 * c) * t) + noise);
		}
		uint8_t out[1500];
		int len = opus_encode_float(enc, pcm, 960, out, sizeof out);
		assert_true(len > 0);
		p->data[k] = malloc((size_t)len);
		assert_non_null(p->data[k]);
		memcpy(p->data[k], out, (size_t)len);
		p->len[k] = (size_t)len;
	}
	opus_encoder_destroy(enc);
}

static inline void pkts_free(pkts *p)
{
	for (int k = 0; k < p->n; k++)
		free(p->data[k]);
}

/* The OpusHead we put in CodecPrivate (family 0). */
static inline size_t opus_head_bytes(uint8_t *h, int channels, int preskip)
{
	memcpy(h, "OpusHead", 8);
	h[8] = 1;
	h[9] = (uint8_t)channels;
	h[10] = (uint8_t)preskip;
	h[11] = (uint8_t)(preskip >> 8);
	h[12] = 0x80, h[13] = 0xBB, h[14] = h[15] = 0; /* input rate 48000, little-endian */
	h[16] = h[17] = 0;
	h[18] = 0;
	return 19;
}

/* ---- Building a file. ---- */

typedef struct layout {
	int lacing;           /* 0 none, 1 Xiph, 2 fixed, 3 EBML */
	int per_block;        /* packets per block (more than one needs lacing) */
	int per_cluster;      /* blocks per cluster (0: 10) */
	bool unknown_segment; /* Segment of unknown size */
	bool unknown_cluster; /* Clusters of unknown size */
	bool short_unknown;   /* unknown sizes as one 0xFF byte rather than eight */
	bool groups;          /* every block in a BlockGroup */
	int first_discard;   /* DiscardPadding of the first block, in frames (<0: from its start) */
	int last_discard;    /* DiscardPadding of the last block, in frames */
	bool padding_first;  /* DiscardPadding before the Block inside its BlockGroup */
	bool no_private;     /* no CodecPrivate */
	int channels_elem;   /* Audio/Channels (0: omit) */
	int codec_delay;     /* CodecDelay in frames (-1: omit, -2: the encoder's lookahead) */
	int head_preskip;    /* OpusHead pre-skip (-1: the encoder's lookahead) */
	const char *doctype; /* NULL: "webm" */
	const char *codec;   /* NULL: "A_OPUS" */
	bool vorbis_first;   /* a Vorbis track 1 with its own blocks; Opus is track 2 */
	bool vorbis_big;     /* its CodecPrivate larger than any OpusHead we would read */
	const wbuf *extra;   /* elements appended to the Opus TrackEntry */
	bool tail;           /* Cues and Tags after the Clusters */
	size_t tail_void;    /* a Void of this many bytes at the very end of the file */
	size_t middle_void;  /* a Void of this many bytes between Tracks and the first Cluster */
} layout;

/* OpusHead's pre-skip; CodecDelay only stands in when there is no OpusHead. */
static inline int effective_preskip(const pkts *p, const layout *l)
{
	if (!l->no_private)
		return l->head_preskip >= 0 ? l->head_preskip : p->preskip;
	if (l->codec_delay >= 0)
		return l->codec_delay;
	return l->codec_delay == -2 ? p->preskip : 0;
}

static inline int64_t frames_to_ns(int frames)
{
	return (int64_t)llround(frames * NS_PER_FRAME);
}

static inline void put_block_body(wbuf *b, const pkts *p, const layout *l, int first, int count,
                                  int track, bool simple)
{
	put_vint_n(b, (uint64_t)track, 1);
	put_be(b, (uint64_t)(first % 50) * 20, 2); /* relative timecode, ms */
	uint8_t flags = simple ? 0x80 : 0;
	int lacing = count > 1 ? l->lacing : 0;
	put_u8(b, (uint8_t)(flags | lacing << 1));
	if (lacing) {
		put_u8(b, (uint8_t)(count - 1));
		for (int i = 0; i + 1 < count; i++) {
			size_t s = p->len[first + i];
			if (lacing == 1) {
				for (; s >= 255; s -= 255)
					put_u8(b, 255);
				put_u8(b, (uint8_t)s);
			} else if (lacing == 3 && i == 0) {
				put_vint(b, s);
			} else if (lacing == 3) {
				int64_t diff = (int64_t)s - (int64_t)p->len[first + i - 1];
				int n = 1;
				while (llabs(diff) > (1ll << (7 * n - 1)) - 2)
					n++;
				put_vint_n(b, (uint64_t)(diff + (1ll << (7 * n - 1)) - 1), n);
			} else { /* fixed: all sizes equal */
				assert_int_equal(s, p->len[first + count - 1]);
			}
		}
	}
	for (int i = 0; i < count; i++)
		put(b, p->data[first + i], p->len[first + i]);
}

static inline void build(wbuf *b, const pkts *p, const layout *l)
{
	uint8_t head[19];
	size_t m, seg = 0;
	int opus_track = l->vorbis_first ? 2 : 1;
	int per_block = l->per_block ? l->per_block : 1;
	int per_cluster = l->per_cluster ? l->per_cluster : 10;

	memset(b, 0, sizeof *b);
	m = el_begin(b, 0x1A45DFA3);
	el_uint(b, 0x4286, 1);
	el_uint(b, 0x42F7, 1);
	el_uint(b, 0x42F2, 4);
	el_uint(b, 0x42F3, 8);
	el_str(b, 0x4282, l->doctype ? l->doctype : "webm");
	el_uint(b, 0x4287, 4);
	el_uint(b, 0x4285, 2);
	el_end(b, m);

	if (l->unknown_segment)
		el_begin_unknown(b, 0x18538067, l->short_unknown);
	else
		seg = el_begin(b, 0x18538067);
	m = el_begin(b, 0x1549A966);
	el_uint(b, 0x2AD7B1, 1000000);
	el_str(b, 0x4D80, "jiayin-test");
	el_str(b, 0x5741, "jiayin-test");
	el_end(b, m);

	m = el_begin(b, 0x1654AE6B);
	if (l->vorbis_first) {
		uint8_t books[6000];
		memset(books, 0x5A, sizeof books);
		size_t e = el_begin(b, 0xAE);
		el_uint(b, 0xD7, 1);
		el_uint(b, 0x73C5, 1111);
		el_uint(b, 0x83, 2);
		el_str(b, 0x86, "A_VORBIS");
		el_bin(b, 0x63A2, books, l->vorbis_big ? sizeof books : 3000);
		size_t a = el_begin(b, 0xE1);
		el_uint(b, 0x9F, 2);
		el_float(b, 0xB5, 44100.0);
		el_end(b, a);
		el_end(b, e);
	}
	size_t e = el_begin(b, 0xAE);
	el_uint(b, 0xD7, (uint64_t)opus_track);
	el_uint(b, 0x73C5, 2222);
	el_uint(b, 0x83, 2);
	el_str(b, 0x86, l->codec ? l->codec : "A_OPUS");
	if (l->codec_delay != -1)
		el_uint(b, 0x56AA,
		        (uint64_t)frames_to_ns(l->codec_delay == -2 ? p->preskip : l->codec_delay));
	el_uint(b, 0x56BB, 80000000);
	if (l->extra)
		put(b, l->extra->d, l->extra->len);
	if (!l->no_private) {
		int preskip = l->head_preskip >= 0 ? l->head_preskip : p->preskip;
		el_bin(b, 0x63A2, head, opus_head_bytes(head, p->channels, preskip));
	}
	size_t a = el_begin(b, 0xE1);
	if (l->channels_elem)
		el_uint(b, 0x9F, (uint64_t)l->channels_elem);
	el_float(b, 0xB5, 48000.0);
	el_end(b, a);
	el_end(b, e);
	el_end(b, m);

	if (l->middle_void) {
		put_id(b, 0xEC);
		put_vint_n(b, l->middle_void, 8);
		for (size_t i = 0; i < l->middle_void; i++)
			put_u8(b, 0);
	}

	int nblocks = (p->n + per_block - 1) / per_block;
	size_t cluster = 0;
	for (int k = 0; k < nblocks; k++) {
		int first = k * per_block;
		int count = p->n - first < per_block ? p->n - first : per_block;
		if (k % per_cluster == 0) {
			if (k > 0 && !l->unknown_cluster)
				el_end(b, cluster);
			if (l->unknown_cluster)
				el_begin_unknown(b, 0x1F43B675, l->short_unknown);
			else
				cluster = el_begin(b, 0x1F43B675);
			el_uint(b, 0xE7, (uint64_t)first * 20);
		}
		if (l->vorbis_first) { /* a Vorbis block of track 1: junk we must skip */
			uint8_t junk[200];
			memset(junk, 0xA5, sizeof junk);
			size_t s = el_begin(b, 0xA3);
			put_vint_n(b, 1, 1);
			put_be(b, 0, 2);
			put_u8(b, 0x80);
			put(b, junk, sizeof junk);
			el_end(b, s);
		}
		int discard = k == nblocks - 1 ? l->last_discard : k == 0 ? l->first_discard : 0;
		if (k == 0 && k == nblocks - 1 && l->first_discard)
			discard = l->first_discard;
		if (l->groups || discard) {
			size_t g = el_begin(b, 0xA0);
			if (discard && l->padding_first)
				el_sint(b, 0x75A2, frames_to_ns(discard));
			size_t blk = el_begin(b, 0xA1);
			put_block_body(b, p, l, first, count, opus_track, false);
			el_end(b, blk);
			el_uint(b, 0x9B, (uint64_t)count * 20); /* BlockDuration */
			if (discard && !l->padding_first)
				el_sint(b, 0x75A2, frames_to_ns(discard));
			el_end(b, g);
		} else {
			size_t s = el_begin(b, 0xA3);
			put_block_body(b, p, l, first, count, opus_track, true);
			el_end(b, s);
		}
	}
	if (nblocks > 0 && !l->unknown_cluster)
		el_end(b, cluster);
	if (l->tail) {
		m = el_begin(b, 0x1C53BB6B);
		size_t cp = el_begin(b, 0xBB);
		el_uint(b, 0xB3, 0);
		size_t tp = el_begin(b, 0xB7);
		el_uint(b, 0xF7, (uint64_t)opus_track);
		el_uint(b, 0xF1, 100);
		el_end(b, tp);
		el_end(b, cp);
		el_end(b, m);
		m = el_begin(b, 0x1254C367);
		size_t t = el_begin(b, 0x7373);
		size_t st = el_begin(b, 0x67C8);
		el_str(b, 0x45A3, "ENCODER");
		el_str(b, 0x4487, "jiayin-test");
		el_end(b, st);
		el_end(b, t);
		el_end(b, m);
	}
	if (l->tail_void) {
		put_id(b, 0xEC);
		put_vint_n(b, l->tail_void, 8);
		for (size_t i = 0; i < l->tail_void; i++)
			put_u8(b, 0);
	}
	if (!l->unknown_segment)
		el_end(b, seg);
}

/* What the file must decode to: every packet decoded, then pre-skip and DiscardPadding cut. */
static inline float *reference(const pkts *p, const layout *l, size_t *frames)
{
	int err;
	unsigned char mapping[2] = {0, 1};
	OpusMSDecoder *dec =
	    opus_multistream_decoder_create(48000, p->channels, 1, p->channels == 2, mapping, &err);
	assert_int_equal(err, OPUS_OK);
	size_t ch = (size_t)p->channels, total = (size_t)p->n * 5760;
	float *all = malloc(total * ch * sizeof(float));
	bool *keep = malloc(total);
	assert_non_null(all);
	assert_non_null(keep);
	int per_block = l->per_block ? l->per_block : 1;
	int nblocks = (p->n + per_block - 1) / per_block;
	size_t pos = 0;
	for (int k = 0; k < nblocks; k++) {
		size_t start = pos;
		for (int i = k * per_block; i < p->n && i < (k + 1) * per_block; i++) {
			int n = opus_multistream_decode_float(
			    dec, p->data[i], (opus_int32)p->len[i], all + pos * ch, 5760, 0);
			assert_true(n > 0);
			pos += (size_t)n;
		}
		int discard = k == nblocks - 1 ? l->last_discard : k == 0 ? l->first_discard : 0;
		if (k == 0 && k == nblocks - 1 && l->first_discard)
			discard = l->first_discard;
		size_t d = (size_t)abs(discard), len = pos - start;
		if (d > len)
			d = len;
		for (size_t i = start; i < pos; i++)
			keep[i] = discard >= 0 ? i < pos - d : i >= start + d;
	}
	size_t preskip = (size_t)effective_preskip(p, l);
	size_t out = 0;
	for (size_t i = 0; i < pos; i++) {
		if (i < preskip || !keep[i])
			continue;
		memmove(all + out * ch, all + i * ch, ch * sizeof(float));
		out++;
	}
	opus_multistream_decoder_destroy(dec);
	free(keep);
	*frames = out;
	return all;
}

/* ---- Decoding through the public API. ---- */

typedef struct decoded {
	int rc; /* the error that ended decoding, 0 if the stream ended cleanly */
	codec_stream_info info;
	float *pcm;
	size_t frames;
} decoded;

static inline decoded decode_limit(const uint8_t *data, size_t len, size_t chunk,
                                   uint64_t max_bytes)
{
	decoded r;
	codec_source src;
	codec_memory_source mem;
	codec_decoder *dec = NULL;
	size_t cap = 0;

	memset(&r, 0, sizeof r);
	codec_source_memory(&src, &mem, data, len);
	r.rc = codec_decoder_open(&dec, &src, max_bytes, &r.info);
	if (r.rc == 0) {
		assert_int_equal(r.info.format, CODEC_FORMAT_WEBM_OPUS);
		assert_int_equal(r.info.rate, 48000);
		size_t ch = r.info.channels;
		assert_true(ch >= 1 && ch <= CODEC_MAX_CHANNELS);
		for (;;) {
			if (r.frames + chunk > cap) {
				cap = (r.frames + chunk) * 2;
				r.pcm = realloc(r.pcm, cap * ch * sizeof(float));
				assert_non_null(r.pcm);
			}
			size_t got = 12345;
			int rc = codec_decoder_read(dec, r.pcm + r.frames * ch, chunk, &got);
			if (rc < 0) {
				assert_int_equal(got, 0);
				r.rc = rc;
				break;
			}
			assert_true(got <= chunk);
			if (got == 0)
				break;
			r.frames += got;
		}
	}
	codec_decoder_close(dec);
	return r;
}

static inline decoded decode(const uint8_t *data, size_t len, size_t chunk)
{
	return decode_limit(data, len, chunk, 0);
}

static inline int open_rc(const wbuf *b)
{
	decoded r = decode(b->d, b->len, 4096);
	free(r.pcm);
	return r.rc;
}

/* Build, decode with several read sizes, and compare with the reference to the sample. */
static inline void check_layout(const pkts *p, const layout *l)
{
	static const size_t chunks[] = {1, 7, 960, 4096, 100000};
	wbuf b;
	size_t ref_frames;
	build(&b, p, l);
	float *ref = reference(p, l, &ref_frames);
	for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
		decoded r = decode(b.d, b.len, chunks[c]);
		assert_int_equal(r.rc, 0);
		assert_int_equal(r.info.channels, p->channels);
		assert_int_equal(r.info.lfe_channel, -1);
		assert_int_equal(r.frames, ref_frames);
		assert_memory_equal(r.pcm, ref, ref_frames * (size_t)p->channels * sizeof(float));
		free(r.pcm);
	}
	free(ref);
	free(b.d);
}

/* ---- The packets the tests build their files from. ---- */

static pkts mono, stereo, mono_cbr, mono_big;

static inline int setup(void **state)
{
	(void)state;
	encode(&mono, 1, 50, 24000, false);
	encode(&stereo, 2, 40, 48000, false);
	encode(&mono_cbr, 1, 24, 32000, true);
	encode(&mono_big, 1, 30, 160000, false); /* packets over 255 bytes for Xiph lacing */
	return 0;
}

static inline int teardown(void **state)
{
	(void)state;
	pkts_free(&mono);
	pkts_free(&stereo);
	pkts_free(&mono_cbr);
	pkts_free(&mono_big);
	return 0;
}

#endif
