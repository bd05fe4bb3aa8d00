/*
 * ebml.c — reading EBML, Matroska's binary container syntax: element headers (an ID and a size,
 * each a variable-length integer) peeked from codec_in without consuming them, checked against
 * their parent's end, and the payloads the WebM demuxer (webm.c) reads: unsigned and signed
 * integers and short strings.
 */
#include "ebml.h"

unsigned ebml_vint_length(uint8_t b)
{
	for (unsigned n = 1; n <= 8; n++)
		if (b & (0x80u >> (n - 1)))
			return n;
	return 0;
}

/* Look at the next element header without consuming it: 1 and *e, 0 at the end of input. */
int ebml_peek(codec_in *in, ebml_elem *e)
{
	const uint8_t *p;
	size_t avail;
	int rc = in_peek(in, &p, 12, &avail);
	if (rc < 0)
		return rc;
	if (avail == 0)
		return 0;
	unsigned id_len = ebml_vint_length(p[0]);
	if (id_len == 0 || id_len > 4)
		return CODEC_EMALFORMED;
	if (avail < id_len + 1)
		return CODEC_ETRUNCATED;
	uint32_t id = 0, bits = p[0] & (0xFFu >> id_len), ones = 0xFFu >> id_len;
	for (unsigned i = 0; i < id_len; i++)
		id = id << 8 | p[i];
	for (unsigned i = 1; i < id_len; i++) {
		bits = bits << 8 | p[i];
		ones = ones << 8 | 0xFF;
	}
	if (bits == 0 || bits == ones) /* reserved IDs */
		return CODEC_EMALFORMED;
	unsigned size_len = ebml_vint_length(p[id_len]);
	if (size_len == 0)
		return CODEC_EMALFORMED;
	if (avail < id_len + size_len)
		return CODEC_ETRUNCATED;
	uint64_t size = p[id_len] & (0xFFu >> size_len);
	bool all_ones = size == (0xFFu >> size_len);
	for (unsigned i = 1; i < size_len; i++) {
		size = size << 8 | p[id_len + i];
		all_ones = all_ones && p[id_len + i] == 0xFF;
	}
	e->id = id;
	e->size = size;
	e->unknown = all_ones;
	e->header_len = id_len + size_len;
	return 1;
}

/*
 * The next child of a parent ending at `end` (EBML_UNKNOWN_END: unknown size), not consumed: 1 and *e
 * with its size checked against the parent, or 0 at the parent's end. A known-size parent that
 * the file ends inside is truncated; an unknown-size one simply ends there.
 */
int ebml_next_child(codec_in *in, uint64_t end, ebml_elem *e)
{
	uint64_t pos = in_tell(in);
	if (end != EBML_UNKNOWN_END && pos >= end)
		return 0;
	int rc = ebml_peek(in, e);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return end == EBML_UNKNOWN_END ? 0 : CODEC_ETRUNCATED;
	if (end != EBML_UNKNOWN_END) {
		uint64_t room = end - pos;
		if (e->header_len > room || (!e->unknown && e->size > room - e->header_len))
			return CODEC_EMALFORMED;
	}
	if (!e->unknown && e->size >= EBML_UNKNOWN_END - pos - e->header_len)
		return CODEC_EMALFORMED;
	return 1;
}

/* Skip the payload of an element we have entered (an unknown-size Segment/Cluster cannot be). */
int ebml_skip(codec_in *in, const ebml_elem *e)
{
	return e->unknown ? CODEC_EMALFORMED : in_skip(in, e->size);
}

int ebml_uint(codec_in *in, const ebml_elem *e, uint64_t *v)
{
	uint8_t b[8];
	if (e->unknown || e->size > 8)
		return CODEC_EMALFORMED;
	int rc = in_read_exact(in, b, (size_t)e->size);
	if (rc < 0)
		return rc;
	*v = 0;
	for (size_t i = 0; i < e->size; i++)
		*v = *v << 8 | b[i];
	return 0;
}

int ebml_sint(codec_in *in, const ebml_elem *e, int64_t *v)
{
	uint64_t u;
	int rc = ebml_uint(in, e, &u);
	if (rc < 0)
		return rc;
	if (e->size > 0 && e->size < 8 && (u >> (8 * e->size - 1)) & 1)
		u |= UINT64_MAX << (8 * e->size); /* sign-extend */
	*v = u <= INT64_MAX ? (int64_t)u : -(int64_t)(UINT64_MAX - u) - 1;
	return 0;
}

/*
 * A string element into s, NUL-terminated (EBML's trailing NUL padding thus ends it too). Strings
 * too long for s are skipped and come back as "": they never match a value we compare against.
 */
int ebml_string(codec_in *in, const ebml_elem *e, char s[EBML_MAX_STRING])
{
	s[0] = '\0';
	if (e->unknown || e->size >= EBML_MAX_STRING)
		return ebml_skip(in, e);
	int rc = in_read_exact(in, s, (size_t)e->size);
	if (rc < 0)
		return rc;
	s[e->size] = '\0';
	return 0;
}
