/*
 * ebml.h — reading EBML elements from codec_in (ebml.c), for the WebM demuxer. Internal to the
 * codec library.
 */
#ifndef JIAYIN_CODEC_EBML_H
#define JIAYIN_CODEC_EBML_H

#include "internal.h"

#include <stdbool.h>
#include <stdint.h>

#define EBML_MAX_STRING 32         /* DocType and CodecID we compare; longer ones never match */
#define EBML_UNKNOWN_END UINT64_MAX /* end of an element of unknown size */

typedef struct ebml_elem {
	uint32_t id;
	uint64_t size; /* payload bytes, unless unknown */
	bool unknown;  /* size field with all value bits set */
	size_t header_len;
} ebml_elem;

/* Length of an EBML variable-length integer from its first byte (1..8), 0 if invalid. */
unsigned ebml_vint_length(uint8_t b);
/* Look at the next element header without consuming it: 1 and *e, 0 at the end of input. */
int ebml_peek(codec_in *in, ebml_elem *e);
/*
 * The next child of a parent ending at `end` (EBML_UNKNOWN_END: unknown size), not consumed: 1
 * and *e with its size checked against the parent, or 0 at the parent's end. A known-size
 * parent that the file ends inside is truncated; an unknown-size one simply ends there.
 */
int ebml_next_child(codec_in *in, uint64_t end, ebml_elem *e);
/* Skip the payload of an element we have entered (one of unknown size cannot be). */
int ebml_skip(codec_in *in, const ebml_elem *e);
/* An unsigned or signed integer element of at most 8 bytes. */
int ebml_uint(codec_in *in, const ebml_elem *e, uint64_t *v);
int ebml_sint(codec_in *in, const ebml_elem *e, int64_t *v);
/* A string element into s, NUL-terminated; one too long for s is skipped and comes back "". */
int ebml_string(codec_in *in, const ebml_elem *e, char s[EBML_MAX_STRING]);

#endif
