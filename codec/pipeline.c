/*
 * pipeline.c — codec_transcode(): streaming passes over the input, none holding the clip.
 *
 * 1. Measure: decode, downmix, block DC, rotate phase (dsp.h), resample to 48 kHz; integrated
 *    loudness L (loudness.c) and, riding on the same samples, a model of the loudness that
 *    gain + limiter would give for a grid of gains (fit.c). The limiter takes loudness from
 *    peaky speech and lets only part of any extra gain through, so the gain is read off that
 *    curve, not computed from L. Beside it, the channels' energies: when their mean cancels
 *    (channels in opposite phase), the loudest channel alone is measured again and encoded.
 * 2. Encode: gain, limiter, Opus, Ogg pages straight to the sink, and a decode of every packet
 *    (outcheck.c) that measures the file as a player will: loudness and true peak.
 * 3. Correct: OpusHead's output gain (RFC 7845 5.1, applied by every decoder) makes up what
 *    the model and the codec missed, rewritten into the first page, as far as the decoded true
 *    peak allows; when the peaks leave too little room, model again with a lower limiter
 *    ceiling and encode once more (the sink is reset).
 * Memory is a fixed set of chunk buffers and histograms: nothing grows with the clip.
 */
#include "dsp.h"
#include "internal.h"
#include "ogg_mux.h"

#include <math.h>
#include <opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#if defined(__SSE2__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#define CHUNK_FRAMES 4096
#define OPUS_MAX_PACKET 4000
#define PEAK_MARGIN_DB 2.0       /* limiter ceiling under the requested true peak */
#define FIT_AIM_HIGH_LU 0.15     /* the model's error is corrected downwards for free */
#define FIT_MAX_EXTRA_DB 18.0    /* never push more than this into the limiter */
#define CODEC_TOLERANCE_LU 0.25  /* a file this far under the goal is encoded again */
#define MAX_ENCODES 3
#define PEAK_SLACK_DB 0.2        /* keep peaks this far under the ceiling: meters differ */
/* Decoding up to mono 48 kHz: what both passes share. */
typedef struct front {
	codec_decoder *dec;
	codec_stream_info info;
	dc_blocker dc;
	rotator rot;
	resampler rs;
	bool rs_ready;
	bool input_done;
	size_t mono_pos, mono_len; /* mono[mono_pos..mono_len) still to resample */
	float *pcm;      /* CHUNK_FRAMES * channels */
	float *mono;     /* CHUNK_FRAMES */
	float *out;      /* resampler_max_out(CHUNK_FRAMES) */
	size_t out_cap;
	uint64_t input_frames;
	uint64_t max_frames; /* input frames in max_duration_ms: more is CODEC_ETOOLONG */
	bool nonzero;    /* saw a sample that is not exactly 0 */
	int solo;        /* the one channel kept instead of the mean (its mean cancels), or -1 */
	mix_energy *energy; /* when set (the measuring pass): channel and downmix energies */
} front;

static void front_close(front *f)
{
	codec_decoder_close(f->dec);
	if (f->rs_ready)
		resampler_free(&f->rs);
	free(f->pcm);
	free(f->mono);
	free(f->out);
	memset(f, 0, sizeof *f);
}

static int front_open(front *f, const codec_source *src, const codec_options *opt, int solo)
{
	int rc;
	memset(f, 0, sizeof *f);
	f->solo = solo;
	if (src->seek && (rc = src->seek(src->ctx, 0)) < 0)
		return rc;
	if ((rc = codec_decoder_open(&f->dec, src, opt->max_input_bytes, &f->info)) < 0)
		return rc;
	f->max_frames = (uint64_t)opt->max_duration_ms * f->info.rate / 1000;
	dc_blocker_init(&f->dc, f->info.rate);
	rotator_init(&f->rot, f->info.rate);
	if ((rc = resampler_init(&f->rs, f->info.rate)) < 0)
		return rc;
	f->rs_ready = true;
	f->out_cap = resampler_max_out(&f->rs, CHUNK_FRAMES);
	f->pcm = malloc(sizeof(float) * CHUNK_FRAMES * f->info.channels);
	f->mono = malloc(sizeof(float) * CHUNK_FRAMES);
	f->out = malloc(sizeof(float) * f->out_cap);
	if (!f->pcm || !f->mono || !f->out)
		return CODEC_ENOMEM;
	return 0;
}

/* The next block of mono 48 kHz samples; *n == 0 at the end. */
static int front_pull(front *f, const float **out, size_t *n)
{
	size_t used;
	int rc;
	*n = 0;
	*out = f->out;
	while (*n == 0) {
		if (f->mono_pos < f->mono_len) {
			rc = resampler_run(&f->rs, f->mono + f->mono_pos, f->mono_len - f->mono_pos,
					   f->out, f->out_cap, n, &used);
			if (rc < 0)
				return rc;
			f->mono_pos += used;
			continue;
		}
		if (f->input_done) {
			/* soxr's tail: called until it gives nothing more. */
			return resampler_run(&f->rs, NULL, 0, f->out, f->out_cap, n, &used);
		}
		size_t frames;
		if ((rc = codec_decoder_read(f->dec, f->pcm, CHUNK_FRAMES, &frames)) < 0)
			return rc;
		if (frames == 0) {
			f->input_done = true;
			continue;
		}
		f->input_frames += frames;
		if (f->input_frames > f->max_frames)
			return CODEC_ETOOLONG;
		if (!f->nonzero) {
			size_t total = frames * f->info.channels;
			for (size_t i = 0; i < total && !f->nonzero; i++)
				f->nonzero = f->pcm[i] != 0.0f;
		}
		if (f->solo >= 0)
			downmix_one(f->pcm, frames, f->info.channels, (unsigned)f->solo, f->mono);
		else
			downmix(f->pcm, frames, f->info.channels, f->info.lfe_channel, f->mono);
		if (f->energy)
			mix_energy_add(f->energy, f->pcm, frames, f->info.channels, f->mono);
		dc_blocker_run(&f->dc, f->mono, frames);
		rotator_run(&f->rot, f->mono, frames);
		f->mono_pos = 0;
		f->mono_len = frames;
	}
	return 0;
}

/* The gain and limiter stage, shared by the fit and the encode passes. */
typedef int (*consume_fn)(void *ctx, const float *x, size_t n);

/*
 * Run the front through gain and limiter, giving `consume` exactly `total` samples (the limiter's
 * delay removed). *min_gain_db: the deepest reduction the limiter applied.
 */
static int run_limited(const codec_source *src, const codec_options *opt, int solo, double gain_db,
		       double ceiling_dbtp, uint64_t total, consume_fn consume, void *ctx,
		       double *min_gain_db)
{
	front f;
	limiter *lim = malloc(sizeof *lim);
	float *tmp = NULL;
	const float *buf;
	size_t n;
	uint64_t given = 0;
	int rc = front_open(&f, src, opt, solo);
	if (rc < 0)
		goto done;
	tmp = malloc(sizeof(float) * f.out_cap);
	if (!lim || !tmp) {
		rc = CODEC_ENOMEM;
		goto done;
	}
	limiter_init(lim, pow(10.0, ceiling_dbtp / 20.0), CODEC_OUTPUT_RATE);
	float gain = (float)pow(10.0, gain_db / 20.0);
	uint64_t skip = limiter_latency(); /* the limiter's first outputs are its empty delay */
	for (bool input_done = false; !input_done;) {
		if ((rc = front_pull(&f, &buf, &n)) < 0)
			goto done;
		if (n == 0) {
			input_done = true; /* push the delay line out with silence */
			n = limiter_latency();
			memset(tmp, 0, n * sizeof *tmp);
		} else {
			for (size_t i = 0; i < n; i++)
				tmp[i] = buf[i] * gain;
		}
		limiter_run(lim, tmp, tmp, n);
		size_t drop = skip < n ? (size_t)skip : n;
		skip -= drop;
		size_t out = n - drop;
		if (out > total - given)
			out = (size_t)(total - given);
		if (out && (rc = consume(ctx, tmp + drop, out)) < 0)
			goto done;
		given += out;
	}
	/* Both passes decode the same bytes the same way; a difference means the source changed. */
	rc = given == total ? 0 : CODEC_EIO;
	*min_gain_db = 20.0 * log10(lim->min_gain);
done:
	free(lim);
	free(tmp);
	front_close(&f);
	return rc;
}

/*
 * The gain whose limited output the model says measures `target`: linear interpolation on
 * the grid, at most `max_extra_db` over what the target needs without limiting (beyond that
 * the limiter would audibly crush; such a clip stays quieter). *capped: that bound decided.
 */
static double pick_gain(const double grid[FIT_GRID], double offset, double input_lufs,
                        double target, double max_extra_db, bool *capped)
{
	double g_max = target - input_lufs + max_extra_db;
	double best = fit_grid_gain(0) + offset;
	for (int k = 0; k + 1 < FIT_GRID; k++) {
		double g0 = fit_grid_gain(k) + offset, g1 = fit_grid_gain(k + 1) + offset;
		if (g0 > g_max)
			break;
		if (!isfinite(grid[k]) || !isfinite(grid[k + 1]))
			continue;
		best = g1;
		if (grid[k] <= target && target <= grid[k + 1] && grid[k + 1] > grid[k]) {
			best = g0 + (g1 - g0) * (target - grid[k]) / (grid[k + 1] - grid[k]);
			break;
		}
		if (grid[k] > target) {
			best = g0; /* the grid starts above the target: its quietest point */
			break;
		}
	}
	*capped = best >= g_max;
	return fmin(best, g_max);
}

/* The whole input through the fit model (which also measures the input's loudness). */
static int scan(front *f, fit_model *model, uint64_t *samples)
{
	const float *buf;
	size_t n;
	int rc;
	*samples = 0;
	while ((rc = front_pull(f, &buf, &n)) == 0 && n > 0) {
		fit_model_run(model, buf, n);
		*samples += n;
	}
	return rc;
}

/* A pass that only runs the fit model (after the ceiling or the grid's offset changed). */
static int model_pass(const codec_source *src, const codec_options *opt, int solo, fit_model *model,
                      double ceiling_dbtp, double offset, double grid[FIT_GRID])
{
	front f;
	uint64_t samples;
	fit_model_init(model, pow(10.0, ceiling_dbtp / 20.0));
	if (offset != 0)
		fit_model_shift(model, offset);
	int rc = front_open(&f, src, opt, solo);
	if (rc == 0)
		rc = scan(&f, model, &samples);
	if (rc == 0)
		fit_model_finish(model, grid);
	front_close(&f);
	return rc;
}

/* Encode pass state: waveform, the encoder, the muxer and the output check. */
typedef struct back {
	OpusEncoder *enc;
	ogg_mux mux;
	bool mux_ready;
	outcheck check;
	bool check_ready;
	uint64_t total;   /* samples the file must decode to */
	uint64_t written; /* real samples sent to the encoder so far */
	uint32_t preskip;
	int64_t granule;  /* samples covered by the packets muxed so far */
	uint64_t packets;
	float frame[CODEC_FRAME_SAMPLES];
	unsigned frame_len;
	float wave_peak[CODEC_WAVEFORM_POINTS];
	uint8_t packet[OPUS_MAX_PACKET];
} back;

static void back_close(back *b)
{
	if (b->enc)
		opus_encoder_destroy(b->enc);
	if (b->mux_ready)
		ogg_mux_free(&b->mux);
	if (b->check_ready)
		outcheck_free(&b->check);
	b->enc = NULL;
	b->mux_ready = b->check_ready = false;
}

static int encode_frame(back *b, bool last)
{
	opus_int32 len = opus_encode_float(b->enc, b->frame, CODEC_FRAME_SAMPLES, b->packet,
					   OPUS_MAX_PACKET);
	if (len < 0)
		return len == OPUS_ALLOC_FAIL ? CODEC_ENOMEM : CODEC_EENCODE;
	int rc = outcheck_packet(&b->check, b->packets++, b->frame, b->packet, (size_t)len);
	if (rc < 0)
		return rc;
	b->granule += CODEC_FRAME_SAMPLES;
	/* The last packet's granule position trims the padding (RFC 7845 section 4.4). */
	int64_t gp = last ? (int64_t)(b->total + b->preskip) : b->granule;
	b->frame_len = 0;
	return ogg_mux_packet(&b->mux, b->packet, (size_t)len, gp, last);
}

/* Feed the encoder 20 ms at a time; the packet that covers preskip + total is the last. */
static int back_push(back *b, const float *x, size_t n)
{
	int64_t end = (int64_t)(b->total + b->preskip);
	for (size_t i = 0; i < n && b->granule < end;) {
		size_t take = CODEC_FRAME_SAMPLES - b->frame_len;
		if (take > n - i)
			take = n - i;
		memcpy(b->frame + b->frame_len, x + i, take * sizeof *x);
		b->frame_len += (unsigned)take;
		i += take;
		if (b->frame_len == CODEC_FRAME_SAMPLES) {
			int rc = encode_frame(b, b->granule + CODEC_FRAME_SAMPLES >= end);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* The real output samples: drawn, checked, encoded. */
static int back_consume(void *ctx, const float *x, size_t n)
{
	back *b = ctx;
	/* Sample p belongs to point p * POINTS / total: a run of samples at a time, no division
	 * per sample (that was 0.6 % of a transcode). */
	for (size_t i = 0; i < n;) {
		uint64_t pos = b->written + i;
		uint64_t slot = pos * CODEC_WAVEFORM_POINTS / b->total;
		uint64_t next = ((slot + 1) * b->total + CODEC_WAVEFORM_POINTS - 1) / CODEC_WAVEFORM_POINTS;
		size_t run = next - pos < n - i ? (size_t)(next - pos) : n - i;
		float m = b->wave_peak[slot];
		for (size_t j = i; j < i + run; j++)
			m = fabsf(x[j]) > m ? fabsf(x[j]) : m;
		b->wave_peak[slot] = m;
		i += run;
	}
	b->written += n;
	return back_push(b, x, n);
}

/* After the last real sample: zeros until the packet covering preskip + total is out. */
static int back_finish(back *b)
{
	static const float zeros[CODEC_FRAME_SAMPLES];
	while (b->granule < (int64_t)(b->total + b->preskip)) {
		int rc = back_push(b, zeros, CODEC_FRAME_SAMPLES - b->frame_len);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int encoder_setup(back *b, const codec_options *opt)
{
	int err;
	b->enc = opus_encoder_create(CODEC_OUTPUT_RATE, 1, OPUS_APPLICATION_VOIP, &err);
	if (err == OPUS_ALLOC_FAIL)
		return CODEC_ENOMEM;
	if (err != OPUS_OK || !b->enc)
		return CODEC_EENCODE;
	opus_int32 lookahead = 0;
	if (opus_encoder_ctl(b->enc, OPUS_SET_BITRATE(opt->bitrate)) != OPUS_OK ||
	    opus_encoder_ctl(b->enc, OPUS_SET_VBR(1)) != OPUS_OK ||
	    opus_encoder_ctl(b->enc, OPUS_SET_VBR_CONSTRAINT(0)) != OPUS_OK ||
	    opus_encoder_ctl(b->enc, OPUS_SET_COMPLEXITY(opt->complexity)) != OPUS_OK ||
	    opus_encoder_ctl(b->enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE)) != OPUS_OK ||
	    opus_encoder_ctl(b->enc, OPUS_SET_EXPERT_FRAME_DURATION(OPUS_FRAMESIZE_20_MS)) !=
		    OPUS_OK ||
	    opus_encoder_ctl(b->enc, OPUS_GET_LOOKAHEAD(&lookahead)) != OPUS_OK || lookahead < 0 ||
	    lookahead > 65535)
		return CODEC_EENCODE;
	b->preskip = (uint32_t)lookahead;
	return 0;
}

static uint32_t pick_serial(const codec_options *opt)
{
	uint32_t s;
	if (opt->serial_fixed)
		return opt->serial;
	if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s)
		s = (uint32_t)(uintptr_t)&s ^ 0x4A594E21u; /* the serial is no secret, only unique */
	return s;
}

/*
 * Pass 1: length, integrated loudness, and the fit model at `ceiling_dbtp`. When the downmix
 * cancels (mix_energy_solo), the model and the loudness are measured again on the channel the
 * encode will take: the fit must be of what is encoded.
 */
static int measure_input(const codec_source *src, const codec_options *opt, codec_result *res,
			 fit_model *model, double ceiling_dbtp, double grid[FIT_GRID])
{
	front f;
	mix_energy energy = {0};
	uint64_t samples = 0;
	int rc = front_open(&f, src, opt, -1);
	if (rc < 0)
		goto done;
	res->input_format = f.info.format;
	res->input_rate = f.info.rate;
	res->input_channels = f.info.channels;
	if (f.info.channels > 1)
		f.energy = &energy;
	fit_model_init(model, pow(10.0, ceiling_dbtp / 20.0));
	if ((rc = scan(&f, model, &samples)) < 0)
		goto done;
	res->input_frames = f.input_frames;
	res->output_samples = samples;
	res->duration_ms = (uint32_t)((samples * 1000 + CODEC_OUTPUT_RATE / 2) / CODEC_OUTPUT_RATE);
	if (f.input_frames * 1000 < (uint64_t)opt->min_duration_ms * f.info.rate || samples == 0) {
		rc = CODEC_ETOOSHORT;
		goto done;
	}
	res->fit_passes = 1;
	int solo = mix_energy_solo(&energy, f.info.channels, f.info.lfe_channel);
	res->downmix_channel = solo;
	if (solo >= 0) {
		bool nonzero = f.nonzero;
		front_close(&f);
		if ((rc = model_pass(src, opt, solo, model, ceiling_dbtp, 0, grid)) < 0)
			goto done;
		res->fit_passes++;
		f.nonzero = nonzero;
	} else {
		fit_model_finish(model, grid);
	}
	res->input_lufs = fit_model_input_lufs(model);
	if (!f.nonzero || !isfinite(res->input_lufs))
		rc = CODEC_ESILENT;
done:
	front_close(&f);
	return rc;
}

/*
 * Encode at `gain_db` through a limiter at `ceiling_dbtp`, decoding every packet. Then correct
 * the decoded loudness towards `goal` with OpusHead's output gain, as far as the decoded true
 * peak leaves room under the requested ceiling.
 */
static int encode(const codec_source *src, const codec_sink *sink, const codec_options *opt,
		  double gain_db, double ceiling_dbtp, double goal, codec_result *res)
{
	back *b = calloc(1, sizeof *b);
	if (!b)
		return CODEC_ENOMEM;
	b->total = res->output_samples;
	int rc = encoder_setup(b, opt);
	if (rc < 0)
		goto done;
	if ((rc = outcheck_init(&b->check, b->preskip, b->total)) < 0)
		goto done;
	b->check_ready = true;
	if ((rc = ogg_mux_init(&b->mux, sink, pick_serial(opt))) < 0)
		goto done;
	b->mux_ready = true;

	char c_dur[64], c_lufs[64], c_gain[64];
	snprintf(c_dur, sizeof c_dur, "JIAYIN_DURATION_MS=%u", res->duration_ms);
	snprintf(c_lufs, sizeof c_lufs, "JIAYIN_INPUT_LUFS=%.2f", res->input_lufs);
	snprintf(c_gain, sizeof c_gain, "JIAYIN_GAIN_DB=%.2f", gain_db);
	const char *comments[] = {c_dur, c_lufs, c_gain};
	if ((rc = ogg_mux_headers(&b->mux, (uint16_t)b->preskip, res->input_rate, comments, 3)) < 0)
		goto done;
	rc = run_limited(src, opt, res->downmix_channel, gain_db, ceiling_dbtp, b->total,
			 back_consume, b, &res->limiter_max_db);
	if (rc == 0)
		rc = back_finish(b);
	if (rc < 0)
		goto done;
	res->encodes++;
	res->gain_db = gain_db;
	res->codec_loss_db = outcheck_loss_db(&b->check);
	double peak = outcheck_peak_dbtp(&b->check);
	double lufs = outcheck_lufs(&b->check);
	if (!isfinite(lufs)) {
		/* Nothing above the gate survived coding (a lone click the limiter took, sound
		 * over Opus's band): a player would hear silence. */
		rc = CODEC_ESILENT;
		goto done;
	}
	double h = fmin(goal - lufs, opt->true_peak_dbtp - PEAK_SLACK_DB - peak);
	int q8 = (int)floor(h * 256.0); /* rounded down: never over the peak ceiling */
	if (q8 < -32768)
		q8 = -32768;
	if (q8 > 32767)
		q8 = 32767;
	if (!sink->patch)
		q8 = 0;
	if (q8 != 0 && (rc = ogg_mux_set_gain(&b->mux, (int16_t)q8)) < 0)
		goto done;
	res->header_gain_db = q8 / 256.0;
	res->output_lufs = lufs + res->header_gain_db;
	res->output_peak_dbtp = peak + res->header_gain_db;
	res->output_bytes = b->mux.bytes;
	res->preskip = b->preskip;
	for (int i = 0; i < CODEC_WAVEFORM_POINTS; i++) {
		double v = b->wave_peak[i] * 255.0 + 0.5;
		res->waveform[i] = (uint8_t)(v > 255 ? 255 : v);
	}
done:
	back_close(b);
	free(b);
	return rc;
}

/*
 * Denormals flushed to zero, in the calling thread, while a clip is transcoded: samples of
 * denormal numbers (a float editor's fade-out or reverb tail, or a crafted upload), and digital
 * silence after a sound, which the IIR stages (K-weighting, DC blocker, phase rotator) decay
 * through, made each operation on them dozens of times slower: 60 s of 44.1 kHz stereo whose
 * last 54 s were denormals took 4.9x the time of the same clip with quiet noise there, zeros
 * there 2.4x (medians of 3), a cheap way to tie up a transcode thread. Numbers under 2^-126
 * (-758 dBFS) change nothing audible; the caller's mode is given back.
 */
#if defined(__SSE2__) || defined(__x86_64__)
typedef unsigned fp_mode;
static fp_mode fp_flush_denormals(void)
{
	unsigned m = _mm_getcsr();
	_mm_setcsr(m | 0x8040u); /* FTZ (bit 15) and DAZ (bit 6) */
	return m;
}
static void fp_restore(fp_mode m)
{
	_mm_setcsr(m);
}
#elif defined(__aarch64__)
typedef uint64_t fp_mode;
static fp_mode fp_flush_denormals(void)
{
	uint64_t m;
	__asm__ volatile("mrs %0, fpcr" : "=r"(m));
	__asm__ volatile("msr fpcr, %0" : : "r"(m | (UINT64_C(1) << 24))); /* FZ */
	return m;
}
static void fp_restore(fp_mode m)
{
	__asm__ volatile("msr fpcr, %0" : : "r"(m));
}
#else
typedef int fp_mode;
static fp_mode fp_flush_denormals(void)
{
	return 0;
}
static void fp_restore(fp_mode m)
{
	(void)m;
}
#endif

static int transcode(const codec_source *src, const codec_sink *sink, const codec_options *opt,
                     codec_result *res);

int codec_transcode(const codec_source *src, const codec_sink *sink, const codec_options *opt,
		    codec_result *res)
{
	fp_mode mode = fp_flush_denormals();
	int rc = transcode(src, sink, opt, res);
	fp_restore(mode);
	return rc;
}

static int transcode(const codec_source *src, const codec_sink *sink, const codec_options *opt,
                     codec_result *res)
{
	codec_options defaults;
	codec_result local;
	if (!opt) {
		codec_options_init(&defaults);
		opt = &defaults;
	}
	if (!res)
		res = &local;
	memset(res, 0, sizeof *res);
	res->downmix_channel = -1;
	if (!src || !src->read || !src->seek || !sink || !sink->write ||
	    codec_options_check(opt) < 0)
		return CODEC_EINVAL;
	double grid[FIT_GRID];
	fit_model *model = malloc(sizeof *model);
	if (!model)
		return CODEC_ENOMEM;
	int rc = measure_input(src, opt, res, model, opt->true_peak_dbtp - PEAK_MARGIN_DB, grid);
	if (rc < 0)
		goto done;

	/*
	 * The gain cap bounds how much louder the file may be than the input: a quiet room is
	 * not turned into roaring noise. Within it, limiter and codec losses are made up for.
	 */
	double goal = fmin(opt->target_lufs, res->input_lufs + opt->max_gain_db);
	double target = goal;           /* what the encoder's input should measure */
	double margin = PEAK_MARGIN_DB; /* limiter ceiling under the requested true peak */
	/*
	 * Even the grid's quietest gain (-30 dB) leaves the clip over the target (float input
	 * over full scale, an Opus header gain): pick_gain could only answer the most it allows,
	 * 18 dB into the limiter (speech at +38 LUFS was limited by 16 dB). The grid is moved to
	 * centre on the gain that reaches the goal without limiting, and the model run again.
	 */
	double offset = 0;
	if (isfinite(grid[0]) && grid[0] > goal + FIT_AIM_HIGH_LU) {
		offset = goal - res->input_lufs;
		if ((rc = model_pass(src, opt, res->downmix_channel, model,
		                     opt->true_peak_dbtp - margin, offset, grid)) < 0)
			goto done;
		res->fit_passes++;
	}
	double best_gain = 0, best_ceiling = 0, best_lufs = -HUGE_VAL; /* the loudest encode */
	for (;;) {
		double ceiling = opt->true_peak_dbtp - margin;
		/*
		 * Aim a little high: the output gain can always take loudness away. What a retry
		 * lowers the ceiling by, the output gain gives back to all the rest: the bound on
		 * what goes into the limiter shrinks by as much (a whisper before a cough was
		 * raised 46 dB, the cough limited by 40, where 18 past the unlimited gain is the
		 * bound).
		 */
		bool capped;
		double gain = pick_gain(grid, offset, res->input_lufs, target + FIT_AIM_HIGH_LU,
		                        FIT_MAX_EXTRA_DB - (margin - PEAK_MARGIN_DB), &capped);
		rc = encode(src, sink, opt, gain, ceiling, goal, res);
		if (rc == CODEC_ESILENT && best_lufs > -HUGE_VAL)
			break; /* this retry lost everything: the loudest encode again, below */
		if (rc < 0)
			goto done;
		if (res->output_lufs >= best_lufs) {
			best_gain = gain;
			best_ceiling = ceiling;
			best_lufs = res->output_lufs;
		}
		/* The output gain left it short of the goal: its peaks allowed no more. */
		double short_by = goal - res->output_lufs;
		/* At the bound, a lower ceiling gives the same file, its peaks limited deeper. */
		if (short_by <= CODEC_TOLERANCE_LU || capped || res->encodes >= MAX_ENCODES ||
		    !sink->reset)
			break;
		if ((rc = sink->reset(sink->ctx)) < 0)
			goto done;
		/* Limit harder at the same loudness: a lower ceiling, a target net of codec loss. */
		margin += short_by + 0.2;
		target = goal - res->codec_loss_db;
		if ((rc = model_pass(src, opt, res->downmix_channel, model,
		                     opt->true_peak_dbtp - margin, offset, grid)) < 0)
			goto done;
		res->fit_passes++;
	}
	/*
	 * A retry limits harder at a lower ceiling, which takes loudness where the peaks are all
	 * there is (a lone click in silence: -33 LUFS, then -34, then nothing above the gate).
	 * The file kept is the loudest encode, made again when a later one came out quieter.
	 */
	if (rc == CODEC_ESILENT || res->output_lufs < best_lufs) {
		if ((rc = sink->reset(sink->ctx)) < 0)
			goto done;
		rc = encode(src, sink, opt, best_gain, best_ceiling, goal, res);
	}
done:
	free(model);
	return rc;
}
