/*
 * fuzz_transcode.c — libFuzzer target: the whole pipeline (detect, decode, measure, fit,
 * limit, encode, mux) from memory to memory, with small limits so each input runs fast. Ogg
 * input gets its pages' checksums set right (fuzz_common.h); an input that ends in 0xA4 runs
 * with a 300 ms duration limit, so the too-long path runs too (rarely chosen by chance: the
 * checked-in corpus keeps its meaning).
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	codec_source src;
	codec_memory_source mem;
	codec_sink sink;
	codec_buffer out = {0};
	codec_options opt;
	codec_result res;
	uint8_t *fixed = fuzz_fix_ogg_crcs(data, size);
	if (!fixed)
		return 0;
	codec_source_memory(&src, &mem, fixed, size);
	codec_sink_buffer(&sink, &out);
	codec_options_init(&opt);
	opt.min_duration_ms = 10;
	opt.max_duration_ms = size > 0 && data[size - 1] == 0xA4 ? 300 : 3000;
	opt.max_input_bytes = 1 << 20;
	opt.complexity = 0;
	opt.serial_fixed = 1;
	int rc = codec_transcode(&src, &sink, &opt, &res);
	/* Success means a whole Ogg stream: it starts with a page. */
	if (rc == 0 && (out.len < 4 || out.data[0] != 'O'))
		abort();
	free(out.data);
	free(fixed);
	return 0;
}
