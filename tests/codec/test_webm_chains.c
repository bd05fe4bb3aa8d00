/*
 * test_webm_chains.c — the WebM/Matroska Opus decoder (codec/webm.c) on files that are several
 * WebM documents one after the other, as an app that pauses by stopping its MediaRecorder and
 * starting another uploads them (the Blobs joined), and as `cat a.webm b.webm` makes them: each
 * document built by webm_fixture.h with sizes known or unknown, its own pre-skip and trimming,
 * the whole matched to the sample against the documents' references one after the other; a
 * document of nothing but zeros (Chrome stopped at once) among them; a later document with other
 * channels, without Opus, or cut in its header; the bytes after the last document; the duration
 * limit over all documents; and the bound on the decoders a file's documents may make.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "webm_fixture.h"

#include <stdlib.h>
#include <string.h>

typedef struct doc {
	const pkts *p;
	layout l;
} doc;

/* Append c to b and free c. */
static void append(wbuf *b, wbuf *c)
{
	put(b, c->d, c->len);
	free(c->d);
}

static void build_chain(wbuf *b, const doc *docs, size_t n)
{
	memset(b, 0, sizeof *b);
	for (size_t i = 0; i < n; i++) {
		wbuf c;
		build(&c, docs[i].p, &docs[i].l);
		append(b, &c);
	}
}

/* What the documents decode to, each alone, one after the other (all of one channel count). */
static float *chain_reference(const doc *docs, size_t n, size_t *frames)
{
	size_t ch = (size_t)docs[0].p->channels, total = 0;
	float *all = NULL;
	for (size_t i = 0; i < n; i++) {
		size_t f;
		float *ref = reference(docs[i].p, &docs[i].l, &f);
		all = realloc(all, (total + f) * ch * sizeof(float) + 1);
		assert_non_null(all);
		memcpy(all + total * ch, ref, f * ch * sizeof(float));
		total += f;
		free(ref);
	}
	*frames = total;
	return all;
}

/* Decode the chain with several read sizes: rc, and the documents' audio to the sample. */
static void check_chain(const wbuf *b, const doc *docs, size_t n, int rc)
{
	static const size_t chunks[] = {1, 7, 960, 4096, 100000};
	size_t ref_frames, ch = (size_t)docs[0].p->channels;
	float *ref = chain_reference(docs, n, &ref_frames);
	for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
		decoded r = decode(b->d, b->len, chunks[c]);
		assert_int_equal(r.rc, rc);
		assert_int_equal(r.info.channels, ch);
		assert_int_equal(r.frames, ref_frames);
		assert_memory_equal(r.pcm, ref, ref_frames * ch * sizeof(float));
		free(r.pcm);
	}
	free(ref);
}

/* What Chrome's MediaRecorder hands out when stopped at once: an EBML header, then zeros. */
static void put_empty_document(wbuf *b, size_t zeros)
{
	size_t m = el_begin(b, 0x1A45DFA3);
	el_uint(b, 0x4286, 1);
	el_str(b, 0x4282, "webm");
	el_end(b, m);
	for (size_t i = 0; i < zeros; i++)
		put_u8(b, 0);
}

/*
 * Regression: the documents after the first were dropped without a word (the first decoded,
 * exit 0: half a paused story stored as if whole). Each is decoded after the one before, with its
 * own pre-skip and trimming, whatever mix of known and unknown sizes they have: an unknown-size
 * Segment and Cluster end at the next document's EBML header, a known-size Segment at its size.
 */
static void test_documents_decode_in_turn(void **state)
{
	(void)state;
	doc docs[3] = {
	    {&mono, {.codec_delay = -2, .head_preskip = -1, .last_discard = 300, .tail = true}},
	    {&mono_cbr,
	     {.codec_delay = -1,
	      .head_preskip = 100,
	      .unknown_segment = true,
	      .unknown_cluster = true,
	      .lacing = 3,
	      .per_block = 2,
	      .first_discard = -50,
	      .last_discard = 700}},
	    {&mono, {.codec_delay = -2, .head_preskip = 0, .groups = true, .vorbis_first = true}},
	};
	wbuf b;
	size_t frames;
	build_chain(&b, docs, 3);
	check_chain(&b, docs, 3, 0);
	free(chain_reference(docs, 3, &frames));
	assert_int_equal(frames,
	                 (50 * 960 - mono.preskip - 300) + (24 * 960 - 100 - 700) + (50 * 960));
	free(b.d);

	/* Unknown sizes throughout (Chrome's), the one-byte form too; then known after unknown. */
	for (int v = 0; v < 3; v++) {
		doc two[2] = {
		    {&mono,
		     {.codec_delay = -2,
		      .head_preskip = -1,
		      .unknown_segment = true,
		      .unknown_cluster = true,
		      .short_unknown = v == 1,
		      .per_cluster = 7}},
		    {&mono_big,
		     {.codec_delay = -2,
		      .head_preskip = -1,
		      .unknown_segment = v < 2,
		      .unknown_cluster = v < 2,
		      .lacing = 1,
		      .per_block = 3}},
		};
		build_chain(&b, two, 2);
		check_chain(&b, two, 2, 0);
		free(b.d);
	}

	/* Stereo documents, a known-size Cluster in an unknown Segment (ffmpeg -live) first. */
	doc st[2] = {
	    {&stereo,
	     {.codec_delay = -2, .head_preskip = -1, .unknown_segment = true, .last_discard = 10}},
	    {&stereo, {.codec_delay = -2, .head_preskip = 200, .middle_void = 30}},
	};
	build_chain(&b, st, 2);
	check_chain(&b, st, 2, 0);
	free(b.d);
}

/*
 * A document of nothing but zeros after its header (Chrome's MediaRecorder stopped within some
 * 30 ms: a pause and resume at once) holds no audio: passed over among the others and at the
 * end. Alone it is still audio_too_short (test_webm_sources.c).
 */
static void test_empty_documents_are_passed_over(void **state)
{
	(void)state;
	doc docs[2] = {
	    {&mono,
	     {.codec_delay = -2,
	      .head_preskip = -1,
	      .unknown_segment = true,
	      .unknown_cluster = true}},
	    {&mono_cbr, {.codec_delay = -2, .head_preskip = -1}},
	};
	wbuf b, c;
	build_chain(&b, docs, 1);
	put_empty_document(&b, 74);
	build(&c, docs[1].p, &docs[1].l);
	append(&b, &c);
	check_chain(&b, docs, 2, 0);
	put_empty_document(&b, 74); /* at the end */
	check_chain(&b, docs, 2, 0);
	free(b.d);

	/* First, after a known-size document, and many zeros (past the read buffer). */
	memset(&b, 0, sizeof b);
	put_empty_document(&b, 200000);
	build(&c, docs[1].p, &docs[1].l);
	append(&b, &c);
	put_empty_document(&b, 10);
	build(&c, docs[0].p, &docs[0].l);
	append(&b, &c);
	doc order[2] = {docs[1], docs[0]};
	check_chain(&b, order, 2, 0);
	free(b.d);
}

/*
 * A later document with other channels than the first: the clip's layout is fixed when it
 * opens, so it is audio_unsupported (as a chained Ogg link's), the audio before it handed out
 * first; it was dropped without a word.
 */
static void test_other_channels_refused(void **state)
{
	(void)state;
	for (int v = 0; v < 2; v++) {
		layout l = {.codec_delay = -2,
		            .head_preskip = -1,
		            .unknown_segment = v == 0,
		            .unknown_cluster = v == 0};
		doc docs[2] = {{v == 0 ? &mono : &stereo, l}, {v == 0 ? &stereo : &mono, l}};
		wbuf b;
		build_chain(&b, docs, 2);
		check_chain(&b, docs, 1, CODEC_EUNSUPPORTED);
		free(b.d);
	}
}

/*
 * A later document without an Opus track, or whose DocType is no WebM's: a part of the clip we
 * cannot decode, audio_unsupported as a first would be (skipping it would lose it unsaid).
 */
static void test_document_without_opus_refused(void **state)
{
	(void)state;
	doc docs[2] = {
	    {&mono, {.codec_delay = -2, .head_preskip = -1}},
	    {&mono, {.codec_delay = -2, .head_preskip = -1, .codec = "A_VORBIS"}},
	};
	wbuf b;
	build_chain(&b, docs, 2);
	check_chain(&b, docs, 1, CODEC_EUNSUPPORTED);
	free(b.d);
	docs[1].l.codec = NULL;
	docs[1].l.doctype = "mkv3d";
	build_chain(&b, docs, 2);
	check_chain(&b, docs, 1, CODEC_EUNSUPPORTED);
	free(b.d);
}

/*
 * A file cut in a later document's headers (its EBML header, Segment, Info or Tracks) is
 * audio_truncated, as a cut chained Ogg link is, the audio before it handed out first. After a
 * known-size Segment, one to three bytes of the EBML ID are no document yet: left, as any bytes
 * there were; within an unknown-size Segment they are a cut element, as anywhere in it.
 */
static void test_cut_later_header_is_truncated(void **state)
{
	(void)state;
	static const uint8_t cluster[] = {0x1F, 0x43, 0xB6, 0x75};
	for (int v = 0; v < 2; v++) {
		layout l = {.codec_delay = -2,
		            .head_preskip = -1,
		            .unknown_segment = v == 1,
		            .unknown_cluster = v == 1};
		doc docs[2] = {{&mono, l}, {&mono_cbr, l}};
		wbuf b, second;
		build_chain(&b, docs, 1);
		size_t first = b.len;
		build(&second, &mono_cbr, &l);
		size_t headers = 0;
		while (memcmp(second.d + headers, cluster, 4) != 0)
			headers++;
		append(&b, &second);
		size_t ref_frames;
		float *ref = reference(&mono, &l, &ref_frames);
		for (size_t cut = first + 1; cut < first + headers; cut++) {
			decoded r = decode(b.d, cut, 4096);
			if (v == 0 && cut < first + 4)
				assert_int_equal(r.rc, 0);
			else
				assert_int_equal(r.rc, CODEC_ETRUNCATED);
			assert_int_equal(r.frames, ref_frames);
			assert_memory_equal(r.pcm, ref, ref_frames * sizeof(float));
			free(r.pcm);
		}
		free(ref);
		free(b.d);
	}
}

/*
 * Bytes after the last document that begin none are what they were before documents were
 * chained: after a known-size Segment, left (zeros, junk); in an unknown-size one, elements, so
 * zeros there are malformed.
 */
static void test_bytes_after_the_last_document(void **state)
{
	(void)state;
	doc docs[1] = {{&mono, {.codec_delay = -2, .head_preskip = -1}}};
	wbuf b;
	build_chain(&b, docs, 1);
	for (int i = 0; i < 100; i++)
		put_u8(&b, 0);
	check_chain(&b, docs, 1, 0);
	b.len -= 100;
	put(&b, "junk\x1A\x45\xDF", 7);
	check_chain(&b, docs, 1, 0);
	free(b.d);
	docs[0].l.unknown_segment = docs[0].l.unknown_cluster = true;
	build_chain(&b, docs, 1);
	for (int i = 0; i < 100; i++)
		put_u8(&b, 0);
	check_chain(&b, docs, 1, CODEC_EMALFORMED);
	free(b.d);
}

/* d's document without its EBML header: from its Segment's ID on. */
static void put_bare_segment(wbuf *b, const doc *d)
{
	static const uint8_t segment[] = {0x18, 0x53, 0x80, 0x67};
	wbuf c;
	build(&c, d->p, &d->l);
	size_t at = 0;
	while (memcmp(c.d + at, segment, 4) != 0)
		at++;
	put(b, c.d + at, c.len - at);
	free(c.d);
}

/* A top-level Void of `n` payload bytes (padding, as EBML allows anywhere). */
static void put_void(wbuf *b, size_t n)
{
	put_u8(b, 0xEC);
	put_vint_n(b, n, 8);
	for (size_t i = 0; i < n; i++)
		put_u8(b, 0);
}

/*
 * Regression: a Void between a known-size Segment and the next document, or a Segment without an
 * EBML header after the one before (known or unknown size), ended the clip there without a word
 * (exit 0, the rest of the recording gone); ffmpeg plays on. The Void is padding and skipped; the
 * Segment is decoded as a document of its own. A Void after the last Segment, or one the file ends
 * in, is left as other bytes there are.
 */
static void test_void_and_bare_segment_between(void **state)
{
	(void)state;
	doc docs[3] = {
	    {&mono, {.codec_delay = -2, .head_preskip = -1, .last_discard = 300}},
	    {&mono_cbr, {.codec_delay = -2, .head_preskip = 100, .unknown_segment = true}},
	    {&mono, {.codec_delay = -2, .head_preskip = 0, .groups = true}},
	};
	wbuf b, c;
	build_chain(&b, docs, 1);
	put_void(&b, 5);
	put_void(&b, 0);
	build(&c, docs[1].p, &docs[1].l);
	append(&b, &c);
	check_chain(&b, docs, 2, 0);
	put_bare_segment(&b, &docs[2]); /* after the unknown-size Segment */
	check_chain(&b, docs, 3, 0);
	free(b.d);

	build_chain(&b, docs, 1);
	put_bare_segment(&b, &docs[2]); /* after a known-size one */
	put_void(&b, 3);
	put_bare_segment(&b, &docs[1]);
	doc order[3] = {docs[0], docs[2], docs[1]};
	check_chain(&b, order, 3, 0);
	put_void(&b, 20); /* at the end */
	check_chain(&b, order, 3, 0);
	free(b.d);

	build_chain(&b, docs, 1);
	put_void(&b, 20);
	b.len -= 10; /* the file ends in it */
	check_chain(&b, docs, 1, 0);
	free(b.d);
}

/* The duration limit is the whole file's: two documents of 1 s each are over 1.5 s. */
static void test_duration_limit_counts_every_document(void **state)
{
	(void)state;
	doc docs[2] = {
	    {&mono, {.codec_delay = -2, .head_preskip = 0, .unknown_segment = true}},
	    {&mono, {.codec_delay = -2, .head_preskip = 0, .unknown_segment = true}},
	};
	wbuf b;
	build_chain(&b, docs, 2);
	membuf in = {b.d, b.len};
	codec_options opt;
	codec_options_init(&opt);
	opt.max_duration_ms = 1500;
	codec_buffer out;
	codec_result res;
	assert_int_equal(transcode_mem(&in, &opt, &out, &res), CODEC_ETOOLONG);
	free(out.data);
	opt.max_duration_ms = 2500;
	assert_int_equal(transcode_mem(&in, &opt, &out, &res), 0);
	assert_int_equal(res.input_frames, 2 * 50 * 960);
	assert_int_equal(res.duration_ms, 2000);
	free(out.data);
	free(b.d);
}

/*
 * Each document makes a decoder of its own whether it has audio or not, so their number is
 * bounded as chained Ogg links are: 4096 Opus streams in all. 4096 one-packet mono documents
 * decode; one more is audio_unsupported.
 */
static void test_documents_are_bounded(void **state)
{
	(void)state;
	pkts one = mono;
	one.n = 1;
	layout l = {.codec_delay = -2, .head_preskip = 0, .unknown_segment = true};
	wbuf b, c;
	build(&c, &one, &l);
	memset(&b, 0, sizeof b);
	for (int i = 0; i < 4096; i++)
		put(&b, c.d, c.len);
	decoded r = decode(b.d, b.len, 100000);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.frames, 4096 * 960);
	free(r.pcm);
	put(&b, c.d, c.len);
	r = decode(b.d, b.len, 100000);
	assert_int_equal(r.rc, CODEC_EUNSUPPORTED);
	assert_int_equal(r.frames, 4096 * 960);
	free(r.pcm);
	free(c.d);
	free(b.d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_documents_decode_in_turn),
	    cmocka_unit_test(test_empty_documents_are_passed_over),
	    cmocka_unit_test(test_other_channels_refused),
	    cmocka_unit_test(test_document_without_opus_refused),
	    cmocka_unit_test(test_cut_later_header_is_truncated),
	    cmocka_unit_test(test_bytes_after_the_last_document),
	    cmocka_unit_test(test_void_and_bare_segment_between),
	    cmocka_unit_test(test_duration_limit_counts_every_document),
	    cmocka_unit_test(test_documents_are_bounded),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
