/*
 * fuzz_tus.c — libFuzzer target: the tus Upload-Metadata parser (server/tus_metadata.c) on any
 * header value, with small buffers so that every length check is exercised. Checks what the
 * upload code relies on: on success each value read is a string that fits its buffer, and a
 * key not read leaves its buffer empty.
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
	return 0;
}
