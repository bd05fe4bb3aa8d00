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

#define MINQ_CAP (LIMITER_LOOKAHEAD + 4)

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
	l->ones = LIMITER_LOOKAHEAD + 1;
	l->idle = true;
	l->q.len = 1; /* one "gain 1" entry: the state an idle limiter keeps */
	l->minq_val[0] = 1.0f;
}

#define SKIP_BLOCK 32 /* samples judged at once for the skips below */

void limiter_run(limiter *l, const float *in, float *out, size_t n)
{
	const unsigned dsize = TP_DELAY + LIMITER_LOOKAHEAD;
	float peaks[SKIP_BLOCK];
	for (size_t base = 0; base < n; base += SKIP_BLOCK) {
		size_t len = n - base < SKIP_BLOCK ? n - base : SKIP_BLOCK;
		/* A block that cannot reach the ceiling even at its worst needs no interpolation:
		 * its required gain is 1 (exact, by the bound; quiet speech is most samples). */
		bool quiet = tp_ceiling_of(&l->tp, in + base, len) < l->ceiling;
		if (quiet)
			tp_skip(&l->tp, in + base, len);
		else
			tp_run(&l->tp, in + base, len, peaks);
		if (quiet && l->idle) {
			/* Gain 1 in, gain 1 in the whole window, fully released: only the delay. */
			for (size_t i = base; i < base + len; i++) {
				float delayed = l->delay[l->delay_pos];
				l->delay[l->delay_pos] = in[i];
				l->delay_pos = l->delay_pos + 1 == dsize ? 0 : l->delay_pos + 1;
				out[i] = delayed;
			}
			/* The window's one entry (gain 1) is replaced by the next push, whatever
			 * its position: every gain is at most 1. */
			l->n += len;
			continue;
		}
		/* The state in locals: stores to out[] could alias it, and it would be reloaded. */
		const float ceiling = l->ceiling, release = l->release;
		float env = l->env, min_gain = l->min_gain;
		double box_sum = l->box_sum;
		unsigned box_pos = l->box_pos, delay_pos = l->delay_pos, ones = l->ones;
		uint64_t k = l->n;
		minq q = l->q;
		bool idle = l->idle;
		for (size_t i = base; i < base + len; i++, k++) {
			float x = in[i];
			float g = 1.0f;
			if (!quiet) {
				float peak = peaks[i - base];
				g = peak > ceiling ? ceiling / peak : 1.0f;
			}

			/* Interval k = n - DELAY is known; env[k - L] = min(g_req[k-L-1 .. k]). */
			uint64_t oldest = k > LIMITER_LOOKAHEAD + 1 ? k - LIMITER_LOOKAHEAD - 1 : 0;
			float w = minq_push(&q, l->minq_val, l->minq_idx, MINQ_CAP, k, g, oldest);
			if (w < env)
				env = w;
			else
				env += (w - env) * release;
			if (w == 1.0f && env > 0.9999f)
				env = 1.0f; /* float steps would otherwise stall just under 1 */

			/* Moving average over the last L+1 envelope values: the gain for sample k - L. */
			box_sum += (double)env - l->box[box_pos];
			l->box[box_pos] = env;
			box_pos = box_pos == LIMITER_LOOKAHEAD ? 0 : box_pos + 1;
			/* L+1 envelope values of 1 with a window of gains of 1: idle, and the sum is
			 * exact again (it drifts by rounding while the gain moves). */
			ones = env == 1.0f ? ones + 1 : 0;
			idle = w == 1.0f && ones > LIMITER_LOOKAHEAD;
			if (idle)
				box_sum = LIMITER_LOOKAHEAD + 1;
			float gain = (float)(box_sum * (1.0 / (LIMITER_LOOKAHEAD + 1)));
			if (gain > 1.0f)
				gain = 1.0f;
			if (gain < min_gain)
				min_gain = gain;

			/* The slot read before it is written held x from DELAY + L samples ago. */
			float delayed = l->delay[delay_pos];
			l->delay[delay_pos] = x;
			delay_pos = delay_pos + 1 == dsize ? 0 : delay_pos + 1;
			out[i] = delayed * gain;
		}
		l->env = env;
		l->min_gain = min_gain;
		l->box_sum = box_sum;
		l->box_pos = box_pos;
		l->delay_pos = delay_pos;
		l->ones = ones;
		l->n = k;
		l->q = q;
		l->idle = idle;
	}
}
