/*
 * resample.c — the front of the signal chain: downmix to mono (or one channel, when the mean
 * cancels), DC blocking, phase rotation, and resampling to 48 kHz with libsoxr.
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

void downmix_one(const float *in, size_t frames, unsigned channels, unsigned c, float *out)
{
	for (size_t i = 0; i < frames; i++)
		out[i] = in[i * channels + c];
}

/*
 * Sums of x and x^2 of interleaved samples per channel. Lane j of the v-th vector holds
 * channel (8v + j) % channels, a pattern that repeats every `period` vectors (lcm(8, channels)
 * / 8), so as many accumulators keep one channel per lane. Float lanes over one call (a chunk
 * of at most 4096 frames: about 1e-5 of error), double across calls: a tenth of the time of
 * the sums in double (10 min of 44.1 kHz stereo: 46 ms, now under 10).
 */
CODEC_CLONES static void energy_sums(const float *in, size_t frames, unsigned channels, double *sum,
				     double *sq)
{
	unsigned period = channels / (channels & -channels); /* channels <= 8 */
	v8sf s[CODEC_MAX_CHANNELS] = {{0}}, q[CODEC_MAX_CHANNELS] = {{0}};
	size_t n = frames * channels, i = 0;
	for (; i + 8 * period <= n; i += 8 * period)
		for (unsigned p = 0; p < period; p++) {
			v8sf x;
			memcpy(&x, in + i + 8 * p, sizeof x);
			s[p] += x;
			q[p] += x * x;
		}
	for (unsigned p = 0; p < period; p++)
		for (unsigned j = 0; j < 8; j++) {
			sum[(8 * p + j) % channels] += s[p][j];
			sq[(8 * p + j) % channels] += q[p][j];
		}
	for (; i < n; i++) { /* whole periods are whole frames: the rest starts at channel 0 */
		sum[i % channels] += in[i];
		sq[i % channels] += (double)in[i] * in[i];
	}
}

void mix_energy_add(mix_energy *e, const float *in, size_t frames, unsigned channels,
		    const float *mix)
{
	energy_sums(in, frames, channels, e->sum, e->sq);
	energy_sums(mix, frames, 1, &e->mix_sum, &e->mix_sq);
	e->frames += frames;
}

int mix_energy_solo(const mix_energy *e, unsigned channels, int lfe)
{
	if (channels < 2 || e->frames == 0)
		return -1;
	double n = (double)e->frames, total = 0, loudest = 0;
	unsigned used = 0;
	int solo = -1;
	for (unsigned c = 0; c < channels; c++) {
		if ((int)c == lfe)
			continue;
		double energy = e->sq[c] - e->sum[c] * e->sum[c] / n;
		total += energy;
		used++;
		if (energy > loudest * 1.0233) { /* of twins within 0.1 dB, the first */
			loudest = energy;
			solo = (int)c;
		}
	}
	double mix = e->mix_sq - e->mix_sum * e->mix_sum / n;
	if (used < 2 || !(total > 0) || mix > total / used * pow(10.0, -DOWNMIX_CANCEL_DB / 10))
		return -1;
	return solo;
}

void dc_blocker_init(dc_blocker *d, uint32_t rate)
{
	memset(d, 0, sizeof *d);
	d->a = exp(-2 * M_PI * DC_BLOCK_HZ / rate);
}

void dc_blocker_run(dc_blocker *d, float *x, size_t n)
{
	if (!d->primed && n > 0) {
		double sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += x[i];
		d->x1 = sum / (double)n;
		d->primed = true;
	}
	/*
	 * y[i] = (x[i] - x[i-1]) + a y[i-1], four samples a step: each output from the last
	 * step's y alone (a^k y), so the chain that cannot overlap is one multiply-add per four
	 * samples, not per sample (perf: 1.1 % of a transcode's cycles, a third of that after).
	 */
	const double a = d->a, a2 = a * a, a3 = a2 * a, a4 = a2 * a2;
	double x1 = d->x1, y1 = d->y1;
	size_t i = 0;
	for (; i + 4 <= n; i += 4) {
		double d0 = x[i] - x1, d1 = (double)x[i + 1] - x[i], d2 = (double)x[i + 2] - x[i + 1],
		       d3 = (double)x[i + 3] - x[i + 2];
		x1 = x[i + 3];
		double y0 = d0 + a * y1;
		double y_1 = d1 + a * d0 + a2 * y1;
		double y_2 = d2 + a * d1 + a2 * d0 + a3 * y1;
		double y_3 = d3 + a * d2 + a2 * d1 + a3 * d0 + a4 * y1;
		x[i] = (float)y0;
		x[i + 1] = (float)y_1;
		x[i + 2] = (float)y_2;
		x[i + 3] = (float)y_3;
		y1 = y_3;
	}
	for (; i < n; i++) {
		double v = x[i];
		y1 = (v - x1) + a * y1;
		x1 = v;
		x[i] = (float)y1;
	}
	d->x1 = x1;
	d->y1 = y1;
}

/* One sample through the cascade, in double: the definition the block matrices come from. */
static double rotator_step(double b0, double b1, double s[ROTATOR_ORDER], double v)
{
	for (int k = 0; k < ROTATOR_STAGES; k++) {
		/* Transposed direct form II of (b0 + b1 z^-1 + z^-2) / (1 + b1 z^-1 + b0 z^-2). */
		double y = b0 * v + s[2 * k];
		s[2 * k] = b1 * (v - y) + s[2 * k + 1];
		s[2 * k + 1] = v - b0 * y;
		v = y;
	}
	return v;
}

void rotator_init(rotator *r, uint32_t rate)
{
	double w0 = 2 * M_PI * ROTATOR_HZ / rate;
	double alpha = sin(w0) / (2 * ROTATOR_Q);
	memset(r, 0, sizeof *r);
	r->b0 = (1 - alpha) / (1 + alpha);
	r->b1 = -2 * cos(w0) / (1 + alpha);
	/* The block matrices: the response to each unit state and to each unit input. */
	for (int j = 0; j < ROTATOR_ORDER + ROTATOR_BLOCK; j++) {
		double s[ROTATOR_ORDER] = {0};
		if (j < ROTATOR_ORDER)
			s[j] = 1;
		for (int i = 0; i < ROTATOR_BLOCK; i++) {
			double y = rotator_step(r->b0, r->b1, s, i == j - ROTATOR_ORDER ? 1 : 0);
			if (j < ROTATOR_ORDER)
				r->C[j][i] = (float)y;
			else
				r->D[j - ROTATOR_ORDER][i] = (float)y;
		}
		for (int m = 0; m < ROTATOR_ORDER; m++) {
			if (j < ROTATOR_ORDER)
				r->A[j][m] = s[m];
			else
				r->B[j - ROTATOR_ORDER][m] = s[m];
		}
	}
}

_Static_assert(ROTATOR_ORDER == 8 && ROTATOR_BLOCK == 8, "a column is one v8sf or two v4df");

/*
 * A block at a time, as matrix-vector products in vector lanes: about half the time of the
 * sample-at-a-time cascade, whose every stage waits on its own last output. The next state in
 * double, the outputs in float from the state rounded to float: within 1e-6 of the cascade in
 * double (tests/codec/test_dsp.c), where a float state drifted to 6e-5.
 */
CODEC_CLONES void rotator_run(rotator *r, float *x, size_t n)
{
	v8sf C[ROTATOR_ORDER], D[ROTATOR_BLOCK];
	v4df A[ROTATOR_ORDER][2], B[ROTATOR_BLOCK][2];
	memcpy(C, r->C, sizeof C);
	memcpy(D, r->D, sizeof D);
	memcpy(A, r->A, sizeof A);
	memcpy(B, r->B, sizeof B);
	double st[ROTATOR_ORDER];
	memcpy(st, r->s, sizeof st);
	size_t i = 0;
	for (; i + ROTATOR_BLOCK <= n; i += ROTATOR_BLOCK) {
		float in[ROTATOR_BLOCK], f[ROTATOR_ORDER];
		memcpy(in, x + i, sizeof in);
		for (int j = 0; j < ROTATOR_ORDER; j++)
			f[j] = (float)st[j];
		/* Partial sums, so no long chain of additions waits on the last product. */
		v8sf y0 = f[0] * C[0] + f[1] * C[1] + f[2] * C[2] + f[3] * C[3];
		v8sf y1 = f[4] * C[4] + f[5] * C[5] + f[6] * C[6] + f[7] * C[7];
		v8sf y2 = in[0] * D[0] + in[1] * D[1] + in[2] * D[2] + in[3] * D[3];
		v8sf y3 = in[4] * D[4] + in[5] * D[5] + in[6] * D[6] + in[7] * D[7];
		v8sf y = (y0 + y1) + (y2 + y3);
		memcpy(x + i, &y, sizeof y);
		double next[ROTATOR_ORDER];
		for (int h = 0; h < 2; h++) {
			v4df s0 = st[0] * A[0][h] + st[1] * A[1][h] + st[2] * A[2][h] + st[3] * A[3][h];
			v4df s1 = st[4] * A[4][h] + st[5] * A[5][h] + st[6] * A[6][h] + st[7] * A[7][h];
			v4df s2 = (double)in[0] * B[0][h] + (double)in[1] * B[1][h] +
				  (double)in[2] * B[2][h] + (double)in[3] * B[3][h];
			v4df s3 = (double)in[4] * B[4][h] + (double)in[5] * B[5][h] +
				  (double)in[6] * B[6][h] + (double)in[7] * B[7][h];
			v4df s = (s0 + s1) + (s2 + s3);
			memcpy(next + 4 * h, &s, sizeof s);
		}
		memcpy(st, next, sizeof st);
	}
	/* The rest one sample at a time, through the same recursion. */
	for (; i < n; i++)
		x[i] = (float)rotator_step(r->b0, r->b1, st, x[i]);
	memcpy(r->s, st, sizeof st);
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
