/*
 * limiter.c — the look-ahead true-peak limiter (see dsp.h for the design).
 *
 * Index conventions: interval k is the stretch between samples k and k+1; g_req[k] is the
 * gain that keeps its oversampled peak under the ceiling. Sample m touches intervals m-1 and
 * m, so env[k] = min(g_req[k-1 .. k+L]) released, and gain[m] = mean(env[m-L .. m]) is at most
 * both g_req[m-1] and g_req[m]: every peak is under the ceiling, reached by a linear ramp of
 * L samples, with no discontinuity in the gain.
 */
#include "dsp.h"

#include <math.h>
#include <string.h>

#define OVERSAMPLE 4
#define FIR_LEN (OVERSAMPLE * TP_TAPS + 1) /* odd, centred on a multiple of 4 */
#define MINQ_CAP (LIMITER_LOOKAHEAD + 4)

void tp_init(tp_detector *t)
{
	memset(t, 0, sizeof *t);
	/*
	 * Windowed-sinc interpolator (Blackman window), cut at the input's Nyquist frequency.
	 * Branch 0 reduces to the delayed sample itself, so only branches 1..3 are computed.
	 */
	const int centre = (FIR_LEN - 1) / 2;
	for (int p = 1; p < OVERSAMPLE; p++) {
		for (int j = 0; j < TP_TAPS; j++) {
			int k = OVERSAMPLE * j + p;
			double x = (double)(k - centre) / OVERSAMPLE;
			double sinc = sin(M_PI * x) / (M_PI * x);
			double w = 0.42 - 0.5 * cos(2 * M_PI * k / (FIR_LEN - 1)) +
				   0.08 * cos(4 * M_PI * k / (FIR_LEN - 1));
			/* hist[0] is the newest sample, so tap j multiplies x[n - j]. */
			t->coef[p - 1][j] = (float)(sinc * w);
		}
	}
	/* |sum c_j x_j| <= sum |c_j| * max |x_j|; the sample itself is branch 0, bound 1. */
	t->bound = 1.0f;
	for (int p = 0; p < OVERSAMPLE - 1; p++) {
		float sum = 0;
		for (int j = 0; j < TP_TAPS; j++)
			sum += fabsf(t->coef[p][j]);
		t->bound = sum > t->bound ? sum : t->bound;
	}
	t->bound *= 1.0001f; /* float rounding in the sums */
}

void limiter_init(limiter *l, double ceiling, unsigned rate)
{
	memset(l, 0, sizeof *l);
	l->ceiling = (float)ceiling;
	l->release = (float)(1.0 - exp(-1.0 / (LIMITER_RELEASE_S * rate)));
	tp_init(&l->tp);
	l->env = 1.0f;
	for (unsigned i = 0; i <= LIMITER_LOOKAHEAD; i++)
		l->box[i] = 1.0f;
	l->box_sum = LIMITER_LOOKAHEAD + 1;
	l->min_gain = 1.0f;
}

#define SKIP_BLOCK 32 /* samples judged at once for the skip below */

void limiter_run(limiter *l, const float *in, float *out, size_t n)
{
	const unsigned dsize = TP_DELAY + LIMITER_LOOKAHEAD;
	for (size_t base = 0; base < n; base += SKIP_BLOCK) {
		size_t len = n - base < SKIP_BLOCK ? n - base : SKIP_BLOCK;
		/* A block that cannot reach the ceiling even at its worst needs no interpolation:
		 * its required gain is 1 (exact, by the bound; quiet speech is most samples). */
		bool quiet = tp_ceiling_of(&l->tp, in + base, len) < l->ceiling;
		for (size_t i = base; i < base + len; i++) {
			float x = in[i];
			float g = 1.0f;
			if (quiet) {
				tp_feed(&l->tp, x);
			} else {
				float peak = tp_push(&l->tp, x);
				g = peak > l->ceiling ? l->ceiling / peak : 1.0f;
			}

			/* Interval k = n - DELAY is known; env[k - L] = min(g_req[k-L-1 .. k]). */
			uint64_t k = l->n;
			uint64_t oldest = k > LIMITER_LOOKAHEAD + 1 ? k - LIMITER_LOOKAHEAD - 1 : 0;
			float w = minq_push(&l->q, l->minq_val, l->minq_idx, MINQ_CAP, k, g, oldest);
			if (w < l->env)
				l->env = w;
			else
				l->env += (w - l->env) * l->release;

			/* Moving average over the last L+1 envelope values: the gain for sample k - L. */
			l->box_sum += (double)l->env - l->box[l->box_pos];
			l->box[l->box_pos] = l->env;
			l->box_pos = l->box_pos == LIMITER_LOOKAHEAD ? 0 : l->box_pos + 1;
			float gain = (float)(l->box_sum * (1.0 / (LIMITER_LOOKAHEAD + 1)));
			if (gain > 1.0f)
				gain = 1.0f;
			if (gain < l->min_gain)
				l->min_gain = gain;

			/* The slot read before it is written held x from DELAY + L samples ago. */
			float delayed = l->delay[l->delay_pos];
			l->delay[l->delay_pos] = x;
			l->delay_pos = l->delay_pos + 1 == dsize ? 0 : l->delay_pos + 1;
			out[i] = delayed * gain;
			l->n++;
		}
	}
}
