/*
 * opus_dec.c — OpusHead parsing and Opus packet decoding, shared by the Ogg and WebM decoders.
 *
 * Containers differ in how they carry pre-skip and end trimming (Ogg: granule positions; WebM:
 * CodecDelay and DiscardPadding), so the container sets `skip` and `limit` and this file applies
 * them while decoding, always into one 120 ms buffer. Output gain from OpusHead is applied by
 * libopus (OPUS_SET_GAIN). Channel mapping families 0 and 1 (RFC 7845 section 5.1.1).
 */
#include "internal.h"

#include <opus.h>
#include <opus_multistream.h>
#include <stdlib.h>
#include <string.h>

#define OPUS_MAX_PACKET_FRAMES 5760 /* 120 ms at 48 kHz */

int opus_head_parse(const uint8_t *p, size_t len, opus_head *h)
{
	memset(h, 0, sizeof *h);
	if (len < 19 || memcmp(p, "OpusHead", 8) != 0)
		return CODEC_EMALFORMED;
	h->version = p[8];
	if ((h->version & 0xF0) != 0) /* an incompatible major version */
		return CODEC_EUNSUPPORTED;
	h->channels = p[9];
	h->preskip = rd_le16(p + 10);
	h->input_rate = rd_le32(p + 12);
	h->output_gain_q8 = (int16_t)rd_le16(p + 16);
	h->family = p[18];
	if (h->channels == 0)
		return CODEC_EMALFORMED;
	if (h->channels > CODEC_MAX_CHANNELS)
		return CODEC_ECHANNELS;
	if (h->family == 0) {
		if (h->channels > 2)
			return CODEC_EMALFORMED;
		h->streams = 1;
		h->coupled = h->channels == 2;
		h->mapping[0] = 0;
		h->mapping[1] = 1;
		return 0;
	}
	if (h->family != 1)
		return CODEC_EUNSUPPORTED;
	if (len < 21u + h->channels)
		return CODEC_EMALFORMED;
	h->streams = p[19];
	h->coupled = p[20];
	if (h->streams == 0 || h->coupled > h->streams || h->streams + h->coupled > 255)
		return CODEC_EMALFORMED;
	for (unsigned i = 0; i < h->channels; i++) {
		h->mapping[i] = p[21 + i];
		if (h->mapping[i] != 255 && h->mapping[i] >= h->streams + h->coupled)
			return CODEC_EMALFORMED;
	}
	return 0;
}

int opus_head_lfe(const opus_head *h)
{
	/* Vorbis channel order (family 1): the LFE is last in 5.1, 6.1 and 7.1. */
	if (h->family == 1 && h->channels >= 6)
		return h->channels - 1;
	return -1;
}

int opusdec_init(opusdec *d, const opus_head *h)
{
	int err = 0;
	memset(d, 0, sizeof *d);
	d->channels = h->channels;
	d->skip = h->preskip;
	d->limit = UINT64_MAX;
	d->pcm = malloc(sizeof(float) * OPUS_MAX_PACKET_FRAMES * h->channels);
	if (!d->pcm)
		goto nomem;
	d->dec = opus_multistream_decoder_create(48000, h->channels, h->streams, h->coupled,
						 h->mapping, &err);
	if (err == OPUS_ALLOC_FAIL)
		goto nomem;
	if (err != OPUS_OK || !d->dec) {
		opusdec_free(d);
		return CODEC_EMALFORMED;
	}
	if (h->output_gain_q8 != 0 &&
	    opus_multistream_decoder_ctl(d->dec, OPUS_SET_GAIN(h->output_gain_q8)) != OPUS_OK) {
		opusdec_free(d);
		return CODEC_EMALFORMED;
	}
	return 0;
nomem:
	opusdec_free(d);
	return CODEC_ENOMEM;
}

void opusdec_free(opusdec *d)
{
	if (d->dec)
		opus_multistream_decoder_destroy(d->dec);
	free(d->pcm);
	d->dec = NULL;
	d->pcm = NULL;
}

int opusdec_packet_frames(const uint8_t *pkt, size_t len)
{
	if (len == 0 || len > INT32_MAX)
		return CODEC_ECORRUPT;
	int n = opus_packet_get_nb_samples(pkt, (opus_int32)len, 48000);
	if (n <= 0 || n > OPUS_MAX_PACKET_FRAMES)
		return CODEC_ECORRUPT;
	return n;
}

int opusdec_packet(opusdec *d, const uint8_t *pkt, size_t len)
{
	d->pos = d->len = 0;
	if (len == 0 || len > INT32_MAX)
		return CODEC_ECORRUPT;
	int n = opus_multistream_decode_float(d->dec, pkt, (opus_int32)len, d->pcm,
					      OPUS_MAX_PACKET_FRAMES, 0);
	if (n < 0)
		return n == OPUS_ALLOC_FAIL ? CODEC_ENOMEM : CODEC_ECORRUPT;
	size_t start = 0, frames = (size_t)n;
	if (d->skip > 0) {
		start = d->skip < frames ? (size_t)d->skip : frames;
		d->skip -= start;
	}
	size_t avail = frames - start;
	if (d->produced >= d->limit)
		avail = 0;
	else if (avail > d->limit - d->produced)
		avail = (size_t)(d->limit - d->produced);
	d->pos = start;
	d->len = start + avail;
	return 0;
}

size_t opusdec_take(opusdec *d, float *out, size_t max_frames)
{
	size_t n = d->len - d->pos;
	if (n > max_frames)
		n = max_frames;
	memcpy(out, d->pcm + d->pos * d->channels, n * d->channels * sizeof(float));
	d->pos += n;
	d->produced += n;
	return n;
}
