/*
 * fuzz_tus.c — libFuzzer target: the tus Upload-Metadata parser (server/tus_metadata.c) on any
 * header value, with small buffers so that every length check is exercised. Checks what the
 * upload code relies on: on success each value read is a string that fits its buffer, and a
 * key not read leaves its buffer empty. And what HEAD echoes (srv_tus_metadata_format) is read
 * back as the same values.
 */
#include "tus_metadata.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char family[27], to[27], idem[129];
	srv_tus_metadata m = {family, to, idem, sizeof family, sizeof to, sizeof idem,
			      false, false, false};
	const char *code = NULL;
	const char *why = srv_tus_metadata_parse((const char *)data, size, &m, &code);
	if (!code)
		abort();
	if (why)
		return 0;
	const char *vals[3] = {family, to, idem};
	const bool has[3] = {m.has_family, m.has_to, m.has_idem};
	const size_t caps[3] = {sizeof family, sizeof to, sizeof idem};
	for (int i = 0; i < 3; i++) {
		size_t n = strnlen(vals[i], caps[i]);
		if (n >= caps[i] || (!has[i] && n != 0))
			abort();
	}
	char echo[SRV_TUS_METADATA_ECHO_MAX], f2[27], t2[27], i2[129];
	srv_tus_metadata back = {f2, t2, i2, sizeof f2, sizeof t2, sizeof i2, false, false, false};
	if (!srv_tus_metadata_format(family, to, idem, echo, sizeof echo))
		abort();
	if (!echo[0]) { /* nothing to echo: no header (an empty one names an empty key) */
		if (family[0] || to[0] || idem[0])
			abort();
		return 0;
	}
	if (srv_tus_metadata_parse(echo, strlen(echo), &back, &code) != NULL ||
	    strcmp(f2, family) != 0 || strcmp(t2, to) != 0 || strcmp(i2, idem) != 0)
		abort();
	return 0;
}
