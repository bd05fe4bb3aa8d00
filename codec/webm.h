/*
 * webm.h — what the WebM demuxer's two files share: webm.c reads Clusters and Blocks and
 * decodes them; webm_head.c reads a document's EBML header, Segment and Tracks (each document
 * of a file, one after the other). Private to the codec library.
 */
#ifndef JIAYIN_CODEC_WEBM_H
#define JIAYIN_CODEC_WEBM_H

#include "ebml.h"
#include "internal.h"

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
 * Consume the header ebml_next_child() returned (it is in codec_in's buffer already). Only
 * Segment and Cluster may have unknown size; for every other element that is a structural
 * error, so no payload reader ever sees an unknown size.
 */
int webm_enter(codec_in *in, const ebml_elem *e);
/* Make room for n bytes in w->buf. */
int webm_reserve(webm_state *w, size_t n);
/* Nanoseconds to 48 kHz frames, rounded to nearest, without overflow. */
uint64_t webm_ns_to_frames(uint64_t ns);
/*
 * 1 when the next bytes are an EBML header's ID (the next document), 0 when they are anything
 * else or the file ends within four bytes; nothing is consumed.
 */
int webm_at_document(codec_in *in);
/*
 * A document, from its EBML header (the input at its first byte) to its Tracks: 1 with our
 * track's OpusHead in *head (w->track, w->preskip set), ready for its Clusters; 0 when only
 * zero bytes stand where its Segment would, to the end of the file. A document of zeros
 * followed by another (a pause and resume within Chrome's first 30 ms) is passed over.
 */
int webm_read_document(webm_state *w, opus_head *head);
/*
 * A Segment that follows another without an EBML header of its own (the input at its ID): its
 * Tracks read as webm_read_document's, 1 when ready for its Clusters.
 */
int webm_read_segment(webm_state *w, opus_head *head);

#endif
