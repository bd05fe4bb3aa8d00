/*
 * loudness.c — our BS.1770-4 / EBU R128 integrated loudness meter, mono at 48 kHz.
 *
 * K-weighting is two biquads (BS.1770-4 tables 1 and 2); gating takes 400 ms blocks every
 * 100 ms, drops blocks under -70 LUFS, then blocks 10 LU under the loudness of the rest. The
 * relative gate needs every block's loudness; a histogram keeps, per bin, the exact energy sum
 * and count, so memory stays constant whatever the clip's length and only blocks within one bin
 * (0.01 LU for a meter) of the relative threshold can be misjudged: tests/codec/test_dsp.c
 * checks we agree with libebur128 within 0.1 LU. The fit model and the output check feed it
 * energies they compute anyway, so no second filter runs beside them.
 */
#include "dsp.h"

#include <math.h>
#include <string.h>

static const double k1_b[3] = {1.53512485958697, -2.69169618940638, 1.19839281085285};
static const double k1_a[2] = {-1.69065929318241, 0.73248077421585};
static const double k2_b[3] = {1.0, -2.0, 1.0};
static const double k2_a[2] = {-1.99004745483398, 0.99007225036621};

/*
 * Two independent signals through their own filters at once, one in each lane of a vector, for
 * the price of about one. Direct form I: only one multiply and one subtraction wait for the
 * filter's last output.
 */
void kweight_pair(kweight *ka, const float *a, double *ea, kweight *kb, const float *b,
		  double *eb, size_t n)
{
	v2df x1 = {ka->x[0], kb->x[0]}, x2 = {ka->x[1], kb->x[1]};
	v2df y1 = {ka->y[0], kb->y[0]}, y2 = {ka->y[1], kb->y[1]};
	v2df z1 = {ka->z[0], kb->z[0]}, z2 = {ka->z[1], kb->z[1]};
	v2df e = {*ea, *eb};
	for (size_t i = 0; i < n; i++) {
		v2df in = {a[i], b[i]};
		v2df y = (k1_b[0] * in + k1_b[1] * x1 + k1_b[2] * x2 - k1_a[1] * y2) - k1_a[0] * y1;
		v2df z = (k2_b[0] * y + k2_b[1] * y1 + k2_b[2] * y2 - k2_a[1] * z2) - k2_a[0] * z1;
		x2 = x1;
		x1 = in;
		y2 = y1;
		y1 = y;
		z2 = z1;
		z1 = z;
		e += z * z;
	}
	ka->x[0] = x1[0], ka->x[1] = x2[0], ka->y[0] = y1[0], ka->y[1] = y2[0];
	ka->z[0] = z1[0], ka->z[1] = z2[0];
	kb->x[0] = x1[1], kb->x[1] = x2[1], kb->y[0] = y1[1], kb->y[1] = y2[1];
	kb->z[0] = z1[1], kb->z[1] = z2[1];
	*ea = e[0];
	*eb = e[1];
}

/* One signal: the pair's second lane idles (it costs nothing: the lanes work together). */
void kweight_add(kweight *k, const float *x, size_t n, double *sum)
{
	kweight idle = {{0, 0}, {0, 0}, {0, 0}};
	double unused = 0;
	kweight_pair(k, x, sum, &idle, x, &unused, n);
}

double kweight_energy(kweight *k, const float *x, size_t n)
{
	double e = 0;
	kweight_add(k, x, n, &e);
	return e;
}

void gate_init(loudness_gate *g, unsigned per_lu, double *hist_energy, uint32_t *hist_count)
{
	memset(g, 0, sizeof *g);
	g->per_lu = per_lu;
	g->hist_energy = hist_energy;
	g->hist_count = hist_count;
}

void meter_init(loudness_meter *m)
{
	memset(m, 0, sizeof *m);
	gate_init(&m->gate, GATE_FINE, m->hist_energy, m->hist_count);
}

void gate_close_sub(loudness_gate *g)
{
	g->sub[g->subs++ % 4] = g->sub_now;
	g->sub_now = 0;
	if (g->subs < 4)
		return; /* the first block ends 400 ms in */
	double ms = (g->sub[0] + g->sub[1] + g->sub[2] + g->sub[3]) / (4.0 * GATE_SUB);
	if (ms <= 0)
		return;
	double l = -0.691 + 10 * log10(ms);
	if (l < -70.0)
		return;
	g->gated_sum += ms;
	g->gated_count++;
	int bins = (int)(GATE_RANGE_LU * g->per_lu);
	int bin = (int)((l + 70.0) * g->per_lu);
	if (bin >= bins)
		bin = bins - 1;
	g->hist_energy[bin] += ms;
	g->hist_count[bin]++;
}

double gate_lufs(const loudness_gate *g)
{
	if (g->gated_count == 0)
		return -HUGE_VAL;
	double rel = -0.691 + 10 * log10(g->gated_sum / (double)g->gated_count) - 10.0;
	/*
	 * Bins wholly over the threshold count; the bin holding it counts when its blocks' mean
	 * loudness is over it, so blocks of one level (a steady tone) are judged exactly, and only
	 * blocks within one bin of the threshold can be misjudged.
	 */
	int bins = (int)(GATE_RANGE_LU * g->per_lu);
	int edge = (int)floor((rel + 70.0) * g->per_lu);
	/* Over the top (float input, up to +60 dBFS): the top bin holds every block over +10 LUFS,
	 * the loudest, whose mean is over the threshold; it is judged as the edge. */
	if (edge >= bins)
		edge = bins - 1;
	double sum = 0;
	uint64_t count = 0;
	for (int b = edge < 0 ? 0 : edge; b < bins; b++) {
		if (b == edge && (g->hist_count[b] == 0 ||
				  -0.691 + 10 * log10(g->hist_energy[b] / g->hist_count[b]) <= rel))
			continue;
		sum += g->hist_energy[b];
		count += g->hist_count[b];
	}
	return count > 0 ? -0.691 + 10 * log10(sum / (double)count) : -HUGE_VAL;
}

double meter_add(loudness_meter *m, const float *x, size_t n)
{
	double total = 0;
	while (n > 0) {
		size_t take = GATE_SUB - m->fill;
		if (take > n)
			take = n;
		double e = kweight_energy(&m->kw, x, take);
		m->gate.sub_now += e;
		total += e;
		m->fill += (unsigned)take;
		x += take;
		n -= take;
		if (m->fill == GATE_SUB) {
			m->fill = 0;
			gate_close_sub(&m->gate);
		}
	}
	return total;
}
