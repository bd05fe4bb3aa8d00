/*
 * helpers.h — test inputs made in memory: a float WAV of a speech-like signal (a gliding
 * pitch's harmonics with a formant, at a syllable-rate envelope), and
 * transcoding from memory to memory.
 */
#ifndef JIAYIN_TEST_HELPERS_H
#define JIAYIN_TEST_HELPERS_H

#include "codec.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct membuf {
	uint8_t *d;
	size_t n;
} membuf;

static inline void le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* A 32-bit float WAV, `channels` copies of the signal at `level` (linear peak-ish). */
static inline membuf make_speechlike_wav(uint32_t rate, unsigned channels, double seconds,
					 double level)
{
	size_t frames = (size_t)(seconds * rate);
	size_t data = frames * channels * 4;
	membuf m = {malloc(44 + data), 44 + data};
	uint8_t *h = m.d;
	memcpy(h, "RIFF", 4), le32(h + 4, (uint32_t)(36 + data)), memcpy(h + 8, "WAVEfmt ", 8);
	le32(h + 16, 16);
	h[20] = 3, h[21] = 0, h[22] = (uint8_t)channels, h[23] = 0;
	le32(h + 24, rate), le32(h + 28, rate * channels * 4);
	h[32] = (uint8_t)(channels * 4), h[33] = 0, h[34] = 32, h[35] = 0;
	memcpy(h + 36, "data", 4), le32(h + 40, (uint32_t)data);
	float *pcm = (float *)(m.d + 44);
	double phase = 0;
	for (size_t i = 0; i < frames; i++) {
		double t = (double)i / rate;
		double f0 = 140 + 30 * sin(2 * M_PI * 0.7 * t);
		phase += f0 / rate;
		double y = 0;
		/* Harmonics up to 4 kHz with a formant bump near 700 Hz. */
		for (int h = 1; h * f0 < 4000 && h * f0 < rate / 2.0; h++) {
			double fh = h * f0;
			double formant = 1.0 / (1.0 + pow((fh - 700) / 400, 2));
			y += sin(2 * M_PI * h * phase) * (0.3 / h + formant);
		}
		double env = 0.5 + 0.5 * sin(2 * M_PI * 4 * t);
		float v = (float)(level * 0.3 * y * env);
		for (unsigned c = 0; c < channels; c++)
			memcpy(&pcm[i * channels + c], &v, 4);
	}
	return m;
}

static inline int transcode_mem(const membuf *in, const codec_options *opt, codec_buffer *out,
				codec_result *res)
{
	codec_source src;
	codec_memory_source mem;
	codec_sink sink;
	codec_source_memory(&src, &mem, in->d, in->n);
	memset(out, 0, sizeof *out);
	codec_sink_buffer(&sink, out);
	return codec_transcode(&src, &sink, opt, res);
}

/* Decode a whole stream; returns frames (or a negative error), peak through *peak. */
static inline long long decode_count(const uint8_t *d, size_t n, codec_stream_info *info,
				     float *peak)
{
	codec_source src;
	codec_memory_source mem;
	codec_decoder *dec;
	codec_source_memory(&src, &mem, d, n);
	int rc = codec_decoder_open(&dec, &src, 0, info);
	if (rc < 0)
		return rc;
	static float pcm[8 * 4096];
	long long total = 0;
	float p = 0;
	for (;;) {
		size_t got;
		rc = codec_decoder_read(dec, pcm, 4096, &got);
		if (rc < 0 || got == 0)
			break;
		for (size_t i = 0; i < got * info->channels; i++)
			p = fabsf(pcm[i]) > p ? fabsf(pcm[i]) : p;
		total += (long long)got;
	}
	codec_decoder_close(dec);
	if (peak)
		*peak = p;
	return rc < 0 ? rc : total;
}

#endif
