/*
 * test_dsp.c — the signal stages: the limiter keeps true peaks (checked by an independent
 * 16x sinc interpolation) under its ceiling and leaves quiet audio untouched, the downmix
 * drops the LFE, the resampler keeps length, and the K-weighting matches BS.1770's reference
 * level for a 997 Hz tone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dsp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* True peak by brute force: 16x band-limited interpolation with a long Hann-windowed sinc. */
static double true_peak(const float *x, size_t n)
{
	double peak = 0;
	const int half = 64;
	for (size_t i = 0; i + 1 < n; i++) {
		for (int k = 0; k < 16; k++) {
			double t = i + k / 16.0, y = 0;
			for (long j = (long)i - half + 1; j <= (long)i + half; j++) {
				if (j < 0 || (size_t)j >= n)
					continue;
				double d = t - j;
				double s = d == 0 ? 1 : sin(M_PI * d) / (M_PI * d);
				y += x[j] * s * (0.5 + 0.5 * cos(M_PI * d / (half + 1)));
			}
			peak = fmax(peak, fabs(y));
		}
	}
	return peak;
}

static void limiter_keeps_true_peak(void **st)
{
	(void)st;
	const size_t n = 48000 / 4;
	float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
	/* Inter-sample peaks: a tone at fs/4 phase-shifted by 45 degrees reads 3 dB over its
	 * samples; plus bursts and a click, at up to +12 dBFS. */
	for (size_t i = 0; i < n; i++) {
		double t = (double)i / 48000;
		x[i] = (float)(2.0 * sin(2 * M_PI * 12000 * t + M_PI / 4) * (i < n / 3) +
			       3.0 * sin(2 * M_PI * 300 * t) * (i >= n / 3 && i < 2 * n / 3) +
			       (i == 5 * n / 6 ? 4.0 : 0.0));
	}
	limiter lim;
	double ceiling = pow(10, -3.0 / 20);
	limiter_init(&lim, ceiling, 48000);
	limiter_run(&lim, x, y, n);
	double tp = true_peak(y, n);
	assert_true(tp <= ceiling * 1.01); /* within 0.09 dB of an ideal meter */
	assert_true(tp >= ceiling * 0.8);  /* and it did not just mute everything */
	free(x), free(y);
}

static void limiter_is_transparent_below_ceiling(void **st)
{
	(void)st;
	const size_t n = 10000;
	float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(0.25 * sin(i * 0.05));
	limiter lim;
	limiter_init(&lim, 0.5, 48000);
	limiter_run(&lim, x, y, n);
	unsigned lat = limiter_latency();
	for (size_t i = lat; i < n; i++)
		assert_float_equal(y[i], x[i - lat], 1e-7);
	for (size_t i = 0; i < lat; i++)
		assert_float_equal(y[i], 0, 0);
	free(x), free(y);
}

static void downmix_skips_lfe(void **st)
{
	(void)st;
	float in[6] = {0.5f, 0.5f, 0.5f, 10.0f, 0.5f, 0.5f}, out;
	downmix(in, 1, 6, 3, &out);
	assert_float_equal(out, 0.5f, 1e-7);
	float st2[4] = {1.0f, -1.0f, 0.2f, 0.4f}, o2[2];
	downmix(st2, 2, 2, -1, o2);
	assert_float_equal(o2[0], 0.0f, 1e-7);
	assert_float_equal(o2[1], 0.3f, 1e-7);
}

static void resampler_keeps_length(void **st)
{
	(void)st;
	const uint32_t rates[] = {8000, 11025, 44100, 96000, 192000};
	for (size_t r = 0; r < 5; r++) {
		resampler rs;
		assert_int_equal(resampler_init(&rs, rates[r]), 0);
		size_t in_n = rates[r] * 3 / 2, chunk = 4096, total = 0;
		size_t cap = resampler_max_out(&rs, chunk);
		float *in = calloc(chunk, sizeof *in), *out = malloc(cap * sizeof *out);
		for (size_t done = 0; done < in_n;) {
			size_t n = in_n - done < chunk ? in_n - done : chunk, got, used;
			assert_int_equal(resampler_run(&rs, in, n, out, cap, &got, &used), 0);
			assert_true(used > 0 || got > 0);
			done += used;
			total += got;
		}
		size_t got, used;
		do {
			assert_int_equal(resampler_run(&rs, NULL, 0, out, cap, &got, &used), 0);
			total += got;
		} while (got > 0);
		/* The ideal length in_n * 48000 / rate, to the sample. */
		long ideal = (long)llround((double)in_n * 48000 / rates[r]);
		assert_true(labs((long)total - ideal) <= 1);
		resampler_free(&rs);
		free(in), free(out);
	}
}

static void kweighting_reference_level(void **st)
{
	(void)st;
	/* BS.1770-4: a 0 dBFS 997 Hz sine in one channel measures -3.01 LKFS. */
	const size_t n = 48000 * 2;
	float *x = malloc(n * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)sin(2 * M_PI * 997 * i / 48000.0);
	kweight k = {0};
	kweight_energy(&k, x, 4800); /* let the filters settle */
	double e = kweight_energy(&k, x + 4800, n - 4800) / (n - 4800);
	assert_true(fabs(-0.691 + 10 * log10(e) - (-3.01)) < 0.05);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(limiter_keeps_true_peak),
		cmocka_unit_test(limiter_is_transparent_below_ceiling),
		cmocka_unit_test(downmix_skips_lfe),
		cmocka_unit_test(resampler_keeps_length),
		cmocka_unit_test(kweighting_reference_level),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
