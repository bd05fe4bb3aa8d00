/*
 * test_ogg.c — the Ogg Opus decoder on streams built with libogg in the test: pre-skip and
 * end trimming to the sample, a stream starting at a non-zero granule position, granule
 * positions that lag the audio (Android's MediaRecorder), bad CRCs, missing or misplaced
 * headers, truncation at every offset, chained links, and non-Opus Ogg.
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

/* `n` 20 ms packets of the 440 Hz tone build() encodes, the same bytes on every call. */
static int tone_packets(uint8_t (*pkt)[1500], int *len, int n)
{
	int err;
	OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err);
	float pcm[960];
	for (int p = 0; p < n; p++) {
		for (int i = 0; i < 960; i++)
			pcm[i] = 0.3f * (float)sin(2 * M_PI * 440 * (p * 960 + i) / 48000.0);
		len[p] = opus_encode_float(enc, pcm, 960, pkt[p], 1500);
		assert_true(len[p] > 0);
	}
	opus_encoder_destroy(enc);
	return n;
}

/*
 * The tone's `n` packets one a page (ogg_stream_flush after each, as Android's OggWriter
 * does), page k's granule position gp[k]; EOS on the last page only with `eos`.
 */
static void build_paged(oggbuf *b, int serial, int n, const int64_t *gp, bool eos)
{
	static uint8_t pkt[200][1500];
	static int len[200];
	assert_true(n <= 200);
	tone_packets(pkt, len, n);
	ogg_stream_state os;
	ogg_stream_init(&os, serial);
	b->n = 0;
	uint8_t head[19] = "OpusHead";
	head[8] = 1, head[9] = 1, head[10] = 312 & 0xFF, head[11] = 312 >> 8;
	le32(head + 12, 48000);
	head[16] = head[17] = head[18] = 0;
	ogg_packet op = {.packet = head, .bytes = 19, .b_o_s = 1, .packetno = 0};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	uint8_t t[27] = "OpusTags";
	le32(t + 8, 7), memcpy(t + 12, "Android", 7), le32(t + 19, 0);
	op = (ogg_packet){.packet = t, .bytes = 23, .packetno = 1};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	for (int p = 0; p < n; p++) {
		op = (ogg_packet){.packet = pkt[p],
		                  .bytes = len[p],
		                  .e_o_s = eos && p == n - 1,
		                  .granulepos = gp[p],
		                  .packetno = 2 + p};
		ogg_stream_packetin(&os, &op);
		emit(b, &os, true);
	}
	ogg_stream_clear(&os);
}

/*
 * Granule positions as Android's OggWriter writes them: 48000 * T / 1e6, T the largest
 * encoder timestamp (microseconds) so far, the start of the page's packet: packet k's is
 * k * 20 ms, `jitter_us` of noise either way, and from packet `pause_at` on `pause_us` later
 * (a pause and resume: the packets go on without a gap, the timestamps jump). `lag` false
 * counts from the packet's end instead, as a valid writer with the same noise would.
 */
static void android_granules(int64_t *gp, int n, int jitter_us, int pause_at, int64_t pause_us,
                             bool lag)
{
	uint32_t seed = 12345;
	int64_t t_max = 0;
	for (int k = 0; k < n; k++) {
		seed = seed * 1103515245u + 12345u;
		int noise =
		    jitter_us ? (int)((seed >> 8) % (2u * (unsigned)jitter_us + 1)) - jitter_us : 0;
		int64_t t = (int64_t)k * 20000 + noise + (k >= pause_at ? pause_us : 0);
		t_max = t > t_max ? t : t_max;
		gp[k] = 48000 * t_max / 1000000 + (lag ? 0 : 960);
	}
}

/* All of a stream's samples (mono), malloc'd; their count through *n. */
static float *decode_all(const oggbuf *b, long long *n)
{
	codec_source src;
	codec_memory_source mem;
	codec_decoder *dec;
	codec_stream_info info;
	codec_source_memory(&src, &mem, b->d, b->n);
	*n = codec_decoder_open(&dec, &src, 0, &info);
	if (*n < 0)
		return NULL;
	assert_int_equal(info.channels, 1);
	float *pcm = NULL;
	size_t have = 0;
	for (;;) {
		pcm = realloc(pcm, (have + 4096) * sizeof *pcm);
		assert_non_null(pcm);
		size_t got;
		int rc = codec_decoder_read(dec, pcm + have, 4096, &got);
		if (rc < 0 || got == 0) {
			*n = rc < 0 ? rc : (long long)have;
			break;
		}
		have += got;
	}
	codec_decoder_close(dec);
	return pcm;
}

/*
 * b decodes to the very samples of the same packets in a valid stream (one page each,
 * granule positions their ends, EOS): all of them, pre-skip dropped, no dropout.
 */
static void decodes_as_valid(const oggbuf *b, int n)
{
	static oggbuf v;
	static int64_t gp[200];
	for (int k = 0; k < n; k++)
		gp[k] = (int64_t)(k + 1) * 960;
	build_paged(&v, 1234, n, gp, true);
	long long got, want;
	float *pcm = decode_all(b, &got), *ref = decode_all(&v, &want);
	assert_int_equal(want, (long long)n * 960 - 312);
	assert_int_equal(got, want);
	for (long long i = 0; i < want; i++)
		if (pcm[i] != ref[i])
			fail_msg("sample %lld of %lld differs: %g, not %g", i, want, pcm[i],
			         ref[i]);
	free(pcm);
	free(ref);
}

/*
 * Android's MediaRecorder (OutputFormat.OGG, AudioEncoder.OPUS) gives each page its packet's
 * start time and never sets EOS: the first audio page says 0 for 960 samples, refused
 * audio_malformed by RFC 7845's letter, a parent's story lost to the phone's muxer. It is
 * decoded whole now, with timestamp noise and across a pause.
 */
static void android_recorder_decodes_whole(void **st)
{
	(void)st;
	static oggbuf b, c;
	static int64_t gp[200];
	android_granules(gp, 150, 0, 150, 0, true);
	assert_int_equal(gp[0], 0);
	build_paged(&b, 99, 150, gp, false);
	decodes_as_valid(&b, 150);
	android_granules(gp, 150, 500, 150, 0, true); /* timestamp noise */
	build_paged(&b, 99, 150, gp, false);
	decodes_as_valid(&b, 150);
	android_granules(gp, 150, 500, 60, 3500000, true); /* paused 3.5 s after 1.2 s */
	build_paged(&b, 99, 150, gp, false);
	decodes_as_valid(&b, 150);
	/* A writer that lags as Android's does but sets EOS: its last page trims nothing more. */
	android_granules(gp, 150, 0, 150, 0, true);
	build_paged(&b, 99, 150, gp, true);
	decodes_as_valid(&b, 150);
	/* That last page still trims the end by what it says beyond the lag. */
	gp[149] -= 500;
	build_paged(&b, 99, 150, gp, true);
	assert_int_equal(count(&b), 150 * 960 - 312 - 500);

	/* A single page with EOS: its granule position is the length, the end trimmed (RFC). */
	gp[0] = 700;
	build_paged(&b, 99, 1, gp, true);
	assert_int_equal(count(&b), 700 - 312);
	/* Each link of a chain its own granule positions: a valid link, then Android's. */
	build(&b, "opus", 312, 50, 0, 100, true);
	android_granules(gp, 30, 500, 10, 2000000, true);
	build_paged(&c, 99, 30, gp, false);
	chain(&b, &c);
	assert_int_equal(count(&b), (50 * 960 - 312 - 100) + (30 * 960 - 312));
	/* A lagging link with EOS, then a valid one starting mid-way. */
	android_granules(gp, 30, 500, 30, 0, true);
	build_paged(&b, 99, 30, gp, true);
	build(&c, "opus", 120, 30, 5000, 7, true);
	chain(&b, &c);
	assert_int_equal(count(&b), (30 * 960 - 312) + (30 * 960 - 120 - 7));
}

/*
 * A page whose granule position is below the samples decoded through it, not the last: a
 * writer's timestamp noise, without Android's lag. It bounded the decoder until a later page
 * raised the bound again, up to 24 samples of that page's packet dropped mid-way each time.
 */
static void low_granule_mid_way_drops_nothing(void **st)
{
	(void)st;
	static oggbuf b;
	static int64_t gp[200];
	android_granules(gp, 150, 500, 150, 0, false);
	build_paged(&b, 99, 150, gp, false);
	decodes_as_valid(&b, 150);
	build_paged(&b, 99, 150, gp, true); /* with EOS: the last page says a little less */
	long long n = count(&b);
	assert_true(n <= 150 * 960 - 312 && n >= 150 * 960 - 312 - 50); /* two stamps' noise */
}

/*
 * A link without EOS (Android's never has one) followed by another, as `cat` of two phone
 * recordings makes: the second link's pages were skipped as another stream's, half the story
 * gone without a word, or, with the same serial number, taken in as the first link's pages and
 * refused audio_corrupt. The next link's OpusHead page ends the first now.
 */
static void link_without_eos_ends_at_next(void **st)
{
	(void)st;
	static oggbuf b, c;
	static int64_t gp[200];
	android_granules(gp, 40, 500, 40, 0, true);
	build_paged(&b, 99, 40, gp, false);
	build(&c, "opus", 120, 30, 5000, 7, true);
	chain(&b, &c);
	assert_int_equal(count(&b), (40 * 960 - 312) + (30 * 960 - 120 - 7));
	build_paged(&c, 99, 40, gp, false); /* the same phone, the same serial number */
	chain(&b, &c);
	assert_int_equal(count(&b), (40 * 960 - 312) + (30 * 960 - 120 - 7) + (40 * 960 - 312));
	build_paged(&b, 99, 40, gp, false);
	head_channels = 2;
	build(&c, "opus", 312, 10, 0, 0, true);
	head_channels = 1;
	chain(&b, &c);
	assert_int_equal(count(&b), CODEC_EUNSUPPORTED); /* as after a link with EOS */
}

/*
 * The tone's `n` packets ten a page, ended as VLC's Ogg muxer ends a stream: an empty packet
 * with EOS and the last granule position (n * 960 - trim), flushed with what audio is left or,
 * with `alone`, on a page of its own; with `mid` >= 0 an empty packet after that packet too.
 */
static void build_vlc(oggbuf *b, int n, int trim, bool alone, int mid)
{
	static uint8_t pkt[200][1500];
	static int len[200];
	assert_true(n <= 200);
	tone_packets(pkt, len, n);
	ogg_stream_state os;
	ogg_stream_init(&os, 4321);
	b->n = 0;
	uint8_t head[19] = "OpusHead";
	head[8] = 1, head[9] = 1, head[10] = 312 & 0xFF, head[11] = 312 >> 8;
	le32(head + 12, 48000);
	head[16] = head[17] = head[18] = 0;
	ogg_packet op = {.packet = head, .bytes = 19, .b_o_s = 1, .packetno = 0};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	uint8_t t[20] = "OpusTags";
	le32(t + 8, 4), memcpy(t + 12, "VLC ", 4), le32(t + 16, 0);
	op = (ogg_packet){.packet = t, .bytes = 20, .packetno = 1};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	int64_t packetno = 2;
	for (int p = 0; p < n; p++) {
		op = (ogg_packet){.packet = pkt[p],
		                  .bytes = len[p],
		                  .granulepos = (int64_t)(p + 1) * 960,
		                  .packetno = packetno++};
		ogg_stream_packetin(&os, &op);
		if (p == mid) {
			op = (ogg_packet){.packet = pkt[p],
			                  .bytes = 0,
			                  .granulepos = (int64_t)(p + 1) * 960,
			                  .packetno = packetno++};
			ogg_stream_packetin(&os, &op);
		}
		emit(b, &os, (p + 1) % 10 == 0 || (alone && p == n - 1));
	}
	op = (ogg_packet){.packet = pkt[0],
	                  .bytes = 0,
	                  .e_o_s = 1,
	                  .granulepos = (int64_t)n * 960 - trim,
	                  .packetno = packetno};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	ogg_stream_clear(&os);
}

/*
 * VLC ends each Ogg stream it writes (Convert/Save to Opus, a stream recording) with an empty
 * packet carrying EOS: every such file was refused audio_corrupt, where ffmpeg and opusfile
 * play it. It holds no samples, and the end is trimmed by its page as by any last page.
 */
static void empty_packets_hold_no_samples(void **st)
{
	(void)st;
	static oggbuf b;
	build_vlc(&b, 50, 0, true, -1); /* the empty packet alone on the last page */
	decodes_as_valid(&b, 50);
	build_vlc(&b, 45, 0, false, -1); /* after the last five packets on their page */
	decodes_as_valid(&b, 45);
	build_vlc(&b, 45, 555, false, -1);
	assert_int_equal(count(&b), 45 * 960 - 312 - 555);
	build_vlc(&b, 50, 0, true, 23); /* and one in the middle of a page */
	decodes_as_valid(&b, 50);
}

/*
 * The tone's `n` packets on OpusTags' page, EOS, its granule position n * 960 - trim: what a
 * writer that lets libogg fill its pages after OpusHead makes of a short clip (RFC 7845 wants
 * the audio to begin a page of its own; ffmpeg plays it).
 */
static void build_shared_tags(oggbuf *b, int n, int trim)
{
	static uint8_t pkt[200][1500];
	static int len[200];
	assert_true(n <= 200);
	tone_packets(pkt, len, n);
	ogg_stream_state os;
	ogg_stream_init(&os, 777);
	b->n = 0;
	uint8_t head[19] = "OpusHead";
	head[8] = 1, head[9] = 1, head[10] = 312 & 0xFF, head[11] = 312 >> 8;
	le32(head + 12, 48000);
	head[16] = head[17] = head[18] = 0;
	ogg_packet op = {.packet = head, .bytes = 19, .b_o_s = 1, .packetno = 0};
	ogg_stream_packetin(&os, &op);
	emit(b, &os, true);
	uint8_t t[20] = "OpusTags";
	le32(t + 8, 4), memcpy(t + 12, "test", 4), le32(t + 16, 0);
	op = (ogg_packet){.packet = t, .bytes = 20, .packetno = 1};
	ogg_stream_packetin(&os, &op);
	for (int p = 0; p < n; p++) {
		op = (ogg_packet){.packet = pkt[p],
		                  .bytes = len[p],
		                  .e_o_s = p == n - 1,
		                  .granulepos = (int64_t)(p + 1) * 960 - (p == n - 1 ? trim : 0),
		                  .packetno = 2 + p};
		ogg_stream_packetin(&os, &op);
	}
	emit(b, &os, true);
	ogg_stream_clear(&os);
	size_t second = 27u + b->d[26] + b->d[27]; /* OpusHead's page: one lacing value */
	assert_memory_equal(b->d + second, "OggS", 4);
	assert_int_equal(b->d[second + 5], 4); /* OpusTags' page is the last: EOS */
}

/*
 * Regression: audio on OpusTags' page was left in the stream for the next page, so with none
 * (a short clip all on that page, EOS) it was lost: audio_too_short, or, with a link chained
 * after, the link's audio dropped without a word. It is that page's audio now, trimmed by it.
 */
static void audio_on_the_tags_page(void **st)
{
	(void)st;
	static oggbuf b, c;
	build_shared_tags(&b, 20, 0);
	decodes_as_valid(&b, 20);
	build_shared_tags(&b, 20, 500);
	assert_int_equal(count(&b), 20 * 960 - 312 - 500);
	build(&c, "opus", 120, 30, 0, 7, true);
	chain(&b, &c);
	assert_int_equal(count(&b), (20 * 960 - 312 - 500) + (30 * 960 - 120 - 7));
}

/* A tone packet (one frame, code 0) padded to `total` bytes, as RFC 6716 3.2.5 allows. */
static size_t padded_packet(uint8_t *out, size_t total, const uint8_t *pkt, int len)
{
	assert_int_equal(pkt[0] & 3, 0);
	size_t frame = (size_t)len - 1, n = 0;
	out[n++] = (uint8_t)(pkt[0] | 3);
	out[n++] = 0x40 | 1; /* padded, one frame */
	size_t room = total - 2 - frame, pad = room;
	/* Each 255 of the length says 254 bytes and one more length byte: find the split. */
	while (pad / 254 + 1 + pad > room)
		pad--;
	for (size_t k = 0; k < pad / 254; k++)
		out[n++] = 255;
	out[n++] = (uint8_t)(pad % 254);
	memcpy(out + n, pkt + 1, frame);
	n += frame;
	memset(out + n, 0, pad);
	n += pad;
	assert_int_equal(n, total);
	return n;
}

/*
 * A mono stream (pre-skip 312) of 21 tone packets, ten a page, whose 11th is padded to `big`
 * bytes: libogg gathers it page after page before it can be decoded.
 */
static membuf big_packet_stream(size_t big)
{
	static uint8_t pkt[21][1500];
	static int len[21];
	tone_packets(pkt, len, 21);
	membuf m = {NULL, 0};
	ogg_stream_state os;
	ogg_stream_init(&os, 5678);
	uint8_t head[19] = "OpusHead";
	head[8] = 1, head[9] = 1, head[10] = 312 & 0xFF, head[11] = 312 >> 8;
	le32(head + 12, 48000);
	head[16] = head[17] = head[18] = 0;
	ogg_packet op = {.packet = head, .bytes = 19, .b_o_s = 1, .packetno = 0};
	ogg_stream_packetin(&os, &op);
	emit_mem(&m, &os, true);
	uint8_t t[20] = "OpusTags";
	le32(t + 8, 4), memcpy(t + 12, "test", 4), le32(t + 16, 0);
	op = (ogg_packet){.packet = t, .bytes = 20, .packetno = 1};
	ogg_stream_packetin(&os, &op);
	emit_mem(&m, &os, true);
	uint8_t *padded = malloc(big);
	assert_non_null(padded);
	for (int p = 0; p < 21; p++) {
		op = (ogg_packet){.packet = pkt[p],
		                  .bytes = len[p],
		                  .e_o_s = p == 20,
		                  .granulepos = (int64_t)(p + 1) * 960,
		                  .packetno = 2 + p};
		if (p == 10) {
			op.bytes = (long)padded_packet(padded, big, pkt[p], len[p]);
			op.packet = padded;
		}
		ogg_stream_packetin(&os, &op);
		emit_mem(&m, &os, (p + 1) % 10 == 0 || p == 20);
	}
	free(padded);
	ogg_stream_clear(&os);
	return m;
}

/* m cut at the first page that begins at or after `at` (whole pages kept). */
static void cut_at_page(membuf *m, size_t at)
{
	size_t p = 0;
	while (p < at) {
		assert_true(p + 27 <= m->n && memcmp(m->d + p, "OggS", 4) == 0);
		size_t len = 27u + m->d[p + 26];
		for (unsigned k = 0; k < m->d[p + 26]; k++)
			len += m->d[p + 27 + k];
		p += len;
	}
	assert_true(p < m->n);
	m->n = p;
}

/*
 * Regression: an audio packet was gathered whole in memory, however large: one continued page
 * after page, never ended (or padded, as RFC 6716 allows), held the whole upload, 512 MiB at
 * the default --max-input-bytes, in each worker that read it. No Opus packet needs 1 MiB (8
 * streams of 120 ms at most): past it the file is audio_malformed, as a WebM Block is.
 */
static void huge_packet_refused(void **st)
{
	(void)st;
	codec_stream_info info;
	membuf m = big_packet_stream((1u << 20) - 1000); /* under the bound: decoded */
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), 21 * 960 - 312);
	free(m.d);
	m = big_packet_stream(3u << 20);
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), CODEC_EMALFORMED);
	cut_at_page(&m, 2u << 20); /* a packet that never ends: whole pages, then the end */
	assert_int_equal(decode_count(m.d, m.n, &info, NULL), CODEC_EMALFORMED);
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
	    cmocka_unit_test(android_recorder_decodes_whole),
	    cmocka_unit_test(low_granule_mid_way_drops_nothing),
	    cmocka_unit_test(link_without_eos_ends_at_next),
	    cmocka_unit_test(empty_packets_hold_no_samples),
	    cmocka_unit_test(audio_on_the_tags_page),
	    cmocka_unit_test(huge_packet_refused),
	    cmocka_unit_test(transcoder_output_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
