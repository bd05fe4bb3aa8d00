/* fuzz_ogg.c — libFuzzer target: the OGG parser and decoder, through the public API. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_decode(data, size, CODEC_FORMAT_OGG_OPUS);
	return 0;
}
