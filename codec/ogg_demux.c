/*
 * ogg_demux.c — Ogg Opus decoder (RFC 7845) on libogg's framing and opus_dec.c's decoding.
 *
 * Decodes the first Opus logical stream of the file, then the Opus stream of each link chained
 * after it (RFC 7845 3: a chained file is its links one after the other, as `cat a.opus
 * b.opus` makes, or a recorder that pauses by starting a new stream). Each link has its own
 * headers, pre-skip and granule positions, and must have the first link's channels: the clip's
 * layout is fixed when it opens. A link ends at its EOS page, or where the next begins (its
 * OpusHead page) when it lacks one. Pages of other multiplexed streams are ignored. Sample
 * accuracy comes from each link's granule positions: pre-skip is dropped at its start, and the
 * last page's granule position trims the end. Beyond RFC 7845, writers whose granule positions
 * lag are read too (load_page): Android's MediaRecorder (OggWriter, one packet a page) gives
 * each page its packet's start time, so its first audio page says 0 for a 20 ms packet.
 * Framing is strict: a page with a bad CRC or bytes between pages is a corrupt upload
 * (CODEC_ECORRUPT), not something to resynchronise past; only bytes after a link's last page
 * that begin no further link (padding a writer left) end the clip instead, as they did before
 * chains were read.
 */
#include "internal.h"

#include <ogg/ogg.h>
#include <stdlib.h>
#include <string.h>

#define OGG_READ_BYTES 8192
/*
 * OpusTags up to this size is gathered whole; a larger one (cover art: opusenc --picture of a
 * 2 MB image writes 2.6 MB) is dropped page by page once its magic is seen (skip_tags).
 */
#define OGG_MAX_HEADER_BYTES (1 << 20)
/*
 * An audio packet, gathered whole by libogg before it is decoded: the largest an Opus packet
 * needs is some 61 KB a stream (120 ms of 2.5 ms frames at 1275 bytes each), 8 streams at most
 * here. Past this it is padding or a packet continued page after page that never ends, which
 * held the whole upload in memory (512 MiB), as WebM's Blocks (WEBM_MAX_BLOCK).
 */
#define OGG_MAX_PACKET_BYTES (1 << 20)
/*
 * The Opus streams a chain's decoders may have, all its links together: each link makes a
 * decoder of its own, and a link needs no audio to cost one, so neither the duration limit
 * nor the byte limit bounds them (links of 255 streams cost about 12 ms each in 640 bytes:
 * 200 MiB of them, an hour of a worker per pass). 4096 links of a mono or stereo recording.
 */
#define OGG_MAX_CHAIN_STREAMS 4096

typedef struct ogg_state {
	codec_in *in;
	ogg_sync_state sync;
	ogg_stream_state stream;
	bool sync_ready, stream_ready;
	int serial;
	bool eos;            /* the link's last page was read (or the file ended) */
	bool file_end;       /* the file ended: no link after this one */
	bool bad_page;       /* the last lost sync was at a page ("OggS") that failed its CRC */
	bool first_audio;    /* the next page with a granule position is the first audio page */
	int64_t page_gp;     /* the granule position and EOS of the last page of ours taken in */
	bool page_eos;
	int64_t start_gp;    /* granule position at which the link's audio starts (may be < 0) */
	uint64_t pkt_frames; /* the samples of the link's packets completed so far */
	unsigned streams;    /* the Opus streams of the links begun so far */
	uint64_t end_limit;  /* frames the stream may produce up to the current page */
	opus_head head;
	opusdec dec;
	bool dec_ready;
	/* Packets completed on the current page, decoded one by one as PCM is taken. */
	ogg_packet pkts[256];
	int npkts, next_pkt;
} ogg_state;

static void ogg_close(void *state)
{
	ogg_state *s = state;
	if (!s)
		return;
	if (s->sync_ready)
		ogg_sync_clear(&s->sync);
	if (s->stream_ready)
		ogg_stream_clear(&s->stream);
	if (s->dec_ready)
		opusdec_free(&s->dec);
	free(s);
}

/* The next page of any stream, or 0 with *got == false at the end of the file. */
static int next_page(ogg_state *s, ogg_page *page, bool *got)
{
	*got = false;
	for (;;) {
		long at = s->sync.returned;
		int r = ogg_sync_pageout(&s->sync, page);
		if (r == 1) {
			*got = true;
			return 0;
		}
		if (r < 0) {
			/* Lost sync: bad CRC or garbage between pages. */
			s->bad_page =
			    s->sync.fill - at >= 4 && memcmp(s->sync.data + at, "OggS", 4) == 0;
			return CODEC_ECORRUPT;
		}
		char *buf = ogg_sync_buffer(&s->sync, OGG_READ_BYTES);
		if (!buf)
			return CODEC_ENOMEM;
		size_t n;
		int rc = in_read(s->in, buf, OGG_READ_BYTES, &n);
		if (rc < 0)
			return rc;
		if (n == 0) {
			/* Bytes left over that never formed a page: the upload was cut mid-page. */
			return s->sync.fill > s->sync.returned ? CODEC_ETRUNCATED : 0;
		}
		if (ogg_sync_wrote(&s->sync, (long)n) != 0)
			return CODEC_ENOMEM;
	}
}

/* Whether a page begins an Opus stream: a BOS page whose packet is an OpusHead. */
static bool opus_head_page(const ogg_page *page)
{
	return ogg_page_bos(page) && page->body_len >= 8 && memcmp(page->body, "OpusHead", 8) == 0;
}

/*
 * The next page of our stream; pages of other multiplexed streams are skipped. With `link`
 * (the link's audio, after its headers) an OpusHead BOS page of any serial number is handed
 * back instead, *link set: the BOS pages of a link come before all its other pages (RFC
 * 3533), so it begins the next link, and ours ended without EOS (Android's OggWriter never
 * sets it), where its pages were skipped as another stream's, or taken in as ours.
 */
static int next_stream_page(ogg_state *s, ogg_page *page, bool *got, bool *link)
{
	for (;;) {
		int rc = next_page(s, page, got);
		if (rc < 0 || !*got)
			return rc;
		if (link && opus_head_page(page)) {
			*link = true;
			return 0;
		}
		if (ogg_page_serialno(page) != s->serial)
			continue; /* another multiplexed stream, or a chained link after ours */
		if (ogg_stream_pagein(&s->stream, page) != 0)
			return CODEC_EMALFORMED;
		s->page_gp = ogg_page_granulepos(page);
		s->page_eos = ogg_page_eos(page);
		return 0;
	}
}

/*
 * The rest of an OpusTags packet too large to gather, which begins the stream's buffered
 * partial packet: libogg drops what it holds of it at a reset, and then, on each continued page
 * that follows, the segments up to the packet's end (the first lacing value under 255), so the
 * packets after it (audio on its last page) are kept as usual. Page numbers are checked here:
 * after a reset libogg takes any page for the next.
 */
static int skip_tags(ogg_state *s)
{
	ogg_stream_state *os = &s->stream;
	if (os->body_fill - os->body_returned < 8 ||
	    memcmp(os->body_data + os->body_returned, "OpusTags", 8) != 0)
		return CODEC_EMALFORMED;
	long pageno = os->pageno; /* the next page's, once a page is in */
	ogg_stream_reset(os);
	for (;;) {
		ogg_page page;
		bool got;
		int rc = next_stream_page(s, &page, &got, NULL);
		if (rc < 0)
			return rc;
		if (!got)
			return CODEC_ETRUNCATED;
		if (ogg_page_pageno(&page) != pageno++ || !ogg_page_continued(&page))
			return CODEC_EMALFORMED; /* a hole in the header pages */
		for (int i = 0; i < page.header[26]; i++)
			if (page.header[27 + i] < 255)
				return 0;
	}
}

/* The OpusTags packet, possibly spanning pages: only its magic matters. */
static int tags_packet(ogg_state *s)
{
	ogg_packet pkt;
	ogg_page page;
	bool got;
	for (;;) {
		int r = ogg_stream_packetout(&s->stream, &pkt);
		if (r == 1) {
			bool tags = pkt.bytes >= 8 && memcmp(pkt.packet, "OpusTags", 8) == 0;
			return tags ? 0 : CODEC_EMALFORMED;
		}
		if (r < 0)
			return CODEC_EMALFORMED; /* a hole in the header pages */
		if (s->stream.body_fill > OGG_MAX_HEADER_BYTES)
			return skip_tags(s);
		int rc = next_stream_page(s, &page, &got, NULL);
		if (rc < 0)
			return rc;
		if (!got)
			return CODEC_ETRUNCATED;
	}
}

static int take_page(ogg_state *s, int64_t gp, bool last);

/*
 * A link's headers, from its OpusHead BOS page: OpusHead alone on that page, OpusTags next,
 * audio after (RFC 7845 3), and a decoder of its own. A link after the first must keep the
 * first's channels (and so its LFE channel). Audio on OpusTags' last page, which RFC 7845 says
 * must begin a page of its own, is taken as that page's (ffmpeg plays it; a writer that lets
 * libogg fill its pages after OpusHead makes it), not left for the next page: a short clip may
 * be all on that page, EOS, with no next page of its link to take it.
 */
static int begin_link(ogg_state *s, ogg_page *page)
{
	ogg_packet pkt;
	opus_head head;
	int rc;
	s->serial = ogg_page_serialno(page);
	if (!s->stream_ready) {
		if (ogg_stream_init(&s->stream, s->serial) != 0)
			return CODEC_ENOMEM;
		s->stream_ready = true;
	} else if (ogg_stream_reset_serialno(&s->stream, s->serial) != 0) {
		return CODEC_ENOMEM;
	}
	if (ogg_stream_pagein(&s->stream, page) != 0)
		return CODEC_EMALFORMED;
	s->page_gp = ogg_page_granulepos(page);
	s->page_eos = ogg_page_eos(page);
	if (ogg_stream_packetout(&s->stream, &pkt) != 1)
		return CODEC_EMALFORMED;
	if ((rc = opus_head_parse(pkt.packet, (size_t)pkt.bytes, &head)) < 0)
		return rc;
	if (s->dec_ready &&
	    (head.channels != s->head.channels || opus_head_lfe(&head) != opus_head_lfe(&s->head)))
		return CODEC_EUNSUPPORTED; /* a chain whose links differ in channels */
	if (head.streams > OGG_MAX_CHAIN_STREAMS - s->streams)
		return CODEC_EUNSUPPORTED; /* a chain of too many links (or of too many streams) */
	s->streams += head.streams;
	if (ogg_stream_packetout(&s->stream, &pkt) != 0)
		return CODEC_EMALFORMED;
	if ((rc = tags_packet(s)) < 0)
		return rc;
	if (s->dec_ready) {
		opusdec_free(&s->dec);
		s->dec_ready = false;
	}
	s->head = head;
	if ((rc = opusdec_init(&s->dec, &s->head)) < 0)
		return rc;
	s->dec_ready = true;
	s->first_audio = true;
	s->pkt_frames = 0;
	s->eos = false;
	s->npkts = s->next_pkt = 0;
	if (ogg_stream_packetpeek(&s->stream, NULL) == 1)
		return take_page(s, s->page_gp, s->page_eos);
	return 0;
}

/*
 * After a link's last page: the next link's OpusHead page, skipping what is left of other
 * multiplexed streams and links without Opus; s->file_end when the file ends first.
 */
static int next_link(ogg_state *s)
{
	ogg_page page;
	bool got;
	for (;;) {
		int rc = next_page(s, &page, &got);
		/* A page begun and cut (the next link's first, say): the file was cut, not padded.
		 */
		if (rc == CODEC_ETRUNCATED && s->sync.fill - s->sync.returned >= 4 &&
		    memcmp(s->sync.data + s->sync.returned, "OggS", 4) == 0)
			return rc;
		/* A whole page that fails its CRC (the next link's first, say): corrupt, as it is
		 * anywhere else in the file, not padding. */
		if (rc == CODEC_ECORRUPT && s->bad_page)
			return rc;
		if (rc == CODEC_ECORRUPT || rc == CODEC_ETRUNCATED)
			got = false; /* bytes after a whole link that begin no other: its end */
		else if (rc < 0)
			return rc;
		if (!got) {
			s->file_end = true;
			return 0;
		}
		if (opus_head_page(&page))
			return begin_link(s, &page);
	}
}

static int ogg_open(codec_in *in, void **state, codec_stream_info *info)
{
	ogg_page page;
	bool got;
	int rc;

	ogg_state *s = calloc(1, sizeof *s);
	if (!s)
		return CODEC_ENOMEM;
	*state = s;
	s->in = in;
	ogg_sync_init(&s->sync);
	s->sync_ready = true;

	/* BOS pages come first (RFC 3533); one of them must begin an Opus stream. */
	for (bool any = false;; any = true) {
		if ((rc = next_page(s, &page, &got)) < 0)
			return rc;
		if (!got)
			return any ? CODEC_EUNSUPPORTED : CODEC_ETRUNCATED;
		if (!ogg_page_bos(&page))
			return any ? CODEC_EUNSUPPORTED : CODEC_EMALFORMED;
		if (opus_head_page(&page))
			break;
		/* Another codec's BOS page (Vorbis, or a multiplexed video): look further. */
	}
	if ((rc = begin_link(s, &page)) < 0)
		return rc;

	info->format = CODEC_FORMAT_OGG_OPUS;
	info->rate = 48000;
	info->channels = s->head.channels;
	info->lfe_channel = opus_head_lfe(&s->head);
	return 0;
}

/* Read the next audio page and queue its completed packets. */
static int load_page(ogg_state *s)
{
	ogg_page page;
	bool got;
	int rc;
	bool link = false;
	s->npkts = s->next_pkt = 0;
	if ((rc = next_stream_page(s, &page, &got, &link)) < 0)
		return rc;
	if (!got) {
		s->eos = s->file_end = true;
		return 0;
	}
	if (link)
		return begin_link(s, &page); /* this link ended without EOS */
	return take_page(s, ogg_page_granulepos(&page), ogg_page_eos(&page));
}

/* Queue the completed packets of the page just taken in, its granule position gp. */
static int take_page(ogg_state *s, int64_t gp, bool last)
{
	uint64_t frames = 0;
	for (;;) {
		ogg_packet *p = &s->pkts[s->npkts];
		int r = ogg_stream_packetout(&s->stream, p);
		if (r == 0)
			break;
		if (r < 0)
			return CODEC_ECORRUPT; /* a page is missing */
		if (p->bytes > OGG_MAX_PACKET_BYTES)
			return CODEC_EMALFORMED;
		/*
		 * An empty packet is no Opus packet (RFC 6716 3.4 R1) but an Ogg writer's way of
		 * setting EOS once the audio is out: VLC's muxer ends each stream so, on the last
		 * page's audio or on a page of its own. It holds no samples; its page's granule
		 * position and EOS count as any page's, so the end is trimmed to the sample.
		 */
		if (p->bytes == 0)
			continue;
		int n = opusdec_packet_frames(p->packet, (size_t)p->bytes);
		if (n < 0)
			return n;
		frames += (uint64_t)n;
		if (++s->npkts == (int)(sizeof s->pkts / sizeof s->pkts[0]))
			return CODEC_EMALFORMED;
	}
	/* What is left is the packet the page begins and does not end. */
	if (s->stream.body_fill - s->stream.body_returned > OGG_MAX_PACKET_BYTES)
		return CODEC_EMALFORMED;
	s->pkt_frames += frames;
	if (last)
		s->eos = true;
	if (gp < 0)
		return 0; /* no packet ends on this page */
	/*
	 * A granule position below the samples completed through its page is end trimming on the
	 * link's last page (RFC 7845 4), EOS set. On any other page it is a writer that counted
	 * from a packet's start (Android's OggWriter: its first audio page says 0, every page
	 * lags a packet, by encoder timestamps that jitter some hundred microseconds), which RFC
	 * 7845 calls invalid and which ffmpeg and VLC play: its samples are all kept, the link's
	 * granule positions read from then on as offset by the deficit, so the deficit neither
	 * refuses the file (the first page's) nor drops audio mid-way (a later page's, until
	 * another raised the bound). The price: a last page without EOS trims nothing, but a
	 * writer that trims sets EOS (RFC 3533 marks a stream's last page so), and a file cut
	 * after a page has no trimming to lose.
	 */
	if (s->first_audio) {
		s->first_audio = false;
		s->start_gp = gp - (int64_t)s->pkt_frames;
		/* A single page: its granule position is the link's length (RFC 7845 4). */
		if (s->start_gp < 0 && last)
			s->start_gp = 0;
	}
	if (gp < s->start_gp)
		return CODEC_EMALFORMED;
	/* Samples through the end of this page: gp - start_gp, below 2^64 with start_gp < 0. */
	uint64_t total = (uint64_t)gp - (uint64_t)s->start_gp;
	if (total < s->pkt_frames && !last) {
		s->start_gp = gp - (int64_t)s->pkt_frames;
		total = s->pkt_frames;
	}
	/* Frames through the end of this page, after pre-skip. */
	s->end_limit = total > s->head.preskip ? total - s->head.preskip : 0;
	s->dec.limit = s->end_limit;
	return 0;
}

static int ogg_read(void *state, float *pcm, size_t max_frames, size_t *frames)
{
	ogg_state *s = state;
	size_t done = 0;
	while (done < max_frames) {
		if (s->dec.pos < s->dec.len) {
			done += opusdec_take(&s->dec, pcm + done * s->dec.channels,
					     max_frames - done);
			continue;
		}
		if (s->next_pkt < s->npkts) {
			ogg_packet *p = &s->pkts[s->next_pkt++];
			int rc = opusdec_packet(&s->dec, p->packet, (size_t)p->bytes);
			if (rc < 0)
				return rc;
			continue;
		}
		int rc;
		if (s->eos && s->file_end)
			break;
		if (s->eos)
			rc = next_link(s);
		else
			rc = load_page(s);
		if (rc < 0)
			return rc;
	}
	*frames = done;
	return 0;
}

const decoder_ops codec_ogg_decoder = {ogg_open, ogg_read, ogg_close};
