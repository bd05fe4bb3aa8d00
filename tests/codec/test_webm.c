/*
 * test_webm.c — the WebM/Matroska Opus decoder (codec/webm.c) through the public decoding API.
 *
 * Files are built in memory by a small EBML writer below around real Opus packets encoded here
 * with libopus, in every layout the demuxer must handle (known and unknown sizes, the four lacing
 * modes, DiscardPadding, CodecDelay, foreign tracks) and broken in the ways uploads break (lying
 * sizes, truncation at every offset, random mutations). The expected PCM is a plain libopus decode
 * of the same packets, trimmed by an independent model, and must match to the sample. Files made
 * by ffmpeg come from $JIAYIN_TEST_DATA or argv[1]; make_webm_vectors.py --ffmpeg remakes them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <math.h>
#include <opus.h>
#include <opus_multistream.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PKTS 400
#define NS_PER_FRAME (1e9 / 48000)

static const char *data_dir; /* ffmpeg-made files; NULL skips those tests */

/* ---- A growable byte buffer and an EBML writer. ---- */

typedef struct wbuf {
	uint8_t *d;
	size_t len, cap;
} wbuf;

static void put(wbuf *b, const void *p, size_t n)
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

static void put_u8(wbuf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put_be(wbuf *b, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--)
		put_u8(b, (uint8_t)(v >> (8 * i)));
}

static void put_id(wbuf *b, uint32_t id)
{
	int n = id > 0xFFFFFF ? 4 : id > 0xFFFF ? 3 : id > 0xFF ? 2 : 1;
	put_be(b, id, n);
}

/* An EBML size (or lace size) in n bytes. */
static void put_vint_n(wbuf *b, uint64_t v, int n)
{
	put_be(b, v | (1ull << (7 * n)), n);
}

/* The shortest encoding that is not the all-ones (unknown) pattern. */
static void put_vint(wbuf *b, uint64_t v)
{
	int n = 1;
	while (v >= (1ull << (7 * n)) - 1)
		n++;
	put_vint_n(b, v, n);
}

static void el_bin(wbuf *b, uint32_t id, const void *p, size_t n)
{
	put_id(b, id);
	put_vint(b, n);
	put(b, p, n);
}

static void el_uint(wbuf *b, uint32_t id, uint64_t v)
{
	int n = 1;
	while (n < 8 && v >> (8 * n))
		n++;
	put_id(b, id);
	put_vint(b, (uint64_t)n);
	put_be(b, v, n);
}

static void el_sint(wbuf *b, uint32_t id, int64_t v)
{
	int n = 1;
	while (n < 8 && (v < -(1ll << (8 * n - 1)) || v >= (1ll << (8 * n - 1))))
		n++;
	put_id(b, id);
	put_vint(b, (uint64_t)n);
	put_be(b, (uint64_t)v, n);
}

static void el_str(wbuf *b, uint32_t id, const char *s)
{
	el_bin(b, id, s, strlen(s));
}

static void el_float(wbuf *b, uint32_t id, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	put_id(b, id);
	put_vint(b, 8);
	put_be(b, u, 8);
}

/* A master element with an 8-byte size patched by el_end(). */
static size_t el_begin(wbuf *b, uint32_t id)
{
	put_id(b, id);
	size_t mark = b->len;
	put_be(b, 0, 8);
	return mark;
}

static void el_end(wbuf *b, size_t mark)
{
	uint64_t size = b->len - mark - 8;
	for (int i = 0; i < 8; i++)
		b->d[mark + i] = (uint8_t)(size >> (8 * (7 - i)));
	b->d[mark] |= 0x01;
}

/* A master element of unknown size: all value bits set, in 8 bytes or in 1. */
static void el_begin_unknown(wbuf *b, uint32_t id, bool one_byte)
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

static void encode(pkts *p, int channels, int count, int bitrate, bool cbr)
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

static void pkts_free(pkts *p)
{
	for (int k = 0; k < p->n; k++)
		free(p->data[k]);
}

/* The OpusHead we put in CodecPrivate (family 0). */
static size_t opus_head_bytes(uint8_t *h, int channels, int preskip)
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
static int effective_preskip(const pkts *p, const layout *l)
{
	if (!l->no_private)
		return l->head_preskip >= 0 ? l->head_preskip : p->preskip;
	if (l->codec_delay >= 0)
		return l->codec_delay;
	return l->codec_delay == -2 ? p->preskip : 0;
}

static int64_t frames_to_ns(int frames)
{
	return (int64_t)llround(frames * NS_PER_FRAME);
}

static void put_block_body(wbuf *b, const pkts *p, const layout *l, int first, int count, int track,
                           bool simple)
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

static void build(wbuf *b, const pkts *p, const layout *l)
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
static float *reference(const pkts *p, const layout *l, size_t *frames)
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

static decoded decode_limit(const uint8_t *data, size_t len, size_t chunk, uint64_t max_bytes)
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

static decoded decode(const uint8_t *data, size_t len, size_t chunk)
{
	return decode_limit(data, len, chunk, 0);
}

static int open_rc(const wbuf *b)
{
	decoded r = decode(b->d, b->len, 4096);
	free(r.pcm);
	return r.rc;
}

/* Build, decode with several read sizes, and compare with the reference to the sample. */
static void check_layout(const pkts *p, const layout *l)
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

/* ---- Tests. ---- */

static pkts mono, stereo, mono_cbr, mono_big;

static int setup(void **state)
{
	(void)state;
	encode(&mono, 1, 50, 24000, false);
	encode(&stereo, 2, 40, 48000, false);
	encode(&mono_cbr, 1, 24, 32000, true);
	encode(&mono_big, 1, 30, 160000, false); /* packets over 255 bytes for Xiph lacing */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pkts_free(&mono);
	pkts_free(&stereo);
	pkts_free(&mono_cbr);
	pkts_free(&mono_big);
	return 0;
}

static void test_known_sizes_simple_blocks(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2, .head_preskip = -1, .channels_elem = 1, .tail = true};
	check_layout(&mono, &l);
	size_t frames;
	free(reference(&mono, &l, &frames));
	assert_int_equal(frames, 50 * 960 - mono.preskip);
}

static void test_unknown_segment_and_clusters(void **state)
{
	(void)state;
	layout l = {.codec_delay = -1,
	            .head_preskip = -1,
	            .unknown_segment = true,
	            .unknown_cluster = true,
	            .per_cluster = 7};
	check_layout(&mono, &l);
	l.short_unknown = true; /* 0xFF: the one-byte unknown size */
	check_layout(&mono, &l);
	l.tail = true; /* Cues and Tags end the last unknown-size Cluster */
	check_layout(&mono, &l);
	l.unknown_segment = false; /* unknown Clusters inside a known Segment */
	check_layout(&mono, &l);
	l.tail = false;
	check_layout(&mono, &l);
	l.unknown_segment = true;
	l.unknown_cluster = false; /* known Clusters in an unknown Segment (ffmpeg -live) */
	check_layout(&mono, &l);
}

static void test_xiph_lacing(void **state)
{
	(void)state;
	size_t big = 0;
	for (int i = 0; i < mono_big.n; i++)
		big += mono_big.len[i] > 255;
	assert_true(big > 10);
	layout l = {.lacing = 1, .per_block = 4, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono_big, &l);
	l.per_block = 7;
	l.unknown_cluster = true;
	check_layout(&mono, &l);
}

static void test_ebml_lacing(void **state)
{
	(void)state;
	layout l = {.lacing = 3, .per_block = 5, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono, &l);
	check_layout(&mono_big, &l);
	l.per_block = 3;
	check_layout(&stereo, &l);
}

static void test_fixed_lacing(void **state)
{
	(void)state;
	for (int i = 1; i < mono_cbr.n; i++)
		assert_int_equal(mono_cbr.len[i], mono_cbr.len[0]);
	layout l = {.lacing = 2, .per_block = 6, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono_cbr, &l);
	l.per_block = 5; /* a shorter last block */
	check_layout(&mono_cbr, &l);
}

static void test_discard_padding_trims_the_end(void **state)
{
	(void)state;
	layout l = {.last_discard = 600, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono, &l);
	size_t frames;
	free(reference(&mono, &l, &frames));
	assert_int_equal(frames, 50 * 960 - mono.preskip - 600);
	l.padding_first = true; /* DiscardPadding before the Block in its group */
	check_layout(&mono, &l);
	l.groups = true;
	check_layout(&mono, &l);
	/* A laced last block trimmed by more than one packet. */
	layout laced = {.lacing = 3,
	                .per_block = 3,
	                .last_discard = 1500,
	                .codec_delay = -2,
	                .head_preskip = -1};
	check_layout(&mono, &laced);
	/* Padding longer than the block drops all of it and nothing before it. */
	laced.last_discard = 100000;
	check_layout(&mono, &laced);
	free(reference(&mono, &laced, &frames));
	assert_int_equal(frames, 48 * 960 - mono.preskip);
}

static void test_negative_discard_padding_trims_the_start(void **state)
{
	(void)state;
	/* Pre-skip and a negative padding on the first block overlap: the union is dropped. */
	layout l = {.first_discard = -100, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono, &l);
	l.first_discard = -1000;
	check_layout(&mono, &l);
	l.per_block = 3;
	l.lacing = 1;
	l.first_discard = -2000;
	check_layout(&mono, &l);
}

static void test_single_block_with_preskip_and_padding(void **state)
{
	(void)state;
	pkts one = mono;
	one.n = 3;
	layout l = {.lacing = 1,
	            .per_block = 3,
	            .last_discard = 1000,
	            .codec_delay = -2,
	            .head_preskip = -1};
	check_layout(&one, &l);
	size_t frames;
	free(reference(&one, &l, &frames));
	assert_int_equal(frames, 3 * 960 - one.preskip - 1000);
}

static void test_stereo(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .channels_elem = 2,
	            .last_discard = 333,
	            .unknown_cluster = true,
	            .unknown_segment = true};
	check_layout(&stereo, &l);
}

/*
 * Regression: ffmpeg writes CodecDelay in the wrong unit for non-48 kHz input (104 frames where
 * OpusHead says 312 for 16 kHz); preferring it kept 208 frames of encoder warm-up.
 */
static void test_opushead_preskip_wins_over_codec_delay(void **state)
{
	(void)state;
	layout l = {.codec_delay = 104, .head_preskip = 312};
	check_layout(&mono, &l);
	size_t frames;
	free(reference(&mono, &l, &frames));
	assert_int_equal(frames, 50 * 960 - 312);
	l.codec_delay = 0;
	check_layout(&mono, &l);
	l.codec_delay = -1;
	l.head_preskip = 1234;
	check_layout(&mono, &l);
	free(reference(&mono, &l, &frames));
	assert_int_equal(frames, 50 * 960 - 1234);
}

static void test_missing_codec_private(void **state)
{
	(void)state;
	/* Without OpusHead, CodecDelay is the pre-skip; without either, nothing is skipped. */
	layout l = {.no_private = true, .channels_elem = 2, .codec_delay = 500};
	check_layout(&stereo, &l);
	size_t frames;
	free(reference(&stereo, &l, &frames));
	assert_int_equal(frames, 40 * 960 - 500);
	l.codec_delay = -1;
	check_layout(&stereo, &l);
	wbuf b;
	l.channels_elem = 0; /* nothing says how many channels */
	build(&b, &stereo, &l);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	free(b.d);
	l.channels_elem = 6; /* surround needs the OpusHead mapping */
	build(&b, &stereo, &l);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	free(b.d);
}

static void test_vorbis_only_is_unsupported(void **state)
{
	(void)state;
	wbuf b;
	layout l = {.codec = "A_VORBIS", .codec_delay = -1, .head_preskip = -1};
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED);
	free(b.d);
	l.codec = "V_VP8";
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED);
	free(b.d);
	l.codec = "A_OPUS/EXTRA";
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED);
	free(b.d);
}

static void test_opus_after_vorbis_track(void **state)
{
	(void)state;
	layout l = {
	    .vorbis_first = true, .codec_delay = -2, .head_preskip = -1, .last_discard = 200};
	check_layout(&mono, &l);
	l.unknown_cluster = true;
	l.lacing = 3;
	l.per_block = 4;
	check_layout(&mono, &l);
}

/* TrackEntry fields that make our track unusable, and large foreign private data we skip. */
static void test_track_entry_rules(void **state)
{
	(void)state;
	layout l = {
	    .codec_delay = -2, .head_preskip = -1, .vorbis_first = true, .vorbis_big = true};
	check_layout(&mono, &l);
	static const uint8_t three[3] = {1, 2, 3};
	uint8_t big[5000];
	memset(big, 0, sizeof big);
	struct {
		int rc;
		bool no_private;
		wbuf extra;
	} cases[5];
	memset(cases, 0, sizeof cases);
	el_bin(&cases[0].extra, 0x6D80, three, sizeof three); /* ContentEncodings */
	cases[0].rc = CODEC_EUNSUPPORTED;
	el_bin(&cases[1].extra, 0x63A2, big, sizeof big); /* a CodecPrivate no OpusHead needs */
	cases[1].rc = CODEC_EMALFORMED;
	cases[1].no_private = true;
	size_t a = el_begin(&cases[2].extra, 0xE1); /* SamplingFrequency that is not a float */
	el_bin(&cases[2].extra, 0xB5, three, sizeof three);
	el_end(&cases[2].extra, a);
	cases[2].rc = CODEC_EMALFORMED;
	el_uint(&cases[3].extra, 0xD7, 0); /* TrackNumber 0 */
	cases[3].rc = CODEC_EMALFORMED;
	el_uint(&cases[4].extra, 0x83, 1); /* TrackType video: not our track */
	cases[4].rc = CODEC_EUNSUPPORTED;
	l.vorbis_first = false;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		wbuf b;
		l.extra = &cases[i].extra;
		l.no_private = cases[i].no_private;
		l.channels_elem = 1;
		build(&b, &mono, &l);
		assert_int_equal(open_rc(&b), cases[i].rc);
		free(b.d);
		free(cases[i].extra.d);
	}
}

static void test_no_tracks(void **state)
{
	(void)state;
	wbuf b;
	memset(&b, 0, sizeof b);
	size_t m = el_begin(&b, 0x1A45DFA3);
	el_str(&b, 0x4282, "matroska");
	el_end(&b, m);
	size_t seg = el_begin(&b, 0x18538067);
	m = el_begin(&b, 0x1549A966);
	el_uint(&b, 0x2AD7B1, 1000000);
	el_end(&b, m);
	size_t tracks = el_begin(&b, 0x1654AE6B);
	el_end(&b, tracks);
	el_end(&b, seg);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED); /* empty Tracks */
	b.len = tracks - 4;                                /* no Tracks at all */
	el_end(&b, seg);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED);
	b.d[seg] = 0x01;
	memset(b.d + seg + 1, 0xFF, 7); /* unknown size: the upload was cut before its Tracks */
	assert_int_equal(open_rc(&b), CODEC_ETRUNCATED);
	free(b.d);
}

static void test_tracks_without_clusters(void **state)
{
	(void)state;
	pkts none = mono;
	none.n = 0;
	layout l = {.codec_delay = -2, .head_preskip = -1, .tail = true};
	wbuf b;
	build(&b, &none, &l);
	decoded r = decode(b.d, b.len, 960);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.frames, 0);
	free(r.pcm);
	free(b.d);
}

static void test_doctype(void **state)
{
	(void)state;
	wbuf b;
	layout l = {.doctype = "matroska", .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono, &l);
	l.doctype = "mkvx";
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EFORMAT);
	free(b.d);
	l.doctype = "a-doctype-longer-than-any-buffer-we-keep";
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EFORMAT);
	free(b.d);
}

/* Direct use of the container decoder, for inputs the sniffing front end would not pass on. */
static int webm_ops_rc(const void *data, size_t len)
{
	codec_source src;
	codec_memory_source mem;
	codec_in in;
	codec_stream_info info;
	void *state = (void *)1;
	codec_source_memory(&src, &mem, data, len);
	assert_int_equal(in_init(&in, &src, 0), 0);
	int rc = codec_webm_decoder.open(&in, &state, &info);
	if (rc < 0)
		assert_null(state);
	codec_webm_decoder.close(state);
	in_free(&in);
	return rc;
}

static void test_not_webm(void **state)
{
	(void)state;
	static const uint8_t riff[] = "RIFF\0\0\0\0WAVEfmt ";
	static const uint8_t partial_magic[] = {0x1A, 0x45};
	assert_int_equal(webm_ops_rc(riff, sizeof riff), CODEC_EFORMAT);
	assert_int_equal(webm_ops_rc(riff, 0), CODEC_EFORMAT);
	assert_int_equal(webm_ops_rc(partial_magic, sizeof partial_magic), CODEC_ETRUNCATED);
	codec_webm_decoder.close(NULL);
}

/* Patch helpers for the malformed-file tests: find an element by its ID bytes. */
static size_t find_id(const wbuf *b, const uint8_t *id, size_t idlen, size_t from)
{
	for (size_t i = from; i + idlen <= b->len; i++)
		if (memcmp(b->d + i, id, idlen) == 0)
			return i;
	fail_msg("ID not found");
	return 0;
}

/* Set the 8-byte size field that follows the ID at `at` (as el_begin writes them). */
static void set_size8(wbuf *b, size_t at, size_t idlen, uint64_t size)
{
	for (int i = 0; i < 8; i++)
		b->d[at + idlen + (size_t)i] = (uint8_t)(size >> (8 * (7 - i)));
	b->d[at + idlen] |= 0x01;
}

static void test_lying_sizes(void **state)
{
	(void)state;
	static const uint8_t track_entry[] = {0xAE}, tracks[] = {0x16, 0x54, 0xAE, 0x6B},
	                     simple[] = {0xA3}, cluster[] = {0x1F, 0x43, 0xB6, 0x75},
	                     segment[] = {0x18, 0x53, 0x80, 0x67};
	layout l = {.codec_delay = -2, .head_preskip = -1};
	wbuf b;
	build(&b, &mono, &l);
	size_t t = find_id(&b, tracks, 4, 0);
	size_t te = find_id(&b, track_entry, 1, t + 12);
	size_t cl = find_id(&b, cluster, 4, te);
	size_t sb = find_id(&b, simple, 1, cl + 12);
	uint8_t *orig = malloc(b.len);
	assert_non_null(orig);
	memcpy(orig, b.d, b.len);

	/* A TrackEntry larger than its Tracks. */
	set_size8(&b, te, 1, 100000);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* A SimpleBlock larger than its Cluster. */
	set_size8(&b, sb, 1, 1000000);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* A SimpleBlock too short for its own header. */
	set_size8(&b, sb, 1, 2);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* Unknown size where it is not allowed: TrackEntry, Tracks, SimpleBlock. */
	memset(b.d + te + 1, 0xFF, 8);
	b.d[te + 1] = 0x01;
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	memset(b.d + t + 4, 0xFF, 8);
	b.d[t + 4] = 0x01;
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	memset(b.d + sb + 1, 0xFF, 8);
	b.d[sb + 1] = 0x01;
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* A Segment claiming more than the file holds: the file is cut short. */
	size_t sg = find_id(&b, segment, 4, 0);
	set_size8(&b, sg, 4, b.len * 3);
	assert_int_equal(open_rc(&b), CODEC_ETRUNCATED);
	memcpy(b.d, orig, b.len);
	/* A Cluster whose size overruns the Segment. */
	set_size8(&b, cl, 4, b.len);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* IDs and sizes that are not EBML varints. */
	b.d[cl] = 0x08; /* a 5-byte ID */
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	b.d[cl + 4] = 0x00; /* a 9-byte size */
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	b.d[sb] = 0xFF; /* a reserved ID */
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	free(orig);
	free(b.d);
}

/* Hand-made Blocks: a Cluster holding one SimpleBlock with the given lace header and data. */
static int rc_of_block(const uint8_t *body, size_t len, bool unknown_size)
{
	pkts none = mono;
	none.n = 0;
	layout l = {.codec_delay = -2, .head_preskip = -1, .unknown_segment = true};
	wbuf b;
	build(&b, &none, &l);
	el_begin_unknown(&b, 0x1F43B675, false);
	el_uint(&b, 0xE7, 0);
	put_id(&b, 0xA3);
	if (unknown_size)
		put_u8(&b, 0xFF);
	else
		put_vint(&b, len);
	put(&b, body, len);
	int rc = open_rc(&b);
	free(b.d);
	return rc;
}

static void test_bad_laces(void **state)
{
	(void)state;
	uint8_t body[2000];
	size_t n = 0;
	const uint8_t *pk = mono.data[3];
	size_t pl = mono.len[3];
	/* Reference: one unlaced packet decodes. */
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x80;
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, false), 0);
	/* Xiph lace sizes beyond the block. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x82;
	body[n++] = 1, body[n++] = 255, body[n++] = 255, body[n++] = 10;
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, false), CODEC_EMALFORMED);
	/* Xiph lace header running off the end of the block. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x82;
	body[n++] = 3, body[n++] = 255, body[n++] = 255;
	assert_int_equal(rc_of_block(body, n, false), CODEC_EMALFORMED);
	/* EBML lacing with a difference that makes a size negative. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x86;
	body[n++] = 2, body[n++] = 0x85, body[n++] = 0x80 | (63 - 10);
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, false), CODEC_EMALFORMED);
	/* Fixed lacing that does not divide the data. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x84;
	body[n++] = 1;
	memcpy(body + n, pk, pl);
	memcpy(body + n + pl, pk, pl);
	assert_int_equal(rc_of_block(body, n + 2 * pl, false), 0);
	assert_int_equal(rc_of_block(body, n + 2 * pl - 1, false), CODEC_EMALFORMED);
	/* Lacing flags with no lace count byte. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x82;
	assert_int_equal(rc_of_block(body, n, false), CODEC_EMALFORMED);
	/* A SimpleBlock of unknown size. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x80;
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, true), CODEC_EMALFORMED);
	/* An empty lace is not an Opus packet; nor is a code-3 packet with no frames. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x82;
	body[n++] = 1, body[n++] = 0;
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, false), CODEC_ECORRUPT);
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x80;
	body[n++] = 0x03, body[n++] = 0x00;
	assert_int_equal(rc_of_block(body, n, false), CODEC_ECORRUPT);
}

static void test_block_group_rules(void **state)
{
	(void)state;
	pkts none = mono;
	none.n = 0;
	layout l = {.codec_delay = -2, .head_preskip = -1, .unknown_segment = true};
	uint8_t blk[600];
	size_t n = 0;
	blk[n++] = 0x81, blk[n++] = 0, blk[n++] = 0, blk[n++] = 0;
	memcpy(blk + n, mono.data[0], mono.len[0]);
	n += mono.len[0];
	for (int variant = 0; variant < 3; variant++) {
		wbuf b;
		build(&b, &none, &l);
		size_t c = el_begin(&b, 0x1F43B675);
		size_t g = el_begin(&b, 0xA0);
		if (variant != 1)
			el_bin(&b, 0xA1, blk, n);
		if (variant == 2)
			el_bin(&b, 0xA1, blk, n);
		el_end(&b, g);
		el_end(&b, c);
		assert_int_equal(open_rc(&b), variant == 0 ? 0 : CODEC_EMALFORMED);
		free(b.d);
	}
}

static void test_block_over_limit(void **state)
{
	(void)state;
	size_t len = (1u << 20) + 100;
	uint8_t *body = calloc(1, len);
	assert_non_null(body);
	body[0] = 0x81;
	body[3] = 0x80;
	body[4] = 0xF8; /* a CELT packet that would decode */
	assert_int_equal(rc_of_block(body, len, false), CODEC_EMALFORMED);
	body[0] = 0x82; /* another track's big block is skipped, not rejected */
	assert_int_equal(rc_of_block(body, len, false), 0);
	free(body);
}

static void test_cluster_before_tracks(void **state)
{
	(void)state;
	wbuf b;
	memset(&b, 0, sizeof b);
	size_t m = el_begin(&b, 0x1A45DFA3);
	el_str(&b, 0x4282, "webm");
	el_end(&b, m);
	el_begin_unknown(&b, 0x18538067, false);
	m = el_begin(&b, 0x1F43B675);
	el_uint(&b, 0xE7, 0);
	el_end(&b, m);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	free(b.d);
}

static void test_chained_segment_ends_the_clip(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .unknown_segment = true,
	            .unknown_cluster = true};
	wbuf first, second;
	build(&first, &mono, &l);
	build(&second, &stereo, &l);
	put(&first, second.d, second.len);
	size_t ref_frames;
	float *ref = reference(&mono, &l, &ref_frames);
	decoded r = decode(first.d, first.len, 4096);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.info.channels, 1);
	assert_int_equal(r.frames, ref_frames);
	free(r.pcm);
	free(ref);
	free(first.d);
	free(second.d);
}

/*
 * Every prefix of a valid file: a known-size file cut anywhere is truncated; an unknown-size one
 * may also end cleanly between elements, with a prefix of the full decode.
 */
static void test_every_prefix(void **state)
{
	(void)state;
	pkts few = mono;
	few.n = 6;
	for (int variant = 0; variant < 3; variant++) {
		layout l = {.codec_delay = -2,
		            .head_preskip = -1,
		            .lacing = 3,
		            .per_block = 2,
		            .last_discard = 300,
		            .per_cluster = 2};
		l.unknown_segment = variant > 0;
		l.unknown_cluster = variant > 1;
		wbuf b;
		size_t ref_frames;
		build(&b, &few, &l);
		float *ref = reference(&few, &l, &ref_frames);
		for (size_t cut = 0; cut < b.len; cut++) {
			uint8_t *copy =
			    malloc(cut ? cut : 1); /* exact size, so ASan sees overreads */
			assert_non_null(copy);
			memcpy(copy, b.d, cut);
			decoded r = decode(copy, cut, 500);
			if (cut < 4) {
				assert_int_equal(r.rc, CODEC_EFORMAT); /* too short to sniff */
			} else if (variant == 0) {
				assert_int_equal(r.rc, CODEC_ETRUNCATED);
			} else {
				assert_true(r.rc == 0 || r.rc == CODEC_ETRUNCATED);
			}
			assert_true(r.frames <= ref_frames);
			if (r.frames > 0)
				assert_memory_equal(r.pcm, ref, r.frames * sizeof(float));
			free(r.pcm);
			free(copy);
		}
		free(ref);
		free(b.d);
	}
}

/* Random byte changes never crash the demuxer and only give the errors it defines. */
static void test_mutations(void **state)
{
	(void)state;
	pkts few = mono;
	few.n = 8;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .lacing = 1,
	            .per_block = 2,
	            .last_discard = 300,
	            .per_cluster = 2,
	            .unknown_cluster = true,
	            .tail = true};
	wbuf b;
	build(&b, &few, &l);
	uint8_t *copy = malloc(b.len);
	assert_non_null(copy);
	uint32_t seed = 1;
	for (int iter = 0; iter < 3000; iter++) {
		memcpy(copy, b.d, b.len);
		int changes = 1 + iter % 4;
		for (int k = 0; k < changes; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % b.len;
			seed = seed * 1103515245u + 12345u;
			copy[at] =
			    iter % 3 == 0 ? (uint8_t)(seed >> 16) : copy[at] ^ (1u << (seed >> 29));
		}
		decoded r = decode(copy, b.len, 777);
		assert_true(r.rc <= 0 && r.rc > -CODEC_ERROR_COUNT);
		assert_true(r.rc != CODEC_ENOMEM && r.rc != CODEC_EIO && r.rc != CODEC_EINVAL);
		free(r.pcm);
	}
	free(copy);
	free(b.d);
}

/*
 * Regression: in_skip() reports a seek that lands exactly on the end of the input as truncated,
 * which failed files whose last element is skipped and lies outside the 64 KiB read buffer.
 */
static void test_skip_to_exact_end_of_file(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2, .head_preskip = -1, .tail_void = 200000};
	check_layout(&mono, &l);
	l.unknown_segment = true;
	l.unknown_cluster = true;
	check_layout(&mono, &l);
	l.middle_void = 150000; /* and a large skip in the middle */
	check_layout(&mono, &l);
}

static void test_input_byte_limit(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .unknown_segment = true,
	            .unknown_cluster = true,
	            .middle_void = 200000};
	wbuf b;
	build(&b, &mono, &l);
	decoded r = decode_limit(b.d, b.len, 4096, 100000);
	assert_int_equal(r.rc, CODEC_ETOOLARGE);
	free(r.pcm);
	/* An element claiming more than the limit in a small file is a lie, not a large file. */
	l.middle_void = 0;
	free(b.d);
	build(&b, &mono, &l);
	put_id(&b, 0xEC);
	put_vint_n(&b, 1ull << 40, 8);
	put(&b, "tail", 4);
	r = decode(b.d, b.len, 4096);
	assert_int_equal(r.rc, CODEC_ETRUNCATED);
	free(r.pcm);
	free(b.d);
}

/* A source that hands out at most `step` bytes per read, cannot seek, and fails at `fail_at`. */
typedef struct trickle {
	const uint8_t *data;
	size_t len, pos, step, fail_at;
} trickle;

static int trickle_read(void *ctx, uint8_t *buf, size_t len, size_t *got)
{
	trickle *t = ctx;
	size_t n = t->len - t->pos;
	if (n > len)
		n = len;
	if (n > t->step)
		n = t->step;
	if (t->pos + n > t->fail_at)
		return CODEC_EIO;
	memcpy(buf, t->data + t->pos, n);
	t->pos += n;
	*got = n;
	return 0;
}

static decoded decode_trickle(const wbuf *b, size_t step, size_t fail_at)
{
	decoded r;
	trickle t = {.data = b->d, .len = b->len, .step = step, .fail_at = fail_at};
	codec_source src = {.read = trickle_read, .seek = NULL, .ctx = &t};
	codec_decoder *dec = NULL;
	memset(&r, 0, sizeof r);
	r.rc = codec_decoder_open(&dec, &src, 0, &r.info);
	if (r.rc == 0) {
		r.pcm = malloc(48000 * 2 * sizeof(float) * 3);
		assert_non_null(r.pcm);
		for (;;) {
			size_t got;
			int rc =
			    codec_decoder_read(dec, r.pcm + r.frames * r.info.channels, 333, &got);
			if (rc < 0) {
				r.rc = rc;
				break;
			}
			if (got == 0)
				break;
			r.frames += got;
		}
	}
	codec_decoder_close(dec);
	return r;
}

/* Short reads and no seek: the same PCM, and skipping by reading (a large Void) works. */
static void test_unseekable_source_with_short_reads(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .lacing = 1,
	            .per_block = 3,
	            .last_discard = 700,
	            .unknown_cluster = true,
	            .middle_void = 100000,
	            .tail_void = 70000};
	wbuf b;
	size_t ref_frames;
	build(&b, &mono, &l);
	float *ref = reference(&mono, &l, &ref_frames);
	for (size_t step = 1; step <= 4096; step *= 8) {
		decoded r = decode_trickle(&b, step, SIZE_MAX);
		assert_int_equal(r.rc, 0);
		assert_int_equal(r.frames, ref_frames);
		assert_memory_equal(r.pcm, ref, ref_frames * sizeof(float));
		free(r.pcm);
	}
	free(ref);
	free(b.d);
}

/* A source failing at any point fails the decode with its error, and nothing leaks. */
static void test_io_error_at_every_offset(void **state)
{
	(void)state;
	pkts few = mono;
	few.n = 6;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .lacing = 3,
	            .per_block = 2,
	            .last_discard = 300,
	            .tail = true};
	wbuf b;
	build(&b, &few, &l);
	for (size_t fail_at = 0; fail_at <= b.len; fail_at++) {
		decoded r = decode_trickle(&b, 16, fail_at);
		assert_int_equal(r.rc, fail_at < b.len ? CODEC_EIO : 0);
		free(r.pcm);
	}
	free(b.d);
}

/* ---- Files made by ffmpeg (make_webm_vectors.py --ffmpeg). ---- */

static void check_file(const char *name, unsigned channels, size_t frames)
{
	char path[4096];
	if (!data_dir)
		skip();
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	uint8_t *buf = malloc(1 << 20);
	assert_non_null(buf);
	size_t len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	decoded r = decode(buf, len, 1000);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.info.channels, channels);
	assert_int_equal(r.frames, frames);
	/* A sine, not silence: the PCM came out of the decoder, not out of calloc. */
	double energy = 0;
	for (size_t i = 0; i < r.frames * channels; i++)
		energy += (double)r.pcm[i] * r.pcm[i];
	assert_true(energy / (double)(r.frames * channels) > 0.001);
	free(r.pcm);
	free(buf);
}

static void test_ffmpeg_mono(void **state)
{
	(void)state;
	check_file("ffmpeg_mono_1500ms.webm", 1, 72000);
}

static void test_ffmpeg_live(void **state)
{
	(void)state;
	check_file("ffmpeg_live_1500ms.webm", 1, 72000);
}

static void test_ffmpeg_stereo(void **state)
{
	(void)state;
	check_file("ffmpeg_stereo_1500ms.webm", 2, 72000);
}

static void test_ffmpeg_16k_odd_length(void **state)
{
	(void)state;
	check_file("ffmpeg_16k_1234ms.webm", 1, 59232);
}

int main(int argc, char **argv)
{
	data_dir = getenv("JIAYIN_TEST_DATA");
	if (argc > 1)
		data_dir = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_sizes_simple_blocks),
	    cmocka_unit_test(test_unknown_segment_and_clusters),
	    cmocka_unit_test(test_xiph_lacing),
	    cmocka_unit_test(test_ebml_lacing),
	    cmocka_unit_test(test_fixed_lacing),
	    cmocka_unit_test(test_discard_padding_trims_the_end),
	    cmocka_unit_test(test_negative_discard_padding_trims_the_start),
	    cmocka_unit_test(test_single_block_with_preskip_and_padding),
	    cmocka_unit_test(test_stereo),
	    cmocka_unit_test(test_opushead_preskip_wins_over_codec_delay),
	    cmocka_unit_test(test_missing_codec_private),
	    cmocka_unit_test(test_vorbis_only_is_unsupported),
	    cmocka_unit_test(test_opus_after_vorbis_track),
	    cmocka_unit_test(test_track_entry_rules),
	    cmocka_unit_test(test_no_tracks),
	    cmocka_unit_test(test_tracks_without_clusters),
	    cmocka_unit_test(test_doctype),
	    cmocka_unit_test(test_not_webm),
	    cmocka_unit_test(test_lying_sizes),
	    cmocka_unit_test(test_bad_laces),
	    cmocka_unit_test(test_block_group_rules),
	    cmocka_unit_test(test_block_over_limit),
	    cmocka_unit_test(test_cluster_before_tracks),
	    cmocka_unit_test(test_chained_segment_ends_the_clip),
	    cmocka_unit_test(test_every_prefix),
	    cmocka_unit_test(test_mutations),
	    cmocka_unit_test(test_skip_to_exact_end_of_file),
	    cmocka_unit_test(test_input_byte_limit),
	    cmocka_unit_test(test_unseekable_source_with_short_reads),
	    cmocka_unit_test(test_io_error_at_every_offset),
	    cmocka_unit_test(test_ffmpeg_mono),
	    cmocka_unit_test(test_ffmpeg_live),
	    cmocka_unit_test(test_ffmpeg_stereo),
	    cmocka_unit_test(test_ffmpeg_16k_odd_length),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
