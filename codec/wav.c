/*
 * wav.c — WAV decoder: RIFF and RF64/BW64, PCM 1-32-bit integer in 1-4-byte containers, 32/64-bit
 * IEEE float, G.711 A-law and µ-law (8 bits, expanded by the ITU-T formulas),
 * WAVE_FORMAT_EXTENSIBLE, 1-8 channels, 8-192 kHz.
 *
 * Streaming writers (phones recording until the user taps stop, tools writing to a pipe) leave
 * the data size at a value of their own that means "until the end of the file" (unknown_size).
 * A real size that the file does not reach is a truncated upload and fails. Samples become floats
 * in [-1, 1] (float input is kept as is, with NaN/Inf replaced by 0 and absurd values clamped so no
 * later stage overflows).
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WAV_TAG_PCM 0x0001
#define WAV_TAG_FLOAT 0x0003
#define WAV_TAG_ALAW 0x0006
#define WAV_TAG_MULAW 0x0007
#define WAV_TAG_EXTENSIBLE 0xFFFE
#define WAV_MAX_FLOAT 1000.0f  /* +60 dBFS: louder float samples are clamped */
#define WAV_MAX_CHUNKS 4096    /* chunks skipped before "data": bounds a hostile header */
#define WAV_CHUNK_BYTES 16384  /* raw bytes converted per read */

/* The KSDATAFORMAT_SUBTYPE GUIDs share their last 14 bytes; the first two are the format tag. */
static const uint8_t ks_guid_tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
					 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

typedef struct wav_state {
	codec_in *in;
	unsigned channels, bytes_per_sample;
	bool is_float;
	bool is_g711; /* one byte a sample, expanded through g711 */
	float g711[256];
	uint64_t remaining; /* data bytes left; UINT64_MAX: until the end of the file */
	uint8_t raw[WAV_CHUNK_BYTES];
} wav_state;

static void wav_close(void *state)
{
	free(state);
}

/* The LFE channel's index given a WAVE_FORMAT_EXTENSIBLE channel mask (SPEAKER_LOW_FREQUENCY). */
static int lfe_from_mask(uint32_t mask, unsigned channels)
{
	if (!(mask & 0x8))
		return -1;
	int idx = __builtin_popcount(mask & 0x7);
	return (unsigned)idx < channels ? idx : -1;
}

/*
 * Whether a data chunk's size is one that a writer which could not seek back to its header
 * leaves there, for "until the end of the file": 0 and 0xFFFFFFFF (phones, ffmpeg to a pipe),
 * 0x7FFFFFFF (LAME decoding to a pipe), 0x80000000 (arecord recording to a pipe until stopped:
 * its 2 GiB cap for a WAV), 0x7FFF0000 (GStreamer's wavenc, whose header is written again only at
 * the end of a stream that can seek: to a pipe, or stopped without one, it stays), 0x7FFFF000 cut
 * to whole frames (SoX and espeak-ng to a pipe), 0xFFFFFFFF cut to whole frames (SoX 14.4
 * rewriting ffmpeg's piped WAV takes that size for the length and passes it on), and 0xFFFFFF9B
 * (Node's `wav` package, whose streaming Writer leaves 0xFFFFFFFF less 100 there unless the app
 * writes the header it hands out at the end back over the first). Each is some 2 GiB or more: a
 * file that really held that much would be over the default input limit (512 MiB) anyway.
 */
static bool unknown_size(uint32_t size, uint32_t frame_bytes)
{
	return size == 0 || size == 0xFFFFFFFFu || size == 0x7FFFFFFFu || size == 0x80000000u ||
	       size == 0x7FFF0000u || size == 0xFFFFFF9Bu ||
	       size == 0x7FFFF000u / frame_bytes * frame_bytes ||
	       size == 0xFFFFFFFFu / frame_bytes * frame_bytes;
}

/*
 * G.711's expansion of one code to a 16-bit linear value (ITU-T G.711, tables 1a and 2a). A-law
 * keeps 13 bits: the even bits of the code are inverted, then a sign (1 positive), a 3-bit segment
 * and a 4-bit step; the value is the step's midpoint. µ-law keeps 14 bits: the whole code is
 * inverted, sign 1 negative, and each segment's values are offset by the bias 33 (132 in 16-bit
 * terms), which is taken away again. Both are shifted to fill 16 bits, as sox and ffmpeg do.
 */
static int alaw_expand(uint8_t code)
{
	unsigned c = code ^ 0x55u;
	unsigned segment = (c >> 4) & 7, step = c & 0xF;
	int v = segment == 0 ? (int)(step << 4) + 8 : (int)((step << 4) + 0x108) << (segment - 1);
	return c & 0x80 ? v : -v;
}

static int mulaw_expand(uint8_t code)
{
	unsigned c = ~code & 0xFFu;
	unsigned segment = (c >> 4) & 7, step = c & 0xF;
	int v = ((int)(step << 3) + 0x84) << segment;
	return c & 0x80 ? 0x84 - v : v - 0x84;
}

static int parse_fmt(const uint8_t *p, uint32_t size, wav_state *w, codec_stream_info *info)
{
	if (size < 16)
		return CODEC_EMALFORMED;
	uint16_t tag = rd_le16(p);
	unsigned channels = rd_le16(p + 2);
	uint32_t rate = rd_le32(p + 4);
	unsigned block_align = rd_le16(p + 12);
	unsigned bits = rd_le16(p + 14);
	unsigned valid_bits = 0; /* EXTENSIBLE's; 0 is common and means "all of them" */
	uint32_t mask = 0;
	bool have_mask = false;

	if (tag == WAV_TAG_EXTENSIBLE) {
		if (size < 40 || rd_le16(p + 16) < 22)
			return CODEC_EMALFORMED;
		valid_bits = rd_le16(p + 18);
		if (valid_bits > bits)
			return CODEC_EMALFORMED;
		mask = rd_le32(p + 20);
		have_mask = true;
		if (memcmp(p + 26, ks_guid_tail, sizeof ks_guid_tail) != 0)
			return CODEC_EUNSUPPORTED;
		tag = rd_le16(p + 24);
	}
	bool g711 = tag == WAV_TAG_ALAW || tag == WAV_TAG_MULAW;
	if (tag != WAV_TAG_PCM && tag != WAV_TAG_FLOAT && !g711)
		return CODEC_EUNSUPPORTED; /* ADPCM, MP3-in-WAV, GSM... */
	/* G.711 is 8 bits a sample by definition: another depth is a header that contradicts its
	 * tag (and EXTENSIBLE's valid bits, when given, say the same 8). */
	if (g711 && (bits != 8 || (valid_bits != 0 && valid_bits != 8)))
		return CODEC_EMALFORMED;
	if (channels == 0)
		return CODEC_EMALFORMED;
	if (channels > CODEC_MAX_CHANNELS)
		return CODEC_ECHANNELS;
	if (rate < CODEC_MIN_RATE || rate > CODEC_MAX_RATE)
		return CODEC_ERATE;
	/*
	 * Integer samples of any depth are left-justified in a container of whole bytes (the
	 * Microsoft WAVE spec): 20-bit field recorders write 3-byte containers, old Windows tools
	 * 12-bit ones of 2 bytes, with the spare low bits zero. Read by container, as ffmpeg does;
	 * 8 bits or fewer are unsigned.
	 */
	bool ok_bits = tag == WAV_TAG_PCM     ? (bits >= 1 && bits <= 32)
	               : tag == WAV_TAG_FLOAT ? (bits == 32 || bits == 64)
	                                      : true; /* G.711: 8, checked above */
	if (!ok_bits)
		return CODEC_EUNSUPPORTED;
	unsigned container = (bits + 7) / 8;
	if (block_align != channels * container)
		return CODEC_EMALFORMED;

	w->channels = channels;
	w->bytes_per_sample = container;
	w->is_float = tag == WAV_TAG_FLOAT;
	w->is_g711 = g711;
	for (unsigned code = 0; g711 && code < 256; code++)
		w->g711[code] = (float)(tag == WAV_TAG_ALAW ? alaw_expand((uint8_t)code)
		                                            : mulaw_expand((uint8_t)code)) *
		                (1.0f / 32768);
	info->format = CODEC_FORMAT_WAV;
	info->rate = rate;
	info->channels = channels;
	info->lfe_channel = have_mask ? lfe_from_mask(mask, channels)
				      : (channels == 6 ? 3 : -1); /* default 5.1: FL FR FC LFE */
	return 0;
}

static int wav_open(codec_in *in, void **state, codec_stream_info *info)
{
	uint8_t hdr[12], ck[8];
	uint64_t ds64_data = 0;
	bool have_fmt = false, rf64 = false;
	int rc;

	wav_state *w = calloc(1, sizeof *w);
	if (!w)
		return CODEC_ENOMEM;
	*state = w;
	w->in = in;

	if ((rc = in_read_exact(in, hdr, 12)) < 0)
		return rc;
	if (memcmp(hdr + 8, "WAVE", 4) != 0)
		return CODEC_EFORMAT;
	if (memcmp(hdr, "RF64", 4) == 0 || memcmp(hdr, "BW64", 4) == 0)
		rf64 = true;
	else if (memcmp(hdr, "RIFF", 4) != 0)
		return CODEC_EFORMAT;

	for (int n = 0; n < WAV_MAX_CHUNKS; n++) {
		if ((rc = in_read_exact(in, ck, 8)) < 0)
			return rc;
		uint32_t size = rd_le32(ck + 4);
		if (memcmp(ck, "ds64", 4) == 0 && rf64) {
			uint8_t d[24];
			if (size < 24)
				return CODEC_EMALFORMED;
			if ((rc = in_read_exact(in, d, 24)) < 0)
				return rc;
			ds64_data = rd_le64(d + 8);
			if ((rc = in_skip(in, size - 24 + (size & 1))) < 0)
				return rc;
		} else if (memcmp(ck, "fmt ", 4) == 0) {
			uint8_t f[40] = {0};
			if (have_fmt || size < 16 || size > 4096)
				return CODEC_EMALFORMED;
			uint32_t keep = size < sizeof f ? size : sizeof f;
			if ((rc = in_read_exact(in, f, keep)) < 0)
				return rc;
			if ((rc = in_skip(in, size - keep + (size & 1))) < 0)
				return rc;
			if ((rc = parse_fmt(f, size, w, info)) < 0)
				return rc;
			have_fmt = true;
		} else if (memcmp(ck, "data", 4) == 0) {
			if (!have_fmt)
				return CODEC_EMALFORMED;
			if (rf64 && size == 0xFFFFFFFFu)
				w->remaining = ds64_data ? ds64_data : UINT64_MAX;
			else if (unknown_size(size, w->channels * w->bytes_per_sample))
				w->remaining = UINT64_MAX; /* a streaming writer never came back */
			else
				w->remaining = size;
			return 0;
		} else {
			if ((rc = in_skip(in, (uint64_t)size + (size & 1))) < 0)
				return rc;
		}
	}
	return CODEC_EMALFORMED;
}

static inline float clean_float(double v)
{
	if (!isfinite(v))
		return 0.0f;
	if (v > WAV_MAX_FLOAT)
		return WAV_MAX_FLOAT;
	if (v < -WAV_MAX_FLOAT)
		return -WAV_MAX_FLOAT;
	return (float)v;
}

static void convert(const wav_state *w, const uint8_t *p, size_t samples, float *out)
{
	size_t i;
	if (w->is_g711) {
		for (i = 0; i < samples; i++)
			out[i] = w->g711[p[i]];
		return;
	}
	switch (w->bytes_per_sample * 2 + w->is_float) {
	case 1 * 2:
		for (i = 0; i < samples; i++)
			out[i] = ((int)p[i] - 128) * (1.0f / 128);
		break;
	case 2 * 2:
		for (i = 0; i < samples; i++)
			out[i] = (int16_t)rd_le16(p + 2 * i) * (1.0f / 32768);
		break;
	case 3 * 2:
		for (i = 0; i < samples; i++) {
			const uint8_t *s = p + 3 * i;
			int32_t v = (int32_t)((uint32_t)s[0] << 8 | (uint32_t)s[1] << 16 |
					      (uint32_t)s[2] << 24);
			out[i] = (float)(v >> 8) * (1.0f / 8388608);
		}
		break;
	case 4 * 2:
		for (i = 0; i < samples; i++)
			out[i] = (float)((int32_t)rd_le32(p + 4 * i) * (1.0 / 2147483648.0));
		break;
	case 4 * 2 + 1:
		for (i = 0; i < samples; i++) {
			uint32_t u = rd_le32(p + 4 * i);
			float f;
			memcpy(&f, &u, 4);
			out[i] = clean_float(f);
		}
		break;
	case 8 * 2 + 1:
		for (i = 0; i < samples; i++) {
			uint64_t u = rd_le64(p + 8 * i);
			double d;
			memcpy(&d, &u, 8);
			out[i] = clean_float(d);
		}
		break;
	}
}

static int wav_read(void *state, float *pcm, size_t max_frames, size_t *frames)
{
	wav_state *w = state;
	size_t frame_bytes = (size_t)w->channels * w->bytes_per_sample;
	size_t done = 0;
	*frames = 0;
	while (done < max_frames && w->remaining > 0) {
		size_t want = (max_frames - done) * frame_bytes;
		size_t cap = sizeof w->raw - sizeof w->raw % frame_bytes;
		if (want > cap)
			want = cap;
		if (w->remaining != UINT64_MAX && want > w->remaining)
			want = (size_t)w->remaining;
		size_t got;
		int rc = in_read(w->in, w->raw, want, &got);
		if (rc < 0)
			return rc;
		if (got < want && w->remaining != UINT64_MAX)
			return CODEC_ETRUNCATED; /* the header promised more than the file holds */
		size_t n = got / frame_bytes; /* a partial last frame is dropped */
		convert(w, w->raw, n * w->channels, pcm + done * w->channels);
		done += n;
		if (w->remaining != UINT64_MAX)
			w->remaining -= got;
		if (got < want) {
			w->remaining = 0; /* end of a streaming file */
			break;
		}
		if (got % frame_bytes) /* only possible at the end of a sized chunk */
			w->remaining = 0;
	}
	*frames = done;
	return 0;
}

const decoder_ops codec_wav_decoder = {wav_open, wav_read, wav_close};
