/*
 * test_dsp.c — the signal stages: the limiter keeps true peaks (checked by an independent
 * 16x sinc interpolation) under its ceiling and leaves quiet audio untouched, the downmix
 * drops the LFE, the resampler keeps length, and the K-weighting matches BS.1770's reference
 * level for a 997 Hz tone; our loudness meter agrees with libebur128 within 0.1 LU; the check
 * of the encoded output reads the true peak of broadband clicks as the 16x interpolation does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dsp.h"

#include <ebur128.h>

#include <math.h>
#include <opus.h>
#include <stdbool.h>
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

/* The block-wise true-peak detector against the interpolator written out sample by sample. */
static void true_peak_blocks_match_direct_form(void **st)
{
	(void)st;
	const size_t n = 5000;
	float *x = malloc(n * sizeof *x), *got = calloc(n, sizeof *got);
	bool *have = calloc(n, sizeof *have);
	srand(7);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((rand() / (double)RAND_MAX - 0.5) * (i % 700 < 90 ? 3.0 : 0.2));
	tp_detector t;
	tp_init(&t);
	/* Uneven pieces, each size pushed each of three ways (13 sizes against 3 ways), so the
	 * history crosses every boundary, pieces shorter than it included. */
	const size_t sizes[] = {1, 7, 64, 65, 3, 200, 11, 10, 12, 960, 31, 33, 5};
	size_t pos = 0;
	for (unsigned k = 0; pos < n; k++) {
		size_t m = sizes[k % 13];
		if (m > n - pos)
			m = n - pos;
		if (k % 3 == 0) {
			tp_run(&t, x + pos, m, got + pos);
			for (size_t i = pos; i < pos + m; i++)
				have[i] = true;
		} else if (k % 3 == 1) {
			float peak = tp_run_max(&t, x + pos, m), want = 0;
			for (size_t i = pos; i < pos + m; i++) {
				for (int p = 0; p < 3; p++) {
					double y = 0;
					for (int j = 0; j < TP_TAPS; j++)
						y += i >= (size_t)j ? t.coef[p][j] * (double)x[i - j] : 0;
					want = fmaxf(want, (float)fabs(y));
				}
				want = fmaxf(want, i >= TP_DELAY ? fabsf(x[i - TP_DELAY]) : 0);
			}
			assert_float_equal(peak, want, 1e-5 * want + 1e-7);
		} else {
			tp_skip(&t, x + pos, m);
		}
		pos += m;
	}
	size_t checked = 0;
	for (size_t i = 0; i < n; i++) {
		if (!have[i])
			continue;
		double want = i >= TP_DELAY ? fabs(x[i - TP_DELAY]) : 0;
		for (int p = 0; p < 3; p++) {
			double y = 0;
			for (int j = 0; j < TP_TAPS; j++)
				y += i >= (size_t)j ? t.coef[p][j] * (double)x[i - j] : 0;
			want = fmax(want, fabs(y));
		}
		assert_float_equal(got[i], want, 1e-5 * want + 1e-7);
		/* Never under what the samples themselves say, and never over the bound. */
		assert_true(got[i] >= fabsf(i >= TP_DELAY ? x[i - TP_DELAY] : 0));
		checked++;
	}
	assert_true(checked > n / 4);
	free(x), free(got), free(have);
}

/*
 * Loud bursts after long quiet stretches, starting at every phase of the limiter's blocks: the
 * fast path it takes while idle must hand over in time for the next peak, and give back the
 * input untouched (delayed) once released (0.0001 from 1 after ~9 release times); pieces of any size give the same output.
 */
static void limiter_wakes_from_idle_in_time(void **st)
{
	(void)st;
	const size_t n = 97000;
	float *x = calloc(n, sizeof *x), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
	for (size_t b = 0; b < 8; b++) {
		size_t start = 1000 + b * 11900 + b * 5; /* a different offset in each block */
		for (size_t i = start; i < start + 300; i++)
			x[i] = (float)(2.5 * sin(2 * M_PI * 5000 * (double)i / 48000 + M_PI / 4) *
				       sin(M_PI * (double)(i - start) / 300));
		for (size_t i = start + 300; i < start + 11800; i++)
			x[i] = (float)(0.1 * sin(i * 0.03));
	}
	double ceiling = pow(10, -1.0 / 20);
	limiter lim;
	limiter_init(&lim, ceiling, 48000);
	limiter_run(&lim, x, y, n);
	assert_true(true_peak(y, n) <= ceiling * 1.01);
	assert_true(20 * log10(lim.min_gain) < -6);
	/* Long after each burst the gain is back to exactly 1. */
	unsigned lat = limiter_latency();
	for (size_t b = 0; b < 8; b++) {
		size_t start = 1000 + b * 11900 + b * 5;
		for (size_t i = start + 10000 + lat; i < start + 11800; i++)
			assert_true(y[i] == x[i - lat]);
	}
	limiter_init(&lim, ceiling, 48000);
	for (size_t pos = 0, k = 0; pos < n; k++) {
		size_t m = (k * 37) % 101 + 1;
		m = m > n - pos ? n - pos : m;
		limiter_run(&lim, x + pos, z + pos, m);
		pos += m;
	}
	assert_memory_equal(y, z, n * sizeof *y);
	free(x), free(y), free(z);
}

/*
 * The fit model's loudness for each grid gain against the real thing: gain, limiter, meter.
 * The signal swells and falls within sub-blocks, so the candidates go idle and wake up again
 * all the time (idle ones gather energy lazily); fed in uneven pieces.
 */
static void fit_model_predicts_the_limiter(void **st)
{
	(void)st;
	const size_t n = 48000 * 6;
	float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
	for (size_t i = 0; i < n; i++) {
		double t = (double)i / 48000;
		double env = 0.02 + 0.3 * pow(fabs(sin(2 * M_PI * 1.7 * t)), 6) * (1 + (i / 48000) % 3);
		x[i] = (float)(env * (sin(2 * M_PI * 220 * t) + 0.5 * sin(2 * M_PI * 1230 * t + 1) +
				      0.3 * sin(2 * M_PI * 3400 * t)));
	}
	const double ceiling = 0.8;
	fit_model *fm = malloc(sizeof *fm);
	fit_model_init(fm, ceiling);
	for (size_t pos = 0, k = 0; pos < n; k++) {
		size_t m = (k * 613) % 2000 + 1;
		m = m > n - pos ? n - pos : m;
		fit_model_run(fm, x + pos, m);
		pos += m;
	}
	double grid[FIT_GRID];
	fit_model_finish(fm, grid);
	loudness_meter *meter = malloc(sizeof *meter);
	limiter *lim = malloc(sizeof *lim);
	int limited = 0;
	for (int k = 0; k < FIT_GRID; k += 3) {
		float amp = (float)pow(10, fit_grid_gain(k) / 20);
		for (size_t i = 0; i < n; i++)
			y[i] = x[i] * amp;
		limiter_init(lim, ceiling, 48000);
		limiter_run(lim, y, y, n);
		meter_init(meter);
		unsigned lat = limiter_latency();
		meter_add(meter, y + lat, n - lat);
		double real = gate_lufs(&meter->gate);
		print_message("# gain %+5.1f dB: model %7.2f, limiter %7.2f LUFS (limited %5.1f dB)\n",
			      fit_grid_gain(k), grid[k], real, 20 * log10(lim->min_gain));
		if (lim->min_gain < 0.99f)
			limited++;
		assert_true(isfinite(real) == isfinite(grid[k]));
		if (isfinite(real))
			assert_true(fabs(grid[k] - real) <= 0.25);
	}
	assert_true(limited >= 4); /* the grid reaches into hard limiting */
	free(x), free(y), free(fm), free(meter), free(lim);
}

/*
 * Two filters in the lanes of one vector give, to the last bit, what BS.1770's two biquads
 * give written out in direct form I, each signal alone; in uneven pieces.
 */
static double kweight_reference(const float *x, size_t n)
{
	static const double b1[3] = {1.53512485958697, -2.69169618940638, 1.19839281085285};
	static const double a1[2] = {-1.69065929318241, 0.73248077421585};
	static const double b2[3] = {1.0, -2.0, 1.0};
	static const double a2[2] = {-1.99004745483398, 0.99007225036621};
	double x1 = 0, x2 = 0, y1 = 0, y2 = 0, z1 = 0, z2 = 0, e = 0;
	for (size_t i = 0; i < n; i++) {
		double in = x[i];
		double y = (b1[0] * in + b1[1] * x1 + b1[2] * x2 - a1[1] * y2) - a1[0] * y1;
		double z = (b2[0] * y + b2[1] * y1 + b2[2] * y2 - a2[1] * z2) - a2[0] * z1;
		x2 = x1, x1 = in, y2 = y1, y1 = y, z2 = z1, z1 = z;
		e += z * z;
	}
	return e;
}

static void kweight_pair_matches_single(void **st)
{
	(void)st;
	const size_t n = 20000;
	float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
	for (size_t i = 0; i < n; i++) {
		a[i] = (float)(0.5 * sin(i * 0.013) + 0.1 * sin(i * 1.7));
		b[i] = (float)((i / 100) % 2 ? 0.9 * sin(i * 0.4) : 0.0);
	}
	kweight ka = {0}, kb = {0}, ks = {0};
	double ea = 0, eb = 0, es = 0;
	for (size_t pos = 0, k = 0; pos < n; k++) {
		size_t m = (k * 131) % 977 + 1;
		m = m > n - pos ? n - pos : m;
		kweight_pair(&ka, a + pos, &ea, &kb, b + pos, &eb, m);
		kweight_add(&ks, b + pos, m, &es);
		pos += m;
	}
	assert_true(ea == kweight_reference(a, n) && eb == kweight_reference(b, n));
	assert_true(es == eb && ea > 0 && eb > 0);
	assert_memory_equal(&ks, &kb, sizeof ks);
	free(a), free(b);
}

/*
 * The rotator's block matrices against the stages run one sample at a time in double, at
 * every input rate's extreme and in uneven pieces (blocks and the one-sample tail mix).
 */
static void rotator_matches_the_cascade(void **st)
{
	(void)st;
	const uint32_t rates[] = {8000, 44100, 192000};
	const size_t n = 60000;
	float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
	for (size_t r = 0; r < 3; r++) {
		for (size_t i = 0; i < n; i++)
			x[i] = y[i] = (float)(0.6 * sin(i * 0.002 * (1 + i % 7)) * ((i / 3000) % 2) +
					      0.3 * sin(i * 0.05));
		rotator rot;
		rotator_init(&rot, rates[r]);
		for (size_t pos = 0, k = 0; pos < n; k++) {
			size_t m = (k * 37) % 61 + 1;
			m = m > n - pos ? n - pos : m;
			rotator_run(&rot, y + pos, m);
			pos += m;
		}
		double s[8] = {0}, b0 = rot.b0, b1 = rot.b1, eref = 0, eout = 0, err = 0;
		for (size_t i = 0; i < n; i++) {
			double v = x[i];
			for (int k = 0; k < ROTATOR_STAGES; k++) {
				double o = b0 * v + s[2 * k];
				s[2 * k] = b1 * (v - o) + s[2 * k + 1];
				s[2 * k + 1] = v - b0 * o;
				v = o;
			}
			err = fmax(err, fabs(v - y[i]));
			eref += v * v;
			eout += (double)y[i] * y[i];
		}
		print_message("# rotator at %u Hz: largest difference %.2g, energy %.2g off\n",
			      rates[r], err, eout / eref - 1);
		assert_true(err < 4e-6);
		assert_true(fabs(eout / eref - 1) < 1e-5);
	}
	free(x), free(y);
}

/*
 * The DC blocker, four samples a step, gives what its difference equation gives a sample at a
 * time, whatever the block sizes; it removes an offset present from the first sample without a
 * step, and keeps a tone.
 */
static void dc_blocker_matches_direct_form(void **st)
{
	(void)st;
	const size_t n = 48000;
	float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
	for (size_t i = 0; i < n; i++)
		x[i] = y[i] = (float)(0.5 + 0.3 * sin(i * 0.05) + 0.1 * sin(i * 0.0013 * (1 + i % 5)));
	dc_blocker d;
	dc_blocker_init(&d, 48000);
	size_t first = 0;
	for (size_t pos = 0, k = 0; pos < n; k++) {
		size_t m = (k * 37) % 61 + 1;
		m = m > n - pos ? n - pos : m;
		first = first ? first : m;
		dc_blocker_run(&d, y + pos, m);
		pos += m;
	}
	double mean = 0;
	for (size_t i = 0; i < first; i++)
		mean += x[i];
	double x1 = mean / (double)first, y1 = 0, err = 0, tail = 0;
	for (size_t i = 0; i < n; i++) {
		y1 = ((double)x[i] - x1) + d.a * y1;
		x1 = x[i];
		err = fmax(err, fabs(y1 - y[i]));
		if (i >= n / 2)
			tail += y[i];
	}
	print_message("# dc blocker: largest difference %.2g, mean of the second half %.2g\n", err,
		      tail / (double)(n / 2));
	assert_true(err < 1e-6);
	assert_true(fabs(tail / (double)(n / 2)) < 0.01); /* the 0.5 offset is gone */
	free(x), free(y);
}

/* An encoder (VoIP, at bitrate) and a decoder as the pipeline's; the encoder's pre-skip. */
static uint32_t opus_pair(opus_int32 bitrate, OpusEncoder **enc, OpusDecoder **dec)
{
	int err;
	*enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
	*dec = opus_decoder_create(48000, 1, &err);
	assert_non_null(*enc);
	assert_non_null(*dec);
	opus_encoder_ctl(*enc, OPUS_SET_BITRATE(bitrate));
	opus_int32 lookahead = 0;
	opus_encoder_ctl(*enc, OPUS_GET_LOOKAHEAD(&lookahead));
	return (uint32_t)lookahead;
}

/* Each frame of in encoded, its packet given to the check and decoded into out. */
static void check_frames(OpusEncoder *enc, OpusDecoder *dec, outcheck *c, float *in,
			 size_t frames, float *out)
{
	for (size_t f = 0; f < frames; f++) {
		unsigned char pkt[4000];
		float *x = in + f * CODEC_FRAME_SAMPLES;
		opus_int32 len = opus_encode_float(enc, x, CODEC_FRAME_SAMPLES, pkt, sizeof pkt);
		assert_true(len > 0);
		assert_int_equal(outcheck_packet(c, f, x, pkt, (size_t)len), 0);
		assert_int_equal(opus_decode_float(dec, pkt, len, out + f * CODEC_FRAME_SAMPLES,
						   CODEC_FRAME_SAMPLES, 0),
				 CODEC_FRAME_SAMPLES);
	}
}

/*
 * The output check sees the true peak of a clip's very last samples: the clip ends in the last
 * TP_DELAY samples of its last frame, with a click there, and the check's peak is held to a
 * 16x interpolation of the decoded real samples (the stream followed by silence).
 */
static void output_check_sees_the_last_samples(void **st)
{
	(void)st;
	OpusEncoder *enc;
	OpusDecoder *dec;
	const uint32_t preskip = opus_pair(24000, &enc, &dec);
	const size_t frames = 6;
	/* preskip + total ends 2 samples before the last frame does. */
	const uint64_t total = frames * CODEC_FRAME_SAMPLES - 2 - preskip;
	float *in = calloc(frames * CODEC_FRAME_SAMPLES, sizeof *in);
	float *dec_all = calloc(frames * CODEC_FRAME_SAMPLES + 64, sizeof *dec_all);
	for (uint64_t i = 0; i < total; i++)
		in[i] = (float)(0.05 * sin(i * 0.07));
	for (uint64_t i = total - 4; i < total; i++)
		in[i] = (i % 2 ? 0.9f : -0.9f); /* a click in the last samples */
	outcheck *c = malloc(sizeof *c);
	assert_int_equal(outcheck_init(c, preskip, total), 0);
	check_frames(enc, dec, c, in, frames, dec_all);
	/* The real samples, then silence for the interpolator to reach into. */
	float *real = calloc(total + 64, sizeof *real);
	memcpy(real, dec_all + preskip, total * sizeof *real);
	double want = 20 * log10(true_peak(real, total + 64));
	double got = outcheck_peak_dbtp(c);
	print_message("# last-samples click: check %.2f dBTP, 16x interpolation %.2f dBTP\n", got,
		      want);
	assert_true(got >= want - 0.1);
	outcheck_free(c);
	opus_encoder_destroy(enc);
	opus_decoder_destroy(dec);
	free(c), free(in), free(dec_all), free(real);
}

/*
 * Knocks: bursts of full-band noise, the kind of peak the 4x detector reads up to 3 dB low on
 * some interval; the check read a file of them 0.5 dB under ffmpeg. Bursts sit across frame
 * ends too, where the exact reading waits for the next frame's samples.
 */
static void output_check_reads_broadband_clicks(void **st)
{
	(void)st;
	OpusEncoder *enc;
	OpusDecoder *dec;
	const uint32_t preskip = opus_pair(64000, &enc, &dec);
	const size_t frames = 50;
	const uint64_t total = frames * CODEC_FRAME_SAMPLES - preskip;
	float *in = calloc(frames * CODEC_FRAME_SAMPLES, sizeof *in);
	float *dec_all = calloc(frames * CODEC_FRAME_SAMPLES, sizeof *dec_all);
	uint32_t seed = 12345;
	for (uint64_t i = 0; i < total; i++) {
		seed = seed * 1664525u + 1013904223u;
		in[i] = (float)((int32_t)seed / 2147483648.0 * 1e-4);
	}
	/* 3 ms bursts, two across a frame's end (one ending just before it) */
	const size_t at[] = {5000, 3 * CODEC_FRAME_SAMPLES - 70, 17000,
			     30 * CODEC_FRAME_SAMPLES - 150, 41000};
	for (size_t b = 0; b < sizeof at / sizeof at[0]; b++)
		for (size_t i = 0; i < 144; i++) {
			seed = seed * 1664525u + 1013904223u;
			in[at[b] + i] = (float)((int32_t)seed / 2147483648.0 * 0.9);
		}
	outcheck *c = malloc(sizeof *c);
	assert_int_equal(outcheck_init(c, preskip, total), 0);
	check_frames(enc, dec, c, in, frames, dec_all);
	double want = 20 * log10(true_peak(dec_all + preskip, total));
	double got = outcheck_peak_dbtp(c);
	print_message("# knocks: check %.2f dBTP, 16x interpolation %.2f dBTP\n", got, want);
	assert_true(got >= want - 0.1);
	assert_true(got <= want + 0.1);
	outcheck_free(c);
	opus_encoder_destroy(enc);
	opus_decoder_destroy(dec);
	free(c), free(in), free(dec_all);
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

/* Energies about the mean: inverted channels cancel even on a DC offset; the LFE is never kept. */
static void mix_energy_finds_cancelling_channels(void **st)
{
	(void)st;
	enum { N = 4800 };
	static float in[N * 6], mix[N];
	const struct {
		unsigned channels;
		int lfe;
		float gain[6], dc; /* channel c = gain[c] * sin + dc (cos for gain 0: unrelated) */
		int want;
	} cases[] = {
	    {2, -1, {1, -1}, 0, 0},
	    {2, -1, {0.7f, -1}, 0.4f, 1}, /* DC that does not cancel hides nothing */
	    {2, -1, {1, -0.3f}, 0, -1},   /* 0.7 of L is left: -6.3 dB, no cancel */
	    {2, -1, {1, 0}, 0, -1},       /* unrelated: -3 dB */
	    {2, -1, {1, 1}, 0.3f, -1},
	    {6, 3, {1, -1, 0.5f, 3, 0.5f, -1}, 0, 0}, /* the LFE, loudest, is not taken */
	    {6, 3, {1, 1, 1, 0, 0, 0}, 0, -1},
	};
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		unsigned ch = cases[k].channels;
		for (size_t i = 0; i < N; i++)
			for (unsigned c = 0; c < ch; c++) {
				float g = cases[k].gain[c];
				float v = g != 0 ? g * (float)sin(i * 0.05) : (float)cos(i * 0.031);
				in[i * ch + c] = v + cases[k].dc;
			}
		mix_energy e;
		memset(&e, 0, sizeof e);
		for (size_t i = 0; i < N; i += 1000) { /* in pieces, as the pipeline's chunks */
			size_t n = N - i < 1000 ? N - i : 1000;
			downmix(in + i * ch, n, ch, cases[k].lfe, mix + i);
			mix_energy_add(&e, in + i * ch, n, ch, mix + i);
		}
		assert_int_equal(mix_energy_solo(&e, ch, cases[k].lfe), cases[k].want);
	}
	float one[N];
	mix_energy e;
	memset(&e, 0, sizeof e);
	for (size_t i = 0; i < N; i++)
		one[i] = (float)sin(i * 0.05);
	mix_energy_add(&e, one, N, 1, one);
	assert_int_equal(mix_energy_solo(&e, 1, -1), -1);
	downmix_one(in, N, 6, 2, mix); /* the last case: channel 2 is sin */
	assert_float_equal(mix[7], (float)sin(7 * 0.05), 1e-7);
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

/* Deterministic test signals at 48 kHz (xorshift noise; no libc rand state). */
static uint32_t rng = 0x1234567u;
static float noise(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return (float)((double)rng / 4294967295.0 * 2.0 - 1.0);
}

enum { SIG_SPEECHLIKE, SIG_NOISE, SIG_SWEEP, SIG_BURSTS, SIG_QUIET, SIG_SHORT, SIG_STEPS, SIG_N };

static float *make_signal(int kind, size_t *n)
{
	double seconds = kind == SIG_SHORT ? 0.55 : kind == SIG_STEPS ? 30.0 : 12.0;
	*n = (size_t)(seconds * 48000);
	float *x = malloc(*n * sizeof *x);
	double ph = 0;
	for (size_t i = 0; i < *n; i++) {
		double t = i / 48000.0, v;
		switch (kind) {
		case SIG_SPEECHLIKE: /* a buzzy pitch pulse train, syllables of 200 ms, pauses */
			ph += 2 * M_PI * (120 + 30 * sin(2 * M_PI * 0.7 * t)) / 48000.0;
			v = 0.4 * pow(fabs(sin(ph)), 9) * (fmod(t, 0.5) < 0.2 ? 1 : 0.02);
			break;
		case SIG_NOISE:
			v = 0.03 * noise();
			break;
		case SIG_SWEEP: /* 20 Hz .. 20 kHz: the filter's whole response */
			ph += 2 * M_PI * 20 * pow(1000, t / 12.0) / 48000.0;
			v = 0.5 * sin(ph);
			break;
		case SIG_BURSTS: /* loud bursts over a hum 30 dB lower: the relative gate decides */
			v = (fmod(t, 2.0) < 0.7 ? 0.5 : 0.016) * sin(2 * M_PI * 440 * t);
			break;
		case SIG_QUIET: /* near the absolute gate */
			v = 0.0006 * noise();
			break;
		case SIG_SHORT:
			v = 0.2 * sin(2 * M_PI * 1000 * t);
			break;
		default: /* a level staircase, 1 dB per second down from -6 dBFS */
			v = pow(10, (-6.0 - floor(t)) / 20) * sin(2 * M_PI * 997 * t);
			break;
		}
		x[i] = (float)v;
	}
	return x;
}

/* The exact libebur128 measure (no histogram) of x. */
static double reference_lufs(const float *x, size_t n)
{
	ebur128_state *st = ebur128_init(1, 48000, EBUR128_MODE_I);
	assert_non_null(st);
	assert_int_equal(ebur128_add_frames_float(st, x, n), EBUR128_SUCCESS);
	double l;
	assert_int_equal(ebur128_loudness_global(st, &l), EBUR128_SUCCESS);
	ebur128_destroy(&st);
	return l;
}

static void meter_agrees_with_libebur128(void **st)
{
	(void)st;
	for (int kind = 0; kind < SIG_N; kind++) {
		size_t n;
		float *x = make_signal(kind, &n);
		double ref = reference_lufs(x, n);
		/* Our meter, fed in uneven pieces as the output check feeds it. */
		loudness_meter *m = malloc(sizeof *m);
		meter_init(m);
		for (size_t at = 0, step = 1; at < n; step = step * 7 % 4093 + 1) {
			size_t take = step < n - at ? step : n - at;
			meter_add(m, x + at, take);
			at += take;
		}
		double ours = gate_lufs(&m->gate);
		/* The fit model's input loudness: the pipeline's measure of every input. */
		fit_model *fm = malloc(sizeof *fm);
		double grid[FIT_GRID];
		fit_model_init(fm, 0.8);
		fit_model_run(fm, x, n);
		fit_model_finish(fm, grid);
		double fit = fit_model_input_lufs(fm);
		print_message("# signal %d: libebur128 %.3f ours %.3f fit %.3f LUFS\n", kind, ref,
			      ours, fit);
		assert_true(isfinite(ref));
		assert_true(fabs(ours - ref) <= 0.1);
		assert_true(fabs(fit - ref) <= 0.1);
		free(fm);
		free(m);
		free(x);
	}
}

static void meter_gates_silence(void **st)
{
	(void)st;
	/* Digital silence and sound under -70 LUFS measure as nothing at all. */
	float *x = calloc(48000, sizeof *x);
	loudness_meter *m = malloc(sizeof *m);
	meter_init(m);
	meter_add(m, x, 48000);
	assert_true(isinf(gate_lufs(&m->gate)) && gate_lufs(&m->gate) < 0);
	for (size_t i = 0; i < 48000; i++)
		x[i] = 1e-5f * (float)sin(i * 0.1);
	meter_add(m, x, 48000);
	assert_true(gate_lufs(&m->gate) < -1e300);
	free(m);
	free(x);
}

/*
 * Float WAV may carry samples far over full scale (clamped at +60 dBFS): a clip louder than
 * +20 LUFS put the relative gate over the histogram's top and measured as nothing, so such an
 * upload was refused as audio_silent.
 */
static void meter_measures_over_full_scale(void **st)
{
	(void)st;
	const size_t n = 48000 * 3;
	float *x = malloc(n * sizeof *x);
	for (int level = 20; level <= 60; level += 20) {
		for (size_t i = 0; i < n; i++)
			x[i] = (float)(pow(10, level / 20.0) * sin(2 * M_PI * 997 * i / 48000.0));
		loudness_meter *m = malloc(sizeof *m);
		meter_init(m);
		meter_add(m, x, n);
		fit_model *fm = malloc(sizeof *fm);
		double grid[FIT_GRID];
		fit_model_init(fm, 0.8);
		fit_model_run(fm, x, n);
		fit_model_finish(fm, grid);
		double ref = reference_lufs(x, n);
		print_message("# +%d dBFS: libebur128 %.3f ours %.3f fit %.3f LUFS\n", level, ref,
		              gate_lufs(&m->gate), fit_model_input_lufs(fm));
		assert_true(fabs(gate_lufs(&m->gate) - ref) <= 0.1);
		assert_true(fabs(fit_model_input_lufs(fm) - ref) <= 0.1);
		for (int k = 0; k < FIT_GRID; k++)
			assert_true(isfinite(grid[k]));
		free(fm);
		free(m);
	}
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(limiter_keeps_true_peak),
	    cmocka_unit_test(limiter_is_transparent_below_ceiling),
	    cmocka_unit_test(true_peak_blocks_match_direct_form),
	    cmocka_unit_test(limiter_wakes_from_idle_in_time),
	    cmocka_unit_test(fit_model_predicts_the_limiter),
	    cmocka_unit_test(kweight_pair_matches_single),
	    cmocka_unit_test(rotator_matches_the_cascade),
	    cmocka_unit_test(dc_blocker_matches_direct_form),
	    cmocka_unit_test(output_check_sees_the_last_samples),
	    cmocka_unit_test(output_check_reads_broadband_clicks),
	    cmocka_unit_test(downmix_skips_lfe),
	    cmocka_unit_test(mix_energy_finds_cancelling_channels),
	    cmocka_unit_test(resampler_keeps_length),
	    cmocka_unit_test(kweighting_reference_level),
	    cmocka_unit_test(meter_agrees_with_libebur128),
	    cmocka_unit_test(meter_gates_silence),
	    cmocka_unit_test(meter_measures_over_full_scale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
