/*
 * test_wav.c — the WAV decoder on files built in memory: every sample format, EXTENSIBLE,
 * RF64, streaming sizes, odd chunks, and each way a header can be wrong. G.711 (A-law, µ-law) is
 * checked against sox: its decode of WAVs it wrote (tests/codec/data/, from $JIAYIN_TEST_DATA),
 * and its expansion of every code for the files built here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "codec.h"

#include <stdbool.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wavbuf {
	uint8_t d[1 << 16];
	size_t n;
} wavbuf;

static void put(wavbuf *w, const void *p, size_t n)
{
	assert_true(w->n + n <= sizeof w->d);
	memcpy(w->d + w->n, p, n);
	w->n += n;
}
static void put16(wavbuf *w, uint32_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	put(w, b, 2);
}
static void put32(wavbuf *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	put(w, b, 4);
}

typedef struct spec {
	const char *riff; /* "RIFF" or "RF64" */
	uint16_t tag;     /* 1, 3, 6 (A-law), 7 (µ-law) or 0xFFFE */
	uint16_t sub_tag; /* the EXTENSIBLE subformat */
	uint32_t mask;
	unsigned channels, bits;
	uint32_t rate;
	uint32_t data_size_field; /* what the data chunk header claims; 1 = the real size */
	bool junk_chunk;          /* an odd-sized chunk before fmt */
} spec;

/*
 * One frame's worth of sample i of channel c: a ramp, in steps every format holds, plus a
 * detail in the 24-bit formats' lowest byte (up to 255 / 2^23), which the 8- and 16-bit
 * formats round away within their tolerance: a decoder that drops a deep format's low bytes
 * misses it, where a ramp of 1/64 steps needs only each sample's top byte.
 */
static double sample_value(size_t i, unsigned c)
{
	return ((double)((i * 7 + c * 3) % 64) - 32) / 64.0 +
	       (double)((i * 37 + c * 101) % 256) / 8388608.0;
}

/* The G.711 code of sample i of channel c: every code, in an order that is no ramp. */
static uint8_t g711_code(size_t i, unsigned c)
{
	return (uint8_t)((i * 37 + c * 101) % 256);
}

static bool is_g711(const spec *s)
{
	uint16_t t = s->tag == 0xFFFE ? s->sub_tag : s->tag;
	return t == 6 || t == 7;
}

static void put_sample(wavbuf *w, const spec *s, double v)
{
	bool is_float = s->tag == 3 || (s->tag == 0xFFFE && s->sub_tag == 3);
	if (is_float && s->bits == 32) {
		float f = (float)v;
		put(w, &f, 4);
	} else if (is_float) {
		put(w, &v, 8);
	} else if (s->bits % 8) {
		/* Left-justified in whole bytes, the spare low bits 0; 8 bits or less unsigned. */
		unsigned container = (s->bits + 7) / 8;
		int64_t x = (int64_t)floor(v * (double)(1 << (s->bits - 1)));
		uint32_t u = (uint32_t)(x * ((int64_t)1 << (container * 8 - s->bits)));
		if (container == 1)
			u += 128;
		for (unsigned b = 0; b < container; b++)
			put(w, &(uint8_t){(uint8_t)(u >> (8 * b))}, 1);
	} else if (s->bits == 8) {
		uint8_t b = (uint8_t)(v * 128 + 128);
		put(w, &b, 1);
	} else if (s->bits == 16) {
		put16(w, (uint16_t)(int16_t)(v * 32768));
	} else if (s->bits == 24) {
		int32_t x = (int32_t)(v * 8388608);
		uint8_t b[3] = {(uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16)};
		put(w, b, 3);
	} else {
		put32(w, (uint32_t)(int32_t)(v * 2147483648.0));
	}
}

static void build(wavbuf *w, const spec *s, size_t frames)
{
	uint32_t block = s->channels * ((s->bits + 7) / 8);
	uint32_t data = (uint32_t)(frames * block);
	w->n = 0;
	put(w, s->riff, 4);
	put32(w, strcmp(s->riff, "RF64") == 0 ? 0xFFFFFFFFu : 0); /* sizes a streamer leaves */
	put(w, "WAVE", 4);
	if (strcmp(s->riff, "RF64") == 0) {
		put(w, "ds64", 4);
		put32(w, 28);
		put32(w, 0), put32(w, 0); /* riff size (unused by the decoder) */
		put32(w, data), put32(w, 0);
		put32(w, (uint32_t)frames), put32(w, 0);
		put32(w, 0); /* table length */
	}
	if (s->junk_chunk) {
		put(w, "JUNK", 4);
		put32(w, 3);
		put(w, "abc\0", 4); /* 3 bytes + the pad byte */
	}
	put(w, "fmt ", 4);
	put32(w, s->tag == 0xFFFE ? 40 : 16);
	put16(w, s->tag);
	put16(w, s->channels);
	put32(w, s->rate);
	put32(w, s->rate * block);
	put16(w, block);
	put16(w, s->bits);
	if (s->tag == 0xFFFE) {
		static const uint8_t tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
						 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
		put16(w, 22);
		put16(w, s->bits);
		put32(w, s->mask);
		put16(w, s->sub_tag);
		put(w, tail, sizeof tail);
	}
	put(w, "data", 4);
	put32(w, s->data_size_field == 1 ? data : s->data_size_field);
	for (size_t i = 0; i < frames; i++)
		for (unsigned c = 0; c < s->channels; c++)
			if (is_g711(s))
				put(w, &(uint8_t){g711_code(i, c)}, 1);
			else
				put_sample(w, s, sample_value(i, c));
}

/* Decode everything; returns the error or the frame count through *frames. */
static int decode_all(const wavbuf *w, codec_stream_info *info, float *pcm, size_t cap,
		      size_t *frames)
{
	codec_source src;
	codec_memory_source mem;
	codec_decoder *dec;
	codec_source_memory(&src, &mem, w->d, w->n);
	int rc = codec_decoder_open(&dec, &src, 0, info);
	if (rc < 0)
		return rc;
	*frames = 0;
	for (;;) {
		size_t n;
		/* Odd read sizes exercise the decoder's chunking. */
		rc = codec_decoder_read(dec, pcm + *frames * info->channels, 37, &n);
		if (rc < 0 || n == 0)
			break;
		*frames += n;
		assert_true(*frames + 37 <= cap);
	}
	codec_decoder_close(dec);
	return rc;
}

static void check_format(const spec *s, double tolerance)
{
	static wavbuf w;
	static float pcm[8 * 2048];
	codec_stream_info info;
	size_t frames;
	build(&w, s, 1000);
	assert_int_equal(decode_all(&w, &info, pcm, 2048, &frames), 0);
	assert_int_equal(info.format, CODEC_FORMAT_WAV);
	assert_int_equal(info.rate, s->rate);
	assert_int_equal(info.channels, s->channels);
	assert_int_equal(frames, 1000);
	for (size_t i = 0; i < frames; i++)
		for (unsigned c = 0; c < s->channels; c++)
			assert_true(fabs(pcm[i * s->channels + c] - sample_value(i, c)) <=
				    tolerance);
}

static void pcm8(void **st)
{
	(void)st;
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 8, 8000, 1, false}, 1.0 / 128);
}
static void pcm16_stereo(void **st)
{
	(void)st;
	check_format(&(spec){"RIFF", 1, 0, 0, 2, 16, 44100, 1, true}, 1e-4);
}
static void pcm24(void **st)
{
	(void)st;
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 24, 96000, 1, false}, 1e-6);
}
static void pcm32(void **st)
{
	(void)st;
	check_format(&(spec){"RIFF", 1, 0, 0, 2, 32, 192000, 1, false}, 1e-6);
}
static void float32(void **st)
{
	(void)st;
	check_format(&(spec){"RIFF", 3, 0, 0, 1, 32, 48000, 1, false}, 1e-7);
}
static void float64(void **st)
{
	(void)st;
	check_format(&(spec){"RIFF", 3, 0, 0, 2, 64, 16000, 1, false}, 1e-7);
}
/*
 * Depths that are not whole bytes, each sample left-justified in a container of whole bytes as
 * the WAVE spec says: 20-bit field recorders (3 bytes), 12-bit Windows tools (2 bytes), with tag
 * 1 or EXTENSIBLE giving the depth itself as wBitsPerSample. ffmpeg reads them by container.
 */
static void pcm_depths_between_bytes(void **st)
{
	(void)st;
	check_format(&(spec){"RIFF", 1, 0, 0, 2, 20, 48000, 1, false}, 1.0 / (1 << 19));
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 12, 22050, 1, true}, 1.0 / (1 << 11));
	check_format(&(spec){"RIFF", 0xFFFE, 1, 0x3, 2, 20, 44100, 1, false}, 1.0 / (1 << 19));
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 4, 8000, 1, false}, 1.0 / 8);
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 31, 48000, 0, false}, 1e-6);
}
static void extensible_51(void **st)
{
	(void)st;
	spec s = {"RIFF", 0xFFFE, 1, 0x3F, 6, 16, 48000, 1, false};
	check_format(&s, 1e-4);
	static wavbuf w;
	static float pcm[8 * 2048];
	codec_stream_info info;
	size_t frames;
	build(&w, &s, 10);
	assert_int_equal(decode_all(&w, &info, pcm, 2048, &frames), 0);
	assert_int_equal(info.lfe_channel, 3); /* FL FR FC LFE BL BR */
}
static void extensible_float(void **st)
{
	(void)st;
	check_format(&(spec){"RIFF", 0xFFFE, 3, 0x4, 1, 32, 22050, 1, false}, 1e-7);
}
static void rf64(void **st)
{
	(void)st;
	check_format(&(spec){"RF64", 1, 0, 0, 2, 16, 44100, 0xFFFFFFFFu, false}, 1e-4);
}
static void streaming_sizes(void **st)
{
	(void)st;
	/* A phone that never rewrote its header: size 0 or 0xFFFFFFFF means "to the end". */
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 16, 16000, 0, false}, 1e-4);
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 16, 16000, 0xFFFFFFFFu, false}, 1e-4);
}

/*
 * Writers that cannot seek back to their header put their own "unknown" data size there, and
 * the file ends long before it: what each really writes to a pipe.
 */
static void piped_writer_sizes(void **st)
{
	(void)st;
	/* SoX and espeak-ng: 0x7FFFF000 in whole frames (`sox ... -t wav - | ...`). */
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 16, 48000, 0x7FFFF000u, false}, 1e-4);
	check_format(&(spec){"RIFF", 0xFFFE, 1, 0x3, 2, 24, 44100, 0x7FFFEFFCu, false}, 1e-6);
	/* LAME decoding to a pipe: the largest signed 32-bit value. */
	check_format(&(spec){"RIFF", 1, 0, 0, 2, 16, 44100, 0x7FFFFFFFu, false}, 1e-4);
	/* arecord recording to a pipe until stopped (`arecord -f cd | ...`): its cap for a WAV,
	 * 2 GiB, whatever the frame. */
	check_format(&(spec){"RIFF", 1, 0, 0, 2, 16, 44100, 0x80000000u, false}, 1e-4);
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 24, 16000, 0x80000000u, false}, 1e-6);
	/* GStreamer's wavenc to a pipe, or stopped without an end of stream (`gst-launch-1.0
	 * autoaudiosrc ! wavenc ! filesink` and Ctrl-C): its placeholder, whatever the frame. */
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 16, 16000, 0x7FFF0000u, false}, 1e-4);
	check_format(&(spec){"RIFF", 0xFFFE, 1, 0x7, 3, 24, 48000, 0x7FFF0000u, false}, 1e-6);
	/* Node's `wav` Writer streamed to an upload (its corrected header, handed out at the end,
	 * never written back): 0xFFFFFFFF less 100, whatever the frame. */
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 16, 16000, 0xFFFFFF9Bu, false}, 1e-4);
	check_format(&(spec){"RIFF", 1, 0, 0, 2, 16, 44100, 0xFFFFFF9Bu, false}, 1e-4);
	/* SoX 14.4 rewriting ffmpeg's piped WAV passes its 0xFFFFFFFF on, in whole frames. */
	check_format(&(spec){"RIFF", 1, 0, 0, 1, 16, 44100, 0xFFFFFFFEu, false}, 1e-4);
	check_format(&(spec){"RIFF", 0xFFFE, 1, 0x3, 2, 24, 44100, 0xFFFFFFFCu, false}, 1e-6);
}

static int open_error(const wavbuf *w)
{
	static float pcm[8 * 4096];
	codec_stream_info info;
	size_t frames;
	return decode_all(w, &info, pcm, 4096, &frames);
}

static void bad_headers(void **st)
{
	(void)st;
	static wavbuf w;
	spec s = {"RIFF", 1, 0, 0, 1, 16, 16000, 1, false};

	s.rate = 4000;
	build(&w, &s, 10);
	assert_int_equal(open_error(&w), CODEC_ERATE);
	s.rate = 400000;
	build(&w, &s, 10);
	assert_int_equal(open_error(&w), CODEC_ERATE);
	s.rate = 16000;
	s.channels = 9;
	build(&w, &s, 10);
	assert_int_equal(open_error(&w), CODEC_ECHANNELS);
	s.channels = 1;
	s.bits = 0;
	build(&w, &s, 10);
	assert_int_equal(open_error(&w), CODEC_EUNSUPPORTED);
	s.bits = 12;
	build(&w, &s, 10);
	w.d[32] = 1; /* a 12-bit sample in one byte: no container holds it */
	assert_int_equal(open_error(&w), CODEC_EMALFORMED);
	w.d[32] = 2;
	w.d[34] = 33; /* integers past 32 bits */
	assert_int_equal(open_error(&w), CODEC_EUNSUPPORTED);
	s.bits = 16;
	s.tag = 0x55; /* MP3 in WAV */
	build(&w, &s, 10);
	assert_int_equal(open_error(&w), CODEC_EUNSUPPORTED);
	s.tag = 1;

	/* block_align that does not match channels * bits / 8 */
	build(&w, &s, 10);
	w.d[32] = 7;
	assert_int_equal(open_error(&w), CODEC_EMALFORMED);

	/* data before fmt */
	wavbuf *v = &w;
	v->n = 0;
	put(v, "RIFF", 4), put32(v, 0), put(v, "WAVE", 4), put(v, "data", 4), put32(v, 4);
	put32(v, 0);
	assert_int_equal(open_error(v), CODEC_EMALFORMED);

	/* Not a WAVE at all, and a header cut short. */
	build(&w, &s, 10);
	memcpy(w.d + 8, "AVI ", 4);
	assert_int_equal(open_error(&w), CODEC_EFORMAT);
	build(&w, &s, 10);
	w.n = 30;
	assert_int_equal(open_error(&w), CODEC_ETRUNCATED);
}

static void truncated_data(void **st)
{
	(void)st;
	static wavbuf w;
	/* An explicit data size the file does not reach is a cut-off upload. */
	build(&w, &(spec){"RIFF", 1, 0, 0, 2, 16, 16000, 1, false}, 1000);
	w.n -= 1000;
	assert_int_equal(open_error(&w), CODEC_ETRUNCATED);
	/* So is a size near a piped writer's that is none of theirs. */
	build(&w, &(spec){"RIFF", 1, 0, 0, 2, 24, 16000, 0x7FFFF000u, false}, 1000);
	assert_int_equal(open_error(&w), CODEC_ETRUNCATED);
	build(&w, &(spec){"RIFF", 1, 0, 0, 1, 16, 16000, 0x7FFFE000u, false}, 1000);
	assert_int_equal(open_error(&w), CODEC_ETRUNCATED);
	/* Every prefix fails cleanly or decodes fewer frames; none crashes. */
	build(&w, &(spec){"RIFF", 1, 0, 0, 1, 24, 16000, 0, false}, 200);
	size_t full = w.n;
	for (size_t n = 0; n < full; n += 3) {
		w.n = n;
		int rc = open_error(&w);
		assert_true(rc <= 0 && rc > -CODEC_ERROR_COUNT);
	}
}

static void nan_and_huge_floats_are_tamed(void **st)
{
	(void)st;
	static wavbuf w;
	static float pcm[4096];
	codec_stream_info info;
	size_t frames;
	build(&w, &(spec){"RIFF", 3, 0, 0, 1, 32, 48000, 1, false}, 4);
	float bad[4] = {NAN, INFINITY, 1e30f, -1e30f};
	memcpy(w.d + w.n - 16, bad, 16);
	assert_int_equal(decode_all(&w, &info, pcm, 1024, &frames), 0);
	assert_int_equal(frames, 4);
	assert_true(pcm[0] == 0 && pcm[1] == 0);
	assert_true(pcm[2] > 0 && pcm[2] <= 1000 && pcm[3] < 0 && pcm[3] >= -1000);
}

static const char *data_dir; /* tests/codec/data/ */

/* sox's decode of a file to signed 16-bit samples; returns how many. */
static size_t sox_decode(const char *path, int16_t *out, size_t cap)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "sox -V1 '%s' -t raw -e signed-integer -b 16 -L -", path);
	FILE *f = popen(cmd, "r");
	if (!f)
		fail_msg("cannot run sox");
	uint8_t b[2];
	size_t n = 0;
	while (fread(b, 1, 2, f) == 2) {
		assert_true(n < cap);
		out[n++] = (int16_t)(b[0] | b[1] << 8);
	}
	if (pclose(f) != 0)
		fail_msg("sox could not decode %s", path);
	return n;
}

static void load_file(const char *name, wavbuf *w, char *path, size_t path_size)
{
	if (!data_dir)
		fail_msg("no test data directory: set JIAYIN_TEST_DATA");
	snprintf(path, path_size, "%s/%s", data_dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	w->n = fread(w->d, 1, sizeof w->d, f);
	assert_true(feof(f));
	fclose(f);
}

/* sox's expansion of every code (its files of codes 0-255 in order, 8 kHz mono). */
static void sox_table(uint16_t tag, int16_t table[256])
{
	static wavbuf w;
	char path[4096];
	load_file(tag == 6 ? "alaw_codes.wav" : "ulaw_codes.wav", &w, path, sizeof path);
	assert_int_equal(sox_decode(path, table, 256), 256);
}

/*
 * Recordings as sox writes them (`sox in.wav -e a-law out.wav`: tag 6 or 7, a fmt of 18 bytes, a
 * fact chunk), of every code and of speech, decode to the samples sox decodes from them, exactly.
 */
static void g711_matches_sox(void **st)
{
	(void)st;
	static const char *const names[] = {"alaw_codes.wav", "ulaw_codes.wav",
	                                    "speech_alaw_8k.wav", "speech_ulaw_8k.wav"};
	static wavbuf w;
	static float pcm[16384];
	static int16_t ref[16384];
	for (size_t f = 0; f < sizeof names / sizeof *names; f++) {
		char path[4096];
		codec_stream_info info;
		size_t frames;
		load_file(names[f], &w, path, sizeof path);
		size_t n = sox_decode(path, ref, 16384);
		assert_int_equal(decode_all(&w, &info, pcm, 16384, &frames), 0);
		assert_int_equal(info.format, CODEC_FORMAT_WAV);
		assert_int_equal(info.rate, 8000);
		assert_int_equal(info.channels, 1);
		assert_int_equal(frames, n);
		assert_true(n >= 256);
		for (size_t i = 0; i < n; i++)
			if (pcm[i] * 32768 != ref[i])
				fail_msg("%s: sample %zu is %g, sox decodes %d", names[f], i,
				         (double)pcm[i] * 32768, ref[i]);
	}
}

/* A file built here (every code, each channel its own order) against sox's expansion. */
static void check_g711(const spec *s, size_t frames)
{
	static wavbuf w;
	static float pcm[8 * 4096];
	int16_t table[256];
	codec_stream_info info;
	size_t got;
	sox_table(is_g711(s) && (s->tag == 6 || s->sub_tag == 6) ? 6 : 7, table);
	build(&w, s, frames);
	assert_int_equal(decode_all(&w, &info, pcm, 4096, &got), 0);
	assert_int_equal(info.rate, s->rate);
	assert_int_equal(info.channels, s->channels);
	assert_int_equal(got, frames);
	for (size_t i = 0; i < frames; i++)
		for (unsigned c = 0; c < s->channels; c++)
			assert_true(pcm[i * s->channels + c] * 32768 == table[g711_code(i, c)]);
}

/*
 * A-law and µ-law from telephone systems and cheap recorders: plain tags 6 and 7, inside
 * WAVE_FORMAT_EXTENSIBLE (KSDATAFORMAT_SUBTYPE_ALAW/MULAW), stereo, RF64, an odd chunk before
 * fmt, a streaming writer's sizes, and an odd number of data bytes.
 */
static void g711_layouts(void **st)
{
	(void)st;
	check_g711(&(spec){"RIFF", 6, 0, 0, 1, 8, 8000, 1, false}, 1000);
	check_g711(&(spec){"RIFF", 7, 0, 0, 1, 8, 8000, 1, true}, 1001);
	check_g711(&(spec){"RIFF", 6, 0, 0, 2, 8, 16000, 1, false}, 1000);
	check_g711(&(spec){"RIFF", 0xFFFE, 6, 0x4, 1, 8, 8000, 1, false}, 1000);
	check_g711(&(spec){"RIFF", 0xFFFE, 7, 0x3, 2, 8, 11025, 1, false}, 1000);
	check_g711(&(spec){"RF64", 7, 0, 0, 1, 8, 8000, 0xFFFFFFFFu, false}, 1000);
	check_g711(&(spec){"RIFF", 6, 0, 0, 1, 8, 8000, 0, false}, 1000);
	check_g711(&(spec){"RIFF", 7, 0, 0, 1, 8, 8000, 0xFFFFFFFFu, false}, 1000);
	/* sox to a pipe: 0x7FFFF000 in whole frames, one byte each or two. */
	check_g711(&(spec){"RIFF", 6, 0, 0, 1, 8, 8000, 0x7FFFF000u, false}, 1000);
	check_g711(&(spec){"RIFF", 7, 0, 0, 2, 8, 8000, 0x7FFFF000u, false}, 1000);
}

/* Headers that contradict G.711 are malformed; a file shorter than its data size, truncated. */
static void g711_bad_headers(void **st)
{
	(void)st;
	static wavbuf w;
	for (uint16_t tag = 6; tag <= 7; tag++) {
		spec s = {"RIFF", tag, 0, 0, 1, 8, 8000, 1, false};
		/* 16 bits a sample (block align 2 to match): G.711 has 8 */
		s.bits = 16;
		build(&w, &s, 100);
		assert_int_equal(open_error(&w), CODEC_EMALFORMED);
		s.bits = 4;
		build(&w, &s, 100);
		assert_int_equal(open_error(&w), CODEC_EMALFORMED);
		s.bits = 8;
		/* block align 2 for one channel of 8 bits */
		build(&w, &s, 100);
		w.d[32] = 2;
		assert_int_equal(open_error(&w), CODEC_EMALFORMED);
		/* block align 1 for two channels */
		s.channels = 2;
		build(&w, &s, 100);
		w.d[32] = 1;
		assert_int_equal(open_error(&w), CODEC_EMALFORMED);
		s.channels = 1;
		/* the data chunk promises 100 bytes more than the file holds */
		build(&w, &s, 1000);
		w.n -= 100;
		assert_int_equal(open_error(&w), CODEC_ETRUNCATED);

		/* EXTENSIBLE: a fmt chunk of 18 bytes (cbSize 0), or cbSize under 22 */
		spec e = {"RIFF", 0xFFFE, tag, 0x4, 1, 8, 8000, 1, false};
		build(&w, &e, 100);
		w.d[16] = 18; /* the fmt chunk's size: its EXTENSIBLE fields are then the data's */
		assert_int_equal(open_error(&w), CODEC_EMALFORMED);
		build(&w, &e, 100);
		w.d[36] = 0; /* cbSize */
		assert_int_equal(open_error(&w), CODEC_EMALFORMED);
		/* 16 bits, valid bits 16; and 8 bits of which 7 are valid */
		e.bits = 16;
		build(&w, &e, 100);
		assert_int_equal(open_error(&w), CODEC_EMALFORMED);
		e.bits = 8;
		build(&w, &e, 100);
		w.d[38] = 7;
		assert_int_equal(open_error(&w), CODEC_EMALFORMED);
	}
}

int main(int argc, char **argv)
{
	data_dir = getenv("JIAYIN_TEST_DATA");
	if (argc > 1)
		data_dir = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(pcm8),
	    cmocka_unit_test(pcm16_stereo),
	    cmocka_unit_test(pcm24),
	    cmocka_unit_test(pcm32),
	    cmocka_unit_test(float32),
	    cmocka_unit_test(float64),
	    cmocka_unit_test(pcm_depths_between_bytes),
	    cmocka_unit_test(extensible_51),
	    cmocka_unit_test(extensible_float),
	    cmocka_unit_test(rf64),
	    cmocka_unit_test(streaming_sizes),
	    cmocka_unit_test(piped_writer_sizes),
	    cmocka_unit_test(bad_headers),
	    cmocka_unit_test(truncated_data),
	    cmocka_unit_test(nan_and_huge_floats_are_tamed),
	    cmocka_unit_test(g711_matches_sox),
	    cmocka_unit_test(g711_layouts),
	    cmocka_unit_test(g711_bad_headers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
