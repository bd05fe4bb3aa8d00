/*
 * webm.c — streaming WebM/Matroska demuxer for one Opus track (what MediaRecorder uploads).
 *
 * Forward-only through codec_in: element headers are peeked, the few payloads we need (header
 * fields, CodecPrivate, one Block of at most WEBM_MAX_BLOCK) go into one buffer, the rest is
 * skipped, so memory does not grow with the file. Nesting depth is fixed by the code, never by the
 * input. Segment and Cluster may have unknown size and then end at EOF or at an element that
 * cannot be their child. Pre-skip is OpusHead's, as in ffmpeg (whose muxer writes CodecDelay in
 * the wrong unit for non-48 kHz input); CodecDelay only stands in when OpusHead is missing.
 * DiscardPadding trims the end (negative: the start) of its block's audio, to the sample.
 * A file may be several WebM documents one after the other (an app that pauses by stopping its
 * MediaRecorder and starting another, then joins the Blobs; `cat a.webm b.webm`): each is decoded
 * after the one before, with its own EBML header, Tracks, pre-skip and a decoder of its own made
 * when the previous one is done with, so memory does not grow with the documents either.
 */
#include "ebml.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define WEBM_MAX_BLOCK (1u << 20)   /* frame data of one Block; more is abuse */
#define WEBM_MAX_CODEC_PRIVATE 4096 /* an OpusHead is at most 21 + 255 bytes */
#define WEBM_MAX_LACES 256          /* the lace count is one byte, plus one */
/*
 * The Opus streams the decoders of a file's documents may have, all together: each document
 * makes a decoder of its own and needs no audio to cost one, so neither the duration limit nor
 * the byte limit bounds them (a document whose decoder has 255 streams takes some 70 bytes).
 * 4096 documents of a mono or stereo recording, as for chained Ogg links.
 */
#define WEBM_MAX_CHAIN_STREAMS 4096

enum {
	ID_EBML = 0x1A45DFA3,
	ID_EBML_READ_VERSION = 0x42F7,
	ID_EBML_MAX_ID_LENGTH = 0x42F2,
	ID_EBML_MAX_SIZE_LENGTH = 0x42F3,
	ID_DOCTYPE = 0x4282,
	ID_VOID = 0xEC,
	ID_SEGMENT = 0x18538067,
	ID_SEEKHEAD = 0x114D9B74,
	ID_INFO = 0x1549A966,
	ID_TRACKS = 0x1654AE6B,
	ID_CLUSTER = 0x1F43B675,
	ID_CUES = 0x1C53BB6B,
	ID_TAGS = 0x1254C367,
	ID_CHAPTERS = 0x1043A770,
	ID_ATTACHMENTS = 0x1941A469,
	ID_TRACK_ENTRY = 0xAE,
	ID_TRACK_NUMBER = 0xD7,
	ID_TRACK_TYPE = 0x83,
	ID_CODEC_ID = 0x86,
	ID_CODEC_PRIVATE = 0x63A2,
	ID_CODEC_DELAY = 0x56AA,
	ID_CONTENT_ENCODINGS = 0x6D80,
	ID_AUDIO = 0xE1,
	ID_CHANNELS = 0x9F,
	ID_SAMPLING_FREQUENCY = 0xB5,
	ID_SIMPLE_BLOCK = 0xA3,
	ID_BLOCK_GROUP = 0xA0,
	ID_BLOCK = 0xA1,
	ID_DISCARD_PADDING = 0x75A2,
};

#define TRACK_TYPE_AUDIO 2

typedef struct webm_state {
	codec_in *in;
	opusdec dec;
	bool dec_ready;
	unsigned channels;    /* the first document's layout: every later one must have it */
	int lfe_channel;      /* and its LFE channel, or -1 */
	unsigned streams;     /* the Opus streams of the documents begun so far */
	uint64_t track;       /* TrackNumber of the Opus track we decode */
	uint64_t preskip;     /* 48 kHz frames to drop from the start */
	uint64_t segment_end; /* EBML_UNKNOWN_END while the Segment has unknown size */
	bool in_cluster;
	bool cluster_unknown; /* the current Cluster has unknown size */
	uint64_t cluster_end; /* where its children must end (the Segment's end if unknown) */
	bool ended;
	int error;    /* sticky; reported once the PCM decoded before it was handed out */
	uint8_t *buf; /* the current Block's data, or CodecPrivate while opening */
	size_t buf_cap;
	/* The current Block of our track: its laces (Opus packets) and the frames it keeps. */
	size_t lace_count, lace_next;
	size_t lace_off[WEBM_MAX_LACES], lace_len[WEBM_MAX_LACES];
	uint16_t lace_frames[WEBM_MAX_LACES];
	uint64_t block_pos; /* frames of the block before lace_next */
	/* The block's frames [keep_start, keep_end) survive DiscardPadding. */
	uint64_t keep_start, keep_end;
} webm_state;

/*
 * Consume the header ebml_next_child() returned (it is in codec_in's buffer already). Only Segment and
 * Cluster may have unknown size; for every other element that is a structural error, so no payload
 * reader ever sees an unknown size.
 */
static int enter(codec_in *in, const ebml_elem *e)
{
	if (e->unknown && e->id != ID_SEGMENT && e->id != ID_CLUSTER)
		return CODEC_EMALFORMED;
	return in_skip(in, e->header_len);
}

/* Make room for n bytes in w->buf. */
static int reserve(webm_state *w, size_t n)
{
	if (n <= w->buf_cap)
		return 0;
	size_t cap = w->buf_cap ? w->buf_cap : 4096;
	while (cap < n)
		cap *= 2;
	uint8_t *p = realloc(w->buf, cap);
	if (!p)
		return CODEC_ENOMEM;
	w->buf = p;
	w->buf_cap = cap;
	return 0;
}

/* Nanoseconds to 48 kHz frames, rounded to nearest, without overflow. */
static uint64_t ns_to_frames(uint64_t ns)
{
	return ns / 1000000 * 48 + (ns % 1000000 * 48 + 500000) / 1000000;
}

/* IDs that end an unknown-size Cluster: its siblings and parents, never its children. */
static bool ends_cluster(uint32_t id)
{
	switch (id) {
	case ID_EBML:
	case ID_SEGMENT:
	case ID_SEEKHEAD:
	case ID_INFO:
	case ID_TRACKS:
	case ID_CLUSTER:
	case ID_CUES:
	case ID_TAGS:
	case ID_CHAPTERS:
	case ID_ATTACHMENTS:
		return true;
	default:
		return false;
	}
}

static const uint8_t ebml_magic[4] = {0x1A, 0x45, 0xDF, 0xA3}; /* ID_EBML */

/*
 * 1 when the next bytes are an EBML header's ID (the next document), 0 when they are anything
 * else or the file ends within four bytes; nothing is consumed.
 */
static int at_ebml_header(codec_in *in)
{
	const uint8_t *p;
	size_t avail;
	int rc = in_peek(in, &p, 4, &avail);
	if (rc < 0)
		return rc;
	return avail == 4 && memcmp(p, ebml_magic, 4) == 0;
}

/* EBML header: DocType "webm" or "matroska", a reader version and field widths we handle. */
static int read_ebml_header(codec_in *in)
{
	const uint8_t *p;
	size_t avail;
	ebml_elem e;
	char doctype[EBML_MAX_STRING] = "";
	uint64_t v;

	int rc = in_peek(in, &p, 4, &avail);
	if (rc < 0)
		return rc;
	if (avail == 0 || memcmp(p, ebml_magic, avail) != 0)
		return CODEC_EFORMAT;
	if ((rc = ebml_peek(in, &e)) < 0)
		return rc;
	if (rc == 0 || e.id != ID_EBML)
		return CODEC_ETRUNCATED; /* the magic is there, the rest of the header is not */
	if (e.unknown)
		return CODEC_EMALFORMED;
	if ((rc = enter(in, &e)) < 0)
		return rc;
	uint64_t end = in_tell(in) + e.size;
	while ((rc = ebml_next_child(in, end, &e)) > 0) {
		if ((rc = enter(in, &e)) < 0)
			return rc;
		switch (e.id) {
		case ID_DOCTYPE:
			rc = ebml_string(in, &e, doctype);
			break;
		case ID_EBML_READ_VERSION:
		case ID_EBML_MAX_ID_LENGTH:
		case ID_EBML_MAX_SIZE_LENGTH:
			if ((rc = ebml_uint(in, &e, &v)) < 0)
				return rc;
			if ((e.id == ID_EBML_READ_VERSION && v > 1) ||
			    (e.id == ID_EBML_MAX_ID_LENGTH && v > 4) ||
			    (e.id == ID_EBML_MAX_SIZE_LENGTH && v > 8))
				return CODEC_EUNSUPPORTED;
			break;
		default:
			rc = ebml_skip(in, &e);
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	if (strcmp(doctype, "webm") != 0 && strcmp(doctype, "matroska") != 0)
		return CODEC_EFORMAT;
	return 0;
}

enum { ZEROS_THEN_END = 1, ZEROS_THEN_DOCUMENT = 2 };

/*
 * Chrome's MediaRecorder stopped before its first audio (within some 30 ms of start()) hands out
 * its EBML header and then only zero bytes where the Segment would be: a recording of nothing.
 * 0 when the next byte is not a zero (nothing consumed); ZEROS_THEN_END when nothing but zeros
 * follow to the end of the input, ZEROS_THEN_DOCUMENT when they are followed by the next
 * document's EBML header (a pause and resume within those 30 ms, the Blobs joined), the zeros
 * consumed; zeros and then anything else are malformed (a zero cannot begin an element ID, so
 * they were malformed anyway).
 */
static int skip_zeros(codec_in *in)
{
	const uint8_t *p;
	size_t avail;
	bool any = false;
	for (;;) {
		int rc = in_peek(in, &p, CODEC_IN_BUFSIZE, &avail);
		if (rc < 0)
			return rc;
		if (avail == 0)
			return any ? ZEROS_THEN_END : 0;
		size_t n = 0;
		while (n < avail && p[n] == 0)
			n++;
		if (n == 0 && !any)
			return 0;
		if ((rc = in_skip(in, n)) < 0)
			return rc;
		any = true;
		if (n < avail) {
			if ((rc = at_ebml_header(in)) < 0)
				return rc;
			return rc ? ZEROS_THEN_DOCUMENT : CODEC_EMALFORMED;
		}
	}
}

/* What one TrackEntry says, as far as we care. */
typedef struct track_entry {
	uint64_t number, type, codec_delay_ns, channels;
	bool has_type, has_codec_delay, has_channels, encoded;
	char codec_id[EBML_MAX_STRING];
	size_t private_len; /* CodecPrivate bytes in w->buf */
	bool private_too_big;
} track_entry;

static int read_audio(codec_in *in, uint64_t end, track_entry *t)
{
	ebml_elem e;
	int rc;
	while ((rc = ebml_next_child(in, end, &e)) > 0) {
		if ((rc = enter(in, &e)) < 0)
			return rc;
		if (e.id == ID_CHANNELS) {
			rc = ebml_uint(in, &e, &t->channels);
			t->has_channels = true;
		} else if (e.id == ID_SAMPLING_FREQUENCY && e.size != 0 && e.size != 4 &&
		           e.size != 8) {
			/* Not a float. (Opus decodes at 48 kHz whatever a valid one says.) */
			rc = CODEC_EMALFORMED;
		} else {
			rc = ebml_skip(in, &e);
		}
		if (rc < 0)
			return rc;
	}
	return rc;
}

static int read_track_entry(webm_state *w, uint64_t end, track_entry *t)
{
	codec_in *in = w->in;
	ebml_elem e;
	int rc;
	memset(t, 0, sizeof *t);
	while ((rc = ebml_next_child(in, end, &e)) > 0) {
		if ((rc = enter(in, &e)) < 0)
			return rc;
		switch (e.id) {
		case ID_TRACK_NUMBER:
			rc = ebml_uint(in, &e, &t->number);
			break;
		case ID_TRACK_TYPE:
			rc = ebml_uint(in, &e, &t->type);
			t->has_type = true;
			break;
		case ID_CODEC_ID:
			rc = ebml_string(in, &e, t->codec_id);
			break;
		case ID_CODEC_DELAY:
			rc = ebml_uint(in, &e, &t->codec_delay_ns);
			t->has_codec_delay = true;
			break;
		case ID_CODEC_PRIVATE:
			/* Other codecs' private data (Vorbis books) may be large: skip it. */
			t->private_len = 0;
			t->private_too_big = e.size > WEBM_MAX_CODEC_PRIVATE;
			if (t->private_too_big) {
				rc = ebml_skip(in, &e);
			} else if ((rc = reserve(w, (size_t)e.size)) == 0) {
				rc = in_read_exact(in, w->buf, (size_t)e.size);
				t->private_len = (size_t)e.size;
			}
			break;
		case ID_CONTENT_ENCODINGS: /* compressed or encrypted frames */
			t->encoded = true;
			rc = ebml_skip(in, &e);
			break;
		case ID_AUDIO:
			rc = read_audio(in, in_tell(in) + e.size, t);
			break;
		default:
			rc = ebml_skip(in, &e);
		}
		if (rc < 0)
			return rc;
	}
	return rc;
}

/* Take the entry as our track: its OpusHead (or a family-0 one from Channels) and pre-skip. */
static int use_track(webm_state *w, const track_entry *t, opus_head *head)
{
	int rc;
	if (t->number == 0)
		return CODEC_EMALFORMED;
	if (t->encoded)
		return CODEC_EUNSUPPORTED;
	if (t->private_too_big)
		return CODEC_EMALFORMED;
	if (t->private_len > 0) {
		/* OpusHead's channel count wins over Audio/Channels: the decoder needs it. */
		if ((rc = opus_head_parse(w->buf, t->private_len, head)) < 0)
			return rc;
	} else {
		/* Beyond stereo there is no channel mapping without OpusHead. */
		if (!t->has_channels || t->channels < 1 || t->channels > 2)
			return CODEC_EMALFORMED;
		memset(head, 0, sizeof *head);
		head->version = 1;
		head->channels = (uint8_t)t->channels;
		head->input_rate = 48000;
		head->streams = 1;
		head->coupled = t->channels == 2;
		head->mapping[1] = 1;
	}
	w->track = t->number;
	/*
	 * OpusHead's pre-skip is authoritative when there is one: ffmpeg (through at least 5.1)
	 * writes CodecDelay as the encoder's lookahead at its input rate taken as 48 kHz, e.g.
	 * 104 instead of 312 frames for 16 kHz input, and itself decodes with OpusHead's value.
	 */
	w->preskip = t->private_len == 0 && t->has_codec_delay ? ns_to_frames(t->codec_delay_ns)
	                                                       : head->preskip;
	return 0;
}

/* Tracks: the first A_OPUS audio track is ours; CODEC_EUNSUPPORTED when there is none. */
static int read_tracks(webm_state *w, uint64_t end, opus_head *head)
{
	codec_in *in = w->in;
	ebml_elem e;
	track_entry t;
	bool found = false;
	int rc;
	while ((rc = ebml_next_child(in, end, &e)) > 0) {
		if ((rc = enter(in, &e)) < 0)
			return rc;
		if (e.id != ID_TRACK_ENTRY || found) {
			if ((rc = ebml_skip(in, &e)) < 0)
				return rc;
			continue;
		}
		if ((rc = read_track_entry(w, in_tell(in) + e.size, &t)) < 0)
			return rc;
		if (strcmp(t.codec_id, "A_OPUS") != 0 || (t.has_type && t.type != TRACK_TYPE_AUDIO))
			continue;
		if ((rc = use_track(w, &t, head)) < 0)
			return rc;
		found = true;
	}
	if (rc < 0)
		return rc;
	return found ? 0 : CODEC_EUNSUPPORTED;
}

/*
 * After a document's EBML header: its Segment, after any Void padding, entered (0, the
 * Segment's end in w), or skip_zeros()'s answer where only zero bytes stand instead of it.
 */
static int enter_segment(webm_state *w)
{
	codec_in *in = w->in;
	ebml_elem e;
	int rc;
	for (;;) {
		if ((rc = skip_zeros(in)) != 0)
			return rc;
		if ((rc = ebml_next_child(in, EBML_UNKNOWN_END, &e)) <= 0)
			return rc < 0 ? rc : CODEC_ETRUNCATED;
		if ((rc = enter(in, &e)) < 0)
			return rc;
		if (e.id == ID_SEGMENT) {
			w->segment_end = e.unknown ? EBML_UNKNOWN_END : in_tell(in) + e.size;
			w->in_cluster = false;
			return 0;
		}
		if (e.id != ID_VOID)
			return CODEC_EMALFORMED;
		if ((rc = ebml_skip(in, &e)) < 0)
			return rc;
	}
}

/* Segment-level elements up to Tracks, which must precede the first Cluster, and our track. */
static int read_to_tracks(webm_state *w, opus_head *head)
{
	codec_in *in = w->in;
	ebml_elem e;
	int rc;
	for (;;) {
		if ((rc = ebml_next_child(in, w->segment_end, &e)) < 0)
			return rc;
		if (rc == 0) {
			/* The Segment ended without Tracks: cut short if we never knew its size. */
			return w->segment_end == EBML_UNKNOWN_END ? CODEC_ETRUNCATED
			                                          : CODEC_EUNSUPPORTED;
		}
		if (e.id == ID_EBML || e.id == ID_SEGMENT) /* a next document, or nonsense */
			return w->segment_end == EBML_UNKNOWN_END ? CODEC_EUNSUPPORTED
			                                          : CODEC_EMALFORMED;
		if ((rc = enter(in, &e)) < 0)
			return rc;
		if (e.id == ID_TRACKS)
			return read_tracks(w, in_tell(in) + e.size, head);
		rc = e.id == ID_CLUSTER ? CODEC_EMALFORMED : ebml_skip(in, &e);
		if (rc < 0)
			return rc;
	}
}

/*
 * A document, from its EBML header (the input at its first byte) to its Tracks: 1 with our
 * track's OpusHead in *head (w->track, w->preskip set), ready for its Clusters; 0 when only
 * zero bytes stand where its Segment would, to the end of the file. A document of zeros
 * followed by another (a pause and resume within Chrome's first 30 ms) is passed over.
 */
static int read_document(webm_state *w, opus_head *head)
{
	int rc;
	do {
		if ((rc = read_ebml_header(w->in)) < 0)
			return rc;
	} while ((rc = enter_segment(w)) == ZEROS_THEN_DOCUMENT);
	if (rc != 0)
		return rc == ZEROS_THEN_END ? 0 : rc;
	if ((rc = read_to_tracks(w, head)) < 0)
		return rc;
	return 1;
}

/*
 * A decoder for the document just read, in place of the previous one's (whose audio has all
 * been handed out). A document after the first must keep the first's channels (and so its LFE
 * channel): the clip's layout is fixed when it opens.
 */
static int start_decoder(webm_state *w, const opus_head *head)
{
	int rc;
	if (w->dec_ready &&
	    (head->channels != w->channels || opus_head_lfe(head) != w->lfe_channel))
		return CODEC_EUNSUPPORTED; /* documents that differ in channels */
	if (head->streams > WEBM_MAX_CHAIN_STREAMS - w->streams)
		return CODEC_EUNSUPPORTED; /* too many documents (or too many streams) */
	w->streams += head->streams;
	if (w->dec_ready) {
		opusdec_free(&w->dec);
		w->dec_ready = false;
	}
	if ((rc = opusdec_init(&w->dec, head)) < 0)
		return rc;
	w->dec_ready = true;
	w->dec.skip = w->preskip;
	w->channels = head->channels;
	w->lfe_channel = opus_head_lfe(head);
	return 0;
}

/*
 * The document after the one whose audio has ended: 1 when its decoder is ready, 0 when none
 * follows but zero bytes. A later document's EBML header that is no WebM's is a part of the
 * file we cannot decode, not a file we do not know.
 */
static int next_document(webm_state *w)
{
	opus_head head;
	int rc = read_document(w, &head);
	if (rc <= 0)
		return rc == CODEC_EFORMAT ? CODEC_EUNSUPPORTED : rc;
	if ((rc = start_decoder(w, &head)) < 0)
		return rc;
	return 1;
}

/* Read one EBML-coded lace size from the lace header at p[*pos..len). */
static int lace_vint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v, unsigned *n)
{
	if (*pos >= len)
		return CODEC_EMALFORMED;
	unsigned k = ebml_vint_length(p[*pos]);
	if (k == 0 || len - *pos < k)
		return CODEC_EMALFORMED;
	uint64_t x = p[*pos] & (0xFFu >> k);
	for (unsigned i = 1; i < k; i++)
		x = x << 8 | p[*pos + i];
	*pos += k;
	*v = x;
	*n = k;
	return 0;
}

/* Split w->buf[0..len) into laces (Opus packets) and count their frames. */
static int split_laces(webm_state *w, size_t len, unsigned lacing)
{
	const uint8_t *p = w->buf;
	size_t count = 1, pos = 0, sum = 0;
	uint64_t v;
	unsigned k;
	int rc;

	if (lacing != 0) {
		if (len < 1)
			return CODEC_EMALFORMED;
		count = (size_t)p[0] + 1;
		pos = 1;
	}
	switch (lacing) {
	case 0: /* no lacing */
		break;
	case 1: /* Xiph: each size but the last as a run of 255s and a final byte below 255 */
		for (size_t i = 0; i + 1 < count; i++) {
			size_t s = 0;
			uint8_t b;
			do {
				if (pos >= len)
					return CODEC_EMALFORMED;
				b = p[pos++];
				s += b;
				if (s > len)
					return CODEC_EMALFORMED;
			} while (b == 255);
			w->lace_len[i] = s;
			sum += s;
		}
		break;
	case 3: /* EBML: the first size, then signed differences to the previous size */
		for (size_t i = 0; i + 1 < count; i++) {
			if ((rc = lace_vint(p, len, &pos, &v, &k)) < 0)
				return rc;
			if (i == 0) {
				if (v > len)
					return CODEC_EMALFORMED;
				w->lace_len[0] = (size_t)v;
			} else {
				int64_t diff = (int64_t)v - (int64_t)((1ull << (7 * k - 1)) - 1);
				int64_t s = (int64_t)w->lace_len[i - 1] + diff;
				if (s < 0 || s > (int64_t)len)
					return CODEC_EMALFORMED;
				w->lace_len[i] = (size_t)s;
			}
			sum += w->lace_len[i];
		}
		break;
	case 2: /* fixed size */
		if ((len - pos) % count != 0)
			return CODEC_EMALFORMED;
		for (size_t i = 0; i + 1 < count; i++)
			w->lace_len[i] = (len - pos) / count;
		sum = (len - pos) / count * (count - 1);
		break;
	}
	if (sum > len - pos)
		return CODEC_EMALFORMED;
	w->lace_len[count - 1] = len - pos - sum;

	uint64_t total = 0;
	for (size_t i = 0; i < count; i++) {
		w->lace_off[i] = pos;
		pos += w->lace_len[i];
		int n = opusdec_packet_frames(p + w->lace_off[i], w->lace_len[i]);
		if (n < 0)
			return n;
		w->lace_frames[i] = (uint16_t)n;
		total += (uint64_t)n;
	}
	w->lace_count = count;
	w->lace_next = 0;
	w->block_pos = 0;
	w->keep_start = 0;
	w->keep_end = total;
	return 0;
}

/*
 * A Block or SimpleBlock payload of `size` bytes: track number, int16 timecode, flags, frames.
 * Timecodes are not needed (the audio is decoded in order, trimming is explicit). Blocks of other
 * tracks are skipped (*ours = false); ours are read into w->buf and split into laces.
 */
static int read_block(webm_state *w, uint64_t size, bool *ours)
{
	codec_in *in = w->in;
	uint8_t hdr[8 + 3];
	int rc;

	*ours = false;
	if (size < 1)
		return CODEC_EMALFORMED;
	if ((rc = in_read_exact(in, hdr, 1)) < 0)
		return rc;
	unsigned n = ebml_vint_length(hdr[0]);
	if (n == 0 || size < n + 3)
		return CODEC_EMALFORMED;
	if ((rc = in_read_exact(in, hdr + 1, n + 2)) < 0)
		return rc;
	uint64_t track = hdr[0] & (0xFFu >> n);
	for (unsigned i = 1; i < n; i++)
		track = track << 8 | hdr[i];
	unsigned lacing = (hdr[n + 2] >> 1) & 3;
	uint64_t len = size - n - 3;
	if (track != w->track)
		return in_skip(in, len);
	if (len > WEBM_MAX_BLOCK)
		return CODEC_EMALFORMED;
	if ((rc = reserve(w, (size_t)len)) < 0 || (rc = in_read_exact(in, w->buf, (size_t)len)) < 0)
		return rc;
	if ((rc = split_laces(w, (size_t)len, lacing)) < 0)
		return rc;
	*ours = true;
	return 0;
}

/* A BlockGroup: its Block, and DiscardPadding (before or after it) trimming that block. */
static int read_block_group(webm_state *w, uint64_t end, bool *ours)
{
	codec_in *in = w->in;
	ebml_elem e;
	bool have_block = false;
	int64_t padding = 0;
	int rc;

	*ours = false;
	while ((rc = ebml_next_child(in, end, &e)) > 0) {
		if ((rc = enter(in, &e)) < 0)
			return rc;
		if (e.id == ID_BLOCK) {
			if (have_block)
				return CODEC_EMALFORMED;
			have_block = true;
			rc = read_block(w, e.size, ours);
		} else if (e.id == ID_DISCARD_PADDING) {
			rc = ebml_sint(in, &e, &padding);
		} else {
			rc = ebml_skip(in, &e);
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	if (!have_block)
		return CODEC_EMALFORMED;
	if (*ours && padding > 0) {
		uint64_t drop = ns_to_frames((uint64_t)padding);
		w->keep_end = drop < w->keep_end ? w->keep_end - drop : 0;
	} else if (*ours && padding < 0) {
		uint64_t ns = padding == INT64_MIN ? (uint64_t)INT64_MAX + 1 : (uint64_t)-padding;
		uint64_t drop = ns_to_frames(ns);
		w->keep_start = drop < w->keep_end ? drop : w->keep_end;
	}
	return 0;
}

/* Advance to the next Block of our track: 1 when its laces are ready to decode, 0 at the end. */
static int next_block(webm_state *w)
{
	codec_in *in = w->in;
	ebml_elem e;
	bool ours;
	int rc;
	for (;;) {
		if (w->in_cluster) {
			if ((rc = ebml_next_child(in, w->cluster_end, &e)) < 0)
				return rc;
			if (rc == 0 || (w->cluster_unknown && ends_cluster(e.id))) {
				w->in_cluster = false;
				continue;
			}
			if ((rc = enter(in, &e)) < 0)
				return rc;
			if (e.id == ID_SIMPLE_BLOCK)
				rc = read_block(w, e.size, &ours);
			else if (e.id == ID_BLOCK_GROUP)
				rc = read_block_group(w, in_tell(in) + e.size, &ours);
			else
				rc = ebml_skip(in, &e);
			if (rc < 0)
				return rc;
			if ((e.id == ID_SIMPLE_BLOCK || e.id == ID_BLOCK_GROUP) && ours)
				return 1;
			continue;
		}
		if ((rc = ebml_next_child(in, w->segment_end, &e)) < 0)
			return rc;
		if (rc == 0 && w->segment_end == EBML_UNKNOWN_END)
			return 0; /* the end of the file */
		if (rc == 0 || e.id == ID_EBML || e.id == ID_SEGMENT) {
			/*
			 * After a known-size Segment, the next document if one begins there (other
			 * bytes are left, as they always were). Within an unknown-size one, the
			 * next document's EBML header ends it, and so does a Segment without one
			 * (the end); a known-size Segment can hold neither.
			 */
			if (rc == 0)
				rc = at_ebml_header(in);
			else if (w->segment_end != EBML_UNKNOWN_END)
				return CODEC_EMALFORMED;
			else
				rc = e.id == ID_EBML;
			if (rc <= 0 || (rc = next_document(w)) <= 0)
				return rc;
			continue;
		}
		if ((rc = enter(in, &e)) < 0)
			return rc;
		if (e.id == ID_CLUSTER) {
			w->in_cluster = true;
			w->cluster_unknown = e.unknown;
			w->cluster_end = e.unknown ? w->segment_end : in_tell(in) + e.size;
		} else if ((rc = ebml_skip(in, &e)) < 0) {
			return rc;
		}
	}
}

/* Decode the next lace, limiting its output to the part of the block that survives trimming. */
static int decode_lace(webm_state *w)
{
	size_t i = w->lace_next++;
	uint64_t n = w->lace_frames[i], off = w->block_pos;
	w->block_pos += n;
	uint64_t start = w->keep_start > off ? w->keep_start - off : 0;
	uint64_t end = w->keep_end > off ? w->keep_end - off : 0;
	if (start > n)
		start = n;
	if (end > n)
		end = n;
	/* Pre-skip and a negative DiscardPadding both drop from the front: the union of the two. */
	if (w->dec.skip < start)
		w->dec.skip = start;
	uint64_t front = w->dec.skip < n ? w->dec.skip : n;
	w->dec.limit = w->dec.produced + (end > front ? end - front : 0);
	return opusdec_packet(&w->dec, w->buf + w->lace_off[i], w->lace_len[i]);
}

static void webm_close(void *state)
{
	webm_state *w = state;
	if (!w)
		return;
	if (w->dec_ready)
		opusdec_free(&w->dec);
	free(w->buf);
	free(w);
}

static int webm_open(codec_in *in, void **state, codec_stream_info *info)
{
	opus_head head;
	int rc;

	memset(&head, 0, sizeof head);
	webm_state *w = calloc(1, sizeof *w);
	*state = w;
	if (!w)
		return CODEC_ENOMEM;
	w->in = in;
	/* Only zeros where the Segment would be (and no document after): a recording of nothing. */
	if ((rc = read_document(w, &head)) <= 0) {
		rc = rc < 0 ? rc : CODEC_ETOOSHORT;
		goto fail;
	}
	if ((rc = start_decoder(w, &head)) < 0)
		goto fail;

	info->format = CODEC_FORMAT_WEBM_OPUS;
	info->rate = 48000;
	info->channels = head.channels;
	info->lfe_channel = opus_head_lfe(&head);
	return 0;
fail:
	webm_close(w);
	*state = NULL;
	return rc;
}

/* PCM decoded before an error is handed out first; the error comes with the next call. */
static int webm_read(void *state, float *pcm, size_t max_frames, size_t *frames)
{
	webm_state *w = state;
	size_t done = 0;
	int rc = 0;
	*frames = 0;
	while (done < max_frames && !w->error) {
		if (w->dec.pos < w->dec.len) {
			done +=
			    opusdec_take(&w->dec, pcm + done * w->dec.channels, max_frames - done);
			continue;
		}
		if (w->lace_next < w->lace_count) {
			rc = decode_lace(w);
		} else if (w->ended) {
			break;
		} else {
			w->lace_count = w->lace_next = 0;
			rc = next_block(w);
			if (rc == 0)
				w->ended = true;
		}
		if (rc < 0)
			w->error = rc;
	}
	*frames = done;
	return done > 0 ? 0 : w->error;
}

const decoder_ops codec_webm_decoder = {webm_open, webm_read, webm_close};
