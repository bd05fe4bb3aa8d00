/*
 * ogg_mux.c — writes Ogg Opus pages (see ogg_mux.h). Granule positions are supplied by the
 * encoder loop, which knows the pre-skip and the exact sample count; this file only frames.
 */
#include "ogg_mux.h"
#include "internal.h"

#include <string.h>

#define OPUS_VENDOR "Jiayin"

int ogg_mux_init(ogg_mux *m, const codec_sink *sink, uint32_t serial)
{
	memset(m, 0, sizeof *m);
	m->sink = sink;
	if (ogg_stream_init(&m->os, (int)serial) != 0)
		return CODEC_ENOMEM;
	m->ready = true;
	return 0;
}

void ogg_mux_free(ogg_mux *m)
{
	if (m->ready)
		ogg_stream_clear(&m->os);
	m->ready = false;
}

static int write_page(ogg_mux *m, const ogg_page *pg)
{
	int rc = m->sink->write(m->sink->ctx, pg->header, (size_t)pg->header_len);
	if (rc == 0)
		rc = m->sink->write(m->sink->ctx, pg->body, (size_t)pg->body_len);
	if (rc < 0)
		return rc;
	m->bytes += (uint64_t)pg->header_len + (uint64_t)pg->body_len;
	return 0;
}

/* force: write every buffered packet now (ogg_stream_flush); else only full pages. */
static int drain(ogg_mux *m, bool force)
{
	ogg_page pg;
	for (;;) {
		int r = force ? ogg_stream_flush(&m->os, &pg) : ogg_stream_pageout(&m->os, &pg);
		if (r == 0)
			break;
		int rc = write_page(m, &pg);
		if (rc < 0)
			return rc;
	}
	if (ogg_stream_check(&m->os))
		return CODEC_ENOMEM;
	return 0;
}

static int put(ogg_mux *m, unsigned char *data, size_t len, int64_t gp, bool bos, bool eos)
{
	ogg_packet op = {
		.packet = data,
		.bytes = (long)len,
		.b_o_s = bos,
		.e_o_s = eos,
		.granulepos = gp,
		.packetno = m->packetno++,
	};
	return ogg_stream_packetin(&m->os, &op) == 0 ? 0 : CODEC_ENOMEM;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

int ogg_mux_headers(ogg_mux *m, uint16_t preskip, uint32_t input_rate, const char *const *comments,
		    int ncomments)
{
	uint8_t head[19] = "OpusHead";
	head[8] = 1; /* version */
	head[9] = 1; /* channels */
	head[10] = (uint8_t)preskip;
	head[11] = (uint8_t)(preskip >> 8);
	put_le32(head + 12, input_rate);
	head[16] = head[17] = 0; /* output gain: the loudness is in the samples */
	head[18] = 0;            /* mapping family 0 */
	int rc = put(m, head, sizeof head, 0, true, false);
	if (rc < 0)
		return rc;
	ogg_page pg;
	if (ogg_stream_flush(&m->os, &pg) == 0 ||
	    (size_t)(pg.header_len + pg.body_len) != sizeof m->head_page)
		return CODEC_EENCODE;
	memcpy(m->head_page, pg.header, (size_t)pg.header_len);
	memcpy(m->head_page + pg.header_len, pg.body, (size_t)pg.body_len);
	if ((rc = write_page(m, &pg)) < 0)
		return rc;

	uint8_t tags[1024];
	size_t n = 0, vlen = strlen(OPUS_VENDOR);
	memcpy(tags, "OpusTags", 8);
	n = 8;
	put_le32(tags + n, (uint32_t)vlen);
	memcpy(tags + n + 4, OPUS_VENDOR, vlen);
	n += 4 + vlen;
	put_le32(tags + n, (uint32_t)ncomments);
	n += 4;
	for (int i = 0; i < ncomments; i++) {
		size_t len = strlen(comments[i]);
		if (len > sizeof tags - n - 4)
			return CODEC_EINVAL;
		put_le32(tags + n, (uint32_t)len);
		memcpy(tags + n + 4, comments[i], len);
		n += 4 + len;
	}
	rc = put(m, tags, n, 0, false, false);
	if (rc == 0)
		rc = drain(m, true);
	return rc;
}

int ogg_mux_set_gain(ogg_mux *m, int16_t gain_q8)
{
	if (!m->sink->patch)
		return CODEC_EINVAL;
	uint8_t page[sizeof m->head_page];
	memcpy(page, m->head_page, sizeof page);
	uint8_t *body = page + 28;
	body[16] = (uint8_t)((uint16_t)gain_q8 & 0xFF);
	body[17] = (uint8_t)((uint16_t)gain_q8 >> 8);
	ogg_page pg = {.header = page, .header_len = 28, .body = body, .body_len = 19};
	ogg_page_checksum_set(&pg);
	return m->sink->patch(m->sink->ctx, 0, page, sizeof page);
}

int ogg_mux_packet(ogg_mux *m, const uint8_t *pkt, size_t len, int64_t granulepos, bool last)
{
	int rc = put(m, (unsigned char *)pkt, len, granulepos, false, last);
	if (rc < 0)
		return rc;
	if (last || ++m->in_page >= OGG_MUX_PAGE_PACKETS) {
		m->in_page = 0;
		return drain(m, true);
	}
	return drain(m, false);
}
