/*
 * dsp.h — the signal stages between the decoders and the encoder (private to codec/):
 * the downmix, the soxr resampler to 48 kHz, and the look-ahead true-peak limiter.
 * Each stage is a plain struct owned by one pipeline; none allocates per call.
 */
#ifndef JIAYIN_CODEC_DSP_H
#define JIAYIN_CODEC_DSP_H

#include <stdbool.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"

/*
 * Hot loops written for vector lanes are built for AVX2 too, picked when the program loads
 * (GCC's target_clones: an ifunc, so glibc only). Either build gives the same bytes: the
 * arithmetic is the same and nothing is contracted into FMA (codec/meson.build).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
#define CODEC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CODEC_CLONES
#endif

/* The vectors of those loops (GCC vector extensions; without AVX a v8sf is two SSE halves). */
typedef float v8sf __attribute__((vector_size(8 * sizeof(float))));
typedef int32_t v8si __attribute__((vector_size(8 * sizeof(int32_t))));
typedef double v4df __attribute__((vector_size(4 * sizeof(double))));
typedef double v2df __attribute__((vector_size(2 * sizeof(double))));
/* Lane by lane, mask ? a : b (a comparison of vectors gives the mask). A macro: a function
 * returning a 32-byte vector has no stable ABI without AVX. */
#define V8_SELECT(mask, a, b) ((v8sf)(((mask) & (v8si)(a)) | (~(mask) & (v8si)(b))))

/* Mono downmix of interleaved frames: the mean of all channels except the LFE (lfe < 0: none). */
void downmix(const float *in, size_t frames, unsigned channels, int lfe, float *out);
/* Channel `c` of interleaved frames alone: what is kept of a clip whose mean cancels. */
void downmix_one(const float *in, size_t frames, unsigned channels, unsigned c, float *out);

/*
 * A mean that cancels: channels in opposite phase (a headset or USB mic with one capsule wired
 * inverted) add to near silence. The measuring pass keeps each channel's energy beside the
 * downmix's (running sums of x and x^2: the energy about the mean, so a DC offset that does not
 * cancel hides nothing); when the downmix keeps DOWNMIX_CANCEL_DB less than the channels' mean,
 * the loudest channel is encoded alone (a mix of mismatched twins is a comb filter; one
 * channel is the voice as its capsule heard it). Unrelated channels (two people, independent
 * noise, a 15 ms Haas delay) lose 3 dB in their mean, a wet stereo reverb 3.5, the widest M/S
 * mix (side 6 dB over mid) 7; an inverted twin loses 79 dB (16-bit), 15.5 when 3 dB quieter,
 * 10 when 6 dB quieter (a clean copy 12 dB down either way), 11 when 0.1 ms late.
 */
#define DOWNMIX_CANCEL_DB 10.0

typedef struct mix_energy {
	double sum[CODEC_MAX_CHANNELS], sq[CODEC_MAX_CHANNELS]; /* per channel */
	double mix_sum, mix_sq;                                 /* the downmix */
	uint64_t frames;
} mix_energy;

/* Add `frames` interleaved frames and the downmix made of them. */
void mix_energy_add(mix_energy *e, const float *in, size_t frames, unsigned channels,
		    const float *mix);
/*
 * The channel to encode alone if the downmix cancels, or -1: the loudest but the LFE (of
 * channels within 0.1 dB of each other, the first, so an inverted twin keeps the left).
 */
int mix_energy_solo(const mix_energy *e, unsigned channels, int lfe);

/*
 * DC blocker: a first-order high-pass at DC_BLOCK_HZ, (1 - z^-1) / (1 - a z^-1), before the
 * rotator. A recorder's DC offset (a cheap ADC, a mic's bias) is no sound, and Opus drops it,
 * but before the encoder it is the largest "peak" the limiter sees: speech at -26 LUFS riding
 * on 0.5 of DC was limited by 47 dB and came out at -25 LUFS. Its input state is the mean of
 * the first block, so an offset present from the first sample leaves no step; the K-weighting
 * that measures loudness already cuts far above 5 Hz, so loudness is unchanged.
 */
#define DC_BLOCK_HZ 5.0

typedef struct dc_blocker {
	double a;      /* pole */
	double x1, y1; /* last input and output */
	bool primed;   /* x1 holds the first block's mean */
} dc_blocker;

void dc_blocker_init(dc_blocker *d, uint32_t rate);
void dc_blocker_run(dc_blocker *d, float *x, size_t n);

/*
 * Phase rotator: ROTATOR_STAGES second-order all-pass filters. Voiced speech is lopsided (a
 * sharp glottal pulse per period), so its peaks stand far above its loudness; spreading each
 * pulse over a few milliseconds lowers the peak-to-loudness ratio by several dB without
 * changing the magnitude spectrum, so the limiter has less to do (measured on speech: 13.7 ->
 * 8.3 dB of limiting, and no second encode). Broadcast processors have done this for decades.
 */
#define ROTATOR_STAGES 4
#define ROTATOR_HZ 300.0
#define ROTATOR_Q 0.5

#define ROTATOR_BLOCK 8                     /* samples per matrix step */
#define ROTATOR_ORDER (2 * ROTATOR_STAGES)  /* states of the cascade */

typedef struct rotator {
	double b0, b1; /* all-pass: b2 = 1, a1 = b1, a2 = b0 */
	/* The cascade's state: each stage's two transposed-direct-form-II registers. */
	double s[ROTATOR_ORDER];
	/*
	 * A block of ROTATOR_BLOCK samples at once (the cascade is linear): out[i] =
	 * sum_j C[j][i] s[j] + sum_k D[k][i] x[k], next s[m] = sum_j A[j][m] s[j] + sum_k
	 * B[k][m] x[k]; each column is a vector of lanes. The output is float; the state is
	 * carried in double (in float its rounding reached 6e-5, in double 1e-6).
	 */
	float C[ROTATOR_ORDER][ROTATOR_BLOCK], D[ROTATOR_BLOCK][ROTATOR_BLOCK];
	double A[ROTATOR_ORDER][ROTATOR_ORDER], B[ROTATOR_BLOCK][ROTATOR_ORDER];
} rotator;

void rotator_init(rotator *r, uint32_t rate);
void rotator_run(rotator *r, float *x, size_t n);

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
 * oversampling (a windowed-sinc interpolator), a block of samples at a time (truepeak.c).
 * Pushing x[i] yields the peak of the interval that starts TP_DELAY samples before it. Used by
 * the fit model, the limiter and the encoded-output check.
 */
#define TP_TAPS 12             /* per polyphase branch */
#define TP_DELAY (TP_TAPS / 2) /* samples of delay of the interpolator */
#define TP_HIST (TP_TAPS - 1)  /* past samples an interpolation reaches back to */

typedef struct tp_detector {
	float coef[3][TP_TAPS]; /* coef[p][j] multiplies the sample j before the newest */
	float hist[TP_HIST];    /* the last TP_HIST samples pushed, oldest first */
	float bound; /* no interpolated value exceeds bound * the largest |sample| in the taps */
} tp_detector;

void tp_init(tp_detector *t);
/* Push x[0..n); peaks[i] is the true peak of the interval TP_DELAY samples before x[i]. */
void tp_run(tp_detector *t, const float *x, size_t n, float *peaks);
/* Push x[0..n); the largest of the peaks tp_run would give. */
float tp_run_max(tp_detector *t, const float *x, size_t n);
/* Push x[0..n) without interpolating (when the caller knows nothing can matter). */
void tp_skip(tp_detector *t, const float *x, size_t n);

/*
 * The largest value any interval touching the next n samples x[] can interpolate to: the
 * bound times the largest |sample| among them and the history. Exact skips are built on it.
 */
static inline float tp_ceiling_of(const tp_detector *t, const float *x, size_t n)
{
	float m = 0;
	for (size_t i = 0; i < n; i++)
		m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
	for (int i = 0; i < TP_HIST; i++)
		m = fabsf(t->hist[i]) > m ? fabsf(t->hist[i]) : m;
	return m * t->bound;
}

/*
 * The exact reading of one interval, for the encoded output's check (outcheck.c): 8x
 * oversampling with a 48-tap Kaiser-windowed sinc, flat to 21 kHz. The detector above is cheap
 * enough to run on every sample of every pass, but its 12 taps read an interval of broadband
 * clicks up to 3.4 dB low (measured on Opus-decoded knocks), where ffmpeg's meter does not: a file
 * of knocks in a quiet room measured -0.7 dBTP there while the check said -1.2. It reads only the
 * intervals the cheap detector, TPX_MARGIN higher, puts above the highest peak so far: 131,013 of
 * the 2.88 M of a minute of limited speech, the eight points of an interval one vector.
 */
#define TPX_OVERSAMPLE 8
#define TPX_HALF 24     /* samples on each side of an interval the sinc reaches */
#define TPX_MARGIN 2.0f /* 6 dB: the cheap detector has read an interval 3.4 dB low */

typedef struct tp_exact {
	/* tap[j][p] multiplies x[j + 1 - TPX_HALF] for the point p/8 past x[0], lane 0 being x[0]
	 * itself: the eight points of an interval are one vector, a tap at a time */
	float tap[2 * TPX_HALF][TPX_OVERSAMPLE];
} tp_exact;

void tp_exact_init(tp_exact *e);
/* The peak of the interval from x[0] to x[1], x[0] included; reads x[1 - TPX_HALF .. TPX_HALF]. */
float tp_exact_peak(const tp_exact *e, const float *x);

/*
 * Sliding-window minimum (a monotonic deque on caller-owned ring arrays of `cap` entries):
 * push value `g` for position `j`, drop positions older than `oldest`, return the window's
 * minimum. Amortised O(1). The limiter's (the fit model needs only a block maximum, fit.c).
 */
typedef struct minq {
	unsigned head, len;
} minq;

static inline float minq_push(minq *q, float *val, uint64_t *idx, unsigned cap, uint64_t j,
			      float g, uint64_t oldest)
{
	while (q->len > 0) {
		unsigned tail = (q->head + q->len - 1) % cap;
		if (val[tail] < g)
			break;
		q->len--;
	}
	unsigned slot = (q->head + q->len) % cap;
	val[slot] = g;
	idx[slot] = j;
	q->len++;
	while (idx[q->head] < oldest) {
		q->head = (q->head + 1) % cap;
		q->len--;
	}
	return val[q->head];
}

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
	minq q;
	float minq_val[LIMITER_LOOKAHEAD + 4];
	uint64_t minq_idx[LIMITER_LOOKAHEAD + 4];
	float env; /* released envelope */
	float box[LIMITER_LOOKAHEAD + 1];
	double box_sum;
	unsigned box_pos;
	float delay[TP_DELAY + LIMITER_LOOKAHEAD];
	unsigned delay_pos;
	uint64_t n;     /* samples pushed */
	float min_gain; /* deepest reduction applied so far */
	unsigned ones;  /* envelope values of exactly 1 in a row */
	bool idle;      /* gain 1 throughout the window and the moving average: a fast path */
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
	double x[2], y[2], z[2]; /* input, first and second stage: one and two samples back */
} kweight;

/*
 * BS.1770-4 gating (loudness.c): 400 ms blocks every 100 ms, -70 LUFS absolute and -10 LU
 * relative gates. Energies come in per 100 ms sub-block (GATE_SUB samples at 48 kHz); the
 * relative gate uses a histogram from -70 to +10 LUFS whose bins each keep their blocks' exact
 * energy sum, so memory is constant. The caller owns the bins: fine ones for a meter whose
 * figure is reported, coarse ones for the fit model's many candidates.
 */
#define GATE_SUB 4800
#define GATE_RANGE_LU 80
#define GATE_FINE 100  /* bins per LU of a meter */
#define GATE_COARSE 10 /* bins per LU of a fit candidate */

typedef struct loudness_gate {
	double sub[4];    /* mean energies of the last four sub-blocks */
	double sub_now;   /* K-weighted energy of the sub-block being filled: add to it */
	uint64_t subs;    /* sub-blocks closed */
	double gated_sum; /* blocks over the absolute gate */
	uint64_t gated_count;
	unsigned per_lu;      /* histogram bins per LU */
	double *hist_energy;  /* GATE_RANGE_LU * per_lu bins, zeroed, owned by the caller */
	uint32_t *hist_count;
} loudness_gate;

/* Starts an empty gate over the caller's zeroed bins. */
void gate_init(loudness_gate *g, unsigned per_lu, double *hist_energy, uint32_t *hist_count);
/* The sub-block in sub_now is complete (a partial last one is never closed, as BS.1770). */
void gate_close_sub(loudness_gate *g);
/* Integrated loudness of the closed sub-blocks (LUFS; -HUGE_VAL when all are gated out). */
double gate_lufs(const loudness_gate *g);

/* A whole meter over 48 kHz mono samples: K-weighting, sub-blocks, gating. */
typedef struct loudness_meter {
	kweight kw;
	unsigned fill; /* samples in the current sub-block */
	loudness_gate gate;
	double hist_energy[GATE_RANGE_LU * GATE_FINE];
	uint32_t hist_count[GATE_RANGE_LU * GATE_FINE];
} loudness_meter;

void meter_init(loudness_meter *m);
/* Measures x; returns its K-weighted energy (the sum of squares). */
double meter_add(loudness_meter *m, const float *x, size_t n);

/*
 * The loudness a gain + limiter would give, for a grid of gains at once (fit.c). The limiter's
 * envelope is modelled per candidate at FIT_BLOCK-sample resolution from one shared true-peak
 * detector and one K-weighting filter; the candidates' states are kept one array per quantity,
 * so a block advances them all in vector lanes. Gating follows BS.1770-4 (400 ms blocks every
 * 100 ms, -70 LUFS absolute and -10 LU relative gates) with per-candidate histograms, so memory
 * is constant.
 */
#define FIT_GRID_MIN_DB (-30.0)
#define FIT_GRID_STEP_DB 2.0
#define FIT_GRID 38         /* gains -30 .. +44 dB */
#define FIT_LANES 40        /* FIT_GRID rounded up to whole vectors (the rest have gain 0) */
#define FIT_BLOCK 32        /* samples per modelled gain step */
#define FIT_LOOK (LIMITER_LOOKAHEAD / FIT_BLOCK)

typedef struct fit_gate {
	loudness_gate gate; /* the loudness this candidate's output would measure */
	double hist_energy[GATE_RANGE_LU * GATE_COARSE];
	uint32_t hist_count[GATE_RANGE_LU * GATE_COARSE];
} fit_gate;

typedef struct fit_model {
	float ceiling;
	float release;             /* per block */
	tp_detector tp;
	kweight kw;                /* K-weighting (loudness.c) */
	float blk_peak;            /* true peak of the block being filled */
	double blk_energy;         /* K-weighted energy of the block being filled */
	unsigned blk_fill;
	uint32_t nblk;             /* blocks completed */
	double blk_energy_q[FIT_LOOK + 2]; /* energies waiting for their gain */
	float blk_peak_q[FIT_LOOK + 2];    /* the peaks of the limiter's look-ahead window */
	loudness_meter input;      /* the input's own loudness (no gain, no limiter; kw unused) */
	/* Per candidate: its gain (linear, squared), released envelope, the envelope's last
	 * FIT_LOOK + 1 values (their mean is the gain applied), and this sub-block's energy. */
	float amp[FIT_LANES], pow[FIT_LANES];
	float env[FIT_LANES];
	float box[FIT_LOOK + 1][FIT_LANES];
	double sub_energy[FIT_LANES];
	fit_gate cand[FIT_GRID];
} fit_model;

void fit_model_init(fit_model *m, double ceiling_linear);
/* After fit_model_init: the grid's gains are fit_grid_gain(k) + offset_db (a clip so loud that
 * the grid's quietest gain leaves it over the target is modelled where its gain lies). */
void fit_model_shift(fit_model *m, double offset_db);
void fit_model_run(fit_model *m, const float *x, size_t n);
/* After the last sample: the modelled integrated loudness (LUFS) of each grid gain. */
void fit_model_finish(fit_model *m, double lufs[FIT_GRID]);
/* After fit_model_finish: the input's integrated loudness (LUFS; -HUGE_VAL when gated out). */
double fit_model_input_lufs(const fit_model *m);
static inline double fit_grid_gain(int k)
{
	return FIT_GRID_MIN_DB + FIT_GRID_STEP_DB * k;
}

/* Add the squares of the K-weighted samples to *sum, in order. */
void kweight_add(kweight *k, const float *x, size_t n, double *sum);
/* The same for two signals at once, each with its own filter and sum: the cost of about one. */
void kweight_pair(kweight *ka, const float *a, double *ea, kweight *kb, const float *b,
		  double *eb, size_t n);
/* Sum of the squares of the K-weighted samples. */
double kweight_energy(kweight *k, const float *x, size_t n);

/*
 * The check of the encoded output: every packet is decoded as it is made, and the K-weighted
 * energy and true peak of the decoded samples are compared with what went into the encoder.
 */
#define OC_BACK (2 * TPX_HALF)
#define OC_PENDING (TPX_HALF + TP_DELAY)

typedef struct outcheck {
	struct OpusDecoder *dec;
	uint32_t preskip;
	uint64_t total;  /* real samples in the stream */
	kweight k_in;    /* the encoder's input */
	loudness_meter out;   /* the decoded real samples; its filter also runs over the rest */
	tp_detector tp;
	tp_exact exact;
	double ref_energy, dec_energy;
	float peak;
	/* The last OC_BACK decoded samples of the frame before, this frame, then silence (read
	 * only after the stream's last frame): the exact reading's window. */
	float win[OC_BACK + CODEC_FRAME_SAMPLES + TPX_HALF];
	float peaks[CODEC_FRAME_SAMPLES + TP_DELAY];
	/* Intervals near a frame's end, read once the next frame has been decoded */
	uint64_t pending[OC_PENDING];
	unsigned npending;
} outcheck;

int outcheck_init(outcheck *c, uint32_t preskip, uint64_t total);
void outcheck_free(outcheck *c);
/*
 * The packet encoded from frame `index` (0-based) of the encoder's input, `input` (its
 * CODEC_FRAME_SAMPLES samples, real ones first), decoded and measured.
 */
int outcheck_packet(outcheck *c, uint64_t index, const float *input, const uint8_t *pkt,
		    size_t len);
/* Integrated loudness of the decoded stream (LUFS; -HUGE_VAL for silence). */
double outcheck_lufs(const outcheck *c);
/* Loudness change through the codec in dB (decoded vs input energy), 0 when unmeasured. */
double outcheck_loss_db(const outcheck *c);
/* True peak of the decoded samples checked, in dBTP. */
double outcheck_peak_dbtp(const outcheck *c);

#endif
