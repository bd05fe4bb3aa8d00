/*
 * fuzz_transcode.c — libFuzzer target: the whole pipeline (detect, decode, measure, fit,
 * limit, encode, mux) from memory to memory, with small limits so each input runs fast.
 */
#include "codec.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	codec_source src;
	codec_memory_source mem;
	codec_sink sink;
	codec_buffer out = {0};
	codec_options opt;
	codec_result res;
	codec_source_memory(&src, &mem, data, size);
	codec_sink_buffer(&sink, &out);
	codec_options_init(&opt);
	opt.min_duration_ms = 10;
	opt.max_duration_ms = 3000;
	opt.max_input_bytes = 1 << 20;
	opt.complexity = 0;
	opt.serial_fixed = 1;
	int rc = codec_transcode(&src, &sink, &opt, &res);
	/* Success means a whole Ogg stream: it starts with a page. */
	if (rc == 0 && (out.len < 4 || out.data[0] != 'O'))
		abort();
	free(out.data);
	return 0;
}
