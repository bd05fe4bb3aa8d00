/*
 * replay.c — runs a fuzz target over every file of a corpus directory, as a TAP test.
 * Linked with one fuzz_*.c in place of libFuzzer's main, so the corpus (seeds plus every
 * input that ever crashed) is replayed by the ordinary test run under the sanitizers.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 65536;
			uint8_t *p = realloc(buf, cap);
			if (!p) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = p;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	DIR *d = opendir(argv[1]);
	if (!d) {
		printf("1..1\nnot ok 1 - cannot open corpus %s\n", argv[1]);
		return 1;
	}
	char **names = NULL;
	size_t count = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char **p = realloc(names, (count + 1) * sizeof *names);
		if (!p)
			return 2;
		names = p;
		names[count++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, count, sizeof *names, by_name);
	if (count == 0) {
		printf("1..1\nnot ok 1 - empty corpus %s\n", argv[1]);
		return 1;
	}
	printf("1..%zu\n", count);
	int failed = 0;
	for (size_t i = 0; i < count; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
		/* A crash or sanitizer report ends the process: the TAP plan then fails. */
		int rc = run_file(path);
		printf("%s %zu - %s\n", rc == 0 ? "ok" : "not ok", i + 1, names[i]);
		fflush(stdout);
		failed |= rc != 0;
		free(names[i]);
	}
	free(names);
	return failed;
}
