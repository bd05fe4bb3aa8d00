/*
 * tus_metadata.h — the tus Upload-Metadata header ("key base64,key base64"), parsed without a
 * request around it (tus_metadata.c), so that its own libFuzzer target can reach it.
 */
#ifndef JIAYIN_SERVER_TUS_METADATA_H
#define JIAYIN_SERVER_TUS_METADATA_H

#include <stdbool.h>
#include <stddef.h>

#define SRV_TUS_METADATA_VALUE_MAX 256 /* decoded bytes of a metadata value we read */

/* Where the values we read go (NUL-terminated; empty when absent), and their sizes. */
typedef struct srv_tus_metadata {
	char *family, *to, *idem;
	size_t family_cap, to_cap, idem_cap;
	bool has_family, has_to, has_idem;
} srv_tus_metadata;

/*
 * Parse the header's value p[0..n) (untrusted; p may be NULL when the header is absent):
 * family_id, to and idempotency_key are ours, other keys are the client's and ignored. NULL
 * on success; else the reason (a static sentence), with *code the error's stable code. Says
 * nothing about whether the values are ids: that is the caller's to check.
 */
const char *srv_tus_metadata_parse(const char *p, size_t n, srv_tus_metadata *out,
				   const char **code);

/*
 * The Upload-Metadata that HEAD answers with (tus: the metadata given at creation): the keys
 * we keep, family_id, to and idempotency_key, each value in padded base64, an empty one left
 * out (other keys the client sent are not kept). Into out, NUL-terminated; false when it does
 * not fit in cap bytes (SRV_TUS_METADATA_ECHO_MAX always holds ours).
 */
#define SRV_TUS_METADATA_ECHO_MAX 512
bool srv_tus_metadata_format(const char *family, const char *to, const char *idem, char *out,
                             size_t cap);

#endif
