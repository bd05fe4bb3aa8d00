/*
 * test_ogg.c — the Ogg Opus decoder on streams built with libogg in the test: pre-skip and
 * end trimming to the sample, a stream starting at a non-zero granule position, bad CRCs,
 * missing or misplaced headers, truncation at every offset, chained links, and non-Opus Ogg.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

#include <ogg/ogg.h>
#include <opus.h>

typedef struct oggbuf {
	uint8_t d[1 << 18];
	size_t n;
} oggbuf;

static void emit(oggbuf *b, ogg_stream_state *os, bool flush)
{
	ogg_page pg;
	while (flush ? ogg_stream_flush(os, &pg) : ogg_stream_pageout(os, &pg)) {
		assert_true(b->n + (size_t)(pg.header_len + pg.body_len) <= sizeof b->d);
		memcpy(b->d + b->n, pg.header, (size_t)pg.header_len);
		memcpy(b->d + b->n + pg.header_len, pg.body, (size_t)pg.body_len);
		b->n += (size_t)(pg.header_len + pg.body_len);
	}
}

/*
 * `packets` 20 ms packets of a 440 Hz tone; the last page's granule position is
 * start_gp + packets*960 - trim. With `tags` false the OpusTags packet is left out.
 */
static int head_channels = 1; /* OpusHead's channels (family 0) for the next build */

static void build(oggbuf *b, const char *codec, uint16_t preskip, int packets, int64_t start_gp,
		  int trim, bool tags)
{
	ogg_stream_state os;
	ogg_stream_init(&os, 1234);
	b->n = 0;
	uint8_t head[19] = "OpusHead";
	if (strcmp(codec, "opus") != 0)
		memcpy(head, "\x01vorbis\0", 8);
	head[8] = 1, head[9] = (uint8_t)head_channels, head[10] = (uint8_t)preskip,
	head[11] = (uint8_t)(preskip >> 8);
	le32(head + 12, 48000);
	head[16] = head[17] = head[18] = 0;
	ogg_packet op = {.packet = head, .bytes = 19, .b_o_s = 1, .packetno = 0};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	if (tags) {
		uint8_t t[20] = "OpusTags";
		le32(t + 8, 4), memcpy(t + 12, "test", 4), le32(t + 16, 0);
		op = (ogg_packet){.packet = t, .bytes = 20, .packetno = 1};
		ogg_stream_packetin(&os, &op);
		emit(b, &os, true);
	}
	int err;
	OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err);
	float pcm[960];
	uint8_t pkt[1500];
	for (int p = 0; p < packets; p++) {
		for (int i = 0; i < 960; i++)
			pcm[i] = 0.3f * (float)sin(2 * M_PI * 440 * (p * 960 + i) / 48000.0);
		int len = opus_encode_float(enc, pcm, 960, pkt, sizeof pkt);
		assert_true(len > 0);
		bool last = p == packets - 1;
		op = (ogg_packet){.packet = pkt, .bytes = len, .e_o_s = last, .packetno = 2 + p};
		op.granulepos = start_gp + (int64_t)(p + 1) * 960 - (last ? trim : 0);
		ogg_stream_packetin(&os, &op);
		emit(b, &os, (p + 1) % 10 == 0 || last);
	}
	opus_encoder_destroy(enc);
	ogg_stream_clear(&os);
}

static long long count(const oggbuf *b)
{
	codec_stream_info info;
	return decode_count(b->d, b->n, &info, NULL);
}

static void preskip_and_end_trim(void **st)
{
	(void)st;
	static oggbuf b;
	build(&b, "opus", 312, 50, 0, 0, true);
	assert_int_equal(count(&b), 50 * 960 - 312);
	build(&b, "opus", 312, 50, 0, 555, true);
	assert_int_equal(count(&b), 50 * 960 - 312 - 555);
	build(&b, "opus", 0, 7, 0, 100, true);
	assert_int_equal(count(&b), 7 * 960 - 100);
}

static void stream_starting_mid_way(void **st)
{
	(void)st;
	/* A cut from a live stream: granule positions start at 1,000,000. */
	static oggbuf b;
	build(&b, "opus", 312, 30, 1000000, 200, true);
	assert_int_equal(count(&b), 30 * 960 - 312 - 200);
}

/* b followed by c: a chained file, as `cat b.opus c.opus` makes. */
static void chain(oggbuf *b, const oggbuf *c)
{
	assert_true(b->n + c->n <= sizeof b->d);
	memcpy(b->d + b->n, c->d, c->n);
	b->n += c->n;
}

static void bad_crc_is_corrupt(void **st)
{
	(void)st;
	static oggbuf b, c;
	build(&b, "opus", 312, 50, 0, 0, true);
	b.d[b.n - 10] ^= 0x40; /* inside the last page's body */
	assert_int_equal(count(&b), CODEC_ECORRUPT);
	/* In the first page of a chained link too: that link and what follows were dropped,
	 * the first link alone decoded with no error, as if the page were a writer's padding. */
	build(&b, "opus", 312, 50, 0, 0, true);
	build(&c, "opus", 312, 30, 0, 0, true);
	c.d[40] ^= 0x40; /* inside the second link's OpusHead */
	chain(&b, &c);
	assert_int_equal(count(&b), CODEC_ECORRUPT);
}

static void headers(void **st)
{
	(void)st;
	static oggbuf b;
	build(&b, "opus", 312, 10, 0, 0, false);
	assert_int_equal(count(&b), CODEC_EMALFORMED); /* audio where OpusTags belongs */
	build(&b, "vorbis", 0, 10, 0, 0, true);
	assert_int_equal(count(&b), CODEC_EUNSUPPORTED);
}

static void truncation_never_crashes(void **st)
{
	(void)st;
	static oggbuf b;
	build(&b, "opus", 312, 30, 0, 0, true);
	size_t full = b.n;
	long long whole = count(&b);
	for (size_t n = 0; n < full; n += 7) {
		b.n = n;
		long long r = count(&b);
		/* An error, or (cut between pages) fewer samples than the whole stream. */
		assert_true((r < 0 && r > -CODEC_ERROR_COUNT) || (r >= 0 && r < whole));
	}
	b.n = full - 5;
	assert_int_equal(count(&b), CODEC_ETRUNCATED);
}

/*
 * A chained file is its links in turn, each with its own pre-skip and end trimming (RFC 7845
 * 3): the second link used to be dropped without a word, a recording cut short. A link with
 * other channels is refused; bytes after the last link that begin no other end the clip; a
 * second link cut short is the truncation it is.
 */
static void chained_links_in_turn(void **st)
{
	(void)st;
	static oggbuf b, c, d;
	build(&b, "opus", 312, 50, 0, 100, true);
	build(&c, "opus", 120, 30, 5000, 7, true);
	chain(&b, &c);
	assert_int_equal(count(&b), (50 * 960 - 312 - 100) + (30 * 960 - 120 - 7));
	chain(&b, &c); /* three links, two of them with the same serial number */
	assert_int_equal(count(&b), (50 * 960 - 312 - 100) + 2 * (30 * 960 - 120 - 7));

	build(&b, "opus", 312, 50, 0, 0, true);
	head_channels = 2;
	build(&c, "opus", 312, 10, 0, 0, true);
	head_channels = 1;
	chain(&b, &c);
	assert_int_equal(count(&b), CODEC_EUNSUPPORTED);

	build(&b, "opus", 312, 50, 0, 0, true);
	memcpy(b.d + b.n, "\0\0\0\0junk after the stream", 26);
	b.n += 26;
	assert_int_equal(count(&b), 50 * 960 - 312);

	build(&b, "opus", 312, 50, 0, 0, true);
	build(&d, "opus", 312, 30, 0, 0, true);
	d.n -= 5;
	chain(&b, &d);
	assert_int_equal(count(&b), CODEC_ETRUNCATED);
	build(&b, "opus", 312, 50, 0, 0, true);
	build(&d, "opus", 312, 30, 0, 0, true);
	d.n = 30; /* cut inside the second link's first page: not padding, a cut file */
	chain(&b, &d);
	assert_int_equal(count(&b), CODEC_ETRUNCATED);
	build(&c, "opus", 312, 30, 0, 0, false); /* a second link without its OpusTags */
	build(&b, "opus", 312, 50, 0, 0, true);
	chain(&b, &c);
	assert_int_equal(count(&b), CODEC_EMALFORMED);
}

/*
 * A link of `streams` Opus streams (family 1, one channel) and one 20 ms packet of them all,
 * serial `serial`, after what b holds.
 */
static void add_wide_link(oggbuf *b, int serial, int streams)
{
	ogg_stream_state os;
	ogg_stream_init(&os, serial);
	uint8_t head[22] = "OpusHead";
	head[8] = 1, head[9] = 1, head[10] = head[11] = 0;
	le32(head + 12, 48000);
	head[16] = head[17] = 0, head[18] = 1;
	head[19] = (uint8_t)streams, head[20] = 0, head[21] = 0;
	ogg_packet op = {.packet = head, .bytes = sizeof head, .b_o_s = 1, .packetno = 0};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	uint8_t t[16] = "OpusTags";
	le32(t + 8, 0), le32(t + 12, 0);
	op = (ogg_packet){.packet = t, .bytes = sizeof t, .packetno = 1};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	/* Each stream's frame self-delimited (TOC, length 0), the last one plain. */
	uint8_t pkt[2 * 255];
	size_t n = 0;
	for (int i = 0; i < streams - 1; i++)
		pkt[n++] = 0xf8, pkt[n++] = 0;
	pkt[n++] = 0xf8;
	op = (ogg_packet){
	    .packet = pkt, .bytes = (long)n, .e_o_s = 1, .granulepos = 960, .packetno = 2};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	ogg_stream_clear(&os);
}

/*
 * Every link makes a decoder of its own, audio or not, so a chain of many links of 255
 * streams each took about 12 ms a link (an hour of a worker per pass for a 200 MiB upload),
 * bounded by neither the duration nor the byte limit: a chain's links have 4096 streams in
 * all at most, audio_unsupported past them.
 */
static void chain_streams_bounded(void **st)
{
	(void)st;
	static oggbuf b;
	b.n = 0;
	for (int i = 0; i < 16; i++)
		add_wide_link(&b, 77 + i % 2, 255);
	assert_int_equal(count(&b), 16 * 960);
	add_wide_link(&b, 77, 255);
	assert_int_equal(count(&b), CODEC_EUNSUPPORTED);
}

/* The pages of os appended to m, which grows. */
static void emit_mem(membuf *m, ogg_stream_state *os, bool flush)
{
	ogg_page pg;
	while (flush ? ogg_stream_flush(os, &pg) : ogg_stream_pageout(os, &pg)) {
		size_t len = (size_t)(pg.header_len + pg.body_len);
		m->d = realloc(m->d, m->n + len);
		assert_non_null(m->d);
		memcpy(m->d + m->n, pg.header, (size_t)pg.header_len);
		memcpy(m->d + m->n + pg.header_len, pg.body, (size_t)pg.body_len);
		m->n += len;
	}
}

/*
 * A mono stream (pre-skip 312, 50 packets of 20 ms) whose OpusTags is `tags_len` bytes, most
 * of them a picture's comment as opusenc --picture writes it (base64), over many pages. With
 * `shared` its last page carries the first audio packets too; `magic` is its first 8 bytes.
 */
static membuf big_tags_stream(size_t tags_len, bool shared, const char *magic)
{
	membuf m = {NULL, 0};
	ogg_stream_state os;
	ogg_stream_init(&os, 4321);
	uint8_t head[19] = "OpusHead";
	head[8] = 1, head[9] = 1, head[10] = 312 & 0xFF, head[11] = 312 >> 8;
	le32(head + 12, 48000);
	head[16] = head[17] = head[18] = 0;
	ogg_packet op = {.packet = head, .bytes = 19, .b_o_s = 1, .packetno = 0};
	ogg_stream_packetin(&os, &op);
	emit_mem(&m, &os, true);
	uint8_t *t = malloc(tags_len);
	assert_non_null(t);
	static const char key[] = "METADATA_BLOCK_PICTURE=";
	size_t comment = tags_len - 24;
	memcpy(t, magic, 8);
	le32(t + 8, 4), memcpy(t + 12, "test", 4), le32(t + 16, 1), le32(t + 20, (uint32_t)comment);
	memcpy(t + 24, key, sizeof key - 1);
	memset(t + 24 + sizeof key - 1, 'A', comment - (sizeof key - 1));
	op = (ogg_packet){.packet = t, .bytes = (long)tags_len, .packetno = 1};
	ogg_stream_packetin(&os, &op);
	emit_mem(&m, &os, !shared);
	free(t);
	int err;
	OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err);
	float pcm[960];
	uint8_t pkt[1500];
	for (int p = 0; p < 50; p++) {
		for (int i = 0; i < 960; i++)
			pcm[i] = 0.3f * (float)sin(2 * M_PI * 440 * (p * 960 + i) / 48000.0);
		int len = opus_encode_float(enc, pcm, 960, pkt, sizeof pkt);
		assert_true(len > 0);
		op = (ogg_packet){.packet = pkt,
		                  .bytes = len,
		                  .e_o_s = p == 49,
		                  .granulepos = (int64_t)(p + 1) * 960,
		                  .packetno = 2 + p};
		ogg_stream_packetin(&os, &op);
		emit_mem(&m, &os, (p + 1) % 10 == 0 || p == 49);
	}
	opus_encoder_destroy(enc);
	ogg_stream_clear(&os);
	return m;
}

/* Remove the page that begins `index` pages into m. */
static void drop_page(membuf *m, int index)
{
	size_t at = 0;
	for (int i = 0;; i++) {
		assert_true(at + 27 <= m->n && memcmp(m->d + at, "OggS", 4) == 0);
		size_t len = 27u + m->d[at + 26];
		for (unsigned k = 0; k < m->d[at + 26]; k++)
			len += m->d[at + 27 + k];
		if (i == index) {
			memmove(m->d + at, m->d + at + len, m->n - at - len);
			m->n -= len;
			return;
		}
		at += len;
	}
}

/*
 * Cover art makes OpusTags large: opusenc --picture of a 2 MB image writes 2.6 MB of it over
 * 40-odd pages, and a phone's photo more. Only its magic matters: past 1 MiB it was refused
 * audio_malformed, a valid file; now it is dropped page by page, memory staying bounded.
 */
static void large_tags_skipped(void **st)
{
	(void)st;
	codec_stream_info info;
	membuf m = big_tags_stream(3u << 20, false, "OpusTags");
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), 50 * 960 - 312);
	free(m.d);
	m = big_tags_stream(3u << 20, true, "OpusTags"); /* audio on its last page */
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), 50 * 960 - 312);
	free(m.d);
	m = big_tags_stream((1u << 20) + 4000, true, "OpusTags");
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), 50 * 960 - 312);
	free(m.d);
	/* Still refused: a large packet that is no OpusTags, one with a page missing, one cut. */
	m = big_tags_stream(3u << 20, false, "OpusTagz");
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), CODEC_EMALFORMED);
	free(m.d);
	m = big_tags_stream(3u << 20, false, "OpusTags");
	drop_page(&m, 20);
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), CODEC_EMALFORMED);
	free(m.d);
	m = big_tags_stream(3u << 20, false, "OpusTags");
	m.n = 2u << 20;
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), CODEC_ETRUNCATED);
	free(m.d);
}

static void transcoder_output_round_trips(void **st)
{
	(void)st;
	membuf in = make_speechlike_wav(48000, 1, 2.345, 0.3);
	codec_options o;
	codec_options_init(&o);
	codec_buffer out;
	codec_result res;
	assert_int_equal(transcode_mem(&in, &o, &out, &res), 0);
	codec_stream_info info;
	assert_int_equal(decode_count(out.data, out.len, &info, NULL), 112560);
	assert_int_equal(info.format, CODEC_FORMAT_OGG_OPUS);
	/* OpusHead: version 1, mono, the encoder's pre-skip, family 0; vendor "Jiayin". */
	assert_memory_equal(out.data + 28, "OpusHead\x01\x01", 10);
	assert_int_equal(out.data[38] | out.data[39] << 8, res.preskip);
	assert_non_null(memmem(out.data, 200, "Jiayin", 6));
	free(in.d);
	free(out.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(preskip_and_end_trim),
	    cmocka_unit_test(stream_starting_mid_way),
	    cmocka_unit_test(bad_crc_is_corrupt),
	    cmocka_unit_test(headers),
	    cmocka_unit_test(truncation_never_crashes),
	    cmocka_unit_test(chained_links_in_turn),
	    cmocka_unit_test(chain_streams_bounded),
	    cmocka_unit_test(large_tags_skipped),
	    cmocka_unit_test(transcoder_output_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
