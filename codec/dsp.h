/*
 * dsp.h — the signal stages between the decoders and the encoder (private to codec/):
 * the downmix, the soxr resampler to 48 kHz, and the look-ahead true-peak limiter.
 * Each stage is a plain struct owned by one pipeline; none allocates per call.
 */
#ifndef JIAYIN_CODEC_DSP_H
#define JIAYIN_CODEC_DSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* Mono downmix of interleaved frames: the mean of all channels except the LFE (lfe < 0: none). */
void downmix(const float *in, size_t frames, unsigned channels, int lfe, float *out);

/* Streaming resampler from `rate` to 48 kHz (soxr HQ); a straight copy when rate is 48 kHz. */
typedef struct resampler {
	struct soxr *soxr;
	uint32_t rate;
} resampler;

int resampler_init(resampler *r, uint32_t rate);
void resampler_free(resampler *r);
/* Most output frames that `in_frames` input frames can produce in one resampler_run call. */
size_t resampler_max_out(const resampler *r, size_t in_frames);
/*
 * Resample from in[0..n) into out[0..cap): *in_used frames were taken, *out_n produced. Call
 * again with the rest when *in_used < n (the output was full). in == NULL flushes the tail:
 * call until *out_n == 0.
 */
int resampler_run(resampler *r, const float *in, size_t n, float *out, size_t cap,
		  size_t *out_n, size_t *in_used);

/*
 * True-peak detector: the peak of each inter-sample interval, estimated with 4x polyphase
 * oversampling (a windowed-sinc interpolator). tp_push(x[n]) returns the peak of the interval
 * that starts TP_DELAY samples before x[n]. Used by the limiter and by the encoded-output check.
 */
#define TP_TAPS 12            /* per polyphase branch */
#define TP_DELAY (TP_TAPS / 2) /* samples of delay of the interpolator */

typedef struct tp_detector {
	float coef[3][TP_TAPS];
	float hist[2 * TP_TAPS]; /* doubled ring: hist[w..w+TAPS) are the newest samples */
	unsigned w;
} tp_detector;

void tp_init(tp_detector *t);
float tp_push(tp_detector *t, float x);

/*
 * True-peak limiter. The gain needed to keep each interval's true peak under the ceiling is
 * spread backwards over a look-ahead window (a sliding minimum then a moving average: a linear
 * attack that reaches the needed gain exactly when the peak arrives) and recovers with an
 * exponential release. Output is the input delayed by limiter_latency() samples.
 */
#define LIMITER_LOOKAHEAD 96    /* 2 ms at 48 kHz: the attack time */
#define LIMITER_RELEASE_S 0.020 /* release time constant */

typedef struct limiter {
	float ceiling;
	float release; /* per-sample smoothing coefficient */
	tp_detector tp;
	/* Sliding minimum of the required gain over LIMITER_LOOKAHEAD + 2 intervals. */
	float minq_val[LIMITER_LOOKAHEAD + 4];
	uint64_t minq_idx[LIMITER_LOOKAHEAD + 4];
	unsigned minq_head, minq_len;
	float env; /* released envelope */
	float box[LIMITER_LOOKAHEAD + 1];
	double box_sum;
	unsigned box_pos;
	float delay[TP_DELAY + LIMITER_LOOKAHEAD];
	unsigned delay_pos;
	uint64_t n;     /* samples pushed */
	float min_gain; /* deepest reduction applied so far */
} limiter;

void limiter_init(limiter *l, double ceiling_linear, unsigned rate);
static inline unsigned limiter_latency(void)
{
	return TP_DELAY + LIMITER_LOOKAHEAD;
}
/* out[i] is the limited input from limiter_latency() samples earlier; in and out may alias. */
void limiter_run(limiter *l, const float *in, float *out, size_t n);

/* BS.1770 K-weighting at 48 kHz (the two biquads of ITU-R BS.1770-4, table 1 and 2). */
typedef struct kweight {
	double s1[2], s2[2];
} kweight;
/* Sum of the squares of the K-weighted samples. */
double kweight_energy(kweight *k, const float *x, size_t n);

/*
 * The check of the encoded output: every packet is decoded as it is made, and the K-weighted
 * energy and true peak of the decoded samples are compared with what went into the encoder.
 */
typedef struct outcheck {
	struct OpusDecoder *dec;
	uint32_t preskip;
	uint64_t total;  /* real samples in the stream */
	uint64_t in_pos; /* encoder input samples seen */
	kweight k_in, k_out;
	tp_detector tp;
	double ref_energy, dec_energy;
	float peak;
	float pcm[CODEC_FRAME_SAMPLES];
} outcheck;

int outcheck_init(outcheck *c, uint32_t preskip, uint64_t total);
void outcheck_free(outcheck *c);
/* Real samples as they enter the encoder. */
void outcheck_input(outcheck *c, const float *x, size_t n);
/* The packet encoded for frame `index` (0-based), decoded and measured. */
int outcheck_packet(outcheck *c, uint64_t index, const uint8_t *pkt, size_t len);
/* Loudness change through the codec in dB (decoded vs input energy), 0 when unmeasured. */
double outcheck_loss_db(const outcheck *c);
/* True peak of the decoded samples checked, in dBTP. */
double outcheck_peak_dbtp(const outcheck *c);

#endif
