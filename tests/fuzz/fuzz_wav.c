/* fuzz_wav.c — libFuzzer target: the WAV parser and decoder, through the public API. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_decode(data, size, CODEC_FORMAT_WAV);
	return 0;
}
