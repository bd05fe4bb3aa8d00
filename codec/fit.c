/*
 * fit.c — loudness after gain and limiter, modelled for a whole grid of gains in one pass.
 *
 * Finding the gain that lands a limited signal on its loudness target by trial needs a pass
 * per try (a secant search took 4-11 on speech). Here the expensive parts are shared: one
 * true-peak detector and one K-weighting filter run on the unscaled signal; each candidate gain
 * then runs the limiter's envelope logic (sliding minimum, release, moving average; see
 * limiter.c) on FIT_BLOCK-sample blocks, and gated loudness is kept in a histogram. K-weighting
 * is applied before the gain instead of after: the gain moves slowly next to the filter's
 * response, and the pipeline measures the real encoded result afterwards anyway.
 */
#include "dsp.h"

#include <math.h>
#include <string.h>

#define BLOCKS_PER_SUB (GATE_SUB / FIT_BLOCK)
#define MINQ_CAP (FIT_LOOK + 4)
#define QCAP (FIT_LOOK + 2)

_Static_assert(GATE_SUB % FIT_BLOCK == 0, "a sub-block is a whole number of gain blocks");

void fit_model_init(fit_model *m, double ceiling)
{
	memset(m, 0, sizeof *m);
	m->ceiling = (float)ceiling;
	m->release = (float)(1.0 - exp(-(double)FIT_BLOCK / (LIMITER_RELEASE_S * 48000)));
	tp_init(&m->tp);
	meter_init(&m->input);
	for (int k = 0; k < FIT_GRID; k++) {
		fit_candidate *c = &m->cand[k];
		c->env = 1.0f;
		c->q.len = 1; /* one "gain 1" entry: the state an idle candidate keeps */
		c->minq_val[0] = 1.0f;
		c->idle = true;
		gate_init(&c->gate, GATE_COARSE, c->hist_energy, c->hist_count);
		for (int i = 0; i <= FIT_LOOK; i++)
			c->box[i] = 1.0f;
		m->amp[k] = (float)pow(10.0, fit_grid_gain(k) / 20.0);
		m->pow[k] = m->amp[k] * m->amp[k];
	}
}

/*
 * A gain block is complete: advance every candidate by one block. An idle candidate (gain 1,
 * nothing pending) only gathers the block's energy times its gain squared; that is kept as a
 * difference of the sub-block's running energy sum (idle_from), so the low gains that never
 * limit cost nothing per block: they are a prefix of the grid, skipped in one comparison.
 */
static void block_done(fit_model *m, bool real)
{
	uint32_t j = m->nblk++;
	m->blk_energy_q[j % QCAP] = real ? m->blk_energy : -1.0; /* -1: past the end */
	float peak = m->blk_peak;
	m->blk_peak = 0;
	m->blk_energy = 0;
	if (j < FIT_LOOK)
		return; /* the first gains are for blocks before the start */
	double e = m->blk_energy_q[(j - FIT_LOOK) % QCAP];
	bool counted = e >= 0;
	bool sub_end = counted && (j - FIT_LOOK + 1) % BLOCKS_PER_SUB == 0;
	double before = m->sub_energy; /* the sub-block's energy before this block */
	if (counted) {
		m->input.gate.sub_now += e;
		m->sub_energy += e;
	}
	int k = 0;
	while (k < FIT_GRID && m->cand[k].idle && peak * m->amp[k] <= m->ceiling)
		k++;
	for (; k < FIT_GRID; k++) {
		fit_candidate *c = &m->cand[k];
		float p = peak * m->amp[k];
		float g = p > m->ceiling ? m->ceiling / p : 1.0f;
		if (c->idle) {
			if (g == 1.0f)
				continue; /* still idle: its energy is gathered lazily */
			/* Its idle blocks' energy up to this one; its window holds only 1s. */
			c->gate.sub_now += m->pow[k] * (before - c->idle_from);
		}
		uint64_t oldest = j > FIT_LOOK + 1 ? j - FIT_LOOK - 1 : 0;
		float w = minq_push(&c->q, c->minq_val, c->minq_idx, MINQ_CAP, j, g, oldest);
		if (w < c->env)
			c->env = w;
		else
			c->env += (w - c->env) * m->release;
		if (w == 1.0f && c->env > 0.9999f)
			c->env = 1.0f; /* float steps would otherwise stall just under 1 */
		c->box[j % (FIT_LOOK + 1)] = c->env;
		float sum = 0;
		for (int i = 0; i <= FIT_LOOK; i++)
			sum += c->box[i];
		float gain = sum * (1.0f / (FIT_LOOK + 1));
		if (counted)
			c->gate.sub_now += e * m->pow[k] * gain * gain;
		/* Idle again once the window holds only 1s and the envelope has fully recovered
		 * (its queue then holds one entry of 1, which the next push replaces). */
		c->idle = c->q.len == 1 && c->minq_val[c->q.head] == 1.0f &&
			  c->env == 1.0f && sum == (float)(FIT_LOOK + 1);
		if (c->idle)
			c->idle_from = m->sub_energy;
	}
	if (!sub_end)
		return;
	for (k = 0; k < FIT_GRID; k++) {
		fit_candidate *c = &m->cand[k];
		if (c->idle)
			c->gate.sub_now += m->pow[k] * (m->sub_energy - c->idle_from);
		c->idle_from = 0;
		gate_close_sub(&c->gate);
	}
	m->sub_energy = 0;
	gate_close_sub(&m->input.gate);
}

void fit_model_run(fit_model *m, const float *x, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t take = FIT_BLOCK - m->blk_fill;
		if (take > n - i)
			take = n - i;
		float p = tp_run_max(&m->tp, x + i, take);
		if (p > m->blk_peak)
			m->blk_peak = p;
		kweight_add(&m->kw, x + i, take, &m->blk_energy);
		m->blk_fill += (unsigned)take;
		i += take;
		if (m->blk_fill == FIT_BLOCK) {
			m->blk_fill = 0;
			block_done(m, true);
		}
	}
}

void fit_model_finish(fit_model *m, double lufs[FIT_GRID])
{
	/* Let the look-ahead see past the end; a partial sub-block is not gated (as BS.1770). */
	if (m->blk_fill > 0) {
		m->blk_fill = 0;
		block_done(m, true);
	}
	for (int i = 0; i <= FIT_LOOK; i++)
		block_done(m, false);
	for (int k = 0; k < FIT_GRID; k++)
		lufs[k] = gate_lufs(&m->cand[k].gate);
}

double fit_model_input_lufs(const fit_model *m)
{
	return gate_lufs(&m->input.gate);
}
