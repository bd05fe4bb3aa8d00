/*
 * test_browser_recordings.c — recordings made by real browsers' MediaRecorder (what the web
 * client uploads), decoded through the public decoder API and compared with ffmpeg's decode of
 * the same file: the same format and channels, the same number of frames to the sample (pre-skip,
 * pauses, end trimming), and the same samples. The files are in tests/codec/data/ (README.md
 * there says how tests/codec/record_browser/ made them); ffmpeg decodes with libopus to float, as
 * we do, so the samples agree exactly and what is tested is the demuxing. Recordings joined one
 * after the other (an app's pause: one MediaRecorder stopped, another started, the Blobs joined)
 * are compared with each recording's own decode instead: ffmpeg reads on into a second WebM
 * document with the first one's decoder and track, so it differs or stops there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *data_dir; /* tests/codec/data/, from $JIAYIN_TEST_DATA or argv[1] */

typedef struct pcm_buf {
	float *s;
	size_t n, cap; /* samples (frames * channels) */
} pcm_buf;

static void pcm_reserve(pcm_buf *p, size_t more)
{
	if (p->n + more <= p->cap)
		return;
	size_t cap = p->cap ? p->cap : 65536;
	while (cap < p->n + more)
		cap *= 2;
	p->s = realloc(p->s, cap * sizeof(float));
	assert_non_null(p->s);
	p->cap = cap;
}

static void path_of(char *path, size_t size, const char *name)
{
	if (!data_dir)
		fail_msg("no test data directory: set JIAYIN_TEST_DATA");
	snprintf(path, size, "%s/%s", data_dir, name);
}

/* The whole file into memory. */
static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	uint8_t *d = NULL;
	size_t cap = 0, n;
	*len = 0;
	do {
		if (*len == cap) {
			cap = cap ? cap * 2 : 65536;
			d = realloc(d, cap);
			assert_non_null(d);
		}
		n = fread(d + *len, 1, cap - *len, f);
		*len += n;
	} while (n > 0);
	fclose(f);
	return d;
}

/* ffmpeg's decode (libopus, interleaved float at 48 kHz, the file's own channels). */
static pcm_buf ffmpeg_decode(const char *path)
{
	char cmd[8192];
	pcm_buf p = {0};
	snprintf(cmd, sizeof cmd,
	         "ffmpeg -nostdin -v error -c:a libopus -request_sample_fmt flt -i '%s' -map 0:a:0 "
	         "-ar 48000 -f f32le -",
	         path);
	FILE *f = popen(cmd, "r");
	if (!f)
		fail_msg("cannot run ffmpeg");
	size_t got;
	do {
		pcm_reserve(&p, 65536);
		got = fread(p.s + p.n, sizeof(float), 65536, f);
		p.n += got;
	} while (got > 0);
	if (pclose(f) != 0)
		fail_msg("ffmpeg could not decode %s (is ffmpeg installed?)", path);
	return p;
}

/* Our decode, read 333 frames at a time (not a multiple of any Opus frame). */
static pcm_buf our_decode(const uint8_t *data, size_t len, codec_stream_info *info)
{
	codec_source src;
	codec_memory_source mem;
	codec_decoder *dec = NULL;
	pcm_buf p = {0};
	codec_source_memory(&src, &mem, data, len);
	assert_int_equal(codec_decoder_open(&dec, &src, 0, info), 0);
	for (;;) {
		size_t got;
		pcm_reserve(&p, 333 * (size_t)info->channels);
		assert_int_equal(codec_decoder_read(dec, p.s + p.n, 333, &got), 0);
		if (got == 0)
			break;
		p.n += got * info->channels;
	}
	codec_decoder_close(dec);
	return p;
}

static void check_recording(const char *name, codec_format format, unsigned channels, size_t frames)
{
	char path[4096];
	size_t len;
	codec_stream_info info;
	path_of(path, sizeof path, name);
	uint8_t *data = read_file(path, &len);
	pcm_buf ours = our_decode(data, len, &info);
	pcm_buf ref = ffmpeg_decode(path);
	assert_int_equal(info.format, format);
	assert_int_equal(info.rate, 48000);
	assert_int_equal(info.channels, channels);
	/* ffmpeg's count, written down when the file was made: decoders and file agree. */
	assert_int_equal(ref.n, frames * channels);
	assert_int_equal(ours.n, ref.n);
	double energy = 0, worst = 0;
	for (size_t i = 0; i < ours.n; i++) {
		double d = fabs((double)ours.s[i] - ref.s[i]);
		energy += (double)ref.s[i] * ref.s[i];
		if (d > worst)
			worst = d;
	}
	/* Speech, not silence: the comparison means something. */
	assert_true(energy / (double)ours.n > 1e-4);
	/* Identical here (the same libopus); the margin: an ffmpeg linked to another build. */
	if (worst > 1e-6)
		fail_msg("%s: samples differ from ffmpeg's by up to %g", name, worst);
	free(ours.s);
	free(ref.s);
	free(data);
}

/* Chromium, audio/webm;codecs=opus, ondataavailable every second, the chunks concatenated. */
static void test_chrome_timeslice_chunks(void **state)
{
	(void)state;
	check_recording("chrome_mediarecorder_timeslice.webm", CODEC_FORMAT_WEBM_OPUS, 1, 190080);
}

/* The same, paused for 2 s in the middle: Chrome's timestamps run on without a gap. */
static void test_chrome_pause_resume(void **state)
{
	(void)state;
	check_recording("chrome_mediarecorder_pause.webm", CODEC_FORMAT_WEBM_OPUS, 1, 239040);
}

/* A stereo source (44.1 kHz fake device, channelCount 2): Chrome's stereo Opus. */
static void test_chrome_stereo(void **state)
{
	(void)state;
	check_recording("chrome_mediarecorder_stereo.webm", CODEC_FORMAT_WEBM_OPUS, 2, 190080);
}

/* Firefox, audio/ogg;codecs=opus, timeslice and a pause: end trimmed by the last granule. */
static void test_firefox_ogg_pause_resume(void **state)
{
	(void)state;
	check_recording("firefox_mediarecorder_pause.ogg", CODEC_FORMAT_OGG_OPUS, 1, 222848);
}

/* Firefox, audio/webm;codecs=opus from a stereo 44.1 kHz source: OpusHead's pre-skip trimmed. */
static void test_firefox_webm_stereo(void **state)
{
	(void)state;
	check_recording("firefox_mediarecorder_stereo.webm", CODEC_FORMAT_WEBM_OPUS, 2, 234888);
}

/*
 * Regression: recordings joined one after the other (an app that pauses by stopping its
 * MediaRecorder and starting another, `new Blob([a, b])`) decoded only the first, exit 0: half
 * the story stored as if whole. Each decodes after the other exactly as it does alone.
 */
static void check_joined(const char *first, const char *second, unsigned channels, size_t frames)
{
	char path[4096];
	size_t len_a, len_b;
	codec_stream_info info;
	path_of(path, sizeof path, first);
	uint8_t *a = read_file(path, &len_a);
	path_of(path, sizeof path, second);
	uint8_t *b = read_file(path, &len_b);
	uint8_t *joined = malloc(len_a + len_b);
	assert_non_null(joined);
	memcpy(joined, a, len_a);
	memcpy(joined + len_a, b, len_b);
	pcm_buf alone_a = our_decode(a, len_a, &info);
	pcm_buf alone_b = our_decode(b, len_b, &info);
	pcm_buf ours = our_decode(joined, len_a + len_b, &info);
	assert_int_equal(info.format, CODEC_FORMAT_WEBM_OPUS);
	assert_int_equal(info.channels, channels);
	assert_int_equal(ours.n, frames * channels);
	assert_int_equal(ours.n, alone_a.n + alone_b.n);
	assert_memory_equal(ours.s, alone_a.s, alone_a.n * sizeof(float));
	assert_memory_equal(ours.s + alone_a.n, alone_b.s, alone_b.n * sizeof(float));
	free(ours.s);
	free(alone_a.s);
	free(alone_b.s);
	free(joined);
	free(a);
	free(b);
}

static void test_recordings_joined(void **state)
{
	(void)state;
	/* Chrome's unknown-size Segments: the next EBML header ends the last Cluster. */
	check_joined("chrome_mediarecorder_timeslice.webm", "chrome_mediarecorder_pause.webm", 1,
	             190080 + 239040);
	/* A known-size Segment (ffmpeg's) first; after Chrome's. */
	check_joined("ffmpeg_mono_1500ms.webm", "chrome_mediarecorder_timeslice.webm", 1,
	             72000 + 190080);
	check_joined("chrome_mediarecorder_timeslice.webm", "ffmpeg_16k_1234ms.webm", 1,
	             190080 + 59232);
	/* Firefox's: its Opus track is number 2, a Void before its Segment. */
	check_joined("chrome_mediarecorder_stereo.webm", "firefox_mediarecorder_stereo.webm", 2,
	             190080 + 234888);
	check_joined("firefox_mediarecorder_stereo.webm", "ffmpeg_stereo_1500ms.webm", 2,
	             234888 + 72000);
}

int main(int argc, char **argv)
{
	data_dir = getenv("JIAYIN_TEST_DATA");
	if (argc > 1)
		data_dir = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_chrome_timeslice_chunks),
	    cmocka_unit_test(test_chrome_pause_resume),
	    cmocka_unit_test(test_chrome_stereo),
	    cmocka_unit_test(test_firefox_ogg_pause_resume),
	    cmocka_unit_test(test_firefox_webm_stereo),
	    cmocka_unit_test(test_recordings_joined),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
