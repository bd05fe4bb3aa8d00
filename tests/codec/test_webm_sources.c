/*
 * test_webm_sources.c — the WebM/Matroska Opus decoder (codec/webm.c) against how its input
 * arrives: a skipped element ending exactly at the end of the input, the input byte limit (and
 * an element claiming more than it in a small file), a source that cannot seek and hands out a
 * few bytes per read, and a source failing at every offset, and what Chrome's MediaRecorder hands
 * out when stopped before its first audio. Files come from webm_fixture.h and tests/codec/data/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "webm_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *data_dir; /* tests/codec/data/, from $JIAYIN_TEST_DATA or argv[1] */

/* The bytes of tests/codec/data/NAME into b (fails the test when it cannot be read). */
static void read_data_file(const char *name, wbuf *b)
{
	char path[4096];
	uint8_t chunk[4096];
	size_t n;
	if (!data_dir)
		fail_msg("no test data directory: set JIAYIN_TEST_DATA");
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	memset(b, 0, sizeof *b);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		put(b, chunk, n);
	fclose(f);
}

/*
 * Regression: in_skip() reports a seek that lands exactly on the end of the input as truncated,
 * which failed files whose last element is skipped and lies outside the 64 KiB read buffer.
 */
static void test_skip_to_exact_end_of_file(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2, .head_preskip = -1, .tail_void = 200000};
	check_layout(&mono, &l);
	l.unknown_segment = true;
	l.unknown_cluster = true;
	check_layout(&mono, &l);
	l.middle_void = 150000; /* and a large skip in the middle */
	check_layout(&mono, &l);
}

static void test_input_byte_limit(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .unknown_segment = true,
	            .unknown_cluster = true,
	            .middle_void = 200000};
	wbuf b;
	build(&b, &mono, &l);
	decoded r = decode_limit(b.d, b.len, 4096, 100000);
	assert_int_equal(r.rc, CODEC_ETOOLARGE);
	free(r.pcm);
	/* An element claiming more than the limit in a small file is a lie, not a large file. */
	l.middle_void = 0;
	free(b.d);
	build(&b, &mono, &l);
	put_id(&b, 0xEC);
	put_vint_n(&b, 1ull << 40, 8);
	put(&b, "tail", 4);
	r = decode(b.d, b.len, 4096);
	assert_int_equal(r.rc, CODEC_ETRUNCATED);
	free(r.pcm);
	free(b.d);
}

/* A source that hands out at most `step` bytes per read, cannot seek, and fails at `fail_at`. */
typedef struct trickle {
	const uint8_t *data;
	size_t len, pos, step, fail_at;
} trickle;

static int trickle_read(void *ctx, uint8_t *buf, size_t len, size_t *got)
{
	trickle *t = ctx;
	size_t n = t->len - t->pos;
	if (n > len)
		n = len;
	if (n > t->step)
		n = t->step;
	if (t->pos + n > t->fail_at)
		return CODEC_EIO;
	memcpy(buf, t->data + t->pos, n);
	t->pos += n;
	*got = n;
	return 0;
}

static decoded decode_trickle(const wbuf *b, size_t step, size_t fail_at)
{
	decoded r;
	trickle t = {.data = b->d, .len = b->len, .step = step, .fail_at = fail_at};
	codec_source src = {.read = trickle_read, .seek = NULL, .ctx = &t};
	codec_decoder *dec = NULL;
	memset(&r, 0, sizeof r);
	r.rc = codec_decoder_open(&dec, &src, 0, &r.info);
	if (r.rc == 0) {
		r.pcm = malloc(48000 * 2 * sizeof(float) * 3);
		assert_non_null(r.pcm);
		for (;;) {
			size_t got;
			int rc =
			    codec_decoder_read(dec, r.pcm + r.frames * r.info.channels, 333, &got);
			if (rc < 0) {
				r.rc = rc;
				break;
			}
			if (got == 0)
				break;
			r.frames += got;
		}
	}
	codec_decoder_close(dec);
	return r;
}

/*
 * Short reads and no seek: the same PCM, and skipping by reading (a large Void) works, also on
 * to a second document.
 */
static void test_unseekable_source_with_short_reads(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .lacing = 1,
	            .per_block = 3,
	            .last_discard = 700,
	            .unknown_cluster = true,
	            .middle_void = 100000,
	            .tail_void = 70000};
	wbuf b;
	size_t ref_frames;
	build(&b, &mono, &l);
	float *ref = reference(&mono, &l, &ref_frames);
	for (size_t step = 1; step <= 4096; step *= 8) {
		decoded r = decode_trickle(&b, step, SIZE_MAX);
		assert_int_equal(r.rc, 0);
		assert_int_equal(r.frames, ref_frames);
		assert_memory_equal(r.pcm, ref, ref_frames * sizeof(float));
		free(r.pcm);
	}
	/* A second document after the first's Void (read past, not sought), found the same way. */
	layout l2 = {.codec_delay = -2, .head_preskip = 0, .unknown_segment = true};
	wbuf second;
	size_t second_frames;
	build(&second, &mono_cbr, &l2);
	put(&b, second.d, second.len);
	float *ref2 = reference(&mono_cbr, &l2, &second_frames);
	for (size_t step = 1; step <= 4096; step *= 8) {
		decoded r = decode_trickle(&b, step, SIZE_MAX);
		assert_int_equal(r.rc, 0);
		assert_int_equal(r.frames, ref_frames + second_frames);
		assert_memory_equal(r.pcm, ref, ref_frames * sizeof(float));
		assert_memory_equal(r.pcm + ref_frames, ref2, second_frames * sizeof(float));
		free(r.pcm);
	}
	free(ref2);
	free(second.d);
	free(ref);
	free(b.d);
}

/* A source failing at any point fails the decode with its error, and nothing leaks. */
static void test_io_error_at_every_offset(void **state)
{
	(void)state;
	pkts few = mono;
	few.n = 6;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .lacing = 3,
	            .per_block = 2,
	            .last_discard = 300,
	            .tail = true};
	wbuf b;
	build(&b, &few, &l);
	for (size_t fail_at = 0; fail_at <= b.len; fail_at++) {
		decoded r = decode_trickle(&b, 16, fail_at);
		assert_int_equal(r.rc, fail_at < b.len ? CODEC_EIO : 0);
		free(r.pcm);
	}
	free(b.d);
}

/*
 * Regression: Chrome's MediaRecorder stopped within some 30 ms of start() (a child's double tap)
 * hands out 110 bytes: its EBML header, then 74 zero bytes where the Segment would be. That is a
 * recording without audio, audio_too_short as Firefox's equivalents are, not audio_malformed.
 */
static void test_chrome_stopped_before_its_first_audio(void **state)
{
	(void)state;
	wbuf b;
	read_data_file("chrome_stop_at_once.webm", &b);
	assert_int_equal(b.len, 110);
	decoded r = decode(b.d, b.len, 4096);
	assert_int_equal(r.rc, CODEC_ETOOSHORT);
	r = decode_trickle(&b, 7, SIZE_MAX);
	assert_int_equal(r.rc, CODEC_ETOOSHORT);
	/* However many zeros, past the read buffer: the same. */
	size_t header = 36;
	b.len = header;
	for (size_t i = 0; i < 200000; i++)
		put(&b, "", 1);
	r = decode(b.d, b.len, 4096);
	assert_int_equal(r.rc, CODEC_ETOOSHORT);
	/* Zeros and then anything else is still malformed, and the header alone still truncated. */
	put(&b, "\x1A", 1);
	r = decode(b.d, b.len, 4096);
	assert_int_equal(r.rc, CODEC_EMALFORMED);
	r = decode(b.d, header, 4096);
	assert_int_equal(r.rc, CODEC_ETRUNCATED);
	free(b.d);
}

int main(int argc, char **argv)
{
	data_dir = getenv("JIAYIN_TEST_DATA");
	if (argc > 1)
		data_dir = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_skip_to_exact_end_of_file),
	    cmocka_unit_test(test_input_byte_limit),
	    cmocka_unit_test(test_unseekable_source_with_short_reads),
	    cmocka_unit_test(test_io_error_at_every_offset),
	    cmocka_unit_test(test_chrome_stopped_before_its_first_audio),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
