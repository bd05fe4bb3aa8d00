/*
 * test_webm_malformed.c — the WebM/Matroska Opus decoder (codec/webm.c) on files broken in the
 * ways uploads break, built by webm_fixture.h and then patched: sizes that lie about their
 * parents or the file, IDs and sizes that are not EBML varints, bad lace headers and Block
 * groups, a Block over the limit, a Cluster before the Tracks, a Segment without its EBML header
 * after the first, truncation at every offset, and random mutations. Each must give the error the
 * demuxer defines for it (or a prefix of the right PCM), never a crash or an overread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "webm_fixture.h"

#include <stdlib.h>
#include <string.h>

/* Patch helpers for the malformed-file tests: find an element by its ID bytes. */
static size_t find_id(const wbuf *b, const uint8_t *id, size_t idlen, size_t from)
{
	for (size_t i = from; i + idlen <= b->len; i++)
		if (memcmp(b->d + i, id, idlen) == 0)
			return i;
	fail_msg("ID not found");
	return 0;
}

/* Set the 8-byte size field that follows the ID at `at` (as el_begin writes them). */
static void set_size8(wbuf *b, size_t at, size_t idlen, uint64_t size)
{
	for (int i = 0; i < 8; i++)
		b->d[at + idlen + (size_t)i] = (uint8_t)(size >> (8 * (7 - i)));
	b->d[at + idlen] |= 0x01;
}

static void test_lying_sizes(void **state)
{
	(void)state;
	static const uint8_t track_entry[] = {0xAE}, tracks[] = {0x16, 0x54, 0xAE, 0x6B},
	                     simple[] = {0xA3}, cluster[] = {0x1F, 0x43, 0xB6, 0x75},
	                     segment[] = {0x18, 0x53, 0x80, 0x67};
	layout l = {.codec_delay = -2, .head_preskip = -1};
	wbuf b;
	build(&b, &mono, &l);
	size_t t = find_id(&b, tracks, 4, 0);
	size_t te = find_id(&b, track_entry, 1, t + 12);
	size_t cl = find_id(&b, cluster, 4, te);
	size_t sb = find_id(&b, simple, 1, cl + 12);
	uint8_t *orig = malloc(b.len);
	assert_non_null(orig);
	memcpy(orig, b.d, b.len);

	/* A TrackEntry larger than its Tracks. */
	set_size8(&b, te, 1, 100000);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* A SimpleBlock larger than its Cluster. */
	set_size8(&b, sb, 1, 1000000);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* A SimpleBlock too short for its own header. */
	set_size8(&b, sb, 1, 2);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* Unknown size where it is not allowed: TrackEntry, Tracks, SimpleBlock. */
	memset(b.d + te + 1, 0xFF, 8);
	b.d[te + 1] = 0x01;
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	memset(b.d + t + 4, 0xFF, 8);
	b.d[t + 4] = 0x01;
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	memset(b.d + sb + 1, 0xFF, 8);
	b.d[sb + 1] = 0x01;
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* A Segment claiming more than the file holds: the file is cut short. */
	size_t sg = find_id(&b, segment, 4, 0);
	set_size8(&b, sg, 4, b.len * 3);
	assert_int_equal(open_rc(&b), CODEC_ETRUNCATED);
	memcpy(b.d, orig, b.len);
	/* A Cluster whose size overruns the Segment. */
	set_size8(&b, cl, 4, b.len);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	/* IDs and sizes that are not EBML varints. */
	b.d[cl] = 0x08; /* a 5-byte ID */
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	b.d[cl + 4] = 0x00; /* a 9-byte size */
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	memcpy(b.d, orig, b.len);
	b.d[sb] = 0xFF; /* a reserved ID */
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	free(orig);
	free(b.d);
}

/* Hand-made Blocks: a Cluster holding one SimpleBlock with the given lace header and data. */
static int rc_of_block(const uint8_t *body, size_t len, bool unknown_size)
{
	pkts none = mono;
	none.n = 0;
	layout l = {.codec_delay = -2, .head_preskip = -1, .unknown_segment = true};
	wbuf b;
	build(&b, &none, &l);
	el_begin_unknown(&b, 0x1F43B675, false);
	el_uint(&b, 0xE7, 0);
	put_id(&b, 0xA3);
	if (unknown_size)
		put_u8(&b, 0xFF);
	else
		put_vint(&b, len);
	put(&b, body, len);
	int rc = open_rc(&b);
	free(b.d);
	return rc;
}

static void test_bad_laces(void **state)
{
	(void)state;
	uint8_t body[2000];
	size_t n = 0;
	const uint8_t *pk = mono.data[3];
	size_t pl = mono.len[3];
	/* Reference: one unlaced packet decodes. */
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x80;
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, false), 0);
	/* Xiph lace sizes beyond the block. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x82;
	body[n++] = 1, body[n++] = 255, body[n++] = 255, body[n++] = 10;
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, false), CODEC_EMALFORMED);
	/* Xiph lace header running off the end of the block. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x82;
	body[n++] = 3, body[n++] = 255, body[n++] = 255;
	assert_int_equal(rc_of_block(body, n, false), CODEC_EMALFORMED);
	/* EBML lacing with a difference that makes a size negative. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x86;
	body[n++] = 2, body[n++] = 0x85, body[n++] = 0x80 | (63 - 10);
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, false), CODEC_EMALFORMED);
	/* Fixed lacing that does not divide the data. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x84;
	body[n++] = 1;
	memcpy(body + n, pk, pl);
	memcpy(body + n + pl, pk, pl);
	assert_int_equal(rc_of_block(body, n + 2 * pl, false), 0);
	assert_int_equal(rc_of_block(body, n + 2 * pl - 1, false), CODEC_EMALFORMED);
	/* Lacing flags with no lace count byte. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x82;
	assert_int_equal(rc_of_block(body, n, false), CODEC_EMALFORMED);
	/* A SimpleBlock of unknown size. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x80;
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, true), CODEC_EMALFORMED);
	/* An empty lace is not an Opus packet; nor is a code-3 packet with no frames. */
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x82;
	body[n++] = 1, body[n++] = 0;
	memcpy(body + n, pk, pl);
	assert_int_equal(rc_of_block(body, n + pl, false), CODEC_ECORRUPT);
	n = 0;
	body[n++] = 0x81, body[n++] = 0, body[n++] = 0, body[n++] = 0x80;
	body[n++] = 0x03, body[n++] = 0x00;
	assert_int_equal(rc_of_block(body, n, false), CODEC_ECORRUPT);
}

static void test_block_group_rules(void **state)
{
	(void)state;
	pkts none = mono;
	none.n = 0;
	layout l = {.codec_delay = -2, .head_preskip = -1, .unknown_segment = true};
	uint8_t blk[600];
	size_t n = 0;
	blk[n++] = 0x81, blk[n++] = 0, blk[n++] = 0, blk[n++] = 0;
	memcpy(blk + n, mono.data[0], mono.len[0]);
	n += mono.len[0];
	for (int variant = 0; variant < 3; variant++) {
		wbuf b;
		build(&b, &none, &l);
		size_t c = el_begin(&b, 0x1F43B675);
		size_t g = el_begin(&b, 0xA0);
		if (variant != 1)
			el_bin(&b, 0xA1, blk, n);
		if (variant == 2)
			el_bin(&b, 0xA1, blk, n);
		el_end(&b, g);
		el_end(&b, c);
		assert_int_equal(open_rc(&b), variant == 0 ? 0 : CODEC_EMALFORMED);
		free(b.d);
	}
}

static void test_block_over_limit(void **state)
{
	(void)state;
	size_t len = (1u << 20) + 100;
	uint8_t *body = calloc(1, len);
	assert_non_null(body);
	body[0] = 0x81;
	body[3] = 0x80;
	body[4] = 0xF8; /* a CELT packet that would decode */
	assert_int_equal(rc_of_block(body, len, false), CODEC_EMALFORMED);
	body[0] = 0x82; /* another track's big block is skipped, not rejected */
	assert_int_equal(rc_of_block(body, len, false), 0);
	free(body);
}

static void test_cluster_before_tracks(void **state)
{
	(void)state;
	wbuf b;
	memset(&b, 0, sizeof b);
	size_t m = el_begin(&b, 0x1A45DFA3);
	el_str(&b, 0x4282, "webm");
	el_end(&b, m);
	el_begin_unknown(&b, 0x18538067, false);
	m = el_begin(&b, 0x1F43B675);
	el_uint(&b, 0xE7, 0);
	el_end(&b, m);
	assert_int_equal(open_rc(&b), CODEC_EMALFORMED);
	free(b.d);
}

/*
 * A Segment that is no child of the Segment before it and has no EBML header of its own: after an
 * unknown-size Segment it is read as the next part of the clip (test_webm_chains.c), so one of
 * other channels is audio_unsupported, the audio before it handed out, where it ended the clip
 * without a word; inside a known-size Segment it is malformed.
 */
static void test_segment_without_header(void **state)
{
	(void)state;
	static const uint8_t segment[] = {0x18, 0x53, 0x80, 0x67};
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .unknown_segment = true,
	            .unknown_cluster = true};
	wbuf first, second;
	build(&first, &mono, &l);
	build(&second, &stereo, &l);
	size_t seg = find_id(&second, segment, 4, 0);
	put(&first, second.d + seg, second.len - seg);
	size_t ref_frames;
	float *ref = reference(&mono, &l, &ref_frames);
	decoded r = decode(first.d, first.len, 4096);
	assert_int_equal(r.rc, CODEC_EUNSUPPORTED);
	assert_int_equal(r.info.channels, 1);
	assert_int_equal(r.frames, ref_frames);
	assert_memory_equal(r.pcm, ref, ref_frames * sizeof(float));
	free(r.pcm);
	free(first.d);
	l.unknown_segment = false;
	build(&first, &mono, &l);
	size_t outer = find_id(&first, segment, 4, 0);
	put(&first, second.d + seg, second.len - seg);
	set_size8(&first, outer, 4, first.len - outer - 12);
	r = decode(first.d, first.len, 4096);
	assert_int_equal(r.rc, CODEC_EMALFORMED);
	assert_int_equal(r.frames, ref_frames);
	free(r.pcm);
	free(ref);
	free(first.d);
	free(second.d);
}

/*
 * Every prefix of a valid file: a known-size file cut anywhere is truncated; an unknown-size one
 * may also end cleanly between elements, with a prefix of the full decode.
 */
static void test_every_prefix(void **state)
{
	(void)state;
	pkts few = mono;
	few.n = 6;
	for (int variant = 0; variant < 3; variant++) {
		layout l = {.codec_delay = -2,
		            .head_preskip = -1,
		            .lacing = 3,
		            .per_block = 2,
		            .last_discard = 300,
		            .per_cluster = 2};
		l.unknown_segment = variant > 0;
		l.unknown_cluster = variant > 1;
		wbuf b;
		size_t ref_frames;
		build(&b, &few, &l);
		float *ref = reference(&few, &l, &ref_frames);
		for (size_t cut = 0; cut < b.len; cut++) {
			uint8_t *copy =
			    malloc(cut ? cut : 1); /* exact size, so ASan sees overreads */
			assert_non_null(copy);
			memcpy(copy, b.d, cut);
			decoded r = decode(copy, cut, 500);
			if (cut < 4) {
				assert_int_equal(r.rc, CODEC_EFORMAT); /* too short to sniff */
			} else if (variant == 0) {
				assert_int_equal(r.rc, CODEC_ETRUNCATED);
			} else {
				assert_true(r.rc == 0 || r.rc == CODEC_ETRUNCATED);
			}
			assert_true(r.frames <= ref_frames);
			if (r.frames > 0)
				assert_memory_equal(r.pcm, ref, r.frames * sizeof(float));
			free(r.pcm);
			free(copy);
		}
		free(ref);
		free(b.d);
	}
}

/* Random byte changes never crash the demuxer and only give the errors it defines. */
static void test_mutations(void **state)
{
	(void)state;
	pkts few = mono;
	few.n = 8;
	layout l = {.codec_delay = -2,
	            .head_preskip = -1,
	            .lacing = 1,
	            .per_block = 2,
	            .last_discard = 300,
	            .per_cluster = 2,
	            .unknown_cluster = true,
	            .tail = true};
	wbuf b;
	build(&b, &few, &l);
	uint8_t *copy = malloc(b.len);
	assert_non_null(copy);
	uint32_t seed = 1;
	for (int iter = 0; iter < 3000; iter++) {
		memcpy(copy, b.d, b.len);
		int changes = 1 + iter % 4;
		for (int k = 0; k < changes; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % b.len;
			seed = seed * 1103515245u + 12345u;
			copy[at] =
			    iter % 3 == 0 ? (uint8_t)(seed >> 16) : copy[at] ^ (1u << (seed >> 29));
		}
		decoded r = decode(copy, b.len, 777);
		assert_true(r.rc <= 0 && r.rc > -CODEC_ERROR_COUNT);
		assert_true(r.rc != CODEC_ENOMEM && r.rc != CODEC_EIO && r.rc != CODEC_EINVAL);
		free(r.pcm);
	}
	free(copy);
	free(b.d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lying_sizes),
	    cmocka_unit_test(test_bad_laces),
	    cmocka_unit_test(test_block_group_rules),
	    cmocka_unit_test(test_block_over_limit),
	    cmocka_unit_test(test_cluster_before_tracks),
	    cmocka_unit_test(test_segment_without_header),
	    cmocka_unit_test(test_every_prefix),
	    cmocka_unit_test(test_mutations),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
