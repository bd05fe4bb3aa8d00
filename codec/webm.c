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
#include "webm.h"

#include <stdlib.h>
#include <string.h>

int webm_enter(codec_in *in, const ebml_elem *e)
{
	if (e->unknown && e->id != ID_SEGMENT && e->id != ID_CLUSTER)
		return CODEC_EMALFORMED;
	return in_skip(in, e->header_len);
}

int webm_reserve(webm_state *w, size_t n)
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

uint64_t webm_ns_to_frames(uint64_t ns)
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
 * The document after the one whose audio has ended (with `segment_only`, the Segment after it in
 * the same document): 1 when its decoder is ready, 0 when none follows but zero bytes. A later
 * document's EBML header that is no WebM's is a part of the file we cannot decode, not a file we
 * do not know.
 */
static int next_document(webm_state *w, bool segment_only)
{
	opus_head head;
	int rc = segment_only ? webm_read_segment(w, &head) : webm_read_document(w, &head);
	if (rc <= 0)
		return rc == CODEC_EFORMAT ? CODEC_EUNSUPPORTED : rc;
	if ((rc = start_decoder(w, &head)) < 0)
		return rc;
	return 1;
}

/*
 * After a Segment: what follows at the top level. Void elements are padding there as anywhere
 * (EBML's global element; a writer that reserved room for a larger Segment fills the rest so)
 * and are skipped. Then the next document's EBML header, or a Segment without one (a second
 * Segment of the same document, as ffmpeg reads it), each decoded in turn: 1 when its decoder is
 * ready. 0 at the end of the file, and at bytes that begin none of these (left, as they always
 * were), a Void the file ends in among them: nothing of the clip is lost with it.
 */
static int after_segment(webm_state *w)
{
	static const uint8_t segment_id[4] = {0x18, 0x53, 0x80, 0x67}; /* ID_SEGMENT */
	codec_in *in = w->in;
	for (;;) {
		const uint8_t *p;
		size_t avail;
		ebml_elem e;
		int rc = webm_at_document(in);
		if (rc != 0)
			return rc < 0 ? rc : next_document(w, false);
		if ((rc = in_peek(in, &p, 4, &avail)) < 0)
			return rc;
		if (avail == 4 && memcmp(p, segment_id, 4) == 0)
			return next_document(w, true);
		if (avail == 0 || p[0] != ID_VOID)
			return 0;
		rc = ebml_peek(in, &e);
		if (rc == CODEC_EMALFORMED || rc == CODEC_ETRUNCATED || (rc > 0 && e.unknown))
			return 0;
		if (rc <= 0)
			return rc;
		rc = in_skip(in, e.header_len + e.size);
		if (rc < 0)
			return rc == CODEC_ETRUNCATED ? 0 : rc;
	}
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
		/* An empty block holds no packet, and w->buf may be NULL (no offset may be added
		 * to it below): corrupt, as an empty packet is to the decoder (fuzz_webm). */
		if (len == 0)
			return CODEC_ECORRUPT;
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
	if ((rc = webm_reserve(w, (size_t)len)) < 0 ||
	    (rc = in_read_exact(in, w->buf, (size_t)len)) < 0)
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
		if ((rc = webm_enter(in, &e)) < 0)
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
		uint64_t drop = webm_ns_to_frames((uint64_t)padding);
		w->keep_end = drop < w->keep_end ? w->keep_end - drop : 0;
	} else if (*ours && padding < 0) {
		uint64_t ns = padding == INT64_MIN ? (uint64_t)INT64_MAX + 1 : (uint64_t)-padding;
		uint64_t drop = webm_ns_to_frames(ns);
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
			if ((rc = webm_enter(in, &e)) < 0)
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
			 * The end of a known-size Segment, or, within an unknown-size one, the next
			 * document's EBML header or a Segment without one, which end it (a
			 * known-size Segment can hold neither): what follows is decoded in turn.
			 */
			if (rc > 0 && w->segment_end != EBML_UNKNOWN_END)
				return CODEC_EMALFORMED;
			if ((rc = after_segment(w)) <= 0)
				return rc;
			continue;
		}
		if ((rc = webm_enter(in, &e)) < 0)
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
	if ((rc = webm_read_document(w, &head)) <= 0) {
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
