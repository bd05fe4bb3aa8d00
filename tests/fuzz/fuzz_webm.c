/*
 * fuzz_webm.c — libFuzzer target for the WebM/Matroska Opus demuxer (codec/webm.c).
 *
 * Opens the input with codec_webm_decoder directly (no sniffing, so every byte reaches the EBML
 * parser), reads its PCM in chunks whose size comes from the input, and closes. Beyond the
 * sanitizers it checks the decoder's contract: errors are CODEC_E* codes, reads never report
 * more frames than asked for, and a decoder that reported an error or the end stays there.
 */
#include "internal.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	codec_source src;
	codec_memory_source mem;
	codec_in in;
	codec_stream_info info;
	void *state = NULL;
	float *pcm = NULL;

	codec_source_memory(&src, &mem, data, size);
	if (in_init(&in, &src, 0) < 0)
		return 0;
	int rc = codec_webm_decoder.open(&in, &state, &info);
	if (rc < 0) {
		if (rc <= -CODEC_ERROR_COUNT || state != NULL)
			abort();
		goto done;
	}
	if (info.channels < 1 || info.channels > CODEC_MAX_CHANNELS || info.rate != 48000)
		abort();
	size_t chunk = 1 + (size > 0 ? data[size - 1] : 0) * 37u;
	pcm = malloc(chunk * info.channels * sizeof(float));
	if (!pcm)
		goto done;
	/* Bounded: a few bytes per 120 ms packet make long audio, and the fuzzer wants speed. */
	for (size_t total = 0; total < 48000u * 600;) {
		size_t frames = chunk + 1;
		rc = codec_webm_decoder.read(state, pcm, chunk, &frames);
		if (rc < 0 && frames != 0)
			abort();
		if (rc < 0 || frames == 0) {
			/* Errors and the end are final. */
			size_t again = 1;
			int rc2 = codec_webm_decoder.read(state, pcm, chunk, &again);
			if (rc <= -CODEC_ERROR_COUNT || again != 0 || (rc < 0 && rc2 != rc) ||
			    (rc == 0 && rc2 != 0))
				abort();
			break;
		}
		if (frames > chunk)
			abort();
		total += frames;
	}
done:
	free(pcm);
	codec_webm_decoder.close(state);
	in_free(&in);
	return 0;
}
