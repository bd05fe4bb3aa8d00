/*
 * outcheck.c — measures what Opus did to the loudness and peaks of our signal.
 *
 * Lossy coding at 24 kb/s changes loudness (SILK loses energy on noise-like signals: up to
 * 3 LU on white noise) and moves peaks (1-2 dB over the limiter's ceiling on speech), so the
 * pipeline cannot know the file's loudness and peak from its own signal: every packet is
 * decoded as it is made. This costs ~12% of the encode with Debian's libopus (70 ms for 60 s
 * of speech, against 590 ms to encode it); decoding a sample (1 s in 4 with fresh decoders)
 * was tried and missed the highest peak by up to 1.4 dB, so it could not keep the true-peak
 * promise. The encoder's input is K-weighted beside the decoded frame, in the other lane.
 */
#include "dsp.h"

#include <math.h>
#include <opus.h>
#include <stdlib.h>
#include <string.h>

int outcheck_init(outcheck *c, uint32_t preskip, uint64_t total)
{
	int err;
	memset(c, 0, sizeof *c);
	c->preskip = preskip;
	c->total = total;
	tp_init(&c->tp);
	tp_exact_init(&c->exact);
	meter_init(&c->out);
	c->dec = opus_decoder_create(CODEC_OUTPUT_RATE, 1, &err);
	if (err == OPUS_ALLOC_FAIL || !c->dec)
		return CODEC_ENOMEM;
	return err == OPUS_OK ? 0 : CODEC_EENCODE;
}

void outcheck_free(outcheck *c)
{
	if (c->dec)
		opus_decoder_destroy(c->dec);
	c->dec = NULL;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

/* The exact peak of interval q (absolute), from the window of the frame that starts at first. */
static void read_exact(outcheck *c, uint64_t q, uint64_t first)
{
	float v = tp_exact_peak(&c->exact, c->win + OC_BACK + ((int64_t)q - (int64_t)first));
	if (v > c->peak)
		c->peak = v;
}

/*
 * The true peaks of the intervals reported with the frame at first: the cheap detector reads
 * each, and one it puts within TPX_MARGIN of the highest peak so far is read exactly, now or,
 * when its window reaches past this frame, with the next one.
 */
static void peaks_of_frame(outcheck *c, uint64_t first, uint64_t end)
{
	const float *pcm = c->win + OC_BACK;
	/* A frame that cannot come near the highest peak so far, even at its worst, is only fed. */
	if (tp_ceiling_of(&c->tp, pcm, CODEC_FRAME_SAMPLES) * TPX_MARGIN <= c->peak) {
		tp_skip(&c->tp, pcm, CODEC_FRAME_SAMPLES);
		return;
	}
	tp_run(&c->tp, pcm, CODEC_FRAME_SAMPLES, c->peaks);
	int64_t reported = CODEC_FRAME_SAMPLES;
	bool last = end <= first + CODEC_FRAME_SAMPLES;
	if (last) {
		/* The stream's last frame: the intervals of its last samples are reported only
		 * after them, and reach past the stream, into silence. */
		static const float silence[TP_DELAY];
		tp_run(&c->tp, silence, TP_DELAY, c->peaks + CODEC_FRAME_SAMPLES);
		reported += TP_DELAY;
	}
	/* The interval reported at i started TP_DELAY samples earlier: only real ones count. */
	int64_t from = (int64_t)c->preskip - (int64_t)first + TP_DELAY;
	int64_t to = (int64_t)end - (int64_t)first + TP_DELAY;
	for (int64_t i = from < 0 ? 0 : from; i < to && i < reported; i++) {
		float v = c->peaks[i];
		if (v > c->peak)
			c->peak = v;
		if (v * TPX_MARGIN <= c->peak)
			continue;
		uint64_t q = first + (uint64_t)i - TP_DELAY;
		if (!last && q + TPX_HALF >= first + CODEC_FRAME_SAMPLES)
			c->pending[c->npending++] = q;
		else
			read_exact(c, q, first);
	}
}

int outcheck_packet(outcheck *c, uint64_t index, const float *input, const uint8_t *pkt,
		    size_t len)
{
	float *pcm = c->win + OC_BACK;
	int n = opus_decode_float(c->dec, pkt, (opus_int32)len, pcm, CODEC_FRAME_SAMPLES, 0);
	if (n != CODEC_FRAME_SAMPLES)
		return CODEC_EENCODE; /* our own packet does not decode: a bug, not the input */
	/* Only decoded samples that stand for real input count: [lo, hi) of this frame; and
	 * the input's first `real` samples are real (the rest pads the last frame). */
	uint64_t first = index * CODEC_FRAME_SAMPLES;
	uint64_t end = c->preskip + c->total;
	size_t lo = first < c->preskip ? (size_t)(c->preskip - first) : 0;
	size_t hi = first >= end ? 0
		    : end - first < CODEC_FRAME_SAMPLES ? (size_t)(end - first)
							: CODEC_FRAME_SAMPLES;
	if (lo > hi)
		lo = hi;
	size_t real = first >= c->total ? 0
		      : c->total - first < CODEC_FRAME_SAMPLES ? (size_t)(c->total - first)
							   : CODEC_FRAME_SAMPLES;
	/*
	 * Both filters run over the whole frame, in pieces cut where something starts or stops
	 * counting: lo, hi, real, and the end of the decoded meter's 100 ms sub-block.
	 */
	size_t cut[6] = {0, lo, hi, real, CODEC_FRAME_SAMPLES, CODEC_FRAME_SAMPLES};
	size_t sub_end = lo + (GATE_SUB - c->out.fill);
	if (sub_end < hi)
		cut[5] = sub_end;
	qsort(cut, 6, sizeof cut[0], cmp_size);
	for (int i = 0; i + 1 < 6; i++) {
		size_t from = cut[i], to = cut[i + 1];
		if (from == to)
			continue;
		double e_in = 0, e_dec = 0;
		kweight_pair(&c->k_in, input + from, &e_in, &c->out.kw, pcm + from, &e_dec,
			     to - from);
		if (to <= real)
			c->ref_energy += e_in;
		if (from >= lo && to <= hi) {
			c->dec_energy += e_dec;
			c->out.gate.sub_now += e_dec;
			c->out.fill += (unsigned)(to - from);
			if (c->out.fill == GATE_SUB) {
				c->out.fill = 0;
				gate_close_sub(&c->out.gate);
			}
		}
	}
	/* The intervals of the frame before whose window reached into this one. */
	for (unsigned k = 0; k < c->npending; k++)
		read_exact(c, c->pending[k], first);
	c->npending = 0;
	peaks_of_frame(c, first, end);
	/* The window of the next frame's first intervals starts in this one. */
	memmove(c->win, c->win + CODEC_FRAME_SAMPLES, OC_BACK * sizeof *c->win);
	return 0;
}

double outcheck_lufs(const outcheck *c)
{
	return gate_lufs(&c->out.gate);
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
