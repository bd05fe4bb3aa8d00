/*
 * bare_encode.c — the floor for the codec benchmark: libopus alone, nothing else.
 *
 * Reads a 48 kHz mono 16-bit PCM WAV fully into memory (not timed), then times only the encode
 * loop with the settings jiayin-transcode uses: encoder creation, VOIP application, 24 kbps
 * unconstrained VBR (as Jiayin, opusenc and ffmpeg's -vbr on; libopus defaults to constrained),
 * complexity 10, voice signal, one opus_encode per 20 ms (960-sample) frame, the last frame
 * padded with silence. No resampling, no loudness, no Ogg: bench_codec.py divides Jiayin's time
 * by this one to get the pipeline's cost ratio. Prints one JSON line:
 *   {"seconds":S,"bytes":B,"frames":F}   (bytes = sum of Opus packet sizes, no container)
 * Build: cc -O2 -o bare_encode bare_encode.c $(pkg-config --cflags --libs opus)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#endif

#include <opus.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BARE_RATE 48000
#define BARE_FRAME 960 /* 20 ms at 48 kHz */
#define BARE_BITRATE 24000
#define BARE_MAX_PACKET 4000     /* the size libopus documents as always sufficient */
#define BARE_MAX_FILE (1u << 30) /* 1 GiB: far above any benchmark input */

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Reads the whole file into a malloc'd buffer the caller frees. Returns 0 or -1. */
static int read_file(const char *path, unsigned char **out, size_t *out_len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	size_t len = 0, cap = 0;

	if (!f) {
		perror(path);
		return -1;
	}
	for (;;) {
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 1u << 20;
			unsigned char *nbuf;
			if (ncap > BARE_MAX_FILE) {
				fprintf(stderr, "%s: larger than %u bytes\n", path, BARE_MAX_FILE);
				goto fail;
			}
			nbuf = realloc(buf, ncap);
			if (!nbuf) {
				fprintf(stderr, "out of memory\n");
				goto fail;
			}
			buf = nbuf;
			cap = ncap;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				perror(path);
				goto fail;
			}
			break;
		}
	}
	fclose(f);
	*out = buf;
	*out_len = len;
	return 0;
fail:
	free(buf);
	fclose(f);
	return -1;
}

/*
 * Finds the PCM samples of a 48 kHz mono 16-bit WAV in `file` and converts them to host-order
 * int16 in a malloc'd array the caller frees. Returns 0 or -1 with a message on stderr.
 */
static int wav_samples(const unsigned char *file, size_t len, int16_t **out, size_t *out_count)
{
	size_t pos = 12;
	int have_fmt = 0;

	if (len < 12 || memcmp(file, "RIFF", 4) != 0 || memcmp(file + 8, "WAVE", 4) != 0) {
		fprintf(stderr, "not a RIFF/WAVE file\n");
		return -1;
	}
	while (len - pos >= 8) {
		const unsigned char *chunk = file + pos;
		uint32_t size = le32(chunk + 4);
		size_t body = len - pos - 8;

		if (memcmp(chunk, "fmt ", 4) == 0) {
			if (size < 16 || size > body) {
				fprintf(stderr, "bad fmt chunk\n");
				return -1;
			}
			uint16_t tag = le16(chunk + 8), channels = le16(chunk + 10);
			uint32_t rate = le32(chunk + 12);
			uint16_t bits = le16(chunk + 22);
			/* 1 = PCM, 0xFFFE = WAVE_FORMAT_EXTENSIBLE (sub-format assumed PCM) */
			if ((tag != 1 && tag != 0xFFFE) || channels != 1 || rate != BARE_RATE ||
			    bits != 16) {
				fprintf(stderr,
				        "want 16-bit PCM mono 48000 Hz, got tag %u, %u ch, %u Hz, "
				        "%u bits\n",
				        tag, channels, rate, bits);
				return -1;
			}
			have_fmt = 1;
		} else if (memcmp(chunk, "data", 4) == 0) {
			if (!have_fmt) {
				fprintf(stderr, "data chunk before fmt chunk\n");
				return -1;
			}
			/* streamed WAVs may carry a bogus size: take what is there */
			if (size > body)
				size = (uint32_t)body;
			size_t count = size / 2;
			int16_t *pcm = malloc(count ? count * sizeof *pcm : 1);
			if (!pcm) {
				fprintf(stderr, "out of memory\n");
				return -1;
			}
			for (size_t i = 0; i < count; i++)
				pcm[i] = (int16_t)le16(chunk + 8 + 2 * i);
			*out = pcm;
			*out_count = count;
			return 0;
		}
		if (size > body)
			break;
		pos += 8 + (size_t)size + (size & 1);
	}
	fprintf(stderr, "no fmt/data chunk\n");
	return -1;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	unsigned char *file = NULL;
	size_t file_len = 0;
	int16_t *pcm = NULL;
	size_t count = 0;
	OpusEncoder *enc = NULL;
	int16_t last[BARE_FRAME];
	unsigned char packet[BARE_MAX_PACKET];
	unsigned long long bytes = 0, frames = 0;
	int err, status = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s IN.wav   (48 kHz mono 16-bit PCM)\n", argv[0]);
		return 2;
	}
	if (read_file(argv[1], &file, &file_len) != 0)
		goto out;
	if (wav_samples(file, file_len, &pcm, &count) != 0)
		goto out;
	free(file);
	file = NULL;

	double start = now_seconds();
	enc = opus_encoder_create(BARE_RATE, 1, OPUS_APPLICATION_VOIP, &err);
	if (!enc || err != OPUS_OK) {
		fprintf(stderr, "opus_encoder_create: %s\n", opus_strerror(err));
		goto out;
	}
	if ((err = opus_encoder_ctl(enc, OPUS_SET_BITRATE(BARE_BITRATE))) != OPUS_OK ||
	    (err = opus_encoder_ctl(enc, OPUS_SET_VBR(1))) != OPUS_OK ||
	    (err = opus_encoder_ctl(enc, OPUS_SET_VBR_CONSTRAINT(0))) != OPUS_OK ||
	    (err = opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(10))) != OPUS_OK ||
	    (err = opus_encoder_ctl(enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE))) != OPUS_OK) {
		fprintf(stderr, "opus_encoder_ctl: %s\n", opus_strerror(err));
		goto out;
	}
	for (size_t off = 0; off < count; off += BARE_FRAME) {
		const int16_t *frame = pcm + off;
		if (count - off < BARE_FRAME) {
			memset(last, 0, sizeof last);
			memcpy(last, pcm + off, (count - off) * sizeof *last);
			frame = last;
		}
		opus_int32 n = opus_encode(enc, frame, BARE_FRAME, packet, BARE_MAX_PACKET);
		if (n < 0) {
			fprintf(stderr, "opus_encode: %s\n", opus_strerror(n));
			goto out;
		}
		bytes += (unsigned long long)n;
		frames++;
	}
	opus_encoder_destroy(enc);
	enc = NULL;
	double seconds = now_seconds() - start;

	printf("{\"seconds\":%.6f,\"bytes\":%llu,\"frames\":%llu}\n", seconds, bytes, frames);
	status = 0;
out:
	opus_encoder_destroy(enc); /* accepts NULL */
	free(pcm);
	free(file);
	return status;
}
