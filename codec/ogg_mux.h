/*
 * ogg_mux.h — RFC 7845 Ogg Opus writer on libogg (private to codec/).
 * OpusHead alone on the first page, OpusTags on its own page(s), then audio pages of at most
 * OGG_MUX_PAGE_PACKETS packets (1 s of 20 ms packets), each page written to the sink at once.
 */
#ifndef JIAYIN_CODEC_OGG_MUX_H
#define JIAYIN_CODEC_OGG_MUX_H

#include "codec.h"

#include <ogg/ogg.h>
#include <stdbool.h>

#define OGG_MUX_PAGE_PACKETS 50

typedef struct ogg_mux {
	ogg_stream_state os;
	bool ready;
	const codec_sink *sink;
	uint64_t bytes;   /* written to the sink so far */
	int64_t packetno;
	int in_page;      /* audio packets on the page being filled */
	/* The first page (OpusHead alone) as written, to rewrite its output gain later. */
	uint8_t head_page[27 + 1 + 19];
} ogg_mux;

int ogg_mux_init(ogg_mux *m, const codec_sink *sink, uint32_t serial);
void ogg_mux_free(ogg_mux *m);
/* Build and write OpusHead (mono, family 0) and OpusTags with the given comments. */
int ogg_mux_headers(ogg_mux *m, uint16_t preskip, uint32_t input_rate, const char *const *comments,
		    int ncomments);
/* Rewrite the first page with OpusHead's output gain (Q7.8 dB) through sink->patch. */
int ogg_mux_set_gain(ogg_mux *m, int16_t gain_q8);
/* Add one audio packet ending at `granulepos`; `last` ends the stream and flushes. */
int ogg_mux_packet(ogg_mux *m, const uint8_t *pkt, size_t len, int64_t granulepos, bool last);

#endif
