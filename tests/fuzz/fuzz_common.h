/*
 * fuzz_common.h — decode a whole input from memory with the public decoder API, as every
 * parser target does. Inputs whose magic is not the target's format are skipped, so each
 * target's mutations stay inside its own parser. Ogg inputs get their page checksums fixed.
 */
#ifndef JIAYIN_FUZZ_COMMON_H
#define JIAYIN_FUZZ_COMMON_H

#include "codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Ogg's page checksum: CRC-32, polynomial 0x04c11db7, MSB first, no reflection, start 0. */
static inline uint32_t fuzz_ogg_crc(const uint8_t *p, size_t n)
{
	static uint32_t table[256];
	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i << 24;
			for (int k = 0; k < 8; k++)
				c = c & 0x80000000u ? c << 1 ^ 0x04c11db7u : c << 1;
			table[i] = c;
		}
	uint32_t crc = 0;
	for (size_t i = 0; i < n; i++)
		crc = crc << 8 ^ table[(crc >> 24 ^ p[i]) & 0xFF];
	return crc;
}

/*
 * A copy of the input with every whole Ogg page's checksum set right (malloc'd; NULL when out
 * of memory). libogg drops a page with a wrong checksum before our code sees it, and the
 * fuzzer, which cannot see inside libogg, would hardly ever mutate a page into one it keeps:
 * a campaign without this reached OpusHead, OpusTags and the granule rules only through the
 * seeds. An input whose last byte is odd keeps its checksums as they are (bad ones included).
 */
static inline uint8_t *fuzz_fix_ogg_crcs(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1);
	if (!p || size == 0)
		return p;
	memcpy(p, data, size);
	if (p[size - 1] & 1)
		return p;
	for (size_t i = 0; i + 27 <= size;) {
		if (memcmp(p + i, "OggS", 4) != 0) {
			i++;
			continue;
		}
		size_t segs = p[i + 26], len = 27 + segs;
		if (i + len > size)
			break;
		for (size_t k = 0; k < segs; k++)
			len += p[i + 27 + k];
		if (i + len > size)
			break;
		memset(p + i + 22, 0, 4);
		uint32_t crc = fuzz_ogg_crc(p + i, len);
		for (int k = 0; k < 4; k++)
			p[i + 22 + k] = (uint8_t)(crc >> (8 * k));
		i += len;
	}
	return p;
}

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
