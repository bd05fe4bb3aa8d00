/* fuzz_ogg.c — libFuzzer target: the OGG parser and decoder, through the public API, on the
 * input with its pages' checksums set right (fuzz_fix_ogg_crcs), so mutations reach our code. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed = fuzz_fix_ogg_crcs(data, size);
	if (fixed)
		fuzz_decode(fixed, size, CODEC_FORMAT_OGG_OPUS);
	free(fixed);
	return 0;
}
