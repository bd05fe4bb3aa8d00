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
#define QCAP (FIT_LOOK + 2)

_Static_assert(FIT_LANES % 8 == 0, "candidates are advanced eight at a time");

_Static_assert(GATE_SUB % FIT_BLOCK == 0, "a sub-block is a whole number of gain blocks");

void fit_model_init(fit_model *m, double ceiling)
{
	memset(m, 0, sizeof *m);
	m->ceiling = (float)ceiling;
	m->release = (float)(1.0 - exp(-(double)FIT_BLOCK / (LIMITER_RELEASE_S * 48000)));
	tp_init(&m->tp);
	meter_init(&m->input);
	for (int k = 0; k < FIT_LANES; k++) {
		m->env[k] = 1.0f;
		for (int i = 0; i <= FIT_LOOK; i++)
			m->box[i][k] = 1.0f;
		if (k >= FIT_GRID)
			continue; /* padding lanes: gain 0, never limited, never counted */
		gate_init(&m->cand[k].gate, GATE_COARSE, m->cand[k].hist_energy,
			  m->cand[k].hist_count);
	}
	fit_model_shift(m, 0); /* the grid's gains as they are */
}

void fit_model_shift(fit_model *m, double offset_db)
{
	for (int k = 0; k < FIT_GRID; k++) {
		m->amp[k] = (float)pow(10.0, (fit_grid_gain(k) + offset_db) / 20.0);
		m->pow[k] = m->amp[k] * m->amp[k];
	}
}

/*
 * A gain block is complete: advance every candidate by one block, as limiter.c does per
 * sample. The limiter's sliding minimum of required gains over the look-ahead window is, for
 * a candidate of gain a, min(1, ceiling / (a * P)) with P the window's largest block peak, so
 * one maximum serves every candidate and the rest is the same arithmetic in every lane.
 */
CODEC_CLONES static void block_done(fit_model *m, bool real)
{
	uint32_t j = m->nblk++;
	m->blk_energy_q[j % QCAP] = real ? m->blk_energy : -1.0; /* -1: past the end */
	m->blk_peak_q[j % QCAP] = m->blk_peak;
	m->blk_peak = 0;
	m->blk_energy = 0;
	if (j < FIT_LOOK)
		return; /* the first gains are for blocks before the start */
	double e = m->blk_energy_q[(j - FIT_LOOK) % QCAP];
	bool counted = e >= 0;
	bool sub_end = counted && (j - FIT_LOOK + 1) % BLOCKS_PER_SUB == 0;
	float peak = 0;
	for (int i = 0; i < QCAP; i++)
		peak = m->blk_peak_q[i] > peak ? m->blk_peak_q[i] : peak;
	const float ceiling = m->ceiling, release = m->release;
	float *slot = m->box[j % (FIT_LOOK + 1)];
	for (int k = 0; k < FIT_LANES; k += 8) {
		v8sf amp, env, p, w, stepped;
		memcpy(&amp, m->amp + k, sizeof amp);
		memcpy(&env, m->env + k, sizeof env);
		/* ceiling / max(p, ceiling): ceiling / p over the ceiling, exactly 1 under it. */
		p = peak * amp;
		w = ceiling / V8_SELECT(p > ceiling, p, (v8sf){0} + ceiling);
		stepped = env + (w - env) * release;
		env = V8_SELECT(w < env, w, stepped);
		/* Snapped to 1 near it: float steps would otherwise stall just under 1. */
		env = V8_SELECT((w == 1.0f) & (env > 0.9999f), (v8sf){0} + 1.0f, env);
		memcpy(m->env + k, &env, sizeof env);
		memcpy(slot + k, &env, sizeof env);
	}
	if (counted) {
		for (int k = 0; k < FIT_LANES; k++) {
			float sum = 0;
			for (int i = 0; i <= FIT_LOOK; i++)
				sum += m->box[i][k];
			float gain = sum * (1.0f / (FIT_LOOK + 1));
			m->sub_energy[k] += e * m->pow[k] * gain * gain;
		}
		m->input.gate.sub_now += e;
	}
	if (!sub_end)
		return;
	gate_close_sub(&m->input.gate);
	for (int k = 0; k < FIT_GRID; k++) {
		m->cand[k].gate.sub_now = m->sub_energy[k];
		m->sub_energy[k] = 0;
		gate_close_sub(&m->cand[k].gate);
	}
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
