/*
 * outcheck.c — measures what Opus did to the loudness and peaks of our signal.
 *
 * Lossy coding at 24 kb/s changes loudness (SILK loses energy on noise-like signals: up to
 * 3 LU on white noise) and moves peaks (1-2 dB over the limiter's ceiling on speech), so the
 * pipeline cannot know the file's loudness and peak from its own signal: every packet is
 * decoded as it is made. This costs ~28% of the encode with Debian's libopus; decoding a
 * sample (1 s in 4 with fresh decoders) was tried and missed the highest peak by up to 1.4 dB,
 * so it could not keep the true-peak promise.
 */
#include "dsp.h"

#include <ebur128.h>
#include <math.h>
#include <opus.h>
#include <string.h>

static const double k1_b[3] = {1.53512485958697, -2.69169618940638, 1.19839281085285};
static const double k1_a[2] = {-1.69065929318241, 0.73248077421585};
static const double k2_b[3] = {1.0, -2.0, 1.0};
static const double k2_a[2] = {-1.99004745483398, 0.99007225036621};

void kweight_add(kweight *k, const float *x, size_t n, double *sum)
{
	double e = *sum;
	double a0 = k->s1[0], a1 = k->s1[1], c0 = k->s2[0], c1 = k->s2[1];
	for (size_t i = 0; i < n; i++) {
		/* Transposed direct form II, two stages. */
		double in = x[i];
		double y1 = k1_b[0] * in + a0;
		a0 = k1_b[1] * in - k1_a[0] * y1 + a1;
		a1 = k1_b[2] * in - k1_a[1] * y1;
		double y2 = k2_b[0] * y1 + c0;
		c0 = k2_b[1] * y1 - k2_a[0] * y2 + c1;
		c1 = k2_b[2] * y1 - k2_a[1] * y2;
		e += y2 * y2;
	}
	k->s1[0] = a0;
	k->s1[1] = a1;
	k->s2[0] = c0;
	k->s2[1] = c1;
	*sum = e;
}

double kweight_energy(kweight *k, const float *x, size_t n)
{
	double e = 0;
	kweight_add(k, x, n, &e);
	return e;
}

int outcheck_init(outcheck *c, uint32_t preskip, uint64_t total)
{
	int err;
	memset(c, 0, sizeof *c);
	c->preskip = preskip;
	c->total = total;
	tp_init(&c->tp);
	c->meter = ebur128_init(1, CODEC_OUTPUT_RATE, EBUR128_MODE_I | EBUR128_MODE_HISTOGRAM);
	if (!c->meter)
		return CODEC_ENOMEM;
	c->dec = opus_decoder_create(CODEC_OUTPUT_RATE, 1, &err);
	if (err == OPUS_ALLOC_FAIL || !c->dec)
		return CODEC_ENOMEM;
	return err == OPUS_OK ? 0 : CODEC_EENCODE;
}

void outcheck_free(outcheck *c)
{
	if (c->dec)
		opus_decoder_destroy(c->dec);
	if (c->meter)
		ebur128_destroy(&c->meter);
	c->dec = NULL;
}

void outcheck_input(outcheck *c, const float *x, size_t n)
{
	c->ref_energy += kweight_energy(&c->k_in, x, n);
	c->in_pos += n;
}

int outcheck_packet(outcheck *c, uint64_t index, const uint8_t *pkt, size_t len)
{
	int n = opus_decode_float(c->dec, pkt, (opus_int32)len, c->pcm, CODEC_FRAME_SAMPLES, 0);
	if (n != CODEC_FRAME_SAMPLES)
		return CODEC_EENCODE; /* our own packet does not decode: a bug, not the input */
	/* Only decoded samples that stand for real input count. */
	uint64_t first = index * CODEC_FRAME_SAMPLES;
	size_t lo = first < c->preskip ? (size_t)(c->preskip - first) : 0;
	uint64_t end = c->preskip + c->total;
	size_t hi = first >= end ? 0
		    : end - first < CODEC_FRAME_SAMPLES ? (size_t)(end - first)
							: CODEC_FRAME_SAMPLES;
	bool count = lo < hi;
	if (lo > hi)
		lo = hi;
	/* The filter runs over the whole frame; only the real part's energy counts. */
	kweight_energy(&c->k_out, c->pcm, lo);
	double e = kweight_energy(&c->k_out, c->pcm + lo, hi - lo);
	kweight_energy(&c->k_out, c->pcm + hi, CODEC_FRAME_SAMPLES - hi);
	if (count) {
		c->dec_energy += e;
		if (ebur128_add_frames_float(c->meter, c->pcm + lo, hi - lo) != EBUR128_SUCCESS)
			return CODEC_ENOMEM;
	}
	/* A frame that cannot beat the highest peak so far, even at its worst, is only fed. */
	if (tp_ceiling_of(&c->tp, c->pcm, CODEC_FRAME_SAMPLES) <= c->peak) {
		for (size_t i = 0; i < CODEC_FRAME_SAMPLES; i++)
			tp_feed(&c->tp, c->pcm[i]);
		return 0;
	}
	for (size_t i = 0; i < CODEC_FRAME_SAMPLES; i++) {
		float p = tp_push(&c->tp, c->pcm[i]);
		/* The interval tp_push reports started TP_DELAY samples ago. */
		size_t at = i >= TP_DELAY ? i - TP_DELAY : 0;
		if (count && at >= lo && at < hi && p > c->peak)
			c->peak = p;
	}
	return 0;
}

double outcheck_lufs(const outcheck *c)
{
	double lufs = -HUGE_VAL;
	if (ebur128_loudness_global(c->meter, &lufs) != EBUR128_SUCCESS)
		return -HUGE_VAL;
	return lufs;
}

double outcheck_loss_db(const outcheck *c)
{
	if (c->ref_energy <= 0 || c->dec_energy <= 0)
		return 0;
	return 10 * log10(c->dec_energy / c->ref_energy);
}

double outcheck_peak_dbtp(const outcheck *c)
{
	return c->peak > 0 ? 20 * log10(c->peak) : -HUGE_VAL;
}
