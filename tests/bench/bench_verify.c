/*
 * bench_verify.c — what checking a family's stored voices costs (store_family_verify), next
 * to what a backup of the same family already costs (store_backup_family: every page read and
 * written to a new file, synced) and to SHA-256 alone over the same bytes in memory (OpenSSL,
 * as the check and the append hash). A family of CLIPS messages of CLIP_BYTES each, built with
 * durable appends; its file in the OS page cache, as on a server with RAM to spare (a cold
 * disk adds its read speed to both the check and the backup). Medians of RUNS runs.
 * Usage: bench_verify [WORKDIR]
 */
#include "bench_common.h"
#include "store.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RUNS 5
#define CLIPS 1000
#define CLIP_BYTES (150 * 1000)

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_verify: %s failed: %d (%s)\n", what, rc, store_errcode(rc));
	exit(1);
}

int main(int argc, char **argv)
{
	const char *work = argc > 1 ? argv[1] : "/tmp/jiayin-bench-verify";
	char cmd[512], dest[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", work, work);
	if (sodium_init() < 0 || system(cmd) != 0)
		return 1;
	store_options o;
	store *s;
	store_family fam;
	store_member mem;
	store_options_init(&o);
	o.dir = work;
	int rc = store_open(&s, &o);
	if (rc == 0)
		rc = store_family_create(s, "bench", "parent", 0, 1, &fam, &mem);
	if (rc < 0)
		die("setup", rc);
	uint8_t wave[STORE_WAVEFORM_POINTS] = {0}, *clips = malloc((size_t)CLIPS * CLIP_BYTES);
	if (!clips)
		die("setup", STORE_ENOMEM);
	randombytes_buf(clips, (size_t)CLIPS * CLIP_BYTES);
	for (int i = 0; i < CLIPS; i++) {
		store_new_message m = {.sender = mem.id.s,
		                       .waveform = wave,
		                       .audio = clips + (size_t)i * CLIP_BYTES,
		                       .audio_len = CLIP_BYTES};
		store_message out;
		int existed;
		if ((rc = store_message_append(s, fam.id.s, &m, &out, &existed)) < 0)
			die("append", rc);
	}
	const double mb = (double)CLIPS * CLIP_BYTES / 1e6;
	double verify[RUNS], backup[RUNS], hash[RUNS];
	for (int r = 0; r < RUNS; r++) {
		store_verify_counts n;
		double t0 = now();
		if ((rc = store_family_verify(s, fam.id.s, NULL, NULL, &n)) < 0)
			die("verify", rc);
		verify[r] = mb / (now() - t0);
		if (n.messages != CLIPS || n.damaged)
			die("verify's count", STORE_ECORRUPT);
		snprintf(dest, sizeof dest, "%s/copy-%d.db", work, r);
		t0 = now();
		if ((rc = store_backup_family(s, fam.id.s, dest)) < 0)
			die("backup", rc);
		backup[r] = mb / (now() - t0);
		unlink(dest);
		uint8_t h[32];
		unsigned hlen;
		t0 = now();
		for (int i = 0; i < CLIPS; i++)
			if (!EVP_Digest(clips + (size_t)i * CLIP_BYTES, CLIP_BYTES, h, &hlen,
			                EVP_sha256(), NULL))
				die("sha256", STORE_ENOMEM);
		hash[r] = mb / (now() - t0);
	}
	double v = median(verify, RUNS), b = median(backup, RUNS), h = median(hash, RUNS);
	printf("| measure (%d clips of %d bytes, %.0f MB) | MB/s | seconds |\n|---|---|---|\n",
	       CLIPS, CLIP_BYTES, mb);
	printf("| store_family_verify | %.0f | %.2f |\n", v, mb / v);
	printf("| store_backup_family (peer: a backup's copy of the same family) | %.0f | %.2f |\n",
	       b, mb / b);
	printf("| SHA-256 alone, in memory (peer: OpenSSL) | %.0f | %.2f |\n", h, mb / h);
	printf("\nverify / backup time: %.2fx; verify / SHA-256 time: %.2fx; medians of %d runs\n",
	       (mb / v) / (mb / b), (mb / v) / (mb / h), RUNS);
	store_close(s);
	free(clips);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
	return system(cmd) == 0 ? 0 : 1;
}
