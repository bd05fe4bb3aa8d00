/*
 * secret.c — the server's key (data/secret) and the HMACs made with it. Each use puts its own
 * label first in what it authenticates ("phone-audio-url", "kiosk-audio-url", "pairing-code"),
 * so a value made for one use is never valid for another; the key that seals a URL's holder
 * into it is an HMAC of its own label too. Signatures are truncated to 128 bits: plenty against
 * forgery for URLs that live minutes, and short in a URL.
 */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_key(const char *path, uint8_t key[SRV_SECRET_LEN])
{
	/* A link is followed: a key mounted from elsewhere (a container's secret) is a link. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/*
	 * Readable by anyone but its owner (restored with a plain cp, say), the key could sign any
	 * family's audio URLs: made 0600 again, loudly, as the start-up's first words. A key we
	 * may not change (another owner's, a read-only mount) is used, with the warning.
	 */
	struct stat st;
	int bad = fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL : 0;
	if (bad) {
		close(fd);
		return bad;
	}
	if ((st.st_mode & 077) && fchmod(fd, 0600) < 0)
		fprintf(
		    stderr,
		    "jiayin: %s is readable by others (mode %04o) and cannot be made 0600 (%s): "
		    "make it readable by the server's user alone\n",
		    path, (unsigned)(st.st_mode & 07777), strerror(errno));
	else if (st.st_mode & 077)
		fprintf(stderr,
		        "jiayin: %s was readable by others (mode %04o); it is 0600 now. If anyone "
		        "else may have read it, start over with a new key (docs/operations.md)\n",
		        path, (unsigned)(st.st_mode & 07777));
	uint8_t buf[SRV_SECRET_LEN + 1];
	ssize_t n = read(fd, buf, sizeof buf);
	int err = n < 0 ? -errno : n != SRV_SECRET_LEN ? -EINVAL : 0;
	close(fd);
	if (err == 0)
		memcpy(key, buf, SRV_SECRET_LEN);
	sodium_memzero(buf, sizeof buf);
	return err;
}

static int create_key(const char *path, const char *data_dir)
{
	char tmp[1200];
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	/* A new file of our own, never through a link: a stale one (a crash, a reused pid) goes. */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	uint8_t key[SRV_SECRET_LEN];
	randombytes_buf(key, sizeof key);
	int err = 0;
	errno = 0;
	if (write(fd, key, sizeof key) != (ssize_t)sizeof key)
		err = errno ? -errno : -EIO; /* a short write is a full disk */
	else if (fsync(fd) < 0)
		err = -errno;
	sodium_memzero(key, sizeof key);
	close(fd);
	/* link() does not replace: two servers starting at once agree on the first key. */
	if (err == 0 && link(tmp, path) < 0 && errno != EEXIST)
		err = -errno;
	unlink(tmp);
	int dir = err == 0 ? open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dir >= 0) {
		if (fsync(dir) < 0)
			err = -errno;
		close(dir);
	}
	return err;
}

int srv_secret_read(const char *data_dir, uint8_t key[SRV_SECRET_LEN])
{
	char path[1100];
	if ((size_t)snprintf(path, sizeof path, "%s/secret", data_dir) >= sizeof path)
		return -ENAMETOOLONG;
	return read_key(path, key);
}

int srv_secret_load(const char *data_dir, uint8_t key[SRV_SECRET_LEN])
{
	char path[1100];
	if ((size_t)snprintf(path, sizeof path, "%s/secret", data_dir) >= sizeof path)
		return -ENAMETOOLONG;
	int err = read_key(path, key);
	if (err != -ENOENT)
		return err;
	if ((err = create_key(path, data_dir)) < 0)
		return err;
	return read_key(path, key);
}

static void mac(const uint8_t key[SRV_SECRET_LEN], const char *text, uint8_t out[32])
{
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, SRV_SECRET_LEN);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)text, strlen(text));
	crypto_auth_hmacsha256_final(&st, out);
}

static void audio_mac(const uint8_t key[SRV_SECRET_LEN], const char *family_id,
                      const char *message_id, int64_t expires_s, srv_audio_holder holder,
                      const char *ref, size_t ref_len, uint8_t out[32])
{
	char text[320];
	snprintf(text, sizeof text, "%s\n%.32s\n%.32s\n%" PRId64 "\n%.*s",
	         holder == SRV_AUDIO_SESSION ? "kiosk-audio-url" : "phone-audio-url", family_id,
	         message_id, expires_s, (int)(ref_len < 128 ? ref_len : 128), ref ? ref : "");
	mac(key, text, out);
}

void srv_sign_audio(const uint8_t key[SRV_SECRET_LEN], const char *family_id,
                    const char *message_id, int64_t expires_s, srv_audio_holder holder,
                    const char *ref, size_t ref_len, char sig[SRV_SIGNATURE_CHARS + 1])
{
	uint8_t h[32];
	audio_mac(key, family_id, message_id, expires_s, holder, ref, ref_len, h);
	sodium_bin2base64(sig, SRV_SIGNATURE_CHARS + 1, h, 16,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int srv_signature_ok(const uint8_t key[SRV_SECRET_LEN], const char *family_id,
                     const char *message_id, int64_t expires_s, srv_audio_holder holder,
                     const char *ref, size_t ref_len, const char *sig, size_t len)
{
	char want[SRV_SIGNATURE_CHARS + 1];
	if (len != SRV_SIGNATURE_CHARS || !ref || ref_len != SRV_SESSION_REF_CHARS ||
	    (holder != SRV_AUDIO_PHONE && holder != SRV_AUDIO_SESSION))
		return 0;
	srv_sign_audio(key, family_id, message_id, expires_s, holder, ref, ref_len, want);
	return sodium_memcmp(want, sig, SRV_SIGNATURE_CHARS) == 0;
}

#define SEAL_BYTES (crypto_secretbox_NONCEBYTES + SRV_SESSION_HASH_LEN + crypto_secretbox_MACBYTES)

static void seal_key(const uint8_t key[SRV_SECRET_LEN], uint8_t out[32])
{
	mac(key, "kiosk-session-seal", out);
}

void srv_session_seal(const uint8_t key[SRV_SECRET_LEN], const uint8_t hash[SRV_SESSION_HASH_LEN],
		      char out[SRV_SESSION_REF_CHARS + 1])
{
	uint8_t k[32], box[SEAL_BYTES];
	seal_key(key, k);
	randombytes_buf(box, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(box + crypto_secretbox_NONCEBYTES, hash, SRV_SESSION_HASH_LEN, box,
			      k);
	sodium_bin2base64(out, SRV_SESSION_REF_CHARS + 1, box, sizeof box,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(k, sizeof k);
}

int srv_session_open(const uint8_t key[SRV_SECRET_LEN], const char *ref, size_t len,
		     uint8_t hash[SRV_SESSION_HASH_LEN])
{
	uint8_t k[32], box[SEAL_BYTES];
	size_t n = 0;
	if (len != SRV_SESSION_REF_CHARS ||
	    sodium_base642bin(box, sizeof box, ref, len, NULL, &n, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    n != sizeof box)
		return -1;
	seal_key(key, k);
	int rc = crypto_secretbox_open_easy(hash, box + crypto_secretbox_NONCEBYTES,
					    sizeof box - crypto_secretbox_NONCEBYTES, box, k);
	sodium_memzero(k, sizeof k);
	return rc == 0 ? 0 : -1;
}

void srv_secret_fingerprint(const uint8_t key[SRV_SECRET_LEN],
			    uint8_t fp[SRV_SECRET_FINGERPRINT_LEN])
{
	uint8_t h[32];
	mac(key, "fingerprint", h);
	memcpy(fp, h, SRV_SECRET_FINGERPRINT_LEN);
}

void srv_hash_pairing_code(const uint8_t key[SRV_SECRET_LEN], const char *code, uint8_t out[32])
{
	char text[64];
	snprintf(text, sizeof text, "pairing-code\n%.40s", code);
	mac(key, text, out);
}
