/*
 * resample.c — the front of the signal chain: downmix to mono, phase rotation, and resampling
 * to 48 kHz with libsoxr.
 *
 * soxr's HQ recipe was measured against speexdsp at quality 8 and 10 (tests/bench/
 * bench_resample.c, figures in docs/performance.md): 44.1 -> 48 kHz ran 19x faster than
 * speexdsp q8 with a 10 dB lower residual on a 1 kHz tone, so it is the only resampler. soxr
 * runs single-threaded here: the codec library never starts threads.
 */
#include "dsp.h"
#include "internal.h"

#include <math.h>
#include <soxr.h>
#include <string.h>

void downmix(const float *in, size_t frames, unsigned channels, int lfe, float *out)
{
	if (channels == 1) {
		memcpy(out, in, frames * sizeof *out);
		return;
	}
	if (channels == 2 && lfe < 0) {
		for (size_t i = 0; i < frames; i++)
			out[i] = 0.5f * (in[2 * i] + in[2 * i + 1]);
		return;
	}
	unsigned used = channels - (lfe >= 0 && (unsigned)lfe < channels);
	float scale = 1.0f / (float)used;
	for (size_t i = 0; i < frames; i++) {
		const float *f = in + i * channels;
		float sum = 0;
		for (unsigned c = 0; c < channels; c++)
			if ((int)c != lfe)
				sum += f[c];
		out[i] = sum * scale;
	}
}

void rotator_init(rotator *r, uint32_t rate)
{
	double w0 = 2 * M_PI * ROTATOR_HZ / rate;
	double alpha = sin(w0) / (2 * ROTATOR_Q);
	memset(r, 0, sizeof *r);
	r->b0 = (1 - alpha) / (1 + alpha);
	r->b1 = -2 * cos(w0) / (1 + alpha);
}

void rotator_run(rotator *r, float *x, size_t n)
{
	const double b0 = r->b0, b1 = r->b1;
	double h[ROTATOR_STAGES + 1][2];
	memcpy(h, r->h, sizeof h);
	/*
	 * Direct form I of (b0 + b1 z^-1 + z^-2) / (1 + b1 z^-1 + b0 z^-2): only one multiply and
	 * one subtraction wait for the stage's previous output (three steps in transposed form II),
	 * and sample i's later stages overlap sample i+1's earlier ones in the CPU.
	 */
	for (size_t i = 0; i < n; i++) {
		double v = x[i];
		for (int k = 0; k < ROTATOR_STAGES; k++) {
			double y = (b0 * v + b1 * h[k][0] + h[k][1] - b0 * h[k + 1][1]) - b1 * h[k + 1][0];
			h[k][1] = h[k][0];
			h[k][0] = v;
			v = y;
		}
		h[ROTATOR_STAGES][1] = h[ROTATOR_STAGES][0];
		h[ROTATOR_STAGES][0] = v;
		x[i] = (float)v;
	}
	memcpy(r->h, h, sizeof h);
}

int resampler_init(resampler *r, uint32_t rate)
{
	memset(r, 0, sizeof *r);
	r->rate = rate;
	if (rate == CODEC_OUTPUT_RATE)
		return 0;
	soxr_error_t err = NULL;
	soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
	soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
	soxr_runtime_spec_t rt = soxr_runtime_spec(1);
	r->soxr = soxr_create(rate, CODEC_OUTPUT_RATE, 1, &err, &io, &q, &rt);
	if (err || !r->soxr) {
		resampler_free(r);
		return CODEC_ENOMEM;
	}
	return 0;
}

void resampler_free(resampler *r)
{
	if (r->soxr)
		soxr_delete(r->soxr);
	r->soxr = NULL;
}

size_t resampler_max_out(const resampler *r, size_t in_frames)
{
	/* ceil(n * 48000 / rate): the steady state. soxr may release more at once; run() copes. */
	return (size_t)(((uint64_t)in_frames * CODEC_OUTPUT_RATE + r->rate - 1) / r->rate) + 1024;
}

int resampler_run(resampler *r, const float *in, size_t n, float *out, size_t cap,
		  size_t *out_n, size_t *in_used)
{
	*out_n = 0;
	*in_used = 0;
	if (!r->soxr) {
		size_t k = in ? (n < cap ? n : cap) : 0;
		if (k)
			memcpy(out, in, k * sizeof *out);
		*out_n = *in_used = k;
		return 0;
	}
	size_t done_in = 0, done_out = 0;
	while (done_out < cap) {
		size_t idone = 0, odone = 0;
		soxr_error_t err = soxr_process(r->soxr, in ? in + done_in : NULL,
						in ? n - done_in : 0, &idone, out + done_out,
						cap - done_out, &odone);
		if (err)
			return CODEC_ENOMEM;
		done_in += idone;
		done_out += odone;
		if (odone == 0 && (!in || done_in == n))
			break; /* all input taken and nothing more to give (or flushed) */
	}
	*out_n = done_out;
	*in_used = done_in;
	return 0;
}
