/*
 * fuzz_config.c — libFuzzer target: the server's config file parser (server/config.c). An
 * operator's file is read at every start, and a mistake in it must stop the server with a
 * message naming the line, never crash it or apply half a value. Checks, for any input: an
 * error names the file and a line; a file that parses describes a listen address that is one,
 * and printing its settings (what --print-config shows) and parsing that again gives the same
 * settings.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* srv_config_print()'s text, malloc'd. */
static char *printed(const srv_config *c, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	if (!f)
		abort();
	srv_config_print(c, f);
	if (fclose(f) != 0)
		abort();
	return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	srv_config c;
	char err[512];
	srv_config_defaults(&c);
	err[0] = 0;
	if (srv_config_parse(&c, (const char *)data, size, "fuzz.conf", err, sizeof err) < 0) {
		/* "fuzz.conf:LINE: why" */
		unsigned line;
		char after;
		if (sscanf(err, "fuzz.conf:%u%c", &line, &after) != 2 || line == 0 || after != ':')
			abort();
		return 0;
	}
	unsigned char addr[16];
	if (inet_pton(AF_INET, c.listen_host, addr) != 1 &&
	    inet_pton(AF_INET6, c.listen_host, addr) != 1)
		abort();
	size_t len1, len2;
	char *first = printed(&c, &len1);
	srv_config again;
	srv_config_defaults(&again);
	if (srv_config_parse(&again, first, len1, "printed", err, sizeof err) < 0)
		abort();
	char *second = printed(&again, &len2);
	if (len1 != len2 || memcmp(first, second, len1) != 0)
		abort();
	free(first);
	free(second);
	return 0;
}
