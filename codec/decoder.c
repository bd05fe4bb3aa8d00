/*
 * decoder.c — format detection from the first bytes and the public decoding API.
 *
 * The format is decided by magic numbers only (RIFF/RF64/BW64+WAVE, OggS, the EBML magic);
 * file names and declared content types are never consulted. A codec_decoder owns its codec_in
 * and the container decoder's state; closing accepts a half-opened one.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct codec_decoder {
	codec_in in;
	bool in_ready;
	const decoder_ops *ops;
	void *state;
};

codec_format codec_sniff(const uint8_t *p, size_t len)
{
	if (len >= 12 && memcmp(p + 8, "WAVE", 4) == 0 &&
	    (memcmp(p, "RIFF", 4) == 0 || memcmp(p, "RF64", 4) == 0 || memcmp(p, "BW64", 4) == 0))
		return CODEC_FORMAT_WAV;
	if (len >= 4 && memcmp(p, "OggS", 4) == 0)
		return CODEC_FORMAT_OGG_OPUS;
	if (len >= 4 && p[0] == 0x1A && p[1] == 0x45 && p[2] == 0xDF && p[3] == 0xA3)
		return CODEC_FORMAT_WEBM_OPUS;
	return CODEC_FORMAT_UNKNOWN;
}

void codec_decoder_close(codec_decoder *d)
{
	if (!d)
		return;
	if (d->ops)
		d->ops->close(d->state);
	if (d->in_ready)
		in_free(&d->in);
	free(d);
}

int codec_decoder_open(codec_decoder **out, const codec_source *src, uint64_t max_input_bytes,
		       codec_stream_info *info)
{
	const uint8_t *head;
	size_t avail;
	int rc;

	*out = NULL;
	memset(info, 0, sizeof *info);
	info->lfe_channel = -1;
	codec_decoder *d = calloc(1, sizeof *d);
	if (!d)
		return CODEC_ENOMEM;
	if ((rc = in_init(&d->in, src, max_input_bytes)) < 0)
		goto fail;
	d->in_ready = true;
	if ((rc = in_peek(&d->in, &head, 12, &avail)) < 0)
		goto fail;
	switch (codec_sniff(head, avail)) {
	case CODEC_FORMAT_WAV:
		d->ops = &codec_wav_decoder;
		break;
	case CODEC_FORMAT_OGG_OPUS:
		d->ops = &codec_ogg_decoder;
		break;
	case CODEC_FORMAT_WEBM_OPUS:
		d->ops = &codec_webm_decoder;
		break;
	default:
		rc = CODEC_EFORMAT;
		goto fail;
	}
	if ((rc = d->ops->open(&d->in, &d->state, info)) < 0)
		goto fail;
	*out = d;
	return 0;
fail:
	codec_decoder_close(d);
	return rc;
}

int codec_decoder_read(codec_decoder *d, float *pcm, size_t max_frames, size_t *frames)
{
	return d->ops->read(d->state, pcm, max_frames, frames);
}
