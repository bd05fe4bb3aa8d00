/*
 * test_webm_layouts.c — the WebM/Matroska Opus decoder (codec/webm.c) on files it must read, and
 * on what their headers may say: every layout webm_fixture.h builds (known and unknown sizes, the
 * four lacing modes, DiscardPadding at either end, OpusHead pre-skip against CodecDelay, stereo,
 * foreign tracks), each decoded with several read sizes and matched to the sample against the
 * reference; the TrackEntry, Tracks and DocType rules that make a file unsupported or malformed;
 * and files made by ffmpeg, from $JIAYIN_TEST_DATA or argv[1] (make_webm_vectors.py --ffmpeg
 * remakes them). Broken files are in test_webm_malformed.c, awkward sources in test_webm_sources.c.
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

static const char *data_dir; /* ffmpeg-made files; NULL skips those tests */

/* ---- Layouts the demuxer must read, and what their headers may say. ---- */

static void test_known_sizes_simple_blocks(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2, .head_preskip = -1, .channels_elem = 1, .tail = true};
	check_layout(&mono, &l);
	size_t frames;
	free(reference(&mono, &l, &frames));
	assert_int_equal(frames, 50 * 960 - mono.preskip);
}

static void test_unknown_segment_and_clusters(void **state)
{
	(void)state;
	layout l = {.codec_delay = -1,
	            .head_preskip = -1,
	            .unknown_segment = true,
	            .unknown_cluster = true,
	            .per_cluster = 7};
	check_layout(&mono, &l);
	l.short_unknown = true; /* 0xFF: the one-byte unknown size */
	check_layout(&mono, &l);
	l.tail = true; /* Cues and Tags end the last unknown-size Cluster */
	check_layout(&mono, &l);
	l.unknown_segment = false; /* unknown Clusters inside a known Segment */
	check_layout(&mono, &l);
	l.tail = false;
	check_layout(&mono, &l);
	l.unknown_segment = true;
	l.unknown_cluster = false; /* known Clusters in an unknown Segment (ffmpeg -live) */
	check_layout(&mono, &l);
}

static void test_xiph_lacing(void **state)
{
	(void)state;
	size_t big = 0;
	for (int i = 0; i < mono_big.n; i++)
		big += mono_big.len[i] > 255;
	assert_true(big > 10);
	layout l = {.lacing = 1, .per_block = 4, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono_big, &l);
	l.per_block = 7;
	l.unknown_cluster = true;
	check_layout(&mono, &l);
}

static void test_ebml_lacing(void **state)
{
	(void)state;
	layout l = {.lacing = 3, .per_block = 5, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono, &l);
	check_layout(&mono_big, &l);
	l.per_block = 3;
	check_layout(&stereo, &l);
}

static void test_fixed_lacing(void **state)
{
	(void)state;
	for (int i = 1; i < mono_cbr.n; i++)
		assert_int_equal(mono_cbr.len[i], mono_cbr.len[0]);
	layout l = {.lacing = 2, .per_block = 6, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono_cbr, &l);
	l.per_block = 5; /* a shorter last block */
	check_layout(&mono_cbr, &l);
}

static void test_discard_padding_trims_the_end(void **state)
{
	(void)state;
	layout l = {.last_discard = 600, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono, &l);
	size_t frames;
	free(reference(&mono, &l, &frames));
	assert_int_equal(frames, 50 * 960 - mono.preskip - 600);
	l.padding_first = true; /* DiscardPadding before the Block in its group */
	check_layout(&mono, &l);
	l.groups = true;
	check_layout(&mono, &l);
	/* A laced last block trimmed by more than one packet. */
	layout laced = {.lacing = 3,
	                .per_block = 3,
	                .last_discard = 1500,
	                .codec_delay = -2,
	                .head_preskip = -1};
	check_layout(&mono, &laced);
	/* Padding longer than the block drops all of it and nothing before it. */
	laced.last_discard = 100000;
	check_layout(&mono, &laced);
	free(reference(&mono, &laced, &frames));
	assert_int_equal(frames, 48 * 960 - mono.preskip);
}

static void test_negative_discard_padding_trims_the_start(void **state)
{
	(void)state;
	/* Pre-skip and a negative padding on the first block overlap: the union is dropped. */
	layout l = {.first_discard = -100, .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono, &l);
	l.first_discard = -1000;
	check_layout(&mono, &l);
	l.per_block = 3;
	l.lacing = 1;
	l.first_discard = -2000;
	check_layout(&mono, &l);
}

static void test_single_block_with_preskip_and_padding(void **state)
{
	(void)state;
	pkts one = mono;
	one.n = 3;
	layout l = {.lacing = 1,
	            .per_block = 3,
	            .last_discard = 1000,
	            .codec_delay = -2,
	            .head_preskip = -1};
	check_layout(&one, &l);
	size_t frames;
	free(reference(&one, &l, &frames));
	assert_int_equal(frames, 3 * 960 - one.preskip - 1000);
}

static void test_stereo(void **state)
{
	(void)state;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .channels_elem = 2,
	            .last_discard = 333,
	            .unknown_cluster = true,
	            .unknown_segment = true};
	check_layout(&stereo, &l);
}

/*
 * Regression: ffmpeg writes CodecDelay in the wrong unit for non-48 kHz input (104 frames where
 * OpusHead says 312 for 16 kHz); preferring it kept 208 frames of encoder warm-up.
 */
static void test_opushead_preskip_wins_over_codec_delay(void **state)
{
	(void)state;
	layout l = {.codec_delay = 104, .head_preskip = 312};
	check_layout(&mono, &l);
	size_t frames;
	free(reference(&mono, &l, &frames));
	assert_int_equal(frames, 50 * 960 - 312);
	l.codec_delay = 0;
	check_layout(&mono, &l);
	l.codec_delay = -1;
	l.head_preskip = 1234;
	check_layout(&mono, &l);
	free(reference(&mono, &l, &frames));
	assert_int_equal(frames, 50 * 960 - 1234);
}

static void test_missing_codec_private(void **state)
{
	(void)state;
	/* Without OpusHead, CodecDelay is the pre-skip; without either, nothing is skipped. */
	layout l = {.no_private = true, .channels_elem = 2, .codec_delay = 500};
	check_layout(&stereo, &l);
	size_t frames;
	free(reference(&stereo, &l, &frames));
	assert_int_equal(frames, 40 * 960 - 500);
	l.codec_delay = -1;
	check_layout(&stereo, &l);
	wbuf b;
	l.channels_elem = 0; /* nothing says how many channels */
	build(&b, &stereo, &l);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	free(b.d);
	l.channels_elem = 6; /* surround needs the OpusHead mapping */
	build(&b, &stereo, &l);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	free(b.d);
}

static void test_vorbis_only_is_unsupported(void **state)
{
	(void)state;
	wbuf b;
	layout l = {.codec = "A_VORBIS", .codec_delay = -1, .head_preskip = -1};
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED);
	free(b.d);
	l.codec = "V_VP8";
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED);
	free(b.d);
	l.codec = "A_OPUS/EXTRA";
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED);
	free(b.d);
}

static void test_opus_after_vorbis_track(void **state)
{
	(void)state;
	layout l = {
	    .vorbis_first = true, .codec_delay = -2, .head_preskip = -1, .last_discard = 200};
	check_layout(&mono, &l);
	l.unknown_cluster = true;
	l.lacing = 3;
	l.per_block = 4;
	check_layout(&mono, &l);
}

/* TrackEntry fields that make our track unusable, and large foreign private data we skip. */
static void test_track_entry_rules(void **state)
{
	(void)state;
	layout l = {
	    .codec_delay = -2, .head_preskip = -1, .vorbis_first = true, .vorbis_big = true};
	check_layout(&mono, &l);
	static const uint8_t three[3] = {1, 2, 3};
	uint8_t big[5000];
	memset(big, 0, sizeof big);
	struct {
		int rc;
		bool no_private;
		wbuf extra;
	} cases[5];
	memset(cases, 0, sizeof cases);
	el_bin(&cases[0].extra, 0x6D80, three, sizeof three); /* ContentEncodings */
	cases[0].rc = CODEC_EUNSUPPORTED;
	el_bin(&cases[1].extra, 0x63A2, big, sizeof big); /* a CodecPrivate no OpusHead needs */
	cases[1].rc = CODEC_EMALFORMED;
	cases[1].no_private = true;
	size_t a = el_begin(&cases[2].extra, 0xE1); /* SamplingFrequency that is not a float */
	el_bin(&cases[2].extra, 0xB5, three, sizeof three);
	el_end(&cases[2].extra, a);
	cases[2].rc = CODEC_EMALFORMED;
	el_uint(&cases[3].extra, 0xD7, 0); /* TrackNumber 0 */
	cases[3].rc = CODEC_EMALFORMED;
	el_uint(&cases[4].extra, 0x83, 1); /* TrackType video: not our track */
	cases[4].rc = CODEC_EUNSUPPORTED;
	l.vorbis_first = false;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		wbuf b;
		l.extra = &cases[i].extra;
		l.no_private = cases[i].no_private;
		l.channels_elem = 1;
		build(&b, &mono, &l);
		assert_int_equal(open_rc(&b), cases[i].rc);
		free(b.d);
		free(cases[i].extra.d);
	}
}

static void test_no_tracks(void **state)
{
	(void)state;
	wbuf b;
	memset(&b, 0, sizeof b);
	size_t m = el_begin(&b, 0x1A45DFA3);
	el_str(&b, 0x4282, "matroska");
	el_end(&b, m);
	size_t seg = el_begin(&b, 0x18538067);
	m = el_begin(&b, 0x1549A966);
	el_uint(&b, 0x2AD7B1, 1000000);
	el_end(&b, m);
	size_t tracks = el_begin(&b, 0x1654AE6B);
	el_end(&b, tracks);
	el_end(&b, seg);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED); /* empty Tracks */
	b.len = tracks - 4;                                /* no Tracks at all */
	el_end(&b, seg);
	assert_int_equal(open_rc(&b), CODEC_EUNSUPPORTED);
	b.d[seg] = 0x01;
	memset(b.d + seg + 1, 0xFF, 7); /* unknown size: the upload was cut before its Tracks */
	assert_int_equal(open_rc(&b), CODEC_ETRUNCATED);
	free(b.d);
}

static void test_tracks_without_clusters(void **state)
{
	(void)state;
	pkts none = mono;
	none.n = 0;
	layout l = {.codec_delay = -2, .head_preskip = -1, .tail = true};
	wbuf b;
	build(&b, &none, &l);
	decoded r = decode(b.d, b.len, 960);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.frames, 0);
	free(r.pcm);
	free(b.d);
}

static void test_doctype(void **state)
{
	(void)state;
	wbuf b;
	layout l = {.doctype = "matroska", .codec_delay = -2, .head_preskip = -1};
	check_layout(&mono, &l);
	l.doctype = "mkvx";
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EFORMAT);
	free(b.d);
	l.doctype = "a-doctype-longer-than-any-buffer-we-keep";
	build(&b, &mono, &l);
	assert_int_equal(open_rc(&b), CODEC_EFORMAT);
	free(b.d);
}

/* Direct use of the container decoder, for inputs the sniffing front end would not pass on. */
static int webm_ops_rc(const void *data, size_t len)
{
	codec_source src;
	codec_memory_source mem;
	codec_in in;
	codec_stream_info info;
	void *state = (void *)1;
	codec_source_memory(&src, &mem, data, len);
	assert_int_equal(in_init(&in, &src, 0), 0);
	int rc = codec_webm_decoder.open(&in, &state, &info);
	if (rc < 0)
		assert_null(state);
	codec_webm_decoder.close(state);
	in_free(&in);
	return rc;
}

static void test_not_webm(void **state)
{
	(void)state;
	static const uint8_t riff[] = "RIFF\0\0\0\0WAVEfmt ";
	static const uint8_t partial_magic[] = {0x1A, 0x45};
	assert_int_equal(webm_ops_rc(riff, sizeof riff), CODEC_EFORMAT);
	assert_int_equal(webm_ops_rc(riff, 0), CODEC_EFORMAT);
	assert_int_equal(webm_ops_rc(partial_magic, sizeof partial_magic), CODEC_ETRUNCATED);
	codec_webm_decoder.close(NULL);
}

/* ---- Files made by ffmpeg (make_webm_vectors.py --ffmpeg). ---- */

static void check_file(const char *name, unsigned channels, size_t frames)
{
	char path[4096];
	if (!data_dir)
		skip();
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	uint8_t *buf = malloc(1 << 20);
	assert_non_null(buf);
	size_t len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	decoded r = decode(buf, len, 1000);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.info.channels, channels);
	assert_int_equal(r.frames, frames);
	/* A sine, not silence: the PCM came out of the decoder, not out of calloc. */
	double energy = 0;
	for (size_t i = 0; i < r.frames * channels; i++)
		energy += (double)r.pcm[i] * r.pcm[i];
	assert_true(energy / (double)(r.frames * channels) > 0.001);
	free(r.pcm);
	free(buf);
}

static void test_ffmpeg_mono(void **state)
{
	(void)state;
	check_file("ffmpeg_mono_1500ms.webm", 1, 72000);
}

static void test_ffmpeg_live(void **state)
{
	(void)state;
	check_file("ffmpeg_live_1500ms.webm", 1, 72000);
}

static void test_ffmpeg_stereo(void **state)
{
	(void)state;
	check_file("ffmpeg_stereo_1500ms.webm", 2, 72000);
}

static void test_ffmpeg_16k_odd_length(void **state)
{
	(void)state;
	check_file("ffmpeg_16k_1234ms.webm", 1, 59232);
}

int main(int argc, char **argv)
{
	data_dir = getenv("JIAYIN_TEST_DATA");
	if (argc > 1)
		data_dir = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_sizes_simple_blocks),
	    cmocka_unit_test(test_unknown_segment_and_clusters),
	    cmocka_unit_test(test_xiph_lacing),
	    cmocka_unit_test(test_ebml_lacing),
	    cmocka_unit_test(test_fixed_lacing),
	    cmocka_unit_test(test_discard_padding_trims_the_end),
	    cmocka_unit_test(test_negative_discard_padding_trims_the_start),
	    cmocka_unit_test(test_single_block_with_preskip_and_padding),
	    cmocka_unit_test(test_stereo),
	    cmocka_unit_test(test_opushead_preskip_wins_over_codec_delay),
	    cmocka_unit_test(test_missing_codec_private),
	    cmocka_unit_test(test_vorbis_only_is_unsupported),
	    cmocka_unit_test(test_opus_after_vorbis_track),
	    cmocka_unit_test(test_track_entry_rules),
	    cmocka_unit_test(test_no_tracks),
	    cmocka_unit_test(test_tracks_without_clusters),
	    cmocka_unit_test(test_doctype),
	    cmocka_unit_test(test_not_webm),
	    cmocka_unit_test(test_ffmpeg_mono),
	    cmocka_unit_test(test_ffmpeg_live),
	    cmocka_unit_test(test_ffmpeg_stereo),
	    cmocka_unit_test(test_ffmpeg_16k_odd_length),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
