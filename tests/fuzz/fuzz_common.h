/*
 * fuzz_common.h — decode a whole input from memory with the public decoder API, as every
 * parser target does. Inputs whose magic is not the target's format are skipped, so each
 * target's mutations stay inside its own parser.
 */
#ifndef JIAYIN_FUZZ_COMMON_H
#define JIAYIN_FUZZ_COMMON_H

#include "codec.h"

#include <stdlib.h>

static inline void fuzz_decode(const uint8_t *data, size_t size, codec_format want)
{
	if (codec_sniff(data, size) != want)
		return;
	codec_source src;
	codec_memory_source mem;
	codec_source_memory(&src, &mem, data, size);
	codec_decoder *dec;
	codec_stream_info info;
	if (codec_decoder_open(&dec, &src, 0, &info) < 0)
		return;
	float *pcm = malloc(sizeof(float) * 4096 * info.channels);
	size_t frames, total = 0;
	/* Bounded: a hostile header cannot make a small input decode for ever. */
	while (pcm && codec_decoder_read(dec, pcm, 4096, &frames) == 0 && frames > 0 &&
	       total < 48000u * 600)
		total += frames;
	free(pcm);
	codec_decoder_close(dec);
}

#endif
