/*
 * webm_head.c — a WebM document's head: its EBML header (DocType "webm" or "matroska"), its
 * Segment (after Void padding, or only zeros: Chrome stopped before its first audio), and its
 * Tracks, whose first A_OPUS audio track is ours (OpusHead from CodecPrivate, pre-skip). Read
 * for the first document as the file opens and for each one after it (webm.c, next_document),
 * and for a Segment that follows another in the same document (webm_read_segment).
 */
#include "webm.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t ebml_magic[4] = {0x1A, 0x45, 0xDF, 0xA3}; /* ID_EBML */

int webm_at_document(codec_in *in)
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
	if ((rc = webm_enter(in, &e)) < 0)
		return rc;
	uint64_t end = in_tell(in) + e.size;
	while ((rc = ebml_next_child(in, end, &e)) > 0) {
		if ((rc = webm_enter(in, &e)) < 0)
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
			if ((rc = webm_at_document(in)) < 0)
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
		if ((rc = webm_enter(in, &e)) < 0)
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
		if ((rc = webm_enter(in, &e)) < 0)
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
			} else if ((rc = webm_reserve(w, (size_t)e.size)) == 0) {
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
	w->preskip = t->private_len == 0 && t->has_codec_delay
	                 ? webm_ns_to_frames(t->codec_delay_ns)
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
		if ((rc = webm_enter(in, &e)) < 0)
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
		if ((rc = webm_enter(in, &e)) < 0)
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
		if ((rc = webm_enter(in, &e)) < 0)
			return rc;
		if (e.id == ID_TRACKS)
			return read_tracks(w, in_tell(in) + e.size, head);
		rc = e.id == ID_CLUSTER ? CODEC_EMALFORMED : ebml_skip(in, &e);
		if (rc < 0)
			return rc;
	}
}

int webm_read_segment(webm_state *w, opus_head *head)
{
	int rc = enter_segment(w);
	if (rc > 0)
		return CODEC_EMALFORMED; /* zeros: the caller saw a Segment's ID there */
	if (rc < 0 || (rc = read_to_tracks(w, head)) < 0)
		return rc;
	return 1;
}

int webm_read_document(webm_state *w, opus_head *head)
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
